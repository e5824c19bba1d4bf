# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore: put back everything the ledger (``ledger.py``) recorded, for every owner.

The change engine run backwards: units the collection started are stopped,
files are put back byte for byte (or removed), directories it made go, then
the live values are written in the reverse of their write order and read
back.  The ledger is deleted only when all of that succeeded.

Only a ledger the collection wrote is used (``ledger.Ledger.load`` checks its
owner, mode, type, size and shape), and only for what the collection itself
writes: every entry's target is checked against the sysctls it manages, its
files under the configured paths, its units and the sysfs and /proc files of
the unit settings, before anything is planned.  A process whose PID now
belongs to another process (its start time differs) is skipped with a note.
"""


import os
import re

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import early_oom as eo
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import monitor_apply as mon
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils import tunables as tn
from ansible_collections.oomguard.linux.plugins.module_utils import units_apply as ua
from ansible_collections.oomguard.linux.plugins.module_utils.tunables_apply import DEFAULT_PATHS, read_back

# The files the collection writes, by path option (unset: the default on the host restored).
TARGET_PATH_OPTIONS = ('sysctl_file', 'compaction_file', 'systemd_dir', 'earlyoom_defaults', 'oomd_conf_dir',
                       'monitor_lib_dir', 'cron_dir')
# Beside the per-unit drop-ins, what the collection puts in systemd_dir.
SYSTEMD_FILES = (tn.THP_UNIT, 'sysinit.target.wants/' + tn.THP_UNIT, tn.COMPACT_SERVICE, tn.COMPACT_TIMER,
                 'timers.target.wants/' + tn.COMPACT_TIMER, mon.SERVICE, mon.TIMER, mon.TIMER_LINK)
KILLER_UNITS = tuple(sorted(set(eo.UNITS.values()) | set(u for units in eo.SOCKETS.values() for u in units)))
# What `systemctl enable` makes for the early killers: their [Install] links,
# and systemd-oomd's Alias= in Debian's unit.
KILLER_ALIASES = ('dbus-org.freedesktop.oom1.service',)
UNITS = tuple(sorted(set(KILLER_UNITS) | set([tn.COMPACT_TIMER, tn.THP_UNIT, mon.TIMER])))
# The collector's sources under monitor_lib_dir: module_utils by their module names.
_MONITOR_SOURCE_RE = re.compile(r'^%s/(?:[a-z_]{1,64}\.py|__pycache__/[a-z_]{1,64}\.[a-z]{1,16}-[0-9]{1,8}\.pyc)$'
                                % re.escape(mon.PACKAGE_DIR))
DROPIN_NAMES = tuple(sorted([ua.DROPIN_NAME % scope for scope in ua.SCOPES] + [eo.DROPIN]))
_UNIT_NAME_RE = re.compile(r'^[A-Za-z0-9:_.\\@-]{1,255}$')
CGROUP_FILE_NAMES = tuple(sorted(set(n for v2, dummy, v1 in ua.CGROUP_FILES.values() for n in (v2, v1) if n)))
_PROC_ADJ_RE = re.compile(r'^/proc/([1-9][0-9]{0,9})/oom_score_adj$')
THP_BY_NAME = dict((knob.name, '/' + tn.THP_PATHS[key]) for key, knob in tn.THP_KNOBS.items())


# -- what a ledger may name ------------------------------------------------------------------

SYSCTLS_ALLOWED = 'the sysctls the collection manages: ' + tn.managed_sysctls_text()


def normal_path(path):
    """An absolute path in its one normal form: no '..', '.', '//' or trailing '/'."""
    return (isinstance(path, str) and path.startswith('/') and not path.startswith('//') and '\0' not in path
            and '\n' not in path and os.path.normpath(path) == path and '..' not in path.split('/'))


def target_paths(params, host):
    """The path options restore checks file entries against; unset, the default on the host restored."""
    given = params.get('paths') or {}
    return dict((name, os.path.normpath(given.get(name) or host.path(_argspec.PATH_DEFAULTS[name])))
                for name in TARGET_PATH_OPTIONS)


def files_allowed(targets, state_dir):
    sd = targets['systemd_dir']
    return ("the files the collection writes: %s, %s, %s, %s/%s, %s/%s, %s/%s; the collector's %s/%s and %s/%s/NAME.py (and its __pycache__/NAME.TAG.pyc), "
            "and its textfile DIR/%s; in %s: the drop-ins <unit>.d/NAME (NAME one of %s), %s, and the early killers' "
            "links <target>.wants/UNIT or <target>.requires/UNIT (UNIT one of %s) and %s"
            % (targets['sysctl_file'], targets['compaction_file'], targets['earlyoom_defaults'],
               targets['oomd_conf_dir'], eo.DROPIN, targets['cron_dir'], mon.CRON_FILE, state_dir,
               mon.STATE_FILE + ' and ' + mon.monitor.POLICY_FILE,
               targets['monitor_lib_dir'], mon.ENTRY, targets['monitor_lib_dir'], mon.PACKAGE_DIR,
               mon.monitor.TEXTFILE_NAME, sd, ', '.join(DROPIN_NAMES), ', '.join(SYSTEMD_FILES),
               ', '.join(KILLER_UNITS), ', '.join(KILLER_ALIASES)))


def file_allowed(path, targets, state_dir):
    if not normal_path(path):
        return False
    if path in (targets['sysctl_file'], targets['compaction_file'], targets['earlyoom_defaults'],
                targets['oomd_conf_dir'] + '/' + eo.DROPIN, targets['cron_dir'] + '/' + mon.CRON_FILE,
                os.path.join(state_dir, mon.STATE_FILE), os.path.join(state_dir, mon.monitor.POLICY_FILE),
                targets['monitor_lib_dir'] + '/' + mon.ENTRY):
        return True
    # The textfile's directory is the inventory's; the name is the collector's alone.
    if os.path.basename(path) == mon.monitor.TEXTFILE_NAME:
        return True
    lib = targets['monitor_lib_dir'] + '/'
    if path.startswith(lib):
        return bool(_MONITOR_SOURCE_RE.match(path[len(lib):]))
    prefix = targets['systemd_dir'] + '/'
    if not path.startswith(prefix):
        return False
    rest = path[len(prefix):]
    if rest in SYSTEMD_FILES or rest in KILLER_ALIASES:
        return True
    parts = rest.split('/')
    if len(parts) != 2:
        return False
    directory, name = parts
    base, dummy, suffix = directory.rpartition('.')
    if not _UNIT_NAME_RE.match(base):
        return False
    if suffix == 'd':
        return name in DROPIN_NAMES
    return suffix in ('wants', 'requires') and name in KILLER_UNITS


def _value_problem(key, entry):
    """(where, value, allowed) of a live value the collection does not write, or None."""
    kind, path = entry['kind'], entry['path']
    where = 'values[%s]' % ledger_mod.show(key)
    if kind == 'sysctl':
        if not tn.managed_sysctl(key):  # one rule for harden and restore
            return where, key, SYSCTLS_ALLOWED
        expected = '/' + procfs.sysctl_path(key)
    elif kind == 'thp':
        if key not in THP_BY_NAME:
            return where, key, 'one of %s' % ', '.join(sorted(THP_BY_NAME))
        expected = THP_BY_NAME[key]
    elif kind == 'cgroup':
        name = os.path.basename(path)
        if normal_path(path) and path.startswith('/sys/fs/cgroup/') and name in CGROUP_FILE_NAMES \
                and key.endswith(' ' + name):
            return None
        return where + "['path']", path, 'a cgroup file under /sys/fs/cgroup the unit settings write (%s), ' \
            'its key ending in its name' % ', '.join(CGROUP_FILE_NAMES)
    else:
        if _PROC_ADJ_RE.match(path) and key == path:
            return None
        return where + "['path']", path, '/proc/<pid>/oom_score_adj, the key being the path'
    if path != expected:
        return where + "['path']", path, expected
    return None


def check_targets(data, targets, state_dir):
    """Every entry that names something the collection does not write: ['WHERE = VALUE; allowed: ...']."""
    problems = []

    def bad(where, value, allowed):
        problems.append('%s = %s; allowed: %s' % (where, ledger_mod.show(value), allowed))

    for key in sorted(data['values']):
        found = _value_problem(key, data['values'][key])
        if found:
            bad(*found)
    good_files = []
    state_dir = os.path.normpath(state_dir)
    for path in sorted(data['files']):
        if file_allowed(path, targets, state_dir):
            good_files.append(path)
        else:
            bad('files[%s]' % ledger_mod.show(path), 'a file' if normal_path(path) else 'not a normal absolute path',
                files_allowed(targets, state_dir))
    for index, directory in enumerate(data['dirs']):
        if not (normal_path(directory) and directory != '/'
                and any(f.startswith(directory + '/') for f in good_files)):
            bad('dirs[%d]' % index, directory, 'a directory above one of the files the ledger holds')
    for index, directory in enumerate(data['state_dirs_created']):
        if not (normal_path(directory) and directory != '/'
                and (directory == state_dir or state_dir.startswith(directory + '/'))):
            bad('state_dirs_created[%d]' % index, directory, '%s or a directory above it' % state_dir)
    for unit in sorted(data['units']):
        if unit not in UNITS:
            bad('units[%s]' % ledger_mod.show(unit), unit, 'one of %s' % ', '.join(UNITS))
    return problems


def process_note(host, entry):
    """Why a process's oom_score_adj is not put back (it is gone or its PID is another's now), or None."""
    pid = int(_PROC_ADJ_RE.match(entry['path']).group(1))
    try:
        with open(host.path('/proc/%d/stat' % pid)) as handle:
            now = ledger_mod.process_starttime(handle.read())
    except (IOError, OSError):
        now = None
    if now is None:
        return 'process %d is gone; its oom_score_adj %s is not put back' % (pid, entry['original'])
    recorded = entry.get('starttime')
    if recorded is None:
        return ('PID %d: the ledger has no start time for it, so it cannot be told from a later process with that '
                'PID; its oom_score_adj %s is not put back' % (pid, entry['original']))
    if now != recorded:
        return ('PID %d is another process now (started at tick %d, the ledger recorded %d); its oom_score_adj %s '
                'is not put back' % (pid, now, recorded, entry['original']))
    return None


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


def _value_changes(host, values, skipped):
    changes = []
    for key in restore_order(values):
        entry = values[key]
        if entry['kind'] == 'proc':
            note = process_note(host, entry)
            if note:
                skipped.append({'key': key, 'path': entry['path'], 'note': note})
                continue
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
    try:
        ledger = ledger_mod.Ledger.load(state_dir)
    except ledger_mod.LedgerError as exc:
        raise ledger_mod.LedgerError(labels.msg(str(exc)))
    result = {'changed': False, 'changes': [], 'files': [], 'skipped': [], 'ledger': ledger.path, 'diff': []}
    if not ledger.exists:
        result['msg'] = 'nothing to restore: %s does not exist' % ledger.path
        return result
    problems = check_targets(ledger.data, target_paths(params, host), state_dir)
    if problems:
        raise ledger_mod.LedgerError(labels.msg(
            'ledger %s names what the collection does not write, so nothing is restored (fix or move it by hand): '
            '%s' % (ledger.path, '; '.join(problems))))
    skipped = result['skipped']
    value_changes = _value_changes(host, ledger.data['values'], skipped)
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
        'warnings': [labels.msg(s['note']) for s in skipped],
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
