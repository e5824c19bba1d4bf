# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Regular expressions from the inventory, matched with a time budget.

Python's re backtracks; a pattern like (a+)+$ against a command line that any
local user can choose takes longer than the age of the universe, and a match
in progress cannot be interrupted from the same process.  So the matching
runs in a forked child that reports each pattern's matches as it finishes;
the parent stops waiting when a pattern has had its budget, kills the child,
and names that pattern (and those after it) as not matched in time.
Standard library only.
"""

import json
import os
import re
import select
import signal
import time

# Seconds each pattern may take against all the texts.
PATTERN_BUDGET_S = 5.0


def search_all(patterns, texts, budget_s=PATTERN_BUDGET_S, total_s=None):
    """patterns: [regex text]; texts: {key: text}.

    Returns ({index: sorted keys whose text the pattern searches}, [index of
    the patterns not finished within their budget]).  A slow pattern costs its
    budget and the ones after it are matched in a new child; after total_s
    (default: four budgets) the rest count as not finished.
    """
    items = sorted(texts.items())
    found, slow = {}, []
    give_up = time.monotonic() + (4 * budget_s if total_s is None else total_s)
    first = 0
    while first < len(patterns):
        if time.monotonic() >= give_up:
            slow.extend(range(first, len(patterns)))
            break
        done = _search_from(patterns, first, items, budget_s, found)
        if done < len(patterns):
            slow.append(done)
        first = done + 1
    return found, slow


def _search_from(patterns, first, items, budget_s, found):
    """Match patterns[first:] in a child; returns the index of the first one not finished in time."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: match, one JSON line per pattern, then leave at once
        code = 0
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, 'w') as out:
                for index in range(first, len(patterns)):
                    regex = re.compile(patterns[index])
                    keys = [key for key, text in items if regex.search(text)]
                    out.write(json.dumps([index, keys]) + '\n')
                    out.flush()
        except BaseException:  # the child must never return into the caller's code
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    pending = b''
    next_index = first
    deadline = time.monotonic() + budget_s
    try:
        while next_index < len(patterns):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                break
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b'\n')
            for line in lines:
                index, keys = json.loads(line.decode('utf-8'))
                found[index] = sorted(keys)
                next_index = index + 1
                deadline = time.monotonic() + budget_s
    finally:
        os.close(read_fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(pid, 0)
    return next_index
