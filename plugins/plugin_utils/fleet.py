# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report (controller side): per-host audit results -> one document,
then that document as self-contained HTML and as Prometheus textfiles.

Input per host is what the fleet audit's one oom_audit call registered
(policy rows, posture, slab verdict, OOM events), or the record Ansible keeps
for a host it could not reach or whose task failed.  Every step is one pass
over the hosts, so the work grows linearly with the fleet; a host whose
result is missing or broken is listed with the reason and never stops the
report of the others.
"""


import hashlib
import json

from ansible_collections.oomguard.linux.plugins.module_utils.monitor import label, sample_text
from ansible_collections.oomguard.linux.plugins.plugin_utils import report_text as rt
from ansible_collections.oomguard.linux.plugins.plugin_utils.report_text import plural


SCHEMA_VERSION = 2
SEVERITIES = ('critical', 'high', 'medium', 'low', 'info')
LEVELS = ('critical', 'high', 'medium', 'low')
STATUSES = ('ok', 'partial', 'broken', 'failed', 'unreachable', 'no_result')
# What each status means to a reader; 'ok' only says the host answered, its risk is told apart.
STATUS_LABELS = {'ok': 'reachable', 'partial': 'partly audited', 'broken': 'unreadable result', 'failed': 'audit failed',
                 'unreachable': 'unreachable', 'no_result': 'no result'}
NOT_AUDITED = ('failed', 'unreachable', 'no_result')
CGROUP_MODES = ('v1', 'v2', 'hybrid', 'none')
DRIFT_STATUSES = ('ok', 'drift', 'missing', 'unsupported')
RECENT_KILLS = 10
# Bounds on what one host's result may carry into the report: a name or id is short,
# a sentence is a few lines; a longer one is a broken result, not something to print.
NAME_CHARS = 256
TEXT_CHARS = 4096
MESSAGE_CHARS = 2000
VALUE_NODES = 256
VALUE_DEPTH = 4
MISSING = object()


class Malformed(Exception):
    """A field of a host's result that is not what oom_audit returns."""

    def __init__(self, field, value, expected):
        self.field = field
        got = 'missing' if value is MISSING else rt.describe(value)
        Exception.__init__(self, '%s = %s; expected: %s' % (field, got, expected))


def _get(mapping, key):
    return mapping.get(key, MISSING) if isinstance(mapping, dict) else MISSING


def _absent(value):
    return value is MISSING or value is None


def _mapping(value, field, required=False):
    if _absent(value) and not required:
        return None
    if not isinstance(value, dict):
        raise Malformed(field, value, 'a mapping')
    for key in value:
        if not isinstance(key, str):
            raise Malformed(field, value, 'a mapping with text keys (one key is %s)' % rt.describe(key))
    return value


def _list(value, field, required=False):
    if _absent(value) and not required:
        return []
    if not isinstance(value, list):
        raise Malformed(field, value, 'a list')
    return value


def _text(value, field, limit=TEXT_CHARS, required=False):
    if _absent(value) and not required:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise Malformed(field, value, 'a text of at most %d characters' % limit)
    return value


def _number(value, field, minimum=None, maximum=None, required=False, integer=False):
    if _absent(value) and not required:
        return None
    kind = 'an integer' if integer else 'a finite number'
    bounds = ''
    if minimum is not None and maximum is not None:
        bounds = ' %s..%s' % (minimum, maximum)
    elif minimum is not None:
        bounds = ' >= %s' % minimum
    if not rt.is_number(value) or (integer and not isinstance(value, int)) \
            or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise Malformed(field, value, kind + bounds)
    return value


def _count(value, field, required=False):
    return _number(value, field, minimum=0, required=required, integer=True)


def _flag(value, field, required=False):
    if _absent(value) and not required:
        return None
    if not isinstance(value, bool):
        raise Malformed(field, value, 'true or false')
    return value


def _choice(value, field, choices, required=False):
    if _absent(value) and not required:
        return None
    if not isinstance(value, str) or value not in choices:
        raise Malformed(field, value, 'one of %s' % ', '.join(choices))
    return value


def _counts(value, field, required=False):
    """A mapping of names to counts (by_cause, drift summary)."""
    mapping = _mapping(value, field, required) or {}
    for key, count in mapping.items():
        _text(key, field, NAME_CHARS)
        _count(count, '%s.%s' % (field, rt.cut_middle(key, 60)), required=True)
    return dict(mapping)


