#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name (plugins/action/fleet_report.py),
# on the controller; this file holds its documentation.


DOCUMENTATION = r'''
---
module: fleet_report
short_description: Write the fleet OOM audit report - JSON, self-contained HTML, Prometheus textfiles - on the controller
version_added: 0.1.0
description:
  - Reads, for each host of O(hosts), the result the fleet audit registered in O(result_var)
    (one M(oomguard.linux.oom_audit) call with the policy, the posture, the slab verdict and the OOM events), and writes
    on the controller, under O(dest)
  - C(oom-fleet-report.json), one document with a summary (hosts by status and by risk level, findings by severity,
    hosts per finding, hosts that drift, hosts flagged for slab, OOM kills by cause) and every host, riskiest first,
    with its basics from the posture (kernel release, RAM total and available, swap, cgroup mode, memory PSI, the
    likeliest OOM victim);
  - C(oom-fleet-report.html), the same as one self-contained page (no network asset), hosts sortable and filterable
    and shown a page at a time (every host is in the page; it stays usable at 10,000 hosts), with charts of hosts by
    risk, kills by cause and findings;
  - C(textfiles/oomguard-<host>.prom), one Prometheus textfile per host for node_exporter's textfile collector (risk score,
    findings by severity, drift count, slab, OOM kills by cause), every metric labelled with C(host). A host name of
    lower-case letters, digits, C(.), C(_) and C(-) is the file name as it is; any other name keeps those characters and
    gets C(~) and a hash of the exact name, so two hosts never share a file. Nothing else in the directory is touched.
  - A host that was unreachable, whose task failed, or that has no result is listed with the reason; the others are
    reported all the same. The work is one pass over the hosts.
  - Any registered result is read field by field; a host whose result is not what M(oomguard.linux.oom_audit) returns
    (a wrong type, a missing key, a number that is not finite, an over-long text) is listed as C(broken) with each field
    and what was expected, and the rest of its result and the other hosts are reported as usual.
  - Runs on the controller only, whatever the task's host; use it with C(run_once).
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: In check mode nothing is written; RV(written) lists what would change.
  diff_mode:
    support: none
    description: No diff.
  action:
    support: full
    description: An action plugin; nothing runs on the managed hosts.
options:
  hosts:
    description: The inventory names of the audited hosts, in the order to list them before sorting.
    type: list
    elements: str
    required: true
  result_var:
    description: The variable each host registered the audit result in.
    type: str
    required: true
  dest:
    description: Absolute directory on the controller for the report; created when missing.
    type: path
    required: true
  formats:
    description: What to write.
    type: list
    elements: str
    choices: [json, html, prometheus]
    default: [json, html, prometheus]
  generated_at:
    description:
      - The time of the report (UTC, ISO 8601, C(YYYY-MM-DDTHH:MM:SSZ)); default now.
      - The Prometheus textfiles' C(oomguard_audit_timestamp_seconds) is this time too.
    type: str
seealso:
  - module: oomguard.linux.oom_audit
'''

EXAMPLES = r'''
- name: Write the fleet report
  oomguard.linux.fleet_report:
    hosts: "{{ ansible_play_hosts_all }}"
    result_var: __oomguard_fleet_audit
    dest: /srv/reports/oom
  run_once: true
  delegate_to: localhost
'''

RETURN = r'''
json:
  description: Path of the JSON report, null when not asked for.
  returned: always
  type: str
html:
  description: Path of the HTML report, null when not asked for.
  returned: always
  type: str
textfiles:
  description: Paths of the Prometheus textfiles.
  returned: always
  type: list
  elements: str
written:
  description: Files written because their content changed (in check mode, that would be written).
  returned: always
  type: list
  elements: str
summary:
  description:
    - The report's summary (as in the JSON report), and two keys of text to print.
  returned: always
  type: dict
  contains:
    hosts:
      description: How many hosts the report lists.
      type: int
    by_status:
      description: Hosts by status (C(ok), C(partial), C(broken), C(failed), C(unreachable), C(no_result)).
      type: dict
    by_risk_level:
      description: Hosts by OOM risk level.
      type: dict
    hosts_drifting:
      description: How many hosts have live values that differ from the inventory's policy.
      type: int
    hosts_incomplete:
      description: How many hosts lack files or units of their policy (never hardened, or removed since).
      type: int
    hosts_no_policy:
      description: How many audited hosts have no policy in the inventory, so nothing was compared.
      type: int
    text:
      description:
        - The summary as lines for people (counts in words, no Python values), ending with where the report is; print it
          with C(ansible.builtin.debug) as it is.
      type: list
      elements: str
      sample:
        - "3 hosts: 2 reachable, 1 unreachable"
        - "OOM risk: 2 hosts at medium risk"
        - "Findings: 4 medium, 2 low, 2 info (8 findings)"
    drift_text:
      description: One line naming the hosts that are off their policy (values differ, or files or units absent), and
        where the report is.
      type: str
      sample: "1 host drifts from the inventory's policy (web1); see /srv/reports/oom"
drifting_hosts:
  description: >-
    Names of the hosts that are off their policy - values that differ or files or units that are absent (the report's
    C(summary.hosts_drifting) and C(summary.hosts_incomplete)); what the drift gate of C(playbooks/audit.yml) fails on.
  returned: always
  type: list
  elements: str
hosts_not_audited:
  description:
    - Hosts without a result, with their status (C(unreachable), C(failed), C(no_result)) and why.
    - A C(broken) host is counted in RV(summary.by_status) and listed in the report, not here, since it did return a result.
  returned: always
  type: list
  elements: dict
'''
