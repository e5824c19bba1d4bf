# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oom_audit's judge (module_utils/audit.py) against a host root of copies of this
machine's files (fake_host.MachineHost): the audit reports what the
hardening would change, writes nothing, and after the hardening reports no drift."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import audit, posture, procfs
from ansible_collections.oomguard.linux.plugins.module_utils import tunables as tn
from ansible_collections.oomguard.linux.tests.unit import fake_host
from ansible_collections.oomguard.linux.tests.unit.trees import tree_state

LABELS = engine.Labels('web1')
# A profile with THP and sysctls, plus a key of each kind given by hand (one spelt with a slash).
LATENCY = {'profile': 'latency_sensitive', 'thp': {'khugepaged_defrag': 0}, 'sysctl': {'vm/vfs_cache_pressure': 150}}
needs_thp = pytest.mark.skipif(not all(os.path.exists('/' + rel) for rel in tn.THP_PATHS.values()),
                               reason='this kernel has no transparent huge pages to copy')
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='the file specs are owned by root')


@pytest.fixture
def tree(tmp_path):
    return fake_host.MachineHost(str(tmp_path / 'root'), labels=LABELS)


@pytest.fixture
def kernel(tree, monkeypatch):
    return fake_host.kernel(monkeypatch, tree.root)


def audit_params(tree, **options):
    paths = dict(tree.params()['paths'])
    paths.update({'earlyoom_defaults': tree.path('etc/default/earlyoom'), 'oomd_conf_dir': tree.path('etc/systemd/oomd.conf.d')})
    params = {'profile': 'none', 'sysctl': {}, 'thp': {}, 'services': {}, 'cgroups': {}, 'processes': [],
              'protect_defaults': False, 'early_oom': {}, 'force': [], 'paths': paths,
              'sysctl_dirs': tree.params()['sysctl_dirs']}
    params.update(options)
    return params


def rows_by_item(result, area=None):
    return dict((r['item'], r) for r in result['settings'] if area is None or r['area'] == area)


@needs_thp
@needs_root
def test_the_audit_reports_what_hardening_changes_then_no_drift(tree, kernel):
    before = tree_state(tree.root)
    found = audit.run(audit_params(tree, **LATENCY), tree.host, LABELS)
    # Read only: not a byte of the tree changed, no live write was tried.
    assert tree_state(tree.root) == before and kernel.writes == []
    plan = tree.apply(check_mode=True, **LATENCY)
    requested = dict((c['key'], c) for c in plan['changes'] if c['cause'] == 'requested')
    values = dict((r['item'], r) for r in found['settings'] if r['setting'] == 'value')
    assert sorted(values) == sorted(plan['desired'])
    for key, row in values.items():
        assert row['desired'] == plan['desired'][key]
        if key in requested:
            assert row['status'] == 'drift' and row['live'] == requested[key]['before'], row
        else:
            assert row['status'] == 'ok' and row['live'] == row['desired'], row
    files = dict((r['item'], r) for r in found['settings'] if r['setting'] == 'file')
    assert sorted(files) == sorted(f['path'] for f in plan['files'])
    assert all(r['status'] == 'missing' and r['note'] == 'absent' for r in files.values())
    assert found['compliant'] is False
    # Values that differ are drift; the collection's files that are absent are missing: told apart.
    assert found['drift'] == found['summary']['drift'] == len(requested)
    assert found['missing'] == found['summary']['missing'] == len(files)

    tree.apply(**LATENCY)
    again = audit.run(audit_params(tree, **LATENCY), tree.host, LABELS)
    assert again['compliant'] is True and again['drift'] == 0
    assert all(r['status'] == 'ok' for r in again['settings']), [r for r in again['settings'] if r['status'] != 'ok']
    assert again['summary']['ok'] == len(again['settings']) == len(values) + 1      # the killer: none, as wanted


@needs_thp
@needs_root
def test_a_value_changed_by_hand_after_hardening_is_drift(tree, kernel):
    tree.apply(**LATENCY)
    tree.write('proc/sys/vm/swappiness', '60\n')
    found = audit.run(audit_params(tree, **LATENCY), tree.host, LABELS)
    drift = [r for r in found['settings'] if r['status'] != 'ok']
    assert drift == [{'area': 'sysctl', 'item': 'vm.swappiness', 'setting': 'value', 'desired': '10', 'live': '60',
                      'status': 'drift'}]
    assert found['summary']['drift'] == 1 and found['compliant'] is False


@needs_root
def test_a_guard_does_not_stop_the_audit_and_is_named(tree, kernel):
    # panic_on_oom = 1 with kernel.panic = 0 would hang the host: harden refuses it; the audit reports it.
    tree.write('proc/sys/kernel/panic', '0\n')
    tree.write('proc/sys/vm/panic_on_oom', '0\n')
    found = audit.run(audit_params(tree, sysctl={'vm.panic_on_oom': 1}), tree.host, LABELS)
    assert 'panic_without_reboot' in found['guards_fired']
    assert rows_by_item(found)['vm.panic_on_oom']['status'] == 'drift'


def test_an_invalid_inventory_fails_the_audit(tree):
    with pytest.raises(engine.Refused) as info:
        audit.run(audit_params(tree, sysctl={'vm.swappiness': 500}), tree.host, LABELS)
    assert "oomguard_sysctl['vm.swappiness'] = 500" in str(info.value)


