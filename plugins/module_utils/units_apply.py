# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-unit and per-cgroup OOM settings: read the host, judge, change it.

One call covers three scopes, each with its own drop-in per unit so that
the roles that own them never overwrite each other:

- ``limits``:  MemoryMax/High/Low/Min/SwapMax  -> 90-oomguard-limits.conf
- ``cpuset``:  AllowedMemoryNodes               -> 90-oomguard-cpuset.conf
- ``protect``: OOMScoreAdjust, OOMPolicy,
               CPUWeight, ManagedOOMPreference  -> 90-oomguard-protect.conf

plus raw cgroups not owned by systemd (written directly) and processes
outside systemd matched by a pattern (their live oom_score_adj).

Read, then judge, then change: read_live() reads the host once (the
layout, RAM, NUMA nodes, the units, then every cgroup, process and drop-in
the request names); judge() is a pure function of that reading and the
request; the change engine (_engine) records the originals and writes.
A unit's cgroup values are applied by systemd on daemon-reload; where it
did not apply one (older systemd), the value is written to the cgroup file
directly, so a running unit is never restarted.  A property older systemd
does not know is refused before any write, with the release it needs
(capabilities); after the daemon-reload every property of every drop-in
written is read back with `systemctl show`, and one systemd ignored fails
the run.
"""

import os

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils import _bounded
from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import capabilities
from ansible_collections.oomguard.linux.plugins.module_utils import cgroups as cg
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import schema
from ansible_collections.oomguard.linux.plugins.module_utils import systemd as sd
from ansible_collections.oomguard.linux.plugins.module_utils import unit_settings as us

OWNER = 'oom_units'
SCOPES = ('limits', 'cpuset', 'protect')
SCOPE_KEYS = {
    'limits': ('memory_max', 'memory_high', 'memory_low', 'memory_min', 'memory_swap_max'),
    'cpuset': ('allowed_memory_nodes',),
    # cpu_weight: near OOM, kswapd and the allocating runaway hold the CPU; a
    # latency-critical service's share of it is part of protecting it (issue 6).
    'protect': ('oom_score_adj', 'oom_policy', 'cpu_weight', 'managed_oom_preference'),
}
KEY_SCOPE = dict((key, scope) for scope, keys in SCOPE_KEYS.items() for key in keys)
DROPIN_NAME = '90-oomguard-%s.conf'
DEFAULT_PATHS = _argspec.default_paths('systemd_dir', 'state_dir')

# The cgroup file of a setting: (v2 file, v1 controller, v1 file).  v1 has
# no equivalent of high/low/min, and systemd maps MemoryMax to
# memory.limit_in_bytes there.
CGROUP_FILES = {
    'memory_max': ('memory.max', 'memory', 'memory.limit_in_bytes'),
    'memory_high': ('memory.high', None, None),
    'memory_low': ('memory.low', None, None),
    'memory_min': ('memory.min', None, None),
    'memory_swap_max': ('memory.swap.max', None, None),
    'cpuset_mems': ('cpuset.mems', 'cpuset', 'cpuset.mems'),
}
# The unit setting behind each cgroup file.
UNIT_TO_CGROUP = dict((k, k) for k in SCOPE_KEYS['limits'])
UNIT_TO_CGROUP['allowed_memory_nodes'] = 'cpuset_mems'
# v1's "no limit" once rounded to 4 KiB pages.
V1_NO_LIMIT = '9223372036854771712'

# The OpenSSH listener protects itself (oom_score_adj -1000 on Linux) and
# gives its sessions back the value it started with; a drop-in would pass
# OOMScoreAdjust on to every session, and a user's runaway shell with it.
# So sshd is protected by its main process only, live.
DEFAULT_MAIN_PIDS = {'ssh.service': -1000, 'sshd.service': -1000}
# A pattern matching more processes than this is refused (forcible).
MAX_PATTERN_MATCHES = 20


class Live:
    """What the judge needs from the host, read once."""

    def __init__(self):
        self.layout = {'mode': 'none'}
        self.mem_total_bytes = 0
        self.page_bytes = 4096
        self.numa_nodes = [0]
        self.node_free_bytes = {}
        self.systemd = False
        self.systemd_version = None  # the release (252); None when unknown
        self.units = {}          # unit -> {'load', 'active', 'cgroup', 'main_pid'}
        self.cgroup_text = {}    # absolute cgroup file -> text (None when absent)
        self.procs = {}          # cgroup dir -> [pids]
        self.usage_bytes = {}    # cgroup dir -> bytes
        self.node_usage_bytes = {}  # cgroup dir -> {node: bytes}
        self.oom_score_adj = {}  # pid -> int
        self.starttime = {}      # pid -> field 22 of /proc/PID/stat (None when unreadable)
        self.cmdlines = {}       # pid -> text (pattern scan only)
        self.matches = {}        # process pattern -> sorted pids whose command line it searches
        self.slow_patterns = []  # process patterns that did not finish within their time budget
        self.unit_files = {}     # without a running systemd: service -> its unit file, or None
        self.dirs = {}           # absolute cgroup directory -> whether it exists
        self.stale_dropins = {}  # scope -> drop-ins of ours present now


# -- reading the host ------------------------------------------------------------

def _show_units(systemd, units):
    out = systemd.run('show', '--property=Id,LoadState,ActiveState,ControlGroup,MainPID', *units)
    found = {}
    blocks = out.split('\n\n')
    for name, block in zip(units, blocks):
        props = dict(line.partition('=')[::2] for line in block.splitlines() if '=' in line)
        found[name] = {'load': props.get('LoadState') or 'not-found', 'active': props.get('ActiveState'),
                       'cgroup': props.get('ControlGroup') or None,
                       'main_pid': int(props.get('MainPID') or 0) or None}
    return found


def _valid_unit(name):
    try:
        return bool(schema.unit_name(name))
    except schema.Invalid:
        return False


def cgroup_dir(live, rel, setting):
    """The directory of a cgroup (path relative to the hierarchy) for a setting's controller."""
    v2_file, v1_controller, dummy = CGROUP_FILES[setting]
    controller = live.layout.get('%s_controller' % ('cpuset' if setting == 'cpuset_mems' else 'memory'))
    if not controller:
        return None
    return controller['mount'].rstrip('/') + '/' + rel.strip('/')


