# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One read of a host's memory state: the snapshot the posture judges.

``collect()`` calls every reader once and never raises for a missing or
unreadable source: it records a note ({'reader', 'reason'}) and goes on, so
a non-root run or an old kernel still yields everything else.  The snapshot
is plain data (dicts, lists, numbers, strings) so it can be returned as
facts, saved as a fixture and judged by pure functions.
"""


import os
import time

from ansible_collections.oomguard.linux.plugins.module_utils import cgroups as cgroups_mod
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils.processes import scan_processes
from ansible_collections.oomguard.linux.plugins.module_utils import capabilities
from ansible_collections.oomguard.linux.plugins.module_utils import domains as domains_mod
from ansible_collections.oomguard.linux.plugins.module_utils.systemd import read_units

# Parts a caller may skip because they cost more than a few file reads.
SKIPPABLE = ('processes', 'cgroups', 'slabinfo', 'systemd', 'numa', 'domains', 'domain_victims')


def _page_kb(host):
    if host.live:
        return os.sysconf('SC_PAGE_SIZE') // 1024
    # Captured trees are x86_64/arm64 4 KiB-page hosts unless they say otherwise.
    text = host.read('.capture/pagesize.txt')
    return int(text) // 1024 if text and text.strip().isdigit() else 4


class _Notes:
    def __init__(self):
        self.items = []

    def add(self, reader, reason):
        self.items.append({'reader': reader, 'reason': reason})

    def guard(self, reader, func, *args, **kwargs):
        """Call a reader; on failure note why and return None."""
        try:
            return func(*args, **kwargs)
        except procfs.ReadError as exc:
            self.add(reader, exc.reason)
        except (IOError, OSError) as exc:
            self.add(reader, str(exc))
        return None


def collect(host, skip=(), victims_count=10, run_command=None, systemctl_path=None,
            max_cgroups=cgroups_mod.DEFAULT_MAX_CGROUPS, samples=1, interval_s=10.0, clock=time.monotonic,
            sleep=time.sleep, what_if=None):
    """Read everything the posture needs from host (a procfs.HostRoot); with samples > 1, each
    domain's usage is read that many times interval_s apart for its time-to-OOM forecast."""
    notes = _Notes()
    skip = set(skip)
    page_kb = _page_kb(host)
    snap = {'page_kb': page_kb, 'skipped': sorted(skip)}

    memory_kb, hugepages = procfs.read_meminfo(host)  # a host without meminfo is an error
    snap['memory'] = memory_kb
    snap['hugepages'] = hugepages
    snap['vmstat'] = notes.guard('vmstat', procfs.read_vmstat, host)
    snap['zones'] = notes.guard('zoneinfo', procfs.read_zoneinfo, host, page_kb)
    snap['buddyinfo'] = notes.guard('buddyinfo', procfs.read_buddyinfo, host)
    snap['pressure'] = notes.guard('pressure', procfs.read_pressure, host)
    if snap['pressure'] is None and not any(n['reader'] == 'pressure' for n in notes.items):
        notes.add('pressure', 'no /proc/pressure/memory (kernel without PSI, or booted with psi=0)')
    snap['sysctl'] = procfs.read_sysctls(host)
    snap['thp'] = notes.guard('thp', procfs.read_thp, host)
    snap['kernel'] = procfs.read_kernel(host, memory_kb, snap['zones'])

    if 'slabinfo' in skip:
        snap['slabinfo'] = None
    else:
        snap['slabinfo'] = notes.guard('slabinfo', procfs.read_slabinfo, host, page_kb)

    snap['numa'] = None if 'numa' in skip else notes.guard('numa', procfs.read_numa, host)

    layout = cgroups_mod.read_layout(host)
    snap['cgroup'] = layout
    if layout['memory_controller'] is None:
        notes.add('cgroups', 'no memory controller mounted (cgroup mode %s)' % layout['mode'])
    snap['cgroups'] = None
    snap['cpuset_mems'] = None
    if 'cgroups' not in skip:
        result = notes.guard('cgroups', cgroups_mod.read_memory_cgroups, host, layout, max_cgroups)
        if result is not None:
            snap['cgroups'], truncated = result
            if truncated:
                notes.add('cgroups', 'walk stopped after %d cgroups' % max_cgroups)
        snap['cpuset_mems'] = notes.guard('cpuset', cgroups_mod.read_cpuset_mems, host, layout, max_cgroups)

    snap['processes'] = None
    if 'processes' not in skip:
        # The module's own python is briefly the biggest process, and with the
        # local connection Ansible's own processes rank high: not victims anyone
        # needs to hear about, so the audit's process tree is left out (and said).
        snap['processes'] = scan_processes(host, page_kb, victims_count, own_pid=os.getpid() if host.live else None)
        excluded = snap['processes'].get('excluded')
        if excluded:
            notes.add('victims', "left out: this audit's own %d process%s (the tree of pid %d, %s)" % (
                excluded['count'], '' if excluded['count'] == 1 else 'es', excluded['root_pid'],
                excluded['root_comm'] or 'gone'))

    snap['systemd'] = None
    if 'systemd' not in skip:
        if run_command is None:
            notes.add('systemd', 'not read: no command runner (captured tree)')
        else:
            units, reason = read_units(run_command, systemctl_path)
            if reason:
                notes.add('systemd', reason)
            else:
                snap['systemd'] = {'units': units}

    snap['domains'] = None
    snap['what_if'] = None
    if snap['processes'] is not None:
        excluded_pids = set(snap['processes'].pop('excluded_pids', ()))
        if 'domains' not in skip:
            snap['domains'], snap['what_if'], domain_notes = domains_mod.collect(
                host, snap, page_kb, excluded_pids, what_if, rank_tasks='domain_victims' not in skip)
            snap['domain_victims'] = 'domain_victims' not in skip
            for note in domain_notes:
                notes.add('domains', note)
            if samples > 1:
                controller = (snap.get('cgroup') or {}).get('memory_controller') or {}
                domains_mod.sample_forecasts(snap['domains'], domains_mod.usage_reader(host, controller.get('mount')),
                                             samples, interval_s, clock, sleep)

    # The release facts the concerns' gating uses (docs/platforms.md); systemctl
    # only when it may be run, else the installed systemd's library.
    snap['platform'] = capabilities.read(host, capabilities.read_systemd_version(
        host, run_command if 'systemd' not in skip else None, systemctl_path),
        snap['kernel']['release'], layout['mode'])

    snap['is_root'] = os.geteuid() == 0 if host.live else None
    snap['notes'] = notes.items
    return snap
