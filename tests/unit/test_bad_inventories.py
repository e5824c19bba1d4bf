# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bad inventories of tests/bad_inventories, refused in seconds on a captured tree.

Each case is what molecule/shared/bad_inventory.yml does on the VM, without
the VM: the harden role's variables (its defaults, then the VM task's own
defaults for the thirteen variables a case may set, then the case's), and the
role's steps in its order, the first refusal ending the run:

  1. the role's argument spec (meta/argument_specs.yml), which ansible-core
     checks before the role's first task, with its own validator;
  2. the collection's module calls of roles/harden/tasks/main.yml, in its
     order (the oom_harden preflight when an early killer is configured,
     then the real oom_harden call): each module's own main() runs
     with the options the role passes, through a stand-in AnsibleModule
     (ansible's module argument validator: the defaults and types a real
     run gets) and a stand-in run_module, which calls the module's apply()
     on the captured host; a Refused is the message the module fails with.

The host is a copy under tmp_path of the capture of the VM the cases were
written for (debian12-6.1-qemu-cgroupv2: Debian 12, systemd, cgroup v2, one
NUMA node), with /run/systemd/system made so that it is a systemd host.
Every path option is the role's path inside that copy (/etc/systemd/system is
<root>/etc/systemd/system), and host-relative ones (sysctl_dirs) resolve in
it too, so a message naming one of the copy's paths is read with <root>
taken off, as the VM would print it.  `systemctl show` is answered from the
capture (fake_host.Systemctl), plus the units the VM has and the
capture lacks: the packages the image installs and leaves off, and the test
units prepare installs (molecule/shared), all loaded and not running.

A case's `setup` (run on the VM) has its unit-suite equivalent in
`tree_setup`: files written into the copy before the run.  A case that
needs what a captured tree cannot hold (a running service's memory usage)
says so with `needs` and `needs_reason`; it is skipped here and is the only
kind prepare.yml still runs on the VM.

Every call runs in check mode (and validate_only where the role sets it);
engine.execute and the live writes are replaced by functions that fail the
test, and the copy must be byte-for-byte unchanged afterwards.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import copy
import glob
import os
import re
import shutil

import jinja2
import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator, ModuleArgumentSpecValidator

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import early_oom as eo
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import tunables_apply as ta
from ansible_collections.oomguard.linux.plugins.module_utils import units_apply as ua
from ansible_collections.oomguard.linux.plugins.modules import oom_harden as oom_harden_module
from ansible_collections.oomguard.linux.tests.unit import trees
from ansible_collections.oomguard.linux.tests.unit.fake_host import PID_OUTSIDE_TREES, Systemctl

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.dirname(os.path.dirname(HERE))
CASES_DIR = os.path.join(COLLECTION, 'tests', 'bad_inventories')
ROLE = os.path.join(COLLECTION, 'roles', 'harden')
SHARED = os.path.join(COLLECTION, 'molecule', 'shared')
TREE = 'debian12-6.1-qemu-cgroupv2'
HOST = 'oomguard-unit'
# What a case needs that no captured tree holds, and why.
NEEDS = {'live_unit': 'a unit running on the VM, with its live cgroup state'}
CASE_KEYS = ('description', 'vars', 'expect', 'setup', 'cleanup', 'tree_setup', 'needs', 'needs_reason')
# The packages molecule/shared/image/build-image.sh installs and disables.
IMAGE_UNITS = ('earlyoom.service', 'nginx.service', 'systemd-oomd.service')


def _load(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def _case_files():
    return sorted(name for name in os.listdir(CASES_DIR) if name.endswith('.yml'))


CASE_FILES = _case_files()
CASES = dict((name[:-len('.yml')], _load(os.path.join(CASES_DIR, name))) for name in CASE_FILES)
ROLE_DEFAULTS = _load(os.path.join(ROLE, 'defaults', 'main.yml'))
ROLE_TASKS = _load(os.path.join(ROLE, 'tasks', 'main.yml'))
ROLE_ARGUMENT_SPEC = _load(os.path.join(ROLE, 'meta', 'argument_specs.yml'))['argument_specs']['main']['options']
MODULES = dict(('oomguard.linux.' + m.__name__.rsplit('.', 1)[1], m) for m in (oom_harden_module,))
# Tasks of the role that are not the collection's modules, and why the unit suite leaves them out.
OTHER_TASKS = {'ansible.builtin.package': 'installs the killer a preflight found missing; nothing to judge',
               'ansible.builtin.fail': 'refuses a family whose killer package the preflight does not know; '
                                       'the preflight itself is tested in test_early_oom',
               'ansible.builtin.set_fact': "keeps each concern's result under its own name; nothing to judge"}
# The one condition a module call of the role has: the preflight runs when an early killer is asked for.
PREFLIGHT_WHEN = "(oomguard_early_oom.killer | default('none')) != 'none'"
# early_oom's unit directories are no option: the module's own, read before any test patches them.
EARLY_OOM_UNIT_DIRS = list(eo.DEFAULT_PATHS['unit_dirs'])


def vm_defaults():
    """{variable: default} of the role variables the VM task sets from a case (bad_inventory.yml)."""
    tasks = _load(os.path.join(SHARED, 'bad_inventory.yml'))
    block = [t for t in tasks if 'block' in t][0]['block']
    include = [t for t in block if 'ansible.builtin.include_role' in t][0]
    defaults = {}
    for name, expression in include['vars'].items():
        match = re.match(r'^\{\{ __bad\.vars\.(\w+) \| default\((.*)\) \}\}$', expression)
        assert match and match.group(1) == name, expression
        defaults[name] = yaml.safe_load(match.group(2))
    return defaults


VM_DEFAULTS = vm_defaults()


def vm_units():
    """The units the VM has beyond the capture: the image's packages and prepare's test units."""
    test_units = os.listdir(os.path.join(SHARED, 'files', 'test-units', 'systemd', 'system'))
    return sorted(set(IMAGE_UNITS) | set(n for n in test_units if n.endswith(('.service', '.slice'))))


class VmSystemctl(Systemctl):
    """The capture's `systemctl show`, and the VM's extra units as loaded and not running.

    oomguard-db and oomguard-batch run on the VM; a case that depends on
    that (their usage) needs the VM (`needs: live_unit`).
    """

    def __init__(self, tree):
        Systemctl.__init__(self, tree)
        for unit in vm_units():
            assert not any(unit in b.get('Names', '').split() for b in self.blocks), unit
            self.blocks.append({'Id': unit, 'Names': unit, 'LoadState': 'loaded', 'ActiveState': 'inactive',
                                'SubState': 'dead', 'MainPID': '0', 'ControlGroup': ''})


def _write(path, text):
    """A new file: one that is there is replaced, never written through (it may be a link to the capture)."""
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path))
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, 'w') as handle:
        handle.write(text)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


