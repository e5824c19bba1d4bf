# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""slab_leak on a real kernel (issue 7): the quiet VM is not flagged; unreclaimable
slab made to grow on purpose (empty files in a tmpfs directory, one
shmem_inode_cache object each) is flagged, with that cache as the one growing.
The directory and its writer are removed afterwards.
"""

import pytest

GROW_DIR = '/dev/shm/oomguard-slab-test'
# 1,000 empty files every 0.2 s until stopped (about 2 MiB of slab a second
# on the emulated CPU).
WRITER = ("/usr/bin/python3 -c 'import os, time\ni = 0\nwhile True:\n"
          "    for dummy in range(1000):\n        open(\"%s/%%d\" %% i, \"w\").close()\n        i += 1\n"
          "    time.sleep(0.2)'" % GROW_DIR)


@pytest.fixture
def slab_case(scenario):
    if not scenario.get('slab_leak'):
        pytest.skip('slab_leak is proven in the default scenario')


def test_a_quiet_vm_is_not_flagged(host, slab_case):
    result = host.ansible('oomguard.linux.slab_leak', 'samples=4 interval_s=2', check=False)
    assert result['verdict'] == 'ok', result['reasons']
    assert result['samples'] == 4 and result['unread'] == []
    assert len(result['top_caches']) == 10 and result['growing_caches'] == []


def test_growing_unreclaimable_slab_is_flagged_with_its_cache(host, slab_case):
    host.run_expect([0], 'mkdir -p %s' % GROW_DIR)
    try:
        host.run_expect([0], 'systemd-run --quiet --unit=oomguard-slab-writer -p RuntimeMaxSec=120 %s' % WRITER)
        result = host.ansible('oomguard.linux.slab_leak', 'samples=4 interval_s=3', check=False)
    finally:
        host.run('systemctl stop oomguard-slab-writer; systemctl reset-failed oomguard-slab-writer; rm -rf %s' % GROW_DIR)
    assert result['verdict'] in ('growing', 'leak'), result
    assert result['flagged'] is True
    series = result['sunreclaim_series_kb']
    assert all(b > a for a, b in zip(series, series[1:])), series
    fastest = result['growing_caches'][0]
    assert fastest['name'] == 'shmem_inode_cache' and fastest['reclaimable'] is False, result['growing_caches']
    assert result['reasons'][-1].startswith('fastest growing cache: shmem_inode_cache')
    assert not host.file(GROW_DIR).exists
