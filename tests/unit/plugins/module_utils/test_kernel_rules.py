# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kernel_rules: the kernel's own numbers, on captured zoneinfo, this machine and the kernel's tables."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import math
import os

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import kernel_rules as kr
from ansible_collections.oomguard.linux.plugins.module_utils import posture, procfs, snapshot
from ansible_collections.oomguard.linux.plugins.module_utils import tunables as tn
from ansible_collections.oomguard.linux.tests.unit.trees import TREE_NAMES

# A current kernel: the default's ceiling is 262144 kB (65536 kB before 5.7).
RELEASE = '6.1.0-27-amd64'


# -- the kernel's own min_free_kbytes ----------------------------------------------

def _lowmem_kb(zones):
    # nr_free_buffer_pages(): managed memory above the high watermark, lowmem zones only.
    return sum(max(z['managed_kb'] - z['high_kb'], 0) for z in zones
               if z['zone'] not in ('HighMem', 'Movable', 'Device'))


@pytest.mark.parametrize('name', TREE_NAMES)
def test_kernel_default_min_free_on_captured_zoneinfo(name, captured_tree):
    root = captured_tree(name)
    with open(os.path.join(root, 'proc', 'zoneinfo')) as handle:
        zones = procfs.parse_zoneinfo(handle.read())
    assert zones and all('managed_kb' in z for z in zones), 'every zone has a managed line'
    value = kr.min_free_default_kb(zones, RELEASE)
    assert 128 <= value <= 262144
    assert value == math.isqrt(16 * _lowmem_kb(zones))
    # The live value read at capture time: the kernel's own one, or khugepaged's
    # recommendation above it (all four captures run with THP enabled).
    with open(os.path.join(root, 'proc', 'sys', 'vm', 'min_free_kbytes')) as handle:
        live_value = int(handle.read())
    assert live_value >= value * 0.95


def test_kernel_default_min_free_on_this_machine():
    zones = procfs.read_zoneinfo(procfs.HostRoot('/'))
    if not zones:
        pytest.skip('no /proc/zoneinfo')
    value = kr.min_free_default_kb(zones, RELEASE)
    assert 128 <= value <= 262144
    assert value == max(128, min(262144, math.isqrt(16 * _lowmem_kb(zones))))


@pytest.mark.parametrize('zones, expected', [
    # The table in the comment of mm/page_alloc.c: 16 MB -> 512k, 1024 MB -> 4096k, 16 GB -> 16384k.
    ([{'zone': 'Normal', 'managed_kb': 16384}], 512),
    ([{'zone': 'DMA32', 'managed_kb': 1048576}], 4096),
    ([{'zone': 'DMA', 'managed_kb': 15360}, {'zone': 'Normal', 'managed_kb': 16777216 - 15360}], 16384),
    ([{'zone': 'Normal', 'managed_kb': 4}], 128),                      # lower clamp
    ([{'zone': 'Normal', 'managed_kb': 16 * 1024 ** 3}], 262144),       # upper clamp
    # HighMem, Movable and Device memory is not lowmem.
    ([{'zone': 'Normal', 'managed_kb': 16384}, {'zone': 'HighMem', 'managed_kb': 10 ** 9},
      {'zone': 'Movable', 'managed_kb': 10 ** 9}, {'zone': 'Device', 'managed_kb': 10 ** 9}], 512),
    ([{'zone': 'Normal'}], None),                                       # no managed line
    ([{'zone': 'Movable', 'managed_kb': 1048576}], None),
    ([], None),
    (None, None),
])
def test_kernel_default_min_free_formula(zones, expected):
    assert kr.min_free_default_kb(zones, RELEASE) == expected


@pytest.mark.parametrize('mem_total, default, khugepaged, expected', [
    (24684092, 13089, None, 246840),        # 1 % of RAM
    (102400, 1280, None, 1280),             # never below the kernel's own default
    (209715200, 262144, None, 1048576),     # at most 1 GiB
    (1048576, None, None, 10485),           # default unknown
    # The 640 MiB test VM: the stock kernel ran 27868 kB (khugepaged, THP on); auto keeps that much.
    (576220, 2986, 28811, 28811),
    (24684092, 13885, 67584, 246840),       # this machine's kind: 1 % is more than khugepaged's
    (576220, 2986, 10 ** 6, 28811),         # never above 5 % of RAM, whatever the zones say
])
def test_auto_min_free(mem_total, default, khugepaged, expected):
    assert kr.auto_min_free_kb(mem_total, default, khugepaged) == expected


def _read(root, rel):
    with open(os.path.join(root, rel)) as handle:
        return handle.read()


@pytest.mark.parametrize('name', TREE_NAMES)
def test_khugepaged_min_free_on_captured_zoneinfo(name, captured_tree):
    # All four captures ran with THP on, so the live value is khugepaged's
    # recommendation or the kernel's default, whichever is larger.  The rule
    # counts all managed lowmem (the kernel: above the high watermarks), so it
    # may be up to 5 % of the zones' pages above the kernel's answer, never below.
    root = captured_tree(name)
    zones = procfs.parse_zoneinfo(_read(root, 'proc/zoneinfo'))
    live_value = int(_read(root, 'proc/sys/vm/min_free_kbytes'))
    assert '[never]' not in _read(root, 'sys/kernel/mm/transparent_hugepage/enabled')
    rule = max(kr.khugepaged_min_free_kb(zones), kr.min_free_default_kb(zones, RELEASE))
    assert live_value <= rule <= live_value * 1.06, (live_value, rule)