@pytest.fixture(autouse=True)
def nothing_is_written(monkeypatch):
    """A refused (or check-mode) call never executes a plan or writes a live value."""
    def refuse(*args, **kwargs):
        raise AssertionError('a write was attempted: %r' % (args,))
    monkeypatch.setattr(engine, 'execute', refuse)
    monkeypatch.setattr(engine, 'write_live', refuse)
    # scan_cmdlines skips its own pid: this process's must not hide one of the tree's.
    monkeypatch.setattr(os, 'getpid', lambda: PID_OUTSIDE_TREES)


@pytest.fixture(autouse=True)
def no_default_paths(tmp_path, monkeypatch):
    """A path option left to a module default lands in tmp_path, never in /etc or /var."""
    unused = str(tmp_path / 'defaults-never-used')
    monkeypatch.setattr(ua, 'DEFAULT_PATHS', {'systemd_dir': unused + '/etc/systemd/system',
                                              'state_dir': unused + '/var/lib/oomguard'})
    monkeypatch.setattr(ta, 'DEFAULT_PATHS', dict((k, unused + v) for k, v in ta.DEFAULT_PATHS.items()))
    monkeypatch.setattr(eo, 'DEFAULT_PATHS', {
        'systemd_dir': unused + '/etc/systemd/system', 'state_dir': unused + '/var/lib/oomguard',
        'earlyoom_defaults': unused + '/etc/default/earlyoom', 'oomd_conf_dir': unused + '/etc/systemd/oomd.conf.d',
        'unit_dirs': [unused + '/etc/systemd/system', unused + '/lib/systemd/system']})
    yield
    assert not os.path.exists(unused), 'a default path was used'


