# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-wide memory tunables: what may be set, to what, and whether it is safe now.

The layers, in the order ``kernel_tunables`` runs them:

* ``build_request()`` merges a profile's defaults under the user's values and
  validates every value against the catalogue (type, range, choices) and
  against what this kernel has.  Pure: it takes the live state as data.
* ``check_guards()`` judges the request against the live host (commit charge,
  RAM, cgroup limits, later sysctl.d files) and returns guard violations,
  each with an id the user may force.
* ``plan()`` lists the live changes, including the ones the kernel makes on
  its own (writing vm.overcommit_ratio zeroes vm.overcommit_kbytes), and
  renders the persistent files.

Nothing here writes; ``ledger`` and the module do.  Messages name the host,
the inventory variable, the value and what is allowed, because they end up
in front of an operator running a play over many hosts.
"""


import os
import re

from ansible_collections.oomguard.linux.plugins.module_utils import capabilities
from ansible_collections.oomguard.linux.plugins.module_utils import kernel_rules as kr
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import schema
from ansible_collections.oomguard.linux.plugins.module_utils._engine import Problem, canonical, guard

INT_MIN, INT_MAX, ULONG_MAX = schema.INT_MIN, schema.INT_MAX, schema.ULONG_MAX

# Margin kept between a strict-overcommit CommitLimit and today's commit
# charge: the charge moves with every fork and mmap, so equal is not enough.
COMMIT_MARGIN_PERCENT = 10


class Knob:
    """One tunable the collection knows: its type, its range and what it is for."""

    def __init__(self, name, low=None, high=None, choices=None, auto=False, since=None, note=''):
        self.name = name
        self.low = low
        self.high = high
        self.choices = choices
        self.auto = auto
        self.since = since
        self.note = note

    def allowed(self):
        if self.choices:
            return 'one of ' + ', '.join(str(c) for c in self.choices)
        text = schema.int_allowed(self.low, self.high)
        if self.auto:
            text += " or 'auto'"
        return text


_KNOBS = [
    Knob('vm.panic_on_oom', 0, 2, note='0 kill a task, 1 panic on a host-wide OOM, 2 panic on any OOM'),
    Knob('kernel.panic', INT_MIN, INT_MAX, note='seconds before the reboot that follows a panic; 0 never'),
    Knob('kernel.panic_on_oops', 0, 1),
    Knob('vm.overcommit_memory', 0, 2, note='0 heuristic, 1 always, 2 strict accounting'),
    # The kernel takes any int; above 1000 % is a typo, not a policy.
    Knob('vm.overcommit_ratio', 0, 1000),
    Knob('vm.overcommit_kbytes', 0, ULONG_MAX),
    Knob('vm.min_free_kbytes', 0, INT_MAX, auto=True),
    # 1..1000 is what every kernel accepts (5.19 raised the top to 3000).
    Knob('vm.watermark_scale_factor', 1, 1000),
    Knob('vm.watermark_boost_factor', 0, INT_MAX),
    Knob('vm.oom_kill_allocating_task', 0, 1),
    Knob('vm.oom_dump_tasks', 0, 1),
    Knob('vm.compaction_proactiveness', 0, 100, since=(5, 9)),
    Knob('vm.extfrag_threshold', 0, 1000),
    Knob('vm.swappiness', 0, 200),
    Knob('vm.vfs_cache_pressure', 0, INT_MAX),
    Knob('vm.admin_reserve_kbytes', 0, ULONG_MAX),
    Knob('vm.user_reserve_kbytes', 0, ULONG_MAX),
    Knob('vm.zone_reclaim_mode', 0, 7),
    Knob('vm.dirty_ratio', 0, 100),
    Knob('vm.dirty_background_ratio', 0, 100),
    # The kernel refuses 0 here (two pages / one byte at least); to go back to
    # the ratio, set the ratio, which zeroes these.
    Knob('vm.dirty_bytes', 8192, ULONG_MAX),
    Knob('vm.dirty_background_bytes', 1, ULONG_MAX),
    Knob('vm.nr_hugepages', 0, ULONG_MAX),
]
SYSCTL_KNOBS = dict((k.name, k) for k in _KNOBS)

# Writing one of a pair makes the kernel zero the other (mm/util.c,
# mm/page-writeback.c): only one may be set, and the plan must expect the zero.
COUPLED = {
    'vm.overcommit_ratio': 'vm.overcommit_kbytes',
    'vm.overcommit_kbytes': 'vm.overcommit_ratio',
    'vm.dirty_ratio': 'vm.dirty_bytes',
    'vm.dirty_bytes': 'vm.dirty_ratio',
    'vm.dirty_background_ratio': 'vm.dirty_background_bytes',
    'vm.dirty_background_bytes': 'vm.dirty_background_ratio',
}

# Triggers, not settings: a value written to them is an action.
WRITE_ONLY = {
    'vm.compact_memory': "it is a one-shot trigger; use oomguard_thp.compaction_schedule",
    'vm.drop_caches': 'it is a one-shot trigger, not a setting',
    'vm.stat_refresh': 'it is a one-shot trigger, not a setting',
}

THP_DIR = procfs.THP_DIR
THP_KNOBS = {
    'enabled': Knob('transparent_hugepage.enabled', choices=['always', 'madvise', 'never']),
    'defrag': Knob('transparent_hugepage.defrag',
                   choices=['always', 'defer', 'defer+madvise', 'madvise', 'never']),
    'khugepaged_defrag': Knob('transparent_hugepage.khugepaged.defrag', choices=[0, 1]),
}
THP_PATHS = {
    'enabled': THP_DIR + '/enabled',
    'defrag': THP_DIR + '/defrag',
    'khugepaged_defrag': THP_DIR + '/khugepaged/defrag',
}

COMPACTION_METHODS = ('auto', 'proactive', 'timer')

# -- profiles ---------------------------------------------------------------
# Defaults per workload, merged under the user's own values (the user wins).
# docs/tunables.md gives the reason for every value.
_BASE_SYSCTL = {
    'vm.oom_dump_tasks': 1,           # keep the task table in every OOM report
    'vm.oom_kill_allocating_task': 0,  # kill the biggest, not whoever asked last
    'vm.panic_on_oom': 0,
}
PROFILES = {
    'none': {'sysctl': {}, 'thp': {}, 'compaction': {}},
    'default': {
        'sysctl': dict(_BASE_SYSCTL),
        'thp': {'enabled': 'madvise', 'defrag': 'madvise'},
        'compaction': {},
    },
    'latency_sensitive': {
        'sysctl': dict(_BASE_SYSCTL, **{
            'vm.min_free_kbytes': 'auto',
            'vm.watermark_scale_factor': 200,
            'vm.swappiness': 10,
        }),
        'thp': {'enabled': 'never', 'defrag': 'never'},
        'compaction': {'proactiveness': 20, 'schedule': '*-*-* 03:30:00'},
    },
    'database': {
        'sysctl': dict(_BASE_SYSCTL, **{
            'vm.min_free_kbytes': 'auto',
            'vm.swappiness': 1,
        }),
        'thp': {'enabled': 'never', 'defrag': 'never'},
        'compaction': {},
    },
    'batch': {
        'sysctl': dict(_BASE_SYSCTL, **{
            'vm.panic_on_oom': 1,
            'kernel.panic': 10,
        }),
        'thp': {'enabled': 'always', 'defrag': 'madvise'},
        'compaction': {'proactiveness': 20, 'schedule': '*-*-* 03:30:00'},
    },
}

SCOPES = ('sysctl', 'thp', 'compaction')


# -- reading the live state the guards need -----------------------------------

def read_live(host, sysctl_names, need_cgroups=False):
    """The live state a request is judged against, as plain data."""
    meminfo_kb, hugepages = procfs.read_meminfo(host)
    zones = procfs.read_zoneinfo(host) or []
    sysctls = {}
    # What the guards and the plan read besides the requested keys.
    always = set(['vm.panic_on_oom', 'kernel.panic', 'vm.overcommit_memory', 'vm.overcommit_ratio',
                  'vm.overcommit_kbytes', 'vm.min_free_kbytes', 'vm.compaction_proactiveness'])
    partners = set(COUPLED[n] for n in sysctl_names if n in COUPLED)
    for name in sorted(set(sysctl_names) | always | partners):
        rel = procfs.sysctl_path(name)
        try:
            text = host.read(rel)
        except procfs.ReadError as exc:
            sysctls[name] = {'exists': True, 'error': exc.reason}
            continue
        if text is None:
            sysctls[name] = {'exists': False}
        else:
            sysctls[name] = {'exists': True, 'text': text, 'writable': _writable(host, rel)}
    thp = {}
    for key, rel in THP_PATHS.items():
        text = host.read(rel)
        if text is None:
            thp[key] = None
            continue
        if key == 'khugepaged_defrag':
            thp[key] = {'selected': text.strip(), 'options': ['0', '1']}
        else:
            selected, options = procfs.parse_bracketed(text)
            thp[key] = {'selected': selected, 'options': options}
    release = host.read('proc/sys/kernel/osrelease')
    live = {
        'mem_total_kb': meminfo_kb.get('MemTotal'),
        'committed_as_kb': meminfo_kb.get('Committed_AS'),
        'commit_limit_kb': meminfo_kb.get('CommitLimit'),
        'swap_total_kb': meminfo_kb.get('SwapTotal', 0),
        'hugetlb_kb': (hugepages.get('HugePages_Total', 0) or 0) * (meminfo_kb.get('Hugepagesize', 0) or 0),
        'lowmem_kb': kr.lowmem_kb(meminfo_kb),
        'kernel_default_min_free_kb': kr.min_free_default_kb(zones, release, meminfo_kb),
        'khugepaged_min_free_kb': kr.khugepaged_min_free_kb(zones, meminfo_kb.get('Hugepagesize') or 2048),
        'kernel_release': release.strip() if release else None,
        'sysctls': sysctls,
        'thp': thp,
        'systemd': host.exists('run/systemd/system'),
        'limited_cgroups': None,
    }
    if need_cgroups:
        live['limited_cgroups'] = limited_cgroups(host)
    return live


def _writable(host, rel):
    try:
        mode = os.stat(host.path(rel)).st_mode
    except OSError:
        return False
    return bool(mode & 0o222)


def limited_cgroups(host):
    """Paths of memory cgroups with a memory limit of their own (bounded walk)."""
    from ansible_collections.oomguard.linux.plugins.module_utils import cgroups
    layout = cgroups.read_layout(host)
    found, dummy = cgroups.read_memory_cgroups(host, layout, max_cgroups=2000)
    return [c['path'] for c in found if c.get('max_bytes') is not None]


# -- the request --------------------------------------------------------------

_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.:\-]*(/[A-Za-z0-9_][A-Za-z0-9_.:\-]*)*$')


def normalize_name(name):
    """'vm/panic_on_oom' and 'vm.panic_on_oom' name the same sysctl."""
    return name.strip().replace('/', '.')


def _as_int(value):
    """An int from an int or a decimal string; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.match(r'^\s*-?\d+\s*$', value):
        return int(value)
    return None


