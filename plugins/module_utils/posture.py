# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The posture judge: findings and a risk score from one host snapshot.

Everything here is a pure function over the plain-data snapshot that
``snapshot.collect()`` returns: no I/O, standard library only, so the same
code judges a live host (oom_facts) and a captured fixture (tests).

A check that lacks an input (non-root run, kernel without PSI, a skipped
reader) raises ``_Missing``; the judge then lists its finding ids under
``not_evaluated`` with the reason, and never guesses.  The catalogue below is
the single source of ids, severities, titles and advice; docs/findings.md
describes the same ids for operators and a unit test keeps both in step.
"""


from ansible_collections.oomguard.linux.plugins.module_utils import kernel_rules as kr
from ansible_collections.oomguard.linux.plugins.module_utils import schema

SEVERITIES = ('critical', 'high', 'medium', 'low', 'info')  # worst first
SEVERITY_RANK = dict((name, rank) for rank, name in enumerate(SEVERITIES))

# risk_score = min(100, sum of these over the findings); see docs/findings.md.
SEVERITY_WEIGHTS = {'critical': 50, 'high': 25, 'medium': 10, 'low': 3, 'info': 0}
# The score alone raises the level to at least this once it reaches the bound.
LEVEL_SCORE_BOUNDS = (('critical', 75), ('high', 40), ('medium', 15))
# The worst finding alone sets at least this level.
LEVEL_FOR_SEVERITY = {'critical': 'critical', 'high': 'high', 'medium': 'medium', 'low': 'low', 'info': 'low'}
LEVELS = ('low', 'medium', 'high', 'critical')

# How many likely victims a posture lists, and at most.
DEFAULT_VICTIMS = 10
MAX_VICTIMS = 1000

DEFAULT_THRESHOLDS = {
    'memavailable_low_percent': 10,
    'memavailable_critical_percent': 5,
    'strict_commit_near_percent': 90,
    'commit_ratio_percent': 200,
    # The guards' numbers (kernel_rules): a value the sysctl role accepts is not flagged.
    'min_free_max_percent': kr.MIN_FREE_MAX_PERCENT,
    'min_free_below_default_percent': 100,
    'psi_full_avg10_elevated_percent': 5.0,
    'psi_full_avg60_elevated_percent': 5.0,
    'psi_full_avg10_severe_percent': 20.0,
    'psi_full_avg60_severe_percent': 10.0,
    'swap_free_min_percent': 10,
    'fragmentation_order': 3,
    'fragmentation_min_zone_kb': 262144,
    'slab_unreclaimable_percent': 10,
    'hugetlb_unused_percent': 20,
    'pid1_rss_anon_kb': 204800,
    'lowmem_free_percent': 10,
    'highmem_large_ram_kb': 16777216,
    'cgroup_near_limit_percent': 90,
    'cgroup_over_high_percent': 100,
    'cpuset_allowed_free_percent': 10,
    'cpuset_other_free_percent': 25,
    'critical_victim_rank': 3,
    'critical_processes': [
        'sshd', 'systemd-journal', 'systemd-journald', 'dbus-daemon', 'dbus-broker',
        'mysqld', 'mariadbd', 'postgres', 'postmaster', 'mongod', 'redis-server',
        'dockerd', 'containerd', 'kubelet', 'etcd',
        'earlyoom', 'systemd-oomd', 'oomd', 'nohang',
    ],
    'kill_loop_min_workers': 2,
    'early_killer_max_oom_score_adj': -900,
    'time_to_oom_warn_s': 3600,
}

# Sampling for the time-to-OOM forecast (oom_facts samples, interval_s): a run
# watches the host at most this long; longer watches belong in a monitor.
MAX_SAMPLES = 720
MAX_SAMPLING_S = 3600

# How many items an evidence list carries at most; the count is given too.
EVIDENCE_LIST_MAX = 10

# Kernel values the checks compare with.
OVERCOMMIT_NEVER = 2          # vm.overcommit_memory strict accounting
PANIC_ON_OOM_ALWAYS = 2       # vm.panic_on_oom: also on cgroup and cpuset OOMs
OOM_SCORE_ADJ_MIN = -1000     # exempt from the OOM killer

# Units of the userspace early OOM killers processes.EARLY_KILLERS knows.
EARLY_KILLER_UNITS = ('earlyoom.service', 'systemd-oomd.service', 'oomd.service',
                      'nohang.service', 'nohang-desktop.service')

_LIMITS = 'oomguard.linux.cgroup_limits role'
_EARLY = 'oomguard.linux.early_oom role (`oomguard_early_oom`)'

CATALOGUE = {
    # -- kernel settings ----------------------------------------------------
    'panic_without_reboot': {
        'severity': 'critical',
        'title': 'An OOM panics the kernel and nothing reboots it: the host hangs until someone power-cycles it',
        'advice': 'Set kernel.panic to a reboot delay in seconds (e.g. 10), or vm.panic_on_oom to 0, in '
                  '`oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'panic_on_cgroup_oom': {
        'severity': 'high',
        'title': 'vm.panic_on_oom=2 with memory limits or cpusets in use: one container or service OOM reboots the host',
        'advice': 'Set vm.panic_on_oom to 0 (or 1, to panic only when the whole host is out of memory) in '
                  '`oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'panic_on_oom_enabled': {
        'severity': 'info',
        'title': 'An OOM panics and reboots the host instead of killing a process',
        'advice': 'Nothing to do if this is deliberate; to kill a process instead, set vm.panic_on_oom to 0 in '
                  '`oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'strict_commit_limit_reached': {
        'severity': 'critical',
        'title': 'Strict overcommit (mode 2) and Committed_AS has reached CommitLimit: new allocations fail now',
        'advice': 'Raise CommitLimit (vm.overcommit_ratio or vm.overcommit_kbytes, or more swap) or return to '
                  'vm.overcommit_memory=0, in `oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'strict_commit_limit_near': {
        'severity': 'high',
        'title': 'Strict overcommit (mode 2) and Committed_AS is close to CommitLimit',
        'advice': 'Raise CommitLimit (vm.overcommit_ratio or vm.overcommit_kbytes, or more swap) before allocations '
                  'start failing, in `oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'overcommit_ratio_and_kbytes': {
        'severity': 'low',
        'title': 'vm.overcommit_ratio and vm.overcommit_kbytes are both non-zero: which one sets CommitLimit is unclear',
        'advice': 'Set only one of vm.overcommit_ratio and vm.overcommit_kbytes (the other to 0) in '
                  '`oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'commit_ratio_high': {
        'severity': 'low',
        'title': 'Heavily overcommitted: Committed_AS is far above CommitLimit (information, not enforced in this mode)',
        'advice': 'Cap the biggest committers with `oomguard_services[unit].memory_max` (' + _LIMITS + ') and run an '
                  'early OOM killer with the ' + _EARLY + '; keep vm.overcommit_memory out of mode 2 via '
                  '`oomguard_sysctl` unless CommitLimit is sized for this load.',
    },
    'min_free_kbytes_too_high': {
        'severity': 'medium',
        'title': 'vm.min_free_kbytes is a large share of low memory: memory is held back and reclaim starts very early',
        'advice': 'Lower vm.min_free_kbytes toward the kernel default (evidence default_min_free_kbytes) in '
                  '`oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'min_free_kbytes_below_default': {
        'severity': 'low',
        'title': 'vm.min_free_kbytes is below the kernel default: kswapd wakes late and atomic allocations can fail',
        'advice': 'Raise vm.min_free_kbytes to at least the kernel default (evidence default_min_free_kbytes) in '
                  '`oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'oom_dump_tasks_disabled': {
        'severity': 'low',
        'title': 'vm.oom_dump_tasks=0: OOM reports carry no task table, so the cause of a kill cannot be traced',
        'advice': 'Set vm.oom_dump_tasks to 1 in `oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'oom_kill_allocating_task': {
        'severity': 'info',
        'title': 'vm.oom_kill_allocating_task=1: the OOM killer kills whoever asked for memory, not the biggest process',
        'advice': 'If the biggest process should die instead, set vm.oom_kill_allocating_task to 0 in '
                  '`oomguard_sysctl` with the oomguard.linux.sysctl role.',
    },
    'thp_always': {
        'severity': 'medium',
        'title': 'Transparent huge pages enabled=always: sparse memory use is rounded up to 2 MB pages',
        'advice': 'Set `oomguard_thp.enabled` to madvise (or never) with the oomguard.linux.thp role, which also '
                  'makes the setting survive a reboot.',
    },
    'thp_defrag_always': {
        'severity': 'low',
        'title': 'Transparent huge pages defrag=always: page faults stall in direct compaction',
        'advice': 'Set `oomguard_thp.defrag` to defer+madvise or madvise with the oomguard.linux.thp role.',
    },
    'no_swap': {
        'severity': 'info',
        'title': 'No swap: under pressure only page cache can be reclaimed, the path to a near-OOM stall',
        'advice': 'Informational; make sure an early OOM killer ends such stalls with the ' + _EARLY + '.',
    },
    # -- memory state now -------------------------------------------------------
    'memavailable_critical': {
        'severity': 'high',
        'title': 'MemAvailable is critically low',
        'advice': 'Cap the biggest consumers with `oomguard_services[unit].memory_max` / `memory_high` (' + _LIMITS
                  + ') and run an early OOM killer with the ' + _EARLY + '.',
    },
    'memavailable_low': {
        'severity': 'medium',
        'title': 'MemAvailable is low',
        'advice': 'Cap the biggest consumers with `oomguard_services[unit].memory_max` / `memory_high` (' + _LIMITS
                  + ') and run an early OOM killer with the ' + _EARLY + '.',
    },
    'memory_pressure_severe': {
        'severity': 'high',
        'title': 'Memory PSI shows all tasks stalled on memory much of the time: the host is near OOM',
        'advice': 'Run an early OOM killer that acts on PSI with the ' + _EARLY + ', and cap the services that fill '
                  'memory with `oomguard_services[unit].memory_high` / `memory_max` (' + _LIMITS + ').',
    },
    'memory_pressure_elevated': {
        'severity': 'medium',
        'title': 'Memory PSI shows tasks stalling on memory',
        'advice': 'Run an early OOM killer that acts on PSI with the ' + _EARLY + ', and cap the services that fill '
                  'memory with `oomguard_services[unit].memory_high` / `memory_max` (' + _LIMITS + ').',
    },
    'swap_nearly_full': {
        'severity': 'medium',
        'title': 'Swap is nearly full: the next step is the OOM killer',
        'advice': 'Cap the services that swap with `oomguard_services[unit].memory_max` / `memory_swap_max` ('
                  + _LIMITS + ').',
    },
    'zone_below_min': {
        'severity': 'high',
        'title': 'A memory zone is below its min watermark: allocations are in direct reclaim and an OOM is close',
        'advice': 'Cap the consumers with `oomguard_services[unit].memory_max` (' + _LIMITS + ') and start kswapd '
                  'earlier with vm.watermark_scale_factor in `oomguard_sysctl` (oomguard.linux.sysctl role).',
    },
    'zone_below_low': {
        'severity': 'medium',
        'title': 'A memory zone is below its low watermark: kswapd is reclaiming',
        'advice': 'Start kswapd earlier with vm.watermark_scale_factor in `oomguard_sysctl` (oomguard.linux.sysctl '
                  'role) and cap the consumers with `oomguard_services[unit].memory_max` (' + _LIMITS + ').',
    },
    'zone_fragmented': {
        'severity': 'medium',
        'title': 'Memory is fragmented: a zone has free memory but no free blocks at the orders the OOM killer serves',
        'advice': 'Turn on background compaction with vm.compaction_proactiveness (kernel 5.9+) in `oomguard_sysctl` '
                  '(oomguard.linux.sysctl role) and set `oomguard_thp.defrag` to defer+madvise (oomguard.linux.thp role).',
    },
    'slab_unreclaimable_high': {
        'severity': 'medium',
        'title': 'Unreclaimable slab (SUnreclaim) is a large share of memory: a kernel memory leak is likely',
        'advice': 'Find the cache that grows (evidence top_caches, confirm with the slab_leak module) and the service '
                  'that drives it; cap that service with `oomguard_services[unit].memory_max` (' + _LIMITS + '), '
                  'which charges its kernel memory on cgroup v2.',
    },
    'hugetlb_pool_unused': {
        'severity': 'medium',
        'title': 'A large hugetlb pool sits unused: that memory is unavailable to everything else',
        'advice': 'Shrink the pool to what applications map with vm.nr_hugepages in `oomguard_sysctl` '
                  '(oomguard.linux.sysctl role).',
    },
    'pid1_rss_high': {
        'severity': 'low',
        'title': 'PID 1 holds a lot of anonymous memory (a systemd leak?); PID 1 is never an OOM victim',
        'advice': 'Re-execute or upgrade PID 1 (systemctl daemon-reexec) in a maintenance window; meanwhile keep '
                  'an early OOM killer running with the ' + _EARLY + '.',
    },
    'lowmem_exhausted': {
        'severity': 'high',
        'title': '32-bit lowmem is nearly exhausted while HighMem is free: kernel allocations will OOM',
        'advice': 'Run a 64-bit kernel; until then reserve lowmem with vm.lowmem_reserve_ratio and '
                  'vm.min_free_kbytes in `oomguard_sysctl` (oomguard.linux.sysctl role).',
    },
    'highmem_large_ram': {
        'severity': 'medium',
        'title': 'A HighMem (32-bit) kernel on a host with more than 16 GB: lowmem will run out first',
        'advice': 'Run a 64-bit kernel; until then reserve lowmem with vm.lowmem_reserve_ratio and '
                  'vm.min_free_kbytes in `oomguard_sysctl` (oomguard.linux.sysctl role).',
    },
    'oom_kills_since_boot': {
        'severity': 'medium',
        'title': 'The kernel has OOM-killed processes since boot',
        'advice': 'Read the kill reports with the oom_events module to learn the cause, then fix it, typically with '
                  'per-service limits in `oomguard_services[unit].memory_max` (' + _LIMITS + ').',
    },
    # -- cgroups ------------------------------------------------------------------
    'cgroup_near_limit': {
        'severity': 'medium',
        'title': 'cgroups are close to their memory limit (usage includes page cache)',
        'advice': 'Right-size `oomguard_services[unit].memory_max` or `oomguard_cgroups` (' + _LIMITS + '), or set '
                  '`memory_high` below it so the service is reclaimed and throttled before it is killed.',
    },
    'cgroup_over_high': {
        'severity': 'medium',
        'title': 'cgroups are at or above memory.high: their allocations are throttled',
        'advice': 'Raise `oomguard_services[unit].memory_high` (' + _LIMITS + ') or reduce the service\'s memory use.',
    },
    'cgroup_oom_kills': {
        'severity': 'medium',
        'title': 'cgroups have had processes OOM-killed at their memory limit',
        'advice': 'Right-size `oomguard_services[unit].memory_max` or `oomguard_cgroups` (' + _LIMITS + '), or fix '
                  'the service\'s memory growth.',
    },
    'cgroup_under_oom': {
        'severity': 'high',
        'title': 'cgroups are under OOM right now (cgroup v1 under_oom): their tasks are stalled',
        'advice': 'Raise the limit or re-enable the cgroup OOM killer through `oomguard_cgroups` or '
                  '`oomguard_services[unit].memory_max` (' + _LIMITS + ').',
    },
    'cgroup_oom_kill_disabled': {
        'severity': 'medium',
        'title': 'cgroups have the OOM killer disabled (v1 oom_kill_disable=1): at the limit their tasks hang',
        'advice': 'Re-enable the OOM killer for those cgroups through `oomguard_cgroups` (' + _LIMITS + ').',
    },
    'cgroup_limit_hit': {
        'severity': 'low',
        'title': 'cgroups have hit their memory limit (v1 failcnt, v2 memory.events max)',
        'advice': 'Check that the limit fits the service; right-size `oomguard_services[unit].memory_max` or '
                  '`oomguard_cgroups` (' + _LIMITS + ').',
    },
    'cgroup_protection_nullified': {
        'severity': 'medium',
        'title': 'Memory protection that does nothing: a cgroup\'s memory.min/low sits under an ancestor that '
                 'grants none, and the kernel caps a child\'s protection at its parent\'s',
        'advice': 'Give the ancestor (usually the slice) at least the sum of its children\'s protection, e.g. '
                  '`oomguard_services[\'system.slice\'].memory_low` (' + _LIMITS + ').',
    },
    'cgroup_high_not_below_max': {
        'severity': 'low',
        'title': 'memory.high at or above the effective memory.max: the throttling it asks for never starts',
        'advice': 'Set `memory_high` below `memory_max` (and below any parent\'s limit), e.g. 90 % of it, with '
                  '`oomguard_services[unit]` (' + _LIMITS + ').',
    },
    'cgroup_min_overcommitted': {
        'severity': 'low',
        'title': 'Children\'s memory.min add up to more than their parent\'s: the kernel scales each down',
        'advice': 'Raise the parent\'s memory_min to the sum of its children\'s, or lower theirs, with '
                  '`oomguard_cgroups` or `oomguard_services[unit].memory_min` (' + _LIMITS + ').',
    },
    'oomd_covers_nothing': {
        'severity': 'medium',
        'title': 'systemd-oomd runs but watches nothing it can act on: no cgroup is enrolled for a pressure kill '
                 '(or the kernel has no PSI), and no swap kill can fire',
        'advice': 'Enroll the slices with `oomguard_early_oom` (killer systemd-oomd, `slices`) through the '
                  'oomguard.linux.early_oom role, which sets ManagedOOMMemoryPressure=kill on them.',
    },
    'oom_forecast_soon': {
        'severity': 'high',
        'title': 'Memory use in an OOM domain grows steadily: at this rate it reaches its limit soon',
        'advice': 'Find what grows (the domain\'s next victim is named; `oomguard.linux.slab_leak` for kernel '
                  'memory), then raise the limit before the kill (`oomguard_cgroups` / '
                  '`oomguard_services[unit].memory_max`, oomguard.linux.cgroup_limits role) or fix the leak.',
    },
    'earlyoom_avoid_misses_critical': {
        'severity': 'medium',
        'title': "A critical process ranks among the first victims and earlyoom's --avoid does not cover it",
        'advice': 'List it in `oomguard_early_oom.avoid` (oomguard.linux.early_oom role, which writes earlyoom\'s '
                  '--avoid), or lower its oom_score_adj with `oomguard_services[unit].oom_score_adj` '
                  '(oomguard.linux.oom_protect role).',
    },
    'earlyoom_pattern_matches_nothing': {
        'severity': 'low',
        'title': "An earlyoom --prefer or --avoid pattern matches no running process (a typo, or a name that changed)",
        'advice': 'earlyoom matches the process name (comm, at most 15 characters) with a POSIX ERE; fix the names '
                  'in `oomguard_early_oom.prefer` / `avoid` (oomguard.linux.early_oom role).',
    },
    'group_kill_overrides_adj': {
        'severity': 'medium',
        'title': 'A protected process (negative oom_score_adj) sits in a memory.oom.group cgroup: the group kill '
                 'takes it regardless',
        'advice': 'Move the process out of the group (its own unit), or give it -1000 with '
                  '`oomguard_services[unit].oom_score_adj` if it must never be killed (oomguard.linux.oom_protect '
                  'role); oom_score_adj only orders the choice of the first victim.',
    },
    'cpuset_numa_squeeze': {
        'severity': 'high',
        'title': 'A cgroup is confined to NUMA nodes that are nearly full while other nodes have room',
        'advice': 'Allow more nodes with `oomguard_services[unit].allowed_memory_nodes` (oomguard.linux.cpuset role).',
    },
    # -- processes -------------------------------------------------------------
    'critical_process_likely_victim': {
        'severity': 'high',
        'title': 'A critical process is among the OOM killer\'s first choices',
        'advice': 'Lower its score with `oomguard_services[unit].oom_score_adj` (e.g. -500, or -1000 for sshd) with '
                  'the oomguard.linux.oom_protect role.',
    },
    'kill_loop_risk': {
        'severity': 'medium',
        'title': 'A program that forks workers runs in a unit with OOMPolicy=continue: an OOM kill loop is possible',
        'advice': 'Set `oomguard_services[unit].oom_policy: kill` with the oomguard.linux.oom_protect role so an OOM '
                  'kill ends the whole unit instead of the master re-forking workers.',
    },
    'kill_loop_risk_unmanaged': {
        'severity': 'low',
        'title': 'A program that forks workers has no known systemd OOMPolicy: an OOM kill loop is possible',
        'advice': 'Run it as a systemd unit with `oomguard_services[unit].oom_policy: kill` (oomguard.linux.oom_protect '
                  'role), or limit it as a whole with `oomguard_cgroups` (' + _LIMITS + ').',
    },
    'early_killer_unprotected': {
        'severity': 'medium',
        'title': 'The early OOM killer itself is not protected from the kernel OOM killer',
        'advice': 'Set `oomguard_services[unit].oom_score_adj: -1000` for the killer\'s unit with the '
                  'oomguard.linux.oom_protect role.',
    },
    'no_early_killer': {
        'severity': 'medium',
        'title': 'No userspace early OOM killer is running: a near-OOM stall lasts until the kernel gives up',
        'advice': 'Install and enable one with the ' + _EARLY + '.',
    },
}


class _Missing(Exception):
    """A check's input is not in the snapshot; reason says why."""

    def __init__(self, reason):
        super(_Missing, self).__init__(reason)
        self.reason = reason


