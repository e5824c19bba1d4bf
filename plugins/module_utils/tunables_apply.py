# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change the host: apply a validated tunables request, and restore from the ledger.

The order is the contract: validate all -> guards against the live state ->
plan -> (check mode stops here) -> record the originals in the ledger ->
write the persistent files -> write the live values (THP first, then the
sysctls) -> read them back.  Nothing is written before every value has been
validated and every guard has passed, for every scope of the call.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import tunables as tn

DEFAULT_PATHS = {
    'sysctl_file': '/etc/sysctl.d/90-oomguard.conf',
    'compaction_file': '/etc/sysctl.d/90-oomguard-compaction.conf',
    'systemd_dir': '/etc/systemd/system',
    'state_dir': '/var/lib/oomguard',
}
OWNER = 'kernel_tunables'


class Refused(Exception):
    """The request is invalid or a guard refused it; nothing was written."""

    def __init__(self, problems):
        super(Refused, self).__init__('\n'.join(p.message for p in problems))
        self.problems = problems


class ApplyError(Exception):
    """A write or the read-back failed (the ledger holds the originals)."""


def _requested_names(params):
    profile = tn.PROFILES.get(params.get('profile') or 'none', tn.PROFILES['none'])
    names = set(tn.normalize_name(str(n)) for n in profile['sysctl'])
    names.update(tn.normalize_name(str(n)) for n in (params.get('sysctl') or {}))
    return names


def prepare(params, host, labels):
    """Validate and judge the whole request: (request, live, files, problems, forced)."""
    scopes = params.get('scopes') or list(tn.SCOPES)
    names = _requested_names(params) if 'sysctl' in scopes else set()
    user_sysctl = params.get('sysctl') or {}
    wants_panic_2 = any(tn._as_int(v) == 2 for k, v in user_sysctl.items()
                        if tn.normalize_name(str(k)) == 'vm.panic_on_oom')
    live = tn.read_live(host, names, need_cgroups=wants_panic_2)
    req = tn.build_request(params, live, labels)
    req.persist_thp = params.get('persist', True)
    if req.errors:
        raise Refused(req.errors)
    paths = dict(DEFAULT_PATHS, **dict((k, v) for k, v in (params.get('paths') or {}).items() if v))
    files = tn.desired_files(req, scopes, paths, labels) if params.get('persist', True) else {}
    shadows = []
    for scope, path in (('sysctl', paths['sysctl_file']), ('compaction', paths['compaction_file'])):
        if scope not in scopes or files.get(path, {}).get('type') != 'file':
            continue
        wanted = dict((k, v) for k, v in req.sysctl.items() if req.sysctl_scope[k] == scope)
        shadows.extend(tn.find_shadows(host, path, wanted, params.get('sysctl_dirs') or tn.SYSCTL_DIRS))
    problems = tn.check_guards(req, live, labels, shadows)
    refusals, forced = tn.split_forced(problems, set(params.get('force') or []))
    if refusals:
        raise Refused(refusals)
    return req, live, paths, files, forced


def plan_files(files):
    """[{path, action, before, after}] for the files that differ from their spec."""
    changes = []
    for path in sorted(files):
        spec = files[path]
        state = ledger_mod.file_state(path)
        if ledger_mod.same_as(state, spec):
            continue
        if spec['type'] == 'absent':
            action = 'remove'
        elif state['type'] == 'absent':
            action = 'create'
        else:
            action = 'update'
        changes.append({'path': path, 'action': action, 'before': _describe(state), 'after': _describe(spec)})
    return changes


def _describe(state):
    if state['type'] == 'absent':
        return ''
    if state['type'] == 'link':
        return '-> %s\n' % state['target']
    if 'content' in state:
        content = state['content']
        return content.decode('utf-8', 'replace') if isinstance(content, bytes) else content
    content = ledger_mod.content_of(state)
    return content.decode('utf-8', 'replace') if content is not None else ''


def build_diff(value_changes, file_changes):
    diff = []
    if value_changes:
        diff.append({
            'before_header': 'live kernel values',
            'after_header': 'live kernel values',
            'before': ''.join('%s = %s\n' % (c['key'], c['before']) for c in value_changes),
            'after': ''.join('%s = %s\n' % (c['key'], c['after']) for c in value_changes),
        })
    for change in file_changes:
        diff.append({'before_header': change['path'], 'after_header': change['path'],
                     'before': change['before'], 'after': change['after']})
    return diff


def _write_live(path, text):
    with open(path, 'w') as handle:
        handle.write(text + '\n')


def _read_live(path):
    with open(path) as handle:
        return handle.read()


def _is_active(run_command, systemctl, unit):
    rc, dummy, dummy2 = run_command([systemctl, 'is-active', '--quiet', unit])
    return rc == 0


