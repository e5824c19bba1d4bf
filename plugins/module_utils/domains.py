# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OOM domains: every place an OOM can happen, and whom the kernel would kill there.

A domain is the host (all RAM and swap) or a memory cgroup with a limit of
its own. Inside a domain the kernel ranks only the domain's tasks, with
oom_badness() (mm/oom_kill.c): resident pages + swap entries + page-table
pages, plus oom_score_adj times the domain's size in pages / 1000. The
host's ranking is the kernel's own (/proc/PID/oom_score); a memory cgroup's
is computed here from each task's /proc/PID/status, because oom_score is
always scaled to the host. docs/domains.md cites the kernel source.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.oomguard.linux.plugins.module_utils import kernel_rules as kr
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import cgroups
from ansible_collections.oomguard.linux.plugins.module_utils.cgroups import unit_of
from ansible_collections.oomguard.linux.plugins.module_utils.processes import cgroup_of as processes_cgroup_of

OOM_SCORE_ADJ_MIN = -1000
# At most this many tasks are ranked per run (the rest is said, not guessed).
MAX_TASKS = 20000


# Before 5.9 oom_badness() returned an unsigned long and gave an eligible task at
# least 1 point; since 5.9 the signed sum is compared as it is (docs/domains.md).
SIGNED_POINTS_SINCE = (5, 9)


