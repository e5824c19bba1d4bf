# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OOM domains and the kernel's choice inside each (domains.py).

The ranking runs on the real /proc/PID/status and oom_score_adj files of the
Debian 12 VM capture (debian12-6.1-qemu-cgroupv2); only the limits are set by
the test, since the capture was taken before any hardening.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import cgroups as cg
from ansible_collections.oomguard.linux.plugins.module_utils import domains
from ansible_collections.oomguard.linux.plugins.module_utils import posture
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import snapshot
from ansible_collections.oomguard.linux.tests.unit import fake_host
from ansible_collections.oomguard.linux.tests.unit import trees

TREE = 'debian12-6.1-qemu-cgroupv2'


@pytest.mark.parametrize('rss_kb, swap_kb, pte_kb, adj, totalpages, points', [
    (4096, 0, 64, 0, 32768, 1040),             # 1024 + 16 pages
    (4096, 0, 64, 500, 32768, 1040 + 500 * 32),  # adj times totalpages / 1000, integer division
    (4096, 0, 64, -500, 32768, 1040 - 500 * 32),  # negative points still rank (5.9+: raw long)
    (4096, 1024, 0, 0, 999, 1280),             # swap entries count; totalpages / 1000 == 0 below 1000 pages
    (4096, 0, 0, -1000, 32768, None),          # OOM_SCORE_ADJ_MIN: never chosen
    (None, None, None, 0, 32768, 0),
])
def test_badness(rss_kb, swap_kb, pte_kb, adj, totalpages, points):
    assert domains.badness(rss_kb, swap_kb, pte_kb, adj, totalpages) == points


def test_before_5_9_an_eligible_task_has_at_least_one_point():
    assert domains.badness(4096, 0, 64, -500, 32768, at_least_one=True) == 1
    assert domains.badness(4096, 0, 64, 500, 32768, at_least_one=True) == 1040 + 500 * 32
    assert domains.badness(4096, 0, 64, -1000, 32768, at_least_one=True) is None


def test_rank_skips_the_unkillable_and_keeps_the_later_of_equal_points():
    def task(pid, rss_kb, adj=0, **extra):
        return dict({'pid': pid, 'comm': 'p%d' % pid, 'rss_kb': rss_kb, 'swap_kb': 0, 'pgtables_kb': 0,
                     'oom_score_adj': adj, 'has_mm': True, 'kthread': False}, **extra)
    tasks = [task(1, 90000), task(10, 4000), task(11, 4000), task(12, 80000, adj=-1000),
             task(13, 70000, has_mm=False), task(14, 60000, kthread=True)]
    victim, ranked = domains.rank(tasks, 32768)
    # pid 1, the exempt, the mm-less and the kernel thread are never candidates;
    # oom_evaluate_task() replaces the chosen one on equal points: the later task wins.
    assert victim['pid'] == 11 and [t['pid'] for t in ranked] == [11, 10]
    assert domains.rank([], 32768) == (None, [])


def test_group_of_takes_the_highest_group_below_the_domain():
    groups = {'/a': True, '/a/b': True, '/a/b/c': False}
    assert domains.group_of('/a/b/c', '/a/b', groups) == '/a/b'   # /a is above the domain: not taken
    assert domains.group_of('/a/b/c', '/a', groups) == '/a'
    assert domains.group_of('/a/b/c', '/a/b/c', groups) is None


def test_totalpages_of_a_memcg_adds_the_swap_it_may_use():
    assert domains.totalpages_of_memcg(128 << 20, None, 0) == 32768
    assert domains.totalpages_of_memcg(128 << 20, None, 1024) == 32768 + 256
    assert domains.totalpages_of_memcg(128 << 20, 0, 1 << 20) == 32768
    assert domains.totalpages_of_memcg(128 << 20, 4 << 20, 1 << 20) == 32768 + 1024


def test_parse_status_of_a_real_process_and_a_kernel_thread(captured_tree):
    root = captured_tree(TREE)
    with open(os.path.join(root, 'proc/189/status')) as handle:
        journald = domains.parse_status(handle.read())
    assert (journald['comm'], journald['tgid'], journald['rss_kb'], journald['pgtables_kb'], journald['swap_kb']) == (
        'systemd-journal', 189, 10592, 80, 0)
    assert journald['has_mm'] and not journald['kthread']
    kthread = domains.parse_status('Name:\tkthreadd\nTgid:\t2\nKthread:\t1\n')
    assert kthread['kthread'] and not kthread['has_mm']


