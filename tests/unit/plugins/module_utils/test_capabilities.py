# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""capabilities: the systemd release table held to what real systemd shows, and the host read.

The Debian 11 and 13 captures (tests/unit/fixtures/trees) hold `systemctl
--version` and `systemctl show` of the unit settings the collection writes,
run on the molecule VMs: systemd prints only the properties it knows, so
each capture is that release's own answer to "which of these do you know".
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import capabilities as caps
from ansible_collections.oomguard.linux.plugins.module_utils import early_oom as eo
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.tests.unit import fake_host, trees

CAPTURED = [n for n in trees.TREE_NAMES if 'systemd_version' in trees.expected(n)]
# What `show` calls a setting when its D-Bus name differs from the unit file's.
BUS_NAMES = {'ManagedOOMMemoryPressureDurationSec': 'ManagedOOMMemoryPressureDurationUSec'}
# oomd.conf keys, not unit properties.
OOMD_CONF = ('DefaultMemoryPressureDurationSec',)


def _capture(root, name):
    with open(os.path.join(root, '.capture', name)) as handle:
        return handle.read()


def test_there_are_captures_of_two_systemd_releases():
    assert sorted(trees.expected(n)['systemd_version'] for n in CAPTURED) == [247, 257]


@pytest.mark.parametrize('name', CAPTURED)
def test_the_release_table_is_what_that_systemd_shows(name, captured_tree):
    root = captured_tree(name)
    version = caps.systemd_version(_capture(root, 'systemctl-version.txt'))
    assert version == trees.expected(name)['systemd_version']
    shown = sorted(line.partition('=')[0] for line in _capture(root, 'systemctl-known-properties.txt').splitlines())
    assert shown == trees.expected(name)['known_properties']
    table = [BUS_NAMES.get(p, p) for p in caps.SYSTEMD_SINCE if p not in OOMD_CONF and not caps.systemd_needed(p, version)]
    # OOMScoreAdjust= predates the table (every systemd has it).
    assert shown == sorted(table + ['OOMScoreAdjust'])


@pytest.mark.parametrize('version, lacks', [
    # From systemd's NEWS ("CHANGES WITH N"): RHEL 8 has 239, RHEL 9 and Debian 12 have 252.
    (239, ['AllowedMemoryNodes', 'DefaultMemoryPressureDurationSec', 'ManagedOOMMemoryPressure',
           'ManagedOOMMemoryPressureDurationSec', 'ManagedOOMPreference', 'ManagedOOMSwap', 'MemoryMin', 'OOMPolicy']),
    (252, ['ManagedOOMMemoryPressureDurationSec']),
    (257, []),
])
def test_what_239_and_252_lack_by_the_news(version, lacks):
    assert sorted(p for p in caps.SYSTEMD_SINCE if caps.systemd_needed(p, version)) == lacks
    assert caps.systemd_needed('OOMPolicy', 239) == 243
    assert caps.systemd_needed('OOMPolicy', None) is None  # unknown: not judged


@pytest.mark.parametrize('text, version', [
    ('systemd 247 (247.3-7+deb11u5)\n+PAM +AUDIT default-hierarchy=unified\n', 247),
    ('systemd 257 (257.13-1~deb13u1)\n', 257),
    ('systemd 239 (239-82.el8)\n', 239),
    ('', None),
    ('Failed to connect to bus\n', None),
])
def test_systemd_version(text, version):
    assert caps.systemd_version(text) == version


@pytest.mark.parametrize('os_release, family', [
    ('ID=debian\nVERSION_ID="11"\n', 'Debian'),
    ('ID=ubuntu\nID_LIKE=debian\n', 'Debian'),
    ('ID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.4"\n', 'RedHat'),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', 'RedHat'),
    ('ID="almalinux"\nID_LIKE="rhel centos fedora"\n', 'RedHat'),
    ('ID=fedora\n', 'RedHat'),
    ('ID="sles"\nID_LIKE="suse"\n', 'Suse'),
    ('ID="opensuse-leap"\nID_LIKE="suse opensuse"\n', 'Suse'),
    ('ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n', 'Suse'),
    ('ID=alpine\n', 'Alpine'),
    ('ID=gentoo\n', None),
    ('', None),
])
def test_os_family_from_os_release(os_release, family):
    assert caps.os_family(caps.parse_os_release(os_release)) == family


@pytest.mark.parametrize('name', CAPTURED)
def test_the_family_of_the_captured_vms(name, captured_tree):
    host = procfs.HostRoot(captured_tree(name))
    read = caps.read(host)
    assert read['os_family'] == trees.expected(name)['os_family'] == 'Debian'
    assert read['os_id'] == 'debian' and read['kernel_release'] == trees.expected(name)['kernel_release']
    assert read['cgroup_mode'] == 'v2' and read['systemd_version'] is None  # no systemd asked
    # The capture holds no systemd library and nothing to ask: no version, rather than a guess.
    assert caps.read_systemd_version(host) is None


