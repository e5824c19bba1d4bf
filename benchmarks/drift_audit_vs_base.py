#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the drift audit of one host, this tree against an earlier commit, side by side.

The policy part of oom_audit (audit.run: the three concerns' plans read as
rows) on this machine, read-only, with an inventory that makes two guards
fire (panic_on_oom 1 with kernel.panic 0, THP on a host without systemd),
so that the earlier tree's force loop has rounds to run.  Every path option
points into a temporary directory; nothing on the host is written.

The base tree is `git archive BASE` of this repository (default 9684024, the
last commit before the change engine) in a temporary directory.  Each round
runs one child process per tree, alternated, and each child times N calls of
audit.run in process after one untimed call.  Prints each tree's median of
the per-round medians, the rows and guards both trees report (they must
agree), and the ratio this/base (goal <= 1: no slower).

  tools/run bench benchmarks/drift_audit_vs_base.py [--base REV] [--rounds R] [--calls N]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import _common

CHILD = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.oomguard.linux.plugins.module_utils import audit, procfs
try:
    from ansible_collections.oomguard.linux.plugins.module_utils._engine import Labels
except ImportError:  # before the change engine
    from ansible_collections.oomguard.linux.plugins.module_utils.tunables import Labels
work = sys.argv[3]
params = {'profile': 'latency_sensitive', 'sysctl': {'vm.swappiness': 10, 'vm.panic_on_oom': 1, 'kernel.panic': 0},
          'thp': {}, 'services': {'ssh': {'oom_score_adj': -900}}, 'cgroups': {}, 'processes': [],
          'protect_defaults': True, 'early_oom': {'killer': 'earlyoom'}, 'force': [],
          'paths': {'sysctl_file': work + '/90.conf', 'compaction_file': work + '/91.conf',
                    'systemd_dir': work + '/systemd', 'state_dir': work + '/state'}}
names = ('sysctl', 'thp', 'force', 'profile', 'services', 'cgroups', 'processes', 'early_oom')
labels = Labels('h', dict([(n, 'oomguard_' + n) for n in names], compaction='oomguard_thp'))
host = procfs.HostRoot('/')
result = audit.run(params, host, labels)
times = []
for dummy in range(int(sys.argv[2])):
    started = time.perf_counter()
    audit.run(params, host, labels)
    times.append(time.perf_counter() - started)
print(json.dumps({'times': times, 'rows': len(result['settings']), 'guards': result['guards_fired'],
                  'summary': result['summary']}))
'''


def base_tree(rev, workdir):
    dest = os.path.join(workdir, 'base', 'ansible_collections', 'oomguard', 'linux')
    os.makedirs(dest)
    archive = subprocess.run(['git', '-C', _common.ROOT, 'archive', rev], stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(['tar', '-x', '-C', dest], input=archive, check=True)
    return os.path.join(workdir, 'base')


def child(collections, calls, workdir):
    out = subprocess.run([sys.executable, '-c', CHILD, collections, str(calls), workdir],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if out.returncode != 0:
        sys.exit('the audit failed in %s:\n%s' % (collections, out.stderr.decode()[-3000:]))
    return json.loads(out.stdout.decode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--base', default='9684024', help='the commit to compare with (default 9684024)')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--calls', type=int, default=100)
    args = parser.parse_args()
    this = _common.collections_path()
    workdir = tempfile.mkdtemp(prefix='oomguard-drift-bench-')
    try:
        base = base_tree(args.base, workdir)
        medians = {'this': [], 'base': []}
        seen = {}
        for dummy in range(args.rounds):
            for name, tree in (('base', base), ('this', this)):
                found = child(tree, args.calls, workdir)
                medians[name].append(statistics.median(found['times']))
                seen[name] = (found['rows'], found['guards'], found['summary'])
        print('drift audit of this host (policy part), %d rounds x %d calls, in process' % (args.rounds, args.calls))
        for name, label in (('base', 'base %s' % args.base), ('this', 'this tree')):
            print('  %-16s median %.2f ms (round medians: %s)' % (
                label, statistics.median(medians[name]) * 1000,
                ', '.join('%.2f' % (m * 1000) for m in medians[name])))
        print('  rows %d (%s), guards %s; base: rows %d, guards %s' % (
            seen['this'][0], ', '.join('%s %d' % item for item in sorted(seen['this'][2].items())),
            ', '.join(seen['this'][1]), seen['base'][0], ', '.join(seen['base'][1])))
        if seen['this'][:2] != seen['base'][:2]:
            sys.exit('the two trees report different rows or guards')
        ratio = statistics.median(medians['this']) / statistics.median(medians['base'])
        print('ratio this/base %.2f (goal <= 1.00): %s' % (ratio, 'PASS' if ratio <= 1.0 else 'FAIL'))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    main()