class Request:
    """What one module call is asked to reach, validated and resolved."""

    def __init__(self):
        self.sysctl = {}        # name -> canonical text to write
        self.sysctl_scope = {}  # name -> scope that owns it ('sysctl' or 'compaction')
        self.thp = {}           # key -> text to write
        self.timer_schedule = None
        self.compaction_method = None
        self.resolved = {}      # what 'auto' became
        self.skipped = []       # keys this kernel lacks, skipped on request
        self.errors = []
        self.persist_thp = True


def build_request(params, live, labels):
    """Merge profile defaults and user values, validate them all, resolve 'auto'.

    params: profile, scopes, sysctl, thp, compaction, unsupported ('fail'|'skip').
    Every problem is collected so the operator sees them all in one run.
    """
    req = Request()
    profile_name = params.get('profile') or 'none'
    if profile_name not in PROFILES:
        req.errors.append(Problem('invalid_value', labels.msg(
            '%s = %s is not a profile; allowed: %s'
            % (labels.var('profile'), schema.show(profile_name), ', '.join(sorted(PROFILES))))))
        return req
    profile = PROFILES[profile_name]
    scopes = params.get('scopes') or list(SCOPES)
    skip_unsupported = params.get('unsupported') == 'skip'

    if 'sysctl' in scopes:
        # The user's spelling wins over the profile's for the same sysctl
        # ('vm/x' and 'vm.x' are one key); two spellings from the user are
        # reported as a duplicate by the validation.
        user = params.get('sysctl') or {}
        user_names = set(normalize_name(str(k)) for k in user)
        merged = dict((k, v) for k, v in profile['sysctl'].items() if normalize_name(k) not in user_names)
        merged.update(user)
        _validate_sysctls(req, merged, 'sysctl', live, labels, skip_unsupported)
    # The thp role's oomguard_thp carries compaction_* keys too.
    thp_values, compaction_values = {}, {}
    for key, value in (params.get('thp') or {}).items():
        if value is None:
            continue
        if str(key).startswith('compaction_'):
            compaction_values[str(key)[len('compaction_'):]] = value
        else:
            thp_values[key] = value
    compaction_values.update(dict((k, v) for k, v in (params.get('compaction') or {}).items() if v is not None))
    if 'thp' in scopes:
        merged = dict(profile['thp'])
        merged.update(thp_values)
        _validate_thp(req, merged, live, labels, skip_unsupported)
    if 'compaction' in scopes:
        merged = dict(profile['compaction'])
        merged.update(compaction_values)
        _validate_compaction(req, merged, live, labels, skip_unsupported)
    return req


