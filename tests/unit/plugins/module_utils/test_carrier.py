# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The carrier layer: real reports re-rendered as mail, quotes, pagers and consoles give the same events."""

import os
import textwrap

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import _carrier, oom_report, oom_scan

CORPUS = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'unit', 'fixtures', 'oom_reports')
GENERATED = os.path.join(CORPUS, 'generated')
CLEAN = sorted(os.path.join(GENERATED, name, kind) for name in os.listdir(GENERATED)
               for kind in ('dmesg.txt', 'kern.log') if os.path.exists(os.path.join(GENERATED, name, kind)))


def _text(path):
    with open(path, encoding='utf-8') as handle:
        return handle.read()


def _events(text):
    return oom_report.finish(oom_scan.parse_text(text, year=2024))


def _shape(events):
    return [(event['cause'], (event['victim'] or {}).get('pid'), (event['victim'] or {}).get('comm'))
            for event in events]


# -- carriers, rendered by the test from the clean captures -----------------------

def _wrap(text, *widths):
    """A mail client's hard wrap at each width in turn (at spaces; longer words cut)."""
    for width in widths:
        lines = []
        for line in text.split('\n'):
            lines.extend(textwrap.wrap(line, width, break_on_hyphens=False, drop_whitespace=True) or [''])
        text = '\n'.join(lines)
    return text


def _rewrap(text, width):
    """A reply's client re-wrapping quoted lines longer than width: at the last
    space that fits (not inside the quote marker); the rest, unquoted, on its own line."""
    out = []
    for line in text.split('\n'):
        while len(line) > width:
            space = line.rfind(' ', 3, width + 1)
            if space < 0:
                break  # one long word: left as it is
            out.append(line[:space])
            line = line[space + 1:]
        out.append(line)
    return '\n'.join(out)


def _quote(text, marker):
    return '\n'.join(marker + line if line else marker.rstrip() for line in text.split('\n'))


def _pager(text, width=80):
    """less -S: a line longer than the screen is cut and ends in '>'."""
    return '\n'.join(line[:width - 1] + '>' if len(line) > width else line for line in text.split('\n'))


def _interleaved(text):
    """A console: harness lines, trim markers and mkfs progress between the kernel's."""
    noise = ['# ok 6 memcg_stress_test', '<trim>', 'Writing inode tables: done', '# not ok 7 skipped']
    out = []
    for number, line in enumerate(text.split('\n')):
        out.append(line)
        if number % 7 == 3:
            out.append(noise[number % len(noise)])
    return '\n'.join(out)


def _terminal_copy(text, width=169):
    """journalctl copied from a terminal into a Markdown list (kmille/find-bytes, in the public corpus):
    each line broken into screen rows at the width, whatever is there; rows padded with spaces to the
    width; now and then a padded row joined with the next (the copy took it for a soft wrap); every
    row indented 2 columns."""
    rows = []
    for line in text.split('\n'):
        rows.extend([line[at:at + width] for at in range(0, len(line), width)] or [''])
    out = []
    for number, row in enumerate(rows):
        row = row.ljust(width) if row else row
        if out and number % 5 == 0 and len(out[-1]) == width + 2 and row:
            out[-1] += row
        else:
            out.append('  ' + row)
    return '\n'.join(out)


CARRIERS = {
    'wrapped-72': lambda text: _wrap(text, 72),
    'wrapped-100-then-72': lambda text: _wrap(text, 100, 72),
    'quoted-once': lambda text: _quote(text, '> '),
    'quoted-twice': lambda text: _quote(text, '> > '),
    'quoted-twice-tight': lambda text: _quote(text, '>> '),
    'quoted-bare': lambda text: _quote(text, '>'),
    'quoted-and-wrapped': lambda text: _quote(_wrap(text, 72), '> '),
    'wrapped-72-then-100': lambda text: _wrap(text, 72, 100),
    'wrapped-quoted-rewrapped': lambda text: _rewrap(_quote(_wrap(text, 72), '> '), 72),
    'interleaved': _interleaved,
    'terminal-copy': _terminal_copy,
}


