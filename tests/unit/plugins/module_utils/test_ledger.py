# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Only a ledger the collection wrote is used: the cases of ledger_cases.yml.

Each case starts from a ledger the engine wrote in a fake host root (a
fake_host.MachineHost: copies of this machine's /proc/sys/vm and sysctl.d
files) for one vm.swappiness change, then makes it hostile: its owner, its
mode or its directories', its type (a symlink, a FIFO, a device, all made in
tmp_path), its size, its JSON, or an entry naming what the collection does
not write.  The loader refuses the first kinds (so restore and the engine's
next run both stop), restore the last; either way nothing is written and the
message names the ledger and what is allowed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import signal
import stat

import pytest
import yaml

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.tests.unit import fake_host

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'ledger_cases.yml')) as _handle:
    CASES = yaml.safe_load(_handle)
LABELS = engine.Labels('h1', {'sysctl': 'oomguard_sysctl'})
# A hostile input gets this long before the test fails (a FIFO opened for reading blocks forever).
CEILING_S = 10


@pytest.fixture
def tree(tmp_path, monkeypatch):
    host = fake_host.MachineHost(str(tmp_path / 'root'), labels=LABELS)
    host.kernel = fake_host.kernel(monkeypatch, host.root)
    return host


def swappiness_request(tree):
    """A vm.swappiness other than this machine's (the copy's), within 0..200."""
    now = int(tree.sysctl('vm.swappiness'))
    return {'vm.swappiness': now + 1 if now < 200 else now - 1}


def written_ledger(tree):
    tree.apply(sysctl=swappiness_request(tree))
    path = os.path.join(tree.state_dir, ledger_mod.LEDGER_NAME)
    assert os.path.isfile(path)
    return path


def fill(text, tree):
    return text.replace('{root}', tree.root).replace('{state_dir}', tree.state_dir).replace(
        '{sd}', tree.path('etc/systemd/system')).replace('{ledger}', os.path.join(tree.state_dir, 'ledger.json'))


def fill_all(value, tree):
    if isinstance(value, str):
        return fill(value, tree)
    if isinstance(value, dict):
        return dict((fill_all(k, tree), fill_all(v, tree)) for k, v in value.items())
    if isinstance(value, list):
        return [fill_all(v, tree) for v in value]
    return value


def make_hostile(case, tree, path, tmp_path):
    if case.get('set') or case.get('drop_field'):
        with open(path) as handle:
            data = json.load(handle)
        for section, entries in fill_all(case.get('set') or {}, tree).items():
            target = data if section == 'top' else data.setdefault(section, {})
            for key, entry in entries.items():
                target[key] = entry
        if case.get('drop_field'):
            section, key, field = case['drop_field']
            del data[section][key][field]
        # Written as the engine writes it (root, 0600): only the content is hostile.
        ledger_mod.write_file(path, json.dumps(data), 0o600)
    replace = case.get('replace_with')
    if replace:
        os.unlink(path)
    if replace == 'symlink':
        good = str(tmp_path / 'elsewhere.json')
        with open(good, 'w') as handle:
            json.dump({'version': 1}, handle)
        os.symlink(good, path)
    elif replace == 'fifo':
        os.mkfifo(path, 0o600)
    elif replace == 'device':
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    elif replace == 'huge':
        with open(path, 'wb') as handle:
            handle.truncate(ledger_mod.MAX_LEDGER_BYTES + 1)
        os.chmod(path, 0o600)
    elif replace == 'text':
        ledger_mod.write_file(path, case['text'], 0o600)
    elif replace == 'deep':
        ledger_mod.write_file(path, '[' * 200000 + ']' * 200000, 0o600)
    for key, target in (('file_mode', path), ('dir_mode', tree.state_dir),
                        ('parent_mode', os.path.dirname(tree.state_dir))):
        if key in case:
            os.chmod(target, int(case[key], 8))
    if 'file_owner' in case:
        os.chown(path, case['file_owner'], -1)
    if 'dir_owner' in case:
        os.chown(tree.state_dir, case['dir_owner'], -1)


