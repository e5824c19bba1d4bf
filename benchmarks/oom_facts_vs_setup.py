#!/usr/bin/env python3
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: oom_facts against its baselines, side by side in one run.

1. With N extra sleeping processes on this host (default 5,000), the wall
   time of `ansible localhost -m oomguard.linux.oom_facts` against
   `ansible localhost -m ansible.builtin.setup` (its default subset), both run
   the same way, alternated, R rounds each.  Goal: ratio <= 0.5.
2. The victim ranking alone: the collection's process scan (run as its own
   python process) against the oomscore.sh loop from seed 001 (bash + cat per
   process), on the same process table.  Goal: >= 20x faster.

Read-only on the host: it starts and then kills its own `sleep` processes.
Run it through `tools/run bench` so ansible and the collection are set up.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# Seed 001's script, as printed there: one `cat` per file per process.
OOMSCORE_SH = r'''#!/bin/bash
for proc in $(find /proc -maxdepth 1 -regex '/proc/[0-9]+'); do
    printf "%2d %5d %s\n" \
        "$(cat $proc/oom_score)" \
        "$(basename $proc)" \
        "$(cat $proc/cmdline | tr '\0' ' ' | head -c 50)"
done 2>/dev/null | sort -nr | head -n 10
'''

SCAN_PY = r'''
from ansible_collections.oomguard.linux.plugins.module_utils.procfs import HostRoot
from ansible_collections.oomguard.linux.plugins.module_utils.processes import scan_processes
for v in scan_processes(HostRoot('/'), top_n=10)['victims']:
    print(v['oom_score'], v['pid'], v['cmdline'][:50])
'''


def spawn_sleepers(count):
    sleep = shutil.which('sleep')
    procs = []
    for _ in range(count):
        procs.append(subprocess.Popen([sleep, '3600'], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def stop(procs):
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in procs:
        proc.wait()


def timed(argv, env=None):
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit('command failed (%d): %s\n%s%s' % (result.returncode, ' '.join(argv),
                                                    result.stdout.decode()[-2000:], result.stderr.decode()[-2000:]))
    return elapsed, result.stdout.decode()


def ansible_module(module):
    return ['ansible', 'localhost', '-c', 'local', '-i', 'localhost,', '-m', module]


def median(values):
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--processes', type=int, default=5000, help='extra sleeping processes (default 5000)')
    parser.add_argument('--rounds', type=int, default=5, help='alternated rounds per command (default 5)')
    args = parser.parse_args()
    if not shutil.which('ansible'):
        sys.exit('ansible not on PATH: run this through tools/run bench')

    procs = spawn_sleepers(args.processes)
    try:
        total = sum(1 for name in os.listdir('/proc') if name.isdigit())
        print('processes on the host during the run: %d (%d extra sleepers)' % (total, len(procs)))

        setup_times, facts_times = [], []
        for _ in range(args.rounds):
            setup_times.append(timed(ansible_module('ansible.builtin.setup'))[0])
            facts_times.append(timed(ansible_module('oomguard.linux.oom_facts'))[0])
        setup_s, facts_s = median(setup_times), median(facts_times)
        print('')
        print('1. oom_facts vs setup, `ansible localhost -c local -m ...`, median of %d alternated rounds' % args.rounds)
        print('   ansible.builtin.setup     %7.3f s  (runs: %s)' % (setup_s, ' '.join('%.2f' % t for t in setup_times)))
        print('   oomguard.linux.oom_facts  %7.3f s  (runs: %s)' % (facts_s, ' '.join('%.2f' % t for t in facts_times)))
        print('   ratio oom_facts/setup     %7.2f   (goal <= 0.50)' % (facts_s / setup_s))

        workdir = tempfile.mkdtemp(prefix='oomguard-bench-')
        try:
            script = os.path.join(workdir, 'oomscore.sh')
            with open(script, 'w') as handle:
                handle.write(OOMSCORE_SH)
            loop_times, scan_times = [], []
            for _ in range(args.rounds):
                loop_times.append(timed(['bash', script])[0])
                scan_times.append(timed([sys.executable, '-c', SCAN_PY])[0])
        finally:
            shutil.rmtree(workdir)
        loop_s, scan_s = median(loop_times), median(scan_times)
        print('')
        print('2. victim ranking, top 10 by oom_score, whole command, median of %d alternated rounds' % args.rounds)
        print('   seed 001 oomscore.sh loop %7.3f s  (runs: %s)' % (loop_s, ' '.join('%.2f' % t for t in loop_times)))
        print('   processes.scan_processes  %7.3f s  (runs: %s)' % (scan_s, ' '.join('%.2f' % t for t in scan_times)))
        print('   speed-up loop/scan        %7.1fx  (goal >= 20x)' % (loop_s / scan_s))
    finally:
        stop(procs)


if __name__ == '__main__':
    main()
