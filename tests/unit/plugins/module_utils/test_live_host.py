# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The readers against this machine's own kernel, read-only.

Each reading is checked against an independent source: a syscall, another
tool (stat, ps), or a second read of the same file.  Nothing here writes to
/proc or /sys.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import cgroups, procfs, snapshot
from ansible_collections.oomguard.linux.plugins.module_utils.processes import scan_processes

LIVE = procfs.HostRoot('/')
PAGE_KB = os.sysconf('SC_PAGE_SIZE') // 1024

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads a live Linux kernel')


def test_memtotal_matches_sysconf():
    memory_kb = procfs.read_meminfo(LIVE)[0]
    # sysconf(_SC_PHYS_PAGES) is totalram_pages, the same number MemTotal prints.
    assert memory_kb['MemTotal'] == os.sysconf('SC_PHYS_PAGES') * PAGE_KB


def test_zone_free_adds_up_to_node_memfree():
    zones = procfs.read_zoneinfo(LIVE, PAGE_KB)
    assert zones, 'no zones parsed'
    for zone in zones:
        assert zone['min_kb'] <= zone['low_kb'] <= zone['high_kb']
    numa = procfs.read_numa(LIVE)
    if not numa['nodes'] or not numa['nodes'][0]['memory_kb']:
        pytest.skip('kernel without per-node meminfo')
    # A node's MemFree is the sum of its zones' free pages, read a moment apart,
    # plus what the node counts that no zone manages yet: memory still being
    # onlined or handed over (seen on this project's Firecracker host, 6.18-fc:
    # Normal managed 1474560 of 5505024 present pages, and node MemFree exceeded
    # the zones' free by exactly node MemTotal minus the zones' managed pages).
    # Elsewhere a node's MemTotal is its zones' managed pages, and that part is 0.
    managed_kb = {}
    node_id = None
    with open('/proc/zoneinfo') as handle:
        for line in handle:
            fields = line.split()
            if fields[:1] == ['Node']:
                node_id = int(fields[1].rstrip(','))
            elif fields[:1] == ['managed']:
                managed_kb[node_id] = managed_kb.get(node_id, 0) + int(fields[1]) * PAGE_KB
    for node in numa['nodes']:
        free_kb = sum(z['free_kb'] for z in zones if z['node'] == node['node'])
        node_free_kb = node['memory_kb']['MemFree']
        outside_kb = node['memory_kb']['MemTotal'] - managed_kb[node['node']]
        assert outside_kb >= 0
        assert abs(free_kb + outside_kb - node_free_kb) <= max(0.05 * node_free_kb, 65536)


def test_zone_free_matches_awk():
    zones = procfs.read_zoneinfo(LIVE, PAGE_KB)
    awk = subprocess.run(['awk', '$1 == "pages" && $2 == "free" {print $3}', '/proc/zoneinfo'],
                         stdout=subprocess.PIPE, check=True).stdout.decode().split()
    assert len(awk) == len(zones)
    for zone, pages in zip(zones, awk):
        assert abs(zone['free_kb'] - int(pages) * PAGE_KB) <= 65536


def test_buddy_blocks_add_up_to_zone_free():
    zones = dict(((z['node'], z['zone']), z) for z in procfs.read_zoneinfo(LIVE, PAGE_KB))
    buddy = procfs.read_buddyinfo(LIVE)
    assert buddy
    total_kb = 0
    zone_free_kb = 0
    for entry in buddy:
        total_kb += sum(count * (2 ** order) * PAGE_KB for order, count in enumerate(entry['free_blocks']))
        zone_free_kb += zones[(entry['node'], entry['zone'])]['free_kb']
    # Per-CPU lists hold some free pages outside the buddy lists.
    assert abs(total_kb - zone_free_kb) <= max(0.05 * zone_free_kb, 65536)


def test_sysctls_match_sysctl_command():
    values = procfs.read_sysctls(LIVE)
    names = ['vm.panic_on_oom', 'kernel.panic', 'vm.overcommit_memory', 'vm.min_free_kbytes']
    out = subprocess.run(['sysctl', '-n'] + names, stdout=subprocess.PIPE, check=True).stdout.decode().split()
    assert [values[n] for n in names] == [int(v) for v in out]


def test_thp_matches_file():
    thp = procfs.read_thp(LIVE)
    if thp is None:
        pytest.skip('kernel without THP')
    with open('/sys/kernel/mm/transparent_hugepage/enabled') as handle:
        text = handle.read()
    assert '[%s]' % thp['enabled'] in text
    assert thp['enabled'] in ('always', 'madvise', 'never')


