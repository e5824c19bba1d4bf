# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""processes.own_tree and scan_processes(own_pid=...): the audit's own processes are not victims."""

import os
import re
import signal
import subprocess
import time

from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import processes


def _entry(pid, comm, ppid):
    # (oom_score, rss_pages, pid, comm, ppid), as scan_processes keeps them
    return (500, 100, pid, comm, ppid)


def _host(tmp_path, cmdlines):
    for pid, text in cmdlines.items():
        os.makedirs(str(tmp_path / 'proc' / str(pid)))
        (tmp_path / 'proc' / str(pid) / 'cmdline').write_bytes(text.replace(' ', '\0').encode() + b'\0')
    return procfs.HostRoot(str(tmp_path))


def test_with_the_local_connection_the_whole_ansible_tree_is_left_out(tmp_path):
    # ansible-playbook (100) forks a worker per host (101, 102); a worker runs
    # sh -c (110) which runs the module's python (111); 200 is a real service.
    cmdlines = {
        100: '/usr/bin/python3 /usr/bin/ansible-playbook -i inv audit.yml',
        101: '/usr/bin/python3 /usr/bin/ansible-playbook -i inv audit.yml',
        102: '/usr/bin/python3 /usr/bin/ansible-playbook -i inv audit.yml',
        110: '/bin/sh -c /usr/bin/python3 /root/.ansible/tmp/ansible-tmp-1/AnsiballZ_oom_audit.py',
        111: '/usr/bin/python3 /root/.ansible/tmp/ansible-tmp-1/AnsiballZ_oom_audit.py',
        50: '/bin/bash', 200: '/usr/sbin/mysqld',
    }
    by_pid = dict((e[2], e) for e in [
        _entry(50, 'bash', 1), _entry(100, 'ansible-playboo', 50), _entry(101, 'ansible-playboo', 100),
        _entry(102, 'ansible-playboo', 100), _entry(110, 'sh', 101), _entry(111, 'python3', 110),
        _entry(200, 'mysqld', 1)])
    tree, root = processes.own_tree(_host(tmp_path, cmdlines), by_pid, 111)
    assert root == 100
    assert tree == set([100, 101, 102, 110, 111])


def test_over_ssh_the_wrappers_above_the_module_are_left_out_not_the_session(tmp_path):
    # sshd (10, the listener) -> sshd session (20) -> sh (30) -> sudo (31) -> sh (32) -> python (33)
    cmdlines = {10: '/usr/sbin/sshd -D', 20: 'sshd: ops@notty', 30: '/bin/sh -c sudo -H -S -n -u root /bin/sh -c echo',
                31: 'sudo -H -S -n -u root /bin/sh -c echo', 32: '/bin/sh -c echo BECOME-SUCCESS; /usr/bin/python3',
                33: '/usr/bin/python3'}
    by_pid = dict((e[2], e) for e in [
        _entry(10, 'sshd', 1), _entry(20, 'sshd', 10), _entry(30, 'sh', 20), _entry(31, 'sudo', 30),
        _entry(32, 'sh', 31), _entry(33, 'python3', 32), _entry(40, 'postgres', 1)])
    tree, root = processes.own_tree(_host(tmp_path, cmdlines), by_pid, 33)
    assert root == 30
    assert tree == set([30, 31, 32, 33])


def test_on_this_machine_the_scan_leaves_out_its_own_tree_and_its_children():
    child = subprocess.Popen(['sleep', '30'])
    try:
        found = processes.scan_processes(procfs.HostRoot('/'), top_n=10000, own_pid=os.getpid())
        excluded = found['excluded']
        victims = set(v['pid'] for v in found['victims'])
        assert os.getpid() not in victims and child.pid not in victims
        assert excluded['count'] >= 2 and excluded['root_pid'] != 1
        # Without own_pid this process and its child are ranked like any other.
        plain = processes.scan_processes(procfs.HostRoot('/'), top_n=10000)
        assert plain['excluded'] is None
        assert set([os.getpid(), child.pid]) <= set(v['pid'] for v in plain['victims'])
    finally:
        child.kill()
        child.wait()


def test_earlyoom_argument_forms():
    assert processes.earlyoom_patterns(['earlyoom', '-m', '5', '--avoid', '^(sshd)$', '--prefer=^(java)$']) == {
        'avoid': '^(sshd)$', 'prefer': '^(java)$'}
    # getopt_long: the last one counts; an option without its value is not one.
    assert processes.earlyoom_patterns(['earlyoom', '--avoid=a', '--avoid', 'b', '--prefer']) == {'avoid': 'b'}
    assert processes.earlyoom_patterns(['earlyoom', '-r', '3600']) == {}


def test_a_running_earlyoom_has_its_patterns_matched_against_this_machines_processes(tmp_path):
    """A real process named earlyoom (a script: its comm is the script's name) with real --avoid and
    --prefer arguments, scanned on this machine: each pattern gets the running names it matches."""
    script = tmp_path / 'earlyoom'
    # sh stays (exec would give the process sleep's name): its comm is the script's.
    script.write_text('#!/bin/sh\nsleep 60 &\nwait\n')
    script.chmod(0o755)
    child = subprocess.Popen([str(script), '--avoid', '^(earlyoom|[[:lower:]]+d)$', '--prefer=^(no-such-program)$',
                              '--ignore', 'x'], start_new_session=True)
    try:
        for dummy in range(50):
            with open('/proc/%d/stat' % child.pid) as handle:
                if '(earlyoom)' in handle.read():
                    break
            time.sleep(0.05)
        scan = processes.scan_processes(procfs.HostRoot('/'), 4, 5)
        mine = [k for k in scan['early_killers'] if k['pid'] == child.pid]
        assert len(mine) == 1 and mine[0]['name'] == 'earlyoom'
        killer = mine[0]
        assert killer['patterns'] == {'avoid': '^(earlyoom|[[:lower:]]+d)$', 'prefer': '^(no-such-program)$'}
        assert killer['pattern_problems'] == {}
        assert 'earlyoom' in killer['matches']['avoid']
        assert killer['matches']['prefer'] == []
        # The POSIX class was read as earlyoom reads it: names of lower-case letters ending in d, user
        # processes only (earlyoom never looks at kernel threads: kthreadd runs on every Linux).
        assert all(re.match(r'^(earlyoom|[a-z]+d)$', name) for name in killer['matches']['avoid'])
        assert 'kthreadd' not in killer['matches']['avoid']
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the script and its sleep
        child.wait()
