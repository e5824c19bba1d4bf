#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: oom_facts with the OOM domains against oom_facts without them.

N sleeping processes (default 5,000) are spread over M throwaway memory
cgroups (default 200), each with a limit, so every process is in some OOM
domain and is ranked there. Two pairs are timed, alternated, each run in its
own python process:

* module: the whole oom_facts module as Ansible runs it on a host (its
  arguments from a file; systemd units, slabinfo, the judgement, the JSON
  out), with no options against skip=[domains] (the module before issue 21).
  This is the issue's measure. Goal: ratio <= 1.2.
* reads: the posture read alone (snapshot.collect without slabinfo and
  systemd), the same two ways: what the domains cost against the reads they
  add to.

Changes no host setting: the cgroups are its own, created under the memory
hierarchy and removed, with their processes, at the end.
Run it through `tools/run bench` so the collection is set up.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
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


def _domain_count(kind, stdout):
    """How many domains a run reported (the module prints its JSON result; the read, the count)."""
    if kind == 'reads':
        return int(stdout.strip())
    domains = json.loads(stdout)['ansible_facts']['oom_posture']['domains']
    return len(domains or [])


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
        per_group = -(-args.processes // len(groups))
        for index, group in enumerate(groups):
            count = min(per_group, args.processes - index * per_group)
            # Each sleep moves itself into its cgroup, and its parent shell exits at once: the
            # sleeps belong to no process of the benchmark, like the services of a real host
            # (oom_facts leaves its own process tree out of every ranking).
            subprocess.run(['sh', '-c', 'i=0; while [ $i -lt %d ]; do sh -c \'echo $$ > %s/cgroup.procs && exec %s 3600\' '
                            '</dev/null >/dev/null 2>&1 & i=$((i+1)); done' % (count, group, sleep)], check=True)
        placed = 0
        deadline = time.monotonic() + 60
        while placed < args.processes and time.monotonic() < deadline:
            time.sleep(0.5)
            placed = sum(len(_members(g)) for g in groups)
        total = sum(1 for name in os.listdir('/proc') if name.isdigit())
        if placed < args.processes:
            sys.exit('only %d of %d sleeps reached their cgroups in 60 s' % (placed, args.processes))
        print('processes on the host: %d; %d of them in %d limited cgroups (cgroup v%d)' % (
            total, placed, len(groups), version))
        env = dict(os.environ, PYTHONPATH=collections)
        module = os.path.join(collections, 'ansible_collections', 'oomguard', 'linux', 'plugins', 'modules',
                              'oom_facts.py')
        work = tempfile.mkdtemp(prefix='oomguard-bench-')
        argv = {'reads': lambda mode: [sys.executable, '-c', READ_PY, mode],
                'module': lambda mode: [sys.executable, module, os.path.join(work, mode + '.json')]}
        for mode in ('with', 'without'):
            with open(os.path.join(work, mode + '.json'), 'w') as handle:
                json.dump({'ANSIBLE_MODULE_ARGS': {} if mode == 'with' else {'skip': ['domains']}}, handle)
        times = dict(((kind, mode), []) for kind in argv for mode in ('with', 'without'))
        counts = {}
        try:
            for dummy in range(args.rounds):
                for kind in ('module', 'reads'):
                    for mode in ('without', 'with'):
                        elapsed, result = _common.run_timed(argv[kind](mode), env=env)
                        if result.returncode != 0:
                            sys.exit(_common.failure(argv[kind](mode), result, 'the %s run failed' % kind, 2000))
                        times[kind, mode].append(elapsed)
                        counts[kind, mode] = _domain_count(kind, result.stdout.decode())
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for kind, title in (('module', 'oom_facts, the whole module'), ('reads', 'the posture read alone')):
            without_s, with_s = statistics.median(times[kind, 'without']), statistics.median(times[kind, 'with'])
            print('%s, median of %d alternated rounds' % (title, args.rounds))
            print('  without domains (skip domains)  %7.3f s  (runs: %s)' % (
                without_s, _common.runs(times[kind, 'without'])))
            print('  with domains (%4d domains)     %7.3f s  (runs: %s)' % (
                counts[kind, 'with'], with_s, _common.runs(times[kind, 'with'])))
            print('  ratio with/without              %7.2f%s' % (
                with_s / without_s, '   (goal <= 1.20)' if kind == 'module' else ''))
    finally:
        _kill_members(groups)
        for group in reversed(groups):
            if os.path.isdir(group):
                os.rmdir(group)
        if os.path.isdir(base):
            os.rmdir(base)


def _members(group):
    try:
        with open(os.path.join(group, 'cgroup.procs')) as handle:
            return [int(pid) for pid in handle.read().split()]
    except OSError:
        return []


def _kill_members(groups):
    """SIGKILL every process in the benchmark's cgroups and wait until they are gone (at most 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = [pid for group in groups for pid in _members(group)]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


if __name__ == '__main__':
    main()
