# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""units_apply: judge() on captured trees (data in units_cases.yml), then
apply() and restore end to end in a temporary copy of a captured tree.

The host is always a captured tree (tests/unit/fixtures/trees): its cgroup
layout, memory.current, NUMA meminfo, cgroup.procs, /proc/<pid>/cmdline and
oom_score_adj are a real machine's.  `systemctl show` is answered from the
capture's own .capture/systemctl-show.txt.  judge() only reads, so the judge
cases read the session's extracted trees; a case that changes a file
(host_files) and every apply test works on a copy under tmp_path.

Where the live values go.  units_apply addresses cgroup and /proc files by
their absolute path ('/sys/fs/cgroup/...', '/proc/<pid>/oom_score_adj', built
from the mount table) and reads and writes them through host.path(), so with
a copy of a tree as the host root they land in the copy.  The `kernel`
fixture (fake_host.Kernel) records every write and refuses one outside the
copy; without it, a live write fails the test.  Drop-ins, the ledger and
every other file go to path options inside tmp_path.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import errno
import os
import re
import shutil
import stat

import pytest
import yaml

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import cgroups as cg
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import schema
from ansible_collections.oomguard.linux.plugins.module_utils import unit_settings as us
from ansible_collections.oomguard.linux.plugins.module_utils import units_apply as ua
from ansible_collections.oomguard.linux.tests.unit import fake_host, trees

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'units_cases.yml')) as _handle:
    CASES = yaml.safe_load(_handle)['cases']
LABELS = engine.Labels('h1', {'services': 'oomguard_services', 'cgroups': 'oomguard_cgroups',
                              'processes': 'oomguard_processes', 'force': 'oomguard_force'})
NUMA2 = 'debian12-6.1-qemu-numa2'
V1 = 'debian12-6.1-qemu-cgroupv1'
HYBRID_NO_SYSTEMD = 'host-6.18-hybrid-processapi'
PID_OUTSIDE_TREES = fake_host.PID_OUTSIDE_TREES
Systemctl = fake_host.Systemctl
SystemdHostRoot = fake_host.SystemdHostRoot
_write = fake_host.write_file
MANAGED = '# Managed by oomguard.linux; local edits are overwritten.\n'


@pytest.fixture(autouse=True)
def no_live_writes(monkeypatch):
    fake_host.refuse_live_writes(monkeypatch)


@pytest.fixture(autouse=True)
def no_default_paths(tmp_path, monkeypatch):
    """A path option a test forgets lands in tmp_path, never in /etc or /var."""
    unused = str(tmp_path / 'defaults-never-used')
    monkeypatch.setattr(ua, 'DEFAULT_PATHS', {'systemd_dir': unused + '/etc/systemd/system',
                                              'state_dir': unused + '/var/lib/oomguard'})
    yield
    assert not os.path.exists(unused), 'a default path was used'


@pytest.fixture(autouse=True)
def pid_outside_trees(monkeypatch):
    monkeypatch.setattr(os, 'getpid', lambda: PID_OUTSIDE_TREES)


def _params(case_params, systemd_dir, state_dir):
    params = copy.deepcopy(case_params)
    params.setdefault('scopes', list(ua.SCOPES))
    params.setdefault('protect_defaults', False)
    params['paths'] = {'systemd_dir': systemd_dir, 'state_dir': state_dir}
    return params


def run_case(case, tmp_path, captured_tree):
    tree = captured_tree(case.get('tree', NUMA2))
    root = tree
    if case.get('host_files'):
        root = str(tmp_path / 'root')
        shutil.copytree(tree, root, symlinks=True)
        for rel, text in case['host_files'].items():
            _write(os.path.join(root, rel), text)
    systemd_dir = str(tmp_path / 'systemd')
    os.makedirs(systemd_dir)
    for rel, text in (case.get('existing') or {}).items():
        _write(os.path.join(systemd_dir, rel), text)
    systemd = case.get('systemd', True)
    host = SystemdHostRoot(root) if systemd else procfs.HostRoot(root)
    params = _params(case['params'], systemd_dir, str(tmp_path / 'state'))
    live = ua.read_base(host, params, engine.Systemd(host, Systemctl(tree) if systemd else None,
                                                     'systemctl' if systemd else None))
    assert live.systemd is systemd
    for key, value in (case.get('live') or {}).items():
        if key == 'units':
            for unit, state in value.items():
                live.units[unit] = dict(live.units.get(unit) or {}, **state)
        else:
            setattr(live, key, value)
    if case.get('extra_cmdlines'):
        ua.scan_cmdlines(host, live)
        extra = case['extra_cmdlines']
        for pid in range(extra['first_pid'], extra['first_pid'] + extra['count']):
            live.cmdlines[pid] = extra['text']
    ua.read_details(host, live, params)
    plan = ua.judge(params, live, LABELS)
    assert not os.path.exists(str(tmp_path / 'state')), 'judge wrote its state'
    return plan, systemd_dir


