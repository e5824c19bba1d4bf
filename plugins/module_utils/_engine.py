# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change engine: one contract for every concern that changes a host.

A concern (kernel tunables, unit settings, the early killer) reads the host
once and judges the request into a ``Plan``: the live values to write, the
files to make, the units to start or stop, and every problem found, as data.
The engine does the rest, the same way for all of them:

  refuse (problems not forced)  ->  check mode stops here  ->  ledger (the
  originals, first record only)  ->  files  ->  daemon-reload  ->  units
  ->  live values  ->  read back (a value the host did not keep fails)

Restore is the same pipeline run backwards from the ledger (``_restore``).
"""


import errno

from ansible_collections.oomguard.linux.plugins.module_utils import capabilities
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import procfs


class Problem:
    """A refused value, a guard that fired, or something the host lacks."""

    def __init__(self, pid, message, forcible=False, key=None):
        self.id = pid
        self.message = message
        self.forcible = forcible
        self.key = key

    def as_dict(self):
        return {'id': self.id, 'key': self.key, 'message': self.message, 'forcible': self.forcible}


# The thp role carries the compaction keys in its oomguard_thp ('compaction_method').
DEFAULT_VARIABLES = {'compaction': 'oomguard_thp', 'compaction_file': 'oomguard_thp_compaction_file'}


class Labels:
    """How messages name the host and the inventory variables.

    A module option is named by its inventory variable, ``oomguard_<option>``,
    unless the caller maps it otherwise (the thp role's compaction keys live
    in ``oomguard_thp`` as ``compaction_*``).
    """

    def __init__(self, host, variables=None):
        self.host = host
        self.variables = dict(DEFAULT_VARIABLES, **(variables or {}))

    def var(self, scope, key=None):
        name = self.variables.get(scope, 'oomguard_' + scope)
        if key is None:
            return name
        if scope == 'compaction' and name != 'compaction':
            return "%s['compaction_%s']" % (name, key)
        return "%s['%s']" % (name, key)

    def msg(self, text):
        return 'host %s: %s' % (self.host, text)


class Refused(Exception):
    """The request is invalid or a guard refused it; nothing was written."""

    def __init__(self, problems):
        super(Refused, self).__init__('\n'.join(p.message for p in problems))
        self.problems = problems


class ApplyError(Exception):
    """A write or the read-back failed (the ledger holds the originals)."""


def force_hint(labels, gid):
    return "add '%s' to %s to apply it anyway" % (gid, labels.var('force'))


def guard(labels, gid, key, detail):
    """A guard that fired: forcible by its id, worded the same in every concern."""
    return Problem(gid, labels.msg('guard %s: %s; %s' % (gid, detail, force_hint(labels, gid))), True, key)


def split_forced(problems, force):
    """(refusals, forced warnings): a forced guard becomes a warning, the rest refuse."""
    refusals, forced = [], []
    for problem in problems:
        if problem.forcible and problem.id in force:
            forced.append(problem)
        else:
            refusals.append(problem)
    return refusals, forced


def refuse_or_forced(problems, force):
    """The forced guards; Refused when anything else is left."""
    refusals, forced = split_forced(problems, set(force or []))
    if refusals:
        raise Refused(refusals)
    return forced


# -- files ------------------------------------------------------------------------

def plan_files(files, same=None):
    """[{path, action, before, after}] for the files that differ from their spec.

    same(state, spec): whether a file is as wanted (default ledger.same_as;
    restore compares with what the ledger recorded, owner and mode included).
    """
    changes = []
    for path in sorted(files):
        spec = files[path]
        state = ledger_mod.file_state(path)
        if (same or ledger_mod.same_as)(state, spec):
            continue
        changes.append({'path': path, 'action': file_action(state, spec),
                        'before': describe(state), 'after': describe(spec)})
    return changes


def file_action(state, spec):
    if spec['type'] == 'absent':
        return 'remove'
    return 'create' if state['type'] == 'absent' else 'update'


def describe(state):
    """A file state or spec as diff text."""
    if state['type'] == 'absent':
        return ''
    if state['type'] == 'link':
        return '-> %s\n' % state['target']
    if 'content' in state:
        content = state['content']
        return content.decode('utf-8', 'replace') if isinstance(content, bytes) else content
    content = ledger_mod.content_of(state)
    return content.decode('utf-8', 'replace') if content is not None else ''


def file_rows(file_changes):
    """The module result's view of the file changes: [{path, action}]."""
    return [dict((k, c[k]) for k in ('path', 'action')) for c in file_changes]


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