def _value(value, field):
    """Any JSON value bounded in size and depth (a setting's desired or live value)."""
    nodes = [0]

    def walk(item, depth):
        nodes[0] += 1
        if nodes[0] > VALUE_NODES or depth > VALUE_DEPTH:
            raise Malformed(field, value, 'a value of at most %d items, nested at most %d deep' % (VALUE_NODES, VALUE_DEPTH))
        if item is None or isinstance(item, bool):
            return
        if isinstance(item, (int, float)):
            _number(item, field, required=True)
        elif isinstance(item, str):
            _text(item, field)
        elif isinstance(item, list):
            for element in item:
                walk(element, depth + 1)
        elif isinstance(item, dict):
            _mapping(item, field)
            for element in item.values():
                walk(element, depth + 1)
        else:
            raise Malformed(field, item, 'a JSON value')

    if value is MISSING:
        return None
    walk(value, 0)
    return value


def _each(value, field, read):
    return [read(item, '%s[%d]' % (field, index)) for index, item in enumerate(_list(value, field))]


# -- the posture --------------------------------------------------------------------

def _finding(finding, field):
    finding = _mapping(finding, field, required=True)
    return {'id': _text(_get(finding, 'id'), field + '.id', NAME_CHARS, required=True),
            'severity': _choice(_get(finding, 'severity'), field + '.severity', SEVERITIES, required=True),
            'title': _text(_get(finding, 'title'), field + '.title'),
            'advice': _text(_get(finding, 'advice'), field + '.advice'),
            'evidence': _value(_get(finding, 'evidence'), field + '.evidence')}


def _victim_row(victim, field):
    victim = _mapping(victim, field, required=True)
    return {'pid': _count(_get(victim, 'pid'), field + '.pid', required=True),
            'comm': _text(_get(victim, 'comm'), field + '.comm', NAME_CHARS),
            'cmdline': _text(_get(victim, 'cmdline'), field + '.cmdline'),
            'oom_score': _number(_get(victim, 'oom_score'), field + '.oom_score', -1000, 3000, integer=True),
            'oom_score_adj': _number(_get(victim, 'oom_score_adj'), field + '.oom_score_adj', -1000, 1000, integer=True),
            'rss_kb': _number(_get(victim, 'rss_kb'), field + '.rss_kb', minimum=0),
            'unit': _text(_get(victim, 'unit'), field + '.unit', NAME_CHARS),
            'cgroup': _text(_get(victim, 'cgroup'), field + '.cgroup')}


DOMAIN_KINDS = ('host', 'memcg', 'node')


def _domain(domain, field):
    domain = _mapping(domain, field, required=True)
    victim = _mapping(_get(domain, 'next_victim'), field + '.next_victim')
    group = _each(_get(domain, 'group_victims'), field + '.group_victims', lambda item, where: _count(
        _get(_mapping(item, where, required=True), 'pid'), where + '.pid', required=True))
    return {'kind': _choice(_get(domain, 'kind'), field + '.kind', DOMAIN_KINDS, required=True),
            'path': _text(_get(domain, 'path'), field + '.path'),
            'unit': _text(_get(domain, 'unit'), field + '.unit', NAME_CHARS),
            'limit_kb': _number(_get(domain, 'limit_kb'), field + '.limit_kb', minimum=0),
            'usage_kb': _number(_get(domain, 'usage_kb'), field + '.usage_kb', minimum=0),
            'headroom_kb': _number(_get(domain, 'headroom_kb'), field + '.headroom_kb'),
            'tasks': _count(_get(domain, 'tasks'), field + '.tasks'),
            'group_kill': _text(_get(domain, 'group_kill'), field + '.group_kill'),
            'group_size': len(group),
            'forecast': _forecast(_get(domain, 'forecast'), field + '.forecast'),
            'next_victim': None if victim is None else {
                'pid': _count(_get(victim, 'pid'), field + '.next_victim.pid', required=True),
                'comm': _text(_get(victim, 'comm'), field + '.next_victim.comm', NAME_CHARS),
                'unit': _text(_get(victim, 'unit'), field + '.next_victim.unit', NAME_CHARS),
                'oom_score_adj': _number(_get(victim, 'oom_score_adj'), field + '.next_victim.oom_score_adj',
                                         -1000, 1000, integer=True),
                'rss_kb': _number(_get(victim, 'rss_kb'), field + '.next_victim.rss_kb', minimum=0)}}


