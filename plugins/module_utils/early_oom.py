# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A userspace early OOM killer (earlyoom or systemd-oomd): judge and apply.

The kernel's OOM killer acts only once reclaim has failed, which on a host
with page cache in play can be minutes of thrashing (seed 002).  An early
killer acts on available memory (earlyoom) or on memory pressure (PSI,
systemd-oomd) first.  Both come from Debian's packages; this module writes
their configuration, enables them the way `systemctl enable` would (the
[Install] links, so check mode can predict them), starts them and reads
back that they run.  Every file and link goes through the ledger.
"""


import os
import re

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import capabilities
from ansible_collections.oomguard.linux.plugins.module_utils import cgroups as cg
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import schema

OWNER = 'early_oom'
KILLERS = ('auto', 'earlyoom', 'systemd-oomd', 'none')
UNITS = {'earlyoom': 'earlyoom.service', 'systemd-oomd': 'systemd-oomd.service'}
SOCKETS = {'systemd-oomd': ('systemd-oomd.socket',)}
DEFAULT_PATHS = dict(_argspec.default_paths('systemd_dir', 'state_dir', 'earlyoom_defaults', 'oomd_conf_dir'),
                     unit_dirs=['/etc/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system'])
DROPIN = '90-oomguard-early-oom.conf'
# Processes earlyoom must leave alone whatever the inventory says: the
# system's own plumbing and the way in (matched on the process name).
DEFAULT_AVOID = ('init', 'systemd', 'systemd-journal', 'systemd-logind', 'systemd-udevd', 'sshd', 'dbus-daemon',
                 'earlyoom')
# The killer itself is protected from the kernel's OOM killer.
KILLER_OOM_SCORE_ADJ = -900
# Settings: name -> (kind, low, high, default); None default = unset.
SETTINGS = {
    'killer': ('choice', KILLERS, None, 'none'),
    'dry_run': ('bool', None, None, False),
    'prefer': ('patterns', None, None, []),
    'avoid': ('patterns', None, None, []),
    'mem_min_percent': ('int', 1, 50, 10),
    'mem_kill_percent': ('int', 1, 50, None),
    'swap_min_percent': ('int', 0, 100, None),
    'report_interval_s': ('int', 0, 86400, 60),
    'memory_pressure_limit_percent': ('int', 1, 99, 60),
    'memory_pressure_duration_s': ('int', 1, 3600, 30),
    'swap_used_limit_percent': ('int', 1, 100, 90),
    'slices': ('units', None, None, ['system.slice']),
}
# A pattern goes through systemd's EnvironmentFile and $VAR splitting to
# earlyoom's command line: no whitespace, no quotes, no backslash escapes
# of quotes or $ (systemd would eat them).
_UNSAFE_RE = re.compile(r'''[\s'"`]|\\["$`\\]''')
# A $ anywhere but before the end, ) or | could start a shell expansion.
_SHELL_DOLLAR_RE = re.compile(r'\$(?![)|]|$)')
UNIT_SUFFIXES = ('.service', '.slice', '.scope')
# The packages that hold each killer, by distribution family (Ansible's
# os_family), and the repository each needs (docs/platforms.md).  Debian is
# tested; the others are supported by construction.
PACKAGES = {
    'Debian': {'earlyoom': ['earlyoom'], 'systemd-oomd': ['systemd-oomd']},
    # earlyoom from EPEL; the systemd-oomd daemon is in the systemd-udev subpackage.
    'RedHat': {'earlyoom': ['earlyoom'], 'systemd-oomd': ['systemd-udev']},
    # systemd-oomd is in openSUSE's systemd-experimental subpackage.
    'Suse': {'earlyoom': ['earlyoom'], 'systemd-oomd': ['systemd-experimental']},
}
PACKAGE_REPOS = {('RedHat', 'earlyoom'): 'EPEL (epel-release)'}


class Config:
    def __init__(self):
        self.values = {}
        self.killer = None      # the resolved killer
        self.files = {}
        self.unit = None
        self.problems = []
        self.started_before = []
        self.package_missing = False
        self.packages = None      # the chosen killer's package names on this host's family


def _problem(config, pid, message, forcible=False, key=None):
    config.problems.append(engine.Problem(pid, message, forcible, key))


def _pattern(item):
    """An earlyoom pattern that reaches earlyoom's regcomp as written."""
    if _UNSAFE_RE.search(item):
        raise schema.Invalid('a pattern without whitespace, a quote or an escaped quote/$: systemd would split or '
                             'eat it before earlyoom sees it (write \\s as [[:space:]])')
    if _SHELL_DOLLAR_RE.search(item):
        raise schema.Invalid('a $ only at the end of a pattern or before ) or |: /etc/default/earlyoom is also '
                             'read by a shell (Debian\'s init script sources it), which would expand $(...), '
                             '${...} and $NAME')
    try:
        return schema.posix_ere(item)
    except schema.Invalid as exc:
        raise schema.Invalid('a POSIX extended regular expression, as earlyoom compiles it; here %s' % exc)