def test_khugepaged_min_free_on_this_machine():
    root = procfs.HostRoot('/')
    zones = procfs.read_zoneinfo(root)
    thp = root.read('sys/kernel/mm/transparent_hugepage/enabled') or ''
    if not zones or '[never]' in thp or not thp:
        pytest.skip('no zoneinfo, or THP off here: khugepaged does not set min_free_kbytes')
    live_value = int(root.read('proc/sys/vm/min_free_kbytes'))
    rule = max(kr.khugepaged_min_free_kb(zones), kr.min_free_default_kb(zones, RELEASE))
    if live_value > rule * 1.06:
        pytest.skip('vm.min_free_kbytes = %d was set by hand here' % live_value)
    assert live_value <= rule <= live_value * 1.06, (live_value, rule)


@pytest.mark.parametrize('zones, pageblock_kb, expected', [
    # 11 pageblocks per populated zone: DMA + DMA32 + Normal with 2 MiB pageblocks.
    ([{'zone': 'DMA', 'present_kb': 15992, 'managed_kb': 15360}, {'zone': 'DMA32', 'present_kb': 3129344, 'managed_kb': 3091668},
      {'zone': 'Normal', 'present_kb': 22020096, 'managed_kb': 9043968}, {'zone': 'Movable', 'present_kb': 0, 'managed_kb': 0}],
     2048, 67584),
    # A small host: 5 % of lowmem is less.
    ([{'zone': 'DMA', 'present_kb': 16380, 'managed_kb': 15360}, {'zone': 'DMA32', 'present_kb': 638840, 'managed_kb': 560860}],
     2048, 28811),
    # Unpopulated zones do not count; Movable, HighMem and Device are not lowmem.
    ([{'zone': 'Normal', 'present_kb': 10 ** 8, 'managed_kb': 10 ** 8}, {'zone': 'DMA32', 'present_kb': 0, 'managed_kb': 0},
      {'zone': 'HighMem', 'present_kb': 10 ** 8, 'managed_kb': 10 ** 8}], 2048, 22528),
    ([{'zone': 'Movable', 'present_kb': 10 ** 8, 'managed_kb': 10 ** 8}], 2048, None),
    ([], 2048, None),
    (None, 2048, None),
])
def test_khugepaged_min_free_formula(zones, pageblock_kb, expected):
    assert kr.khugepaged_min_free_kb(zones, pageblock_kb) == expected


# -- the same formula from meminfo (no zoneinfo) -----------------------------------

@pytest.mark.parametrize('lowmem_kb, version, expected', [
    # The table in mm/page_alloc.c's comment: 16MB 512k, 1024MB 4096k, 16384MB 16384k.
    (16384, (6, 1), 512),
    (1048576, (6, 1), 4096),
    (16777216, (6, 1), 16384),
    (4, (6, 1), 128),                     # lower clamp
    (4294967296 * 4, (6, 1), 262144),      # upper clamp since 5.7
    (4294967296 * 4, (5, 4), 65536),       # upper clamp before
    (4294967296 * 4, None, 65536),         # unknown kernel: the lower bound
])
def test_min_free_default_from_meminfo(lowmem_kb, version, expected):
    release = '%d.%d.0' % version if version else None
    assert kr.min_free_default_kb(None, release, {'MemTotal': lowmem_kb}) == expected


@pytest.mark.parametrize('text, expected', [
    ('6.18.44-fc-v657', (6, 18)),
    ('5.4.0-150-generic', (5, 4)),
    ('2.6.32-754.el6.x86_64', (2, 6)),
    ('', None),
    (None, None),
    ('garbage', None),
])
def test_kernel_version(text, expected):
    assert kr.kernel_version(text) == expected


# -- one rule on both sides: the posture finding and the sysctl role's guard ---------------

GUARD_OF_FINDING = {'min_free_kbytes_too_high': 'min_free_above_5_percent',
                    'min_free_kbytes_below_default': 'min_free_below_default'}


def _guards_fired(live, value):
    req = tn.Request()
    req.sysctl = {'vm.min_free_kbytes': str(value)}
    req.sysctl_scope = {'vm.min_free_kbytes': 'sysctl'}
    return sorted(p.id for p in tn.check_guards(req, live, engine.Labels('h')))


def _findings(snap, value):
    snap = copy.deepcopy(snap)
    snap['sysctl']['vm.min_free_kbytes'] = value
    return sorted(GUARD_OF_FINDING[fid] for fid, dummy in posture.check_min_free_kbytes(snap, posture.DEFAULT_THRESHOLDS))


@pytest.mark.parametrize('name', TREE_NAMES)
def test_posture_and_guards_agree_on_captured_trees(name, captured_tree):
    host = procfs.HostRoot(captured_tree(name))
    snap = snapshot.collect(host, skip=['processes', 'cgroups', 'slabinfo', 'systemd'])
    live = tn.read_live(host, ['vm.min_free_kbytes'])
    default = live['kernel_default_min_free_kb']
    ceiling = kr.min_free_ceiling_kb(live['lowmem_kb'])
    assert 128 <= default < ceiling
    # Both sides compute the same default from the same capture.
    assert posture.check_min_free_kbytes(dict(snap, sysctl=dict(snap['sysctl'], **{'vm.min_free_kbytes': 0})),
                                         posture.DEFAULT_THRESHOLDS)[0][1]['default_min_free_kbytes'] == default
    values = [0, 128, default - 1, default, default + 1, (default + ceiling) // 2, ceiling - 1, ceiling, ceiling + 1,
              ceiling * 2, int(snap['sysctl']['vm.min_free_kbytes'])]
    verdicts = dict((value, _guards_fired(live, value)) for value in values)
    assert verdicts == dict((value, _findings(snap, value)) for value in values)
    # ... and the sweep crossed both edges.
    assert verdicts[default - 1] == ['min_free_below_default'] and verdicts[default] == []
    assert verdicts[ceiling] == [] and verdicts[ceiling + 1] == ['min_free_above_5_percent']