def _forecast(forecast, field):
    forecast = _mapping(forecast, field)
    if forecast is None:
        return None
    return {'samples': _count(_get(forecast, 'samples'), field + '.samples', required=True),
            'span_s': _number(_get(forecast, 'span_s'), field + '.span_s', minimum=0),
            'growth_kb_per_s': _number(_get(forecast, 'growth_kb_per_s'), field + '.growth_kb_per_s'),
            'time_to_oom_s': _number(_get(forecast, 'time_to_oom_s'), field + '.time_to_oom_s', minimum=0)}


def domain_where(domain):
    """Where a domain is, for people: its unit or cgroup; a NUMA node set with the unit confined to it."""
    if domain['kind'] == 'node':
        return ' '.join(filter(None, (domain['path'], domain['unit'])))
    return domain['unit'] or domain['path'] or '/'


def tightest_domain(domains):
    """The OOM domain closest to its limit: the soonest forecast OOM, else the least headroom (the host when
    nothing else is known); None without domains."""
    if not domains:
        return None
    timed = [d for d in domains if d['forecast'] and d['forecast']['time_to_oom_s'] is not None]
    if timed:
        return min(timed, key=lambda d: d['forecast']['time_to_oom_s'])
    known = [d for d in domains if d['headroom_kb'] is not None]
    return min(known, key=lambda d: (d['headroom_kb'], d['kind'] == 'host')) if known else domains[0]


def _note(note, field):
    """A reader's note: {reader, reason} (the posture) or a sentence (the events)."""
    if isinstance(note, str):
        return _text(note, field)
    note = _mapping(note, field, required=True)
    reader = _text(_get(note, 'reader'), field + '.reader', NAME_CHARS)
    reason = _text(_get(note, 'reason'), field + '.reason')
    return '%s: %s' % (reader or 'reader', reason or 'no reason given')


def _not_evaluated(item, field):
    item = _mapping(item, field, required=True)
    name = _text(_get(item, 'id'), field + '.id', NAME_CHARS) or _text(_get(item, 'check'), field + '.check', NAME_CHARS)
    return '%s: %s' % (name or 'check', _text(_get(item, 'reason'), field + '.reason') or 'no reason given')


def _psi(pressure, field):
    pressure = _mapping(pressure, field)
    if pressure is None:
        return None
    psi = {}
    for kind in ('some', 'full'):
        values = _mapping(_get(pressure, kind), '%s.%s' % (field, kind)) or {}
        psi[kind + '_avg10_percent'] = _number(_get(values, 'avg10'), '%s.%s.avg10' % (field, kind), 0, 100)
    return psi


