# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
name: events_report
short_description: Render oom_events results as a readable text report
version_added: 0.1.0
description:
  - Turns the result of M(oomguard.linux.oom_events) into text - what died, when, why (the cause
    and its evidence) - grouped by what to change, each change said once with the kills it explains
    under it; then the kill loops, the early OOM killers' kills and the notes of the reading.
  - Sizes are in KiB, MiB or GiB, times since boot in seconds; long cgroup paths are cut in their middle.
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
    description:
      - How many events to describe, the newest by event time (0 to 100000); the heading counts them all.
      - Also how many of the early killers' kills, the newest.
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
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.oomguard.linux.plugins.module_utils.oom_report import epoch
from ansible_collections.oomguard.linux.plugins.plugin_utils import report_text as rt

LAST_MAX = 100000
# Cgroup paths and other long values are cut to this many characters, in their middle.
PATH_CHARS = 60
VALUE_CHARS = 120


def _path(path, limit=PATH_CHARS):
    """A cgroup path cut in its middle, whole components kept: /system.slice/\u2026/foo.service."""
    path = to_text(path)
    if len(path) <= limit:
        return path
    parts = path.split('/')
    if len(parts) > 3:
        head, tail = '/'.join(parts[:2]), parts[-1]
        # as many trailing components as fit
        for part in reversed(parts[2:-1]):
            if len(head) + len(tail) + len(part) + 3 > limit:
                break
            tail = part + '/' + tail
        shortened = head + '/\u2026/' + tail
        if len(shortened) <= limit:
            return shortened
    return rt.cut_middle(path, limit, path=False)


def _seconds(value):
    return '%.1f s' % value


def _value(key, value):
    """One value for people: units by the key's suffix, no Python notation."""
    if value is None:
        return 'unknown'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, (int, float)) and key.endswith('_kb'):
        return rt.size_kb(value)
    if isinstance(value, (int, float)) and key.endswith('_s'):
        return _seconds(value)
    if isinstance(value, float):
        return '%.2f' % value
    if isinstance(value, dict):
        return ', '.join('%s %s' % (_name(k), _value(k, value[k])) for k in sorted(value) if value[k] is not None)
    if isinstance(value, (list, tuple)):
        shown = '; '.join(_value(key, item) for item in value[:3])
        return shown + ('; and %d more' % (len(value) - 3) if len(value) > 3 else '')
    if key.endswith('memcg') or key == 'cgroup':
        return _path(value)
    return rt.cut_middle(value, VALUE_CHARS, path=False)


def _name(key):
    """evidence key -> words (its unit suffix said by the value)."""
    for suffix in ('_kb', '_s'):
        if key.endswith(suffix):
            key = key[:-len(suffix)]
    return to_text(key).replace('_', ' ')


def _evidence(evidence):
    return '; '.join('%s: %s' % (_name(key), _value(key, evidence[key]))
                     for key in sorted(evidence or {}) if evidence[key] is not None)


def _when(event):
    """Absolute time when known, and seconds since boot when printed."""
    stamp = event.get('timestamp')
    if stamp:
        when = to_text(stamp).replace('T', ' ', 1)
        when = when[:-1] + ' UTC' if when.endswith('Z') else when
    else:
        when = to_text(event.get('time') or '')
        if _uptime(when) is not None:
            when = ''  # raw dmesg: its time is the uptime, said below
    if event.get('uptime_s') is not None:
        uptime = 'uptime %s' % _seconds(event['uptime_s'])
        when = '%s (%s)' % (when, uptime) if when else uptime
    return when or 'time unknown'


