#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the near-OOM stall, kernel alone against the latency_sensitive profile, side by side.

Seed 002's complaint: near the memory limit, with page cache in play, every
service on the host stalls for seconds to minutes before the kernel's OOM
killer acts.  Two VMs are booted together by molecule/shared/vm.py from the
same spec (Debian 12, 640 MiB, 1 CPU, no swap; QEMU, TCG unless KVM works
here, CPU model max,erms=off under TCG):

  kernel    left as booted: the kernel's OOM killer alone, and
  hardened  oomguard.linux.harden with oomguard_profile latency_sensitive,
            earlyoom (prefer runaway, avoid heartbeat) and cpu_weight 1000
            for the heartbeat's unit.

In each trial a heartbeat service (a 10 ms loop over a file-backed buffer)
runs while a runaway maps memory until something kills it; the program run
on the VMs is benchmarks/guest/stall_guest.py.  R rounds (default 7; --quick:
1), one trial per VM each, alternated.  Goal: the hardened VM's worst stall
<= 0.5 s in every trial, the ratio hardened/kernel of the median worst stalls
<= 0.1, and the right victim (the runaway, nothing else) in every trial.  The
exit code is 0 on FAIL too; it is non-zero only when the benchmark itself
failed.

The steps of a trial, what is checked on each VM, and why the VMs run with
erms=off and each trial begins with a scrub (the QEMU/TCG findings):
docs/benchmarks.md.  The collection is taken from ANSIBLE_COLLECTIONS_PATH
when that has oomguard.linux (tools/run sets .build/collections), else from
.build/collections.  The VMs run under a temporary directory in /tmp and are
always shut down at the end; that directory (inventory, playbook, ansible
output, trials/ROUND-SIDE.json with each trial's timeline, kernel and
earlyoom lines) is removed unless --keep.

Run it through
  tools/run bench benchmarks/near_oom_stall.py [--rounds R | --quick] [--cap S] [--keep]
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

PROFILE = 'latency_sensitive'
# erms=off under TCG: the guest then zeroes a page with 512 eight-byte stores
# instead of 4096 one-byte ones (see "Why erms=off and the scrub" in docs/benchmarks.md).
SPEC = {'memory_mib': 640, 'cpus': 1, 'numa_nodes': 1, 'kernel_args': '', 'tcg_cpu': 'max,erms=off'}
SIDES = ('kernel', 'hardened')
LABELS = {'kernel': 'kernel alone', 'hardened': 'latency_sensitive + earlyoom + cpu_weight'}
EARLY_OOM = {'killer': 'earlyoom', 'prefer': ['runaway'], 'avoid': ['heartbeat']}
# The latency-critical service's share of the one CPU while the kernel
# reclaims (per-gap counters: the hardened VM's stall was time off the CPU).
SERVICES = {'bench-heartbeat': {'cpu_weight': 1000}}
CACHE_FRACTION = 0.4
GOAL_STALL_S = 0.5
GOAL_RATIO = 0.1
POLL_S = 5
# Before each trial, every VM's QEMU must be quiet: at most QUIET_SHARE of a core
# over QUIET_WINDOW_S (a booted, idle 1-CPU TCG guest uses a few per cent).
QUIET_SHARE = 0.15
QUIET_WINDOW_S = 3
QUIET_TIMEOUT_S = 180
# The program run on the VMs (python3 of Debian 12), copied there as GUEST_PATH:
# `install`, `prepare`, `launch`, `collect`, `cleanup` and `settings` over SSH;
# `heartbeat` and `runaway` as the units.
GUEST = os.path.join(_common.HERE, 'guest', 'stall_guest.py')
GUEST_PATH = '/root/bench_guest.py'
SSH_EXTRA = ['-o', 'ServerAliveInterval=10', '-o', 'ServerAliveCountMax=6']


class BenchError(Exception):
    pass


def say(message):
    print(message)
    sys.stdout.flush()


# ---------------------------------------------------------------- the collection, ansible, the VMs

def profile_expectations(collections):
    """What the profile sets that the hardened VM must show: ({sysctl: str}, THP enabled)."""
    sys.path.insert(0, collections)
    try:
        from ansible_collections.oomguard.linux.plugins.module_utils import tunables
    except ImportError as exc:
        raise BenchError('cannot import tunables from %s: %s' % (collections, exc))
    finally:
        sys.path.remove(collections)
    profile = tunables.PROFILES[PROFILE]
    sysctl = dict((key, str(profile['sysctl'][key])) for key in ('vm.swappiness', 'vm.watermark_scale_factor'))
    return sysctl, profile['thp'].get('enabled')


