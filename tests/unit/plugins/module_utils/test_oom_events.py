# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oom_events: which events are kept (the newest by event time, over every
file and rotation) and the read limits (byte and time budgets, gzip ratio,
line length, field length), on a real capture.

The hostile inputs of the module as a whole are in
tests/unit/plugins/modules/oom_events_bad_inputs.yml.
"""

import gzip
import os
import time

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import oom_events, oom_report, oom_scan

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURE = os.path.join(HERE, '..', '..', 'fixtures', 'oom_reports', 'generated', 'debian12-6.1-cgroupv2-mixed')
# Real kernel log of a Debian 12 guest: 14 kills, every line dated "Nov 23" (2026).
FIXTURE = os.path.abspath(os.path.join(CAPTURE, 'kern.log'))
# The same boot as raw dmesg: seconds since boot only.
DMESG = os.path.abspath(os.path.join(CAPTURE, 'dmesg.txt'))


def _capture(day):
    """The capture with its syslog dates moved to Nov <day>."""
    with open(FIXTURE, 'rb') as handle:
        lines = handle.read().split(b'\n')
    return b'\n'.join(line.replace(b'Nov 23 ', b'Nov %d ' % day, 1) for line in lines)


def _stamps(events):
    return [event['timestamp'] for event in events]


@pytest.fixture(scope='module')
def kills():
    """Every kill of the capture, oldest first."""
    events, dummy, summary, notes = oom_events.collect(paths=[FIXTURE], year=2026)
    assert summary['events'] == len(events) == 14 and notes == []
    return events


def _newest_three(kills, day):
    return [stamp.replace('2026-11-23', '2026-11-%d' % day) for stamp in _stamps(kills)[-3:]]


@pytest.mark.parametrize('newest_in', ['kern.log', 'kern.log.1.gz'])
def test_max_events_keeps_the_newest_whichever_file_the_glob_gives_first(tmp_path, kills, newest_in):
    """kern.log and kern.log.1.gz, the newer kills in either: a glob reads kern.log first, then the rotation."""
    older = 'kern.log.1.gz' if newest_in == 'kern.log' else 'kern.log'
    for name, day in ((newest_in, 24), (older, 22)):
        data = _capture(day)
        (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith('.gz') else data)
    events, dummy, summary, notes = oom_events.collect(paths=[str(tmp_path / 'kern.log*')], year=2026, keep=3)
    assert summary['events'] == 28 and notes == []
    assert _stamps(events) == _newest_three(kills, 24)
    assert [event['source'] for event in events] == [str(tmp_path / newest_in)] * 3
    # The kill loop spans both files, first and last by time whichever was read first.
    loop = dummy[0]
    assert (loop['kills'], loop['first'], loop['last']) == (20, '2026-11-22T01:46:19', '2026-11-24T01:46:32')


def test_max_events_over_paths_in_any_order(tmp_path, kills):
    """Three generations given newest first, oldest first, or mixed: the same three newest kills, oldest first."""
    paths = {}
    for name, day in (('kern.log', 25), ('kern.log.1', 24), ('kern.log.2.gz', 23)):
        data = _capture(day)
        (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith('.gz') else data)
        paths[day] = str(tmp_path / name)
    results = [oom_events.collect(paths=[paths[day] for day in order], year=2026, keep=3)[0]
               for order in ((25, 24, 23), (23, 24, 25), (24, 25, 23))]
    assert [_stamps(events) for events in results] == [_newest_three(kills, 25)] * 3
    # keep=None: all 42, oldest first.
    every = oom_events.collect(paths=[paths[24], paths[23], paths[25]], year=2026)[0]
    assert _stamps(every) == sorted(_stamps(every)) and len(every) == 42


def test_newest_when_parsed_by_workers(tmp_path, kills, monkeypatch):
    """A large log parsed in groups by forked workers keeps the same newest events as one pass."""
    noise = b''.join(b'Nov 21 00:00:%02d vm kernel: [    1.000000] nothing to see here %d\n' % (n % 60, n)
                     for n in range(200000))
    (tmp_path / 'kern.log').write_bytes(_capture(24) + b'\n' + noise + _capture(22))
    monkeypatch.setattr(oom_scan, 'cpu_count', lambda: 3)
    results = []
    for minimum in (1 << 40, 1):
        monkeypatch.setattr(oom_scan, 'PARALLEL_MIN_BYTES', minimum)
        results.append(oom_events.collect(paths=[str(tmp_path / 'kern.log')], year=2026, keep=3))
    assert results[0] == results[1]
    assert _stamps(results[1][0]) == _newest_three(kills, 24) and results[1][2]['events'] == 28


def test_undated_events_count_as_older_and_keep_their_order(kills):
    """Raw dmesg (seconds since boot) with a dated log: the dated kills are the newest;
    alone, the undated ones keep their read order (the last read are kept)."""
    events = oom_events.collect(paths=[DMESG, FIXTURE], year=2026, keep=3)[0]
    assert _stamps(events) == _stamps(kills)[-3:]
    undated = oom_events.collect(paths=[DMESG], keep=3)[0]
    every = oom_events.collect(paths=[DMESG])[0]
    assert len(every) == 14 and [e['uptime_s'] for e in undated] == [e['uptime_s'] for e in every[-3:]]
    assert [e['timestamp'] for e in undated] == [None] * 3


def test_byte_budget_keeps_what_was_read_and_says_so(tmp_path, kills):
    data = _capture(23)
    half = data.index(b'invoked oom-killer', len(data) // 2)
    events, dummy, summary, notes = oom_events.collect(
        paths=[FIXTURE, FIXTURE], year=2026, budget=oom_events.ReadBudget(max_bytes=half))
    assert 0 < len(events) < 14 and _stamps(events) == _stamps(kills)[:len(events)]
    assert notes == ['%s: read only its first %d bytes: max_read_bytes = %d reached (the budget of all inputs of this '
                     'run); raise max_read_bytes to read more' % (FIXTURE, half, half),
                     'not read, the read budget being spent: %s' % FIXTURE]


def test_gzip_counts_its_decompressed_bytes(tmp_path):
    (tmp_path / 'kern.log.1.gz').write_bytes(gzip.compress(_capture(23)))
    budget = oom_events.ReadBudget(max_bytes=100000)
    oom_events.collect(paths=[str(tmp_path / 'kern.log.1.gz')], year=2026, budget=budget)
    assert budget.left_bytes == 0 and 'read only its first 100000 bytes' in budget.notes[0]


class _Clock:
    """time.monotonic() that goes on a second per call."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        self.now += 1
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def test_time_budget_keeps_what_was_read_and_says_so(tmp_path, kills, monkeypatch):
    (tmp_path / 'kern.log.1.gz').write_bytes(gzip.compress(_capture(23)))
    clock = _Clock()
    monkeypatch.setattr(oom_events, 'time', clock)
    monkeypatch.setattr(oom_scan, 'time', clock)
    monkeypatch.setattr(oom_scan, 'CHUNK_BYTES', 8192)
    budget = oom_events.ReadBudget(timeout_s=12)
    events, dummy, summary, notes = oom_events.collect(
        paths=[str(tmp_path / 'kern.log.1.gz'), FIXTURE], year=2026, budget=budget)
    assert 0 < len(events) < 14 and _stamps(events) == _stamps(kills)[:len(events)]
    assert notes == ['%s: reading stopped: timeout_s = 12 reached (the time all inputs of this run may take); the '
                     'events read until then are kept' % (tmp_path / 'kern.log.1.gz'),
                     'not read, the read budget being spent: %s' % FIXTURE]


