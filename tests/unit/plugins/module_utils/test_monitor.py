# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""monitor (the collector): counting kills from the kernel's counter and its reports, the state file,
the textfile, and one whole run on this machine (read-only; the outputs go to tmp_path).

The reports are real: a Debian 12 VM boot with a memcg kill, a parent-memcg kill, a kill loop of ten,
a sysrq (manual) kill and a host-wide kill (tests/unit/fixtures/oom_reports/generated), and the
memory.oom.group kill of twelve from linux-mm (public/).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import ledger, monitor

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, '..', '..', 'fixtures', 'oom_reports')
VM_BOOT = os.path.abspath(os.path.join(CORPUS, 'generated', 'debian12-6.1-cgroupv2-mixed', 'dmesg.txt'))
EXPORT = os.path.abspath(os.path.join(CORPUS, 'journal-exports', 'derived-from-debian12-6.1-cgroupv2-mixed.export.txt.gz'))
GROUP = os.path.abspath(os.path.join(CORPUS, 'public', '5.0-next-memcg-oom-group-kills-init-panic-printk-caller-lkml.txt'))
BOOT_A = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'
BOOT_B = '11111111-2222-3333-4444-555555555555'


def _events(path):
    events, problem = monitor.this_boot_events([path])
    assert problem is None
    return events


@pytest.fixture(scope='module')
def vm_events():
    return _events(VM_BOOT)


def test_the_vm_boot_is_counted_by_cause_and_unit(vm_events):
    state = monitor.fresh_state()
    new = monitor.count_kills(state, BOOT_A, 14, vm_events)
    counted = dict((c, n) for c, n in new.items() if n)
    assert counted == {'memcg_limit': 11, 'parent_memcg_limit': 1, 'manual': 1, 'host': 1}
    assert state['kernel_total'] == 14 == sum(n for c, n in state['by_cause'].items() if c != 'early_killer')
    assert state['by_unit'] == {'oomgen-kill-loop.service': 10, 'oomgen-memcg-v2.service': 1,
                                'oomgen-parent-child.service': 1, 'oomgen-sysrq-target.service': 1,
                                'oomgen-host.service': 1}
    assert state['cursor_uptime_s'] == 292.463238
    # The next run, nothing new: nothing counted.
    assert sum(monitor.count_kills(state, BOOT_A, 14, vm_events).values()) == 0
    # The counter moved by one and no report says why (the ring buffer lost it): unattributed.
    new = monitor.count_kills(state, BOOT_A, 15, vm_events)
    assert dict((c, n) for c, n in new.items() if n) == {'unattributed': 1}
    assert state['by_unit']['unknown'] == 1 and state['kernel_total'] == 15


def test_runs_in_between_give_the_same_totals(vm_events):
    once = monitor.fresh_state()
    monitor.count_kills(once, BOOT_A, 14, vm_events)
    stepwise = monitor.fresh_state()
    for seen in (2, 7, 13, 14):
        # Each run sees the reports printed so far and the counter at that moment.
        monitor.count_kills(stepwise, BOOT_A, seen, vm_events[:seen])
    assert stepwise['by_cause'] == once['by_cause'] and stepwise['by_unit'] == once['by_unit']


def test_more_kills_than_reports_and_more_reports_than_kills(vm_events):
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, 16, vm_events)
    assert state['by_cause']['unattributed'] == 2 and state['kernel_total'] == 16
    # The counter is the truth: more reports than it moved means kills printed after it was
    # read; the oldest reports are counted and the next run counts the rest.
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, 2, vm_events)
    assert state['kernel_total'] == 2 and state['by_cause']['memcg_limit'] == 1
    assert state['by_cause']['parent_memcg_limit'] == 1 and state['cursor_uptime_s'] == vm_events[1]['uptime_s']
    once = monitor.fresh_state()
    monitor.count_kills(once, BOOT_A, 14, vm_events)
    monitor.count_kills(state, BOOT_A, 14, vm_events)
    assert state['by_cause'] == once['by_cause'] and state['by_unit'] == once['by_unit']


def test_a_reboot_carries_the_counts_and_reads_the_previous_boots_tail(vm_events):
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, 12, vm_events[:12])
    assert state['cursor_uptime_s'] == vm_events[11]['uptime_s']
    # Rebooted: two kills of boot A came after the last run (the journal has them), one kill in boot B so far.
    new = monitor.count_kills(state, BOOT_B, 1, vm_events[:1], previous_boot_events=vm_events)
    assert new['manual'] == 1 and new['host'] == 1 and new['memcg_limit'] == 1
    assert state['kernel_total'] == 15 and state['boot_id'] == BOOT_B and state['vmstat_oom_kill'] == 1
    # The previous boot could not be read: its tail is lost, this boot is counted.
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, 12, vm_events[:12])
    monitor.count_kills(state, BOOT_B, 0, [], previous_boot_events=None)
    assert state['kernel_total'] == 12 and state['cursor_uptime_s'] is None


