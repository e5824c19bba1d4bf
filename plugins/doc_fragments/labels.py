# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How messages name the host and the options (labels_spec() and host_label_spec() in module_utils/_argspec.py)."""


class ModuleDocFragment:

    # host_label and variable_labels: the modules whose messages name inventory variables.
    DOCUMENTATION = r'''
options:
  host_label:
    description: How messages name the host (the roles and playbooks pass C(inventory_hostname)). Defaults to the node name.
    type: str
  variable_labels:
    description:
      - How messages name the options. By default an option is named by its inventory variable, the one the roles
        pass in it - option C(<name>) as C(oomguard_<name>), its key C(<key>) as C(oomguard_<name>['<key>']) - and
        the compaction keys as the thp role takes them, C(oomguard_thp['compaction_<key>']).
      - "A map here overrides that name per option: V({sysctl: host_sysctl}) names the key
        C(vm.swappiness) of the sysctls C(host_sysctl['vm.swappiness']). The options not mapped keep their default."
    type: dict
    default: {}
  inventory_variables:
    description:
      - The names of the C(oomguard_*) variables the host's inventory defines (the roles pass
        C(query('ansible.builtin.varnames', '^oomguard_'))). A name the collection does not know is refused with the
        nearest known one, together with every other problem of the run, so that a typo such as C(oomguard_sysctll)
        does not leave a policy silently unapplied.
    type: list
    elements: str
    default: []
'''

    # host_label alone: the modules without option labels.
    HOST = r'''
options:
  host_label:
    description: How messages name the host (the roles and playbooks pass C(inventory_hostname)). Defaults to the node name.
    type: str
'''
