#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: oom_units
short_description: Per-service memory limits, NUMA placement and OOM protection, live and persistent
version_added: 0.1.0
description:
  - Sets, per systemd service or slice, C(MemoryMax), C(MemoryHigh), C(MemoryLow), C(MemoryMin),
    C(MemorySwapMax) (scope V(limits)), C(AllowedMemoryNodes) (scope V(cpuset)), C(OOMScoreAdjust),
    C(OOMPolicy) and C(CPUWeight) (scope V(protect)) as systemd drop-ins, one file per scope of O(scopes)
    (C(<unit>.d/90-oomguard-<scope>.conf)), so that the roles owning each scope never overwrite each other.
  - Running units are not restarted. systemd applies the cgroup values on C(daemon-reload); a value it
    did not apply is written to the unit's cgroup file. The C(oom_score_adj) of the unit's running
    processes is written at once, because C(OOMScoreAdjust) alone waits for the next start.
  - Raw cgroups not owned by systemd (O(cgroups)) are written directly (v2 files, or
    C(memory.limit_in_bytes) and C(cpuset.mems) on v1). Processes outside systemd are matched by a
    regular expression on their command line (O(processes)); both are live only and are set again on
    every run.
  - "The order is fixed: validate everything -> guards against the live host -> plan -> record the
    originals in the ledger -> drop-ins -> daemon-reload -> live values -> read back. Nothing is written
    when a value or a guard fails, and the error names the host, the variable and what is allowed."
  - Guards (each can be forced by its id in O(force)) - C(limit_below_usage) (a max or high limit below the cgroup's
    current usage), C(nodes_without_room) (the nodes' free memory cannot take the cgroup's usage),
    C(unit_missing) (the unit is not installed), C(pattern_too_broad) (a pattern matching more than 20
    processes).
  - On cgroup v1 hosts systemd has only C(MemoryMax) (as C(memory.limit_in_bytes)); the other limits and
    C(allowed_memory_nodes) are refused with C(unsupported_cgroup_v1).
  - Originals go to the ledger (C(ledger.json) in O(state_dir)); M(oomguard.linux.restore) puts them back.
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: Predicts the RV(changes) and RV(files) a real run reports, and writes nothing.
  diff_mode:
    support: full
    description: Shows the live values and every drop-in before and after.
  platform:
    platforms: posix
    support: full
    description: Linux only.
options:
  services:
    description:
      - Unit name (a bare name is a C(.service)) to settings. Keys C(memory_max), C(memory_high),
        C(memory_low), C(memory_min), C(memory_swap_max) (sizes like C(512M), C(2G), C(25%) or C(infinity)),
        C(allowed_memory_nodes) (like C(1) or C(0-1)), C(oom_score_adj) (-1000..1000), C(oom_policy)
        (V(continue), V(stop), V(kill)), C(cpu_weight) (1..10000, systemd's default share is 100; near
        OOM the reclaiming kernel and the runaway compete with the service for the CPU) and
        C(managed_oom_preference) (V(none), V(avoid), V(omit); systemd-oomd's counterpart of C(oom_score_adj)).
        A key outside the called O(scopes) is ignored.
      - A key the host's systemd does not know yet (C(MemoryMin=) 240, C(OOMPolicy=) 243, C(AllowedMemoryNodes=)
        244, C(ManagedOOMPreference=) 248) is refused before anything is written, naming the release it needs and
        the host's (guard C(unsupported_systemd)). After the daemon-reload every property written is read back with
        C(systemctl show); one systemd did not take fails the run.
      - Checked by the module, so that a wrong value is reported with the host and the inventory variable.
    type: dict
    default: {}
  cgroups:
    description:
      - cgroup path relative to the hierarchy (C(machine/db)) to settings C(memory_max), C(memory_high),
        C(memory_low), C(memory_min), C(memory_swap_max), C(cpuset_mems). The cgroup must exist.
    type: dict
    default: {}
  processes:
    description:
      - Processes outside systemd, each C({match, oom_score_adj}); C(match) is a Python regular expression
        searched in the command line. PID 1, kernel threads and the module itself are never matched.
    type: list
    elements: raw
    default: []
  protect_defaults:
    description:
      - With scope V(protect) in O(scopes), lower the live C(oom_score_adj) of the OpenSSH listener (C(ssh.service) or
        C(sshd.service) main process) to -1000 where it is higher. Only the main process, because
        OpenSSH gives its sessions back their own value and a drop-in would protect every user's shell.
    type: bool
    default: true
  scopes:
    description: The parts this call manages; drop-ins of a scope left out are not touched.
    type: list
    elements: str
    choices: [limits, cpuset, protect]
    default: [limits, cpuset, protect]
