# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The program benchmarks/near_oom_stall.py runs on its VMs (python3 of Debian 12).

near_oom_stall.py copies this file to the VM (/root/bench_guest.py, over SSH)
and runs it there: `prepare`, `install`, `launch`, `collect`, `cleanup` and
`settings` over SSH; `heartbeat` (the unit bench-heartbeat) and `runaway` (the
transient unit bench-runaway) as the two services of a trial.  Standard
library only.  What a trial does, and why the scrub: docs/benchmarks.md.
"""
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
    before the trial (see "Why erms=off and the scrub" in docs/benchmarks.md).
    Done the same way on both VMs, before the trial's own page cache is made.
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
        result[unit.split('.', maxsplit=1)[0]] = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
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
