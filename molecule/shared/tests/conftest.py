# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers of the VM verify steps (testinfra, run by Molecule).

Every scenario runs the same tests; what differs between scenarios (the
kernel command line, the NUMA layout, the OOMs to provoke) is in
SCENARIOS, keyed by MOLECULE_SCENARIO_NAME.
"""

import os

import pytest

# A hog that grows 16 MiB at a time until the kernel kills it. MAP_POPULATE
# makes every page resident in one system call: touching them one fault at a
# time is three times slower on an emulated CPU.
HOG = ("python3 -c 'import mmap\nh = []\nwhile True: h.append(mmap.mmap(-1, 16 << 20, "
       "flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE))'")

# One OOM case: the systemd-run properties that confine the hog, and the
# cause oom_events must name.
MEMCG = {'unit': 'oomguard-memcg', 'properties': ['MemoryMax=64M', 'MemorySwapMax=0'], 'cause': 'memcg_limit'}
HOST = {'unit': 'oomguard-host', 'properties': ['OOMScoreAdjust=1000'], 'cause': 'host'}
CPUSET = {'unit': 'oomguard-cpuset', 'properties': ['AllowedMemoryNodes=1', 'AllowedCPUs=1'], 'cause': 'numa_node'}
MEMPOLICY = {'unit': 'oomguard-mempolicy', 'properties': [], 'prefix': 'numactl --membind=1 ', 'cause': 'mempolicy'}

SCENARIOS = {
    'default': {'cgroup_modes': ['v2'], 'numa_nodes': 1, 'ooms': [MEMCG, HOST]},
    # systemd 252 with unified_cgroup_hierarchy=0 mounts v1 controllers and,
    # by default, a v2 hierarchy for itself at /sys/fs/cgroup/unified.  On v1
    # systemd cannot tell an OOM kill from another SIGKILL: Result=signal.
    'cgroupv1': {'cgroup_modes': ['v1', 'hybrid'], 'numa_nodes': 1,
                 'ooms': [dict(MEMCG, properties=['MemoryMax=64M'], results=['oom-kill', 'signal'])]},
    'numa': {'cgroup_modes': ['v2'], 'numa_nodes': 2, 'ooms': [CPUSET, MEMPOLICY]},
}


@pytest.fixture(scope='session')
def scenario():
    name = os.environ.get('MOLECULE_SCENARIO_NAME', 'default')
    assert name in SCENARIOS, 'no expectations for scenario %s' % name
    return SCENARIOS[name]


@pytest.fixture(scope='session')
def run_hog():
    return _run_hog


def _run_hog(host, case):
    """Run the hog as a transient service until it ends; return the unit's result."""
    properties = ' '.join('-p %s' % p for p in case['properties'])
    host.run('systemctl reset-failed %s.service' % case['unit'])
    command = 'systemd-run --wait --quiet --unit=%s %s %s%s' % (case['unit'], properties, case.get('prefix', ''), HOG)
    # timeout: a hog that is never killed must fail the test, not hang it.
    # '|| true': systemd-run exits 255 for a service killed by a signal,
    # which testinfra would take for a failed SSH connection.
    host.run('timeout 600 %s || true' % command)
    return host.check_output('systemctl show -P Result %s.service' % case['unit'])