def read_posture(posture, field='posture'):
    """The posture of one host (oom_audit's posture, oom_facts' oom_posture), checked
    field by field and reduced to what the reports print.  Raises Malformed."""
    posture = _mapping(posture, field, required=True)
    kernel = _mapping(_get(posture, 'kernel'), field + '.kernel') or {}
    memory = _mapping(_get(posture, 'memory'), field + '.memory') or {}
    kb = dict((key, _number(_get(memory, key), '%s.memory.%s' % (field, key), minimum=0))
              for key in ('MemTotal', 'MemAvailable', 'SwapTotal', 'SwapFree'))
    swap_used = kb['SwapTotal'] - kb['SwapFree'] if kb['SwapTotal'] is not None and kb['SwapFree'] is not None else None
    findings = [_finding(item, '%s.findings[%d]' % (field, index))
                for index, item in enumerate(_list(_get(posture, 'findings'), field + '.findings', True))]
    order = dict((s, i) for i, s in enumerate(SEVERITIES))
    findings.sort(key=lambda f: (order[f['severity']], f['id']))
    victims = _each(_get(posture, 'victims'), field + '.victims', _victim_row)
    killers = _each(_get(posture, 'early_killers'), field + '.early_killers', lambda item, where: _text(
        _get(_mapping(item, where, required=True), 'name'), where + '.name', NAME_CHARS))
    basics = {
        'kernel_release': _text(_get(kernel, 'release'), field + '.kernel.release', NAME_CHARS),
        'machine': _text(_get(kernel, 'machine'), field + '.kernel.machine', NAME_CHARS),
        'mem_total_kb': kb['MemTotal'], 'mem_available_kb': kb['MemAvailable'],
        'swap_total_kb': kb['SwapTotal'], 'swap_used_kb': swap_used,
        'cgroup_mode': _choice(_get(posture, 'cgroup_mode'), field + '.cgroup_mode', CGROUP_MODES),
        'memory_controller': _number(_get(posture, 'memory_controller'), field + '.memory_controller', 1, 2, integer=True),
        'psi': _psi(_get(posture, 'pressure'), field + '.pressure'),
        'next_victim': None,
    }
    if victims:
        basics['next_victim'] = dict((k, victims[0][k]) for k in ('comm', 'pid', 'oom_score', 'rss_kb'))
    domains = _each(_get(posture, 'domains'), field + '.domains', _domain)
    tightest = tightest_domain(domains)
    basics['tightest_domain'] = None if tightest is None else {
        'kind': tightest['kind'], 'path': tightest['path'], 'unit': tightest['unit'], 'limit_kb': tightest['limit_kb'],
        'headroom_kb': tightest['headroom_kb'], 'time_to_oom_s': (tightest['forecast'] or {}).get('time_to_oom_s'),
        'next_victim': None if tightest['next_victim'] is None else dict(
            (k, tightest['next_victim'][k]) for k in ('comm', 'pid'))}
    return {
        'risk_score': _number(_get(posture, 'risk_score'), field + '.risk_score', 0, 100, required=True),
        'risk_level': _choice(_get(posture, 'risk_level'), field + '.risk_level', LEVELS, required=True),
        'findings': findings,
        'basics': basics,
        'victims': victims,
        'domains': domains,
        'early_killers': sorted(set(k for k in killers if k)),
        'oom_kills_since_boot': _count(_get(posture, 'oom_kills_since_boot'), field + '.oom_kills_since_boot'),
        'notes': _each(_get(posture, 'notes'), field + '.notes', _note),
        'not_evaluated': _each(_get(posture, 'not_evaluated'), field + '.not_evaluated', _not_evaluated),
    }


# -- the policy, the slab, the events --------------------------------------------------

def _drift_row(row, field):
    row = _mapping(row, field, required=True)
    return {'area': _text(_get(row, 'area'), field + '.area', NAME_CHARS),
            'item': _text(_get(row, 'item'), field + '.item'),
            'setting': _text(_get(row, 'setting'), field + '.setting', NAME_CHARS),
            'desired': _value(_get(row, 'desired'), field + '.desired'),
            'live': _value(_get(row, 'live'), field + '.live'),
            'status': _choice(_get(row, 'status'), field + '.status', DRIFT_STATUSES, required=True),
            'note': _text(_get(row, 'note'), field + '.note')}


def _drift(result):
    if 'settings' not in result:
        return None
    rows = [r for r in _each(_get(result, 'settings'), 'settings', _drift_row) if r['status'] != 'ok']
    return {'compliant': bool(_flag(_get(result, 'compliant'), 'compliant')), 'summary': _counts(_get(result, 'summary'), 'summary', True),
            'profile': _text(_get(result, 'profile'), 'profile', NAME_CHARS),
            'killer': _text(_get(result, 'killer'), 'killer', NAME_CHARS),
            'guards_fired': _each(_get(result, 'guards_fired'), 'guards_fired', lambda item, where: _text(item, where, NAME_CHARS, True)),
            'rows': rows}


def _cache(cache, field):
    cache = _mapping(cache, field, required=True)
    return {'name': _text(_get(cache, 'name'), field + '.name', NAME_CHARS),
            'size_kb': _number(_get(cache, 'size_kb'), field + '.size_kb', minimum=0),
            'reclaimable': _flag(_get(cache, 'reclaimable'), field + '.reclaimable'),
            'verdict': _text(_get(cache, 'verdict'), field + '.verdict', NAME_CHARS)}


