#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: oom_events
short_description: Read the kernel's OOM reports and say why each kill happened
version_added: 0.1.0
description:
  - Reads kernel OOM-killer reports from the kernel ring buffer (C(dmesg), read from C(/dev/kmsg)),
    from the systemd journal (kernel messages of every boot it keeps), or from log files (plain or
    gzip-rotated; syslog RFC 3164 and RFC 5424, journald C(short), C(short-precise) and C(short-iso),
    raw C(dmesg), C(dmesg -T), C(/dev/kmsg) records, rsyslog C(#012) escapes, several hosts in one file),
    and journald exports (C(journalctl -o) C(json), C(json-seq), C(json-pretty), C(verbose), C(export),
    C(short-monotonic), C(short-full), C(cat)).
  - Turns each report into an event (time, invoking task, gfp_mask, order, constraint, memory cgroups,
    victim, zones and buddy lists, the biggest tasks, oom_reaper outcome, panic) and names its cause -
    C(memcg_limit), C(parent_memcg_limit), C(host), C(numa_node), C(mempolicy), C(fragmentation),
    C(lowmem), C(manual), C(panic) or C(unknown) - with the evidence and the knob or role that fixes it.
  - Reports kill loops (the same program killed again and again with new PIDs) and, on the host
    whose logs were read, the systemd unit behind each loop and its C(OOMPolicy).
  - Read-only. Runs on the controller too (with C(delegate_to) set to C(localhost)) against files
    fetched from elsewhere.
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode returns the same result.
  diff_mode:
    support: none
    description: Nothing is changed.
options:
  sources:
    description:
      - Live sources of this host to read. V(dmesg) reads the kernel ring buffer (root, or
        C(kernel.dmesg_restrict=0)); V(journal) runs C(journalctl _TRANSPORT=kernel), every boot the
        journal keeps; V(early_killers) reads the journal of C(earlyoom.service) and C(systemd-oomd.service)
        for the kills of the userspace early OOM killers (returned in RV(early_kills)).
      - When neither O(sources) nor O(path) is given, the journal and the early killers' journal are read on
        a host booted with systemd, the ring buffer otherwise.
    type: list
    elements: str
    choices: [dmesg, journal, early_killers]
    default: []
  path:
    description:
      - Log files to read, or glob patterns, as absolute paths (a relative one is refused, the module's working
        directory on the managed host is a temporary one). Gzip files are recognised by their content.
      - A journald export (C(journalctl -o json), C(json-seq), C(json-pretty), C(verbose), C(export),
        C(short-monotonic), C(short-full), C(cat)) is recognised by its first bytes, not its name, and read by field -
        only kernel entries (C(_TRANSPORT=kernel), or C(SYSLOG_IDENTIFIER=kernel) in an export without
        C(_TRANSPORT)), their C(MESSAGE) (also a binary one), time from C(__REALTIME_TIMESTAMP), host from
        C(_HOSTNAME), seconds since boot from C(_SOURCE_MONOTONIC_TIMESTAMP). Entries longer than 64 KiB are
        skipped with a note, like long lines.
      - Only regular files are read (a link to one is fine). A directory, device, FIFO or socket is refused before
        it is opened, also when a glob matches it; for the kernel ring buffer (C(/dev/kmsg)) use O(sources=[dmesg]).
      - A glob that matches nothing is refused.
    type: list
    elements: path
    default: []
  since:
    description:
      - Only events at or after this time. Relative (V(90m), V(24h), V(7d), V(2w)) or absolute in UTC
        (V(2026-11-01), V(2026-11-01 12:00)).
      - Events whose log gives no absolute time (raw C(dmesg) files) are kept.
    type: str
  year:
    description:
      - Year of syslog and journald C(short) lines, which print none. Default, the file's modification
        year (files) or the current year (live sources). 1970 to 2200.
    type: int
  min_loop_kills:
    description: Kills of one program (same name, same cgroup, new PIDs) that make a kill loop. 2 to 100000.
    type: int
    default: 3
  max_events:
    description:
      - Return at most this many events (0 to 100000), the newest by event time over all sources and files, whatever
        order the files are read in (C(kern.log), C(kern.log.1), C(kern.log.2.gz) ...). RV(summary) counts them all.
      - Events with no absolute time (raw C(dmesg) files) count as older than every dated event, and among
        themselves go by the order they were read in.
    type: int
    default: 100
  max_read_bytes:
    description:
      - Bytes all inputs of one run may give, gzip files counted by what they decompress to; 1 to 2^40.
      - When it is reached, reading stops there; the events read until then are returned and RV(notes) says which
        input was cut and which were not read.
    type: int
    default: 2147483648
  timeout_s:
    description:
      - Seconds all inputs of one run may take to read, 1 to 86400. When they are up, reading stops there; the events
        read until then are returned and RV(notes) says where it stopped.
    type: int
    default: 300
  link_units:
    description:
      - Link kill loops to this host's systemd units and their C(OOMPolicy). Default, only when a live
        source (V(dmesg), V(journal)) was read.
    type: bool
extends_documentation_fragment:
  - oomguard.linux.labels.host
notes:
  - Task tables print memory in pages; C(rss_kb) assumes 4 KiB pages.
  - Times from C(dmesg -T) and syslog are local time as printed, without a zone.
  - A report is found anywhere in an input by its C(invoked oom-killer) line or its kill line (C(Out of memory),
    also when rate limiting dropped the rest of the report). A report fragment holding neither (a partial paste,
    a report cut at the head of a rotated log) is found by its C(Mem-Info:), C(Memory cgroup stats for),
    C(Tasks state) or C(killed as a result of limit of) line only in the first 8 MiB of each input (a file,
    a gzip file's content, the ring buffer, the journal).
  - Lines longer than 64 KiB (no log line is; a corrupt or foreign file) are skipped and counted in RV(notes). Text
    fields of an event (names, cgroup paths) longer than 4096 characters are cut in their middle.
  - A gzip file that decompresses to more than 250 times its size (past the first 64 MiB) is read no further
    (a gzip bomb), with a note.
  - Plain (not gzip) files of 16 MiB or more are searched and parsed by forked worker processes, one per CPU
    the module may use (at most 16); a worker that fails has its part redone by the module. Memory stays flat
    in the size of the logs read.
  - A journald export is read sequentially (never by the workers) and parsed entry by entry, about 100000 entries
    a second; its C(_BOOT_ID) is read but not yet part of an event.
  - The V(journal) source reads C(journalctl -o short-iso), not an export; the kernel lines of every boot are
    searched for markers at millions of lines a second, where reading an export field by field takes about 50
    times longer, for five times the bytes.
'''

EXAMPLES = r'''
- name: Why did processes die on this host?
  oomguard.linux.oom_events:
    since: 7d
  register: ooms

- name: Analyse logs fetched from another host, on the controller
  oomguard.linux.oom_events:
    path:
      - /srv/logs/web1/kern.log*
  delegate_to: localhost

- name: Fail when a kill loop is running
  ansible.builtin.assert:
    that: ooms.kill_loops | length == 0
    fail_msg: "{{ ooms.kill_loops }}"
'''

RETURN = r'''
events:
  description: OOM events, oldest first (at most O(max_events), the newest by event time).
  returned: always
  type: list
  elements: dict
  contains:
    host:
      description: Host name from the log prefix, if there is one.
      type: str
    time:
      description: The time as printed.
      type: str
    timestamp:
      description: Absolute time (ISO 8601) where the input allows.
      type: str
    uptime_s:
      description: Seconds since boot, where printed.
      type: float
    invoker:
      description: The allocating task, C(comm) and C(pid).
      type: dict
    gfp_mask:
      description: The allocation's gfp_mask.
      type: str
    gfp_flags:
      description: The gfp flags by name.
      type: list
      elements: str
    order:
      description: Allocation order; -1 for a manual (SysRq) OOM.
      type: int
    constraint:
      description: C(CONSTRAINT_NONE), C(CONSTRAINT_MEMCG), C(CONSTRAINT_CPUSET) or C(CONSTRAINT_MEMORY_POLICY) as printed (4.19 and later).
      type: str
    limit_memcg:
      description: The memory cgroup whose limit was hit.
      type: str
    task_memcg:
      description: The victim's memory cgroup.
      type: str
    victim:
      description: The killed process - pid, comm, uid, total_vm_kb, anon_rss_kb, file_rss_kb, shmem_rss_kb, oom_score_adj.
      type: dict
    victim_elided:
      description: The author cut the kill lines out of the text (C([...]), C((snipped))); the cause is read from the
        numbers and there is no victim.
      type: bool
    oom_group:
      description: A memory.oom.group kill - one invocation that killed every task of RV(events[].group_cgroup).
      type: bool
    group_cgroup:
      description: The cgroup a memory.oom.group kill emptied (oom.group events only).
      type: str
    victims:
      description: Every task a memory.oom.group kill killed, the selected one first (oom.group events only).
      type: list
      elements: dict
    boot_id:
      description: The C(_BOOT_ID) of a journald export's entries the event was read from; null for other inputs.
      type: str
    carrier_repairs:
      description: >-
        What was undone of the way the report was carried (mail quoting and wrapping, a pager's cut, interleaved
        console lines, glued records), in words, so a person sees what was guessed; empty when nothing was.
      type: list
      elements: str
    memcg:
      description: Memory cgroup usage, limit (kB) and failcnt, per counter.
      type: dict
    zones:
      description: Per-zone free, min, low and high in kB, with the node.
      type: list
      elements: dict
    buddy:
      description: Free blocks per order, per zone.
      type: list
      elements: dict
    tasks:
      description: The biggest tasks of the report's task table, by rss.
      type: list
      elements: dict
    reaper:
      description: The oom_reaper outcome.
      type: dict
    panic:
      description: The panic message, when the OOM panicked the kernel.
      type: str
    complete:
      description: Whether the report was whole, from its "invoked oom-killer:" line to the kill.
      type: bool
    cause:
      description: The cause.
      type: str
      sample: memcg_limit
    evidence:
      description: The numbers and lines that decided the cause.
      type: dict
    advice:
      description: What to change, naming the knob or the role and variable.
      type: str
    unknown_reason:
      description: Why the cause is unknown.
      type: str
    source:
      description: C(dmesg), C(journal) or the file the event came from.
      type: str
kill_loops:
  description: Programs killed again and again with new PIDs.
  returned: always
  type: list
  elements: dict
  sample:
    - comm: nginx
      host: null
      task_memcg: null
      kills: 20
      distinct_pids: 20
      first: "2021-01-18T09:50:59"
      last: "2021-01-18T09:51:00"
      unit: nginx.service
      oom_policy: continue
early_kills:
  description:
    - Kills by the userspace early OOM killers, oldest first (source V(early_killers) of O(sources)). earlyoom names a
      process (C(signal), C(pid), C(uid), C(comm), C(score), C(rss_mib)); systemd-oomd a C(cgroup) and the
      C(reason). C(dry_run) is true for a kill a killer in dry-run mode only reported.
  returned: always
  type: list
  elements: dict
  sample:
    - {timestamp: '2026-11-23T09:40:02+0000', killer: earlyoom, dry_run: false, signal: SIGTERM, pid: 812,
       uid: 0, comm: oomguard-batch, score: 1122, rss_mib: 33}
summary:
  description: Counts of events, by cause and by victim, and how many were partial; C(early_kills) counts the
    early killers' kills.
  returned: always
  type: dict
  sample:
    events: 20
    by_cause:
      host: 20
    by_victim:
      nginx: 20
    partial: 20
notes:
  description:
    - Sources that could not be read in the automatic choice, with the reason.
    - What the read limits cut - O(max_read_bytes), O(timeout_s), a gzip bomb, lines over 64 KiB - and the inputs
      not read because of them.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec, oom_events
from ansible_collections.oomguard.linux.plugins.module_utils._engine import Labels


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sources=dict(type='list', elements='str', choices=['dmesg', 'journal', 'early_killers'], default=[]),
            path=dict(type='list', elements='path', default=[]),
            since=dict(type='str'),
            year=dict(type='int'),
            min_loop_kills=dict(type='int', default=3),
            max_events=dict(type='int', default=100),
            max_read_bytes=dict(type='int', default=oom_events.MAX_READ_BYTES_DEFAULT),
            timeout_s=dict(type='int', default=oom_events.TIMEOUT_S_DEFAULT),
            link_units=dict(type='bool'),
            **_argspec.host_label_spec()
        ),
        supports_check_mode=True,
    )
    params = module.params
    labels = Labels(_argspec.host_name(params))
    problems = oom_events.check_options(params)
    if problems:
        module.fail_json(msg='\n'.join(labels.msg(p) for p in problems))
    try:
        result = oom_events.run(params, module.run_command, module.get_bin_path('journalctl'),
                                module.get_bin_path('systemctl'), os.path.isdir('/run/systemd/system'))
    except oom_events.SourceError as exc:
        module.fail_json(msg=labels.msg(str(exc)), notes=exc.notes)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
