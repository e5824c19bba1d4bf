# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shape a snapshot and its judgement into ``ansible_facts.oom_posture``.

Facts are kept compact: every cgroup of a container host would bloat each
fact cache entry, so only the cgroups that say something (a limit, OOM
counters, usage near the limit) are returned.  The full snapshot is there on
request (include_snapshot).
"""


MAX_FACT_CGROUPS = 50


def _notable_cgroups(cgroups):
    notable = []
    for cgroup in cgroups or []:
        limit = cgroup.get('effective_max_bytes')
        current = cgroup.get('current_bytes')
        entry = dict((k, cgroup.get(k)) for k in (
            'path', 'version', 'max_bytes', 'high_bytes', 'effective_max_bytes', 'limited_by',
            'current_bytes', 'oom_kills', 'ooms', 'failcnt', 'under_oom', 'oom_group') if k in cgroup)
        entry['usage_percent'] = round(100.0 * current / limit, 1) if limit and current is not None else None
        if limit or cgroup.get('high_bytes') or cgroup.get('oom_kills') or cgroup.get('ooms') \
                or cgroup.get('failcnt') or cgroup.get('under_oom'):
            notable.append(entry)
    notable.sort(key=lambda c: (-(c.get('oom_kills') or 0), -(c['usage_percent'] or 0), c['path']))
    return notable[:MAX_FACT_CGROUPS]


def posture_facts(snapshot, verdict, include_snapshot=False):
    """The oom_posture fact: the verdict plus the readings it rests on."""
    processes = snapshot.get('processes') or {}
    numa = snapshot.get('numa') or {}
    systemd = snapshot.get('systemd')
    facts = {
        'risk_score': verdict['risk_score'],
        'risk_level': verdict['risk_level'],
        'findings': verdict['findings'],
        'summary': verdict.get('summary', {}),
        'not_evaluated': verdict.get('not_evaluated', []),
        'cgroup_mode': snapshot['cgroup']['mode'],
        'memory_controller': (snapshot['cgroup'].get('memory_controller') or {}).get('version'),
        'kernel': snapshot['kernel'],
        'platform': snapshot.get('platform'),
        'memory': snapshot['memory'],
        'hugepages': snapshot.get('hugepages'),
        'pressure': snapshot.get('pressure'),
        'oom_kills_since_boot': (snapshot.get('vmstat') or {}).get('oom_kill'),
        'sysctl': snapshot['sysctl'],
        'thp': snapshot.get('thp'),
        'numa_nodes': [
            {'node': n['node'], 'cpus': n['cpus'],
             'mem_total_kb': n['memory_kb'].get('MemTotal'), 'mem_free_kb': n['memory_kb'].get('MemFree')}
            for n in numa.get('nodes', [])
        ],
        'zones': snapshot.get('zones'),
        'victims': processes.get('victims', []),
        'domains': snapshot.get('domains'),
        'what_if': snapshot.get('what_if'),
        'protected': processes.get('protected', []),
        'early_killers': processes.get('early_killers', []),
        'process_count': processes.get('count'),
        'cgroups': _notable_cgroups(snapshot.get('cgroups')),
        'cgroup_count': len(snapshot['cgroups']) if snapshot.get('cgroups') is not None else None,
        'systemd_units': len(systemd['units']) if systemd else None,
        'is_root': snapshot.get('is_root'),
        'notes': snapshot.get('notes', []),
    }
    if include_snapshot:
        facts['snapshot'] = snapshot
    return facts
