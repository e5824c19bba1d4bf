# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a log of any size: which windows of it reach the OOM report parser.

``StreamScanner`` finds the windows around two markers ("invoked
oom-killer", "ut of memory") and feeds only those to an
``oom_report.EventParser``: streams in chunks (``scan``, ``scan_chunks``),
plain files through forked workers that search and parse their parts of the
mapped file (``scan_file``).  Memory stays flat in the input's size and
noise costs little more than two substring searches.  ``parse_text`` does
it all at once for a small str or bytes log.

What a report line means, the events, causes and kill loops are in
oom_report.py; this module imports it, never the other way round.
Standard library only (ctypes for the C library's memmem where there is one).
"""


import array
import bisect
import functools
import marshal
import mmap
import os
import re
import select
import signal
import time

from ansible_collections.oomguard.linux.plugins.module_utils import _carrier
from ansible_collections.oomguard.linux.plugins.module_utils.oom_report import (
    DMESG,
    DMESG_LINES,
    DMESG_T,
    KMSG_LINES,
    LINE_NUMBER,
    SYSLOG_LINES,
    Event,
    EventParser,
    Line,
    matches_nothing,
    split_flattened,
    split_prefix,
    unescape_rsyslog,
)

# -- reading a log --------------------------------------------------------------

# A report runs from its "invoked oom-killer" line to its kill line, which
# says "Out of memory" (or, for a memory cgroup, "out of memory") in every
# kernel since 2.6: "Out of memory: Killed process", the older "Out of
# memory: Kill process" (its "Killed process" line follows), "Kernel panic
# - not syncing: Out of memory", "Out of memory and no killable processes".
# The kill line is printed also when the report itself was rate-limited
# away.  Only these two markers are searched for in the whole log;
# everything else is looked for near them, so noise costs two substring
# searches.
# The start marker is "oom-killer:" without "invoked ": a mail client's wrap
# at 72 columns often falls between the two (_report_begin finds the line).
START_MARKER = b'oom-killer:'
KILL_MARKER = b'ut of memory'
# Lines that complete a kill line lacking them (the next line in every
# capture: "Kill process ..." then "Killed process ...").
_KILL_FOLLOWERS = (b'Killed process', b'Kernel panic - not syncing')
KILL_FOLLOW_BYTES = 4 << 10
# Lines printed right after a kill that belong to it: the oom_reaper's
# outcome (at most a few hundred bytes on in every capture) and a panic
# ("Attempted to kill init!").
# memory.oom.group: the group's line and the other members' kill lines follow the selected victim's.
_AFTER_KILL_MARKERS = (b'oom_reaper:', b'Kernel panic - not syncing', b'memory.oom.group set')
AFTER_KILL_BYTES = 8 << 10
# journalctl's line between two boots ("-- Boot <id> --"; older: "-- Reboot --"), which
# _journal_export.Reader writes too when an export's _BOOT_ID changes.  Looked for
# only where the scanner is told to (boot_marks): never by a search of a plain log.
BOOT_MARKERS = (b'-- Boot ', b'-- Reboot --')
_BOOT_LINE = re.compile(rb'-- (?:Boot (?P<id>[0-9a-f]{32}) --|Reboot --)\s*$')
# What ends a report that kills nothing.
NO_KILL_MARKERS = (b'Kernel panic - not syncing', b'no killable processes')
# Lines only a report prints, where a fragment that holds neither of the two
# lines above can start (a partial paste, a report cut at the head of a
# rotated log).  Looked for in the first FRAGMENT_SCAN_BYTES of each input
# only: four more passes over a whole large log would cost twice the rest,
# and further on a report always has one of those two lines.  8 MiB: such a
# fragment starts at the head of its input, and any report larger than that
# (a task table of ~80k processes) reaches its kill line.
FRAGMENT_MARKERS = (b'killed as a result of limit of', b'Memory cgroup stats for', b'Mem-Info:', b'Tasks state (memory')
FRAGMENT_SCAN_BYTES = 8 << 20
# A fragment that reaches no kill line ends at the next report or this far on
# (a task table of ~10k processes).
FRAGMENT_WINDOW_BYTES = 1 << 20
# A kill line whose previous line is one of these had a report body before
# it; that body's first line is looked for this far back.
_BODY_LINE = re.compile(rb'oom-kill:constraint|^.*\[\s*\d+\]\s+\d+\s+\d+\s|Tasks state|Kill process')
PARTIAL_LOOKBACK_BYTES = 1 << 20
PARTIAL_PROBE_BYTES = 64 << 10
CHUNK_BYTES = 8 << 20
# A window of this many lines or more has its line prefixes matched in one
# regex pass per carrier (fewer, a rate-limited kill: line by line).
_BATCH_LINES = 8
# A report longer than this (a task table of ~200k processes) is cut there.
MAX_WINDOW_BYTES = 64 << 20
# Plain files this large are searched, then parsed, by forked workers (one
# per CPU, at most MAX_WORKERS, each with at least PARALLEL_SHARE_BYTES).
PARALLEL_MIN_BYTES = 16 << 20
PARALLEL_SHARE_BYTES = 8 << 20
MAX_WORKERS = 16
# The memmem search goes over a mapping this much at a time, every needle in turn.
_SEARCH_BLOCK_BYTES = 1 << 20
# A searching worker maps this much of the file at a time; a parsing worker
# drops the pages it has mapped each time it has gone this far.
_MAP_BYTES = 8 << 20
_RELEASE_BYTES = 32 << 20
# A share of a file holding more markers than this (a log of nothing but
# kills) is read sequentially instead, so that offsets never take much memory.
MAX_SHARE_MARKERS = 1 << 20
# No log line is longer than this (a kernel line is at most 1 KiB, a journal
# line a few); a longer one (a corrupt or hostile file, a 200 MB line of
# zeros) is skipped, never kept whole: scanners count them in long_lines.
MAX_LINE_BYTES = 64 << 10


class ReadTimeout(Exception):
    """The scanner's deadline passed: what was parsed until then stays parsed."""


def _check_deadline(deadline):
    if deadline is not None and time.monotonic() >= deadline:
        raise ReadTimeout()


def _line_start(buf, pos):
    return buf.rfind(b'\n', 0, pos) + 1


def _line_end(buf, pos, end=None):
    end = len(buf) if end is None else end
    found = buf.find(b'\n', pos, end)
    return end if found < 0 else found + 1


def _report_begin(buf, start):
    """(line start, True) for a START_MARKER at start that is a report's
    "invoked" line (or its wrapped rest: then the line before), else
    (line start, False)."""
    begin = _line_start(buf, start)
    if b'invoked' in buf[begin:start]:
        return begin, True
    if begin:
        before = _line_start(buf, begin - 1)
        if b'invoked' in buf[before:begin] and buf[before:begin].rstrip().endswith(b'invoked'):
            return before, True
    return begin, False


# A window's last line may go on in the lines after it (a mail client's wrap):
# at most this many of them are taken into the window.
_MAX_CONTINUATIONS = 8


def _continued(buf, end, size, final):
    """end, moved past the wrapped rest of the line before it (_carrier's rule);
    None when buf may not hold it all yet."""
    previous = None
    for dummy in range(_MAX_CONTINUATIONS):
        if end >= size:
            return end if final else None
        if _carrier.starts_record(buf[end:end + 40]):
            return end  # the usual case: the next record
        newline = buf.find(b'\n', end, size)
        if newline < 0 and not final:
            return None
        stop = size if newline < 0 else newline + 1
        if previous is None:
            previous = bytes(buf[_line_start(buf, end - 1):end]).decode('utf-8', 'replace').rstrip('\r\n')
        line = bytes(buf[end:stop]).decode('utf-8', 'replace').rstrip('\r\n')
        if not _carrier.continues(previous, line):
            return end
        previous = _carrier.carried(previous, line)
        end = stop
    return end


# A memory cgroup's counter lines ("memory: usage 432kB, limit 0kB, failcnt 27",
# memory+swap, swap, kmem, tcpmem), which the kernel prints right before
# "Memory cgroup stats for": a fragment found by that line starts with them.
_MAX_COUNTER_LINES = 5


def _counters_before(buf, begin, floor):
    """begin, moved back over the counter lines right before it (not below floor)."""
    for dummy in range(_MAX_COUNTER_LINES):
        if begin <= floor:
            break
        previous = _line_start(buf, begin - 1)
        line = buf[previous:begin]
        if previous < floor or b': usage ' not in line or b', limit ' not in line:
            break
        begin = previous
    return begin


def _cut(buf, begin, bound):
    """bound, moved back to the end of a line (but not into begin's line)."""
    if bound >= len(buf) or buf[bound - 1:bound] == b'\n':
        return bound
    cut = _line_start(buf, bound)
    return cut if cut > begin else _line_end(buf, begin)


def _first(buf, needles, start, end):
    """The first offset of any of needles in buf[start:end], or -1."""
    found = [pos for pos in (buf.find(needle, start, end) for needle in needles) if pos >= 0]
    return min(found) if found else -1


def positions(buf, needle, start=0, end=None):
    """Every offset of needle in buf[start:end]."""
    end = len(buf) if end is None else end
    found = []
    pos = buf.find(needle, start, end)
    while pos >= 0:
        found.append(pos)
        pos = buf.find(needle, pos + 1, end)
    return found


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# -- plain files, in forked workers ------------------------------------------------

class _Searcher:
    """Offsets of needles in a mapped part of a file.

    glibc's memmem (called through ctypes, both in the standard library on
    any Linux) searches about twice as fast as mmap.find; without it,
    mmap.find.
    """

    def __init__(self):
        self.ctypes = self.memmem = None
        try:
            import ctypes
            memmem = ctypes.CDLL(None).memmem
            memmem.restype = ctypes.c_void_p
            memmem.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t)
        except (ImportError, OSError, AttributeError, TypeError):
            return
        self.ctypes, self.memmem = ctypes, memmem

    def search(self, fd, offset, length, jobs):
        """Map length bytes of fd at offset; for each (needle, start, end, out)
        of jobs append to out the file offsets where needle starts in
        [start, end) of the mapping."""
        # ctypes needs a writable buffer: a private mapping, never written to.
        view = mmap.mmap(fd, length, access=mmap.ACCESS_COPY if self.memmem else mmap.ACCESS_READ, offset=offset)
        holder = None
        try:
            if self.memmem and jobs:
                holder = (self.ctypes.c_char * length).from_buffer(view)
                address = self.ctypes.addressof(holder)
                # Every needle over one block before the next: the block is still
                # in the CPU's cache for the second needle (a fifth less time).
                low = min(start for dummy, start, dummy2, dummy3 in jobs)
                high = max(end for dummy, dummy2, end, dummy3 in jobs)
                for block in range(low, high, _SEARCH_BLOCK_BYTES):
                    block_end = block + _SEARCH_BLOCK_BYTES
                    for needle, start, end, out in jobs:
                        pos = max(start, block)
                        upto = min(end, block_end)
                        stop = min(upto + len(needle) - 1, end + len(needle) - 1, length)
                        while pos < upto:
                            found = self.memmem(address + pos, stop - pos, needle, len(needle))
                            if not found:
                                break
                            pos = found - address
                            out.append(offset + pos)
                            pos += 1
                return
            for needle, start, end, out in jobs:
                stop = min(end + len(needle) - 1, length)
                pos = view.find(needle, start, stop)
                while pos >= 0:
                    out.append(offset + pos)
                    pos = view.find(needle, pos + 1, stop)
        finally:
            holder = None
            view.close()


def shares(size, count, fragment_end):
    """[0, size) in count contiguous parts of equal search cost: the first
    fragment_end bytes are searched for six markers, the rest for two."""
    head = min(size, fragment_end)
    total = 3 * head + (size - head)
    bounds = [0]
    for part in range(1, count):
        target = total * part // count
        bounds.append(target // 3 if target <= 3 * head else target - 2 * head)
    bounds.append(size)
    return [(low, high) for low, high in zip(bounds[:-1], bounds[1:]) if high > low]


def file_markers(fd, size, low, high, fragment_end):
    """Offsets of the markers that start in [low, high) of a file: three
    sorted arrays (starts, kills, fragments found before fragment_end), or
    None when there are more than MAX_SHARE_MARKERS."""
    searcher = _Searcher()
    starts, kills, fragments = array.array('q'), array.array('q'), array.array('q')
    overlap = max(len(marker) for marker in (START_MARKER, KILL_MARKER) + FRAGMENT_MARKERS) - 1
    pos = low
    while pos < high:
        base = pos - pos % mmap.ALLOCATIONGRANULARITY
        stop = min(pos + _MAP_BYTES, high)
        jobs = [(START_MARKER, pos - base, stop - base, starts), (KILL_MARKER, pos - base, stop - base, kills)]
        found = []
        if pos < fragment_end:
            jobs.extend((marker, pos - base, min(stop, fragment_end) - base, found) for marker in FRAGMENT_MARKERS)
        searcher.search(fd, base, min(stop + overlap, size) - base, jobs)
        fragments.extend(sorted(found))
        if len(starts) + len(kills) + len(fragments) > MAX_SHARE_MARKERS:
            return None
        pos = stop
    return starts, kills, fragments


def _die_with_parent(parent):
    """Have the kernel kill this worker if the module dies (a task timeout)."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None).prctl
        prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (ImportError, OSError, AttributeError, TypeError):
        pass
    if os.getppid() != parent:
        os._exit(1)  # the module died before that


def _child(job, parent, read_end, write_end):
    """In a forked worker: run job, send what it returns, never return."""
    status = 1
    try:
        os.close(read_end)
        _die_with_parent(parent)
        data = memoryview(marshal.dumps(job()))
        while data:
            data = data[os.write(write_end, data):]
        status = 0
    except BaseException:  # pylint: disable=broad-except
        pass  # the parent does the job itself
    finally:
        os._exit(status)  # no atexit handlers, no flushing of the parent's buffers


def in_workers(jobs, deadline=None):
    """Run each job (a function without arguments) in a forked process at
    once; per job what it returned (plain data, through a pipe), or None when
    its worker could not be started or failed.  No worker outlives this call:
    past deadline (time.monotonic()) they are killed and ReadTimeout raised."""
    results = [None] * len(jobs)
    running = {}
    parent = os.getpid()
    try:
        for index, job in enumerate(jobs):
            try:
                read_end, write_end = os.pipe()
            except OSError:
                break
            try:
                pid = os.fork()
            except OSError:
                os.close(read_end)
                os.close(write_end)
                break
            if pid == 0:
                _child(job, parent, read_end, write_end)
            os.close(write_end)
            running[index] = (pid, read_end)
        for index in sorted(running):
            pid, read_end = running[index]
            chunks = []
            data = _read_before(read_end, deadline)
            while data:
                chunks.append(data)
                data = _read_before(read_end, deadline)
            os.close(read_end)
            del running[index]
            if _reaped(pid) == 0:
                try:
                    results[index] = marshal.loads(b''.join(chunks))
                except (EOFError, ValueError, TypeError):
                    results[index] = None
    finally:
        for pid, read_end in running.values():
            os.close(read_end)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            _reaped(pid)
    return results


def _read_before(fd, deadline):
    """os.read of a worker's pipe, waiting no longer than deadline."""
    if deadline is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        left_s = deadline - time.monotonic()
        if left_s <= 0 or not poller.poll(left_s * 1000):
            raise ReadTimeout()
    return os.read(fd, 1 << 20)


def _reaped(pid):
    """Wait for a worker; its exit status (-1 if it was killed)."""
    try:
        dummy, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0  # reaped by someone else (SIGCHLD ignored): judge by its output
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1


def batched(pieces, chunk_bytes=CHUNK_BYTES):
    """bytes pieces (records, reads, lines) joined into chunks of about chunk_bytes; empty pieces dropped."""
    out, size = [], 0
    for piece in pieces:
        if piece:
            out.append(piece)
            size += len(piece)
            if size >= chunk_bytes:
                yield b''.join(out)
                out, size = [], 0
    if out:
        yield b''.join(out)


def _pread_chunks(fd, low, high=None, chunk_bytes=CHUNK_BYTES):
    """The bytes of fd from low to high (None: to its end), in chunks."""
    pos = low
    while high is None or pos < high:
        data = os.pread(fd, chunk_bytes if high is None else min(chunk_bytes, high - pos), pos)
        if not data:
            return
        yield data
        pos += len(data)


class _Release:
    """Drops the pages of a mapping below the scan's position now and then, so
    that a parsing worker's resident memory stays flat in the file's size."""

    def __init__(self, view):
        self.view = view
        self.done = 0

    def __call__(self, pos):
        if pos - self.done < _RELEASE_BYTES:
            return
        upto = pos - pos % mmap.PAGESIZE
        try:
            self.view.madvise(mmap.MADV_DONTNEED, self.done, upto - self.done)
        except (AttributeError, ValueError, OSError):
            pass
        self.done = upto


def _sync_point(fd, start, starts, kills, fragments):
    """Where the line of a report start begins, if that line holds no other
    marker and a kill came since the report before (nothing else is open):
    a place to cut a file into independently parsed groups."""
    back = min(start, 64 << 10)
    data = os.pread(fd, back, start - back)
    newline = data.rfind(b'\n')
    if len(data) != back or newline < 0:
        return None
    at = start - back + newline + 1
    index = bisect.bisect_left(starts, start)
    if index == 0 or bisect.bisect_left(kills, starts[index - 1]) == bisect.bisect_left(kills, at):
        return None
    for offsets in (starts, kills, fragments):
        index = bisect.bisect_left(offsets, at)
        if index < len(offsets) and offsets[index] < start:
            return None
    return at


def groups(fd, size, starts, kills, fragments, count):
    """[0, size) cut at report starts into up to count groups of about the
    same parsing work (each report weighs its bytes up to its kill)."""
    if count < 2 or len(starts) < 2:
        return [(0, size)]
    work = []
    total = 0
    for index, start in enumerate(starts):
        following = starts[index + 1] if index + 1 < len(starts) else size
        first = bisect.bisect_left(kills, start)
        last = bisect.bisect_left(kills, following)
        stop = kills[first] if first < last else following
        total += min(stop - start, MAX_WINDOW_BYTES) + 256 * (last - first)
        work.append(total)
    bounds = [0]
    for part in range(1, count):
        index = bisect.bisect_left(work, total * part // count) + 1
        for candidate in range(index, min(index + 16, len(starts))):
            at = _sync_point(fd, starts[candidate], starts, kills, fragments)
            if at is not None and at > bounds[-1]:
                bounds.append(at)
                break
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:]))


