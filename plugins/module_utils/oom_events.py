# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where OOM reports come from (kernel ring buffer, journal, log files),
the `since` filter, and linking kill loops to the live host's units.

Reading a log is in oom_scan.py, the parsing itself in oom_report.py.
Every read of an input is bounded: only regular files (plain or gzip) are
opened, in bytes (decompressed) and time per run (ReadBudget), in line
length (oom_scan.MAX_LINE_BYTES) and in the length of the fields kept.
Standard library only.
"""


import errno
import glob
import gzip
import heapq
import itertools
import os
import re
import select
import stat
import subprocess
import tempfile
import time
import zlib

from ansible_collections.oomguard.linux.plugins.module_utils import _journal_export, oom_report, oom_scan, procfs
from ansible_collections.oomguard.linux.plugins.module_utils.schema import Invalid, integer

# Bounds of the options (the module's documentation says the same).
YEAR_MIN, YEAR_MAX = 1970, 2200
MAX_EVENTS_MAX = 100000
MIN_LOOP_KILLS_MAX = 100000
MAX_READ_BYTES_DEFAULT = 2 << 30
MAX_READ_BYTES_MAX = 1 << 40
TIMEOUT_S_DEFAULT = 300
TIMEOUT_S_MAX = 86400
# A gzip member that inflates more than this many times once this much has
# come out of it is a bomb, not a log: kernel logs compress 5 to 30 times,
# a flood of one repeated line about 100 times, zeros about 1000 times.
GZIP_MAX_RATIO = 250
GZIP_RATIO_AFTER_BYTES = 64 << 20
# A text field of an event (comm, cgroup paths) longer than this is cut in
# its middle: TASK_COMM_LEN is 16, PATH_MAX 4096.
MAX_FIELD_CHARS = 4096
_ALLOWED_PATH = 'an absolute path or glob of regular log files, plain or gzip'


class SourceError(Exception):
    """A source that cannot be read, with a message for the operator (and the notes of every source)."""

    def __init__(self, message, notes=None):
        super(SourceError, self).__init__(message)
        self.notes = list(notes or [])


# -- options -----------------------------------------------------------------

def check_options(params):
    """The numeric options and since, bounded; a message `OPTION = VALUE; allowed: ...` per bad one."""
    problems = []
    bounds = (('year', YEAR_MIN, YEAR_MAX), ('max_events', 0, MAX_EVENTS_MAX), ('min_loop_kills', 2, MIN_LOOP_KILLS_MAX),
              ('max_read_bytes', 1, MAX_READ_BYTES_MAX), ('timeout_s', 1, TIMEOUT_S_MAX))
    for name, low, high in bounds:
        value = params.get(name)
        if value is None:
            continue  # year: the file's; the others: their defaults
        try:
            integer(value, low, high)
        except Invalid as exc:
            problems.append('%s = %s; allowed: %s' % (name, value, exc))
    try:
        parse_since(params.get('since'))
    except ValueError as exc:
        problems.append(str(exc))
    return problems


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
        raise ValueError("since = '%s' is not a time; allowed: a time like 24h, 7d, 90m ago, 2026-11-01 or 2026-11-01 12:00 (UTC)"
                         % _shown(text))
    return value


def _shown(text, limit=200):
    """text for a message, cut in its middle when long (a hostile value stays readable)."""
    return _cut_middle(str(text), limit)


# -- budgets ---------------------------------------------------------------------

class ReadBudget:
    """Bytes (decompressed) and seconds all inputs of one run may take.

    A budget that runs out stops the reading where it is: what was read is
    kept, the rest is said in notes.
    """

    def __init__(self, max_bytes=MAX_READ_BYTES_DEFAULT, timeout_s=TIMEOUT_S_DEFAULT):
        self.max_bytes = max_bytes
        self.left_bytes = max_bytes
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.notes = []
        self.skipped = []  # inputs not read at all, the budget being spent

    def spent(self):
        return self.left_bytes <= 0 or time.monotonic() >= self.deadline

    def out_of_bytes(self, what, read_bytes):
        self.notes.append('%s: read only its first %d bytes: max_read_bytes = %d reached (the budget of all inputs '
                          'of this run); raise max_read_bytes to read more' % (what, read_bytes, self.max_bytes))

    def out_of_time(self, what):
        self.notes.append('%s: reading stopped: timeout_s = %d reached (the time all inputs of this run may take); '
                          'the events read until then are kept' % (what, self.timeout_s))

    def chunks(self, chunks, what):
        """chunks, until the byte budget is spent (the last one cut to it)."""
        read_bytes = 0
        for chunk in chunks:
            if len(chunk) >= self.left_bytes:
                chunk = chunk[:self.left_bytes]
                self.left_bytes = 0
                yield chunk
                self.out_of_bytes(what, read_bytes + len(chunk))
                return
            self.left_bytes -= len(chunk)
            read_bytes += len(chunk)
            yield chunk

    def finish(self, long_lines):
        """Notes of the whole run: inputs skipped, long lines."""
        notes = list(self.notes)
        if self.skipped:
            notes.append('not read, the read budget being spent: %s' % ', '.join(self.skipped))
        if long_lines:
            notes.append('%d line%s longer than %d bytes skipped (not a log line: a corrupt or foreign file?)' % (
                long_lines, '' if long_lines == 1 else 's', oom_scan.MAX_LINE_BYTES))
        return notes


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


def read_kmsg(scanner, path='/dev/kmsg', budget=None):
    """The kernel ring buffer, read as dmesg does, without waiting for more."""
    budget = budget or ReadBudget()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise SourceError('dmesg: cannot read %s (needs root, or kernel.dmesg_restrict=0)' % path)
        raise SourceError('dmesg: cannot open %s: %s' % (path, os.strerror(exc.errno)))
    try:
        scanner.scan_chunks(budget.chunks(_kmsg_batches(fd, path), 'dmesg'))
    finally:
        os.close(fd)


def _kmsg_batches(fd, path):
    """Records (one per read) joined into chunks of about CHUNK_BYTES."""
    return oom_scan.batched(_kmsg_records(fd, path))


def _kmsg_records(fd, path):
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
        yield record if record.endswith(b'\n') else record + b'\n'


def read_journal(scanner, journalctl, since_epoch=None, budget=None):
    """Kernel messages of every boot the journal keeps, streamed (within budget)."""
    budget = budget or ReadBudget()
    # short-iso, not -o export/json: those keep _BOOT_ID and microseconds,
    # but each entry must then be parsed in Python (~0.1 M entries/s, five
    # times the bytes), where short-iso lines are only searched for markers
    # (millions of lines/s); see docs/events.md "journald exports".
    argv = [journalctl, '_TRANSPORT=kernel', '-o', 'short-iso', '--no-pager', '-q']
    if since_epoch is not None:
        argv.append('--since=@%d' % int(since_epoch))
    # stderr to a file: a pipe journalctl filled would stop it
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
        except OSError as exc:
            raise SourceError('journal: cannot run %s: %s' % (journalctl, exc))
        try:
            scanner.scan_chunks(budget.chunks(_pipe_chunks(proc.stdout.fileno(), budget.deadline), 'journal'))
        finally:
            whole = proc.poll() is not None or not budget.spent()
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()
        errors.seek(0)
        err = errors.read(4096).decode('utf-8', 'replace').strip()
    if whole and proc.returncode != 0:
        raise SourceError('journal: %s failed (rc=%d): %s' % (' '.join(argv), proc.returncode, err or 'no output'))


def _pipe_chunks(fd, deadline):
    """What a pipe gives, in chunks of about CHUNK_BYTES, until its end or deadline."""
    return oom_scan.batched(_pipe_reads(fd, deadline))


def _pipe_reads(fd, deadline):
    poller = select.poll()
    poller.register(fd)
    while True:
        left_s = deadline - time.monotonic()
        if left_s <= 0 or not poller.poll(left_s * 1000):
            raise oom_scan.ReadTimeout()
        data = os.read(fd, 1 << 20)
        if not data:
            break
        yield data


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
    """Globs -> files, each glob's sorted; a relative path or a pattern matching nothing is refused.

    Relative paths are refused: the module's working directory on the
    managed host is a temporary one nobody chose.
    """
    paths = []
    for pattern in patterns:
        if not os.path.isabs(pattern):
            raise SourceError("path = '%s' is relative; allowed: %s" % (_shown(pattern), _ALLOWED_PATH))
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise SourceError("path = '%s' matches no file; allowed: %s (a glob must match at least one)"
                              % (_shown(pattern), _ALLOWED_PATH))
        paths.extend(matches)
    return paths


# Ring buffers: /dev/kmsg (char 1:11) and /proc/kmsg, which blocks and consumes what it gives.
_KMSG_RDEV = os.makedev(1, 11)


def _refuse(path, what, hint=''):
    shown = "'%s'" % _shown(path)
    if os.path.islink(path):
        shown += ' (a link to %s)' % _shown(os.path.realpath(path))
    raise SourceError('path = %s is %s; allowed: %s%s' % (shown, what, _ALLOWED_PATH, hint))


def open_log(path):
    """A descriptor of path, refused (SourceError) unless it is a regular file.

    Checked with stat before opening (opening a FIFO would block), opened
    O_NONBLOCK all the same and checked again on the descriptor (the path may
    have been replaced in between).
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise SourceError("path = '%s': cannot read it: %s; allowed: %s" % (_shown(path), os.strerror(exc.errno),
                                                                            _ALLOWED_PATH))
    hint = ''
    if (stat.S_ISCHR(info.st_mode) and info.st_rdev == _KMSG_RDEV) or os.path.realpath(path) == '/proc/kmsg':
        hint = '; for the kernel ring buffer use sources: [dmesg]'
        if not stat.S_ISCHR(info.st_mode):
            _refuse(path, 'the kernel ring buffer', hint)
    if not stat.S_ISREG(info.st_mode):
        _refuse(path, procfs.file_kind(info.st_mode), hint)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise SourceError("path = '%s': cannot read it: %s; allowed: %s" % (_shown(path), os.strerror(exc.errno),
                                                                            _ALLOWED_PATH))
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
        os.close(fd)
        _refuse(path, 'a file replaced while it was opened')
    return fd


