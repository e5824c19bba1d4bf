#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: early_oom
short_description: Configure, enable and start a userspace early OOM killer (earlyoom or systemd-oomd)
version_added: 0.1.0
description:
  - The kernel's OOM killer acts only when reclaim has failed, which can be minutes of thrashing on a host
    with page cache in play. An early killer acts first, on available memory (earlyoom) or on memory
    pressure (systemd-oomd, PSI).
  - C(killer=auto) picks systemd-oomd on cgroup v2 hosts with PSI and earlyoom elsewhere (cgroup v1 or
    hybrid, no PSI), and earlyoom when O(early_oom) has a C(prefer) list, which systemd-oomd cannot honour.
  - "earlyoom: C(/etc/default/earlyoom) (O(earlyoom_defaults)) gets C(EARLYOOM_ARGS) (C(-m), C(-s), C(-r), C(--prefer),
    C(--avoid), C(--dryrun)); patterns match the process name; the avoid list always holds init, systemd,
    its journal/logind/udevd, sshd, dbus-daemon and earlyoom. A drop-in gives C(earlyoom.service)
    C(OOMScoreAdjust=-900)."
  - "systemd-oomd: C(/etc/systemd/oomd.conf.d/90-oomguard-early-oom.conf) (O(oomd_conf_dir)) with the pressure
    and swap limits, C(ManagedOOMMemoryPressure=kill) on the listed slices, C(ManagedOOMPreference=avoid) on the
    units of the avoid list, and C(--dry-run) through a drop-in when asked."
  - The unit is enabled with the links its C([Install]) section names (as C(systemctl enable) would) and
    started, or restarted when its files changed; it must be active afterwards. A killer this module
    started before and that is no longer chosen is stopped and its links removed (RV(units_stopped)). Kills end
    up in the journal of the unit.
  - Every file and link is recorded in the ledger first; M(oomguard.linux.restore) puts them back and
    stops the unit it started.
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: Predicts the files, links and the unit action, and changes nothing.
  diff_mode:
    support: full
    description: Shows every file before and after.
  platform:
    platforms: posix
    support: full
    description: Linux with systemd.
options:
  early_oom:
    description:
      - The settings, checked by the module so that a wrong one names the host and the inventory variable.
      - C(killer) - V(auto), V(earlyoom), V(systemd-oomd) or V(none) (default V(none) - nothing is deployed,
        and a killer this module started before is stopped).
      - C(dry_run) - V(true) to log instead of killing.
      - C(prefer), C(avoid) - lists of regular expressions matched against the whole process name (earlyoom);
        with systemd-oomd, C(avoid) lists units and C(prefer) is refused.
      - C(mem_min_percent) (1..50, default V(10)), C(mem_kill_percent) (1..50, below C(mem_min_percent)),
        C(swap_min_percent) (0..100), C(report_interval_s) (0..86400, default V(60)) - earlyoom's C(-m), C(-s),
        C(-r).
      - C(memory_pressure_limit_percent) (1..99, default V(60)), C(memory_pressure_duration_s) (1..3600, default
        V(30)), C(swap_used_limit_percent) (1..100, default V(90)), C(slices) (default V([system.slice])) -
        systemd-oomd.
    type: dict
    default: {}
  earlyoom_defaults:
    description: earlyoom's environment file.
    type: path
    default: /etc/default/earlyoom
  oomd_conf_dir:
    description: systemd-oomd's drop-in directory.
    type: path
    default: /etc/systemd/oomd.conf.d
extends_documentation_fragment:
  - oomguard.linux.change
  - oomguard.linux.labels
notes:
  - The package must be installed; the C(oomguard.linux.early_oom) role installs RV(packages), named for the host's
    distribution family (Debian, RedHat with EPEL for earlyoom, Suse). With O(validate_only=true) (and in check mode)
    a missing package is reported in RV(package_missing) instead of refused, so that the role can install it next.
  - V(systemd-oomd) needs systemd 248 or later (C(ManagedOOMPreference=), C(DefaultMemoryPressureDurationSec=));
    on older systemd it is refused and V(auto) picks V(earlyoom).
seealso:
  - module: oomguard.linux.oom_units
  - module: oomguard.linux.restore
'''

EXAMPLES = r'''
- name: earlyoom, killing the batch jobs first and never the database
  oomguard.linux.early_oom:
    early_oom:
      killer: earlyoom
      mem_min_percent: 8
      prefer: ['batch-.*', 'ffmpeg']
      avoid: ['postgres']

- name: Whatever suits the host, in dry-run mode first
  oomguard.linux.early_oom:
    early_oom:
      killer: auto
      dry_run: true
'''

RETURN = r'''
killer:
  description: The killer chosen (V(auto) resolved).
  returned: always
  type: str
  sample: earlyoom
unit:
  description: Its unit, null with V(none).
  returned: always
  type: str
unit_action:
  description: C(start), C(restart) or null.
  returned: always
  type: str
units_stopped:
  description: Killers this module had started and that are no longer chosen.
  returned: always
  type: list
  elements: str
files:
  description: Files and links created, updated or removed.
  returned: always
  type: list
  elements: dict
settings:
  description: Every setting after defaults.
  returned: always
  type: dict
earlyoom_args:
  description: earlyoom's command line arguments, when earlyoom is chosen.
  returned: always
  type: list
  elements: str
cgroup_mode:
  description: The host's cgroup layout.
  returned: always
  type: str
package:
  description: The chosen killer (V(earlyoom) or V(systemd-oomd)), null with V(none).
  returned: always
  type: str
packages:
  description: The packages that hold it on this host's distribution family; null when the family is not known.
  returned: always
  type: list
  elements: str
  sample: [earlyoom]
package_repo:
  description: The repository those packages need beyond the distribution's own (V(EPEL) for earlyoom on RedHat).
  returned: always
  type: str
package_manager:
  description: The host's package manager (V(apt), V(dnf), V(yum), V(zypper)), null when none was found.
  returned: always
  type: str
os_family:
  description: The host's distribution family from C(/etc/os-release), as Ansible names it (V(Debian), V(RedHat)).
  returned: always
  type: str
systemd_version:
  description: The host's systemd release; null without systemd.
  returned: always
  type: int
package_missing:
  description: Whether that package is not installed (only in check mode and with O(validate_only=true)); see the notes.
  returned: always
  type: bool
psi:
  description: Whether the kernel has PSI (C(/proc/pressure/memory)).
  returned: always
  type: bool
forced:
  description: Guards overridden by O(force).
  returned: always
  type: list
  elements: dict
ledger:
  description: The path of the ledger, in O(state_dir).
  returned: always
  type: str
problems:
  description: On failure, every refused value, each with its C(id), C(key) and C(message).
  returned: failure
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils._engine import run_module
from ansible_collections.oomguard.linux.plugins.module_utils.early_oom import apply

PATH_OPTIONS = ('systemd_dir', 'earlyoom_defaults', 'oomd_conf_dir', 'state_dir')


def argument_spec():
    return dict(
        early_oom=dict(type='dict', default={}),
        **_argspec.path_spec('earlyoom_defaults', 'oomd_conf_dir'),
        **_argspec.change_spec(),
        **_argspec.labels_spec(),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params, labels = _argspec.params_and_labels(module.params, PATH_OPTIONS)
    run_module(module, apply, params, labels, 'cannot set up the early OOM killer')


if __name__ == '__main__':
    main()
