# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one fake host of the unit tests: a root directory of real files, systemctl and the kernel's side.

A host root is built under pytest's tmp_path from real sources only:

* ``MachineHost``: copies of this machine's /proc/meminfo, zoneinfo, the
  readable files of /proc/sys/vm, the THP files and the sysctl.d files
  (the kernel tunables, restore, the drift audit);
* ``CaptureHost``: a writable copy of a captured tree (tests/unit/fixtures/trees),
  its ``systemctl show`` answered from the capture (the unit settings);
* ``EarlyHost``: the files the early killer reads from a capture, plus
  Debian's earlyoom and systemd-oomd unit files (early_oom_cases.yml).

Every concern writes a live value through ``_engine.write_live`` on
``host.path(...)``, so with a root other than / it lands in the copy.
``Kernel`` stands in for what the kernel does on such a write where plain
files do not: a THP file keeps its bracketed format, writing one of a
coupled pair zeroes the other (mm/util.c, mm/page-writeback.c),
vm.dirty_bytes / dirty_background_bytes refuse values below their minimum,
a process that exited has no /proc directory, and a write outside the root
fails the test.  ``Systemctl`` answers `show` from a capture and keeps the
state of the units it starts and stops.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import os
import re
import shutil
import stat

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import _restore as restore_mod
from ansible_collections.oomguard.linux.plugins.module_utils import capabilities
from ansible_collections.oomguard.linux.plugins.module_utils import cgroups as cg
from ansible_collections.oomguard.linux.plugins.module_utils import early_oom as eo
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import schema
from ansible_collections.oomguard.linux.plugins.module_utils import tunables as tn
from ansible_collections.oomguard.linux.plugins.module_utils import tunables_apply as ta
from ansible_collections.oomguard.linux.plugins.module_utils import units_apply as ua
from ansible_collections.oomguard.linux.tests.unit import trees

PAGE_SIZE = os.sysconf('SC_PAGE_SIZE')
# Above the captures' kernel.pid_max (4194304): scan_cmdlines skips its own pid,
# and this process's real pid must not hide one of the tree's processes.
PID_OUTSIDE_TREES = 4194305
tree_state = trees.tree_state


def copy_file(src, dst):
    """A file read whole (a /proc or /sys file has st_size 0), written with its mode."""
    with open(src, 'rb') as handle:
        data = handle.read()
    if not os.path.isdir(os.path.dirname(dst)):
        os.makedirs(os.path.dirname(dst))
    with open(dst, 'wb') as out:
        out.write(data)
    os.chmod(dst, stat.S_IMODE(os.stat(src).st_mode))


def write_file(path, text, mode=None):
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path))
    with open(path, 'w') as handle:
        handle.write(text)
    if mode is not None:
        os.chmod(path, mode)


# -- systemctl ---------------------------------------------------------------------------------