def _stream_chunks(stream):
    """A stream's bytes in chunks; a read that has nothing now (None) ends it."""
    while True:
        data = stream.read(oom_scan.CHUNK_BYTES)
        if not data:
            return
        yield data


def _gzip_chunks(raw, path, budget):
    """Decompressed chunks of a gzip file, stopped (noted) when it inflates like a bomb."""
    out_bytes = 0
    with gzip.GzipFile(fileobj=raw, mode='rb') as stream:
        for data in _stream_chunks(stream):
            out_bytes += len(data)
            in_bytes = max(raw.tell(), 1)
            if out_bytes > GZIP_RATIO_AFTER_BYTES and out_bytes > GZIP_MAX_RATIO * in_bytes:
                budget.notes.append(
                    '%s: reading stopped after %d decompressed bytes from %d compressed: it inflates more than %d '
                    'times, which no log does (a gzip bomb?)' % (path, out_bytes, in_bytes, GZIP_MAX_RATIO))
                yield data
                return
            yield data


def read_file(scanner, path, sink=None, budget=None):
    """One log file, plain or gzip (by its magic bytes, not its name), within budget.

    Only a regular file is opened (open_log).  One with a size (not /proc's)
    is read by StreamScanner.scan_file, in parallel when large, and counted
    against the budget by its size; sink is the EventSink the scanner's
    parser emits to, if any.  A gzip file is counted by what it inflates to.
    A journald export (json, export, verbose...: _journal_export.detect on
    its first bytes, decompressed) is streamed through _journal_export,
    which gives the scanner its kernel entries as short-iso lines.
    """
    budget = budget or ReadBudget()
    scanner.deadline = budget.deadline
    fd = open_log(path)
    try:
        raw = os.fdopen(fd, 'rb', buffering=0)
    except OSError:
        os.close(fd)
        raise
    try:
        with raw:
            magic = raw.read(2) or b''
            info = os.fstat(raw.fileno())
            journal = None
            if magic != b'\x1f\x8b':
                journal = _journal_format(_journal_export.detect(os.pread(raw.fileno(), _journal_export.HEAD_BYTES, 0)))
            if magic != b'\x1f\x8b' and info.st_size > 0 and journal is None:
                take_bytes = min(info.st_size, budget.left_bytes)
                budget.left_bytes -= take_bytes
                scanner.scan_file(raw.fileno(), sink=sink, max_bytes=take_bytes)
                if take_bytes < info.st_size:
                    budget.out_of_bytes(path, take_bytes)
                return
            raw.seek(0)
            if magic == b'\x1f\x8b':
                chunks = _gzip_chunks(raw, path, budget)
                first = next(chunks, b'')
                journal = _journal_format(_journal_export.detect(first[:_journal_export.HEAD_BYTES]))
                chunks = itertools.chain((first,), chunks)
            else:
                chunks = _stream_chunks(raw)
            chunks = budget.chunks(chunks, path)
            if journal is None:
                scanner.scan_chunks(chunks)
                return
            # A journald export: read by field, fed as kernel lines.
            reader = _journal_export.Reader(journal)
            scanner.boot_marks = journal != 'cat'  # cat has no _BOOT_ID, and no prefix to tell its lines
            try:
                scanner.scan_chunks(reader.kernel_lines(chunks))
            finally:
                scanner.boot_marks = False
                scanner.parser.new_boot(None)  # the next input's boots are its own
                scanner.long_lines += reader.long_lines
    except (IOError, OSError, EOFError, zlib.error) as exc:
        reason = os.strerror(exc.errno) if getattr(exc, 'errno', None) else str(exc) or type(exc).__name__
        raise SourceError("path = '%s': cannot read it: %s; allowed: %s" % (_shown(path), _shown(reason),
                                                                            _ALLOWED_PATH))


