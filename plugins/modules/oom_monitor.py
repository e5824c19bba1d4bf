#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: oom_monitor
short_description: Install the per-host OOM metrics collector for node_exporter's textfile collector
version_added: 0.1.0
description:
  - Installs a small collector that writes the host's OOM metrics (risk score and level, findings, OOM kills by
    cause and by unit, the OOM domains' headroom and forecast time to OOM) into C(oomguard.prom) in
    node_exporter's textfile directory, and a systemd timer that runs it (a cron file where systemd is not PID 1).
    The metrics are listed in the collection's C(docs/monitoring.md).
  - The collector is the collection's own module_utils, written from the sources this module runs with (the
    modules C(monitor.py) imports, transitively) into O(monitor_lib_dir), with an entry script run by the
    interpreter this module runs with. It needs nothing but Python's standard library.
  - "The kill counter never misses a kill: it follows the kernel's own count (C(/proc/vmstat) C(oom_kill)), and the
    kernel's reports since the last run only say why; a kill no report explains is counted under
    C(cause=\"unattributed\"). Its state (the counts, carried across reboots, and the log cursor) is
    C(monitor-state.json) in O(state_dir)."
  - The unit files, links, cron file and the collector's files are recorded in the ledger first, and so are the
    textfile and the state file, which the collector writes; M(oomguard.linux.restore) removes them all and stops
    the timer.
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: Predicts the files and the unit actions, and changes nothing.
  diff_mode:
    support: full
    description: Shows the unit and cron files before and after; the collector's sources as their size and sha256.
  platform:
    platforms: posix
    support: full
    description: Linux, with systemd or cron.
options:
  monitor:
    description:
      - The settings, checked by the module so that a wrong one names the host and the inventory variable.
      - C(textfile_dir) - node_exporter's C(--collector.textfile.directory), an absolute path (required). The
        C(oomguard.linux.monitor) role defaults it to the distribution package's directory.
      - C(interval_s) - how often the collector runs, 15..3600 s (default V(60)). cron runs it every
        C(interval_s) rounded up to whole minutes.
    type: dict
    default: {}
  policy:
    description:
      - The host's hardening policy, as the C(oomguard.linux.harden) role's variables without their C(oomguard_)
        prefix (C(profile), C(sysctl), C(thp), C(services), C(cgroups), C(processes), C(protect_defaults),
        C(early_oom)). It is written to C(monitor-policy.json) in O(state_dir), and every run of the collector
        compares the live host with it the way M(oomguard.linux.oom_audit) does, for C(oomguard_drift_settings).
      - Empty (the default) - no drift metric.
    type: dict
    default: {}
  monitor_lib_dir:
    description: Where the collector's files go.
    type: path
    default: /usr/local/lib/oomguard-monitor
  cron_dir:
    description: The cron directory for hosts without systemd.
    type: path
    default: /etc/cron.d
extends_documentation_fragment:
  - oomguard.linux.change
  - oomguard.linux.labels
notes:
  - node_exporter must run with its textfile collector reading O(monitor[textfile_dir]); the role does not install
    it. Debian's C(prometheus-node-exporter) reads C(/var/lib/prometheus/node-exporter).
  - The timer unit's C(MemoryMax=128M) is written where systemd is 231 or later.
seealso:
  - module: oomguard.linux.oom_facts
  - module: oomguard.linux.oom_events
  - module: oomguard.linux.restore
'''

EXAMPLES = r'''
- name: Install the OOM metrics collector for Debian's node_exporter
  oomguard.linux.oom_monitor:
    monitor:
      textfile_dir: /var/lib/prometheus/node-exporter
      interval_s: 60

- name: See what it would do
  oomguard.linux.oom_monitor:
    monitor:
      textfile_dir: /var/lib/node_exporter/textfile_collector
  check_mode: true
  diff: true
'''

RETURN = r'''
changed:
  description: Whether a file changed or the timer was (re)started.
  returned: always
  type: bool
files:
  description: The files written or removed, each with C(path) and C(action) (V(create), V(update), V(remove)).
  returned: always
  type: list
  elements: dict
scheduler:
  description: What runs the collector, V(systemd timer) or V(cron).
  returned: success
  type: str
interval_s:
  description: How often it runs, in seconds.
  returned: success
  type: int
textfile:
  description: The textfile the collector writes.
  returned: success
  type: str
  sample: /var/lib/prometheus/node-exporter/oomguard.prom
state_file:
  description: The collector's state file.
  returned: success
  type: str
command:
  description: The collector's command line.
  returned: success
  type: str
modules:
  description: The collection's module_utils the collector is made of.
  returned: success
  type: list
  elements: str
forced:
  description: Guards overridden by O(force).
  returned: always
  type: list
  elements: dict
ledger:
  description: The path of the ledger, in O(state_dir).
  returned: success
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
from ansible_collections.oomguard.linux.plugins.module_utils.monitor_apply import PATH_OPTIONS, apply


def argument_spec():
    return dict(
        monitor=dict(type='dict', default={}),
        policy=dict(type='dict', default={}),
        **_argspec.path_spec('monitor_lib_dir', 'cron_dir'),
        **_argspec.change_spec(),
        **_argspec.labels_spec(),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params, labels = _argspec.params_and_labels(module.params, PATH_OPTIONS)
    run_module(module, apply, params, labels, 'cannot install the OOM metrics collector')


if __name__ == '__main__':
    main()
