# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The captured /proc + /sys trees (tests/unit/fixtures/trees/<origin>.tar.gz).

They are kept as archives: the captures hold cgroup names with backslashes
(systemd's `\\x2d`) and ~1,000 small files each.  Tests get them extracted
once per session through the `captured_tree` fixture (conftest.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import stat
import tarfile

import yaml

TREES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'trees')
TREE_NAMES = sorted(name[:-len('.tar.gz')] for name in os.listdir(TREES_DIR) if name.endswith('.tar.gz'))


def expected(name):
    with open(os.path.join(TREES_DIR, name + '.expected.yml')) as handle:
        return yaml.safe_load(handle)


def extract(name, dest):
    """Extract <name>.tar.gz under dest; return the tree's root."""
    with tarfile.open(os.path.join(TREES_DIR, name + '.tar.gz')) as archive:
        if hasattr(tarfile, 'data_filter'):
            archive.extractall(dest, filter='data')
        else:  # Python before 3.11.4: the archives are ours, members are plain files.
            archive.extractall(dest)  # noqa: S202
    return os.path.join(dest, name)


def tree_state(root):
    """Everything under root: files by content hash, mode and owner, links by target, dirs by mode."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                state[rel] = ('link', os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                state[rel] = ('dir', stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
            else:
                with open(path, 'rb') as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                state[rel] = ('file', stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, digest)
    return state
