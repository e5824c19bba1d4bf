# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-unit OOM settings (oomguard_services): validation and systemd drop-ins.

The judge layer of the per-service hardening (issue 6): it checks every
entry of ``oomguard_services`` against systemd's own syntax and against the
host (RAM for percentages, the NUMA nodes that exist), and renders the
drop-in a unit gets.  Pure: the live state comes in as data.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

# inventory key -> (systemd property, kind)
PROPERTIES = {
    'memory_max': ('MemoryMax', 'size'),
    'memory_high': ('MemoryHigh', 'size'),
    'memory_low': ('MemoryLow', 'size'),
    'memory_min': ('MemoryMin', 'size'),
    'memory_swap_max': ('MemorySwapMax', 'size'),
    'allowed_memory_nodes': ('AllowedMemoryNodes', 'nodes'),
    'oom_score_adj': ('OOMScoreAdjust', 'adj'),
    'oom_policy': ('OOMPolicy', 'policy'),
    'cpu_weight': ('CPUWeight', 'weight'),
}
# Settings of the processes a service starts: a slice has none.
SERVICE_ONLY = ('oom_score_adj', 'oom_policy')
OOM_POLICIES = ('continue', 'stop', 'kill')
# CPUWeight=: systemd's range; 100 is every unit's default share.
CPU_WEIGHT_RANGE = (1, 10000)
UNIT_SUFFIXES = ('.service', '.slice')
SECTIONS = {'.service': 'Service', '.slice': 'Slice'}

# systemd's size syntax (parse_size, base 1024): a number with an optional
# K/M/G/T suffix, a percentage of physical memory, or infinity.
_SIZE_RE = re.compile(r'^(\d+(?:\.\d+)?)([KMGT]?)$')
_PERCENT_RE = re.compile(r'^(\d+(?:\.\d+)?)%$')
_FACTORS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}
_UNIT_RE = re.compile(r'^[A-Za-z0-9:_.\\@-]+$')
_NODES_RE = re.compile(r'^\d+(-\d+)?([ ,]+\d+(-\d+)?)*$')
# A limit in the order systemd applies them: min <= low <= high <= max.
_LIMIT_ORDER = ('memory_min', 'memory_low', 'memory_high', 'memory_max')


class SettingError(Exception):
    """A value that is not what systemd takes."""


def parse_size(value, mem_total_bytes):
    """Bytes of a systemd size, or None for infinity; SettingError otherwise."""
    if isinstance(value, bool):
        raise SettingError('a size like 512M, 2G, 25% or infinity, not a boolean')
    if isinstance(value, int):
        if value < 0:
            raise SettingError('a size cannot be negative')
        return value
    text = str(value).strip()
    if text == 'infinity':
        return None
    match = _SIZE_RE.match(text)
    if match:
        return int(float(match.group(1)) * _FACTORS[match.group(2)])
    match = _PERCENT_RE.match(text)
    if match:
        percent = float(match.group(1))
        if percent > 100:
            raise SettingError('a percentage of RAM is at most 100%')
        return int(mem_total_bytes * percent / 100)
    raise SettingError('a size like 512M, 2G, 25% or infinity (suffixes K, M, G, T, base 1024)')


def parse_integer(value, bounds, note=''):
    """An integer within bounds (low, high), from an int or its text; SettingError otherwise."""
    if isinstance(value, bool) or not re.match(r'^\s*-?\d+\s*$', str(value)) \
            or not bounds[0] <= int(value) <= bounds[1]:
        raise SettingError('an integer %d..%d%s' % (bounds[0], bounds[1], note))
    return int(value)


def parse_nodes(value):
    """A NUMA node list ('0', '0-1', '0,2', '0 2-3') -> sorted node numbers."""
    text = ' '.join(str(value).replace(',', ' ').split()) if not isinstance(value, list) else \
        ' '.join(str(v) for v in value)
    if not _NODES_RE.match(text):
        raise SettingError('a node list like 0, 0-1 or 0,2')
    nodes = set()
    for part in text.split():
        low, dummy, high = part.partition('-')
        low = int(low)
        high = int(high) if high else low
        if high < low:
            raise SettingError('a range must go up (%s)' % part)
        nodes.update(range(low, high + 1))
    return sorted(nodes)


