# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading plain log files (oom_scan): StreamScanner.scan_file, its forked workers and its fallbacks.

Every report here is a real capture from tests/unit/fixtures/oom_reports; the
noise around them is the real boot log of one of those captures, repeated.
The thresholds (PARALLEL_MIN_BYTES, FRAGMENT_SCAN_BYTES, ...) are lowered per
test so that small files take the paths large ones take.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import oom_events, oom_report, oom_scan

CORPUS = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'oom_reports')
BOOT = os.path.join(CORPUS, 'generated', 'debian12-6.1-cgroupv2-mixed', 'dmesg.txt')
HOST = os.path.join(CORPUS, 'generated', 'host-6.18-fc-memcg-v1', 'dmesg.txt')
NGINX = os.path.join(CORPUS, 'seeds', 'seed003-nginx-kill-loop.txt')
CLAMD = os.path.join(CORPUS, 'seeds', 'seed004-3.2.59-32bit-lowmem.txt')
DOCKER = os.path.join(CORPUS, 'public', '3.x-docker-killed-as-result-of-limit-no-task-prefix.txt')
GROUP = os.path.join(CORPUS, 'public', '5.0-next-memcg-oom-group-kills-init-panic-printk-caller-lkml.txt')


def _read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def _noise():
    """The real boot log of a capture, up to its first OOM report."""
    data = _read(BOOT)
    return data[:data.rindex(b'\n', 0, data.index(oom_scan.START_MARKER)) + 1]


