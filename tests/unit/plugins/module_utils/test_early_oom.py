# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""early_oom: validation, the choice of killer, earlyoom's arguments, the
[Install] links, and plan()/apply()/restore end to end in a temporary root.

The data is in early_oom_cases.yml.  The end-to-end tests build a host root
under pytest's tmp_path from two real sources: the files read_live() reads
(proc/mounts, the cgroup2 mount's cgroup.controllers, proc/pressure/memory)
are copied from a captured tree (tests/unit/fixtures/trees), and the files
the module reads or replaces (/etc/default/earlyoom, the earlyoom and
systemd-oomd units, /etc/systemd/oomd.conf) are Debian 12's own, byte for
byte (early_oom_cases.yml, `debian`).  /run/systemd/system is made so the
root is a systemd host; /etc/systemd/system holds the links Debian's
openssh-server makes, so it is not empty.  Every path option points inside
the root; without a run_command the module manages no unit (the tests that
check unit handling patch DEFAULT_PATHS so that the tmp systemd_dir counts as
the real one, and answer systemctl themselves).  Nothing outside tmp_path is
written: the autouse fixture below points DEFAULT_PATHS into tmp_path too.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import os
import re

import pytest
import yaml

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import early_oom as eo
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import schema
from ansible_collections.oomguard.linux.tests.unit import fake_host, trees

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'early_oom_cases.yml')) as _handle:
    CASES = yaml.safe_load(_handle)
DEBIAN = CASES['debian']
PACKAGES = fake_host.EARLY_PACKAGES
VAR = 'oomguard_early_oom'
LABELS = engine.Labels('h1', {'early_oom': VAR})
V2_TREE = 'debian12-6.1-qemu-cgroupv2'
V1_TREE = 'debian12-6.1-qemu-cgroupv1'
DEFAULT_AVOID = '^(init|systemd|systemd-journal|systemd-logind|systemd-udevd|sshd|dbus-daemon|earlyoom)$'
MANAGED = '# Managed by oomguard.linux (oomguard_early_oom); local edits are overwritten.\n'
DROPIN = '90-oomguard-early-oom.conf'
EARLYOOM = {'killer': 'earlyoom', 'mem_min_percent': 8, 'mem_kill_percent': 4, 'prefer': ['batch-import', 'ffmpeg'],
            'avoid': ['postgres']}
OOMD = {'killer': 'auto', 'dry_run': True, 'slices': ['system.slice', 'user.slice'], 'avoid': ['postgresql.service'],
        'memory_pressure_limit_percent': 50}


@pytest.fixture(autouse=True)
def no_default_paths(tmp_path, monkeypatch):
    """A path option a test forgets lands in tmp_path, never in /etc or /var."""
    unused = str(tmp_path / 'defaults-never-used')
    monkeypatch.setattr(eo, 'DEFAULT_PATHS', {
        'systemd_dir': unused + '/etc/systemd/system',
        'state_dir': unused + '/var/lib/oomguard',
        'earlyoom_defaults': unused + '/etc/default/earlyoom',
        'oomd_conf_dir': unused + '/etc/systemd/oomd.conf.d',
        'unit_dirs': [unused + '/etc/systemd/system', unused + '/lib/systemd/system'],
    })
    yield
    assert not os.path.exists(unused), 'a default path was used'


def assert_problems(found, expected):
    """found: [Problem]; expected: [[id, regex]] in order."""
    assert [p.id for p in found] == [e[0] for e in expected], [p.message for p in found]
    for problem, (want_id, pattern) in zip(found, expected):
        assert problem.message.startswith('host h1: '), problem.message
        assert VAR in problem.message, problem.message
        assert re.search(pattern, problem.message), problem.message
        assert problem.forcible is False


# -- validate -------------------------------------------------------------------------

@pytest.mark.parametrize('case', CASES['validate'], ids=[c['name'] for c in CASES['validate']])
def test_validate(case):
    config = eo.validate(case['raw'], LABELS, VAR)
    assert_problems(config.problems, case['problems'])
    for key, value in (case.get('values') or {}).items():
        assert config.values[key] == value, key


def test_validate_fills_in_every_default():
    config = eo.validate({}, LABELS, VAR)
    assert config.problems == []
    assert config.values == CASES['defaults']
    assert set(CASES['defaults']) == set(eo.SETTINGS)


def test_default_lists_are_copies():
    first = eo.validate(None, LABELS, VAR)
    first.values['slices'].append('user.slice')
    first.values['prefer'].append('java')
    again = eo.validate(None, LABELS, VAR)
    assert again.values['slices'] == ['system.slice'] and again.values['prefer'] == []


def test_the_ranges_cover_every_integer_setting():
    assert set(CASES['ranges']) == set(k for k, spec in eo.SETTINGS.items() if spec[0] == 'int')


def _range_cases():
    for key, (low, high) in sorted(CASES['ranges'].items()):
        for value, ok in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
            yield pytest.param(key, value, ok, low, high, id='%s=%d' % (key, value))


@pytest.mark.parametrize('key, value, ok, low, high', list(_range_cases()))
def test_integer_ranges(key, value, ok, low, high):
    raw = dict(CASES['range_context'].get(key, {}), **{key: value})
    config = eo.validate(raw, LABELS, VAR)
    if ok:
        assert config.problems == []
        assert config.values[key] == value
    else:
        assert [(p.id, p.message) for p in config.problems] == [
            ('invalid_value', "host h1: %s['%s'] = %d; allowed: an integer %d..%d" % (VAR, key, value, low, high))]
        assert key not in config.values