def cgroup_file(live, rel, setting):
    directory = cgroup_dir(live, rel, setting)
    if directory is None:
        return None
    controller = live.layout['%s_controller' % ('cpuset' if setting == 'cpuset_mems' else 'memory')]
    v2_file, dummy, v1_file = CGROUP_FILES[setting]
    name = v2_file if controller['version'] == 2 else v1_file
    return None if name is None else directory + '/' + name


def _procs_dir(live, rel):
    """Where a cgroup's process list is: the v2 tree, else systemd's v1 tree."""
    if live.layout.get('v2_mount'):
        return live.layout['v2_mount'].rstrip('/') + '/' + rel.strip('/')
    mount = live.layout.get('v1_mounts', {}).get('name=systemd') or live.layout.get('v1_mounts', {}).get('memory')
    return mount.rstrip('/') + '/' + rel.strip('/') if mount else None


def _usage(host, live, rel):
    memory = live.layout.get('memory_controller')
    if not memory:
        return None
    directory = memory['mount'].rstrip('/') + '/' + rel.strip('/')
    text = host.read(directory + ('/memory.current' if memory['version'] == 2 else '/memory.usage_in_bytes'))
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _node_usage(host, live, rel):
    """Bytes of the cgroup already on each node (v2 memory.numa_stat)."""
    memory = live.layout.get('memory_controller')
    if not memory or memory['version'] != 2:
        return {}
    text = host.read(memory['mount'].rstrip('/') + '/' + rel.strip('/') + '/memory.numa_stat') or ''
    per_node = {}
    for line in text.splitlines():
        fields = line.split()
        # shmem is counted within file already.
        if not fields or fields[0] not in ('anon', 'file', 'kernel_stack'):
            continue
        for field in fields[1:]:
            node, dummy, value = field.partition('=')
            if node.startswith('N') and value.isdigit():
                per_node[int(node[1:])] = per_node.get(int(node[1:]), 0) + int(value)
    return per_node


