# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""After the converge's hardening and a real reboot: the persisted values.

The expectations are the scenario's inventory (test_oomguard_* in its
molecule.yml); the values are read with procps and coreutils, not with the
collection's code.
"""

import math

import pytest


@pytest.fixture(scope='module')
def inventory(host):
    return host.ansible.get_variables()


def live_value(host, key):
    if key.startswith('transparent_hugepage.'):
        text = host.file('/sys/kernel/mm/' + key.replace('.', '/')).content_string.strip()
        return text.split('[', 1)[1].split(']', 1)[0] if '[' in text else text
    return host.check_output('sysctl -n %s' % key)


def test_the_reboot_kept_every_value(host, inventory):
    expected = inventory['test_oomguard_expect']
    live = dict((key, live_value(host, key)) for key in expected)
    assert live == expected


def test_min_free_kbytes_auto_follows_the_documented_rule(host, inventory):
    if not inventory.get('test_oomguard_min_free_auto'):
        pytest.skip('the scenario does not set vm.min_free_kbytes: auto')
    mem_total_kb = int(host.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo"))
    # Lowmem as nr_free_buffer_pages() counts it: managed pages above the high
    # watermark of DMA, DMA32 and Normal (see docs/tunables.md).
    lowmem_pages = int(host.check_output(
        "awk '/^Node/ {zone=$4} /^ +high / {high=$2} "
        "/^ +managed/ && zone !~ /HighMem|Movable|Device/ && $2 > high {sum+=$2-high} END {print sum}' "
        "/proc/zoneinfo"))
    kernel_default_kb = max(128, min(262144, math.isqrt(lowmem_pages * 4 * 16)))
    # khugepaged's recommendation: 11 pageblocks (2 MiB) per populated lowmem
    # zone, at most 5 % of the managed lowmem.
    zones, managed_pages = host.check_output(
        "awk '/^Node/ {zone=$4} /^ +present/ {present=$2} "
        "/^ +managed/ && zone !~ /HighMem|Movable|Device/ && present > 0 {n++; sum+=$2} END {print n, sum}' "
        "/proc/zoneinfo").split()
    khugepaged_kb = min(2048 * 11 * int(zones), int(managed_pages) * 4 // 20)
    rule_kb = max(min(mem_total_kb // 100, 1048576, mem_total_kb * 5 // 100), kernel_default_kb,
                  min(khugepaged_kb, mem_total_kb * 5 // 100))
    assert int(host.check_output('sysctl -n vm.min_free_kbytes')) == rule_kb


def test_persistent_files_are_root_owned_and_not_world_writable(host, inventory):
    conf = host.file('/etc/sysctl.d/90-oomguard.conf')
    assert conf.exists
    assert (conf.user, conf.group, conf.mode) == ('root', 'root', 0o644)
    for key, value in inventory['test_oomguard_expect'].items():
        if not key.startswith(('transparent_hugepage.', 'vm.compaction_proactiveness')):
            assert '%s = %s\n' % (key, value) in conf.content_string
    unit = host.file('/etc/systemd/system/oomguard-thp.service')
    assert (unit.user, unit.group, unit.mode) == ('root', 'root', 0o644)
    link = host.file('/etc/systemd/system/sysinit.target.wants/oomguard-thp.service')
    assert link.is_symlink and link.linked_to == '/etc/systemd/system/oomguard-thp.service'
    ledger = host.file('/var/lib/oomguard/ledger.json')
    assert (ledger.user, ledger.mode) == ('root', 0o600)


def test_thp_unit_ran_at_boot_before_systemd_sysctl(host):
    # Writing THP 'enabled' makes khugepaged raise vm.min_free_kbytes; the
    # unit must be done before systemd-sysctl writes the inventory's value.
    show = host.check_output('systemctl show -p Result -p ExecMainStatus -p ExecMainExitTimestampMonotonic '
                             'oomguard-thp.service')
    thp = dict(line.split('=', 1) for line in show.splitlines())
    assert thp['Result'] == 'success' and thp['ExecMainStatus'] == '0'
    sysctl_start = int(host.check_output('systemctl show -P ExecMainStartTimestampMonotonic systemd-sysctl.service'))
    assert 0 < int(thp['ExecMainExitTimestampMonotonic']) <= sysctl_start


def test_compaction_is_persisted_by_the_chosen_method(host, inventory):
    method = inventory['test_oomguard_compaction']
    timer = host.file('/etc/systemd/system/oomguard-compact-memory.timer')
    conf = host.file('/etc/sysctl.d/90-oomguard-compaction.conf')
    if method == 'none':
        # The profile asks for no compaction: neither method is installed.
        assert not conf.exists and not timer.exists
        return
    if method == 'proactive':
        assert conf.exists and 'vm.compaction_proactiveness = ' in conf.content_string
        assert not timer.exists
        return
    assert not conf.exists
    assert timer.exists and 'OnCalendar=%s' % inventory['oomguard_thp']['compaction_schedule'] in timer.content_string
    assert host.run('systemctl is-active oomguard-compact-memory.timer').stdout.strip() == 'active'
    assert host.check_output('systemctl show -P NextElapseUSecRealtime oomguard-compact-memory.timer')
    # One run by hand: the service really compacts (the kernel counts it).
    scanned = "awk '/^compact_(migrate|free)_scanned / {s+=$2} END {print s+0}' /proc/vmstat"
    before = int(host.check_output(scanned))
    host.run_expect([0], 'systemctl start oomguard-compact-memory.service')
    assert host.check_output('systemctl show -P Result oomguard-compact-memory.service') == 'success'
    assert int(host.check_output(scanned)) > before