def _case_params():
    for case in CASES:
        marks = []
        if case.get('xfail'):
            marks.append(pytest.mark.xfail(strict=True, reason=case['xfail'], raises=AssertionError))
        yield pytest.param(case, id=case['name'], marks=marks)


def _changes(changes, cause):
    for change in changes:
        assert change['cause'] == cause, change
        assert change['kind'] == ('proc' if change['path'].startswith('/proc/') else 'cgroup'), change
    return [[c['key'], c['path'], c['before'], c['after']] for c in changes]


@pytest.mark.parametrize('case', list(_case_params()))
def test_judge(case, tmp_path, captured_tree):
    plan, systemd_dir = run_case(case, tmp_path, captured_tree)
    expected = case['problems']
    assert [p.id for p in plan.problems] == [e[0] for e in expected], [p.message for p in plan.problems]
    for problem, want in zip(plan.problems, expected):
        assert problem.message.startswith('host h1: '), problem.message
        assert re.search(want[1], problem.message), problem.message
        assert problem.forcible is (want[2] if len(want) > 2 else False), problem.message
        if problem.forcible:
            assert problem.key and problem.key in problem.message
    if 'force' in case:
        refusals, forced = engine.split_forced(plan.problems, set(case['force']))
        assert [p.id for p in refusals] == case['refused']
        assert [p.id for p in forced] == case['forced']
    if 'files' in case:
        assert plan.files == dict(
            (os.path.join(systemd_dir, rel), {'type': 'absent'} if text is None
             else {'type': 'file', 'content': text, 'mode': 0o644})
            for rel, text in case['files'].items())
    if 'dropins' in case:
        assert plan.dropins == case['dropins']
    assert _changes(plan.values, 'requested') == case.get('values', [])
    assert _changes(plan.unit_values, 'systemd') == case.get('unit_values', [])
    assert plan.unmatched == case.get('unmatched', [])


@pytest.mark.parametrize('entry, message', [
    ({'memory_max': '2GB'}, r"\[memory_max\] = '2GB'; allowed: a size like 512M"),
    ({'allowed_memory_nodes': 'all'}, r"\[allowed_memory_nodes\] = 'all'; allowed: a node list like 0, 0-1 or 0,2"),
])
def test_an_invalid_value_of_a_running_unit_is_a_problem(entry, message, tmp_path, captured_tree):
    # A running unit's value is parsed again for its cgroup: a value that
    # validation refused must stay a refusal, not become a traceback.
    plan, dummy = run_case({'params': {'services': {'ssh': entry}}}, tmp_path, captured_tree)
    assert [p.id for p in plan.problems] == ['invalid_value']
    assert re.search(message, plan.problems[0].message)


def _hand_live():
    """A Live built by hand: judge() takes every fact from it (it is given no host to read)."""
    live = ua.Live()
    live.layout = {'mode': 'v2', 'v1_mounts': {}, 'v2_mount': '/sys/fs/cgroup', 'v2_controllers': ['cpuset', 'memory'],
                   'memory_controller': {'version': 2, 'mount': '/sys/fs/cgroup'},
                   'cpuset_controller': {'version': 2, 'mount': '/sys/fs/cgroup'}}
    live.mem_total_bytes = 8 << 30
    live.numa_nodes = [0, 1]
    live.node_free_bytes = {0: 64 << 20, 1: 4 << 30}
    live.systemd = True
    live.units = {'db.service': {'load': 'loaded', 'active': 'active', 'cgroup': '/system.slice/db.service',
                                 'main_pid': 4242}}
    live.cgroup_text = {'/sys/fs/cgroup/system.slice/db.service/cpuset.mems': '0-1',
                        '/sys/fs/cgroup/system.slice/db.service/memory.max': 'max'}
    live.usage_bytes = {'/system.slice/db.service': 1 << 30}
    live.node_usage_bytes = {'/system.slice/db.service': {0: 512 << 20, 1: 512 << 20}}
    live.procs = {'/system.slice/db.service': [4242, 4243]}
    live.oom_score_adj = {4242: 0, 4243: -1000}
    return live