@pytest.mark.parametrize('key', ['prefer', 'avoid'])
@pytest.mark.parametrize('pattern', CASES['patterns']['accepted'])
def test_good_patterns_are_accepted(key, pattern):
    config = eo.validate({key: [pattern]}, LABELS, VAR)
    assert config.problems == []
    assert config.values[key] == [pattern]


@pytest.mark.parametrize('key', ['prefer', 'avoid'])
@pytest.mark.parametrize('pattern, reason', CASES['patterns']['refused'],
                         ids=[repr(p[0]) for p in CASES['patterns']['refused']])
def test_bad_patterns_are_refused(key, pattern, reason):
    config = eo.validate({'killer': 'earlyoom', key: ['java', pattern]}, LABELS, VAR)
    assert [p.id for p in config.problems] == ['invalid_value']
    message = config.problems[0].message
    assert message.startswith("host h1: %s['%s'] = %s; allowed: " % (VAR, key, schema.show(pattern))), message
    assert re.search(reason, message), message
    assert key not in config.values


def _systemd_words(line):
    """EARLYOOM_ARGS="..." as earlyoom gets it: systemd's EnvironmentFile
    unquoting (a backslash escapes ", \\, ` and $ inside double quotes), then
    $EARLYOOM_ARGS split at whitespace."""
    name, dummy, value = line.partition('=')
    assert name == 'EARLYOOM_ARGS' and value.startswith('"') and value.endswith('"'), line
    return re.sub(r'\\(["\\`$])', r'\1', value[1:-1]).split()


def test_every_accepted_pattern_reaches_earlyoom_unchanged():
    accepted = CASES['patterns']['accepted']
    config = eo.validate({'killer': 'earlyoom', 'prefer': accepted, 'avoid': accepted}, LABELS, VAR)
    assert config.problems == []
    line = [x for x in eo.render_earlyoom(config.values).splitlines() if x.startswith('EARLYOOM_ARGS=')][0]
    words = _systemd_words(line)
    assert words == eo.earlyoom_args(config.values)
    assert words[words.index('--prefer') + 1] == '^(%s)$' % '|'.join(accepted)


# -- the killer -------------------------------------------------------------------------

@pytest.mark.parametrize('case', CASES['resolve'], ids=[c['name'] for c in CASES['resolve']])
def test_resolve_killer(case):
    config = eo.validate(case['settings'], LABELS, VAR)
    assert config.problems == []
    assert eo.resolve_killer(config, case['live'], LABELS, VAR) == case['killer']
    assert config.killer == case['killer']
    assert_problems(config.problems, case['problems'])


@pytest.mark.parametrize('name', trees.TREE_NAMES)
def test_read_live_on_captured_trees(name, captured_tree):
    root = captured_tree(name)
    expected = trees.expected(name)
    live = eo.read_live(procfs.HostRoot(root))
    # The captures hold /proc and /sys only: no /run/systemd/system.
    # The older captures hold no /etc/os-release: their family is unknown.
    assert live == {'cgroup_mode': expected['cgroup_mode'], 'memory_v2': expected['memory_controller'] == 2,
                    'psi': expected['has_psi'], 'systemd': False, 'os_family': expected.get('os_family'),
                    'package_manager': expected.get('package_manager')}
    config = eo.validate({'killer': 'auto'}, LABELS, VAR)
    killer = eo.resolve_killer(config, dict(live, systemd=True), LABELS, VAR)
    assert killer == ('systemd-oomd' if expected['memory_controller'] == 2 else 'earlyoom')
    assert config.problems == []


def test_read_live_without_psi(tmp_path, captured_tree):
    root = str(tmp_path / 'root')
    _copy_layout(captured_tree(V2_TREE), root)
    host = procfs.HostRoot(root)
    assert eo.read_live(host)['psi'] is True
    # A kernel booted with psi=0 has the file but refuses to read it: stood in for by a directory.
    os.unlink(host.path('proc/pressure/memory'))
    os.mkdir(host.path('proc/pressure/memory'))
    assert eo.read_live(host)['psi'] is False
    os.rmdir(host.path('proc/pressure/memory'))
    assert eo.read_live(host) == {'cgroup_mode': 'v2', 'memory_v2': True, 'psi': False, 'systemd': False,
                                  'os_family': None, 'package_manager': None}


# -- earlyoom's arguments and the rendered files -------------------------------------------

@pytest.mark.parametrize('case', CASES['earlyoom_args'], ids=[c['name'] for c in CASES['earlyoom_args']])
def test_earlyoom_args(case):
    config = eo.validate(case['settings'], LABELS, VAR)
    assert config.problems == []
    assert eo.earlyoom_args(config.values) == case['args']
    assert DEFAULT_AVOID[:-2] in ' '.join(case['args'])


def test_render_earlyoom():
    config = eo.validate(dict(EARLYOOM, dry_run=True, swap_min_percent=5), LABELS, VAR)
    assert eo.render_earlyoom(config.values) == (
        MANAGED
        + '# Read by earlyoom.service (EnvironmentFile). Patterns match the process name.\n'
        'EARLYOOM_ARGS="-m 8,4 -s 5 -r 60 --prefer ^(batch-import|ffmpeg)$ --avoid '
        '^(init|systemd|systemd-journal|systemd-logind|systemd-udevd|sshd|dbus-daemon|earlyoom|postgres)$ --dryrun"\n')


def test_render_oomd_conf_and_dropin():
    config = eo.validate({'memory_pressure_limit_percent': 40, 'memory_pressure_duration_s': 20,
                          'swap_used_limit_percent': 80}, LABELS, VAR)
    assert eo.render_oomd_conf(config.values) == (
        MANAGED + '[OOM]\nSwapUsedLimit=80%\nDefaultMemoryPressureLimit=40%\nDefaultMemoryPressureDurationSec=20s\n')
    assert eo.render_service_dropin(['ExecStart=', 'ExecStart=/x --y']) == \
        MANAGED + '[Service]\nExecStart=\nExecStart=/x --y\n'


