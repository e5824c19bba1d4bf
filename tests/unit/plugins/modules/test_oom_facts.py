# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The oom_facts module end to end: argument handling and the facts it returns.

It runs the module's main() in-process on this machine's live kernel
(read-only) and on the captured trees, and checks the returned JSON.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.oomguard.linux.plugins.modules import oom_facts
from ansible_collections.oomguard.linux.tests.unit.trees import TREE_NAMES as TREES


REQUIRED_KEYS = ('risk_score', 'risk_level', 'findings', 'cgroup_mode', 'memory', 'sysctl', 'thp',
                 'numa_nodes', 'victims', 'notes', 'not_evaluated')


def run_module(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            oom_facts.main()
    result = json.loads(capsys.readouterr().out)
    return exit_info.value.code, result


def test_live_host_returns_every_documented_field(capsys):
    code, result = run_module({'victims_count': 3}, capsys)
    assert code == 0, result
    assert result['changed'] is False
    posture = result['ansible_facts']['oom_posture']
    for key in REQUIRED_KEYS:
        assert key in posture
    assert 0 <= posture['risk_score'] <= 100
    assert posture['risk_level'] in ('low', 'medium', 'high', 'critical')
    assert len(posture['victims']) <= 3
    assert 'snapshot' not in posture


def test_include_snapshot(capsys):
    code, result = run_module({'include_snapshot': True, 'skip': ['processes']}, capsys)
    assert code == 0
    posture = result['ansible_facts']['oom_posture']
    assert posture['snapshot']['processes'] is None
    assert posture['victims'] == []
    assert posture['snapshot']['memory']['MemTotal'] == posture['memory']['MemTotal']


@pytest.mark.parametrize('args, message', [
    ({'skip': ['bogus']}, 'value of skip must be one or more of'),
    ({'victims_count': -1}, 'victims_count = -1; allowed: an integer 0..1000'),
    ({'thresholds': {'nonexistent_threshold': 3}}, 'thresholds[nonexistent_threshold]: unknown setting; allowed: '),
    ({'thresholds': {'memavailable_low_percent': 'ten'}},
     "thresholds[memavailable_low_percent] = 'ten'; allowed: a number >= 0 (default 10)"),
    ({'thresholds': {'critical_processes': 'sshd'}}, "thresholds[critical_processes] = 'sshd'; allowed: a list of process names"),
])
def test_bad_arguments_fail_clearly(capsys, args, message):
    code, result = run_module(args, capsys)
    assert code == 1
    assert result['failed'] is True
    assert message in result['msg']


@pytest.mark.parametrize('name', TREES)
def test_captured_tree_through_root(capsys, captured_tree, name):
    root = captured_tree(name)
    code, result = run_module({'root': root}, capsys)
    assert code == 0, result
    posture = result['ansible_facts']['oom_posture']
    with open(os.path.join(root, 'proc', 'meminfo')) as handle:
        mem_total_kb = int(handle.readline().split()[1])
    assert posture['memory']['MemTotal'] == mem_total_kb
    # A captured tree is not the live host: systemd is not asked.
    assert any(n['reader'] == 'systemd' for n in posture['notes'])


def test_missing_root_fails_with_the_path(capsys, tmp_path):
    code, result = run_module({'root': str(tmp_path)}, capsys)
    assert code == 1
    assert 'meminfo' in result['msg']
