# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One validator for every inventory value: the types, and the message an operator reads.

Each parser takes a value as the inventory gives it and returns it parsed,
or raises ``Invalid`` with what is allowed.  ``Checker`` turns that into a
problem that names the host, the variable and the value, always worded

    host web1: oomguard_services['db'][memory_max] = '2GB'; allowed: a size like 512M, ...

so that one message shape covers the sysctls, the unit settings, the raw
cgroups, the processes and the early killer.  Every parser bounds its input
before it expands it (a node range, a size) so no value can make it hang.
"""


import difflib
import json
import os
import re
import stat

from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils._engine import Problem

INT_MIN = -2 ** 31
INT_MAX = 2 ** 31 - 1
ULONG_MAX = 2 ** 63 - 1
# The kernel's MAX_NUMNODES at its largest (NODES_SHIFT 10).
MAX_NUMA_NODE = 1023
# Every guard id of the collection: what oomguard_force may name (the tunables'
# and the unit settings' guards; test_schema holds this list to the guards they fire).
GUARD_IDS = ('panic_without_reboot', 'panic_on_cgroup_oom', 'overcommit_below_committed', 'min_free_above_5_percent',
             'min_free_below_default', 'persist_shadowed', 'thp_not_persistent',
             'limit_below_usage', 'nodes_without_room', 'unit_missing', 'pattern_too_broad', 'unsupported_systemd')
# The memory limits in the order the kernel applies them: min <= low <= high <= max.
LIMIT_ORDER = ('memory_min', 'memory_low', 'memory_high', 'memory_max')

_INT_RE = re.compile(r'^\s*-?\d{1,20}\s*$')
# systemd's size syntax (parse_size, base 1024): a number with an optional
# K/M/G/T suffix, a percentage of physical memory, or infinity.
_SIZE_RE = re.compile(r'^(\d{1,20}(?:\.\d{1,9})?)([KMGT]?)$')
_PERCENT_RE = re.compile(r'^(\d{1,3}(?:\.\d{1,9})?)%$')
_FACTORS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}
_NODES_RE = re.compile(r'^\d{1,4}(-\d{1,4})?([ ,]+\d{1,4}(-\d{1,4})?)*$')
_UNIT_RE = re.compile(r'^[A-Za-z0-9:_.\\@-]{1,255}$')


# Every oomguard_* variable the collection reads or sets: the roles' options
# (meta/argument_specs.yml), the playbooks' variables and the results the
# roles and playbooks register.  test_schema holds this list to the names
# those files use.  An inventory variable outside it is a typo until the
# collection learns it.
KNOWN_VARIABLES = (
    'oomguard_audit_events', 'oomguard_audit_fail_on_drift', 'oomguard_audit_hosts', 'oomguard_audit_policy',
    'oomguard_audit_print', 'oomguard_audit_slab', 'oomguard_audit_victims', 'oomguard_become',
    'oomguard_cgroup_limits_result', 'oomguard_cgroups', 'oomguard_cpuset_result', 'oomguard_diagnose_events',
    'oomguard_diagnose_hosts', 'oomguard_diagnose_last', 'oomguard_diagnose_max_events',
    'oomguard_diagnose_max_read_bytes', 'oomguard_diagnose_paths', 'oomguard_diagnose_since',
    'oomguard_diagnose_sources', 'oomguard_diagnose_timeout_s', 'oomguard_early_oom', 'oomguard_early_oom_result',
    'oomguard_fleet_report', 'oomguard_force', 'oomguard_harden', 'oomguard_harden_early_oom',
    'oomguard_harden_hosts', 'oomguard_harden_tunables', 'oomguard_harden_units', 'oomguard_monitor',
    'oomguard_monitor_lib_dir', 'oomguard_monitor_result', 'oomguard_oom_protect_result',
    'oomguard_posture', 'oomguard_processes', 'oomguard_profile', 'oomguard_protect_defaults',
    'oomguard_report_dir', 'oomguard_report_formats', 'oomguard_restore_hosts', 'oomguard_services',
    'oomguard_state_dir', 'oomguard_sysctl', 'oomguard_sysctl_file', 'oomguard_sysctl_result',
    'oomguard_systemd_dir', 'oomguard_thp', 'oomguard_thp_compaction_file', 'oomguard_thp_result',
    'oomguard_unsupported')


# Longer than any known variable by far: compared with none.
VARIABLE_MAX_CHARS = 64


class Invalid(Exception):
    """A value that is not what is allowed; str() says what is."""


# What Checker.check returns for a refused value (None is a value: infinity).
INVALID = object()


def bound_text(number):
    if number == INT_MAX:
        return '2147483647'
    if number == ULONG_MAX:
        return '2^63-1'
    return str(number)


def int_allowed(low, high, note=''):
    return 'an integer %s..%s%s' % (bound_text(low), bound_text(high), note)


def integer(value, low, high, note=''):
    """An integer low..high from an int or its decimal text (never a bool or a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not _INT_RE.match(str(value)) \
            or not low <= int(value) <= high:
        raise Invalid(int_allowed(low, high, note))
    return int(value)


def choice(value, options):
    if value not in options:
        raise Invalid('one of %s' % ', '.join(str(o) for o in options))
    return value


# Limits at which 0 makes no sense: MemoryMax=0 OOM-kills the unit at once,
# MemoryHigh=0 throttles it to a standstill.  0 is fine for min/low/swap.
NONZERO_LIMITS = ('memory_max', 'memory_high')


def size_bytes(value, mem_total_bytes, zero_ok=True):
    """Bytes of a systemd size, or None for infinity."""
    number = _size_bytes(value, mem_total_bytes)
    if number == 0 and not zero_ok:
        raise Invalid('a size above 0 (0 would stop the unit at once; infinity means no limit)')
    return number


def _size_bytes(value, mem_total_bytes):
    if isinstance(value, bool):
        raise Invalid('a size like 512M, 2G, 25% or infinity, not a boolean')
    if isinstance(value, int):
        if value < 0:
            raise Invalid('a size cannot be negative')
        if value > ULONG_MAX:
            raise Invalid('a size up to 2^63-1 bytes')
        return value
    text = str(value).strip()
    if text == 'infinity':
        return None
    match = _SIZE_RE.match(text)
    if match:
        if '.' in match.group(1) and not match.group(2):
            raise Invalid('a whole number of bytes, or a fraction with a suffix like 1.5G')
        number = int(float(match.group(1)) * _FACTORS[match.group(2)])
        if number > ULONG_MAX:
            raise Invalid('a size up to 2^63-1 bytes')
        return number
    match = _PERCENT_RE.match(text)
    if match:
        percent = float(match.group(1))
        if percent > 100:
            raise Invalid('a percentage of RAM is at most 100%')
        return int(mem_total_bytes * percent / 100)
    raise Invalid('a size like 512M, 2G, 25% or infinity (suffixes K, M, G, T, base 1024)')


def node_list(value, existing=None):
    """A NUMA node list ('0', '0-1', '0,2', '0 2-3', [0, 2]) -> sorted node numbers.

    existing: the nodes this host has; a node outside them is refused.
    """
    if isinstance(value, list):
        text = ' '.join(str(v) for v in value)
    else:
        text = ' '.join(str(value).replace(',', ' ').split())
    if len(text) > 4096 or not _NODES_RE.match(text):
        raise Invalid('a node list like 0, 0-1 or 0,2')
    nodes = set()
    for part in text.split():
        low, dummy, high = part.partition('-')
        low = int(low)
        high = int(high) if high else low
        if high < low:
            raise Invalid('a range must go up (%s)' % part)
        if high > MAX_NUMA_NODE:
            raise Invalid('node numbers 0..%d' % MAX_NUMA_NODE)
        nodes.update(range(low, high + 1))
    if existing is not None:
        missing = sorted(n for n in nodes if n not in existing)
        if missing:
            raise Invalid('node %s does not exist; this host has node(s) %s'
                          % (', '.join(str(n) for n in missing), ', '.join(str(n) for n in sorted(existing))))
    return sorted(nodes)


def unit_name(value, suffixes=None):
    """A systemd unit name; with suffixes, one of those types only."""
    text = str(value).strip() if isinstance(value, str) else ''
    if not _UNIT_RE.match(text) or text.startswith(('.', '-')) or \
            (suffixes and not text.endswith(tuple(suffixes))):
        raise Invalid('a unit name like %s' % ('system.slice' if not suffixes else ' or '.join(
            'name' + s for s in suffixes)))
    return text


# systemd.time(7) calendar events: the shorthands, the weekday names, and the
# range of each field of "[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [ZONE]".
CALENDAR_MAX_CHARS = 256
CALENDAR_SHORTHANDS = ('minutely', 'hourly', 'daily', 'weekly', 'monthly', 'yearly', 'annually', 'quarterly',
                       'semiannually')
_WEEKDAYS = ('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')
_WEEKDAY_NAMES = dict([(d, d) for d in _WEEKDAYS] + [
    ('monday', 'mon'), ('tuesday', 'tue'), ('wednesday', 'wed'), ('thursday', 'thu'), ('friday', 'fri'),
    ('saturday', 'sat'), ('sunday', 'sun')])
_CAL_FIELDS = {'year': (1970, 2199), 'month': (1, 12), 'day': (1, 31), 'hour': (0, 23), 'minute': (0, 59),
               'second': (0, 59)}
_CAL_ITEM_RE = re.compile(r'^(\*|\d{1,4}(?:\.\d{1,6})?)(?:\.\.(\d{1,4}))?(?:/(\d{1,4}(?:\.\d{1,6})?))?$')
_ZONE_RE = re.compile(r'^(UTC|[A-Z][A-Za-z0-9_+-]{0,30}(/[A-Za-z0-9_+-]{1,30}){0,2})$')
CALENDAR_ALLOWED = ('a systemd OnCalendar= expression such as "Sun *-*-* 03:30:00", "*-*-* 04:00" or "daily" '
                    '(systemd.time(7): weekday, year 1970..2199, month 1..12, day 1..31, hour 0..23, '
                    'minute and second 0..59)')


def _calendar_field(text, field):
    """One field of a calendar spec: '*', values, a..b ranges, /repetitions, comma lists."""
    low, high = _CAL_FIELDS[field]
    for item in text.split(','):
        match = _CAL_ITEM_RE.match(item)
        if not match:
            raise Invalid('%s %s is not a value, a range a..b, * or a repetition /n' % (field, item or "''"))
        start, end, step = match.groups()
        if '.' in start and field != 'second' or step and '.' in step and field != 'second':
            raise Invalid('only the second may have a fraction (%s %s)' % (field, item))
        for number in ([] if start == '*' else [float(start)]) + ([int(end)] if end else []):
            if not low <= number <= high:
                raise Invalid('%s %s is out of range %d..%d' % (field, item, low, high))
        if end and int(end) < float(start):
            raise Invalid('%s range %s must go up' % (field, item))
        if step is not None and float(step) <= 0:
            raise Invalid('%s repetition %s must be above 0' % (field, item))


def _weekdays(text):
    for item in text.split(','):
        for day in item.split('..'):
            if day.lower() not in _WEEKDAY_NAMES:
                raise Invalid('weekday %s is not one of Mon..Sun' % day)
        if item.count('..') > 1:
            raise Invalid('weekday range %s has one .. at most' % item)


def calendar_spec(value):
    """calendar_spec_fields with the whole allowed form in every refusal."""
    try:
        return calendar_spec_fields(value)
    except Invalid as exc:
        if str(exc) == CALENDAR_ALLOWED:
            raise
        raise Invalid('%s; here %s' % (CALENDAR_ALLOWED, exc))


def calendar_spec_fields(value):
    """A systemd OnCalendar= expression, checked field by field -> its text with single spaces.

    Stricter than nothing and no looser than systemd: what passes here is a
    spec systemd parses (systemd-analyze calendar checks it again where it exists).
    """
    if not isinstance(value, str) or not value.strip() or len(value) > CALENDAR_MAX_CHARS:
        raise Invalid(CALENDAR_ALLOWED)
    words = value.split()
    if len(words) == 1 and words[0].lower() in CALENDAR_SHORTHANDS:
        return words[0].lower()
    rest = list(words)
    if rest and _ZONE_RE.match(rest[-1]) and rest[-1].lower() not in _WEEKDAY_NAMES and len(rest) > 1:
        rest.pop()
    if rest and re.match(r'^[A-Za-z]', rest[0]):
        _weekdays(rest.pop(0))
    date = clock = None
    for word in rest:
        if ':' in word and clock is None:
            clock = word
        elif '-' in word and date is None and clock is None:
            date = word
        else:
            raise Invalid('%s is neither a date like *-*-01 nor a time like 03:30:00' % word)
    if date is not None:
        parts = re.split(r'-|~', date)
        if len(parts) == 2:
            parts = [None] + parts
        if len(parts) != 3:
            raise Invalid('date %s is not [YEAR-]MONTH-DAY' % date)
        for text, field in zip(parts, ('year', 'month', 'day')):
            if text is not None:
                _calendar_field(text, field)
    if clock is not None:
        parts = clock.split(':')
        if len(parts) not in (2, 3):
            raise Invalid('time %s is not HOUR:MINUTE[:SECOND]' % clock)
        for text, field in zip(parts, ('hour', 'minute', 'second')):
            _calendar_field(text, field)
    if date is None and clock is None and len(words) == len(rest) and not re.match(r'^[A-Za-z]', words[0]):
        raise Invalid(CALENDAR_ALLOWED)
    return ' '.join(words)


# POSIX extended regular expressions (regcomp with REG_EXTENDED, as earlyoom
# compiles its --prefer/--avoid): what may follow a backslash, the character
# classes, and RE_DUP_MAX.  Python-only syntax compiles in Python but not
# there, or (\d under glibc) means something else, so it is refused by name.
ERE_ESCAPABLE = '.[]()*+?{}|^$\\'
ERE_CLASSES = ('alnum', 'alpha', 'blank', 'cntrl', 'digit', 'graph', 'lower', 'print', 'punct', 'space', 'upper',
               'xdigit')
ERE_DUP_MAX = 255
ERE_MAX_CHARS = 512
_PYTHON_ESCAPES = {'d': '[[:digit:]]', 'D': '[^[:digit:]]', 's': '[[:space:]]', 'S': '[^[:space:]]',
                   'w': '[[:alnum:]_]', 'W': '[^[:alnum:]_]'}
_ERE_BOUND_RE = re.compile(r'\{(\d{1,3})(,(\d{0,3}))?\}')


def _ere_bracket(text, start):
    """Index of the ] closing the bracket expression opened at start."""
    i = start + 1
    if text[i:i + 1] == '^':
        i += 1
    if text[i:i + 1] == ']':
        i += 1
    while i < len(text):
        char = text[i]
        if char == ']':
            return i
        if char == '\\':
            raise Invalid('inside [...] a backslash is a literal backslash in POSIX ERE; use a class such as '
                          '[[:digit:]] or [[:space:]]')
        if text[i:i + 2] in ('[:', '[=', '[.'):
            close = text.find(text[i + 1] + ']', i + 2)
            if close < 0:
                break
            if text[i + 1] == ':' and text[i + 2:close] not in ERE_CLASSES:
                raise Invalid('[:%s:] is not a character class; allowed: %s'
                              % (text[i + 2:close], ', '.join('[:%s:]' % c for c in ERE_CLASSES)))
            i = close + 2
            continue
        i += 1
    raise Invalid('a [ opens a bracket expression that is never closed; write \\[ for a bracket')


def posix_ere(value):
    """A POSIX extended regular expression (not Python's dialect) -> the same text."""
    if not isinstance(value, str) or not value or len(value) > ERE_MAX_CHARS:
        raise Invalid('a POSIX extended regular expression of 1..%d characters' % ERE_MAX_CHARS)
    text = value
    depth, repeatable, i = 0, False, 0
    while i < len(text):
        char = text[i]
        if char == '\\':
            following = text[i + 1:i + 2]
            if following in _PYTHON_ESCAPES:
                raise Invalid('\\%s is Python syntax; POSIX ERE writes it %s' % (following, _PYTHON_ESCAPES[following]))
            if not following or following not in ERE_ESCAPABLE:
                raise Invalid('a backslash escapes one of %s in POSIX ERE, not %s'
                              % (ERE_ESCAPABLE, following or 'the end of the pattern'))
            i, repeatable = i + 2, True
        elif char == '[':
            i, repeatable = _ere_bracket(text, i) + 1, True
        elif char == '(':
            if text[i + 1:i + 2] == '?':
                raise Invalid('(?...) is Python syntax (flags, lookaround, named or non-capturing groups); '
                              'POSIX ERE has plain (...) groups only')
            depth, i, repeatable = depth + 1, i + 1, False
        elif char == ')':
            if not depth:
                raise Invalid('a ) closes no group')
            depth, i, repeatable = depth - 1, i + 1, True
        elif char in '*+?{':
            bound = _ERE_BOUND_RE.match(text, i) if char == '{' else None
            if char == '{' and not bound:
                raise Invalid('a { starts a bound {m}, {m,} or {m,n}; write \\{ for a brace')
            if not repeatable:
                raise Invalid('%s must follow something to repeat' % (bound.group(0) if bound else char))
            if bound:
                low, high = int(bound.group(1)), bound.group(3)
                if low > ERE_DUP_MAX or (high and not low <= int(high) <= ERE_DUP_MAX):
                    raise Invalid('a bound {m,n} needs m <= n <= %d' % ERE_DUP_MAX)
            i = bound.end() if bound else i + 1
            if text[i:i + 1] in ('?', '+'):
                raise Invalid('lazy and possessive repetition (*?, +?, *+) is Python syntax, not POSIX ERE')
            repeatable = False
        else:
            # |, ^ and $ take no repetition after them; any other character is itself.
            i, repeatable = i + 1, char not in '|^$'
    if depth:
        raise Invalid('a ( opens a group that is never closed')
    return value


# -- path options --------------------------------------------------------------------

# What each path option names: a file the collection writes whole, or a directory it writes into.
FILE_PATH_OPTIONS = ('sysctl_file', 'compaction_file', 'earlyoom_defaults')
DIR_PATH_OPTIONS = ('systemd_dir', 'state_dir', 'oomd_conf_dir', 'monitor_lib_dir', 'cron_dir', 'textfile_dir')
# Files systemd-sysctl (and procps' sysctl --system) read: *.conf in these directories.
SYSCTL_FILE_OPTIONS = ('sysctl_file', 'compaction_file')
PATH_MAX_CHARS = 1024
LEDGER_NAME = 'ledger.json'


def _what_is(path):
    """'absent', 'file', 'directory', or what else the path is in words (never opened: a FIFO would block)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return 'absent'
    if stat.S_ISREG(mode):
        return 'file'
    if stat.S_ISDIR(mode):
        return 'directory'
    return procfs.file_kind(mode)


def path_problems(paths, labels, host=None, sysctl_dirs=()):
    """Problems of the path options given ({option: path}), all of them at once.

    Each is an absolute, normalised path (no .., no //, no trailing /); a
    file option is not a directory, device, FIFO or socket, a directory
    option not a file; no two options name the same file, and none is the
    ledger.  The sysctl files are .conf files in a directory systemd-sysctl
    reads (sysctl_dirs, host-relative, resolved with host.path), or the
    setting would silently not persist.  Nothing is opened.
    """
    checker = Checker(labels)
    seen = {}
    ledger = None
    if isinstance(paths.get('state_dir'), str):
        ledger = os.path.join(paths['state_dir'], LEDGER_NAME)
    for name in sorted(set(paths) & set(FILE_PATH_OPTIONS + DIR_PATH_OPTIONS)):
        value = paths[name]
        where = labels.var(name)
        kind = 'file' if name in FILE_PATH_OPTIONS else 'directory'
        allowed = 'an absolute, normalised path of a %s (no .., no //, no trailing /)' % kind
        if not isinstance(value, str) or not value or len(value) > PATH_MAX_CHARS \
                or any(not c.isprintable() for c in value):
            checker.invalid(where, value, allowed)
            continue
        if not value.startswith('/') or os.path.normpath(value) != value or value.startswith('//') or value == '/':
            checker.invalid(where, value, allowed)
            continue
        found = _what_is(value)
        if found not in ('absent', kind):
            checker.invalid(where, value, 'the path of a %s; %s is %s' % (
                kind, value, 'a ' + found if found in ('file', 'directory') else found))
            continue
        if name in SYSCTL_FILE_OPTIONS and host is not None and sysctl_dirs:
            dirs = [host.path(d).rstrip('/') for d in sysctl_dirs]
            if not value.endswith('.conf') or os.path.dirname(value) not in dirs:
                checker.invalid(where, value, 'a .conf file in a directory systemd-sysctl reads at boot (%s); '
                                'anywhere else the setting would not persist' % ', '.join(sysctl_dirs))
                continue
        if value in seen:
            checker.invalid(where, value, 'a path of its own; %s names the same one' % labels.var(seen[value]))
            continue
        if kind == 'file' and value == ledger:
            checker.invalid(where, value, 'any file but the ledger of %s' % labels.var('state_dir'))
            continue
        seen[value] = name
    return checker.problems


def limit_order(sizes):
    """(lower, higher) pairs of memory limits out of order; None (infinity) is above all."""
    given = [k for k in LIMIT_ORDER if k in sizes and sizes[k] is not None]
    return [(lower, higher) for lower, higher in zip(given, given[1:]) if sizes[lower] > sizes[higher]]


# A value shown in a message is cut in the middle beyond this many characters.
SHOW_MAX_CHARS = 120


def _flow(value, depth=0):
    if isinstance(value, str):
        if any(not c.isprintable() for c in value):
            # YAML's double-quoted style: control characters as escapes, never raw.
            return json.dumps(value, ensure_ascii=False)
        return "'%s'" % value.replace("'", "''")
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return str(value)
    if depth > 3:
        return '...'
    if isinstance(value, dict):
        items = list(value.items())
        text = ', '.join('%s: %s' % (_flow(k, depth + 1) if not isinstance(k, str) else k, _flow(v, depth + 1))
                         for k, v in items[:20])
        return '{%s%s}' % (text, ', ...' if len(items) > 20 else '')
    if isinstance(value, (list, tuple)):
        text = ', '.join(_flow(v, depth + 1) for v in list(value)[:20])
        return '[%s%s]' % (text, ', ...' if len(value) > 20 else '')
    return _flow(str(value), depth)


def cut_middle(text, limit=SHOW_MAX_CHARS):
    """text at most limit characters: the start and the end kept, the middle elided."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + '\u2026' + text[len(text) - (limit - 1 - head):]


def show(value):
    """A value as the inventory gave it, in YAML's flow style: numbers and
    true/false/null bare, text single-quoted, mappings {key: value}; long ones
    cut in the middle."""
    return cut_middle(_flow(value))


class Checker:
    """Problems of one validation run, every message in the same shape."""

    def __init__(self, labels, problems=None):
        self.labels = labels
        self.problems = problems if problems is not None else []

    def refuse(self, pid, text, key=None):
        self.problems.append(Problem(pid, self.labels.msg(text), key=key))

    def invalid(self, where, value, allowed, pid='invalid_value', key=None):
        self.refuse(pid, '%s = %s; allowed: %s' % (where, show(value), allowed), key)

    def check(self, where, value, parse, *args, **kwargs):
        """parse(value, *args), or INVALID with a problem (options pid='invalid_value', key=None)."""
        pid = kwargs.pop('pid', 'invalid_value')
        key = kwargs.pop('key', None)
        try:
            return parse(value, *args, **kwargs)
        except Invalid as exc:
            self.invalid(where, value, exc, pid, key)
            return INVALID

    def force(self, force):
        """Refuse guard ids that no guard has: a typo would otherwise force nothing, silently."""
        unknown = sorted(set(str(f) for f in force or []) - set(GUARD_IDS))
        if unknown:
            self.refuse('invalid_value', '%s names no guard: %s; allowed: the guard ids %s' % (
                self.labels.var('force'), ', '.join(unknown), ', '.join(GUARD_IDS)), key='force')

    def shared(self, params):
        """The problems of what every concern of a run shares: oomguard_force and the inventory's variable names."""
        self.force(params.get('force'))
        self.variables(params.get('inventory_variables'))

    def variables(self, names):
        """Refuse oomguard_* variables the collection does not know, each with the nearest known name."""
        for name in sorted(set(str(n) for n in names or []) - set(KNOWN_VARIABLES)):
            if not name.startswith('oomguard_'):
                continue
            # Compared without the prefix every name shares, which would make any two look alike;
            # a name far longer than any known one is no typo of one (and difflib's cost grows with it).
            near = difflib.get_close_matches(name[len('oomguard_'):], [k[len('oomguard_'):] for k in KNOWN_VARIABLES],
                                             1, 0.7) if len(name) <= VARIABLE_MAX_CHARS else []
            self.refuse('unknown_variable', '%s is not a variable of oomguard.linux%s; allowed: the variables of '
                        'the roles and playbooks (roles/*/README.md)' % (
                            cut_middle(name), ' (did you mean oomguard_%s?)' % near[0] if near else ''),
                        key=cut_middle(name))

    def known(self, where, entry, allowed):
        """(key, value, item) of an entry's settings that are set; unknown keys refused."""
        for key in sorted(entry, key=str):
            if entry[key] is None:
                continue
            item = '%s[%s]' % (where, key)
            if key not in allowed:
                self.refuse('invalid_name', '%s: unknown setting; allowed: %s' % (item, ', '.join(sorted(allowed))))
                continue
            yield key, entry[key], item

    def limits(self, where, sizes, values):
        """Refuse memory limits out of the kernel's order."""
        for lower, higher in limit_order(sizes):
            self.refuse('inconsistent_limits', '%s: %s (%s) is above %s (%s); the kernel expects '
                        'memory_min <= memory_low <= memory_high <= memory_max'
                        % (where, lower, values[lower], higher, values[higher]))
