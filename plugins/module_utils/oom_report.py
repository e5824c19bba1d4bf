# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel OOM reports: what a report line means, the events, causes and kill loops.

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

Then the results: ``finish`` classifies events, ``EventSink`` counts them as
they come (summary, kill loops) and keeps only the last few whole.

How a log of any size is read, and which windows of it reach the parser, is
oom_scan.py (which imports this module, never the other way round).
Standard library only.
"""


import calendar
import heapq
import re
import time

# -- line prefixes ------------------------------------------------------------

_MONTHS = dict((name, number) for number, name in enumerate(
    ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'), 1))
# journalctl and syslog daemons print the month with the locale's %b: glibc's
# abbreviations of the locales operators paste from most (lower case, no dot).
# Where two locales share an abbreviation it names the same month.
_LOCALE_MONTHS = {}
for _names in ('янв фев мар апр мая июн июл авг сен окт ноя дек',   # ru_RU
               'jan feb mär apr mai jun jul aug sep okt nov dez',   # de_DE
               'ene feb mar abr may jun jul ago sep oct nov dic',   # es_ES
               'gen feb mar apr mag giu lug ago set ott nov dic',   # it_IT
               'jan fev mar abr mai jun jul ago set out nov dez',   # pt_BR
               'sty lut mar kwi maj cze lip sie wrz paź lis gru',   # pl_PL
               'jan feb mrt apr mei jun jul aug sep okt nov dec',   # nl_NL
               'janv févr mars avr mai juin juil août sept oct nov déc'):  # fr_FR
    for _number, _name in enumerate(_names.split(), 1):
        _LOCALE_MONTHS.setdefault(_name, _number)

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
    re.compile(r'^(?P<month>[A-Z][a-z]{2}|[^\W\d_]{3,5}\.?) +(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d)(?P<fraction>\.\d+)?'
               r'(?: (?P<host>\S+))? (?P<tag>[^:\s\[]+)(?:\[\d+\])?: (?P<msg>.*)$'),
    # metalog: "Sep 23 02:04:16 [kernel] message" (seed 004).
    re.compile(r'^(?P<month>[A-Z][a-z]{2}|[^\W\d_]{3,5}\.?) +(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d) \[(?P<tag>\S+)\] (?P<msg>.*)$'),
)
# Public (no leading underscore): DMESG, DMESG_T, LINE_NUMBER and the *_LINES
# patterns below are used by oom_scan's one-pass prefix parsing too.
# dmesg: "[ 123.456789] msg", with an optional "<4>" level (dmesg -r, consoles).
DMESG = re.compile(r'^(?:<\d+>)?\[\s*(\d+\.\d+)\](?:\[\s*[TC]\d+\])? ?(.*)$')
_DMESG_ANYWHERE = re.compile(r'(?:<\d+>)?\[\s*\d+\.\d{3,}\] ')
# dmesg -T: "[Sat Sep 11 09:46:24 2021] msg", also localised ("[六 9月 11 12:24:42 2021]").
DMESG_T = re.compile(r'^\[(\S+) +(\S+) +(\d{1,2}) (\d\d:\d\d:\d\d) (\d{4})\] ?(.*)$')
# The same, for every line of a text at once (see oom_scan.StreamScanner._parse_carried).
KMSG_LINES = re.compile(_KMSG.pattern, re.M)
SYSLOG_LINES = tuple(re.compile(pattern.pattern, re.M) for pattern in _SYSLOG_PREFIXES)
# Every line of a raw dmesg text at once (the DMESG lines that start with "[").
DMESG_LINES = re.compile(r'^\[\s*(\d+\.\d+)\](?:\[\s*[TC]\d+\])? ?(.*)$', re.M)
# A copy-pasted dmesg with editor line numbers in front ("565 [ ... ]", seed 000).
LINE_NUMBER = re.compile(r'^\d+ (?=\[)')


def _month(text):
    if text in _MONTHS:
        return _MONTHS[text]
    local = _LOCALE_MONTHS.get(text.rstrip('.').lower())
    if local:
        return local
    digits = re.match(r'(\d{1,2})', text)  # "9月" and the like
    return int(digits.group(1)) if digits and 1 <= int(digits.group(1)) <= 12 else None


def _iso(year, month, day, clock, fraction=''):
    return '%04d-%02d-%02dT%s%s' % (year, month, day, clock, fraction or '')


class Line:
    __slots__ = ('host', 'time', 'timestamp', 'uptime_s', 'message', 'repairs', 'cut')

    def __init__(self, host, time_text, timestamp, uptime_s, message, repairs=None, cut=False):
        self.host = host
        self.time = time_text
        self.timestamp = timestamp
        self.uptime_s = uptime_s
        self.message = message
        # What _carrier.repair did to the window this line came from, and
        # whether a pager cut this line short (see _cut_line).
        self.repairs = repairs
        self.cut = cut


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
    elif 'A' <= first <= 'Z' or first > '\x7f' or 'a' <= first <= 'z':
        # (a lower-case or non-ASCII first letter: a localised month, "апр 28 ...")
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
                month = _month(fields['month'])
                if month and year:
                    timestamp = _iso(year, month, int(fields['day']), fields['clock'], fields.get('fraction'))
            break
    if time_text is None and line.startswith('kernel: '):
        line = line[8:]  # a journal or syslog line copied without its time and host
    first = line[:1]
    if first.isdigit():
        line = LINE_NUMBER.sub('', line, count=1)
        first = line[:1]
    if time_text is None and first != '[' and '[' in line:
        # An unknown carrier (a hypervisor's guest log, a mail archive) around a
        # dmesg line: take what follows the first dmesg time stamp.
        inner = _DMESG_ANYWHERE.search(line)
        if inner:
            line = line[inner.start():]
            first = line[:1]
    if first in ('[', '<'):
        match = DMESG.match(line)
        if match:
            uptime_s = float(match.group(1))
            if time_text is None:
                time_text = match.group(1)
            line = match.group(2)
        elif first == '[':
            match = DMESG_T.match(line)
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
# "12*4kB (UME)": the count, the size, and (3.x+) the migrate types that have free blocks.
_BUDDY_BLOCK = re.compile(r'(\d+)\s*\*\s*(\d+)kB(?:\s*\(([A-Z]*)\))?')
_PANIC = re.compile(r'^Kernel panic - not syncing: (?P<reason>.*)')
_HIGHMEM_PAGES = re.compile(r'^(?P<pages>\d+) pages HighMem')
_TASK_HEADER = re.compile(r'^\[\s*pid\s*\]\s+(?P<columns>uid\s.*)$')
_TASK_ROW = re.compile(r'^\[\s*(?P<pid>\d+)\]\s+(?P<rest>-?\d.*)$')
_NO_KILLABLE = re.compile(r'^Out of memory and no killable processes')
# memory.oom.group (4.19+, mm/memcontrol.c mem_cgroup_print_oom_group): printed
# after the selected victim's kill line, then a kill line per other member.
_OOM_GROUP = re.compile(r'^Tasks in (?P<cgroup>\S+) are going to be killed due to memory\.oom\.group set')
# What authors put where they cut lines out of a pasted report.
ELIDED = re.compile(r'^(?:\[\s*(?:\.{3,}|\u2026|snip(?:ped)?)\s*\]|\(\s*\.*\s*snip(?:ped)?\s*\.*\s*\)|'
                    r'<\s*snip(?:ped)?\s*>|\.{3,}|\u2026)$', re.I)
# Lines a pager cut short (_carrier): the fields that are whole (followed by a comma).
_CUT_FIELD = re.compile(r'(\w+)=([^,]*),')
_CUT_KILL = re.compile(r'Kill(?:ed)? process (?P<pid>\d+)[ ,]+(?:UID \d+, )?(?:\((?P<comm>[^)]*)\))?')

# How the messages the patterns above anchor at the start begin, by first
# character (task tables and "N pages HighMem" are tested apart).  A message
# starting otherwise can only match the patterns that find their text
# anywhere (_INVOKED, _KILLED, _CPUSET).  Most lines of a report (stack,
# meminfo, per-cpu and memcg counters) match none.
_ANCHORED_STARTS = {
    'M': ('Mem-Info:', 'Memory cgroup', 'Movable'), 'O': ('Out of memory',), 'o': ('oom_reaper: ', 'oom-kill:'),
    'K': ('Kernel panic',), 'T': ('Task in ', 'Tasks state', 'Tasks in '), '/': ('/',), 'm': ('memory',), 's': ('swap',),
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


def _victim(match):
    """The victim of a _KILLED match."""
    uid = match.group('uid') or match.group('uid_old') or match.group('uid_mid')
    return {
        'pid': int(match.group('pid')), 'comm': match.group('comm'), 'uid': _int_or_none(uid),
        'total_vm_kb': int(match.group('total_vm')), 'anon_rss_kb': int(match.group('anon')),
        'file_rss_kb': int(match.group('file')), 'shmem_rss_kb': _int_or_none(match.group('shmem')),
        'pgtables_kb': _int_or_none(match.group('pgtables')), 'oom_score_adj': _int_or_none(match.group('adj')),
    }


def _add_victim(event, victim):
    """One more member of an oom.group kill; the kernel may print the selected victim twice."""
    victims = event.setdefault('victims', [])
    if len(victims) < 1000 and not any(other['pid'] == victim['pid'] for other in victims):
        victims.append(victim)


# The members of a memory.oom.group kill are killed in one pass, within
# milliseconds; a kill line later than this is another OOM.
_GROUP_SPAN_S = 1.0


def _gap_s(first_uptime_s, uptime_s):
    """Seconds between two kernel stamps; 0 when either has none (dmesg -T, syslog)."""
    if first_uptime_s is None or uptime_s is None:
        return 0.0
    return uptime_s - first_uptime_s


def _origin(prefix):
    """'memcg' for "Memory cgroup out of memory", 'global' for "Out of memory"."""
    return 'memcg' if prefix.startswith('Memory cgroup') else 'global'


def _yes_no(message, key):
    at = message.find(key)
    if at < 0:
        return None
    return message[at + len(key):at + len(key) + 3] == 'yes'


def matches_nothing(message):
    """True for a (stripped, non-empty) message that no pattern of EventParser can match.

    Public: oom_scan only counts such lines instead of feeding them.
    """
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
    if first in '[(<.\u2026' and ELIDED.match(message):
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
        'victim_elided': False, 'oom_group': False,
        'complete': False, 'lines': 0, 'carrier_repairs': [], 'boot_id': None,
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
        # host -> the event whose memory.oom.group kill is still printing its members
        self.groups = {}
        self.task_top = task_top
        self.emit = emit
        self.window = window
        # The _BOOT_ID of the lines being read (a journald export says it), else None.
        self.boot_id = None

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

    def _close(self, event):
        """A report's kill line was read: it is no longer open under any host, and is sealed."""
        for host, candidate in list(self.open.items()):
            if candidate is event:
                self.open.pop(host)
        self._seal(event)

    def _seal(self, event):
        if event['victim'] is None and event.pop('_elided', False):
            # The author cut lines out and no kill line is left: the numbers
            # still name a cause, but who died is not in the text.
            event['victim_elided'] = True
        heap = event.pop('_tasks_heap', [])
        event.pop('_task_columns', None)
        event['tasks'] = [row for dummy, dummy2, row in sorted(heap, key=lambda item: (-item[0], item[1]))]

    def _current(self, line, start=False):
        event = self.open.get(line.host)
        if start or event is None:
            self._finish(line.host)
            self.groups.pop(line.host, None)
            event = _new_event(line)
            event['boot_id'] = self.boot_id
            self.events.append(event)
            self.open[line.host] = event
            self._retire()
        return event

    def new_boot(self, boot_id=None):
        """The lines from here on are another boot's: no report open before goes on
        (a crash or reboot cut it), and new events carry boot_id."""
        for host in list(self.open):
            self._finish(host)
        self.groups.clear()
        self.boot_id = boot_id

    def feed(self, line):
        """One kernel message (already split from its prefix)."""
        if line.repairs is None:
            self._feed(line)
            return
        message = line.message.strip()
        if not (line.cut and not _KILLED.match(message) and not _OOM_KILL.match(message)
                and self._cut_line(line, message)):
            self._feed(line)
        # The event the line went into: still open, or just closed by it.
        event = self.open.get(line.host) or (self.events[-1] if self.events else None)
        if event is not None:
            notes = event.setdefault('carrier_repairs', [])
            notes.extend(note for note in line.repairs if note not in notes)
            if line.cut and ' invoked oom' in message:
                # What the cause needs from this line may be past the cut (classify).
                event['_cut_invoked'] = True

    def _cut_line(self, line, message):
        """A kill or oom-kill line a pager cut short: what its complete fields say."""
        event = self.open.get(line.host)
        if message.startswith('oom-kill:constraint='):
            if event is None or event['victim'] is not None:
                event = self._current(line, start=True)
            fields = dict(_CUT_FIELD.findall(message[9:]))
            event['_cut_oom_kill'] = set(fields)
            event['constraint'] = fields.get('constraint', event['constraint'])
            for key, name in (('nodemask', 'nodemask'), ('cpuset', 'cpuset'), ('mems_allowed', 'mems_allowed'),
                              ('oom_memcg', 'limit_memcg'), ('task_memcg', 'task_memcg')):
                if key in fields:
                    event[name] = fields[key]
            event['lines'] += 1
            return True
        origin = 'memcg' if message.startswith('Memory cgroup out of memory') else (
            'global' if message.startswith('Out of memory') else None)
        kill = _CUT_KILL.search(message)
        if origin is None and kill is None:
            return False
        if event is None or event['victim'] is not None:
            event = self._current(line, start=True)
        if origin:
            event['kill_origin'] = origin
            if origin == 'memcg' and event['constraint'] is None:
                event['constraint'] = 'CONSTRAINT_MEMCG'
        if kill and kill.group('comm') is not None:
            event['victim'] = {'pid': int(kill.group('pid')), 'comm': kill.group('comm'), 'uid': None,
                               'total_vm_kb': None, 'anon_rss_kb': None, 'file_rss_kb': None,
                               'shmem_rss_kb': None, 'pgtables_kb': None, 'oom_score_adj': None}
        event['complete'] = False
        event['lines'] += 1
        self._close(event)
        return True

    def _feed(self, line):
        message = line.message.strip()
        if not message:
            return
        if matches_nothing(message):
            event = self.open.get(line.host)
            if event is not None:
                event['lines'] += 1
            return
        if message[0] in '[(<.\u2026' and ELIDED.match(message):
            event = self.open.get(line.host)
            if event is not None:
                event['lines'] += 1
                event['_elided'] = True
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

    def _oom_group(self, line, cgroup, event):
        """Tasks in /x are going to be killed due to memory.oom.group set."""
        if event is None:
            # Normally the selected victim's kill line came first and closed the report.
            recent = [e for e in self.events[-5:] if e['host'] == line.host]
            event = recent[-1] if recent else self._current(line, start=True)
        event['oom_group'] = True
        event['group_cgroup'] = cgroup
        event.setdefault('victims', [])
        if event['victim'] is not None:
            _add_victim(event, event['victim'])
        event['lines'] += 1
        self.groups[line.host] = (event, line.uptime_s)

    def _open_selection(self, pid):
        for candidate in self.open.values():
            # The oom-kill line names the victim too (a rejoined mail, seed 003's hosts).
            chosen = candidate.get('selected') or candidate.get('oom_kill_task') or {}
            if chosen.get('pid') == pid and candidate['victim'] is None:
                return candidate
        return None

    # Lines that close (or, rate-limited, stand in for) a report.
    def _kill_lines(self, line, message, event):
        if 'process' not in message and not message.startswith(('oom_reaper: ', 'Kernel panic', 'Tasks in ')):
            return False
        match = _OOM_GROUP.match(message) if message.startswith('Tasks in ') else None
        if match:
            self._oom_group(line, match.group('cgroup'), event)
            return True
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
            group, group_uptime_s = self.groups.get(line.host, (None, None))
            if group is not None and _GROUP_SPAN_S < _gap_s(group_uptime_s, line.uptime_s):
                # The kernel kills a group's members in one pass. A kill line
                # seconds later is the next OOM, its header rate-limited away
                # (the oom-kill: line is part of that header).
                group = None
            if event is None and group is not None:
                # Another member of a memory.oom.group kill: the same invocation.
                _add_victim(group, _victim(match))
                group['lines'] += 1
                return True
            if event is None or event['victim'] is not None:
                event = self._current(line, start=True)
            event['victim'] = _victim(match)
            if event['oom_group']:
                _add_victim(event, event['victim'])
            if match.group('origin'):
                event['kill_origin'] = _origin(match.group('origin'))
            if event.get('kill_origin') == 'memcg' and event['constraint'] is None:
                event['constraint'] = 'CONSTRAINT_MEMCG'
            if event['time'] is None or event['invoker'] is None:
                event['time'], event['timestamp'], event['uptime_s'] = line.time, line.timestamp, line.uptime_s
            event['complete'] = event['invoker'] is not None
            event['lines'] += 1
            # The report is over; oom_reaper and panic lines find it by pid / host.
            self._close(event)
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
        if message.startswith('Memory cgroup stats for '):
            event['_memcg_stats'] = True  # a memcg OOM, even with its other lines cut
            return True
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
        _show_mem_line(event, message)
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