# -- the [Install] links ------------------------------------------------------------------

def _write(path, text, mode=0o644):
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path))
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, mode)


TEST_SERVICE = '''[Unit]
Description=a unit to enable
# WantedBy=commented.target
[Service]
ExecStart=/bin/true
Environment=WantedBy=not-install.target

[Install]
WantedBy=multi-user.target graphical.target
RequiredBy=network-online.target
Alias=oomguard-alias.service
Also=oomguard-test.socket oomguard-gone.service
'''
TEST_SOCKET = '''[Socket]
ListenStream=/run/oomguard-test.sock

[Install]
WantedBy=sockets.target
Also=oomguard-test.service
'''


@pytest.fixture
def unit_dirs(tmp_path):
    """/etc/systemd/system (the systemd_dir), /lib/systemd/system and /usr/lib/systemd/system."""
    dirs = [str(tmp_path / 'etc/systemd/system'), str(tmp_path / 'lib/systemd/system'),
            str(tmp_path / 'usr/lib/systemd/system')]
    for directory in dirs:
        os.makedirs(directory)
    return dirs


def test_install_links_follow_wanted_by_required_by_alias_and_also(unit_dirs):
    sd, lib, usr = unit_dirs
    _write(lib + '/oomguard-test.service', TEST_SERVICE)
    _write(usr + '/oomguard-test.socket', TEST_SOCKET)
    # Shadowed: the first unit directory holding the unit wins, the systemd_dir itself is skipped.
    _write(usr + '/oomguard-test.service', '[Install]\nWantedBy=shadowed.target\n')
    _write(sd + '/oomguard-test.service', '[Install]\nWantedBy=local.target\n')
    links = eo.install_links(None, 'oomguard-test.service', unit_dirs, sd)
    assert links == {
        sd + '/multi-user.target.wants/oomguard-test.service': lib + '/oomguard-test.service',
        sd + '/graphical.target.wants/oomguard-test.service': lib + '/oomguard-test.service',
        sd + '/network-online.target.requires/oomguard-test.service': lib + '/oomguard-test.service',
        sd + '/oomguard-alias.service': lib + '/oomguard-test.service',
        sd + '/sockets.target.wants/oomguard-test.socket': usr + '/oomguard-test.socket',
    }
    # From the socket's side, Also= leads back to the service (and stops there).
    assert eo.install_links(None, 'oomguard-test.socket', unit_dirs, sd) == links


def test_install_links_of_debian_units(unit_dirs):
    sd, lib, usr = unit_dirs
    for rel in PACKAGES['earlyoom'][1:] + PACKAGES['systemd-oomd'][:2]:
        _write(lib + '/' + os.path.basename(rel), DEBIAN[rel])
    assert eo.install_links(None, 'earlyoom.service', unit_dirs, sd) == {
        sd + '/multi-user.target.wants/earlyoom.service': lib + '/earlyoom.service'}
    # Debian 12's systemd-oomd.service has no Also=: its socket comes in through Requires=.
    assert eo.install_links(None, 'systemd-oomd.service', unit_dirs, sd) == {
        sd + '/multi-user.target.wants/systemd-oomd.service': lib + '/systemd-oomd.service',
        sd + '/dbus-org.freedesktop.oom1.service': lib + '/systemd-oomd.service'}
    assert eo.install_links(None, 'systemd-oomd.socket', unit_dirs, sd) == {
        sd + '/sockets.target.wants/systemd-oomd.socket': lib + '/systemd-oomd.socket'}


def test_install_links_of_a_missing_or_static_unit(unit_dirs):
    sd, lib, usr = unit_dirs
    assert eo.install_links(None, 'earlyoom.service', unit_dirs, sd) is None
    # Only in the systemd_dir: an operator's own unit, not a package's.
    _write(sd + '/earlyoom.service', DEBIAN['lib/systemd/system/earlyoom.service'])
    assert eo.install_links(None, 'earlyoom.service', unit_dirs, sd) is None
    _write(usr + '/static.service', '[Unit]\nDescription=no install section\n[Service]\nExecStart=/bin/true\n')
    assert eo.install_links(None, 'static.service', unit_dirs, sd) == {}


def test_install_links_allow_spaces_around_the_equal_sign(unit_dirs):
    sd, lib, usr = unit_dirs
    _write(lib + '/spaced.service', '[Install]\nWantedBy = multi-user.target\nAlias = spaced-alias.service\n')
    assert eo.install_links(None, 'spaced.service', unit_dirs, sd) == {
        sd + '/multi-user.target.wants/spaced.service': lib + '/spaced.service',
        sd + '/spaced-alias.service': lib + '/spaced.service'}


# -- plan() and apply() in a temporary root --------------------------------------------------

def _copy_layout(tree, root):
    """The files early_oom.read_live() reads, from a captured tree (what EarlyHost copies)."""
    fake_host.EarlyHost(root, tree, DEBIAN, packages=(), systemd=False)


tree_state = trees.tree_state


def without_state_dir(state):
    return dict((k, v) for k, v in state.items() if k != 'var' and not k.startswith('var/'))


def EarlyHost(root, tree, **options):
    return fake_host.EarlyHost(root, tree, DEBIAN, labels=LABELS, **options)


def FakeSystemctl(active=(), failing=()):
    return fake_host.Systemctl(active=active, not_starting=failing)


