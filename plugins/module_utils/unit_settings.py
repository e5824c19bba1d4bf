# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The unit settings' inventory (oomguard_services, oomguard_cgroups, oomguard_processes): validation and drop-ins.

The judge layer of the per-unit hardening: every entry of the three
inventory dicts is validated here, and only here, against systemd's own
syntax and the host (RAM for percentages, the NUMA nodes that exist), and a
unit's drop-in is rendered.  Pure: the live state comes in as data.
"""


import re

from ansible_collections.oomguard.linux.plugins.module_utils import schema

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
    # systemd-oomd's counterpart of oom_score_adj (systemd 248).
    'managed_oom_preference': ('ManagedOOMPreference', 'preference'),
}
# Settings of the processes a service starts: a slice has none.
SERVICE_ONLY = ('oom_score_adj', 'oom_policy')
OOM_POLICIES = ('continue', 'stop', 'kill')
OOMD_PREFERENCES = ('none', 'avoid', 'omit')
# CPUWeight=: systemd's range; 100 is every unit's default share.
CPU_WEIGHT_RANGE = (1, 10000)
OOM_SCORE_ADJ_RANGE = (-1000, 1000)
# The parser and its arguments of each kind of value that is not a size or a node list.
KIND_PARSERS = {
    'adj': (schema.integer,) + OOM_SCORE_ADJ_RANGE,
    'weight': (schema.integer,) + CPU_WEIGHT_RANGE + (' (100 is the default share)',),
    'policy': (schema.choice, OOM_POLICIES),
    'preference': (schema.choice, OOMD_PREFERENCES),
}
UNIT_SUFFIXES = ('.service', '.slice')
# systemd's other unit types (systemd.unit(5)): refused, never taken for part of a service's name.
OTHER_UNIT_TYPES = ('socket', 'device', 'mount', 'automount', 'swap', 'target', 'path', 'timer', 'scope')
SECTIONS = {'.service': 'Service', '.slice': 'Slice'}


def unit_name(name):
    """The full unit name: a bare name is a service."""
    name = str(name).strip()
    return name if name.endswith(UNIT_SUFFIXES) else name + '.service'


def validate_services(services, live, labels, var='oomguard_services'):
    """Validate every unit's settings. Returns (settings, problems).

    settings: {unit: {systemd property: value text}}; problems: [Problem].
    live: {'mem_total_bytes', 'numa_nodes': [0, 1, ...]}.
    """
    settings = {}
    checker = schema.Checker(labels)
    if not isinstance(services, dict):
        checker.refuse('wrong_type', '%s must be a mapping of unit -> settings, not %s'
                       % (var, type(services).__name__))
        return settings, checker.problems
    for raw_unit in sorted(services, key=str):
        entry = services[raw_unit]
        unit = unit_name(raw_unit)
        where = "%s['%s']" % (var, raw_unit)
        try:
            if str(raw_unit).strip().rsplit('.', 1)[-1] in OTHER_UNIT_TYPES:
                # foo.socket would otherwise become foo.socket.service, a unit that does not exist.
                raise schema.Invalid('a unit name like name.service or name.slice; a .%s has no processes '
                                     'or memory of its own to limit' % str(raw_unit).strip().rsplit('.', 1)[-1])
            schema.unit_name(unit, UNIT_SUFFIXES)
        except schema.Invalid as exc:
            checker.invalid(var, raw_unit, exc, 'invalid_name')
            continue
        if unit in settings:
            checker.refuse('duplicate_key', '%s: %s is given twice' % (var, unit))
            continue
        if not isinstance(entry, dict):
            checker.refuse('wrong_type', '%s must be a mapping of settings, not %s' % (where, schema.show(entry)))
            continue
        settings[unit] = _validate_unit(checker, unit, where, entry, live)
    return settings, checker.problems


def _validate_unit(checker, unit, where, entry, live):
    values = {}
    sizes = {}
    for key, value, item in checker.known(where, entry, PROPERTIES):
        if key in SERVICE_ONLY and not unit.endswith('.service'):
            checker.refuse('invalid_name', '%s: only a service has processes to adjust; %s is a %s'
                           % (item, unit, unit.rsplit('.', 1)[1]))
            continue
        prop, kind = PROPERTIES[key]
        if kind == 'size':
            parsed = checker.check(item, value, schema.size_bytes, live['mem_total_bytes'],
                                   zero_ok=key not in schema.NONZERO_LIMITS)
            if parsed is not schema.INVALID:
                sizes[key] = parsed
                values[prop] = str(value).strip()
        elif kind == 'nodes':
            parsed = checker.check(item, value, schema.node_list, live.get('numa_nodes', []))
            if parsed is not schema.INVALID:
                values[prop] = ' '.join(str(n) for n in parsed)
        else:
            parsed = checker.check(item, value, *KIND_PARSERS[kind])
            if parsed is not schema.INVALID:
                values[prop] = str(parsed)
    checker.limits(where, sizes, entry)
    return values


# Raw cgroup settings (oomguard_cgroups) and the scope of units_apply that owns each.
CGROUP_SETTINGS = {
    'memory_max': 'limits', 'memory_high': 'limits', 'memory_low': 'limits', 'memory_min': 'limits',
    'memory_swap_max': 'limits', 'cpuset_mems': 'cpuset',
}
_CGROUP_PATH_RE = re.compile(r'^[A-Za-z0-9:_.@+=-]+(/[A-Za-z0-9:_.@+=-]+)*$')


def cgroup_path_ok(text):
    """A cgroup path relative to the hierarchy that stays inside it."""
    return bool(_CGROUP_PATH_RE.match(text)) and not set(('..', '.')) & set(text.split('/'))


def validate_cgroups(cgroups, live, labels, scopes, var='oomguard_cgroups'):
    """Validate every raw cgroup's settings. Returns (cgroups, problems).

    cgroups: [(path relative to the hierarchy, where, {setting: node list or bytes})]
    for the settings of the scopes asked for.
    """
    checker = schema.Checker(labels)
    found = []
    if not isinstance(cgroups, dict):
        checker.refuse('wrong_type', '%s must be a mapping of cgroup path -> settings' % var)
        return found, checker.problems
    for rel in sorted(cgroups, key=str):
        entry = cgroups[rel]
        where = "%s['%s']" % (var, rel)
        text = str(rel).strip('/')
        if not cgroup_path_ok(text):
            checker.refuse('invalid_name', '%s: %s is not a cgroup path relative to the hierarchy '
                           '(like machine/db or docker/<id>)' % (var, schema.show(rel)))
            continue
        if not isinstance(entry, dict):
            checker.refuse('wrong_type', '%s must be a mapping of settings, not %s' % (where, schema.show(entry)))
            continue
        parsed = {}
        for setting, value, item in checker.known(where, entry, CGROUP_SETTINGS):
            if CGROUP_SETTINGS[setting] not in scopes:
                continue
            if setting == 'cpuset_mems':
                result = checker.check(item, value, schema.node_list, live['numa_nodes'])
            else:
                result = checker.check(item, value, schema.size_bytes, live['mem_total_bytes'],
                                       zero_ok=setting not in schema.NONZERO_LIMITS)
            if result is not schema.INVALID:
                parsed[setting] = result
        checker.limits(where, dict((k, v) for k, v in parsed.items() if k != 'cpuset_mems'), entry)
        found.append((text, where, parsed))
    return found, checker.problems


# A process pattern is a Python regular expression (re.search on the command
# line, NULs as spaces), this long at most; it is matched with a time budget (_bounded).
MAX_PATTERN_CHARS = 512


def validate_processes(processes, labels, var='oomguard_processes'):
    """Validate the processes outside systemd. Returns ([(where, pattern, regex, oom_score_adj)], problems)."""
    checker = schema.Checker(labels)
    found = []
    if not isinstance(processes, list):
        checker.refuse('wrong_type', '%s must be a list of {match, oom_score_adj}' % var)
        return found, checker.problems
    for index, entry in enumerate(processes):
        where = '%s[%d]' % (var, index)
        if not isinstance(entry, dict) or set(entry) - set(('match', 'oom_score_adj')) \
                or 'match' not in entry or 'oom_score_adj' not in entry:
            checker.refuse('wrong_type', '%s must be {match: REGEX, oom_score_adj: -1000..1000}, not %s'
                           % (where, schema.show(entry)))
            continue
        pattern = entry['match']
        if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > MAX_PATTERN_CHARS:
            checker.invalid('%s[match]' % where, pattern, 'a non-empty Python regular expression of at most %d '
                            'characters' % MAX_PATTERN_CHARS)
            continue
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            checker.refuse('invalid_value', '%s[match] = %s is not a valid regular expression: %s'
                           % (where, schema.show(pattern), exc))
            continue
        adj = checker.check('%s[oom_score_adj]' % where, entry['oom_score_adj'], schema.integer,
                            *OOM_SCORE_ADJ_RANGE)
        if adj is not schema.INVALID:
            found.append((where, pattern, regex, adj))
    return found, checker.problems


def render_dropin(unit, values):
    """The drop-in text of one unit (properties in a fixed order)."""
    section = SECTIONS[unit[unit.rindex('.'):]]
    order = [PROPERTIES[k][0] for k in ('memory_min', 'memory_low', 'memory_high', 'memory_max',
                                        'memory_swap_max', 'allowed_memory_nodes', 'oom_score_adj',
                                        'oom_policy', 'cpu_weight', 'managed_oom_preference')]
    lines = ['# Managed by oomguard.linux; local edits are overwritten.\n', '[%s]\n' % section]
    for prop in order:
        if prop in values:
            lines.append('%s=%s\n' % (prop, values[prop]))
    return ''.join(lines)


def dropin_path(systemd_dir, unit):
    return '%s/%s.d/90-oomguard.conf' % (systemd_dir, unit)