# Panics that are the OOM's own outcome (vm.panic_on_oom, nothing left to
# kill); any other ("Attempted to kill init!" after an oom.group kill) is a
# consequence of the kill, and the numbers still name the cause.
_OOM_PANIC = re.compile(r'Out of memory|System is deadlocked on memory|panic_on_oom')
# Migrate types an allocation can take free blocks of: HighAtomic blocks only
# serve high-order atomic requests, CMA blocks only movable ones, isolated none.
_USABLE_TYPES = frozenset('UMER')


def _report_nodes(event):
    return set(event.get('_nodes_seen') or ()) | set(z['node'] for z in event['zones'] if z['node'] is not None)


def _usable_types(event):
    flags = set(event.get('gfp_flags') or ())
    usable = set(_USABLE_TYPES)
    if flags & set(('__GFP_MOVABLE', 'GFP_HIGHUSER_MOVABLE', 'GFP_MOVABLE_MASK')):
        usable.add('C')
    if flags & set(('GFP_ATOMIC', '__GFP_HIGH', '__GFP_ATOMIC')):
        usable.add('H')
    return usable


def _zone_label(zone):
    return '%s%s' % ('' if zone['node'] is None else 'Node %d ' % zone['node'], zone['zone'])


def _fragmentation(event, order):
    """('fragmentation', evidence) / ('unknown', reason) / None for an order > 0 request."""
    zones = event['zones']
    if not zones:
        return 'unknown', ('zone watermarks ("Normal free:... min:...") missing: needed to tell fragmentation '
                           '(order=%d) from exhaustion' % order)
    usable = _usable_types(event)
    fragmented = []
    missing = []
    above = [z for z in zones if z['free_kb'] >= z['min_kb']]
    for zone in above:
        buddy = None
        for candidate in event['buddy']:
            if candidate['zone'] == zone['zone'] and candidate['node'] == zone['node']:
                buddy = candidate
        if buddy is None or len(buddy['free_blocks']) <= order:
            missing.append(_zone_label(zone))
            continue
        higher = buddy['free_blocks'][order:]
        if not any(higher):
            fragmented.append(dict(_zone_state(zone), free_blocks=buddy['free_blocks']))
            continue
        types = buddy.get('free_types')
        if not types:
            continue  # blocks of that order were free, of types the report does not say
        kinds = set()
        for count, letters in zip(higher, types[order:]):
            if count:
                kinds.update(letters or '?')  # a count without its letters: assume usable
        if '?' not in kinds and not kinds & usable:
            fragmented.append(dict(_zone_state(zone), free_blocks=buddy['free_blocks'], free_types=types,
                                   only_types_of_order=''.join(sorted(kinds))))
    if fragmented:
        return 'fragmentation', {'order': order, 'zones': fragmented}
    if missing and len(above) == len(zones):
        # Every zone is above its watermarks, so exhaustion does not explain
        # the OOM either: without the free blocks per order nothing does.
        return 'unknown', ('buddy list (free blocks per order) of %s missing: needed to tell fragmentation '
                           '(order=%d) from exhaustion' % (', '.join(missing), order))
    return None


