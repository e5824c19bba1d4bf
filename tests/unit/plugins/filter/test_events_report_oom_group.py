# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""events_report on a memory.oom.group kill and on a report whose kill lines were cut."""

import os
import re

from ansible_collections.oomguard.linux.plugins.filter.events_report import events_report
from ansible_collections.oomguard.linux.plugins.module_utils import oom_report

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.abspath(os.path.join(HERE, '..', '..', 'fixtures'))
GROUP = os.path.join(FIXTURES, 'oom_reports', 'public', '5.0-next-memcg-oom-group-kills-init-panic-printk-caller-lkml.txt')
LOWMEM = os.path.join(FIXTURES, 'oom_reports', 'seeds', 'seed004-3.2.59-32bit-lowmem.txt')
REPRS = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\{'|\['|'\]|'\}|\[\]|\{\}")


def _result(lines, year=None):
    parser = oom_report.EventParser()
    for raw in lines:
        line = oom_report.split_prefix(raw, year)
        if line is not None:
            parser.feed(line)
    events = oom_report.finish(parser.close())
    return {'events': events, 'summary': oom_report.summarize(events), 'kill_loops': oom_report.kill_loops(events)}


def test_oom_group_kill_is_one_line_with_the_count():
    with open(GROUP) as handle:
        text = events_report(_result(handle.read().splitlines()), host='lab')
    assert not REPRS.search(text), text
    assert text.splitlines()[0] == '1 OOM event on lab (memcg_limit 1)'
    kills = [line for line in text.splitlines() if ') killed' in line]
    assert len(kills) == 1
    assert 'a.out (pid 9188, anon-rss ' in kills[0]
    assert 'with 11 other tasks of /test1 (memory.oom.group)' in kills[0]


def test_elided_kill_lines_are_named_as_cut():
    with open(LOWMEM) as handle:
        lines = ['[...]' if 'Kill process' in line else line for line in handle.read().splitlines()
                 if 'Killed process' not in line]
    text = events_report(_result(lines, 2021))
    assert not REPRS.search(text), text
    assert 'victim not in the log (its kill lines were cut out)' in text
    assert 'lowmem' in text