def _unsupported(req, labels, scope, key, value, reason, skip):
    if skip:
        req.skipped.append({'key': key, 'reason': reason})
        return
    req.errors.append(Problem('unsupported', labels.msg(
        '%s = %s: %s; remove it, or set unsupported: skip to leave out what this kernel lacks'
        % (labels.var(scope, key), schema.show(value), reason)), key=key))


_MANAGED_VM_RE = re.compile(r'^vm\.[a-z0-9_]+$')


def managed_sysctl(name):
    """A sysctl this collection sets (and so restore may put back): the catalogue's knobs and vm.*, never a trigger.

    kernel.core_pattern, kernel.modprobe and their like are no OOM setting, and a
    ledger that named one could run a program as root: they are outside.
    """
    return name not in WRITE_ONLY and (name in SYSCTL_KNOBS or bool(_MANAGED_VM_RE.match(name)))


def managed_sysctls_text():
    return 'vm.* (but %s) and %s' % (', '.join(sorted(WRITE_ONLY)),
                                     ', '.join(sorted(k for k in SYSCTL_KNOBS if not k.startswith('vm.'))))


def _validate_sysctls(req, values, scope, live, labels, skip_unsupported):
    for raw_name in sorted(values):
        value = values[raw_name]
        name = normalize_name(str(raw_name))
        var = labels.var(scope, raw_name)
        if not _NAME_RE.match(str(raw_name).strip()) or '..' in name:
            req.errors.append(Problem('invalid_name', labels.msg(
                '%s: %s is not a sysctl name (expected dotted words like vm.panic_on_oom)'
                % (labels.var(scope), schema.show(raw_name))), key=name))
            continue
        if name in WRITE_ONLY:
            req.errors.append(Problem('write_only', labels.msg(
                '%s: cannot be managed, %s' % (var, WRITE_ONLY[name])), key=name))
            continue
        if not managed_sysctl(name):
            req.errors.append(Problem('invalid_name', labels.msg(
                '%s: not an OOM sysctl; allowed: %s' % (var, managed_sysctls_text())), key=name))
            continue
        if name in req.sysctl:
            req.errors.append(Problem('duplicate_key', labels.msg(
                '%s is set twice (as %s and in %s); keep one'
                % (name, var, labels.var(req.sysctl_scope[name]))), key=name))
            continue
        state = live['sysctls'].get(name) or {'exists': False}
        if value is None or value == '':
            req.errors.append(Problem('wrong_type', labels.msg(
                '%s is empty; allowed: %s'
                % (var, SYSCTL_KNOBS[name].allowed() if name in SYSCTL_KNOBS else 'a value')), key=name))
            continue
        knob = SYSCTL_KNOBS.get(name)
        text = None
        if knob is not None:
            text = _validate_int_knob(req, knob, value, var, live, labels)
            if text is None:
                continue
        else:
            if isinstance(value, bool) or isinstance(value, (dict, float)):
                req.errors.append(Problem('wrong_type', labels.msg(
                    '%s = %s: expected an integer, a string or a list of integers' % (var, schema.show(value))),
                    key=name))
                continue
            if isinstance(value, list):
                if not all(_as_int(v) is not None for v in value):
                    req.errors.append(Problem('wrong_type', labels.msg(
                        '%s = %s: a list must hold integers only' % (var, schema.show(value))), key=name))
                    continue
                text = ' '.join(str(_as_int(v)) for v in value)
            else:
                text = canonical(value)
                if '\n' in str(value):
                    req.errors.append(Problem('wrong_type', labels.msg(
                        '%s: a value must be one line' % var), key=name))
                    continue
        if not state.get('exists'):
            needs = capabilities.kernel_needed(name, live.get('kernel_release'))
            added = ' (Linux %s added it)' % needs if needs else ''
            _unsupported(req, labels, scope, raw_name, value,
                         'this kernel (%s) has no /%s%s' % (live.get('kernel_release'), procfs.sysctl_path(name), added),
                         skip_unsupported)
            continue
        if state.get('error'):
            req.errors.append(Problem('unreadable', labels.msg(
                '%s: cannot read /%s: %s' % (var, procfs.sysctl_path(name), state['error'])), key=name))
            continue
        if not state.get('writable', True):
            _unsupported(req, labels, scope, raw_name, value,
                         '/%s is read-only on this kernel' % procfs.sysctl_path(name), skip_unsupported)
            continue
        req.sysctl[name] = text
        req.sysctl_scope[name] = scope
    # Both halves of a coupled pair: the kernel keeps only the last one written.
    for name in sorted(req.sysctl):
        partner = COUPLED.get(name)
        if partner and partner in req.sysctl and name < partner and req.sysctl_scope[name] == scope:
            req.errors.append(Problem('exclusive_pair', labels.msg(
                '%s and %s are both set; the kernel zeroes one when the other is written, so set '
                'only one of them' % (labels.var(scope, name), labels.var(scope, partner))), key=name))