# Snapshot section -> the reader name its failure notes carry.
_READER_OF = {'zones': 'zoneinfo', 'cpuset_mems': 'cpuset', 'memory': 'meminfo'}


def _why_missing(snap, section):
    if section in (snap.get('skipped') or ()):
        return '%s: skipped on request' % section
    reader = _READER_OF.get(section, section)
    for note in snap.get('notes') or ():
        if note.get('reader') == reader:
            return '%s: %s' % (section, note.get('reason'))
    return '%s: not in the snapshot' % section


def _section(snap, name):
    value = snap.get(name)
    if value is None:
        raise _Missing(_why_missing(snap, name))
    return value


def _key(mapping, key, where):
    value = mapping.get(key)
    if value is None:
        raise _Missing('%s: no %s (not reported by this kernel or not read)' % (where, key))
    return value


def _sysctl(snap, name):
    return _key(_section(snap, 'sysctl'), name, 'sysctl')


def _meminfo(snap, name):
    return _key(_section(snap, 'memory'), name, 'meminfo')


def _percent(part, whole):
    """part / whole in percent, None when whole is not a positive number."""
    if not whole or whole <= 0:
        return None
    return part * 100.0 / whole


def _round(value):
    return None if value is None else round(value, 1)


def _capped(items):
    """An evidence list: at most EVIDENCE_LIST_MAX entries, with the full count."""
    return {'count': len(items), 'items': items[:EVIDENCE_LIST_MAX]}