@pytest.mark.parametrize('carrier', sorted(CARRIERS))
@pytest.mark.parametrize('path', CLEAN, ids=lambda path: os.path.relpath(path, GENERATED))
def test_a_carrier_gives_the_same_causes_and_victims(path, carrier):
    clean = _text(path)
    expected = _events(clean)
    assert expected and all(not event['carrier_repairs'] for event in expected)
    events = _events(CARRIERS[carrier](clean))
    assert _shape(events) == _shape(expected)
    assert all(event['carrier_repairs'] for event in events)


# A cause the pager-cut copy does not give: the field that decides it was past column 80, and the
# cause is unknown with the reason naming the cut (never a guess: a parent's limit is not turned into
# the task's own, a cpuset squeeze into a host OOM). Only a kill line whose invoked line the cut took
# whole ("oom-killer:" past the column) reads as a host OOM, as any report fragment does.
LOST_REASONS = ('a pager cut the oom-kill: line before its constraint', 'but a pager cut the oom-kill: line before oom_memcg',
                'a pager cut the invoked line before its order')


@pytest.mark.parametrize('path', CLEAN, ids=lambda path: os.path.relpath(path, GENERATED))
def test_pager_cut_keeps_the_causes_and_names_what_was_lost(path):
    expected = _events(_text(path))
    events = _events(_pager(_text(path)))
    assert len(events) == len(expected)
    for event, clean in zip(events, expected):
        notes = event['carrier_repairs']
        assert any(note.startswith('pager cut: ') for note in notes), notes
        if event['cause'] != clean['cause']:
            if event['cause'] == 'host' and event['invoker'] is None:
                assert clean['cause'] == 'manual', (clean['cause'], notes)
            else:
                assert event['cause'] == 'unknown', (clean['cause'], event['cause'], notes)
                assert any(reason in event['unknown_reason'] for reason in LOST_REASONS), event['unknown_reason']
                assert any(note.startswith('pager cut: ') for note in notes), notes
        if event['victim'] is not None:
            assert (event['victim']['pid'], event['victim']['comm']) == (clean['victim']['pid'], clean['victim']['comm'])
        else:
            assert any(note.startswith('pager cut: kill line after ') for note in notes), notes


@pytest.mark.parametrize('pager_width, wrap_width', [(120, 72), (120, 100), (80, 72)])
@pytest.mark.parametrize('path', CLEAN, ids=lambda path: os.path.relpath(path, GENERATED))
def test_a_pager_cut_then_wrapped_reads_as_the_pager_cut(path, pager_width, wrap_width):
    """A pager's copy pasted into a mail and wrapped: the '>' ends the last piece of the line, and the
    line reads as the pager-cut one does (same causes and victims, the same losses named; the count of cut
    stack and meminfo lines may differ, as a wrapped rest of those is not always told from noise)."""
    cut = _pager(_text(path), pager_width)
    expected = _events(cut)
    events = _events(_wrap(cut, wrap_width))
    assert _shape(events) == _shape(expected)

    def named(event):
        return [note for note in event['carrier_repairs'] if note.startswith('pager cut: ') and not note.endswith(
            ('other line', 'other lines'))]
    assert any(named(event) for event in expected)
    # Each event names at least what the pager-cut copy names (a wrapped window may also carry the
    # next report's cut invoked line into its notes).
    assert all(set(named(alone)) <= set(named(event)) for event, alone in zip(events, expected))


def test_pager_cut_dmesg_keeps_every_victim():
    """At 80 columns a dmesg kill line keeps its pid and comm; the sizes are named as lost."""
    path = os.path.join(GENERATED, 'debian12-6.1-cgroupv2-mixed', 'dmesg.txt')
    events = _events(_pager(_text(path)))
    assert all(event['victim'] for event in events if event['cause'] != 'manual')
    assert any('pager cut: kill line after comm' in event['carrier_repairs'] for event in events)