def badness(rss_kb, swap_kb, pgtables_kb, oom_score_adj, totalpages, page_kb=4, at_least_one=False):
    """oom_badness() in pages, or None for a task the OOM killer never picks (-1000).

    The points are resident pages + swap entries + page-table pages, plus
    oom_score_adj times totalpages / 1000 in integer arithmetic, as the kernel
    computes them; at_least_one for kernels before 5.9.
    """
    if oom_score_adj is None or oom_score_adj <= OOM_SCORE_ADJ_MIN:
        return None
    points = ((rss_kb or 0) + (swap_kb or 0) + (pgtables_kb or 0)) // page_kb
    points += oom_score_adj * (totalpages // 1000)
    return max(points, 1) if at_least_one else points


# The status lines the ranking needs, found in one pass: 'Key:\t  123 kB'.
_STATUS_FIELDS = re.compile(br'\n(VmRSS|VmSwap|VmPTE|Tgid):\s*(\d+)')
_STATUS_NAMES = {b'VmRSS': 'rss_kb', b'VmSwap': 'swap_kb', b'VmPTE': 'pgtables_kb', b'Tgid': 'tgid'}


def parse_status(status):
    """{comm, tgid, rss_kb, swap_kb, pgtables_kb, kthread, has_mm} of a /proc/PID/status (bytes or text)."""
    if not isinstance(status, bytes):
        status = status.encode('utf-8', 'replace')
    status = b'\n' + status
    task = {'rss_kb': None, 'swap_kb': None, 'pgtables_kb': None, 'tgid': None}
    for key, value in _STATUS_FIELDS.findall(status):
        name = _STATUS_NAMES[key]
        if task[name] is None:
            task[name] = int(value)
    name_at = status.find(b'\nName:')
    task['comm'] = (status[name_at + 6:status.index(b'\n', name_at + 1)].strip().decode('utf-8', 'replace')
                    if name_at >= 0 else None)
    task['kthread'] = status.find(b'\nKthread:\t1') >= 0
    # A kernel thread (or a zombie) has no mm: no VmRSS line at all.
    task['has_mm'] = task['rss_kb'] is not None
    return task


def read_procs(host, directory):
    """The pids of one cgroup (cgroup.procs); [] when unreadable."""
    try:
        text = host.read(directory.lstrip('/') + '/cgroup.procs')
    except procfs.ReadError:
        return []
    return [int(line) for line in (text or '').split() if line.isdigit()]


def read_tasks(host, pids, cache=None):
    """[task] of the pids that still exist: parse_status() plus pid and oom_score_adj. With cache (a
    dict kept for one snapshot), a task already read is not read again: the memory cgroup and the
    NUMA node domains rank many of the same tasks."""
    cache = {} if cache is None else cache
    missing = [pid for pid in pids if pid not in cache]
    for pid, files in procfs.read_pid_files(host.path('proc'), missing, ('status', 'oom_score_adj')):
        status, adj = files or (None, None)
        cache[pid] = None
        if not status or not adj:
            continue
        try:
            task = parse_status(status)
            task['oom_score_adj'] = int(adj)
        except ValueError:
            continue
        task['pid'] = pid
        cache[pid] = task
    return [cache[pid] for pid in pids if cache.get(pid) is not None]


def totalpages_of_memcg(max_bytes, swap_max_bytes, swap_total_kb, page_kb=4):
    """mem_cgroup_get_max(): the limit plus the swap the cgroup may use (v2)."""
    pages = max_bytes // (page_kb * 1024)
    swap_pages = (swap_total_kb or 0) // page_kb
    if swap_max_bytes is not None:
        swap_pages = min(swap_pages, swap_max_bytes // (page_kb * 1024))
    return pages + swap_pages


def rank(tasks, totalpages, page_kb=4, at_least_one=False):
    """The kernel's choice among tasks: highest badness; on a tie the later task (oom_evaluate_task
    keeps the last of equal points). Returns (victim or None, ranked list)."""
    ranked = []
    for order, task in enumerate(tasks):
        if task.get('kthread') or not task.get('has_mm') or task.get('pid') == 1:
            continue
        points = badness(task['rss_kb'], task['swap_kb'], task['pgtables_kb'], task['oom_score_adj'],
                         totalpages, page_kb, at_least_one)
        if points is None:
            continue
        ranked.append((points, order, task))
    ranked.sort(key=lambda item: (-item[0], -item[1]))
    return (ranked[0][2] if ranked else None), [dict(t, badness=p) for p, dummy, t in ranked]


def group_of(victim_cgroup, domain_path, oom_groups):
    """mem_cgroup_get_oom_group(): the highest cgroup from the victim's up to the domain's
    with memory.oom.group set, or None (only the victim dies)."""
    chosen = None
    path = victim_cgroup
    while path and path.startswith(domain_path):
        if oom_groups.get(path):
            chosen = path
        if path == domain_path:
            break
        path = path.rsplit('/', 1)[0] or '/'
    return chosen


def _victim_view(task, unit):
    return {'pid': task['pid'], 'comm': task['comm'], 'unit': unit, 'badness': task['badness'],
            'oom_score_adj': task['oom_score_adj'], 'rss_kb': task['rss_kb'], 'swap_kb': task['swap_kb'],
            'pgtables_kb': task['pgtables_kb']}


def memcg_domains(host, cgroups, mount, swap_total_kb, page_kb=4, max_tasks=MAX_TASKS, exclude_pids=(),
                  kernel_release=None, task_cache=None, rank_tasks=True):
    """One domain per memory cgroup with a limit of its own (cgroups as
    cgroups.read_memory_cgroups returns them, mount its hierarchy's mount;
    kernel_release as the snapshot read it, else read here). Without rank_tasks,
    the limits and usage only: no task is read, tasks and next_victim are None.
    Returns (domains, notes)."""
    notes = []
    if kernel_release is None:
        kernel_release = (host.read('proc/sys/kernel/osrelease') or '').strip()
    release = kr.kernel_version(kernel_release)
    at_least_one = release is not None and release < SIGNED_POINTS_SINCE
    by_path = dict((c['path'], c) for c in cgroups)
    oom_groups = dict((c['path'], bool(c.get('oom_group'))) for c in cgroups)
    limited = sorted(c['path'] for c in cgroups if c.get('max_bytes') is not None)
    if not limited:
        return [], notes
    # Each cgroup's limited ancestors, itself included (a walk up the path, not a scan of every limit).
    limited_set = set(limited)
    tops_of = dict((path, [a for a in _self_and_ancestors(path) if a in limited_set]) for path in by_path)
    # Tasks are read once, for the cgroups under some limit only.
    members = {}
    pids = []
    for path in sorted(by_path) if rank_tasks else ():
        if tops_of[path]:
            # the audit's own processes are left out: gone when it ends
            pids += [(pid, path) for pid in read_procs(host, mount.rstrip('/') + path) if pid not in exclude_pids]
    if len(pids) > max_tasks:
        notes.append('ranked %d of the %d tasks in limited cgroups only' % (max_tasks, len(pids)))
    cgroup_of = dict(pids[:max_tasks])
    for task in read_tasks(host, [pid for pid, dummy in pids[:max_tasks]], task_cache) if pids else []:
        task['cgroup'] = cgroup_of[task['pid']]
        members.setdefault(task['cgroup'], []).append(task)
    inside_of = dict((top, []) for top in limited)
    for path in sorted(members):
        for top in tops_of[path]:
            inside_of[top].extend(members[path])
    domains = []
    for top in limited:
        state = by_path[top]
        inside = inside_of[top]
        totalpages = totalpages_of_memcg(state['max_bytes'], state.get('swap_max_bytes'), swap_total_kb, page_kb)
        victim, ranked = rank(inside, totalpages, page_kb, at_least_one)
        usage_kb = state['current_bytes'] // 1024 if state.get('current_bytes') is not None else None
        limit_kb = state['max_bytes'] // 1024
        domain = {
            'kind': 'memcg', 'path': top, 'unit': unit_of(top), 'limit_kb': limit_kb, 'usage_kb': usage_kb,
            'headroom_kb': limit_kb - usage_kb if usage_kb is not None else None,
            'totalpages': totalpages, 'tasks': len(inside) if rank_tasks else None, 'group_kill': None,
            'next_victim': None, 'group_victims': [], 'forecast': None,
            '_ranked': ranked,  # for what_if; collect() drops it
        }
        if victim is not None:
            chosen = dict(ranked[0])
            domain['next_victim'] = _victim_view(chosen, unit_of(chosen['cgroup']))
            group = group_of(chosen['cgroup'], top, oom_groups)
            if group is not None:
                domain['group_kill'] = group
                domain['group_victims'] = [
                    _victim_view(t, unit_of(t['cgroup'])) for t in ranked
                    if t['cgroup'] == group or t['cgroup'].startswith(group.rstrip('/') + '/')]
        domains.append(domain)
    return domains, notes


# -- NUMA nodes ------------------------------------------------------------------

def format_node_list(nodes):
    """[0, 1, 2, 4] -> '0-2,4' (the kernel's list format)."""
    parts = []
    for node in sorted(set(nodes)):
        if parts and node == parts[-1][1] + 1:
            parts[-1][1] = node
        else:
            parts.append([node, node])
    return ','.join('%d' % low if low == high else '%d-%d' % (low, high) for low, high in parts)


def node_available_kb(meminfo_kb):
    """What a node can still give before its OOM: free pages, its file LRU pages and its reclaimable
    slab. Nodes have no MemAvailable; the kernel's estimate also keeps back part of the page cache
    and the watermarks, so this is the upper end. None without MemFree."""
    if meminfo_kb.get('MemFree') is None:
        return None
    reclaimable = meminfo_kb.get('KReclaimable', meminfo_kb.get('SReclaimable', 0))
    return (meminfo_kb['MemFree'] + meminfo_kb.get('Active(file)', 0) + meminfo_kb.get('Inactive(file)', 0)
            + reclaimable)


def _bound_pids(host, snap, restricted, mask_of):
    """{pid: node mask} of the tasks in cgroups whose cpuset allows fewer nodes than the host has (on v2,
    with the cgroups under them that have no cpuset of their own)."""
    layout = snap.get('cgroup') or {}
    controller = layout.get('cpuset_controller') or {}
    mount = (controller.get('mount') or '').rstrip('/')
    paths = dict((path, mask_of[path]) for path in restricted if path in mask_of)
    if controller.get('version') == 2:
        for cgroup in snap.get('cgroups') or []:
            path = cgroup['path']
            if path in restricted:
                continue
            # the nearest confined ancestor's nodes
            owner = next((a for a in _self_and_ancestors(path)[1:] if a in restricted), None)
            if owner in mask_of:
                paths[path] = mask_of[owner]
    bound = {}
    for path in sorted(paths):
        for pid in read_procs(host, mount + path):
            bound[pid] = paths[path]
    return bound


def node_domains(host, snap, page_kb=4, exclude_pids=(), at_least_one=False, max_tasks=MAX_TASKS,
                 task_cache=None, rank_tasks=True):
    """One domain per set of NUMA nodes a cpuset confines tasks to (cpuset.mems, systemd's
    AllowedMemoryNodes). When such a set runs out, constrained_alloc() makes it a CONSTRAINT_CPUSET OOM:
    totalpages are the set's present pages plus all swap, and the candidates are every task whose
    cpuset shares a node with the set (oom_cpuset_eligible), unconfined tasks included.
    Returns (domains, notes); nothing on a host with one memory node or no confined cpuset."""
    notes = []
    numa = snap.get('numa') or {}
    memory_nodes = set(n['node'] for n in numa.get('nodes') or [] if n.get('has_memory'))
    restricted = snap.get('cpuset_mems') or {}
    if len(memory_nodes) < 2 or not restricted:
        return [], notes
    mask_of = {}
    cpusets = {}
    for path in sorted(restricted):
        mask = frozenset(restricted[path]) & memory_nodes
        if mask and mask != memory_nodes:
            mask_of[path] = mask
            cpusets.setdefault(mask, []).append(path)
    if not cpusets:
        return [], notes
    bound = _bound_pids(host, snap, restricted, mask_of)
    pids = sorted(int(name) for name in host.listdir('proc') if name.isdigit()) if rank_tasks else []
    pids = [pid for pid in pids if pid not in exclude_pids]
    if len(pids) > max_tasks:
        notes.append('ranked %d of the %d tasks for the NUMA node domains only' % (max_tasks, len(pids)))
        pids = pids[:max_tasks]
    tasks = read_tasks(host, pids, task_cache) if pids else []
    present_kb = {}
    for zone in snap.get('zones') or []:
        if zone.get('present_kb') is not None:
            present_kb[zone['node']] = present_kb.get(zone['node'], 0) + zone['present_kb']
    meminfo = dict((n['node'], n.get('memory_kb') or {}) for n in numa.get('nodes') or [])
    swap_total_kb = snap['memory'].get('SwapTotal') or 0
    swap_free_kb = snap['memory'].get('SwapFree') or 0
    oom_groups = dict((c['path'], bool(c.get('oom_group'))) for c in snap.get('cgroups') or [])
    domains = []
    for mask in sorted(cpusets, key=sorted):
        if all(node in present_kb for node in mask):
            size_kb = sum(present_kb[node] for node in mask)
        else:
            size_kb = sum(meminfo.get(node, {}).get('MemTotal', 0) for node in mask)
            notes.append('node %s: no present pages in zoneinfo; its MemTotal is taken for the kernel\'s size'
                         % format_node_list(mask))
        totalpages = size_kb // page_kb + swap_total_kb // page_kb
        candidates = [t for t in tasks if t['has_mm'] and not t['kthread'] and bound.get(t['pid'], memory_nodes) & mask]
        victim, ranked = rank(candidates, totalpages, page_kb, at_least_one)
        limit_kb = sum(meminfo.get(node, {}).get('MemTotal', 0) for node in mask) + swap_total_kb
        available = [node_available_kb(meminfo.get(node, {})) for node in mask]
        usage_kb = None if None in available else limit_kb - sum(available) - swap_free_kb
        paths = cpusets[mask]
        domain = {
            'kind': 'node', 'path': 'node:' + format_node_list(mask), 'nodes': sorted(mask),
            'cpusets': paths[:20], 'unit': unit_of(paths[0]) if len(paths) == 1 else None,
            'limit_kb': limit_kb, 'usage_kb': usage_kb,
            'headroom_kb': None if usage_kb is None else limit_kb - usage_kb,
            'totalpages': totalpages, 'tasks': len(candidates) if rank_tasks else None,
            'bound_tasks': sum(1 for pid in bound if bound[pid] == mask),
            'group_kill': None, 'next_victim': None, 'group_victims': [], 'forecast': None,
            '_ranked': ranked,  # for what_if; collect() drops it
        }
        if victim is not None:
            domain['next_victim'], domain['group_kill'], domain['group_victims'] = _node_choice(
                host, snap, ranked, oom_groups)
        domains.append(domain)
    return domains, notes


def _node_choice(host, snap, ranked, oom_groups):
    """(victim, group_kill, group_victims) of a node domain's ranking: the first task, and the memory
    cgroup a global OOM kills whole with it (mem_cgroup_get_oom_group looks up to the root)."""
    chosen = ranked[0]
    cgroup, unit = processes_cgroup_of(host, chosen['pid'])
    group = group_of(cgroup, '/', oom_groups) if cgroup else None
    return _victim_view(chosen, unit), group, (_members_of(host, snap, group, ranked) if group else [])


def _members_of(host, snap, group, ranked):
    """The ranked tasks in the memory cgroup group and below it (the tasks a group kill takes)."""
    controller = (snap.get('cgroup') or {}).get('memory_controller') or {}
    mount = (controller.get('mount') or '').rstrip('/')
    pids = set()
    for cgroup in snap.get('cgroups') or []:
        if cgroup['path'] == group or cgroup['path'].startswith(group.rstrip('/') + '/'):
            pids.update(read_procs(host, mount + cgroup['path']))
    return [_victim_view(t, None) for t in ranked if t['pid'] in pids]


def _self_and_ancestors(path):
    """'/a/b' -> ['/a/b', '/a', '/']."""
    found = [path]
    while path not in ('/', ''):
        path = path.rsplit('/', 1)[0] or '/'
        found.append(path)
    return found


def host_usage_kb(memory_kb):
    """RAM and swap in use (MemTotal + SwapTotal - MemAvailable - SwapFree); None without MemAvailable."""
    if memory_kb.get('MemAvailable') is None:
        return None
    return (memory_kb.get('MemTotal', 0) + memory_kb.get('SwapTotal', 0) - memory_kb['MemAvailable']
            - memory_kb.get('SwapFree', 0))


def host_domain(memory_kb, victims):
    """The host: all of RAM and swap (constrained_alloc's totalpages), ranked by the kernel's own oom_score."""
    total_kb = memory_kb.get('MemTotal', 0) + memory_kb.get('SwapTotal', 0)
    usage_kb = host_usage_kb(memory_kb)
    headroom_kb = None if usage_kb is None else total_kb - usage_kb
    victim = None
    if victims:
        top = victims[0]
        victim = {'pid': top['pid'], 'comm': top['comm'], 'unit': top.get('unit'), 'badness': None,
                  'oom_score': top['oom_score'], 'oom_score_adj': top['oom_score_adj'], 'rss_kb': top['rss_kb'],
                  'swap_kb': top.get('swap_kb'), 'pgtables_kb': None}
    return {'kind': 'host', 'path': '/', 'unit': None, 'limit_kb': total_kb,
            'usage_kb': usage_kb, 'headroom_kb': headroom_kb,
            'totalpages': None, 'tasks': None, 'group_kill': None, 'next_victim': victim, 'group_victims': [],
            'forecast': None}


def _tightest_first(domain):
    return (domain['headroom_kb'] is None, domain['headroom_kb'] or 0, domain['path'])


def collect(host, snap, page_kb=4, exclude_pids=(), what_if_request=None, rank_tasks=True):
    """The domains of a snapshot (host first, then memory cgroups and NUMA node sets, tightest headroom
    first), and what_if's answer when what_if_request is given; (domains, what_if answer or None, notes).
    Without rank_tasks (the monitor's collector, every minute), no task is read: the limits, usage and
    headroom only, with no next victim."""
    processes = snap.get('processes') or {}
    domains = [host_domain(snap['memory'], processes.get('victims') or [])]
    notes = []
    task_cache = {}
    controller = (snap.get('cgroup') or {}).get('memory_controller')
    if controller and snap.get('cgroups'):
        memcgs, notes = memcg_domains(host, snap['cgroups'], controller['mount'], snap['memory'].get('SwapTotal'),
                                      page_kb, exclude_pids=exclude_pids,
                                      kernel_release=(snap.get('kernel') or {}).get('release'), task_cache=task_cache,
                                      rank_tasks=rank_tasks)
        domains += memcgs
    release = kr.kernel_version((snap.get('kernel') or {}).get('release') or '')
    nodes, node_notes = node_domains(host, snap, page_kb, exclude_pids,
                                     at_least_one=release is not None and release < SIGNED_POINTS_SINCE,
                                     task_cache=task_cache, rank_tasks=rank_tasks)
    notes += node_notes
    domains[1:] = sorted(domains[1:] + nodes, key=_tightest_first)
    answer = None
    if what_if_request is not None:
        oom_groups = dict((c['path'], bool(c.get('oom_group'))) for c in snap.get('cgroups') or [])
        answer = what_if(domains, what_if_request, snap['memory'], processes.get('victims') or [], oom_groups, page_kb,
                         host, snap)
    for domain in domains:
        domain.pop('_ranked', None)
    return domains, answer, notes


# -- what if -------------------------------------------------------------------------

def what_if(domains, request, memory_kb, host_victims, oom_groups, page_kb=4, host=None, snap=None):
    """Which domain fills first if the cgroup request['path'] grows by request['grow_kb'] (in the
    task request['pid'] when given), and whom the kernel kills there. Nothing is written: the
    answer is computed from the domains as read."""
    path, grow_kb, pid = request['path'], request['grow_kb'], request.get('pid')
    on_the_way = [d for d in domains if d['kind'] == 'host'
                  or _under(path, d['cpusets'] if d['kind'] == 'node' else [d['path']])]
    answer = {'path': path, 'grow_kb': grow_kb, 'pid': pid, 'fills': None, 'victim': None, 'group_kill': None,
              'group_victims': [], 'domains': [
                  {'kind': d['kind'], 'path': d['path'], 'unit': d['unit'], 'limit_kb': d['limit_kb'],
                   'headroom_kb': d['headroom_kb'], 'fills': d['headroom_kb'] is not None and grow_kb >= d['headroom_kb']}
                  for d in on_the_way], 'note': None}
    full = [d for d in on_the_way if d['headroom_kb'] is not None and grow_kb >= d['headroom_kb']]
    if not full:
        known = [d for d in on_the_way if d['headroom_kb'] is not None]
        if known:
            tightest = min(known, key=lambda d: d['headroom_kb'])
            answer['note'] = 'no domain fills: the least headroom on the way is %d kB, in %s' % (
                tightest['headroom_kb'], tightest['path'])
        else:
            answer['note'] = 'no domain on the way has a known headroom'
        return answer
    # The growth raises every domain on the way at once: the one with the least headroom fills first.
    domain = min(full, key=lambda d: (d['headroom_kb'], d['kind'] == 'host'))
    answer['fills'] = {'kind': domain['kind'], 'path': domain['path'], 'unit': domain['unit'],
                       'limit_kb': domain['limit_kb'], 'headroom_kb': domain['headroom_kb']}
    if domain['kind'] == 'host':
        answer['victim'], answer['note'] = _host_what_if(host_victims, pid, grow_kb, memory_kb, page_kb)
        return answer
    ranked = [dict(task) for task in domain.get('_ranked') or []]
    grower = [task for task in ranked if task['pid'] == pid] if pid is not None else []
    if grower:
        task = grower[0]
        task['rss_kb'] += grow_kb
        task['badness'] = badness(task['rss_kb'], task['swap_kb'], task['pgtables_kb'], task['oom_score_adj'],
                                  domain['totalpages'], page_kb, at_least_one=False)
        if task['badness'] is None:
            ranked.remove(task)
        ranked.sort(key=lambda t: -t['badness'])  # stable: equal points keep the kernel's order
    elif pid is not None:
        answer['note'] = 'pid %d is not a task of %s: the growth is taken as another task\'s' % (pid, domain['path'])
    else:
        answer['note'] = 'the growing task is not named (pid): the choice is among the tasks as they are'
    if ranked and domain['kind'] == 'node':
        answer['victim'], answer['group_kill'], answer['group_victims'] = _node_choice(host, snap, ranked, oom_groups)
    elif ranked:
        chosen = ranked[0]
        answer['victim'] = _victim_view(chosen, unit_of(chosen['cgroup']))
        group = group_of(chosen['cgroup'], domain['path'], oom_groups)
        if group is not None:
            answer['group_kill'] = group
            answer['group_victims'] = [_victim_view(t, unit_of(t['cgroup'])) for t in ranked
                                       if t['cgroup'] == group or t['cgroup'].startswith(group.rstrip('/') + '/')]
    return answer


def _under(path, tops):
    return any(path == top or path.startswith(top.rstrip('/') + '/') for top in tops)


def _host_what_if(victims, pid, grow_kb, memory_kb, page_kb):
    """The host's victim after pid grew by grow_kb: oom_score rises by the pages over the host's size
    (1000 points for all of RAM and swap)."""
    if not victims:
        return None, 'no process scan: the host\'s victim is not known'
    total_pages = (memory_kb.get('MemTotal', 0) + memory_kb.get('SwapTotal', 0)) // page_kb or 1
    scored = [(v['oom_score'] + (grow_kb // page_kb * 1000 // total_pages if v['pid'] == pid else 0), v)
              for v in victims]
    note = None
    if pid is not None and not any(v['pid'] == pid for v in victims):
        note = 'pid %d is not among the listed victims: its growth is taken as another task\'s' % pid
    elif pid is None:
        note = 'the growing task is not named (pid): the choice is among the tasks as they are'
    score, top = max(scored, key=lambda item: item[0])
    return {'pid': top['pid'], 'comm': top['comm'], 'unit': top.get('unit'), 'badness': None, 'oom_score': score,
            'oom_score_adj': top['oom_score_adj'], 'rss_kb': top['rss_kb'] + (grow_kb if top['pid'] == pid else 0),
            'swap_kb': top.get('swap_kb'), 'pgtables_kb': None}, note


# -- time to OOM -----------------------------------------------------------------

# A forecast's interval: the fitted growth plus or minus this many standard errors.
FORECAST_SIGMAS = 2


def usage_reader(host, mount):
    """A function domain -> its usage in kB now (None when unreadable): a memory
    cgroup's memory.current (v2) or memory.usage_in_bytes (v1) under mount; the
    host's RAM and swap in use (MemTotal + SwapTotal - MemAvailable - SwapFree)."""
    def read(domain):
        try:
            return _read_usage(domain)
        except procfs.ReadError:
            return None

    def _read_usage(domain):
        if domain['kind'] == 'host':
            return host_usage_kb(procfs.parse_meminfo(host.read('proc/meminfo') or '')[0])
        if domain['kind'] == 'node':
            return _node_usage_kb(domain)
        usage = cgroups.usage_bytes(host, (mount or '').rstrip('/') + domain['path'])
        return None if usage is None else usage // 1024

    def _node_usage_kb(domain):
        swap = procfs.parse_meminfo(host.read('proc/meminfo') or '')[0]
        used = swap.get('SwapTotal', 0) - swap.get('SwapFree', 0)
        for node in domain['nodes']:
            meminfo = procfs.parse_meminfo(host.read('%s/node%d/meminfo' % (procfs.NODE_DIR, node)) or '')[0]
            available = node_available_kb(meminfo)
            if available is None or meminfo.get('MemTotal') is None:
                return None
            used += meminfo['MemTotal'] - available
        return used
    return read


def fit(points):
    """Least-squares line through (seconds, kB) points: (slope kB/s, its standard error or None)."""
    count = len(points)
    mean_t = sum(t for t, dummy in points) / count
    mean_u = sum(u for dummy, u in points) / count
    sxx = sum((t - mean_t) ** 2 for t, dummy in points)
    if sxx <= 0:
        return None, None
    slope = sum((t - mean_t) * (u - mean_u) for t, u in points) / sxx
    if count < 3:
        return slope, None
    residual = sum((u - mean_u - slope * (t - mean_t)) ** 2 for t, u in points)
    return slope, (residual / (count - 2) / sxx) ** 0.5


def forecast(points, limit_kb):
    """What the samples (seconds, usage kB) say of a domain's time to OOM: growth_kb_per_s,
    time_to_oom_s (null when not growing), and time_to_oom_range_s, the times the fitted growth
    plus and minus FORECAST_SIGMAS standard errors give (the later one null when the fit cannot
    tell growth from none; the range null with two samples)."""
    points = [(t, u) for t, u in points if u is not None]
    result = {'samples': len(points), 'span_s': None, 'growth_kb_per_s': None, 'time_to_oom_s': None,
              'time_to_oom_range_s': None}
    if len(points) < 2:
        return result
    result['span_s'] = round(points[-1][0] - points[0][0], 3)
    slope, error = fit(points)
    if slope is None:
        return result
    result['growth_kb_per_s'] = round(slope, 1)
    headroom_kb = max(0, limit_kb - points[-1][1])
    if slope <= 0:
        return result
    result['time_to_oom_s'] = round(headroom_kb / slope, 1)
    if error is not None:
        fast = slope + FORECAST_SIGMAS * error
        slow = slope - FORECAST_SIGMAS * error
        result['time_to_oom_range_s'] = [round(headroom_kb / fast, 1), round(headroom_kb / slow, 1) if slow > 0
                                         else None]
    return result


def sample_forecasts(domains, read_usage, samples, interval_s, clock, sleep):
    """Each domain's 'forecast' from `samples` readings `interval_s` apart (read_usage, clock and
    sleep given: usage_reader, time.monotonic, time.sleep on a host)."""
    points = dict((index, []) for index in range(len(domains)))
    start = clock()
    for number in range(samples):
        if number:
            sleep(max(0.0, start + number * interval_s - clock()))
        for index, domain in enumerate(domains):
            points[index].append((clock(), read_usage(domain)))
    for index, domain in enumerate(domains):
        domain['forecast'] = forecast(points[index], domain['limit_kb']) if domain.get('limit_kb') else None