# -- checks: kernel settings ------------------------------------------------
# Each check takes (snapshot, thresholds) and returns a list of
# (finding id, evidence dict); it raises _Missing when an input it needs
# is absent.

def check_panic(snap, th):
    panic_on_oom = _sysctl(snap, 'vm.panic_on_oom')
    if not panic_on_oom:
        return []
    panic = _sysctl(snap, 'kernel.panic')
    evidence = {'panic_on_oom': panic_on_oom, 'kernel_panic_seconds': panic}
    # kernel.panic < 0 reboots at once, > 0 after that many seconds; 0 never.
    if panic == 0:
        return [('panic_without_reboot', evidence)]
    return [('panic_on_oom_enabled', evidence)]


def check_panic_on_cgroup_oom(snap, th):
    if _sysctl(snap, 'vm.panic_on_oom') != PANIC_ON_OOM_ALWAYS:
        return []
    cgroups = snap.get('cgroups')
    cpusets = snap.get('cpuset_mems')
    if cgroups is None and cpusets is None:
        raise _Missing(_why_missing(snap, 'cgroups'))
    limited = sorted(c['path'] for c in cgroups or [] if c.get('max_bytes') is not None)
    restricted = sorted(cpusets or {})
    if not limited and not restricted:
        return []
    return [('panic_on_cgroup_oom', {
        'panic_on_oom': PANIC_ON_OOM_ALWAYS,
        'limited_cgroups': _capped(limited),
        'restricted_cpusets': _capped(restricted),
    })]


