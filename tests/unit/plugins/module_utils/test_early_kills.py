# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The early killers' kills, read from real journals (tests/unit/fixtures/early_kills)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.oomguard.linux.plugins.module_utils import oom_events

HERE = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'early_kills')


def _read(name):
    with open(os.path.join(HERE, name)) as handle:
        return handle.read().splitlines()


def test_an_earlyoom_kill_is_one_kill_with_its_victim():
    kills = oom_events.parse_early_kills(_read('debian12-tcg-earlyoom-1.7-kill.journal'))
    assert kills == [{'timestamp': '2026-11-23T09:15:20+0000', 'killer': 'earlyoom', 'dry_run': False,
                      'signal': 'SIGTERM', 'pid': 351, 'uid': 0, 'comm': 'runaway', 'score': 1377,
                      'rss_mib': 346}]


def test_the_startup_banner_is_not_a_kill():
    # "sending SIGTERM when mem <= 15.00% ..." is earlyoom's configuration, not a kill.
    lines = [line for line in _read('debian12-tcg-earlyoom-1.7-kill.journal') if 'sending SIGTERM when' in line]
    assert lines and oom_events.parse_early_kills(lines) == []


def test_dry_run_reports_are_marked_and_the_oomd_dry_run_is_read():
    kills = oom_events.parse_early_kills(_read('debian12-tcg-earlyoom-1.7-dryrun.journal'))
    earlyoom = [k for k in kills if k['killer'] == 'earlyoom']
    # 120 lines say "sending": one is the startup banner, 119 are reports,
    # each followed by earlyoom's dry-run line; the kernel did the killing.
    assert len(earlyoom) == 119
    assert [k for k in earlyoom if k['comm'] != 'runaway'] == [earlyoom[-1]]
    assert set(k['pid'] for k in earlyoom[:-1]) == set([347])
    # Once the kernel had killed the runaway, the next biggest was sshd: why
    # the collection's avoid list always holds it.
    assert (earlyoom[-1]['comm'], earlyoom[-1]['signal']) == ('sshd', 'SIGKILL')
    assert all(k['dry_run'] for k in earlyoom)
    assert set(k['signal'] for k in earlyoom) == set(['SIGTERM', 'SIGKILL'])
    assert (earlyoom[0]['rss_mib'], earlyoom[-2]['rss_mib'], earlyoom[-1]['rss_mib']) == (347, 470, 3)
    oomd = [k for k in kills if k['killer'] == 'systemd-oomd']
    assert len(oomd) == 5
    assert oomd[0] == {'timestamp': '2026-11-23T09:20:04+0000', 'killer': 'systemd-oomd', 'dry_run': True,
                       'cgroup': '/sys/fs/cgroup/cap.slice/cap-press.service', 'reason': 'dry-run'}
    assert set(k['cgroup'] for k in oomd) == set(['/sys/fs/cgroup/cap.slice/cap-press.service'])


def test_other_programs_and_systemd_lines_are_skipped():
    lines = _read('debian12-tcg-earlyoom-1.7-kill.journal')
    systemd_lines = [line for line in lines if ' systemd[1]: ' in line]
    assert systemd_lines and oom_events.parse_early_kills(systemd_lines) == []
