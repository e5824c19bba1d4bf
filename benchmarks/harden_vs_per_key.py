#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the idempotent re-run of the OOM settings, harden role against one task per key.

The same settings, applied a second time to the same host (localhost,
ansible_connection=local, the venv's python, the same forks), two ways:

  (a) the collection's umbrella role oomguard.linux.harden: one call of
      oomguard.linux.kernel_tunables for THP, compaction and the sysctls, and
  (b) the way other collections do it, one task per key: ansible.posix.sysctl
      for each sysctl (sysctl_file in the temporary directory, reload: true,
      sysctl_set: true) and, for each THP knob, an ansible.builtin.shell task
      that reads the file and writes it only when the value differs
      (changed_when).

The settings are this host's own live values: vm.panic_on_oom, kernel.panic,
vm.overcommit_memory, vm.overcommit_ratio, vm.min_free_kbytes,
vm.watermark_scale_factor, vm.watermark_boost_factor,
vm.oom_kill_allocating_task, vm.oom_dump_tasks, vm.swappiness,
vm.vfs_cache_pressure, vm.admin_reserve_kbytes, vm.user_reserve_kbytes,
vm.extfrag_threshold (those this kernel has) and THP enabled and defrag (the
[selected] word).  So neither play has a live value to write, and every file
goes to a temporary directory under /tmp (oomguard_profile none, the sysctl,
compaction, systemd and state paths in it, oomguard_force
[thp_not_persistent] as a host without systemd refuses THP persistence
otherwise, oomguard_become false).

Read-only on the host, and checked: before anything runs, both plays run in
check mode and must predict no live change (the roles' `changes` empty, (b)
changed=0); (b)'s sysctl file is pre-seeded with exactly what
ansible.posix.sysctl writes, as on a first run the module would otherwise
`sysctl -p` that file into the live kernel (identical values, but a write to
/proc/sys).  Each play then runs once untimed (the warm-up: the roles write
their files into the temporary directory), then R alternated rounds are timed
(wall time of the whole ansible-playbook command) and every timed run must
report changed=0.  The values of the keys above, the THP files, the entries of
/etc/sysctl.d and /etc/systemd/system, /etc/sysctl.conf and /var/lib/oomguard
are compared before and after; any difference fails the benchmark.

Prints the median and minimum of each side, the ratio (a)/(b) (goal <= 0.25)
and the tasks each play runs.

ansible.posix is not part of the venv: on first use the script runs
  python -m pip download --no-deps --require-hashes -r requirements/bench.txt -d .build/bench/wheels
(the `ansible` package pinned there, the one that goes with ansible-core 2.19)
and extracts only ansible_collections/ansible/posix/ from the wheel into
.build/bench/collections; both are kept and reused.  The collection itself is
taken from ANSIBLE_COLLECTIONS_PATH when that has oomguard.linux (tools/run
sets .build/collections), else from .build/collections; without either the
benchmark stops and says to run it through tools/run bench.

Run it through
  tools/run bench benchmarks/harden_vs_per_key.py [--rounds R] [--keep]
The temporary directory is removed at the end unless --keep.
"""

import argparse
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile

import yaml

import _common

ROOT = _common.ROOT
REQUIREMENTS = os.path.join(ROOT, 'requirements', 'bench.txt')
BENCH_BUILD = os.path.join(ROOT, '.build', 'bench')
WHEELS = os.path.join(BENCH_BUILD, 'wheels')
POSIX_COLLECTIONS = os.path.join(BENCH_BUILD, 'collections')
POSIX_PREFIX = 'ansible_collections/ansible/posix/'
POSIX_STAMP = os.path.join(POSIX_COLLECTIONS, '.extracted-from')

SYSCTLS = (
    'vm.panic_on_oom', 'kernel.panic', 'vm.overcommit_memory', 'vm.overcommit_ratio', 'vm.min_free_kbytes',
    'vm.watermark_scale_factor', 'vm.watermark_boost_factor', 'vm.oom_kill_allocating_task', 'vm.oom_dump_tasks',
    'vm.swappiness', 'vm.vfs_cache_pressure', 'vm.admin_reserve_kbytes', 'vm.user_reserve_kbytes',
    'vm.extfrag_threshold',
)
THP_DIR = '/sys/kernel/mm/transparent_hugepage'
THP_KNOBS = ('enabled', 'defrag')
# What must be the same after the benchmark as before it.
WATCHED_TREES = ('/etc/sysctl.d', '/etc/systemd/system')
WATCHED_PATHS = ('/etc/sysctl.conf', '/var/lib/oomguard')
WATCHED_FILES = tuple(os.path.join(THP_DIR, k) for k in THP_KNOBS + ('khugepaged/defrag',))
FORKS = 5
GOAL = 0.25
# Tasks that run on the controller, not on the host.
CONTROLLER_ACTIONS = ('include_role', 'ansible.builtin.include_role', 'validate_argument_spec',
                      'ansible.builtin.validate_argument_spec', 'meta', 'ansible.builtin.meta')

# (b)'s THP task: read the selected word, write only when it differs.
THP_SCRIPT = '''set -eu
file={path}
want={value}
now=$(sed -n 's/.*\\[\\(.*\\)\\].*/\\1/p' "$file")
if [ "$now" != "$want" ]; then
    echo "$want" > "$file"
    echo changed
fi
'''


# ---------------------------------------------------------------- ansible.posix

def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def pinned():
    """(version, [sha256]) of the ansible package pinned in requirements/bench.txt."""
    with open(REQUIREMENTS) as handle:
        text = handle.read()
    match = re.search(r'^ansible==(\S+)', text, re.M)
    hashes = re.findall(r'--hash=sha256:([0-9a-f]{64})', text)
    if not match or not hashes:
        sys.exit('%s: expected a line "ansible==X.Y.Z --hash=sha256:..."' % REQUIREMENTS)
    return match.group(1), hashes


def ensure_posix():
    """.build/bench/collections with ansible.posix from the pinned ansible wheel (cached)."""
    version, hashes = pinned()
    stamp = 'ansible==%s %s\n' % (version, ' '.join(sorted(hashes)))
    manifest = os.path.join(POSIX_COLLECTIONS, POSIX_PREFIX, 'MANIFEST.json')
    if os.path.isfile(manifest) and os.path.isfile(POSIX_STAMP):
        with open(POSIX_STAMP) as handle:
            if handle.read() == stamp:
                return POSIX_COLLECTIONS
    wheels = [w for w in glob.glob(os.path.join(WHEELS, 'ansible-%s-*.whl' % version)) if sha256(w) in hashes]
    if not wheels:
        print('fetching ansible==%s (for ansible.posix) into %s' % (version, os.path.relpath(WHEELS, ROOT)))
        os.makedirs(WHEELS, exist_ok=True)
        argv = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--require-hashes',
                '-r', REQUIREMENTS, '-d', WHEELS]
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            sys.exit(_common.failure(argv, result))
        wheels = [w for w in glob.glob(os.path.join(WHEELS, 'ansible-%s-*.whl' % version)) if sha256(w) in hashes]
        if not wheels:
            sys.exit('pip download left no ansible-%s wheel with a pinned hash in %s' % (version, WHEELS))
    staging = POSIX_COLLECTIONS + '.staging'
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in wheel.namelist():
            if not name.startswith(POSIX_PREFIX) or name.endswith('/'):
                continue
            if '..' in name.split('/'):
                sys.exit('refusing the wheel member %r' % name)
            wheel.extract(name, staging)
            count += 1
    if not count:
        sys.exit('%s has no %s' % (wheels[0], POSIX_PREFIX))
    with open(os.path.join(staging, os.path.basename(POSIX_STAMP)), 'w') as handle:
        handle.write(stamp)
    shutil.rmtree(POSIX_COLLECTIONS, ignore_errors=True)
    os.rename(staging, POSIX_COLLECTIONS)
    print('extracted ansible.posix (%d files) from %s' % (count, os.path.basename(wheels[0])))
    return POSIX_COLLECTIONS


# ---------------------------------------------------------------- the host

def sysctl_path(name):
    return '/proc/sys/' + name.replace('.', '/')


def read_text(path):
    with open(path) as handle:
        return handle.read()


def live_settings():
    """({sysctl: value}, {thp knob: selected}, [missing sysctls]) of this host, now."""
    sysctls, missing = {}, []
    for name in SYSCTLS:
        try:
            text = read_text(sysctl_path(name)).strip()
        except FileNotFoundError:
            missing.append(name)
            continue
        if not re.match(r'^-?\d+$', text):
            sys.exit('%s = %r: expected one integer' % (name, text))
        sysctls[name] = text
    thp = {}
    for knob in THP_KNOBS:
        path = os.path.join(THP_DIR, knob)
        if not os.path.exists(path):
            missing.append('transparent_hugepage.' + knob)
            continue
        match = re.search(r'\[([^\]]+)\]', read_text(path))
        if not match:
            sys.exit('%s has no [selected] value' % path)
        thp[knob] = match.group(1)
    return sysctls, thp, missing


def describe(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 'absent'
    target = os.readlink(path) if os.path.islink(path) else ''
    return 'mode %o size %d mtime_ns %d uid %d gid %d%s' % (
        info.st_mode, info.st_size, info.st_mtime_ns, info.st_uid, info.st_gid, ' -> ' + target if target else '')


def snapshot():
    """What the benchmark must not change: {what: state}."""
    state = {}
    for name in SYSCTLS:
        path = sysctl_path(name)
        state[path] = read_text(path) if os.path.exists(path) else 'absent'
    for path in WATCHED_FILES:
        state[path] = read_text(path) if os.path.exists(path) else 'absent'
    for path in WATCHED_PATHS:
        state[path] = describe(path)
    for top in WATCHED_TREES:
        state[top] = describe(top)
        for directory, dirs, files in os.walk(top):
            for name in dirs + files:
                path = os.path.join(directory, name)
                state[path] = describe(path)
    return state


def compare(before, after):
    return ['%s: %r -> %r' % (key, before.get(key, 'absent'), after.get(key, 'absent'))
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


# ---------------------------------------------------------------- the plays

def write_yaml(path, data):
    with open(path, 'w') as handle:
        handle.write('---\n')
        yaml.safe_dump(data, handle, default_flow_style=False, sort_keys=False, width=1000)


def write_plays(workdir, sysctls, thp, interpreter):
    """Inventory and the two playbooks; returns (inventory, play a, play b)."""
    inventory = os.path.join(workdir, 'inventory.ini')
    with open(inventory, 'w') as handle:
        handle.write('localhost ansible_connection=local ansible_python_interpreter=%s\n' % interpreter)
    roles_dir = os.path.join(workdir, 'a')
    play_a = os.path.join(workdir, 'harden.yml')
    write_yaml(play_a, [{
        'name': 'OOM settings through oomguard.linux.harden',
        'hosts': 'all',
        'gather_facts': False,
        'become': '{{ oomguard_become | default(true) }}',
        'vars': {
            'oomguard_become': False,
            'oomguard_profile': 'none',
            'oomguard_sysctl': dict((name, int(value)) for name, value in sysctls.items()),
            'oomguard_thp': dict(thp),
            'oomguard_force': ['thp_not_persistent'],
            'oomguard_sysctl_file': os.path.join(roles_dir, 'sysctl.d', '90-oomguard.conf'),
            'oomguard_thp_compaction_file': os.path.join(roles_dir, 'sysctl.d', '90-oomguard-compaction.conf'),
            'oomguard_systemd_dir': os.path.join(roles_dir, 'systemd', 'system'),
            'oomguard_state_dir': os.path.join(roles_dir, 'state'),
        },
        'roles': [{'role': 'oomguard.linux.harden'}],
    }])
    per_key_dir = os.path.join(workdir, 'b')
    os.makedirs(per_key_dir)
    sysctl_file = os.path.join(per_key_dir, '90-oom.conf')
    # What ansible.posix.sysctl writes (name=value, in task order): with the file
    # already right, its first run does not `sysctl -p` the file into the kernel.
    with open(sysctl_file, 'w') as handle:
        handle.write(''.join('%s=%s\n' % item for item in sysctls.items()))
    tasks = []
    for name, value in sysctls.items():
        tasks.append({'name': 'sysctl %s' % name, 'ansible.posix.sysctl': {
            'name': name, 'value': value, 'sysctl_file': sysctl_file, 'reload': True, 'sysctl_set': True}})
    for knob, value in thp.items():
        register = 'thp_%s' % knob
        tasks.append({
            'name': 'THP %s' % knob,
            'ansible.builtin.shell': THP_SCRIPT.format(path=shlex.quote(os.path.join(THP_DIR, knob)),
                                                       value=shlex.quote(value)),
            'register': register,
            'changed_when': "%s.stdout == 'changed'" % register,
        })
    play_b = os.path.join(workdir, 'per_key.yml')
    write_yaml(play_b, [{
        'name': 'OOM settings, one task per key',
        'hosts': 'all',
        'gather_facts': False,
        'become': False,
        'tasks': tasks,
    }])
    return inventory, play_a, play_b


class Runner(object):
    def __init__(self, workdir, inventory, collections):
        self.workdir = workdir
        self.inventory = inventory
        self.ansible_playbook = _common.tool('ansible-playbook')
        self.env = _common.ansible_env(collections, ANSIBLE_LOCALHOST_WARNING='false',
                                       ANSIBLE_INVENTORY_UNPARSED_WARNING='false', ANSIBLE_RETRY_FILES_ENABLED='false',
                                       ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default')

    def run(self, playbook, check=False, json_output=False):
        """(seconds, stdout) of one ansible-playbook run; exits when it fails."""
        argv = [self.ansible_playbook, '-i', self.inventory, '--forks', str(FORKS)]
        argv += ['--check'] if check else []
        env = dict(self.env, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json') if json_output else self.env
        elapsed, result = _common.run_timed(argv + [playbook], env=env, cwd=self.workdir)
        if result.returncode != 0:
            sys.exit(_common.failure(argv + [playbook], result, 'ansible-playbook failed', 4000))
        return elapsed, result.stdout.decode('utf-8', 'replace')


def recap(out):
    """{field: count} of the one host in a default-callback recap."""
    hosts = _common.RECAP.findall(out)
    if len(hosts) != 1:
        sys.exit('expected the recap of one host, found %d:\n%s' % (len(hosts), out[-2000:]))
    return dict(zip(_common.RECAP_FIELDS, (int(n) for n in hosts[0][1:])))


def json_results(out):
    """[(task name, action, result)] of every task of a json-callback run, and its stats."""
    data = json.loads(out[out.index('{'):])
    results = []
    for play in data['plays']:
        for task in play['tasks']:
            for result in task['hosts'].values():
                results.append((task['task']['name'], result.get('action', ''), result))
    return results, data['stats']


def live_changes(results):
    """The live values the oomguard.linux roles wrote (or, in check mode, would write)."""
    return [(name, change) for name, dummy, result in results for change in result.get('changes') or []]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=5, help='alternated timed rounds (default 5)')
    parser.add_argument('--keep', action='store_true', help='keep the temporary directory')
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error('--rounds must be at least 1')

    collections = os.pathsep.join([_common.collections_path(), ensure_posix()])
    interpreter = _common.interpreter()
    sysctls, thp, missing = live_settings()
    before = snapshot()
    workdir = tempfile.mkdtemp(prefix='oomguard-bench-harden-', dir='/tmp')
    try:
        inventory, play_a, play_b = write_plays(workdir, sysctls, thp, interpreter)
        runner = Runner(workdir, inventory, collections)
        print('settings (the live values of this host): %s' % ', '.join(
            ['%s=%s' % item for item in sysctls.items()]
            + ['transparent_hugepage.%s=%s' % item for item in thp.items()]))
        if missing:
            print('  not on this kernel, left out: %s' % ', '.join(missing))
        print('ANSIBLE_COLLECTIONS_PATH=%s' % collections)
        print('temporary directory: %s' % workdir)

        # Check mode first: neither play may predict a live change.
        dummy, out = runner.run(play_a, check=True, json_output=True)
        planned = live_changes(json_results(out)[0])
        if planned:
            sys.exit('refusing to run: in check mode oomguard.linux.harden would change live values: %s' % planned)
        dummy, out = runner.run(play_b, check=True, json_output=True)
        stats = json_results(out)[1]
        if any(host['changed'] for host in stats.values()):
            sys.exit('refusing to run: in check mode the per-key play would change something: %s' % stats)

        # Warm-up, untimed: the roles write their files into the temporary directory.
        dummy, out = runner.run(play_a, json_output=True)
        results_a, stats_a = json_results(out)
        if live_changes(results_a):
            sys.exit('BENCHMARK FAILURE: the warm-up of oomguard.linux.harden changed live values: %s'
                     % live_changes(results_a))
        dummy, out = runner.run(play_b, json_output=True)
        results_b, stats_b = json_results(out)
        if any(host['changed'] for host in stats_b.values()):
            sys.exit('BENCHMARK FAILURE: the warm-up of the per-key play changed something: %s' % stats_b)

        times = {'a': [], 'b': []}
        for dummy in range(args.rounds):
            for side, play in (('a', play_a), ('b', play_b)):
                elapsed, out = runner.run(play)
                counts = recap(out)
                if counts['changed'] or counts['failed'] or counts['unreachable']:
                    sys.exit('BENCHMARK FAILURE: an idempotent run of %s reported %s\n%s'
                             % (play, counts, out[-4000:]))
                times[side].append(elapsed)
    finally:
        # Also when a run failed: say loudly whether the host changed.
        differences = compare(before, snapshot())
        if differences:
            sys.stderr.write('BENCHMARK FAILURE: THE HOST CHANGED during the benchmark:\n  %s\n'
                             % '\n  '.join(differences))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if differences:
        sys.exit(1)

    def tasks_line(results):
        actions = [action for dummy, action, dummy2 in results]
        host = [a for a in actions if a not in CONTROLLER_ACTIONS]
        kinds = {}
        for action in actions:
            kinds[action] = kinds.get(action, 0) + 1
        return '%d tasks, %d of them module calls on the host (%s)' % (
            len(actions), len(host), ', '.join('%d %s' % (n, a) for a, n in sorted(kinds.items())))

    a_s, b_s = statistics.median(times['a']), statistics.median(times['b'])
    ratio = a_s / b_s
    print('')
    print('idempotent re-run, wall time of ansible-playbook, localhost (local connection), forks %d, '
          '%d alternated rounds' % (FORKS, args.rounds))
    print('  (a) oomguard.linux.harden   median %6.2f s  min %6.2f s  (runs: %s)'
          % (a_s, min(times['a']), _common.runs(times['a'])))
    print('      %s' % tasks_line(results_a))
    print('  (b) one task per key        median %6.2f s  min %6.2f s  (runs: %s)'
          % (b_s, min(times['b']), _common.runs(times['b'])))
    print('      %s' % tasks_line(results_b))
    print('  ratio (a)/(b) of the medians %5.2f  (goal <= %.2f): %s'
          % (ratio, GOAL, 'PASS' if ratio <= GOAL else 'MISS'))
    print('  every timed run changed=0; the host is unchanged (%d watched values, files and directory entries)'
          % len(before))
    if args.keep:
        print('  kept %s' % workdir)


if __name__ == '__main__':
    main()