class VmHost:
    """A copy of the capture as the VM's root, and the harden role's calls against it."""

    def __init__(self, root, tree, tree_setup=None):
        self.root = root
        # Hard links: ~1,000 small files, twenty times faster than copying them.  Nothing is
        # written through one (the writers fail the test, and tree_setup replaces files);
        # tree_state would show it if something were.
        shutil.copytree(tree, root, symlinks=True, copy_function=_link_or_copy)
        os.makedirs(self.path('/run/systemd/system'))
        for rel, text in sorted((tree_setup or {}).items()):
            assert not rel.startswith('/') and '..' not in rel.split('/'), rel
            _write(self.path(rel), text)
        self.host = procfs.HostRoot(root)
        self.systemctl = VmSystemctl(root)

    def path(self, absolute):
        """A path of the VM, inside the copy."""
        return os.path.join(self.root, absolute.lstrip('/'))

    def as_seen_on_the_vm(self, message):
        return message.replace(self.root + '/', '/')

    def harden(self, variables):
        """The role's steps in its order: (step, refusal message), or (None, None) when all pass."""
        # ansible-core validates the variables its argument spec names (validate_argument_spec).
        provided = dict((k, v) for k, v in variables.items() if k in ROLE_ARGUMENT_SPEC)
        errors = ArgumentSpecValidator(ROLE_ARGUMENT_SPEC).validate(
            provided, validate_role_argument_spec=True).error_messages
        if errors:
            # ansible.builtin.validate_argument_spec's message.
            return 'argument spec', 'Validation of arguments failed:\n%s' % '\n'.join(errors)
        # early_oom's unit directories are no option: the module's own, inside the copy.
        unit_dirs = dict(eo.DEFAULT_PATHS, unit_dirs=[self.path(d) for d in EARLY_OOM_UNIT_DIRS])
        for name, module, options, when in role_calls():
            if when and (variables.get('oomguard_early_oom') or {}).get('killer', 'none') == 'none':
                continue  # the preflight: only with an early killer
            try:
                with _replaced(module, AnsibleModule=self.ansible_module(options, variables),
                               run_module=self.run_module), _replaced(eo, DEFAULT_PATHS=unit_dirs):
                    module.main()
            except ModuleFailed as exc:
                return name, exc.msg
            except engine.Refused as exc:
                # run_module's fail_json(msg=str(exc)).
                assert exc.problems, name
                return name, self.as_seen_on_the_vm(str(exc))
        return None, None

    def ansible_module(self, options, variables):
        """AnsibleModule for one call: the role's options validated as a real run does, in check mode."""
        vm = self

        class Module:
            check_mode = True

            def __init__(self, argument_spec, **kwargs):
                result = ModuleArgumentSpecValidator(argument_spec).validate(
                    dict((k, render(v, variables)) for k, v in options.items()))
                if result.error_messages:
                    raise ModuleFailed(result.errors.msg)
                self.params = result.validated_parameters
                # The path options are opened as they are: the VM's paths, inside the copy.
                # sysctl_dirs (a list) is read through the host root, like /proc and /sys.
                # A relative path stays relative: the module must refuse it as the VM's would.
                for key, spec in argument_spec.items():
                    if spec.get('type') == 'path' and str(self.params.get(key) or '').startswith('/'):
                        self.params[key] = vm.path(self.params[key])
        return Module

    def run_module(self, module, apply, params, labels, failure, host=None):
        """The module frame's run_module, on the captured host (a Refused goes up)."""
        assert host is None and failure
        apply(params, self.host, labels, module.check_mode, run_command=self.systemctl, systemctl='systemctl')


class ModuleFailed(Exception):
    """AnsibleModule refused the options (fail_json)."""

    def __init__(self, msg):
        Exception.__init__(self, msg)
        self.msg = msg


@contextlib.contextmanager
def _replaced(obj, **attributes):
    saved = dict((name, getattr(obj, name)) for name in attributes)
    for name, value in attributes.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(obj, name, value)


def role_calls():
    """[(task name, module, options)]: the collection's module calls of the harden role, in order."""
    calls = []
    for task in ROLE_TASKS:
        action = [key for key in task if key in MODULES or key in OTHER_TASKS]
        assert len(action) == 1, 'a task of the harden role this test does not know: %r' % task
        if action[0] in MODULES:
            assert task.get('when') in (None, PREFLIGHT_WHEN), task.get('when')
            calls.append((task['name'], MODULES[action[0]], task[action[0]], task.get('when')))
    return calls


def render(value, variables):
    """A role option: a variable ('{{ name }}'), the names of the variables defined
    (ansible.builtin.varnames with a pattern), or a literal; nothing else is expected."""
    if isinstance(value, str):
        match = re.match(r'^\{\{ (\w+) \}\}$', value)
        if match:
            return copy.deepcopy(variables[match.group(1)])
        match = re.match(r"^\{\{ query\('ansible.builtin.varnames', '([^']+)'\) \}\}$", value)
        if match:
            return sorted(name for name in variables if re.search(match.group(1), name))
        assert '{{' not in value and '{%' not in value, 'an expression this test cannot render: %s' % value
    return value