# -- live values ---------------------------------------------------------------------

def write_live(path, text):
    with open(path, 'w') as handle:
        handle.write(text + '\n')


def read_live(path):
    with open(path) as handle:
        return handle.read()


def canonical(text):
    """Kernel text as compared: fields joined by one space (tabs in multi-value ones)."""
    return ' '.join(str(text).split())


def write_values(changes, write, labels, tail, cause='requested', verb='writing'):
    """Write the changes of this cause (the others are side effects the kernel or
    systemd make); a process that exited since the plan is skipped.

    tail: where the originals are, for the message of a failed write.
    """
    for change in changes:
        if change['cause'] != cause:
            continue
        try:
            write(change['path'], change['after'])
        except (IOError, OSError) as exc:
            if change['kind'] == 'proc' and exc.errno in (errno.ENOENT, errno.ESRCH):
                continue  # nothing left to protect
            raise ApplyError(labels.msg('%s %s = %s to %s failed: %s; %s'
                                        % (verb, change['key'], change['after'], change['path'], exc, tail)))


def check_values(changes, read, labels, tail, verb='writing'):
    """Read every change back: ApplyError naming each value the host did not keep.

    read(change) -> (text now, whether it counts as the value written).
    """
    mismatches = []
    for change in changes:
        try:
            now, kept = read(change)
        except (IOError, OSError):
            if change['kind'] in ('proc', 'cgroup'):
                continue  # the process exited or the unit stopped meanwhile
            raise
        if not kept:
            mismatches.append('%s is %s, expected %s' % (change['key'], now, change['after']))
    if mismatches:
        raise ApplyError(labels.msg('after %s, the kernel reports: %s; %s' % (verb, '; '.join(mismatches), tail)))


def originals_tail(ledger_path):
    return 'the originals are in %s, playbooks/restore.yml puts them back' % ledger_path


# -- systemd -----------------------------------------------------------------------

class Systemd:
    """systemctl for a host that runs systemd, or nothing at all.

    ``booted``: /run/systemd/system exists (systemd is PID 1).  ``manages``:
    it is booted and this call may act on it (systemctl found, the unit
    files go to the real /etc/systemd/system, not a test directory).
    """

    def __init__(self, host, run_command=None, systemctl=None, systemd_dir=None, default_dir='/etc/systemd/system'):
        self.host = host
        self.booted = host.exists('run/systemd/system')
        self.run_command = run_command
        self.systemctl = systemctl
        self.can_run = bool(self.booted and run_command and systemctl)
        self.manages = self.can_run and (systemd_dir is None or systemd_dir == default_dir)
        self._version = False  # not read yet

    @property
    def version(self):
        """The systemd release (252), read once per run: the running manager's, else
        the installed one's (its library's name); None without systemd."""
        if self._version is False:
            self._version = capabilities.read_systemd_version(
                self.host, self.run_command if self.can_run else None, self.systemctl)
        return self._version

    def run(self, *args):
        """systemctl args; ApplyError when it fails."""
        rc, out, err = self.run_command([self.systemctl] + list(args))
        if rc != 0:
            # The verb and the units, not the --property list.
            command = ' '.join(a for a in args if not a.startswith('--'))
            raise ApplyError('systemctl %s failed (rc %d): %s' % (command, rc, (err or out).strip()))
        return out

    def state(self, unit):
        """(ActiveState as `systemctl is-active` prints it, whether it is active: rc 0)."""
        rc, out, dummy = self.run_command([self.systemctl, 'is-active', unit])
        return out.strip(), rc == 0

    def is_active(self, unit):
        return self.state(unit)[1]


# -- executing a plan ----------------------------------------------------------------