def read_base(host, params, systemd):
    """The host's layout, RAM, NUMA nodes and the units the request names."""
    live = Live()
    live.layout = cg.read_layout(host)
    meminfo = procfs.read_meminfo(host)[0]
    live.mem_total_bytes = int(meminfo.get('MemTotal', 0)) * 1024
    try:
        live.page_bytes = os.sysconf('SC_PAGE_SIZE') if host.live else 4096
        if host.live:
            # What systemd scales percentages of: physical pages, not MemTotal.
            live.mem_total_bytes = os.sysconf('SC_PHYS_PAGES') * live.page_bytes
    except (ValueError, OSError):
        pass
    numa = procfs.read_numa(host)
    live.numa_nodes = [n['node'] for n in numa['nodes'] if n['has_memory']] or [0]
    live.node_free_bytes = dict((n['node'], int(n['memory_kb'].get('MemFree', 0)) * 1024)
                                for n in numa['nodes'] if n['memory_kb'])
    live.systemd = systemd.can_run
    live.systemd_version = systemd.version
    services = params.get('services') if isinstance(params.get('services'), dict) else {}
    names = set(us.unit_name(u) for u in services)
    if params.get('protect_defaults') and 'protect' in params['scopes']:
        names.update(DEFAULT_MAIN_PIDS)
    names = sorted(names)
    if live.systemd and names:
        live.units = _show_units(systemd, [n for n in names if _valid_unit(n)])
    elif names:
        # Without a running systemd (an image being built, a container) a drop-in
        # still takes effect at the next boot, but only for a unit that is installed.
        live.unit_files = dict((n, _unit_file(host, n, systemd_dirs(params)))
                               for n in names if _valid_unit(n) and n.endswith('.service'))
    return live


# Where systemd finds unit files (systemd.unit(5), the system manager's search path).
UNIT_DIRS = ('/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system', '/lib/systemd/system',
             '/usr/lib/systemd/system')


def systemd_dirs(params):
    """The unit search path, with the configured systemd_dir first."""
    first = (params.get('paths') or {}).get('systemd_dir')
    return ([first] if first else []) + [d for d in UNIT_DIRS if d != first]


def _unit_file(host, unit, dirs):
    """The first unit file of unit (or of its template, foo@.service for foo@bar.service), or None."""
    names = [unit]
    if '@' in unit:
        names.append(unit.split('@', 1)[0] + '@.' + unit.rsplit('.', 1)[1])
    for directory in dirs:
        for name in names:
            path = directory.rstrip('/') + '/' + name
            # The configured systemd_dir is a real path; the search path is the host's.
            if (os.path.exists(path) if directory == dirs[0] and not host.live else host.exists(path)):
                return path
    return None


def read_live(host, params, systemd):
    """Everything the judge looks at, read once: the host, the units, then what the request names."""
    live = read_base(host, params, systemd)
    read_details(host, live, params)
    return live


def read_details(host, live, params):
    """The cgroups, processes and drop-ins the request names (the judge reads nothing itself)."""
    scopes = params['scopes']
    services = params.get('services') if isinstance(params.get('services'), dict) else {}
    for raw in services:
        state = live.units.get(us.unit_name(raw)) or {}
        if state.get('active') in ('active', 'activating', 'reloading') and state.get('cgroup'):
            _read_unit_cgroup(host, live, state['cgroup'])
    if params.get('protect_defaults') and 'protect' in scopes:
        for unit in DEFAULT_MAIN_PIDS:
            if (live.units.get(unit) or {}).get('main_pid'):
                _read_adj(host, live, live.units[unit]['main_pid'])
    if 'protect' in scopes:
        entries, dummy = us.validate_processes(params.get('processes') or [], engine.Labels(''))
        if entries:
            scan_cmdlines(host, live)
        match_patterns(live, [pattern for dummy, pattern, dummy2, dummy3 in entries])
        for pattern in live.matches:
            for pid in live.matches[pattern] if len(live.matches[pattern]) <= MAX_PATTERN_MATCHES else []:
                _read_adj(host, live, pid)
    cgroups = params.get('cgroups') if isinstance(params.get('cgroups'), dict) else {}
    for rel, entry in cgroups.items():
        text = str(rel).strip('/')
        if not us.cgroup_path_ok(text) or not isinstance(entry, dict):
            continue
        for setting in [s for s in entry if s in CGROUP_FILES]:
            path = cgroup_file(live, text, setting)
            if path is None:
                continue
            live.dirs[os.path.dirname(path)] = host.exists(os.path.dirname(path))
            if live.dirs[os.path.dirname(path)]:
                _read_cgroup_text(host, live, path)
                _read_cgroup_dir(host, live, text)
    for scope in scopes:
        live.stale_dropins[scope] = stale_dropins(params['paths']['systemd_dir'], scope)


