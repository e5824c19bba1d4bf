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
import statistics
import sys
import tempfile

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--processes', type=int, default=5000)
    parser.add_argument('--cgroups', type=int, default=200)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    collections = _common.collections_path()
    with _common.limited_sleepers(args.processes, args.cgroups) as (placed, version):
        total = sum(1 for name in os.listdir('/proc') if name.isdigit())
        print('processes on the host: %d; %d of them in %d limited cgroups (cgroup v%d)' % (
            total, placed, args.cgroups, version))
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


if __name__ == '__main__':
    main()
