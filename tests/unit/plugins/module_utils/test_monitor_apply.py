# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""monitor_apply (the oom_monitor concern): validation, the collector built from the collection's own
module_utils, timer or cron, idempotence, and restore back to the same tree, in a root under tmp_path.

The root is a systemd host (run/systemd/system) or not; systemctl is answered by fake_host.Systemctl.
The installed collector is then run for real on this machine (read-only; its outputs stay in tmp_path).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import monitor_apply as ma
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import _restore as restore_mod
from ansible_collections.oomguard.linux.tests.unit import fake_host
from ansible_collections.oomguard.linux.tests.unit.trees import tree_state

LABELS = engine.Labels('h1')
POLICY = {'profile': 'database', 'sysctl': {'vm.swappiness': 10}, 'protect_defaults': True}


class Root:
    """A host root: /etc/systemd/system, /etc/cron.d, /var/lib/oomguard, a textfile directory."""

    def __init__(self, path, systemd=True):
        self.root = path
        for rel in ('etc/systemd/system', 'etc/cron.d', 'var/lib/oomguard', 'var/lib/prometheus/node-exporter'):
            os.makedirs(os.path.join(path, rel))
        if systemd:
            os.makedirs(os.path.join(path, 'run/systemd/system'))
        self.host = procfs.HostRoot(path)
        self.textfile_dir = os.path.join(path, 'var/lib/prometheus/node-exporter')
        self.state_dir = os.path.join(path, 'var/lib/oomguard')
        # Every path inside the root: the defaults as restore takes them on this host root.
        self._paths = dict((name, self.host.path(default)) for name, default in ma.DEFAULT_PATHS.items())

    def path(self, rel):
        return os.path.join(self.root, rel)

    def paths(self):
        return dict(self._paths)

    def apply(self, monitor=None, check_mode=False, systemctl=None, policy=None):
        params = {'monitor': dict({'textfile_dir': self.textfile_dir}, **(monitor or {})), 'paths': self.paths(),
                  'policy': policy or {}}
        return ma.apply(params, self.host, LABELS, check_mode, run_command=systemctl,
                        systemctl='systemctl' if systemctl else None)

    def restore(self, systemctl=None):
        return restore_mod.restore({'paths': {'state_dir': self.state_dir}}, self.host, LABELS, False,
                                   run_command=systemctl, systemctl='systemctl' if systemctl else None)


@pytest.fixture
def managed(tmp_path, monkeypatch):
    """A systemd root whose systemd_dir counts as the real one, so units are managed."""
    root = Root(str(tmp_path / 'root'))
    monkeypatch.setattr(ma, 'DEFAULT_PATHS', root.paths())
    return root


def test_the_collector_is_the_collections_own_code_and_needs_only_the_stdlib():
    sources = ma.closure()
    assert {'monitor', 'oom_events', 'oom_report', 'snapshot', 'posture', 'procfs'} <= set(sources)
    here = os.path.dirname(ma.__file__)
    for name, source in sources.items():
        with open(os.path.join(here, name + '.py')) as handle:
            assert handle.read() == source, name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or '').startswith('ansible.'), (name, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith('ansible') for a in node.names), name
    assert 'monitor_apply' not in sources and '_restore' not in sources


def test_bad_settings_are_refused_all_at_once(managed):
    with pytest.raises(engine.Refused) as refused:
        managed.apply({'textfile_dir': 'relative/dir', 'interval_s': 5, 'colour': 'red'})
    messages = [p.message for p in refused.value.problems]
    assert len(messages) == 3, messages
    assert all(m.startswith('host h1: ') for m in messages)
    assert any("oomguard_monitor[colour]: unknown setting; allowed: interval_s, textfile_dir" in m for m in messages)
    assert any("oomguard_monitor[interval_s] = 5; allowed: " in m for m in messages)
    assert any("oomguard_monitor['textfile_dir'] = 'relative/dir'; allowed: an absolute" in m for m in messages)
    assert not os.listdir(managed.path('var/lib/oomguard'))
    with pytest.raises(engine.Refused) as refused:
        ma.apply({'monitor': {}, 'paths': managed.paths()}, managed.host, LABELS, False)
    assert "oomguard_monitor['textfile_dir'] = null; allowed: node_exporter's" in str(refused.value)