class Systemctl:
    """systemctl as run_command sees it; every call is recorded in `calls`.

    capture: a captured tree whose .capture/systemctl-show.txt answers `show`
    (a unit it does not list is not-found, as systemctl reports it; an alias
    answers with its unit's block; `units` adds blocks the capture lacks).
    is-active answers from `active`; start and restart add to it (unless the
    unit is in `not_starting`), stop removes; a verb in `refused` fails with
    rc 1.  on_reload runs at daemon-reload.

    `--version` answers with the capture's .capture/systemctl-version.txt
    (or `version`; neither: it fails, and the version is unknown), counted
    in version_calls, not in calls.  With systemd_dir, daemon-reload loads
    the drop-ins there into the units' `show` blocks the way systemd
    does: a property this version does not know (capabilities.SYSTEMD_SINCE)
    is ignored, sizes become bytes (percentages of mem_total_bytes).
    """

    def __init__(self, capture=None, active=(), not_starting=(), refused=(), on_reload=None, units=None,
                 version=None, systemd_dir=None, mem_total_bytes=1 << 30):
        self.status, self.text, self.blocks = 0, '', []
        self.version_text = 'systemd %d\n' % version if version else None
        if capture:
            with open(os.path.join(capture, '.capture/systemctl-show.cmd.txt')) as handle:
                self.status = int(re.findall(r'^exit status: (\d+)', handle.read(), re.M)[-1])
            with open(os.path.join(capture, '.capture/systemctl-show.txt')) as handle:
                self.text = handle.read()
            self.blocks = [dict(line.partition('=')[::2] for line in block.splitlines() if '=' in line)
                           for block in self.text.split('\n\n')]
            version_file = os.path.join(capture, '.capture/systemctl-version.txt')
            if os.path.exists(version_file) and not version:
                with open(version_file) as handle:
                    self.version_text = handle.read()
        self.blocks += list(units or [])
        self.active = set(active)
        self.not_starting = set(not_starting)
        self.refused = set(refused)
        self.on_reload = on_reload
        self.systemd_dir = systemd_dir
        self.mem_total_bytes = mem_total_bytes
        self.calls = []
        self.version_calls = 0

    def __call__(self, argv):
        assert argv[0] in ('systemctl', '/bin/systemctl'), argv
        if argv[1:] == ['--version']:
            self.version_calls += 1
            return (0, self.version_text, '') if self.version_text else (1, '', 'no version in this capture\n')
        self.calls.append(list(argv[1:]))
        verb, units = argv[1], [a for a in argv[2:] if not a.startswith('--')]
        if verb in self.refused:
            return 1, '', 'Failed to %s: Access denied\n' % verb
        if verb == 'show':
            return self._show(argv)
        if verb == 'is-active':
            state = 'active' if units[0] in self.active else 'inactive'
            return (0 if state == 'active' else 3), state + '\n', ''
        if verb in ('start', 'restart') and units[0] not in self.not_starting:
            self.active.add(units[0])
        if verb == 'stop':
            self.active.difference_update(units)
        if verb == 'daemon-reload' and self.systemd_dir:
            self._load_dropins()
        if verb == 'daemon-reload' and self.on_reload:
            self.on_reload()
        return 0, '', ''

    def _load_dropins(self):
        version = capabilities.systemd_version(self.version_text)
        for block in self.blocks:
            for name in block.get('Names', block.get('Id', '')).split():
                directory = os.path.join(self.systemd_dir, name + '.d')
                for conf in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
                    with open(os.path.join(directory, conf)) as handle:
                        for line in handle:
                            key, sep, value = line.strip().partition('=')
                            if not sep or key.startswith('#') or capabilities.systemd_needed(key, version):
                                continue  # "Unknown key": ignored
                            if key in ('MemoryMax', 'MemoryHigh', 'MemoryLow', 'MemoryMin', 'MemorySwapMax'):
                                number = schema.size_bytes(value, self.mem_total_bytes)
                                value = 'infinity' if number is None else str(number)
                            block[key] = value

    def _show(self, argv):
        if self.status != 0:
            return self.status, '', self.text
        assert argv[2].startswith('--property=')
        props = argv[2][len('--property='):].split(',')
        out = []
        for unit in argv[3:]:
            block = next((b for b in self.blocks if unit in b.get('Names', '').split()), None) or {
                'Id': unit, 'LoadState': 'not-found', 'ActiveState': 'inactive', 'MainPID': '0'}
            # A property this systemd does not know is not printed at all.
            version = capabilities.systemd_version(self.version_text)
            out.append('\n'.join('%s=%s' % (p, block.get(p, '')) for p in props
                                 if p in block or not capabilities.systemd_needed(p, version)))
        return 0, '\n\n'.join(out) + '\n', ''


class SystemdHostRoot(procfs.HostRoot):
    """A read-only captured tree (no /run in the captures) taken for a systemd host."""

    def exists(self, rel):
        return rel.strip('/') == 'run/systemd/system' or procfs.HostRoot.exists(self, rel)


# -- the kernel's side of a live write ---------------------------------------------------------------

class Kernel:
    """Stands in for engine.write_live under a host root (see the module docstring).

    writes: [(host path, text)]; fail: sysctl names whose write fails
    (EINVAL); ignore: host paths written but not kept; gone: host paths of
    processes that exit before their write; plain: no kernel semantics.
    """

    MINIMUM = {'vm.dirty_bytes': 2 * PAGE_SIZE, 'vm.dirty_background_bytes': 1}

    def __init__(self, root, plain=False):
        self.root = root
        self.plain = plain
        self.writes = []
        self.fail = set()
        self.ignore = set()
        self.gone = set()

    def __call__(self, path, text):
        rel = os.path.relpath(path, self.root)
        assert not rel.startswith('..') and not os.path.isabs(rel), 'a live write outside the test tree: %s' % path
        host_path = '/' + rel
        if host_path in self.gone:
            # The process exited after the plan: its /proc directory is gone.
            shutil.rmtree(os.path.dirname(path))
        if not os.path.exists(path):
            raise IOError(errno.ENOENT, os.strerror(errno.ENOENT), host_path)
        self.writes.append((host_path, text))
        if self.plain:
            return self._put(path, text + '\n')
        if host_path in self.ignore:
            return None
        if rel in (tn.THP_PATHS['enabled'], tn.THP_PATHS['defrag']):
            with open(path) as handle:
                dummy, options = procfs.parse_bracketed(handle.read())
            if text not in options:
                raise IOError(errno.EINVAL, os.strerror(errno.EINVAL))
            return self._put(path, ' '.join('[%s]' % o if o == text else o for o in options) + '\n')
        name = rel[len('proc/sys/'):].replace('/', '.') if rel.startswith('proc/sys/') else rel
        if name in self.fail or (name in self.MINIMUM and int(text) < self.MINIMUM[name]):
            raise IOError(errno.EINVAL, os.strerror(errno.EINVAL))
        with open(path) as handle:
            old = handle.read()
        self._put(path, text + '\n')
        partner = tn.COUPLED.get(name)
        # overcommit_*_handler zero the partner on every write; the dirty
        # handlers only when the value changed.
        if partner and (name.startswith('vm.overcommit_') or engine.canonical(old) != engine.canonical(text)):
            self._put(os.path.join(self.root, procfs.sysctl_path(partner)), '0\n')
        return None

    @staticmethod
    def _put(path, text):
        with open(path, 'w') as handle:
            handle.write(text)


