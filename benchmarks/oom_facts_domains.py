#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: oom_facts' read with the OOM domains against the same read without them.

N sleeping processes (default 5,000) are spread over M throwaway memory
cgroups (default 200), each with a limit, so every process is in some OOM
domain and is ranked there. Then the posture read (snapshot.collect, what
oom_facts runs on the host) is timed with the domains and with
skip=[domains] (the read before issue 21), alternated, each in its own python
process. Goal: ratio <= 1.2.

Changes no host setting: the cgroups are its own, created under the memory
hierarchy and removed, with their processes, at the end.
Run it through `tools/run bench` so the collection is set up.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

import _common

READ_PY = r'''
import sys
from ansible_collections.oomguard.linux.plugins.module_utils.procfs import HostRoot
from ansible_collections.oomguard.linux.plugins.module_utils.snapshot import collect
skip = ['slabinfo', 'systemd'] + (['domains'] if sys.argv[1] == 'without' else [])
snap = collect(HostRoot('/'), skip=skip)
print(len(snap['domains'] or []))
'''


def memory_mount():
    mount = None
    with open('/proc/mounts') as handle:
        for line in handle:
            fields = line.split()
            if fields[2] == 'cgroup' and 'memory' in fields[3].split(','):
                return fields[1], 1
            if fields[2] == 'cgroup2' and fields[1] == '/sys/fs/cgroup':
                mount = fields[1]
    if mount is None:
        sys.exit('no memory controller mounted: no cgroup to limit')
    return mount, 2


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--processes', type=int, default=5000)
    parser.add_argument('--cgroups', type=int, default=200)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    collections = _common.collections_path()
    mount, version = memory_mount()
    limit_file = 'memory.max' if version == 2 else 'memory.limit_in_bytes'
    base = os.path.join(mount, 'oomguard-bench-%d' % os.getpid())
    groups = [os.path.join(base, 'g%03d' % i) for i in range(args.cgroups)]
    procs = []
    try:
        os.mkdir(base)
        if version == 2:
            with open(os.path.join(base, 'cgroup.subtree_control'), 'w') as handle:
                handle.write('+memory')
        for group in groups:
            os.mkdir(group)
            with open(os.path.join(group, limit_file), 'w') as handle:
                handle.write(str(1 << 30))
        sleep = shutil.which('sleep')
        for index in range(args.processes):
            group = groups[index % len(groups)]
            # The child moves itself into its cgroup before it becomes `sleep`.
            procs.append(subprocess.Popen(
                ['sh', '-c', 'echo $$ > %s/cgroup.procs && exec %s 3600' % (group, sleep)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(2)
        placed = sum(len(open(os.path.join(g, 'cgroup.procs')).read().split()) for g in groups)
        total = sum(1 for name in os.listdir('/proc') if name.isdigit())
        print('processes on the host: %d; %d of them in %d limited cgroups (cgroup v%d)' % (
            total, placed, len(groups), version))
        env = dict(os.environ, PYTHONPATH=collections)
        times = {'with': [], 'without': []}
        counts = {}
        for dummy in range(args.rounds):
            for mode in ('without', 'with'):
                elapsed, result = _common.run_timed([sys.executable, '-c', READ_PY, mode], env=env)
                if result.returncode != 0:
                    sys.exit(_common.failure([READ_PY, mode], result, 'the read failed', 2000))
                times[mode].append(elapsed)
                counts[mode] = int(result.stdout.decode().strip())
        without_s, with_s = statistics.median(times['without']), statistics.median(times['with'])
        print('posture read, whole python process, median of %d alternated rounds' % args.rounds)
        print('  without domains (skip domains)  %7.3f s  (runs: %s)' % (without_s, _common.runs(times['without'])))
        print('  with domains (%4d domains)     %7.3f s  (runs: %s)' % (
            counts['with'], with_s, _common.runs(times['with'])))
        print('  ratio with/without              %7.2f   (goal <= 1.20)' % (with_s / without_s))
    finally:
        _common.kill_all(procs)
        time.sleep(0.5)
        for group in reversed(groups):
            if os.path.isdir(group):
                os.rmdir(group)
        if os.path.isdir(base):
            os.rmdir(base)


if __name__ == '__main__':
    main()