@pytest.fixture
def limited_tree(tmp_path, captured_tree):
    """The capture, with system.slice limited to 128 MiB (as MemoryMax=128M would)."""
    root = str(tmp_path / 'root')
    shutil.copytree(captured_tree(TREE), root, symlinks=True)
    fake_host.write_file(os.path.join(root, 'sys/fs/cgroup/system.slice/memory.max'), '134217728\n')
    return root


def _domains(root):
    host = procfs.HostRoot(root)
    layout = cg.read_layout(host)
    cgroups, dummy = cg.read_memory_cgroups(host, layout)
    return domains.memcg_domains(host, cgroups, layout['memory_controller']['mount'], 0)


def test_the_biggest_is_not_the_choice_when_oom_score_adj_says_otherwise(limited_tree):
    found, notes = _domains(limited_tree)
    assert notes == []
    assert [d['path'] for d in found] == ['/system.slice']
    domain = found[0]
    assert (domain['kind'], domain['unit'], domain['limit_kb'], domain['usage_kb']) == (
        'memcg', 'system.slice', 131072, 43536384 // 1024)
    assert domain['headroom_kb'] == 131072 - 43536384 // 1024 and domain['totalpages'] == 32768
    # journald is the biggest (10592 kB) but runs at -250; logind (6844 kB, adj 0) is the
    # kernel's choice: (6844 + 72) / 4 = 1729 points against 2668 - 250 * 32 for journald.
    assert domain['next_victim'] == {'pid': 238, 'comm': 'systemd-logind', 'unit': 'systemd-logind.service',
                                     'badness': 1729, 'oom_score_adj': 0, 'rss_kb': 6844, 'swap_kb': 0,
                                     'pgtables_kb': 72}
    assert domain['group_kill'] is None and domain['group_victims'] == []


def test_a_group_kill_takes_every_killable_task_of_the_group(limited_tree):
    fake_host.write_file(os.path.join(limited_tree, 'sys/fs/cgroup/system.slice/memory.oom.group'), '1\n')
    domain = _domains(limited_tree)[0][0]
    assert domain['group_kill'] == '/system.slice'
    # Every task of the slice's subtree, the gettys of its child slices too; sshd (-1000)
    # is spared even by a group kill (oom_kill_memcg_member).
    assert sorted(v['comm'] for v in domain['group_victims']) == [
        'agetty', 'agetty', 'dbus-daemon', 'systemd-journal', 'systemd-logind']


def test_the_task_bound_reports_what_was_left_out(limited_tree):
    found, notes = _domains_with(limited_tree, max_tasks=2)
    assert len(notes) == 1 and notes[0].startswith('ranked 2 of the ') and notes[0].endswith(' tasks in limited cgroups only')
    assert found[0]['tasks'] <= 2


def _domains_with(root, **options):
    host = procfs.HostRoot(root)
    layout = cg.read_layout(host)
    cgroups, dummy = cg.read_memory_cgroups(host, layout)
    return domains.memcg_domains(host, cgroups, layout['memory_controller']['mount'], 0, **options)


def test_the_posture_lists_the_host_first_then_the_tightest_cgroup(limited_tree):
    snap = snapshot.collect(procfs.HostRoot(limited_tree), skip=('slabinfo', 'systemd'))
    kinds = [(d['kind'], d['path']) for d in snap['domains']]
    assert kinds == [('host', '/'), ('memcg', '/system.slice')]
    host = snap['domains'][0]
    assert host['next_victim']['pid'] == snap['processes']['victims'][0]['pid']
    assert host['headroom_kb'] == snap['memory']['MemAvailable'] + snap['memory'].get('SwapFree', 0)
    assert 'excluded_pids' not in snap['processes']


def test_without_their_victims_the_domains_keep_limits_and_headroom_and_read_no_task(limited_tree, monkeypatch):
    fake_host.write_file(os.path.join(limited_tree, 'sys/fs/cgroup/system.slice/memory.oom.group'), '1\n')
    ranked = snapshot.collect(procfs.HostRoot(limited_tree), skip=('slabinfo', 'systemd'))
    monkeypatch.setattr(domains, 'read_tasks', lambda *args: pytest.fail('a task was read'))
    plain = snapshot.collect(procfs.HostRoot(limited_tree), skip=('slabinfo', 'systemd', 'domain_victims'))
    for with_tasks, without in zip(ranked['domains'][1:], plain['domains'][1:]):
        for key in ('kind', 'path', 'limit_kb', 'usage_kb', 'headroom_kb', 'totalpages'):
            assert with_tasks[key] == without[key], key
        assert (without['tasks'], without['next_victim'], without['group_victims']) == (None, None, [])
    # The finding that needs the group's tasks is said not evaluated, not silently clean.
    verdict = posture.judge(plain, None)
    assert any(n['id'] == 'group_kill_overrides_adj' for n in verdict['not_evaluated'])
    assert plain['domains'][0]['next_victim'] is not None  # the host's is the process scan's


def test_the_live_host_has_a_host_domain():
    snap = snapshot.collect(procfs.HostRoot('/'), skip=('slabinfo', 'systemd'))
    host = snap['domains'][0]
    assert host['kind'] == 'host' and host['limit_kb'] >= snap['memory']['MemTotal']
    for domain in snap['domains'][1:]:
        assert domain['kind'] == 'memcg' and domain['limit_kb'] > 0


# -- time to OOM ---------------------------------------------------------------------

def test_a_steady_growth_gives_its_rate_and_the_time_to_the_limit():
    # 1000 kB/s from 40000 kB against a 100000 kB limit, read every 2 s for 8 s: 52000 kB left at 8 s.
    points = [(t, 40000 + 1000 * t) for t in (0, 2, 4, 6, 8)]
    forecast = domains.forecast(points, 100000)
    assert forecast == {'samples': 5, 'span_s': 8, 'growth_kb_per_s': 1000.0, 'time_to_oom_s': 52.0,
                        'time_to_oom_range_s': [52.0, 52.0]}


def test_noise_widens_the_range_and_no_growth_gives_no_time():
    points = [(0, 1000), (1, 1900), (2, 3100), (3, 3900), (4, 5100)]  # about 1000 kB/s, not exactly
    forecast = domains.forecast(points, 20000)
    span = forecast['time_to_oom_range_s']
    assert span[0] < forecast['time_to_oom_s'] < span[1]
    flat = domains.forecast([(0, 5000), (1, 5100), (2, 4900), (3, 5000)], 20000)
    assert flat['time_to_oom_s'] is None and flat['time_to_oom_range_s'] is None and flat['growth_kb_per_s'] == -20.0
    # Rising, but the fit cannot tell it from no growth: the later bound is open.
    unsure = domains.forecast([(0, 5000), (1, 9000), (2, 5000), (3, 9100)], 20000)
    assert unsure['time_to_oom_s'] is not None and unsure['time_to_oom_range_s'][1] is None


def test_two_samples_give_a_time_without_a_range_and_one_gives_nothing():
    assert domains.forecast([(0, 1000), (10, 2000)], 6000) == {
        'samples': 2, 'span_s': 10, 'growth_kb_per_s': 100.0, 'time_to_oom_s': 40.0, 'time_to_oom_range_s': None}
    assert domains.forecast([(0, 1000), (1, None)], 6000)['growth_kb_per_s'] is None  # an unreadable sample is left out
    # Over the limit already (a v1 usage includes the page cache it could reclaim): no time left.
    assert domains.forecast([(0, 7000), (1, 7100)], 6000)['time_to_oom_s'] == 0.0


def test_samples_are_read_at_the_interval_for_every_domain():
    clock = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 3))
        clock[0] += seconds

    def read(domain):
        clock[0] += 0.01  # each read takes a little time
        return domain['base'] + 500 * (clock[0] - 100.0)

    found = [{'kind': 'host', 'path': '/', 'limit_kb': 10 ** 6, 'base': 1000},
             {'kind': 'memcg', 'path': '/a', 'limit_kb': 50000, 'base': 20000},
             {'kind': 'memcg', 'path': '/b', 'limit_kb': None, 'base': 0}]
    domains.sample_forecasts(found, read, 4, 2.0, lambda: clock[0], sleep)
    # The interval is kept from the first reading, whatever the reads cost.
    assert slept == [1.97, 1.97, 1.97]
    assert found[1]['forecast']['samples'] == 4 and found[1]['forecast']['growth_kb_per_s'] == 500.0
    assert found[0]['forecast']['time_to_oom_s'] > found[1]['forecast']['time_to_oom_s']
    assert found[2]['forecast'] is None