def check_strict_commit(snap, th):
    if _sysctl(snap, 'vm.overcommit_memory') != OVERCOMMIT_NEVER:
        return []
    committed = _meminfo(snap, 'Committed_AS')
    limit = _meminfo(snap, 'CommitLimit')
    used = _percent(committed, limit)
    if used is None:
        return []
    evidence = {
        'committed_as_kb': committed,
        'commit_limit_kb': limit,
        'commit_used_percent': _round(used),
        'overcommit_ratio_percent': snap['sysctl'].get('vm.overcommit_ratio'),
        'overcommit_kbytes': snap['sysctl'].get('vm.overcommit_kbytes'),
        'swap_total_kb': snap['memory'].get('SwapTotal'),
    }
    if used >= 100:  # the limit itself, not a tunable
        evidence['threshold_percent'] = 100
        return [('strict_commit_limit_reached', evidence)]
    if used >= th['strict_commit_near_percent']:
        evidence['threshold_percent'] = th['strict_commit_near_percent']
        return [('strict_commit_limit_near', evidence)]
    return []


def check_overcommit_ratio_and_kbytes(snap, th):
    ratio = _sysctl(snap, 'vm.overcommit_ratio')
    kbytes = _sysctl(snap, 'vm.overcommit_kbytes')
    if ratio and kbytes:
        return [('overcommit_ratio_and_kbytes', {'overcommit_ratio_percent': ratio, 'overcommit_kbytes': kbytes})]
    return []


def check_commit_ratio(snap, th):
    mode = _sysctl(snap, 'vm.overcommit_memory')
    if mode not in (0, 1):
        return []
    committed = _meminfo(snap, 'Committed_AS')
    limit = _meminfo(snap, 'CommitLimit')
    ratio = _percent(committed, limit)
    if ratio is None or ratio < th['commit_ratio_percent']:
        return []
    memory = snap['memory']
    ram_and_swap = (memory.get('MemTotal') or 0) + (memory.get('SwapTotal') or 0)
    return [('commit_ratio_high', {
        'overcommit_memory': mode,
        'committed_as_kb': committed,
        'commit_limit_kb': limit,
        'commit_ratio_percent': _round(ratio),
        'committed_of_ram_and_swap_percent': _round(_percent(committed, ram_and_swap)),
        'threshold_percent': th['commit_ratio_percent'],
    })]


def check_min_free_kbytes(snap, th):
    """The guards' rule (kernel_rules.min_free_verdict), with the thresholds as its numbers."""
    min_free = _sysctl(snap, 'vm.min_free_kbytes')
    _meminfo(snap, 'MemTotal')  # lowmem needs it
    lowmem = kr.lowmem_kb(snap['memory'])
    default = kr.min_free_default_kb(snap.get('zones'), (snap.get('kernel') or {}).get('release'), snap['memory'])
    evidence = {
        'min_free_kbytes': min_free,
        'lowmem_kb': lowmem,
        'min_free_of_lowmem_percent': _round(_percent(min_free, lowmem)),
        'default_min_free_kbytes': default,
    }
    if lowmem and min_free > kr.min_free_ceiling_kb(lowmem, th['min_free_max_percent']):
        evidence['threshold_percent'] = th['min_free_max_percent']
        return [('min_free_kbytes_too_high', evidence)]
    if default and min_free * 100 < default * th['min_free_below_default_percent']:
        evidence['threshold_percent_of_default'] = th['min_free_below_default_percent']
        return [('min_free_kbytes_below_default', evidence)]
    return []


def check_oom_dump_tasks(snap, th):
    if _sysctl(snap, 'vm.oom_dump_tasks') == 0:
        return [('oom_dump_tasks_disabled', {'oom_dump_tasks': 0})]
    return []


def check_oom_kill_allocating_task(snap, th):
    value = _sysctl(snap, 'vm.oom_kill_allocating_task')
    if value:
        return [('oom_kill_allocating_task', {'oom_kill_allocating_task': value})]
    return []


def check_thp_enabled(snap, th):
    thp = _section(snap, 'thp')
    if thp.get('enabled') == 'always':
        return [('thp_always', {'thp_enabled': 'always', 'anon_huge_pages_kb': snap['memory'].get('AnonHugePages')})]
    return []


def check_thp_defrag(snap, th):
    thp = _section(snap, 'thp')
    if thp.get('defrag') == 'always':
        return [('thp_defrag_always', {'thp_defrag': 'always'})]
    return []


def check_no_swap(snap, th):
    swap_total = _meminfo(snap, 'SwapTotal')
    mode = _sysctl(snap, 'vm.overcommit_memory')
    if swap_total == 0 and mode in (0, 1):
        return [('no_swap', {'swap_total_kb': 0, 'overcommit_memory': mode})]
    return []


# -- checks: memory state now -------------------------------------------------

def check_memavailable(snap, th):
    total = _meminfo(snap, 'MemTotal')
    available = _meminfo(snap, 'MemAvailable')  # absent before Linux 3.14
    share = _percent(available, total)
    if share is None:
        return []
    evidence = {'mem_available_kb': available, 'mem_total_kb': total, 'mem_available_percent': _round(share)}
    if share < th['memavailable_critical_percent']:
        evidence['threshold_percent'] = th['memavailable_critical_percent']
        return [('memavailable_critical', evidence)]
    if share < th['memavailable_low_percent']:
        evidence['threshold_percent'] = th['memavailable_low_percent']
        return [('memavailable_low', evidence)]
    return []


def check_memory_pressure(snap, th):
    full = _key(_section(snap, 'pressure'), 'full', 'pressure')
    avg10 = _key(full, 'avg10', 'pressure full')
    avg60 = _key(full, 'avg60', 'pressure full')
    evidence = {'full_avg10_percent': avg10, 'full_avg60_percent': avg60}
    for level, fid in (('severe', 'memory_pressure_severe'), ('elevated', 'memory_pressure_elevated')):
        limit10 = th['psi_full_avg10_%s_percent' % level]
        limit60 = th['psi_full_avg60_%s_percent' % level]
        if avg10 >= limit10 or avg60 >= limit60:
            evidence.update({'threshold_avg10_percent': limit10, 'threshold_avg60_percent': limit60})
            return [(fid, evidence)]
    return []


def check_swap_nearly_full(snap, th):
    total = _meminfo(snap, 'SwapTotal')
    free = _meminfo(snap, 'SwapFree')
    share = _percent(free, total)
    if share is None or share >= th['swap_free_min_percent']:
        return []
    return [('swap_nearly_full', {'swap_total_kb': total, 'swap_free_kb': free, 'swap_free_percent': _round(share),
                                  'threshold_percent': th['swap_free_min_percent']})]


def _zone_size_kb(zone):
    """Managed size, or present size on kernels without 'managed' (before 3.x)."""
    size = zone.get('managed_kb')
    return zone.get('present_kb') if size is None else size


def check_zone_watermarks(snap, th):
    below_min = []
    below_low = []
    for zone in _section(snap, 'zones'):
        free, low, minimum = zone.get('free_kb'), zone.get('low_kb'), zone.get('min_kb')
        # Empty zones (Movable, Device) report free 0 against a min of 128 kB.
        if free is None or low is None or minimum is None or _zone_size_kb(zone) == 0:
            continue
        item = {'node': zone.get('node'), 'zone': zone.get('zone'), 'free_kb': free, 'min_kb': minimum, 'low_kb': low}
        if free < minimum:
            below_min.append(item)
        elif free < low:
            below_low.append(item)
    results = []
    if below_min:
        results.append(('zone_below_min', {'zones': _capped(below_min)}))
    if below_low:
        results.append(('zone_below_low', {'zones': _capped(below_low)}))
    return results


# Zones whose fragmentation matters for the kernel's own order-N allocations.
_FRAGMENTATION_ZONES = ('Normal', 'DMA32')


