#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: oom_audit
short_description: Compare the live host with the OOM hardening policy of the inventory, changing nothing
version_added: 0.1.0
description:
  - Takes the same inventory variables as the C(oomguard.linux.harden) role (profile, sysctls, THP and compaction,
    services' limits, NUMA placement, C(oom_score_adj) and C(OOMPolicy), raw cgroups, processes, the early OOM
    killer) and reports, per setting, C(ok), C(drift), C(missing) or C(unsupported), with the desired and the live
    value.
  - The plan is the hardening modules' own check-mode plan (M(oomguard.linux.kernel_tunables),
    M(oomguard.linux.oom_units), M(oomguard.linux.early_oom)), so the audit and the C(oomguard.linux.harden) role
    cannot disagree. Nothing is written.
  - Guards judge a change, and the audit makes none. A guard that would refuse the hardening does not stop the audit.
    It is listed in RV(guards_fired). An invalid inventory fails the task, with the message the harden role gives.
  - O(fail_on_drift) fails the task when anything drifts or is missing, for CI gates.
  - For the fleet audit (C(playbooks/audit.yml)) the same call can also return the posture (what
    M(oomguard.linux.oom_facts) reports), the slab verdict (M(oomguard.linux.slab_leak)) and the OOM events
    (M(oomguard.linux.oom_events)) of the host. One call per host is what keeps a fleet run cheap; each part can fail
    alone with O(keep_going).
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
  profile:
    description: The C(oomguard_profile) of the harden role.
    type: str
    default: none
  sysctl:
    description: The C(oomguard_sysctl) of the harden role.
    type: dict
    default: {}
  thp:
    description: The C(oomguard_thp) of the harden role (THP and compaction keys).
    type: dict
    default: {}
  services:
    description: The C(oomguard_services) of the harden role.
    type: dict
    default: {}
  cgroups:
    description: The C(oomguard_cgroups) of the harden role.
    type: dict
    default: {}
  processes:
    description: The C(oomguard_processes) of the harden role.
    type: list
    elements: raw
    default: []
  protect_defaults:
    description: The C(oomguard_protect_defaults) of the harden role.
    type: bool
    default: true
  early_oom:
    description: The C(oomguard_early_oom) of the harden role.
    type: dict
    default: {}
  force:
    description: The C(oomguard_force) of the harden role. A guard that would fire is listed in RV(guards_fired) either way.
    type: list
    elements: str
    default: []
  policy:
    description: Audit the policy (the drift rows). Turn off to use the module for the other parts only.
    type: bool
    default: true
  posture:
    description: Also return the host's OOM posture in RV(posture), as M(oomguard.linux.oom_facts) reports it.
    type: bool
    default: false
  posture_options:
    description:
      - The inventory's C(oomguard_posture) for the posture part, checked like the options of
        M(oomguard.linux.oom_facts); a bad one fails the posture part with the host and the variable named.
      - C(thresholds) - overrides of the posture thresholds (name to number, see
        O(oomguard.linux.oom_facts#module:thresholds)), so that the fleet audit judges by the same numbers.
      - C(victims_count) - how many likely OOM victims to list, 0 to 1000 (default 5).
    type: dict
    default: {}
  slab:
    description:
      - Also judge slab in RV(slab), with these M(oomguard.linux.slab_leak) options
        (O(oomguard.linux.slab_leak#module:samples), O(oomguard.linux.slab_leak#module:interval_s),
        O(oomguard.linux.slab_leak#module:top), O(oomguard.linux.slab_leak#module:unreclaimable_percent),
        O(oomguard.linux.slab_leak#module:growth_kb_per_min)); V({}) for its defaults. Not done when null.
    type: dict
  events:
    description:
      - Also read the OOM events in RV(events), with these M(oomguard.linux.oom_events) options
        (O(oomguard.linux.oom_events#module:since), O(oomguard.linux.oom_events#module:max_events), default V(20)
        here, O(oomguard.linux.oom_events#module:min_loop_kills), O(oomguard.linux.oom_events#module:max_read_bytes),
        O(oomguard.linux.oom_events#module:timeout_s)), from the automatic sources. Not done when null. Another key
        fails the events part.
    type: dict
  keep_going:
    description:
      - When a part fails (an invalid inventory for the policy, an unreadable source for the events), return the other
        parts and the error in RV(errors) instead of failing the task.
    type: bool
    default: false
  fail_on_drift:
    description: Fail the task when any row of RV(settings) is C(drift) or C(missing). The result is returned all the
      same.
    type: bool
    default: false
  sysctl_file:
    description: The C(oomguard_sysctl_file) of the harden role.
    type: path
    default: /etc/sysctl.d/90-oomguard.conf
  compaction_file:
    description: The C(oomguard_thp_compaction_file) of the harden role.
    type: path
    default: /etc/sysctl.d/90-oomguard-compaction.conf
  systemd_dir:
    description: The C(oomguard_systemd_dir) of the harden role.
    type: path
    default: /etc/systemd/system
  state_dir:
    description: The C(oomguard_state_dir) of the harden role.
    type: path
    default: /var/lib/oomguard
extends_documentation_fragment:
  - oomguard.linux.labels
notes:
  - Root is needed to read every process's C(oom_score_adj) and some cgroup files; without it the module fails
    where the hardening modules would.
seealso:
  - module: oomguard.linux.kernel_tunables
  - module: oomguard.linux.oom_units
  - module: oomguard.linux.early_oom
'''

EXAMPLES = r'''
- name: Audit the hosts against the inventory's OOM policy
  oomguard.linux.oom_audit:
    profile: "{{ oomguard_profile | default('default') }}"
    sysctl: "{{ oomguard_sysctl | default({}) }}"
    thp: "{{ oomguard_thp | default({}) }}"
    services: "{{ oomguard_services | default({}) }}"
    early_oom: "{{ oomguard_early_oom | default({}) }}"
    host_label: "{{ inventory_hostname }}"
  become: true
  register: drift

- name: A CI gate - fail when a host drifts
  oomguard.linux.oom_audit:
    profile: latency_sensitive
    fail_on_drift: true
  become: true
'''

RETURN = r'''
settings:
  returned: when O(policy=true) and the inventory is valid
  description:
    - One row per setting. C(area) is C(sysctl), C(thp), C(persistence), C(unit), C(cgroup), C(process) or C(early_oom).
      C(item) is the sysctl, unit, cgroup, process or file. C(setting) is C(value), C(file), C(live), a systemd property,
      or what the host lacks. Each row also has C(desired), C(live), C(status), and sometimes C(note).
  type: list
  elements: dict
  sample: [{area: sysctl, item: vm.swappiness, setting: value, desired: '10', live: '60', status: drift}]
summary:
  returned: when O(policy=true) and the inventory is valid
  description: Rows per status.
  type: dict
  sample: {ok: 7, drift: 1, missing: 0, unsupported: 0}
drift:
  returned: when O(policy=true) and the inventory is valid
  description: Rows that are C(drift) - a live value that differs from the policy's.
  type: int
missing:
  returned: when O(policy=true) and the inventory is valid
  description: >-
    Rows that are C(missing) - a file, drop-in or unit the collection would write and that is absent (a host never
    hardened, or a file removed since).
  type: int
compliant:
  returned: when O(policy=true) and the inventory is valid
  description: No row is C(drift) or C(missing).
  type: bool
guards_fired:
  returned: when O(policy=true) and the inventory is valid
  description: Guards that would refuse the hardening today and are not in O(force) (listed, not obeyed).
  type: list
  elements: str
profile:
  returned: when O(policy=true) and the inventory is valid
  description: The profile audited against.
  type: str
killer:
  returned: when O(policy=true) and the inventory is valid
  description: The early OOM killer the policy picks on this host (C(none) when not managed), null when the host cannot run one.
  type: str
cgroup_mode:
  returned: when O(policy=true) and the inventory is valid
  description: The host's cgroup layout.
  type: str
posture:
  description: >-
    The host's OOM posture (the RV(oomguard.linux.oom_facts#module:ansible_facts.oom_posture) fact of
    M(oomguard.linux.oom_facts)).
  returned: when O(posture=true) and it could be read
  type: dict
slab:
  description: The result of M(oomguard.linux.slab_leak).
  returned: when O(slab) is given and it could be read
  type: dict
events:
  description: >-
    The result of M(oomguard.linux.oom_events) (RV(oomguard.linux.oom_events#module:events),
    RV(oomguard.linux.oom_events#module:kill_loops), RV(oomguard.linux.oom_events#module:early_kills),
    RV(oomguard.linux.oom_events#module:summary), RV(oomguard.linux.oom_events#module:notes)).
  returned: when O(events) is given and they could be read
  type: dict
errors:
  description: Per part (O(policy), O(posture), O(slab), O(events)) that failed, its message.
  returned: always
  type: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oomguard.linux.plugins.module_utils import _argspec, audit, ledger as ledger_mod, procfs

PATH_OPTIONS = ('sysctl_file', 'compaction_file', 'systemd_dir', 'state_dir')


def argument_spec():
    return dict(
        policy=dict(type='bool', default=True),
        posture=dict(type='bool', default=False),
        posture_options=dict(type='dict', default={}),
        slab=dict(type='dict'),
        events=dict(type='dict'),
        keep_going=dict(type='bool', default=False),
        fail_on_drift=dict(type='bool', default=False),
        **_argspec.harden_spec(),
        **_argspec.force_spec(),
        **_argspec.path_spec(*PATH_OPTIONS),
        **_argspec.labels_spec(),
    )


def gate_message(result):
    """Why fail_on_drift fails: the values that differ and the files that are absent, by name."""
    rows = [r for r in result['settings'] if r['status'] in ('drift', 'missing')]
    parts = []
    if result['drift']:
        parts.append('%d %s from the policy' % (result['drift'], 'value differs' if result['drift'] == 1 else 'values differ'))
    if result['missing']:
        parts.append('%d %s' % (result['missing'], 'file or unit of the policy is absent' if result['missing'] == 1
                                else 'files or units of the policy are absent'))
    names = ', '.join('%s %s (%s)' % (r['item'], r['setting'], r['status']) for r in rows[:20])
    return '%s: %s%s' % ('; '.join(parts), names, ' and %d more' % (len(rows) - 20) if len(rows) > 20 else '')


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params, labels = _argspec.params_and_labels(module.params, PATH_OPTIONS)
    systemctl = module.get_bin_path('systemctl')
    try:
        result, errors = audit.run_parts(params, procfs.HostRoot('/'), labels, run_command=module.run_command,
                                         systemctl=systemctl, journalctl=module.get_bin_path('journalctl'),
                                         systemd_booted=os.path.isdir('/run/systemd/system'))
    except (ledger_mod.LedgerError, procfs.ReadError, IOError, OSError) as exc:
        module.fail_json(msg=labels.msg('cannot audit: %s' % exc))
    result['errors'] = errors
    if errors and not params['keep_going']:
        module.fail_json(msg='\n'.join(errors[part] for part in audit.PARTS if part in errors), changed=False, **result)
    if params['fail_on_drift'] and result.get('compliant') is False:
        module.fail_json(msg=labels.msg(gate_message(result)), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
