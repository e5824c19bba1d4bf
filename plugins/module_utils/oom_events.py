# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where OOM reports come from (kernel ring buffer, journal, log files),
the `since` filter, and linking kill loops to the live host's units.

Reading a log is in oom_scan.py, the parsing itself in oom_report.py.
Standard library only.
"""


import errno
import glob
import gzip
import os
import re
import stat
import subprocess
import time

from ansible_collections.oomguard.linux.plugins.module_utils import oom_report, oom_scan


class SourceError(Exception):
    """A source that cannot be read, with a message for the operator (and the notes of every source)."""

    def __init__(self, message, notes=None):
        super(SourceError, self).__init__(message)
        self.notes = list(notes or [])


# -- since -----------------------------------------------------------------

_RELATIVE = re.compile(r'^\s*(\d+)\s*(s|sec|m|min|h|hour|hours|d|day|days|w|week|weeks)\s*(?:ago)?\s*$')
_UNIT_SECONDS = {'s': 1, 'sec': 1, 'm': 60, 'min': 60, 'h': 3600, 'hour': 3600, 'hours': 3600,
                 'd': 86400, 'day': 86400, 'days': 86400, 'w': 604800, 'week': 604800, 'weeks': 604800}


def parse_since(text, now=None):
    """'24h', '7d', '90m ago', '2026-11-01' or '2026-11-01 12:00[:00]' -> epoch seconds (UTC)."""
    if text is None or text == '':
        return None
    now = time.time() if now is None else now
    match = _RELATIVE.match(text.lower())
    if match:
        return now - int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    candidate = text.strip().replace(' ', 'T')
    if re.match(r'^\d{4}-\d\d-\d\d$', candidate):
        candidate += 'T00:00:00'
    elif re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d$', candidate):
        candidate += ':00'
    value = oom_report.epoch(candidate)
    if value is None:
        raise ValueError("since: '%s' is not a time; use e.g. 24h, 7d, 2026-11-01 or 2026-11-01 12:00" % text)
    return value


# -- sources -----------------------------------------------------------------

def boot_time(proc='/proc'):
    """Epoch of boot from /proc/stat btime (to date ring-buffer records)."""
    try:
        with open(os.path.join(proc, 'stat')) as handle:
            for line in handle:
                if line.startswith('btime '):
                    return int(line.split()[1])
    except (IOError, OSError):
        return None
    return None


def _date_uptime(events, btime):
    if btime is None:
        return
    for event in events:
        if event.get('timestamp') is None and event.get('uptime_s') is not None:
            stamp = time.gmtime(btime + event['uptime_s'])
            event['timestamp'] = time.strftime('%Y-%m-%dT%H:%M:%S', stamp) + 'Z'


def read_kmsg(scanner, path='/dev/kmsg'):
    """The kernel ring buffer, read as dmesg does, without waiting for more."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise SourceError('dmesg: cannot read %s (needs root, or kernel.dmesg_restrict=0)' % path)
        raise SourceError('dmesg: cannot open %s: %s' % (path, os.strerror(exc.errno)))
    try:
        scanner.scan_chunks(_kmsg_batches(fd, path))
    finally:
        os.close(fd)


def _kmsg_batches(fd, path):
    """Records (one per read) joined into chunks of about CHUNK_BYTES."""
    records = []
    size = 0
    while True:
        try:
            record = os.read(fd, 8192)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                break
            if exc.errno == errno.EPIPE:
                continue  # overwritten while reading: the next read goes on
            raise SourceError('dmesg: reading %s: %s' % (path, os.strerror(exc.errno)))
        if not record:
            break
        records.append(record if record.endswith(b'\n') else record + b'\n')
        size += len(record)
        if size >= oom_scan.CHUNK_BYTES:
            yield b''.join(records)
            records, size = [], 0
    if records:
        yield b''.join(records)