def _systemctl(run_command, systemctl, *args):
    """Run systemctl; ApplyError when it fails.  Shared by every module that changes units."""
    rc, out, err = run_command([systemctl] + list(args))
    if rc != 0:
        raise ApplyError('systemctl %s failed (rc %d): %s' % (' '.join(args), rc, (err or out).strip()))
    return out


def apply(params, host, labels, check_mode, run_command=None, systemctl=None):
    """Run a kernel_tunables call; returns the module result (raises Refused/ApplyError)."""
    req, live, paths, files, forced = prepare(params, host, labels)
    value_changes = tn.plan_values(req, live)
    file_changes = plan_files(files)
    changed_files = set(c['path'] for c in file_changes)
    systemd_dir = paths['systemd_dir']
    manage_units = bool(systemctl and run_command and live['systemd']
                        and systemd_dir == DEFAULT_PATHS['systemd_dir'])
    timer_path = systemd_dir + '/' + tn.COMPACT_TIMER
    result = {
        'changed': bool(value_changes or file_changes),
        'changes': value_changes,
        'files': [dict((k, c[k]) for k in ('path', 'action')) for c in file_changes],
        'forced': [p.as_dict() for p in forced],
        'skipped': req.skipped,
        'resolved': req.resolved,
        'compaction_method': req.compaction_method,
        'desired': dict(req.sysctl, **dict((tn.THP_KNOBS[k].name, v) for k, v in req.thp.items())),
        'ledger': os.path.join(paths['state_dir'], ledger_mod.LEDGER_NAME),
        'diff': build_diff(value_changes, file_changes),
        'warnings': [p.message for p in forced],
    }
    if params.get('validate_only'):
        # A preflight changes nothing; 'changes' and 'files' are its plan.
        result['changed'] = False
        return result
    if check_mode or not result['changed']:
        return result

    ledger = ledger_mod.Ledger.load(paths['state_dir'])
    for change in value_changes:
        ledger.record_value(change['key'], change['kind'], change['path'], change['before'], OWNER)
    # Writing THP 'enabled' makes the kernel recompute vm.min_free_kbytes
    # (khugepaged's recommendation, or the default when it stops): keep its
    # original too, so that restore puts it back after THP.
    if 'vm.min_free_kbytes' not in req.sysctl and any(
            c['key'] == tn.THP_KNOBS['enabled'].name for c in value_changes):
        text = (live['sysctls'].get('vm.min_free_kbytes') or {}).get('text')
        if text is not None:
            ledger.record_value('vm.min_free_kbytes', 'sysctl', '/' + procfs.sysctl_path('vm.min_free_kbytes'),
                                tn.canonical(text), OWNER)
    for path in sorted(changed_files):
        ledger.record_file(path, OWNER)
    timer_touched = timer_path in changed_files
    if manage_units and timer_touched:
        ledger.record_unit(tn.COMPACT_TIMER, _is_active(run_command, systemctl, tn.COMPACT_TIMER), OWNER)
    ledger.save()

    if manage_units and timer_touched and files.get(timer_path, {}).get('type') == 'absent':
        _systemctl(run_command, systemctl, 'stop', tn.COMPACT_TIMER)
    for path in sorted(changed_files):
        ledger_mod.write_spec(path, files[path])
    if manage_units and any(p.startswith(systemd_dir + '/') for p in changed_files):
        _systemctl(run_command, systemctl, 'daemon-reload')
        if timer_touched and files.get(timer_path, {}).get('type') == 'file':
            _systemctl(run_command, systemctl, 'restart', tn.COMPACT_TIMER)

    _write_and_check(
        host, value_changes, 'requested', labels,
        lambda change, exc: 'writing %s = %s to %s failed: %s; the originals are in %s, playbooks/restore.yml '
                            'puts them back' % (change['key'], change['after'], change['path'], exc, result['ledger']),
        lambda found: 'after writing, the kernel reports: %s; the originals are in %s' % (found, result['ledger']))
    return result


def _write_and_check(host, changes, cause, labels, write_error, check_error):
    """Write the changes of this cause (the others are the kernel's own side
    effects), then read every change back: ApplyError on a failed write or
    a value the kernel did not keep."""
    for change in changes:
        if change['cause'] != cause:
            continue
        try:
            _write_live(host.path(change['path']), change['after'])
        except (IOError, OSError) as exc:
            raise ApplyError(labels.msg(write_error(change, exc)))
    mismatches = []
    for change in changes:
        now = _read_back(host, change)
        if now != change['after']:
            mismatches.append('%s is %s, expected %s' % (change['key'], now, change['after']))
    if mismatches:
        raise ApplyError(labels.msg(check_error('; '.join(mismatches))))


def _read_back(host, change):
    text = _read_live(host.path(change['path']))
    if change['kind'] == 'thp' and not change['key'].endswith('khugepaged.defrag'):
        return procfs.parse_bracketed(text)[0]
    return tn.canonical(text)


# -- the modules' common frame ---------------------------------------------------

