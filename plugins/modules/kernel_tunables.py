#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: kernel_tunables
short_description: Apply OOM-related sysctls and transparent huge page settings in one call, with guards
version_added: 0.1.0
description:
  - Applies a whole set of sysctls (C(vm.panic_on_oom), C(kernel.panic), overcommit, C(vm.min_free_kbytes),
    watermarks, ...), the transparent huge page knobs (C(enabled), C(defrag), khugepaged C(defrag)) and
    memory compaction in one module call.
  - "The order is fixed: validate every value -> check the guards against the live host -> plan ->
    record the old values and files in the ledger -> write the persistent files -> write the live
    values -> read them back. Nothing is written when any value or guard fails, and the error names
    the host, the inventory variable, the value and what is allowed."
  - Persistence. Sysctls go to a file in C(/etc/sysctl.d). THP settings go to a oneshot systemd unit
    (C(oomguard-thp.service)) ordered before C(systemd-sysctl.service), because writing C(enabled)
    starts khugepaged, which raises C(vm.min_free_kbytes) on its own; a C(transparent_hugepage=) boot
    parameter would cover only C(enabled) and would need the boot loader. Compaction is
    C(vm.compaction_proactiveness) where the kernel has it (5.9+), otherwise a systemd timer that
    writes C(vm.compact_memory) at an off-peak time.
  - The old values and files are recorded on the host in a ledger (C(ledger.json) in O(state_dir)), once;
    M(oomguard.linux.restore) puts them back.
  - The collection's C(docs/tunables.md) lists the profiles, the guards (the ids O(force) takes) and the rule of
    C(vm.min_free_kbytes=auto).
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: Predicts exactly the RV(changes) and RV(files) a real run reports, and writes nothing.
  diff_mode:
    support: full
    description: Shows the live values and every file before and after.
  platform:
    platforms: posix
    support: full
    description: Linux only.
options:
  sysctl:
    description:
      - Sysctl name (C(vm.panic_on_oom) or C(vm/panic_on_oom)) to value. Integers, decimal strings, and
        lists of integers for multi-value sysctls.
      - Known OOM sysctls are checked against their range (see C(docs/tunables.md)); any other sysctl
        this kernel has is accepted as text.
      - C(vm.min_free_kbytes) also takes V(auto).
      - Merged over the values of O(profile); the values given here win.
    type: dict
    default: {}
  thp:
    description:
      - Transparent huge page settings; a key left out (or null) is not managed. Merged over the values of O(profile).
      - C(enabled) - C(/sys/kernel/mm/transparent_hugepage/enabled), one of V(always), V(madvise), V(never).
      - C(defrag) - C(/sys/kernel/mm/transparent_hugepage/defrag), one of V(always), V(defer),
        V(defer+madvise), V(madvise), V(never) (the ones this kernel offers).
      - C(khugepaged_defrag) - C(/sys/kernel/mm/transparent_hugepage/khugepaged/defrag), V(0) or V(1).
      - Keys C(compaction_method), C(compaction_proactiveness) and C(compaction_schedule) are taken as
        O(compaction.method), O(compaction.proactiveness) and O(compaction.schedule), which is how the thp role
        passes its C(oomguard_thp).
      - The keys are checked by the module rather than by the argument spec, so that a wrong one is
        reported with the host, the variable and what is allowed.
    type: dict
    default: {}
  compaction:
    description: Memory compaction against fragmentation.
    type: dict
    default: {}
    suboptions:
      method:
        description:
          - V(proactive) sets C(vm.compaction_proactiveness) (kernel 5.9+); V(timer) installs a systemd
            timer that writes C(vm.compact_memory) on O(compaction.schedule); V(auto) picks V(proactive) where the
            kernel has it. Default V(auto).
        type: str
      proactiveness:
        description: C(vm.compaction_proactiveness), 0..100.
        type: raw
      schedule:
        description: systemd C(OnCalendar=) expression for the timer.
        type: str
  profile:
    description:
      - Defaults for a kind of workload, merged under the values above; one of V(none) (adds nothing),
        V(default), V(latency_sensitive), V(database), V(batch).
      - Checked by the module rather than by the argument spec, so that a wrong name is reported like
        every other value, with the host and the variable.
    type: str
    default: none
  scopes:
    description:
      - The parts this call manages. A scope in this list that has no values removes its persistent
        files; a scope not in it is left alone. The roles use this so that each owns its own files.
    type: list
    elements: str
    choices: [sysctl, thp, compaction]
    default: [sysctl, thp, compaction]
  unsupported:
    description: What to do with a key this kernel does not have. V(fail) refuses the call, V(skip) leaves
      the key out and lists it in RV(skipped).
    type: str
    choices: [fail, skip]
    default: fail
  persist:
    description: Write the persistent files. With V(false) only the live values change (lost at reboot).
    type: bool
    default: true
  sysctl_file:
    description: The sysctl.d file of scope V(sysctl).
    type: path
    default: /etc/sysctl.d/90-oomguard.conf
  compaction_file:
    description: The sysctl.d file of scope V(compaction).
    type: path
    default: /etc/sysctl.d/90-oomguard-compaction.conf
  sysctl_dirs:
    description: The directories systemd-sysctl reads, in its order; used to find files that would
      override the collection's at boot. With O(persist=true), O(sysctl_file) and O(compaction_file) must be
      C(.conf) files in one of them, or the values would not persist.
    type: list
    elements: path
    default: [/etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d, /lib/sysctl.d]
