#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

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
  - The plan is the hardening modules' own check-mode plan (C(kernel_tunables), C(oom_units), C(early_oom)), so the
    audit and C(harden) cannot disagree. Nothing is written.
  - Guards judge a change, and the audit makes none. A guard that would refuse the hardening does not stop the audit.
    It is listed in C(guards_fired). An invalid inventory fails the task, with the message the harden role gives.
  - I(fail_on_drift) fails the task when anything drifts or is missing, for CI gates.
  - For the fleet audit (C(playbooks/audit.yml)) the same call can also return the posture (what C(oom_facts)
    reports), the slab verdict (C(slab_leak)) and the OOM events (C(oom_events)) of the host. One call per host
    is what keeps a fleet run cheap; each part can fail alone with I(keep_going).
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
    description: The C(oomguard_force) of the harden role. Guards not listed here are forced for the plan anyway.
    type: list
    elements: str
    default: []
  policy:
    description: Audit the policy (the drift rows). Turn off to use the module for the other parts only.
    type: bool
    default: true
  posture:
    description: Also return the host's OOM posture in C(posture), as C(oomguard.linux.oom_facts) reports it (5 victims).
    type: bool
    default: false
  slab:
    description:
      - Also judge slab in C(slab), with these C(oomguard.linux.slab_leak) options (C(samples), C(interval_s), C(top),
        C(unreclaimable_percent), C(growth_kb_per_min)); C({}) for its defaults. Not done when null.
    type: dict
  events:
    description:
      - Also read the OOM events in C(events), with these C(oomguard.linux.oom_events) options (C(since),
        C(max_events), default 20, C(min_loop_kills)), from the automatic sources. Not done when null.
    type: dict
  keep_going:
    description:
      - When a part fails (an invalid inventory for the policy, an unreadable source for the events), return the other
        parts and the error in C(errors) instead of failing the task.
    type: bool
    default: false
  fail_on_drift:
    description: Fail the task when any setting is C(drift) or C(missing). The result is returned all the same.
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
  host_label:
    description: How messages name the host (playbooks pass C(inventory_hostname)). Defaults to the node name.
    type: str
  variable_labels:
    description: How messages name the options; the playbooks map them to the inventory variables.
    type: dict
    default: {}
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
  returned: when I(policy) is true and the inventory is valid
  description:
    - One row per setting. C(area) is C(sysctl), C(thp), C(persistence), C(unit), C(cgroup), C(process) or C(early_oom).
      C(item) is the sysctl, unit, cgroup, process or file. C(setting) is C(value), C(file), C(live), a systemd property,
      or what the host lacks. Each row also has C(desired), C(live), C(status), and sometimes C(note).
  type: list
  elements: dict
  sample: [{area: sysctl, item: vm.swappiness, setting: value, desired: '10', live: '60', status: drift}]
summary:
  returned: when I(policy) is true and the inventory is valid
  description: Rows per status.
  type: dict
  sample: {ok: 7, drift: 1, missing: 0, unsupported: 0}
drift:
  returned: when I(policy) is true and the inventory is valid
  description: Rows that are C(drift) or C(missing).
  type: int
compliant:
  returned: when I(policy) is true and the inventory is valid
  description: No row is C(drift) or C(missing).
  type: bool
guards_fired:
  returned: when I(policy) is true and the inventory is valid
  description: Guards the hardening would refuse with today (forced for the plan only).
  type: list
  elements: str
profile:
  returned: when I(policy) is true and the inventory is valid
  description: The profile audited against.
  type: str
killer:
  returned: when I(policy) is true and the inventory is valid
  description: The early OOM killer the policy picks on this host (C(none) when not managed), null when the host cannot run one.
  type: str
cgroup_mode:
  returned: when I(policy) is true and the inventory is valid
  description: The host's cgroup layout.
  type: str
posture:
  description: The host's OOM posture (the C(oom_posture) fact of C(oomguard.linux.oom_facts)).
  returned: when I(posture) is true and it could be read
  type: dict
slab:
  description: The result of C(oomguard.linux.slab_leak).
  returned: when I(slab) is given and it could be read
  type: dict
events:
  description: The result of C(oomguard.linux.oom_events) (C(events), C(kill_loops), C(early_kills), C(summary), C(notes)).
  returned: when I(events) is given and they could be read
  type: dict
errors:
  description: Per part (C(policy), C(posture), C(slab), C(events)) that failed, its message.
  returned: always
  type: dict
'''

import os
import platform

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oomguard.linux.plugins.module_utils import audit, ledger as ledger_mod, procfs
from ansible_collections.oomguard.linux.plugins.module_utils._engine import Labels

PATH_OPTIONS = ('sysctl_file', 'compaction_file', 'systemd_dir', 'state_dir')


def main():
    module = AnsibleModule(
        argument_spec=dict(
            profile=dict(type='str', default='none'),
            sysctl=dict(type='dict', default={}),
            thp=dict(type='dict', default={}),
            services=dict(type='dict', default={}),
            cgroups=dict(type='dict', default={}),
            processes=dict(type='list', elements='raw', default=[]),
            protect_defaults=dict(type='bool', default=True),
            early_oom=dict(type='dict', default={}),
            force=dict(type='list', elements='str', default=[]),
            policy=dict(type='bool', default=True),
            posture=dict(type='bool', default=False),
            slab=dict(type='dict'),
            events=dict(type='dict'),
            keep_going=dict(type='bool', default=False),
            fail_on_drift=dict(type='bool', default=False),
            sysctl_file=dict(type='path', default='/etc/sysctl.d/90-oomguard.conf'),
            compaction_file=dict(type='path', default='/etc/sysctl.d/90-oomguard-compaction.conf'),
            systemd_dir=dict(type='path', default='/etc/systemd/system'),
            state_dir=dict(type='path', default='/var/lib/oomguard'),
            host_label=dict(type='str'),
            variable_labels=dict(type='dict', default={}),
        ),
        supports_check_mode=True,
    )
    params = dict(module.params)
    params['paths'] = dict((k, params[k]) for k in PATH_OPTIONS)
    labels = Labels(params['host_label'] or platform.node(), params['variable_labels'])
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
        drifting = ['%s %s' % (r['item'], r['setting']) for r in result['settings'] if r['status'] in ('drift', 'missing')]
        module.fail_json(msg=labels.msg('%d setting(s) drift from the policy: %s' % (len(drifting), ', '.join(drifting[:20]))),
                         changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
