# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
name: events_report
short_description: Render oom_events results as a readable text report
version_added: 0.1.0
description:
  - Turns the result of M(oomguard.linux.oom_events) into text - what died, when, why (the cause
    and its evidence) and what to change - followed by the kill loops.
author:
  - oomguard.linux maintainers (@oomguard)
options:
  _input:
    description: The registered result of M(oomguard.linux.oom_events).
    type: dict
    required: true
  host:
    description: Host name to print in the heading.
    type: str
  last:
    description: How many of the most recent events to describe.
    type: int
    default: 10
'''

EXAMPLES = r'''
- name: Print what the OOM killer did
  ansible.builtin.debug:
    msg: "{{ ooms | oomguard.linux.events_report(host=inventory_hostname) }}"
'''

RETURN = r'''
_value:
  description: The report as one multi-line string.
  type: str
'''

from ansible.errors import AnsibleFilterError


def _when(event):
    return event.get('timestamp') or event.get('time') or 'time unknown'


def _evidence(evidence):
    parts = []
    for key in sorted(evidence or {}):
        value = evidence[key]
        if isinstance(value, list):
            value = '; '.join(
                ', '.join('%s=%s' % (k, v) for k, v in sorted(item.items())) if isinstance(item, dict) else str(item)
                for item in value[:3])
        elif isinstance(value, dict):
            value = ', '.join('%s=%s' % (k, v) for k, v in sorted(value.items()))
        parts.append('%s: %s' % (key, value))
    return ' | '.join(parts)


def events_report(result, host=None, last=10):
    if not isinstance(result, dict) or 'events' not in result or 'summary' not in result:
        raise AnsibleFilterError('events_report expects the registered result of oomguard.linux.oom_events')
    summary = result['summary']
    lines = []
    heading = 'OOM kills%s: %d event(s)' % (' on %s' % host if host else '', summary.get('events', 0))
    causes = ', '.join('%s %d' % (cause, count) for cause, count in sorted(summary.get('by_cause', {}).items()))
    if causes:
        heading += ' (%s)' % causes
    lines.append(heading)
    lines.append('=' * len(heading))
    events = result['events'][-max(last, 0):] if last else []
    for event in events:
        victim = event.get('victim') or event.get('selected') or {}
        who = '%s (pid %s)' % (victim.get('comm'), victim.get('pid')) if victim else 'no victim in the log'
        size = ''
        if victim.get('anon_rss_kb') is not None:
            size = ', anon-rss %d MiB' % (victim['anon_rss_kb'] // 1024)
        lines.append('%s  %s killed%s: %s' % (_when(event), who, size, event['cause']))
        if event.get('unknown_reason'):
            lines.append('    why unknown: %s' % event['unknown_reason'])
        evidence = _evidence(event.get('evidence'))
        if evidence:
            lines.append('    evidence: %s' % evidence)
        lines.append('    change: %s' % event['advice'])
    loops = result.get('kill_loops') or []
    if loops:
        lines.append('')
        lines.append('Kill loops (the same program killed again and again):')
        for loop in loops:
            lines.append('  %s: %d kills, %d PIDs, %s .. %s%s' % (
                loop['comm'], loop['kills'], loop['distinct_pids'], loop['first'], loop['last'],
                ', unit %s (OOMPolicy=%s)' % (loop['unit'], loop.get('oom_policy')) if loop.get('unit') else ''))
            if loop.get('advice'):
                lines.append('    change: %s' % loop['advice'])
    early = result.get('early_kills') or []
    if early:
        lines.append('')
        lines.append('Kills by the early OOM killer (before the kernel had to act):')
        for kill in early[-max(last, 0):] if last else []:
            what = ('%s (pid %s) %s' % (kill.get('comm'), kill.get('pid'), kill.get('signal'))
                    if kill['killer'] == 'earlyoom' else '%s: %s' % (kill.get('cgroup'), kill.get('reason')))
            lines.append('  %s  %s %s%s' % (kill.get('timestamp'), kill['killer'], what,
                                            ' (dry run, nothing killed)' if kill.get('dry_run') else ''))
    if not events:
        lines.append('No OOM kill in the logs read.')
    return '\n'.join(lines)


class FilterModule(object):
    def filters(self):
        return {'events_report': events_report}