def _read_unit_cgroup(host, live, rel):
    """A running unit's cgroup: usage, processes and their oom_score_adj, the files systemd writes."""
    _read_cgroup_dir(host, live, rel)
    for setting in CGROUP_FILES:
        path = cgroup_file(live, rel, setting)
        if path is not None:
            _read_cgroup_text(host, live, path)
    for pid in live.procs.get(rel, []):
        _read_adj(host, live, pid)


def _read_cgroup_dir(host, live, rel):
    """Usage, node usage and processes of one cgroup, memoized."""
    if rel in live.usage_bytes:
        return
    live.usage_bytes[rel] = _usage(host, live, rel)
    live.node_usage_bytes[rel] = _node_usage(host, live, rel)
    procs_dir = _procs_dir(live, rel)
    pids = []
    if procs_dir:
        for line in (host.read(procs_dir + '/cgroup.procs') or '').split():
            if line.isdigit():
                pids.append(int(line))
    live.procs[rel] = pids


def _read_adj(host, live, pid):
    if pid not in live.oom_score_adj:
        text = host.read('proc/%d/oom_score_adj' % pid)
        live.oom_score_adj[pid] = int(text) if text and text.strip().lstrip('-').isdigit() else None
        # Recorded with the original: restore tells the process from a later one with its PID.
        live.starttime[pid] = ledger_mod.process_starttime(host.read('proc/%d/stat' % pid))
    return live.oom_score_adj[pid]


def _read_cgroup_text(host, live, path):
    if path not in live.cgroup_text:
        text = host.read(path)
        live.cgroup_text[path] = engine.canonical(text) if text is not None else None
    return live.cgroup_text[path]


def match_patterns(live, patterns):
    """live.matches and live.slow_patterns of the process patterns, each matched within its time budget."""
    patterns = sorted(set(patterns) - set(live.matches) - set(live.slow_patterns))
    found, slow = _bounded.search_all(patterns, live.cmdlines)
    for index, pids in found.items():
        live.matches[patterns[index]] = pids
    live.slow_patterns.extend(patterns[index] for index in slow)


def scan_cmdlines(host, live):
    own = os.getpid()
    for name in host.listdir('proc'):
        if not name.isdigit() or int(name) in (1, own):
            continue
        raw = host.read('proc/%s/cmdline' % name)
        if raw:  # kernel threads have none
            live.cmdlines[int(name)] = raw.replace('\0', ' ').strip()


# -- judging ----------------------------------------------------------------------

class Plan(engine.Plan):
    """The engine's plan, with what systemd itself will change and the report's extras."""

    def __init__(self):
        engine.Plan.__init__(self)
        self.unit_values = []   # changes systemd makes on daemon-reload (cause 'systemd')
        self.unmatched = []
        self.dropins = {}       # unit -> {scope: rendered}
        self.unsupported = []   # [{unit, property, needs, has}]: properties this systemd does not know
        self.prune_dirs = True  # a drop-in directory left empty goes too

    @classmethod
    def refused(cls, problems):
        """A plan of nothing but its problems."""
        plan = cls()
        plan.problems = problems
        return plan


def expected_cgroup_text(setting, value_bytes, version, page_bytes, nodes=None):
    """The text the kernel shows after a write of a setting."""
    if setting == 'cpuset_mems':
        return to_kernel_list(nodes)
    if value_bytes is None:
        return 'max' if version == 2 else V1_NO_LIMIT
    aligned = value_bytes // page_bytes * page_bytes
    return str(aligned)


def to_kernel_list(nodes):
    """[0, 1, 3] -> '0-1,3' (the kernel's list format)."""
    parts = []
    for node in sorted(set(nodes)):
        if parts and parts[-1][1] == node - 1:
            parts[-1][1] = node
        else:
            parts.append([node, node])
    return ','.join(str(a) if a == b else '%d-%d' % (a, b) for a, b in parts)


def _problem(plan, pid, message, forcible=False, key=None):
    plan.problems.append(engine.Problem(pid, message, forcible, key))


# The guards this concern fires (each forcible by its id).
GUARDS = ('limit_below_usage', 'nodes_without_room', 'unit_missing', 'pattern_too_broad', 'unsupported_systemd')


def _guard(plan, labels, gid, key, detail):
    plan.problems.append(engine.guard(labels, gid, key, detail))


