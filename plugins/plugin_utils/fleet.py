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


import json


SCHEMA_VERSION = 1
SEVERITIES = ('critical', 'high', 'medium', 'low', 'info')
LEVELS = ('critical', 'high', 'medium', 'low')
STATUSES = ('ok', 'partial', 'failed', 'unreachable', 'no_result')
RECENT_KILLS = 10


def _findings(posture):
    findings = []
    for finding in (posture or {}).get('findings') or []:
        if not isinstance(finding, dict):
            continue
        findings.append({'id': finding.get('id'), 'severity': finding.get('severity'), 'title': finding.get('title'),
                         'advice': finding.get('advice')})
    order = dict((s, i) for i, s in enumerate(SEVERITIES))
    findings.sort(key=lambda f: (order.get(f['severity'], len(order)), f['id'] or ''))
    return findings


def _drift(result):
    if 'settings' not in result:
        return None
    rows = [r for r in result.get('settings') or [] if isinstance(r, dict) and r.get('status') != 'ok']
    return {'compliant': bool(result.get('compliant')), 'summary': result.get('summary') or {},
            'profile': result.get('profile'), 'killer': result.get('killer'), 'guards_fired': result.get('guards_fired') or [],
            'rows': rows}


def _slab(slab):
    if not isinstance(slab, dict):
        return None
    top = [{'name': c.get('name'), 'size_kb': c.get('size_kb'), 'reclaimable': c.get('reclaimable'), 'verdict': c.get('verdict')}
           for c in (slab.get('top_caches') or [])[:3]]
    return {'verdict': slab.get('verdict'), 'flagged': bool(slab.get('flagged')), 'reasons': slab.get('reasons') or [],
            'sunreclaim_kb': slab.get('sunreclaim_kb'), 'sunreclaim_percent': slab.get('sunreclaim_percent'),
            'rate_kb_per_min': slab.get('sunreclaim_rate_kb_per_min'), 'top_caches': top, 'unread': slab.get('unread') or []}


def _victim(event):
    victim = event.get('victim') or event.get('oom_kill_task') or {}
    return victim if isinstance(victim, dict) else {}


def _events(events):
    if not isinstance(events, dict):
        return None
    items = [e for e in events.get('events') or [] if isinstance(e, dict)]
    recent = []
    for event in sorted(items, key=lambda e: (e.get('timestamp') or '', e.get('uptime_s') or 0), reverse=True)[:RECENT_KILLS]:
        victim = _victim(event)
        recent.append({'timestamp': event.get('timestamp'), 'uptime_s': event.get('uptime_s'), 'cause': event.get('cause'),
                       'victim': victim.get('comm'), 'pid': victim.get('pid'),
                       'cgroup': event.get('task_memcg') or event.get('limit_memcg'), 'advice': event.get('advice')})
    summary = events.get('summary') or {}
    return {'total': summary.get('events', len(items)), 'by_cause': summary.get('by_cause') or {},
            'kill_loops': len(events.get('kill_loops') or []), 'early_kills': summary.get('early_kills', 0),
            'recent': recent, 'notes': events.get('notes') or []}


def host_entry(name, result):
    """One host of the report from its registered result (None when there is none)."""
    entry = {'name': name, 'status': 'ok', 'message': None, 'errors': {}, 'risk_score': None, 'risk_level': None,
             'findings': [], 'findings_by_severity': dict((s, 0) for s in SEVERITIES), 'drift': None, 'slab': None,
             'events': None}
    if not isinstance(result, dict):
        entry.update(status='no_result', message='no audit result (the host was not audited in this run)')
        return entry
    if result.get('unreachable'):
        entry.update(status='unreachable', message=str(result.get('msg') or 'unreachable'))
        return entry
    parts = [key for key in ('settings', 'posture', 'slab', 'events') if key in result]
    if result.get('failed') and not parts or result.get('skipped'):
        entry.update(status='failed', message=str(result.get('msg') or 'the audit task failed'))
        return entry
    errors = result.get('errors') or {}
    entry['errors'] = dict((str(k), str(v)) for k, v in errors.items()) if isinstance(errors, dict) else {}
    if entry['errors'] or result.get('failed'):
        entry['status'] = 'partial'
        entry['message'] = str(result.get('msg') or '; '.join(entry['errors'].values()))
    posture = result.get('posture') if isinstance(result.get('posture'), dict) else None
    if posture:
        entry['risk_score'] = posture.get('risk_score')
        entry['risk_level'] = posture.get('risk_level')
        entry['findings'] = _findings(posture)
        for finding in entry['findings']:
            if finding['severity'] in entry['findings_by_severity']:
                entry['findings_by_severity'][finding['severity']] += 1
    entry['drift'] = _drift(result)
    entry['slab'] = _slab(result.get('slab'))
    entry['events'] = _events(result.get('events'))
    return entry