@pytest.fixture
def ceiling():
    """A hard ceiling on a hostile input: the test fails instead of hanging."""
    def expired(signum, frame):
        raise AssertionError('still reading the ledger after %d s' % CEILING_S)
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(CEILING_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(os.geteuid() != 0, reason='chown, mknod and a root-owned ledger need root')
@pytest.mark.parametrize('case', CASES, ids=[c['id'] for c in CASES])
def test_a_ledger_the_collection_did_not_write_is_refused(case, tree, tmp_path, ceiling):
    path = written_ledger(tree)
    make_hostile(case, tree, path, tmp_path)
    sysctl_file = tree.read('etc/sysctl.d/90-oomguard.conf')
    swappiness = tree.sysctl('vm.swappiness')
    writes = list(tree.kernel.writes)

    with pytest.raises(ledger_mod.LedgerError) as raised:
        tree.restore()
    message = str(raised.value)
    assert message.startswith('host h1: ledger %s' % path)
    assert 'allowed: ' in message and 'Traceback' not in message
    for part in case['expect']:
        assert fill(part, tree) in message
    # Nothing was put back and the ledger is left where it is.
    assert tree.kernel.writes == writes and tree.sysctl('vm.swappiness') == swappiness
    assert tree.read('etc/sysctl.d/90-oomguard.conf') == sysctl_file
    assert os.path.lexists(path)

    if case['by'] == 'load':
        # The one loader: the engine's next run refuses the same ledger before it writes.
        with pytest.raises(ledger_mod.LedgerError) as again:
            tree.apply(sysctl=swappiness_request(tree))
        assert str(again.value) == message[len('host h1: '):]
    else:
        assert ledger_mod.Ledger.load(tree.state_dir).exists


def test_the_cases_cover_the_ledgers_of_issue_18():
    ids = set(c['id'] for c in CASES)
    assert len(CASES) >= 12 and len(ids) == len(CASES)
    assert {'world-writable-state-dir', 'group-writable-ledger', 'ledger-of-another-user', 'symlinked-ledger',
            'fifo-as-ledger', 'huge-ledger', 'not-json', 'json-list', 'entry-without-path', 'file-outside-cron',
            'kernel-core-pattern', 'dot-dot-in-path', 'unknown-entry-kind'} <= ids


@pytest.mark.skipif(os.geteuid() != 0, reason='the ledger is root-owned')
def test_a_good_ledger_round_trips(tree):
    before = fake_host.tree_state(tree.root)
    applied = tree.apply(sysctl=swappiness_request(tree))
    loaded = ledger_mod.Ledger.load(tree.state_dir)
    assert loaded.exists and loaded.data == tree.ledger()
    assert list(loaded.data['values']) == ['vm.swappiness']
    restored = tree.restore()
    assert [(c['key'], c['after']) for c in restored['changes']] == [
        (c['key'], c['before']) for c in applied['changes']]
    assert restored['skipped'] == [] and restored['warnings'] == []
    assert fake_host.tree_state(tree.root) == before


def test_a_sticky_root_owned_directory_above_is_allowed_but_not_as_the_ledgers_own(tmp_path):
    """/tmp (1777, root) may be above the state dir: others cannot rename root's entries in it."""
    sticky = tmp_path / 'sticky'
    state_dir = sticky / 'state'
    state_dir.mkdir(parents=True)
    os.chmod(str(sticky), 0o1777)
    os.chmod(str(state_dir), 0o700)
    ledger = ledger_mod.Ledger(str(state_dir))
    ledger.record_value('vm.swappiness', 'sysctl', '/proc/sys/vm/swappiness', '60', 'kernel_tunables')
    ledger.save()
    assert ledger_mod.Ledger.load(str(state_dir)).data == ledger.data
    os.chmod(str(state_dir), 0o1777)
    with pytest.raises(ledger_mod.LedgerError) as raised:
        ledger_mod.Ledger.load(str(state_dir))
    assert 'mode of %s = 1777; allowed: not group- or world-writable (e.g. 0700 or 0755)' % state_dir \
        in str(raised.value)


def test_a_symlinked_state_dir_is_checked_where_it_leads(tmp_path):
    real = tmp_path / 'real'
    real.mkdir(mode=0o700)
    link = tmp_path / 'state'
    os.symlink(str(real), str(link))
    ledger = ledger_mod.Ledger(str(link))
    ledger.record_value('vm.swappiness', 'sysctl', '/proc/sys/vm/swappiness', '60', 'kernel_tunables')
    ledger.save()
    assert ledger_mod.Ledger.load(str(link)).exists
    os.chmod(str(real), 0o777)
    with pytest.raises(ledger_mod.LedgerError) as raised:
        ledger_mod.Ledger.load(str(link))
    assert 'mode of %s = 0777' % real in str(raised.value)


def test_no_ledger_is_nothing_to_restore(tree):
    result = tree.restore()
    assert result['changed'] is False and result['msg'] == 'nothing to restore: %s does not exist' % os.path.join(
        tree.state_dir, 'ledger.json')


@pytest.mark.parametrize('text, starttime', [
    # Field 22 of real /proc/PID/stat lines; a name with spaces and ')' does not shift it.
    ('1 (systemd) S 0 1 1 0 -1 4194560 52911 2474453 116 1144 146 176 4567 2003 20 0 1 0 27 23093248 3103',
     27),
    ('4242 (a) b (c)) R 1 4242 4242 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 987654 2654208 219', 987654),
    ('4242 (short) R 1 2 3', None),
    ('', None),
])
def test_process_starttime(text, starttime):
    assert ledger_mod.process_starttime(text) == starttime


# -- what file_state reads of a file the collection would replace ------------------------------

def test_file_state_never_opens_a_fifo_or_a_device(tmp_path):
    fifo = str(tmp_path / 'fifo.conf')
    os.mkfifo(fifo)
    with pytest.raises(ledger_mod.LedgerError) as raised:
        ledger_mod.file_state(fifo)  # would block forever if it were opened
    assert str(raised.value) == ('%s is a FIFO (named pipe), not a regular file; the collection writes only regular files there: '
                                 'move it away' % fifo)
    with pytest.raises(ledger_mod.LedgerError) as raised:
        ledger_mod.file_state('/dev/zero')
    assert 'is a character device' in str(raised.value)


def test_file_state_reads_a_managed_file_whole_and_refuses_a_huge_one(tmp_path):
    small = tmp_path / '90-oomguard.conf'
    small.write_bytes(b'vm.swappiness = 10\n')
    state = ledger_mod.file_state(str(small))
    assert ledger_mod.content_of(state) == b'vm.swappiness = 10\n'
    huge = tmp_path / 'huge.conf'
    with open(str(huge), 'wb') as handle:
        handle.truncate(ledger_mod.MANAGED_FILE_MAX_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ledger_mod.LedgerError) as raised:
        ledger_mod.file_state(str(huge))
    assert 'is 1048577 bytes; the files the collection writes are at most 1048576 bytes' in str(raised.value)