def test_quoted_dmesg_T_then_raw_dmesg_of_the_same_oom_is_one_event_per_report():
    """A mail quoting `dmesg -T`, then the raw dmesg of the same OOMs: timestamps go back, nothing is doubled or lost."""
    directory = os.path.join(GENERATED, 'debian12-6.1-memcg_v1')
    raw = _text(os.path.join(directory, 'dmesg.txt'))
    human = _text(os.path.join(directory, 'dmesg-T.txt'))
    text = _quote(human, '> ') + '\nThe same OOM in the raw dmesg:\n\n' + raw
    expected = _events(raw)
    events = _events(text)
    assert _shape(events) == _shape(expected)
    for event in events:
        assert 'duplicate copy' in event['carrier_repairs']
        assert event['timestamp'] and event['uptime_s'] is not None  # one from each copy


def test_two_real_kills_of_the_same_victim_stay_two_events():
    """sysrq f twice, the same child killed: same pid and sizes, different times: not a copy."""
    events = _events(_quote(_text(os.path.join(CORPUS, 'public',
                                               '4.4-next-sysrq-f-order-minus1-same-child-kill-loop-lkml.txt')), '> '))
    assert len(events) == 5
    assert not any('duplicate copy' in event['carrier_repairs'] for event in events)


# -- each rule on small real excerpts ------------------------------------------------

# From generated/debian12-6.1-cgroupv2-mixed/dmesg.txt (lines 604-605).
OOM_KILL = ('[   81.420460] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,'
            'oom_memcg=/system.slice/oomgen-memcg-v2.service,task_memcg=/system.slice/oomgen-memcg-v2.service,'
            'task=memhog,pid=369,uid=0')
KILLED = ('[   81.427223] Memory cgroup out of memory: Killed process 369 (memhog) total-vm:79500kB, '
          'anon-rss:65036kB, file-rss:2356kB, shmem-rss:0kB, UID:0 pgtables:192kB oom_score_adj:0')


def test_unquote_keeps_the_rest_byte_exact():
    lines, repairs = _carrier.repair('> > ' + KILLED + '\n>> ' + OOM_KILL + '\n>' + KILLED)
    assert [line for line, cut in lines] == [KILLED, OOM_KILL, KILLED]
    assert repairs == ['unquoted 2 levels']


def test_kill_line_cut_mid_field_is_glued_without_a_space():
    head, tail = OOM_KILL.split('pid=3', 1)
    lines, repairs = _carrier.repair(head + 'pid=3\n' + '69,uid=0\n' + KILLED)
    assert [line for line, cut in lines] == [OOM_KILL, KILLED]
    assert repairs == ['rejoined 1 wrapped line'] and tail == '69,uid=0'


def test_wrapped_kill_line_is_rejoined_with_its_space():
    wrapped = textwrap.wrap(KILLED, 72)
    assert len(wrapped) == 3
    lines, repairs = _carrier.repair('\n'.join(wrapped))
    assert [line for line, cut in lines] == [KILLED]
    assert repairs == ['rejoined 2 wrapped lines']


def test_a_bare_paste_wrapped_with_format_flowed_spaces_is_rejoined():
    """A kill line pasted without its prefix, wrapped by a mail client that kept the soft breaks'
    trailing spaces (RFC 3676 format=flowed): the fields are one line again; a line with no
    trailing space before it is left alone (public/5.6-rc5-memcg-soft-lockup-repro-*)."""
    text = ('> Memory cgroup out of memory: Killed process 808 (repro) total-vm:41944kB, \n'
            '> anon-rss:35344kB, file-rss:504kB, shmem-rss:0kB, UID:0 pgtables:108kB \n'
            '> oom_score_adj:0\n'
            '> watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [repro:806]')
    lines, repairs = _carrier.repair(text)
    assert [line for line, cut in lines] == [
        'Memory cgroup out of memory: Killed process 808 (repro) total-vm:41944kB, anon-rss:35344kB, '
        'file-rss:504kB, shmem-rss:0kB, UID:0 pgtables:108kB oom_score_adj:0',
        'watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [repro:806]']
    assert repairs == ['unquoted 1 level', 'rejoined 2 wrapped lines']


