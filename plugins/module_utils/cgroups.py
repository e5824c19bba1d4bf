# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cgroup layout detection (v1, v2, hybrid) and per-cgroup memory state.

The mount table decides the mode, not the kernel version: a 6.x kernel can
run legacy v1 and a 4.x one pure v2.  Memory state is read from whichever
hierarchy holds the memory controller.  Standard library only.
"""


import os

from ansible_collections.oomguard.linux.plugins.module_utils.procfs import (
    ReadError, parse_node_list,
)

# v1 reports "no limit" as PAGE_COUNTER_MAX rounded to pages; anything at or
# above 2**62 is unlimited on every page size in use.
V1_UNLIMITED_BYTES = 1 << 62

# A host running thousands of containers has thousands of cgroups; the walk
# stops there so a facts run stays cheap.  Truncation is reported.
DEFAULT_MAX_CGROUPS = 4000
DEFAULT_MAX_DEPTH = 8


# Mount options of a v1 cgroup mount that are not controller names.
_MOUNT_OPTIONS = ('rw', 'ro', 'nosuid', 'nodev', 'noexec', 'relatime', 'noatime',
                  'clone_children', 'nsdelegate', 'xattr')


def parse_mounts(text):
    """cgroup and cgroup2 mounts from /proc/mounts (or /proc/self/mounts)."""
    v1 = {}
    v2 = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        fstype, mountpoint, options = fields[2], fields[1], fields[3].split(',')
        if fstype == 'cgroup2':
            v2.append(mountpoint)
        elif fstype == 'cgroup':
            controllers = [o for o in options
                           if o not in _MOUNT_OPTIONS and not o.startswith('release_agent=')]
            for controller in controllers:
                v1[controller] = mountpoint
    return v1, v2


def detect_mode(v1_mounts, v2_mounts):
    """'v2', 'v1', 'hybrid' or 'none'.

    hybrid is systemd's layout: v1 controller hierarchies plus a cgroup2
    mount (usually /sys/fs/cgroup/unified) that holds no controllers.
    """
    if v2_mounts and v1_mounts:
        return 'hybrid'
    if v2_mounts:
        return 'v2'
    if v1_mounts:
        return 'v1'
    return 'none'


def read_layout(host):
    """Mode, mount points and where the memory and cpuset controllers live."""
    text = host.read('proc/mounts') or ''
    v1, v2 = parse_mounts(text)
    mode = detect_mode(v1, v2)
    v2_root = None
    v2_controllers = []
    for mountpoint in v2:
        controllers = (host.read(mountpoint + '/cgroup.controllers') or '').split()
        if v2_root is None or controllers:
            v2_root, v2_controllers = mountpoint, controllers

    def where(controller):
        # A controller is bound to one hierarchy at a time, v1 or v2.
        if controller in v1:
            return {'version': 1, 'mount': v1[controller]}
        if controller in v2_controllers:
            return {'version': 2, 'mount': v2_root}
        return None

    return {
        'mode': mode,
        'v1_mounts': v1,
        'v2_mount': v2_root,
        'v2_controllers': v2_controllers,
        'memory_controller': where('memory'),
        'cpuset_controller': where('cpuset'),
    }


def _read_value(host, path):
    try:
        text = host.read(path)
    except ReadError:
        return None
    return None if text is None else text.strip()


def _bytes_or_none(text, unlimited_at=None):
    """'max' -> None (no limit); a number -> int; unreadable -> None."""
    if text is None or text == 'max' or text == '':
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    if unlimited_at is not None and value >= unlimited_at:
        return None
    return value


def usage_bytes(host, directory):
    """A memory cgroup's usage now: memory.current (v2), else memory.usage_in_bytes (v1); None when unreadable."""
    for name in ('memory.current', 'memory.usage_in_bytes'):
        value = _bytes_or_none(_read_value(host, directory + '/' + name))
        if value is not None:
            return value
    return None


def parse_flat_keyed(text):
    """'key value' lines (memory.events, memory.oom_control) -> {key: int}."""
    result = {}
    for line in (text or '').splitlines():
        fields = line.split()
        if len(fields) == 2:
            try:
                result[fields[0]] = int(fields[1])
            except ValueError:
                continue
    return result


def _stat_bytes(host, directory, keys):
    """Selected memory.stat counters (bytes) under our own names."""
    stat = parse_flat_keyed(_read_value(host, directory + '/memory.stat'))
    return dict((name, stat.get(key)) for name, key in keys)


# memory.stat keys for the split a near-limit check needs: anon memory cannot
# be reclaimed without swap, inactive file cache goes first under pressure.
_V2_STAT_KEYS = (('anon_bytes', 'anon'), ('file_bytes', 'file'), ('inactive_file_bytes', 'inactive_file'))
_V1_STAT_KEYS = (('anon_bytes', 'total_rss'), ('file_bytes', 'total_cache'),
                 ('inactive_file_bytes', 'total_inactive_file'))


def read_v2_memory(host, directory):
    events = parse_flat_keyed(_read_value(host, directory + '/memory.events'))
    # memory.events counts the whole subtree since 5.2; .local is this cgroup alone.
    events_local = _read_value(host, directory + '/memory.events.local')
    oom_group = _read_value(host, directory + '/memory.oom.group')
    state = _stat_bytes(host, directory, _V2_STAT_KEYS)
    state.update({
        'max_bytes': _bytes_or_none(_read_value(host, directory + '/memory.max')),
        'high_bytes': _bytes_or_none(_read_value(host, directory + '/memory.high')),
        'low_bytes': _bytes_or_none(_read_value(host, directory + '/memory.low')),
        'min_bytes': _bytes_or_none(_read_value(host, directory + '/memory.min')),
        'swap_max_bytes': _bytes_or_none(_read_value(host, directory + '/memory.swap.max')),
        'current_bytes': _bytes_or_none(_read_value(host, directory + '/memory.current')),
        'events': events,
        'events_local': parse_flat_keyed(events_local) if events_local is not None else None,
        'oom_group': oom_group == '1' if oom_group is not None else None,
        'oom_kills': events.get('oom_kill', 0),
        'ooms': events.get('oom', 0),
    })
    return state