def test_usage_is_read_from_the_cgroup_and_the_host(limited_tree):
    host = procfs.HostRoot(limited_tree)
    layout = cg.read_layout(host)
    read = domains.usage_reader(host, layout['memory_controller']['mount'])
    assert read({'kind': 'memcg', 'path': '/system.slice'}) == 43536384 // 1024
    assert read({'kind': 'memcg', 'path': '/no-such.slice'}) is None
    memory = procfs.parse_meminfo(host.read('proc/meminfo'))[0]
    in_use_kb = memory['MemTotal'] + memory.get('SwapTotal', 0) - memory['MemAvailable'] - memory.get('SwapFree', 0)
    assert read({'kind': 'host', 'path': '/'}) == in_use_kb


def test_the_snapshot_forecasts_only_when_asked(limited_tree):
    ticks = iter(range(1000))
    snap = snapshot.collect(procfs.HostRoot(limited_tree), skip=('slabinfo', 'systemd'), samples=3, interval_s=5,
                            clock=lambda: float(next(ticks)), sleep=lambda seconds: None)
    # A captured tree does not change: read three times, no growth.
    assert [(d['path'], d['forecast']['samples'], d['forecast']['time_to_oom_s']) for d in snap['domains']] == [
        ('/', 3, None), ('/system.slice', 3, None)]
    once = snapshot.collect(procfs.HostRoot(limited_tree), skip=('slabinfo', 'systemd'))
    assert [d['forecast'] for d in once['domains']] == [None, None]


