# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""harden: the three concerns in one call, on a writable copy of a captured tree (fake_host.CaptureHost).

The capture debian12-6.1-qemu-numa2 (a Debian 12 VM with two NUMA nodes)
holds /proc/sys/vm, the THP files, the cgroup tree and `systemctl show`;
every path option points into the copy, live writes go through
fake_host.Kernel, and restore must give the copy back byte for byte.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import early_oom as eo
from ansible_collections.oomguard.linux.plugins.module_utils import harden
from ansible_collections.oomguard.linux.plugins.module_utils import units_apply as ua
from ansible_collections.oomguard.linux.tests.unit import fake_host

NUMA2 = 'debian12-6.1-qemu-numa2'
LABELS = engine.Labels('h1')
# A sysctl, a running unit's limit and protection, THP: something of each concern to change.
REQUEST = {'profile': 'none', 'sysctl': {'vm.swappiness': 10}, 'thp': {'enabled': 'never'},
           'services': {'systemd-journald': {'memory_max': '256M', 'oom_score_adj': -900}},
           'protect_defaults': False, 'early_oom': {}}


@pytest.fixture(autouse=True)
def no_live_writes(monkeypatch):
    fake_host.refuse_live_writes(monkeypatch)
    # scan_cmdlines skips its own pid: this process's must not hide one of the tree's.
    monkeypatch.setattr(os, 'getpid', lambda: fake_host.PID_OUTSIDE_TREES)


@pytest.fixture
def numa2(tmp_path, captured_tree, monkeypatch):
    host = fake_host.CaptureHost(str(tmp_path / 'root'), captured_tree(NUMA2), labels=LABELS)
    # The copy's /etc/systemd/system stands for the real one: systemctl is asked to reload.
    for module in (ua, eo):
        monkeypatch.setitem(module.DEFAULT_PATHS, 'systemd_dir', host.sd)
    monkeypatch.setitem(eo.DEFAULT_PATHS, 'unit_dirs', [host.sd, host.path('lib/systemd/system')])
    return host


def _params(host, **options):
    params = dict(REQUEST, force=['thp_not_persistent'], paths={
        'sysctl_file': host.path('etc/sysctl.d/90-oomguard.conf'),
        'compaction_file': host.path('etc/sysctl.d/90-oomguard-compaction.conf'),
        'systemd_dir': host.sd, 'state_dir': host.state_dir,
        'earlyoom_defaults': host.path('etc/default/earlyoom'), 'oomd_conf_dir': host.path('etc/systemd/oomd.conf.d')})
    params.update(options)
    return params


def _apply(host, check_mode=False, **options):
    return harden.apply(_params(host, **options), host.host, LABELS, check_mode, run_command=host.systemctl,
                        systemctl='systemctl')


def test_every_problem_of_every_concern_at_once_and_nothing_written(numa2):
    before = fake_host.tree_state(numa2.root)
    with pytest.raises(engine.Refused) as raised:
        _apply(numa2, sysctl={'vm.swappiness': 500}, services={'nginx': {'memory_maxx': '1G'}},
               early_oom={'killer': 'nohang'})
    assert [p.id for p in raised.value.problems] == ['out_of_range', 'invalid_name', 'invalid_value']
    variables = [p.message.split(' ')[2] for p in raised.value.problems]
    assert variables == ["oomguard_sysctl['vm.swappiness']", "oomguard_services['nginx'][memory_maxx]:",
                         "oomguard_early_oom['killer']"]
    assert fake_host.tree_state(numa2.root) == before


def test_check_mode_predicts_each_concern_then_restore_gives_the_tree_back(numa2, monkeypatch):
    original = fake_host.tree_state(numa2.root)
    predicted = _apply(numa2, check_mode=True)
    assert fake_host.tree_state(numa2.root) == original
    kernel = fake_host.kernel(monkeypatch, numa2.root)
    real = _apply(numa2)
    for part in ('tunables', 'units', 'early_oom'):
        assert predicted[part]['files'] == real[part]['files'], part
        assert predicted[part].get('changes') == real[part].get('changes'), part
    assert real['changed'] and [c['key'] for c in real['tunables']['changes']][:1] == ['transparent_hugepage.enabled']
    assert ('/sys/fs/cgroup/system.slice/systemd-journald.service/memory.max', '268435456') in kernel.writes
    # One ledger for the three, each value and file recorded by its owner.
    owners = set(e['owner'] for e in numa2.ledger()['values'].values()) | \
        set(e['owner'] for e in numa2.ledger()['files'].values())
    assert owners == set(['kernel_tunables', 'oom_units'])
    assert _apply(numa2)['changed'] is False
    numa2.restore()
    assert fake_host.tree_state(numa2.root) == original


def test_the_audit_plans_with_the_same_params():
    params = {'profile': 'batch', 'sysctl': {'vm.swappiness': 5}, 'early_oom': {'killer': 'earlyoom'}, 'force': ['x'],
              'paths': {'state_dir': '/s', 'systemd_dir': '/d', 'sysctl_file': '/f'}}
    applied, audited = harden.concern_params(params), harden.concern_params(params, audit=True)
    assert applied['tunables']['unsupported'] == 'fail' and audited['tunables']['unsupported'] == 'skip'
    assert applied['early_oom']['validate_only'] is False and audited['early_oom']['validate_only'] is True
    for part in ('tunables', 'units', 'early_oom'):
        assert applied[part]['force'] == ['x']
    assert applied['units']['paths'] == {'state_dir': '/s', 'systemd_dir': '/d'}
    assert applied['tunables']['paths'] == {'state_dir': '/s', 'systemd_dir': '/d', 'sysctl_file': '/f'}