def _validate_int_knob(req, knob, value, var, live, labels):
    if knob.auto and isinstance(value, str) and value.strip() == 'auto':
        resolved = kr.auto_min_free_kb(live['mem_total_kb'], live.get('kernel_default_min_free_kb'),
                                       live.get('khugepaged_min_free_kb'))
        req.resolved[knob.name] = resolved
        return str(resolved)
    high = knob.high
    if knob.name == 'vm.swappiness':
        version = kr.kernel_version(live.get('kernel_release'))
        if version is not None and version < (5, 8):
            high = 100  # 200 arrived with 5.8
    try:
        return str(schema.integer(value, knob.low, high))
    except schema.Invalid:
        pid = 'wrong_type' if _as_int(value) is None else 'out_of_range'
        allowed = Knob(knob.name, knob.low, high, auto=knob.auto).allowed()
        schema.Checker(labels, req.errors).invalid(var, value, allowed, pid, key=knob.name)
        return None


def _validate_thp(req, values, live, labels, skip_unsupported):
    for key in sorted(values):
        value = values[key]
        var = labels.var('thp', key)
        if key not in THP_KNOBS:
            req.errors.append(Problem('invalid_name', labels.msg(
                '%s: unknown key; allowed: %s' % (var, ', '.join(sorted(THP_KNOBS)))), key=key))
            continue
        knob = THP_KNOBS[key]
        if key == 'khugepaged_defrag':
            if isinstance(value, bool):
                value = int(value)
            number = _as_int(value)
            if number not in (0, 1):
                req.errors.append(Problem('out_of_range', labels.msg(
                    '%s = %s; allowed: 0, 1 (or true/false)' % (var, schema.show(value))), key=knob.name))
                continue
            text = str(number)
        else:
            text = value if isinstance(value, str) else None
            if text not in knob.choices:
                req.errors.append(Problem('invalid_choice', labels.msg(
                    '%s = %s; allowed: %s' % (var, schema.show(value), knob.allowed())), key=knob.name))
                continue
        state = live['thp'].get(key)
        if state is None:
            _unsupported(req, labels, 'thp', key, value,
                         'this kernel (%s) has no /%s' % (live.get('kernel_release'), THP_PATHS[key]),
                         skip_unsupported)
            continue
        if text not in state['options']:
            _unsupported(req, labels, 'thp', key, value,
                         'this kernel offers only %s' % ', '.join(state['options']), skip_unsupported)
            continue
        req.thp[key] = text


