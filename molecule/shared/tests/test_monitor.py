# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The monitor role on a real VM, with Debian's own node_exporter and Prometheus (loopback only).

Three real OOM kills of known causes (a unit's own limit, its slice's limit, the whole host), the
journal rotated in between: oomguard_oom_kills_total moves by exactly one under each cause, as
the textfile says and as Prometheus scraped it; a kill alert of files/prometheus fires in
Prometheus; the counts stay what they were after the collector's timer is restarted and after the
VM is powered off and booted again. Runs last (conftest orders it): it reboots the VM.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
RULES = os.path.join(COLLECTION, 'files', 'prometheus', 'oomguard.rules.yml')
VM_PY = os.path.join(COLLECTION, 'molecule', 'shared', 'vm.py')
TEXTFILE = '/var/lib/prometheus/node-exporter/oomguard.prom'
KILL_ALERT = 'OomguardKernelOOMKill'

PROMETHEUS_YML = """global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - /etc/prometheus/oomguard.rules.yml
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:9100']
"""
SLICE = """[Slice]
MemoryMax=64M
MemorySwapMax=0
"""
MEMCG = {'unit': 'oomguard-mon-memcg', 'properties': ['MemoryMax=64M', 'MemorySwapMax=0'], 'cause': 'memcg_limit'}
PARENT = {'unit': 'oomguard-mon-parent', 'properties': ['Slice=oomguard-mon.slice'], 'cause': 'parent_memcg_limit'}
HOST = {'unit': 'oomguard-mon-host', 'properties': ['OOMScoreAdjust=1000'], 'cause': 'host'}


def _put(host, path, text):
    host.run_expect([0], "mkdir -p %s && cat > %s <<'OOMGUARD_EOF'\n%sOOMGUARD_EOF" % (
        os.path.dirname(path), path, text))


def _counts(host):
    """{cause: n} and the kernel total from the textfile the collector wrote."""
    text = host.file(TEXTFILE).content_string
    found = re.findall(r'^oomguard_oom_kills_total\{cause="([a-z_]+)"\} (\d+)$', text, re.M)
    causes = dict((cause, int(count)) for cause, count in found)
    total = int(re.search(r'^oomguard_kernel_oom_kills_total (\d+)$', text, re.M).group(1))
    return causes, total


def _collect(host):
    host.run_expect([0], 'systemctl start oomguard-monitor.service')


def _query(host, path):
    out = host.run('curl -fsS --max-time 10 "http://127.0.0.1:9090%s"' % path)
    return json.loads(out.stdout) if out.rc == 0 else None


@pytest.fixture(scope='module')
def prometheus(host, scenario):
    if not scenario.get('monitor'):
        pytest.skip('the monitor is proven on the debian13 scenario')
    _put(host, '/etc/default/prometheus-node-exporter',
         'ARGS="--web.listen-address=127.0.0.1:9100 --collector.textfile.directory=/var/lib/prometheus/node-exporter"\n')
    _put(host, '/etc/default/prometheus', 'ARGS="--web.listen-address=127.0.0.1:9090"\n')
    _put(host, '/etc/prometheus/prometheus.yml', PROMETHEUS_YML)
    with open(RULES) as handle:
        _put(host, '/etc/prometheus/oomguard.rules.yml', handle.read())
    _put(host, '/run/systemd/system/oomguard-mon.slice', SLICE)
    host.run_expect([0], 'systemctl daemon-reload')
    host.run_expect([0], 'systemctl restart prometheus-node-exporter.service prometheus.service')
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        up = _query(host, '/api/v1/query?query=up%7Bjob%3D%22node%22%7D')
        if up and up['data']['result'] and up['data']['result'][0]['value'][1] == '1':
            return host
        time.sleep(5)
    raise AssertionError('Prometheus did not scrape node_exporter in 180 s: %s' % host.run(
        'journalctl -u prometheus -n 20 --no-pager').stdout)


