#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the fleet audit against `ansible all -m ping`, on the same inventory and forks.

The inventory is N local-connection aliases of this machine (fleet-001 ...,
ansible_connection=local, the venv's python), for N in 25, 50 and 100.  For
each N, R alternated rounds (default 3) time, as wall time of the whole
command:

  ping   ansible all -i INVENTORY -m ansible.builtin.ping -f FORKS
  audit  ansible-playbook -i INVENTORY playbooks/audit.yml -f FORKS
         (the fleet audit: one oom_audit call per host with the policy, the
         posture, one slab sample and 20 OOM events, then the report written
         by oomguard.linux.fleet_report into a temporary directory;
         oomguard_audit_print false)

and prints, per N, the medians, the ratio audit/ping and the seconds per host,
then the growth from 25 to 100 hosts (linear: the time per host stays flat).
Goal: at 100 hosts, audit <= 3x ping; the time per host at 100 within 1.5x of
that at 25.  Every audit run must report 100 % of the hosts ok in its JSON;
else the benchmark fails.  Read-only on this machine (the audit only reads).

Run it through
  tools/run bench benchmarks/fleet_audit.py [--rounds R] [--forks F] [--sizes 25,50,100]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

import _common

PLAYBOOK = os.path.join(_common.ROOT, 'playbooks', 'audit.yml')
GOAL_RATIO = 3.0
GOAL_GROWTH = 1.5


def write_inventory(path, size):
    lines = ['all:', '  hosts:']
    for index in range(1, size + 1):
        lines += ['    fleet-%03d:' % index, '      ansible_connection: local',
                  '      ansible_python_interpreter: %s' % sys.executable]
    with open(path, 'w') as handle:
        handle.write('\n'.join(lines) + '\n')


def timed(argv, env):
    took, result = _common.run_timed(argv, env=env, merge=True)
    if result.returncode != 0:
        sys.exit(_common.failure(argv, result))
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--forks', type=int, default=10)
    parser.add_argument('--sizes', default='25,50,100')
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(',')]
    env = _common.ansible_env(_common.collections_path(), ANSIBLE_HOST_KEY_CHECKING='False',
                              ANSIBLE_FORKS=str(args.forks))
    ansible, playbook = _common.tool('ansible'), _common.tool('ansible-playbook')
    work = tempfile.mkdtemp(prefix='oomguard-bench-fleet-')
    print('ANSIBLE_COLLECTIONS_PATH=%s, forks %d, %d alternated rounds, cores %d' % (
        env['ANSIBLE_COLLECTIONS_PATH'], args.forks, args.rounds, os.cpu_count() or 0))
    results = {}
    try:
        for size in sizes:
            inventory = os.path.join(work, 'inventory-%d.yml' % size)
            report = os.path.join(work, 'report-%d' % size)
            write_inventory(inventory, size)
            ping_argv = [ansible, 'all', '-i', inventory, '-m', 'ansible.builtin.ping', '-f', str(args.forks)]
            audit_argv = [playbook, '-i', inventory, PLAYBOOK, '-f', str(args.forks), '-e', 'oomguard_report_dir=' + report,
                          '-e', 'oomguard_audit_print=false']
            times = {'ping': [], 'audit': []}
            for dummy in range(args.rounds):
                times['ping'].append(timed(ping_argv, env))
                times['audit'].append(timed(audit_argv, env))
                with open(os.path.join(report, 'oom-fleet-report.json')) as handle:
                    summary = json.load(handle)['summary']
                if summary['hosts'] != size or summary['by_status']['ok'] != size:
                    sys.exit('audit of %d hosts reported %s' % (size, summary['by_status']))
            ping, audit = statistics.median(times['ping']), statistics.median(times['audit'])
            results[size] = (ping, audit)
            print('%4d hosts  ping %7.2f s  audit %7.2f s  ratio %.2f  audit per host %.3f s  (runs: ping %s; audit %s)' % (
                size, ping, audit, audit / ping, audit / size, _common.runs(times['ping']), _common.runs(times['audit'])))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    largest, smallest = max(results), min(results)
    ratio = results[largest][1] / results[largest][0]
    growth = (results[largest][1] / largest) / (results[smallest][1] / smallest)
    print('ratio audit/ping at %d hosts: %.2f (goal <= %.1f)' % (largest, ratio, GOAL_RATIO))
    print('audit time per host, %d hosts against %d: %.2fx (goal <= %.1fx: linear)' % (largest, smallest, growth, GOAL_GROWTH))
    print('PASS' if ratio <= GOAL_RATIO and growth <= GOAL_GROWTH else 'FAIL')


if __name__ == '__main__':
    main()