def test_unrelated_lines_are_not_glued():
    """Prose after a quoted block, a harness line after a long kernel line, a blank line: never joined."""
    text = '> ' + KILLED + '\nThis is where it died.\n' + KILLED + '\n# ok 6 oom01\n' + KILLED + '\n\nmemory: usage'
    lines, repairs = _carrier.repair(text)
    assert [line for line, cut in lines] == [KILLED, KILLED, KILLED]
    assert 'dropped 3 interleaved lines' in repairs


def test_glued_records_are_split():
    lines, repairs = _carrier.repair(OOM_KILL + KILLED)
    assert [line for line, cut in lines] == [OOM_KILL, KILLED]
    assert repairs == ['split 1 glued record']


def test_pager_cut_names_the_last_whole_field():
    lines, repairs = _carrier.repair(KILLED[:79] + '>\n' + OOM_KILL[:79] + '>\n[   81.382304]  <TASK>')
    assert [cut for line, cut in lines] == [True, True, False]
    assert lines[0][0] == KILLED[:79] and lines[2][0].endswith('<TASK>')
    assert repairs == ['pager cut: kill line after comm', 'pager cut: oom-kill line after cpuset']


def test_dmesg_H_stamps_in_quoted_mail():
    """dmesg -H: a minute header, then deltas; the messages are read, the stamps dropped."""
    text = '\n'.join([
        '> [Nov23 01:45] memhog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0',
        '> [  +0.038156] ' + OOM_KILL.split('] ', 1)[1],
        '> [  +0.006763] ' + KILLED.split('] ', 1)[1],
    ])
    events = _events(text)
    assert _shape(events) == [('memcg_limit', 369, 'memhog')]
    assert events[0]['carrier_repairs'] == ['unquoted 1 level', 'dropped 3 dmesg -H stamps']


def test_a_clean_window_is_left_alone():
    text = _text(os.path.join(GENERATED, 'debian12-6.1-memcg_v1', 'dmesg.txt'))
    assert all(event['carrier_repairs'] == [] for event in _events(text))
    assert _carrier.repair(OOM_KILL + '\n' + KILLED) == ([[OOM_KILL, False], [KILLED, False]], [])


# -- the scanner around the layer: chunks, workers, markers the wrap cut -------------

@pytest.mark.parametrize('chunk_bytes', [257, 4096, 65536])
def test_wrapped_reports_cut_between_chunks_are_carried_over(chunk_bytes):
    """A window whose wrapped kill line goes on in the next chunk waits for it."""
    text = _quote(_wrap(_text(os.path.join(GENERATED, 'debian12-6.1-cgroupv2-mixed', 'kern.log')), 72), '> ')
    data = text.encode()
    scanner = oom_scan.StreamScanner(year=2024)
    scanner.scan_chunks(data[at:at + chunk_bytes] for at in range(0, len(data), chunk_bytes))
    assert _shape(oom_report.finish(scanner.parser.close())) == _shape(_events(text))


def test_wrapped_log_in_forked_workers(tmp_path):
    """A wrapped log large enough for the parallel path: the same events as read in one piece."""
    text = _wrap(_text(os.path.join(GENERATED, 'debian12-6.1-cgroupv2-mixed', 'kern.log')), 72)
    log = tmp_path / 'mail.txt'
    log.write_text(text * 8)
    scanner = oom_scan.StreamScanner(year=2024)
    fd = os.open(str(log), os.O_RDONLY)
    try:
        scanner.scan_file(fd, workers=2, min_bytes=1)
    finally:
        os.close(fd)
    assert _shape(oom_report.finish(scanner.parser.close())) == _shape(_events(text)) * 8


def test_start_marker_split_by_the_wrap():
    """'invoked' at the end of one line, 'oom-killer:' on the next: the report starts on the first."""
    text = ('Nov 23 01:46:11 oomgen-vm kernel: [   91.737923] memhog invoked\n'
            'oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n'
            + _wrap('Nov 23 01:46:11 oomgen-vm kernel: ' + OOM_KILL, 72) + '\n'
            + 'Nov 23 01:46:11 oomgen-vm kernel: [   91.755891] Memory cgroup out of\nmemory: Killed process 369\n'
            '(memhog) total-vm:79500kB, anon-rss:65036kB, file-rss:2356kB,\nshmem-rss:0kB, UID:0 pgtables:192kB\n'
            'oom_score_adj:0\n')
    events = _events(text)
    assert _shape(events) == [('memcg_limit', 369, 'memhog')]
    assert events[0]['invoker']['comm'] == 'memhog' and events[0]['order'] == 0 and events[0]['complete']
    assert events[0]['victim']['total_vm_kb'] == 79500 and events[0]['victim']['oom_score_adj'] == 0


