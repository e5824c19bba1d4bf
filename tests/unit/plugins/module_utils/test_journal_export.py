# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""journald exports given as path: every journalctl output format of one real
boot gives the events its clean dmesg gives; only kernel entries count;
binary MESSAGE fields; the read limits hold.

The exports are derived from the real boot (see
fixtures/oom_reports/journal-exports/PROVENANCE.md).
"""

import gzip
import json
import os
import struct

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import _journal_export, oom_events, oom_scan

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.abspath(os.path.join(HERE, '..', '..', 'fixtures', 'oom_reports'))
BOOT = 'debian12-6.1-cgroupv2-mixed'
DMESG = os.path.join(FIXTURES, 'generated', BOOT, 'dmesg.txt')
EXPORTS = os.path.join(FIXTURES, 'journal-exports')
# expected.yml, _directories: generated/debian12-6.1-cgroupv2-mixed
BY_CAUSE = {'memcg_limit': 11, 'parent_memcg_limit': 1, 'manual': 1, 'host': 1}
# Formats that keep the kernel's own stamp (_SOURCE_MONOTONIC_TIMESTAMP or the short-monotonic prefix).
WITH_UPTIME = ('json', 'json-seq', 'json-pretty', 'verbose', 'export', 'short-monotonic')
# ... and the realtime stamp and the host.
WITH_REALTIME = ('json', 'json-seq', 'json-pretty', 'verbose', 'export')


def export_path(fmt):
    return os.path.join(EXPORTS, 'derived-from-%s.%s.txt.gz' % (BOOT, fmt))


def _victims(events):
    return [(event['cause'], (event.get('victim') or {}).get('comm'), (event.get('victim') or {}).get('pid'))
            for event in events]


@pytest.fixture(scope='module')
def clean():
    events, loops, summary, notes = oom_events.collect(paths=[DMESG])
    assert summary['by_cause'] == BY_CAUSE and notes == []
    return events, loops


@pytest.mark.parametrize('fmt', _journal_export.FORMATS)
def test_each_format_gives_the_events_of_the_clean_dmesg(fmt, clean):
    events, loops, summary, notes = oom_events.collect(paths=[export_path(fmt)])
    assert notes == []
    assert summary['by_cause'] == BY_CAUSE
    assert _victims(events) == _victims(clean[0])
    assert [loop['comm'] for loop in loops] == [loop['comm'] for loop in clean[1]]
    if fmt in WITH_UPTIME:
        assert [e['uptime_s'] for e in events] == [e['uptime_s'] for e in clean[0]]
    if fmt in WITH_REALTIME:
        # __REALTIME_TIMESTAMP in microseconds, _HOSTNAME
        assert events[0]['timestamp'] == '2026-11-23T01:46:01.295183+00:00'
        assert set(e['host'] for e in events) == {'oomgen-vm'}


@pytest.mark.parametrize('fmt', _journal_export.FORMATS)
def test_the_format_is_detected_from_the_first_bytes(fmt, tmp_path):
    with gzip.open(export_path(fmt), 'rb') as handle:
        head = handle.read(_journal_export.HEAD_BYTES)
    assert _journal_export.detect(head) == fmt
    # not from the name: the same bytes under a log's name
    renamed = tmp_path / 'kern.log'
    renamed.write_bytes(head)
    with open(str(renamed), 'rb') as handle:
        assert _journal_export.detect(handle.read(64 << 10)) == fmt


@pytest.mark.parametrize('name', ['dmesg.txt', 'kmsg.txt', 'kern.log', 'journal-short-iso.txt',
                                  'journal-short-precise.txt', 'journal-short.txt', 'dmesg-T.txt',
                                  'kern-rfc5424.log'])
def test_other_logs_are_not_taken_for_exports(name):
    with open(os.path.join(FIXTURES, 'generated', BOOT, name), 'rb') as handle:
        assert _journal_export.detect(handle.read(_journal_export.HEAD_BYTES)) is None


def test_json_lines_of_other_programs_are_read_as_logs(tmp_path):
    # a container runtime's json-file log: no journald field, so not an export
    with open(DMESG, encoding='utf-8') as handle:
        rows = [json.dumps({'log': line, 'stream': 'stdout', 'time': '2026-11-23T01:46:01Z'}) for line in handle]
    data = '\n'.join(rows).encode()
    assert _journal_export.detect(data[:_journal_export.HEAD_BYTES]) is None
    assert _journal_export.detect(b'\x1e' + data[:1000]) is None


def test_a_gzip_export_is_detected_after_decompression(tmp_path):
    with gzip.open(export_path('export'), 'rb') as handle:
        (tmp_path / 'boot.export.gz').write_bytes(gzip.compress(handle.read()))
    dummy, dummy2, summary, notes = oom_events.collect(paths=[str(tmp_path / 'boot.export.gz')])
    assert summary['by_cause'] == BY_CAUSE and notes == []


def _json_entry(message, **fields):
    entry = {'__REALTIME_TIMESTAMP': '1795398361295183', '_BOOT_ID': '0' * 32, '_HOSTNAME': 'h1',
             '_TRANSPORT': 'kernel', 'SYSLOG_IDENTIFIER': 'kernel', 'MESSAGE': message}
    entry.update(fields)
    return json.dumps(dict((k, v) for k, v in entry.items() if v is not None))


def _one_report():
    """The first kill of the boot (a memcg OOM), its kernel messages as they were."""
    with open(DMESG, encoding='utf-8') as handle:
        # "[   81.402374] message", or a record's next line, indented
        lines = [line.split('] ', 1)[1].rstrip('\n') if line.startswith('[') else line.strip() for line in handle]
    start = next(i for i, line in enumerate(lines) if 'invoked oom-killer' in line)
    end = next(i for i in range(start, len(lines)) if 'Killed process' in lines[i])
    return lines[start:end + 1]


def test_user_space_entries_are_ignored_even_when_they_say_oom(tmp_path):
    report = _one_report()
    spoof = 'stress invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0'
    rows = [_json_entry(spoof, _TRANSPORT='syslog', SYSLOG_IDENTIFIER='kernel'),
            _json_entry(spoof, _TRANSPORT='stdout', SYSLOG_IDENTIFIER='stress')]
    rows += [_json_entry(line) for line in report]
    rows.append(_json_entry('Out of memory: Killed process 1 (init)', _TRANSPORT='journal',
                            SYSLOG_IDENTIFIER='logger'))
    path = tmp_path / 'mixed.json'
    path.write_text('\n'.join(rows) + '\n')
    events, dummy, summary, notes = oom_events.collect(paths=[str(path)])
    assert summary['events'] == 1 and summary['by_cause'] == {'memcg_limit': 1} and notes == []
    assert events[0]['invoker']['comm'] != 'stress' and events[0]['host'] == 'h1'


def test_an_old_export_without_transport_keeps_the_kernel_identifier(tmp_path):
    rows = [_json_entry(line, _TRANSPORT=None) for line in _one_report()]
    rows.insert(0, _json_entry('bash invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0',
                               _TRANSPORT=None, SYSLOG_IDENTIFIER='bash'))
    path = tmp_path / 'old.json'
    path.write_text('\n'.join(rows) + '\n')
    events = oom_events.collect(paths=[str(path)])[0]
    assert len(events) == 1 and events[0]['victim'] is not None and events[0]['invoker']['comm'] != 'bash'


def test_a_binary_message_in_json_is_read_as_bytes(tmp_path):
    report = _one_report()
    # journalctl writes a MESSAGE that is not UTF-8 as an array of byte values
    rows = [_json_entry(list(line.encode('latin-1', 'replace') + b'\xff') if 'Killed process' in line else line)
            for line in report]
    path = tmp_path / 'binary.json'
    path.write_text('\n'.join(rows) + '\n')
    events = oom_events.collect(paths=[str(path)])[0]
    assert len(events) == 1 and events[0]['victim']['comm'] == _victims(oom_events.collect(paths=[DMESG])[0])[0][1]


def _export_entry(message, binary=(), **extra):
    fields = [('__REALTIME_TIMESTAMP', b'1795398361295183'), ('_TRANSPORT', b'kernel'), ('_HOSTNAME', b'h2'),
              ('MESSAGE', message)] + list(extra.items())
    out = b''
    for key, value in fields:
        if key in binary or b'\n' in value:
            out += key.encode() + b'\n' + struct.pack('<Q', len(value)) + value + b'\n'
        else:
            out += key.encode() + b'=' + value + b'\n'
    return out + b'\n'


def test_an_export_with_binary_fields(tmp_path):
    report = [line.encode() for line in _one_report()]
    # a binary field that holds an empty line and '=' (not an entry's end), a
    # binary MESSAGE of two kernel lines, and a binary field too large to keep
    data = _export_entry(report[0], binary=('MESSAGE',), COREDUMP=b'x\n\nY=1\n\x00')
    data += _export_entry(report[1] + b'\n' + report[2])
    data += _export_entry(b'not kept', binary=('BLOB',), _TRANSPORT=b'journal', BLOB=b'\x00' * (200 << 10))
    data += b''.join(_export_entry(line) for line in report[3:])
    path = tmp_path / 'binary.export'
    path.write_bytes(data)
    assert _journal_export.detect(data[:_journal_export.HEAD_BYTES]) == 'export'
    events, dummy, summary, notes = oom_events.collect(paths=[str(path)])
    assert summary['by_cause'] == {'memcg_limit': 1} and events[0]['host'] == 'h2' and notes == []
    # the large field is skipped, not kept; a MESSAGE that large is counted as a long line
    reader = _journal_export.Reader('export')
    out = b''.join(reader.kernel_lines(iter([data[i:i + 1000] for i in range(0, len(data), 1000)])))
    assert out.count(b'kernel: ') == len(report) and reader.long_lines == 0
    big = _export_entry(b'y' * (oom_scan.MAX_LINE_BYTES + 1), binary=('MESSAGE',))
    reader = _journal_export.Reader('export')
    assert b''.join(reader.kernel_lines(iter([big + data]))).count(b'kernel: ') == len(report)
    assert reader.long_lines == 1


def test_a_huge_json_line_is_skipped_with_a_note(tmp_path):
    rows = [_json_entry(line) for line in _one_report()]
    huge = _json_entry('A' * (10 << 20))  # 10 MiB: never kept whole
    path = tmp_path / 'huge.json'
    path.write_text(rows[0] + '\n' + huge + '\n' + '\n'.join(rows[1:]) + '\n')
    events, dummy, summary, notes = oom_events.collect(paths=[str(path)])
    assert summary['by_cause'] == {'memcg_limit': 1}
    assert notes == ['1 line longer than %d bytes skipped (not a log line: a corrupt or foreign file?)'
                     % oom_scan.MAX_LINE_BYTES]


def test_a_huge_json_pretty_entry_is_skipped_with_a_note(tmp_path):
    with gzip.open(export_path('json-pretty'), 'rb') as handle:
        data = handle.read()
    huge = b'{\n\t"_TRANSPORT" : "kernel",\n' + b'\t"X" : "%s",\n' % (b'A' * 1000) * 100 + b'\t"MESSAGE" : "m"\n}\n'
    path = tmp_path / 'huge.json'
    path.write_bytes(huge + data)
    dummy, dummy2, summary, notes = oom_events.collect(paths=[str(path)])
    assert summary['by_cause'] == BY_CAUSE and len(notes) == 1 and notes[0].startswith('1 line longer than')


def test_the_byte_budget_counts_the_export(tmp_path):
    path = str(tmp_path / 'journal.json')
    with gzip.open(export_path('json'), 'rb') as handle, open(path, 'wb') as out:
        out.write(handle.read())
    size = os.path.getsize(path)
    budget = oom_events.ReadBudget(max_bytes=size // 2)
    events = oom_events.collect(paths=[path], budget=budget)[0]
    assert 0 < len(events) < 14 and budget.left_bytes == 0
    assert budget.notes == ['%s: read only its first %d bytes: max_read_bytes = %d reached (the budget of all '
                            'inputs of this run); raise max_read_bytes to read more'
                            % (path, size // 2, size // 2)]


def test_a_truncated_export_keeps_what_was_read(tmp_path):
    with gzip.open(export_path('export'), 'rb') as handle:
        data = handle.read()
    cut = data.index(b'\nMESSAGE\n', len(data) // 2) + 12  # inside a binary field's size
    path = tmp_path / 'cut.export'
    path.write_bytes(data[:cut])
    events, dummy, dummy2, notes = oom_events.collect(paths=[str(path)])
    assert 0 < len(events) < 14 and notes == []


def test_an_unknown_format_name_is_refused():
    with pytest.raises(ValueError, match='format = short-x; allowed: json, json-seq'):
        _journal_export.Reader('short-x')


# -- real journalctl output of a VM (journal-exports/vm-debian12-6.1-cgroupv2-memcg-and-sysrq) ----

VM_EXPORTS = os.path.join(EXPORTS, 'vm-debian12-6.1-cgroupv2-memcg-and-sysrq')


def _vm_events(name):
    events = oom_events.collect(paths=[os.path.join(VM_EXPORTS, name)], year=2026)[0]
    return [(e['cause'], e['victim']['pid'], e['victim']['comm'], e['uptime_s'], e['host'], e['timestamp'])
            for e in events]


@pytest.mark.parametrize('name, realtime', [
    ('journal-json.txt.gz', True), ('journal-json-seq.txt.gz', True), ('journal-json-pretty.txt.gz', True),
    ('journal-verbose.txt.gz', True), ('journal-export.txt.gz', True), ('journal-short-monotonic.txt.gz', False),
    ('journal-short-full.txt.gz', False), ('journal-cat.txt.gz', False), ('journal-short-iso.txt.gz', False)])
def test_real_journalctl_output_of_every_format_gives_the_events_of_dmesg(name, realtime):
    """journalctl -b -o FORMAT on a VM after a real memcg OOM and a SysRq OOM: the whole boot,
    user-space entries and all, gives dmesg's two events."""
    dmesg = _vm_events('dmesg.txt')
    assert [e[:3] for e in dmesg] == [('memcg_limit', 331, 'python3'), ('manual', 341, 'sshd')]
    found = _vm_events(name)
    assert [e[:3] for e in found] == [e[:3] for e in dmesg]
    if realtime:
        # __REALTIME_TIMESTAMP to the microsecond, the kernel's own stamp, journald's host name.
        assert [e[3:] for e in found] == [
            (26.481066, 'oomguard-vm', '2026-12-07T05:22:47.322237+00:00'),
            (32.071892, 'oomguard-vm', '2026-12-07T05:22:52.920437+00:00')]


