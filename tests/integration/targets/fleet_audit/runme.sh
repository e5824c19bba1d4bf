#!/usr/bin/env bash
# The fleet audit (playbooks/audit.yml) over 100 local-connection aliases of this
# machine (50 without a policy, 50 with the default profile) and one host whose SSH port refuses: one report with 100 hosts audited and
# the unreachable one listed; every textfile parses as Prometheus exposition format.
# The HTML is opened in headless chromium (check_browser.py). Then the report of 10,000
# generated host results (check_scale.py): chromium must have its first page of rows in the
# DOM within 5 s, and sort, filter and page over all 10,000.
# Read-only on this machine; the report goes to a temporary directory.
set -eux
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python - "$work/inventory.yml" <<'PY'
import sys
lines = ['all:', '  hosts:']
for index in range(1, 101):
    lines += ['    fleet-%03d:' % index, '      ansible_connection: local',
              '      ansible_python_interpreter: "{{ ansible_playbook_python }}"']
    # The second half has a policy (the default profile); the first half has none.
    if index > 50:
        lines += ['      oomguard_profile: default']
lines += ['    refused-ssh:', '      ansible_host: 127.0.0.1', '      ansible_port: 1', '      ansible_connection: ssh']
open(sys.argv[1], 'w').write('\n'.join(lines) + '\n')
PY
ANSIBLE_FORKS=10 ansible-playbook -i "$work/inventory.yml" oomguard.linux.audit \
    -e oomguard_report_dir="$work/report" -e oomguard_audit_print=false "$@"
python check_report.py "$work/report"
python check_browser.py "$work/report"
python check_scale.py "$work/scale"