@pytest.mark.parametrize('nodes, problems, cpuset_after', [
    (0, ['nodes_without_room'], '0'),
    ('1', [], '1'),
    ('0-1', [], None),
])
def test_judge_on_a_live_built_by_hand(nodes, problems, cpuset_after, tmp_path):
    params = _params({'services': {'db': {'allowed_memory_nodes': nodes, 'memory_max': '2G', 'oom_score_adj': -500}}},
                     str(tmp_path / 'systemd'), str(tmp_path / 'state'))
    plan = ua.judge(params, _hand_live(), LABELS)
    assert [p.id for p in plan.problems] == problems
    if problems:
        assert plan.problems[0].message == (
            "host h1: guard nodes_without_room: oomguard_services['db'][allowed_memory_nodes] = 0: node(s) 0 have "
            "64 MiB free, and the cgroup has 512 MiB elsewhere that would have to fit there; add "
            "'nodes_without_room' to oomguard_force to apply it anyway")
    cpuset = [['db.service cpuset.mems', '/sys/fs/cgroup/system.slice/db.service/cpuset.mems', '0-1', cpuset_after]]
    assert _changes(plan.unit_values, 'systemd') == (cpuset if cpuset_after else []) + [
        ['db.service memory.max', '/sys/fs/cgroup/system.slice/db.service/memory.max', 'max', '2147483648']]
    # The inventory's value, whichever way: 4243 was better protected, and is set to -500 too.
    assert _changes(plan.values, 'requested') == [
        ['oom_score_adj db.service pid 4242', '/proc/4242/oom_score_adj', '0', '-500'],
        ['oom_score_adj db.service pid 4243', '/proc/4243/oom_score_adj', '-1000', '-500']]
    assert sorted(os.path.relpath(p, str(tmp_path / 'systemd')) for p in plan.files) == [
        'db.service.d/90-oomguard-cpuset.conf', 'db.service.d/90-oomguard-limits.conf',
        'db.service.d/90-oomguard-protect.conf']


# -- the pieces ---------------------------------------------------------------------------------

@pytest.mark.parametrize('nodes, text', [
    ([0, 1, 3], '0-1,3'), ([3, 1, 0, 1], '0-1,3'), ([0], '0'), ([0, 2, 4], '0,2,4'), ([0, 1, 2, 3], '0-3'),
    ([1, 2, 5, 6, 7, 9], '1-2,5-7,9'), ([], '')])
def test_to_kernel_list(nodes, text):
    assert ua.to_kernel_list(nodes) == text
    if nodes:
        assert schema.node_list(text) == sorted(set(nodes))


@pytest.mark.parametrize('setting, value, version, page, nodes, text', [
    ('memory_max', None, 2, 4096, None, 'max'),
    ('memory_high', None, 2, 4096, None, 'max'),
    ('memory_max', None, 1, 4096, None, '9223372036854771712'),
    ('memory_max', 4096, 2, 4096, None, '4096'),
    ('memory_max', 4097, 2, 4096, None, '4096'),
    ('memory_max', 8191, 1, 4096, None, '4096'),
    ('memory_low', 4095, 2, 4096, None, '0'),
    ('memory_swap_max', 0, 2, 4096, None, '0'),
    ('memory_max', 100000, 2, 65536, None, '65536'),
    ('cpuset_mems', None, 2, 4096, [1, 0, 3], '0-1,3'),
])
def test_expected_cgroup_text(setting, value, version, page, nodes, text):
    assert ua.expected_cgroup_text(setting, value, version, page, nodes) == text


def test_v1_no_limit_is_page_counter_max_in_pages():
    # PAGE_COUNTER_MAX = LONG_MAX / PAGE_SIZE pages on 64-bit, shown in bytes.
    assert int(ua.V1_NO_LIMIT) == (2 ** 63 - 1) // 4096 * 4096


@pytest.mark.parametrize('name, setting, path', [
    (NUMA2, 'memory_max', '/sys/fs/cgroup/system.slice/db.service/memory.max'),
    (NUMA2, 'memory_swap_max', '/sys/fs/cgroup/system.slice/db.service/memory.swap.max'),
    (NUMA2, 'cpuset_mems', '/sys/fs/cgroup/system.slice/db.service/cpuset.mems'),
    (V1, 'memory_max', '/sys/fs/cgroup/memory/system.slice/db.service/memory.limit_in_bytes'),
    (V1, 'memory_high', None),
    (V1, 'cpuset_mems', '/sys/fs/cgroup/cpuset/system.slice/db.service/cpuset.mems'),
    (HYBRID_NO_SYSTEMD, 'memory_max', '/sys/fs/cgroup/memory/system.slice/db.service/memory.limit_in_bytes'),
])
def test_cgroup_file_on_captured_layouts(name, setting, path, captured_tree):
    live = ua.Live()
    live.layout = cg.read_layout(procfs.HostRoot(captured_tree(name)))
    for rel in ('/system.slice/db.service', 'system.slice/db.service/'):
        assert ua.cgroup_file(live, rel, setting) == path


def test_cgroup_file_without_the_controller():
    live = ua.Live()
    assert live.layout == {'mode': 'none'}
    assert ua.cgroup_file(live, 'machine/db', 'memory_max') is None
    assert ua.cgroup_dir(live, 'machine/db', 'cpuset_mems') is None


def test_dropin_path():
    assert ua.dropin_path('/etc/systemd/system/', 'ssh.service', 'limits') == \
        '/etc/systemd/system/ssh.service.d/90-oomguard-limits.conf'
    assert ua.dropin_path('/x', 'batch.slice', 'cpuset') == '/x/batch.slice.d/90-oomguard-cpuset.conf'
    assert set(ua.KEY_SCOPE) == set(us.PROPERTIES)