def check_fragmentation(snap, th):
    buddy = _section(snap, 'buddyinfo')
    zones = dict(((z.get('node'), z.get('zone')), z) for z in _section(snap, 'zones'))
    order = th['fragmentation_order']
    fragmented = []
    for entry in buddy:
        zone = zones.get((entry.get('node'), entry.get('zone')))
        blocks = entry.get('free_blocks') or []
        if entry.get('zone') not in _FRAGMENTATION_ZONES or zone is None or len(blocks) <= order:
            continue
        size = _zone_size_kb(zone)
        free, low = zone.get('free_kb'), zone.get('low_kb')
        if size is None or size < th['fragmentation_min_zone_kb'] or free is None or low is None:
            continue
        # Below low the zone is short of memory, not of contiguity: the
        # watermark findings cover it.
        if free >= low and sum(blocks[order:]) == 0:
            fragmented.append({'node': entry.get('node'), 'zone': entry.get('zone'), 'free_kb': free,
                               'low_kb': low, 'managed_kb': size, 'free_blocks': blocks})
    if not fragmented:
        return []
    return [('zone_fragmented', {'order': order, 'zones': _capped(fragmented),
                                 'threshold_min_zone_kb': th['fragmentation_min_zone_kb']})]


def check_slab(snap, th):
    total = _meminfo(snap, 'MemTotal')
    unreclaimable = _meminfo(snap, 'SUnreclaim')
    share = _percent(unreclaimable, total)
    if share is None or share <= th['slab_unreclaimable_percent']:
        return []
    evidence = {'sunreclaim_kb': unreclaimable, 'mem_total_kb': total, 'sunreclaim_percent': _round(share),
                'threshold_percent': th['slab_unreclaimable_percent']}
    caches = snap.get('slabinfo')
    if caches:  # root only; without it the finding stands on meminfo alone
        top = sorted(caches, key=lambda c: -(c.get('size_bytes') or 0))[:5]
        evidence['top_caches'] = [{'name': c.get('name'), 'size_bytes': c.get('size_bytes')} for c in top]
    return [('slab_unreclaimable_high', evidence)]


def check_hugetlb_pool(snap, th):
    pool = _section(snap, 'hugepages')
    free = _key(pool, 'HugePages_Free', 'hugepages')
    # Reserved pages are counted as free but already promised to a mapping.
    unused = free - (pool.get('HugePages_Rsvd') or 0)
    size = _meminfo(snap, 'Hugepagesize')
    total = _meminfo(snap, 'MemTotal')
    unused_kb = unused * size
    share = _percent(unused_kb, total)
    if not unused or share is None or share < th['hugetlb_unused_percent']:
        return []
    return [('hugetlb_pool_unused', {'hugepages_total': pool.get('HugePages_Total'), 'hugepages_unused': unused,
                                     'hugepage_size_kb': size, 'hugepages_unused_kb': unused_kb,
                                     'mem_total_kb': total, 'hugepages_unused_percent': _round(share),
                                     'threshold_percent': th['hugetlb_unused_percent']})]


def check_pid1(snap, th):
    pid1 = _key(_section(snap, 'processes'), 'pid1', 'processes')
    rss_anon = _key(pid1, 'rss_anon_kb', 'PID 1 status')
    if rss_anon <= th['pid1_rss_anon_kb']:
        return []
    return [('pid1_rss_high', {'comm': pid1.get('comm'), 'rss_anon_kb': rss_anon,
                               'threshold_kb': th['pid1_rss_anon_kb']})]


def _highmem_kernel(snap):
    return bool(_key(_section(snap, 'kernel'), 'highmem', 'kernel'))


def check_lowmem(snap, th):
    if not _highmem_kernel(snap):
        return []
    low_total = _meminfo(snap, 'LowTotal')
    low_free = _meminfo(snap, 'LowFree')
    high_free = _meminfo(snap, 'HighFree')
    share = _percent(low_free, low_total)
    # The lowmem OOM: lowmem short while HighMem, which kernel data cannot
    # use, still has more free than lowmem.
    if share is None or share >= th['lowmem_free_percent'] or high_free <= low_free:
        return []
    return [('lowmem_exhausted', {'low_free_kb': low_free, 'low_total_kb': low_total,
                                  'low_free_percent': _round(share), 'high_free_kb': high_free,
                                  'threshold_percent': th['lowmem_free_percent']})]


def check_highmem_large_ram(snap, th):
    if not _highmem_kernel(snap):
        return []
    total = _meminfo(snap, 'MemTotal')
    if total <= th['highmem_large_ram_kb']:
        return []
    return [('highmem_large_ram', {'mem_total_kb': total, 'high_total_kb': snap['memory'].get('HighTotal'),
                                   'machine': snap['kernel'].get('machine'),
                                   'threshold_kb': th['highmem_large_ram_kb']})]


def check_oom_kills_since_boot(snap, th):
    kills = _key(_section(snap, 'vmstat'), 'oom_kill', 'vmstat')  # counter since 4.13
    if kills > 0:
        return [('oom_kills_since_boot', {'oom_kills': kills})]
    return []


# -- checks: cgroups ---------------------------------------------------------

def _parent(path):
    return path.rsplit('/', 1)[0] or '/'


def _where_it_happened(counts, hierarchical):
    """(path, count) pairs, worst first, without the ancestors' echoes.

    cgroup v2 memory.events counts events of the whole subtree (since 5.2),
    so a kill in /a/b shows in /a too: a cgroup whose children's counts
    explain its own is dropped, leaving the cgroup where it happened.  v1
    counters (failcnt, oom_control) are per cgroup and kept as they are.
    """
    if not hierarchical:
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    children_sum = {}
    for path, count in counts.items():
        if path != '/':
            children_sum[_parent(path)] = children_sum.get(_parent(path), 0) + count
    kept = [(path, count) for path, count in counts.items() if children_sum.get(path, 0) < count]
    return sorted(kept, key=lambda item: (-item[1], item[0]))


def check_cgroup_usage(snap, th):
    near = []
    over_high = []
    for cg in _section(snap, 'cgroups'):
        current = cg.get('current_bytes')
        if current is None:
            continue
        # The working set (usage less inactive page cache, as kubelet counts
        # it): a cgroup full of cold cache is not about to be OOM-killed.
        inactive = cg.get('inactive_file_bytes') or 0
        working = max(current - inactive, 0)
        # Only a cgroup's own limit: a parent's limit is reported on the parent.
        used = _percent(working, cg.get('max_bytes'))
        if used is not None and used >= th['cgroup_near_limit_percent']:
            near.append({'path': cg['path'], 'current_bytes': current, 'working_set_bytes': working,
                         'max_bytes': cg['max_bytes'], 'usage_percent': _round(used)})
        above = _percent(current, cg.get('high_bytes'))
        if above is not None and above >= th['cgroup_over_high_percent']:
            over_high.append({'path': cg['path'], 'current_bytes': current, 'high_bytes': cg['high_bytes'],
                              'usage_of_high_percent': _round(above)})
    results = []
    if near:
        near.sort(key=lambda item: (-item['usage_percent'], item['path']))
        results.append(('cgroup_near_limit', {'cgroups': _capped(near),
                                              'threshold_percent': th['cgroup_near_limit_percent']}))
    if over_high:
        over_high.sort(key=lambda item: (-item['usage_of_high_percent'], item['path']))
        results.append(('cgroup_over_high', {'cgroups': _capped(over_high),
                                             'threshold_percent': th['cgroup_over_high_percent']}))
    return results


def _is_v2(cgroups):
    return any(cg.get('version') == 2 for cg in cgroups)


def check_cgroup_oom_kills(snap, th):
    cgroups = _section(snap, 'cgroups')
    local = [cg for cg in cgroups if cg.get('events_local') is not None]
    if local and len(local) == len(cgroups):
        # memory.events.local (5.2+) counts each cgroup's own kills: exact.
        counts = dict((cg['path'], cg['events_local'].get('oom_kill', 0)) for cg in cgroups
                      if cg['events_local'].get('oom_kill'))
        hierarchical = False
    else:
        counts = dict((cg['path'], cg['oom_kills']) for cg in cgroups if cg.get('oom_kills'))
        hierarchical = _is_v2(cgroups)
    if not counts:
        return []
    items = [{'path': path, 'oom_kills': count} for path, count in _where_it_happened(counts, hierarchical)]
    return [('cgroup_oom_kills', {'cgroups': _capped(items)})]


