# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
name: posture_report
short_description: Render an OOM posture as a readable text report
version_added: 0.1.0
description:
  - Turns the C(oom_posture) fact returned by M(oomguard.linux.oom_facts) into lines of text for a
    terminal - the risk level, the findings with their evidence and fix, who dies next host-wide and
    in each OOM domain (the host and every memory cgroup with a limit), and what could not be read.
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

from ansible_collections.oomguard.linux.plugins.plugin_utils import fleet
from ansible_collections.oomguard.linux.plugins.plugin_utils import report_text as rt
from ansible_collections.oomguard.linux.plugins.plugin_utils.report_text import plural

WIDTH = 100
WHERE_CHARS = 36
COMMAND_CHARS = 60


def _evidence_text(evidence):
    """key: value pairs, each value written with the unit its key names."""
    if not isinstance(evidence, dict):
        return rt.value_text(evidence) if evidence is not None else ''
    return '; '.join('%s = %s' % (_unitless(key).replace('_', ' '), rt.unit_value(key, evidence[key])) for key in sorted(evidence))


def _unitless(key):
    """'swap_total_kb' -> 'swap_total': the value is written with its unit."""
    for suffix in ('_kbytes', '_kb', '_bytes', '_percent', '_seconds', '_s'):
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[:-len(suffix)]
    return key


def _wrap(text, width, indent):
    words = str(text).split()
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


def _basics_lines(basics, posture):
    swap = 'none' if basics['swap_total_kb'] == 0 else rt.size_kb(basics['swap_total_kb'])
    if basics['swap_total_kb'] and basics['swap_used_kb'] is not None:
        swap += ' (%s used)' % rt.size_kb(basics['swap_used_kb'])
    controller = basics['memory_controller']
    cgroup = '%s%s' % (basics['cgroup_mode'] or 'unknown',
                       ' (memory controller v%d)' % controller if controller else ' (no memory controller)')
    psi = basics['psi']
    if psi is None:
        pressure = 'not available'
    else:
        pressure = 'some %s, full %s (avg10)' % (rt.percent(psi['some_avg10_percent'], 2), rt.percent(psi['full_avg10_percent'], 2))
    kills = posture['oom_kills_since_boot']
    return [
        'Kernel %s%s; cgroup %s' % (basics['kernel_release'] or 'unknown', ' ' + basics['machine'] if basics['machine'] else '',
                                    cgroup),
        'RAM %s, %s available; swap %s' % (rt.size_kb(basics['mem_total_kb']), rt.size_kb(basics['mem_available_kb']), swap),
        'Memory pressure (PSI): %s' % pressure,
        'OOM kills since boot: %s; early OOM killer: %s' % ('unknown' if kills is None else kills,
                                                            ', '.join(posture['early_killers']) or 'none running'),
    ]


def _finding_lines(findings):
    lines = []
    advised = {}
    for finding in findings:
        lines.append('  [%s] %s: %s' % (finding['severity'].upper(), finding['id'], finding['title'] or ''))
        evidence = _evidence_text(finding['evidence'])
        if evidence:
            lines.extend(_wrap('evidence: ' + evidence, WIDTH, '      '))
        advice = finding['advice']
        if advice and advice in advised:
            # One fix for several findings: said once, pointed at after.
            lines.append('      fix: as for %s above' % advised[advice])
        elif advice:
            advised[advice] = finding['id']
            lines.extend(_wrap('fix: ' + advice, WIDTH, '      '))
    return lines


def _victim_lines(victims):
    if not victims:
        return ['  (no process scan)']
    lines = ['  %7s %9s %5s %10s  %-*s %s' % ('PID', 'OOM_SCORE', 'ADJ', 'RSS', WHERE_CHARS, 'UNIT/CGROUP', 'COMMAND')]
    for victim in victims:
        where = rt.cut_middle(victim['unit'] or victim['cgroup'] or '-', WHERE_CHARS)
        command = rt.cut_middle(victim['cmdline'] or victim['comm'] or '', COMMAND_CHARS, path=False)
        lines.append('  %7d %9s %5s %10s  %-*s %s' % (
            victim['pid'], rt.value_text(victim['oom_score']) if victim['oom_score'] is not None else '?',
            rt.value_text(victim['oom_score_adj']) if victim['oom_score_adj'] is not None else '?',
            rt.size_kb(victim['rss_kb']), WHERE_CHARS, where, command))
    return lines