def run_module(module, apply_fn, params, labels, failure):
    """Call apply_fn for an AnsibleModule and end it: exit_json, or fail_json with the problems.

    failure: what the module was doing, for an unexpected I/O error.
    """
    try:
        result = apply_fn(params, procfs.HostRoot('/'), labels, module.check_mode,
                          run_command=module.run_command, systemctl=module.get_bin_path('systemctl'))
    except Refused as exc:
        module.fail_json(msg=str(exc), problems=[p.as_dict() for p in exc.problems], changed=False)
    except (ApplyError, ledger_mod.LedgerError, procfs.ReadError) as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg=labels.msg('%s: %s' % (failure, exc)))
    for warning in result.pop('warnings', []):
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)
    module.exit_json(**result)


# -- restore --------------------------------------------------------------------

def _restore_order(values):
    """THP first (it may move min_free_kbytes), then sysctls in the reverse of
    the write order, with the zero half of a coupled pair written first."""
    thp = sorted(k for k, e in values.items() if e['kind'] == 'thp')
    sysctls = list(reversed(tn.write_order([k for k, e in values.items() if e['kind'] == 'sysctl'])))
    sysctls.sort(key=lambda k: 0 if k in tn.COUPLED and values[k]['original'] == '0' else 1)
    # Then the cgroup files and processes of the per-unit settings (oom_units).
    others = sorted(k for k, e in values.items() if e['kind'] not in ('thp', 'sysctl'))
    return thp + sysctls + others


def _same_file(state, recorded):
    keys = ('type', 'content_b64', 'mode', 'uid', 'gid', 'target')
    return all(state.get(k) == recorded.get(k) for k in keys)


def restore(params, host, labels, check_mode, run_command=None, systemctl=None):
    """Put back everything the ledger recorded; returns the module result."""
    state_dir = (params.get('paths') or {}).get('state_dir') or DEFAULT_PATHS['state_dir']
    ledger = ledger_mod.Ledger.load(state_dir)
    result = {'changed': False, 'changes': [], 'files': [], 'ledger': ledger.path, 'diff': []}
    if not ledger.exists:
        result['msg'] = 'nothing to restore: %s does not exist' % ledger.path
        return result
    values = ledger.data['values']
    value_changes = []
    for key in _restore_order(values):
        entry = values[key]
        fake = {'key': key, 'kind': entry['kind'], 'path': entry['path']}
        try:
            now = _read_back(host, fake)
        except (IOError, OSError):
            continue  # the knob went away (module unloaded); nothing to put back
        if now != entry['original']:
            cause = 'restore'
            partner = tn.COUPLED.get(key)
            if entry['original'] == '0' and partner in values and values[partner]['original'] != '0':
                # Written, the partner zeroes this one; written itself, 0 is
                # refused by the dirty_*bytes knobs.
                cause = 'the kernel zeroes it when %s is written' % partner
            value_changes.append({'key': key, 'kind': entry['kind'], 'path': entry['path'],
                                  'before': now, 'after': entry['original'], 'cause': cause})
    file_changes = []
    for path in sorted(ledger.data['files']):
        recorded = ledger.data['files'][path]
        state = ledger_mod.file_state(path)
        if not _same_file(state, recorded):
            file_changes.append({'path': path, 'action': 'remove' if recorded['type'] == 'absent'
                                 else ('create' if state['type'] == 'absent' else 'update'),
                                 'before': _describe(state), 'after': _describe(recorded)})
    dirs = [d for d in reversed(ledger.data['dirs']) if os.path.isdir(d)]
    live_systemd = host.exists('run/systemd/system')
    manage_units = bool(systemctl and run_command and live_systemd)
    units = [u for u, e in sorted(ledger.data['units'].items())
             if manage_units and not e['was_active'] and _is_active(run_command, systemctl, u)]
    result.update({
        'changed': True,  # the ledger itself goes away
        'changes': value_changes,
        'files': [dict((k, c[k]) for k in ('path', 'action')) for c in file_changes]
        + [{'path': d, 'action': 'remove'} for d in dirs],
        'units_stopped': units,
        'diff': build_diff(value_changes, file_changes),
    })
    if check_mode:
        return result

    for unit in units:
        _systemctl(run_command, systemctl, 'stop', unit)
    for change in file_changes:
        ledger_mod.put_state(change['path'], ledger.data['files'][change['path']])
    for directory in dirs:
        try:
            os.rmdir(directory)
        except OSError:
            pass  # something else lives there now; keep it
    if manage_units and any('/systemd/' in c['path'] for c in file_changes):
        _systemctl(run_command, systemctl, 'daemon-reload')
    _write_and_check(
        host, value_changes, 'restore', labels,
        lambda change, exc: 'restoring %s = %s failed: %s; the ledger %s is kept'
                            % (change['key'], change['after'], exc, ledger.path),
        lambda found: 'after restoring, the kernel reports: %s; the ledger %s is kept' % (found, ledger.path))
    ledger.delete()
    return result
