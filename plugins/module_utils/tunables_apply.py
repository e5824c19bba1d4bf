# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel tunables as a change concern: one read of the host, judged into a plan.

``plan()`` validates every value of every scope, checks the guards against
the live host and lists the live changes and files; the change engine
(``_engine``) refuses, records the originals and writes.  Live values are
written THP first, then the sysctls in ``tunables.write_order``.
"""


import os

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import schema
from ansible_collections.oomguard.linux.plugins.module_utils import tunables as tn

DEFAULT_PATHS = _argspec.default_paths('sysctl_file', 'compaction_file', 'systemd_dir', 'state_dir')
OWNER = 'kernel_tunables'


def _requested_names(params):
    profile = tn.PROFILES.get(params.get('profile') or 'none', tn.PROFILES['none'])
    names = set(tn.normalize_name(str(n)) for n in profile['sysctl'])
    names.update(tn.normalize_name(str(n)) for n in (params.get('sysctl') or {}))
    return names


def paths_of(params):
    return dict(DEFAULT_PATHS, **dict((k, v) for k, v in (params.get('paths') or {}).items() if v))


def _judge(params, host, labels):
    """(request, live, paths, files, problems); files is None when the request is invalid."""
    scopes = params.get('scopes') or list(tn.SCOPES)
    names = _requested_names(params) if 'sysctl' in scopes else set()
    user_sysctl = params.get('sysctl') or {}
    wants_panic_2 = any(tn._as_int(v) == 2 for k, v in user_sysctl.items()
                        if tn.normalize_name(str(k)) == 'vm.panic_on_oom')
    live = tn.read_live(host, names, need_cgroups=wants_panic_2)
    req = tn.build_request(params, live, labels)
    req.persist_thp = params.get('persist', True)
    paths = paths_of(params)
    if req.errors:
        return req, live, paths, None, list(req.errors)
    files = tn.desired_files(req, scopes, paths, labels) if params.get('persist', True) else {}
    shadows = []
    for scope, path in (('sysctl', paths['sysctl_file']), ('compaction', paths['compaction_file'])):
        if scope not in scopes or files.get(path, {}).get('type') != 'file':
            continue
        wanted = dict((k, v) for k, v in req.sysctl.items() if req.sysctl_scope[k] == scope)
        shadows.extend(tn.find_shadows(host, path, wanted, params.get('sysctl_dirs') or tn.SYSCTL_DIRS))
    return req, live, paths, files, tn.check_guards(req, live, labels, shadows)


def plan(params, host, labels, systemd, check_mode=False):
    """The whole call judged into an engine Plan (problems as data, nothing raised)."""
    # The paths first: nothing is read through a path that is not what it must be.
    # Without persist no sysctl file is written, so where it would go does not matter.
    sysctl_dirs = (params.get('sysctl_dirs') or tn.SYSCTL_DIRS) if params.get('persist', True) else ()
    problems = schema.path_problems(paths_of(params), labels, host, sysctl_dirs)
    if problems:
        schema.Checker(labels, problems).shared(params)
        return engine.Plan(problems)
    req, live, paths, files, problems = _judge(params, host, labels)
    checker = schema.Checker(labels, problems)
    checker.shared(params)
    if req is not None and req.timer_schedule:
        _check_calendar(checker, req.timer_schedule, systemd)
    judged = engine.Plan(problems)
    if files is None:
        return judged
    judged.values = tn.plan_values(req, live)
    judged.files = files
    judged.file_changes = engine.plan_files(files)
    changed = set(c['path'] for c in judged.file_changes)
    # Writing THP 'enabled' makes the kernel recompute vm.min_free_kbytes
    # (khugepaged's recommendation, or the default when it stops): keep its
    # original too, so that restore puts it back after THP.
    text = (live['sysctls'].get('vm.min_free_kbytes') or {}).get('text')
    if 'vm.min_free_kbytes' not in req.sysctl and text is not None and any(
            c['key'] == tn.THP_KNOBS['enabled'].name for c in judged.values):
        judged.originals.append({'key': 'vm.min_free_kbytes', 'kind': 'sysctl',
                                 'path': '/' + procfs.sysctl_path('vm.min_free_kbytes'),
                                 'before': engine.canonical(text)})
    _plan_units(judged, paths, changed, systemd)
    judged.result = {
        'changed': bool(judged.values or judged.file_changes),
        'changes': judged.values,
        'files': engine.file_rows(judged.file_changes),
        'skipped': req.skipped,
        'resolved': req.resolved,
        'compaction_method': req.compaction_method,
        'desired': dict(req.sysctl, **dict((tn.THP_KNOBS[k].name, v) for k, v in req.thp.items())),
        'ledger': os.path.join(paths['state_dir'], ledger_mod.LEDGER_NAME),
        'diff': engine.build_diff(judged.values, judged.file_changes),
    }
    return judged


def _check_calendar(checker, schedule, systemd):
    """systemd's own parser has the last word on a schedule, where the host has it."""
    if not systemd.can_run:
        return
    analyze = os.path.join(os.path.dirname(systemd.systemctl), 'systemd-analyze')
    if not os.path.exists(analyze):
        return
    rc, out, err = systemd.run_command([analyze, 'calendar', '--', schedule])
    if rc != 0:
        checker.invalid(checker.labels.var('compaction', 'schedule'), schedule,
                        'an expression systemd-analyze calendar accepts; it says: %s'
                        % ' '.join((err or out).split())[:200], key='compaction_schedule')


def _plan_units(judged, paths, changed, systemd):
    """The compaction timer: stopped before its unit goes, restarted after a change."""
    systemd_dir = paths['systemd_dir']
    if not systemd.manages:
        return
    timer_path = systemd_dir + '/' + tn.COMPACT_TIMER
    judged.reload = any(p.startswith(systemd_dir + '/') for p in changed)
    if timer_path not in changed:
        return
    judged.units_record[tn.COMPACT_TIMER] = systemd.is_active(tn.COMPACT_TIMER)
    if judged.files[timer_path]['type'] == 'absent':
        judged.stop_first.append(tn.COMPACT_TIMER)
    else:
        judged.after_reload.append(('restart', tn.COMPACT_TIMER))


def read_back(host, change):
    """A live value as the kernel shows it now: (text, whether it is the value planned)."""
    text = engine.read_live(host.path(change['path']))
    if change['kind'] == 'thp' and not change['key'].endswith('khugepaged.defrag'):
        now = procfs.parse_bracketed(text)[0]
    else:
        now = engine.canonical(text)
    return now, now == change['after']


def apply(params, host, labels, check_mode, run_command=None, systemctl=None):
    """Run a kernel_tunables call; returns the module result (raises Refused/ApplyError)."""
    return engine.apply(plan, params, host, labels, check_mode, run_command, systemctl, OWNER, DEFAULT_PATHS,
                        lambda live_host, change, judged: read_back(live_host, change))