def _slab(slab):
    slab = _mapping(slab, 'slab')
    if slab is None:
        return None
    unread = _get(slab, 'unread')
    return {'verdict': _text(_get(slab, 'verdict'), 'slab.verdict', NAME_CHARS),
            'flagged': bool(_flag(_get(slab, 'flagged'), 'slab.flagged')),
            'reasons': _each(_get(slab, 'reasons'), 'slab.reasons', lambda item, where: _text(item, where, required=True)),
            'sunreclaim_kb': _number(_get(slab, 'sunreclaim_kb'), 'slab.sunreclaim_kb', minimum=0),
            'sunreclaim_percent': _number(_get(slab, 'sunreclaim_percent'), 'slab.sunreclaim_percent', 0, 100),
            'rate_kb_per_min': _number(_get(slab, 'sunreclaim_rate_kb_per_min'), 'slab.sunreclaim_rate_kb_per_min'),
            'top_caches': _each(_get(slab, 'top_caches'), 'slab.top_caches', _cache)[:3],
            # One sentence (slab_leak) or several: kept as sentences.
            'unread': [unread] if isinstance(unread, str) and _text(unread, 'slab.unread') else _each(
                unread, 'slab.unread', lambda item, where: _text(item, where, required=True))}


def _kill(event, field):
    event = _mapping(event, field, required=True)
    victim = _get(event, 'victim')
    where = field + '.victim'
    if _absent(victim):
        victim, where = _get(event, 'oom_kill_task'), field + '.oom_kill_task'
    victim = _mapping(victim, where) or {}
    return {'timestamp': _text(_get(event, 'timestamp'), field + '.timestamp', NAME_CHARS),
            'uptime_s': _number(_get(event, 'uptime_s'), field + '.uptime_s', minimum=0),
            'cause': _text(_get(event, 'cause'), field + '.cause', NAME_CHARS),
            'victim': _text(_get(victim, 'comm'), where + '.comm', NAME_CHARS),
            'pid': _count(_get(victim, 'pid'), where + '.pid'),
            'cgroup': _text(_get(event, 'task_memcg'), field + '.task_memcg')
            or _text(_get(event, 'limit_memcg'), field + '.limit_memcg'),
            'advice': _text(_get(event, 'advice'), field + '.advice')}


def _events(events):
    events = _mapping(events, 'events')
    if events is None:
        return None
    items = _each(_get(events, 'events'), 'events.events', _kill)
    items.sort(key=lambda e: (e['timestamp'] or '', e['uptime_s'] or 0), reverse=True)
    summary = _mapping(_get(events, 'summary'), 'events.summary', True)
    total = _count(_get(summary, 'events'), 'events.summary.events')
    return {'total': len(items) if total is None else total,
            'by_cause': _counts(_get(summary, 'by_cause'), 'events.summary.by_cause'),
            'kill_loops': len(_list(_get(events, 'kill_loops'), 'events.kill_loops')),
            'early_kills': _count(_get(summary, 'early_kills'), 'events.summary.early_kills') or 0,
            'recent': items[:RECENT_KILLS],
            'notes': _each(_get(events, 'notes'), 'events.notes', _note)}


def _message(value, field, default):
    """A task's message: any length is cut for print; a non-text one is a broken result."""
    if _absent(value) or value == '':
        return default
    if not isinstance(value, str):
        raise Malformed(field, value, 'a text')
    return rt.cut_middle(value, MESSAGE_CHARS)