# -- boots ---------------------------------------------------------------------------

VM_BOOT_ID = 'fd6e2366d9ba4f24b7058ab3c06e7a64'


@pytest.mark.parametrize('name, boot_id', [
    ('journal-json.txt.gz', VM_BOOT_ID), ('journal-json-seq.txt.gz', VM_BOOT_ID),
    ('journal-json-pretty.txt.gz', VM_BOOT_ID), ('journal-verbose.txt.gz', VM_BOOT_ID),
    ('journal-export.txt.gz', VM_BOOT_ID), ('journal-short-iso.txt.gz', None), ('journal-cat.txt.gz', None)])
def test_events_of_an_export_carry_its_boot_id(name, boot_id):
    """_BOOT_ID of the real export's kernel entries, on each event (short formats do not carry it)."""
    events = oom_events.collect(paths=[os.path.join(VM_EXPORTS, name)], year=2026)[0]
    assert [(e['victim']['pid'], e['boot_id']) for e in events] == [(331, boot_id), (341, boot_id)]


def _vm_json_entries():
    with gzip.open(os.path.join(VM_EXPORTS, 'journal-json.txt.gz'), 'rt') as handle:
        return [json.loads(line) for line in handle]


@pytest.mark.parametrize('with_boot_ids', [True, False])
def test_a_boot_change_ends_the_report_open_before_it(tmp_path, with_boot_ids):
    """The real VM export cut as a crash cuts a log: boot A's memcg report stops before its kill
    line; boot B's entries then start at a kill line whose report rate limiting dropped (the same
    real line, under another _BOOT_ID).  The boot change ends A's report: B's kill is not A's."""
    entries = _vm_json_entries()
    kill = next(index for index, entry in enumerate(entries)
                if 'Killed process 331' in str(entry.get('MESSAGE')))
    boot_a = entries[:kill]
    boot_b = [dict(entry, _BOOT_ID='0123456789abcdef0123456789abcdef') for entry in entries[kill:kill + 1]]
    lines = []
    for entry in boot_a + boot_b:
        if not with_boot_ids:
            entry = dict(entry)
            entry.pop('_BOOT_ID', None)
        lines.append(json.dumps(entry))
    export = tmp_path / 'two-boots.json'
    export.write_text('\n'.join(lines) + '\n')
    events = oom_events.collect(paths=[str(export)], year=2026)[0]
    found = [((e['invoker'] or {}).get('comm'), (e['victim'] or {}).get('pid'), e['boot_id']) for e in events]
    if with_boot_ids:
        assert found == [('python3', None, VM_BOOT_ID), (None, 331, '0123456789abcdef0123456789abcdef')]
    else:
        # Without them nothing says the log was cut: the kill completes the open report.
        assert found == [('python3', 331, None)]


def test_boot_lines_are_looked_for_only_where_the_scanner_is_told():
    """A plain log's "-- Boot" line (a pasted journalctl text) is not a boot mark unless asked:
    no extra search of plain files, and a log line cannot fake one."""
    text = ('2026-12-07T05:22:40+0000 vm kernel: python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, '
            'oom_score_adj=0\n-- Boot %s --\n2026-12-07T05:22:41+0000 vm kernel: Memory cgroup out of memory: '
            'Killed process 331 (python3) total-vm:62964kB, anon-rss:48880kB, file-rss:0kB, shmem-rss:0kB, '
            'UID:0 pgtables:168kB oom_score_adj:0\n' % VM_BOOT_ID).encode()
    plain = oom_scan.StreamScanner(year=2026)
    plain.scan_chunks([text])
    told = oom_scan.StreamScanner(year=2026)
    told.boot_marks = True
    told.scan_chunks([text])
    assert [(e['victim'] or {}).get('pid') for e in plain.parser.close()] == [331]
    assert [((e['victim'] or {}).get('pid'), e['boot_id']) for e in told.parser.close()] == [
        (None, None), (331, VM_BOOT_ID)]