def _lowmem(event):
    """('lowmem', evidence) / ('unknown', reason) / None; only for reports of a 32-bit kernel (HighMem)."""
    zones = event['zones']
    highmem = [z for z in zones if z['zone'] == 'HighMem']
    high_buddy = [b for b in event['buddy'] if b['zone'] == 'HighMem']
    if not (highmem or high_buddy or event.get('highmem_pages')):
        return None
    # The kernel's own memory: the Normal zone, or DMA where it spans all
    # lowmem (32-bit arm: no Normal line of any kind in the report).
    low = [z for z in zones if z['zone'] == 'Normal']
    if not low and not any(b['zone'] == 'Normal' for b in event['buddy']):
        low = [z for z in zones if z['zone'] == 'DMA']
    if not low:
        return 'unknown', ('lowmem zone watermarks ("Normal free:... min:... low:...") missing: needed to tell '
                           'lowmem from host exhaustion on a 32-bit kernel')
    starved = [z for z in low if z['free_kb'] <= z['low_kb']]
    if not starved:
        return None
    if highmem:
        high_free_kb = sum(z['free_kb'] for z in highmem)
        plenty_kb = sum(z['high_kb'] for z in highmem)
    elif high_buddy:
        high_free_kb = sum(count * (2 ** order) * PAGE_KB for b in high_buddy
                           for order, count in enumerate(b['free_blocks']))
        plenty_kb = sum(z['high_kb'] for z in starved)  # no HighMem watermarks: what lowmem lacks
    else:
        return 'unknown', ('HighMem free ("HighMem free:" zone line or its buddy list) missing: needed to tell '
                           'lowmem from host exhaustion on a 32-bit kernel')
    if high_free_kb > plenty_kb:
        return 'lowmem', {'normal_zones': [_zone_state(z) for z in starved], 'highmem_free_kb': high_free_kb,
                          'highmem_pages': event.get('highmem_pages')}
    return None