extends_documentation_fragment:
  - oomguard.linux.change
  - oomguard.linux.labels
notes:
  - Needs root to write. Check mode reads only.
  - Drop-ins of this module for units no longer in O(services) are removed (per called scope).
seealso:
  - module: oomguard.linux.restore
  - module: oomguard.linux.kernel_tunables
'''

EXAMPLES = r'''
- name: Cap a batch service, keep the database for last, stop nginx as a whole on OOM
  oomguard.linux.oom_units:
    services:
      batch-import:
        memory_high: 1536M
        memory_max: 2G
      postgresql:
        oom_score_adj: -800
        memory_low: 25%
      nginx:
        oom_policy: kill

- name: Bind a unit's memory to NUMA node 1
  oomguard.linux.oom_units:
    scopes: [cpuset]
    services:
      analytics.service:
        allowed_memory_nodes: 1

- name: A raw cgroup and a process outside systemd
  oomguard.linux.oom_units:
    cgroups:
      lxc.payload.web:
        memory_max: 4G
    processes:
      - match: '^/opt/agent/bin/agent( |$)'
        oom_score_adj: -500
'''

RETURN = r'''
changes:
  description:
    - Live values changed (or that would change). C(cause) is C(requested) for values this module writes
      and C(systemd) for a running unit's cgroup values that systemd applies on reload.
  returned: always
  type: list
  elements: dict
  sample: [{key: 'nginx.service memory.max', kind: cgroup, path: /sys/fs/cgroup/system.slice/nginx.service/memory.max,
            before: max, after: '268435456', cause: systemd}]
files:
  description: Drop-ins created, updated or removed.
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/systemd/system/nginx.service.d/90-oomguard-protect.conf, action: create}]
dropins:
  description: Per unit and scope, the properties its drop-in sets.
  returned: always
  type: dict
  sample: {nginx.service: {protect: {OOMPolicy: kill}}}
unmatched:
  description: O(processes) patterns that matched no process.
  returned: always
  type: list
  elements: str
unsupported:
  description: Unit properties the host's systemd does not know, with the release each needs.
  returned: always
  type: list
  elements: dict
  sample: [{unit: ssh.service, property: ManagedOOMPreference, needs: 248, has: 247}]
systemd_version:
  description: The host's systemd release (the running manager's, else the installed one's); null without systemd.
  returned: always
  type: int
  sample: 252
cgroup_mode:
  description: The host's cgroup layout (C(v2), C(v1), C(hybrid), C(none)).
  returned: always
  type: str
forced:
  description: Guards that fired and were overridden by O(force).
  returned: always
  type: list
  elements: dict
ledger:
  description: The path of the ledger of original values, in O(state_dir).
  returned: always
  type: str
problems:
  description: On failure, every refused value and guard, each with its C(id), C(key) and C(message).
  returned: failure
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils._engine import run_module
from ansible_collections.oomguard.linux.plugins.module_utils.units_apply import apply

PATH_OPTIONS = ('systemd_dir', 'state_dir')


def argument_spec():
    return dict(
        services=dict(type='dict', default={}),
        cgroups=dict(type='dict', default={}),
        processes=dict(type='list', elements='raw', default=[]),
        protect_defaults=dict(type='bool', default=True),
        scopes=dict(type='list', elements='str', default=['limits', 'cpuset', 'protect'],
                    choices=['limits', 'cpuset', 'protect']),
        **_argspec.change_spec(),
        **_argspec.labels_spec(),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params, labels = _argspec.params_and_labels(module.params, PATH_OPTIONS)
    run_module(module, apply, params, labels, 'cannot apply the unit settings')


if __name__ == '__main__':
    main()
