# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore: put back everything the ledger (``ledger.py``) recorded, for every owner.

The change engine run backwards: units the collection started are stopped,
files are put back byte for byte (or removed), directories it made go, then
the live values are written in the reverse of their write order and read
back.  The ledger is deleted only when all of that succeeded.
"""


import os

from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import tunables as tn
from ansible_collections.oomguard.linux.plugins.module_utils.tunables_apply import DEFAULT_PATHS, read_back


def restore_order(values):
    """THP first (it may move min_free_kbytes), then sysctls in the reverse of
    the write order, with the zero half of a coupled pair written first, then
    the cgroup files and processes of the per-unit settings."""
    thp = sorted(k for k, e in values.items() if e['kind'] == 'thp')
    sysctls = list(reversed(tn.write_order([k for k, e in values.items() if e['kind'] == 'sysctl'])))
    sysctls.sort(key=lambda k: 0 if k in tn.COUPLED and values[k]['original'] == '0' else 1)
    others = sorted(k for k, e in values.items() if e['kind'] not in ('thp', 'sysctl'))
    return thp + sysctls + others


def _same_file(state, recorded):
    keys = ('type', 'content_b64', 'mode', 'uid', 'gid', 'target')
    return all(state.get(k) == recorded.get(k) for k in keys)


def _value_changes(host, values):
    changes = []
    for key in restore_order(values):
        entry = values[key]
        change = {'key': key, 'kind': entry['kind'], 'path': entry['path'], 'after': entry['original']}
        try:
            now, same = read_back(host, change)
        except (IOError, OSError):
            continue  # the knob went away (module unloaded); nothing to put back
        if same:
            continue
        cause = 'restore'
        partner = tn.COUPLED.get(key)
        if entry['original'] == '0' and partner in values and values[partner]['original'] != '0':
            # Written, the partner zeroes this one; written itself, 0 is
            # refused by the dirty_*bytes knobs.
            cause = 'the kernel zeroes it when %s is written' % partner
        change.update({'before': now, 'cause': cause})
        changes.append(change)
    return changes


def restore(params, host, labels, check_mode, run_command=None, systemctl=None):
    """Put back everything the ledger recorded; returns the module result."""
    state_dir = (params.get('paths') or {}).get('state_dir') or DEFAULT_PATHS['state_dir']
    ledger = ledger_mod.Ledger.load(state_dir)
    result = {'changed': False, 'changes': [], 'files': [], 'ledger': ledger.path, 'diff': []}
    if not ledger.exists:
        result['msg'] = 'nothing to restore: %s does not exist' % ledger.path
        return result
    value_changes = _value_changes(host, ledger.data['values'])
    file_changes = engine.plan_files(ledger.data['files'], same=_same_file)
    dirs = [d for d in reversed(ledger.data['dirs']) if os.path.isdir(d)]
    systemd = engine.Systemd(host, run_command, systemctl)
    units = [u for u, e in sorted(ledger.data['units'].items())
             if systemd.can_run and not e['was_active'] and systemd.is_active(u)]
    result.update({
        'changed': True,  # the ledger itself goes away
        'changes': value_changes,
        'files': engine.file_rows(file_changes) + [{'path': d, 'action': 'remove'} for d in dirs],
        'units_stopped': units,
        'diff': engine.build_diff(value_changes, file_changes),
    })
    if check_mode:
        return result

    for unit in units:
        systemd.run('stop', unit)
    for change in file_changes:
        ledger_mod.put_state(change['path'], ledger.data['files'][change['path']])
    for directory in dirs:
        try:
            os.rmdir(directory)
        except OSError:
            pass  # something else lives there now; keep it
    if systemd.can_run and any('/systemd/' in c['path'] for c in file_changes):
        systemd.run('daemon-reload')
    tail = 'the ledger %s is kept' % ledger.path
    engine.write_values(value_changes, lambda path, text: engine.write_live(host.path(path), text),
                        labels, tail, cause='restore', verb='restoring')
    engine.check_values(value_changes, lambda change: read_back(host, change), labels, tail, verb='restoring')
    ledger.delete()
    return result