@pytest.fixture
def v2(tmp_path, captured_tree):
    return EarlyHost(str(tmp_path / 'root'), captured_tree(V2_TREE))


@pytest.fixture
def v1(tmp_path, captured_tree):
    return EarlyHost(str(tmp_path / 'root'), captured_tree(V1_TREE))


def _earlyoom_files(h):
    return [{'path': h.path('etc/default/earlyoom'), 'action': 'update'},
            {'path': h.sd + '/earlyoom.service.d/' + DROPIN, 'action': 'create'},
            {'path': h.sd + '/multi-user.target.wants/earlyoom.service', 'action': 'create'}]


EARLYOOM_DEFAULTS = (
    MANAGED + '# Read by earlyoom.service (EnvironmentFile). Patterns match the process name.\n'
    'EARLYOOM_ARGS="-m 8,4 -r 60 --prefer ^(batch-import|ffmpeg)$ --avoid '
    '^(init|systemd|systemd-journal|systemd-logind|systemd-udevd|sshd|dbus-daemon|earlyoom|postgres)$"\n')
EARLYOOM_DROPIN = MANAGED + '[Service]\nOOMScoreAdjust=-900\n'


def test_check_mode_predicts_the_run_and_writes_nothing(v2):
    before = tree_state(v2.root)
    predicted = v2.apply(EARLYOOM, check_mode=True)
    assert tree_state(v2.root) == before
    real = v2.apply(EARLYOOM)
    assert predicted['files'] == real['files'] == _earlyoom_files(v2)
    assert predicted['changed'] is real['changed'] is True
    assert predicted['diff'] == real['diff']
    assert real['diff'][0] == {'before_header': v2.path('etc/default/earlyoom'),
                               'after_header': v2.path('etc/default/earlyoom'),
                               'before': DEBIAN['etc/default/earlyoom'], 'after': EARLYOOM_DEFAULTS}
    for key in ('killer', 'unit', 'unit_action', 'units_stopped', 'earlyoom_args', 'package', 'package_missing'):
        assert predicted[key] == real[key], key
    assert real['killer'] == 'earlyoom' and real['unit'] == 'earlyoom.service' and real['package'] == 'earlyoom'
    assert real['unit_action'] is None and real['units_stopped'] == [] and real['package_missing'] is False
    assert real['earlyoom_args'] == ['-m', '8,4', '-r', '60', '--prefer', '^(batch-import|ffmpeg)$', '--avoid',
                                     DEFAULT_AVOID[:-2] + '|postgres)$']
    assert real['cgroup_mode'] == 'v2' and real['psi'] is True
    assert real['ledger'] == os.path.join(v2.state_dir, 'ledger.json')


def test_the_run_writes_files_links_and_the_ledger(v2):
    v2.apply(EARLYOOM)
    assert v2.read('etc/default/earlyoom') == EARLYOOM_DEFAULTS
    assert v2.mode('etc/default/earlyoom') == 0o644
    assert v2.read('etc/systemd/system/earlyoom.service.d/' + DROPIN) == EARLYOOM_DROPIN
    assert v2.mode('etc/systemd/system/earlyoom.service.d/' + DROPIN) == 0o644
    assert os.readlink(v2.sd + '/multi-user.target.wants/earlyoom.service') == v2.lib + '/earlyoom.service'
    # Nothing for systemd-oomd.
    assert not os.path.exists(v2.path('etc/systemd/oomd.conf.d'))
    assert not os.path.exists(v2.sd + '/systemd-oomd.service.d')
    ledger = v2.ledger()
    files = ledger['files']
    assert sorted(files) == [c['path'] for c in _earlyoom_files(v2)]
    original = files[v2.path('etc/default/earlyoom')]
    assert original['type'] == 'file' and original['mode'] == 0o644 and original['owner'] == 'early_oom'
    assert base64.b64decode(original['content_b64']).decode('utf-8') == DEBIAN['etc/default/earlyoom']
    assert files[v2.sd + '/earlyoom.service.d/' + DROPIN] == {'type': 'absent', 'owner': 'early_oom'}
    assert files[v2.sd + '/multi-user.target.wants/earlyoom.service'] == {'type': 'absent', 'owner': 'early_oom'}
    # multi-user.target.wants was there already (ssh.service): only the drop-in directory is new.
    assert ledger['dirs'] == [v2.sd + '/earlyoom.service.d']
    assert ledger['values'] == {} and ledger['units'] == {}


def test_a_second_run_changes_nothing(v2):
    assert v2.apply(EARLYOOM)['changed'] is True
    after_first = tree_state(v2.root)
    again = v2.apply(EARLYOOM)
    assert again['changed'] is False and again['files'] == [] and again['diff'] == []
    assert tree_state(v2.root) == after_first


def test_killer_none_takes_back_what_the_module_made(v2):
    original = tree_state(v2.root)
    v2.apply(EARLYOOM)
    result = v2.apply({'killer': 'none'})
    assert result['changed'] is True and result['killer'] == 'none' and result['unit'] is None
    assert result['files'] == [{'path': v2.path('etc/default/earlyoom'), 'action': 'update'},
                               {'path': v2.sd + '/earlyoom.service.d/' + DROPIN, 'action': 'remove'},
                               {'path': v2.sd + '/multi-user.target.wants/earlyoom.service', 'action': 'remove'}]
    assert result['earlyoom_args'] is None and result['package'] is None
    # Debian's /etc/default/earlyoom is back byte for byte, the drop-in and the link are gone,
    # and so is the drop-in directory; the operator's links stay.
    assert v2.read('etc/default/earlyoom') == DEBIAN['etc/default/earlyoom']
    assert without_state_dir(tree_state(v2.root)) == original
    assert os.path.islink(v2.sd + '/multi-user.target.wants/ssh.service')
    again = v2.apply({'killer': 'none'})
    assert again['changed'] is False and again['files'] == []