def test_the_previous_boot_read_from_its_journal_export_is_not_counted_twice(vm_events):
    # The same boot as journalctl -o export gives it (derived from the VM's capture): the kernel's own
    # stamps, so the cursor taken from the ring buffer splits it at the same report.
    exported = _events(EXPORT)
    assert [e['uptime_s'] for e in exported] == [e['uptime_s'] for e in vm_events]
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, 12, vm_events[:12])
    new = monitor.count_kills(state, BOOT_B, 0, [], previous_boot_events=exported)
    assert dict((c, n) for c, n in new.items() if n) == {'manual': 1, 'host': 1}
    assert state['kernel_total'] == 14


def test_an_oom_group_kill_counts_every_member():
    events = _events(GROUP)
    assert len(events) == 1
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, 12, events)
    assert state['by_cause']['memcg_limit'] == 12 and state['by_unit'] == {'/test1': 12}


def test_kernels_without_the_counter_count_the_reports(vm_events):
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, None, vm_events)
    assert state['kernel_total'] == 14 and state['by_cause']['unattributed'] == 0


def test_unit_labels_are_bounded():
    state = monitor.fresh_state()
    events = [{'cause': 'memcg_limit', 'victim': {'pid': n}, 'uptime_s': float(n),
               'task_memcg': '/system.slice/app%03d.service' % n} for n in range(1, 61)]
    monitor.count_kills(state, BOOT_A, 60, events)
    assert len(state['by_unit']) == monitor.MAX_UNITS + 1 and state['by_unit']['other'] == 10


def test_early_kills_are_counted_once():
    state = monitor.fresh_state()
    kills = [{'timestamp': '2026-12-07T10:00:0%dZ' % n, 'killer': 'earlyoom', 'dry_run': False} for n in range(3)]
    kills.append({'timestamp': '2026-12-07T10:00:05Z', 'killer': 'earlyoom', 'dry_run': True})
    assert monitor.count_early_kills(state, kills) == 3
    assert monitor.count_early_kills(state, kills) == 0
    assert state['by_cause']['early_killer'] == 3


# -- the state file ---------------------------------------------------------------------------------

def test_the_state_round_trips_and_a_bad_one_starts_again(tmp_path, vm_events):
    path = str(tmp_path / 'monitor-state.json')
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, 14, vm_events)
    ledger.write_file(path, json.dumps(state), 0o600)
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded, problem = monitor.load_state(path)
    assert problem is None and loaded == state
    for text in ('not json', '[]', json.dumps(dict(state, kernel_total=-1)), json.dumps(dict(state, version=9)),
                 json.dumps(dict(state, by_unit=dict(('u%d' % n, 1) for n in range(100)))),
                 json.dumps(dict(state, samples={'host:/': [[1, 2, 3]]})), 'x' * (monitor.MAX_STATE_BYTES + 1)):
        with open(path, 'w') as handle:
            handle.write(text)
        loaded, problem = monitor.load_state(path)
        assert loaded == monitor.fresh_state() and problem, text[:40]
    os.unlink(path)
    os.symlink('/etc/hostname', path)
    loaded, problem = monitor.load_state(path)
    assert loaded == monitor.fresh_state() and 'cannot open' in problem
    assert monitor.load_state(str(tmp_path / 'absent.json')) == (monitor.fresh_state(), None)


# -- the textfile -------------------------------------------------------------------------------------

SAMPLE_RE = re.compile(r'^[a-z_]+(\{[a-z_]+="([^"\\]|\\.)*"(,[a-z_]+="([^"\\]|\\.)*")*\})? -?[0-9.e+]+$')


