# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""slab_leak's reader and judge, on real sample series (tests/unit/fixtures/slab, see its README)
and on this machine's own /proc (read only)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import procfs, slab

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'slab')


def _read(path):
    with open(path) as handle:
        return handle.read()


def series(origin):
    """The captured samples of one origin, and its reclaim_account flags."""
    root = os.path.join(FIXTURES, origin)
    times = [float(line) for line in _read(os.path.join(root, 'times')).split()]
    samples = []
    for index, t in enumerate(times, 1):
        meminfo_kb, dummy = procfs.parse_meminfo(_read(os.path.join(root, '%d.meminfo' % index)))
        samples.append(slab.Sample(t, meminfo_kb, procfs.parse_slabinfo(_read(os.path.join(root, '%d.slabinfo' % index)))))
    flags = dict((name, value == '1') for name, value in (line.split() for line in _read(os.path.join(root, 'reclaim_account')).splitlines()))
    return samples, flags


def options(**changes):
    result = dict(slab.DEFAULTS)
    result.update(changes)
    return result


def test_tmpfs_inodes_growing_are_flagged_with_the_cache_that_grows():
    # Captured on this machine's kind while a writer created empty files in /dev/shm:
    # SUnreclaim 51512 -> 101212 kB in about 4 s, shmem_inode_cache 390 -> 3246 slabs.
    samples, flags = series('host-6.18-tmpfs-inodes-growing')
    result = slab.judge(samples, [], flags, options())
    assert result['verdict'] == 'growing' and result['flagged'] is True
    assert result['sunreclaim_series_kb'] == [51512, 64172, 76264, 88796, 101212]
    assert result['sunreclaim_growth_kb'] == 49700
    window_s = samples[-1].t - samples[0].t
    assert result['window_s'] == round(window_s, 3) and 4 < window_s < 6
    assert result['sunreclaim_rate_kb_per_min'] == round(49700 * 60 / window_s, 1)     # about 9 MB/s
    fastest = result['growing_caches'][0]
    assert fastest['name'] == 'shmem_inode_cache' and fastest['reclaimable'] is False
    assert fastest['growth_kb'] == (3246 - 390) * 4 * 4
    assert fastest['active_objs'] == 68166 and fastest['objsize_bytes'] == 752
    assert result['reasons'][-1].startswith('fastest growing cache: shmem_inode_cache') and '(unreclaimable)' in result['reasons'][-1]
    # Under 10 % of 24 GiB: growing, not yet high; the time to the threshold is given.
    assert result['sunreclaim_percent'] < 1 and 0 < result['minutes_to_threshold'] < 10
    assert result['top_caches'][0]['size_kb'] >= result['top_caches'][-1]['size_kb']


def test_tmpfs_inodes_above_a_low_share_threshold_is_a_leak():
    samples, flags = series('host-6.18-tmpfs-inodes-growing')
    result = slab.judge(samples, [], flags, options(unreclaimable_percent=0.3))
    assert result['verdict'] == 'leak'
    assert result['reasons'][0] == 'SUnreclaim is 0.41 % of MemTotal, above 0.3 %'
    assert 'minutes_to_threshold' not in result


def test_a_quiet_host_is_not_flagged():
    samples, flags = series('host-6.18-quiet')
    result = slab.judge(samples, [], flags, options())
    assert result['verdict'] == 'ok' and result['flagged'] is False and result['reasons'] == []
    assert result['growing_caches'] == []
    assert result['sunreclaim_series_kb'] == [45404, 45388, 45356, 45340, 45324]
    # Reclaimable caches are told apart: the inode and dentry caches are, kmalloc is not.
    by_name = dict((c['name'], c) for c in result['top_caches'])
    assert by_name['dentry']['reclaimable'] is True


def test_the_share_rule_alone_flags_high():
    samples, flags = series('host-6.18-quiet')
    result = slab.judge(samples, [], flags, options(unreclaimable_percent=0.1))
    assert result['verdict'] == 'high' and result['reasons'] == ['SUnreclaim is 0.18 % of MemTotal, above 0.1 %']


