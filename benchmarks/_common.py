# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the benchmarks share: the collection, the tools, the VM driver, timing and printing.

Not a benchmark.  The scripts beside it import it as `_common` (a script's own
directory is first on sys.path when it is run as a file, as `tools/run bench
benchmarks/X.py` does).  Standard library only.  See docs/benchmarks.md.
"""

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The collections directory tools/run makes (a copy of this checkout).
BUILD_COLLECTIONS = os.path.join(ROOT, '.build', 'collections')
VM_PY = os.path.join(ROOT, 'molecule', 'shared', 'vm.py')
RUN_THROUGH = 'run the benchmarks through ./tools/run bench benchmarks/SCRIPT.py'
# One host's line of the PLAY RECAP of the default callback.
RECAP = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)'
                   r'\s+rescued=(\d+)\s+ignored=(\d+)', re.M)
RECAP_FIELDS = ('ok', 'changed', 'unreachable', 'failed', 'skipped', 'rescued', 'ignored')


# ---------------------------------------------------------------- the collection, the tools, the VMs

def collections_path():
    """The collections directory that has oomguard.linux.

    The first entry of ANSIBLE_COLLECTIONS_PATH that has it (tools/run sets
    .build/collections), else .build/collections of this checkout; else the
    benchmark stops and says how to run it.
    """
    candidates = [p for p in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) if p]
    if BUILD_COLLECTIONS not in candidates:
        candidates.append(BUILD_COLLECTIONS)
    for path in candidates:
        if os.path.isdir(os.path.join(path, 'ansible_collections', 'oomguard', 'linux')):
            return path
    sys.exit('oomguard.linux not found in %s: %s (it sets up .venv and .build/collections)'
             % (', '.join(candidates), RUN_THROUGH))


def tool(name):
    """The path of a command: the one beside this python (the venv's bin), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    found = here if os.path.exists(here) else shutil.which(name)
    if not found:
        sys.exit('%s not found: %s' % (name, RUN_THROUGH))
    return found


def interpreter():
    """The python the modules run with on localhost (tools/run sets the venv's)."""
    return os.environ.get('ANSIBLE_PYTHON_INTERPRETER') or sys.executable


def ansible_env(collections, **settings):
    """The environment of an ansible command: the collections, no colour, and the given ANSIBLE_* settings."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR='1', **settings)
    env.pop('ANSIBLE_FORCE_COLOR', None)
    return env


def load_vm():
    """molecule/shared/vm.py, the VM driver of the Molecule scenarios, as a module."""
    spec = importlib.util.spec_from_file_location('oomguard_bench_vm', VM_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- timing and printing

def run_timed(argv, env=None, cwd=None, merge=False):
    """(wall seconds, CompletedProcess) of one command, its output captured (stderr into stdout with merge).

    Whatever its exit code: the caller judges it (see failure()).
    """
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                            env=env, cwd=cwd, check=False)
    return time.perf_counter() - start, result


def failure(argv, result, what='failed', tail=3000):
    """The message for a command that failed: its exit code, its command line and the end of its output."""
    message = '%s (%d): %s\n%s' % (what, result.returncode, ' '.join(argv),
                                   result.stdout.decode('utf-8', 'replace')[-tail:])
    if result.stderr:
        message += '\n' + result.stderr.decode('utf-8', 'replace')[-2000:]
    return message


def runs(times, digits=2):
    """The single runs of a median, for the '(runs: ...)' of a result line."""
    return ' '.join('%.*f' % (digits, t) for t in times)


def kill_all(procs):
    """SIGKILL the benchmark's own child processes and reap them."""
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in procs:
        proc.wait()


# -- throwaway memory cgroups full of sleeping processes ---------------------------------------

def memory_mount():
    """(mount, cgroup version) of the memory controller; exits when there is none."""
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


def _members(group):
    try:
        with open(os.path.join(group, 'cgroup.procs')) as handle:
            return [int(pid) for pid in handle.read().split()]
    except OSError:
        return []


def _kill_members(groups):
    """SIGKILL every process in the cgroups and wait until they are gone (at most 30 s)."""
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


@contextlib.contextmanager
def limited_sleepers(processes, cgroups):
    """`processes` sleeping processes spread over `cgroups` throwaway memory cgroups with a 1 GiB limit
    each; yields (how many reached their cgroups, cgroup version). Changes no host setting: the cgroups
    are the benchmark's own, removed with their processes at the end.

    Each sleep moves itself into its cgroup, and its parent shell exits at once: the sleeps belong to
    no process of the benchmark, like the services of a real host (oom_facts leaves its own process
    tree out of every ranking)."""
    mount, version = memory_mount()
    limit_file = 'memory.max' if version == 2 else 'memory.limit_in_bytes'
    base = os.path.join(mount, 'oomguard-bench-%d' % os.getpid())
    groups = [os.path.join(base, 'g%03d' % i) for i in range(cgroups)]
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
        per_group = -(-processes // len(groups))
        for index, group in enumerate(groups):
            count = min(per_group, processes - index * per_group)
            subprocess.run(['sh', '-c', 'i=0; while [ $i -lt %d ]; do sh -c \'echo $$ > %s/cgroup.procs && exec %s 3600\' '
                            '</dev/null >/dev/null 2>&1 & i=$((i+1)); done' % (count, group, sleep)], check=True)
        placed = 0
        deadline = time.monotonic() + 60
        while placed < processes and time.monotonic() < deadline:
            time.sleep(0.5)
            placed = sum(len(_members(g)) for g in groups)
        if placed < processes:
            sys.exit('only %d of %d sleeps reached their cgroups in 60 s' % (placed, processes))
        yield placed, version
    finally:
        _kill_members(groups)
        for group in reversed(groups):
            if os.path.isdir(group):
                os.rmdir(group)
        if os.path.isdir(base):
            os.rmdir(base)