@pytest.mark.parametrize('now, after, ok', [
    ('100', '100', True), ('8192', '4096', True), ('0', '4096', True), ('12288', '4096', False),
    ('max', '4096', False), ('max', 'max', True), ('0-1', '0-1', True), ('0', '0-1', False)])
def test_close_enough(now, after, ok):
    assert ua._close_enough(now, after, 4096) is ok


# -- reading the host ------------------------------------------------------------------------------

def test_read_live_from_a_captured_tree(captured_tree):
    tree = captured_tree(NUMA2)
    expected = trees.expected(NUMA2)
    systemctl = Systemctl(tree)
    params = {'scopes': list(ua.SCOPES), 'protect_defaults': True,
              'services': {'ssh': {}, 'postgresql': {}, 'batch.slice': {}, 'bad name!': {}}}
    live = ua.read_base(SystemdHostRoot(tree), params, engine.Systemd(SystemdHostRoot(tree), systemctl, 'systemctl'))
    assert live.systemd is True
    assert live.layout == cg.read_layout(procfs.HostRoot(tree))
    assert live.mem_total_bytes == expected['mem_total_kb'] * 1024
    assert live.page_bytes == 4096
    assert live.numa_nodes == list(range(expected['numa_nodes'])) == [0, 1]
    assert live.node_free_bytes == {0: 890364 * 1024, 1: 963952 * 1024}
    # One show call for every unit named (and the defaults); not the one that is no unit name.
    assert systemctl.calls == [['show', '--property=Id,LoadState,ActiveState,ControlGroup,MainPID', 'batch.slice',
                                'postgresql.service', 'ssh.service', 'sshd.service']]
    ssh = expected['units']['ssh.service']
    assert live.units == {
        'batch.slice': {'load': 'not-found', 'active': 'inactive', 'cgroup': None, 'main_pid': None},
        'postgresql.service': {'load': 'not-found', 'active': 'inactive', 'cgroup': None, 'main_pid': None},
        'ssh.service': {'load': 'loaded', 'active': ssh['active_state'], 'cgroup': ssh['control_group'],
                        'main_pid': ssh['main_pid']},
        'sshd.service': {'load': 'loaded', 'active': ssh['active_state'], 'cgroup': ssh['control_group'],
                         'main_pid': ssh['main_pid']},
    }


def test_read_live_without_systemd_asks_nothing(captured_tree):
    tree = captured_tree(NUMA2)
    systemctl = Systemctl(tree)
    host = procfs.HostRoot(tree)
    live = ua.read_base(host, {'scopes': list(ua.SCOPES), 'protect_defaults': True, 'services': {'ssh': {}}},
                        engine.Systemd(host, systemctl, 'systemctl'))
    assert live.systemd is False and live.units == {} and systemctl.calls == []


def test_a_failing_systemctl_show_is_an_apply_error(captured_tree):
    # The capture of a host whose PID 1 is not systemd, with systemctl installed.
    tree = captured_tree(HYBRID_NO_SYSTEMD)
    with pytest.raises(engine.ApplyError) as raised:
        host = SystemdHostRoot(tree)
        ua.read_base(host, {'scopes': ['limits'], 'services': {'db': {}}}, engine.Systemd(host, Systemctl(tree), 'systemctl'))
    assert str(raised.value) == ("systemctl show db.service failed (rc 1): System has not been booted with systemd as init system "
                                 "(PID 1). Can't operate.\nFailed to connect to bus: Host is down")


def test_cgroup_dir_reads_usage_node_usage_and_processes(tmp_path, captured_tree):
    root = str(tmp_path / 'root')
    shutil.copytree(captured_tree(NUMA2), root, symlinks=True)
    _write(root + '/sys/fs/cgroup/system.slice/ssh.service/memory.numa_stat',
           'anon N0=4096 N1=8192\nfile N0=1 N1=2\nkernel_stack N0=10 N1=20\nshmem N0=0 N1=0\n'
           'file_mapped N0=1000 N1=1000\npagetables N0=5 N1=5\n')
    host = procfs.HostRoot(root)
    live = ua.read_base(host, {'scopes': ['limits']}, engine.Systemd(host))
    ua._read_cgroup_dir(host, live, '/system.slice/ssh.service')
    assert live.usage_bytes == {'/system.slice/ssh.service': 6877184}
    assert live.node_usage_bytes == {'/system.slice/ssh.service': {0: 4107, 1: 8214}}
    assert live.procs == {'/system.slice/ssh.service': [298]}
    v1 = procfs.HostRoot(captured_tree(V1))
    live = ua.read_base(v1, {'scopes': ['limits']}, engine.Systemd(v1))
    ua._read_cgroup_dir(v1, live, '/system.slice/ssh.service')
    # v1: usage_in_bytes, no per-node usage, processes from the cgroup2 (unified) tree of the hybrid layout.
    assert live.usage_bytes == {'/system.slice/ssh.service': 6881280}
    assert live.node_usage_bytes == {'/system.slice/ssh.service': {}}
    assert live.procs == {'/system.slice/ssh.service': [292]}