def read_journal(scanner, journalctl, since_epoch=None):
    """Kernel messages of every boot the journal keeps, streamed."""
    argv = [journalctl, '_TRANSPORT=kernel', '-o', 'short-iso', '--no-pager', '-q']
    if since_epoch is not None:
        argv.append('--since=@%d' % int(since_epoch))
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise SourceError('journal: cannot run %s: %s' % (journalctl, exc))
    scanner.scan(proc.stdout)
    err = proc.stderr.read().decode('utf-8', 'replace').strip()
    if proc.wait() != 0:
        raise SourceError('journal: %s failed (rc=%d): %s' % (' '.join(argv), proc.returncode, err or 'no output'))


# -- kills by the userspace early OOM killers ------------------------------------

EARLY_KILLER_UNITS = ('earlyoom.service', 'systemd-oomd.service')
# earlyoom 1.6/1.7 print "badness N", 1.8 "oom_score N" and the cmdline,
# 1.9 also "oom_score_adj N".
_EARLYOOM_KILL = re.compile(r'sending (SIG[A-Z]+) to process (\d+) uid (\d+) "(.*?)": (?:badness|oom_score) (-?\d+)'
                            r'(?:, oom_score_adj (-?\d+))?, VmRSS (\d+) MiB')
_EARLYOOM_DRY = 'dryrun, not actually sending any signal'
# systemd-oomd kills whole cgroups; --dry-run only says what it would do.
_OOMD_KILL = re.compile(r'Killed (/\S+) due to (.+?)\.?\s*$')
_OOMD_DRY = re.compile(r'oomd dry-run: Would have tried to kill (/\S+)')
_JOURNAL_LINE = re.compile(r'^(\S+) \S+ ([\w.-]+)\[\d+\]: (.*)$')


def parse_early_kills(lines):
    """`journalctl -o short-iso` lines of the early killers -> their kills, oldest first.

    A kill is {timestamp, killer, dry_run, ...}: earlyoom names a process
    (signal, pid, uid, comm, score, rss_mib), systemd-oomd a cgroup and why.
    """
    kills = []
    for line in lines:
        match = _JOURNAL_LINE.match(line.rstrip('\n'))
        if not match:
            continue
        stamp, ident, text = match.groups()
        if ident == 'earlyoom':
            kill = _EARLYOOM_KILL.search(text)
            if kill:
                kills.append({'timestamp': stamp, 'killer': 'earlyoom', 'dry_run': False, 'signal': kill.group(1),
                              'pid': int(kill.group(2)), 'uid': int(kill.group(3)), 'comm': kill.group(4),
                              'score': int(kill.group(5)), 'rss_mib': int(kill.group(7))})
            elif _EARLYOOM_DRY in text and kills and kills[-1]['killer'] == 'earlyoom':
                kills[-1]['dry_run'] = True
        elif ident == 'systemd-oomd':
            kill = _OOMD_KILL.search(text)
            dry = _OOMD_DRY.search(text)
            if kill:
                kills.append({'timestamp': stamp, 'killer': 'systemd-oomd', 'dry_run': False,
                              'cgroup': kill.group(1), 'reason': kill.group(2)})
            elif dry:
                kills.append({'timestamp': stamp, 'killer': 'systemd-oomd', 'dry_run': True,
                              'cgroup': dry.group(1), 'reason': 'dry-run'})
    return kills


def read_early_kills(journalctl, since_epoch=None):
    """The early killers' kills from the journal (every boot it keeps)."""
    argv = [journalctl, '-o', 'short-iso', '--no-pager', '-q']
    for unit in EARLY_KILLER_UNITS:
        argv += ['-u', unit]
    if since_epoch is not None:
        argv.append('--since=@%d' % int(since_epoch))
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        raise SourceError('early_killers: cannot run %s: %s' % (journalctl, exc))
    if proc.returncode != 0:
        raise SourceError('early_killers: %s failed (rc=%d): %s' % (
            ' '.join(argv), proc.returncode, proc.stderr.decode('utf-8', 'replace').strip() or 'no output'))
    return parse_early_kills(proc.stdout.decode('utf-8', 'replace').splitlines())


