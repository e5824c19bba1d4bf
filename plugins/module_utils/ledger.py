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
import stat
import tempfile

LEDGER_NAME = 'ledger.json'
VERSION = 1


class LedgerError(Exception):
    pass


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
    with open(path, 'rb') as handle:
        content = handle.read()
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
        ledger = cls(state_dir)
        try:
            with open(ledger.path) as handle:
                data = json.load(handle)
        except IOError as exc:
            if exc.errno == errno.ENOENT:
                return ledger
            raise LedgerError('cannot read %s: %s' % (ledger.path, exc))
        except ValueError as exc:
            raise LedgerError('%s is not valid JSON (%s); it holds the values to restore, so it is '
                              'left alone: fix or move it by hand' % (ledger.path, exc))
        if not isinstance(data, dict) or data.get('version') != VERSION:
            raise LedgerError('%s: unknown ledger version %r' % (ledger.path, data.get('version')
                                                                 if isinstance(data, dict) else None))
        for key in ('values', 'files', 'dirs', 'units'):
            data.setdefault(key, [] if key == 'dirs' else {})
        ledger.data = data
        ledger.exists = True
        return ledger

    def empty(self):
        return not (self.data['values'] or self.data['files'] or self.data['dirs'] or self.data['units'])

    def record_value(self, key, kind, path, original, owner):
        if key not in self.data['values']:
            self.data['values'][key] = {'kind': kind, 'path': path, 'original': original, 'owner': owner}

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
