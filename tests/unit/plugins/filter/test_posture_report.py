# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The posture_report filter on the posture this machine's audit registered
(tests/unit/fixtures/fleet/registered-localhost.json): text for people, with
units, counts in words, paths cut in the middle, advice once, no Python repr."""

import copy
import json
import os
import re

from ansible_collections.oomguard.linux.plugins.filter.posture_report import FilterModule, posture_report
from ansible_collections.oomguard.linux.plugins.plugin_utils import report_text as rt
from ansible_collections.oomguard.linux.plugins.module_utils import facts
from ansible_collections.oomguard.linux.plugins.module_utils import posture as posture_mod
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import snapshot

FIXTURE = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'fleet', 'registered-localhost.json')
REPR = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\{'|\['|'\]|'\}")


def posture():
    with open(FIXTURE) as handle:
        return json.load(handle)['posture']


def test_the_report_heads_with_the_risk_and_the_hosts_basics_with_units():
    lines = posture_report(posture(), host='web1').splitlines()
    assert lines[:6] == [
        'OOM posture of web1: MEDIUM risk (score 23 of 100)',
        '=' * len(lines[0]),
        'Kernel 6.18.44-fc-v657 x86_64; cgroup hybrid (memory controller v1)',
        'RAM 23.5 GiB, 19.5 GiB available; swap none',
        'Memory pressure (PSI): some 0.00 %, full 0.00 % (avg10)',
        'OOM kills since boot: 56; early OOM killer: none running',
    ]
    assert 'Findings: 4 (2 medium, 1 low, 1 info)' in lines
    text = '\n'.join(lines)
    assert not REPR.search(text)
    # Evidence keys that name a unit are written with it: swap_total_kb 0 -> 0 KiB.
    assert 'evidence: overcommit memory = 0; swap total = 0 KiB' in text
    assert 'unit: none' in text and 'Who dies next (highest oom_score first; 5 processes listed):' in text


def test_no_pressure_swap_in_use_and_one_victim():
    data = posture()
    data.update(pressure=None, victims=data['victims'][:1], oom_kills_since_boot=None)
    data['memory'].update(SwapTotal=4194304, SwapFree=3145728)
    text = posture_report(data, victims=3)
    assert 'Memory pressure (PSI): not available' in text
    assert 'swap 4.0 GiB (1.0 GiB used)' in text and 'OOM kills since boot: unknown' in text
    assert '1 process listed' in text and text.startswith('OOM posture: MEDIUM risk')


def test_cgroup_paths_are_cut_in_the_middle_keeping_the_unit_name():
    data = posture()
    path = '/system.slice/system-postgresql.slice/very/deep/nesting/of/groups/postgresql@15-main.service'
    data['victims'][0].update(unit=None, cgroup=path)
    row = [line for line in posture_report(data).splitlines() if line.strip().startswith('29034')][0]
    # The start of the path and the unit's whole name, 36 characters in all.
    assert '  /system.\u2026/postgresql@15-main.service qemu-system' in row
    assert rt.cut_middle(path, 60) == '/system.slice/system-postgresql.\u2026/postgresql@15-main.service'


def test_the_same_advice_is_given_once():
    data = posture()
    twin = copy.deepcopy(data['findings'][0])
    twin.update(id='no_early_killer_twin', severity='medium')
    data['findings'].append(twin)
    text = posture_report(data)
    assert text.count(twin['advice'].split()[0] + ' and enable one') == 1
    assert 'fix: as for no_early_killer above' in text


def test_a_posture_that_is_not_one_says_which_field_is_wrong():
    assert posture_report(['x'], host='h') == 'OOM posture of h: cannot be read: posture = a list of 1 item; expected: a mapping'
    data = posture()
    data['memory']['MemTotal'] = 'lots'
    assert posture_report(data) == 'OOM posture: cannot be read: posture.memory.MemTotal = the text "lots"; ' \
        'expected: a finite number >= 0'
    assert posture_report(posture(), victims='many') == 'OOM posture: cannot be printed: victims = the text "many"; ' \
        'allowed: a whole number >= 0'


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'posture_report': posture_report}


def test_units_and_counts_in_words():
    assert [rt.plural(n, 'host') for n in (0, 1, 2)] == ['0 hosts', '1 host', '2 hosts']
    assert rt.plural(1, 'process', 'processes') == '1 process' and rt.plural(3, 'process', 'processes') == '3 processes'
    assert [rt.size_kb(v) for v in (900, 2048, 24684092, None, float('nan'))] == [
        '900 KiB', '2.0 MiB', '23.5 GiB', 'unknown', 'unknown']
    assert rt.unit_value('sunreclaim_percent', 12.345) == '12.3 %' and rt.unit_value('kernel_panic_seconds', 10) == '10 s'
    assert rt.value_text({'a': None, 'b': [True, 1.5], 'c': {}}) == 'a: none, b: yes, 1.5, c: empty'
    assert rt.cut_middle('x' * 100, 20) == 'x' * 9 + '\u2026' + 'x' * 10


def test_the_domains_tightest_first_with_whom_the_kernel_kills():
    data = posture()
    victim = {'pid': 4242, 'comm': 'worker', 'unit': 'app.service', 'badness': 14336, 'oom_score_adj': 500,
              'rss_kb': 8192, 'swap_kb': 0, 'pgtables_kb': 64}
    data['domains'] = [
        {'kind': 'host', 'path': '/', 'unit': None, 'limit_kb': 24683772, 'usage_kb': 4194304, 'headroom_kb': 20489468,
         'totalpages': None, 'tasks': None, 'group_kill': None, 'group_victims': [], 'next_victim': dict(victim)},
        {'kind': 'memcg', 'path': '/system.slice', 'unit': 'system.slice', 'limit_kb': 1048576, 'usage_kb': 524288,
         'headroom_kb': 524288, 'totalpages': 262144, 'tasks': 3, 'group_kill': '/system.slice',
         'group_victims': [{'pid': 1}, {'pid': 2}, {'pid': 3}], 'next_victim': dict(victim)},
        {'kind': 'memcg', 'path': '/system.slice/app.service', 'unit': 'app.service', 'limit_kb': 131072,
         'usage_kb': 98304, 'headroom_kb': 32768, 'totalpages': 32768, 'tasks': 1, 'group_kill': None,
         'group_victims': [], 'next_victim': None},
    ]
    lines = posture_report(data, victims=2).splitlines()
    start = lines.index('Where an OOM can happen (the soonest forecast, then the tightest headroom, first) and whom the '
                        'kernel kills there:')
    rows = lines[start + 2:]
    assert rows[0].split()[:2] == ['host', '/'] and 'worker (pid 4242, RSS 8.0 MiB, adj 500)' in rows[0]
    # The host, then the tightest cgroup only (victims=2); the other is counted.
    assert rows[1].split()[:2] == ['memcg', 'app.service'] and rows[1].endswith('nobody the OOM killer may kill')
    assert '128.0 MiB' in rows[1] and '32.0 MiB' in rows[1]
    assert rows[2] == '  (1 more domain with more headroom)'
    text = posture_report(data, victims=5)
    assert 'memory.oom.group: all 3 tasks of /system.slice' in text
    assert not REPR.search(text)


def test_a_numa_node_domain_reads_as_the_node_and_the_unit_confined_to_it(captured_tree):
    """The real capture of the numa VM with a service confined to node 1 (AllowedMemoryNodes=1)."""
    root = captured_tree('debian12-6.1-qemu-numa2-cpuset')
    snap = snapshot.collect(procfs.HostRoot(root), skip=('slabinfo', 'systemd'))
    text = posture_report(facts.posture_facts(snap, posture_mod.judge(snap)), victims=5)
    row = [line for line in text.splitlines() if line.split()[:1] == ['node']]
    assert len(row) == 1, text
    assert row[0].split()[:3] == ['node', 'node:1', 'oomguard-predict.service'], row
    assert row[0].endswith('small (pid 982, RSS 16.1 MiB, adj 1000)'), row
    assert '735.4 MiB' in row[0] and '544.2 MiB' in row[0], row  # node 1's MemTotal and what it can still give
    assert not REPR.search(text)