def test_killer_none_on_a_fresh_host_changes_nothing(v2):
    before = tree_state(v2.root)
    result = v2.apply({})
    assert result['changed'] is False and result['files'] == [] and result['killer'] == 'none'
    assert tree_state(v2.root) == before


def test_validate_only_changes_nothing(v2):
    before = tree_state(v2.root)
    result = v2.apply(EARLYOOM, validate_only=True)
    assert result['changed'] is False
    assert result['files'] == _earlyoom_files(v2)
    assert tree_state(v2.root) == before


@pytest.mark.parametrize('settings', [EARLYOOM, OOMD], ids=['earlyoom', 'systemd-oomd'])
def test_restore_puts_every_file_back_byte_for_byte(v2, settings):
    original = tree_state(v2.root)
    applied = v2.apply(settings)
    assert applied['changed'] is True
    assert tree_state(v2.root) != original
    restored = v2.restore()
    assert restored['changed'] is True
    assert set(f['path'] for f in applied['files']) <= set(f['path'] for f in restored['files'])
    assert tree_state(v2.root) == original
    assert not os.path.exists(v2.path('var'))


def test_restore_after_switching_killers(v2):
    original = tree_state(v2.root)
    v2.apply(EARLYOOM)
    v2.apply(OOMD)
    v2.apply(dict(OOMD, slices=['system.slice']))
    v2.restore()
    assert tree_state(v2.root) == original


OOMD_SLICE = '# Managed by oomguard.linux (oomguard_early_oom)\n[Slice]\nManagedOOMMemoryPressure=kill\n'
OOMD_AVOID = '# Managed by oomguard.linux (oomguard_early_oom)\n[Service]\nManagedOOMPreference=avoid\n'


def test_systemd_oomd_files_and_links(v2):
    result = v2.apply(OOMD)
    assert result['killer'] == 'systemd-oomd' and result['unit'] == 'systemd-oomd.service'
    assert result['earlyoom_args'] is None and result['package'] == 'systemd-oomd'
    sd = v2.sd
    assert result['files'] == [
        {'path': v2.path('etc/systemd/oomd.conf.d/') + DROPIN, 'action': 'create'},
        {'path': sd + '/dbus-org.freedesktop.oom1.service', 'action': 'create'},
        {'path': sd + '/multi-user.target.wants/systemd-oomd.service', 'action': 'create'},
        {'path': sd + '/postgresql.service.d/' + DROPIN, 'action': 'create'},
        {'path': sd + '/system.slice.d/' + DROPIN, 'action': 'create'},
        {'path': sd + '/systemd-oomd.service.d/' + DROPIN, 'action': 'create'},
        {'path': sd + '/user.slice.d/' + DROPIN, 'action': 'create'},
    ]
    assert v2.read('etc/systemd/oomd.conf.d/' + DROPIN) == (
        MANAGED + '[OOM]\nSwapUsedLimit=90%\nDefaultMemoryPressureLimit=50%\nDefaultMemoryPressureDurationSec=30s\n')
    assert v2.read('etc/systemd/system/systemd-oomd.service.d/' + DROPIN) == (
        MANAGED + '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-oomd --dry-run\n')
    assert v2.read('etc/systemd/system/system.slice.d/' + DROPIN) == OOMD_SLICE
    assert v2.read('etc/systemd/system/user.slice.d/' + DROPIN) == OOMD_SLICE
    assert v2.read('etc/systemd/system/postgresql.service.d/' + DROPIN) == OOMD_AVOID
    assert os.readlink(sd + '/dbus-org.freedesktop.oom1.service') == v2.lib + '/systemd-oomd.service'
    assert os.readlink(sd + '/multi-user.target.wants/systemd-oomd.service') == v2.lib + '/systemd-oomd.service'
    # Debian's own files are left alone.
    assert v2.read('etc/default/earlyoom') == DEBIAN['etc/default/earlyoom']
    assert v2.read('etc/systemd/oomd.conf') == DEBIAN['etc/systemd/oomd.conf']
    assert v2.apply(OOMD)['changed'] is False


def test_switching_from_earlyoom_to_systemd_oomd(v2):
    v2.apply(EARLYOOM)
    result = v2.apply(dict(OOMD, dry_run=False))
    actions = dict((os.path.relpath(f['path'], v2.root), f['action']) for f in result['files'])
    assert actions == {
        'etc/default/earlyoom': 'update',
        'etc/systemd/system/earlyoom.service.d/' + DROPIN: 'remove',
        'etc/systemd/system/multi-user.target.wants/earlyoom.service': 'remove',
        'etc/systemd/oomd.conf.d/' + DROPIN: 'create',
        'etc/systemd/system/dbus-org.freedesktop.oom1.service': 'create',
        'etc/systemd/system/multi-user.target.wants/systemd-oomd.service': 'create',
        'etc/systemd/system/postgresql.service.d/' + DROPIN: 'create',
        'etc/systemd/system/system.slice.d/' + DROPIN: 'create',
        'etc/systemd/system/user.slice.d/' + DROPIN: 'create',
    }
    assert v2.read('etc/default/earlyoom') == DEBIAN['etc/default/earlyoom']
    assert not os.path.exists(v2.sd + '/earlyoom.service.d')
    assert not os.path.lexists(v2.sd + '/multi-user.target.wants/earlyoom.service')
    # Without dry_run, systemd-oomd keeps its own ExecStart.
    assert not os.path.exists(v2.sd + '/systemd-oomd.service.d')