def test_cgroup_mode_matches_statfs():
    layout = cgroups.read_layout(LIVE)
    fstype = subprocess.run(['stat', '-f', '-c', '%T', '/sys/fs/cgroup'], stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    if fstype == 'cgroup2fs':
        assert layout['mode'] == 'v2'
    else:
        unified = subprocess.run(['stat', '-f', '-c', '%T', '/sys/fs/cgroup/unified'],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout.decode().strip()
        assert layout['mode'] == ('hybrid' if unified == 'cgroup2fs' else 'v1')


def test_own_cgroup_is_walked():
    layout = cgroups.read_layout(LIVE)
    if layout['memory_controller'] is None:
        pytest.skip('no memory controller')
    found, truncated = cgroups.read_memory_cgroups(LIVE, layout)
    with open('/proc/self/cgroup') as handle:
        mine = cgroups.parse_proc_cgroup(handle.read())
    path = mine.get('memory') if layout['memory_controller']['version'] == 1 else mine.get('')
    if path in (None, '/'):
        pytest.skip('this process sits in the root memory cgroup')
    assert not truncated
    assert path in [c['path'] for c in found]


def test_victims_match_proc_oom_score():
    result = scan_processes(LIVE, PAGE_KB, top_n=10)
    assert result['victims']
    scores = [v['oom_score'] for v in result['victims']]
    assert scores == sorted(scores, reverse=True)
    compared = 0
    for victim in result['victims']:
        try:
            with open('/proc/%d/oom_score' % victim['pid']) as handle:
                now = int(handle.read())
            with open('/proc/%d/oom_score_adj' % victim['pid']) as handle:
                adj = int(handle.read())
        except (IOError, OSError):
            continue  # exited since the scan
        assert abs(now - victim['oom_score']) <= 10
        assert adj == victim['oom_score_adj']
        compared += 1
    assert compared >= 1
    # The highest score on the host is the first victim's (within drift).
    highest = 0
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open('/proc/%s/oom_score' % name) as handle:
                    highest = max(highest, int(handle.read()))
            except (IOError, OSError, ValueError):
                continue
    assert highest <= scores[0] + 10


def _ps_user_processes():
    out = subprocess.run(['ps', '-e', '-o', 'pid=,ppid=,comm='], stdout=subprocess.PIPE, check=True).stdout.decode()
    return len([line for line in out.splitlines() if line.split()[1] != '2' and line.split()[0] != '2'])


def test_process_count_matches_ps():
    # ps before and after the scan: on a busy machine processes come and go
    # in between, and the scan's count must lie within what ps saw (+-5).
    before = _ps_user_processes()
    result = scan_processes(LIVE, PAGE_KB)
    after = _ps_user_processes()
    assert min(before, after) - 5 <= result['count'] <= max(before, after) + 5, (before, result['count'], after)


def test_scan_survives_processes_exiting_mid_scan():
    # 200 processes that live a few ms each while three scans run.
    churn = subprocess.Popen([sys.executable, '-c', (
        'import subprocess, time\n'
        'end = time.time() + 3\n'
        'while time.time() < end:\n'
        '    ps = [subprocess.Popen(["true"]) for _ in range(20)]\n'
        '    [p.wait() for p in ps]\n')])
    try:
        time.sleep(0.2)
        for dummy in range(3):
            result = scan_processes(LIVE, PAGE_KB)
            assert result['count'] > 0
    finally:
        churn.wait()


def _collect_as(uid, tmp_path):
    # The unprivileged user cannot read root's home (where a pyenv or venv
    # python may live), so run Debian's python on a world-readable copy.
    python = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable
    here = os.path.dirname(os.path.abspath(procfs.__file__))
    dest = tmp_path / 'ansible_collections' / 'oomguard' / 'linux' / 'plugins' / 'module_utils'
    dest.mkdir(parents=True)
    for name in os.listdir(here):
        if name.endswith('.py'):
            (dest / name).write_bytes(open(os.path.join(here, name), 'rb').read())
    for path in [tmp_path] + list(tmp_path.rglob('*')):
        os.chmod(str(path), 0o755 if path.is_dir() else 0o644)
    code = (
        'import json, os, sys\n'
        'os.setgroups([]); os.setgid(%d); os.setuid(%d)\n'
        'from ansible_collections.oomguard.linux.plugins.module_utils import snapshot, procfs\n'
        'print(json.dumps(snapshot.collect(procfs.HostRoot("/"))))\n' % (uid, uid))
    env = {'PATH': '/usr/bin:/bin', 'PYTHONPATH': str(tmp_path)}
    out = subprocess.run([python, '-c', code], stdout=subprocess.PIPE, env=env, check=True, cwd='/')
    return json.loads(out.stdout.decode())


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to drop to another user')
def test_non_root_collect_returns_what_it_can():
    # pytest's tmp_path sits under a 0700 directory the other user cannot enter.
    tmp = tempfile.mkdtemp(prefix='oomguard-nonroot-', dir='/tmp')
    try:
        os.chmod(tmp, 0o755)
        snap = _collect_as(65534, pathlib.Path(tmp))
    finally:
        shutil.rmtree(tmp)
    assert snap['is_root'] is False
    assert snap['memory']['MemTotal'] > 0
    assert snap['sysctl']['vm.overcommit_memory'] in (0, 1, 2)
    assert snap['processes']['victims'], 'oom_score is world-readable: victims must be found'
    # slabinfo is 0400 root on current kernels: the run must say so, not fail.
    if os.path.exists('/proc/slabinfo') and not os.stat('/proc/slabinfo').st_mode & 0o004:
        assert snap['slabinfo'] is None
        assert any(n['reader'] == 'slabinfo' and 'permission' in n['reason'] for n in snap['notes'])


def test_root_collect_reads_slabinfo():
    if os.geteuid() != 0 or not os.path.exists('/proc/slabinfo'):
        pytest.skip('needs root and slabinfo')
    snap = snapshot.collect(LIVE, victims_count=3)
    assert snap['slabinfo'] and all(c['size_bytes'] >= 0 for c in snap['slabinfo'])
    total_bytes = sum(c['size_bytes'] for c in snap['slabinfo'])
    # Slab in meminfo counts the same pages (SReclaimable + SUnreclaim).
    assert abs(total_bytes / 1024 - snap['memory']['Slab']) <= max(0.25 * snap['memory']['Slab'], 16384)
