# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host can honour: its systemd and kernel, cgroup mode, package manager and family.

systemd logs an unknown directive in a drop-in as "Unknown key" and goes
on without it, so a setting newer than the host's systemd would look
applied and do nothing.  Every concern asks here, before anything is
written, which version a setting needs; the versions are systemd's own
NEWS entries (docs/capabilities.md cites each).  Kernel features are
detected by their files wherever the collection reads them; the kernel
versions here only name what a missing file needs.

Pure functions over text the host gave, plus read(), which reads a host
once (the engine keeps the answer for the whole run).  Standard library only.
"""

import glob
import os
import re

from ansible_collections.oomguard.linux.plugins.module_utils import cgroups as cg
from ansible_collections.oomguard.linux.plugins.module_utils import kernel_rules

# systemd property (unit file setting, or oomd.conf's [OOM] key) -> the first
# systemd release that knows it (NEWS, "CHANGES WITH N").
SYSTEMD_SINCE = {
    'MemoryMax': 231,          # 231: the memory controller on cgroup v2
    'MemoryHigh': 231,
    'MemoryLow': 231,
    'MemorySwapMax': 232,      # 232: "The new MemorySwapMax= option"
    'CPUWeight': 232,          # 232: CPUWeight=, CPUStartupWeight=
    'MemoryMin': 240,          # 240: 'The new "MemoryMin=" unit file property'
    'OOMPolicy': 243,          # 243: PID 1 listens to the kernel's OOM events (OOMPolicy=)
    'AllowedMemoryNodes': 244,  # 244: AllowedCPUs= and AllowedMemoryNodes= (cpuset on v2)
    'ManagedOOMSwap': 247,     # 247: ManagedOOMSwap=, ManagedOOMMemoryPressure=, systemd-oomd preview
    'ManagedOOMMemoryPressure': 247,
    'ManagedOOMPreference': 248,  # 248: ManagedOOMPreference=none|avoid|omit
    'DefaultMemoryPressureDurationSec': 248,  # 248: oomd.conf; systemd-oomd "fully supported"
    'ManagedOOMMemoryPressureDurationSec': 257,  # 257
}
# systemd-oomd as the collection configures it (DefaultMemoryPressureDurationSec=,
# ManagedOOMPreference= for avoid lists): 248.  Debian 11's 247 ships none.
OOMD_SINCE = 248
# Kernel features the collection uses -> the first release that has them.
KERNEL_SINCE = {
    'memory.oom.group': (4, 19),
    'psi': (4, 20),
    'memory.events.local': (5, 2),
    'vm.compaction_proactiveness': (5, 9),
}
# Distribution families as Ansible's ansible_os_family names them, from
# /etc/os-release ID and ID_LIKE.
_FAMILIES = (
    ('Debian', ('debian', 'ubuntu')),
    ('RedHat', ('rhel', 'fedora', 'centos', 'rocky', 'almalinux', 'ol', 'amzn')),
    ('Suse', ('suse', 'sles', 'opensuse', 'opensuse-leap', 'opensuse-tumbleweed')),
    ('Archlinux', ('arch',)),
    ('Alpine', ('alpine',)),
)
# Package managers by the binary that marks them, in order of preference.
_PACKAGE_MANAGERS = (('apt', 'usr/bin/apt-get'), ('dnf', 'usr/bin/dnf'), ('yum', 'usr/bin/yum'),
                     ('zypper', 'usr/bin/zypper'), ('pacman', 'usr/bin/pacman'), ('apk', 'sbin/apk'))
_VERSION_RE = re.compile(r'^systemd (\d+)\b')
# libsystemd-shared-252.so, libsystemd-shared-257.9-1.so: the version of an installed systemd
# that is not running (an image being built, a container).
_SHARED_RE = re.compile(r'libsystemd-shared-(\d+)')
# (Debian 11: usr/lib/systemd; 12 and 13: usr/lib/<multiarch triplet>/systemd; RHEL: usr/lib64/systemd.)
_SHARED_GLOBS = ('usr/lib/systemd/libsystemd-shared-*.so', 'usr/lib/*/systemd/libsystemd-shared-*.so',
                 'usr/lib64/systemd/libsystemd-shared-*.so', 'lib/systemd/libsystemd-shared-*.so')


def systemd_version(text):
    """The release number of `systemctl --version` output ('systemd 252 (252.30-1~deb12u2)'), or None."""
    match = _VERSION_RE.match((text or '').strip())
    return int(match.group(1)) if match else None


def installed_systemd_version(root='/'):
    """The version of the systemd installed under root, from its shared library's name, or None."""
    found = []
    for pattern in _SHARED_GLOBS:
        for path in glob.glob(os.path.join(root, pattern))[:16]:
            match = _SHARED_RE.search(os.path.basename(path))
            if match:
                found.append(int(match.group(1)))
    return max(found) if found else None