def _noise_bytes(size):
    """Whole lines of real boot noise, about size bytes."""
    noise = _noise()
    return (noise * (size // len(noise) + 1))[:size].rsplit(b'\n', 1)[0] + b'\n'


def _first_report():
    """The first report of the 6.18 capture, from its "invoked" line through its kill line."""
    data = _read(HOST)
    return data[:data.index(b'\n', data.index(b'Killed process 2211')) + 1]


def _summary(events):
    """What must not differ between two ways of reading the same bytes."""
    return json.dumps(oom_report.finish([dict(event) for event in events]), sort_keys=True, default=sorted)


def _scan_file(path, **kwargs):
    scanner = oom_scan.StreamScanner(year=2021, **kwargs.pop('scanner', {}))
    fd = os.open(str(path), os.O_RDONLY)
    try:
        scanner.scan_file(fd, **kwargs)
    finally:
        os.close(fd)
    return scanner.parser.close()


def _no_children_left():
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.parametrize('rel', [
    'generated/debian12-6.1-cgroupv2-mixed/dmesg.txt',
    'generated/debian12-6.1-cgroupv2-mixed/kern.log',
    'generated/debian12-6.1-cgroupv2-mixed/journal-short-iso.txt',
    'generated/debian12-6.1-cgroupv2-mixed/kmsg.txt',
    'generated/debian12-6.1-numa-mixed/kern-rfc5424.log',
    'seeds/seed003-nginx-kill-loop.txt',
    'public/4.19-photon-vmware-guest-log-prefix-memcg-tasks.txt',
])
@pytest.mark.parametrize('workers', [1, 2, 3])
def test_scan_file_gives_what_parse_text_gives(rel, workers):
    """A corpus file read by scan_file, with and without workers, gives parse_text's events."""
    path = os.path.join(CORPUS, rel)
    expected = oom_scan.parse_text(_read(path), year=2021)
    assert expected
    assert _summary(_scan_file(path, workers=workers, min_bytes=1)) == _summary(expected)
    _no_children_left()


def test_empty_file(tmp_path):
    empty = tmp_path / 'kern.log'
    empty.write_bytes(b'')
    assert _scan_file(empty, workers=2, min_bytes=0) == []
    events, loops, summary, notes = oom_events.collect(paths=[str(empty)], year=2021)
    assert (events, loops, summary['events'], notes) == ([], [], 0, [])


@pytest.mark.parametrize('where', ['invoked oom-k', 'Memory cgroup out of mem', 'Tasks state', '\n[   91.474547]'])
def test_report_across_the_boundary_of_two_worker_shares(tmp_path, monkeypatch, where):
    """The shares of two searching workers meet inside a report (inside its markers too): one event."""
    report = _first_report()
    before = _noise_bytes(300000)
    data = before + report + _noise_bytes(200000)
    boundary = len(before) + report.index(where.encode()) + len(where) // 2
    monkeypatch.setattr(oom_scan, 'shares', lambda size, count, fragment_end: [(0, boundary), (boundary, size)])
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    events = _scan_file(log, workers=2, min_bytes=1)
    assert len(events) == 1
    assert events[0]['complete'] and events[0]['victim']['pid'] == 2211
    assert _summary(events) == _summary(oom_scan.parse_text(data, year=2021))


def test_many_reports_parsed_in_groups_as_in_one_pass(tmp_path):
    """Reports every few hundred kB: the parsing workers' groups give the sequential events, in order."""
    pieces = [_read(HOST), _read(CLAMD), _read(NGINX), _read(BOOT)]
    data = b''.join(_noise_bytes(150000 + 7919 * index) + pieces[index % len(pieces)] for index in range(24))
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    sequential = oom_scan.parse_text(data, year=2021)
    assert len(sequential) == 6 * (5 + 1 + 20 + 14)
    for workers in (2, 4):
        assert _summary(_scan_file(log, workers=workers, min_bytes=1)) == _summary(sequential)
    _no_children_left()


@pytest.mark.parametrize('spread', [0, 20000])
def test_a_memory_oom_group_kill_is_never_split_between_parsing_workers(tmp_path, spread):
    """A file is cut for the parsing workers only at a report's first line, and the kernel prints
    every member's kill of a memory.oom.group under oom_lock before the next report begins: each
    group stays one event with its 12 victims, however many workers parse the file.  spread puts
    that many bytes of boot noise before each member's kill line (a busy console; the group's own
    line follows the selected victim's kill line in the same call, oom_kill_process)."""
    report = _read(GROUP)
    if spread:
        noise = _noise_bytes(spread)
        report = b''.join((noise if b'Killed process' in line and b'process 9188 ' not in line else b'') + line
                          for line in report.splitlines(True))
    data = b''.join(_noise_bytes(60000 + 7919 * index) + report for index in range(16))
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    sequential = oom_scan.parse_text(data, year=2021)
    assert [len(event['victims']) for event in sequential] == [12] * 16
    spans = []
    at = 0
    for dummy in range(16):
        first = data.index(b'Killed process 9188', at)
        last = data.index(b'Killed process 9192', first)
        spans.append((first, last))
        at = last
    fd = os.open(str(log), os.O_RDONLY)
    try:
        starts, kills, fragments = oom_scan.file_markers(fd, len(data), 0, len(data), 0)
        for workers in (2, 3, 4, 6):
            cuts = oom_scan.groups(fd, len(data), starts, kills, fragments, workers)
            assert len(cuts) == workers
            assert not [low for low, dummy in cuts for first, last in spans if first < low <= last]
    finally:
        os.close(fd)
    for workers in (2, 3, 4, 6):
        assert _summary(_scan_file(log, workers=workers, min_bytes=1)) == _summary(sequential)
    _no_children_left()


def test_rate_limited_kills_far_into_a_large_log(tmp_path):
    """Kill lines without their reports (rate-limited), past the head searched for fragments."""
    nginx = _read(NGINX)
    data = _noise_bytes(400000) + nginx + _noise_bytes(300000)
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    events = oom_report.finish(_scan_file(log, workers=2, min_bytes=1, scanner={'fragment_bytes': 4096}))
    assert len(events) == 20
    assert [e['victim']['pid'] for e in events[:2]] == [8356, 8353]
    assert all(e['cause'] == 'host' and not e['complete'] for e in events)
    assert oom_report.kill_loops(events)[0]['kills'] == 20
    # The selection and the kill line; the task-table row before the first starts nothing.
    assert [event['lines'] for event in events[:2]] == [2, 2]
    assert _summary(events) == _summary(oom_scan.parse_text(data, year=2021))


def test_report_that_lost_its_first_lines_far_into_a_large_log(tmp_path):
    """Past the head, a kill line after a report body starts its event at the body's first report-only line."""
    report = _first_report()
    cut = report[report.rindex(b'\n', 0, report.index(b'Memory cgroup stats for')) + 1:]
    data = _noise_bytes(300000) + cut + _noise_bytes(100000)
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    events = oom_report.finish(_scan_file(log, workers=2, min_bytes=1, scanner={'fragment_bytes': 4096}))
    assert len(events) == 1
    event = events[0]
    assert event['victim']['pid'] == 2211 and not event['complete']
    assert event['tasks'][0]['name'] == 'python3' and event['constraint'] == 'CONSTRAINT_MEMCG'
    assert event['lines'] == cut.count(b'\n')
    assert event['cause'] == 'memcg_limit'


def test_two_line_kill_of_old_kernels(tmp_path):
    """3.2: "Out of memory: Kill process N ... or sacrifice child" then "Killed process N": one event with both."""
    clamd = _read(CLAMD)
    data = _noise_bytes(250000) + clamd + _noise_bytes(250000)
    kill = data.index(b'Out of memory: Kill process')
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    for cut in (None, kill + 5, data.index(b'\n', kill) + 1):
        shares = None if cut is None else [(0, cut), (cut, len(data))]
        if shares:
            original = oom_scan.shares
            oom_scan.shares = lambda size, count, fragment_end, shares=shares: shares
        try:
            events = oom_report.finish(_scan_file(log, workers=2, min_bytes=1))
        finally:
            if shares:
                oom_scan.shares = original
        assert len(events) == 1
        event = events[0]
        assert event['selected']['pid'] == event['victim']['pid'] == 21832
        assert event['complete'] and event['cause'] == 'lowmem'


@pytest.mark.parametrize('parallel', [False, True])
def test_fragments_are_looked_for_in_the_head_of_an_input(tmp_path, parallel):
    """A fragment with neither an "invoked" nor a kill line: found before fragment_bytes, not after."""
    fragment = _read(DOCKER)
    assert oom_scan.START_MARKER not in fragment and oom_scan.KILL_MARKER not in fragment
    noise = _noise_bytes(200000)
    data = noise + fragment + noise
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    options = {'workers': 2, 'min_bytes': 1 if parallel else len(data) + 1}
    inside = _scan_file(log, scanner={'fragment_bytes': len(noise) + len(fragment)}, **options)
    assert len(inside) == 1 and inside[0]['limit_memcg'].startswith('/docker/')
    assert _scan_file(log, scanner={'fragment_bytes': len(noise)}, **options) == []
    # The default reaches 8 MiB into each input.
    assert oom_scan.FRAGMENT_SCAN_BYTES == 8 << 20
    assert len(_scan_file(log, **options)) == 1


def test_fragments_in_a_stream_past_its_head():
    """In chunks (gzip, journal, ring buffer) the input's offset decides, not the chunk's."""
    fragment = _read(DOCKER)
    noise = _noise_bytes(100000)
    data = noise + fragment + noise
    for limit, found in ((len(noise) + len(fragment), 1), (len(noise), 0)):
        scanner = oom_scan.StreamScanner(fragment_bytes=limit)
        scanner.scan_chunks(data[i:i + 8192] for i in range(0, len(data), 8192))
        assert len(scanner.parser.close()) == found


def test_a_failing_worker_has_its_part_done_by_the_parent(tmp_path, monkeypatch):
    """Searching and parsing workers that die: the same events, no process left behind."""
    data = b''.join(_noise_bytes(100000) + piece for piece in (_read(HOST), _read(NGINX), _read(CLAMD)) * 2)
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    expected = _summary(oom_scan.parse_text(data, year=2021))

    def dies(*args):
        os._exit(9)
    monkeypatch.setattr(oom_scan, '_share_markers_job', dies)
    assert _summary(_scan_file(log, workers=2, min_bytes=1)) == expected
    _no_children_left()
    monkeypatch.undo()

    def fails(self, fd, size, low, high, *rest):
        if low > 0:
            raise OSError('the file was truncated under the mapping')
        return original(self, fd, size, low, high, *rest)
    original = oom_scan.StreamScanner._scan_group
    monkeypatch.setattr(oom_scan.StreamScanner, '_scan_group', fails)
    assert _summary(_scan_file(log, workers=3, min_bytes=1)) == expected
    _no_children_left()


def test_a_log_dense_with_markers_is_read_sequentially(tmp_path, monkeypatch):
    data = _noise_bytes(50000) + _read(NGINX) * 3
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    monkeypatch.setattr(oom_scan, 'MAX_SHARE_MARKERS', 10)
    events = _scan_file(log, workers=2, min_bytes=1)
    assert len(events) == 60
    assert _summary(events) == _summary(oom_scan.parse_text(data, year=2021))


def test_workers_count_into_the_sink(tmp_path, monkeypatch):
    """collect(): the workers' counts and kept events merge into what one pass gives."""
    data = b''.join(_noise_bytes(120000 + index) + piece
                    for index, piece in enumerate((_read(NGINX), _read(HOST), _read(CLAMD), _read(NGINX), _read(BOOT))))
    log = tmp_path / 'kern.log'
    log.write_bytes(data)
    monkeypatch.setattr(oom_scan, 'cpu_count', lambda: 3)
    results = []
    for minimum in (1 << 40, 1):
        monkeypatch.setattr(oom_scan, 'PARALLEL_MIN_BYTES', minimum)
        results.append(oom_events.collect(paths=[str(log)], year=2021, keep=7))
    assert results[0] == results[1]
    events, loops, summary, notes = results[1]
    assert summary['events'] == 20 + 5 + 1 + 20 + 14 and len(events) == 7
    assert [loop['comm'] for loop in loops][:1] == ['nginx'] and loops[0]['kills'] == 40
    _no_children_left()


def test_sink_merge_is_one_sink_over_both_parts():
    events = oom_report.finish(oom_scan.parse_text(_read(NGINX) + _read(HOST) + _read(NGINX), year=2021))
    whole = oom_report.EventSink(keep=5)
    first = oom_report.EventSink(keep=5)
    for event in events:
        whole.add(event)
    for event in events[:13]:
        first.add(event)
    second = oom_report.EventSink(keep=5)
    for event in events[13:]:
        second.add(event)
    first.merge(second.export())
    assert (first.summary(), first.kill_loops(), first.recent) == (whole.summary(), whole.kill_loops(), whole.recent)


def test_batched_prefixes_give_the_line_by_line_parse(monkeypatch):
    """The one-regex-pass paths for dmesg and syslog windows: the same events and lines as split_prefix per line."""
    files = []
    for top, dummy, names in os.walk(CORPUS):
        files.extend(os.path.join(top, name) for name in names if name.endswith(('.txt', '.log')))
    assert len(files) > 80
    batched = [_summary(oom_scan.parse_text(_read(path), year=2021)) for path in sorted(files)]
    monkeypatch.setattr(oom_scan, '_BATCH_LINES', 1 << 30)
    assert [_summary(oom_scan.parse_text(_read(path), year=2021)) for path in sorted(files)] == batched


@pytest.mark.parametrize('message', [
    'Mem-Info:', 'Node 0 Normal free:8056kB min:8048kB low:10060kB', '[ pid ]   uid  tgid total_vm', '[  123]     0   123',
    '8422402 pages HighMem', 'python3 invoked oom-killer: gfp_mask=0xcc0', 'x cpuset=/ mems_allowed=0',
    'Out of memory: Killed process 1 (x)', 'oom_reaper: reaped process 1 (x)', 'memory: usage 1kB, limit 1kB, failcnt 0',
    'DMA32: 1*4kB (U) = 4kB', 'CPU: 0 PID: 1 Comm: x Not tainted 6.1.0', 'Task in /a killed as a result of limit of /a',
])
def test_lines_a_pattern_matches_are_never_skipped(message):
    assert not oom_report.matches_nothing(message)


@pytest.mark.parametrize('message', ['dump_header+0x4a/0x1f0', 'active_anon:0 inactive_anon:0', 'rss 66899968',
                                     '[<c0173ff8>] ? out_of_memory+0x225/0x283', 'Call Trace:', 'Hardware name: QEMU'])
def test_lines_no_pattern_matches_are_skipped(message):
    assert oom_report.matches_nothing(message)


def _alive(pid):
    """Running (not gone, not a zombie waiting for its new parent)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except (IOError, OSError):
        return False


def test_workers_die_with_the_module(tmp_path):
    """The module killed (a task timeout) while its workers run: they are killed too."""
    pids = tmp_path / 'pids'
    script = (
        'import os, time\n'
        'from ansible_collections.oomguard.linux.plugins.module_utils import oom_scan\n'
        'def job():\n'
        '    with open(%r, "a") as out:\n'
        '        out.write("%%d\\n" %% os.getpid())\n'
        '    time.sleep(60)\n'
        'oom_scan.in_workers([job, job])\n' % str(pids))
    module = subprocess.Popen([sys.executable, '-c', script], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        for dummy in range(200):
            if pids.exists() and len(pids.read_text().split()) == 2:
                break
            time.sleep(0.05)
        workers = [int(pid) for pid in pids.read_text().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    finally:
        module.kill()
        module.wait()
    try:
        for dummy in range(100):
            if not any(_alive(pid) for pid in workers):
                break
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers)
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize('workers', [1, 3])
def test_scan_file_reads_only_max_bytes(tmp_path, workers):
    """The byte budget of a plain file: its first max_bytes only, in workers as in one pass."""
    head = b''.join(_noise_bytes(120000 + index) + _read(NGINX) for index in range(3))
    log = tmp_path / 'kern.log'
    log.write_bytes(head + _noise_bytes(300000) + _read(NGINX))
    events = _scan_file(log, workers=workers, min_bytes=1, max_bytes=len(head))
    assert len(events) == 60
    assert _summary(events) == _summary(oom_scan.parse_text(head, year=2021))
    _no_children_left()


def test_a_line_without_end_is_not_carried_whole():
    """A stream of a 40 MiB line: skipped, counted, and never held whole (a hard memory ceiling)."""
    import tracemalloc
    block = b'x' * (1 << 20)
    scanner = oom_scan.StreamScanner(year=2021)
    tracemalloc.start()
    try:
        scanner.scan_chunks(iter([block] * 40 + [b'\n' + _read(NGINX)]))
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scanner.long_lines == 1 and len(scanner.parser.close()) == 20
    assert peak_bytes < 16 << 20
