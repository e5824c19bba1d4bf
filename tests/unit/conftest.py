# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.oomguard.linux.tests.unit import trees


@pytest.fixture(scope='session')
def captured_tree(tmp_path_factory):
    """captured_tree(name) -> path of that capture, extracted once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = trees.extract(name, str(tmp_path_factory.mktemp('tree-' + name)))
        return cache[name]
    return get