def _strings(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise schema.Invalid('a list of non-empty strings')
    return value


# How each kind of setting is parsed: (parser, its arguments from SETTINGS' low and high).
_PARSERS = {
    'choice': lambda value, low, high: schema.choice(value, low),
    'int': schema.integer,
}


def validate(raw, labels, var='early_oom'):
    """Check every key; returns Config with values (problems listed, nothing raised)."""
    config = Config()
    checker = schema.Checker(labels, config.problems)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        checker.refuse('wrong_type', '%s must be a mapping, not %s' % (var, type(raw).__name__))
        return config
    for key in sorted(raw, key=str):
        if key not in SETTINGS:
            checker.refuse('invalid_name', "%s['%s']: unknown setting; allowed: %s"
                           % (var, key, ', '.join(sorted(SETTINGS))))
    for key, (kind, low, high, default) in sorted(SETTINGS.items()):
        value = raw.get(key)
        where = "%s['%s']" % (var, key)
        if value is None:
            config.values[key] = list(default) if isinstance(default, list) else default
            continue
        if kind == 'bool':
            value = value if isinstance(value, bool) else checker.check(where, value, _refuse, 'true or false',
                                                                        pid='wrong_type')
        elif kind in ('patterns', 'units'):
            value = checker.check(where, value, _strings, pid='wrong_type')
            if value is not schema.INVALID:
                item_parse = _pattern if kind == 'patterns' else (
                    lambda item: schema.unit_name(item, UNIT_SUFFIXES))
                parsed = [checker.check(where, item, item_parse) for item in value]
                value = schema.INVALID if schema.INVALID in parsed else value
        else:
            value = checker.check(where, value, _PARSERS[kind], low, high)
        if value is not schema.INVALID:
            config.values[key] = value
    values = config.values
    if values.get('mem_kill_percent') is not None and values.get('mem_min_percent') is not None \
            and values['mem_kill_percent'] > values['mem_min_percent']:
        checker.refuse('inconsistent_limits',
                       "%s['mem_kill_percent'] = %s is above %s['mem_min_percent'] = %s; earlyoom sends SIGTERM below "
                       "mem_min_percent and SIGKILL below mem_kill_percent, so it must be lower"
                       % (var, values['mem_kill_percent'], var, values['mem_min_percent']))
    return config


def _is_unit(name):
    try:
        return bool(schema.unit_name(name, UNIT_SUFFIXES))
    except schema.Invalid:
        return False


def _refuse(value, allowed):
    raise schema.Invalid(allowed)


def packages_for(family, killer):
    """The package names of a killer on a distribution family, or None when not known."""
    return list((PACKAGES.get(family) or {}).get(killer) or []) or None


def read_live(host):
    layout = cg.read_layout(host)
    os_release = capabilities.read_os_release(host)
    return {
        'os_family': capabilities.os_family(os_release),
        'package_manager': capabilities.package_manager(host.exists),
        'cgroup_mode': layout['mode'],
        'memory_v2': bool(layout.get('memory_controller') and layout['memory_controller']['version'] == 2),
        'psi': host.exists('proc/pressure/memory') and _psi_readable(host),
        'systemd': host.exists('run/systemd/system'),
    }


def read_request(host, live, params):
    """What the request's plan looks at besides the host's layout: the killers' [Install]
    links, our drop-ins present now, and what the ledger recorded (read once, before judging)."""
    paths = params['paths']
    sd = paths['systemd_dir'].rstrip('/')
    live['links'] = dict((unit, install_links(host, unit, paths['unit_dirs'], sd)) for unit in UNITS.values())
    live['our_dropins'] = []
    if os.path.isdir(sd):
        for name in sorted(os.listdir(sd)):
            path = '%s/%s/%s' % (sd, name, DROPIN)
            if name.endswith('.d') and os.path.isfile(path):
                live['our_dropins'].append(path)
    live['recorded'] = ledger_mod.Ledger.load(paths['state_dir']).data
    return live


def _psi_readable(host):
    try:
        return host.read('proc/pressure/memory') is not None
    except Exception:  # EOPNOTSUPP when the kernel was booted with psi=0
        return False


def resolve_killer(config, live, labels, var):
    """auto -> systemd-oomd on cgroup v2 with PSI and systemd >= 248, earlyoom elsewhere."""
    killer = config.values.get('killer') or 'none'
    oomd_ok = live['memory_v2'] and live['psi']
    version = live.get('systemd_version')
    oomd_too_old = version is not None and version < capabilities.OOMD_SINCE
    if killer == 'auto':
        # prefer lists are earlyoom's: systemd-oomd has no way to prefer a victim.
        # prefer lists, and avoid lists of process names, are earlyoom's.
        names = [a for a in config.values.get('avoid') or [] if not _is_unit(a)]
        killer = 'systemd-oomd' if oomd_ok and not oomd_too_old and not config.values.get('prefer') and not names \
            else 'earlyoom'
    if killer == 'systemd-oomd' and oomd_too_old:
        # Not forcible: systemd before 248 has no ManagedOOMPreference= for the
        # avoid list nor the oomd.conf keys written here (Debian 11 ships no systemd-oomd).
        _problem(config, 'unsupported_systemd', labels.msg(
            "%s['killer'] = systemd-oomd needs systemd %d (ManagedOOMPreference=, DefaultMemoryPressureDurationSec=); "
            "this host has systemd %d. Use killer: earlyoom or auto" % (var, capabilities.OOMD_SINCE, version)))
    if killer == 'systemd-oomd' and not oomd_ok:
        _problem(config, 'oomd_unsupported', labels.msg(
            "%s['killer'] = systemd-oomd needs cgroup v2 with the memory controller and PSI; this host has "
            "cgroup %s and PSI %s (boot with psi=1). Use killer: earlyoom or auto"
            % (var, live['cgroup_mode'], 'on' if live['psi'] else 'off')))
    if killer == 'systemd-oomd' and config.values.get('prefer'):
        _problem(config, 'invalid_value', labels.msg(
            "%s['prefer']: systemd-oomd cannot prefer a victim (it kills the cgroup under the most pressure); "
            "use killer: earlyoom for prefer lists, or list units under avoid" % var))
    if killer == 'systemd-oomd':
        for item in config.values.get('avoid') or []:
            if not _is_unit(item):
                _problem(config, 'invalid_value', labels.msg(
                    "%s['avoid']: %s; with systemd-oomd the avoid list names units (like postgresql.service), "
                    "which get ManagedOOMPreference=avoid" % (var, schema.show(item))))
    if killer != 'none' and not live['systemd']:
        _problem(config, 'no_systemd', labels.msg("%s['killer'] = %s: this host does not run systemd"
                                                  % (var, killer)))
    config.killer = killer
    return killer


def earlyoom_args(values):
    args = ['-m', str(values['mem_min_percent']) + (',%d' % values['mem_kill_percent']
                                                    if values.get('mem_kill_percent') is not None else '')]
    if values.get('swap_min_percent') is not None:
        args += ['-s', str(values['swap_min_percent'])]
    args += ['-r', str(values['report_interval_s'])]
    if values.get('prefer'):
        args += ['--prefer', '^(%s)$' % '|'.join(values['prefer'])]
    args += ['--avoid', '^(%s)$' % '|'.join(list(DEFAULT_AVOID) + list(values.get('avoid') or []))]
    if values.get('dry_run'):
        args.append('--dryrun')
    return args


def render_earlyoom(values):
    return ('# Managed by oomguard.linux (oomguard_early_oom); local edits are overwritten.\n'
            '# Read by earlyoom.service (EnvironmentFile). Patterns match the process name.\n'
            'EARLYOOM_ARGS="%s"\n' % ' '.join(earlyoom_args(values)))


def render_oomd_conf(values):
    return ('# Managed by oomguard.linux (oomguard_early_oom); local edits are overwritten.\n[OOM]\n'
            'SwapUsedLimit=%d%%\nDefaultMemoryPressureLimit=%d%%\nDefaultMemoryPressureDurationSec=%ds\n'
            % (values['swap_used_limit_percent'], values['memory_pressure_limit_percent'],
               values['memory_pressure_duration_s']))


def render_service_dropin(lines):
    return '# Managed by oomguard.linux (oomguard_early_oom); local edits are overwritten.\n[Service]\n' + \
        ''.join(line + '\n' for line in lines)


def install_links(host, unit, unit_dirs, systemd_dir, seen=None):
    """The links `systemctl enable unit` makes, from its [Install] section (Also= followed)."""
    seen = seen if seen is not None else set()
    if unit in seen:
        return {}
    seen.add(unit)
    source = None
    for directory in unit_dirs:
        if directory.rstrip('/') == systemd_dir.rstrip('/'):
            continue
        if os.path.isfile(os.path.join(directory, unit)):
            source = os.path.join(directory, unit)
            break
    if source is None:
        return None
    links = {}
    section = None
    with open(source) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith('['):
                section = line
                continue
            if section != '[Install]' or '=' not in line:
                continue
            key, dummy, value = line.partition('=')
            key = key.strip()
            for target in value.split():
                if key in ('WantedBy', 'RequiredBy'):
                    suffix = '.wants' if key == 'WantedBy' else '.requires'
                    links['%s/%s%s/%s' % (systemd_dir, target, suffix, unit)] = source
                elif key == 'Alias':
                    links['%s/%s' % (systemd_dir, target)] = source
                elif key == 'Also':
                    more = install_links(host, target, unit_dirs, systemd_dir, seen)
                    links.update(more or {})
    return links


def _section(unit):
    return {'slice': 'Slice', 'scope': 'Scope'}.get(unit.rsplit('.', 1)[-1], 'Service')


def plan_config(params, live, labels):
    """Validate, pick the killer and render its files: a Config."""
    var = labels.var('early_oom')
    config = validate(params.get('early_oom'), labels, var)
    if config.problems:
        return config
    killer = resolve_killer(config, live, labels, var)
    paths = params['paths']
    sd = paths['systemd_dir'].rstrip('/')
    files = {}
    # Every file this module may own, absent unless the chosen killer needs it.
    files[paths['earlyoom_defaults']] = None
    files['%s/earlyoom.service.d/%s' % (sd, DROPIN)] = {'type': 'absent'}
    files['%s/systemd-oomd.service.d/%s' % (sd, DROPIN)] = {'type': 'absent'}
    files['%s/%s' % (paths['oomd_conf_dir'].rstrip('/'), DROPIN)] = {'type': 'absent'}
    values = config.values
    if killer == 'earlyoom':
        files[paths['earlyoom_defaults']] = {'type': 'file', 'content': render_earlyoom(values), 'mode': 0o644}
        files['%s/earlyoom.service.d/%s' % (sd, DROPIN)] = {
            'type': 'file', 'content': render_service_dropin(['OOMScoreAdjust=%d' % KILLER_OOM_SCORE_ADJ]),
            'mode': 0o644}
    elif killer == 'systemd-oomd':
        files['%s/%s' % (paths['oomd_conf_dir'].rstrip('/'), DROPIN)] = {
            'type': 'file', 'content': render_oomd_conf(values), 'mode': 0o644}
        if values.get('dry_run'):
            files['%s/systemd-oomd.service.d/%s' % (sd, DROPIN)] = {
                'type': 'file', 'mode': 0o644,
                'content': render_service_dropin(['ExecStart=', 'ExecStart=/lib/systemd/systemd-oomd --dry-run'])}
        for unit in values.get('slices') or []:
            section = _section(unit)
            files['%s/%s.d/%s' % (sd, unit, DROPIN)] = {
                'type': 'file', 'mode': 0o644,
                'content': '# Managed by oomguard.linux (oomguard_early_oom)\n[%s]\nManagedOOMMemoryPressure=kill\n'
                           % section}
        for unit in values.get('avoid') or []:
            files['%s/%s.d/%s' % (sd, unit, DROPIN)] = {
                'type': 'file', 'mode': 0o644,
                'content': '# Managed by oomguard.linux (oomguard_early_oom)\n[%s]\nManagedOOMPreference=avoid\n'
                           % _section(unit)}
    # Stale drop-ins of ours on other units (slices or avoid lists shrunk).
    for path in live['our_dropins']:
        if path not in files:
            files[path] = {'type': 'absent'}
    if killer != 'none':
        config.unit = UNITS[killer]
        links = live['links'][config.unit]
        config.packages = packages_for(live['os_family'], killer)
        if links is None and (params.get('validate_only') or params.get('check_mode')):
            # The role installs the package after its preflight (and refuses a
            # family it knows no package for); in check mode the package task only said it would.
            config.package_missing = True
        elif links is None and config.packages is None:
            _problem(config, 'package_missing', labels.msg(
                "%s['killer'] = %s: %s is not installed, and the collection knows no package of it for this "
                "distribution (family %s; known: %s); install it, then run again"
                % (var, killer, config.unit, live['os_family'] or 'unknown', ', '.join(sorted(PACKAGES)))))
            return config
        elif links is None:
            _problem(config, 'package_missing', labels.msg(
                "%s['killer'] = %s: %s is not installed (the role installs %s from %s first)"
                % (var, killer, config.unit, ', '.join(config.packages),
                   PACKAGE_REPOS.get((live['os_family'], killer), 'the distribution'))))
            return config
        for path, target in (links or {}).items():
            files[path] = {'type': 'link', 'target': target}
    # Links this module made for a killer that is no longer chosen go away
    # (only those the ledger says were absent before: never the operator's).
    recorded = live['recorded']
    for path, entry in sorted(recorded['files'].items()):
        if entry.get('owner') != OWNER or files.get(path) is not None:
            continue
        if entry.get('type') == 'absent':
            files[path] = {'type': 'absent'}
        elif entry.get('type') == 'file':
            # e.g. Debian's /etc/default/earlyoom once earlyoom is no longer chosen.
            files[path] = {'type': 'file', 'content': ledger_mod.content_of(entry), 'mode': entry['mode'],
                           'uid': entry['uid'], 'gid': entry['gid']}
    chosen = set([config.unit]) | set(SOCKETS.get(killer, ()))
    config.started_before = [u for u, e in sorted(recorded['units'].items())
                             if e.get('owner') == OWNER and not e.get('was_active') and u not in chosen]
    config.files = dict((p, s) for p, s in files.items() if s is not None)
    if files[paths['earlyoom_defaults']] is None:
        # Debian's own /etc/default/earlyoom is left as it is when earlyoom is not chosen.
        config.files.pop(paths['earlyoom_defaults'], None)
    return config


def _plan_units(judged, config, systemd, labels, ledger):
    """What systemctl must do: stop killers no longer chosen, start or restart the chosen one."""
    if not systemd.manages:
        return None
    # A killer this module started earlier and that is no longer chosen stops.
    judged.stop_first = [u for u in config.started_before if systemd.is_active(u)]
    unit_action = None
    if config.unit and (config.package_missing or not systemd.is_active(config.unit)):
        unit_action = 'start'
    elif config.unit and judged.file_changes:
        unit_action = 'restart'
    judged.reload = bool(judged.file_changes)
    if unit_action:
        judged.after_reload.append((unit_action, config.unit))
    if unit_action == 'start':
        judged.units_record[config.unit] = False
        # systemd-oomd pulls in its socket: restore stops both.
        for extra in SOCKETS.get(config.killer, ()):
            if not systemd.is_active(extra):
                judged.units_record[extra] = False
    if unit_action:
        judged.checks.append(lambda systemd_now: _check_running(systemd_now, config.unit, unit_action, labels, ledger))
    return unit_action


def _check_running(systemd, unit, action, labels, ledger):
    state, active = systemd.state(unit)
    if not active:
        raise engine.ApplyError(labels.msg('%s is %s after %s; see journalctl -u %s; the originals are in %s'
                                           % (unit, state, action, unit, ledger)))


def plan(params, host, labels, systemd, check_mode=False):
    """The whole call judged into an engine Plan (problems as data, nothing raised)."""
    params = dict(params)
    params['paths'] = dict(DEFAULT_PATHS, **dict((k, v) for k, v in (params.get('paths') or {}).items() if v))
    params['check_mode'] = check_mode
    problems = schema.path_problems(params['paths'], labels)
    if problems:
        schema.Checker(labels, problems).shared(params)
        return engine.Plan(problems)
    live = read_request(host, read_live(host), params)
    live['systemd_version'] = systemd.version
    config = plan_config(params, live, labels)
    judged = engine.Plan(config.problems)
    schema.Checker(labels, judged.problems).shared(params)
    judged.files = config.files
    judged.file_changes = engine.plan_files(config.files)
    judged.prune_dirs = True
    ledger = os.path.join(params['paths']['state_dir'], ledger_mod.LEDGER_NAME)
    unit_action = _plan_units(judged, config, systemd, labels, ledger)
    judged.result = {
        'changed': bool(judged.file_changes or unit_action or judged.stop_first),
        'killer': config.killer,
        'unit': config.unit,
        'unit_action': unit_action,
        'units_stopped': judged.stop_first,
        'files': engine.file_rows(judged.file_changes),
        'settings': config.values,
        'earlyoom_args': earlyoom_args(config.values) if config.killer == 'earlyoom' else None,
        'cgroup_mode': live['cgroup_mode'],
        'psi': live['psi'],
        'package': config.killer if config.killer in UNITS else None,
        'packages': config.packages,
        'package_repo': PACKAGE_REPOS.get((live['os_family'], config.killer)),
        'package_manager': live['package_manager'],
        'os_family': live['os_family'],
        'systemd_version': live['systemd_version'],
        'package_missing': config.package_missing,
        'ledger': ledger,
        'diff': engine.build_diff([], judged.file_changes),
    }
    return judged


def apply(params, host, labels, check_mode, run_command=None, systemctl=None):
    """Run an early_oom call; returns the module result (raises Refused/ApplyError)."""
    return engine.apply(plan, params, host, labels, check_mode, run_command, systemctl, OWNER, DEFAULT_PATHS)
