# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every change concern of one host in one call: the harden role's inventory to three plans.

The harden role's variables become each concern's params (``concern_params``,
also what the drift audit plans with).  ``apply`` plans the three concerns
from one read of the host each, settles the problems of all three at once
(so an operator sees every refusal of the run together, and nothing is
written while any concern refuses), then executes them in the order the
kernel needs: the tunables (THP before the sysctls it moves), the unit
settings, the early killer.
"""

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import early_oom as eo
from ansible_collections.oomguard.linux.plugins.module_utils import tunables_apply as ta
from ansible_collections.oomguard.linux.plugins.module_utils import units_apply as ua

# (result key, concern module) in the order they are executed.
CONCERNS = (('tunables', ta), ('units', ua), ('early_oom', eo))


def _paths(params, names):
    return dict((k, v) for k, v in (params.get('paths') or {}).items() if k in names and v)


def concern_params(params, audit=False):
    """{result key: params} of each concern, from the harden role's variables.

    audit: the drift audit's view (a key this kernel lacks is a row, not a
    refusal; the early killer's plan without its package installed).
    """
    force = params.get('force') or []
    names = params.get('inventory_variables') or []
    tunables = {
        'profile': params.get('profile') or 'none', 'sysctl': params.get('sysctl') or {},
        'thp': params.get('thp') or {}, 'compaction': {}, 'scopes': ['thp', 'compaction', 'sysctl'], 'force': force,
        'inventory_variables': names,
        'unsupported': 'skip' if audit else params.get('unsupported') or 'fail', 'persist': True,
        'validate_only': params.get('validate_only', False), 'paths': _paths(params, ta.DEFAULT_PATHS),
    }
    if params.get('sysctl_dirs'):
        tunables['sysctl_dirs'] = params['sysctl_dirs']
    units = {
        'services': params.get('services') or {}, 'cgroups': params.get('cgroups') or {},
        'processes': params.get('processes') or [], 'protect_defaults': params.get('protect_defaults', True),
        'scopes': list(ua.SCOPES), 'force': force, 'validate_only': params.get('validate_only', False),
        'inventory_variables': names,
        'paths': _paths(params, ua.DEFAULT_PATHS),
    }
    early = {
        'early_oom': params.get('early_oom') or {}, 'force': force, 'inventory_variables': names,
        # validate_only: the plan, and package_missing instead of a refusal when the package is absent.
        'validate_only': True if audit else params.get('validate_only', False),
        'paths': _paths(params, eo.DEFAULT_PATHS),
    }
    return {'tunables': tunables, 'units': units, 'early_oom': early}


def _read_back(name, host, change, judged):
    if name == 'units':
        return ua.read_back(host, change, judged)
    return ta.read_back(host, change)


def apply(params, host, labels, check_mode, run_command=None, systemctl=None):
    """Harden one host: {'changed', 'tunables', 'units', 'early_oom', 'forced', 'diff', 'warnings'}."""
    by_name = concern_params(params)
    paths = dict(ua.DEFAULT_PATHS, **by_name['units']['paths'])
    systemd = engine.Systemd(host, run_command, systemctl, paths['systemd_dir'], ua.DEFAULT_PATHS['systemd_dir'])
    plans = [(name, module, by_name[name], module.plan(by_name[name], host, labels, systemd, check_mode))
             for name, module in CONCERNS]
    # Every refusal of every concern at once, before anything is written; a
    # problem of the shared variables (oomguard_force) is said once, not per concern.
    problems, seen = [], set()
    for dummy, dummy2, dummy3, judged in plans:
        for problem in judged.problems:
            if (problem.id, problem.message) not in seen:
                seen.add((problem.id, problem.message))
                problems.append(problem)
    engine.refuse_or_forced(problems, params.get('force'))
    result = {'changed': False, 'diff': [], 'warnings': [], 'forced': []}
    settled = []
    for name, module, concern, judged in plans:
        part, go = engine.settle(judged, concern, check_mode)
        result['warnings'].extend(part.pop('warnings'))
        result['diff'].extend(part.pop('diff'))
        result['changed'] = result['changed'] or part['changed']
        result['forced'].extend(part['forced'])
        result[name] = part
        settled.append((name, module, judged, go))
    for name, module, judged, go in settled:
        if go:
            engine.execute(judged, paths['state_dir'], module.OWNER, systemd, labels,
                           lambda path, text: engine.write_live(host.path(path), text),
                           lambda change, name=name, judged=judged: _read_back(name, host, change, judged))
    return result
