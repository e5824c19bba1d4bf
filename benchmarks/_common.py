# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the benchmarks share: the collection, the tools, the VM driver, timing and printing.

Not a benchmark.  The scripts beside it import it as `_common` (a script's own
directory is first on sys.path when it is run as a file, as `tools/run bench
benchmarks/X.py` does).  Standard library only.  See docs/benchmarks.md.
"""

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
