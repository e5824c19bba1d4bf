# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's own rules, written once for the posture findings and the guards.

What the kernel computes by itself (the default vm.min_free_kbytes,
khugepaged's recommendation, CommitLimit) and the ceilings the collection
holds values to.  Pure functions over what the readers return, so that
``oom_facts`` never flags a value that ``kernel_tunables`` accepts, or the
other way round.
"""


import math
import re

# vm.min_free_kbytes above this share of low memory keeps that memory out of
# use and can start an OOM at once; khugepaged caps its own raise at 5 % too.
MIN_FREE_MAX_PERCENT = 5
# The ceiling of the kernel's computed default (mm/page_alloc.c): 262144 kB
# since 5.7, 65536 kB before.  An unknown kernel gets
# the lower one, so the "below default" rule errs towards silence.
MIN_FREE_DEFAULT_CEILING_KB = 262144
MIN_FREE_DEFAULT_CEILING_OLD_KB = 65536
MIN_FREE_DEFAULT_FLOOR_KB = 128
# vm.min_free_kbytes: auto (docs/tunables.md): 1 % of RAM, at least the
# kernel's own default and khugepaged's recommendation, at most 1 GiB.
AUTO_MIN_FREE_PERCENT = 1
AUTO_MIN_FREE_CEILING_KB = 1048576
# khugepaged's recommendation (mm/khugepaged.c): per populated zone, 2 free
# pageblocks plus MIGRATE_PCPTYPES (3) squared, at most 5 % of lowmem.
KHUGEPAGED_PAGEBLOCKS_PER_ZONE = 2 + 3 * 3
KHUGEPAGED_LOWMEM_DIVISOR = 20
# Zones the kernel does not count as low memory.
_NOT_LOWMEM = ('HighMem', 'Movable', 'Device')


def kernel_version(release):
    """(major, minor) of a kernel release string ('6.1.0-27-amd64'), None when unreadable."""
    match = re.match(r'\s*(\d+)\.(\d+)', release or '')
    return (int(match.group(1)), int(match.group(2))) if match else None


def lowmem_kb(meminfo_kb):
    """Memory the kernel addresses directly: MemTotal less HighMem (all of it on 64-bit)."""
    if meminfo_kb.get('LowTotal'):
        return meminfo_kb['LowTotal']
    return (meminfo_kb.get('MemTotal') or 0) - (meminfo_kb.get('HighTotal') or 0)


def _lowmem_zones(zones):
    return [z for z in zones or [] if z.get('zone') not in _NOT_LOWMEM]


def zones_lowmem_kb(zones):
    """nr_free_buffer_pages() in kB: managed lowmem above each zone's high watermark."""
    return sum(max(z.get('managed_kb', 0) - z.get('high_kb', 0), 0) for z in _lowmem_zones(zones))


def min_free_default_kb(zones, release=None, meminfo_kb=None):
    """The kernel's own vm.min_free_kbytes: int_sqrt(lowmem_kb * 16), clamped.

    lowmem is nr_free_buffer_pages(), read from the zones' current
    watermarks; the kernel computes it again with them when khugepaged stops
    or memory is hot-added, and current watermarks give the smaller of the
    two answers, so no rule here ever refuses the value the kernel itself
    would choose.  Without zones, lowmem from meminfo.  None when unknown.
    """
    lowmem = zones_lowmem_kb(zones) if zones else lowmem_kb(meminfo_kb or {})
    if lowmem <= 0:
        return None
    version = kernel_version(release)
    ceiling = MIN_FREE_DEFAULT_CEILING_KB if version is not None and version >= (5, 7) \
        else MIN_FREE_DEFAULT_CEILING_OLD_KB
    return max(MIN_FREE_DEFAULT_FLOOR_KB, min(ceiling, math.isqrt(lowmem * 16)))


def min_free_ceiling_kb(low_kb, percent=MIN_FREE_MAX_PERCENT):
    """The most vm.min_free_kbytes may be: MIN_FREE_MAX_PERCENT of low memory."""
    return low_kb * percent // 100


def min_free_verdict(value_kb, low_kb, default_kb):
    """'above_ceiling', 'below_default' or None for a vm.min_free_kbytes value.

    The guard refuses what this says; the posture finding reports it.
    """
    ceiling = min_free_ceiling_kb(low_kb)
    if ceiling and value_kb > ceiling:
        return 'above_ceiling'
    if default_kb and value_kb < default_kb:
        return 'below_default'
    return None


def khugepaged_min_free_kb(zones, pageblock_kb=2048):
    """What khugepaged raises vm.min_free_kbytes to while THP is on.

    11 pageblocks per populated lowmem zone, at most 5 % of lowmem.  The
    kernel takes lowmem above the high watermarks; this takes all managed
    lowmem, so that the answer does not move when a run changes the
    watermarks (it is at most 5 % of the zones' pages above the kernel's).
    """
    populated = [z for z in _lowmem_zones(zones) if z.get('present_kb', z.get('managed_kb', 0)) > 0]
    lowmem = sum(z.get('managed_kb', 0) for z in populated)
    if lowmem <= 0 or not pageblock_kb:
        return None
    return min(pageblock_kb * KHUGEPAGED_PAGEBLOCKS_PER_ZONE * len(populated), lowmem // KHUGEPAGED_LOWMEM_DIVISOR)


def auto_min_free_kb(mem_total_kb, kernel_default_kb, khugepaged_kb=None):
    """vm.min_free_kbytes: auto -- 1 % of RAM, never below the kernel default, at most 1 GiB.

    Never below khugepaged's recommendation either: turning THP off (as the
    latency_sensitive and database profiles do) would otherwise let the
    kernel drop the reserve the host ran with, 27868 kB to 5762 kB on the
    640 MiB test VM.
    """
    cap = mem_total_kb * MIN_FREE_MAX_PERCENT // 100
    value = min(mem_total_kb * AUTO_MIN_FREE_PERCENT // 100, AUTO_MIN_FREE_CEILING_KB, cap)
    return max(value, kernel_default_kb or 0, min(khugepaged_kb or 0, cap))


def commit_limit_kb(overcommit_kbytes, overcommit_ratio, mem_total_kb, hugetlb_kb=0, swap_kb=0):
    """CommitLimit for these settings (mm/util.c vm_commit_limit); None when unknown.

    overcommit_kbytes wins when it is not 0; otherwise the ratio of RAM less
    huge pages, plus swap.
    """
    if overcommit_kbytes:
        return overcommit_kbytes + (swap_kb or 0)
    if overcommit_ratio is None or mem_total_kb is None:
        return None
    return (mem_total_kb - (hugetlb_kb or 0)) * overcommit_ratio // 100 + (swap_kb or 0)