def test_slices_and_avoid_lists_that_shrink_lose_their_drop_ins(v2):
    v2.apply(OOMD)
    result = v2.apply(dict(OOMD, slices=['system.slice'], avoid=[]))
    assert result['files'] == [{'path': v2.sd + '/postgresql.service.d/' + DROPIN, 'action': 'remove'},
                               {'path': v2.sd + '/user.slice.d/' + DROPIN, 'action': 'remove'}]
    assert not os.path.exists(v2.sd + '/user.slice.d') and not os.path.exists(v2.sd + '/postgresql.service.d')
    assert v2.read('etc/systemd/system/system.slice.d/' + DROPIN) == OOMD_SLICE


def test_a_stale_drop_in_next_to_other_files_keeps_its_directory(v2):
    v2.apply(OOMD)
    _write(v2.sd + '/user.slice.d/10-local.conf', '[Slice]\nMemoryHigh=8G\n')
    v2.apply(dict(OOMD, slices=['system.slice']))
    assert sorted(os.listdir(v2.sd + '/user.slice.d')) == ['10-local.conf']


def test_a_scope_under_avoid_gets_a_scope_section(v2):
    params = v2.params({'killer': 'systemd-oomd', 'avoid': ['init.scope']})
    config = eo.plan_config(params, eo.read_request(v2.host, eo.read_live(v2.host), params), LABELS)
    assert config.problems == []
    assert config.files[v2.sd + '/init.scope.d/' + DROPIN]['content'] == \
        '# Managed by oomguard.linux (oomguard_early_oom)\n[Scope]\nManagedOOMPreference=avoid\n'


def test_auto_on_a_cgroup_v1_host_is_earlyoom(v1):
    result = v1.apply({'killer': 'auto'})
    assert result['killer'] == 'earlyoom' and result['cgroup_mode'] == 'hybrid'
    assert v1.read('etc/default/earlyoom') == (
        MANAGED + '# Read by earlyoom.service (EnvironmentFile). Patterns match the process name.\n'
        'EARLYOOM_ARGS="-m 10 -r 60 --avoid %s"\n' % DEFAULT_AVOID)


def test_systemd_oomd_on_a_cgroup_v1_host_is_refused_and_writes_nothing(v1):
    before = tree_state(v1.root)
    with pytest.raises(engine.Refused) as raised:
        v1.apply({'killer': 'systemd-oomd'}, force=['oomd_unsupported'])
    # A refusal is no guard: it cannot be forced, and naming it in force is itself refused.
    assert [p.id for p in raised.value.problems] == ['oomd_unsupported', 'invalid_value']
    assert 'oomguard_force names no guard: oomd_unsupported' in raised.value.problems[1].message
    assert str(raised.value).startswith("host h1: oomguard_early_oom['killer'] = systemd-oomd needs cgroup v2")
    assert tree_state(v1.root) == before


def test_invalid_settings_are_refused_before_anything_is_read(v2):
    before = tree_state(v2.root)
    with pytest.raises(engine.Refused) as raised:
        v2.apply({'killer': 'earlyoom', 'mem_min_percent': 0, 'prefer': ['a b']})
    assert [p.id for p in raised.value.problems] == ['invalid_value', 'invalid_value']
    assert tree_state(v2.root) == before


def test_a_host_without_systemd_is_refused(tmp_path, captured_tree):
    bare = EarlyHost(str(tmp_path / 'root'), captured_tree(V2_TREE), systemd=False)
    with pytest.raises(engine.Refused) as raised:
        bare.apply({'killer': 'auto'})
    assert [p.id for p in raised.value.problems] == ['no_systemd']


def test_a_missing_package(tmp_path, captured_tree):
    bare = EarlyHost(str(tmp_path / 'root'), captured_tree(V2_TREE), packages=())
    # This capture holds no /etc/os-release: the family is unknown, and nothing says which package to install.
    with pytest.raises(engine.Refused) as raised:
        bare.apply({'killer': 'earlyoom'})
    assert [(p.id, p.message) for p in raised.value.problems] == [
        ('package_missing', "host h1: oomguard_early_oom['killer'] = earlyoom: earlyoom.service is not installed, and "
                            "the collection knows no package of it for this distribution (family unknown; known: "
                            "Debian, RedHat, Suse); install it, then run again")]
    fake_host.write_file(bare.path('etc/os-release'), 'ID=debian\nVERSION_ID="12"\n')
    before = tree_state(bare.root)
    with pytest.raises(engine.Refused) as raised:
        bare.apply({'killer': 'earlyoom'})
    assert [(p.id, p.message) for p in raised.value.problems] == [
        ('package_missing', "host h1: oomguard_early_oom['killer'] = earlyoom: earlyoom.service is not installed (the "
                            "role installs earlyoom from the distribution first)")]
    # In check mode and in a preflight the package task has only said it would install it.
    for check_mode, validate_only in ((True, False), (False, True)):
        result = bare.apply({'killer': 'earlyoom'}, check_mode=check_mode, validate_only=validate_only)
        assert result['package_missing'] is True and result['package'] == 'earlyoom'
        assert result['packages'] == ['earlyoom'] and result['os_family'] == 'Debian'
        assert result['files'] == [{'path': bare.path('etc/default/earlyoom'), 'action': 'create'},
                                   {'path': bare.sd + '/earlyoom.service.d/' + DROPIN, 'action': 'create'}]
    assert tree_state(bare.root) == before


# -- units, with systemctl answered by the test ---------------------------------------------

@pytest.fixture
def managed(v2, monkeypatch):
    """v2 with its systemd_dir taken for /etc/systemd/system, so apply() manages the units."""
    monkeypatch.setitem(eo.DEFAULT_PATHS, 'systemd_dir', v2.sd)
    return v2