def test_timer_install_is_idempotent_and_restore_puts_the_tree_back(managed):
    original = tree_state(managed.root)
    systemctl = fake_host.Systemctl(version=252)
    planned = managed.apply(check_mode=True, systemctl=systemctl, policy=POLICY)
    assert planned['changed'] and tree_state(managed.root) == original
    assert systemctl.calls == [['is-active', ma.TIMER]]
    systemctl.calls = []
    result = managed.apply(systemctl=systemctl, policy=POLICY)
    assert result['scheduler'] == 'systemd timer' and result['changed']
    assert systemctl.calls == [['is-active', ma.TIMER], ['daemon-reload'], ['restart', ma.TIMER],
                               ['start', ma.SERVICE]]
    assert planned['files'] == result['files']
    sd = managed.path('etc/systemd/system')
    with open(os.path.join(sd, ma.SERVICE)) as handle:
        service = handle.read()
    assert 'ExecStart=%s/oomguard-monitor --textfile-dir %s --state %s/monitor-state.json' % (
        managed.paths()['monitor_lib_dir'], managed.textfile_dir, managed.state_dir) in service
    assert 'MemoryMax=128M' in service
    assert os.readlink(os.path.join(sd, ma.TIMER_LINK)) == '../' + ma.TIMER
    assert not os.path.exists(managed.path('etc/cron.d/oomguard-monitor'))
    ledger = fake_host.FakeHost(managed.root).ledger()
    assert ledger['units'] == {ma.TIMER: {'was_active': False, 'owner': 'oom_monitor'}}
    # The collector's outputs are recorded before it ever ran: restore removes them too.
    assert ledger['files'][os.path.join(managed.textfile_dir, 'oomguard.prom')]['type'] == 'absent'
    assert ledger['files'][os.path.join(managed.state_dir, 'monitor-state.json')]['type'] == 'absent'
    systemctl.calls = []
    again = managed.apply(systemctl=systemctl, policy=POLICY)
    with open(os.path.join(managed.state_dir, 'monitor-policy.json')) as handle:
        assert json.load(handle) == POLICY
    assert again['changed'] is False and again['files'] == [] and systemctl.calls == [['is-active', ma.TIMER]]
    # A new interval: the timer file changes and the timer restarts.
    systemctl.calls = []
    changed = managed.apply({'interval_s': 120}, systemctl=systemctl, policy=POLICY)
    assert [f['path'] for f in changed['files']] == [os.path.join(sd, ma.TIMER)]
    assert ['restart', ma.TIMER] in systemctl.calls
    # The installed collector runs (this machine, read-only) and writes its two files.
    lib = managed.paths()['monitor_lib_dir']
    state_path = os.path.join(managed.state_dir, 'monitor-state.json')
    proc = subprocess.run([os.path.join(lib, 'oomguard-monitor'), '--textfile-dir', managed.textfile_dir,
                           '--state', state_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env={'PATH': '/usr/bin:/bin'}, check=False)
    assert proc.returncode == 0 and 'wrote' in proc.stdout.decode(), proc.stdout.decode()
    assert os.path.exists(os.path.join(managed.textfile_dir, 'oomguard.prom')) and os.path.exists(state_path)
    # It wrote no bytecode of its own (restore could not know it): the compiled files came with it.
    pycache = os.path.join(lib, ma.PACKAGE_DIR, '__pycache__')
    assert sorted(os.listdir(pycache)) == sorted('%s.%s.pyc' % (n, sys.implementation.cache_tag) for n in ma.closure())
    systemctl.active.add(ma.TIMER)
    restored = managed.restore(systemctl=systemctl)
    assert restored['units_stopped'] == [ma.TIMER]
    assert tree_state(managed.root) == original


def test_a_policy_of_another_shape_is_refused(managed):
    with pytest.raises(engine.Refused) as refused:
        managed.apply(policy={'sysctl': ['vm.swappiness'], 'colour': 'red'})
    assert len(refused.value.problems) == 2
    assert "policy[sysctl] = ['vm.swappiness']; allowed: the harden role's variables: cgroups (dict)" in str(
        refused.value)


def test_without_systemd_cron_runs_it(tmp_path):
    root = Root(str(tmp_path / 'root'), systemd=False)
    original = tree_state(root.root)
    result = root.apply({'interval_s': 150})
    assert result['scheduler'] == 'cron'
    with open(root.path('etc/cron.d/oomguard-monitor')) as handle:
        cron = handle.read()
    assert '*/3 * * * * root ' in cron and cron.endswith('>/dev/null 2>&1\n')
    assert not os.path.exists(root.path('etc/systemd/system/' + ma.TIMER))
    root.restore()
    assert tree_state(root.root) == original


def test_no_systemd_and_no_cron_is_refused(tmp_path):
    root = Root(str(tmp_path / 'root'), systemd=False)
    os.rmdir(root.path('etc/cron.d'))
    with pytest.raises(engine.Refused) as refused:
        root.apply()
    assert 'needs a scheduler: systemd is not PID 1 and there is no %s for a cron file' % root.path('etc/cron.d') \
        in str(refused.value)


def test_diff_shows_sources_by_digest(managed):
    result = managed.apply(check_mode=True, systemctl=fake_host.Systemctl(version=252))
    by_path = dict((d['after_header'], d) for d in result['diff'])
    source = [p for p in by_path if p.endswith('/monitor.py')][0]
    assert by_path[source]['before'] == '' and by_path[source]['after'].endswith('\n')
    assert 'bytes, sha256 ' in by_path[source]['after'] and len(by_path[source]['after'].splitlines()) == 1
    timer = [p for p in by_path if p.endswith(ma.TIMER)][0]
    assert 'OnUnitActiveSec=60s' in by_path[timer]['after']