def _guard_usage(plan, labels, where, setting, value_bytes, usage):
    if setting in ('memory_max', 'memory_high') and value_bytes is not None and usage is not None \
            and value_bytes < usage:
        _guard(plan, labels, 'limit_below_usage', where,
               '%s = %d bytes is below the current usage of %d bytes (%.0f MiB): the kernel would reclaim '
               'or OOM-kill at once' % (where, value_bytes, usage, usage / 1048576.0))


def _guard_nodes(plan, labels, live, where, nodes, rel):
    usage = live.usage_bytes.get(rel)
    if not usage:
        return
    already = sum(live.node_usage_bytes.get(rel, {}).get(n, 0) for n in nodes)
    free = sum(live.node_free_bytes.get(n, 0) for n in nodes)
    needed = usage - already
    if live.node_free_bytes and needed > free:
        _guard(plan, labels, 'nodes_without_room', where,
               '%s = %s: node(s) %s have %d MiB free, and the cgroup has %d MiB elsewhere that would have '
               'to fit there' % (where, to_kernel_list(nodes), to_kernel_list(nodes), free // 1048576,
                                 needed // 1048576))


def judge(params, live, labels):
    """Validate and plan the whole call from what read_live() read. Returns a Plan (problems unsplit)."""
    plan = Plan()
    scopes = params['scopes']
    var_services = labels.var('services')
    settings, problems = us.validate_services(params.get('services') or {}, {
        'mem_total_bytes': live.mem_total_bytes, 'numa_nodes': live.numa_nodes}, labels, var_services)
    plan.problems.extend(problems)
    services = params.get('services') if isinstance(params.get('services'), dict) else {}
    raw_services = dict((us.unit_name(k), v) for k, v in services.items())
    # Messages name a unit the way the inventory wrote it.
    raw_keys = dict((us.unit_name(k), k) for k in services)
    for unit in sorted(settings):
        entry = raw_services.get(unit) or {}
        wanted = dict((k, v) for k, v in entry.items() if v is not None and KEY_SCOPE.get(k) in scopes)
        if wanted:
            where = "%s['%s']" % (var_services, raw_keys.get(unit, unit))
            _judge_unit(plan, params, live, labels, unit, where, wanted, settings[unit])
    if 'protect' in scopes:
        _plan_defaults(plan, live, raw_services, params)
        _plan_processes(plan, live, labels, params.get('processes') or [])
    _plan_cgroups(plan, live, labels, params.get('cgroups') or {}, scopes)
    # Drop-ins of ours for units no longer in the inventory go away.
    for scope in scopes:
        for path in live.stale_dropins.get(scope, []):
            if path not in plan.files:
                plan.files[path] = {'type': 'absent'}
    return plan


def _memory_v1(live):
    memory = live.layout.get('memory_controller')
    return bool(memory and memory['version'] == 1)


def _judge_unit(plan, params, live, labels, unit, where, wanted, settings):
    """One unit: what v1 cannot take, the unit_missing guard, its drop-ins and its running cgroup."""
    if _memory_v1(live):
        for key in sorted(wanted):
            if key in ('memory_high', 'memory_low', 'memory_min', 'memory_swap_max', 'allowed_memory_nodes'):
                _problem(plan, 'unsupported_cgroup_v1', labels.msg(
                    '%s[%s]: this host runs cgroup v1 (%s), where systemd has no %s; v1 takes memory_max '
                    '(memory.limit_in_bytes), oom_score_adj, oom_policy and cpu_weight (cpu.shares); for '
                    'cpuset.mems on v1 use oomguard_cgroups'
                    % (where, key, live.layout['mode'], us.PROPERTIES[key][0])), key=where)
    for key in sorted(wanted):
        needed = capabilities.systemd_needed(us.PROPERTIES[key][0], live.systemd_version) \
            if key in us.PROPERTIES else None
        if needed:
            plan.unsupported.append({'unit': unit, 'property': us.PROPERTIES[key][0], 'needs': needed,
                                     'has': live.systemd_version})
            # Forcible: a distribution may have backported it (the read-back after
            # the daemon-reload then proves whether systemd took it).
            _guard(plan, labels, 'unsupported_systemd', '%s[%s]' % (where, key),
                   '%s[%s]: %s= needs systemd %d; this host has systemd %d, which would log "Unknown key" and '
                   'ignore it' % (where, key, us.PROPERTIES[key][0], needed, live.systemd_version))
    state = live.units.get(unit) or {'load': 'not-found' if live.systemd else 'unknown'}
    if live.systemd and state['load'] != 'loaded':
        _guard(plan, labels, 'unit_missing', where,
               '%s: %s is %s on this host, so its drop-in would only wait for it; install it first'
               % (where, unit, state['load']))
    elif not live.systemd and unit in live.unit_files and live.unit_files[unit] is None:
        _guard(plan, labels, 'unit_missing', where,
               '%s: systemd is not running here and no unit file of %s is installed (%s), so its drop-in '
               'would only wait for it; install it first' % (where, unit, ', '.join(UNIT_DIRS)))
    # The drop-ins, one per scope.
    for scope in params['scopes']:
        props = dict((us.PROPERTIES[k][0], settings[us.PROPERTIES[k][0]]) for k in SCOPE_KEYS[scope]
                     if k in wanted and us.PROPERTIES[k][0] in settings)
        if props:
            plan.dropins.setdefault(unit, {})[scope] = props
            plan.files[dropin_path(params['paths']['systemd_dir'], unit, scope)] = {
                'type': 'file', 'content': us.render_dropin(unit, props), 'mode': 0o644}
    rel = state.get('cgroup')
    if not (state.get('active') in ('active', 'activating', 'reloading') and rel):
        return
    _plan_running_cgroup(plan, live, labels, unit, where, wanted, settings, rel)
    # The live oom_score_adj of its processes (OOMScoreAdjust alone waits for a restart).
    if 'oom_score_adj' in wanted and 'OOMScoreAdjust' in settings:
        target = int(settings['OOMScoreAdjust'])
        for pid in live.procs.get(rel, []):
            _plan_adj(plan, live, '%s pid %d' % (unit, pid), pid, target)


def _plan_running_cgroup(plan, live, labels, unit, where, wanted, settings, rel):
    """What systemd will write to the running unit's cgroup on daemon-reload."""
    memory_v1 = _memory_v1(live)
    for key in sorted(wanted):
        if key not in UNIT_TO_CGROUP or memory_v1 and key != 'memory_max':
            continue
        if us.PROPERTIES[key][0] not in settings:
            continue  # refused by validation already
        setting = UNIT_TO_CGROUP[key]
        path = cgroup_file(live, rel, setting)
        if path is None:
            continue
        before = live.cgroup_text.get(path)
        if key == 'allowed_memory_nodes':
            nodes = schema.node_list(wanted[key])
            _guard_nodes(plan, labels, live, '%s[%s]' % (where, key), nodes, rel)
            after = to_kernel_list(nodes)
        else:
            value_bytes = schema.size_bytes(wanted[key], live.mem_total_bytes)
            _guard_usage(plan, labels, '%s[%s]' % (where, key), key, value_bytes, live.usage_bytes.get(rel))
            after = expected_cgroup_text(setting, value_bytes, 1 if memory_v1 else 2, live.page_bytes)
        if before is not None and before != after:
            plan.unit_values.append({'key': '%s %s' % (unit, os.path.basename(path)), 'kind': 'cgroup',
                                     'path': path, 'before': before, 'after': after, 'cause': 'systemd'})


def _plan_adj(plan, live, key, pid, target):
    before = live.oom_score_adj.get(pid)
    if before is None or before == target:
        return
    plan.values.append({'key': 'oom_score_adj %s' % key, 'kind': 'proc', 'path': '/proc/%d/oom_score_adj' % pid,
                        'before': str(before), 'after': str(target), 'cause': 'requested',
                        'starttime': live.starttime.get(pid)})


def _plan_defaults(plan, live, raw_services, params):
    if not params.get('protect_defaults'):
        return
    # ssh.service and sshd.service are one unit on Debian (an alias): one
    # main process.  A process the inventory already sets is left to it.
    taken = set(int(c['path'].split('/')[2]) for c in plan.values if c['kind'] == 'proc')
    for unit in raw_services:
        state = live.units.get(unit) or {}
        taken.update(live.procs.get(state.get('cgroup'), []))
        if state.get('main_pid'):
            taken.add(state['main_pid'])
    for unit, target in sorted(DEFAULT_MAIN_PIDS.items()):
        state = live.units.get(unit)
        if unit in raw_services or not state or state['load'] != 'loaded' or not state.get('main_pid'):
            continue
        if state['main_pid'] in taken:
            continue
        taken.add(state['main_pid'])
        before = live.oom_score_adj.get(state['main_pid'])
        # Never raise it: the listener may already be better protected.
        if before is not None and before > target:
            _plan_adj(plan, live, '%s main pid %d' % (unit, state['main_pid']), state['main_pid'], target)


def _plan_processes(plan, live, labels, processes):
    entries, problems = us.validate_processes(processes, labels, labels.var('processes'))
    plan.problems.extend(problems)
    for where, pattern, dummy, adj in entries:
        if pattern in live.slow_patterns or pattern not in live.matches:
            plan.problems.append(engine.Problem('invalid_value', labels.msg(
                '%s[match] = %s; allowed: a pattern that searches this host\'s %d command lines within %g s '
                '(this one did not: avoid nested repetition like (a+)+ or (.*)*)'
                % (where, schema.show(pattern), len(live.cmdlines), _bounded.PATTERN_BUDGET_S))))
            continue
        matched = live.matches[pattern]
        if len(matched) > MAX_PATTERN_MATCHES:
            _guard(plan, labels, 'pattern_too_broad', where,
                   '%s[match] = %s matches %d processes (more than %d); make it narrower'
                   % (where, schema.show(pattern), len(matched), MAX_PATTERN_MATCHES))
            continue
        if not matched:
            plan.unmatched.append(pattern)
        for pid in matched:
            _plan_adj(plan, live, 'pid %d (%s)' % (pid, live.cmdlines[pid][:60]), pid, adj)


def _plan_cgroups(plan, live, labels, cgroups, scopes):
    """Raw cgroups outside systemd: validated whole (unit_settings), then written directly."""
    found, problems = us.validate_cgroups(cgroups, {'numa_nodes': live.numa_nodes,
                                                    'mem_total_bytes': live.mem_total_bytes},
                                          labels, scopes, labels.var('cgroups'))
    plan.problems.extend(problems)
    for rel, where, parsed in found:
        for setting in sorted(parsed):
            if not _plan_cgroup_setting(plan, live, labels, rel, '%s[%s]' % (where, setting), setting,
                                        parsed[setting]):
                break


def _plan_cgroup_setting(plan, live, labels, rel, item, setting, wanted):
    """One raw cgroup file: refusals for what the host lacks, guards, the live change. False: stop this cgroup."""
    controller_name = 'cpuset' if setting == 'cpuset_mems' else 'memory'
    path = cgroup_file(live, rel, setting)
    controller = live.layout.get('%s_controller' % controller_name)
    if path is None:
        _problem(plan, 'unsupported_cgroup_v1' if controller else 'controller_missing', labels.msg(
            '%s: %s' % (item, 'cgroup v1 has no %s; v1 takes memory_max and cpuset_mems' % setting
                        if controller else 'the %s controller is not mounted on this host' % controller_name)))
        return True
    if not live.dirs.get(os.path.dirname(path)):
        where = item[:item.rindex('[')]
        _problem(plan, 'cgroup_missing', labels.msg('%s: the cgroup %s does not exist; create it (or let its owner '
                                                    'create it) first' % (where, os.path.dirname(path))))
        return False
    before = live.cgroup_text.get(path)
    if before is None:
        _problem(plan, 'controller_missing', labels.msg(
            '%s: %s is missing: the %s controller is not enabled for this cgroup (its parent\'s '
            'cgroup.subtree_control)' % (item, path, controller_name)))
        return True
    if setting == 'cpuset_mems':
        _guard_nodes(plan, labels, live, item, wanted, rel)
        after = to_kernel_list(wanted)
    else:
        _guard_usage(plan, labels, item, setting, wanted, live.usage_bytes.get(rel))
        after = expected_cgroup_text(setting, wanted, controller['version'], live.page_bytes)
    if before != after:
        plan.values.append({'key': '%s %s' % (rel, os.path.basename(path)), 'kind': 'cgroup', 'path': path,
                            'before': before, 'after': after, 'cause': 'requested'})
    return True


def dropin_path(systemd_dir, unit, scope):
    return '%s/%s.d/%s' % (systemd_dir.rstrip('/'), unit, DROPIN_NAME % scope)


def stale_dropins(systemd_dir, scope):
    found = []
    for name in sorted(os.listdir(systemd_dir)) if os.path.isdir(systemd_dir) else []:
        if name.endswith('.d') and os.path.isfile(os.path.join(systemd_dir, name, DROPIN_NAME % scope)):
            found.append(os.path.join(systemd_dir, name, DROPIN_NAME % scope))
    return found


# -- changing the host ----------------------------------------------------------

def _close_enough(now, after, page_bytes):
    """systemd scales percentages itself; a page either way is the same limit."""
    if now == after:
        return True
    try:
        return abs(int(now) - int(after)) <= page_bytes
    except ValueError:
        return False


def read_back(host, change, judged):
    """A live value now, and whether it is the planned one (a page either way for sizes)."""
    return _read_back(host, change, judged.page_bytes)


def _read_back(host, change, page_bytes):
    now = engine.canonical(engine.read_live(host.path(change['path'])))
    if change['cause'] == 'systemd' and not _close_enough(now, change['after'], page_bytes):
        # This systemd did not re-apply the unit's cgroup on reload: write it.
        engine.write_live(host.path(change['path']), change['after'])
        now = engine.canonical(engine.read_live(host.path(change['path'])))
    return now, _close_enough(now, change['after'], page_bytes)


def check_dropins(systemd, dropins, live, labels):
    """After the daemon-reload: every property of every drop-in of a loaded unit,
    read back with one `systemctl show`; one systemd did not take fails the run."""
    units = sorted(u for u in dropins if (live.units.get(u) or {}).get('load') == 'loaded')
    props = sorted(set(p for u in units for scope in dropins[u].values() for p in scope))
    if not units:
        return
    shown = sd.show_blocks(systemd.run('show', '--property=' + ','.join(['Id'] + props), *units), units)
    ignored = []
    for unit in units:
        for scope in sorted(dropins[unit]):
            for prop, text in sorted(dropins[unit][scope].items()):
                wanted = schema.size_bytes(text, live.mem_total_bytes) if prop in sd.SIZE_PROPERTIES else text
                now = shown.get(unit, {}).get(prop)
                if not sd.property_kept(prop, wanted, now, live.page_bytes):
                    ignored.append('%s %s=%s (systemctl show: %s)' % (
                        unit, prop, text, 'no such property' if now is None else now or 'empty'))
    if ignored:
        raise engine.ApplyError(labels.msg(
            'systemd did not take %d drop-in setting(s) after daemon-reload: %s; systemd %s logs them as "Unknown '
            'key" or an invalid value (journalctl -b -u init.scope); the drop-ins are in place, the originals in '
            'the ledger (restore removes them)' % (len(ignored), '; '.join(ignored),
                                                   live.systemd_version or 'of unknown version')))


def paths_of(params):
    return dict(DEFAULT_PATHS, **dict((k, v) for k, v in (params.get('paths') or {}).items() if v))


def plan(params, host, labels, systemd, check_mode=False):
    """The whole call judged into a Plan (problems as data, nothing raised)."""
    params = dict(params)
    params['scopes'] = params.get('scopes') or list(SCOPES)
    params['paths'] = paths_of(params)
    problems = schema.path_problems(params['paths'], labels)
    if problems:
        schema.Checker(labels, problems).shared(params)
        return Plan.refused(problems)
    live = read_live(host, params, systemd)
    judged = judge(params, live, labels)
    schema.Checker(labels, judged.problems).shared(params)
    judged.file_changes = engine.plan_files(judged.files)
    if not systemd.manages:
        judged.unit_values = []
    judged.values = judged.values + judged.unit_values
    judged.reload = bool(systemd.manages and judged.file_changes)
    judged.page_bytes = live.page_bytes
    if systemd.manages and judged.dropins:
        judged.checks.append(lambda systemd_now: check_dropins(systemd_now, judged.dropins, live, labels))
    judged.result = {
        'changed': bool(judged.values or judged.file_changes),
        'changes': judged.values,
        'files': engine.file_rows(judged.file_changes),
        'dropins': judged.dropins,
        'unmatched': judged.unmatched,
        'unsupported': judged.unsupported,
        'systemd_version': live.systemd_version,
        'cgroup_mode': live.layout.get('mode'),
        'ledger': os.path.join(params['paths']['state_dir'], ledger_mod.LEDGER_NAME),
        'diff': engine.build_diff(judged.values, judged.file_changes),
    }
    return judged


def apply(params, host, labels, check_mode, run_command=None, systemctl=None):
    """Run an oom_units call; returns the module result (raises Refused/ApplyError)."""
    return engine.apply(plan, params, host, labels, check_mode, run_command, systemctl, OWNER, DEFAULT_PATHS,
                        read_back)