def refuse_live_writes(monkeypatch):
    """No test reaches this machine's /proc or /sys: a live write the test did not ask for fails it."""
    def refuse(path, *args):
        raise AssertionError('a live write outside a test kernel: %s' % path)
    monkeypatch.setattr(engine, 'write_live', refuse)


def kernel(monkeypatch, root, plain=False):
    fake = Kernel(root, plain)
    monkeypatch.setattr(engine, 'write_live', fake)
    return fake


# -- host roots ----------------------------------------------------------------------------------

class FakeHost:
    """A host root under tmp_path: paths, reads, the ledger and restore."""

    labels = engine.Labels('h1')
    systemctl = None

    def __init__(self, root):
        self.root = root
        self.state_dir = self.path('var/lib/oomguard')

    def path(self, rel):
        return os.path.join(self.root, rel.lstrip('/'))

    def read(self, rel):
        with open(self.path(rel), 'rb') as handle:
            return handle.read().decode('utf-8')

    def write(self, rel, text):
        write_file(self.path(rel), text)

    def mode(self, rel):
        return stat.S_IMODE(os.stat(self.path(rel)).st_mode)

    def ledger(self):
        with open(os.path.join(self.state_dir, ledger_mod.LEDGER_NAME)) as handle:
            return json.load(handle)

    def restore(self, check_mode=False, run_command=None, systemctl=None):
        if run_command is None and self.systemctl is not None:
            run_command, systemctl = self.systemctl, 'systemctl'
        return restore_mod.restore({'paths': {'state_dir': self.state_dir}}, self.host, self.labels, check_mode,
                                   run_command=run_command, systemctl=systemctl)


class MachineHost(FakeHost):
    """A host root made of copies of this machine's files (the kernel tunables)."""

    def __init__(self, root, systemd=True, labels=None):
        os.makedirs(root)
        FakeHost.__init__(self, root)
        self.labels = labels or self.labels
        for rel in ('proc/meminfo', 'proc/zoneinfo', 'proc/sys/kernel/panic', 'proc/sys/kernel/panic_on_oops',
                    'proc/sys/kernel/osrelease'):
            copy_file('/' + rel, self.path(rel))
        for name in sorted(os.listdir('/proc/sys/vm')):
            if 'vm.' + name in tn.WRITE_ONLY:
                continue  # triggers: reading stat_refresh is an action
            try:
                copy_file('/proc/sys/vm/' + name, self.path('proc/sys/vm/' + name))
            except (IOError, OSError):
                continue
        for rel in tn.THP_PATHS.values():
            if os.path.exists('/' + rel):
                copy_file('/' + rel, self.path(rel))
        for directory in ('/etc/sysctl.d', '/usr/lib/sysctl.d'):
            os.makedirs(self.path(directory))
            for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
                src = os.path.join(directory, name)
                if os.path.islink(src):
                    os.symlink(os.readlink(src), self.path(src))
                elif os.path.isfile(src):
                    copy_file(src, self.path(src))
        if os.path.isfile('/etc/sysctl.conf'):
            copy_file('/etc/sysctl.conf', self.path('/etc/sysctl.conf'))
        os.makedirs(self.path('var/lib'))
        if systemd:
            os.makedirs(self.path('run/systemd/system'))
        self.host = procfs.HostRoot(root)

    def sysctl(self, name):
        return engine.canonical(self.read(procfs.sysctl_path(name)))

    def params(self, **options):
        params = {
            'profile': 'none', 'scopes': list(tn.SCOPES), 'sysctl': {}, 'thp': {}, 'compaction': {},
            'unsupported': 'fail', 'force': [], 'persist': True, 'validate_only': False,
            'paths': {
                'sysctl_file': self.path('etc/sysctl.d/90-oomguard.conf'),
                'compaction_file': self.path('etc/sysctl.d/90-oomguard-compaction.conf'),
                'systemd_dir': self.path('etc/systemd/system'),
                'state_dir': self.state_dir,
            },
            # host-relative: HostRoot(root) reads them under root
            'sysctl_dirs': ['/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d', '/usr/lib/sysctl.d'],
        }
        params.update(options)
        return params

    def apply(self, check_mode=False, **options):
        return ta.apply(self.params(**options), self.host, self.labels, check_mode)