# -- what if -------------------------------------------------------------------------

def _what_if(root, **request):
    request.setdefault('pid', None)
    snap = snapshot.collect(procfs.HostRoot(root), skip=('slabinfo', 'systemd'), what_if=request)
    return snap['what_if'], snap


def test_what_if_names_the_limit_hit_first_and_the_kernels_choice_there(limited_tree):
    answer, snap = _what_if(limited_tree, path='/system.slice/systemd-logind.service', grow_kb=100000)
    # system.slice has 131072 - 42516 kB left; the host far more: the slice fills first.
    assert [(d['path'], d['headroom_kb'], d['fills']) for d in answer['domains']] == [
        ('/', snap['domains'][0]['headroom_kb'], False), ('/system.slice', 131072 - 43536384 // 1024, True)]
    assert answer['fills']['path'] == '/system.slice'
    assert (answer['victim']['pid'], answer['victim']['comm']) == (238, 'systemd-logind')
    assert answer['note'] == 'the growing task is not named (pid): the choice is among the tasks as they are'
    assert all('_ranked' not in domain for domain in snap['domains'])


def test_what_if_the_grower_is_named_its_growth_makes_it_the_victim(limited_tree):
    # journald (pid 189, 10592 kB, adj -250) grows by 100000 kB: (110592 + 80) / 4 - 250 * 32 = 19668 points,
    # against logind's 1729.
    answer = _what_if(limited_tree, path='/system.slice/systemd-journald.service', grow_kb=100000, pid=189)[0]
    assert (answer['victim']['pid'], answer['victim']['badness'], answer['victim']['rss_kb']) == (189, 19668, 110592)
    assert answer['note'] is None
    elsewhere = _what_if(limited_tree, path='/system.slice', grow_kb=100000, pid=999999)[0]
    assert elsewhere['victim']['pid'] == 238 and 'pid 999999 is not a task of /system.slice' in elsewhere['note']


def test_what_if_nothing_fills_says_the_least_headroom(limited_tree):
    answer = _what_if(limited_tree, path='/system.slice/cron.service', grow_kb=1000)[0]
    assert answer['fills'] is None and answer['victim'] is None
    assert answer['note'] == 'no domain fills: the least headroom on the way is %d kB, in /system.slice' % (
        131072 - 43536384 // 1024)
    # A cgroup outside every limit counts against the host only.
    outside = _what_if(limited_tree, path='/user.slice', grow_kb=1000)[0]
    assert [d['path'] for d in outside['domains']] == ['/']


def test_what_if_with_memory_oom_group_names_every_task_of_the_group(limited_tree):
    fake_host.write_file(os.path.join(limited_tree, 'sys/fs/cgroup/system.slice/memory.oom.group'), '1\n')
    answer = _what_if(limited_tree, path='/system.slice', grow_kb=100000)[0]
    assert answer['group_kill'] == '/system.slice'
    assert sorted(v['comm'] for v in answer['group_victims']) == [
        'agetty', 'agetty', 'dbus-daemon', 'systemd-journal', 'systemd-logind']


def test_what_if_the_host_fills_its_top_victim_or_the_grower(limited_tree):
    snap = snapshot.collect(procfs.HostRoot(limited_tree), skip=('slabinfo', 'systemd'))
    huge = snap['domains'][0]['headroom_kb'] + 1
    answer = _what_if(limited_tree, path='/user.slice', grow_kb=huge)[0]
    assert answer['fills']['kind'] == 'host'
    assert answer['victim']['pid'] == snap['processes']['victims'][0]['pid']
    last = snap['processes']['victims'][-1]
    grown = _what_if(limited_tree, path='/user.slice', grow_kb=huge, pid=last['pid'])[0]
    assert grown['victim']['pid'] == last['pid'] and grown['victim']['rss_kb'] == last['rss_kb'] + huge


# -- NUMA nodes ------------------------------------------------------------------------

CPUSET_TREE = 'debian12-6.1-qemu-numa2-cpuset'


@pytest.mark.parametrize('nodes, text', [([0, 1, 2, 4], '0-2,4'), ([1], '1'), ([3, 1, 0], '0-1,3'), ([], '')])
def test_format_node_list(nodes, text):
    assert domains.format_node_list(nodes) == text
    assert procfs.parse_node_list(text) == sorted(nodes)


def _node_snap(root, **options):
    return snapshot.collect(procfs.HostRoot(root), skip=('slabinfo', 'systemd'), **options)


def test_a_service_confined_to_node_1_is_its_own_domain_with_the_kernels_choice(captured_tree):
    """The capture's service runs under AllowedMemoryNodes=1; the kernel's first kill when node 1
    ran out (expected.yml, from the VM's dmesg) was the one predicted here."""
    expected = trees.expected(CPUSET_TREE)
    snap = _node_snap(captured_tree(CPUSET_TREE))
    nodes = [d for d in snap['domains'] if d['kind'] == 'node']
    assert len(nodes) == 1
    node = nodes[0]
    node1 = expected['node1']
    assert (node['path'], node['nodes'], node['cpusets'], node['unit']) == (
        'node:1', [1], ['/system.slice/oomguard-predict.service'], 'oomguard-predict.service')
    # constrained_alloc(): the node's present pages plus all swap (none here).
    assert node['totalpages'] == node1['present_pages'] + expected['swap_total_kb'] // 4
    assert node['limit_kb'] == node1['mem_total_kb'] + expected['swap_total_kb']
    assert node['headroom_kb'] == node1['available_kb']
    assert node['bound_tasks'] == len(expected['workers'])
    # Every task that may use node 1 is a candidate: the service's four and the unconfined rest.
    assert node['tasks'] > node['bound_tasks']
    small = expected['workers'][982]
    # (16480 + 80) / 4 + 1000 * (196573 // 1000): small beats big, which holds 4.5 times its memory.
    assert node['next_victim'] == {
        'pid': 982, 'comm': 'small', 'unit': 'oomguard-predict.service', 'oom_score_adj': 1000,
        'badness': (small['rss_kb'] + small['pgtables_kb']) // 4 + 1000 * (node1['present_pages'] // 1000),
        'rss_kb': small['rss_kb'], 'swap_kb': 0, 'pgtables_kb': small['pgtables_kb']}
    assert node['next_victim']['pid'] == expected['kernel_first_victim']
    assert node['group_kill'] is None and node['group_victims'] == []


def test_the_node_domain_ranks_unconfined_tasks_too(captured_tree):
    """oom_cpuset_eligible(): a task whose cpuset shares a node with the OOM's is a candidate.
    Without small, the next victim is the unconfined oomguard-batch (+800), outside the service."""
    root = captured_tree(CPUSET_TREE)
    host = procfs.HostRoot(root)
    snap = _node_snap(root)
    found, notes = domains.node_domains(host, snap, exclude_pids=(982,))
    assert notes == []
    victim = found[0]['next_victim']
    assert (victim['comm'], victim['oom_score_adj'], victim['unit']) == ('oomguard-batch', 800,
                                                                         'oomguard-batch.service')


def test_no_node_domain_without_a_confined_cpuset_or_with_one_node(captured_tree):
    for name in ('debian12-6.1-qemu-numa2', TREE):
        snap = _node_snap(captured_tree(name))
        assert [d for d in snap['domains'] if d['kind'] == 'node'] == []


def test_what_if_a_confined_service_grows_its_node_fills_before_the_host(captured_tree):
    root = captured_tree(CPUSET_TREE)
    path = '/system.slice/oomguard-predict.service'
    snap = _node_snap(root, what_if={'path': path, 'grow_kb': 600000})
    answer = snap['what_if']
    assert [(d['kind'], d['fills']) for d in answer['domains']] == [('host', False), ('node', True)]
    assert answer['fills']['path'] == 'node:1' and answer['victim']['pid'] == 982
    # mid (983) grown by 900000 kB outweighs small's +1000: (34116 + 900000 + 108) / 4 > 200140.
    grown = _node_snap(root, what_if={'path': path, 'grow_kb': 900000, 'pid': 983})['what_if']
    assert grown['fills']['path'] == 'node:1' and grown['victim']['pid'] == 983, grown


def test_a_node_domain_usage_is_read_again_for_the_forecast(captured_tree):
    root = captured_tree(CPUSET_TREE)
    snap = _node_snap(root)
    node = [d for d in snap['domains'] if d['kind'] == 'node'][0]
    assert domains.usage_reader(procfs.HostRoot(root), '/sys/fs/cgroup')(node) == node['usage_kb']


@pytest.mark.parametrize('value', ['garbage', '1-', '3-1', '-1', '0-99999999', '0,70000'])
def test_a_malformed_cpuset_list_is_said_and_read_no_further(tmp_path, captured_tree, value):
    """A captured tree (oom_facts root) can hold anything: a list that is not the kernel's is refused with
    its path, not expanded (a range of 10^8 nodes) and not a traceback; the rest of the read goes on."""
    root = str(tmp_path / 'root')
    shutil.copytree(captured_tree(CPUSET_TREE), root, symlinks=True)
    fake_host.write_file(os.path.join(root, 'sys/fs/cgroup/system.slice/oomguard-predict.service/'
                                            'cpuset.mems.effective'), value + '\n')
    snap = _node_snap(root)
    notes = [n for n in snap['notes'] if n['reader'] == 'cpuset']
    assert len(notes) == 1 and 'oomguard-predict.service/cpuset.mems.effective' in notes[0]['reason'], snap['notes']
    assert "is not in the kernel's list format" in notes[0]['reason']
    assert snap['cpuset_mems'] is None and [d for d in snap['domains'] if d['kind'] == 'node'] == []
    assert [d['kind'] for d in snap['domains']][:1] == ['host']


@pytest.mark.parametrize('name, value', [('online', '0-99999999'), ('node1/cpulist', 'x'),
                                         ('node1/distance', '10 2x')])
def test_a_malformed_node_file_is_said_and_the_numa_read_skipped(tmp_path, captured_tree, name, value):
    root = str(tmp_path / 'root')
    shutil.copytree(captured_tree(CPUSET_TREE), root, symlinks=True)
    fake_host.write_file(os.path.join(root, procfs.NODE_DIR, name), value + '\n')
    snap = _node_snap(root)
    notes = [n for n in snap['notes'] if n['reader'] == 'numa']
    assert len(notes) == 1 and name in notes[0]['reason'], snap['notes']
    assert snap['numa'] is None and [d for d in snap['domains'] if d['kind'] == 'node'] == []


def test_a_task_read_for_a_memory_cgroup_is_not_read_again_for_the_node(captured_tree, monkeypatch):
    """The capture has a limited cgroup (earlyoom.service, 50 MiB) and a node domain: each task's status
    and oom_score_adj are read once per snapshot."""
    root = captured_tree(CPUSET_TREE)
    asked = []
    real = procfs.read_pid_files
    monkeypatch.setattr(procfs, 'read_pid_files', lambda proc, pids, files: asked.append((files, list(pids))) or
                        real(proc, pids, files))
    snap = _node_snap(root)
    assert [d['kind'] for d in snap['domains']].count('node') == 1
    read = [pid for files, pids in asked if files == ('status', 'oom_score_adj') for pid in pids]
    assert read and len(read) == len(set(read))