def _journal_format(fmt):
    """The export format read by field, or None for a log read as it is
    (`cat` output is kernel messages without a prefix, read as they are)."""
    return None if fmt in (None, 'cat') else fmt


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


# -- the newest events -------------------------------------------------------------

def _cut_middle(text, limit=MAX_FIELD_CHARS):
    return text if len(text) <= limit else text[:limit // 2] + '...' + text[-(limit // 2):]


def bound_fields(value):
    """value with every text in it at most MAX_FIELD_CHARS long (cut in the middle)."""
    if isinstance(value, str):
        return _cut_middle(value)
    if isinstance(value, dict):
        for key, item in value.items():
            kind = type(item)
            if kind is str:  # most fields: checked here, not by a call (a large log has ~20 per event)
                if len(item) > MAX_FIELD_CHARS:
                    value[key] = _cut_middle(item)
            elif kind not in _SCALARS and isinstance(item, (str, dict, list)):
                value[key] = bound_fields(item)
        return value
    if isinstance(value, list):
        return [item if type(item) in _SCALARS else bound_fields(item) for item in value]
    return value


_SCALARS = (int, float, bool, type(None))


def age_key(event):
    """Sort key, oldest first: events without an absolute time before the dated
    ones (among themselves in read order, which a stable sort keeps), the
    dated ones by their time."""
    when = oom_report.epoch(event.get('timestamp'))
    return (0, 0.0) if when is None else (1, when)


def _span(group, stamps):
    """A kill loop's first and last by time among stamps, not by read order (files read newest first)."""
    known = [(oom_report.epoch(stamp), stamp) for stamp in stamps]
    if any(when is None for when, dummy in known):
        return  # undated: read order, as EventSink has it
    group['first'] = min(known)[1]
    group['last'] = max(known)[1]


class NewestSink(oom_report.EventSink):
    """An EventSink that keeps the `keep` newest events by event time, over
    every input in whatever order they are read, instead of the last ones read.
    Ties (and undated events) go by read order."""

    def __init__(self, keep=None, since_epoch=None, min_kills=3):
        super(NewestSink, self).__init__(keep=0, since_epoch=since_epoch, min_kills=min_kills)
        self.newest_keep = keep
        self.heap = []  # (age_key, read sequence, event); the oldest first
        self.sequence = 0

    def _offer(self, event):
        self.sequence += 1
        entry = (age_key(event), self.sequence, event)
        if self.newest_keep is None or len(self.heap) < self.newest_keep:
            heapq.heappush(self.heap, entry)
        elif self.newest_keep > 0 and entry[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, entry)

    def add(self, event):
        victim = event.get('victim') or event.get('selected')
        key = (event.get('host') or '', victim['comm'], event.get('task_memcg') or '') if victim else None
        before = dict(self.groups[key]) if key in self.groups else None
        if not super(NewestSink, self).add(event):
            return False
        if before is not None:
            _span(self.groups[key], (before['first'], before['last'], event.get('timestamp') or event.get('time')))
        self._offer(event)
        return True

    def reset(self):
        super(NewestSink, self).reset()
        self.heap = []

    def export(self):
        state = super(NewestSink, self).export()
        state['recent'] = [entry[2] for entry in sorted(self.heap, key=lambda entry: entry[:2])]
        return state

    def merge(self, state):
        before = dict((key, dict(group)) for key, group in self.groups.items() if key in state['groups'])
        super(NewestSink, self).merge(dict(state, recent=[]))
        for key, group in before.items():
            other = state['groups'][key]
            _span(self.groups[key], (group['first'], group['last'], other['first'], other['last']))
        for event in state['recent']:  # in the worker's read order: sequence goes on from ours
            self._offer(event)

    @property
    def newest(self):
        """The kept events, oldest first."""
        return [entry[2] for entry in sorted(self.heap, key=lambda entry: entry[:2])]


# -- one call --------------------------------------------------------------------

def collect(sources=(), paths=(), since=None, year=None, run_command=None, journalctl=None, systemctl=None,
            min_kills=3, link=None, now=None, keep=None, budget=None):
    """Read the sources, parse, classify. Returns (events, loops, summary, notes).

    Events are classified and counted as the parser finishes them; only the
    `keep` newest by event time (None: all) are returned whole, oldest first.
    link: link kill loops to this host's units (default: only when a live
    source, dmesg or journal, was read).  notes: sources that could not be
    read, then what the read limits cut (budget, see ReadBudget).
    """
    events, loops, summary, errors, limits = _collect(sources, paths, since, year, run_command, journalctl,
                                                      systemctl, min_kills, link, now, keep, budget or ReadBudget())
    return events, loops, summary, errors + limits


def _collect(sources, paths, since, year, run_command, journalctl, systemctl, min_kills, link, now, keep, budget):
    sink = NewestSink(keep=keep, since_epoch=parse_since(since, now), min_kills=min_kills)
    errors = []
    long_lines = 0
    btime = boot_time() if 'dmesg' in sources else None

    def emitter(source):
        def emit(event):
            if source == 'dmesg':
                _date_uptime([event], btime)
            event['source'] = source
            sink.add(oom_report.finish_one(bound_fields(event)))
        return emit

    for source in sources:
        scanner = oom_scan.StreamScanner(parser=oom_report.EventParser(emit=emitter(source)),
                                         year=year or time.gmtime().tm_year, deadline=budget.deadline)
        try:
            if budget.spent():
                budget.skipped.append(source)
            elif source == 'dmesg':
                read_kmsg(scanner, budget=budget)
            elif source == 'journal':
                if not journalctl:
                    raise SourceError('journal: journalctl not found')
                read_journal(scanner, journalctl, sink.since_epoch, budget)
            else:
                raise SourceError('unknown source %s' % source)
        except SourceError as exc:
            errors.append(str(exc))
        except oom_scan.ReadTimeout:
            budget.out_of_time(source)
        scanner.parser.close()
        long_lines += scanner.long_lines
    for path in expand_paths(paths):
        if budget.spent():
            budget.skipped.append(path)
            continue
        scanner = oom_scan.StreamScanner(parser=oom_report.EventParser(emit=emitter(path)),
                                         year=year or file_year(path), deadline=budget.deadline)
        try:
            read_file(scanner, path, sink, budget)
        except oom_scan.ReadTimeout:
            budget.out_of_time(path)
        scanner.parser.close()
        long_lines += scanner.long_lines
    loops = sink.kill_loops()
    if link is None:
        link = any(s in ('dmesg', 'journal') for s in sources)
    if link and loops:
        link_loops(loops, run_command, systemctl)
    return sink.newest, loops, sink.summary(), errors, budget.finish(long_lines)


def run(params, run_command, journalctl, systemctl, systemd_booted):
    """What the oom_events module returns, for its options (see its documentation).

    Raises SourceError (with .notes) when an option is out of its bounds, a
    path is not a regular log file, a source asked for cannot be read, or
    none of the automatic ones could.  What the read limits cut is in notes.
    """
    problems = check_options(params)
    if problems:
        raise SourceError('; '.join(problems), problems)
    budget = ReadBudget(params.get('max_read_bytes') or MAX_READ_BYTES_DEFAULT,
                        params.get('timeout_s') or TIMEOUT_S_DEFAULT)
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
    events, loops, summary, notes, limits = _collect(
        [s for s in sources if s != 'early_killers'], paths, params.get('since'), params.get('year'), run_command,
        journalctl, systemctl, params.get('min_loop_kills', 3), params.get('link_units'), None,
        params.get('max_events', 100), budget)
    if notes and not auto:
        raise SourceError('; '.join(notes), notes + limits)
    if notes and auto and not events:
        raise SourceError('no OOM source could be read: %s' % '; '.join(notes), notes + limits)
    notes = notes + early_notes
    if early_notes and not auto:
        raise SourceError('; '.join(early_notes), notes + limits)
    summary['early_kills'] = len(early_kills)
    return {'events': events, 'kill_loops': loops, 'early_kills': early_kills, 'summary': summary,
            'notes': notes + limits}
