# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_engine: problems, labels, file plans and diffs, systemctl, settle() and execute().

execute() runs here against files under tmp_path (the ledger, a file, a
"live" value that is a plain file), with a systemctl that records its calls:
the order of the contract is what is checked.  The concerns run it for real
in test_tunables_apply, test_units_apply and test_early_oom.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.tests.unit import fake_host

IS_ROOT = os.geteuid() == 0
# same_as() compares owners with root's; the files a test writes are the test user's.
needs_root = pytest.mark.skipif(not IS_ROOT, reason='the file specs are owned by root')


def test_split_forced():
    problems = [engine.Problem('panic_without_reboot', 'a', forcible=True),
                engine.Problem('min_free_above_5_percent', 'b', forcible=True),
                engine.Problem('out_of_range', 'c')]
    refusals, forced = engine.split_forced(problems, set(['panic_without_reboot', 'out_of_range']))
    assert [p.id for p in forced] == ['panic_without_reboot']
    assert [p.id for p in refusals] == ['min_free_above_5_percent', 'out_of_range']
    assert engine.split_forced([], set()) == ([], [])
    assert problems[0].as_dict() == {'id': 'panic_without_reboot', 'key': None, 'message': 'a', 'forcible': True}


def test_labels_name_the_inventory_variables():
    labels = engine.Labels('web1')
    assert labels.msg('x') == 'host web1: x'
    assert labels.var('sysctl') == 'oomguard_sysctl'
    assert labels.var('sysctl', 'vm.swappiness') == "oomguard_sysctl['vm.swappiness']"
    # The thp role carries the compaction keys in oomguard_thp.
    assert labels.var('compaction', 'schedule') == "oomguard_thp['compaction_schedule']"
    assert labels.var('services', 'nginx') == "oomguard_services['nginx']"
    assert labels.var('force') == 'oomguard_force'
    # A map overrides per option (a caller that is not a role).
    assert engine.Labels('db2', {'sysctl': 'sysctl'}).var('sysctl', 'vm.swappiness') == "sysctl['vm.swappiness']"
    assert engine.Labels('db2', {'compaction': 'compaction'}).var('compaction', 'method') == "compaction['method']"


def test_a_guard_names_its_id_and_how_to_force_it():
    problem = engine.guard(engine.Labels('web1'), 'unit_missing', 'x', 'nginx.service is not-found')
    assert problem.forcible and problem.key == 'x'
    assert problem.message == ("host web1: guard unit_missing: nginx.service is not-found; add 'unit_missing' to "
                               "oomguard_force to apply it anyway")


@needs_root
def test_plan_files(tmp_path):
    existing = str(tmp_path / 'existing.conf')
    ledger_mod.write_file(existing, 'a = 1\n', 0o644)
    link = str(tmp_path / 'wants' / 'x.service')
    ledger_mod.write_link(link, existing)
    files = {
        existing: {'type': 'file', 'mode': 0o644, 'content': 'a = 1\n'},               # the same
        str(tmp_path / 'new.conf'): {'type': 'file', 'mode': 0o644, 'content': 'b = 2\n'},
        link: {'type': 'link', 'target': existing},                                   # the same
        str(tmp_path / 'other-link'): {'type': 'link', 'target': existing},
        str(tmp_path / 'gone'): {'type': 'absent'},                                   # already absent
    }
    changes = engine.plan_files(files)
    assert [(c['path'], c['action'], c['before'], c['after']) for c in changes] == [
        (str(tmp_path / 'new.conf'), 'create', '', 'b = 2\n'),
        (str(tmp_path / 'other-link'), 'create', '', '-> %s\n' % existing)]
    files = {
        existing: {'type': 'file', 'mode': 0o600, 'content': 'a = 1\n'},               # mode differs
        link: {'type': 'absent'},
    }
    assert [(c['path'], c['action'], c['before']) for c in engine.plan_files(files)] == [
        (existing, 'update', 'a = 1\n'), (link, 'remove', '-> %s\n' % existing)]


def test_build_diff():
    diff = engine.build_diff([{'key': 'vm.swappiness', 'before': '60', 'after': '10'}],
                             [{'path': '/x', 'before': '', 'after': 'y\n'}])
    assert diff == [
        {'before_header': 'live kernel values', 'after_header': 'live kernel values',
         'before': 'vm.swappiness = 60\n', 'after': 'vm.swappiness = 10\n'},
        {'before_header': '/x', 'after_header': '/x', 'before': '', 'after': 'y\n'}]
    assert engine.build_diff([], []) == []


# -- systemd -----------------------------------------------------------------------------------

def _root(tmp_path, booted=True):
    if booted:
        os.makedirs(str(tmp_path / 'root' / 'run' / 'systemd' / 'system'))
    else:
        os.makedirs(str(tmp_path / 'root'))
    return procfs.HostRoot(str(tmp_path / 'root'))


