# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The readers on real /proc and /sys trees captured from other kernels.

Every tree under tests/unit/fixtures/trees/<origin>/ was captured with
tests/unit/fixtures/capture-tree.sh (see the README there).  Each tree's
expected.yml holds facts read off the raw files by hand; the generic checks
below compare the readers with a second, naive read of the same files.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shutil

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import cgroups, posture, procfs, snapshot, systemd
from ansible_collections.oomguard.linux.plugins.module_utils.processes import scan_processes
from ansible_collections.oomguard.linux.tests.unit.trees import TREE_NAMES as TREES, expected as _expected


def _raw(root, rel):
    path = os.path.join(root, rel)
    if not os.path.exists(path):
        return None
    with open(path, 'rb') as handle:
        return handle.read().decode('utf-8', 'replace')


def _systemctl_status(root):
    """Exit status of the capture's one `systemctl show` call (its .cmd.txt says)."""
    text = _raw(root, '.capture/systemctl-show.cmd.txt') or ''
    statuses = re.findall(r'^exit status: (\d+)', text, re.M)
    return int(statuses[-1]) if statuses else None


def _systemctl_runner(root):
    """Replays the capture's `systemctl show` output as the command's result."""
    def run(argv):
        return _systemctl_status(root), _raw(root, '.capture/systemctl-show.txt') or '', ''
    return run


def _collect(root):
    return snapshot.collect(procfs.HostRoot(root), run_command=_systemctl_runner(root), systemctl_path='systemctl')


def test_there_are_trees():
    assert len(TREES) >= 2, 'expected at least two captured trees'


@pytest.mark.parametrize('name', TREES)
def test_expected_facts(name, captured_tree):
    root = captured_tree(name)
    expected = _expected(name)
    snap = _collect(root)
    assert snap['memory']['MemTotal'] == expected['mem_total_kb']
    assert snap['cgroup']['mode'] == expected['cgroup_mode']
    controller = snap['cgroup']['memory_controller']
    assert (controller or {}).get('version') == expected['memory_controller']
    assert (snap['thp'] or {}).get('enabled') == expected['thp_enabled']
    assert len(snap['numa']['nodes']) == expected['numa_nodes']
    assert snap['kernel']['release'] == expected['kernel_release']
    assert snap['kernel']['highmem'] is False
    assert (snap['pressure'] is not None) == expected['has_psi']
    assert (snap['slabinfo'] is not None) == expected['has_slabinfo']
    for key, value in expected.get('sysctl', {}).items():
        assert snap['sysctl'][key] == value
    if expected.get('systemd_units') is not None:
        assert snap['systemd'] is not None, snap['notes']
        ids = [u['id'] for u in snap['systemd']['units']]
        for unit, props in expected.get('units', {}).items():
            assert unit in ids
            found = [u for u in snap['systemd']['units'] if u['id'] == unit][0]
            for key, value in props.items():
                assert found[key] == value, (unit, key)
    else:
        assert snap['systemd'] is None
    for path in expected.get('cgroups_present', []):
        assert path in [c['path'] for c in snap['cgroups']]
    protected = [p['comm'] for p in snap['processes']['protected']]
    assert sorted(protected) == sorted(expected['protected_comms'])
    if snap['systemd'] is not None:
        assert len(snap['systemd']['units']) == expected['systemd_units']


@pytest.mark.parametrize('name', TREES)
def test_posture_of_the_capture(name, captured_tree):
    verdict = posture.judge(_collect(captured_tree(name)))
    assert sorted(f['id'] for f in verdict['findings']) == sorted(_expected(name)['findings'])
    assert verdict['not_evaluated'] == []


@pytest.mark.parametrize('name', TREES)
def test_meminfo_lines_all_parsed(name, captured_tree):
    root = captured_tree(name)
    memory_kb, hugepages = procfs.read_meminfo(procfs.HostRoot(root))
    lines = [line for line in _raw(root, 'proc/meminfo').splitlines() if line.strip()]
    assert len(memory_kb) + len(hugepages) == len(lines)
    for line in lines:
        key, value = line.split(':')
        number = int(value.split()[0])
        assert memory_kb.get(key, hugepages.get(key)) == number


@pytest.mark.parametrize('name', TREES)
def test_zones_and_buddy(name, captured_tree):
    root = captured_tree(name)
    host = procfs.HostRoot(root)
    zones = procfs.read_zoneinfo(host)
    raw_free = re.findall(r'^\s+pages free\s+(\d+)', _raw(root, 'proc/zoneinfo'), re.M)
    assert [z['free_kb'] for z in zones] == [int(p) * 4 for p in raw_free]
    for zone in zones:
        assert zone['min_kb'] <= zone['low_kb'] <= zone['high_kb']
    buddy = procfs.read_buddyinfo(host)
    assert len(buddy) == len([line for line in _raw(root, 'proc/buddyinfo').splitlines() if line.strip()])
    assert all(len(b['free_blocks']) == 11 for b in buddy)


