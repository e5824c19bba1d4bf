#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the near-OOM stall, kernel alone against the latency_sensitive profile, side by side.

Seed 002's complaint: near the memory limit, with page cache in play, the
kernel reclaims and refaults file pages for seconds to minutes before its OOM
killer acts, and every service on the host stalls meanwhile.  This measures
that stall as a latency-critical service sees it, on two VMs booted together
by molecule/shared/vm.py from the same spec (Debian 12, 640 MiB, 1 CPU, no
swap; QEMU, TCG unless KVM works here, CPU model max,erms=off under TCG):

  kernel    left as booted: the kernel's OOM killer alone (earlyoom and
            systemd-oomd are installed but disabled in the image, checked), and
  hardened  hardened by the collection: ansible-playbook with a playbook that
            runs the role oomguard.linux.harden, inventory oomguard_profile:
            latency_sensitive, oomguard_early_oom: {killer: earlyoom,
            prefer: [runaway], avoid: [heartbeat]}, oomguard_services:
            {bench-heartbeat: {cpu_weight: 1000}}, oomguard_become: false.
            Checked afterwards over SSH: earlyoom is active, the heartbeat's
            unit has CPUWeight=1000 (and not on the other VM), and
            vm.swappiness, vm.watermark_scale_factor and THP `enabled` are what
            PROFILES['latency_sensitive'] of plugins/module_utils/tunables.py
            sets.

The heartbeat's unit, bench-heartbeat.service, is installed on both VMs
before the hardening (the role refuses a drop-in for a unit that is not
installed), as a latency-critical service would be.

One trial on a VM, all of it driven over SSH by a small Python program copied
to the VM (GUEST below):

  0. the scrub: the clean page cache is dropped, then all free memory but 15 %
     of MemTotal is mapped with MAP_POPULATE and unmapped at once (why: below);
  1. page cache in play: a file of 40 % of MemTotal is written under /var/tmp,
     fsync'ed and read twice, so that it is cached (and on the active list);
  2. the heartbeat, the unit bench-heartbeat (systemctl start) running
     python3 named `heartbeat` (/proc/self/comm): it sleeps 10 ms in a loop,
     and on every beat touches each page of a 4 MiB file-backed buffer
     (mmap of a file under /var/tmp), so that it depends on page cache like a
     real service.  Its gap is the time between two beats minus the 10 ms it
     asked for; the worst gap, with when it began, and the sum of the gaps of
     50 ms or more go to /run/bench-heartbeat.json whenever the worst grows,
     and at least every second.  Each gap of 50 ms or more is kept with what
     the heartbeat did meanwhile (getrusage: its own major and minor faults,
     waits, preemptions and CPU time), and so is the worst gap, which the
     trial line shows: waiting on its own faults, or kept off the CPU.  With
     that, once a second, it appends a line
     of the timeline to /run/bench-samples.jsonl (MemFree, MemAvailable,
     Cached, memory and CPU pressure, refaults, kswapd and direct scans,
     compaction, and the state and CPU time of kswapd0, kcompactd0, earlyoom
     and the runaway with the top of its kernel stack), kept for --keep;
  3. once the heartbeat has beaten 100 times, the runaway, a transient unit
     bench-runaway running python3 named `runaway`, maps anonymous memory in
     16 MiB chunks with MAP_POPULATE until it is killed, noting each chunk in
     /run/bench-runaway.json (RuntimeMaxSec: the cap, default 600 s, after
     which systemd stops it: a trial where no killer acted; RemainAfterExit,
     as a runaway ended by SIGTERM is a clean exit for systemd, and the
     transient unit would be unloaded with its timestamps);
  4. the runaway's unit is polled over SSH every 5 s until its process has
     ended.  A guest in the stall may not answer SSH for minutes: every poll
     has a timeout and is simply retried;
  5. once the heartbeat has beaten again after the runaway's end, the results
     are read: the heartbeat's worst gap (the worst stall), the runaway's life
     from systemd's monotonic timestamps (ExecMainStart to ExecMainExit, the
     time from its start to its death), the runaway unit's Result, whether
     the heartbeat unit is still active with its first process, and who was
     killed: the kernel's `Killed process N (name)` lines in dmesg and
     earlyoom's `sending SIG... to process N ... "name"` lines in its journal,
     both since the trial began.  Then the heartbeat is stopped, both units
     reset and the files removed.