def check_cgroup_oom_state(snap, th):
    under = []
    disabled = []
    for cg in _section(snap, 'cgroups'):
        if cg.get('under_oom'):
            under.append(cg['path'])
        if (cg.get('oom_control') or {}).get('oom_kill_disable') == 1:
            disabled.append(cg['path'])
    results = []
    if under:
        results.append(('cgroup_under_oom', {'cgroups': _capped(sorted(under))}))
    if disabled:
        results.append(('cgroup_oom_kill_disabled', {'cgroups': _capped(sorted(disabled))}))
    return results


def check_cgroup_limit_hit(snap, th):
    cgroups = _section(snap, 'cgroups')
    counts = {}
    for cg in cgroups:
        # v1 failcnt: charges that hit the limit; v2 events 'max': the same.
        hits = cg.get('failcnt') if cg.get('version') == 1 else (cg.get('events') or {}).get('max')
        if hits:
            counts[cg['path']] = hits
    if not counts:
        return []
    items = [{'path': path, 'limit_hits': count} for path, count in _where_it_happened(counts, _is_v2(cgroups))]
    return [('cgroup_limit_hit', {'cgroups': _capped(items)})]


def _ancestors(path):
    """The cgroup's ancestors below the root, nearest first ('/a/b/c' -> ['/a/b', '/a'])."""
    found = []
    while path.count('/') > 1:
        path = path.rsplit('/', 1)[0]
        found.append(path)
    return found


def check_cgroup_protection(snap, th):
    """Memory protection and limits that do nothing (cgroup v2): a child's memory.min/low under an
    ancestor that grants none (the kernel caps a child's effective protection at its parent's, and only
    the root's children keep their own); memory.high at or above the effective max; children's minimums
    over their parent's."""
    cgroups = [cg for cg in _section(snap, 'cgroups') if cg.get('version') == 2]
    by_path = dict((cg['path'], cg) for cg in cgroups)
    nullified, high_useless, overcommitted = [], [], []
    for cg in cgroups:
        for key in ('min_bytes', 'low_bytes'):
            if not cg.get(key):
                continue
            blocker = [a for a in _ancestors(cg['path']) if a in by_path and by_path[a].get(key) == 0]
            if blocker:
                nullified.append({'path': cg['path'], 'setting': 'memory.' + key[:-len('_bytes')], key: cg[key],
                                  'ancestor': blocker[-1], 'ancestor_' + key: 0})
        limit = cg.get('effective_max_bytes')
        if cg.get('high_bytes') is not None and limit is not None and cg['high_bytes'] >= limit:
            high_useless.append({'path': cg['path'], 'high_bytes': cg['high_bytes'], 'effective_max_bytes': limit,
                                 'limited_by': cg.get('limited_by')})
    for parent in sorted(by_path):
        parent_min = by_path[parent].get('min_bytes')
        if not parent_min or parent.count('/') < 1:
            continue
        children = [cg for cg in cgroups if cg['path'].rsplit('/', 1)[0] == parent and cg.get('min_bytes')]
        total = sum(cg['min_bytes'] for cg in children)
        if total > parent_min:
            overcommitted.append({'path': parent, 'min_bytes': parent_min, 'children_min_bytes': total,
                                  'children': [cg['path'] for cg in children][:EVIDENCE_LIST_MAX]})
    results = []
    if nullified:
        results.append(('cgroup_protection_nullified', {'cgroups': _capped(nullified)}))
    if high_useless:
        results.append(('cgroup_high_not_below_max', {'cgroups': _capped(high_useless)}))
    if overcommitted:
        results.append(('cgroup_min_overcommitted', {'cgroups': _capped(overcommitted)}))
    return results


def check_group_kill_overrides_adj(snap, th):
    """A task protected by a negative oom_score_adj (above -1000) inside a memory.oom.group cgroup the
    next kill of its domain takes whole: the group kill takes it regardless (only -1000 is spared)."""
    domains = _section(snap, 'domains')
    if snap.get('domain_victims') is False:
        raise _Missing('domains: their tasks were not ranked (skip: domain_victims)')
    exposed = []
    for domain in domains:
        for task in domain.get('group_victims') or []:
            if task.get('oom_score_adj') is not None and -1000 < task['oom_score_adj'] < 0:
                exposed.append({'pid': task['pid'], 'comm': task['comm'], 'unit': task.get('unit'),
                                'oom_score_adj': task['oom_score_adj'], 'group': domain['group_kill'],
                                'domain': domain['path']})
    if not exposed:
        return []
    return [('group_kill_overrides_adj', {'tasks': _capped(exposed)})]


def check_oom_forecast(snap, th):
    """A domain whose usage, sampled over the run, reaches its limit within time_to_oom_warn_s."""
    domains = _section(snap, 'domains')
    forecasts = [d for d in domains if d.get('forecast')]
    if not forecasts:
        return []  # a forecast not asked for (samples 1, the default) is not a reading that failed
    soon = []
    for domain in forecasts:
        forecast = domain['forecast']
        if forecast.get('time_to_oom_s') is None or forecast['time_to_oom_s'] > th['time_to_oom_warn_s']:
            continue
        victim = domain.get('next_victim') or {}
        soon.append({'kind': domain['kind'], 'path': domain['path'], 'unit': domain.get('unit'),
                     'limit_kb': domain['limit_kb'], 'headroom_kb': domain.get('headroom_kb'),
                     'growth_kb_per_s': forecast['growth_kb_per_s'], 'time_to_oom_s': forecast['time_to_oom_s'],
                     'time_to_oom_range_s': forecast.get('time_to_oom_range_s'), 'samples': forecast['samples'],
                     'span_s': forecast['span_s'], 'next_victim': victim.get('comm'),
                     'next_victim_pid': victim.get('pid')})
    if not soon:
        return []
    soon.sort(key=lambda item: item['time_to_oom_s'])
    return [('oom_forecast_soon', {'domains': _capped(soon), 'threshold_s': th['time_to_oom_warn_s']})]


def check_cpuset_numa(snap, th):
    cpusets = _section(snap, 'cpuset_mems')
    if not cpusets:
        return []
    nodes = [n for n in _section(snap, 'numa').get('nodes') or [] if n.get('has_memory')]
    squeezed = []
    for path in sorted(cpusets):
        allowed = set(cpusets[path])
        inside = [n.get('memory_kb') or {} for n in nodes if n.get('node') in allowed]
        outside = [n.get('memory_kb') or {} for n in nodes if n.get('node') not in allowed]
        in_free = sum(m.get('MemFree', 0) for m in inside)
        out_free = sum(m.get('MemFree', 0) for m in outside)
        in_share = _percent(in_free, sum(m.get('MemTotal', 0) for m in inside))
        out_share = _percent(out_free, sum(m.get('MemTotal', 0) for m in outside))
        if in_share is None or out_share is None:
            continue
        if in_share < th['cpuset_allowed_free_percent'] and out_share >= th['cpuset_other_free_percent']:
            squeezed.append({'path': path, 'allowed_nodes': sorted(allowed), 'allowed_free_kb': in_free,
                             'allowed_free_percent': _round(in_share), 'other_nodes_free_kb': out_free,
                             'other_nodes_free_percent': _round(out_share)})
    if not squeezed:
        return []
    return [('cpuset_numa_squeeze', {'cgroups': _capped(squeezed),
                                     'threshold_allowed_free_percent': th['cpuset_allowed_free_percent'],
                                     'threshold_other_free_percent': th['cpuset_other_free_percent']})]


# -- checks: processes --------------------------------------------------------

