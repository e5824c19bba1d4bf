# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The common argument spec (module_utils/_argspec.py), its doc fragments, and the modules using them.

Each doc fragment documents exactly the options of its spec function, with the
same types and defaults; every module that extends a fragment takes those
options from the common spec unchanged, and documents every option it takes
(its own and the fragments') with the default its argument spec gives.  The
helper is run on plain dicts of params, the way main() hands it module.params.
"""

import importlib
import platform

import pytest
import yaml

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils import early_oom as early_oom_concern
from ansible_collections.oomguard.linux.plugins.module_utils import tunables_apply, units_apply
from ansible_collections.oomguard.linux.plugins.modules import (early_oom, kernel_tunables, oom_audit, oom_units, restore,
                                                                slab_leak)

# Each fragment and the spec function whose options it documents.
FRAGMENT_SPECS = {
    'oomguard.linux.change': _argspec.change_spec,
    'oomguard.linux.change.ledger': lambda: _argspec.path_spec('state_dir'),
    'oomguard.linux.labels': _argspec.labels_spec,
    'oomguard.linux.labels.host': _argspec.host_label_spec,
}

# The modules and the fragments they are meant to extend.
MODULE_FRAGMENTS = {
    kernel_tunables: ['oomguard.linux.change', 'oomguard.linux.labels'],
    oom_units: ['oomguard.linux.change', 'oomguard.linux.labels'],
    early_oom: ['oomguard.linux.change', 'oomguard.linux.labels'],
    oom_audit: ['oomguard.linux.labels'],
    restore: ['oomguard.linux.change.ledger', 'oomguard.linux.labels.host'],
    slab_leak: ['oomguard.linux.labels.host'],
}
MODULES = sorted(MODULE_FRAGMENTS, key=lambda m: m.__name__)
MODULE_IDS = [m.__name__.rsplit('.', 1)[-1] for m in MODULES]

# Shared options that some modules document themselves (oom_audit's name the
# harden role's variables), taken from the common spec all the same.
COMMON_OPTIONS = dict(_argspec.change_spec(), **_argspec.path_spec(*_argspec.PATH_DEFAULTS), **_argspec.labels_spec())


def fragment_doc(name):
    """The YAML of a doc fragment named as in extends_documentation_fragment."""
    parts = name.split('.')
    assert parts[:2] == ['oomguard', 'linux'], name
    source = importlib.import_module('ansible_collections.oomguard.linux.plugins.doc_fragments.' + parts[2])
    attribute = parts[3].upper() if len(parts) > 3 else 'DOCUMENTATION'
    return yaml.safe_load(getattr(source.ModuleDocFragment, attribute))


def documented_options(module):
    """A module's options as ansible-doc shows them: its own, then its fragments' (own keys win)."""
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = {}
    for name in doc.get('extends_documentation_fragment', []):
        for option, spec in fragment_doc(name)['options'].items():
            assert option not in options, '%s documented by two fragments' % option
            options[option] = spec
    for option, spec in (doc.get('options') or {}).items():
        options[option] = dict(options.get(option, {}), **spec)
    return options


def same_as_doc(doc, spec):
    """The parts of an option that both the doc and the argument spec state."""
    for key, default in (('type', 'str'), ('elements', None), ('default', None), ('choices', None)):
        assert doc.get(key, default) == spec.get(key, default), key


@pytest.mark.parametrize('fragment', sorted(FRAGMENT_SPECS))
def test_fragment_documents_its_spec(fragment):
    options = fragment_doc(fragment)['options']
    spec = FRAGMENT_SPECS[fragment]()
    assert sorted(options) == sorted(spec)
    for option in options:
        same_as_doc(options[option], spec[option])
        assert options[option]['description']


@pytest.mark.parametrize('module', MODULES, ids=MODULE_IDS)
def test_module_extends_the_fragments_and_takes_their_spec(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc.get('extends_documentation_fragment') == MODULE_FRAGMENTS[module]
    argument_spec = module.argument_spec()
    for fragment in MODULE_FRAGMENTS[module]:
        for option, spec in FRAGMENT_SPECS[fragment]().items():
            assert argument_spec[option] == spec, option
            # Documented by the fragment alone, not again by the module.
            assert option not in (doc.get('options') or {}), option


@pytest.mark.parametrize('module', MODULES, ids=MODULE_IDS)
def test_every_option_documented_with_its_default(module):
    argument_spec = module.argument_spec()
    options = documented_options(module)
    assert sorted(options) == sorted(argument_spec)
    for option, spec in argument_spec.items():
        same_as_doc(options[option], spec)


@pytest.mark.parametrize('option', sorted(COMMON_OPTIONS))
def test_a_shared_option_is_the_same_in_every_module(option):
    having = [m for m in MODULES if option in m.argument_spec()]
    assert having, option
    for module in having:
        assert module.argument_spec()[option] == COMMON_OPTIONS[option], module.__name__


def test_spec_functions_return_fresh_dicts():
    first = _argspec.change_spec()
    first['force']['default'].append('limit_below_usage')
    first['state_dir']['default'] = '/tmp'
    assert _argspec.change_spec() == {
        'force': {'type': 'list', 'elements': 'str', 'default': []},
        'validate_only': {'type': 'bool', 'default': False},
        'systemd_dir': {'type': 'path', 'default': '/etc/systemd/system'},
        'state_dir': {'type': 'path', 'default': '/var/lib/oomguard'},
    }


def test_path_defaults_are_the_concerns_defaults():
    for concern in (tunables_apply, units_apply, early_oom_concern):
        for name, default in concern.DEFAULT_PATHS.items():
            if name in _argspec.PATH_DEFAULTS:
                assert _argspec.PATH_DEFAULTS[name] == default, (concern.__name__, name)


def module_defaults(module):
    """module.params as AnsibleModule gives them when the task sets nothing."""
    return dict((name, spec.get('default')) for name, spec in module.argument_spec().items())


# -- the helper ----------------------------------------------------------------------

@pytest.mark.parametrize('module, concern_paths', [
    (kernel_tunables, tunables_apply.DEFAULT_PATHS),
    (oom_audit, tunables_apply.DEFAULT_PATHS),
    (oom_units, units_apply.DEFAULT_PATHS),
    (early_oom, dict((k, early_oom_concern.DEFAULT_PATHS[k]) for k in early_oom.PATH_OPTIONS)),
    # restore takes every path the changing modules take: what a ledger's entries may name.
    (restore, dict(_argspec.PATH_DEFAULTS)),
], ids=['kernel_tunables', 'oom_audit', 'oom_units', 'early_oom', 'restore'])
def test_paths_of_a_task_that_sets_none(module, concern_paths):
    params, dummy = _argspec.params_and_labels(module_defaults(module), module.PATH_OPTIONS)
    assert params['paths'] == concern_paths


def test_paths_hold_the_path_options_named_and_nothing_else():
    given = {'sysctl': {'vm.swappiness': 10}, 'systemd_dir': '/srv/tree/etc/systemd/system',
             'state_dir': '/srv/tree/var/lib/oomguard', 'earlyoom_defaults': '/srv/tree/etc/default/earlyoom',
             'host_label': 'web1', 'variable_labels': {}}
    params, dummy = _argspec.params_and_labels(given, ('systemd_dir', 'state_dir'))
    assert params['paths'] == {'systemd_dir': '/srv/tree/etc/systemd/system', 'state_dir': '/srv/tree/var/lib/oomguard'}
    assert dict((k, v) for k, v in params.items() if k != 'paths') == given
    assert 'paths' not in given  # the module's params are left as they were


def test_paths_without_path_options():
    params, dummy = _argspec.params_and_labels({'host_label': 'web1'})
    assert params['paths'] == {}


def test_host_label_names_the_host():
    dummy, labels = _argspec.params_and_labels({'host_label': 'web1', 'variable_labels': {}})
    assert labels.host == 'web1'
    assert labels.msg('cannot restore: denied') == 'host web1: cannot restore: denied'
    assert _argspec.host_name({'host_label': 'web1'}) == 'web1'


@pytest.mark.parametrize('params', [{'host_label': None, 'variable_labels': {}}, {'host_label': ''}, {}])
def test_without_host_label_the_node_name(params):
    dummy, labels = _argspec.params_and_labels(params)
    assert labels.host == platform.node()
    assert _argspec.host_name(params) == platform.node()


@pytest.mark.parametrize('params', [{'host_label': 'web1', 'variable_labels': {}},
                                    {'host_label': 'web1', 'variable_labels': None},
                                    {'host_label': 'web1'}])
def test_options_are_named_by_their_inventory_variables_by_default(params):
    dummy, labels = _argspec.params_and_labels(params)
    assert labels.var('sysctl') == 'oomguard_sysctl'
    assert labels.var('sysctl', 'vm.swappiness') == "oomguard_sysctl['vm.swappiness']"
    assert labels.var('force') == 'oomguard_force'
    assert labels.var('early_oom', 'killer') == "oomguard_early_oom['killer']"
    # The thp role carries the compaction keys in oomguard_thp.
    assert labels.var('compaction', 'method') == "oomguard_thp['compaction_method']"


def test_variable_labels_override_per_option():
    # The example of the labels fragment.
    dummy, labels = _argspec.params_and_labels({'host_label': 'web1', 'variable_labels': {'sysctl': 'host_sysctl'}})
    assert labels.var('sysctl', 'vm.swappiness') == "host_sysctl['vm.swappiness']"
    assert labels.var('thp', 'enabled') == "oomguard_thp['enabled']"
    assert labels.var('compaction', 'method') == "oomguard_thp['compaction_method']"
    dummy, labels = _argspec.params_and_labels({'host_label': 'web1', 'variable_labels': {'compaction': 'compaction'}})
    assert labels.var('compaction', 'method') == "compaction['method']"