The right victim: the runaway was killed by a signal before the cap, the
heartbeat unit is still active with the same process, and nothing else was
killed.

R rounds (default 7; --quick: 1), each a trial on the kernel VM and then one
on the hardened VM (a round takes about 50 s under TCG).  Seven, not three: the
kernel-alone stall is a thrash and varies from trial to trial (0.3 to 8.2 s on
this machine), and with three rounds one trial moved the median enough to flip
the ratio's verdict between runs.  The trials are alternated, never at the
same time, so that they do not compete for the CPUs.  Before each trial both
QEMU processes must be quiet (at most 15 % of a core over 3 s, measured on
this machine from /proc/PID/stat), and the trial line says how much of a core
the other VM's QEMU used while the trial ran.  Prints two lines per trial and
then, per side, the median and maximum of the worst stall, of the time stalled
in all and of the runaway's life, the victims, the ratio hardened/kernel of
the median worst stalls, and PASS/FAIL against the goal: the hardened VM's
worst stall <= 0.5 s in every trial, the ratio <= 0.1, and the right victim in
every trial on both VMs.  The exit code is 0 on FAIL too (it is a
measurement); it is non-zero only when the benchmark itself failed.  Under TCG
the CPU is emulated: times are longer than on hardware, and other QEMU
processes on this machine (listed at the start and at the end) slow both VMs.

Why erms=off and the scrub (issue 6 note).  Under TCG, QEMU keeps a guest
page that held code it translated write-protected until every translation on
it is gone, and each store to such a page takes QEMU's self-modifying-code
path (a page-collection lock, a GLib tree, jump-cache flushes).  Hardware has
no such cost.  With QEMU's `max` CPU the guest kernel zeroes pages with
`rep stosb` (ERMS), 4096 one-byte stores per page, so zeroing a page that
once held executed code took about a millisecond instead of about 20 us.
Measured on this machine, with ERMS: when MemFree reached the watermarks,
every task that allocated (the runaway, the heartbeat, sshd, journald) spent
its time in clear_page_erms; perf put the hardened VM's vCPU thread in that
path for most of that phase (translated guest code in the phase before); and
QEMU's memory_notdirty_set_dirty trace event (a page leaving that protection)
fired from that moment on, not before.  The heartbeat lost 0.5 to 2 s there
on either VM, and the kernel-alone stall measured 7 to 67 s.  With erms=off
the guest zeroes a page with 512 eight-byte stores (clear_page_rep here,
as on CPUs without ERMS), an eighth of the slow stores.  The
scrub, the same on both VMs, zeroes the free pages once before the trial, so
that stale translations on free memory are paid for outside it; on its own
(with ERMS) it did not remove the stall.  In the kernel-alone stall the
heartbeat's timeline runs every second until MemAvailable reaches 0, and the
stall is the thrash that follows.  Run it on a quiet machine: anything else
on the 2 cores stretches the hardened VM's gaps.

The collection is taken from ANSIBLE_COLLECTIONS_PATH when that has
oomguard.linux (tools/run sets .build/collections), else from
.build/collections, else /tmp/ac.  The VMs run under a temporary directory in
/tmp and are always shut down at the end; the temporary directory (inventory,
playbook, ansible output, trials/ROUND-SIDE.json with each trial's timeline,
kernel and earlyoom lines) is removed unless --keep.

Run it through
  tools/run bench benchmarks/near_oom_stall.py [--rounds R | --quick] [--cap S] [--keep]
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VM_PY = os.path.join(ROOT, 'molecule', 'shared', 'vm.py')
PROFILE = 'latency_sensitive'
# erms=off under TCG: the guest then zeroes a page with 512 eight-byte stores
# instead of 4096 one-byte ones (see "Why erms=off" above).
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
GUEST_PATH = '/root/bench_guest.py'
SSH_EXTRA = ['-o', 'ServerAliveInterval=10', '-o', 'ServerAliveCountMax=6']
RECAP = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)