def check_critical_victims(snap, th):
    victims = _key(_section(snap, 'processes'), 'victims', 'processes')
    if not victims:
        return []
    critical = set(th['critical_processes'])
    top_score = max(v.get('oom_score') or 0 for v in victims)
    found = []
    for rank, victim in enumerate(victims, 1):
        if victim.get('comm') not in critical or (victim.get('oom_score_adj') or 0) <= OOM_SCORE_ADJ_MIN:
            continue
        # Ties in oom_score are common (666 for every small process on
        # current kernels): the highest score counts wherever it is listed.
        if rank <= th['critical_victim_rank'] or victim.get('oom_score') == top_score:
            found.append({'pid': victim.get('pid'), 'comm': victim.get('comm'), 'rank': rank,
                          'oom_score': victim.get('oom_score'), 'oom_score_adj': victim.get('oom_score_adj'),
                          'rss_kb': victim.get('rss_kb'), 'unit': victim.get('unit')})
    if not found:
        return []
    return [('critical_process_likely_victim', {'processes': _capped(found), 'top_oom_score': top_score,
                                                'threshold_rank': th['critical_victim_rank']})]


def _units_by_id(snap):
    systemd = snap.get('systemd')
    if not systemd:
        return None
    return dict((u.get('id'), u) for u in systemd.get('units') or [])


def check_kill_loop(snap, th):
    forking = _key(_section(snap, 'processes'), 'forking', 'processes')
    units = _units_by_id(snap)
    looping = []
    unknown = []
    for prog in forking:
        if (prog.get('workers') or 0) < th['kill_loop_min_workers']:
            continue
        item = {'pid': prog.get('pid'), 'comm': prog.get('comm'), 'workers': prog.get('workers'),
                'unit': prog.get('unit')}
        unit = units.get(prog.get('unit')) if units is not None else None
        policy = unit.get('oom_policy') if unit else None
        if policy == 'continue':
            looping.append(dict(item, oom_policy=policy))
        elif policy is None:
            # No systemd data, no unit, or a systemd older than OOMPolicy (v243).
            if units is None:
                item['reason'] = 'systemd units not read'
            elif unit is None:
                item['reason'] = 'not in a known systemd unit'
            else:
                item['reason'] = 'unit has no OOMPolicy (systemd before 243)'
            unknown.append(item)
    results = []
    if looping:
        results.append(('kill_loop_risk', {'programs': _capped(looping),
                                           'threshold_workers': th['kill_loop_min_workers']}))
    if unknown:
        results.append(('kill_loop_risk_unmanaged', {'programs': _capped(unknown),
                                                     'threshold_workers': th['kill_loop_min_workers']}))
    return results


def check_early_killer_protection(snap, th):
    killers = _key(_section(snap, 'processes'), 'early_killers', 'processes')
    limit = th['early_killer_max_oom_score_adj']
    exposed = [{'name': k.get('name'), 'pid': k.get('pid'), 'oom_score_adj': k.get('oom_score_adj'),
                'unit': k.get('unit')}
               for k in killers if k.get('oom_score_adj') is not None and k['oom_score_adj'] > limit]
    if not exposed:
        return []
    return [('early_killer_unprotected', {'killers': _capped(exposed), 'threshold_oom_score_adj': limit})]


def check_early_killer_running(snap, th):
    killers = _key(_section(snap, 'processes'), 'early_killers', 'processes')
    if killers:
        return []
    evidence = {'early_killers_running': 0}
    units = _units_by_id(snap)
    if units is not None:
        # An installed but stopped killer (e.g. systemd-oomd) is the cheapest fix.
        evidence['installed_killer_units'] = sorted(
            '%s (%s)' % (uid, units[uid].get('active_state')) for uid in EARLY_KILLER_UNITS if uid in units)
    return [('no_early_killer', evidence)]


def check_earlyoom_coverage(snap, th):
    """earlyoom's --avoid misses a critical process near the top of the victims; a --prefer or --avoid
    pattern matches nothing running (the reader matched them: processes.earlyoom_patterns)."""
    killers = _key(_section(snap, 'processes'), 'early_killers', 'processes')
    earlyooms = [k for k in killers if k.get('name') == 'earlyoom' and 'patterns' in k]
    if not earlyooms:
        return []
    victims = _key(_section(snap, 'processes'), 'victims', 'processes')
    critical = set(th['critical_processes'])
    results = []
    for killer in earlyooms:
        avoided = set((killer.get('matches') or {}).get('avoid') or [])
        missed = [{'pid': v.get('pid'), 'comm': v.get('comm'), 'rank': rank, 'oom_score': v.get('oom_score'),
                   'unit': v.get('unit')}
                  for rank, v in enumerate(victims, 1)
                  if rank <= th['critical_victim_rank'] and v.get('comm') in critical and v.get('comm') not in avoided
                  and (v.get('oom_score_adj') or 0) > OOM_SCORE_ADJ_MIN and v.get('pid') != killer.get('pid')]
        if missed and 'avoid' not in (killer.get('pattern_problems') or {}):
            results.append(('earlyoom_avoid_misses_critical', {
                'processes': _capped(missed), 'avoid': (killer.get('patterns') or {}).get('avoid'),
                'earlyoom_pid': killer.get('pid'), 'threshold_rank': th['critical_victim_rank']}))
        empty = [{'option': '--' + name, 'pattern': killer['patterns'][name]}
                 for name, matched in sorted((killer.get('matches') or {}).items()) if not matched]
        unreadable = [{'option': '--' + name, 'pattern': killer['patterns'].get(name), 'problem': problem}
                      for name, problem in sorted((killer.get('pattern_problems') or {}).items())]
        if empty or unreadable:
            results.append(('earlyoom_pattern_matches_nothing', {
                'patterns': empty + unreadable, 'earlyoom_pid': killer.get('pid')}))
    return results


def check_oomd_coverage(snap, th):
    """systemd-oomd runs but watches nothing it can act on: no unit enrolled with
    ManagedOOMMemoryPressure=kill (on a kernel with PSI) or ManagedOOMSwap=kill (on a host
    with swap). Debian's package enrolls only -.slice, for a swap kill."""
    killers = _key(_section(snap, 'processes'), 'early_killers', 'processes')
    if not any(k.get('name') == 'systemd-oomd' for k in killers):
        return []
    units = _units_by_id(snap)
    if units is None:
        raise _Missing(_why_missing(snap, 'systemd'))
    pressure = sorted(uid for uid, u in units.items() if u.get('managed_oom_memory_pressure') == 'kill')
    swap = sorted(uid for uid, u in units.items() if u.get('managed_oom_swap') == 'kill')
    has_psi = snap.get('pressure') is not None
    swap_total_kb = (snap.get('memory') or {}).get('SwapTotal') or 0
    if (pressure and has_psi) or (swap and swap_total_kb > 0):
        return []
    return [('oomd_covers_nothing', {'pressure_enrolled': pressure[:EVIDENCE_LIST_MAX],
                                     'swap_enrolled': swap[:EVIDENCE_LIST_MAX], 'psi': has_psi,
                                     'swap_total_kb': swap_total_kb})]


# Every check with the finding ids it may return; each id belongs to one check.
CHECKS = (
    (check_panic, ('panic_without_reboot', 'panic_on_oom_enabled')),
    (check_panic_on_cgroup_oom, ('panic_on_cgroup_oom',)),
    (check_strict_commit, ('strict_commit_limit_reached', 'strict_commit_limit_near')),
    (check_overcommit_ratio_and_kbytes, ('overcommit_ratio_and_kbytes',)),
    (check_commit_ratio, ('commit_ratio_high',)),
    (check_min_free_kbytes, ('min_free_kbytes_too_high', 'min_free_kbytes_below_default')),
    (check_oom_dump_tasks, ('oom_dump_tasks_disabled',)),
    (check_oom_kill_allocating_task, ('oom_kill_allocating_task',)),
    (check_thp_enabled, ('thp_always',)),
    (check_thp_defrag, ('thp_defrag_always',)),
    (check_no_swap, ('no_swap',)),
    (check_memavailable, ('memavailable_critical', 'memavailable_low')),
    (check_memory_pressure, ('memory_pressure_severe', 'memory_pressure_elevated')),
    (check_swap_nearly_full, ('swap_nearly_full',)),
    (check_zone_watermarks, ('zone_below_min', 'zone_below_low')),
    (check_fragmentation, ('zone_fragmented',)),
    (check_slab, ('slab_unreclaimable_high',)),
    (check_hugetlb_pool, ('hugetlb_pool_unused',)),
    (check_pid1, ('pid1_rss_high',)),
    (check_lowmem, ('lowmem_exhausted',)),
    (check_highmem_large_ram, ('highmem_large_ram',)),
    (check_oom_kills_since_boot, ('oom_kills_since_boot',)),
    (check_cgroup_usage, ('cgroup_near_limit', 'cgroup_over_high')),
    (check_cgroup_oom_kills, ('cgroup_oom_kills',)),
    (check_cgroup_oom_state, ('cgroup_under_oom', 'cgroup_oom_kill_disabled')),
    (check_cgroup_limit_hit, ('cgroup_limit_hit',)),
    (check_cgroup_protection, ('cgroup_protection_nullified', 'cgroup_high_not_below_max', 'cgroup_min_overcommitted')),
    (check_group_kill_overrides_adj, ('group_kill_overrides_adj',)),
    (check_oom_forecast, ('oom_forecast_soon',)),
    (check_cpuset_numa, ('cpuset_numa_squeeze',)),
    (check_critical_victims, ('critical_process_likely_victim',)),
    (check_kill_loop, ('kill_loop_risk', 'kill_loop_risk_unmanaged')),
    (check_early_killer_protection, ('early_killer_unprotected',)),
    (check_early_killer_running, ('no_early_killer',)),
    (check_oomd_coverage, ('oomd_covers_nothing',)),
    (check_earlyoom_coverage, ('earlyoom_avoid_misses_critical', 'earlyoom_pattern_matches_nothing')),
)


