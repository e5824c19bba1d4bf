# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel OOM reports: from log text to events, causes and kill loops.

Three layers, each a plain function or small class:

* ``split_prefix(line)`` strips what carried the kernel's message (dmesg
  ``[ 12.345]``, ``dmesg -T``, syslog RFC 3164/5424, journald short,
  short-precise and short-iso, ``/dev/kmsg`` records) and returns the host,
  the time as printed, an absolute time when the prefix has one, the
  seconds since boot when it has those, and the message.
* ``EventParser`` feeds messages, per host, into OOM events: a report
  starts at "invoked oom-killer" (or, rate-limited, at a bare kill line)
  and takes the lines that follow until its kill.  Partial and interleaved
  reports give partial events; nothing raises.
* ``classify(event)`` names the cause with its evidence and advice.

``StreamScanner`` finds the windows around two markers ("invoked
oom-killer", "ut of memory") and parses only those: streams in chunks
(``scan``, ``scan_chunks``), plain files through forked workers that search
and parse their parts of the mapped file (``scan_file``).  Memory stays flat
in the input's size and noise costs little more than two substring searches.
Standard library only (ctypes for the C library's memmem where there is one).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import array
import bisect
import calendar
import functools
import heapq
import marshal
import mmap
import os
import re
import signal
import time

# -- line prefixes ------------------------------------------------------------

_MONTHS = dict((name, number) for number, name in enumerate(
    ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'), 1))

# /dev/kmsg: "6,1234,5678901,-;message" (continuation lines start with a space).
_KMSG = re.compile(r'^(\d+),(\d+),(\d+),[^;]*;(.*)$')
_KMSG_DICT = re.compile(r'^ [A-Z][A-Z0-9_]*=\S*$')
# Syslog-style carriers, tried in order; each names the same groups: the
# program (tag), host, the time (iso, or month/day/clock/fraction) and msg.
_SYSLOG_PREFIXES = (
    # RFC 5424: "<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG".
    re.compile(r'^<\d+>1 (?P<iso>\S+) (?P<host>\S+) (?P<tag>\S+) \S+ \S+ (?:-|\[.*?\]) ?(?P<msg>.*)$'),
    # RFC 3339 / ISO (journalctl -o short-iso, rsyslog high-precision files).
    re.compile(r'^(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?) (?P<host>\S+) '
               r'(?P<tag>[^:\s\[]+)(?:\[\d+\])?: (?P<msg>.*)$'),
    # RFC 3164 / journald short and short-precise: the host may be missing (seed 003).
    re.compile(r'^(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d)(?P<fraction>\.\d+)?'
               r'(?: (?P<host>\S+))? (?P<tag>[^:\s\[]+)(?:\[\d+\])?: (?P<msg>.*)$'),
    # metalog: "Sep 23 02:04:16 [kernel] message" (seed 004).
    re.compile(r'^(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d) \[(?P<tag>\S+)\] (?P<msg>.*)$'),
)
# dmesg: "[ 123.456789] msg", with an optional "<4>" level (dmesg -r, consoles).
_DMESG = re.compile(r'^(?:<\d+>)?\[\s*(\d+\.\d+)\](?:\[\s*[TC]\d+\])? ?(.*)$')
_DMESG_ANYWHERE = re.compile(r'(?:<\d+>)?\[\s*\d+\.\d{3,}\] ')
# dmesg -T: "[Sat Sep 11 09:46:24 2021] msg", also localised ("[六 9月 11 12:24:42 2021]").
_DMESG_T = re.compile(r'^\[(\S+) +(\S+) +(\d{1,2}) (\d\d:\d\d:\d\d) (\d{4})\] ?(.*)$')
# The same, for every line of a text at once (see StreamScanner._parse_carried).
_KMSG_LINES = re.compile(_KMSG.pattern, re.M)
_SYSLOG_LINES = tuple(re.compile(pattern.pattern, re.M) for pattern in _SYSLOG_PREFIXES)
# Every line of a raw dmesg text at once (the _DMESG lines that start with "[").
_DMESG_LINES = re.compile(r'^\[\s*(\d+\.\d+)\](?:\[\s*[TC]\d+\])? ?(.*)$', re.M)
# A copy-pasted dmesg with editor line numbers in front ("565 [ ... ]", seed 000).
_LINE_NUMBER = re.compile(r'^\d+ (?=\[)')


def _month(text):
    if text in _MONTHS:
        return _MONTHS[text]
    digits = re.match(r'(\d{1,2})', text)  # "9月" and the like
    return int(digits.group(1)) if digits and 1 <= int(digits.group(1)) <= 12 else None


def _iso(year, month, day, clock, fraction=''):
    return '%04d-%02d-%02dT%s%s' % (year, month, day, clock, fraction or '')


class Line:
    __slots__ = ('host', 'time', 'timestamp', 'uptime_s', 'message')

    def __init__(self, host, time_text, timestamp, uptime_s, message):
        self.host = host
        self.time = time_text
        self.timestamp = timestamp
        self.uptime_s = uptime_s
        self.message = message


def split_prefix(line, year=None):
    """Strip the transport prefix of one log line.

    Returns a Line, or None for a line that is not the kernel's (another
    program's syslog line, a kmsg continuation).  `year` completes syslog
    and journald dates, which print none.
    """
    line = line.rstrip('\r\n')
    host = None
    time_text = None
    timestamp = None
    uptime_s = None
    # Each pattern needs its own first character; test that before the pattern.
    first = line[:1]
    digit = first.isdigit()
    if digit:
        match = _KMSG.match(line)
        if match:
            uptime_s = int(match.group(3)) / 1e6
            return Line(None, '%.6f' % uptime_s, None, uptime_s, match.group(4))
    elif first == ' ' and _KMSG_DICT.match(line):
        return None  # kmsg dictionary continuation (" SUBSYSTEM=...")
    if first == '<':
        carriers = _SYSLOG_PREFIXES[:1]
    elif digit:
        carriers = _SYSLOG_PREFIXES[1:2]
    elif 'A' <= first <= 'Z':
        carriers = _SYSLOG_PREFIXES[2:]
    else:
        carriers = ()
    for pattern in carriers:
        match = pattern.match(line)
        if match:
            fields = match.groupdict()
            if fields['tag'] != 'kernel':
                return None
            host, line = fields.get('host'), fields['msg']
            if fields.get('iso'):
                time_text = timestamp = fields['iso']
            else:
                time_text = '%s %s %s%s' % (fields['month'], fields['day'], fields['clock'], fields.get('fraction') or '')
                month = _MONTHS.get(fields['month'])
                if month and year:
                    timestamp = _iso(year, month, int(fields['day']), fields['clock'], fields.get('fraction'))
            break
    if time_text is None and line.startswith('kernel: '):
        line = line[8:]  # a journal or syslog line copied without its time and host
    first = line[:1]
    if first.isdigit():
        line = _LINE_NUMBER.sub('', line, count=1)
        first = line[:1]
    if time_text is None and first != '[' and '[' in line:
        # An unknown carrier (a hypervisor's guest log, a mail archive) around a
        # dmesg line: take what follows the first dmesg time stamp.
        inner = _DMESG_ANYWHERE.search(line)
        if inner:
            line = line[inner.start():]
            first = line[:1]
    if first in ('[', '<'):
        match = _DMESG.match(line)
        if match:
            uptime_s = float(match.group(1))
            if time_text is None:
                time_text = match.group(1)
            line = match.group(2)
        elif first == '[':
            match = _DMESG_T.match(line)
            if match:
                month = _month(match.group(2))
                time_text = '%s %s %s %s %s' % match.group(1, 2, 3, 4, 5)
                if month:
                    timestamp = _iso(int(match.group(5)), month, int(match.group(3)), match.group(4))
                line = match.group(6)
    return Line(host, time_text, timestamp, uptime_s, line)


def unescape_rsyslog(message):
    """rsyslog writes control characters as #NNN (octal): #012 is a newline."""
    if '#0' not in message:
        return [message]
    text = re.sub(r'#(0[0-3][0-7])', lambda m: chr(int(m.group(1), 8)), message)
    return [part for part in text.split('\n') if part.strip()]


# A log whose line breaks were lost (pasted into one line, seed 001): the
# messages of an OOM report still start with these, so split before them.
_FLAT_SPLIT = re.compile(
    r'(?<!memory:) (?=Killed process )|'
    r' (?=\S+ invoked oom-killer:|Out of memory: Kill|Memory cgroup out of memory|'
    r'oom-kill:constraint=|oom_reaper: |Task in /|memory: usage |Pid: \d+, comm:|CPU: \d+ (?:UID: \d+ )?PID:|'
    r'\S+ cpuset=\S+ mems_allowed=|Mem-Info:|Kernel panic - not syncing)')


# A syslog record glued to the end of the previous one (a newline lost in a
# copy): "... or sacrifice childJun  4 07:41:59 host kernel: [..] Killed process".
_GLUED = re.compile(r'(?<=\S)(?=[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \S+ kernel: )')


def split_flattened(message):
    if len(message) < 160:
        return [message]  # kernel lines are shorter than a flattened report
    if ' kernel: ' in message and _GLUED.search(message):
        pieces = _GLUED.split(message)
        messages = split_flattened(pieces[0])
        for piece in pieces[1:]:
            line = split_prefix(piece)
            if line is not None:
                messages.extend(split_flattened(line.message))
        return messages
    if message.count('oom') + message.count('Killed process') < 2:
        return [message]
    return _FLAT_SPLIT.split(message)


# -- report lines -------------------------------------------------------------

# "<comm> invoked oom-killer: gfp_mask=0x...(FLAGS), nodemask=..., order=N, oom_score_adj=N";
# the fields come in other orders on some kernels (4.4-next), so each is found on its own.
_INVOKED = re.compile(r'^(?P<comm>.+?) invoked oom(?:-killer)?: (?P<fields>.*)$')
_INVOKED_GFP = re.compile(r'gfp_mask=(?P<gfp>0x[0-9a-fA-F*]+)(?:\((?P<flags>[^)]*)\))?')
_INVOKED_FIELD = re.compile(r'\b(?P<key>nodemask|order|oom_adj|oom_score_adj)=(?P<value>[^,\s]*)')
_CPUSET = re.compile(r'^(?P<comm>.+?) cpuset=(?P<cpuset>\S+) mems_allowed=(?P<mems>\S+)\s*$')
_CPU_LINE = re.compile(r'^(?:CPU: \d+ (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>.+?)|Pid: (?P<pid_old>\d+), comm: (?P<comm_old>.+?)) '
                       r'(?:Kdump: \S+ )?(?:Not tainted|Tainted: [A-Z -]*?) ?(?P<kernel>\d+\.\d+\S*)')
# "Task in /a killed as a result of limit of /a"; some 3.x kernels print it without "Task in".
_TASK_IN = re.compile(r'^(?:Task in )?(?P<task>/\S*) killed as a result of limit of (?P<limit>\S+)')
# Lines that can only belong to an OOM report: one without its "invoked" line
# (cut, rate-limited) starts a partial event at them.
_STARTERS = re.compile(r'^(?:Mem-Info:|Memory cgroup stats for |Tasks state \(memory values in pages\))')
_MEMCG_USAGE = re.compile(r'^(?P<kind>memory|memory\+swap|swap|kmem): usage (?P<usage>\d+)kB, limit (?P<limit>\d+)kB, failcnt (?P<failcnt>\d+)')
_OOM_KILL = re.compile(
    r'^oom-kill:constraint=(?P<constraint>\w+),nodemask=(?P<nodemask>.*?)(?:,cpuset=(?P<cpuset>.*?))?'
    r'(?:,mems_allowed=(?P<mems>.*?))?,(?:oom_memcg=(?P<oom_memcg>.*?),|global_oom,)?(?:task_memcg=(?P<task_memcg>.*?),)?'
    r'task=(?P<task>.*),pid=(?P<pid>\d+),uid=(?P<uid>\d+)')
_SELECT = re.compile(r'^(?P<memcg>Memory cgroup out of memory|Out of memory[^:]*): Kill process (?P<pid>\d+) '
                     r'\((?P<comm>.*?)\) score (?P<score>\d+) or sacrifice child')
_KILLED = re.compile(
    r'^(?:(?P<origin>Memory cgroup out of memory|Out of memory[^:]*): )?Killed process (?P<pid>\d+),? '
    r'(?:UID (?P<uid_old>\d+), )?\((?P<comm>.*?)\)(?:, UID (?P<uid_mid>\d+))?,? total-vm:(?P<total_vm>\d+)kB, anon-rss:(?P<anon>\d+)kB, '
    r'file-rss:(?P<file>\d+)kB(?:, shmem-rss:(?P<shmem>\d+)kB)?(?:,? UID:(?P<uid>\d+))?'
    r'(?: pgtables:(?P<pgtables>\d+)kB)?(?: oom_score_adj:(?P<adj>-?\d+))?')
_REAPED = re.compile(r'^oom_reaper: reaped process (?P<pid>\d+) \((?P<comm>.*?)\), now anon-rss:(?P<anon>\d+)kB, '
                     r'file-rss:(?P<file>\d+)kB, shmem-rss:(?P<shmem>\d+)kB')
_UNREAPED = re.compile(r'^oom_reaper: unable to reap pid:(?P<pid>\d+) \((?P<comm>.*?)\)')
_ZONE = re.compile(r'^(?:Node (?P<node>\d+) )?(?P<zone>DMA32|DMA|Normal|HighMem|Movable|Device) free:(?P<free>\d+)kB '
                   r'(?:boost:\d+kB )?min:(?P<min>\d+)kB low:(?P<low>\d+)kB high:(?P<high>\d+)kB')
_BUDDY = re.compile(r'^(?:Node (?P<node>\d+) )?(?P<zone>DMA32|DMA|Normal|HighMem|Movable|Device): (?P<blocks>\d+\s*\*.*)$')
_NODE_PREFIX = re.compile(r'^Node (\d+) ')
_BUDDY_BLOCK = re.compile(r'(\d+)\s*\*\s*(\d+)kB')
_PANIC = re.compile(r'^Kernel panic - not syncing: (?P<reason>.*)')
_HIGHMEM_PAGES = re.compile(r'^(?P<pages>\d+) pages HighMem')
_TASK_HEADER = re.compile(r'^\[\s*pid\s*\]\s+(?P<columns>uid\s.*)$')
_TASK_ROW = re.compile(r'^\[\s*(?P<pid>\d+)\]\s+(?P<rest>-?\d.*)$')
_NO_KILLABLE = re.compile(r'^Out of memory and no killable processes')

# How the messages the patterns above anchor at the start begin, by first
# character (task tables and "N pages HighMem" are tested apart).  A message
# starting otherwise can only match the patterns that find their text
# anywhere (_INVOKED, _KILLED, _CPUSET).  Most lines of a report (stack,
# meminfo, per-cpu and memcg counters) match none.
_ANCHORED_STARTS = {
    'M': ('Mem-Info:', 'Memory cgroup', 'Movable'), 'O': ('Out of memory',), 'o': ('oom_reaper: ', 'oom-kill:'),
    'K': ('Kernel panic',), 'T': ('Task in ', 'Tasks state'), '/': ('/',), 'm': ('memory',), 's': ('swap',),
    'k': ('kmem',), 'N': ('Node ', 'Normal'), 'C': ('CPU: ',), 'P': ('Pid: ',), 'D': ('DMA', 'Device'), 'H': ('HighMem',),
}

# How many task-table rows an event keeps (the biggest by rss).
TASK_TOP = 10
# Assumed page size for task tables (printed in pages): 4 KiB on x86 and most arm64.
PAGE_KB = 4


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _origin(prefix):
    """'memcg' for "Memory cgroup out of memory", 'global' for "Out of memory"."""
    return 'memcg' if prefix.startswith('Memory cgroup') else 'global'


def _yes_no(message, key):
    at = message.find(key)
    if at < 0:
        return None
    return message[at + len(key):at + len(key) + 3] == 'yes'


def _matches_nothing(message):
    """True for a (stripped, non-empty) message that no pattern of EventParser can match."""
    first = message[0]
    if first == '[':  # _TASK_HEADER, _TASK_ROW: "[" then spaces, digits or "pid"
        second = message[1:2]
        if second == 'p' or second.isdigit() or second.isspace():
            return False
    elif first.isdigit():  # _HIGHMEM_PAGES
        if ' pages HighMem' in message:
            return False
    elif message.startswith(_ANCHORED_STARTS.get(first, ())):
        return False
    return ' invoked oom' not in message and 'Killed process ' not in message and ' mems_allowed=' not in message


class Event(dict):
    """One OOM report; a dict so that it serialises as it is."""


def _new_event(line):
    event = Event()
    event.update({
        'host': line.host, 'time': line.time, 'timestamp': line.timestamp, 'uptime_s': line.uptime_s,
        'invoker': None, 'gfp_mask': None, 'gfp_flags': [], 'order': None, 'invoker_oom_score_adj': None,
        'nodemask': None, 'cpuset': None, 'mems_allowed': None, 'constraint': None,
        'limit_memcg': None, 'task_memcg': None, 'kernel': None,
        'memcg': None, 'zones': [], 'buddy': [], 'highmem_pages': None,
        'tasks': [], 'victim': None, 'selected': None, 'reaper': None, 'panic': None,
        'complete': False, 'lines': 0,
    })
    event['_tasks_heap'] = []
    event['_task_columns'] = None
    return event


class EventParser:
    """Turns (Line) messages into events, one open report per host."""

    def __init__(self, task_top=TASK_TOP, emit=None, window=64):
        # Without emit, every event stays in self.events.  With it, only the
        # last `window` stay (oom_reaper and panic lines look back at them);
        # older ones go to emit(event), so memory does not grow with the log.
        self.events = []
        self.open = {}
        self.task_top = task_top
        self.emit = emit
        self.window = window

    def _retire(self):
        while self.emit is not None and len(self.events) > self.window:
            open_events = list(self.open.values())
            for index, event in enumerate(self.events):
                if not any(event is other for other in open_events):
                    self.emit(self.events.pop(index))
                    break
            else:
                return

    def _finish(self, host):
        event = self.open.pop(host, None)
        if event is not None:
            self._seal(event)

    def _seal(self, event):
        heap = event.pop('_tasks_heap', [])
        event.pop('_task_columns', None)
        event['tasks'] = [row for dummy, dummy2, row in sorted(heap, key=lambda item: (-item[0], item[1]))]

    def _current(self, line, start=False):
        event = self.open.get(line.host)
        if start or event is None:
            self._finish(line.host)
            event = _new_event(line)
            self.events.append(event)
            self.open[line.host] = event
            self._retire()
        return event

    def feed(self, line):
        """One kernel message (already split from its prefix)."""
        message = line.message.strip()
        if not message:
            return
        if _matches_nothing(message):
            event = self.open.get(line.host)
            if event is not None:
                event['lines'] += 1
            return
        # Every pattern below needs a plain substring; test that first.
        match = _INVOKED.match(message) if ' invoked oom' in message else None
        if match:
            event = self._current(line, start=True)
            event['invoker'] = {'comm': match.group('comm'), 'pid': None}
            fields = match.group('fields')
            gfp = _INVOKED_GFP.search(fields)
            if gfp:
                event['gfp_mask'] = gfp.group('gfp')
                event['gfp_flags'] = [f for f in (gfp.group('flags') or '').split('|') if f]
            values = dict((m.group('key'), m.group('value')) for m in _INVOKED_FIELD.finditer(fields))
            event['order'] = _int_or_none(values.get('order'))
            event['invoker_oom_score_adj'] = _int_or_none(values.get('oom_score_adj'))
            if 'oom_adj' in values:
                event['invoker_oom_adj'] = _int_or_none(values['oom_adj'])
            if 'nodemask' in values:
                event['nodemask'] = values['nodemask']
            event['lines'] += 1
            return
        event = self.open.get(line.host)
        if not self._kill_lines(line, message, event):
            self._context_lines(line, message, event)

    def _open_selection(self, pid):
        for candidate in self.open.values():
            if (candidate.get('selected') or {}).get('pid') == pid and candidate['victim'] is None:
                return candidate
        return None

    # Lines that close (or, rate-limited, stand in for) a report.
    def _kill_lines(self, line, message, event):
        if 'process' not in message and not message.startswith(('oom_reaper: ', 'Kernel panic')):
            return False
        match = _SELECT.match(message) if message.startswith(('Out of memory', 'Memory cgroup out')) else None
        if match:
            if event is None or event['victim'] is not None or event['selected'] is not None:
                event = self._current(line, start=True)
            event['selected'] = {'pid': int(match.group('pid')), 'comm': match.group('comm'),
                                 'score': int(match.group('score'))}
            event['kill_origin'] = _origin(match.group('memcg'))
            if event['kill_origin'] == 'memcg' and event['constraint'] is None:
                event['constraint'] = 'CONSTRAINT_MEMCG'
            event['lines'] += 1
            return True
        match = _KILLED.match(message) if 'Killed process ' in message else None
        if match:
            if event is None:
                # A host name on some lines only (seed 003): the selection
                # line of the same pid, open under another host, is this report.
                event = self._open_selection(int(match.group('pid')))
            if event is None or event['victim'] is not None:
                event = self._current(line, start=True)
            uid = match.group('uid') or match.group('uid_old') or match.group('uid_mid')
            event['victim'] = {
                'pid': int(match.group('pid')), 'comm': match.group('comm'), 'uid': _int_or_none(uid),
                'total_vm_kb': int(match.group('total_vm')), 'anon_rss_kb': int(match.group('anon')),
                'file_rss_kb': int(match.group('file')), 'shmem_rss_kb': _int_or_none(match.group('shmem')),
                'pgtables_kb': _int_or_none(match.group('pgtables')), 'oom_score_adj': _int_or_none(match.group('adj')),
            }
            if match.group('origin'):
                event['kill_origin'] = _origin(match.group('origin'))
            if event.get('kill_origin') == 'memcg' and event['constraint'] is None:
                event['constraint'] = 'CONSTRAINT_MEMCG'
            if event['time'] is None or event['invoker'] is None:
                event['time'], event['timestamp'], event['uptime_s'] = line.time, line.timestamp, line.uptime_s
            event['complete'] = event['invoker'] is not None
            event['lines'] += 1
            # The report is over; oom_reaper and panic lines find it by pid / host.
            for host, candidate in list(self.open.items()):
                if candidate is event:
                    self.open.pop(host)
            self._seal(event)
            return True
        match = (_REAPED.match(message) or _UNREAPED.match(message)) if message.startswith('oom_reaper: ') else None
        if match:
            pid = int(match.group('pid'))
            for candidate in reversed(self.events[-50:]):
                victim = candidate.get('victim')
                if candidate['host'] == line.host and victim and victim['pid'] == pid:
                    if 'anon' in match.groupdict():
                        candidate['reaper'] = {'reaped': True, 'anon_rss_kb': int(match.group('anon')),
                                               'file_rss_kb': int(match.group('file')),
                                               'shmem_rss_kb': int(match.group('shmem'))}
                    else:
                        candidate['reaper'] = {'reaped': False}
                    break
            return True
        match = _PANIC.match(message) if message.startswith('Kernel panic') else None
        if match:
            target = event
            if target is None:
                recent = [e for e in self.events[-5:] if e['host'] == line.host]
                target = recent[-1] if recent else self._current(line, start=True)
            target['panic'] = match.group('reason').strip()
            return True
        if message.startswith('Out of memory') and _NO_KILLABLE.match(message):
            target = event or self._current(line, start=True)
            target['no_killable'] = True
            return True
        return False

    # Lines inside an open report.
    def _context_lines(self, line, message, event):
        match = _OOM_KILL.match(message) if message.startswith('oom-kill:') else None
        if match:
            if event is None or event['victim'] is not None:
                event = self._current(line, start=True)
            event['constraint'] = match.group('constraint')
            event['nodemask'] = match.group('nodemask')
            event['cpuset'] = match.group('cpuset')
            event['mems_allowed'] = match.group('mems')
            event['limit_memcg'] = match.group('oom_memcg')
            event['task_memcg'] = match.group('task_memcg')
            event['oom_kill_task'] = {'comm': match.group('task'), 'pid': int(match.group('pid')),
                                      'uid': int(match.group('uid'))}
            event['lines'] += 1
            return True
        if event is None:
            if (_STARTERS.match(message) or (' killed as a result of limit of ' in message and _TASK_IN.match(message))
                    or (': usage ' in message and _MEMCG_USAGE.match(message))):
                event = self._current(line, start=True)
            else:
                return False
        event['lines'] += 1
        if message.startswith('['):  # task tables
            match = _TASK_HEADER.match(message)
            if match:
                event['_task_columns'] = match.group('columns').split()
                return True
            match = _TASK_ROW.match(message)
            if match and event.get('_task_columns'):
                self._task_row(event, int(match.group('pid')), match.group('rest'))
                return True
        if message.startswith('Node '):
            node = _NODE_PREFIX.match(message)
            if node:
                event.setdefault('_nodes_seen', set()).add(int(node.group(1)))
        match = _CPUSET.match(message) if ' mems_allowed=' in message else None
        if match and event['cpuset'] is None:
            event['cpuset'], event['mems_allowed'] = match.group('cpuset'), match.group('mems')
            return True
        match = _CPU_LINE.match(message) if message.startswith(('CPU: ', 'Pid: ')) else None
        if match:
            pid = match.group('pid') or match.group('pid_old')
            if event['invoker'] is not None and event['invoker']['pid'] is None:
                event['invoker']['pid'] = int(pid)
            event['kernel'] = match.group('kernel')
            return True
        match = _TASK_IN.match(message) if ' killed as a result of limit of ' in message else None
        if match:
            event['task_memcg'] = match.group('task')
            limit = match.group('limit')
            event['limit_memcg'] = None if limit == 'host' else limit
            if limit == 'host':
                event['limit_of_host'] = True
            return True
        match = _MEMCG_USAGE.match(message) if ': usage ' in message else None
        if match:
            if event['memcg'] is None:
                event['memcg'] = {}
            key = match.group('kind').replace('+', '_')
            event['memcg'][key] = {'usage_kb': int(match.group('usage')), 'limit_kb': int(match.group('limit')),
                                   'failcnt': int(match.group('failcnt'))}
            return True
        match = _ZONE.match(message) if ' free:' in message else None
        if match:
            event['zones'].append({
                'node': _int_or_none(match.group('node')), 'zone': match.group('zone'),
                'free_kb': int(match.group('free')), 'min_kb': int(match.group('min')),
                'low_kb': int(match.group('low')), 'high_kb': int(match.group('high')),
                'all_unreclaimable': _yes_no(message, 'all_unreclaimable? '),
            })
            return True
        match = _BUDDY.match(message) if '*' in message else None
        if match:
            blocks = _BUDDY_BLOCK.findall(match.group('blocks'))
            event['buddy'].append({'node': _int_or_none(match.group('node')), 'zone': match.group('zone'),
                                   'free_blocks': [int(count) for count, dummy in blocks]})
            return True
        match = _HIGHMEM_PAGES.match(message) if ' pages HighMem' in message else None
        if match:
            event['highmem_pages'] = int(match.group('pages'))
        return True

    def _task_row(self, event, pid, rest):
        columns = event['_task_columns']
        fields = rest.split()
        # The name is last and may hold spaces: everything after the numbers.
        numbers = len(columns) - 1
        if len(fields) < numbers + 1:
            return
        row = {'pid': pid, 'name': ' '.join(fields[numbers:])}
        for column, value in zip(columns[:numbers], fields[:numbers]):
            try:
                row[column] = int(value)
            except ValueError:
                row[column] = value
        rss_pages = row.get('rss')
        if not isinstance(rss_pages, int):
            return
        row['rss_kb'] = rss_pages * PAGE_KB
        heap = event['_tasks_heap']
        entry = (rss_pages, -pid, row)
        if len(heap) < self.task_top:
            heapq.heappush(heap, entry)
        elif entry[:2] > heap[0][:2]:
            heapq.heapreplace(heap, entry)

    def close(self):
        """Seal what is open; the events (with emit: [] after emitting them all)."""
        for host in list(self.open):
            self._finish(host)
        if self.emit is None:
            return self.events
        for event in self.events:
            self.emit(event)
        self.events = []
        return []


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
START_MARKER = b'invoked oom-killer'
KILL_MARKER = b'ut of memory'
# Lines that complete a kill line lacking them (the next line in every
# capture: "Kill process ..." then "Killed process ...").
_KILL_FOLLOWERS = (b'Killed process', b'Kernel panic - not syncing')
KILL_FOLLOW_BYTES = 4 << 10
# Lines printed right after a kill that belong to it: the oom_reaper's
# outcome (at most a few hundred bytes on in every capture) and a panic
# ("Attempted to kill init!").
_AFTER_KILL_MARKERS = (b'oom_reaper:', b'Kernel panic - not syncing')
AFTER_KILL_BYTES = 8 << 10
# What ends a report that kills nothing.
NO_KILL_MARKERS = (b'Kernel panic - not syncing', b'no killable processes')
# Lines only a report prints, where a fragment that holds neither of the two
# lines above can start (a partial paste, a report cut at the head of a
# rotated log).  Looked for in the first FRAGMENT_SCAN_BYTES of each input
# only: four more passes over a whole large log would cost twice the rest,
# and further on a report always has one of those two lines.
FRAGMENT_MARKERS = (b'killed as a result of limit of', b'Memory cgroup stats for', b'Mem-Info:', b'Tasks state (memory')
PARTIAL_MARKERS = FRAGMENT_MARKERS
FRAGMENT_SCAN_BYTES = 64 << 20
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
# A searching worker maps this much of the file at a time; a parsing worker
# drops the pages it has mapped each time it has gone this far.
_MAP_BYTES = 8 << 20
_RELEASE_BYTES = 32 << 20
# A share of a file holding more markers than this (a log of nothing but
# kills) is read sequentially instead, so that offsets never take much memory.
MAX_SHARE_MARKERS = 1 << 20


def _line_start(buf, pos):
    return buf.rfind(b'\n', 0, pos) + 1


def _line_end(buf, pos, end=None):
    end = len(buf) if end is None else end
    found = buf.find(b'\n', pos, end)
    return end if found < 0 else found + 1


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
            if self.memmem:
                holder = (self.ctypes.c_char * length).from_buffer(view)
                address = self.ctypes.addressof(holder)
            for needle, start, end, out in jobs:
                stop = min(end + len(needle) - 1, length)
                pos = start
                if self.memmem:
                    while pos < end:
                        found = self.memmem(address + pos, stop - pos, needle, len(needle))
                        if not found:
                            break
                        pos = found - address
                        out.append(offset + pos)
                        pos += 1
                    continue
                pos = view.find(needle, pos, stop)
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


def in_workers(jobs):
    """Run each job (a function without arguments) in a forked process at
    once; per job what it returned (plain data, through a pipe), or None when
    its worker could not be started or failed.  No worker outlives this call."""
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
            data = os.read(read_end, 1 << 20)
            while data:
                chunks.append(data)
                data = os.read(read_end, 1 << 20)
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


def _reaped(pid):
    """Wait for a worker; its exit status (-1 if it was killed)."""
    try:
        dummy, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0  # reaped by someone else (SIGCHLD ignored): judge by its output
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1


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

    def __init__(self, parser=None, year=None, fragment_bytes=FRAGMENT_SCAN_BYTES):
        self.parser = parser or EventParser()
        self.year = year
        # Fragments without "invoked" and kill lines are looked for this far.
        self.fragment_bytes = fragment_bytes
        self.lines_parsed = 0

    def _parse_lines(self, data):
        text = data.decode('utf-8', 'replace')
        if '\x00' in text:
            text = text.replace('\x00', '')
        # Longer texts without rsyslog escapes: the line prefixes in one pass.
        if text.count('\n') >= _BATCH_LINES and '\r' not in text and '#0' not in text:
            if self._parse_dmesg(text) if text[:1] == '[' else self._parse_carried(text):
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
        self.lines_parsed += count

    def _parse_dmesg(self, text):
        """Parse text if each of its lines is a plain "[ 12.345678] message" one.

        What split_prefix and feed would do, with the prefixes taken by one
        regex pass and the lines no pattern can match only counted.  False
        (nothing done) for any other text.
        """
        lines = _DMESG_LINES.findall(text)
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
            if len(message) < 160 and _matches_nothing(stripped):
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
        self.lines_parsed += len(lines)
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
            carriers = _SYSLOG_LINES[2:]
        elif first.isdigit() and not _KMSG_LINES.search(text):
            carriers = _SYSLOG_LINES[1:2]
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
                    message = _LINE_NUMBER.sub('', message, count=1)
                if message[:1] in ('[', '<'):
                    inner = _DMESG.match(message)
                    if inner is None and message[:1] == '[':
                        inner = _DMESG_T.match(message)
                    if inner is not None:
                        message = inner.group(inner.lastindex)
                stripped = message.strip()
                if not stripped or (len(message) < 160 and _matches_nothing(stripped)):
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
        self.lines_parsed += count
        return True

    def _headless_begin(self, buf, kill, floor):
        """Where the report of a kill line without an "invoked" line starts."""
        begin = _line_start(buf, kill)
        if begin <= floor:
            return begin
        previous = buf[_line_start(buf, begin - 1):begin]
        if not _BODY_LINE.search(previous):
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
        return _line_start(buf, begin - 1)

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
                begin = _line_start(buf, start)
                nxt = starts[i + 1] if i + 1 < len(starts) and starts[i + 1] < size else -1
                limit = _line_start(buf, nxt) if nxt >= 0 else size
                if 0 <= kill < limit and kill - begin <= MAX_WINDOW_BYTES:
                    window = self._kill_window(buf, begin, kill, following, limit, size, final)
                elif nxt < 0 and not final and size - begin < MAX_WINDOW_BYTES:
                    window = None  # the report goes on in what comes next
                else:
                    window = (begin, self._no_kill_end(buf, start, min(limit, begin + MAX_WINDOW_BYTES), size), ())
            elif frag >= 0 and (kill < 0 or frag < kill):
                begin = _line_start(buf, frag)
                limit = _line_start(buf, start) if start >= 0 else size
                bound = min(limit, begin + FRAGMENT_WINDOW_BYTES)
                if 0 <= kill < bound:
                    window = self._kill_window(buf, begin, kill, following, limit, size, final)
                elif bound >= size and not final:
                    window = None  # the fragment may go on
                else:
                    window = (begin, _cut(buf, begin, bound), ())
            elif kill >= 0:
                begin = self._headless_begin(buf, kill, pos)
                limit = _line_start(buf, start) if start >= 0 else size
                window = self._kill_window(buf, begin, kill, following, limit, size, final)
            else:
                break
            if window is None:
                return begin
            begin, pos, after = window
            self._parse_lines(buf[begin:pos])
            for begin, pos in after:
                self._parse_lines(buf[begin:pos])
            if progress is not None:
                progress(pos)
        if final or not size:
            return size
        # Keep the last partial line: a marker may be cut in two.
        return _line_start(buf, size - 1) if buf[size - 1:size] != b'\n' else size

    def scan_chunks(self, chunks, base=0):
        """Parse an iterable of byte chunks; a report cut between two is carried over.

        base is the input offset of the first chunk."""
        tail = b''
        for chunk in chunks:
            buf = tail + chunk if tail else chunk
            done = self.scan_buffer(buf, final=False, base=base)
            tail = buf[done:]
            base += done
        if tail:
            self.scan_buffer(tail, final=True, base=base)
        return self.parser

    def scan(self, stream, chunk_bytes=CHUNK_BYTES):
        return self.scan_chunks(iter(lambda: stream.read(chunk_bytes), b''))

    def scan_file(self, fd, sink=None, workers=None, min_bytes=None):
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
        files are read here, in chunks.
        """
        size = os.fstat(fd).st_size
        if self.parser.emit is None:
            sink = None  # the events stay in self.parser: they come back whole
        count = min(workers or cpu_count(), MAX_WORKERS, max(2, size // PARALLEL_SHARE_BYTES))
        if count < 2 or size < (PARALLEL_MIN_BYTES if min_bytes is None else min_bytes) or not size:
            self.scan_chunks(_pread_chunks(fd, 0))
            return self.parser
        fragment_end = min(size, self.fragment_bytes)
        found = in_workers([functools.partial(_share_markers_job, fd, size, low, high, fragment_end)
                            for low, high in shares(size, count, fragment_end)])
        if any(part is None for part in found):  # a worker failed, or the log is dense with markers
            self.scan_chunks(_pread_chunks(fd, 0))
            return self.parser
        offsets = []
        for kind in range(3):
            joined = array.array('q')
            joined.frombytes(b''.join(part[kind] for part in found))
            offsets.append(joined)
        starts, kills, fragments = offsets
        cuts = groups(fd, size, starts, kills, fragments, count)
        results = in_workers([functools.partial(self._scan_group, fd, size, low, high, starts, kills, fragments, sink)
                              for low, high in cuts])
        for (low, high), result in zip(cuts, results):
            if result is None:
                self._scan_part(fd, low, high)
            elif result[0] == 'sink':
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
            return ('sink', sink.export())
        return ('events', [dict(event) for event in events])

    def _scan_part(self, fd, low, high):
        """Parse [low, high) of a file here, by reading (a worker failed)."""
        parser = EventParser(task_top=self.parser.task_top, emit=self.parser.emit, window=self.parser.window)
        scanner = StreamScanner(parser, self.year, self.fragment_bytes)
        scanner.scan_chunks(_pread_chunks(fd, low, high), base=low)
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


# -- causes -------------------------------------------------------------------

CAUSES = ('memcg_limit', 'parent_memcg_limit', 'host', 'numa_node', 'mempolicy',
          'fragmentation', 'lowmem', 'manual', 'panic', 'unknown')

ADVICE = {
    'memcg_limit': 'The cgroup reached its own memory limit. Right-size it (oomguard_services[unit].memory_max '
                   'or oomguard_cgroups with the oomguard.linux.cgroup_limits role), add memory_high below it so '
                   'the service is throttled before it is killed, or fix the service\'s memory growth.',
    'parent_memcg_limit': 'A parent cgroup\'s limit killed a child that never reached a limit of its own. Raise the '
                          'parent\'s limit or give the children limits that fit inside it (oomguard_services / '
                          'oomguard_cgroups, oomguard.linux.cgroup_limits role).',
    'host': 'The whole host ran out of memory. Limit the biggest consumers (oomguard.linux.cgroup_limits), protect '
            'what must survive (oomguard_services[unit].oom_score_adj, oomguard.linux.oom_protect), and let an early '
            'OOM killer act before the kernel does (oomguard.linux.early_oom); or add memory or swap.',
    'numa_node': 'The task may only allocate from the NUMA nodes of its cpuset, and those were full while others had '
                 'memory. Widen allowed_memory_nodes (oomguard_services[unit].allowed_memory_nodes, '
                 'oomguard.linux.cpuset role) or size the workload to its nodes.',
    'mempolicy': 'A memory policy (numactl --membind, set_mempolicy MPOL_BIND) confined the task to full nodes. '
                 'Use a preferred or interleaved policy, or bind to nodes with room.',
    'fragmentation': 'Free memory was there but not in blocks of the requested order. Enable proactive compaction '
                     '(vm.compaction_proactiveness) or an off-peak compaction timer (oomguard.linux.thp role), and '
                     'raise vm.min_free_kbytes (oomguard_sysctl, oomguard.linux.sysctl role).',
    'lowmem': 'A 32-bit kernel ran out of low memory (the Normal zone) while HighMem was free: kernel allocations '
              'can only use lowmem. Move to a 64-bit kernel; meanwhile raise vm.lowmem_reserve_ratio and '
              'vm.min_free_kbytes (oomguard_sysctl).',
    'manual': 'The OOM killer was invoked by hand (SysRq f, order=-1): not a memory shortage. Check who can use '
              'SysRq (kernel.sysrq).',
    'panic': 'vm.panic_on_oom turned the OOM into a kernel panic. Make sure kernel.panic reboots the host (> 0), or '
             'set vm.panic_on_oom to 0 to kill a process instead (oomguard_sysctl, oomguard.linux.sysctl role).',
    'unknown': 'The report does not say enough to name a cause (partial or rate-limited). Keep vm.oom_dump_tasks=1 '
               'and make sure whole kernel messages reach the log.',
}


def _nodes(text):
    nodes = set()
    for part in (text or '').split(','):
        low, sep, high = part.partition('-')
        if low.strip().isdigit() and (not sep or high.strip().isdigit()):
            nodes.update(range(int(low), int(high) + 1) if sep else [int(low)])
    return nodes


def _zone_state(zone):
    return {'node': zone['node'], 'zone': zone['zone'], 'free_kb': zone['free_kb'],
            'min_kb': zone['min_kb'], 'low_kb': zone['low_kb'], 'high_kb': zone['high_kb']}


def classify(event):
    """(cause, evidence dict, reason) for one event; reason says why when unknown."""
    evidence = {}
    constraint = event.get('constraint')
    if event.get('panic'):
        return 'panic', {'panic': event['panic']}, None
    if event.get('order') == -1:
        return 'manual', {'order': -1, 'invoker': (event.get('invoker') or {}).get('comm')}, None
    limit, task = event.get('limit_memcg'), event.get('task_memcg')
    if constraint == 'CONSTRAINT_MEMCG' or (limit and not event.get('limit_of_host')):
        evidence = {'constraint': constraint, 'limit_memcg': limit, 'task_memcg': task}
        if event.get('memcg'):
            evidence['memcg'] = event['memcg'].get('memory')
        if limit and task and limit != task and task.startswith(limit.rstrip('/') + '/'):
            return 'parent_memcg_limit', evidence, None
        return 'memcg_limit', evidence, None
    if constraint == 'CONSTRAINT_MEMORY_POLICY':
        return 'mempolicy', {'constraint': constraint, 'nodemask': event.get('nodemask')}, None
    allowed = _nodes(event.get('mems_allowed'))
    cpuset = event.get('cpuset')
    # Before 4.19 no constraint is printed: a cpuset squeeze shows as a
    # cpuset allowed fewer nodes than the report's zones come from.
    # Node 0 exists on every NUMA machine, so a cpuset without it is restricted.
    report_nodes = set(event.get('_nodes_seen') or ()) | set([0])
    restricted = bool(allowed) and allowed < report_nodes
    if constraint == 'CONSTRAINT_CPUSET' or (constraint is None and cpuset not in (None, '/') and restricted):
        allowed_zones = [_zone_state(z) for z in event['zones'] if z['node'] in allowed]
        return 'numa_node', {'constraint': constraint, 'cpuset': cpuset, 'mems_allowed': event.get('mems_allowed'),
                             'allowed_zones_below_min': [z for z in allowed_zones if z['free_kb'] < z['min_kb']]}, None
    zones = event['zones']
    highmem = [z for z in zones if z['zone'] == 'HighMem']
    normal = [z for z in zones if z['zone'] == 'Normal']
    if (highmem or event.get('highmem_pages')) and normal:
        starved = [z for z in normal if z['free_kb'] <= z['low_kb']]
        high_free_kb = sum(z['free_kb'] for z in highmem) or sum(
            count * (2 ** order) * PAGE_KB for b in event['buddy'] if b['zone'] == 'HighMem'
            for order, count in enumerate(b['free_blocks']))
        if starved and (not highmem or high_free_kb > sum(z['high_kb'] for z in highmem)):
            return 'lowmem', {'normal_zones': [_zone_state(z) for z in starved], 'highmem_free_kb': high_free_kb,
                              'highmem_pages': event.get('highmem_pages')}, None
    order = event.get('order')
    if order and order > 0 and zones:
        fragmented = []
        for zone in zones:
            if zone['free_kb'] < zone['min_kb']:
                continue
            for buddy in event['buddy']:
                if buddy['zone'] == zone['zone'] and buddy['node'] == zone['node']:
                    if not any(buddy['free_blocks'][order:]):
                        fragmented.append(dict(_zone_state(zone), free_blocks=buddy['free_blocks']))
        if fragmented:
            return 'fragmentation', {'order': order, 'zones': fragmented}, None
    kill_global = event.get('kill_origin') == 'global'
    if constraint == 'CONSTRAINT_NONE' or event.get('limit_of_host') or (constraint is None and kill_global):
        below = [_zone_state(z) for z in zones if z['free_kb'] < z['min_kb']]
        evidence = {'constraint': constraint or ('limit of host' if event.get('limit_of_host') else None)}
        if below:
            evidence['zones_below_min'] = below
        if constraint is None and not event.get('limit_of_host'):
            # Before 4.19 the kill line is the only witness: "Out of memory"
            # (not "Memory cgroup out of memory") is a host-wide OOM.
            evidence['kill_line'] = 'Out of memory (not a memory cgroup)'
        return 'host', evidence, None
    return 'unknown', {}, 'no constraint, memcg or kill line in the report'


# -- results ------------------------------------------------------------------

def finish(events):
    """Classify each event and drop private keys; returns the public list."""
    return [finish_one(event) for event in events]


def finish_one(event):
    """Classify one event; a plain dict without the parser's private keys."""
    cause, evidence, reason = classify(event)
    event['cause'] = cause
    event['evidence'] = evidence
    event['advice'] = ADVICE[cause]
    if reason:
        event['unknown_reason'] = reason
    for key in [k for k in event if k.startswith('_')]:
        event.pop(key)
    return dict(event)


class EventSink:
    """Classified events, counted as they come: the summary and the kill
    loops need counters only, and just the last `keep` events are kept whole,
    so memory stays flat however long the log is."""

    def __init__(self, keep=None, since_epoch=None, min_kills=3):
        self.recent = []
        self.keep = keep
        self.since_epoch = since_epoch
        self.min_kills = min_kills
        self.by_cause = {}
        self.by_victim = {}
        self.total = 0
        self.partial = 0
        self.groups = {}

    def add(self, event):
        """One finished (classified) event; False when `since` drops it."""
        if self.since_epoch is not None:
            when = epoch(event.get('timestamp'))
            if when is not None and when < self.since_epoch:
                return False
        self.total += 1
        self.by_cause[event['cause']] = self.by_cause.get(event['cause'], 0) + 1
        if not event.get('complete'):
            self.partial += 1
        victim = event.get('victim') or event.get('selected')
        if victim:
            self.by_victim[victim['comm']] = self.by_victim.get(victim['comm'], 0) + 1
            # The same program killed in different cgroups is not one loop.
            key = (event.get('host') or '', victim['comm'], event.get('task_memcg') or '')
            when = event.get('timestamp') or event.get('time')
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = {'kills': 0, 'pids': set(), 'first': when}
            group['kills'] += 1
            if len(group['pids']) < 1000:
                group['pids'].add(victim['pid'])
            group['last'] = when
        if self.keep is None or self.keep > 0:
            self.recent.append(event)
            if self.keep is not None and len(self.recent) > self.keep:
                self.recent.pop(0)
        return True

    def reset(self):
        """Forget what was counted (a worker counts its part of a log from nothing)."""
        self.recent = []
        self.by_cause = {}
        self.by_victim = {}
        self.total = 0
        self.partial = 0
        self.groups = {}

    def export(self):
        """What was counted, as plain data for merge()."""
        return {'recent': self.recent, 'by_cause': self.by_cause, 'by_victim': self.by_victim, 'total': self.total,
                'partial': self.partial, 'groups': self.groups}

    def merge(self, state):
        """Add what another sink counted (export()) over the part of a log after this one's."""
        self.total += state['total']
        self.partial += state['partial']
        for mine, theirs in ((self.by_cause, state['by_cause']), (self.by_victim, state['by_victim'])):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        for key, other in state['groups'].items():
            group = self.groups.get(key)
            if group is None:
                self.groups[key] = other
                continue
            group['kills'] += other['kills']
            for pid in other['pids']:
                if len(group['pids']) >= 1000:
                    break
                group['pids'].add(pid)
            group['last'] = other['last']
        if self.keep is None or self.keep > 0:
            self.recent.extend(state['recent'])
            if self.keep is not None:
                del self.recent[:-self.keep]

    def summary(self):
        return {'events': self.total, 'by_cause': dict(self.by_cause), 'by_victim': dict(self.by_victim),
                'partial': self.partial}

    def kill_loops(self):
        """Programs killed min_kills times or more, with at least two PIDs."""
        loops = []
        for (host, comm, memcg), group in self.groups.items():
            if group['kills'] >= self.min_kills and len(group['pids']) >= 2:
                loops.append({'host': host or None, 'comm': comm, 'task_memcg': memcg or None,
                              'kills': group['kills'], 'distinct_pids': len(group['pids']),
                              'first': group['first'], 'last': group['last']})
        loops.sort(key=lambda loop: (-loop['kills'], loop['host'] or '', loop['comm']))
        return loops


def _sink_of(events, min_kills=3):
    sink = EventSink(keep=0, min_kills=min_kills)
    for event in events:
        sink.add(event)
    return sink


def kill_loops(events, min_kills=3):
    """The same program killed again and again with new PIDs (seed 003's nginx)."""
    return _sink_of(events, min_kills).kill_loops()


def summarize(events):
    return _sink_of(events).summary()


def epoch(timestamp):
    """ISO text (naive = UTC) -> seconds; None when it does not parse."""
    if not timestamp:
        return None
    text = timestamp.replace(',', '.')
    zone = 0
    match = re.search(r'(Z|[+-]\d\d:?\d\d)$', text)
    if match:
        suffix = match.group(1)
        text = text[:match.start()]
        if suffix != 'Z':
            sign = -1 if suffix[0] == '-' else 1
            digits = suffix[1:].replace(':', '')
            zone = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    whole, dummy, fraction = text.partition('.')
    try:
        parsed = time.strptime(whole, '%Y-%m-%dT%H:%M:%S')
    except ValueError:
        return None
    return calendar.timegm(parsed) - zone + (float('0.' + fraction) if fraction.isdigit() else 0.0)
