# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ledger: what a host looked like before the collection changed it.

Every module that changes a host records here, before its first write, the
original of each live value and each file it is about to touch.  Only the
first record of a key counts: a second harden run must not take the hardened
value for the original.  ``_restore.restore()`` (beside this file) puts
everything back and deletes the ledger, so the next harden records afresh.

The ledger is one JSON file (default /var/lib/oomguard/ledger.json, mode
0600).  Files are kept whole (base64) with mode and owner, symlinks by
target, and absent files as absent, so a restore is byte-exact.
"""


import base64
import errno
import json
import os
import re
import stat
import tempfile

from ansible_collections.oomguard.linux.plugins.module_utils import procfs

LEDGER_NAME = 'ledger.json'
VERSION = 1


class LedgerError(Exception):
    pass


# The files the collection writes (sysctl.d files, units, drop-ins, the killers'
# configs) are a few hundred bytes; one far larger is not one of them.
MANAGED_FILE_MAX_BYTES = 1 << 20


def _read_small_file(path, info):
    """The bytes of a regular file the collection may replace; never a FIFO, device or socket, never unbounded."""
    if not stat.S_ISREG(info.st_mode):
        raise LedgerError('%s is %s, not a regular file; the collection writes only regular files there: '
                          'move it away' % (path, procfs.file_kind(info.st_mode)))
    if info.st_size > MANAGED_FILE_MAX_BYTES:
        raise LedgerError('%s is %d bytes; the files the collection writes are at most %d bytes: move it away'
                          % (path, info.st_size, MANAGED_FILE_MAX_BYTES))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_NOFOLLOW', 0))
    with os.fdopen(fd, 'rb') as handle:
        return handle.read(MANAGED_FILE_MAX_BYTES + 1)[:MANAGED_FILE_MAX_BYTES]


def file_state(path):
    """What is at path now: {'type': 'absent'|'file'|'link'|'dir', ...}."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return {'type': 'absent'}
        raise
    if stat.S_ISLNK(info.st_mode):
        return {'type': 'link', 'target': os.readlink(path)}
    if stat.S_ISDIR(info.st_mode):
        return {'type': 'dir', 'mode': stat.S_IMODE(info.st_mode), 'uid': info.st_uid, 'gid': info.st_gid}
    content = _read_small_file(path, info)
    return {'type': 'file', 'content_b64': base64.b64encode(content).decode('ascii'),
            'mode': stat.S_IMODE(info.st_mode), 'uid': info.st_uid, 'gid': info.st_gid}


def content_of(state):
    if state.get('type') != 'file':
        return None
    return base64.b64decode(state['content_b64'])


def same_as(state, spec):
    """Whether the file state equals a desired spec ({'type', 'content'|'target', 'mode'})."""
    if spec['type'] == 'absent':
        return state['type'] == 'absent'
    if spec['type'] == 'link':
        return state['type'] == 'link' and state['target'] == spec['target']
    if state['type'] != 'file':
        return False
    content = spec['content'] if isinstance(spec['content'], bytes) else spec['content'].encode('utf-8')
    return (content_of(state) == content and state['mode'] == spec.get('mode', state['mode'])
            and state['uid'] == spec.get('uid', 0) and state['gid'] == spec.get('gid', 0))


def missing_parents(path):
    """Parent directories of path that do not exist yet, outermost first."""
    missing = []
    parent = os.path.dirname(path)
    while parent and parent != '/' and not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    return list(reversed(missing))


def write_file(path, content, mode=0o644, uid=0, gid=0):
    """Atomic write: a temporary file in the same directory, then rename."""
    directory = os.path.dirname(path)
    for parent in missing_parents(path):
        os.mkdir(parent, 0o755)
    if isinstance(content, str):
        content = content.encode('utf-8')
    handle, tmp = tempfile.mkstemp(dir=directory, prefix='.oomguard-')
    try:
        with os.fdopen(handle, 'wb') as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        if os.geteuid() == 0:
            os.chown(tmp, uid, gid)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_link(path, target):
    for parent in missing_parents(path):
        os.mkdir(parent, 0o755)
    tmp = os.path.join(os.path.dirname(path), '.oomguard-link-%d' % os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, path)


def remove_path(path):
    if os.path.lexists(path):
        os.unlink(path)


def write_spec(path, spec, prune_parent=False):
    """Make path what a desired spec says ({'type': file|link|absent, ...}).

    prune_parent: after removing a drop-in, remove its directory when that
    is now empty (another drop-in living there keeps it).
    """
    if spec['type'] == 'file':
        write_file(path, spec['content'], spec.get('mode', 0o644), spec.get('uid', 0), spec.get('gid', 0))
    elif spec['type'] == 'link':
        write_link(path, spec['target'])
    else:
        remove_path(path)
        if prune_parent:
            try:
                os.rmdir(os.path.dirname(path))
            except OSError:
                pass  # not empty