def expand_paths(patterns):
    """Globs -> existing files, sorted; a pattern matching nothing is an error."""
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise SourceError('path: %s matches no file' % pattern)
        paths.extend(matches)
    return paths


def read_file(scanner, path, sink=None):
    """One log file, plain or gzip (by its magic bytes, not its name).

    A plain regular file with a size (not /proc's) is read by
    StreamScanner.scan_file, in parallel when large; sink is the EventSink
    the scanner's parser emits to, if any.
    """
    try:
        with open(path, 'rb') as handle:
            magic = handle.read(2)
            info = os.fstat(handle.fileno())
            if magic != b'\x1f\x8b' and stat.S_ISREG(info.st_mode) and info.st_size > 0:
                scanner.scan_file(handle.fileno(), sink=sink)
                return
        opener = gzip.open if magic == b'\x1f\x8b' else open
        with opener(path, 'rb') as stream:
            scanner.scan(stream)
    except IsADirectoryError:
        raise SourceError('path: %s is a directory' % path)
    except (IOError, OSError, EOFError) as exc:
        reason = os.strerror(exc.errno) if getattr(exc, 'errno', None) else str(exc)
        raise SourceError('path: cannot read %s: %s' % (path, reason))


def file_year(path):
    """Syslog lines print no year: take it from the file's modification time."""
    try:
        return time.gmtime(os.stat(path).st_mtime).tm_year
    except OSError:
        return time.gmtime().tm_year


# -- linking kill loops to the live host -----------------------------------------

def link_loops(loops, run_command, systemctl, proc='/proc'):
    """Add 'unit' and that unit's 'oom_policy' to each loop, from this host.

    The unit comes from the report's task memcg, or, for kernels whose
    reports name no cgroup, from a live process of the same name.
    """
    # Imported here: most runs link nothing, and every run compiles what it imports.
    from ansible_collections.oomguard.linux.plugins.module_utils.cgroups import unit_of
    units = {}
    for loop in loops:
        unit = unit_of(loop.get('task_memcg'))
        if unit is None:
            unit = _unit_of_live_comm(loop['comm'], proc)
        loop['unit'] = unit
        if unit:
            units[unit] = None
    if units and systemctl and run_command:
        rc, out, dummy = run_command([systemctl, 'show', '--property=Id,OOMPolicy,ActiveState', '--'] + sorted(units))
        if rc == 0:
            for block in out.split('\n\n'):
                props = dict(line.split('=', 1) for line in block.splitlines() if '=' in line)
                if props.get('Id') in units:
                    units[props['Id']] = props
    for loop in loops:
        props = units.get(loop['unit']) or {}
        loop['oom_policy'] = props.get('OOMPolicy') or None
        loop['unit_active_state'] = props.get('ActiveState') or None
        loop['advice'] = _loop_advice(loop)
    return loops


def _unit_of_live_comm(comm, proc):
    """The unit of a live process named comm (the first found), or None."""
    from ansible_collections.oomguard.linux.plugins.module_utils.processes import cgroup_of
    from ansible_collections.oomguard.linux.plugins.module_utils.procfs import HostRoot, ReadError
    host = HostRoot(os.path.dirname(proc.rstrip('/')) or '/')
    for name in host.listdir('proc'):
        if not name.isdigit():
            continue
        try:
            if (host.read('proc/%s/comm' % name) or '').strip() != comm:
                continue
        except ReadError:
            continue
        unit = cgroup_of(host, int(name))[1]
        if unit:
            return unit
    return None


def _loop_advice(loop):
    unit = loop.get('unit')
    if unit and loop.get('oom_policy') == 'continue':
        return ('%s has OOMPolicy=continue: its workers are killed and re-forked forever. Set oom_policy: kill for '
                'it in oomguard_services (oomguard.linux.oom_protect role), and limit it with memory_max.' % unit)
    if unit:
        return ('Kill the whole unit instead of one worker at a time: oomguard_services[%s].oom_policy: kill '
                '(oomguard.linux.oom_protect), and limit it with memory_max (oomguard.linux.cgroup_limits).' % unit)
    return ('A master re-forks the workers the kernel kills. Run it as a systemd unit with OOMPolicy=kill '
            '(oomguard.linux.oom_protect) and a memory limit (oomguard.linux.cgroup_limits).')