def test_systemd_manages_only_a_booted_host_and_the_real_unit_directory(tmp_path):
    host = _root(tmp_path)
    systemctl = fake_host.Systemctl(active=['earlyoom.service'])
    assert engine.Systemd(host, systemctl, 'systemctl').manages
    # Unit files written to a test directory: systemd is not asked to act on them.
    assert not engine.Systemd(host, systemctl, 'systemctl', '/tmp/x', '/etc/systemd/system').manages
    assert not engine.Systemd(host).can_run
    systemd = engine.Systemd(host, systemctl, 'systemctl')
    assert systemd.state('earlyoom.service') == ('active', True)
    assert systemd.state('systemd-oomd.service') == ('inactive', False)
    bare = engine.Systemd(_root(tmp_path / 'bare', booted=False), systemctl, 'systemctl')
    assert not bare.booted and not bare.manages


def test_a_failing_systemctl_names_the_verb_and_the_units(tmp_path):
    systemd = engine.Systemd(_root(tmp_path), fake_host.Systemctl(refused=['show']), 'systemctl')
    with pytest.raises(engine.ApplyError) as raised:
        systemd.run('show', '--property=Id,LoadState', 'a.service', 'b.service')
    assert str(raised.value) == 'systemctl show a.service b.service failed (rc 1): Failed to show: Access denied'


# -- settle and execute ----------------------------------------------------------------------------

def _plan(tmp_path, problems=()):
    live = str(tmp_path / 'live' / 'vm.swappiness')
    os.makedirs(os.path.dirname(live))
    with open(live, 'w') as handle:
        handle.write('60\n')
    conf = str(tmp_path / 'etc' / 'sysctl.d' / '90-x.conf')
    plan = engine.Plan(problems)
    plan.values = [{'key': 'vm.swappiness', 'kind': 'sysctl', 'path': live, 'before': '60', 'after': '10',
                    'cause': 'requested'}]
    plan.files = {conf: {'type': 'file', 'mode': 0o644, 'content': 'vm.swappiness = 10\n'}}
    plan.file_changes = engine.plan_files(plan.files)
    plan.result = {'changed': True, 'changes': plan.values}
    return plan, live, conf


def _read(change):
    now = engine.canonical(engine.read_live(change['path']))
    return now, now == change['after']


@pytest.mark.parametrize('params, check_mode, go', [
    ({}, False, True), ({}, True, False), ({'validate_only': True}, False, False)])
def test_settle(tmp_path, params, check_mode, go):
    forced = engine.Problem('pattern_too_broad', 'host h: guard pattern_too_broad: ...', forcible=True)
    plan, dummy, dummy2 = _plan(tmp_path, [forced])
    result, proceed = engine.settle(plan, dict(params, force=['pattern_too_broad']), check_mode)
    assert proceed is go
    assert result['warnings'] == [forced.message] and result['forced'] == [forced.as_dict()]
    assert result['changed'] is not params.get('validate_only', False)


def test_settle_refuses_every_problem_at_once(tmp_path):
    problems = [engine.Problem('out_of_range', 'one'), engine.Problem('unit_missing', 'two', forcible=True)]
    plan, dummy, dummy2 = _plan(tmp_path, problems)
    with pytest.raises(engine.Refused) as raised:
        engine.settle(plan, {}, False)
    assert raised.value.problems == problems and str(raised.value) == 'one\ntwo'


def test_execute_records_the_ledger_first_then_files_units_and_values(tmp_path):
    plan, live, conf = _plan(tmp_path)
    plan.reload = True
    plan.stop_first = ['old.timer']
    plan.after_reload = [('restart', 'new.timer')]
    plan.units_record = {'new.timer': False}
    state_dir = str(tmp_path / 'state')
    systemctl = fake_host.Systemctl()
    seen = []

    def write(path, text):
        # By the time the first live value is written, the ledger and the file are there.
        with open(os.path.join(state_dir, 'ledger.json')) as handle:
            seen.append(json.load(handle))
        assert os.path.exists(conf)
        engine.write_live(path, text)
    engine.execute(plan, state_dir, 'test', engine.Systemd(_root(tmp_path), systemctl, 'systemctl'),
                   engine.Labels('h'), write, _read)
    assert systemctl.calls == [['stop', 'old.timer'], ['daemon-reload'], ['restart', 'new.timer']]
    ledger = seen[0]
    assert ledger['values'] == {'vm.swappiness': {'kind': 'sysctl', 'path': live, 'original': '60', 'owner': 'test'}}
    assert ledger['files'][conf]['type'] == 'absent'
    assert ledger['units'] == {'new.timer': {'was_active': False, 'owner': 'test'}}
    assert engine.read_live(live) == '10\n'


def test_execute_fails_on_a_value_the_host_did_not_keep(tmp_path):
    plan, live, conf = _plan(tmp_path)
    state_dir = str(tmp_path / 'state')
    with pytest.raises(engine.ApplyError) as raised:
        engine.execute(plan, state_dir, 'test', engine.Systemd(_root(tmp_path)), engine.Labels('h'),
                       lambda path, text: None, _read)
    assert str(raised.value) == (
        'host h: after writing, the kernel reports: vm.swappiness is 60, expected 10; the originals are in '
        '%s/ledger.json, playbooks/restore.yml puts them back' % state_dir)
    # The ledger was saved before anything else, so restore can put the file back.
    assert ledger_mod.Ledger.load(state_dir).data['files'][conf]['type'] == 'absent'