def test_scan_cmdlines_skips_pid_1_kernel_threads_and_itself(captured_tree, monkeypatch):
    host = procfs.HostRoot(captured_tree(NUMA2))
    live = ua.Live()
    ua.scan_cmdlines(host, live)
    assert sorted(live.cmdlines) == [203, 221, 255, 259, 291, 296, 298]
    assert live.cmdlines[203] == '/lib/systemd/systemd-journald'
    monkeypatch.setattr(os, 'getpid', lambda: 298)
    live = ua.Live()
    ua.scan_cmdlines(host, live)
    assert 298 not in live.cmdlines and 203 in live.cmdlines


# -- apply() and restore in a copy of a captured tree -----------------------------------------------


tree_state = trees.tree_state


@pytest.fixture
def numa2(tmp_path, captured_tree):
    return fake_host.CaptureHost(str(tmp_path / 'root'), captured_tree(NUMA2), labels=LABELS)


@pytest.fixture
def kernel(numa2, monkeypatch):
    return fake_host.kernel(monkeypatch, numa2.root)


REQUEST = {
    'services': {'ssh': {'memory_high': '512M'}, 'systemd-journald': {'memory_max': '256M', 'oom_score_adj': -900}},
    'cgroups': {'system.slice/dbus.service': {'memory_max': '64M'}},
    'processes': [{'match': 'agetty', 'oom_score_adj': 500}],
}
# What this module writes itself (cause requested), in plan order.
REQUESTED = [
    ('/proc/203/oom_score_adj', '-900'),
    ('/proc/291/oom_score_adj', '500'),
    ('/proc/296/oom_score_adj', '500'),
    ('/sys/fs/cgroup/system.slice/dbus.service/memory.max', '67108864'),
]
# What systemd writes on daemon-reload (cause systemd), when apply() manages the units.
BY_SYSTEMD = [
    ('/sys/fs/cgroup/system.slice/ssh.service/memory.high', '536870912'),
    ('/sys/fs/cgroup/system.slice/systemd-journald.service/memory.max', '268435456'),
]


def _dropins(h):
    return [{'path': h.sd + '/ssh.service.d/90-oomguard-limits.conf', 'action': 'create'},
            {'path': h.sd + '/systemd-journald.service.d/90-oomguard-limits.conf', 'action': 'create'},
            {'path': h.sd + '/systemd-journald.service.d/90-oomguard-protect.conf', 'action': 'create'}]


def test_check_mode_predicts_the_run_and_writes_nothing(numa2, kernel):
    before = tree_state(numa2.root)
    predicted = numa2.apply(check_mode=True, **REQUEST)
    assert tree_state(numa2.root) == before and kernel.writes == []
    real = numa2.apply(**REQUEST)
    assert predicted['changed'] is real['changed'] is True
    for key in ('changes', 'files', 'dropins', 'forced', 'unmatched', 'cgroup_mode', 'ledger', 'diff', 'warnings'):
        assert predicted[key] == real[key], key
    assert [(c['path'], c['after']) for c in real['changes']] == REQUESTED
    assert real['files'] == _dropins(numa2)
    assert real['cgroup_mode'] == 'v2' and real['unmatched'] == [] and real['forced'] == []
    assert real['dropins'] == {'ssh.service': {'limits': {'MemoryHigh': '512M'}},
                               'systemd-journald.service': {'limits': {'MemoryMax': '256M'},
                                                            'protect': {'OOMScoreAdjust': '-900'}}}
    assert real['diff'][0]['before'] == (
        'oom_score_adj systemd-journald.service pid 203 = -250\n'
        'oom_score_adj pid 291 (/sbin/agetty -o -p -- \\u --noclear - linux) = 0\n'
        'oom_score_adj pid 296 (/sbin/agetty -o -p -- \\u --keep-baud 115200,57600,38400,9600) = 0\n'
        'system.slice/dbus.service memory.max = max\n')