def other_qemus(run_root):
    """Command lines (shortened) of QEMU processes on this machine that are not this benchmark's."""
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                argv = handle.read().split(b'\0')
        except OSError:
            continue
        if b'qemu' in os.path.basename(argv[0]) and not any(run_root.encode() in arg for arg in argv[1:]):
            name = argv[argv.index(b'-name') + 1].decode('utf-8', 'replace') if b'-name' in argv else argv[0].decode()
            found.append('%s (pid %s)' % (name, pid))
    return found


class Guest(object):
    """One VM, reached over SSH."""

    def __init__(self, vm, config):
        self.vm = vm
        self.config = config
        self.name = config['instance']

    def argv(self, command):
        config = self.config
        return (['ssh', '-i', config['identity_file'], '-p', str(config['port'])] + self.vm.SSH_OPTIONS + SSH_EXTRA
                + ['%s@%s' % (config['user'], config['address']), command])

    def run(self, command, timeout_s, stdin=None):
        """(rc, stdout, stderr); rc None when the command timed out."""
        try:
            result = subprocess.run(self.argv(command), input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return None, '', 'timed out after %d s' % timeout_s
        return result.returncode, result.stdout.decode('utf-8', 'replace'), result.stderr.decode('utf-8', 'replace')

    def check(self, command, timeout_s=300, stdin=None):
        rc, out, err = self.run(command, timeout_s, stdin)
        if rc != 0:
            raise BenchError('%s: `%s` failed (%s): %s %s' % (self.name, command, rc, out[-2000:], err[-2000:]))
        return out

    def retry(self, command, deadline_s, timeout_s=60):
        """Run until it succeeds (the guest may be in the stall); None when deadline_s passed."""
        deadline = time.monotonic() + deadline_s
        while True:
            rc, out, dummy = self.run(command, min(timeout_s, max(5, deadline - time.monotonic())))
            if rc == 0:
                return out
            if time.monotonic() > deadline:
                return None
            time.sleep(POLL_S)

    def guest(self, arguments, timeout_s=300):
        return json.loads(self.check('python3 %s %s' % (GUEST_PATH, arguments), timeout_s))


# ---------------------------------------------------------------- hardening

def harden(guest, workdir, collections):
    """Run oomguard.linux.harden on the VM; returns (seconds, changed)."""
    config = guest.config
    inventory = os.path.join(workdir, 'inventory.yml')
    playbook = os.path.join(workdir, 'harden.yml')
    # JSON is YAML: no third-party module needed to write them.
    with open(inventory, 'w') as handle:
        json.dump({'all': {
            'hosts': {guest.name: {
                'ansible_host': config['address'], 'ansible_port': config['port'], 'ansible_user': 'root',
                'ansible_ssh_private_key_file': config['identity_file'],
                'ansible_python_interpreter': '/usr/bin/python3',
                'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null',
            }},
            'vars': {'oomguard_profile': PROFILE, 'oomguard_early_oom': EARLY_OOM, 'oomguard_services': SERVICES,
                     'oomguard_become': False},
        }}, handle, indent=2)
    with open(playbook, 'w') as handle:
        json.dump([{'name': 'Harden the VM against the near-OOM stall', 'hosts': 'all', 'gather_facts': False,
                    'become': '{{ oomguard_become | default(true) }}', 'roles': ['oomguard.linux.harden']}],
                  handle, indent=2)
    env = _common.ansible_env(collections, ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_RETRY_FILES_ENABLED='false',
                              ANSIBLE_PIPELINING='true', ANSIBLE_TIMEOUT='60',
                              ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default')
    argv = [_common.tool('ansible-playbook'), '-i', inventory, playbook]
    elapsed, result = _common.run_timed(argv, env=env, cwd=workdir, merge=True)
    out = result.stdout.decode('utf-8', 'replace')
    with open(os.path.join(workdir, 'harden.log'), 'w') as handle:
        handle.write(out)
    recap = _common.RECAP.findall(out)
    if result.returncode != 0 or len(recap) != 1 or int(recap[0][3]) or int(recap[0][4]):
        raise BenchError('ansible-playbook failed (%d): %s\n%s' % (result.returncode, ' '.join(argv), out[-4000:]))
    return elapsed, int(recap[0][2])


def check_settings(settings, side, expected_sysctl, expected_thp):
    """Problems with a VM's settings for its side of the benchmark (a list of strings)."""
    problems = []
    weight = str(SERVICES['bench-heartbeat']['cpu_weight'])
    if side == 'kernel':
        for killer in ('earlyoom', 'systemd-oomd'):
            if settings[killer] == 'active':
                problems.append('%s is active on the kernel-alone VM' % killer)
        if settings['heartbeat_cpu_weight'] == weight:
            problems.append('the heartbeat has CPUWeight=%s on the kernel-alone VM' % weight)
        return problems
    if settings['earlyoom'] != 'active':
        problems.append('earlyoom is %s, not active' % settings['earlyoom'])
    if settings['heartbeat_cpu_weight'] != weight:
        problems.append('the heartbeat has CPUWeight=%s, the inventory sets %s' % (settings['heartbeat_cpu_weight'], weight))
    for key, value in expected_sysctl.items():
        if settings['sysctl'][key] != value:
            problems.append('%s = %s, the profile sets %s' % (key, settings['sysctl'][key], value))
    if expected_thp and settings['thp_enabled'] != expected_thp:
        problems.append('THP enabled = %s, the profile sets %s' % (settings['thp_enabled'], expected_thp))
    return problems


def describe_settings(settings):
    return ('%s; earlyoom %s, systemd-oomd %s; THP %s; heartbeat CPUWeight=%s%s' % (
        ', '.join('%s=%s' % item for item in settings['sysctl'].items()), settings['earlyoom'], settings['systemd-oomd'],
        settings['thp_enabled'], settings['heartbeat_cpu_weight'],
        '; ' + settings['earlyoom_args'] if settings['earlyoom'] == 'active' else ''))


# ---------------------------------------------------------------- one trial

def qemu_cpu_s(guest):
    """CPU seconds the VM's QEMU process has used on this machine (None when it is gone)."""
    pid = guest.vm.read_pid(guest.config['run_dir'])
    try:
        with open('/proc/%d/stat' % pid) as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
    except (OSError, TypeError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))


def wait_quiet(guests, timeout_s=QUIET_TIMEOUT_S):
    """Wait until no VM's QEMU uses more than QUIET_SHARE of a core over QUIET_WINDOW_S.

    The trials take turns, but a VM goes on working after its own trial (seen:
    a kernel VM's busy aftermath while the hardened VM's trial ran); on two
    cores that slows the VM whose trial runs.  Returns the seconds waited and
    the busiest VM's share in the last window.
    """
    started = time.monotonic()
    while True:
        before = [qemu_cpu_s(g) for g in guests]
        time.sleep(QUIET_WINDOW_S)
        after = [qemu_cpu_s(g) for g in guests]
        busiest = max((b - a) / QUIET_WINDOW_S for a, b in zip(before, after) if a is not None and b is not None)
        waited = time.monotonic() - started
        if busiest <= QUIET_SHARE or waited >= timeout_s:
            return waited, busiest


def trial(guest, cap_s, save_dir, label, others=()):
    """One trial on one VM; returns its figures (a dict)."""
    waited, busiest = wait_quiet([guest] + list(others))
    prepared = guest.guest('prepare %s' % CACHE_FRACTION, timeout_s=600)
    others_before = [qemu_cpu_s(g) for g in others]
    started = time.monotonic()
    launched = guest.guest('launch %d' % cap_s, timeout_s=300)

    # Poll the runaway's unit until it ended (the guest may not answer for minutes).
    deadline = time.monotonic() + cap_s + 300
    polls = unanswered = 0
    while True:
        time.sleep(POLL_S)
        polls += 1
        rc, out, dummy = guest.run('systemctl show -P SubState bench-runaway.service', 30)
        if rc == 0 and out.strip() in ('exited', 'failed', 'dead'):
            break
        if rc != 0:
            unanswered += 1
        if time.monotonic() > deadline:
            raise BenchError('%s: bench-runaway still runs %d s after its start (cap %d s)' % (guest.name, cap_s + 300, cap_s))

    # Collect once the heartbeat has beaten after the runaway's end (or is gone).
    command = 'python3 %s collect %d %d' % (GUEST_PATH, prepared['dmesg_lines'], prepared['epoch'])
    deadline = time.monotonic() + 300
    while True:
        out = guest.retry(command, max(10, deadline - time.monotonic()), timeout_s=120)
        if out is None:
            raise BenchError('%s: no answer to collect for 300 s after the runaway ended' % guest.name)
        data = json.loads(out)
        units = data['units']
        heartbeat = data['heartbeat'] or {}
        exit_s = int(units['bench-runaway'].get('ExecMainExitTimestampMonotonic') or 0) / 1e6
        if (units['bench-heartbeat'].get('ActiveState') != 'active' or heartbeat.get('last_beat', 0) > exit_s + 1.0
                or time.monotonic() > deadline):
            break
        time.sleep(2)
    cleaned = guest.retry('python3 %s cleanup' % GUEST_PATH, 300, timeout_s=120)
    if cleaned is None:
        raise BenchError('%s: the cleanup did not answer for 300 s' % guest.name)

    elapsed = time.monotonic() - started
    others_cpu_s = sum(b - a for a, b in zip(others_before, [qemu_cpu_s(g) for g in others])
                       if a is not None and b is not None)
    host = {'quiet_wait_s': waited, 'quiet_share': busiest, 'others_cpu_share': others_cpu_s / elapsed}
    with open(os.path.join(save_dir, '%s.json' % label), 'w') as handle:
        json.dump({'prepared': prepared, 'launched': launched, 'collected': data, 'host': host}, handle, indent=1)
    figures = figures_of(label, prepared, launched, data, cap_s, unanswered, polls)
    figures.update(host)
    return figures


def figures_of(label, prepared, launched, data, cap_s, unanswered, polls):
    """The figures of one trial from what the guest reported."""
    runaway_unit = data['units']['bench-runaway']
    heartbeat_unit = data['units']['bench-heartbeat']
    heartbeat = data['heartbeat'] or {}
    start_s = int(runaway_unit.get('ExecMainStartTimestampMonotonic') or 0) / 1e6
    exit_s = int(runaway_unit.get('ExecMainExitTimestampMonotonic') or 0) / 1e6
    # Killed by a signal (CLD_KILLED, CLD_DUMPED), and before the cap (where systemd stops it).
    died = bool(start_s and exit_s and runaway_unit.get('ExecMainCode') in ('2', '3') and exit_s - start_s < cap_s - 1)
    heartbeat_alive = (heartbeat_unit.get('ActiveState') == 'active'
                       and heartbeat_unit.get('MainPID') == str(launched['heartbeat_pid']))
    killed = [(name, by, at - start_s if start_s else None) for at, dummy, name, by in data['kills']]
    others = sorted(set(name for name, dummy, dummy2 in killed if name != 'runaway'))
    worst = heartbeat.get('worst')
    fields = data.get('sample_fields') or []
    available = [row[fields.index('MemAvailable')] for row in data.get('samples') or []
                 if 'MemAvailable' in fields and start_s <= row[0] <= (exit_s or row[0])]
    return {
        'label': label,
        'worst_s': worst,
        'worst_own': heartbeat.get('worst_own'),
        'worst_from_s': heartbeat['worst_from'] - start_s if heartbeat.get('worst_from') and start_s else None,
        'stalled_s': heartbeat.get('stalled'),
        'stalls': heartbeat.get('stalls'),
        'death_s': exit_s - start_s if died else None,
        'result': runaway_unit.get('Result', '?'),
        'exit': '%s/%s' % (runaway_unit.get('ExecMainCode'), runaway_unit.get('ExecMainStatus')),
        'runaway_mib': (data.get('runaway') or [[0, 0]])[-1][1],
        'min_available_mib': min(available) if available else None,
        'died': died,
        'heartbeat_alive': heartbeat_alive,
        'killed': killed,
        'others': others,
        'right': bool(died and heartbeat_alive and not others and worst is not None),
        'cache_mib': prepared['cache_mib'],
        'scrub_mib': prepared.get('scrub_mib'),
        'scrub_s': prepared.get('scrub_s'),
        'cached_mib': launched['cached_kib'] >> 10,
        'available_mib': launched['available_kib'] >> 10,
        'unanswered': unanswered,
        'polls': polls,
    }


def killers(figures, when=True):
    """'runaway by kernel at +148.3 s' and the like, from the kill lines."""
    if not figures['killed']:
        return 'nobody (Result=%s)' % figures['result']
    seen = []
    for name, by, at in figures['killed']:
        text = '%s by %s%s' % (name, by, ' at %+.1f s' % at if when and at is not None else '')
        if text not in seen:
            seen.append(text)
    return ', '.join(seen)


def seconds(value, width=8, digits=3):
    return '%*.*f s' % (width, digits, value) if value is not None else '%*s s' % (width, '?')


def trial_line(side, figures):
    """Two lines: the figures, then the conditions."""
    own = figures.get('worst_own')
    own_text = (' [the heartbeat meanwhile: %d major and %d minor faults, %.3f s of CPU, %d waits, %d preemptions]'
                % (own['majflt'], own['minflt'], own['cpu_s'], own['nvcsw'], own['nivcsw']) if own else '')
    return ('  %-8s worst stall %s%s%s, stalled %s in all (%s gaps >= 50 ms); runaway %s; killed: %s; heartbeat %s -> %s\n'
            '           runaway at %d MiB, Result=%s, exit %s; page cache %d MiB (%d MiB cached, %d MiB available at its '
            'start, %s at least, %d MiB scrubbed in %.1f s before); %d of %d polls unanswered; the other VM used '
            '%.0f %% of a core meanwhile (waited %.0f s for the VMs to be quiet)' % (
                side, seconds(figures['worst_s'], 0),
                ' (from %+.1f s)' % figures['worst_from_s'] if figures['worst_from_s'] is not None else '', own_text,
                seconds(figures['stalled_s'], 0, 1), figures['stalls'],
                'dead after %.1f s' % figures['death_s'] if figures['death_s'] is not None else 'NOT killed',
                killers(figures), 'still active' if figures['heartbeat_alive'] else 'GONE',
                'right victim' if figures['right'] else 'WRONG VICTIM',
                figures['runaway_mib'], figures['result'], figures['exit'],
                figures['cache_mib'], figures['cached_mib'], figures['available_mib'],
                '%d MiB' % figures['min_available_mib'] if figures['min_available_mib'] is not None else '?',
                figures['scrub_mib'], figures['scrub_s'], figures['unanswered'], figures['polls'],
                100 * figures['others_cpu_share'], figures['quiet_wait_s']))


# ---------------------------------------------------------------- main

def median_max(values):
    known = [v for v in values if v is not None]
    return (statistics.median(known), max(known)) if known else (None, None)


def summary(results, rounds):
    print('')
    print('near-OOM stall: the heartbeat\'s worst gap (10 ms period), %d round(s), kernel alone and hardened alternated'
          % rounds)
    medians = {}
    for side in SIDES:
        trials = results[side]
        medians[side], worst_max = median_max([f['worst_s'] for f in trials])
        stalled_median, stalled_max = median_max([f['stalled_s'] for f in trials])
        death_median, death_max = median_max([f['death_s'] for f in trials])
        print('  %s' % LABELS[side])
        print('    worst stall            median %s  max %s  (trials: %s)' % (
            seconds(medians[side]), seconds(worst_max), ' '.join(seconds(f['worst_s'], 0) for f in trials)))
        print('    stalled in all         median %s  max %s  (sum of the gaps >= 50 ms)' % (
            seconds(stalled_median, 8, 1), seconds(stalled_max, 8, 1)))
        print('    runaway dead after     median %s  max %s  (trials: %s)' % (
            seconds(death_median, 8, 1), seconds(death_max, 8, 1),
            ' '.join(seconds(f['death_s'], 0, 1) if f['death_s'] is not None else 'never' for f in trials)))
        victims = [killers(f, when=False) + ('' if f['right'] else ' (WRONG)') for f in trials]
        print('    victims                %s' % '; '.join(victims))
    hardened_worst = [f['worst_s'] for f in results['hardened']]
    stall_ok = all(w is not None and w <= GOAL_STALL_S for w in hardened_worst)
    ratio = medians['hardened'] / medians['kernel'] if medians['hardened'] is not None and medians['kernel'] else None
    ratio_ok = ratio is not None and ratio <= GOAL_RATIO
    right = all(f['right'] for side in SIDES for f in results[side])
    print('  hardened worst stall, the worst trial %s  (goal <= %.1f s)' % (
        seconds(None if None in hardened_worst else max(hardened_worst), 0), GOAL_STALL_S))
    print('  ratio hardened/kernel of the medians %s  (goal <= %.2f)' % (
        '%.4f' % ratio if ratio is not None else '?', GOAL_RATIO))
    print('  right victim in every trial (the runaway killed, the heartbeat alive, nothing else killed): %s'
          % ('yes' if right else 'NO'))
    failed = [what for what, ok in (('stall', stall_ok), ('ratio', ratio_ok), ('victim', right)) if not ok]
    print('  %s' % ('PASS' if not failed else 'FAIL (%s)' % ', '.join(failed)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=7, help='alternated rounds, one trial per VM each (default 7)')
    parser.add_argument('--quick', action='store_true', help='one round (while developing)')
    parser.add_argument('--cap', type=int, default=600, help="seconds the runaway may live (default 600)")
    parser.add_argument('--keep', action='store_true', help='keep the temporary directory')
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    if rounds < 1:
        parser.error('--rounds must be at least 1')
    if args.cap < 30:
        parser.error('--cap must be at least 30 s')

    def terminate(signum, dummy):
        raise SystemExit('near_oom_stall: signal %d, shutting the VMs down' % signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)

    collections = _common.collections_path()
    _common.tool('ansible-playbook')
    with open(GUEST, 'rb') as handle:
        guest_program = handle.read()
    try:
        expected_sysctl, expected_thp = profile_expectations(collections)
    except BenchError as exc:
        sys.exit('near_oom_stall: %s' % exc)
    vm = _common.load_vm()
    workdir = tempfile.mkdtemp(prefix='oomguard-bench-stall-', dir='/tmp')
    run_root = os.path.join(workdir, 'vms')
    save_dir = os.path.join(workdir, 'trials')
    os.makedirs(save_dir)
    results = dict((side, []) for side in SIDES)
    error = None
    try:
        say('ANSIBLE_COLLECTIONS_PATH=%s' % collections)
        say('temporary directory: %s' % workdir)
        others = other_qemus(run_root)
        if others:
            say('note: other QEMU processes on this machine: %s (the figures are not final)' % ', '.join(others))
        specs = [dict(SPEC, name=side) for side in SIDES]
        started = time.monotonic()
        configs = vm.up([vm.platform_spec(spec) for spec in specs], run_root)
        guests = dict((config['instance'], Guest(vm, config)) for config in configs)
        say('booted %s in %.0f s (%s)' % (' and '.join(SIDES), time.monotonic() - started, configs[0]['accel']))
        for guest in guests.values():
            guest.check('cat > %s' % GUEST_PATH, stdin=guest_program)
            installed = guest.guest('install %d' % args.cap)
            if installed['load'] != 'loaded':
                raise BenchError('%s: %s is %s after daemon-reload' % (guest.name, installed['unit'], installed['load']))
        elapsed, changed = harden(guests['hardened'], workdir, collections)
        say('hardened: oomguard.linux.harden (profile %s, early OOM killer %s, services %s) in %.0f s, changed=%d'
            % (PROFILE, json.dumps(EARLY_OOM), json.dumps(SERVICES), elapsed, changed))
        for side in SIDES:
            settings = guests[side].guest('settings')
            problems = check_settings(settings, side, expected_sysctl, expected_thp)
            if problems:
                raise BenchError('%s VM: %s' % (side, '; '.join(problems)))
            say('%-8s %s, MemTotal %d MiB, swap %d MiB: %s' % (
                side, settings['kernel'], settings['mem_total_kib'] >> 10, settings['swap_total_kib'] >> 10,
                describe_settings(settings)))
        for index in range(rounds):
            say('round %d of %d' % (index + 1, rounds))
            for side in SIDES:
                others = [g for name, g in sorted(guests.items()) if name != side]
                figures = trial(guests[side], args.cap, save_dir, 'round%d-%s' % (index + 1, side), others)
                results[side].append(figures)
                say(trial_line(side, figures))
    except (BenchError, vm.VMError, subprocess.CalledProcessError, OSError, ValueError, KeyError) as exc:
        error = '%s: %s' % (type(exc).__name__, exc)
    finally:
        try:
            vm.down(run_root, [])
        finally:
            vm.reap(run_root)
        others = other_qemus(run_root)
        if others:
            say('note: other QEMU processes at the end: %s' % ', '.join(others))
        if args.keep:
            say('kept %s' % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if error:
        sys.exit('near_oom_stall: %s' % error)
    summary(results, rounds)


if __name__ == '__main__':
    main()
