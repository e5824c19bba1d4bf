# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift audit: the harden roles' own plans, made in check mode, read as a report.

The hardening concerns already know, for every setting, what the host has
and what the inventory wants: it is their plan.  The audit asks the three
of them (kernel tunables, unit settings, early killer) for their plans with
the same inventory variables and turns each plan into one row per setting:

  ok           the live value (and its persistent file) is what the inventory wants
  drift        the live value, or the file that makes it survive a reboot, differs
  missing      the persistent file (sysctl.d, drop-in, killer config) is absent
  unsupported  this kernel or host has no such setting

Each concern's plan is made once from one read of the host.  Guards are not
a reason to stop an audit (they judge a change the audit does not make), so
the guards that would refuse are listed, not obeyed.  An invalid inventory
still fails: it is an error, not drift.  Nothing is written.
"""


from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import early_oom as early_mod
from ansible_collections.oomguard.linux.plugins.module_utils import harden
from ansible_collections.oomguard.linux.plugins.module_utils import oom_events
from ansible_collections.oomguard.linux.plugins.module_utils import slab as slab_mod
from ansible_collections.oomguard.linux.plugins.module_utils.facts import posture_facts
from ansible_collections.oomguard.linux.plugins.module_utils.posture import judge as judge_posture, posture_options
from ansible_collections.oomguard.linux.plugins.module_utils.snapshot import collect as collect_snapshot
from ansible_collections.oomguard.linux.plugins.module_utils import tunables_apply as ta
from ansible_collections.oomguard.linux.plugins.module_utils import units_apply as ua

STATUSES = ('ok', 'drift', 'missing', 'unsupported')


# Refusals that say the host cannot have the setting at all: reported as
# rows ('unsupported', or 'missing' for what the host lacks but could get).
HOST_LACKS = {'no_systemd': 'unsupported', 'oomd_unsupported': 'unsupported', 'unsupported_cgroup_v1': 'unsupported',
              'controller_missing': 'unsupported', 'cgroup_missing': 'missing', 'unsupported_systemd': 'unsupported'}


def read_plan(judged, force):
    """A concern's plan as the audit reads it: (result or None, guards that would fire, host-lacks problems).

    Guards judge a change the audit does not make, so they are noted, not
    obeyed.  The result is None when the host lacks what the area needs;
    the problems say what.  Any other refusal (an invalid inventory) is raised.
    """
    refusals, dummy = engine.split_forced(judged.problems, set(force or []))
    if any(not p.forcible and p.id not in HOST_LACKS for p in refusals):
        raise engine.Refused(refusals)
    fired = sorted(set(p.id for p in refusals if p.forcible))
    lacks = [p for p in refusals if not p.forcible]
    return (None if lacks else judged.result), fired, lacks


def lacks_rows(area, problems):
    return [_row(area, p.key or p.id, p.id, None, None, HOST_LACKS[p.id], p.message) for p in problems]


def _row(area, item, key, desired, live, status, note=None):
    row = {'area': area, 'item': item, 'setting': key, 'desired': desired, 'live': live, 'status': status}
    if note:
        row['note'] = note
    return row


def _file_rows(area, files, item_of):
    rows = []
    for change in files:
        status = 'missing' if change['action'] == 'create' else 'drift'
        note = {'create': 'absent', 'update': 'content differs', 'remove': 'stale: no longer in the inventory'}[change['action']]
        rows.append(_row(area, item_of(change['path']), 'file', change['path'] if change['action'] != 'remove' else None,
                         change['path'] if change['action'] != 'create' else None, status, note))
    return rows


def tunables_rows(result):
    changes = dict((c['key'], c) for c in result['changes'] if c.get('cause') == 'requested')
    rows = []
    for key in sorted(result['desired']):
        desired = result['desired'][key]
        area = 'thp' if key.startswith('transparent_hugepage') else 'sysctl'
        if key in changes:
            rows.append(_row(area, key, 'value', desired, changes[key]['before'], 'drift'))
        else:
            rows.append(_row(area, key, 'value', desired, desired, 'ok'))
    for skipped in result.get('skipped') or []:
        rows.append(_row('sysctl', skipped.get('key'), 'value', skipped.get('value'), None, 'unsupported',
                         skipped.get('reason')))
    rows.extend(_file_rows('persistence', result['files'], lambda path: path))
    return rows


def units_rows(result, files_by_path):
    rows = []
    live_changes = dict((c['key'], c) for c in result['changes'])
    dropin_files = dict((c['path'], c) for c in result['files'])
    unsupported = dict(((u['unit'], u['property']), 'needs systemd %d; this host has %d' % (u['needs'], u['has']))
                       for u in result.get('unsupported') or [])
    for unit in sorted(result['dropins']):
        for scope in sorted(result['dropins'][unit]):
            path = files_by_path(unit, scope)
            file_change = dropin_files.get(path)
            for prop, desired in sorted(result['dropins'][unit][scope].items()):
                if (unit, prop) in unsupported:
                    status, live, note = 'unsupported', None, unsupported[(unit, prop)]
                elif file_change is None:
                    status, live, note = 'ok', desired, None
                elif file_change['action'] == 'create':
                    status, live, note = 'missing', None, 'no drop-in %s' % path
                else:
                    status, live, note = 'drift', None, 'drop-in %s differs' % path
                rows.append(_row('unit', unit, prop, desired, live, status, note))
    for key in sorted(live_changes):
        change = live_changes[key]
        area = {'cgroup': 'cgroup', 'proc': 'process'}.get(change.get('kind'), change.get('kind'))
        rows.append(_row(area, key, 'live', change['after'], change['before'], 'drift',
                         'running value; systemd applies it on daemon-reload' if change.get('cause') == 'systemd' else None))
    rows.extend(_file_rows('unit', [c for c in result['files'] if c['action'] == 'remove'], lambda path: path))
    for pattern in result.get('unmatched') or []:
        rows.append(_row('process', pattern, 'oom_score_adj', None, None, 'missing', 'no process matches'))
    return rows


def early_rows(result):
    rows = []
    killer = result['killer']
    rows.append(_row('early_oom', 'killer', 'unit', killer, None if result['unit_action'] else killer,
                     'drift' if result['unit_action'] else 'ok',
                     '%s needs %s' % (result['unit'], result['unit_action']) if result['unit_action'] else None))
    if result.get('package_missing'):
        rows.append(_row('early_oom', 'package', 'installed', result['package'], None, 'missing', 'package not installed'))
    for unit in result.get('units_stopped') or []:
        rows.append(_row('early_oom', unit, 'unit', 'stopped', 'running', 'drift', 'a killer no longer chosen still runs'))
    rows.extend(_file_rows('early_oom', result['files'], lambda path: path))
    return rows


def summarize(rows):
    counts = dict((status, 0) for status in STATUSES)
    for row in rows:
        counts[row['status']] += 1
    return counts


def run(params, host, labels, run_command=None, systemctl=None):
    """The audit of one host: rows, counts, the guards that would fire."""
    by_name = harden.concern_params(params, audit=True)
    tunables_params, units_params, early_params = by_name['tunables'], by_name['units'], by_name['early_oom']
    force = params.get('force') or []
    systemd_dir = ua.paths_of(units_params)['systemd_dir']
    systemd = engine.Systemd(host, run_command, systemctl, systemd_dir, ua.DEFAULT_PATHS['systemd_dir'])
    tunables, tunables_forced, tunables_lack = read_plan(ta.plan(tunables_params, host, labels, systemd), force)
    units, units_forced, units_lack = read_plan(ua.plan(units_params, host, labels, systemd), force)
    early, early_forced, early_lack = read_plan(early_mod.plan(early_params, host, labels, systemd, True), force)
    rows = tunables_rows(tunables) if tunables else lacks_rows('sysctl', tunables_lack)
    rows += (units_rows(units, lambda unit, scope: ua.dropin_path(systemd_dir, unit, scope)) if units
             else lacks_rows('unit', units_lack))
    rows += early_rows(early) if early else lacks_rows('early_oom', early_lack)
    counts = summarize(rows)
    return {
        'settings': rows,
        'summary': counts,
        # Values that differ from the policy are drift; what the collection
        # would write and is absent (never hardened, a file removed) is missing.
        'drift': counts['drift'],
        'missing': counts['missing'],
        'compliant': counts['drift'] + counts['missing'] == 0,
        'guards_fired': sorted(set(tunables_forced + units_forced + early_forced)),
        'profile': tunables_params['profile'],
        'killer': early['killer'] if early else None,
        'cgroup_mode': units.get('cgroup_mode') if units else None,
    }


# -- the fleet audit: every part of one host's audit in one module call -------------
#
# A fleet run pays Ansible's per-task cost (a fork, a connection, an AnsiballZ
# payload) once per host and task; one call that does the four parts costs
# a quarter of four calls (benchmarks/fleet_audit.py).

PARTS = ('policy', 'posture', 'slab', 'events')
# The fleet report lists fewer likely victims per host than oom_facts does.
AUDIT_VICTIMS = 5
EVENT_DEFAULTS = {'since': None, 'max_events': 20, 'min_loop_kills': 3, 'max_read_bytes': None, 'timeout_s': None}


def run_parts(params, host, labels, run_command=None, systemctl=None, journalctl=None, systemd_booted=False):
    """Each requested part's result, and {part: message} for those that failed."""
    result = {}
    errors = {}
    if params.get('policy', True):
        try:
            result.update(run(params, host, labels, run_command, systemctl))
        except engine.Refused as exc:
            errors['policy'] = str(exc)
            result['problems'] = [p.as_dict() for p in exc.problems]
    if params.get('posture'):
        thresholds, victims, problems = posture_options(
            params.get('posture_options'), labels, lambda key: "oomguard_posture['%s']" % key, AUDIT_VICTIMS)
        if problems:
            errors['posture'] = '\n'.join(p.message for p in problems)
        else:
            try:
                snapshot = collect_snapshot(host, skip=[], victims_count=victims, run_command=run_command,
                                            systemctl_path=systemctl)
                result['posture'] = posture_facts(snapshot, judge_posture(snapshot, thresholds or None), False)
            except (IOError, OSError) as exc:
                errors['posture'] = labels.msg('cannot read the host memory state: %s' % exc)
    if params.get('slab') is not None:
        try:
            result['slab'] = slab_mod.run(host, params['slab'], labels.host)
        except (ValueError, IOError, OSError) as exc:
            errors['slab'] = str(exc)
    unknown = sorted(set(params.get('events') or {}) - set(EVENT_DEFAULTS), key=str)
    if unknown:
        errors['events'] = labels.msg('%s; allowed: %s' % (
            ', '.join("oomguard_audit_events['%s']: unknown option" % key for key in unknown),
            ', '.join(sorted(EVENT_DEFAULTS))))
    elif params.get('events') is not None:
        options = dict(EVENT_DEFAULTS, **dict((k, v) for k, v in params['events'].items() if v is not None))
        try:
            oom_events.parse_since(options['since'])
            result['events'] = oom_events.run(options, run_command, journalctl, systemctl, systemd_booted)
        except (ValueError, oom_events.SourceError) as exc:
            errors['events'] = labels.msg(str(exc))
    return result, errors