def test_the_run_writes_drop_ins_values_and_the_ledger(numa2, kernel):
    numa2.apply(**REQUEST)
    # Not /etc/systemd/system: the units are not reloaded, systemd's part is left to it.
    assert [c for c in numa2.systemctl.calls if c[0] != 'show'] == []
    assert kernel.writes == REQUESTED
    assert numa2.read('proc/203/oom_score_adj') == '-900\n'
    assert numa2.read('proc/298/oom_score_adj') == '-1000\n'
    assert numa2.read('proc/291/oom_score_adj') == numa2.read('proc/296/oom_score_adj') == '500\n'
    assert numa2.read('sys/fs/cgroup/system.slice/dbus.service/memory.max') == '67108864\n'
    assert numa2.read('sys/fs/cgroup/system.slice/ssh.service/memory.high') == 'max\n'
    assert numa2.read('etc/systemd/system/ssh.service.d/90-oomguard-limits.conf') == \
        MANAGED + '[Service]\nMemoryHigh=512M\n'
    assert numa2.read('etc/systemd/system/systemd-journald.service.d/90-oomguard-limits.conf') == \
        MANAGED + '[Service]\nMemoryMax=256M\n'
    assert numa2.read('etc/systemd/system/systemd-journald.service.d/90-oomguard-protect.conf') == \
        MANAGED + '[Service]\nOOMScoreAdjust=-900\n'
    for change in _dropins(numa2):
        assert stat.S_IMODE(os.stat(change['path']).st_mode) == 0o644
    ledger = numa2.ledger()
    # Each process's start time (field 22 of the capture's /proc/PID/stat) is recorded with its original.
    starts = dict((pid, ledger_mod.process_starttime(numa2.read('proc/%d/stat' % pid))) for pid in (203, 291, 296))
    assert all(isinstance(start, int) for start in starts.values()), starts
    assert ledger['values'] == {
        '/proc/203/oom_score_adj': {'kind': 'proc', 'path': '/proc/203/oom_score_adj', 'original': '-250',
                                    'owner': 'oom_units', 'starttime': starts[203]},
        '/proc/291/oom_score_adj': {'kind': 'proc', 'path': '/proc/291/oom_score_adj', 'original': '0',
                                    'owner': 'oom_units', 'starttime': starts[291]},
        '/proc/296/oom_score_adj': {'kind': 'proc', 'path': '/proc/296/oom_score_adj', 'original': '0',
                                    'owner': 'oom_units', 'starttime': starts[296]},
        'system.slice/dbus.service memory.max': {'kind': 'cgroup',
                                                 'path': '/sys/fs/cgroup/system.slice/dbus.service/memory.max',
                                                 'original': 'max', 'owner': 'oom_units'},
    }
    assert ledger['files'] == dict((c['path'], {'type': 'absent', 'owner': 'oom_units'}) for c in _dropins(numa2))
    # The capture has no /etc: every directory up to the drop-ins' is new.
    assert ledger['dirs'] == [numa2.path('etc'), numa2.path('etc/systemd'), numa2.sd, numa2.sd + '/ssh.service.d',
                              numa2.sd + '/systemd-journald.service.d']


def test_a_second_run_changes_nothing(numa2, kernel):
    numa2.apply(**REQUEST)
    state = tree_state(numa2.root)
    kernel.writes = []
    again = numa2.apply(**REQUEST)
    assert again['changed'] is False and again['changes'] == [] and again['files'] == [] and again['diff'] == []
    assert kernel.writes == [] and tree_state(numa2.root) == state


def test_restore_puts_the_tree_back_byte_for_byte(numa2, kernel):
    original = tree_state(numa2.root)
    numa2.apply(**REQUEST)
    restored = numa2.restore()
    assert [(c['path'], c['after']) for c in restored['changes']] == [
        ('/proc/203/oom_score_adj', '-250'), ('/proc/291/oom_score_adj', '0'), ('/proc/296/oom_score_adj', '0'),
        ('/sys/fs/cgroup/system.slice/dbus.service/memory.max', 'max')]
    assert tree_state(numa2.root) == original


def test_validate_only_changes_nothing(numa2, kernel):
    before = tree_state(numa2.root)
    result = numa2.apply(validate_only=True, **REQUEST)
    assert result['changed'] is False
    assert [(c['path'], c['after']) for c in result['changes']] == REQUESTED and result['files'] == _dropins(numa2)
    assert kernel.writes == [] and tree_state(numa2.root) == before


def test_a_refused_call_writes_nothing_and_a_forced_one_warns(numa2, kernel):
    before = tree_state(numa2.root)
    request = dict(REQUEST, cgroups={'system.slice/dbus.service': {'memory_max': '1M'}})
    with pytest.raises(engine.Refused) as raised:
        numa2.apply(**request)
    assert [p.id for p in raised.value.problems] == ['limit_below_usage']
    assert kernel.writes == [] and tree_state(numa2.root) == before
    result = numa2.apply(force=['limit_below_usage'], **request)
    assert list(result['warnings']) == [p.message for p in raised.value.problems]
    assert result['forced'] == [p.as_dict() for p in raised.value.problems]
    assert result['forced'][0]['key'] == "oomguard_cgroups['system.slice/dbus.service'][memory_max]"
    assert numa2.read('sys/fs/cgroup/system.slice/dbus.service/memory.max') == '1048576\n'


def test_drop_ins_of_units_gone_from_the_inventory_are_removed(numa2, kernel):
    original = tree_state(numa2.root)
    numa2.apply(**REQUEST)
    result = numa2.apply(services={'systemd-journald': {'oom_score_adj': -900}})
    assert result['changes'] == []
    assert result['files'] == [
        {'path': numa2.sd + '/ssh.service.d/90-oomguard-limits.conf', 'action': 'remove'},
        {'path': numa2.sd + '/systemd-journald.service.d/90-oomguard-limits.conf', 'action': 'remove'}]
    assert not os.path.exists(numa2.sd + '/ssh.service.d')
    assert os.listdir(numa2.sd + '/systemd-journald.service.d') == ['90-oomguard-protect.conf']
    numa2.restore()
    assert tree_state(numa2.root) == original


