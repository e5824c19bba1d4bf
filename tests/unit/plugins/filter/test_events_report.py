# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""events_report: the text people read, rendered from real captures."""

import os
import random
import re

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.oomguard.linux.plugins.filter.events_report import events_report
from ansible_collections.oomguard.linux.plugins.module_utils import oom_events

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.abspath(os.path.join(HERE, '..', '..', 'fixtures'))
CAPTURE = os.path.join(FIXTURES, 'oom_reports', 'generated', 'debian12-6.1-cgroupv2-mixed')
# 14 kills: 11 memcg_limit (10 of them a kill loop of python3), 1 parent_memcg_limit, 1 manual, 1 host.
KERN_LOG = os.path.join(CAPTURE, 'kern.log')
MEMCG_ADVICE = 'The cgroup reached its own memory limit.'
# What a Python repr of None, a bool, a dict or a list looks like in text.
REPRS = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\{'|\['|'\]|'\}|\[\]|\{\}")


def _result(path, **params):
    return oom_events.run(dict({'path': [path], 'year': 2026, 'max_events': 100}, **params), None, None, None, False)


@pytest.fixture(scope='module')
def mixed():
    return _result(KERN_LOG)


def test_advice_once_per_cause_with_its_events_under_it(mixed):
    text = events_report(mixed, host='web1', last=14)
    assert not REPRS.search(text), text
    assert text.count(MEMCG_ADVICE) == 1
    assert text.splitlines()[0] == '14 OOM events on web1 (host 1, manual 1, memcg_limit 11, parent_memcg_limit 1)'
    group = text.split('\nmemcg_limit: 11 events\n', 1)[1].split('\n\n', 1)[0].splitlines()
    assert group[0].startswith('  change: ' + MEMCG_ADVICE)
    assert len([line for line in group if line.startswith('  - ')]) == 11
    for cause in ('host', 'manual', 'parent_memcg_limit'):
        assert '\n%s: 1 event\n' % cause in text
    assert not re.search(r'\b1 events|\b1 kills|\b1 PIDs|\(s\)', text)


def test_units_and_times(mixed):
    text = events_report(mixed, last=14)
    assert ('  - 2026-11-23 01:46:01 (uptime 81.4 s)  memhog (pid 369, anon-rss 63.5 MiB) killed in '
            '/system.slice/oomgen-memcg-v2.service on oomgen-vm') in text
    assert 'memcg: failcnt 1819, limit 64.0 MiB, usage 64.0 MiB' in text
    assert 'zones below min: free 43.2 MiB, high 64.9 MiB, low 54.1 MiB, min 43.3 MiB, node 0, zone DMA32' in text
    assert ('  python3 in /system.slice/oomgen-kill-loop.service: 10 kills, 10 PIDs, 2026-11-23 01:46:19 .. '
            '2026-11-23 01:46:32') in text


def test_last_shows_the_newest_whatever_the_order_of_the_events(mixed):
    shuffled = dict(mixed, events=random.Random(18).sample(mixed['events'], len(mixed['events'])))
    text = events_report(shuffled, last=2)
    assert 'The 2 newest of 14, by what to change:' in text
    shown = re.findall(r'^  - (\S+ \S+)', text, re.M)
    assert sorted(shown) == ['2026-11-23 01:46:41', '2026-11-23 01:49:32']
    assert 'The newest of 14' in events_report(mixed, last=1)
    assert 'No event shown (last = 0).' in events_report(mixed, last=0)


@pytest.mark.parametrize('last', [-1, 100001, '3', True, None])
def test_last_out_of_bounds(mixed, last):
    with pytest.raises(AnsibleFilterError, match=r'^last = .*; allowed: an integer 0\.\.100000$'):
        events_report(mixed, last=last)


def test_long_cgroup_paths_are_cut_in_the_middle(mixed):
    event = dict(mixed['events'][0])
    deep = '/system.slice/' + '/'.join('level%d.slice' % n for n in range(12)) + '/foo.service'
    event['task_memcg'] = deep
    event['evidence'] = dict(event['evidence'], task_memcg=deep)
    text = events_report(dict(mixed, events=[event]), last=1)
    assert '/system.slice/\u2026/level10.slice/level11.slice/foo.service' in text
    assert deep not in text


def test_raw_dmesg_says_seconds_since_boot():
    text = events_report(_result(os.path.join(CAPTURE, 'dmesg.txt')), last=14)
    assert not REPRS.search(text), text
    assert '  - uptime 81.4 s  memhog (pid 369, anon-rss 63.5 MiB) killed in /system.slice/oomgen-memcg-v2.service' in text
    assert '10 kills, 10 PIDs, uptime 99.9 s .. uptime 112.2 s' in text


def test_early_kills_and_notes_read_as_text():
    with open(os.path.join(FIXTURES, 'early_kills', 'debian12-tcg-earlyoom-1.7-dryrun.journal')) as handle:
        early = oom_events.parse_early_kills(handle.read().splitlines())
    result = _result(KERN_LOG, max_read_bytes=60000)
    result['early_kills'] = early + [{'timestamp': None, 'killer': 'systemd-oomd', 'dry_run': False,
                                      'cgroup': None, 'reason': None}]
    text = events_report(result, last=50)
    assert not REPRS.search(text), text
    assert 'Kills by the early OOM killer (before the kernel had to act): %d kills' % len(early + [1]) in text
    assert '  time unknown  systemd-oomd unknown: no reason given' in text
    assert 'Notes:\n  %s: read only its first 60000 bytes: max_read_bytes = 60000 reached' % KERN_LOG in text


def test_nothing_found():
    text = events_report({'events': [], 'summary': {'events': 0, 'by_cause': {}}, 'kill_loops': [], 'notes': []})
    assert text.splitlines() == ['0 OOM events', '============', '', 'No OOM kill in the logs read.']