def test_a_killer_on_a_host_without_systemd_is_unsupported(tmp_path):
    bare = fake_host.MachineHost(str(tmp_path / 'bare'), systemd=False, labels=LABELS)
    found = audit.run(audit_params(bare, early_oom={'killer': 'earlyoom'}), bare.host, LABELS)
    early = [r for r in found['settings'] if r['area'] == 'early_oom']
    assert [(r['item'], r['status']) for r in early] == [('no_systemd', 'unsupported')]
    assert 'this host does not run systemd' in early[0]['note']
    assert found['summary']['unsupported'] == 1 and found['killer'] is None


# -- the posture part takes the inventory's oomguard_posture -------------------------------------

def test_posture_thresholds_reach_the_fleet_audit():
    """On this machine's live posture (read-only): the inventory's numbers are the ones judged."""
    base = {'policy': False, 'posture': True}
    plain, errors = audit.run_parts(base, procfs.HostRoot('/'), engine.Labels('web1'))
    assert errors == {} and len(plain['posture']['victims']) <= audit.AUDIT_VICTIMS
    # A threshold every host crosses (MemAvailable below 100 % of MemTotal) shows up as a finding.
    tuned, errors = audit.run_parts(dict(base, posture_options={
        'thresholds': {'memavailable_low_percent': 100, 'memavailable_critical_percent': 0}, 'victims_count': 1}),
        procfs.HostRoot('/'), engine.Labels('web1'))
    assert errors == {}
    found = dict((f['id'], f) for f in tuned['posture']['findings'])
    assert found['memavailable_low']['evidence']['threshold_percent'] == 100
    assert len(tuned['posture']['victims']) <= 1


def test_a_bad_posture_option_fails_that_part_naming_host_and_variable():
    result, errors = audit.run_parts({'policy': False, 'posture': True, 'posture_options': {
        'thresholds': {'memavailable_low_percent': 'ten', 'no_such': 1}, 'victims_count': -1, 'colour': 'red'}},
        procfs.HostRoot('/'), engine.Labels('web1'))
    assert 'posture' not in result
    assert errors['posture'].splitlines() == [
        "host web1: oomguard_posture['colour']: unknown key; allowed: thresholds, victims_count",
        "host web1: oomguard_posture['victims_count'] = -1; allowed: an integer 0..1000",
        "host web1: oomguard_posture['thresholds'][memavailable_low_percent] = 'ten'; allowed: a number >= 0 (default 10)",
        "host web1: oomguard_posture['thresholds'][no_such]: unknown setting; allowed: " + ', '.join(
            sorted(posture.DEFAULT_THRESHOLDS)),
    ]


def test_an_events_option_the_audit_does_not_take_fails_the_events_part_only():
    result, errors = audit.run_parts({'policy': False, 'posture': False, 'events': {'max_event': 3, 'since': '1d'}},
                                     procfs.HostRoot('/'), engine.Labels('web1'))
    assert 'events' not in result
    assert errors == {'events': "host web1: oomguard_audit_events['max_event']: unknown option; allowed: max_events, "
                                "max_read_bytes, min_loop_kills, since, timeout_s"}


def test_the_events_read_limits_reach_oom_events():
    result, errors = audit.run_parts({'policy': False, 'posture': False, 'events': {'max_read_bytes': 0}},
                                     procfs.HostRoot('/'), engine.Labels('web1'))
    assert 'max_read_bytes' in errors['events'] and 'allowed' in errors['events'], errors


def test_a_unit_setting_the_hosts_systemd_lacks_is_unsupported_not_drift(tmp_path, captured_tree):
    # The Debian 11 VM's capture: systemd 247 has no ManagedOOMPreference= (248).
    d11 = fake_host.CaptureHost(str(tmp_path / 'd11'), captured_tree('debian11-5.10-qemu-cgroupv2'), labels=LABELS)
    before = tree_state(d11.root)
    services = {'ssh': {'managed_oom_preference': 'avoid', 'oom_score_adj': -500}}
    paths = {'systemd_dir': d11.sd, 'state_dir': d11.state_dir, 'sysctl_file': d11.path('etc/sysctl.d/90-oomguard.conf'),
             'compaction_file': d11.path('etc/sysctl.d/90-oomguard-compaction.conf'),
             'earlyoom_defaults': d11.path('etc/default/earlyoom'), 'oomd_conf_dir': d11.path('etc/systemd/oomd.conf.d')}
    params = {'profile': 'none', 'sysctl': {}, 'thp': {}, 'services': services, 'cgroups': {}, 'processes': [],
              'protect_defaults': False, 'early_oom': {}, 'force': [], 'paths': paths,
              'sysctl_dirs': ['/etc/sysctl.d', '/usr/lib/sysctl.d']}
    found = audit.run(params, d11.host, LABELS, run_command=d11.systemctl, systemctl='systemctl')
    rows = dict(((r['item'], r['setting']), r) for r in found['settings'] if r['area'] == 'unit')
    assert rows[('ssh.service', 'ManagedOOMPreference')]['status'] == 'unsupported'
    assert rows[('ssh.service', 'ManagedOOMPreference')]['note'] == 'needs systemd 248; this host has 247'
    assert rows[('ssh.service', 'OOMScoreAdjust')]['status'] == 'missing'
    assert 'unsupported_systemd' in found['guards_fired']
    assert found['summary']['unsupported'] == 1
    assert tree_state(d11.root) == before