# -- the score ----------------------------------------------------------------

def risk_score(findings):
    """min(100, sum of SEVERITY_WEIGHTS): adding a finding never lowers it."""
    return min(100, sum(SEVERITY_WEIGHTS[f['severity']] for f in findings))


def risk_level(score, findings):
    """The higher of the level the score reaches and the worst finding's level."""
    level = 'low'
    for name, bound in LEVEL_SCORE_BOUNDS:
        if score >= bound:
            level = name
            break
    for finding in findings:
        candidate = LEVEL_FOR_SEVERITY[finding['severity']]
        if LEVELS.index(candidate) > LEVELS.index(level):
            level = candidate
    return level


def merge_thresholds(thresholds=None):
    """The default thresholds with these overrides (their values validated by posture_options first)."""
    unknown = sorted(set(thresholds or {}) - set(DEFAULT_THRESHOLDS))
    if unknown:
        raise ValueError('unknown posture threshold(s): %s; known: %s'
                         % (', '.join(unknown), ', '.join(sorted(DEFAULT_THRESHOLDS))))
    merged = dict(DEFAULT_THRESHOLDS)
    merged.update(thresholds or {})
    return merged


def _threshold(value, default):
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise schema.Invalid('a list of process names')
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise schema.Invalid('a number >= 0 (default %s)' % default)
    return value


def posture_options(options, labels, var, default_victims=DEFAULT_VICTIMS):
    """The posture's options, validated in one place for oom_facts and oom_audit.

    options: {'thresholds': {name: value}, 'victims_count': int}; var names
    them in messages (the module's options, or the inventory's oomguard_posture).
    Returns (thresholds, victims_count, problems).
    """
    checker = schema.Checker(labels)
    options = options or {}
    for key in sorted(set(options) - set(['thresholds', 'victims_count']), key=str):
        checker.refuse('invalid_name', '%s: unknown key; allowed: thresholds, victims_count' % var(key))
    victims = options.get('victims_count')
    victims = default_victims if victims is None else checker.check(var('victims_count'), victims, schema.integer,
                                                                    0, MAX_VICTIMS)
    raw = options.get('thresholds') or {}
    thresholds = {}
    if not isinstance(raw, dict):
        checker.refuse('wrong_type', '%s must be a mapping of threshold name to value' % var('thresholds'))
        raw = {}
    for name, value, item in checker.known(var('thresholds'), raw, DEFAULT_THRESHOLDS):
        parsed = checker.check(item, value, _threshold, DEFAULT_THRESHOLDS[name])
        if parsed is not schema.INVALID:
            thresholds[name] = parsed
    return thresholds, victims, checker.problems


def sampling_options(samples, interval_s, labels, var):
    """oom_facts' samples and interval_s, validated: (samples, interval_s, problems)."""
    checker = schema.Checker(labels)
    samples = checker.check(var('samples'), samples, schema.integer, 1, MAX_SAMPLES)
    interval_s = checker.check(var('interval_s'), interval_s, _seconds, MAX_SAMPLING_S)
    if samples is not schema.INVALID and interval_s is not schema.INVALID and \
            (samples - 1) * interval_s > MAX_SAMPLING_S:
        checker.refuse('invalid_value', '%s x %s = %d x %s s is longer than %d s; allowed: a watch of at most %d s '
                       '(a longer one belongs in a monitor: docs/domains.md)' % (
                           var('samples'), var('interval_s'), samples - 1, interval_s, MAX_SAMPLING_S,
                           MAX_SAMPLING_S))
    return samples, interval_s, checker.problems


def what_if_options(value, labels, var):
    """oom_facts' what_if ({path, grow_kb, pid}), validated: (request or None, problems)."""
    checker = schema.Checker(labels)
    if value is None:
        return None, []
    if not isinstance(value, dict):
        checker.refuse('wrong_type', '%s must be a mapping with path, grow_kb and optionally pid' % var('what_if'))
        return None, checker.problems
    for key in sorted(set(value) - set(['path', 'grow_kb', 'pid']), key=str):
        checker.refuse('invalid_name', "%s['%s']: unknown key; allowed: path, grow_kb, pid" % (
            var('what_if'), schema.cut_middle(str(key), 60)))
    path = checker.check("%s['path']" % var('what_if'), value.get('path'), _cgroup_path)
    grow_kb = checker.check("%s['grow_kb']" % var('what_if'), value.get('grow_kb'), schema.integer, 1, 1 << 50)
    pid = value.get('pid')
    if pid is not None:
        pid = checker.check("%s['pid']" % var('what_if'), pid, schema.integer, 1, 1 << 22)
    if checker.problems:
        return None, checker.problems
    return {'path': path, 'grow_kb': grow_kb, 'pid': pid}, []


def _cgroup_path(value):
    """A cgroup's path below the hierarchy's root ("system.slice/db.service" or with a leading /)."""
    if not isinstance(value, str) or not value.strip() or len(value) > 4096 or '\x00' in value:
        raise schema.Invalid('a cgroup path such as system.slice/db.service (at most 4096 characters)')
    parts = [part for part in value.strip().split('/') if part]
    if any(part in ('.', '..') for part in parts):
        raise schema.Invalid('a cgroup path without . or .. parts')
    return '/' + '/'.join(parts)


def _seconds(value, high):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= high:
        raise schema.Invalid('seconds, a number above 0 and at most %d' % high)
    return float(value)


def _finding(fid, evidence):
    entry = CATALOGUE[fid]
    return {'id': fid, 'severity': entry['severity'], 'title': entry['title'],
            'evidence': evidence, 'advice': entry['advice']}


def judge(snapshot, thresholds=None):
    """Judge a snapshot: findings, risk score and level, and what was not checked.

    Raises ValueError for an unknown threshold name; never for snapshot
    content.  A check that meets content it cannot read (a kernel variant
    nobody captured yet) is reported under not_evaluated, not raised.
    """
    th = merge_thresholds(thresholds)
    findings = []
    not_evaluated = []
    for check, ids in CHECKS:
        try:
            results = check(snapshot, th)
        except _Missing as exc:
            not_evaluated.extend({'id': fid, 'reason': exc.reason} for fid in ids)
            continue
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            reason = 'unexpected snapshot content (%s: %s)' % (type(exc).__name__, exc)
            not_evaluated.extend({'id': fid, 'reason': reason} for fid in ids)
            continue
        findings.extend(_finding(fid, evidence) for fid, evidence in results)
    findings.sort(key=lambda f: (SEVERITY_RANK[f['severity']], f['id']))
    score = risk_score(findings)
    summary = dict((name, 0) for name in SEVERITIES)
    for finding in findings:
        summary[finding['severity']] += 1
    return {
        'risk_score': score,
        'risk_level': risk_level(score, findings),
        'findings': findings,
        'summary': summary,
        'not_evaluated': not_evaluated,
    }