@pytest.mark.parametrize('name', TREES)
def test_victims_are_the_highest_oom_scores(name, captured_tree):
    root = captured_tree(name)
    host = procfs.HostRoot(root)
    result = scan_processes(host, top_n=10)
    # A naive oracle: every user process's oom_score straight from the tree.
    scores = []
    for pid in os.listdir(os.path.join(root, 'proc')):
        if not pid.isdigit():
            continue
        stat = _raw(root, 'proc/%s/stat' % pid)
        score = _raw(root, 'proc/%s/oom_score' % pid)
        if stat is None or score is None:
            continue
        flags = int(stat[stat.rindex(')') + 2:].split()[6])
        if flags & 0x00200000:
            continue  # kernel thread
        if int(score) > 0:
            scores.append(int(score))
    top = sorted(scores, reverse=True)[:10]
    assert [v['oom_score'] for v in result['victims']] == top
    for victim in result['victims']:
        assert victim['oom_score_adj'] == int(_raw(root, 'proc/%d/oom_score_adj' % victim['pid']))
        assert victim['comm'] == _raw(root, 'proc/%d/comm' % victim['pid']).strip()
    for entry in result['protected']:
        assert int(_raw(root, 'proc/%d/oom_score_adj' % entry['pid'])) == -1000


@pytest.mark.parametrize('name', TREES)
def test_mounts_mode(name, captured_tree):
    root = captured_tree(name)
    v1, v2 = cgroups.parse_mounts(_raw(root, 'proc/mounts'))
    raw = _raw(root, 'proc/mounts')
    assert bool(v2) == (' cgroup2 ' in raw)
    assert bool(v1) == (' cgroup ' in raw)


@pytest.mark.parametrize('name', TREES)
def test_systemctl_show_parse(name, captured_tree):
    root = captured_tree(name)
    text = _raw(root, '.capture/systemctl-show.txt')
    if text is None or _systemctl_status(root) != 0:
        pytest.skip('no systemd in this capture')
    units = systemd.parse_show(text)
    blocks = [b for b in text.split('\n\n') if 'Id=' in b and 'LoadState=not-found' not in b
              and 'LoadState=masked' not in b]
    assert len(units) == len(blocks)
    assert all(u['oom_policy'] in ('continue', 'stop', 'kill', None) for u in units)


def test_processes_vanishing_mid_scan(tmp_path, captured_tree):
    """A process that exits between listdir and its reads is counted, not fatal."""
    proc_copy = tmp_path / 'proc'
    shutil.copytree(os.path.join(captured_tree(TREES[0]), 'proc'), str(proc_copy))
    before = scan_processes(procfs.HostRoot(str(tmp_path)))
    victims = [v['pid'] for v in before['victims']]
    # Gone after listdir: stat missing for one, oom_score for another, and the
    # top victim's oom_score_adj/status/cmdline/cgroup missing (exited before
    # enrichment).
    os.remove(str(proc_copy / str(victims[-1]) / 'stat'))
    os.remove(str(proc_copy / str(victims[-2]) / 'oom_score'))
    victim = victims[0]
    for leaf in ('status', 'cmdline', 'cgroup', 'oom_score_adj'):
        path = proc_copy / str(victim) / leaf
        if path.exists():
            os.remove(str(path))
    after = scan_processes(procfs.HostRoot(str(tmp_path)))
    assert after['vanished'] >= before['vanished'] + 2
    assert victim not in [v['pid'] for v in after['victims']]
    removed = (victims[-1], victims[-2], victim)
    expected = [pid for pid in victims if pid not in removed]
    assert [v['pid'] for v in after['victims']][:len(expected)] == expected


def test_a_captured_tree_is_read_as_files_only(tmp_path):
    """A FIFO or device in a tree given as root is refused, never opened; a file far too big is not read whole."""
    os.makedirs(str(tmp_path / 'proc'))
    os.mkfifo(str(tmp_path / 'proc' / 'meminfo'))
    os.symlink('/dev/zero', str(tmp_path / 'proc' / 'vmstat'))
    with open(str(tmp_path / 'proc' / 'slabinfo'), 'wb') as handle:
        handle.truncate(procfs.CAPTURED_FILE_MAX_BYTES + 1)
    host = procfs.HostRoot(str(tmp_path))
    for name, why in (('meminfo', 'not a regular file'), ('vmstat', 'not a regular file'),
                      ('slabinfo', 'larger than 64 MiB')):
        with pytest.raises(procfs.ReadError) as raised:
            host.read('proc/' + name)
        assert raised.value.reason.startswith(why), raised.value.reason