def test_growth_that_stops_in_one_interval_is_not_growing():
    samples, flags = series('host-6.18-tmpfs-inodes-growing')
    # Reading 3 again in place of 4: the series goes up, down, up; the rate is high, the shape is not a leak's.
    samples = samples[:3] + [slab.Sample(samples[3].t, samples[1].meminfo_kb, samples[1].caches)] + samples[4:]
    result = slab.judge(samples, [], flags, options())
    assert result['verdict'] == 'ok'
    assert [c for c in result['top_caches'] if c['name'] == 'shmem_inode_cache'][0]['verdict'] == 'steady'


def test_one_sample_judges_the_share_only():
    samples, flags = series('host-6.18-tmpfs-inodes-growing')
    result = slab.judge(samples[-1:], [], flags, options())
    assert result['verdict'] == 'ok' and result['sunreclaim_rate_kb_per_min'] is None
    assert all(c['verdict'] == 'unknown' for c in result['top_caches'])


def test_without_slabinfo_the_verdict_stands_on_meminfo():
    samples, flags = series('host-6.18-tmpfs-inodes-growing')
    bare = [slab.Sample(s.t, s.meminfo_kb, None) for s in samples]
    result = slab.judge(bare, ['/proc/slabinfo: permission denied (needs root)'], {}, options())
    assert result['verdict'] == 'growing'
    assert result['top_caches'] is None and result['growing_caches'] is None
    assert result['unread'] == ['/proc/slabinfo: permission denied (needs root)']


def test_a_cache_that_appears_mid_window_has_no_rate():
    samples, flags = series('host-6.18-quiet')
    samples[0].caches = [c for c in samples[0].caches if c['name'] != 'dentry']
    result = slab.judge(samples, [], flags, options())
    dentry = [c for c in result['top_caches'] if c['name'] == 'dentry'][0]
    assert dentry['rate_kb_per_min'] is None and dentry['verdict'] == 'unknown'


@pytest.mark.parametrize('params, message', [
    ({'samples': 0}, 'host web1: slab_leak samples = 0 is out of range; allowed: 1..1000'),
    ({'interval_s': 0.0}, 'host web1: slab_leak interval_s = 0.0 is out of range; allowed: 0.1..3600.0'),
    ({'top': 5000}, 'host web1: slab_leak top = 5000 is out of range; allowed: 1..1000'),
    ({'unreclaimable_percent': 120.0}, 'host web1: slab_leak unreclaimable_percent = 120.0 is out of range; allowed: 0.1..100.0'),
    ({'growth_kb_per_min': 0}, 'host web1: slab_leak growth_kb_per_min = 0 is out of range; allowed: 1..1073741824'),
])
def test_bad_options_are_refused_before_any_reading(params, message):
    calls = []
    with pytest.raises(ValueError) as info:
        slab.run(procfs.HostRoot('/'), params, 'web1', sleep=calls.append)
    assert str(info.value) == message
    assert calls == []


def test_this_machine_read_only():
    # This machine's own /proc: a quiet moment, two readings a tenth of a second apart.
    slept = []
    result = slab.run(procfs.HostRoot('/'), {'samples': 2, 'interval_s': 0.1}, 'localhost', sleep=slept.append)
    assert slept == [0.1] and result['samples'] == 2
    with open('/proc/meminfo') as handle:
        total_kb = int([line for line in handle if line.startswith('MemTotal:')][0].split()[1])
    assert result['mem_total_kb'] == total_kb and 0 < result['sunreclaim_kb'] < total_kb
    if os.access('/proc/slabinfo', os.R_OK):
        assert result['unread'] == [] and len(result['top_caches']) == 10
        assert any(c['reclaimable'] is not None for c in result['top_caches']) or not os.path.isdir('/sys/kernel/slab')
    else:
        assert result['top_caches'] is None and result['unread'][0].startswith('/proc/slabinfo: ')


def test_an_absent_slabinfo_is_said(tmp_path):
    # A tree with meminfo only (a kernel without /proc/slabinfo).
    (tmp_path / 'proc').mkdir()
    shutil.copy(os.path.join(FIXTURES, 'host-6.18-quiet', '1.meminfo'), str(tmp_path / 'proc' / 'meminfo'))
    result = slab.run(procfs.HostRoot(str(tmp_path)), {'samples': 1})
    assert result['unread'] == ['/proc/slabinfo: absent (kernel without CONFIG_SLUB_DEBUG or slabinfo)']
    assert result['sunreclaim_kb'] == 45404 and result['top_caches'] is None