def test_the_textfile_is_valid_exposition_text(vm_events):
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, 14, vm_events)
    state['by_unit']['a "quoted"\\unit\nname'] = 1
    domains = [{'kind': 'host', 'path': '/', 'limit_kb': 1000, 'headroom_kb': 250, 'forecast': {'time_to_oom_s': 90.5}},
               {'kind': 'node', 'path': 'node:1', 'nodes': [1], 'limit_kb': 500, 'headroom_kb': -3, 'forecast': None}]
    text = monitor.render(monitor.metrics(state, None, None, domains, {'kmsg': 'x'}, 1796680000.5, 0.25))
    lines = text.splitlines()
    for line in lines:
        assert line.startswith('# HELP ') or line.startswith('# TYPE ') or SAMPLE_RE.match(line), line
    assert 'oomguard_oom_kills_by_unit_total{unit="a \\"quoted\\"\\\\unit\\nname"} 1' in lines
    assert 'oomguard_oom_kills_total{cause="memcg_limit"} 11' in lines
    assert 'oomguard_domain_headroom_ratio{kind="host",path="/"} 0.25' in lines
    assert 'oomguard_domain_headroom_bytes{kind="node",path="node:1"} 0' in lines
    assert 'oomguard_domain_time_to_oom_seconds{kind="host",path="/"} 90.5' in lines
    assert 'oomguard_monitor_read_errors{source="kmsg"} 1' in lines
    assert '# TYPE oomguard_oom_kills_total counter' in lines
    names = [line.split()[2] for line in lines if line.startswith('# TYPE ')]
    assert len(names) == len(set(names))


def test_promtool_accepts_the_textfile(tmp_path, vm_events):
    promtool = shutil.which('promtool')
    assert promtool, 'promtool is missing: apt-get install -y prometheus (tools/run installs it)'
    state = monitor.fresh_state()
    monitor.count_kills(state, BOOT_A, 14, vm_events)
    text = monitor.render(monitor.metrics(state, None, None, [], {}, 1796680000.5, 0.25))
    proc = subprocess.run([promtool, 'check', 'metrics'], input=text.encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False)
    assert proc.returncode == 0, proc.stdout.decode()


# -- one run on this machine ----------------------------------------------------------------------------

def test_a_run_on_this_machine_writes_both_files(tmp_path):
    textfile_dir, state_path = str(tmp_path / 'textfile'), str(tmp_path / 'state.json')
    os.mkdir(textfile_dir)
    result = monitor.run(textfile_dir, state_path, log_paths=[VM_BOOT])
    assert set(result['errors']) <= set(['posture']), result['errors']
    with open(result['textfile']) as handle:
        text = handle.read()
    assert re.search(r'^oomguard_risk_score \d+$', text, re.M)
    assert re.search(r'^oomguard_domain_limit_bytes\{kind="host",path="/"\} \d+$', text, re.M)
    # This machine's kernel counter rules: whatever it says is counted, nothing more.
    with open('/proc/vmstat') as handle:
        kernel = int(re.search(r'^oom_kill (\d+)$', handle.read(), re.M).group(1))
    assert re.search(r'^oomguard_kernel_oom_kills_total %d$' % kernel, text, re.M)
    state, problem = monitor.load_state(state_path)
    assert problem is None and state['kernel_total'] == kernel and 'host:/' in state['samples']
    # The second run adds a usage sample; the host's forecast needs two.
    monitor.run(textfile_dir, state_path, log_paths=[VM_BOOT])
    state, dummy = monitor.load_state(state_path)
    assert len(state['samples']['host:/']) == 2 and os.listdir(textfile_dir) == ['oomguard.prom']


def test_with_a_policy_the_drift_is_counted_on_this_machine(tmp_path):
    textfile_dir, state_path = str(tmp_path / 'textfile'), str(tmp_path / 'state.json')
    os.mkdir(textfile_dir)
    with open('/proc/sys/vm/panic_on_oom') as handle:
        live = int(handle.read())
    policy_path = str(tmp_path / monitor.POLICY_FILE)
    # The live value, and one that is not: one setting drifts (the audit reads, never writes).
    for value, drift in ((live, 0), (1 - min(live, 1), 1)):
        ledger.write_file(policy_path, json.dumps({'sysctl': {'vm.panic_on_oom': value}}), 0o600)
        result = monitor.run(textfile_dir, state_path, log_paths=[VM_BOOT])
        assert 'policy' not in result['errors'], result['errors']
        with open(result['textfile']) as handle:
            text = handle.read()
        assert 'oomguard_drift_settings{status="drift"} %d' % drift in text, text
        assert re.search(r'^oomguard_drift_settings\{status="missing"\} \d+$', text, re.M)
    # A file that is not a policy: said, and no drift metric.
    ledger.write_file(policy_path, json.dumps({'sysctl': {}, 'rm -rf': 1}), 0o600)
    result = monitor.run(textfile_dir, state_path, log_paths=[VM_BOOT])
    assert 'is not a policy oom_monitor wrote' in result['errors']['policy']
    with open(result['textfile']) as handle:
        assert 'oomguard_drift_settings' not in handle.read()