@pytest.mark.parametrize('present, manager', [
    (['usr/bin/apt-get', 'usr/bin/dnf'], 'apt'),
    (['usr/bin/dnf', 'usr/bin/yum'], 'dnf'),
    (['usr/bin/yum'], 'yum'),
    (['usr/bin/zypper'], 'zypper'),
    ([], None),
])
def test_package_manager(present, manager):
    assert caps.package_manager(lambda path: path in present) == manager


@pytest.mark.parametrize('family, killer, packages', [
    ('Debian', 'earlyoom', ['earlyoom']),
    ('Debian', 'systemd-oomd', ['systemd-oomd']),
    ('RedHat', 'earlyoom', ['earlyoom']),
    ('RedHat', 'systemd-oomd', ['systemd-udev']),
    ('Suse', 'earlyoom', ['earlyoom']),
    ('Suse', 'systemd-oomd', ['systemd-experimental']),
    ('Archlinux', 'earlyoom', None),
    (None, 'earlyoom', None),
])
def test_the_killers_packages_by_family(family, killer, packages):
    assert eo.packages_for(family, killer) == packages
    assert eo.PACKAGE_REPOS.get((family, killer)) == ('EPEL (epel-release)' if (family, killer) == (
        'RedHat', 'earlyoom') else None)


@pytest.mark.parametrize('feature, release, needed', [
    ('vm.compaction_proactiveness', '5.4.0-150-generic', '5.9'),
    ('vm.compaction_proactiveness', '5.10.0-32-amd64', None),
    ('psi', '4.19.0-27-amd64', '4.20'),
    ('memory.oom.group', '4.18.0-553.el8_10.x86_64', '4.19'),
    ('memory.events.local', '6.1.0-50-amd64', None),
    ('psi', 'garbage', None),
])
def test_kernel_needed(feature, release, needed):
    assert caps.kernel_needed(feature, release) == needed


def test_the_version_is_asked_once_per_run(tmp_path):
    systemctl = fake_host.Systemctl(version=247)
    host = fake_host.SystemdHostRoot(str(tmp_path))
    systemd = engine.Systemd(host, systemctl, 'systemctl')
    assert systemd.version == 247 and systemd.version == 247
    assert systemctl.version_calls == 1


def test_without_a_running_systemd_the_installed_one_answers(tmp_path):
    host = procfs.HostRoot(str(tmp_path))
    assert engine.Systemd(host).version is None
    fake_host.write_file(str(tmp_path / 'usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so'), '')
    assert engine.Systemd(host).version == 252
    fake_host.write_file(str(tmp_path / 'usr/lib/systemd/libsystemd-shared-257.9-1.so'), '')
    assert engine.Systemd(host).version == 257


@pytest.mark.parametrize('name', CAPTURED)
def test_the_running_manager_is_asked_once_and_only_when_booted(name, captured_tree, tmp_path):
    text = _capture(captured_tree(name), 'systemctl-version.txt')
    calls = []

    def run_command(argv):
        calls.append(argv)
        return 0, text, ''

    host = procfs.HostRoot(str(tmp_path))
    # Not booted with systemd (no /run/systemd/system): nothing is run, no library, no version.
    assert caps.read_systemd_version(host, run_command, '/usr/bin/systemctl') is None and calls == []
    fake_host.write_file(str(tmp_path / 'run/systemd/system/.keep'), '')
    assert caps.read_systemd_version(host, run_command, '/usr/bin/systemctl') == trees.expected(name)['systemd_version']
    assert calls == [['/usr/bin/systemctl', '--version']]
    read = caps.read(host, trees.expected(name)['systemd_version'])
    assert read['systemd_running'] is True and read['systemd_version'] == trees.expected(name)['systemd_version']


def test_without_a_running_manager_the_installed_library_names_the_version(tmp_path):
    host = procfs.HostRoot(str(tmp_path))
    # Debian 13's and Fedora's library names (the package version in the name on Debian).
    fake_host.write_file(str(tmp_path / 'usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-257.9-1.so'), '')
    assert caps.read_systemd_version(host) == 257
    fake_host.write_file(str(tmp_path / 'usr/lib/systemd/libsystemd-shared-239.so'), '')
    assert caps.read_systemd_version(host) == 257  # the newest of what is installed
    # A running manager that fails to answer: the library still says.
    fake_host.write_file(str(tmp_path / 'run/systemd/system/.keep'), '')
    assert caps.read_systemd_version(host, lambda argv: (1, '', 'Failed to connect'), 'systemctl') == 257
