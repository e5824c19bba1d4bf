# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options the modules share, as one argument spec, and how a module reads them.

Each function returns a fresh dict for a module to merge into its own
argument spec.  Where a doc fragment (plugins/doc_fragments) documents the
options, it states the same types and defaults:

  change_spec()      force, validate_only, systemd_dir, state_dir   oomguard.linux.change
  labels_spec()      host_label, variable_labels                    oomguard.linux.labels
  host_label_spec()  host_label                                     oomguard.linux.labels.host
  path_spec(names)   the path options named, with their defaults    state_dir: oomguard.linux.change.ledger
  force_spec()       force

oom_audit takes force and the path options with its own documentation (they
are the harden role's variables there), and kernel_tunables and oom_audit
document sysctl_file and compaction_file themselves.

params_and_labels() turns an AnsibleModule's params into what the concerns
take: the params with 'paths', and the Labels of the messages.
"""

import platform

from ansible_collections.oomguard.linux.plugins.module_utils._engine import Labels

# The path options and their defaults, once: the modules' specs and the
# concerns' DEFAULT_PATHS are made from this table.
PATH_DEFAULTS = {
    'systemd_dir': '/etc/systemd/system',
    'state_dir': '/var/lib/oomguard',
    'sysctl_file': '/etc/sysctl.d/90-oomguard.conf',
    'compaction_file': '/etc/sysctl.d/90-oomguard-compaction.conf',
    'earlyoom_defaults': '/etc/default/earlyoom',
    'oomd_conf_dir': '/etc/systemd/oomd.conf.d',
    'monitor_lib_dir': '/usr/local/lib/oomguard-monitor',
    'cron_dir': '/etc/cron.d',
}


def default_paths(*names):
    """{name: default} of the path options named (a concern's DEFAULT_PATHS)."""
    return dict((name, PATH_DEFAULTS[name]) for name in names)


def path_spec(*names):
    """The named path options, each with its default."""
    return {name: {'type': 'path', 'default': PATH_DEFAULTS[name]} for name in names}


def force_spec():
    return {'force': {'type': 'list', 'elements': 'str', 'default': []}}


def change_spec():
    """What every module that changes a host takes: the guards to force, the preflight, where things go."""
    return dict(force_spec(), validate_only={'type': 'bool', 'default': False},
                **path_spec('systemd_dir', 'state_dir'))


def harden_spec():
    """The harden role's inventory, as oom_harden applies it and oom_audit compares it."""
    return {
        'profile': {'type': 'str', 'default': 'none'},
        'sysctl': {'type': 'dict', 'default': {}},
        'thp': {'type': 'dict', 'default': {}},
        'services': {'type': 'dict', 'default': {}},
        'cgroups': {'type': 'dict', 'default': {}},
        'processes': {'type': 'list', 'elements': 'raw', 'default': []},
        'protect_defaults': {'type': 'bool', 'default': True},
        'early_oom': {'type': 'dict', 'default': {}},
    }


def host_label_spec():
    return {'host_label': {'type': 'str'}}


def labels_spec():
    """How messages name the host and the options, and the inventory's oomguard_* names to check."""
    return dict(host_label_spec(), variable_labels={'type': 'dict', 'default': {}},
                inventory_variables={'type': 'list', 'elements': 'str', 'default': []})


def host_name(params):
    """The host as messages name it: host_label, or this machine's node name."""
    return params.get('host_label') or platform.node()


def params_and_labels(params, path_options=()):
    """(params, labels) for a concern, from an AnsibleModule's params.

    params['paths'] holds the path options named; the labels name the host
    by host_name() and the options by their inventory variables, unless
    variable_labels maps them otherwise.  The params given are not changed.
    """
    params = dict(params)
    params['paths'] = {name: params[name] for name in path_options}
    return params, Labels(host_name(params), params.get('variable_labels'))
