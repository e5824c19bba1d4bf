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
from ansible_collections.oomguard.linux.plugins.module_utils._restore import restore

PATH_OPTIONS = ('state_dir',)


def argument_spec():
    return dict(**_argspec.path_spec(*PATH_OPTIONS), **_argspec.host_label_spec())


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params, labels = _argspec.params_and_labels(module.params, PATH_OPTIONS)
    run_module(module, restore, params, labels, 'cannot restore')


if __name__ == '__main__':
    main()
