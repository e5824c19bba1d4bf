# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_bounded.search_all: inventory patterns matched in a child with a time budget."""

import os
import re
import time

from ansible_collections.oomguard.linux.plugins.module_utils import _bounded


def _this_machines_cmdlines():
    texts = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open('/proc/%s/cmdline' % name, 'rb') as handle:
                    raw = handle.read().replace(b'\0', b' ').strip()
            except OSError:
                continue
            if raw:
                texts[int(name)] = raw.decode('utf-8', 'replace')
    return texts


def test_matches_are_what_re_search_finds_on_this_machine():
    texts = _this_machines_cmdlines()
    patterns = ['python', '^/', 'no-such-process-\\d{9}', '(?i)PYTEST']
    found, slow = _bounded.search_all(patterns, texts)
    assert slow == []
    for index, pattern in enumerate(patterns):
        assert found[index] == sorted(k for k, t in texts.items() if re.search(pattern, t))
    assert found[0], 'this test runs under python: its own command line matches'
    assert found[2] == []


def test_a_pattern_that_backtracks_without_end_is_cut_off_and_the_next_still_matched():
    texts = {1: 'a' * 40 + 'b', 2: 'agetty --noclear tty1', 3: 'x' * 40}
    started = time.monotonic()
    found, slow = _bounded.search_all(['agetty', '^(a+)+$', 'tty1$', '(x+x+)+y'], texts, budget_s=0.5)
    took = time.monotonic() - started
    assert slow == [1, 3]
    assert found == {0: [2], 2: [2]}
    assert took < 10, took
    # every child is reaped: no zombie stays behind
    try:
        assert os.waitpid(-1, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        pass


def test_the_total_budget_leaves_the_rest_unmatched():
    texts = {1: 'a' * 40 + 'b'}
    found, slow = _bounded.search_all(['^(a+)+$'] * 5 + ['a'], texts, budget_s=0.3, total_s=0.5)
    assert found == {}
    assert slow == [0, 1, 2, 3, 4, 5]


def test_no_patterns_no_child():
    assert _bounded.search_all([], {1: 'x'}) == ({}, [])