# The program run on the VMs (python3 of Debian 12): `prepare`, `launch`,
# `collect`, `cleanup` and `settings` over SSH; `heartbeat` and `runaway` as
# the transient units.
GUEST = r'''
import json
import mmap
import os
import re
import resource
import subprocess
import sys
import time

CACHE = '/var/tmp/bench-cache.bin'
BUFFER = '/var/tmp/bench-heartbeat.buf'
BUFFER_BYTES = 4 << 20
HEARTBEAT_JSON = '/run/bench-heartbeat.json'
RUNAWAY_JSON = '/run/bench-runaway.json'
SAMPLES = '/run/bench-samples.jsonl'
STATE_FILES = (HEARTBEAT_JSON, HEARTBEAT_JSON + '.tmp', RUNAWAY_JSON, RUNAWAY_JSON + '.tmp', SAMPLES)
PERIOD = 0.01
STALL = 0.05
# The scrub leaves this share of MemTotal available: above earlyoom's 10 % and
# above the watermarks of both VMs, so that it neither kills nor reclaims.
SCRUB_KEEP = 0.15
UNITS = ('bench-heartbeat.service', 'bench-runaway.service')
HEARTBEAT_UNIT = '/etc/systemd/system/bench-heartbeat.service'
PROPERTIES = ('ActiveState', 'SubState', 'Result', 'MainPID', 'NRestarts', 'ExecMainStartTimestampMonotonic',
              'ExecMainExitTimestampMonotonic', 'ExecMainCode', 'ExecMainStatus')
KERNEL_KILL = re.compile(r'^\[\s*([0-9.]+)\].*Killed process (\d+) \((.*?)\)')
EARLYOOM_KILL = re.compile(r'^\[\s*([0-9.]+)\].*sending (SIG[A-Z]+) to process (\d+)(?: uid \d+)? "([^"]*)"')
VMSTAT = ('pgmajfault', 'workingset_refault_file', 'pgscan_kswapd', 'pgscan_direct', 'pageoutrun', 'compact_stall',
          'compact_daemon_wake', 'compact_daemon_migrate_scanned')
SAMPLE_FIELDS = ('t', 'MemFree', 'MemAvailable', 'Cached', 'psi_memory_some_us', 'psi_memory_full_us', 'psi_cpu_some_us',
                 'allocstall') + VMSTAT + ('tasks',)
# Tasks whose state and CPU time go into each sample (and the runaway's, with its kernel stack).
WATCHED = ('kswapd0', 'kcompactd0', 'earlyoom')


def set_name(name):
    with open('/proc/self/comm', 'w') as handle:
        handle.write(name)


def meminfo():
    values = {}
    with open('/proc/meminfo') as handle:
        for line in handle:
            key, rest = line.split(':', 1)
            values[key] = int(rest.split()[0])
    return values


def write_json(path, data):
    with open(path + '.tmp', 'w') as handle:
        json.dump(data, handle)
    os.replace(path + '.tmp', path)


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False).stdout.decode('utf-8', 'replace')


def dmesg_lines():
    return run(['dmesg']).splitlines()


def scrub(keep_fraction):
    """Drop the clean page cache, then touch and free all free memory but keep_fraction of MemTotal.

    So that zeroing free pages QEMU still holds translations for is paid for
    before the trial (see "Why erms=off and the scrub" in the benchmark's
    docstring).  Done the same way on both VMs, before the trial's own page
    cache is made.
    """
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as handle:
        handle.write('3\n')
    info = meminfo()
    scrub_bytes = max(0, (info['MemAvailable'] - int(info['MemTotal'] * keep_fraction)) << 10) & ~((1 << 20) - 1)
    started = time.monotonic()
    if scrub_bytes:
        area = mmap.mmap(-1, scrub_bytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
        area.close()
    return {'scrub_mib': scrub_bytes >> 20, 'scrub_s': round(time.monotonic() - started, 3)}


def prepare(fraction):
    scrubbed = scrub(SCRUB_KEEP)
    total = meminfo()['MemTotal'] << 10
    chunks = int(total * fraction) >> 20
    block = os.urandom(1 << 20)
    with open(CACHE, 'wb') as handle:
        for dummy in range(chunks):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    with open(BUFFER, 'wb') as handle:
        handle.write(os.urandom(BUFFER_BYTES))
        handle.flush()
        os.fsync(handle.fileno())
    for dummy in range(2):  # read twice: hot, on the active list
        for path in (CACHE, BUFFER):
            with open(path, 'rb') as handle:
                while handle.read(1 << 20):
                    pass
    info = meminfo()
    print(json.dumps(dict(scrubbed, cache_mib=chunks, mem_total_kib=info['MemTotal'], cached_kib=info['Cached'],
                          available_kib=info['MemAvailable'], dmesg_lines=len(dmesg_lines()), epoch=int(time.time()),
                          kernel=os.uname().release)))


def psi_total(resource, kind):
    try:
        with open('/proc/pressure/' + resource) as handle:
            for line in handle:
                if line.startswith(kind):
                    return int(line.rsplit('total=', 1)[1])
    except (OSError, IndexError, ValueError):
        pass
    return None


def find_pids(names):
    found = {}
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                with open('/proc/%s/comm' % pid) as handle:
                    name = handle.read().strip()
            except OSError:
                continue
            if name in names:
                found[name] = int(pid)
    return found


def task(pid, stack=False):
    """[state, utime + stime in ticks] of a task, with the top of its kernel stack when asked."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
        result = [fields[0], int(fields[11]) + int(fields[12])]
        if stack:
            with open('/proc/%d/stack' % pid) as handle:
                result.append(' '.join(line.split()[-1].split('+')[0] for line in handle.read().splitlines()[:6]))
        return result
    except (OSError, IndexError, ValueError):
        return None


def sample(now, pids):
    """One line of the timeline (SAMPLE_FIELDS): memory, pressure, reclaim counters, the watched tasks."""
    info = meminfo()
    vmstat = {}
    with open('/proc/vmstat') as handle:
        for line in handle:
            key, value = line.split()
            vmstat[key] = int(value)
    vmstat.setdefault('workingset_refault_file', vmstat.get('workingset_refault'))
    if 'runaway' not in pids:
        pids.update(find_pids(('runaway',)) if os.path.exists(RUNAWAY_JSON) else {})
    tasks = dict((name, task(pid, stack=name == 'runaway')) for name, pid in pids.items())
    return [round(now, 3), info['MemFree'] >> 10, info['MemAvailable'] >> 10, info['Cached'] >> 10,
            psi_total('memory', 'some'), psi_total('memory', 'full'), psi_total('cpu', 'some'),
            sum(v for k, v in vmstat.items() if k.startswith('allocstall'))] + [vmstat.get(k) for k in VMSTAT] + [tasks]


GAP_FIELDS = ('from', 'gap_s', 'majflt', 'minflt', 'nvcsw', 'nivcsw', 'cpu_s')


def usage():
    """The heartbeat's own counters, in GAP_FIELDS order after from and gap_s."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return (ru.ru_majflt, ru.ru_minflt, ru.ru_nvcsw, ru.ru_nivcsw, ru.ru_utime + ru.ru_stime)


def heartbeat():
    set_name('heartbeat')
    fd = os.open(BUFFER, os.O_RDONLY)
    buffer = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    state = {'pid': os.getpid(), 'beats': 0, 'worst': 0.0, 'worst_from': None, 'stalled': 0.0, 'stalls': 0, 'gaps': [],
             'gap_fields': GAP_FIELDS}
    samples = open(SAMPLES, 'a')
    pids = find_pids(WATCHED)
    previous = time.monotonic()
    before = usage()
    last_write = 0.0
    while True:
        time.sleep(PERIOD)
        touched = buffer[::4096]  # one byte of every page: page cache, like a service's data
        now = time.monotonic()
        after = usage()
        gap = now - previous - PERIOD
        state['beats'] += 1
        grew = gap > state['worst']
        own = [round(b - a, 3) if isinstance(a, float) else b - a for a, b in zip(before, after)]
        if grew:
            state['worst'], state['worst_from'] = gap, previous
            state['worst_own'] = dict(zip(GAP_FIELDS[2:], own))
        if gap >= STALL:
            state['stalled'] += gap
            state['stalls'] += 1
            if len(state['gaps']) < 500:
                # With what the heartbeat itself did meanwhile (GAP_FIELDS): its own faults, whether it
                # waited (voluntary switches) or was pushed off the CPU, and the CPU it used.
                state['gaps'].append([round(previous, 3), round(gap, 3)] + own)
        previous, before = now, after
        if grew or now - last_write >= 1.0:
            # Once a second (and when the worst grew): the state, and a line of the timeline.
            state['last_beat'] = now
            state['touched'] = len(touched)
            write_json(HEARTBEAT_JSON, state)
            samples.write(json.dumps(sample(now, pids)) + '\n')
            samples.flush()
            last_write = now


def runaway():
    set_name('runaway')
    held = []
    progress = []
    while True:
        held.append(mmap.mmap(-1, 16 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE))
        progress.append([round(time.monotonic(), 3), len(held) * 16])
        write_json(RUNAWAY_JSON, progress)


def unit_properties():
    result = {}
    for unit in UNITS:
        out = run(['systemctl', 'show', '-p', ','.join(PROPERTIES), unit])
        result[unit.split('.')[0]] = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
    return result


def install(cap_s):
    with open(HEARTBEAT_UNIT, 'w') as handle:
        handle.write('[Unit]\nDescription=near_oom_stall heartbeat, a latency-critical service\n\n'
                     '[Service]\nExecStart=/usr/bin/python3 %s heartbeat\nRuntimeMaxSec=%d\n'
                     % (os.path.abspath(__file__), cap_s + 900))
    run(['systemctl', 'daemon-reload'])
    print(json.dumps({'unit': HEARTBEAT_UNIT, 'load': run(['systemctl', 'show', '-P', 'LoadState', UNITS[0]]).strip()}))


def launch(cap_s):
    run(['systemctl', 'stop'] + list(UNITS))
    run(['systemctl', 'reset-failed'] + list(UNITS))
    for path in STATE_FILES:
        if os.path.exists(path):
            os.remove(path)
    me = os.path.abspath(__file__)
    out = run(['systemctl', 'start', UNITS[0]])
    deadline = time.monotonic() + 180
    while True:
        state = read_json(HEARTBEAT_JSON)
        if state and state['beats'] >= 100:
            break
        if time.monotonic() > deadline:
            sys.exit('the heartbeat did not beat 100 times in 180 s: %s %s' % (out, unit_properties()))
        time.sleep(0.2)
    info = meminfo()
    # --remain-after-exit: a runaway ended by SIGTERM is a clean exit for systemd, and a
    # transient unit that ends clean would be unloaded with its timestamps.
    out = run(['systemd-run', '--quiet', '--remain-after-exit', '--unit=bench-runaway', '-p', 'RuntimeMaxSec=%d' % cap_s,
               'python3', me, 'runaway'])
    print(json.dumps({'heartbeat_pid': state['pid'], 'available_kib': info['MemAvailable'], 'cached_kib': info['Cached'],
                      'systemd_run': out.strip()}))


def collect(dmesg_skip, since_epoch):
    kernel_lines = dmesg_lines()[dmesg_skip:]
    earlyoom_lines = run(['journalctl', '-q', '--no-pager', '-o', 'short-monotonic', '-u', 'earlyoom.service',
                          '--since', '@%d' % since_epoch]).splitlines()
    kills = [[float(t), int(p), n, 'kernel'] for t, p, n in (m.groups() for m in map(KERNEL_KILL.search, kernel_lines) if m)]
    kills += [[float(t), int(p), n, 'earlyoom ' + s]
              for t, s, p, n in (m.groups() for m in map(EARLYOOM_KILL.search, earlyoom_lines) if m)]
    try:
        with open(SAMPLES) as handle:
            samples = [json.loads(line) for line in handle if line.endswith('\n')]
    except OSError:
        samples = []
    print(json.dumps({
        'now': time.monotonic(), 'units': unit_properties(), 'heartbeat': read_json(HEARTBEAT_JSON),
        'runaway': read_json(RUNAWAY_JSON), 'kills': sorted(kills), 'sample_fields': SAMPLE_FIELDS, 'samples': samples,
        'dmesg': kernel_lines, 'earlyoom': earlyoom_lines}))


def cleanup():
    run(['systemctl', 'stop'] + list(UNITS))
    run(['systemctl', 'reset-failed'] + list(UNITS))
    for path in (CACHE, BUFFER) + STATE_FILES:
        if os.path.exists(path):
            os.remove(path)
    print(json.dumps({'available_kib': meminfo()['MemAvailable']}))


def settings():
    def read(path):
        try:
            with open(path) as handle:
                return handle.read().strip()
        except OSError:
            return None
    thp = read('/sys/kernel/mm/transparent_hugepage/enabled') or ''
    match = re.search(r'\[([^\]]+)\]', thp)
    print(json.dumps({
        'sysctl': dict((key, read('/proc/sys/' + key.replace('.', '/')))
                       for key in ('vm.swappiness', 'vm.watermark_scale_factor', 'vm.min_free_kbytes')),
        'thp_enabled': match.group(1) if match else thp,
        'earlyoom': run(['systemctl', 'is-active', 'earlyoom.service']).strip(),
        'heartbeat_cpu_weight': run(['systemctl', 'show', '-P', 'CPUWeight', UNITS[0]]).strip(),
        'systemd-oomd': run(['systemctl', 'is-active', 'systemd-oomd.service']).strip(),
        'earlyoom_args': ' '.join(line for line in (read('/etc/default/earlyoom') or '').splitlines()
                                  if line.startswith('EARLYOOM_ARGS')),
        'swap_total_kib': meminfo()['SwapTotal'], 'mem_total_kib': meminfo()['MemTotal'], 'kernel': os.uname().release}))


if __name__ == '__main__':
    command = sys.argv[1]
    if command == 'prepare':
        prepare(float(sys.argv[2]))
    elif command == 'heartbeat':
        heartbeat()
    elif command == 'runaway':
        runaway()
    elif command == 'install':
        install(int(sys.argv[2]))
    elif command == 'launch':
        launch(int(sys.argv[2]))
    elif command == 'collect':
        collect(int(sys.argv[2]), int(sys.argv[3]))
    elif command == 'cleanup':
        cleanup()
    elif command == 'settings':
        settings()
    else:
        sys.exit('unknown command %s' % command)
'''


