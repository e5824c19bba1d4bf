# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of the fleet report written by runme.sh (argument: the report directory)."""

import json
import os
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
# The same machine 100 times: one risk score, one set of findings.
assert len(set(h['risk_score'] for h in audited)) == 1 and audited[0]['risk_score'] is not None
assert all(h['drift'] is not None and h['slab'] is not None and h['events'] is not None for h in audited)
assert sum(summary['by_risk_level'].values()) == 100

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
assert page.count('<tr data-level=') == 101 and 'refused-ssh' in page
print('fleet report: %d hosts, %d textfiles, HTML %d bytes' % (summary['hosts'], len(textfiles), len(page)))