def _domain_lines(domains, count):
    """The OOM domains, the soonest forecast OOM then the tightest headroom first (the host always listed),
    each with whom the kernel kills there."""
    host = [d for d in domains if d['kind'] == 'host']
    others = sorted((d for d in domains if d['kind'] != 'host'),
                    key=lambda d: (d['forecast'] is None or d['forecast']['time_to_oom_s'] is None,
                                   (d['forecast'] or {}).get('time_to_oom_s') or 0,
                                   d['headroom_kb'] is None, d['headroom_kb'] or 0))
    shown = host + others[:max(count - len(host), 0)]
    lines = ['  %-6s %-*s %10s %10s %10s  %s' % ('KIND', WHERE_CHARS, 'WHERE', 'LIMIT', 'USED', 'HEADROOM', 'NEXT VICTIM')]
    for domain in shown:
        where = rt.cut_middle(fleet.domain_where(domain), WHERE_CHARS)
        victim = domain['next_victim']
        if victim is None:
            who = 'nobody the OOM killer may kill'
        else:
            who = '%s (pid %d, RSS %s, adj %s)' % (
                victim['comm'] or '?', victim['pid'], rt.size_kb(victim['rss_kb']), rt.value_text(victim['oom_score_adj']))
            if domain['group_kill']:
                who += '; memory.oom.group: all %s of %s' % (
                    plural(domain['group_size'], 'task'), rt.cut_middle(domain['group_kill'], WHERE_CHARS))
        forecast = domain['forecast']
        if forecast and forecast['time_to_oom_s'] is not None:
            who += '; full in about %s (growing %s/s over %s)' % (
                rt.seconds(forecast['time_to_oom_s']), rt.size_kb(forecast['growth_kb_per_s']), rt.seconds(forecast['span_s']))
        elif forecast and forecast['samples'] >= 2:
            who += '; not growing over %s' % rt.seconds(forecast['span_s'])
        lines.append('  %-6s %-*s %10s %10s %10s  %s' % (
            domain['kind'], WHERE_CHARS, where, rt.size_kb(domain['limit_kb']), rt.size_kb(domain['usage_kb']),
            rt.size_kb(domain['headroom_kb']), who))
    if len(others) > len(shown) - len(host):
        hidden = len(others) - len(shown) + len(host)
        lines.append('  (%d more %s with more headroom)' % (hidden, 'domain' if hidden == 1 else 'domains'))
    return lines


def posture_report(posture, host=None, victims=5):
    """The posture as lines of text; a posture that is not what oom_facts/oom_audit
    return is said so, with the field and what it should be, in place of the report."""
    of = ' of %s' % host if host else ''
    try:
        read = fleet.read_posture(posture)
    except fleet.Malformed as exc:
        return 'OOM posture%s: cannot be read: %s' % (of, exc)
    try:
        count = max(int(victims), 0)
    except (TypeError, ValueError):
        return 'OOM posture%s: cannot be printed: victims = %s; allowed: a whole number >= 0' % (of, rt.describe(victims))
    heading = 'OOM posture%s: %s risk (score %s of 100)' % (of, read['risk_level'].upper(), rt.value_text(read['risk_score']))
    lines = [heading, '=' * len(heading)]
    lines.extend(_basics_lines(read['basics'], read))
    lines.append('')
    findings = read['findings']
    by_severity = ', '.join('%d %s' % (sum(1 for f in findings if f['severity'] == s), s)
                            for s in fleet.SEVERITIES if any(f['severity'] == s for f in findings))
    lines.append('Findings: %s%s' % (len(findings) or 'none', ' (%s)' % by_severity if by_severity else ''))
    lines.extend(_finding_lines(findings))
    lines.append('')
    top = read['victims'][:count]
    lines.append('Who dies next (highest oom_score first; %s listed):' % plural(len(top), 'process', 'processes'))
    lines.extend(_victim_lines(top))
    # The victims' own note (what the scan left out) goes with them.
    about_victims = [n for n in read['notes'] if n.startswith('victims: ')]
    lines.extend('  (%s)' % note[len('victims: '):] for note in about_victims)
    if read['domains']:
        lines.append('')
        lines.append('Where an OOM can happen (the soonest forecast, then the tightest headroom, first) and whom the '
                     'kernel kills there:')
        lines.extend(_domain_lines(read['domains'], max(count, 1)))
    notes = [n for n in read['notes'] if n not in about_victims]
    if notes or read['not_evaluated']:
        lines.append('')
        lines.append('Not read or not checked:')
        lines.extend('  - %s' % note for note in notes)
        lines.extend('  - check %s' % item for item in read['not_evaluated'])
    return '\n'.join(lines)


class FilterModule(object):
    def filters(self):
        return {'posture_report': posture_report}