def test_a_value_the_kernel_does_not_keep_fails_the_run(numa2, kernel):
    original = tree_state(numa2.root)
    kernel.ignore.add('/sys/fs/cgroup/system.slice/dbus.service/memory.max')
    with pytest.raises(engine.ApplyError) as raised:
        numa2.apply(**REQUEST)
    assert str(raised.value) == (
        'host h1: after writing, the kernel reports: system.slice/dbus.service memory.max is max, expected 67108864; '
        'the originals are in %s, playbooks/restore.yml puts them back' % os.path.join(numa2.state_dir, 'ledger.json'))
    numa2.restore()
    assert tree_state(numa2.root) == original


def test_a_write_that_fails_keeps_the_ledger(numa2, kernel, monkeypatch):
    def failing(path, text):
        raise IOError(errno.EINVAL, os.strerror(errno.EINVAL))
    monkeypatch.setattr(engine, 'write_live', failing)
    with pytest.raises(engine.ApplyError) as raised:
        numa2.apply(**REQUEST)
    assert str(raised.value) == (
        'host h1: writing oom_score_adj systemd-journald.service pid 203 = -900 to /proc/203/oom_score_adj failed: '
        '[Errno 22] Invalid argument; the originals are in %s, playbooks/restore.yml puts them back'
        % os.path.join(numa2.state_dir, 'ledger.json'))
    assert sorted(numa2.ledger()['values']) == sorted([p for p, v in REQUESTED if p.startswith('/proc/')] + [
        'system.slice/dbus.service memory.max'])


@pytest.fixture
def managed(numa2, monkeypatch):
    """numa2 with its systemd_dir taken for /etc/systemd/system: apply() reloads and checks the units."""
    monkeypatch.setitem(ua.DEFAULT_PATHS, 'systemd_dir', numa2.sd)
    return numa2


def test_what_systemd_did_not_apply_on_reload_is_written(managed, kernel):
    original = tree_state(managed.root)
    result = managed.apply(**REQUEST)
    assert [c for c in managed.systemctl.calls if c[0] != 'show'] == [['daemon-reload']]
    assert [(c['path'], c['after'], c['cause']) for c in result['changes']] == \
        [p + ('requested',) for p in REQUESTED] + [p + ('systemd',) for p in BY_SYSTEMD]
    # This systemd (the fake) did not write the unit's cgroups: the module did, after the requested ones.
    assert kernel.writes == REQUESTED + BY_SYSTEMD
    assert managed.read('sys/fs/cgroup/system.slice/ssh.service/memory.high') == '536870912\n'
    assert managed.ledger()['values']['ssh.service memory.high'] == {
        'kind': 'cgroup', 'path': '/sys/fs/cgroup/system.slice/ssh.service/memory.high', 'original': 'max',
        'owner': 'oom_units'}
    restored = managed.restore()
    assert ['daemon-reload'] in managed.systemctl.calls and restored['units_stopped'] == []
    assert tree_state(managed.root) == original


def test_what_systemd_applied_on_reload_is_not_written_again(managed, kernel):
    def systemd_reloads():
        # systemd scales and rounds on its own: a page off is the same limit.
        _write(managed.path(BY_SYSTEMD[0][0]), str(int(BY_SYSTEMD[0][1]) + 4096) + '\n')
        _write(managed.path(BY_SYSTEMD[1][0]), BY_SYSTEMD[1][1] + '\n')
    managed.systemctl.on_reload = systemd_reloads
    result = managed.apply(**REQUEST)
    assert result['changed'] is True
    assert kernel.writes == REQUESTED
    assert managed.read('sys/fs/cgroup/system.slice/ssh.service/memory.high') == '536875008\n'


def test_the_listener_in_the_inventory_converges(numa2, kernel):
    request = {'services': {'ssh': {'oom_score_adj': -900}}}
    first = numa2.apply(**request)
    assert [(c['path'], c['after']) for c in first['changes']] == [('/proc/298/oom_score_adj', '-900')]
    again = numa2.apply(**request)
    assert numa2.read('proc/298/oom_score_adj') == '-900\n'
    assert again['changed'] is False


def test_a_process_that_exits_before_its_write_is_skipped(numa2, kernel):
    kernel.gone.add('/proc/291/oom_score_adj')
    result = numa2.apply(**REQUEST)
    assert result['changed'] is True
    assert numa2.read('proc/296/oom_score_adj') == '500\n'
    assert numa2.read('sys/fs/cgroup/system.slice/dbus.service/memory.max') == '67108864\n'


def test_every_raw_cgroup_setting_has_its_file():
    # unit_settings validates oomguard_cgroups; units_apply knows the file of each setting.
    assert sorted(us.CGROUP_SETTINGS) == sorted(ua.CGROUP_FILES)
    assert set(us.CGROUP_SETTINGS.values()) <= set(ua.SCOPES)


