# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers of the VM verify steps (testinfra, run by Molecule).

Every scenario runs the same tests; what differs between scenarios (the
kernel command line, the NUMA layout, the OOMs to provoke) is in
SCENARIOS, keyed by MOLECULE_SCENARIO_NAME.
"""

import os
import time

import pytest

# A hog that grows 16 MiB at a time until the kernel kills it. MAP_POPULATE
# makes every page resident in one system call: touching them one fault at a
# time is three times slower on an emulated CPU. Python names the flag from
# 3.10; Debian 11 has 3.9 (0x8000 is its value on x86).
HOG = ("python3 -c 'import mmap\nh = []\npopulate = getattr(mmap, \"MAP_POPULATE\", 0x8000)\n"
       "while True: h.append(mmap.mmap(-1, 16 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate))'")

# One OOM case: the systemd-run properties that confine the hog, and the
# cause oom_events must name.
MEMCG = {'unit': 'oomguard-memcg', 'properties': ['MemoryMax=64M', 'MemorySwapMax=0'], 'cause': 'memcg_limit'}
HOST = {'unit': 'oomguard-host', 'properties': ['OOMScoreAdjust=1000'], 'cause': 'host'}
CPUSET = {'unit': 'oomguard-cpuset', 'properties': ['AllowedMemoryNodes=1', 'AllowedCPUs=1'], 'cause': 'numa_node'}
MEMPOLICY = {'unit': 'oomguard-mempolicy', 'properties': [], 'prefix': 'numactl --membind=1 ', 'cause': 'mempolicy'}

# The per-unit proofs (test_services.py), run on the scenario's test units
# (files/test-units) as its inventory hardened them.
LIMITED = {'unit': 'oomguard-hog-limited.service', 'cause': 'memcg_limit'}
SLICED = {'unit': 'oomguard-hog-sliced.service', 'cause': 'parent_memcg_limit'}
NODE1 = {'unit': 'oomguard-hog-node1.service', 'cause': 'numa_node'}

# What systemd must report for the default scenario's inventory.
DEFAULT_UNITS = {
    'oomguard-hog-limited.service': {'MemoryMax': '67108864', 'MemorySwapMax': '0'},
    'oomguard-limited.slice': {'MemoryMax': '100663296'},
    'oomguard-db.service': {'OOMScoreAdjust': '-900', 'MemoryLow': '67108864', 'CPUWeight': '1000'},
    'oomguard-batch.service': {'OOMScoreAdjust': '800'},
    'nginx.service': {'OOMPolicy': 'kill'},
    'oomguard-nginx.service': {'OOMPolicy': 'kill', 'MemoryMax': '50331648'},
    'system.slice': {'ManagedOOMMemoryPressure': 'kill'},
}

# What os-release, systemctl --version and uname -r say on each scenario's VM.
DEBIAN12 = {'VERSION_ID': '12', 'systemd': 252, 'kernel': '6.1'}

SCENARIOS = {
    'default': {'cgroup_modes': ['v2'], 'numa_nodes': 1, 'ooms': [MEMCG, HOST], 'release': DEBIAN12,
                'unit_ooms': [LIMITED, SLICED], 'protection_oom': True, 'nginx_loop': True,
                'early_killer': {'unit': 'systemd-oomd.service', 'dry_run': True},
                'unit_properties': DEFAULT_UNITS, 'slab_leak': True, 'seeded_findings': 'cgroups'},
    # systemd 252 with unified_cgroup_hierarchy=0 mounts v1 controllers and,
    # by default, a v2 hierarchy for itself at /sys/fs/cgroup/unified.  On v1
    # systemd cannot tell an OOM kill from another SIGKILL: Result=signal.
    'cgroupv1': {'cgroup_modes': ['v1', 'hybrid'], 'numa_nodes': 1, 'release': DEBIAN12,
                 'ooms': [dict(MEMCG, properties=['MemoryMax=64M'], results=['oom-kill', 'signal'])],
                 'early_killer': {'unit': 'earlyoom.service', 'dry_run': True},
                 'unit_properties': {'oomguard-hog-limited.service': {'MemoryMax': '67108864'},
                                     'oomguard-db.service': {'OOMScoreAdjust': '-900', 'CPUWeight': '1000'}},
                 'unit_ooms': [dict(LIMITED, results=['oom-kill', 'signal'])]},
    # The other releases (issue 20): lean, one memcg and one host OOM each, and
    # what differs between releases (test_release.py).
    'debian11': {'cgroup_modes': ['v2'], 'numa_nodes': 1, 'ooms': [MEMCG, HOST], 'unit_ooms': [LIMITED],
                 'release': {'VERSION_ID': '11', 'systemd': 247, 'kernel': '5.10'}, 'too_new_case': True,
                 'random_machine_id': True,
                 # earlyoom in dry run sees the host OOM coming and says whom it would kill.
                 'early_killer': {'unit': 'earlyoom.service', 'dry_run': True, 'reports_host_oom': True},
                 'absent_units': {'systemd-oomd.service': 'systemd 247 ships no systemd-oomd (248)'},
                 'unit_properties': {
                     'oomguard-hog-limited.service': {'MemoryMax': '67108864', 'MemorySwapMax': '0'},
                     'oomguard-db.service': {'OOMScoreAdjust': '-900', 'MemoryLow': '67108864',
                                             'MemoryMin': '33554432', 'CPUWeight': '1000'},
                     'oomguard-batch.service': {'OOMScoreAdjust': '800'},
                     'nginx.service': {'OOMPolicy': 'kill'}}},
    'debian13': {'monitor': True, 'cgroup_modes': ['v2'], 'numa_nodes': 1, 'ooms': [MEMCG, HOST], 'unit_ooms': [LIMITED],
                 'release': {'VERSION_ID': '13', 'systemd': 257, 'kernel': '6.12'}, 'too_new_case': True,
                 'early_killer': {'unit': 'systemd-oomd.service', 'dry_run': True}, 'oomd_pressure': True,
                 'unit_properties': {
                     'oomguard-hog-limited.service': {'MemoryMax': '67108864', 'MemorySwapMax': '0'},
                     'oomguard-db.service': {'OOMScoreAdjust': '-900', 'MemoryLow': '67108864', 'CPUWeight': '1000',
                                             'ManagedOOMPreference': 'avoid'},
                     'oomguard-batch.service': {'OOMScoreAdjust': '800'},
                     'nginx.service': {'OOMPolicy': 'kill'},
                     'system.slice': {'ManagedOOMMemoryPressure': 'kill'}}},
    'numa': {'cgroup_modes': ['v2'], 'numa_nodes': 2, 'ooms': [CPUSET, MEMPOLICY], 'release': DEBIAN12,
             'unit_ooms': [NODE1], 'early_kill': True, 'seeded_findings': 'earlyoom',
             'early_killer': {'unit': 'earlyoom.service', 'dry_run': False, 'prefer': ['oomguard-batch']},
             'unit_properties': {'oomguard-hog-node1.service': {'AllowedMemoryNodes': '1'},
                                 'oomguard-db.service': {'OOMScoreAdjust': '-900'},
                                 'oomguard-batch.service': {'OOMScoreAdjust': '800'}}},
}


def pytest_collection_modifyitems(items):
    """The fleet audit (test_fleet.py) runs after the others: its report counts the kills they made. The
    monitor's proof (test_monitor.py) runs last of all: it reboots the VM."""
    order = {'test_fleet': 1, 'test_monitor': 2}
    items.sort(key=lambda item: order.get(item.module.__name__.rpartition('.')[2], 0))


