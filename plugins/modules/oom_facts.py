#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: oom_facts
short_description: Report a Linux host's out-of-memory risk posture as facts
version_added: 0.1.0
description:
  - Reads the host's memory state once (C(/proc/meminfo), C(/proc/vmstat), C(/proc/zoneinfo),
    C(/proc/buddyinfo), C(/proc/slabinfo), C(/proc/pressure/memory), the OOM-related sysctls,
    transparent huge pages, NUMA nodes, the cgroup v1/v2/hybrid layout and per-cgroup memory state,
    every process's C(oom_score), and the systemd units' OOM settings with one C(systemctl show) call).
  - Judges it and returns RV(ansible_facts.oom_posture) with a risk score, a risk level and findings,
    each with its evidence and the role and variable that fixes it. The catalogue of findings is in
    the collection's C(docs/findings.md).
  - Read-only. Works without root; what needs root (C(/proc/slabinfo)) is skipped with a note.
  - Can run as an entry of C(FACTS_MODULES) so that C(gather_facts) brings it.
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: The module never changes anything; check mode returns the same facts.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to diff.
  facts:
    support: full
    description: Returns RV(ansible_facts.oom_posture); usable in C(FACTS_MODULES).
options:
  victims_count:
    description:
      - How many processes to list in RV(ansible_facts.oom_posture.victims), the ones the kernel's OOM killer would pick first
        (highest C(oom_score)); 0 to 1000.
    type: int
    default: 10
  skip:
    description:
      - Readers to leave out, to save time on large hosts. Findings that depend on a skipped reader
        are listed in RV(ansible_facts.oom_posture.not_evaluated).
      - V(processes) skips the process scan (victims, early killer detection, forking programs).
      - V(cgroups) skips the cgroup walk; V(slabinfo) skips C(/proc/slabinfo); V(systemd) skips the
        C(systemctl show) call; V(numa) skips the per-node meminfo; V(domains) skips the OOM domains
        (RV(ansible_facts.oom_posture.domains) is then null); V(domain_victims) keeps the domains' limits, usage
        and headroom but reads no task for their next victims (each domain's C(next_victim) and C(tasks) are
        then null; the monitor's collector runs so every minute).
    type: list
    elements: str
    choices: [processes, cgroups, slabinfo, systemd, numa, domains, domain_victims]
    default: []
  thresholds:
    description:
      - Overrides of the posture thresholds (name to number). The names and defaults are listed in
        C(docs/findings.md).
    type: dict
    default: {}
  samples:
    description:
      - How many times to read the usage of every OOM domain for its time-to-OOM forecast
        (C(forecast) of RV(ansible_facts.oom_posture.domains)); V(1) reads once and forecasts nothing.
      - 1 to 720; the watch, O(samples) - 1 times O(interval_s), is at most 3600 seconds.
    type: int
    default: 1
  interval_s:
    description:
      - Seconds between two readings of O(samples); above 0 and at most 3600.
    type: float
    default: 10.0
  what_if:
    description:
      - Ask which OOM domain fills first if the memory cgroup O(what_if.path) grows by O(what_if.grow_kb), and
        whom the kernel kills there (RV(ansible_facts.oom_posture.what_if)). Nothing on the host is touched;
        the answer is computed from the domains as read.
    type: dict
    suboptions:
      path:
        description: The growing cgroup, below the hierarchy's root (V(system.slice/db.service)).
        type: str
        required: true
      grow_kb:
        description: How much it grows, in kB.
        type: int
        required: true
      pid:
        description:
          - The process that grows, when known; its RSS is raised by O(what_if.grow_kb) before the kernel's choice
            is made again. Without it the choice is among the tasks as they are.
        type: int
  include_snapshot:
    description:
      - Also return the full raw snapshot the posture was judged from (every cgroup, every reading),
        under RV(ansible_facts.oom_posture.snapshot). Large on container hosts.
    type: bool
    default: false
  root:
    description:
      - Root of the filesystem to read, for analysing a captured C(/proc) and C(/sys) tree. With
        anything but V(/) the systemd units are not read.
      - An absolute path of a directory. A captured tree is read as files only - a FIFO, device or socket in it is
        refused, and no file is read past 64 MiB.
    type: path
    default: /
notes:
  - On cgroup v1 and hybrid hosts the memory state comes from the v1 memory hierarchy; on v2 from
    the unified hierarchy.
'''

EXAMPLES = r'''
- name: Read the OOM posture
  oomguard.linux.oom_facts:

- name: Fail when the host is at high risk
  ansible.builtin.assert:
    that: ansible_facts.oom_posture.risk_level in ['low', 'medium']
    fail_msg: "{{ ansible_facts.oom_posture.findings | map(attribute='title') | list }}"

- name: Watch for a minute and say when each domain would run out at its present growth
  oomguard.linux.oom_facts:
    samples: 7
    interval_s: 10

- name: If the database grows by 2 GiB, which limit does it hit and who dies?
  oomguard.linux.oom_facts:
    what_if:
      path: system.slice/postgresql.service
      grow_kb: 2097152

- name: A cheap run on a busy container host
  oomguard.linux.oom_facts:
    skip: [cgroups, slabinfo]
    victims_count: 5

# In ansible.cfg, to have gather_facts bring the posture with the usual facts:
# [defaults]
# facts_modules = ansible.builtin.setup, oomguard.linux.oom_facts
'''

RETURN = r'''
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    oom_posture:
      description: The host's OOM posture.
      returned: always
      type: complex
      contains:
        risk_score:
          description: 0 (nothing found) to 100 (several serious findings). The rule is in C(docs/findings.md).
          type: int
          sample: 35
        risk_level:
          description: C(low), C(medium), C(high) or C(critical); a single critical finding makes the level critical.
          type: str
          sample: medium
        findings:
          description: What is wrong or worth knowing, worst first.
          type: list
          elements: dict
          sample:
            - id: panic_without_reboot
              severity: critical
              title: vm.panic_on_oom is set but kernel.panic is 0
              evidence: {vm.panic_on_oom: 1, kernel.panic: 0}
              advice: Set kernel.panic through oomguard.linux.sysctl (oomguard_sysctl).
        summary:
          description: Number of findings per severity.
          type: dict
        not_evaluated:
          description: Checks that could not run, with the reason (a skipped or unreadable source).
          type: list
          elements: dict
        cgroup_mode:
          description: C(v1), C(v2), C(hybrid), or C(none) where no cgroup filesystem is mounted.
          type: str
          sample: v2
        memory_controller:
          description: Which hierarchy holds the memory controller (1 or 2), null if none.
          type: int
        kernel:
          description: Kernel release, architecture, word size, HighMem presence, command line.
          type: dict
        platform:
          description:
            - What the host can honour, as the hardening modules read it before they validate (docs/platforms.md).
            - C(systemd_version) (the running manager's C(systemctl --version), else the installed library's; null
              without systemd), C(systemd_running), C(kernel_release), C(cgroup_mode), C(os_family) (Ansible's family
              name from C(/etc/os-release)), C(os_id), C(os_version_id) and C(package_manager).
          type: dict
          sample: {systemd_version: 247, systemd_running: true, kernel_release: 5.10.0-32-amd64, cgroup_mode: v2,
                   os_family: Debian, os_id: debian, os_version_id: '11', package_manager: apt}
        memory:
          description: C(/proc/meminfo) values in kB (HugePages_* counts are under C(hugepages)).
          type: dict
          sample: {MemTotal: 24684092, MemAvailable: 23815412}
        hugepages:
          description: HugePages_* counts from C(/proc/meminfo).
          type: dict
        pressure:
          description: Memory pressure stall information (avg10/avg60/avg300 percent, total_us), null without PSI.
          type: dict
        oom_kills_since_boot:
          description: The C(oom_kill) counter of C(/proc/vmstat), null on kernels before 4.13.
          type: int
        sysctl:
          description: The OOM-related sysctls this kernel has, by name.
          type: dict
          sample: {vm.panic_on_oom: 0, kernel.panic: 0, vm.overcommit_memory: 0}
        thp:
          description: Transparent huge pages C(enabled) and C(defrag) modes, null without THP.
          type: dict
          sample: {enabled: madvise, defrag: madvise}
        numa_nodes:
          description: NUMA nodes with their CPUs and memory in kB.
          type: list
          elements: dict
        zones:
          description: Per-zone free memory and min/low/high watermarks in kB.
          type: list
          elements: dict
        victims:
          description: The processes the kernel's OOM killer would pick first, highest C(oom_score) first.
          type: list
          elements: dict
          sample:
            - {pid: 981, comm: mysqld, oom_score: 702, oom_score_adj: 0, rss_kb: 412300, uid: 27,
               cgroup: /system.slice/mariadb.service, unit: mariadb.service, cmdline: /usr/sbin/mariadbd}
        domains:
          description:
            - Every OOM domain (docs/domains.md) - the host, then each memory cgroup with a limit of its own and each
              set of NUMA nodes a cpuset confines tasks to, tightest headroom first - with whom the kernel would
              kill there. Inside a cgroup the choice is computed the way
              the kernel's C(oom_badness()) ranks that cgroup's tasks (resident + swap + page-table pages, plus
              C(oom_score_adj) times the cgroup's size in pages / 1000); the host's is the kernel's own C(oom_score).
            - A V(node) domain (a C(CONSTRAINT_CPUSET) OOM) ranks every task that may use its nodes, those outside
              the confined cgroups too, against the nodes' present pages plus swap; its C(path) is C(node:) and the
              node list, with C(nodes), C(cpusets) and C(bound_tasks) besides.
            - Each has C(kind) (V(host), V(memcg) or V(node)), C(path), C(unit), C(limit_kb), C(usage_kb), C(headroom_kb),
              C(totalpages), C(tasks), C(next_victim) (C(pid), C(comm), C(unit), C(badness), C(oom_score_adj),
              C(rss_kb), C(swap_kb), C(pgtables_kb)), C(group_kill) (the cgroup whose C(memory.oom.group) makes
              the kill take all its tasks, or null) and C(group_victims).
            - C(forecast), with O(samples) of 2 or more (else null) - C(samples), C(span_s), C(growth_kb_per_s)
              (the least-squares slope of the usage), C(time_to_oom_s) (the headroom at that growth; null when not
              growing) and C(time_to_oom_range_s) (the times at the slope plus and minus two standard errors; the
              later one null when the fit cannot tell growth from none; null with two samples).
            - Null when the process scan or the domains are skipped.
          type: list
          elements: dict
          sample:
            - {kind: memcg, path: /system.slice/app.service, unit: app.service, limit_kb: 131072, usage_kb: 98304,
               headroom_kb: 32768, totalpages: 32768, tasks: 3, group_kill: null, group_victims: [], forecast: null,
               next_victim: {pid: 4242, comm: worker, unit: app.service, badness: 14336, oom_score_adj: 500,
                             rss_kb: 8192, swap_kb: 0, pgtables_kb: 64}}
        what_if:
          description:
            - The answer to O(what_if), null without it. C(path), C(grow_kb), C(pid) as asked; C(domains), every
              domain the growth counts against (the host, the cgroup if limited, each limited ancestor) with its
              C(limit_kb), C(headroom_kb) and whether it C(fills); C(fills), the one that fills first (the least
              headroom), or null; C(victim), whom the kernel kills there (with the grower's RSS raised when C(pid)
              is one of its tasks); C(group_kill) and C(group_victims) when C(memory.oom.group) takes more; C(note)
              on what was assumed.
          type: dict
          sample:
            path: /system.slice/db.service
            grow_kb: 2097152
            pid: 4242
            domains:
              - {kind: host, path: /, unit: null, limit_kb: 16777216, headroom_kb: 9437184, fills: false}
              - {kind: memcg, path: /system.slice/db.service, unit: db.service, limit_kb: 4194304,
                 headroom_kb: 1048576, fills: true}
            fills: {kind: memcg, path: /system.slice/db.service, unit: db.service, limit_kb: 4194304,
                    headroom_kb: 1048576}
            victim: {pid: 4242, comm: postgres, unit: db.service, badness: 786432, oom_score_adj: 0,
                     rss_kb: 3145728, swap_kb: 0, pgtables_kb: 6144}
            group_kill: null
            group_victims: []
            note: null
        protected:
          description: Processes exempt from the OOM killer (C(oom_score_adj) -1000).
          type: list
          elements: dict
        early_killers:
          description:
            - Userspace early OOM killers found running (earlyoom, systemd-oomd, oomd, nohang), each with C(name),
              C(pid), C(comm), C(oom_score_adj), C(cgroup) and C(unit).
            - For earlyoom also C(patterns) (its C(--prefer) and C(--avoid), as it runs with them), C(matches) (per
              pattern, the running process names it matches) and C(pattern_problems) (a pattern not read or not
              matched in time).
          type: list
          elements: dict
        process_count:
          description: Number of user processes scanned.
          type: int
        cgroups:
          description: Cgroups with a memory limit, OOM counters or failures (at most 50, most OOM kills first).
          type: list
          elements: dict
        cgroup_count:
          description: Number of cgroups read in the memory hierarchy.
          type: int
        systemd_units:
          description: Number of systemd units read, null when systemd was not read.
          type: int
        is_root:
          description: Whether the module ran as root.
          type: bool
        notes:
          description: Readers that were skipped or could not read, with the reason.
          type: list
          elements: dict
          sample: [{reader: slabinfo, reason: permission denied (needs root)}]
        snapshot:
          description: The full raw snapshot, with O(include_snapshot=true) only.
          type: dict
          returned: when O(include_snapshot=true)
'''

import os
import platform

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oomguard.linux.plugins.module_utils._engine import Labels
from ansible_collections.oomguard.linux.plugins.module_utils.facts import posture_facts
from ansible_collections.oomguard.linux.plugins.module_utils.posture import (
    judge, posture_options, sampling_options, what_if_options)
from ansible_collections.oomguard.linux.plugins.module_utils.procfs import HostRoot, ReadError
from ansible_collections.oomguard.linux.plugins.module_utils.snapshot import SKIPPABLE, collect


def main():
    module = AnsibleModule(
        argument_spec=dict(
            victims_count=dict(type='int', default=10),
            skip=dict(type='list', elements='str', choices=list(SKIPPABLE), default=[]),
            thresholds=dict(type='dict', default={}),
            include_snapshot=dict(type='bool', default=False),
            samples=dict(type='int', default=1),
            interval_s=dict(type='float', default=10.0),
            what_if=dict(type='dict', options=dict(
                path=dict(type='str', required=True), grow_kb=dict(type='int', required=True), pid=dict(type='int'))),
            root=dict(type='path', default='/'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    thresholds, victims_count, problems = posture_options(
        {'thresholds': params['thresholds'], 'victims_count': params['victims_count']},
        Labels(platform.node()), lambda key: key)
    samples, interval_s, sampling_problems = sampling_options(
        params['samples'], params['interval_s'], Labels(platform.node()), lambda key: key)
    problems += sampling_problems
    what_if, what_if_problems = what_if_options(params['what_if'], Labels(platform.node()), lambda key: key)
    problems += what_if_problems
    if problems:
        module.fail_json(msg='\n'.join(p.message for p in problems), problems=[p.as_dict() for p in problems])

    root = params['root']
    if not os.path.isabs(root) or not os.path.isdir(root):
        module.fail_json(msg='root = %s; allowed: an absolute path of a directory holding a captured proc/ and sys/ '
                             'tree, or / for this host' % root)
    host = HostRoot(root)
    systemctl = None
    if host.live and 'systemd' not in params['skip']:
        systemctl = module.get_bin_path('systemctl')
    try:
        snapshot = collect(
            host,
            skip=params['skip'],
            victims_count=victims_count,
            run_command=module.run_command if host.live else None,
            systemctl_path=systemctl,
            samples=samples,
            interval_s=interval_s,
            what_if=what_if,
        )
    except ReadError as exc:
        module.fail_json(msg='cannot read the host memory state: %s' % exc)
    verdict = judge(snapshot, thresholds or None)
    module.exit_json(changed=False, ansible_facts={
        'oom_posture': posture_facts(snapshot, verdict, params['include_snapshot']),
    })


if __name__ == '__main__':
    main()