class BenchError(Exception):
    pass


def say(message):
    print(message)
    sys.stdout.flush()


# ---------------------------------------------------------------- the collection, ansible, the VMs

def oomguard_collections():
    """The collections directory that has oomguard.linux (see the docstring for the order)."""
    candidates = [p for p in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) if p]
    candidates += [os.path.join(ROOT, '.build', 'collections'), '/tmp/ac']
    for path in candidates:
        if os.path.isdir(os.path.join(path, 'ansible_collections', 'oomguard', 'linux')):
            return path
    raise BenchError('oomguard.linux not found in %s: run this through tools/run bench' % ', '.join(candidates))


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


def ansible_playbook():
    here = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    found = here if os.path.exists(here) else shutil.which('ansible-playbook')
    if not found:
        raise BenchError('ansible-playbook not found: run this through tools/run bench')
    return found


def load_vm_module():
    spec = importlib.util.spec_from_file_location('oomguard_bench_vm', VM_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR='1', ANSIBLE_HOST_KEY_CHECKING='False',
               ANSIBLE_RETRY_FILES_ENABLED='false', ANSIBLE_PIPELINING='true', ANSIBLE_TIMEOUT='60',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default')
    env.pop('ANSIBLE_FORCE_COLOR', None)
    argv = [ansible_playbook(), '-i', inventory, playbook]
    started = time.monotonic()
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=workdir, env=env, check=False)
    elapsed = time.monotonic() - started
    out = result.stdout.decode('utf-8', 'replace')
    with open(os.path.join(workdir, 'harden.log'), 'w') as handle:
        handle.write(out)
    recap = RECAP.findall(out)
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

    try:
        collections = oomguard_collections()
        expected_sysctl, expected_thp = profile_expectations(collections)
        ansible_playbook()
        vm = load_vm_module()
    except BenchError as exc:
        sys.exit('near_oom_stall: %s' % exc)
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
            guest.check('cat > %s' % GUEST_PATH, stdin=GUEST.encode())
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