def _validate_compaction(req, values, live, labels, skip_unsupported):
    if not values:
        return
    unknown = sorted(set(values) - set(['method', 'proactiveness', 'schedule']))
    for key in unknown:
        req.errors.append(Problem('invalid_name', labels.msg(
            '%s: unknown key; allowed: compaction_method, compaction_proactiveness, '
            'compaction_schedule' % labels.var('compaction', key)), key=key))
    method = values.get('method') or 'auto'
    if method not in COMPACTION_METHODS:
        req.errors.append(Problem('invalid_choice', labels.msg(
            '%s = %s; allowed: %s' % (labels.var('compaction', 'method'), schema.show(method),
                                      ', '.join(COMPACTION_METHODS))), key='compaction_method'))
        return
    has_proactive = (live['sysctls'].get('vm.compaction_proactiveness') or {}).get('exists')
    if method == 'auto':
        method = 'proactive' if has_proactive else 'timer'
    req.compaction_method = method
    if method == 'proactive':
        if not has_proactive:
            _unsupported(req, labels, 'compaction', 'method', 'proactive',
                         'this kernel (%s) has no vm.compaction_proactiveness (5.9+); use method timer'
                         % live.get('kernel_release'), skip_unsupported)
            return
        if values.get('proactiveness') is None:
            req.errors.append(Problem('missing_value', labels.msg(
                '%s is required with compaction method proactive; allowed: an integer 0..100'
                % labels.var('compaction', 'proactiveness')), key='compaction_proactiveness'))
            return
        text = _validate_int_knob(req, SYSCTL_KNOBS['vm.compaction_proactiveness'],
                                  values['proactiveness'], labels.var('compaction', 'proactiveness'),
                                  live, labels)
        if text is None:
            return
        name = 'vm.compaction_proactiveness'
        if name in req.sysctl:
            req.errors.append(Problem('duplicate_key', labels.msg(
                '%s is set twice (in %s and as %s); keep one'
                % (name, labels.var(req.sysctl_scope[name]), labels.var('compaction', 'proactiveness'))),
                key=name))
            return
        req.sysctl[name] = text
        req.sysctl_scope[name] = 'compaction'
        return
    schedule = values.get('schedule')
    try:
        req.timer_schedule = schema.calendar_spec(schedule)
    except schema.Invalid as exc:
        req.errors.append(Problem('invalid_value', labels.msg('%s = %s; allowed: %s' % (
            labels.var('compaction', 'schedule'), schema.show(schedule), exc)), key='compaction_schedule'))


# -- guards -------------------------------------------------------------------

GUARDS = {
    'panic_without_reboot': 'vm.panic_on_oom is not 0 while kernel.panic is 0: the host would hang in '
                            'panic forever instead of rebooting',
    'panic_on_cgroup_oom': 'vm.panic_on_oom = 2 panics the whole host for the OOM of one cgroup, and '
                           'this host has memory cgroups with limits',
    'overcommit_below_committed': 'vm.overcommit_memory = 2 with a CommitLimit below the live commit charge '
                                  'plus %d %% fails allocations at once' % COMMIT_MARGIN_PERCENT,
    'min_free_above_5_percent': 'vm.min_free_kbytes above %d %% of RAM keeps that memory out of use and '
                                'can start an OOM at once' % kr.MIN_FREE_MAX_PERCENT,
    'min_free_below_default': 'vm.min_free_kbytes below the kernel\'s own default leaves too little for '
                              'atomic allocations and reclaim',
    'persist_shadowed': 'a sysctl file read after the collection\'s sets the same key to another value, '
                        'so the value would change at the next boot',
    'thp_not_persistent': 'transparent huge page settings are kept across reboots by a systemd unit, and '
                          'this host does not run systemd',
}