def unit_name(name):
    """The full unit name: a bare name is a service."""
    name = str(name).strip()
    return name if name.endswith(UNIT_SUFFIXES) else name + '.service'


def validate_services(services, live, labels, var='oomguard_services'):
    """Validate every unit's settings. Returns (settings, problems).

    settings: {unit: {key: systemd value text}}; problems: list of (id, message).
    live: {'mem_total_bytes', 'numa_nodes': [0, 1, ...]}.
    """
    settings = {}
    problems = []

    def refuse(pid, text):
        problems.append((pid, labels.msg(text)))

    if not isinstance(services, dict):
        refuse('wrong_type', '%s must be a mapping of unit -> settings, not %s' % (var, type(services).__name__))
        return settings, problems
    for raw_unit in sorted(services, key=str):
        entry = services[raw_unit]
        unit = unit_name(raw_unit)
        where = "%s['%s']" % (var, raw_unit)
        if not _UNIT_RE.match(unit) or unit.startswith(('.', '-')):
            refuse('invalid_name', '%s: %r is not a unit name' % (var, raw_unit))
            continue
        if unit in settings:
            refuse('duplicate_key', '%s: %s is given twice' % (var, unit))
            continue
        if not isinstance(entry, dict):
            refuse('wrong_type', '%s must be a mapping of settings, not %r' % (where, entry))
            continue
        values = {}
        sizes = {}
        for key in sorted(entry):
            value = entry[key]
            if value is None:
                continue
            item = '%s[%s]' % (where, key)
            if key not in PROPERTIES:
                refuse('invalid_name', '%s: unknown setting; allowed: %s' % (item, ', '.join(sorted(PROPERTIES))))
                continue
            if key in SERVICE_ONLY and not unit.endswith('.service'):
                refuse('invalid_name', '%s: only a service has processes to adjust; %s is a %s'
                       % (item, unit, unit.rsplit('.', 1)[1]))
                continue
            prop, kind = PROPERTIES[key]
            try:
                if kind == 'size':
                    sizes[key] = parse_size(value, live['mem_total_bytes'])
                    values[prop] = str(value).strip() if not isinstance(value, int) else str(value)
                elif kind == 'nodes':
                    nodes = parse_nodes(value)
                    missing = [n for n in nodes if n not in live.get('numa_nodes', [])]
                    if missing:
                        raise SettingError('node %s does not exist; this host has node(s) %s'
                                           % (', '.join(str(n) for n in missing),
                                              ', '.join(str(n) for n in live.get('numa_nodes', []))))
                    values[prop] = ' '.join(str(n) for n in nodes)
                elif kind == 'adj':
                    values[prop] = str(parse_integer(value, (-1000, 1000)))
                elif kind == 'weight':
                    values[prop] = str(parse_integer(value, CPU_WEIGHT_RANGE, ' (100 is the default share)'))
                else:
                    if value not in OOM_POLICIES:
                        raise SettingError('one of %s' % ', '.join(OOM_POLICIES))
                    values[prop] = value
            except SettingError as exc:
                refuse('invalid_value', '%s = %r; allowed: %s' % (item, value, exc))
        given = [k for k in _LIMIT_ORDER if sizes.get(k, 0) is not None and k in sizes]
        for lower, higher in zip(given, given[1:]):
            if sizes[lower] > sizes[higher]:
                refuse('inconsistent_limits', '%s: %s (%s) is above %s (%s); systemd expects '
                       'memory_min <= memory_low <= memory_high <= memory_max'
                       % (where, lower, entry[lower], higher, entry[higher]))
        settings[unit] = values
    return settings, problems


def render_dropin(unit, values):
    """The drop-in text of one unit (properties in a fixed order)."""
    section = SECTIONS[unit[unit.rindex('.'):]]
    order = [PROPERTIES[k][0] for k in ('memory_min', 'memory_low', 'memory_high', 'memory_max',
                                        'memory_swap_max', 'allowed_memory_nodes', 'oom_score_adj',
                                        'oom_policy', 'cpu_weight')]
    lines = ['# Managed by oomguard.linux; local edits are overwritten.\n', '[%s]\n' % section]
    for prop in order:
        if prop in values:
            lines.append('%s=%s\n' % (prop, values[prop]))
    return ''.join(lines)


def dropin_path(systemd_dir, unit):
    return '%s/%s.d/90-oomguard.conf' % (systemd_dir, unit)