class Plan:
    """What one concern's call will do, judged from one read of the host.

    problems:     [Problem], unsplit (guards, refusals and what the host lacks)
    result:       the module result the plan predicts (None when the request
                  is invalid: there is nothing to plan)
    values:       live changes [{key, kind, path, before, after, cause}]; the
                  engine writes those of cause 'requested' and reads back all
    files:        {path: spec} of every file the call owns
    file_changes: plan_files(files), the ones that differ
    originals:    more live values to record first [{key, kind, path, before}]
    units_record: {unit: was_active}, recorded before the first start
    stop_first:   units to stop before the files change
    reload:       whether daemon-reload follows the files
    after_reload: [(verb, unit)] for systemctl after the reload
    prune_dirs:   a removed file's directory goes too when it is left empty
    checks:       check(systemd) after everything, e.g. that a started unit runs
    outputs:      files a program the plan installs will write (recorded, never written here)
    """

    def __init__(self, problems=None):
        self.problems = list(problems or [])
        self.result = None
        self.values = []
        self.files = {}
        self.file_changes = []
        self.originals = []
        self.units_record = {}
        self.stop_first = []
        self.reload = False
        self.after_reload = []
        self.prune_dirs = False
        self.checks = []
        self.outputs = []

    def ledger_key(self, change):
        """A live value's key in the ledger: its name, or the file of a process."""
        return change['path'] if change['kind'] == 'proc' else change['key']


def settle(plan, params, check_mode):
    """Refuse or force the plan's problems; the result, and whether to go on and write."""
    forced = refuse_or_forced(plan.problems, params.get('force'))
    result = plan.result
    result['forced'] = [p.as_dict() for p in forced]
    result['warnings'] = [p.message for p in forced]
    if params.get('validate_only'):
        # A preflight changes nothing; its plan is in the result.
        result['changed'] = False
        return result, False
    return result, bool(result['changed'] and not check_mode)


def execute(plan, state_dir, owner, systemd, labels, write, read):
    """Carry out a settled plan: the ledger first, then files, units and live values."""
    ledger = ledger_mod.Ledger.load(state_dir)
    tail = originals_tail(ledger.path)
    for change in plan.values + plan.originals:
        ledger.record_value(plan.ledger_key(change), change['kind'], change['path'], change['before'], owner,
                            change.get('starttime'))
    changed = [c['path'] for c in plan.file_changes]
    for path in changed + plan.outputs:
        ledger.record_file(path, owner)
    for unit, was_active in sorted(plan.units_record.items()):
        ledger.record_unit(unit, was_active, owner)
    ledger.save()
    for unit in plan.stop_first:
        systemd.run('stop', unit)
    for path in changed:
        ledger_mod.write_spec(path, plan.files[path], prune_parent=plan.prune_dirs)
    if plan.reload:
        systemd.run('daemon-reload')
    for verb, unit in plan.after_reload:
        systemd.run(verb, unit)
    write_values(plan.values, write, labels, tail)
    check_values(plan.values, read, labels, tail)
    for check in plan.checks:
        check(systemd)


def apply(concern_plan, params, host, labels, check_mode, run_command, systemctl, owner, default_paths,
          read=None):
    """A concern's whole call: plan it from one read of the host, settle its problems, execute it.

    concern_plan(params, host, labels, systemd) -> Plan; read(host, change, plan)
    -> (text now, kept) for the read-back.  Returns the module result.
    """
    paths = dict(default_paths, **dict((k, v) for k, v in (params.get('paths') or {}).items() if v))
    systemd = Systemd(host, run_command, systemctl, paths['systemd_dir'], default_paths['systemd_dir'])
    judged = concern_plan(params, host, labels, systemd, check_mode)
    result, go = settle(judged, params, check_mode)
    if go:
        execute(judged, paths['state_dir'], owner, systemd, labels,
                lambda path, text: write_live(host.path(path), text),
                lambda change: read(host, change, judged))
    return result


# -- the modules' common frame ---------------------------------------------------------

def run_module(module, apply_fn, params, labels, failure, host=None):
    """Call apply_fn for an AnsibleModule and end it: exit_json, or fail_json with the problems.

    failure: what the module was doing, for an unexpected I/O error.
    """
    try:
        result = apply_fn(params, host or procfs.HostRoot('/'), labels, module.check_mode,
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
