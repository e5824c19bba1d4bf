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


import re

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
             'limit_below_usage', 'nodes_without_room', 'unit_missing', 'pattern_too_broad')
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


def size_bytes(value, mem_total_bytes):
    """Bytes of a systemd size, or None for infinity."""
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


def limit_order(sizes):
    """(lower, higher) pairs of memory limits out of order; None (infinity) is above all."""
    given = [k for k in LIMIT_ORDER if k in sizes and sizes[k] is not None]
    return [(lower, higher) for lower, higher in zip(given, given[1:]) if sizes[lower] > sizes[higher]]


def show(value):
    """A value as the inventory gave it: numbers bare, text quoted."""
    return repr(value)


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