def drifting(host):
    """Whether a report host's policy audit found drift or missing settings."""
    return host['drift'] is not None and not host['drift']['compliant']


def build(results, generated_at, run_info=None):
    """The report document. results: [(host name, registered result or None)], in inventory order."""
    hosts = [host_entry(name, result) for name, result in results]
    by_status = dict((s, 0) for s in STATUSES)
    by_level = dict((level, 0) for level in LEVELS)
    by_severity = dict((s, 0) for s in SEVERITIES)
    finding_hosts = {}
    kills_by_cause = {}
    drift_hosts = slab_flagged = kills = 0
    for host in hosts:
        by_status[host['status']] += 1
        if host['risk_level'] in by_level:
            by_level[host['risk_level']] += 1
        for severity, count in host['findings_by_severity'].items():
            by_severity[severity] += count
        for finding in host['findings']:
            finding_hosts[finding['id']] = finding_hosts.get(finding['id'], 0) + 1
        if drifting(host):
            drift_hosts += 1
        if host['slab'] and host['slab']['flagged']:
            slab_flagged += 1
        if host['events']:
            kills += host['events']['total'] or 0
            for cause, count in host['events']['by_cause'].items():
                kills_by_cause[cause] = kills_by_cause.get(cause, 0) + count
    hosts.sort(key=lambda h: (h['status'] in ('failed', 'unreachable', 'no_result'), -(h['risk_score'] or 0), h['name']))
    return {
        'schema_version': SCHEMA_VERSION,
        'generated_at': generated_at,
        'run': run_info or {},
        'summary': {
            'hosts': len(hosts), 'by_status': by_status, 'by_risk_level': by_level,
            'findings_by_severity': by_severity,
            'hosts_by_finding': dict(sorted(finding_hosts.items(), key=lambda kv: (-kv[1], kv[0]))),
            'hosts_drifting': drift_hosts, 'hosts_slab_flagged': slab_flagged,
            'oom_kills': kills, 'oom_kills_by_cause': dict(sorted(kills_by_cause.items(), key=lambda kv: (-kv[1], kv[0]))),
        },
        'hosts': hosts,
    }


# -- Prometheus textfile ------------------------------------------------------------

METRICS = (
    ('oomguard_audit_up', 'Whether the last oomguard fleet audit got a result from the host (1) or not (0).'),
    ('oomguard_audit_timestamp_seconds', 'When the fleet audit report was made, Unix time.'),
    ('oomguard_risk_score', 'OOM risk score of the host from its posture (0 = no findings).'),
    ('oomguard_findings', 'Posture findings on the host, by severity.'),
    ('oomguard_drift_settings', 'Settings that drift from or miss the inventory policy.'),
    ('oomguard_slab_unreclaimable_percent', 'Unreclaimable slab (SUnreclaim) as a share of MemTotal.'),
    ('oomguard_slab_leak_flagged', 'Whether slab_leak flagged the host (1) or not (0).'),
    ('oomguard_oom_kills', 'Kernel OOM kills found in the host logs the audit read, by cause.'),
    ('oomguard_early_kills', 'Kills by the userspace early OOM killers found in the journal.'),
)


def _label(value):
    return str(value).replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')


def prometheus(host, timestamp):
    """The textfile of one host entry (node_exporter's textfile collector format); every metric has a host label."""
    samples = dict((name, []) for name, dummy in METRICS)
    name = _label(host['name'])
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
        samples['oomguard_drift_settings'].append(('host="%s"' % name, summary.get('drift', 0) + summary.get('missing', 0)))
    if host['slab'] is not None:
        if host['slab']['sunreclaim_percent'] is not None:
            samples['oomguard_slab_unreclaimable_percent'].append(('host="%s"' % name, host['slab']['sunreclaim_percent']))
        samples['oomguard_slab_leak_flagged'].append(('host="%s"' % name, 1 if host['slab']['flagged'] else 0))
    if host['events'] is not None:
        for cause, count in sorted(host['events']['by_cause'].items()):
            samples['oomguard_oom_kills'].append(('host="%s",cause="%s"' % (name, _label(cause)), count))
        samples['oomguard_early_kills'].append(('host="%s"' % name, host['events']['early_kills'] or 0))
    lines = []
    for metric, text in METRICS:
        if not samples[metric]:
            continue
        lines.append('# HELP %s %s' % (metric, text))
        lines.append('# TYPE %s gauge' % metric)
        for labels, value in samples[metric]:
            lines.append('%s{%s} %s' % (metric, labels, _number(value)))
    return '\n'.join(lines) + '\n'


def _number(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def textfile_name(host_name):
    """A file name for a host's textfile: node_exporter reads *.prom."""
    safe = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in str(host_name))
    return 'oomguard-%s.prom' % safe


def to_json(document):
    return json.dumps(document, indent=2, sort_keys=True, default=str) + '\n'