def _effective(req, live, name):
    if name in req.sysctl:
        return _as_int(req.sysctl[name])
    state = live['sysctls'].get(name) or {}
    return _as_int((state.get('text') or '').strip())


def check_guards(req, live, labels, shadows=None):
    """Guard violations of a validated request against the live state."""
    found = []

    def fire(gid, key, detail):
        found.append(guard(labels, gid, key, detail))

    def var(name):
        scope = req.sysctl_scope.get(name, 'sysctl')
        if scope == 'compaction':
            return labels.var('compaction', 'proactiveness')
        return labels.var(scope, name)

    panic = _effective(req, live, 'vm.panic_on_oom')
    if 'vm.panic_on_oom' in req.sysctl or 'kernel.panic' in req.sysctl:
        if panic and _effective(req, live, 'kernel.panic') == 0:
            fire('panic_without_reboot', 'vm.panic_on_oom',
                 '%s = %s while kernel.panic is 0 hangs the host in panic forever; allowed: set '
                 "%s to the seconds before reboot (> 0, e.g. 10)"
                 % (var('vm.panic_on_oom'), panic, var('kernel.panic')))
        if panic == 2 and live.get('limited_cgroups'):
            cgroups = live['limited_cgroups']
            fire('panic_on_cgroup_oom', 'vm.panic_on_oom',
                 '%s = 2 would reboot the host for the OOM of any one of its %d memory cgroups with a '
                 'limit (%s%s); allowed: 0 or 1'
                 % (var('vm.panic_on_oom'), len(cgroups), ', '.join(cgroups[:3]),
                    ', ...' if len(cgroups) > 3 else ''))

    overcommit_keys = ('vm.overcommit_memory', 'vm.overcommit_ratio', 'vm.overcommit_kbytes')
    if any(k in req.sysctl for k in overcommit_keys) and _effective(req, live, 'vm.overcommit_memory') == 2:
        limit_kb = commit_limit_kb(req, live)
        need_kb = (live.get('committed_as_kb') or 0) * (100 + COMMIT_MARGIN_PERCENT) // 100
        if limit_kb is not None and limit_kb < need_kb:
            fire('overcommit_below_committed', 'vm.overcommit_memory',
                 '%s = 2 gives a CommitLimit of %d kB, below the live Committed_AS %d kB + %d %% (%d kB); '
                 'allocations would fail at once; allowed: a vm.overcommit_ratio or vm.overcommit_kbytes '
                 'that gives at least %d kB' % (var('vm.overcommit_memory'), limit_kb,
                                                live.get('committed_as_kb') or 0, COMMIT_MARGIN_PERCENT,
                                                need_kb, need_kb))

    if 'vm.min_free_kbytes' in req.sysctl:
        value = _as_int(req.sysctl['vm.min_free_kbytes'])
        low = live.get('lowmem_kb') or live.get('mem_total_kb') or 0
        ceiling = kr.min_free_ceiling_kb(low)
        floor = live.get('kernel_default_min_free_kb')
        verdict = kr.min_free_verdict(value, low, floor)
        if verdict == 'above_ceiling':
            what = 'RAM (%d kB of MemTotal %d kB)' % (ceiling, live.get('mem_total_kb') or 0) \
                if low == live.get('mem_total_kb') else 'low memory (%d kB of %d kB)' % (ceiling, low)
            fire('min_free_above_5_percent', 'vm.min_free_kbytes',
                 '%s = %d kB is above %d %% of %s; allowed: %s..%d'
                 % (var('vm.min_free_kbytes'), value, kr.MIN_FREE_MAX_PERCENT, what, floor or 0, ceiling))
        elif verdict == 'below_default':
            fire('min_free_below_default', 'vm.min_free_kbytes',
                 "%s = %d kB is below the kernel's own default %d kB (4 x sqrt of lowmem kB); allowed: "
                 '%d..%d' % (var('vm.min_free_kbytes'), value, floor, floor, ceiling))

    for shadow in shadows or []:
        fire('persist_shadowed', shadow['key'],
             '%s = %s is written to %s, but %s (read later at boot) sets %s; the value would change at '
             'the next boot; allowed: remove the key from that file, or the same value'
             % (var(shadow['key']), req.sysctl.get(shadow['key']), shadow['ours'], shadow['file'],
                shadow['value']))

    if req.thp and not live.get('systemd') and req.persist_thp:
        fire('thp_not_persistent', 'thp',
             '%s: this host does not run systemd, so the values would be lost at reboot; allowed on '
             'systemd hosts only' % labels.var('thp'))
    return found