def test_workers_past_the_deadline_are_killed():
    started = time.monotonic()
    with pytest.raises(oom_scan.ReadTimeout):
        oom_scan.in_workers([lambda: time.sleep(60)] * 2, deadline=started + 0.2)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # none left, none running


def test_long_lines_inside_a_report_are_skipped_and_counted():
    with open(FIXTURE, 'rb') as handle:
        data = handle.read()
    at = data.index(b'\n', data.index(b'invoked oom-killer')) + 1
    hostile = data[:at] + b'Nov 23 01:46:01 oomgen-vm kernel: [   81.382305] ' + b'B' * (200 << 10) + b'\n' + data[at:]
    scanner = oom_scan.StreamScanner(year=2026)
    scanner.scan_buffer(hostile, final=True)
    events = oom_report.finish(scanner.parser.close())
    assert scanner.long_lines == 1 and len(events) == 14
    assert all(len(str(event)) < 100000 for event in events)


def test_a_line_longer_than_the_chunks_is_skipped_in_a_stream():
    line = b'Nov 23 01:46:01 vm kernel: [   81.3] ' + b'C' * (3 << 20) + b' invoked oom-killer: gfp_mask=0xcc0, order=0\n'
    with open(FIXTURE, 'rb') as handle:
        data = line + handle.read()
    scanner = oom_scan.StreamScanner(year=2026)
    scanner.scan_chunks(data[at:at + (1 << 20)] for at in range(0, len(data), 1 << 20))
    assert scanner.long_lines == 1 and len(scanner.parser.close()) == 14


def test_fields_are_cut_in_their_middle():
    event = {'invoker': {'comm': 'x' * 10000, 'pid': 1}, 'task_memcg': '/a' + 'b' * 9000 + '/z.service',
             'tasks': [{'comm': 'y' * 5000}], 'order': 0}
    bounded = oom_events.bound_fields(event)
    assert len(bounded['invoker']['comm']) == oom_events.MAX_FIELD_CHARS + 3
    assert bounded['task_memcg'].startswith('/abbb') and bounded['task_memcg'].endswith('b/z.service')
    assert '...' in bounded['tasks'][0]['comm'] and bounded['order'] == 0


@pytest.mark.parametrize('params, message', [
    ({'year': 1969}, 'year = 1969; allowed: an integer 1970..2200'),
    ({'year': 2201}, 'year = 2201; allowed: an integer 1970..2200'),
    ({'max_events': 100001}, 'max_events = 100001; allowed: an integer 0..100000'),
    ({'timeout_s': 0}, 'timeout_s = 0; allowed: an integer 1..86400'),
    ({'max_read_bytes': -5}, 'max_read_bytes = -5; allowed: an integer 1..1099511627776'),
    ({'since': '3 fortnights'}, "since = '3 fortnights' is not a time; allowed: a time like 24h, 7d, 90m ago, "
                                '2026-11-01 or 2026-11-01 12:00 (UTC)'),
])
def test_option_bounds(params, message):
    assert oom_events.check_options(params) == [message]
    with pytest.raises(oom_events.SourceError, match=message.split(';')[0].replace('(', r'\(')):
        oom_events.run(dict(params, path=[FIXTURE]), None, None, None, False)


def test_options_at_their_bounds_are_fine():
    assert oom_events.check_options({'year': 1970, 'max_events': 0, 'min_loop_kills': 2, 'max_read_bytes': 1,
                                     'timeout_s': 86400, 'since': '7d'}) == []
    result = oom_events.run({'path': [FIXTURE], 'year': 2200, 'max_events': 0}, None, None, None, False)
    assert result['events'] == [] and result['summary']['events'] == 14 and result['notes'] == []