def test_oom_killer_in_another_programs_text_starts_nothing():
    text = 'Nov 23 01:46:11 host earlyoom[321]: oom-killer: disabled, earlyoom acts first\n'
    assert _events(text) == []


def test_a_cut_at_a_fixed_column_is_glued_without_a_space():
    """seeds/seed004: zone lines cut at column 199 mid-word ("isolate" + "d(file)")."""
    lines, repairs = _carrier.repair(_text(os.path.join(CORPUS, 'seeds', 'seed004-3.2.59-32bit-lowmem.txt')))
    zones = [line for line, cut in lines if ' free:' in line and ' min:' in line and 'present:' in line]
    assert len(zones) == 2 and all('isolated(file):0kB present:' in line for line in zones)
    assert all('writeback_tmp:0kB pages_scanned:' in line for line in zones)
    assert 'rejoined 4 wrapped lines' in repairs


CARRIER_FIXTURES = os.path.join(CORPUS, '..', 'carriers')


@pytest.mark.parametrize('marker', ['', '> ', '> > '])
def test_real_dmesg_H_capture_gives_the_events_of_the_raw_dmesg(marker):
    """This host's own OOMs as `dmesg -H` (pasted as is, or quoted in mail) and as plain dmesg."""
    raw = _events(_text(os.path.join(CARRIER_FIXTURES, 'host-6.18-fc-memcg-dmesg.txt')))
    human = _events(_quote(_text(os.path.join(CARRIER_FIXTURES, 'host-6.18-fc-memcg-dmesg-H.txt')), marker)
                    if marker else _text(os.path.join(CARRIER_FIXTURES, 'host-6.18-fc-memcg-dmesg-H.txt')))
    assert _shape(raw) == [('memcg_limit', 24733, 'python'), ('memcg_limit', 28686, 'python')]
    assert _shape(human) == _shape(raw)
    for event, clean in zip(human, raw):
        assert event['victim'] == clean['victim'] and event['memcg'] == clean['memcg']
        assert event['time'] is None and any(note.startswith('dropped ') and 'dmesg -H' in note
                                             for note in event['carrier_repairs'])


@pytest.mark.parametrize('columns, expected', [
    # 80 columns after a 45-column short-iso prefix: the oom-kill: line loses its constraint and
    # each kill line its comm, so no cause and no victim is read, and each loss is named.
    (80, [('unknown', None, None, 'a pager cut the oom-kill: line before its constraint'),
          ('unknown', None, None, 'a pager cut the oom-kill: line before its constraint')]),
    # 120 columns: the memcg kill keeps its victim but loses oom_memcg (own or parent limit?); the
    # SysRq OOM is read whole enough (order=-1).
    (120, [('unknown', 331, 'python3', 'but a pager cut the oom-kill: line before oom_memcg'),
           ('manual', 341, 'sshd', None)]),
])
def test_real_less_S_screen_of_a_real_journal(columns, expected):
    """The VM's real journal paged in a real less -S and copied off the screen (carriers/PROVENANCE.md)."""
    events = _events(_text(os.path.join(CARRIER_FIXTURES,
                                        'vm-debian12-6.1-journalctl-short-iso-less-S-%d-columns.txt' % columns)))
    found = [(event['cause'], (event['victim'] or {}).get('pid'), (event['victim'] or {}).get('comm'),
              event.get('unknown_reason')) for event in events]
    assert [row[:3] for row in found] == [row[:3] for row in expected]
    for (cause, dummy, dummy2, reason), row in zip(found, expected):
        if row[3] is not None:
            assert row[3] in reason
    assert all(any(note.startswith('pager cut: kill line after ') for note in event['carrier_repairs'])
               for event in events)
