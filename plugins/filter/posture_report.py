# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
name: posture_report
short_description: Render an OOM posture as a readable text report
version_added: 0.1.0
description:
  - Turns the C(oom_posture) fact returned by M(oomguard.linux.oom_facts) into lines of text for a
    terminal - the risk level, the findings with their evidence and fix, who dies next, and what
    could not be read.
author:
  - oomguard.linux maintainers (@oomguard)
options:
  _input:
    description: The C(ansible_facts.oom_posture) dictionary.
    type: dict
    required: true
  host:
    description: Host name to print in the heading.
    type: str
  victims:
    description: How many of the likeliest OOM victims to list.
    type: int
    default: 5
'''

EXAMPLES = r'''
- name: Print the posture
  ansible.builtin.debug:
    msg: "{{ ansible_facts.oom_posture | oomguard.linux.posture_report(host=inventory_hostname) }}"
'''

RETURN = r'''
_value:
  description:
    - The report as one multi-line string.
    - Printed with C(ansible.builtin.debug), it is easiest to read with the YAML result format
      (C(ANSIBLE_CALLBACK_RESULT_FORMAT=yaml)), which shows it as a block of lines.
  type: str
'''

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

_SEVERITY_ORDER = ('critical', 'high', 'medium', 'low', 'info')


def _size_kb(value):
    """kB -> a short human size (GiB/MiB/KiB)."""
    if value is None:
        return '?'
    for unit, factor in (('GiB', 1024 * 1024), ('MiB', 1024)):
        if abs(value) >= factor:
            return '%.1f %s' % (value / float(factor), unit)
    return '%d KiB' % value


def _evidence_text(evidence):
    parts = []
    for key in sorted(evidence or {}):
        value = evidence[key]
        if isinstance(value, float):
            value = '%.2f' % value
        elif isinstance(value, (list, tuple)):
            value = ', '.join(to_text(v) for v in value[:5]) + (' ...' if len(value) > 5 else '')
        elif isinstance(value, dict):
            value = ', '.join('%s=%s' % (k, value[k]) for k in sorted(value)[:5])
        parts.append('%s=%s' % (key, value))
    return '; '.join(parts)


def _wrap(text, width, indent):
    words = to_text(text).split()
    lines, line = [], ''
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = word if not line else line + ' ' + word
    if line:
        lines.append(line)
    return [indent + part for part in lines] or [indent]


def posture_report(posture, host=None, victims=5):
    if not isinstance(posture, dict) or 'risk_level' not in posture:
        raise AnsibleFilterError('posture_report expects ansible_facts.oom_posture from oomguard.linux.oom_facts')
    lines = []
    memory = posture.get('memory') or {}
    kernel = posture.get('kernel') or {}
    heading = 'OOM posture%s: %s (risk %s/100)' % (
        ' of %s' % host if host else '', posture['risk_level'].upper(), posture['risk_score'])
    lines.append(heading)
    lines.append('=' * len(heading))
    controller = posture.get('memory_controller')
    lines.append('kernel %s %s, cgroup %s%s, RAM %s, available %s, swap %s' % (
        kernel.get('release') or '?', kernel.get('machine') or '', posture.get('cgroup_mode'),
        ' (memory v%s)' % controller if controller else ' (no memory controller)',
        _size_kb(memory.get('MemTotal')), _size_kb(memory.get('MemAvailable')),
        _size_kb(memory.get('SwapTotal')) if memory.get('SwapTotal') else 'none'))
    pressure = posture.get('pressure') or {}
    full = pressure.get('full') or {}
    killers = ', '.join(sorted(set(k['name'] for k in posture.get('early_killers') or []))) or 'none'
    lines.append('OOM kills since boot: %s; early OOM killer: %s; memory PSI full avg10: %s' % (
        posture.get('oom_kills_since_boot') if posture.get('oom_kills_since_boot') is not None else 'unknown',
        killers, '%.2f%%' % full['avg10'] if 'avg10' in full else 'n/a'))
    lines.append('')

    findings = posture.get('findings') or []
    counts = ', '.join('%d %s' % (sum(1 for f in findings if f['severity'] == s), s)
                       for s in _SEVERITY_ORDER if any(f['severity'] == s for f in findings))
    lines.append('Findings: %d%s' % (len(findings), ' (%s)' % counts if counts else ''))
    for finding in findings:
        lines.append('  [%s] %s: %s' % (finding['severity'].upper(), finding['id'], finding['title']))
        evidence = _evidence_text(finding.get('evidence'))
        if evidence:
            lines.extend(_wrap('evidence: ' + evidence, 100, '      '))
        lines.extend(_wrap('fix: ' + finding.get('advice', ''), 100, '      '))
    lines.append('')

    top = (posture.get('victims') or [])[:max(victims, 0)]
    lines.append('Who dies next (highest oom_score first):')
    if top:
        lines.append('  %7s %6s %6s %10s  %-28s %s' % ('PID', 'SCORE', 'ADJ', 'RSS', 'UNIT/CGROUP', 'COMMAND'))
        for victim in top:
            where = victim.get('unit') or victim.get('cgroup') or '-'
            if len(where) > 28:
                where = '...' + where[-25:]
            command = victim.get('cmdline') or victim.get('comm') or ''
            lines.append('  %7d %6d %6d %10s  %-28s %s' % (
                victim['pid'], victim['oom_score'], victim['oom_score_adj'], _size_kb(victim.get('rss_kb')),
                where, command[:60]))
    else:
        lines.append('  (no process scan)')
    not_evaluated = posture.get('not_evaluated') or []
    notes = posture.get('notes') or []
    if notes or not_evaluated:
        lines.append('')
        lines.append('Not read or not checked:')
        for note in notes:
            lines.append('  - %s: %s' % (note.get('reader'), note.get('reason')))
        for item in not_evaluated:
            lines.append('  - check %s: %s' % (item.get('id') or item.get('check'), item.get('reason')))
    return '\n'.join(lines)


class FilterModule(object):
    def filters(self):
        return {'posture_report': posture_report}