def parse_os_release(text):
    """/etc/os-release as a dict (quotes removed)."""
    values = {}
    for line in (text or '').splitlines()[:200]:
        key, sep, value = line.strip().partition('=')
        if sep and key and not key.startswith('#'):
            values[key] = value.strip().strip('"\'')
    return values


def read_os_release(host):
    """/etc/os-release (or /usr/lib/os-release, its fallback) of a host, parsed; {} without either."""
    return parse_os_release(host.read('etc/os-release') or host.read('usr/lib/os-release') or '')


def os_family(os_release):
    """Ansible's ansible_os_family name for a parsed os-release, or None."""
    ids = [os_release.get('ID', '').lower()] + os_release.get('ID_LIKE', '').lower().split()
    for candidate in ids:
        for family, members in _FAMILIES:
            if candidate in members:
                return family
    return None


def package_manager(exists):
    """The host's package manager (exists: a callable telling whether a path under the host exists), or None."""
    for name, path in _PACKAGE_MANAGERS:
        if exists(path):
            return name
    return None


def systemd_needed(prop, version):
    """The systemd release prop needs when version is older, else None (also when version is unknown)."""
    since = SYSTEMD_SINCE.get(prop)
    if since is None or version is None or version >= since:
        return None
    return since


def kernel_needed(feature, release):
    """'(major, minor)' text of the kernel a feature needs when release is older, else None."""
    since = KERNEL_SINCE.get(feature)
    version = kernel_rules.kernel_version(release)
    if since is None or version is None or version >= since:
        return None
    return '%d.%d' % since


def read_systemd_version(host, run_command=None, systemctl=None):
    """The systemd release a host runs: `systemctl --version` of the running manager
    when it can be asked, else the installed systemd's (its library's name); None without one."""
    version = None
    if run_command is not None and systemctl and host.exists('run/systemd/system'):
        rc, out, dummy = run_command([systemctl, '--version'])
        version = systemd_version(out) if rc == 0 else None
    if version is None:
        version = installed_systemd_version(host.root)
    return version


def read(host, systemd_version=None, kernel_release=None, cgroup_mode=None):
    """What the host can honour, read once:

    {systemd_version, systemd_running, kernel_release, cgroup_mode,
    package_manager, os_family, os_id, os_version_id}; systemd_version as
    read_systemd_version() found it (the caller asks once per run). A caller
    that read the kernel release or the cgroup layout already passes them.
    """
    os_release = read_os_release(host)
    if kernel_release is None:
        kernel_release = (host.read('proc/sys/kernel/osrelease') or '').strip() or None
    return {
        'systemd_version': systemd_version,
        'systemd_running': host.exists('run/systemd/system'),
        'kernel_release': kernel_release,
        'cgroup_mode': cgroup_mode or cg.read_layout(host).get('mode'),
        'package_manager': package_manager(host.exists),
        'os_family': os_family(os_release),
        'os_id': os_release.get('ID') or None,
        'os_version_id': os_release.get('VERSION_ID') or None,
    }
