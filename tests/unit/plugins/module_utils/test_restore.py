# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore puts back a process's oom_score_adj only when it is still the same process.

A ledger entry of a process carries its start time (field 22 of
/proc/PID/stat, clock ticks after boot); restore reads the start time of the
PID now and skips, with a note, a process that is gone, one whose PID now
belongs to another process, and one whose entry has no start time to check.
The processes are a real short-lived child of this test (its /proc directory
linked into a fake host root, nothing of it written) and the processes of a
captured tree (fake_host.CaptureHost, written in the copy).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import _restore as restore_mod
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.tests.unit import fake_host, trees

LABELS = engine.Labels('h1')
NUMA2 = 'debian12-6.1-qemu-numa2'
# agetty's two processes in the capture, 0 before; one oom_score_adj each.
REQUEST = {'processes': [{'match': 'agetty', 'oom_score_adj': 500}],
           'cgroups': {'system.slice/dbus.service': {'memory_max': '64M'}}}
PROCESSES = ['/proc/291/oom_score_adj', '/proc/296/oom_score_adj']

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='the ledger is root-owned')


def starttime_of(path):
    with open(path) as handle:
        return ledger_mod.process_starttime(handle.read())


@pytest.fixture
def child():
    """A real process of this test's own, gone when the test ends."""
    process = subprocess.Popen(['sleep', '60'])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def tree(tmp_path, monkeypatch):
    host = fake_host.MachineHost(str(tmp_path / 'root'), labels=LABELS)
    host.kernel = fake_host.kernel(monkeypatch, host.root)
    os.makedirs(host.path('proc'), exist_ok=True)
    return host


def ledger_of_process(tree, pid, original, starttime):
    """A ledger as the unit settings write it for one process; its /proc directory linked into the tree."""
    os.symlink('/proc/%d' % pid, tree.path('proc/%d' % pid))
    path = '/proc/%d/oom_score_adj' % pid
    ledger = ledger_mod.Ledger(tree.state_dir)
    ledger.record_value(path, 'proc', path, original, 'oom_units', starttime=starttime)
    ledger.save()
    return path


@needs_root
def test_a_pid_that_is_another_process_now_is_skipped_with_a_note(tree, child):
    real = starttime_of('/proc/%d/stat' % child.pid)
    with open('/proc/%d/oom_score_adj' % child.pid) as handle:
        adj = handle.read()
    path = ledger_of_process(tree, child.pid, '-500', real + 1)
    result = tree.restore()
    assert result['changes'] == [] and tree.kernel.writes == []
    note = ('PID %d is another process now (started at tick %d, the ledger recorded %d); its oom_score_adj -500 '
            'is not put back' % (child.pid, real, real + 1))
    assert result['skipped'] == [{'key': path, 'path': path, 'note': note}]
    assert result['warnings'] == ['host h1: ' + note]
    with open('/proc/%d/oom_score_adj' % child.pid) as handle:
        assert handle.read() == adj
    # A note, not an error: the rest of the ledger is done with, and it goes.
    assert not os.path.exists(os.path.join(tree.state_dir, 'ledger.json'))


@needs_root
def test_a_process_that_is_gone_is_skipped_with_a_note(tree, child):
    real = starttime_of('/proc/%d/stat' % child.pid)
    path = ledger_of_process(tree, child.pid, '-500', real)
    child.kill()
    child.wait()
    result = tree.restore(check_mode=True)
    assert result['changes'] == [] and tree.kernel.writes == []
    assert result['skipped'] == [{'key': path, 'path': path,
                                  'note': 'process %d is gone; its oom_score_adj -500 is not put back' % child.pid}]


@pytest.fixture
def numa2(tmp_path, captured_tree, monkeypatch):
    host = fake_host.CaptureHost(str(tmp_path / 'root'), captured_tree(NUMA2), labels=LABELS)
    host.kernel = fake_host.kernel(monkeypatch, host.root)
    return host


def add_starttimes(host):
    """The start time of each process entry, from the tree's /proc/PID/stat (as the engine is to record it)."""
    path = os.path.join(host.state_dir, 'ledger.json')
    data = host.ledger()
    for key, entry in data['values'].items():
        if entry['kind'] == 'proc':
            entry['starttime'] = starttime_of(host.path(os.path.dirname(key) + '/stat'))
    ledger_mod.write_file(path, json.dumps(data), 0o600)