class CaptureHost(FakeHost):
    """A writable copy of a captured tree, on systemd, with its capture answering systemctl."""

    def __init__(self, root, capture, labels=None):
        shutil.copytree(capture, root, symlinks=True)
        FakeHost.__init__(self, root)
        self.labels = labels or self.labels
        os.makedirs(self.path('run/systemd/system'))
        self.host = procfs.HostRoot(root)
        self.sd = self.path('etc/systemd/system')
        meminfo = procfs.read_meminfo(self.host)[0]
        self.systemctl = Systemctl(capture, systemd_dir=self.sd, mem_total_bytes=int(meminfo.get('MemTotal', 0)) * 1024)

    def params(self, **options):
        params = {
            'services': {}, 'cgroups': {}, 'processes': [], 'protect_defaults': True, 'scopes': list(ua.SCOPES),
            'force': [], 'validate_only': False,
            'paths': {'systemd_dir': self.sd, 'state_dir': self.state_dir},
        }
        params.update(options)
        return params

    def apply(self, check_mode=False, **options):
        return ua.apply(self.params(**options), self.host, self.labels, check_mode, run_command=self.systemctl,
                        systemctl='systemctl')


# The Debian packages of the early killers: their files, from early_oom_cases.yml.
EARLY_PACKAGES = {
    'earlyoom': ('etc/default/earlyoom', 'lib/systemd/system/earlyoom.service'),
    'systemd-oomd': ('lib/systemd/system/systemd-oomd.service', 'lib/systemd/system/systemd-oomd.socket',
                     'etc/systemd/oomd.conf'),
}


class EarlyHost(FakeHost):
    """The files early_oom reads from a captured tree, Debian's packages, a systemd_dir with links."""

    def __init__(self, root, capture, debian, packages=('earlyoom', 'systemd-oomd'), systemd=True, labels=None):
        os.makedirs(root)
        FakeHost.__init__(self, root)
        self.labels = labels or self.labels
        with open(os.path.join(capture, 'proc/mounts')) as handle:
            dummy, v2 = cg.parse_mounts(handle.read())
        for rel in ['proc/mounts', 'proc/pressure/memory'] + [m.lstrip('/') + '/cgroup.controllers' for m in v2]:
            if os.path.exists(os.path.join(capture, rel)):
                copy_file(os.path.join(capture, rel), self.path(rel))
        for package in packages:
            for rel in EARLY_PACKAGES[package]:
                write_file(self.path(rel), debian[rel], 0o644)
        # What Debian's openssh-server leaves in /etc/systemd/system.
        os.makedirs(self.path('etc/systemd/system/multi-user.target.wants'))
        for rel in ('etc/systemd/system/multi-user.target.wants/ssh.service', 'etc/systemd/system/sshd.service'):
            os.symlink('/lib/systemd/system/ssh.service', self.path(rel))
        if systemd:
            os.makedirs(self.path('run/systemd/system'))
        self.host = procfs.HostRoot(root)
        self.sd = self.path('etc/systemd/system')
        self.lib = self.path('lib/systemd/system')

    def params(self, settings, **options):
        params = {
            'early_oom': settings, 'force': [], 'validate_only': False,
            'paths': {
                'systemd_dir': self.sd, 'state_dir': self.state_dir,
                'earlyoom_defaults': self.path('etc/default/earlyoom'),
                'oomd_conf_dir': self.path('etc/systemd/oomd.conf.d'),
                'unit_dirs': [self.sd, self.lib, self.path('usr/lib/systemd/system')],
            },
        }
        params.update(options)
        return params

    def apply(self, settings, check_mode=False, run_command=None, systemctl=None, **options):
        return eo.apply(self.params(settings, **options), self.host, self.labels, check_mode,
                        run_command=run_command, systemctl=systemctl)