def role_variables(case):
    """What the role sees: its defaults, then the VM task's vars (the case's, or their defaults)."""
    variables = dict(ROLE_DEFAULTS)
    variables.update(VM_DEFAULTS)
    variables.update(case.get('vars') or {})
    variables['inventory_hostname'] = HOST
    return variables


def _params():
    for name, case in sorted(CASES.items()):
        marks = []
        if case.get('needs'):
            marks.append(pytest.mark.skip(reason='VM only, needs %s (%s): %s' % (
                case['needs'], NEEDS.get(case['needs']), case.get('needs_reason'))))
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize('name', list(_params()))
def test_bad_inventory(name, tmp_path, captured_tree):
    case = CASES[name]
    vm = VmHost(str(tmp_path / 'root'), captured_tree(TREE), case.get('tree_setup'))
    before = trees.tree_state(vm.root)
    step, message = vm.harden(role_variables(case))
    assert step is not None, '%s: accepted; expected a refusal matching /%s/' % (name, case['expect'])
    # What the VM asserts: `ansible_failed_result.msg is search(expect)`.
    assert re.search(case['expect'], message), '%s: refused by %s with:\n%s\nexpected /%s/' % (
        name, step, message, case['expect'])
    assert trees.tree_state(vm.root) == before


def test_every_case_runs_here_or_on_the_vm():
    """No case is dropped: each runs in the unit suite, or says why it needs the VM."""
    assert len(CASE_FILES) == len(CASES) > 0
    in_units = [n for n, c in CASES.items() if not c.get('needs')]
    on_vm = [n for n, c in CASES.items() if c.get('needs')]
    assert sorted(in_units + on_vm) == sorted(CASES)
    for name, case in sorted(CASES.items()):
        assert set(case) <= set(CASE_KEYS), (name, sorted(set(case) - set(CASE_KEYS)))
        assert case.get('description') and case.get('expect'), name
        assert set(case.get('vars') or {}) <= set(VM_DEFAULTS), name
        if case.get('needs'):
            assert case['needs'] in NEEDS and case.get('needs_reason'), name
            assert not case.get('tree_setup'), name
        else:
            assert not case.get('needs_reason'), name
            # A VM setup the unit suite does not reproduce would make it judge another host.
            assert not case.get('setup') or case.get('tree_setup'), '%s: setup without tree_setup' % name


def _ansible_query(plugin, *terms):
    """ansible.builtin.fileglob and ansible.builtin.file, as the loop uses them."""
    if plugin == 'ansible.builtin.fileglob':
        return [path for term in terms for path in glob.glob(term) if os.path.isfile(path)]
    assert plugin == 'ansible.builtin.file', plugin
    result = []
    for term in terms:
        with open(term) as handle:
            result.append(handle.read())
    return result


def vm_corpus():
    """The case files prepare.yml runs on the VM: its loop, rendered by Jinja2 with
    stand-ins for the three ansible plugins it calls (query, zip, from_yaml)."""
    tasks = _load(os.path.join(SHARED, 'prepare.yml'))[0]['tasks']
    task = [t for t in tasks if t.get('ansible.builtin.include_tasks') == 'bad_inventory.yml'][0]
    assert task['when'] == 'test_oomguard_corpus | default(false)'
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    environment.filters['zip'] = lambda *lists: list(zip(*lists))
    environment.filters['from_yaml'] = yaml.safe_load
    variables = {'playbook_dir': SHARED, 'query': _ansible_query}

    def render_value(text):
        return environment.compile_expression(re.match(r'^\{\{(.*)\}\}$', text.strip(), re.S).group(1))(**variables)
    for name, value in task['vars'].items():
        variables[name] = render_value(value)
    return sorted(os.path.basename(path)[:-len('.yml')] for path in render_value(task['loop']))


def test_the_vm_runs_exactly_the_cases_that_need_it():
    assert vm_corpus() == sorted(n for n, c in CASES.items() if c.get('needs'))