@needs_root
def test_the_same_processes_are_put_back(numa2):
    original = trees.tree_state(numa2.root)
    numa2.apply(**REQUEST)
    add_starttimes(numa2)
    restored = numa2.restore()
    assert [(c['path'], c['after']) for c in restored['changes']] == [
        (PROCESSES[0], '0'), (PROCESSES[1], '0'), ('/sys/fs/cgroup/system.slice/dbus.service/memory.max', 'max')]
    assert restored['skipped'] == []
    assert trees.tree_state(numa2.root) == original


@needs_root
def test_a_process_entry_without_a_start_time_cannot_be_verified_and_is_skipped(numa2):
    numa2.apply(**REQUEST)
    # As a ledger of an earlier release has them: no start time.
    data = numa2.ledger()
    for path in PROCESSES:
        data['values'][path].pop('starttime', None)
    ledger_mod.write_file(os.path.join(numa2.state_dir, 'ledger.json'), json.dumps(data), 0o600)
    restored = numa2.restore()
    assert [c['path'] for c in restored['changes']] == ['/sys/fs/cgroup/system.slice/dbus.service/memory.max']
    assert [s['note'] for s in restored['skipped']] == [
        'PID %s: the ledger has no start time for it, so it cannot be told from a later process with that PID; '
        'its oom_score_adj 0 is not put back' % p.split('/')[2] for p in PROCESSES]
    assert numa2.read('proc/291/oom_score_adj') == '500\n'


def test_the_targets_follow_the_path_options(tmp_path):
    """Unset, a path option is its default on the host restored; set, it is taken as given."""
    host = fake_host.procfs.HostRoot(str(tmp_path))
    targets = restore_mod.target_paths({'paths': {'sysctl_file': '/etc/sysctl.d/60-mine.conf'}}, host)
    assert targets['sysctl_file'] == '/etc/sysctl.d/60-mine.conf'
    assert targets['systemd_dir'] == str(tmp_path / 'etc/systemd/system')
    assert restore_mod.file_allowed('/etc/sysctl.d/60-mine.conf', targets, '/var/lib/oomguard')
    assert not restore_mod.file_allowed('/etc/sysctl.d/90-oomguard.conf', targets, '/var/lib/oomguard')
    sd = targets['systemd_dir']
    for path in (sd + '/ssh.service.d/90-oomguard-limits.conf', sd + '/multi-user.target.wants/earlyoom.service',
                 sd + '/oomguard-compact-memory.timer', sd + '/dbus-org.freedesktop.oom1.service'):
        assert restore_mod.file_allowed(path, targets, '/var/lib/oomguard'), path
    for path in (sd + '/ssh.service.d/override.conf', sd + '/multi-user.target.wants/cron.service',
                 sd + '/ssh.service', sd + '/a/b/90-oomguard-limits.conf', sd + '//oomguard-compact-memory.timer',
                 sd + '/../system/oomguard-compact-memory.timer', 'etc/sysctl.d/60-mine.conf'):
        assert not restore_mod.file_allowed(path, targets, '/var/lib/oomguard'), path
    # The monitor's files: its sources by module name, its entry, units, cron file, state and textfile.
    lib = targets['monitor_lib_dir']
    source = lib + '/ansible_collections/oomguard/linux/plugins/module_utils/'
    for path in (source + 'monitor.py', source + '_engine.py', source + '__pycache__/monitor.cpython-311.pyc',
                 lib + '/oomguard-monitor', sd + '/oomguard-monitor.timer',
                 sd + '/timers.target.wants/oomguard-monitor.timer', sd + '/oomguard-monitor.service',
                 str(tmp_path / 'etc/cron.d/oomguard-monitor'), '/var/lib/oomguard/monitor-state.json',
                 '/var/lib/prometheus/node-exporter/oomguard.prom'):
        assert restore_mod.file_allowed(path, targets, '/var/lib/oomguard'), path
    for path in (source + 'x/monitor.py', source + 'Monitor.py', source + 'monitor.pyc', lib + '/bin/sh',
                 source + '__pycache__/monitor.py', source + '__pycache__/../monitor.cpython-311.pyc',
                 lib + '/ansible_collections/evil.py', '/var/lib/oomguard/other-state.json',
                 '/var/lib/prometheus/node-exporter/node.prom', sd + '/timers.target.wants/other.timer'):
        assert not restore_mod.file_allowed(path, targets, '/var/lib/oomguard'), path