def host_entry(name, result):
    """One host of the report from its registered result (None when there is none).

    Whatever the result holds, this returns an entry: each part (policy, posture,
    slab, events) is read on its own, and a part that is not what oom_audit returns
    is left out and named in 'malformed'; the host is then 'broken'."""
    entry = {'name': str(name), 'status': 'ok', 'message': None, 'errors': {}, 'malformed': [], 'risk_score': None,
             'risk_level': None, 'findings': [], 'findings_by_severity': dict((s, 0) for s in SEVERITIES), 'basics': None,
             'drift': None, 'slab': None, 'events': None}
    if result is None:
        entry.update(status='no_result', message='no audit result (the host was not audited in this run)')
        return entry

    def part(read, *args):
        try:
            return read(*args)
        except Malformed as exc:
            entry['malformed'].append(str(exc))
            return None

    if not isinstance(result, dict) or not all(isinstance(k, str) for k in result):
        part(_mapping, result, 'result', True)
        return _broken(entry)
    flags = dict((key, part(_flag, _get(result, key), key)) for key in ('unreachable', 'failed', 'skipped'))
    if flags['unreachable']:
        entry.update(status='unreachable', message=part(_message, _get(result, 'msg'), 'msg', 'unreachable') or 'unreachable')
        return _broken(entry) if entry['malformed'] else entry
    parts = [key for key in ('settings', 'posture', 'slab', 'events') if key in result]
    if flags['failed'] and not parts or flags['skipped']:
        entry.update(status='failed',
                     message=part(_message, _get(result, 'msg'), 'msg', 'the audit task failed') or 'the audit task failed')
        return _broken(entry) if entry['malformed'] else entry
    errors = part(_mapping, _get(result, 'errors'), 'errors') or {}
    entry['errors'] = dict((key, part(_message, value, 'errors.' + rt.cut_middle(key, 60), 'failed') or 'failed')
                           for key, value in errors.items())
    if entry['errors'] or flags['failed']:
        entry['status'] = 'partial'
        entry['message'] = part(_message, _get(result, 'msg'), 'msg', None) or '; '.join(entry['errors'].values()) \
            or 'the audit task failed'
    if 'posture' in result:
        posture = part(read_posture, result['posture'])
        if posture:
            entry.update(risk_score=posture['risk_score'], risk_level=posture['risk_level'], basics=posture['basics'],
                         findings=[dict((k, f[k]) for k in ('id', 'severity', 'title', 'advice')) for f in posture['findings']])
            for finding in entry['findings']:
                entry['findings_by_severity'][finding['severity']] += 1
    entry['drift'] = part(_drift, result)
    entry['slab'] = part(_slab, _get(result, 'slab'))
    entry['events'] = part(_events, _get(result, 'events'))
    return _broken(entry) if entry['malformed'] else entry


def _broken(entry):
    problems = entry['malformed']
    entry['status'] = 'broken'
    entry['message'] = 'the audit result is not what oom_audit returns: %s%s' % (
        problems[0], ' (and %s)' % plural(len(problems) - 1, 'more problem') if len(problems) > 1 else '')
    return entry


def drifting(host):
    """Whether a report host's live values differ from its policy."""
    return host['drift'] is not None and host['drift']['summary'].get('drift', 0) > 0


def incomplete(host):
    """Whether files or units the policy needs are absent on a host (never hardened, or removed since)."""
    return host['drift'] is not None and host['drift']['summary'].get('missing', 0) > 0


def off_policy(host):
    """What the drift gate fails on: values that differ, or what the policy needs absent."""
    return drifting(host) or incomplete(host)


def build(results, generated_at, run_info=None):
    """The report document. results: [(host name, registered result or None)], in inventory order."""
    hosts = [host_entry(name, result) for name, result in results]
    by_status = dict((s, 0) for s in STATUSES)
    by_level = dict((level, 0) for level in LEVELS)
    by_severity = dict((s, 0) for s in SEVERITIES)
    finding_hosts = {}
    kills_by_cause = {}
    drift_hosts = incomplete_hosts = slab_flagged = kills = 0
    for host in hosts:
        by_status[host['status']] += 1
        if host['risk_level'] in by_level:
            by_level[host['risk_level']] += 1
        for severity, count in host['findings_by_severity'].items():
            by_severity[severity] += count
        for finding_id in set(f['id'] for f in host['findings']):
            finding_hosts[finding_id] = finding_hosts.get(finding_id, 0) + 1
        if drifting(host):
            drift_hosts += 1
        if incomplete(host):
            incomplete_hosts += 1
        if host['slab'] and host['slab']['flagged']:
            slab_flagged += 1
        if host['events']:
            kills += host['events']['total']
            for cause, count in host['events']['by_cause'].items():
                kills_by_cause[cause] = kills_by_cause.get(cause, 0) + count
    hosts.sort(key=lambda h: (h['status'] in NOT_AUDITED, -(h['risk_score'] or 0), h['name']))
    return {
        'schema_version': SCHEMA_VERSION,
        'generated_at': str(generated_at),
        'run': run_info or {},
        'summary': {
            'hosts': len(hosts), 'by_status': by_status, 'by_risk_level': by_level,
            'findings_by_severity': by_severity,
            'hosts_by_finding': dict(sorted(finding_hosts.items(), key=lambda kv: (-kv[1], kv[0]))),
            'hosts_drifting': drift_hosts, 'hosts_incomplete': incomplete_hosts,
            'hosts_no_policy': sum(1 for h in hosts if h['status'] == 'ok' and h['drift'] is None),
            'hosts_slab_flagged': slab_flagged,
            'oom_kills': kills, 'oom_kills_by_cause': dict(sorted(kills_by_cause.items(), key=lambda kv: (-kv[1], kv[0]))),
        },
        'hosts': hosts,
    }