def commit_limit_kb(req, live):
    """CommitLimit the request would give (writing one of the pair zeroes the other)."""
    kbytes = _effective(req, live, 'vm.overcommit_kbytes')
    ratio = _effective(req, live, 'vm.overcommit_ratio')
    if 'vm.overcommit_ratio' in req.sysctl:
        kbytes = 0
    elif 'vm.overcommit_kbytes' in req.sysctl:
        ratio = 0
    return kr.commit_limit_kb(kbytes, ratio, live.get('mem_total_kb'), live.get('hugetlb_kb'),
                              live.get('swap_total_kb'))


# -- sysctl.d: what is read after our file at boot -----------------------------

SYSCTL_DIRS = ('/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d', '/usr/lib/sysctl.d', '/lib/sysctl.d')


def parse_sysctl_conf(text):
    """{name: canonical value} of a sysctl.d file (systemd-sysctl's syntax)."""
    values = {}
    for line in (text or '').splitlines():
        line = line.strip()
        if not line or line[0] in '#;':
            continue
        key, sep, value = line.partition('=')
        if not sep:
            continue
        key = normalize_name(key.strip().lstrip('-'))
        values[key] = canonical(value)
    return values


def boot_order(host, dirs=SYSCTL_DIRS):
    """The sysctl.d files systemd-sysctl reads, in its order: [(basename, path)].

    A name in an earlier directory masks the same name in later ones; the
    survivors are read sorted by name.  /etc/sysctl.conf comes last (procps
    reads it after the directories; Debian also links it as 99-sysctl.conf).
    """
    chosen = {}
    for directory in dirs:
        for name in host.listdir(directory):
            if name.endswith('.conf') and name not in chosen:
                chosen[name] = directory + '/' + name
    order = sorted(chosen.items())
    real = set(os.path.realpath(host.path(p)) for dummy, p in order)
    if os.path.realpath(host.path('/etc/sysctl.conf')) not in real and host.exists('/etc/sysctl.conf'):
        order.append(('sysctl.conf', '/etc/sysctl.conf'))
    return order


def find_shadows(host, our_path, wanted, dirs=SYSCTL_DIRS):
    """Files read after ours that set one of our keys to another value: [{key, value, file, ours}]."""
    ours = os.path.basename(our_path)
    our_real = os.path.realpath(host.path(our_path))
    shadows = []
    for name, path in boot_order(host, dirs):
        later = name > ours or path == '/etc/sysctl.conf'
        if not later or os.path.realpath(host.path(path)) == our_real:
            continue
        try:
            text = host.read(path)
        except procfs.ReadError:
            continue
        for key, value in sorted(parse_sysctl_conf(text).items()):
            if key in wanted and value != wanted[key]:
                shadows.append({'key': key, 'value': value, 'file': path, 'ours': our_path})
    return shadows


# -- the plan -------------------------------------------------------------------

# Order of live writes and of lines in the files: never a moment with
# panic_on_oom set and kernel.panic 0, or strict overcommit with the old ratio.
_FIRST = ('kernel.panic', 'vm.overcommit_kbytes', 'vm.overcommit_ratio')
_LAST = ('vm.overcommit_memory', 'vm.panic_on_oom')


def write_order(names):
    def rank(name):
        if name in _FIRST:
            return (0, _FIRST.index(name), name)
        if name in _LAST:
            return (2, _LAST.index(name), name)
        return (1, 0, name)
    return sorted(names, key=rank)


def plan_values(req, live):
    """Live changes the request makes: [{key, kind, path, before, after, cause}]."""
    changes = []
    for key in ('enabled', 'defrag', 'khugepaged_defrag'):
        if key not in req.thp:
            continue
        before = live['thp'][key]['selected']
        if before != req.thp[key]:
            changes.append({'key': THP_KNOBS[key].name, 'kind': 'thp', 'path': '/' + THP_PATHS[key],
                            'before': before, 'after': req.thp[key], 'cause': 'requested'})
    # Writing THP 'enabled' makes the kernel recompute vm.min_free_kbytes
    # (khugepaged's recommendation when it starts, the kernel default when it
    # stops), so a requested value is written after it even when it equals
    # today's: today's value does not survive the THP write.
    thp_enabled_changes = any(c['key'] == THP_KNOBS['enabled'].name for c in changes)
    for name in write_order(req.sysctl):
        before = canonical(live['sysctls'][name]['text'])
        after = req.sysctl[name]
        if before != after or (name == 'vm.min_free_kbytes' and thp_enabled_changes):
            changes.append({'key': name, 'kind': 'sysctl', 'path': '/' + procfs.sysctl_path(name),
                            'before': before, 'after': after, 'cause': 'requested'})
            partner = COUPLED.get(name)
            state = live['sysctls'].get(partner) or {}
            if partner and partner not in req.sysctl and state.get('text') is not None \
                    and canonical(state['text']) != '0':
                changes.append({'key': partner, 'kind': 'sysctl', 'path': '/' + procfs.sysctl_path(partner),
                                'before': canonical(state['text']), 'after': '0',
                                'cause': 'the kernel zeroes it when %s is written' % name})
    return changes