def test_the_vm_defaults_cover_every_case_variable():
    """The VM task sets the thirteen case variables, and the role knows each of them."""
    assert set(VM_DEFAULTS) == set([
        'oomguard_profile', 'oomguard_sysctl', 'oomguard_thp', 'oomguard_force', 'oomguard_unsupported',
        'oomguard_services', 'oomguard_cgroups', 'oomguard_processes', 'oomguard_early_oom',
        'oomguard_sysctl_file', 'oomguard_thp_compaction_file', 'oomguard_systemd_dir', 'oomguard_state_dir'])
    assert set(VM_DEFAULTS) <= set(ROLE_DEFAULTS) == set(ROLE_ARGUMENT_SPEC)
    assert VM_DEFAULTS['oomguard_profile'] == 'none'
    # The path variables default to the role's own defaults.
    for name in ('oomguard_sysctl_file', 'oomguard_thp_compaction_file', 'oomguard_systemd_dir', 'oomguard_state_dir'):
        assert VM_DEFAULTS[name] == ROLE_DEFAULTS[name], name


@pytest.mark.parametrize('typo, nearest', [
    ('oomguard_sysctll', 'oomguard_sysctl'), ('oomguard_service', 'oomguard_services'),
    ('oomguard_earlyoom', 'oomguard_early_oom'), ('oomguard_thp_compaction', 'oomguard_thp_compaction_file'),
    ('oomguard_zzz', None)])
def test_a_variable_the_roles_do_not_know_is_refused_with_the_nearest_name(typo, nearest, tmp_path, captured_tree):
    """A typo would leave a policy silently unapplied: refused, with every other problem of the run."""
    vm = VmHost(str(tmp_path / 'root'), captured_tree(TREE))
    before = trees.tree_state(vm.root)
    variables = role_variables({'vars': {'oomguard_sysctl': {'vm.swappiness': 500}}})
    variables[typo] = {'vm.swappiness': 10}
    step, message = vm.harden(variables)
    assert step is not None
    assert "oomguard_sysctl['vm.swappiness'] = 500; allowed: an integer 0..200" in message, message
    expected = '%s is not a variable of oomguard.linux%s; allowed: the variables of the roles and playbooks' % (
        typo, ' (did you mean %s?)' % nearest if nearest else '')
    assert expected in message, message
    assert trees.tree_state(vm.root) == before


def test_the_default_inventory_is_accepted(tmp_path, captured_tree):
    """With no case variables every step passes: a refusal above is the case's doing."""
    vm = VmHost(str(tmp_path / 'root'), captured_tree(TREE))
    before = trees.tree_state(vm.root)
    assert vm.harden(role_variables({})) == (None, None)
    assert trees.tree_state(vm.root) == before


def test_the_role_calls_one_module_for_every_concern():
    """The preflight (only with an early killer), then the one real call: the first refusal is the VM's message."""
    calls = role_calls()
    assert [c[1] for c in calls] == [oom_harden_module, oom_harden_module]
    assert [c[2].get('validate_only') for c in calls] == [True, None]
    assert [bool(c[3]) for c in calls] == [True, False]


def test_every_problem_of_a_run_is_reported_at_once(tmp_path, captured_tree):
    """A bad sysctl, THP value, schedule, service size, process pattern, early-killer pattern and
    variable name in one inventory: one run names them all, and nothing changes."""
    vm = VmHost(str(tmp_path / 'root'), captured_tree(TREE))
    before = trees.tree_state(vm.root)
    variables = role_variables({'vars': {
        'oomguard_sysctl': {'vm.swappiness': 500},
        'oomguard_thp': {'enabled': 'sometimes', 'compaction_method': 'timer', 'compaction_schedule': '25:00'},
        'oomguard_services': {'cron': {'memory_max': '2GB'}},
        'oomguard_processes': [{'match': '(', 'oom_score_adj': 100}],
        'oomguard_early_oom': {'killer': 'earlyoom', 'prefer': ['\\d+']},
    }})
    variables['oomguard_sysctll'] = {}
    step, message = vm.harden(variables)
    assert step is not None
    for expected in ("oomguard_sysctl['vm.swappiness'] = 500", "oomguard_thp['enabled'] = 'sometimes'",
                     "oomguard_thp['compaction_schedule'] = '25:00'", "oomguard_services['cron'][memory_max] = '2GB'",
                     "oomguard_processes[0][match] = '('", "oomguard_early_oom['prefer'] = '\\d+'",
                     'oomguard_sysctll is not a variable of oomguard.linux (did you mean oomguard_sysctl?)'):
        assert expected in message, (expected, message)
    assert all(line.startswith('host %s: ' % HOST) for line in message.splitlines()), message
    assert trees.tree_state(vm.root) == before