# -- one call --------------------------------------------------------------------

def collect(sources=(), paths=(), since=None, year=None, run_command=None, journalctl=None, systemctl=None,
            min_kills=3, link=None, now=None, keep=None):
    """Read the sources, parse, classify. Returns (events, loops, summary, notes).

    Events are classified and counted as the parser finishes them; only the
    last `keep` (None: all) are returned whole.  link: link kill loops to this
    host's units (default: only when a live source, dmesg or journal, was read).
    """
    sink = oom_report.EventSink(keep=keep, since_epoch=parse_since(since, now), min_kills=min_kills)
    notes = []
    btime = boot_time() if 'dmesg' in sources else None

    def emitter(source):
        def emit(event):
            if source == 'dmesg':
                _date_uptime([event], btime)
            event['source'] = source
            sink.add(oom_report.finish_one(event))
        return emit

    for source in sources:
        scanner = oom_scan.StreamScanner(
            parser=oom_report.EventParser(emit=emitter(source)), year=year or time.gmtime().tm_year)
        try:
            if source == 'dmesg':
                read_kmsg(scanner)
            elif source == 'journal':
                if not journalctl:
                    raise SourceError('journal: journalctl not found')
                read_journal(scanner, journalctl, sink.since_epoch)
            else:
                raise SourceError('unknown source %s' % source)
        except SourceError as exc:
            notes.append(str(exc))
        scanner.parser.close()
    for path in expand_paths(paths):
        scanner = oom_scan.StreamScanner(parser=oom_report.EventParser(emit=emitter(path)),
                                         year=year or file_year(path))
        read_file(scanner, path, sink)
        scanner.parser.close()
    loops = sink.kill_loops()
    if link is None:
        link = any(s in ('dmesg', 'journal') for s in sources)
    if link and loops:
        link_loops(loops, run_command, systemctl)
    return sink.recent, loops, sink.summary(), notes


def run(params, run_command, journalctl, systemctl, systemd_booted):
    """What the oom_events module returns, for its options (see its documentation).

    Raises SourceError (with .notes) when a source asked for cannot be read,
    or when none of the automatic ones could.
    """
    sources = list(params.get('sources') or [])
    paths = params.get('path') or []
    auto = not sources and not paths
    if auto:
        # sd_booted(): the journal holds the kernel's messages only where
        # systemd runs as PID 1; elsewhere the ring buffer is the source.
        sources = ['journal', 'early_killers'] if journalctl and systemd_booted else ['dmesg']
    early_kills = []
    early_notes = []
    if 'early_killers' in sources:
        try:
            if not journalctl:
                raise SourceError('early_killers: journalctl not found')
            early_kills = read_early_kills(journalctl, parse_since(params.get('since')))
        except SourceError as exc:
            early_notes.append(str(exc))
    events, loops, summary, notes = collect(
        sources=[s for s in sources if s != 'early_killers'], paths=paths, since=params.get('since'),
        year=params.get('year'), run_command=run_command, journalctl=journalctl, systemctl=systemctl,
        min_kills=params.get('min_loop_kills', 3), link=params.get('link_units'), keep=params.get('max_events', 100))
    if notes and not auto:
        raise SourceError('; '.join(notes), notes)
    if notes and auto and not events:
        raise SourceError('no OOM source could be read: %s' % '; '.join(notes), notes)
    notes = notes + early_notes
    if early_notes and not auto:
        raise SourceError('; '.join(early_notes), notes)
    summary['early_kills'] = len(early_kills)
    return {'events': events, 'kill_loops': loops, 'early_kills': early_kills, 'summary': summary, 'notes': notes}