def _mempolicy(event, cpuset_restricted):
    """Before 4.19 no constraint is printed: a nodemask narrower than the
    machine, no cpuset restriction, its nodes below min while others have
    plenty.  ('mempolicy', evidence) / ('unknown', reason) / None."""
    policy = _nodes(event.get('nodemask'))
    nodes = _report_nodes(event) | _nodes(event.get('mems_allowed')) | set([0])
    if not policy or not nodes - policy or cpuset_restricted:
        return None
    zones = [z for z in event['zones'] if z['node'] is not None]
    seen = set(z['node'] for z in zones)
    missing = sorted((policy | nodes) - seen)
    if missing:
        return 'unknown', ('zone watermarks of node %s ("Node N Normal free:... min:...") missing: needed to tell '
                           'a memory policy (nodemask=%s) from exhaustion' % (
                               ','.join(str(n) for n in missing), event.get('nodemask')))
    inside = [_zone_state(z) for z in zones if z['node'] in policy]
    outside = [_zone_state(z) for z in zones if z['node'] not in policy]
    below = [z for z in inside if z['free_kb'] < z['min_kb']]
    plenty = [z for z in outside if z['free_kb'] > z['high_kb']]
    if below and plenty:
        return 'mempolicy', {'constraint': None, 'nodemask': event.get('nodemask'),
                             'policy_zones_below_min': below, 'other_zones_free': plenty}
    return None


