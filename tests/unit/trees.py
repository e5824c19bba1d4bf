# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The captured /proc + /sys trees (tests/unit/fixtures/trees/<origin>.tar.gz).

They are kept as archives: the captures hold cgroup names with backslashes
(systemd's `\\x2d`) and ~1,000 small files each.  Tests get them extracted
once per session through the `captured_tree` fixture (conftest.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
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