def test_the_killer_is_started_then_left_running(managed):
    systemctl = FakeSystemctl()
    result = managed.apply(EARLYOOM, run_command=systemctl, systemctl='systemctl')
    assert result['unit_action'] == 'start' and result['changed'] is True
    assert systemctl.calls == [['is-active', 'earlyoom.service'], ['daemon-reload'], ['start', 'earlyoom.service'],
                               ['is-active', 'earlyoom.service']]
    assert managed.ledger()['units'] == {'earlyoom.service': {'was_active': False, 'owner': 'early_oom'}}
    systemctl.calls = []
    again = managed.apply(EARLYOOM, run_command=systemctl, systemctl='systemctl')
    assert again['changed'] is False and again['unit_action'] is None
    assert systemctl.calls == [['is-active', 'earlyoom.service']]
    systemctl.calls = []
    changed = managed.apply(dict(EARLYOOM, mem_min_percent=9), run_command=systemctl, systemctl='systemctl')
    assert changed['unit_action'] == 'restart'
    assert systemctl.calls[-3:] == [['daemon-reload'], ['restart', 'earlyoom.service'],
                                    ['is-active', 'earlyoom.service']]


def test_a_killer_no_longer_chosen_is_stopped(managed):
    systemctl = FakeSystemctl()
    original = tree_state(managed.root)
    managed.apply(EARLYOOM, run_command=systemctl, systemctl='systemctl')
    systemctl.calls = []
    result = managed.apply(OOMD, run_command=systemctl, systemctl='systemctl')
    assert result['units_stopped'] == ['earlyoom.service'] and result['unit_action'] == 'start'
    assert ['stop', 'earlyoom.service'] in systemctl.calls
    assert systemctl.active == set(['systemd-oomd.service'])
    # systemd-oomd pulls its socket in: both are recorded as not running before.
    assert managed.ledger()['units'] == {
        'earlyoom.service': {'was_active': False, 'owner': 'early_oom'},
        'systemd-oomd.service': {'was_active': False, 'owner': 'early_oom'},
        'systemd-oomd.socket': {'was_active': False, 'owner': 'early_oom'}}
    systemctl.active.add('systemd-oomd.socket')
    restored = managed.restore(run_command=systemctl, systemctl='systemctl')
    assert restored['units_stopped'] == ['systemd-oomd.service', 'systemd-oomd.socket']
    assert systemctl.active == set()
    assert tree_state(managed.root) == original


def test_a_killer_that_does_not_start_fails_the_run(managed):
    systemctl = FakeSystemctl(failing=['earlyoom.service'])
    with pytest.raises(engine.ApplyError) as raised:
        managed.apply(EARLYOOM, run_command=systemctl, systemctl='systemctl')
    assert str(raised.value) == (
        'host h1: earlyoom.service is inactive after start; see journalctl -u earlyoom.service; the originals are '
        'in %s' % os.path.join(managed.state_dir, 'ledger.json'))
    # The ledger was written first: restore can take it all back.
    assert managed.ledger()['units'] == {'earlyoom.service': {'was_active': False, 'owner': 'early_oom'}}


def test_a_killer_running_before_is_restarted_not_recorded(managed):
    systemctl = FakeSystemctl(active=['earlyoom.service'])
    result = managed.apply(EARLYOOM, run_command=systemctl, systemctl='systemctl')
    assert result['unit_action'] == 'restart'
    assert managed.ledger()['units'] == {}


def test_check_mode_predicts_the_start_without_starting(managed):
    systemctl = FakeSystemctl()
    before = tree_state(managed.root)
    result = managed.apply(EARLYOOM, check_mode=True, run_command=systemctl, systemctl='systemctl')
    assert result['unit_action'] == 'start' and result['changed'] is True
    assert systemctl.calls == [['is-active', 'earlyoom.service']] and systemctl.active == set()
    assert tree_state(managed.root) == before


def test_systemd_oomd_and_its_socket_keep_running(managed):
    systemctl = FakeSystemctl()
    managed.apply(OOMD, run_command=systemctl, systemctl='systemctl')
    # The service pulled its socket in (Requires=systemd-oomd.socket).
    systemctl.active.add('systemd-oomd.socket')
    systemctl.calls = []
    again = managed.apply(OOMD, run_command=systemctl, systemctl='systemctl')
    assert again['changed'] is False and again['units_stopped'] == [] and again['unit_action'] is None
    assert systemctl.calls == [['is-active', 'systemd-oomd.service']]
    assert systemctl.active == set(['systemd-oomd.service', 'systemd-oomd.socket'])


# -- the host's systemd release (capabilities) --------------------------------------------------

@pytest.mark.parametrize('tree, version, auto', [
    ('debian11-5.10-qemu-cgroupv2', 247, 'earlyoom'),       # cgroup v2 and PSI, but no systemd-oomd before 248
    ('debian13-6.12-qemu-cgroupv2', 257, 'systemd-oomd'),
])
def test_auto_and_systemd_oomd_follow_the_systemd_release(tree, version, auto, captured_tree):
    live = dict(eo.read_live(procfs.HostRoot(captured_tree(tree))), systemd=True, systemd_version=version)
    assert live['memory_v2'] and live['psi'] and live['os_family'] == 'Debian'
    config = eo.validate({'killer': 'auto'}, LABELS, VAR)
    assert eo.resolve_killer(config, live, LABELS, VAR) == auto and config.problems == []
    config = eo.validate({'killer': 'systemd-oomd'}, LABELS, VAR)
    eo.resolve_killer(config, live, LABELS, VAR)
    assert [(p.id, p.message, p.forcible) for p in config.problems] == ([] if version >= 248 else [(
        'unsupported_systemd', "host h1: oomguard_early_oom['killer'] = systemd-oomd needs systemd 248 "
        "(ManagedOOMPreference=, DefaultMemoryPressureDurationSec=); this host has systemd 247. Use killer: earlyoom "
        "or auto", False)])