def _lost_to_a_cut(event):
    """The field a pager's cut took that the cause depends on, said as the reason; None when none.

    A cut oom-kill: line decides the cause by its constraint, and a memory
    cgroup's by oom_memcg (whose limit: the task's own or a parent's); a
    cut invoked line by its order (-1: a manual OOM).  Guessing past a cut
    would turn a parent's limit into the task's own, a cpuset squeeze into
    a host OOM.
    """
    whole = event.get('_cut_oom_kill')
    if whole is not None:
        if 'constraint' not in whole:
            return 'a pager cut the oom-kill: line before its constraint (memory cgroup, cpuset, policy or none)'
        if event.get('constraint') == 'CONSTRAINT_MEMCG' and 'oom_memcg' not in whole:
            return ('a memory cgroup limit (CONSTRAINT_MEMCG), but a pager cut the oom-kill: line before oom_memcg: '
                    "whose limit it was (the task's own cgroup or a parent) is lost")
    if event.get('_cut_invoked') and event.get('order') is None and event.get('constraint') in (None, 'CONSTRAINT_NONE'):
        # Only a global OOM can be a manual one (order -1).
        return 'a pager cut the invoked line before its order (-1 would be a manual OOM)'
    return None


def classify(event):
    """(cause, evidence dict, reason) for one event; reason says why when unknown.

    A rule that needs a number the report lacks (cut, wrapped, elided) gives
    unknown with the missing field named rather than a guess.
    """
    evidence = {}
    constraint = event.get('constraint')
    lost = _lost_to_a_cut(event)
    if lost:
        return 'unknown', {'constraint': constraint, 'kill_origin': event.get('kill_origin')}, lost
    if event.get('panic') and _OOM_PANIC.search(event['panic']):
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
        policy = _nodes(event.get('nodemask'))
        zones = [z for z in event['zones'] if z['node'] is not None]
        return 'mempolicy', {'constraint': constraint, 'nodemask': event.get('nodemask'),
                             'policy_zones_below_min': [_zone_state(z) for z in zones if z['node'] in policy
                                                        and z['free_kb'] < z['min_kb']]}, None
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
    kill_global = event.get('kill_origin') == 'global'
    host_wide = constraint == 'CONSTRAINT_NONE' or event.get('limit_of_host') or (constraint is None and kill_global)
    if constraint is None:
        found = _mempolicy(event, restricted)
        if found and (found[0] == 'mempolicy' or host_wide):
            return (found[0], found[1], None) if found[0] == 'mempolicy' else ('unknown', {}, found[1])
    found = _lowmem(event)
    if found and (found[0] == 'lowmem' or host_wide):
        return (found[0], found[1], None) if found[0] == 'lowmem' else ('unknown', {}, found[1])
    order = event.get('order')
    if order and order > 0:
        found = _fragmentation(event, order)
        if found and (found[0] == 'fragmentation' or host_wide):
            return (found[0], found[1], None) if found[0] == 'fragmentation' else ('unknown', {}, found[1])
    zones = event['zones']
    if host_wide:
        below = [_zone_state(z) for z in zones if z['free_kb'] < z['min_kb']]
        evidence = {'constraint': constraint or ('limit of host' if event.get('limit_of_host') else None)}
        if below:
            evidence['zones_below_min'] = below
        if constraint is None and not event.get('limit_of_host'):
            # Before 4.19 the kill line is the only witness: "Out of memory"
            # (not "Memory cgroup out of memory") is a host-wide OOM.
            evidence['kill_line'] = 'Out of memory (not a memory cgroup)'
        return 'host', evidence, None
    below = [_zone_state(z) for z in zones if z['free_kb'] < z['min_kb']]
    if below and constraint is None and event['invoker'] is not None and not (
            event.get('memcg') or task or event.get('_memcg_stats')):
        # No kill line (elided, cut) and no constraint, but the numbers: a
        # global show_mem with a zone below min, and the invoked line ruled
        # out a cpuset or memory policy above (a memcg OOM prints no zones).
        return 'host', {'constraint': None, 'zones_below_min': below,
                        'kill_line': 'missing; read from the zone watermarks'}, None
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


