# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of the fleet report written by runme.sh (argument: the report directory)."""

import json
import os
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

report = sys.argv[1]
with open(os.path.join(report, 'oom-fleet-report.json')) as handle:
    document = json.load(handle)
summary = document['summary']
assert summary['hosts'] == 101, summary
assert summary['by_status']['ok'] == 100 and summary['by_status']['unreachable'] == 1, summary['by_status']
refused = [h for h in document['hosts'] if h['status'] == 'unreachable']
assert refused[0]['name'] == 'refused-ssh' and 'port 1' in refused[0]['message'], refused
assert document['hosts'][-1]['name'] == 'refused-ssh'
audited = [h for h in document['hosts'] if h['status'] == 'ok']
# The same machine 100 times, but read at 100 moments.  What its settings decide is the
# same on every host; what live load decides (pressure, free memory, fragmentation, cgroup
# usage, who would die next) may move between two reads, and the score with it.  The
# score must still follow from the findings: the same findings, the same score.
SETTINGS_FINDINGS = {
    'panic_without_reboot', 'panic_on_cgroup_oom', 'panic_on_oom_enabled', 'overcommit_ratio_and_kbytes',
    'min_free_kbytes_too_high', 'min_free_kbytes_below_default', 'oom_dump_tasks_disabled',
    'oom_kill_allocating_task', 'thp_always', 'thp_defrag_always', 'no_swap', 'highmem_large_ram',
}
assert all(h['risk_score'] is not None for h in audited)
ids = dict((h['name'], frozenset(f['id'] for f in h['findings'])) for h in audited)
settings = set(found & SETTINGS_FINDINGS for found in ids.values())
assert len(settings) == 1, settings
scores = {}
for host in audited:
    scores.setdefault(ids[host['name']], set()).add(host['risk_score'])
assert all(len(found) == 1 for found in scores.values()), scores
assert all(h['slab'] is not None and h['events'] is not None for h in audited)
# fleet-001..050 have no policy in the inventory: nothing is compared, nothing drifts.
unset = [h for h in audited if int(h['name'].split('-')[1]) <= 50]
assert len(unset) == 50 and all(h['drift'] is None for h in unset), [h['name'] for h in unset if h['drift']]
assert summary['hosts_no_policy'] == 50, summary
# fleet-051..100 have one (the default profile): compared, and the same verdict for each alias.
with_policy = [h for h in audited if int(h['name'].split('-')[1]) > 50]
assert all(h['drift'] is not None for h in with_policy)
assert len(set((h['drift']['summary']['drift'], h['drift']['summary']['missing']) for h in with_policy)) == 1
assert summary['hosts_drifting'] == sum(1 for h in with_policy if h['drift']['summary']['drift'])
assert summary['hosts_incomplete'] == sum(1 for h in with_policy if h['drift']['summary']['missing'])
assert sum(summary['by_risk_level'].values()) == 100

# Each host's basics are this machine's, read here independently of the collection.
with open('/proc/meminfo') as handle:
    meminfo = dict((line.split(':')[0], int(line.split()[1])) for line in handle if line.split()[1].isdigit())
with open('/proc/mounts') as handle:
    fstypes = set(line.split()[2] for line in handle)
mode = {(True, True): 'hybrid', (False, True): 'v2', (True, False): 'v1'}.get(('cgroup' in fstypes, 'cgroup2' in fstypes), 'none')
for host in audited:
    basics = host['basics']
    assert basics['kernel_release'] == os.uname().release, basics
    assert basics['mem_total_kb'] == meminfo['MemTotal'] and basics['swap_total_kb'] == meminfo['SwapTotal'], basics
    assert 0 < basics['mem_available_kb'] <= meminfo['MemTotal'], basics
    assert basics['cgroup_mode'] == mode, (basics['cgroup_mode'], mode)
    assert (basics['psi'] is not None) == os.path.exists('/proc/pressure/memory'), basics['psi']
    victim = basics['next_victim']
    assert victim['pid'] > 0 and victim['comm'] and victim['oom_score'] >= 0 and victim['rss_kb'] > 0, victim
assert document['hosts'][-1]['basics'] is None

textfiles = sorted(os.listdir(os.path.join(report, 'textfiles')))
assert len(textfiles) == 101, textfiles
up = {}
for name in textfiles:
    with open(os.path.join(report, 'textfiles', name)) as handle:
        for family in text_string_to_metric_families(handle.read()):
            for sample in family.samples:
                if sample.name == 'oomguard_audit_up':
                    up[sample.labels['host']] = sample.value
assert sum(up.values()) == 100 and up['refused-ssh'] == 0, up

with open(os.path.join(report, 'oom-fleet-report.html')) as handle:
    page = handle.read()
# The first page of rows is written as HTML (refused-ssh, last, is not on it); every host is in the page's data.
assert page.count('<tr data-level=') == 50 and 'refused-ssh' not in page.split('id="fleet-data"')[0], page.count('<tr data-level=')
data = json.loads(re.search(r'<script type="application/json" id="fleet-data">(.*?)</script>', page, re.S).group(1))
assert len(data['rows']) == 101 and '"refused-ssh"' in json.dumps(data)
print('fleet report: %d hosts, %d textfiles, HTML %d bytes; %d distinct finding sets (settings: %s); kernel %s, cgroup %s'
      % (summary['hosts'], len(textfiles), len(page), len(scores), ', '.join(sorted(settings.pop())) or 'none',
         os.uname().release, mode))
