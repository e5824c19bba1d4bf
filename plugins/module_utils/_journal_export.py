# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""journald exports read by field, turned back into kernel log lines.

``detect`` names the journalctl output format of a text from its first
bytes; ``kernel_lines`` turns a stream of such a text (byte chunks) into
chunks of short-iso kernel lines (``2026-11-23T01:45:13.694039+00:00 host
kernel: [   81.402374] message``) that oom_scan reads as it reads any log,
so events are the same as from dmesg.  Only kernel messages are kept
(_TRANSPORT=kernel; SYSLOG_IDENTIFIER=kernel where an old export has no
_TRANSPORT).  No record is kept whole past oom_scan.MAX_LINE_BYTES: a longer
one is skipped and counted in ``Reader.long_lines``.
Standard library only.
"""


import json
import re
import struct
import time

from ansible_collections.oomguard.linux.plugins.module_utils import oom_report, oom_scan

FORMATS = ('json', 'json-seq', 'json-pretty', 'verbose', 'export', 'short-monotonic', 'short-full', 'cat')
# How much of the head detect() looks at, and how many lines of it.
HEAD_BYTES = 16 << 10
_HEAD_LINES = 16
# journalctl's "-- Journal begins at ... --", "-- Boot <id> --", "-- No entries --".
_MARKER = b'-- '
_BOOT_ID = re.compile(rb'[0-9a-f]{32}\Z')
_JOURNAL_KEY = re.compile(rb'"(?:__CURSOR|__REALTIME_TIMESTAMP|_TRANSPORT|_BOOT_ID|SYSLOG_IDENTIFIER|MESSAGE)" ?:')
_FIELD_NAME = re.compile(rb'^[A-Z_][A-Z0-9_]*$')
_EXPORT_TEXT = re.compile(rb'^[A-Z_][A-Z0-9_]*=')
# verbose header: "Mon 2026-11-23 01:45:13.694039 UTC [s=...;i=...;b=...;m=...;t=...;x=...]"
_VERBOSE_HEAD = re.compile(rb'^.*\[s=[0-9a-f]{32};i=[0-9a-f]+;b=(?P<boot>[0-9a-f]{32});m=[0-9a-f]+;'
                           rb't=(?P<t>[0-9a-f]+);x=[0-9a-f]+\]$')
_VERBOSE_FIELD = re.compile(rb'^    (?P<key>[A-Z_][A-Z0-9_]*)=(?P<value>.*)$')
_MONOTONIC = re.compile(rb'^\[\s*(?P<up>\d+\.\d+)\] (?P<host>\S+) (?P<tag>[^:\s\[]+)(?:\[\d+\])?: ?(?P<msg>.*)$')
# "Mon 2026-11-23 01:45:13 UTC host tag[pid]: message" (fractions with --output short-full since v248? kept optional).
_FULL = re.compile(rb'^[A-Z][a-z]{2} (?P<date>\d{4}-\d\d-\d\d) (?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?) (?P<zone>\S+) '
                   rb'(?P<host>\S+) (?P<tag>[^:\s\[]+)(?:\[\d+\])?: ?(?P<msg>.*)$')
_UTC_ZONES = (b'UTC', b'GMT', b'Z', b'+0000', b'+00:00')


def _head_lines(head):
    lines = [line.rstrip(b'\r') for line in head.split(b'\n')[:_HEAD_LINES + 1]]
    if len(head) >= HEAD_BYTES or head.count(b'\n') > _HEAD_LINES:
        lines = lines[:-1]  # the last may be cut
    return [line for line in lines if not line.startswith(_MARKER)]


def detect(head):
    """The journalctl output format of a text starting with head (bytes), or
    None for a log oom_scan reads as it is (dmesg, kmsg, syslog, short-iso...)."""
    # Other programs' JSON lines (a container runtime's, a log shipper's) are
    # logs to read as they are: a journald entry names its own fields.
    journald_json = _JOURNAL_KEY.search(head) is not None
    if head.startswith(b'\x1e'):
        return 'json-seq' if journald_json else None
    lines = _head_lines(head)
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return None
    first = lines[0]
    if first.startswith(b'{') and journald_json:
        return 'json' if first.rstrip().endswith(b'}') else 'json-pretty'
    if _VERBOSE_HEAD.match(first):
        return 'verbose'
    if _EXPORT_TEXT.match(first) or (_FIELD_NAME.match(first) and len(lines) > 1):
        # a KEY=value line alone could be anything; the next one says
        second = lines[1] if len(lines) > 1 else b''
        if first.startswith(b'__CURSOR=') or _EXPORT_TEXT.match(second) or _FIELD_NAME.match(second):
            return 'export'
    if _FULL.match(first):
        return 'short-full'
    shown = [_MONOTONIC.match(line) for line in lines if line.strip() and not line[:1].isspace()]
    if shown and all(shown) and len(set(m.group('host') for m in shown)) == 1 and \
            any(m.group('tag') == b'kernel' for m in shown):
        return 'short-monotonic'
    text = first.decode('utf-8', 'replace')
    line = oom_report.split_prefix(text)
    if line is not None and line.time is None and line.host is None and not oom_report.DMESG.match(text):
        return 'cat'
    return None


def _iso(realtime_us):
    seconds, micro = divmod(realtime_us, 1000000)
    return '%s.%06d+00:00' % (time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds)), micro)


def _clean(value):
    """A host name fit for a log line (no blanks, bounded)."""
    text = value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(value)
    text = re.sub(r'\s+', '_', text.strip())[:255]
    return text or '-'


class Reader:
    """Turns one journald export into kernel lines (see kernel_lines)."""

    def __init__(self, fmt):
        if fmt not in FORMATS:
            raise ValueError('format = %s; allowed: %s' % (fmt, ', '.join(FORMATS)))
        self.fmt = fmt
        self.long_lines = 0  # records or lines longer than MAX_LINE_BYTES, skipped
        self.entries = 0  # entries read
        self.kernel_entries = 0  # of them, the kernel's
        self.boots = set()  # _BOOT_ID of the kernel entries
        self.boot = None  # that of the last kernel entry

    # -- one entry -> lines --------------------------------------------------

    def _entry(self, fields):
        """fields: dict of bytes -> bytes (or None).  The entry's kernel lines (bytes)."""
        self.entries += 1
        transport = fields.get(b'_TRANSPORT')
        if transport is not None:
            if transport != b'kernel':
                return b''
        elif fields.get(b'SYSLOG_IDENTIFIER') != b'kernel':
            return b''
        message = fields.get(b'MESSAGE')
        if message is None:
            return b''
        self.kernel_entries += 1
        boot = fields.get(b'_BOOT_ID')
        mark = b''
        if boot:
            self.boots.add(boot[:32].decode('ascii', 'replace'))
            if _BOOT_ID.match(boot) and boot != self.boot:
                # journalctl's own line between boots: the scanner ends open reports there.
                mark = b'-- Boot ' + boot + b' --\n'
                self.boot = boot
        realtime = _int(fields.get(b'__REALTIME_TIMESTAMP'))
        monotonic = _int(fields.get(b'_SOURCE_MONOTONIC_TIMESTAMP'))
        if realtime is not None:
            prefix = '%s %s kernel: ' % (_iso(realtime), _clean(fields.get(b'_HOSTNAME') or b'-'))
        else:
            prefix = ''
        if monotonic is not None:
            prefix += '[%5d.%06d] ' % divmod(monotonic, 1000000)
        prefix = prefix.encode('ascii')
        # journald keeps a multi-line kernel record as one MESSAGE; dmesg
        # prints each of its lines with the record's stamp.
        return mark + b''.join(prefix + line.rstrip(b'\r') + b'\n' for line in message.split(b'\n') if line.strip())

    # -- formats -------------------------------------------------------------

    def _lines(self, chunks):
        """Lines (without their newline) of chunks; a line longer than
        MAX_LINE_BYTES is skipped (counted), never kept whole."""
        tail = b''
        skipping = False
        for chunk in chunks:
            if skipping:
                newline = chunk.find(b'\n')
                if newline < 0:
                    continue
                chunk = chunk[newline + 1:]
                skipping = False
            buf = tail + chunk if tail else chunk
            lines = buf.split(b'\n')
            tail = lines.pop()
            for line in lines:
                if len(line) > oom_scan.MAX_LINE_BYTES:
                    self.long_lines += 1
                    continue
                yield line
            if len(tail) > oom_scan.MAX_LINE_BYTES:
                self.long_lines += 1
                tail = b''
                skipping = True
        if tail and len(tail) <= oom_scan.MAX_LINE_BYTES:
            yield tail

    def _json_entry(self, text):
        try:
            obj = json.loads(text)
        except ValueError:
            return b''
        if not isinstance(obj, dict):
            return b''
        return self._entry(dict((key.encode('utf-8', 'replace'), _json_value(value)) for key, value in obj.items()))

    def _json(self, lines):
        for line in lines:
            line = line.lstrip(b'\x1e')
            # Cheap test first: every kernel entry says "kernel" somewhere.
            if b'kernel' in line:
                yield self._json_entry(line)
            elif line.strip():
                self.entries += 1

    def _json_pretty(self, lines):
        parts, size = [], 0
        for line in lines:
            if line.startswith(b'{'):
                parts, size = [], 0
            size += len(line) + 1
            if size > oom_scan.MAX_LINE_BYTES:
                if parts or line.startswith(b'{'):
                    self.long_lines += 1
                parts, size = [], oom_scan.MAX_LINE_BYTES + 1  # skip to the next entry
                continue
            parts.append(line)
            if line.rstrip() == b'}':
                text = b'\n'.join(parts)
                parts, size = [], 0
                if b'kernel' in text:
                    yield self._json_entry(text)
                else:
                    self.entries += 1

    def _verbose(self, lines):
        fields, key, size = None, None, 0
        for line in lines:
            head = _VERBOSE_HEAD.match(line)
            if head:
                if fields is not None:
                    yield self._entry(fields)
                fields, key, size = {b'__REALTIME_TIMESTAMP': str(int(head.group('t'), 16)).encode('ascii'),
                                     b'_BOOT_ID': head.group('boot')}, None, 0
                continue
            if fields is None:
                continue
            size += len(line)
            if size > oom_scan.MAX_LINE_BYTES:
                if key is not None:
                    self.long_lines += 1
                fields, key = None, None
                continue
            field = _VERBOSE_FIELD.match(line)
            if field:
                key = field.group('key')
                value = field.group('value')
                # "[2.1K blob data]": not printable, not printed
                fields[key] = None if value.endswith(b' blob data]') and value.startswith(b'[') else value
            elif key is not None and fields.get(key) is not None:
                # a multi-line value goes on indented by len("    KEY=")
                indent = 5 + len(key)
                fields[key] += b'\n' + (line[indent:] if line[:indent].strip() == b'' else line.lstrip())
        if fields is not None:
            yield self._entry(fields)

    def _export(self, chunks):
        """The export format: KEY=value lines, binary fields as KEY, le64
        size, data; an empty line ends an entry."""
        buf = b''
        pos = 0
        fields = {}
        skip_bytes = 0  # of a binary field too large to keep
        skip_line = False  # in a text field line too long to keep, up to its end
        for chunk in chunks:
            if skip_line:
                newline = chunk.find(b'\n')
                if newline < 0:
                    continue
                chunk = chunk[newline + 1:]
                skip_line = False
            if skip_bytes:
                if len(chunk) <= skip_bytes:
                    skip_bytes -= len(chunk)
                    continue
                chunk = chunk[skip_bytes:]
                skip_bytes = 0
            buf = buf[pos:] + chunk
            pos = 0
            out = []
            while True:
                newline = buf.find(b'\n', pos)
                if newline < 0:
                    if len(buf) - pos > oom_scan.MAX_LINE_BYTES:
                        # a field line without end: skip to the next entry
                        self.long_lines += 1
                        pos, fields, skip_line = len(buf), {}, True
                    break
                line = buf[pos:newline]
                if not line:
                    if fields:
                        out.append(self._entry(fields))
                    fields = {}
                    pos = newline + 1
                    continue
                equal = line.find(b'=')
                if equal >= 0:
                    if len(line) > oom_scan.MAX_LINE_BYTES:
                        self.long_lines += 1
                    else:
                        fields[line[:equal]] = line[equal + 1:]
                    pos = newline + 1
                    continue
                # binary: name, newline, le64 size, data, newline
                if len(buf) - newline - 1 < 8:
                    break  # the size is in the next chunk
                size = struct.unpack('<Q', buf[newline + 1:newline + 9])[0]
                start = newline + 9
                if size > oom_scan.MAX_LINE_BYTES:
                    if line == b'MESSAGE':
                        self.long_lines += 1
                    fields[line] = None
                    end = start + size + 1
                    if end <= len(buf):
                        pos = end
                    else:
                        skip_bytes = end - len(buf)
                        pos = len(buf)
                        break
                    continue
                if start + size + 1 > len(buf):
                    break  # the data goes on in the next chunk
                fields[line] = buf[start:start + size]
                pos = start + size + 1
            if out:
                yield b''.join(out)
        if fields:
            yield self._entry(fields)

    def _short(self, lines):
        pattern = _MONOTONIC if self.fmt == 'short-monotonic' else _FULL
        prefix = None  # of the last kernel line, for its continuation lines
        width = 0
        for line in lines:
            if line[:1].isspace() and prefix is not None and line.strip():
                yield prefix + line[:width].lstrip() + line[width:].strip() + b'\n'
                continue
            match = pattern.match(line)
            if not match or match.group('tag') != b'kernel':
                prefix = None
                continue
            self.kernel_entries += 1
            if self.fmt == 'short-monotonic':
                prefix = b'[%s] ' % match.group('up').rjust(12)
            else:
                zone = b'+00:00' if match.group('zone') in _UTC_ZONES else b''
                prefix = b'%sT%s%s %s kernel: ' % (match.group('date'), match.group('clock'), zone, match.group('host'))
            width = match.start('msg')
            yield prefix + match.group('msg') + b'\n'

    def kernel_lines(self, chunks):
        """chunks (bytes) of the export -> chunks of kernel log lines."""
        if self.fmt == 'export':
            produced = self._export(chunks)
        elif self.fmt == 'cat':
            produced = chunks  # no prefix: the lines are the messages
        else:
            lines = self._lines(chunks)
            if self.fmt in ('json', 'json-seq'):
                produced = self._json(lines)
            elif self.fmt == 'json-pretty':
                produced = self._json_pretty(lines)
            elif self.fmt == 'verbose':
                produced = self._verbose(lines)
            else:
                produced = self._short(lines)
        return oom_scan.batched(produced)


def _int(value):
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def _json_value(value):
    """A journalctl json value -> bytes (or None): a string, a byte array
    (not UTF-8 or not printable), null (too large), or a list of these (a
    field with several values: the first)."""
    if isinstance(value, str):
        return value.encode('utf-8', 'replace')
    if isinstance(value, list) and value:
        if all(isinstance(item, int) and 0 <= item < 256 for item in value):
            return bytes(value)
        return _json_value(value[0])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value).encode('ascii')
    return None