# -- the roles' package step, per distribution family ------------------------------------------

# /etc/os-release as each vendor documents it (os-release(5); Red Hat's, SUSE's and Canonical's
# release notes), not captured: no VM of these families boots here. Each with the package
# manager's binary ansible.builtin.package would pick.
FAMILY_HOSTS = {
    'rhel-9': ('NAME="Red Hat Enterprise Linux"\nID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.4"\n',
               ['usr/bin/dnf', 'usr/bin/yum'], 'RedHat', 'dnf'),
    'rocky-8': ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.10"\n',
                ['usr/bin/dnf', 'usr/bin/yum'], 'RedHat', 'dnf'),
    'sles-15': ('NAME="SLES"\nVERSION_ID="15.5"\nID="sles"\nID_LIKE="suse"\n', ['usr/bin/zypper'], 'Suse', 'zypper'),
    'opensuse-leap-15': ('NAME="openSUSE Leap"\nVERSION_ID="15.6"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\n',
                         ['usr/bin/zypper'], 'Suse', 'zypper'),
    'ubuntu-22.04': ('NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n', ['usr/bin/apt-get'],
                     'Debian', 'apt'),
}
# What each family's package step must install, per killer (docs/platforms.md).
FAMILY_PACKAGES = {
    'RedHat': {'earlyoom': ['earlyoom'], 'systemd-oomd': ['systemd-udev']},
    'Suse': {'earlyoom': ['earlyoom'], 'systemd-oomd': ['systemd-experimental']},
    'Debian': {'earlyoom': ['earlyoom'], 'systemd-oomd': ['systemd-oomd']},
}
ROLES_DIR = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles')


def _package_steps(role, plan_expression):
    """The role's refusal and install tasks, loaded as ansible-core loads them (trusted templates)."""
    from ansible.parsing.dataloader import DataLoader
    loader = DataLoader()
    tasks = loader.load_from_file(os.path.join(ROLES_DIR, role, 'tasks', 'main.yml'), trusted_as_template=True)
    fail = [t for t in tasks if 'ansible.builtin.fail' in t and 'package' in t['name']]
    install = [t for t in tasks if 'ansible.builtin.package' in t]
    assert len(fail) == 1 and len(install) == 1, role
    assert plan_expression in install[0]['ansible.builtin.package']['name']
    return loader, fail[0], install[0]


@pytest.mark.parametrize('role, plan_var', [('early_oom', '__oomguard_early_oom_plan'),
                                            ('harden', '__oomguard_harden_plan')])
@pytest.mark.parametrize('name', sorted(FAMILY_HOSTS))
@pytest.mark.parametrize('killer', ['earlyoom', 'systemd-oomd'])
def test_the_roles_package_step_installs_the_familys_packages(tmp_path, captured_tree, role, plan_var, name, killer):
    """The preflight on a host of each family, fed to the role's own tasks, rendered as ansible-core would in a
    check-mode run: the install task runs with the family's package names and package manager."""
    from ansible.template import Templar
    os_release, binaries, family, manager = FAMILY_HOSTS[name]
    bare = EarlyHost(str(tmp_path / 'root'), captured_tree(V2_TREE), packages=())
    fake_host.write_file(bare.path('etc/os-release'), os_release)
    for rel in binaries:
        fake_host.write_file(bare.path(rel), '', 0o755)
    result = bare.apply({'killer': killer}, check_mode=True, validate_only=True)
    assert result['package_missing'] is True and result['os_family'] == family
    plan = result if role == 'early_oom' else {'early_oom': result}
    loader, fail, install = _package_steps(role, plan_var)
    templar = Templar(loader=loader, variables={plan_var: plan, 'inventory_hostname': 'h1',
                                                'oomguard_early_oom': {'killer': killer}})
    conditions = fail['when'] if isinstance(fail['when'], list) else [fail['when']]
    assert not all(templar.evaluate_conditional(c) for c in conditions), 'the refusal would run'
    assert templar.evaluate_conditional(install['when'])
    rendered = templar.template(install['ansible.builtin.package'])
    assert rendered == {'name': FAMILY_PACKAGES[family][killer], 'state': 'present', 'use': manager}


def test_the_roles_refuse_a_family_without_known_packages(tmp_path, captured_tree):
    from ansible.template import Templar
    bare = EarlyHost(str(tmp_path / 'root'), captured_tree(V2_TREE), packages=())
    fake_host.write_file(bare.path('etc/os-release'), 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.0\n')
    result = bare.apply({'killer': 'earlyoom'}, check_mode=True, validate_only=True)
    assert result['packages'] is None and result['os_family'] == 'Alpine'
    loader, fail, install = _package_steps('early_oom', '__oomguard_early_oom_plan')
    templar = Templar(loader=loader, variables={'__oomguard_early_oom_plan': result, 'inventory_hostname': 'h1'})
    conditions = fail['when'] if isinstance(fail['when'], list) else [fail['when']]
    assert all(templar.evaluate_conditional(c) for c in conditions)
    assert templar.template(fail['ansible.builtin.fail']['msg']) == (
        "host h1: oomguard_early_oom['killer'] = earlyoom: earlyoom.service is not installed, and the collection "
        "knows no package of it for this distribution (family Alpine; known: Debian, RedHat, Suse); install it, "
        "then run again")
