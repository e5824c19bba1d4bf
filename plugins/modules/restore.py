#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: restore
short_description: Put back every value and file the collection changed on a host
version_added: 0.1.0
description:
  - Reads the ledger that the collection's changing modules (M(oomguard.linux.kernel_tunables),
    M(oomguard.linux.oom_units), M(oomguard.linux.early_oom)) write in O(state_dir) before their first change,
    and puts back what it recorded. Files get back their content, mode and owner (or are removed when they did
    not exist), directories the collection created are removed when empty, units it started are stopped, and
    the live values are written back and read back.
  - The ledger is deleted afterwards, so the next hardening run records the originals afresh.
  - Without a ledger there is nothing to do and nothing changes.
  - Only a ledger the collection wrote is used. The ledger and every directory above it up to C(/) must be owned by
    root (or by the user running the module) and not group- or world-writable (a sticky root-owned directory like
    C(/tmp) may be above O(state_dir)); the ledger must be a regular file (not a symlink, FIFO or device) of at
    most 4 MiB holding the JSON the collection writes. Otherwise the module fails, naming the ledger, what is
    wrong and what is allowed, and changes nothing.
  - Every entry must name what the collection writes, or nothing is restored and all such entries are listed
    together. Sysctls are those it manages (C(vm.*) but the triggers, C(kernel.panic), C(kernel.panic_on_oops);
    never for example C(kernel.core_pattern)), the THP files, the cgroup files of the unit settings under
    C(/sys/fs/cgroup) and C(/proc/<pid>/oom_score_adj); files are O(sysctl_file), O(compaction_file),
    O(earlyoom_defaults), the collection's file in O(oomd_conf_dir) and, in O(systemd_dir), its drop-ins, units and
    the early killers' unit links. Paths are absolute and normal (no C(..)).
  - A process's oom_score_adj is put back only when the process is still the one recorded (its start time in
    C(/proc/<pid>/stat) is the one in the ledger); a process that is gone, a PID that is another process now, and
    an entry without a start time are skipped with a note (RV(skipped)), not an error.
  - Give the path options the values the changing modules were given.
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: Lists what would be put back and changes nothing.
  diff_mode:
    support: full
    description: Shows the live values and files before and after.
  platform:
    platforms: posix
    support: full
    description: Linux only.
options:
  sysctl_file:
    description: The sysctl.d file of scope V(sysctl) that M(oomguard.linux.kernel_tunables) was given.
    type: path
    default: /etc/sysctl.d/90-oomguard.conf
  compaction_file:
    description: The sysctl.d file of scope V(compaction) that M(oomguard.linux.kernel_tunables) was given.
    type: path
    default: /etc/sysctl.d/90-oomguard-compaction.conf
  systemd_dir:
    description: Where the changing modules put their units, drop-ins and unit links.
    type: path
    default: /etc/systemd/system
  earlyoom_defaults:
    description: earlyoom's environment file that M(oomguard.linux.early_oom) was given.
    type: path
    default: /etc/default/earlyoom
  oomd_conf_dir:
    description: systemd-oomd's drop-in directory that M(oomguard.linux.early_oom) was given.
    type: path
    default: /etc/systemd/oomd.conf.d
  monitor_lib_dir:
    description: Where M(oomguard.linux.oom_monitor) put the collector's files.
    type: path
    default: /usr/local/lib/oomguard-monitor
  cron_dir:
    description: Where M(oomguard.linux.oom_monitor) put its cron file (hosts without systemd).
    type: path
    default: /etc/cron.d
extends_documentation_fragment:
  - oomguard.linux.change.ledger
  - oomguard.linux.labels.host
seealso:
  - module: oomguard.linux.kernel_tunables
'''

EXAMPLES = r'''
- name: Put back what the collection changed
  oomguard.linux.restore:
'''

RETURN = r'''
changes:
  description: The live values written back, in order.
  returned: always
  type: list
  elements: dict
  sample: [{key: vm.panic_on_oom, kind: sysctl, path: /proc/sys/vm/panic_on_oom, before: '1', after: '0',
            cause: restore}]
files:
  description: Files and directories put back or removed.
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/sysctl.d/90-oomguard.conf, action: remove}]
skipped:
  description: Processes whose oom_score_adj was not put back, each with the reason (gone, another process now, or
    no start time in the ledger to tell).
  returned: when a ledger exists
  type: list
  elements: dict
  sample: [{key: /proc/812/oom_score_adj, path: /proc/812/oom_score_adj,
            note: process 812 is gone; its oom_score_adj 0 is not put back}]
units_stopped:
  description: Units the collection had started and that were stopped.
  returned: when a ledger exists
  type: list
  elements: str
ledger:
  description: The path of the ledger, in O(state_dir).
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils._engine import run_module
from ansible_collections.oomguard.linux.plugins.module_utils._restore import TARGET_PATH_OPTIONS, restore

# state_dir: where the ledger is; the others: what its entries may name.
PATH_OPTIONS = ('state_dir',) + TARGET_PATH_OPTIONS


def argument_spec():
    return dict(**_argspec.path_spec(*PATH_OPTIONS), **_argspec.host_label_spec())


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params, labels = _argspec.params_and_labels(module.params, PATH_OPTIONS)
    run_module(module, restore, params, labels, 'cannot restore')


if __name__ == '__main__':
    main()