def test_node_exporter_serves_the_collectors_textfile_on_loopback_only(prometheus):
    host = prometheus
    _collect(host)
    metrics = host.check_output('curl -fsS --max-time 10 http://127.0.0.1:9100/metrics')
    assert re.search(r'^oomguard_risk_score \d+$', metrics, re.M), metrics[-2000:]
    assert 'node_textfile_scrape_error 0' in metrics
    # The role gave the collector the scenario's hardening policy, and the hardened VM keeps to it.
    assert 'oomguard_drift_settings{status="drift"} 0' in metrics and \
        'oomguard_drift_settings{status="missing"} 0' in metrics, metrics[-3000:]
    listening = host.check_output('ss -Hltn')
    for port in ('9090', '9100'):
        assert re.search(r'127\.0\.0\.1:%s\b' % port, listening) and not re.search(
            r'(\*|0\.0\.0\.0|\[::\]):%s\b' % port, listening), listening


def test_three_kills_are_counted_exactly_across_a_restart_and_a_reboot(prometheus, run_hog):
    host = prometheus
    _collect(host)
    before, total_before = _counts(host)
    for number, case in enumerate((MEMCG, PARENT, HOST)):
        assert run_hog(host, case) == 'oom-kill', case['unit']
        if number == 0:
            # The journal's files rotated between two kills: the count does not depend on them.
            host.run_expect([0], 'journalctl --rotate')
        _collect(host)
    after, total_after = _counts(host)
    delta = dict((c, after[c] - before.get(c, 0)) for c in after if after[c] != before.get(c, 0))
    assert delta == {'memcg_limit': 1, 'parent_memcg_limit': 1, 'host': 1}, (before, after)
    assert total_after - total_before == 3
    vmstat = int(re.search(r'^oom_kill (\d+)$', host.file('/proc/vmstat').content_string, re.M).group(1))
    units = host.file(TEXTFILE).content_string
    for case in (MEMCG, PARENT, HOST):
        assert 'oomguard_oom_kills_by_unit_total{unit="%s.service"} 1' % case['unit'] in units, units
    # Prometheus scraped the same counts, and its kill alert fires.
    deadline = time.monotonic() + 180
    scraped = alerts = None
    while time.monotonic() < deadline:
        scraped = _query(host, '/api/v1/query?query=oomguard_oom_kills_total')
        alerts = _query(host, '/api/v1/alerts')
        seen = dict((r['metric']['cause'], int(float(r['value'][1]))) for r in (scraped or {}).get('data', {}).get(
            'result', []))
        firing = [a for a in (alerts or {}).get('data', {}).get('alerts', [])
                  if a['labels'].get('alertname') == KILL_ALERT and a['state'] == 'firing']
        if seen == after and set(a['labels'].get('cause') for a in firing) >= set(delta):
            break
        time.sleep(5)
    else:
        raise AssertionError('Prometheus: %s; alerts: %s; textfile: %s' % (scraped, alerts, after))
    # The collector's timer restarted: nothing is counted twice.
    host.run_expect([0], 'systemctl restart oomguard-monitor.timer')
    _collect(host)
    assert _counts(host) == (after, total_after)
    # Powered off and booted again: the kernel's count starts at 0 and the collector's goes on.
    boot_id = host.file('/proc/sys/kernel/random/boot_id').content_string.strip()
    host.run_expect([0], 'systemd-run --quiet --on-active=1 --timer-property=AccuracySec=100ms systemctl poweroff')
    name = host.backend.get_hostname()
    run_root = os.environ.get('OOMGUARD_VM_RUN') or os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'vms')
    subprocess.run([sys.executable, VM_PY, 'restart', '--run-root',
                    os.path.join(run_root, os.environ.get('MOLECULE_SCENARIO_NAME', 'default')), name], check=True)
    assert host.file('/proc/sys/kernel/random/boot_id').content_string.strip() != boot_id
    assert int(re.search(r'^oom_kill (\d+)$', host.file('/proc/vmstat').content_string, re.M).group(1)) == 0
    _collect(host)
    assert _counts(host) == (after, total_after), 'before the reboot: %s (kernel %d)' % (after, vmstat)
