#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: oom_harden
short_description: Harden one host in one call - the OOM tunables, the per-unit settings and the early OOM killer
version_added: 0.2.0
description:
  - What the C(oomguard.linux.harden) role does, in one module call - the work of
    M(oomguard.linux.kernel_tunables) (THP, compaction and the sysctls), M(oomguard.linux.oom_units) (per-unit
    limits, NUMA placement and OOM protection, raw cgroups, processes) and M(oomguard.linux.early_oom)
    (earlyoom or systemd-oomd), with the same options and the same guards.
  - "The three are planned from one read of the host each, and the problems of all three are reported
    together: nothing is written while any value or guard of any of them refuses. Then they are carried
    out in this order: tunables, unit settings, early killer; each records its originals in the ledger
    before its first write."
  - The early killer's package must be installed before a real run; run the module first with
    O(validate_only=true), which returns RV(early_oom.package_missing) instead of refusing, as the role does.
  - One call is what the role pays Ansible's per-task cost for; the separate modules remain for the roles that
    own one concern each.
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: Predicts exactly what a real run changes, per concern, and writes nothing.
  diff_mode:
    support: full
    description: Shows the live values and every file of every concern before and after.
  platform:
    platforms: posix
    support: full
    description: Linux only.
options:
  profile:
    description: The workload profile of M(oomguard.linux.kernel_tunables) (O(oomguard.linux.kernel_tunables#module:profile)).
    type: str
    default: none
  sysctl:
    description: Sysctls, as O(oomguard.linux.kernel_tunables#module:sysctl).
    type: dict
    default: {}
  thp:
    description: THP and compaction, as O(oomguard.linux.kernel_tunables#module:thp) (the thp role's C(oomguard_thp)).
    type: dict
    default: {}
  unsupported:
    description: A key this kernel lacks - V(fail) refuses the run, V(skip) leaves it out.
    type: str
    choices: [fail, skip]
    default: fail
  services:
    description: Per-unit settings, as O(oomguard.linux.oom_units#module:services).
    type: dict
    default: {}
  cgroups:
    description: Raw cgroups, as O(oomguard.linux.oom_units#module:cgroups).
    type: dict
    default: {}
  processes:
    description: Processes outside systemd, as O(oomguard.linux.oom_units#module:processes).
    type: list
    elements: raw
    default: []
  protect_defaults:
    description: Protect the OpenSSH listener, as O(oomguard.linux.oom_units#module:protect_defaults).
    type: bool
    default: true
  early_oom:
    description: The early OOM killer, as O(oomguard.linux.early_oom#module:early_oom).
    type: dict
    default: {}
  sysctl_file:
    description: The sysctl.d file of the sysctls.
    type: path
    default: /etc/sysctl.d/90-oomguard.conf
  compaction_file:
    description: The sysctl.d file of compaction.
    type: path
    default: /etc/sysctl.d/90-oomguard-compaction.conf
extends_documentation_fragment:
  - oomguard.linux.change
  - oomguard.linux.labels
notes:
  - Needs root to write. Reading and check mode work without root where the kernel lets files be read.
seealso:
  - module: oomguard.linux.kernel_tunables
  - module: oomguard.linux.oom_units
  - module: oomguard.linux.early_oom
  - module: oomguard.linux.restore
'''

EXAMPLES = r'''
- name: Harden this host from the inventory, all concerns in one call
  oomguard.linux.oom_harden:
    profile: latency_sensitive
    services:
      postgresql:
        oom_score_adj: -900
        memory_high: 80%
    early_oom:
      killer: earlyoom
      prefer: [batch-import]
    host_label: "{{ inventory_hostname }}"
  register: hardened
'''

RETURN = r'''
tunables:
  description: What M(oomguard.linux.kernel_tunables) returns (its RETURN), for the THP, compaction and sysctls.
  returned: success
  type: dict
units:
  description: What M(oomguard.linux.oom_units) returns (its RETURN), for the unit settings.
  returned: success
  type: dict
early_oom:
  description: What M(oomguard.linux.early_oom) returns (its RETURN), for the early killer.
  returned: success
  type: dict
  contains:
    package_missing:
      description: The chosen killer's package is not installed (reported instead of refused with
        O(validate_only=true) or in check mode).
      type: bool
    packages:
      description: The packages that hold the chosen killer on this host's distribution family (what the role installs).
      type: list
      elements: str
    package_manager:
      description: The host's package manager (V(apt), V(dnf), V(yum), V(zypper)).
      type: str
forced:
  description: The guards of every concern that fired and were forced with O(force).
  returned: success
  type: list
  elements: dict
problems:
  description: On failure, every refused value and guard of every concern, each with its C(id), C(key) and C(message).
  returned: failure
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils._engine import run_module
from ansible_collections.oomguard.linux.plugins.module_utils.harden import apply

PATH_OPTIONS = ('sysctl_file', 'compaction_file', 'systemd_dir', 'state_dir')


def argument_spec():
    return dict(
        unsupported=dict(type='str', default='fail', choices=['fail', 'skip']),
        **_argspec.harden_spec(),
        **_argspec.change_spec(),
        **_argspec.path_spec('sysctl_file', 'compaction_file'),
        **_argspec.labels_spec(),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params, labels = _argspec.params_and_labels(module.params, PATH_OPTIONS)
    run_module(module, apply, params, labels, 'cannot harden the host')


if __name__ == '__main__':
    main()
