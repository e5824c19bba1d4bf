# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One inventory variable, the same everywhere it is written down.

An `oomguard_*` variable appears in a role's defaults/main.yml, its
meta/argument_specs.yml, its README's variable table, the module option the
role passes it to (and that option's default), and playbooks/audit.yml,
which passes the harden role's variables to oom_audit.  These tests hold
them together: the same names, the same defaults, the same types.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import os
import re

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.dirname(os.path.dirname(HERE))
ROLES_DIR = os.path.join(COLLECTION, 'roles')
ROLES = sorted(name for name in os.listdir(ROLES_DIR) if os.path.isdir(os.path.join(ROLES_DIR, name)))
_VAR_RE = re.compile(r'^\{\{\s*(oomguard_\w+)\s*\}\}$')
_ROW_RE = re.compile(r'^\| `(oomguard_\w+)` \| `([^`]*)` \|', re.M)
# The argument spec's types as the module spec writes them.
_TYPE = {'str': 'str', 'dict': 'dict', 'list': 'list', 'bool': 'bool', 'path': 'path', 'int': 'int', 'raw': 'raw'}


def _yaml(*parts):
    with open(os.path.join(COLLECTION, *parts)) as handle:
        return yaml.safe_load(handle)


def _defaults(role):
    return _yaml('roles', role, 'defaults', 'main.yml') or {}


def _options(role):
    return _yaml('roles', role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']


def _module_spec(fqcn):
    name = fqcn.split('.')[-1]
    module = importlib.import_module('ansible_collections.oomguard.linux.plugins.modules.' + name)
    return module.argument_spec()


def _module_calls(role):
    """(module FQCN, option, inventory variable) for every option a role passes straight from a variable."""
    calls = []
    for task in _yaml('roles', role, 'tasks', 'main.yml'):
        for key, args in task.items():
            if not key.startswith('oomguard.linux.') or not isinstance(args, dict):
                continue
            for option, value in args.items():
                match = _VAR_RE.match(str(value))
                if match:
                    calls.append((key, option, match.group(1)))
    return calls


@pytest.mark.parametrize('role', ROLES)
def test_defaults_and_argument_spec_agree(role):
    defaults = _defaults(role)
    options = _options(role)
    assert sorted(defaults) == sorted(options), 'a variable is in one file and not the other'
    for name, spec in options.items():
        assert spec.get('default') == defaults[name], name


@pytest.mark.parametrize('role', ROLES)
def test_the_readme_table_lists_every_variable_with_its_default(role):
    with open(os.path.join(ROLES_DIR, role, 'README.md')) as handle:
        rows = dict(_ROW_RE.findall(handle.read()))
    defaults = _defaults(role)
    assert sorted(rows) == sorted(defaults)
    for name, text in rows.items():
        assert yaml.safe_load(text) == defaults[name], name


@pytest.mark.parametrize('role', ROLES)
def test_a_variable_has_the_type_of_the_module_option_it_feeds(role):
    options = _options(role)
    calls = _module_calls(role)
    assert calls, 'the role passes its variables to a module of the collection'
    for fqcn, option, variable in calls:
        module_option = _module_spec(fqcn)[option]
        assert variable in options, '%s passes %s, which it does not declare' % (role, variable)
        assert options[variable]['type'] == _TYPE[module_option['type']], (fqcn, option, variable)
        if module_option['type'] == 'path':
            # A path has one default: the module's is the role's.
            assert options[variable]['default'] == module_option['default'], (fqcn, option, variable)


def test_every_role_passes_each_variable_to_the_same_option():
    seen = {}
    for role in ROLES:
        for fqcn, option, variable in _module_calls(role):
            seen.setdefault(variable, set()).add(option)
    assert dict((v, o) for v, o in seen.items() if len(o) > 1) == {}


def test_a_variable_declared_by_two_roles_is_the_same_in_both():
    found = {}
    for role in ROLES:
        for name, spec in _options(role).items():
            found.setdefault(name, []).append((role, spec.get('type'), spec.get('default'), spec.get('choices')))
    for name, specs in found.items():
        assert len(set((t, repr(d), repr(c)) for dummy, t, d, c in specs)) == 1, (name, specs)


def test_the_audit_playbook_uses_the_harden_roles_defaults():
    defaults = _defaults('harden')
    text = open(os.path.join(COLLECTION, 'playbooks', 'audit.yml')).read()
    fallbacks = re.findall(r"\{\{ (oomguard_\w+) \| default\(([^()]*)\) \}\}", text)
    harden = [(name, value) for name, value in fallbacks if name in defaults]
    assert harden, 'audit.yml passes the harden variables'
    for name, value in harden:
        assert yaml.safe_load(value) == defaults[name], name


# -- the variables the collection knows -------------------------------------------------------

VARNAMES = "{{ query('ansible.builtin.varnames', '^oomguard_') }}"


def _yaml_files():
    for top in ('roles', 'playbooks'):
        for directory, dummy, files in os.walk(os.path.join(COLLECTION, top)):
            for name in files:
                if name.endswith('.yml'):
                    yield os.path.join(directory, name)


def test_the_known_variables_are_the_ones_the_roles_and_playbooks_use():
    """schema.KNOWN_VARIABLES, which a typo is refused against, is every oomguard_* name the YAML uses."""
    from ansible_collections.oomguard.linux.plugins.module_utils import schema
    used = set()
    for path in _yaml_files():
        with open(path) as handle:
            used.update(re.findall(r'\boomguard_[a-z0-9_]+\b', handle.read()))
    assert set(schema.KNOWN_VARIABLES) == used
    assert list(schema.KNOWN_VARIABLES) == sorted(schema.KNOWN_VARIABLES)


def _module_tasks(tasks):
    for task in tasks or []:
        for key in ('block', 'rescue', 'always'):
            yield from _module_tasks(task.get(key))
        for key, value in task.items():
            if key.startswith('oomguard.linux.') and isinstance(value, dict):
                yield key, value


@pytest.mark.parametrize('path', sorted(p for p in _yaml_files() if os.sep + 'tasks' + os.sep in p)
                         + [os.path.join(COLLECTION, 'playbooks', 'audit.yml')])
def test_every_call_that_takes_the_policy_passes_the_inventorys_variable_names(path):
    with open(path) as handle:
        loaded = yaml.safe_load(handle) or []
    tasks = [t for play in loaded for t in play.get('tasks', [])] if 'hosts' in loaded[0] else loaded
    calls = [(k, v) for k, v in _module_tasks(tasks) if 'host_label' in v and k != 'oomguard.linux.restore']
    assert calls, path
    for module, options in calls:
        assert options.get('inventory_variables') == VARNAMES, (path, module)