class StreamScanner:
    """Feeds only the OOM report windows of a log to an EventParser."""

    def __init__(self, parser=None, year=None, fragment_bytes=FRAGMENT_SCAN_BYTES, deadline=None):
        self.parser = parser or EventParser()
        self.year = year
        # Fragments without "invoked" and kill lines are looked for this far.
        self.fragment_bytes = fragment_bytes
        # time.monotonic() past which reading stops with ReadTimeout (None: never).
        self.deadline = deadline
        # Lines longer than MAX_LINE_BYTES skipped.
        self.long_lines = 0
        # Whether _carrier repaired any window yet (_merge_copies looks only then).
        self.repaired = False
        # Whether boot lines (BOOT_MARKERS) end the reports open before them.
        self.boot_marks = False

    def _without_long_lines(self, data):
        """data without its lines longer than MAX_LINE_BYTES (counted)."""
        keep = []
        pos = 0
        size = len(data)
        while pos < size:
            end = data.find(b'\n', pos)
            end = size if end < 0 else end + 1
            if end - pos > MAX_LINE_BYTES + 1:
                self.long_lines += 1
            else:
                keep.append((pos, end))
            pos = end
        if len(keep) == 1 and keep[0] == (0, size):
            return data
        return b''.join(data[low:high] for low, high in keep)

    def _parse_lines(self, data):
        if len(data) > MAX_LINE_BYTES:
            data = self._without_long_lines(data)
        text = data.decode('utf-8', 'replace')
        if '\x00' in text:
            text = text.replace('\x00', '')
        suspect = _carrier.suspect(text)
        # Longer texts without rsyslog escapes: the line prefixes in one pass.
        if not suspect and text.count('\n') >= _BATCH_LINES and '\r' not in text and '#0' not in text:
            if self._parse_dmesg(text) if text[:1] == '[' else self._parse_carried(text):
                return
        if suspect and self._parse_repaired(text):
            return
        feed = self.parser.feed
        year = self.year
        count = 0
        for raw in text.split('\n'):
            if not raw:
                continue
            for chunk in unescape_rsyslog(raw) if '#0' in raw else (raw,):
                line = split_prefix(chunk, year)
                if line is None:
                    continue
                count += 1
                if len(line.message) < 160:  # split_flattened leaves it whole
                    feed(line)
                    continue
                for message in split_flattened(line.message):
                    line.message = message
                    feed(line)

    def _parse_repaired(self, text):
        """Parse text through _carrier.repair; False (nothing done) when it repaired nothing."""
        lines, repairs = _carrier.repair(text)
        if not repairs:
            return False
        self.repaired = True
        if len(lines) >= _BATCH_LINES and not any(cut for dummy, cut in lines):
            # The repaired lines through the one-pass paths; the notes then go
            # to the events those lines touched (new ones and the one open).
            events = self.parser.events
            known = set(id(event) for event in events)
            touched = list(self.parser.open.values())
            repaired = '\n'.join(line for line, dummy in lines) + '\n'
            if '\r' not in repaired and '#0' not in repaired and (
                    self._parse_dmesg(repaired) if repaired[:1] == '[' else self._parse_carried(repaired)):
                touched.extend(event for event in events if id(event) not in known)
                for event in touched:
                    notes = event.setdefault('carrier_repairs', [])
                    notes.extend(note for note in repairs if note not in notes)
                return True
        feed = self.parser.feed
        for raw, cut in lines:
            line = split_prefix(raw, self.year)
            if line is None:
                continue
            line.repairs = repairs
            line.cut = cut
            for message in split_flattened(line.message):
                line.message = message
                feed(line)
        return True

    def _parse_dmesg(self, text):
        """Parse text if each of its lines is a plain "[ 12.345678] message" one.

        What split_prefix and feed would do, with the prefixes taken by one
        regex pass and the lines no pattern can match only counted.  False
        (nothing done) for any other text.
        """
        lines = DMESG_LINES.findall(text)
        parts = text.split('\n')
        if len(lines) != len(parts) - parts.count(''):
            return False
        feed = self.parser.feed
        events = self.parser.open
        skipped = 0  # lines for the open event; it only changes when a line is fed
        for stamp, message in lines:
            stripped = message.strip()
            if not stripped:
                continue
            if len(message) < 160 and matches_nothing(stripped):
                skipped += 1
                continue
            if skipped:
                self._count(events.get(None), skipped)
                skipped = 0
            line = Line(None, stamp, None, float(stamp), message)
            for part in split_flattened(message):
                line.message = part
                feed(line)
        self._count(events.get(None), skipped)
        return True

    @staticmethod
    def _count(event, lines):
        if event is not None:
            event['lines'] += lines

    def _parse_carried(self, text):
        """Parse text whose lines have syslog-style carriers.

        What split_prefix and feed would do: each carrier split_prefix could
        try is matched over the whole text in one regex pass; a line takes
        the first, in split_prefix's order, that matched it.  Kernel lines
        whose message no pattern can match are only counted; the others, and
        lines no carrier matched, go through split_prefix and feed.  False
        (nothing done) when the text may hold /dev/kmsg records.
        """
        first = text[:1]
        if 'A' <= first <= 'Z':
            carriers = SYSLOG_LINES[2:]
        elif first.isdigit() and not KMSG_LINES.search(text):
            carriers = SYSLOG_LINES[1:2]
        else:
            return False
        rows = {}
        for pattern in reversed(carriers):  # the earlier carriers win
            for match in pattern.finditer(text):
                rows[match.start()] = match
        if not rows:
            return False
        feed = self.parser.feed
        events = self.parser.open
        year = self.year
        count = 0
        at = 0
        for raw in text.split('\n'):
            match = rows.get(at)
            at += len(raw) + 1
            if not raw:
                continue
            if match is not None:
                if match.group('tag') != 'kernel':
                    continue  # another program's line
                message = match.group('msg')
                if message[:1].isdigit():
                    message = LINE_NUMBER.sub('', message, count=1)
                if message[:1] in ('[', '<'):
                    inner = DMESG.match(message)
                    if inner is None and message[:1] == '[':
                        inner = DMESG_T.match(message)
                    if inner is not None:
                        message = inner.group(inner.lastindex)
                stripped = message.strip()
                if not stripped or (len(message) < 160 and matches_nothing(stripped)):
                    count += 1
                    event = events.get(match.group('host') if 'host' in match.re.groupindex else None) if stripped else None
                    if event is not None:
                        event['lines'] += 1
                    continue
            line = split_prefix(raw, year)
            if line is None:
                continue
            count += 1
            for part in split_flattened(line.message):
                line.message = part
                feed(line)
        return True

    def _headless_begin(self, buf, kill, floor):
        """Where the report of a kill line without an "invoked" line starts."""
        begin = _line_start(buf, kill)
        if begin <= floor:
            return begin
        record = self._record_before(buf, begin, floor)
        if record is None or not _BODY_LINE.search(buf[record:begin]):
            return begin  # a rate-limited kill: its report was never printed
        # The body is contiguous: look PARTIAL_PROBE_BYTES back, and further
        # only while the line there is still a body line (a long task table).
        end = begin
        low = max(floor, begin - PARTIAL_PROBE_BYTES)
        while True:
            found = [pos for pos in (buf.rfind(marker, low, end) for marker in FRAGMENT_MARKERS) if pos >= 0]
            if found:
                return _line_start(buf, min(found))
            if low <= max(floor, begin - PARTIAL_LOOKBACK_BYTES):
                break
            at = _line_start(buf, low)
            if not _BODY_LINE.search(buf[at:_line_end(buf, low, begin)]):
                break
            end = min(begin, low + max(len(marker) for marker in FRAGMENT_MARKERS))
            low = max(floor, begin - PARTIAL_LOOKBACK_BYTES, low - PARTIAL_PROBE_BYTES)
        # No first line of a body: the body lines (task rows, the oom-kill line)
        # right before the kill, as far as they go within PARTIAL_PROBE_BYTES.
        low = max(floor, begin - PARTIAL_PROBE_BYTES)
        while record > low:
            earlier = self._record_before(buf, record, low)
            if earlier is None or not _BODY_LINE.search(buf[earlier:record]):
                break
            record = earlier
        return record

    @staticmethod
    def _record_before(buf, begin, floor):
        """Where the record before offset begin (a line's start) starts: the line
        before, or, when that is the wrapped rest of a line, the line it continues
        (at most _MAX_CONTINUATIONS back).  None when that line starts below floor
        (a window never starts inside a line)."""
        at = begin
        for dummy in range(_MAX_CONTINUATIONS + 1):
            if at <= floor:
                break
            at = _line_start(buf, at - 1)
            if at < floor:
                break
            if _carrier.starts_record(buf[at:at + 40]):
                return at
        previous = _line_start(buf, begin - 1)
        return previous if floor <= previous < begin else None

    @staticmethod
    def _kill_window(buf, begin, kill, following, limit, size, final):
        """(begin, end, after) of the window that ends with a kill line: the
        line completing it, and the lines printed right after it (oom_reaper,
        panic) as (begin, end) pairs.  following is the next kill, limit the
        next report's first line.  None when buf may not hold it all yet."""
        line_begin = _line_start(buf, kill)
        end = _line_end(buf, kill, size)
        if not final and buf[end - 1:end] != b'\n':
            return None
        following = min(following, limit) if following >= 0 else limit
        line = buf[line_begin:end]
        if not any(marker in line for marker in _KILL_FOLLOWERS):
            bound = min(following, end + KILL_FOLLOW_BYTES)
            found = _first(buf, _KILL_FOLLOWERS, end, bound)
            if found >= 0:
                end = _line_end(buf, found, size)
                if not final and buf[end - 1:end] != b'\n':
                    return None
            elif bound >= size and not final:
                return None
        bound = min(following, end + AFTER_KILL_BYTES)
        after = []
        pos = end
        found = _first(buf, _AFTER_KILL_MARKERS, pos, bound)
        while found >= 0:
            pos = _line_end(buf, found, size)
            if not final and buf[pos - 1:pos] != b'\n':
                return None
            after.append((_line_start(buf, found), pos))
            found = _first(buf, _AFTER_KILL_MARKERS, pos, bound)
        if bound >= size and not final:
            return None
        return begin, end, after

    @staticmethod
    def _with_continuations(buf, window, size, final):
        """window with the wrapped rest of its last lines; None when buf may not hold it yet."""
        begin, end, after = window
        end = _continued(buf, end, size, final)
        if end is None:
            return None
        pieces = []
        for low, high in after:
            high = _continued(buf, high, size, final)
            if high is None:
                return None
            pieces.append((low, high))
        return begin, end, pieces

    # How many of the last events a new one is compared with (_merge_copies).
    _COPIES_BACK = 8

    def _merge_copies(self):
        """One report seen twice in a pasted text (quoted dmesg -T, then the raw
        dmesg of the same OOM) is one event: the later copy's fields fill what
        the earlier one lacks, and the earlier says 'duplicate copy'.  Only
        when a carrier was repaired in either copy: a clean log never repeats a
        victim with the same pid and sizes."""
        events = self.parser.events
        if not self.repaired or len(events) < 2:
            return  # a clean log never pays for this
        last = events[-1]
        victim = last.get('victim')
        if not victim or any(event is last for event in self.parser.open.values()):
            return
        key = (victim['pid'], victim['comm'], victim.get('total_vm_kb'), victim.get('anon_rss_kb'))
        for earlier in reversed(events[-1 - self._COPIES_BACK:-1]):
            other = earlier.get('victim')
            if not other or earlier.get('host') != last.get('host') or key != (
                    other['pid'], other['comm'], other.get('total_vm_kb'), other.get('anon_rss_kb')):
                continue
            if not (earlier.get('carrier_repairs') or last.get('carrier_repairs')):
                return
            if any(earlier.get(name) is not None and last.get(name) is not None and earlier[name] != last[name]
                   for name in ('uptime_s', 'timestamp', 'order', 'gfp_mask')):
                continue  # two kills, not two copies of one (sysrq f again and again)
            if (earlier.get('invoker') or {}).get('comm') != (last.get('invoker') or {}).get('comm'):
                continue
            events.pop()
            for name, value in last.items():
                if name == 'carrier_repairs':
                    continue
                if earlier.get(name) in (None, [], {}) and value not in (None, [], {}):
                    earlier[name] = value
            notes = earlier.setdefault('carrier_repairs', [])
            for note in last.get('carrier_repairs') or []:
                if note not in notes:
                    notes.append(note)
            if 'duplicate copy' not in notes:
                notes.append('duplicate copy')
            return

    def _no_kill_end(self, buf, start, bound, size):
        """End of a report that killed nothing: its panic line, or bound."""
        found = _first(buf, NO_KILL_MARKERS, start, bound)
        return _line_end(buf, found, size) if found >= 0 else _cut(buf, start, bound)

    def scan_buffer(self, buf, final, starts=None, kills=None, fragments=None, low=0, high=None, base=0, progress=None):
        """Parse the report windows in buf[low:high]; return the offset up to which it is done.

        buf is any bytes-like object with find/rfind (bytes, mmap); base is
        the offset of buf[0] in its input (fragments are looked for in the
        input's first fragment_bytes).  starts, kills and fragments, when
        given, are the sorted offsets in buf of START_MARKER, KILL_MARKER and
        (up to where they are looked for) FRAGMENT_MARKERS.  Unless final, a
        report (or line) still open at the end is left for the next call: the
        caller keeps buf[offset:].  No window reaches past the line of the
        next report start: each such line begins a window.
        """
        size = len(buf) if high is None else high
        if starts is None:
            starts = positions(buf, START_MARKER, low, size)
        if kills is None:
            kills = positions(buf, KILL_MARKER, low, size)
        if fragments is None:
            fragment_end = min(size, self.fragment_bytes - base)
            fragments = sorted(pos for marker in FRAGMENT_MARKERS for pos in positions(buf, marker, low, fragment_end)
                               ) if fragment_end > low else []
        i = bisect.bisect_left(starts, low)
        j = bisect.bisect_left(kills, low)
        f = bisect.bisect_left(fragments, low)
        boots = self._boot_lines(buf, low, size) if self.boot_marks else []
        k = 0  # boots[k:] are not given to the parser yet
        pos = low
        while True:
            while i < len(starts) and starts[i] < pos:
                i += 1
            while j < len(kills) and kills[j] < pos:
                j += 1
            while f < len(fragments) and fragments[f] < pos:
                f += 1
            start = starts[i] if i < len(starts) and starts[i] < size else -1
            kill = kills[j] if j < len(kills) and kills[j] < size else -1
            frag = fragments[f] if f < len(fragments) and fragments[f] < size else -1
            following = kills[j + 1] if j + 1 < len(kills) else -1
            if start >= 0 and (kill < 0 or start < kill) and (frag < 0 or start < frag):
                begin, report = _report_begin(buf, start)
                if not report:
                    pos = start + 1  # "oom-killer:" in another program's text
                    continue
                nxt = starts[i + 1] if i + 1 < len(starts) and starts[i + 1] < size else -1
                limit = _report_begin(buf, nxt)[0] if nxt >= 0 else size
                if 0 <= kill < limit and kill - begin <= MAX_WINDOW_BYTES:
                    window = self._kill_window(buf, begin, kill, following, limit, size, final)
                elif nxt < 0 and not final and size - begin < MAX_WINDOW_BYTES:
                    window = None  # the report goes on in what comes next
                else:
                    # No kill marker: a wrap may have cut "out of / memory"; the
                    # "Killed process" line then ends the report.
                    bound = min(limit, begin + MAX_WINDOW_BYTES)
                    killed = buf.find(_KILL_FOLLOWERS[0], start, bound)
                    if killed >= 0:
                        window = self._kill_window(buf, begin, killed, following, limit, size, final)
                    else:
                        window = (begin, self._no_kill_end(buf, start, bound, size), ())
            elif frag >= 0 and (kill < 0 or frag < kill):
                begin = _counters_before(buf, _line_start(buf, frag), pos)
                limit = _report_begin(buf, start)[0] if start >= 0 else size
                bound = min(limit, begin + FRAGMENT_WINDOW_BYTES)
                if 0 <= kill < bound:
                    window = self._kill_window(buf, begin, kill, following, limit, size, final)
                elif bound >= size and not final:
                    window = None  # the fragment may go on
                else:
                    window = (begin, _cut(buf, begin, bound), ())
            elif kill >= 0:
                begin = self._headless_begin(buf, kill, pos)
                limit = _report_begin(buf, start)[0] if start >= 0 else size
                window = self._kill_window(buf, begin, kill, following, limit, size, final)
            else:
                break
            if window is not None:
                window = self._with_continuations(buf, window, size, final)
            if window is None:
                self._parse_span(buf, begin, begin, boots, k)
                return begin
            begin, pos, after = window
            k = self._parse_span(buf, begin, pos, boots, k)
            for begin, pos in after:
                k = self._parse_span(buf, begin, pos, boots, k)
            self._merge_copies()
            if progress is not None:
                progress(pos)
        if final or not size:
            self._parse_span(buf, size, size, boots, k)
            return size
        # Keep the last partial line: a marker may be cut in two.
        done = _line_start(buf, size - 1) if buf[size - 1:size] != b'\n' else size
        self._parse_span(buf, done, done, boots, k)
        return done

    @staticmethod
    def _boot_lines(buf, low, size):
        """Offsets of the boot lines (BOOT_MARKERS at a line's start) in buf[low:size]."""
        found = sorted(pos for marker in BOOT_MARKERS for pos in positions(buf, marker, low, size)
                       if pos == 0 or buf[pos - 1:pos] == b'\n')
        return [pos for pos in found if _BOOT_LINE.match(buf, pos, _line_end(buf, pos, size))]

    def _parse_span(self, buf, begin, end, boots, k):
        """Parse buf[begin:end]; each boot line before end (from boots[k]) is given
        to the parser in its place.  Returns the index of the first boot line not given."""
        while k < len(boots) and boots[k] < end:
            at = boots[k]
            if at >= begin:
                if at > begin:
                    self._parse_lines(buf[begin:at])
                begin = _line_end(buf, at, end)
            line_end = _line_end(buf, at)
            match = _BOOT_LINE.match(buf, at, line_end)
            self.parser.new_boot(match.group('id').decode('ascii') if match and match.group('id') else None)
            k += 1
        if end > begin:
            self._parse_lines(buf[begin:end])
        return k

    def scan_chunks(self, chunks, base=0):
        """Parse an iterable of byte chunks; a report cut between two is carried over.

        base is the input offset of the first chunk."""
        tail = b''
        skipping = False  # in a line longer than MAX_LINE_BYTES, up to its end
        for chunk in chunks:
            _check_deadline(self.deadline)
            if skipping:
                newline = chunk.find(b'\n')
                base += len(chunk) if newline < 0 else newline + 1
                if newline < 0:
                    continue
                chunk = chunk[newline + 1:]
                skipping = False
            buf = tail + chunk if tail else chunk
            done = self.scan_buffer(buf, final=False, base=base)
            tail = buf[done:]
            base += done
            # The carried tail is an open report (bounded by MAX_WINDOW_BYTES)
            # and a last partial line, which must not grow without end.
            last = tail.rfind(b'\n') + 1
            if len(tail) - last > MAX_LINE_BYTES:
                self.long_lines += 1
                base += len(tail) - last
                tail = tail[:last]
                skipping = True
        if tail:
            self.scan_buffer(tail, final=True, base=base)
        return self.parser

    def scan(self, stream, chunk_bytes=CHUNK_BYTES):
        return self.scan_chunks(iter(lambda: stream.read(chunk_bytes), b''))

    def scan_file(self, fd, sink=None, workers=None, min_bytes=None, max_bytes=None):
        """Parse a regular, uncompressed file (an open descriptor).

        A file of min_bytes (default PARALLEL_MIN_BYTES) or more is searched
        for markers by forked workers, each mapping its share of the file a
        piece at a time; then it is cut at report starts into groups that
        other workers parse.  Memory stays flat in the file's size: only the
        report windows are touched, and mapped pages are dropped as a worker
        goes on.  A worker that fails (killed, the file truncated under its
        mapping) has its part done here, by reading.  sink is the EventSink
        that self.parser's emit adds to, if any: each parsing worker then
        classifies and counts its events itself and sends back only the
        counts and the events kept; without it the events come back.  Smaller
        files are read here, in chunks.  Only the first max_bytes (None: all)
        are read; past self.deadline the workers are killed and ReadTimeout raised.
        """
        size = os.fstat(fd).st_size
        if max_bytes is not None:
            size = min(size, max_bytes)
        if self.parser.emit is None:
            sink = None  # the events stay in self.parser: they come back whole
        count = min(workers or cpu_count(), MAX_WORKERS, max(2, size // PARALLEL_SHARE_BYTES))
        if count < 2 or size < (PARALLEL_MIN_BYTES if min_bytes is None else min_bytes) or not size:
            self.scan_chunks(_pread_chunks(fd, 0, size))
            return self.parser
        fragment_end = min(size, self.fragment_bytes)
        found = in_workers([functools.partial(_share_markers_job, fd, size, low, high, fragment_end)
                            for low, high in shares(size, count, fragment_end)], self.deadline)
        if any(part is None for part in found):  # a worker failed, or the log is dense with markers
            self.scan_chunks(_pread_chunks(fd, 0, size))
            return self.parser
        offsets = []
        for kind in range(3):
            joined = array.array('q')
            joined.frombytes(b''.join(part[kind] for part in found))
            offsets.append(joined)
        starts, kills, fragments = offsets
        cuts = groups(fd, size, starts, kills, fragments, count)
        results = in_workers([functools.partial(self._scan_group, fd, size, low, high, starts, kills, fragments, sink)
                              for low, high in cuts], self.deadline)
        for (low, high), result in zip(cuts, results):
            if result is None:
                self._scan_part(fd, low, high)
                continue
            self.long_lines += result[2]
            if result[0] == 'sink':
                sink.merge(result[1])
            else:
                for raw in result[1]:
                    self._deliver(Event(raw))
        return self.parser

    def _deliver(self, event):
        if self.parser.emit is None:
            self.parser.events.append(event)
        else:
            self.parser.emit(event)

    def _scan_group(self, fd, size, low, high, starts, kills, fragments, sink):
        """In a worker: parse [low, high) of a mapped file."""
        if sink is not None:
            sink.reset()
        parser = EventParser(task_top=self.parser.task_top, emit=self.parser.emit if sink is not None else None,
                             window=self.parser.window)
        scanner = StreamScanner(parser, self.year, self.fragment_bytes)
        view = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        scanner.scan_buffer(view, True, starts, kills, fragments, low=low, high=high, progress=_Release(view))
        events = parser.close()
        if sink is not None:
            return ('sink', sink.export(), scanner.long_lines)
        return ('events', [dict(event) for event in events], scanner.long_lines)

    def _scan_part(self, fd, low, high):
        """Parse [low, high) of a file here, by reading (a worker failed)."""
        parser = EventParser(task_top=self.parser.task_top, emit=self.parser.emit, window=self.parser.window)
        scanner = StreamScanner(parser, self.year, self.fragment_bytes, self.deadline)
        try:
            scanner.scan_chunks(_pread_chunks(fd, low, high), base=low)
        finally:
            self.long_lines += scanner.long_lines
            for event in parser.close():
                self._deliver(event)


def _share_markers_job(fd, size, low, high, fragment_end):
    found = file_markers(fd, size, low, high, fragment_end)
    return None if found is None else tuple(offsets.tobytes() for offsets in found)


def parse_text(text, year=None):
    """Events from a str or bytes log (tests, small inputs)."""
    data = text.encode('utf-8') if not isinstance(text, bytes) else text
    scanner = StreamScanner(year=year)
    scanner.scan_buffer(data, final=True)
    return scanner.parser.close()