def read_v1_memory(host, directory):
    oom_control = parse_flat_keyed(_read_value(host, directory + '/memory.oom_control'))
    failcnt = _read_value(host, directory + '/memory.failcnt')
    state = _stat_bytes(host, directory, _V1_STAT_KEYS)
    state.update({
        'max_bytes': _bytes_or_none(_read_value(host, directory + '/memory.limit_in_bytes'),
                                    V1_UNLIMITED_BYTES),
        'soft_limit_bytes': _bytes_or_none(_read_value(host, directory + '/memory.soft_limit_in_bytes'),
                                           V1_UNLIMITED_BYTES),
        'current_bytes': _bytes_or_none(_read_value(host, directory + '/memory.usage_in_bytes')),
        'max_usage_bytes': _bytes_or_none(_read_value(host, directory + '/memory.max_usage_in_bytes')),
        'failcnt': int(failcnt) if failcnt and failcnt.isdigit() else None,
        'oom_control': oom_control,
        # memory.oom_control has counted kills since 4.13; older kernels say nothing.
        'oom_kills': oom_control.get('oom_kill', 0),
        'under_oom': bool(oom_control.get('under_oom', 0)),
    })
    return state


def _walk(host, mount, max_depth, max_cgroups):
    """Yield (cgroup_path, directory) top-down; the root cgroup is '/'."""
    base = host.path(mount).rstrip('/')
    count = 0
    for current, dirs, _files in os.walk(base):
        rel = current[len(base):] or '/'
        depth = 0 if rel == '/' else rel.count('/')
        if depth >= max_depth:
            dirs[:] = []
        dirs.sort()
        count += 1
        if count > max_cgroups:
            return
        yield rel, mount.rstrip('/') + ('' if rel == '/' else rel)


def read_memory_cgroups(host, layout, max_cgroups=DEFAULT_MAX_CGROUPS, max_depth=DEFAULT_MAX_DEPTH):
    """Memory state of every cgroup in the memory hierarchy (bounded walk).

    Each entry carries its own limit and the effective one (the smallest
    limit on the path from the root), since a parent's limit is what kills a
    child that never reached its own.  Returns (cgroups, truncated).
    """
    controller = layout.get('memory_controller')
    if not controller:
        return [], False
    reader = read_v2_memory if controller['version'] == 2 else read_v1_memory
    effective = {}
    cgroups = []
    truncated = False
    for count, (path, directory) in enumerate(_walk(host, controller['mount'], max_depth, max_cgroups + 1)):
        if count >= max_cgroups:
            truncated = True
            break
        if path == '/':
            # The root cgroup has no limit files on v2 and an unlimited one on v1.
            effective['/'] = (None, None)
            continue
        state = reader(host, directory)
        parent = path.rsplit('/', 1)[0] or '/'
        parent_limit, parent_owner = effective.get(parent, (None, None))
        own = state['max_bytes']
        if own is not None and (parent_limit is None or own <= parent_limit):
            effective[path] = (own, path)
        else:
            effective[path] = (parent_limit, parent_owner)
        state['effective_max_bytes'], state['limited_by'] = effective[path]
        state['path'] = path
        state['unit'] = unit_of(path)
        state['version'] = controller['version']
        cgroups.append(state)
    return cgroups, truncated


def read_cpuset_mems(host, layout, max_cgroups=DEFAULT_MAX_CGROUPS, max_depth=DEFAULT_MAX_DEPTH):
    """{cgroup_path: [nodes]} for cgroups whose memory nodes are restricted.

    Only cgroups allowed fewer nodes than the root are listed: those are the
    ones a NUMA-node OOM can hit while the host still has free memory.
    """
    controller = layout.get('cpuset_controller')
    if not controller:
        return {}
    if controller['version'] == 2:
        names = ('cpuset.mems.effective', 'cpuset.mems')
    else:
        names = ('cpuset.effective_mems', 'cpuset.mems')
    root_nodes = None
    restricted = {}
    for path, directory in _walk(host, controller['mount'], max_depth, max_cgroups):
        nodes = None
        for name in names:
            value = _read_value(host, directory + '/' + name)
            if value:
                nodes = parse_node_list(value, directory + '/' + name)
                break
        if path == '/':
            root_nodes = nodes
            continue
        if nodes is not None and root_nodes is not None and set(nodes) < set(root_nodes):
            restricted[path] = nodes
    return restricted


def parse_proc_cgroup(text):
    """/proc/PID/cgroup -> {controller or '' (v2): path}."""
    result = {}
    for line in (text or '').splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2]
        if controllers == '':
            result[''] = path
        for controller in controllers.split(','):
            if controller:
                result[controller] = path
    return result


def unit_of(cgroup_path):
    """The systemd unit a cgroup path belongs to.

    The deepest *.service or *.scope on the path; failing that the deepest
    *.slice; None outside systemd's tree.
    """
    if not cgroup_path:
        return None
    unit = slice_ = None
    for part in cgroup_path.split('/'):
        if part.endswith('.service') or part.endswith('.scope'):
            unit = part
        elif part.endswith('.slice'):
            slice_ = part
    return unit or slice_
