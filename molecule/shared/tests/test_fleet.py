# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet audit (playbooks/audit.yml, issue 7) on a real VM.

It runs last (conftest orders it), after the other tests made their OOM kills,
the way an operator runs it: ansible-playbook oomguard.linux.audit from the
controller, over the scenario's inventory (the VM, with the variables that
hardened it) plus a host whose SSH port refuses. The report must:

* list the VM as audited and the refused host as unreachable;
* find no drift on the VM, hardened from the same variables;
* count the kills the verify step made, by the causes the scenario expects;
* agree in its Prometheus textfiles (parsed with prometheus_client).

Then one value is changed by hand on the VM: the audit reports exactly that
drift with both values, and oomguard_audit_fail_on_drift fails the run after
writing the report. The value is put back.
"""

import json
import os
import re
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

# In every profile (1); 0 for a moment harms nothing on the VM.
DRIFT_KEY = 'vm.oom_dump_tasks'
REFUSED = 'refused-ssh'


def audit(workdir, name, extra_vars=None):
    """Run the fleet audit; return (return code, output, report dir)."""
    report = os.path.join(workdir, name)
    extra = os.path.join(workdir, 'refused.yml')
    with open(extra, 'w') as handle:
        # Port 1 of the loopback refuses at once: an unreachable host that costs nothing.
        handle.write('all:\n  hosts:\n    %s:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n'
                     '      ansible_connection: ssh\n' % REFUSED)
    argv = ['ansible-playbook', '-i', os.environ['MOLECULE_INVENTORY_FILE'], '-i', extra, 'oomguard.linux.audit',
            '-e', 'oomguard_report_dir=%s' % report]
    for key, value in (extra_vars or {}).items():
        argv += ['-e', '%s=%s' % (key, value)]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=900, check=False)
    return proc.returncode, proc.stdout, report


def load(report):
    with open(os.path.join(report, 'oom-fleet-report.json')) as handle:
        return json.load(handle)


def entry(document, name):
    return [h for h in document['hosts'] if h['name'] == name][0]


def metrics(report, name):
    with open(os.path.join(report, 'textfiles', 'oomguard-%s.prom' % name)) as handle:
        families = list(text_string_to_metric_families(handle.read()))
    return dict(((s.name, tuple(sorted(s.labels.items()))), s.value) for f in families for s in f.samples)


@pytest.fixture(scope='module')
def vm_name(host):
    return host.backend.get_hostname()


@pytest.fixture(scope='module')
def fleet(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('fleet'))
    rc, output, report = audit(workdir, 'clean')
    assert rc == 0, output[-6000:]
    return workdir, report, load(report)


def test_the_report_lists_the_vm_and_the_unreachable_host(fleet, vm_name):
    dummy, report, document = fleet
    by_name = dict((h['name'], h) for h in document['hosts'])
    assert set(by_name) == {vm_name, REFUSED}
    assert document['summary']['by_status']['ok'] == 1 and document['summary']['by_status']['unreachable'] == 1
    vm = by_name[vm_name]
    assert vm['status'] == 'ok' and vm['errors'] == {}, (vm['message'], vm['errors'])
    assert 0 <= vm['risk_score'] <= 100 and vm['risk_level']
    assert vm['slab']['verdict'] in ('ok', 'high') and vm['slab']['top_caches']
    assert by_name[REFUSED]['message']
    with open(os.path.join(report, 'oom-fleet-report.html')) as handle:
        page = handle.read()
    assert vm_name in page and REFUSED in page


def test_the_hardened_vm_does_not_drift(fleet, vm_name):
    vm = entry(fleet[2], vm_name)
    assert vm['drift']['compliant'] is True, vm['drift']['rows']
    # What this kernel cannot have is listed as unsupported, never as drift.
    assert [r for r in vm['drift']['rows'] if r['status'] != 'unsupported'] == []
    assert vm['drift']['summary']['ok'] > 10
    assert fleet[2]['summary']['hosts_drifting'] == 0


def test_the_report_counts_the_kills_of_this_verify_step(fleet, vm_name, scenario):
    vm = entry(fleet[2], vm_name)
    expected = set(case['cause'] for case in scenario['ooms'] + scenario.get('unit_ooms', []))
    assert expected <= set(vm['events']['by_cause']), vm['events']['by_cause']
    assert vm['events']['total'] >= len(scenario['ooms']) + len(scenario.get('unit_ooms', []))
    assert vm['events']['recent'] and all(kill['cause'] for kill in vm['events']['recent'])
    if scenario.get('early_kill'):
        assert vm['events']['early_kills'] >= 1


def test_the_textfiles_agree_with_the_report(fleet, vm_name):
    dummy, report, document = fleet
    vm = entry(document, vm_name)
    samples = metrics(report, vm_name)
    label = (('host', vm_name),)
    assert samples[('oomguard_audit_up', label)] == 1
    assert samples[('oomguard_risk_score', label)] == vm['risk_score']
    assert samples[('oomguard_drift_settings', (('host', vm_name), ('status', 'drift')))] == 0
    assert samples[('oomguard_drift_settings', (('host', vm_name), ('status', 'missing')))] == 0
    for cause, count in vm['events']['by_cause'].items():
        assert samples[('oomguard_oom_kills', (('cause', cause), ('host', vm_name)))] == count
    assert metrics(report, REFUSED)[('oomguard_audit_up', (('host', REFUSED),))] == 0


def test_a_value_changed_by_hand_is_the_one_drift_and_fails_the_gate(host, fleet, vm_name):
    workdir = fleet[0]
    assert host.check_output('sysctl -n %s' % DRIFT_KEY) == '1'
    host.run_expect([0], 'sysctl -q -w %s=0' % DRIFT_KEY)
    try:
        rc, output, report = audit(workdir, 'drift', {'oomguard_audit_fail_on_drift': 'true'})
    finally:
        host.run_expect([0], 'sysctl -q -w %s=1' % DRIFT_KEY)
    # The gate failed the run, and only after the report was written.
    assert rc != 0, output[-4000:]
    assert re.search(r"1 host drifts from the inventory's policy \(%s\); see " % re.escape(vm_name), output), output[-4000:]
    vm = entry(load(report), vm_name)
    assert vm['status'] == 'ok'
    rows = vm['drift']['rows']
    assert [(r['area'], r['item'], r['status']) for r in rows] == [('sysctl', DRIFT_KEY, 'drift')], rows
    assert str(rows[0]['desired']) == '1' and str(rows[0]['live']) == '0', rows
    assert metrics(report, vm_name)[('oomguard_drift_settings', (('host', vm_name), ('status', 'drift')))] == 1
    assert metrics(report, vm_name)[('oomguard_drift_settings', (('host', vm_name), ('status', 'missing')))] == 0