HEADER = ('# Managed by oomguard.linux ({what}); local edits are overwritten.\n'
          '# Set the values in inventory ({var}) instead; playbooks/restore.yml puts back\n'
          '# what was there before.\n')


def render_sysctl_file(values, what, var):
    lines = [HEADER.format(what=what, var=var)]
    for name in write_order(values):
        lines.append('%s = %s\n' % (name, values[name]))
    return ''.join(lines)


def _shell_quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def render_thp_unit(thp):
    """A oneshot unit that writes the THP settings at boot, before systemd-sysctl.

    Before systemd-sysctl because writing 'enabled' starts khugepaged, which
    raises vm.min_free_kbytes to its own recommendation: the sysctl must come
    after it, as it does when the module applies both live.
    """
    lines = [
        '# Managed by oomguard.linux (thp role); local edits are overwritten.\n',
        '[Unit]\n',
        'Description=Transparent huge page settings (oomguard.linux)\n',
        'DefaultDependencies=no\n',
        'Before=systemd-sysctl.service sysinit.target\n',
        'ConditionPathIsDirectory=/sys/kernel/mm/transparent_hugepage\n',
        '\n',
        '[Service]\n',
        'Type=oneshot\n',
        'RemainAfterExit=yes\n',
    ]
    for key in ('enabled', 'defrag', 'khugepaged_defrag'):
        if key in thp:
            lines.append('ExecStart=/bin/sh -c %s\n' % _shell_quote(
                'echo %s > /%s' % (thp[key], THP_PATHS[key])))
    lines += ['\n', '[Install]\n', 'WantedBy=sysinit.target\n']
    return ''.join(lines)


def render_compaction_units(schedule):
    service = ''.join([
        '# Managed by oomguard.linux (thp role); local edits are overwritten.\n',
        '[Unit]\n',
        'Description=Compact memory once against fragmentation (oomguard.linux)\n',
        'ConditionPathExists=/proc/sys/vm/compact_memory\n',
        '\n',
        '[Service]\n',
        'Type=oneshot\n',
        "ExecStart=/bin/sh -c 'echo 1 > /proc/sys/vm/compact_memory'\n",
    ])
    timer = ''.join([
        '# Managed by oomguard.linux (thp role); local edits are overwritten.\n',
        '[Unit]\n',
        'Description=Off-peak memory compaction (oomguard.linux)\n',
        '\n',
        '[Timer]\n',
        'OnCalendar=%s\n' % schedule,
        'RandomizedDelaySec=10min\n',
        '\n',
        '[Install]\n',
        'WantedBy=timers.target\n',
    ])
    return service, timer


THP_UNIT = 'oomguard-thp.service'
COMPACT_SERVICE = 'oomguard-compact-memory.service'
COMPACT_TIMER = 'oomguard-compact-memory.timer'


def desired_files(req, scopes, paths, labels):
    """{path: spec} for every file the scopes in this call own.

    spec is {'type': 'file', 'content', 'mode'}, {'type': 'link', 'target'}
    or {'type': 'absent'}: a scope with nothing to keep removes its files.
    """
    files = {}
    absent = {'type': 'absent'}
    systemd_dir = paths['systemd_dir']
    if 'sysctl' in scopes:
        values = dict((k, v) for k, v in req.sysctl.items() if req.sysctl_scope[k] == 'sysctl')
        files[paths['sysctl_file']] = ({'type': 'file', 'mode': 0o644, 'content': render_sysctl_file(
            values, 'sysctl role', labels.var('sysctl'))} if values else absent)
    if 'thp' in scopes:
        unit = systemd_dir + '/' + THP_UNIT
        link = systemd_dir + '/sysinit.target.wants/' + THP_UNIT
        if req.thp:
            files[unit] = {'type': 'file', 'mode': 0o644, 'content': render_thp_unit(req.thp)}
            files[link] = {'type': 'link', 'target': unit}
        else:
            files[unit] = files[link] = absent
    if 'compaction' in scopes:
        values = dict((k, v) for k, v in req.sysctl.items() if req.sysctl_scope[k] == 'compaction')
        files[paths['compaction_file']] = ({'type': 'file', 'mode': 0o644, 'content': render_sysctl_file(
            values, 'thp role, compaction', labels.var('thp'))} if values else absent)
        service = systemd_dir + '/' + COMPACT_SERVICE
        timer = systemd_dir + '/' + COMPACT_TIMER
        link = systemd_dir + '/timers.target.wants/' + COMPACT_TIMER
        if req.timer_schedule:
            service_text, timer_text = render_compaction_units(req.timer_schedule)
            files[service] = {'type': 'file', 'mode': 0o644, 'content': service_text}
            files[timer] = {'type': 'file', 'mode': 0o644, 'content': timer_text}
            files[link] = {'type': 'link', 'target': timer}
        else:
            files[service] = files[timer] = files[link] = absent
    return files