# The ISO form the parser itself writes; other text goes through strptime.
_ISO_STAMP = re.compile(r'(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:[.,](\d+))?(Z|[+-]\d\d:?\d\d)?$')


# epoch() is asked again and again for a kill loop's first and last time.
_EPOCHS = {}
_EPOCHS_MAX = 4096


def epoch(timestamp):
    """ISO text (naive = UTC) -> seconds; None when it does not parse."""
    if not timestamp:
        return None
    try:
        return _EPOCHS[timestamp]
    except (KeyError, TypeError):
        pass
    value = _epoch(timestamp)
    if len(_EPOCHS) >= _EPOCHS_MAX:
        _EPOCHS.clear()
    _EPOCHS[timestamp] = value
    return value


def _epoch(timestamp):
    match = _ISO_STAMP.match(timestamp)
    if match is not None:
        # The common case without strptime (a quarter of a large log's parse
        # time): the same ranges it checks, so the same answers.
        year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
        if 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1] and hour < 24 and minute < 60 \
                and second < 60:
            fraction, suffix = match.group(7), match.group(8)
            return (calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - _zone_seconds(suffix)
                    + (float('0.' + fraction) if fraction else 0.0))
    text = timestamp.replace(',', '.')
    zone = 0
    match = re.search(r'(Z|[+-]\d\d:?\d\d)$', text)
    if match:
        text = text[:match.start()]
        zone = _zone_seconds(match.group(1))
    whole, dummy, fraction = text.partition('.')
    try:
        parsed = time.strptime(whole, '%Y-%m-%dT%H:%M:%S')
    except ValueError:
        return None
    return calendar.timegm(parsed) - zone + (float('0.' + fraction) if fraction.isdigit() else 0.0)