extends_documentation_fragment:
  - oomguard.linux.change
  - oomguard.linux.labels
notes:
  - Needs root to write. Reading and check mode work without root where the kernel lets files be read.
seealso:
  - module: oomguard.linux.restore
  - module: oomguard.linux.oom_facts
'''

EXAMPLES = r'''
- name: Panic and reboot on a host-wide OOM, keep strict accounting off
  oomguard.linux.kernel_tunables:
    sysctl:
      vm.panic_on_oom: 1
      kernel.panic: 10
      vm.min_free_kbytes: auto
      vm.watermark_scale_factor: 200

- name: Latency-sensitive defaults plus one override, THP off
  oomguard.linux.kernel_tunables:
    profile: latency_sensitive
    sysctl:
      vm.swappiness: 5
    thp:
      enabled: never
      defrag: never

- name: Strict overcommit on purpose although the live commit charge is close
  oomguard.linux.kernel_tunables:
    sysctl:
      vm.overcommit_memory: 2
      vm.overcommit_ratio: 95
    force: [overcommit_below_committed]

- name: Preflight only
  oomguard.linux.kernel_tunables:
    sysctl:
      vm.panic_on_oom: 1
      kernel.panic: 10
    validate_only: true
  register: plan
'''

RETURN = r'''
changes:
  description:
    - The live values changed (or, in check mode and with O(validate_only=true), that would change), in the
      order they are written. C(cause) says whether the user asked for it or the kernel does it as a
      side effect.
  returned: always
  type: list
  elements: dict
  sample: [{key: vm.panic_on_oom, kind: sysctl, path: /proc/sys/vm/panic_on_oom, before: '0', after: '1',
            cause: requested}]
files:
  description: The persistent files created, updated or removed.
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/sysctl.d/90-oomguard.conf, action: create}]
desired:
  description: Every value the call manages after merging O(profile) and resolving V(auto).
  returned: always
  type: dict
  sample: {vm.panic_on_oom: '1', kernel.panic: '10', transparent_hugepage.enabled: never}
resolved:
  description: What V(auto) values became.
  returned: always
  type: dict
  sample: {vm.min_free_kbytes: 6553}
forced:
  description: Guards that fired and were overridden by O(force).
  returned: always
  type: list
  elements: dict
skipped:
  description: Keys left out because this kernel lacks them (with O(unsupported=skip)).
  returned: always
  type: list
  elements: dict
compaction_method:
  description: The compaction method chosen (C(proactive) or C(timer)), null when compaction is not managed.
  returned: always
  type: str
ledger:
  description: The path of the ledger of original values, in O(state_dir).
  returned: always
  type: str
  sample: /var/lib/oomguard/ledger.json
problems:
  description: On failure, every refused value and guard, each with its C(id), C(key) and C(message).
  returned: failure
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils._engine import run_module
from ansible_collections.oomguard.linux.plugins.module_utils.tunables_apply import apply

PATH_OPTIONS = ('sysctl_file', 'compaction_file', 'systemd_dir', 'state_dir')


def argument_spec():
    return dict(
        sysctl=dict(type='dict', default={}),
        thp=dict(type='dict', default={}),
        compaction=dict(type='dict', default={}, options=dict(
            method=dict(type='str'),
            proactiveness=dict(type='raw'),
            schedule=dict(type='str'),
        )),
        profile=dict(type='str', default='none'),
        scopes=dict(type='list', elements='str', default=['sysctl', 'thp', 'compaction'],
                    choices=['sysctl', 'thp', 'compaction']),
        unsupported=dict(type='str', default='fail', choices=['fail', 'skip']),
        persist=dict(type='bool', default=True),
        sysctl_dirs=dict(type='list', elements='path',
                         default=['/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d',
                                  '/usr/lib/sysctl.d', '/lib/sysctl.d']),
        **_argspec.change_spec(),
        **_argspec.path_spec('sysctl_file', 'compaction_file'),
        **_argspec.labels_spec(),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params, labels = _argspec.params_and_labels(module.params, PATH_OPTIONS)
    # The choices are checked here, not by the argument spec, so that the
    # message names the host and the inventory variable like every other.
    params['compaction'] = dict((k, v) for k, v in (params['compaction'] or {}).items() if v is not None)
    run_module(module, apply, params, labels, 'cannot apply the tunables')


if __name__ == '__main__':
    main()