# -- what the host's systemd knows (capabilities): refused before any write, read back after ------------------

D11 = 'debian11-5.10-qemu-cgroupv2'   # systemd 247
D13 = 'debian13-6.12-qemu-cgroupv2'   # systemd 257
# systemd-oomd's counterpart of oom_score_adj: ManagedOOMPreference= arrived in systemd 248.
OOMD_AVOID = {'services': {'ssh': {'managed_oom_preference': 'avoid', 'oom_score_adj': -500}}}


@pytest.fixture
def managed_on(tmp_path, captured_tree, monkeypatch):
    """A copy of a capture whose systemd_dir is taken for /etc/systemd/system: apply() reloads and reads back."""
    def make(tree):
        host = fake_host.CaptureHost(str(tmp_path / tree), captured_tree(tree), labels=LABELS)
        monkeypatch.setitem(ua.DEFAULT_PATHS, 'systemd_dir', host.sd)
        fake_host.kernel(monkeypatch, host.root)
        return host
    return make


def test_a_setting_newer_than_the_hosts_systemd_is_refused_with_both_versions(managed_on):
    d11 = managed_on(D11)
    before = tree_state(d11.root)
    with pytest.raises(engine.Refused) as raised:
        d11.apply(**OOMD_AVOID)
    assert [(p.id, p.message) for p in raised.value.problems] == [(
        'unsupported_systemd',
        "host h1: guard unsupported_systemd: oomguard_services['ssh'][managed_oom_preference]: ManagedOOMPreference= "
        "needs systemd 248; this host has systemd 247, which would log \"Unknown key\" and ignore it; add "
        "'unsupported_systemd' to oomguard_force to apply it anyway")]
    assert d11.systemctl.calls[1:] == [] and tree_state(d11.root) == before
    # The same inventory converges where systemd knows it, and is read back after the reload.
    d13 = managed_on(D13)
    result = d13.apply(**OOMD_AVOID)
    assert result['changed'] is True and result['systemd_version'] == 257 and result['unsupported'] == []
    assert ['daemon-reload'] in d13.systemctl.calls
    assert d13.systemctl.calls[-1] == ['show', '--property=Id,ManagedOOMPreference,OOMScoreAdjust', 'ssh.service']
    assert d13.read('etc/systemd/system/ssh.service.d/90-oomguard-protect.conf') == (
        MANAGED + '[Service]\nOOMScoreAdjust=-500\nManagedOOMPreference=avoid\n')
    assert d13.apply(**OOMD_AVOID)['changed'] is False


def test_a_property_systemd_ignores_fails_the_run_after_the_reload(managed_on):
    # Forced past the gate (a backport may have it): systemd 247 drops it, and
    # the read-back says so instead of reporting a change that never happened.
    d11 = managed_on(D11)
    with pytest.raises(engine.ApplyError) as raised:
        d11.apply(force=['unsupported_systemd'], **OOMD_AVOID)
    assert str(raised.value) == (
        'host h1: systemd did not take 1 drop-in setting(s) after daemon-reload: ssh.service '
        'ManagedOOMPreference=avoid (systemctl show: no such property); systemd 247 logs them as "Unknown key" or an '
        'invalid value (journalctl -b -u init.scope); the drop-ins are in place, the originals in the ledger '
        '(restore removes them)')
    # What it did write is in the ledger: restore takes it back.
    assert d11.ledger()['files']
    assert d11.restore()['changed'] is True


@pytest.mark.parametrize('version, refused', [
    # systemd NEWS: MemoryMin= 240, OOMPolicy= 243, AllowedMemoryNodes= 244, ManagedOOMPreference= 248.
    (239, ['allowed_memory_nodes', 'managed_oom_preference', 'memory_min', 'oom_policy']),  # RHEL 8
    (247, ['managed_oom_preference']),  # Debian 11
    (252, []),  # Debian 12, RHEL 9
    (None, []),  # unknown: nothing to judge by (the read-back still checks)
])
def test_each_unit_setting_is_held_to_the_release_that_brought_it(version, refused):
    live = _hand_live()
    live.systemd_version = version
    entry = {'memory_min': '16M', 'oom_policy': 'kill', 'allowed_memory_nodes': '0',
             'managed_oom_preference': 'avoid', 'memory_max': '1G', 'oom_score_adj': -100, 'cpu_weight': 200}
    plan = ua.judge({'scopes': list(ua.SCOPES), 'services': {'db': entry}, 'paths': {'systemd_dir': '/x'}},
                    live, LABELS)
    found = sorted(re.search(r"\[(\w+)\]: ", p.message).group(1) for p in plan.problems if p.id == 'unsupported_systemd')
    assert found == refused
    assert [u['property'] for u in plan.unsupported] == [us.PROPERTIES[k][0] for k in refused]