def _zone_seconds(suffix):
    """Seconds east of UTC of an ISO zone suffix ("Z", "+02:00", "-0530"; None: UTC)."""
    if not suffix or suffix == 'Z':
        return 0
    sign = -1 if suffix[0] == '-' else 1
    digits = suffix[1:].replace(':', '')
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)


def _show_mem_line(event, message):
    """A zone's watermarks, its free blocks per order, or the HighMem page count."""
    match = _ZONE.match(message) if ' free:' in message else None
    if match:
        event['zones'].append({
            'node': _int_or_none(match.group('node')), 'zone': match.group('zone'),
            'free_kb': int(match.group('free')), 'min_kb': int(match.group('min')),
            'low_kb': int(match.group('low')), 'high_kb': int(match.group('high')),
            'all_unreclaimable': _yes_no(message, 'all_unreclaimable? '),
        })
        return
    match = _BUDDY.match(message) if '*' in message else None
    if match:
        blocks = _BUDDY_BLOCK.findall(match.group('blocks'))
        buddy = {'node': _int_or_none(match.group('node')), 'zone': match.group('zone'),
                 'free_blocks': [int(count) for count, dummy, dummy2 in blocks]}
        if '(' in match.group('blocks'):
            # Per order, the migrate types with free blocks (U, M, E, H HighAtomic, C CMA, I isolate).
            buddy['free_types'] = [types for dummy, dummy2, types in blocks]
        event['buddy'].append(buddy)
        return
    match = _HIGHMEM_PAGES.match(message) if ' pages HighMem' in message else None
    if match:
        event['highmem_pages'] = int(match.group('pages'))
