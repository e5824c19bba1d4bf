#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: oom_facts against its baselines, side by side in one run.

1. With N extra sleeping processes on this host (default 5,000), the wall
   time of the oomguard.linux.oom_facts module against ansible.builtin.setup
   (its default subset), both run the same way: the AnsiballZ payload that
   `ansible localhost -m MODULE` sends to the host, kept on disk
   (ANSIBLE_KEEP_REMOTE_FILES=1) and then executed R times each, alternated.
   That is the module's cost on the managed host.  The whole `ansible`
   command is timed as well, for reference: its fixed controller start-up
   (about as long as setup itself here) is the same for any module.
   ansible.builtin.ping's payload is timed the same way: it is the floor any
   module pays (unpacking AnsiballZ, importing module_utils.basic), so the
   work each module does on top of it is shown as well.
   Goal: module ratio <= 0.5.
2. The victim ranking alone: the collection's process scan (run as its own
   python process) against the oomscore.sh loop from seed 001 (bash + cat per
   process), on the same process table.  Goal: >= 20x faster.

Read-only on the host: it starts and then kills its own `sleep` processes.
Run it through `tools/run bench` so ansible and the collection are set up.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import _common

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
    for dummy in range(count):
        procs.append(subprocess.Popen([sleep, '3600'], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def timed(argv, env=None):
    elapsed, result = _common.run_timed(argv, env=env)
    if result.returncode != 0:
        sys.exit(_common.failure(argv, result, 'command failed', 2000))
    return elapsed, result.stdout.decode()


def ansible_module(module):
    return [_common.tool('ansible'), 'localhost', '-c', 'local', '-i', 'localhost,', '-m', module]


def kept_payload(module, keep_dir):
    """Run the module once through ansible and return its kept AnsiballZ file."""
    env = dict(os.environ, ANSIBLE_KEEP_REMOTE_FILES='1', ANSIBLE_REMOTE_TMP=keep_dir)
    before = set(os.listdir(keep_dir))
    timed(ansible_module(module), env=env)
    new = [d for d in os.listdir(keep_dir) if d not in before]
    for directory in new:
        for name in os.listdir(os.path.join(keep_dir, directory)):
            if name.startswith('AnsiballZ_'):
                return os.path.join(keep_dir, directory, name)
    sys.exit('no AnsiballZ payload kept for %s in %s' % (module, keep_dir))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--processes', type=int, default=5000, help='extra sleeping processes (default 5000)')
    parser.add_argument('--rounds', type=int, default=5, help='alternated rounds per command (default 5)')
    parser.add_argument('--loop-rounds', type=int, default=3,
                        help='rounds of the slow oomscore.sh loop comparison (default 3)')
    args = parser.parse_args()
    # The ansible commands below find the collection there, and the scan imports it from there.
    collections = os.environ['ANSIBLE_COLLECTIONS_PATH'] = _common.collections_path()
    _common.tool('ansible')

    procs = spawn_sleepers(args.processes)
    try:
        total = sum(1 for name in os.listdir('/proc') if name.isdigit())
        print('processes on the host during the run: %d (%d extra sleepers)' % (total, len(procs)))

        interpreter = _common.interpreter()
        keep_dir = tempfile.mkdtemp(prefix='oomguard-bench-keep-')
        try:
            payloads = {'setup': kept_payload('ansible.builtin.setup', keep_dir),
                        'oom_facts': kept_payload('oomguard.linux.oom_facts', keep_dir),
                        'ping': kept_payload('ansible.builtin.ping', keep_dir)}
            module_times = {'setup': [], 'oom_facts': [], 'ping': []}
            cli_times = {'setup': [], 'oom_facts': []}
            for dummy in range(args.rounds):
                for name in ('setup', 'oom_facts', 'ping'):
                    module_times[name].append(timed([interpreter, payloads[name]])[0])
            for dummy in range(args.rounds):
                cli_times['setup'].append(timed(ansible_module('ansible.builtin.setup'))[0])
                cli_times['oom_facts'].append(timed(ansible_module('oomguard.linux.oom_facts'))[0])
        finally:
            shutil.rmtree(keep_dir)
        print('')
        print('1. oom_facts vs setup (default subset), median of %d alternated rounds' % args.rounds)
        for label, times in (('module on the host (AnsiballZ payload run directly)', module_times),
                             ('whole `ansible localhost -c local -m MODULE` command', cli_times)):
            setup_s, facts_s = statistics.median(times['setup']), statistics.median(times['oom_facts'])
            print('   %s' % label)
            print('     ansible.builtin.setup     %7.3f s  (runs: %s)' % (setup_s, _common.runs(times['setup'])))
            print('     oomguard.linux.oom_facts  %7.3f s  (runs: %s)' % (facts_s, _common.runs(times['oom_facts'])))
            print('     ratio oom_facts/setup     %7.2f%s' % (facts_s / setup_s, '   (goal <= 0.50)' if times is module_times else ''))
            if times is module_times:
                ping_s = statistics.median(times['ping'])
                print('     ansible.builtin.ping      %7.3f s  (the floor: AnsiballZ + module_utils.basic)' % ping_s)
                print('     work above the floor: setup %.3f s, oom_facts %.3f s, ratio %.2f' % (
                    setup_s - ping_s, facts_s - ping_s, (facts_s - ping_s) / (setup_s - ping_s)))
        print('')
        workdir = tempfile.mkdtemp(prefix='oomguard-bench-')
        try:
            script = os.path.join(workdir, 'oomscore.sh')
            with open(script, 'w') as handle:
                handle.write(OOMSCORE_SH)
            loop_times, scan_times = [], []
            scan_env = dict(os.environ, PYTHONPATH=collections)
            for dummy in range(args.loop_rounds):
                loop_times.append(timed(['bash', script])[0])
                scan_times.append(timed([sys.executable, '-c', SCAN_PY], env=scan_env)[0])
        finally:
            shutil.rmtree(workdir)
        loop_s, scan_s = statistics.median(loop_times), statistics.median(scan_times)
        print('2. victim ranking, top 10 by oom_score, whole command, median of %d alternated rounds' % args.loop_rounds)
        print('   seed 001 oomscore.sh loop %7.3f s  (runs: %s)' % (loop_s, _common.runs(loop_times)))
        print('   processes.scan_processes  %7.3f s  (runs: %s)' % (scan_s, _common.runs(scan_times)))
        print('   speed-up loop/scan        %7.1fx  (goal >= 20x)' % (loop_s / scan_s))
    finally:
        _common.kill_all(procs)


if __name__ == '__main__':
    main()