# -- console text ----------------------------------------------------------------------

SUMMARY_HOSTS_LISTED = 10


def _names(hosts):
    names = [h['name'] for h in hosts[:SUMMARY_HOSTS_LISTED]]
    more = len(hosts) - len(names)
    return ', '.join(names) + (' and %s' % plural(more, 'more host') if more > 0 else '')


def summary_text(document):
    """The report's summary as lines to print (audit.yml prints them as they are)."""
    summary = document['summary']
    hosts = document['hosts']
    statuses = ', '.join('%d %s' % (summary['by_status'][s], STATUS_LABELS[s]) for s in STATUSES if summary['by_status'][s])
    lines = ['%s: %s' % (plural(summary['hosts'], 'host'), statuses or 'none')]
    levels = ', '.join('%s at %s risk' % (plural(summary['by_risk_level'][lvl], 'host'), lvl)
                       for lvl in LEVELS if summary['by_risk_level'][lvl])
    lines.append('OOM risk: %s' % (levels or 'no host has a posture in this report'))
    by_severity = summary['findings_by_severity']
    severities = ', '.join('%d %s' % (by_severity[s], s) for s in SEVERITIES if by_severity[s])
    lines.append('Findings: %s' % ('%s (%s)' % (severities, plural(sum(by_severity.values()), 'finding')) if severities else 'none'))
    lines.append('Policy: %s' % policy_text(hosts))
    flagged = [h for h in hosts if h['slab'] and h['slab']['flagged']]
    lines.append('Slab: %s' % ('%s flagged for unreclaimable slab (%s)' % (plural(len(flagged), 'host'), _names(flagged))
                               if flagged else 'no host flagged'))
    causes = ', '.join('%d %s' % (count, cause) for cause, count in summary['oom_kills_by_cause'].items())
    lines.append('OOM kills in the logs read: %s' % (
        '%d (%s)' % (summary['oom_kills'], causes) if causes else str(summary['oom_kills']) if summary['oom_kills'] else 'none'))
    down = [h for h in hosts if h['status'] != 'ok']
    for host in down[:SUMMARY_HOSTS_LISTED]:
        lines.append('%s (%s): %s' % (host['name'], STATUS_LABELS[host['status']], rt.cut_middle(host['message'] or '', 300)))
    if len(down) > SUMMARY_HOSTS_LISTED:
        lines.append('... and %s not fully audited (see the report)' % plural(len(down) - SUMMARY_HOSTS_LISTED, 'more host'))
    return lines


def policy_text(hosts):
    """The policy audit in one line: values that differ, what is absent, hosts without a policy."""
    parts = []
    drifted = [h for h in hosts if drifting(h)]
    absent = [h for h in hosts if incomplete(h)]
    unset = [h for h in hosts if h['status'] == 'ok' and h['drift'] is None]
    if drifted:
        parts.append('%s %s from the inventory\'s policy (%s)' % (
            plural(len(drifted), 'host'), 'drifts' if len(drifted) == 1 else 'drift', _names(drifted)))
    if absent:
        parts.append('%s %s files or units of the policy (never hardened, or removed since: %s)' % (
            plural(len(absent), 'host'), 'lacks' if len(absent) == 1 else 'lack', _names(absent)))
    if unset:
        parts.append('%s without a policy in the inventory (not compared)' % plural(len(unset), 'host'))
    return '; '.join(parts) if parts else 'every audited host is as its policy says'


def drift_text(document):
    """One line for the drift gate."""
    hosts = [h for h in document['hosts'] if off_policy(h)]
    return policy_text(hosts) if hosts else 'no host is off its policy'


# -- Prometheus textfile ------------------------------------------------------------