def put_state(path, state):
    """Make path what state says (the inverse of file_state)."""
    kind = state['type']
    if kind == 'absent':
        remove_path(path)
    elif kind == 'link':
        write_link(path, state['target'])
    elif kind == 'file':
        write_file(path, content_of(state), state['mode'], state['uid'], state['gid'])
    else:
        raise LedgerError('%s: cannot restore a %s' % (path, kind))


# -- reading a ledger only if the collection wrote it ---------------------------------

# A real ledger holds a few hundred entries (a few files base64-encoded): far
# below this.  The bound keeps a planted file from filling the module's memory.
MAX_LEDGER_BYTES = 4 * 1024 * 1024
# Who may own the ledger and the directories above it: root, and the user
# running the module, who wrote the ledger (save() chowns it to the euid) and
# could write any file the module writes anyway (unprivileged test trees and
# check runs; as root, the two are one).
OWNERS_TEXT = 'owned by root (uid 0) or by the user running the module'
VALUE_KINDS = ('sysctl', 'thp', 'cgroup', 'proc')
# The owner of an entry: the module that recorded it (kernel_tunables, oom_units, early_oom).
_OWNER_RE = re.compile(r'^[a-z][a-z0-9_]{0,63}$')
OWNER_ALLOWED = 'a module name like kernel_tunables'
FILE_TYPES = ('absent', 'file', 'link')
TOP_KEYS = ('version', 'values', 'files', 'dirs', 'units', 'state_dirs_created')
# At most this many shape problems are listed; the count says how many more.
MAX_PROBLEMS_SHOWN = 20


def trusted_uids():
    return (0, os.geteuid())


def _refuse(ledger_path, what, value, allowed):
    return LedgerError('ledger %s: %s = %s; allowed: %s; the ledger is not used (fix or move it by hand)'
                       % (ledger_path, what, value, allowed))


def _check_node(ledger_path, path, info, own_dir):
    """An owner and mode check of the ledger's directory or one above it.

    A sticky root-owned directory above the ledger's own (/tmp) is let through:
    others can add entries there but not rename or remove root's, so the path
    below it stays root's.
    """
    if info.st_uid not in trusted_uids():
        raise _refuse(ledger_path, 'owner of %s' % path, 'uid %d' % info.st_uid, OWNERS_TEXT)
    if stat.S_ISLNK(info.st_mode):
        return  # a link's mode means nothing; where it leads is checked as the resolved chain
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o022:
        return
    if not own_dir and mode & stat.S_ISVTX and info.st_uid == 0:
        return
    raise _refuse(ledger_path, 'mode of %s' % path, '%04o' % mode,
                  'not group- or world-writable (e.g. 0700 or 0755%s)'
                  % ('' if own_dir else ', or a sticky directory owned by root like /tmp'))


def _check_directories(ledger_path):
    """The ledger's directory and every one above it, as written and as resolved."""
    directory = os.path.dirname(os.path.abspath(ledger_path))
    for chain in (directory, os.path.realpath(directory)):
        current = chain
        own_dir = True
        while True:
            try:
                info = os.lstat(current)
            except OSError as exc:
                raise _refuse(ledger_path, 'directory %s' % current, 'unreadable (%s)' % exc.strerror,
                              'a directory %s' % OWNERS_TEXT)
            _check_node(ledger_path, current, info, own_dir)
            own_dir = False
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent


def read_trusted(ledger_path):
    """The ledger's bytes, None when there is none; LedgerError when it is not to be trusted."""
    try:
        info = os.lstat(ledger_path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise _refuse(ledger_path, 'file', 'unreadable (%s)' % exc.strerror, 'a readable regular file')
    _check_directories(ledger_path)
    allowed_file = 'a regular file %s, not group- or world-writable, at most %d bytes' % (
        OWNERS_TEXT, MAX_LEDGER_BYTES)
    # lstat first: opening a FIFO blocks and opening a device may act on it.
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(ledger_path, 'file type', procfs.file_kind(info.st_mode), allowed_file)
    try:
        handle = os.open(ledger_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise _refuse(ledger_path, 'file', 'unreadable (%s)' % exc.strerror, allowed_file)
    try:
        opened = os.fstat(handle)
        # What was opened is what was checked (not swapped for a FIFO or link meanwhile).
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise _refuse(ledger_path, 'file', 'replaced while it was read', allowed_file)
        if opened.st_uid not in trusted_uids():
            raise _refuse(ledger_path, 'owner', 'uid %d' % opened.st_uid, allowed_file)
        if stat.S_IMODE(opened.st_mode) & 0o022:
            raise _refuse(ledger_path, 'mode', '%04o' % stat.S_IMODE(opened.st_mode), allowed_file)
        if opened.st_size > MAX_LEDGER_BYTES:
            raise _refuse(ledger_path, 'size', '%d bytes' % opened.st_size, allowed_file)
        chunks = []
        left = MAX_LEDGER_BYTES + 1
        while left > 0:
            chunk = os.read(handle, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(handle)
    raw = b''.join(chunks)
    if len(raw) > MAX_LEDGER_BYTES:
        raise _refuse(ledger_path, 'size', 'more than %d bytes' % MAX_LEDGER_BYTES, allowed_file)
    return raw


def show(value):
    """A ledger value as a person reads it: text quoted and cut short, containers by their kind."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 200 else value[:197] + '...')
    if isinstance(value, dict):
        return 'a mapping'
    if isinstance(value, list):
        return 'a list'
    return 'a %s' % type(value).__name__


def _is_int(value, low=0, high=None):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)


def _is_b64(value):
    try:
        base64.b64decode(value, validate=True)
    except (TypeError, ValueError):
        return False
    return True


class _Shape:
    """Shape problems of one ledger, in the 'WHERE = VALUE; allowed: ...' form."""

    def __init__(self):
        self.problems = []

    def bad(self, where, value, allowed):
        self.problems.append('%s = %s; allowed: %s' % (where, show(value), allowed))

    def missing(self, where, allowed):
        self.problems.append('%s is missing; allowed: %s' % (where, allowed))

    def fields(self, where, entry, spec, optional=()):
        """entry has exactly spec's fields ({name: (check, allowed)}), plus those optional ones present."""
        if not isinstance(entry, dict):
            self.bad(where, entry, 'a mapping of %s' % ', '.join(spec))
            return
        for name in sorted(entry):
            if name not in spec:
                self.bad('%s[%s]' % (where, show(name)), entry[name], 'no such field (fields: %s)' % ', '.join(spec))
        for name, (check, allowed) in spec.items():
            if name not in entry:
                if name not in optional:
                    self.missing('%s[%s]' % (where, show(name)), allowed)
            elif not check(entry[name]):
                self.bad('%s[%s]' % (where, show(name)), entry[name], allowed)


def _is_owner(value):
    return isinstance(value, str) and bool(_OWNER_RE.match(value))


def _text(value):
    return isinstance(value, str) and value != ''


def _check_value(shape, where, entry):
    spec = {
        'kind': (lambda v: v in VALUE_KINDS, 'one of %s' % ', '.join(VALUE_KINDS)),
        'path': (_text, 'an absolute path'),
        'original': (lambda v: isinstance(v, str), 'the text the value had'),
        'owner': (_is_owner, OWNER_ALLOWED),
        'starttime': (_is_int, 'clock ticks, an integer 0 or more, for kind proc only'),
    }
    shape.fields(where, entry, spec, optional=('starttime',))
    if isinstance(entry, dict) and 'starttime' in entry and entry.get('kind') != 'proc':
        shape.bad('%s[%s]' % (where, show('starttime')), entry['starttime'], 'a start time on kind proc only')


def _check_file(shape, where, entry):
    kind = entry.get('type') if isinstance(entry, dict) else None
    spec = {'type': (lambda v: v in FILE_TYPES, 'one of %s' % ', '.join(FILE_TYPES)),
            'owner': (_is_owner, OWNER_ALLOWED)}
    if kind == 'file':
        spec.update({'content_b64': (lambda v: isinstance(v, str) and _is_b64(v), 'base64 text'),
                     'mode': (lambda v: _is_int(v, 0, 0o7777), 'a file mode 0..4095 (0o7777)'),
                     'uid': (_is_int, 'a uid, an integer 0 or more'),
                     'gid': (_is_int, 'a gid, an integer 0 or more')})
    elif kind == 'link':
        spec['target'] = (_text, 'the link target')
    shape.fields(where, entry, spec)


def _check_unit(shape, where, entry):
    shape.fields(where, entry, {'was_active': (lambda v: isinstance(v, bool), 'true or false'),
                                'owner': (_is_owner, OWNER_ALLOWED)})


def parse(ledger_path, raw):
    """The ledger's data from its bytes: exactly the shape save() writes, or LedgerError."""
    allowed = 'the JSON the collection writes: a mapping of %s' % ', '.join(TOP_KEYS)
    try:
        data = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = 'nested too deep' if isinstance(exc, RecursionError) else str(exc).split(':', maxsplit=1)[0]
        raise _refuse(ledger_path, 'content', 'text that is not valid JSON (%s)' % reason, allowed)
    if not isinstance(data, dict):
        raise _refuse(ledger_path, 'content', show(data), allowed)
    version = data.get('version')
    if version != VERSION or isinstance(version, bool):
        raise LedgerError('ledger %s: unknown ledger version %s; allowed: version %d, the one this release writes; '
                          'the ledger is not used (fix or move it by hand)' % (ledger_path, show(version), VERSION))
    shape = _Shape()
    for key in sorted(data):
        if key not in TOP_KEYS:
            shape.bad(show(key), data[key], 'no such key (keys: %s)' % ', '.join(TOP_KEYS))
    # Ledgers of earlier releases lack the lists that came later.
    for key in ('values', 'files', 'units'):
        data.setdefault(key, {})
    for key in ('dirs', 'state_dirs_created'):
        data.setdefault(key, [])
    for key, check in (('values', _check_value), ('files', _check_file), ('units', _check_unit)):
        if not isinstance(data[key], dict):
            shape.bad(key, data[key], 'a mapping')
            continue
        for name in sorted(data[key]):
            check(shape, '%s[%s]' % (key, show(name)), data[key][name])
    for key in ('dirs', 'state_dirs_created'):
        if not isinstance(data[key], list):
            shape.bad(key, data[key], 'a list of absolute paths')
            continue
        for index, item in enumerate(data[key]):
            if not _text(item):
                shape.bad('%s[%d]' % (key, index), item, 'an absolute path')
    if shape.problems:
        shown = shape.problems[:MAX_PROBLEMS_SHOWN]
        more = len(shape.problems) - len(shown)
        raise LedgerError('ledger %s is not the ledger the collection writes, so it is not used (fix or move it '
                          'by hand): %s%s' % (ledger_path, '; '.join(shown), '; and %d more' % more if more else ''))
    return data


def process_starttime(stat_text):
    """Field 22 of /proc/PID/stat (starttime, clock ticks after boot); None when it is not there.

    The name (field 2) may hold spaces and parentheses: the fields after it
    start after its last ')'.
    """
    fields = (stat_text or '').rpartition(')')[2].split()
    # fields[0] is field 3 (state): field 22 is fields[19].
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return int(fields[19])


class Ledger:
    """Originals of values and files, recorded before the first change."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, LEDGER_NAME)
        self.data = {'version': VERSION, 'values': {}, 'files': {}, 'dirs': [], 'units': {},
                     'state_dirs_created': []}
        self.exists = False

    @classmethod
    def load(cls, state_dir):
        """The ledger in state_dir (empty when there is none), if it is one the collection wrote.

        The one loader of every reader (restore, the engine's originals, the
        early killer's plan): LedgerError when the file or a directory above
        it could have been written by someone other than root (or the user
        running the module), when it is not a bounded regular file, or when
        it is not the JSON the collection writes.
        """
        ledger = cls(state_dir)
        raw = read_trusted(ledger.path)
        if raw is None:
            return ledger
        ledger.data = parse(ledger.path, raw)
        ledger.exists = True
        return ledger

    def empty(self):
        return not (self.data['values'] or self.data['files'] or self.data['dirs'] or self.data['units'])

    def record_value(self, key, kind, path, original, owner, starttime=None):
        """starttime: of a process (kind proc), field 22 of /proc/PID/stat in clock
        ticks, so that restore can tell the process from a later one with its PID."""
        if key not in self.data['values']:
            entry = {'kind': kind, 'path': path, 'original': original, 'owner': owner}
            if starttime is not None:
                entry['starttime'] = starttime
            self.data['values'][key] = entry

    def record_file(self, path, owner):
        if path in self.data['files']:
            return
        for parent in missing_parents(path):
            if parent not in self.data['dirs']:
                self.data['dirs'].append(parent)
        entry = file_state(path)
        entry['owner'] = owner
        self.data['files'][path] = entry

    def record_unit(self, unit, was_active, owner):
        if unit not in self.data['units']:
            self.data['units'][unit] = {'was_active': was_active, 'owner': owner}

    def save(self):
        if not os.path.isdir(self.state_dir):
            if not self.exists:
                # The state dir and any parent made for it, outermost first.
                self.data['state_dirs_created'] = missing_parents(self.path)
            os.makedirs(self.state_dir, 0o700)
        write_file(self.path, json.dumps(self.data, indent=1, sort_keys=True) + '\n', 0o600,
                   os.geteuid(), os.getegid())
        self.exists = True

    def delete(self):
        remove_path(self.path)
        for directory in reversed(self.data.get('state_dirs_created') or []):
            try:
                os.rmdir(directory)
            except OSError:
                break  # not empty: something else lives there now
        self.exists = False