def _uptime(text):
    """Seconds since boot when text is nothing else (a raw dmesg time), or None."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _loop_time(stamp):
    if _uptime(stamp) is not None:
        return 'uptime %s' % _seconds(_uptime(stamp))
    return to_text(stamp).replace('T', ' ', 1) if stamp else 'time unknown'


def _age_key(event):
    when = epoch(event.get('timestamp'))
    return (0, 0.0) if when is None else (1, when)


def _kill_line(event):
    victim = event.get('victim') or event.get('selected') or {}
    if victim:
        size = ''
        if victim.get('anon_rss_kb') is not None:
            size = ', anon-rss %s' % rt.size_kb(victim['anon_rss_kb'])
        who = '%s (pid %s%s) killed' % (rt.cut_middle(victim.get('comm') or 'unknown', 40, path=False),
                                        victim.get('pid', 'unknown'), size)
        others = len(event.get('victims') or ()) - 1
        if event.get('oom_group') and others > 0:
            # One invocation killed the whole cgroup: say how many, not each.
            who += ' with %s of %s (memory.oom.group)' % (
                rt.plural(others, 'other task'), _path(event.get('group_cgroup') or 'its cgroup'))
    elif event.get('victim_elided'):
        who = 'victim not in the log (its kill lines were cut out)'
    else:
        who = 'no victim in the log'
    where = ''
    if event.get('task_memcg'):
        where = ' in %s' % _path(event['task_memcg'])
    if event.get('host'):
        where += ' on %s' % rt.cut_middle(event['host'], 64, path=False)
    return '%s  %s%s' % (_when(event), who, where)


def _last(last):
    if isinstance(last, bool) or not isinstance(last, int) or not 0 <= last <= LAST_MAX:
        raise AnsibleFilterError('last = %s; allowed: an integer 0..%d' % (to_text(last), LAST_MAX))
    return last


def events_report(result, host=None, last=10):
    if not isinstance(result, dict) or 'events' not in result or 'summary' not in result:
        raise AnsibleFilterError('events_report expects the registered result of oomguard.linux.oom_events')
    last = _last(last)
    summary = result['summary']
    total = summary.get('events', 0)
    lines = []
    heading = '%s%s' % (rt.plural(total, 'OOM event'), ' on %s' % host if host else '')
    causes = ', '.join('%s %d' % (cause, count) for cause, count in sorted(summary.get('by_cause', {}).items()))
    if causes:
        heading += ' (%s)' % causes
    lines.append(heading)
    lines.append('=' * len(heading))
    # The newest `last` (sorted stably: events without an absolute time are the oldest).
    events = sorted(result['events'], key=_age_key)[-last:] if last else []
    if events and len(events) < total:
        lines.append('The %s of %d, by what to change:' % (
            'newest' if len(events) == 1 else '%d newest' % len(events), total))
    groups = {}
    for event in events:
        key = (event.get('cause') or 'unknown', event.get('advice') or '')
        groups.setdefault(key, []).append(event)
    for (cause, advice), members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        lines.append('')
        lines.append('%s: %s' % (cause, rt.plural(len(members), 'event')))
        if advice:
            lines.append('  change: %s' % advice)
        for event in members:
            lines.append('  - %s' % _kill_line(event))
            if event.get('unknown_reason'):
                lines.append('      why unknown: %s' % rt.cut_middle(event['unknown_reason'], 400, path=False))
            evidence = _evidence(event.get('evidence'))
            if evidence:
                lines.append('      evidence: %s' % evidence)
    loops = result.get('kill_loops') or []
    if loops:
        lines.append('')
        lines.append('Kill loops (the same program killed again and again):')
        for loop in loops:
            where = ' in %s' % _path(loop['task_memcg']) if loop.get('task_memcg') else ''
            unit = ''
            if loop.get('unit'):
                unit = ', unit %s (OOMPolicy %s)' % (loop['unit'], loop.get('oom_policy') or 'unknown')
            lines.append('  %s%s: %s, %s, %s .. %s%s' % (
                rt.cut_middle(loop['comm'], 40, path=False), where, rt.plural(loop['kills'], 'kill'),
                rt.plural(loop['distinct_pids'], 'PID'),
                _loop_time(loop.get('first')), _loop_time(loop.get('last')), unit))
            if loop.get('advice'):
                lines.append('    change: %s' % loop['advice'])
    early = result.get('early_kills') or []
    if early and last:
        lines.append('')
        lines.append('Kills by the early OOM killer (before the kernel had to act): %s' % rt.plural(len(early), 'kill'))
        for kill in early[-last:]:
            if kill.get('killer') == 'earlyoom':
                what = '%s (pid %s) %s' % (rt.cut_middle(kill.get('comm') or 'unknown', 40, path=False), kill.get('pid', 'unknown'),
                                           kill.get('signal') or '')
                if kill.get('rss_mib') is not None:
                    what += ', rss %d MiB' % kill['rss_mib']
            else:
                what = '%s: %s' % (_path(kill.get('cgroup') or 'unknown'), kill.get('reason') or 'no reason given')
            lines.append('  %s  %s %s%s' % (_loop_time(kill.get('timestamp')), kill.get('killer', 'unknown'), what.rstrip(),
                                            ' (dry run, nothing killed)' if kill.get('dry_run') else ''))
    notes = result.get('notes') or []
    if notes:
        lines.append('')
        lines.append('Notes:')
        lines.extend('  %s' % rt.cut_middle(note, 600, path=False) for note in notes)
    if not events:
        lines.append('')
        lines.append('No OOM kill in the logs read.' if not total else 'No event shown (last = 0).')
    return '\n'.join(lines)


class FilterModule(object):
    def filters(self):
        return {'events_report': events_report}