@pytest.fixture(scope='session')
def scenario():
    name = os.environ.get('MOLECULE_SCENARIO_NAME', 'default')
    assert name in SCENARIOS, 'no expectations for scenario %s' % name
    return SCENARIOS[name]


@pytest.fixture(scope='session')
def run_hog():
    return _run_hog


def _run_hog(host, case):
    """Run the hog as a transient service until it ends; return the unit's result.

    The hog is started detached and its unit polled, because a guest in the
    near-OOM stall before the kill can stop answering SSH for minutes (seen:
    163 s under TCG, with a soft lockup): a command waiting on the hog over
    that connection would be cut by the SSH keepalives, and a poll just
    tries again.
    """
    unit = case['unit'] + '.service'
    properties = ' '.join('-p %s' % p for p in case['properties'])
    host.run('systemctl reset-failed %s' % unit)
    # RuntimeMaxSec: a hog that is never killed must fail the test, not hang it.
    host.run_expect([0], 'systemd-run --quiet --unit=%s -p RuntimeMaxSec=600 %s %s%s'
                    % (case['unit'], properties, case.get('prefix', ''), HOG))
    deadline = time.monotonic() + 660
    while time.monotonic() < deadline:
        time.sleep(5)
        try:
            state = host.run('systemctl show -P ActiveState %s' % unit)
        except RuntimeError:
            continue  # the guest is in the stall; ask again
        if state.rc == 0 and state.stdout.strip() in ('inactive', 'failed'):
            return host.check_output('systemctl show -P Result %s' % unit)
    raise AssertionError('%s still runs after 660 s' % unit)


@pytest.fixture(scope='session')
def start_and_wait():
    return run_unit


@pytest.fixture(scope='session')
def wait_for_end():
    return wait_inactive


def run_unit(host, unit, timeout_s=660):
    """Start an installed unit and poll it until it ends; return its Result."""
    host.run('systemctl reset-failed %s' % unit)
    host.run_expect([0], 'systemctl start --no-block %s' % unit)
    return wait_inactive(host, unit, timeout_s)


def wait_inactive(host, unit, timeout_s=660):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(5)
        try:
            state = host.run('systemctl show -P ActiveState %s' % unit)
        except RuntimeError:
            continue  # the guest is in the near-OOM stall; ask again
        if state.rc == 0 and state.stdout.strip() in ('inactive', 'failed'):
            return host.check_output('systemctl show -P Result %s' % unit)
    raise AssertionError('%s still runs after %d s' % (unit, timeout_s))