METRICS = (
    ('oomguard_audit_up', 'Whether the last oomguard fleet audit got a readable result from the host (1) or not (0).'),
    ('oomguard_audit_timestamp_seconds', 'When the fleet audit report was made, Unix time.'),
    ('oomguard_risk_score', 'OOM risk score of the host from its posture (0 = no findings).'),
    ('oomguard_findings', 'Posture findings on the host, by severity.'),
    ('oomguard_drift_settings', 'Settings of the inventory policy by status: drift (the live value differs) or missing '
                                '(a file or unit of the policy is absent).'),
    ('oomguard_slab_unreclaimable_percent', 'Unreclaimable slab (SUnreclaim) as a share of MemTotal.'),
    ('oomguard_slab_leak_flagged', 'Whether slab_leak flagged the host (1) or not (0).'),
    ('oomguard_oom_kills', 'Kernel OOM kills found in the host logs the audit read, by cause.'),
    ('oomguard_early_kills', 'Kills by the userspace early OOM killers found in the journal.'),
)


def prometheus(host, timestamp):
    """The textfile of one host entry (node_exporter's textfile collector format); every metric has a host label."""
    samples = dict((name, []) for name, dummy in METRICS)
    name = label(host['name'])
    up = host['status'] in ('ok', 'partial')
    samples['oomguard_audit_up'].append(('host="%s"' % name, 1 if up else 0))
    samples['oomguard_audit_timestamp_seconds'].append(('host="%s"' % name, timestamp))
    if host['risk_score'] is not None:
        samples['oomguard_risk_score'].append(('host="%s"' % name, host['risk_score']))
        for severity in SEVERITIES:
            samples['oomguard_findings'].append(('host="%s",severity="%s"' % (name, severity),
                                                 host['findings_by_severity'].get(severity, 0)))
    if host['drift'] is not None:
        summary = host['drift']['summary']
        samples['oomguard_drift_settings'].append(('host="%s",status="drift"' % name, summary.get('drift', 0)))
        samples['oomguard_drift_settings'].append(('host="%s",status="missing"' % name, summary.get('missing', 0)))
    if host['slab'] is not None:
        if host['slab']['sunreclaim_percent'] is not None:
            samples['oomguard_slab_unreclaimable_percent'].append(('host="%s"' % name, host['slab']['sunreclaim_percent']))
        samples['oomguard_slab_leak_flagged'].append(('host="%s"' % name, 1 if host['slab']['flagged'] else 0))
    if host['events'] is not None:
        for cause, count in sorted(host['events']['by_cause'].items()):
            samples['oomguard_oom_kills'].append(('host="%s",cause="%s"' % (name, label(cause)), count))
        samples['oomguard_early_kills'].append(('host="%s"' % name, host['events']['early_kills'] or 0))
    lines = []
    for metric, text in METRICS:
        if not samples[metric]:
            continue
        lines.append('# HELP %s %s' % (metric, text))
        lines.append('# TYPE %s gauge' % metric)
        for labels, value in samples[metric]:
            lines.append('%s{%s} %s' % (metric, labels, sample_text(value)))
    return '\n'.join(lines) + '\n'


SAFE_NAME_CHARS = frozenset('abcdefghijklmnopqrstuvwxyz0123456789._-')
NAME_KEPT = 100


def textfile_name(host_name):
    """A file name for a host's textfile (node_exporter reads *.prom), one per host name.

    A name of lower-case letters, digits, '.', '_' and '-' (at most 100) is kept as it
    is; any other name keeps its safe characters and gets '~' and a hash of the exact
    name.  '~' never appears in a kept name, so two host names never share a file, also
    on a case-insensitive file system (upper case is hashed), and the same name gives
    the same file on every run."""
    name = str(host_name)
    safe = ''.join(c if c in SAFE_NAME_CHARS else '_' for c in name)[:NAME_KEPT]
    if safe == name and name not in ('', '.', '..'):
        return 'oomguard-%s.prom' % safe
    digest = hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:16]
    return 'oomguard-%s~%s.prom' % (safe, digest)


def to_json(document):
    # Every value was checked to be JSON (finite numbers, text keys); allow_nan=False keeps it so.
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + '\n'
    # A lone surrogate (a non-UTF-8 byte Python kept, or a broken \ud800 escape in a result) cannot be
    # written as UTF-8: it becomes its JSON escape, which reads back as the same text.  Backslashes in
    # the strings are already doubled, so the escape cannot join one before it.
    return text.encode('utf-8', 'backslashreplace').decode('utf-8')
