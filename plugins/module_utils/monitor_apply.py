# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The monitor concern: install the collector (monitor.py) on a host, through the change engine.

The collector is the collection's own module_utils, written from the sources
this call runs with (the closure of monitor.py's imports), so the host runs
exactly the code of the collection that installed it. A systemd timer runs it
(a cron file where systemd is not PID 1). The collector's own outputs, its
textfile and state file, are recorded in the ledger before its first run, so
restore removes them with the rest.
"""

import ast
import hashlib
import json
import importlib
import importlib.util
import marshal
import os
import sys

from ansible_collections.oomguard.linux.plugins.module_utils import _argspec
from ansible_collections.oomguard.linux.plugins.module_utils import _engine as engine
from ansible_collections.oomguard.linux.plugins.module_utils import ledger as ledger_mod
from ansible_collections.oomguard.linux.plugins.module_utils import monitor, schema

OWNER = 'oom_monitor'
PACKAGE = 'ansible_collections.oomguard.linux.plugins.module_utils'
PACKAGE_DIR = PACKAGE.replace('.', '/')
ENTRY = 'oomguard-monitor'
SERVICE = 'oomguard-monitor.service'
TIMER = 'oomguard-monitor.timer'
TIMER_LINK = 'timers.target.wants/' + TIMER
CRON_FILE = 'oomguard-monitor'
STATE_FILE = 'monitor-state.json'
PATH_OPTIONS = ('systemd_dir', 'state_dir', 'monitor_lib_dir', 'cron_dir')
DEFAULT_PATHS = _argspec.default_paths(*PATH_OPTIONS)
SETTINGS = ('textfile_dir', 'interval_s')
POLICY_TYPES = {'profile': str, 'sysctl': dict, 'thp': dict, 'services': dict, 'cgroups': dict, 'processes': list,
                'protect_defaults': bool, 'early_oom': dict}
INTERVAL_S = (15, 3600)
DEFAULT_INTERVAL_S = 60


def closure(root='monitor'):
    """{module name: source} of root and every module_utils it imports, transitively."""
    sources = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in sources:
            continue
        module = importlib.import_module('%s.%s' % (PACKAGE, name))
        # Under AnsiballZ the sources come out of its zip, elsewhere from the files.
        source = module.__spec__.loader.get_source(module.__name__)
        sources[name] = source
        todo.extend(_imports(source))
    return sources


def _imports(source):
    names = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or not (node.module or '').startswith(PACKAGE):
            continue
        if node.module == PACKAGE:
            names.update(alias.name for alias in node.names)
        else:
            names.add(node.module[len(PACKAGE) + 1:].split('.')[0])
    return names


def bytecode(name, source):
    """(file name, bytes) of source compiled for this interpreter, as a checked-hash .pyc (PEP 552): the same
    bytes every run, so the files stay idempotent, and Python recompiles nothing on the host. None where the
    interpreter has no hash-based pycs (before 3.7)."""
    tag = sys.implementation.cache_tag
    source_hash = getattr(importlib.util, 'source_hash', None)
    if not tag or source_hash is None:
        return None
    data = source.encode('utf-8')
    code = compile(data, '%s.py' % name, 'exec', dont_inherit=True)
    header = importlib.util.MAGIC_NUMBER + (3).to_bytes(4, 'little') + source_hash(data)
    return '__pycache__/%s.%s.pyc' % (name, tag), header + marshal.dumps(code)


def entry_script(python, lib_dir):
    return ('#!%s\n'
            '# Written by oomguard.linux (the monitor role): the OOM metrics collector, docs/monitoring.md.\n'
            'import sys\n'
            '# Its bytecode comes with it; a cache written here would outlive restore.\n'
            'sys.dont_write_bytecode = True\n'
            'sys.path.insert(0, %r)\n'
            'from %s import monitor\n'
            'sys.exit(monitor.main())\n' % (python, lib_dir, PACKAGE))


def command_line(lib_dir, textfile_dir, state_path):
    return '%s/%s --textfile-dir %s --state %s' % (lib_dir, ENTRY, textfile_dir, state_path)


def service_unit(command, memory_max):
    lines = ['[Unit]',
             'Description=oomguard OOM metrics for node_exporter',
             'Documentation=https://github.com/oomguard/linux/blob/main/docs/monitoring.md',
             '',
             '[Service]',
             'Type=oneshot',
             'ExecStart=' + command,
             'Nice=10',
             'IOSchedulingClass=idle',
             'TimeoutStartSec=120']
    if memory_max:
        lines.append('MemoryMax=128M')
    return '\n'.join(lines) + '\n'


def timer_unit(interval_s):
    return ('[Unit]\n'
            'Description=Run the oomguard OOM metrics collector every %d s\n'
            'Documentation=https://github.com/oomguard/linux/blob/main/docs/monitoring.md\n'
            '\n'
            '[Timer]\n'
            'OnBootSec=30s\n'
            'OnUnitActiveSec=%ds\n'
            'AccuracySec=5s\n'
            '\n'
            '[Install]\n'
            'WantedBy=timers.target\n' % (interval_s, interval_s))


def cron_file(command, interval_s):
    minutes = max(1, (interval_s + 59) // 60)
    when = '*' if minutes == 1 else '*/%d' % minutes
    return ('# Written by oomguard.linux (the monitor role): the OOM metrics collector, docs/monitoring.md.\n'
            '# cron runs it every %d minute%s (the timer would every %d s; cron has minutes only).\n'
            '%s * * * * root %s >/dev/null 2>&1\n' % (minutes, '' if minutes == 1 else 's', interval_s, when, command))


def validate(raw, labels):
    """(settings, problems) of oomguard_monitor."""
    checker = schema.Checker(labels)
    where = labels.var('monitor')
    settings = {'textfile_dir': None, 'interval_s': DEFAULT_INTERVAL_S}
    if not isinstance(raw, dict):
        checker.invalid(where, raw, 'a dict of %s' % ', '.join(SETTINGS))
        return settings, checker.problems
    for key, value, item in checker.known(where, raw, SETTINGS):
        if key == 'interval_s':
            number = checker.check(item, value, schema.integer, *INTERVAL_S)
            if number is not schema.INVALID:
                settings['interval_s'] = number
        else:
            settings['textfile_dir'] = value
    if settings['textfile_dir'] is None:
        checker.invalid(labels.var('monitor', 'textfile_dir'), None,
                        "node_exporter's --collector.textfile.directory, an absolute path (the role's default is "
                        "the distribution package's)")
    return settings, checker.problems


def _summary(data):
    if data is None:
        return ''
    if not isinstance(data, bytes):
        data = data.encode('utf-8')
    return '%d bytes, sha256 %s\n' % (len(data), hashlib.sha256(data).hexdigest())


def _digested(change, spec):
    """A collector file's diff as one line each way (size and sha256): its text is the collection's own."""
    state = ledger_mod.file_state(change['path'])
    change['before'] = _summary(ledger_mod.content_of(state) if state['type'] == 'file' else None)
    change['after'] = _summary(spec.get('content'))
    return change


def plan(params, host, labels, systemd, check_mode=False):
    # The path options the role does not set are named as the module's options.
    labels.variables.setdefault('textfile_dir', "%s['textfile_dir']" % labels.var('monitor'))
    labels.variables.setdefault('cron_dir', 'cron_dir')
    settings, problems = validate(params.get('monitor'), labels)
    paths = dict(params['paths'])
    if isinstance(settings['textfile_dir'], str):
        paths['textfile_dir'] = settings['textfile_dir']
    path_problems = schema.path_problems(paths, labels, host)
    checker = schema.Checker(labels, problems + path_problems)
    checker.shared(params)
    if not systemd.booted and not os.path.isdir(paths['cron_dir']):
        checker.refuse('unsupported', 'the collector needs a scheduler: systemd is not PID 1 and there is no %s '
                       'for a cron file; install cron (or run systemd), then run again' % paths['cron_dir'],
                       key='monitor')
    policy = params.get('policy') or {}
    for key in sorted(policy, key=str):
        if key not in POLICY_TYPES or not isinstance(policy[key], POLICY_TYPES[key]):
            checker.invalid('policy[%s]' % key, policy[key], 'the harden role\'s variables: %s' % ', '.join(
                '%s (%s)' % (k, t.__name__) for k, t in sorted(POLICY_TYPES.items())))
    judged = engine.Plan(checker.problems)
    if checker.problems:
        return judged
    lib_dir = paths['monitor_lib_dir']
    systemd_dir = paths['systemd_dir']
    textfile = os.path.join(paths['textfile_dir'], monitor.TEXTFILE_NAME)
    state_path = os.path.join(paths['state_dir'], STATE_FILE)
    command = command_line(lib_dir, paths['textfile_dir'], state_path)
    files = {}
    for name, source in sorted(closure().items()):
        files['%s/%s/%s.py' % (lib_dir, PACKAGE_DIR, name)] = {'type': 'file', 'content': source, 'mode': 0o644}
        compiled = bytecode(name, source)
        if compiled:
            spec = {'type': 'file', 'content': compiled[1], 'mode': 0o644}
            files['%s/%s/%s' % (lib_dir, PACKAGE_DIR, compiled[0])] = spec
    files['%s/%s' % (lib_dir, ENTRY)] = {'type': 'file', 'content': entry_script(sys.executable, lib_dir),
                                         'mode': 0o755}
    timer = systemd.booted
    memory_max = (systemd.version or 0) >= 231
    for path, spec in ((systemd_dir + '/' + SERVICE, service_unit(command, memory_max)),
                       (systemd_dir + '/' + TIMER, timer_unit(settings['interval_s'])),
                       (systemd_dir + '/' + TIMER_LINK, '../' + TIMER),
                       (paths['cron_dir'] + '/' + CRON_FILE, cron_file(command, settings['interval_s']))):
        wanted = timer != path.startswith(paths['cron_dir'] + '/')
        if not wanted:
            files[path] = {'type': 'absent'}
        elif path.endswith(TIMER_LINK):
            files[path] = {'type': 'link', 'target': spec}
        else:
            files[path] = {'type': 'file', 'content': spec, 'mode': 0o644}
    # The policy the drift metric compares the host with (none: no drift metric).
    policy_path = os.path.join(paths['state_dir'], monitor.POLICY_FILE)
    files[policy_path] = ({'type': 'file', 'content': json.dumps(policy, indent=1, sort_keys=True) + '\n',
                           'mode': 0o600} if policy else {'type': 'absent'})
    judged.files = files
    judged.file_changes = [_digested(c, files[c['path']]) if c['path'].startswith(lib_dir + '/' + PACKAGE_DIR) else c
                           for c in engine.plan_files(files)]
    changed = set(c['path'] for c in judged.file_changes)
    # The collector writes these two itself; recorded first, so restore removes them too.
    judged.outputs = [textfile, state_path]
    if timer and systemd.manages:
        judged.reload = any(p.startswith(systemd_dir + '/') for p in changed)
        active = systemd.is_active(TIMER)
        judged.units_record[TIMER] = active
        if changed or not active:
            judged.after_reload.append(('restart', TIMER))
            # One run now: the textfile is there when the role ends, and a collector that fails says so here.
            judged.after_reload.append(('start', SERVICE))
    judged.result = {
        'changed': bool(judged.file_changes or judged.after_reload),
        'files': engine.file_rows(judged.file_changes),
        'scheduler': 'systemd timer' if timer else 'cron',
        'interval_s': settings['interval_s'],
        'textfile': textfile,
        'state_file': state_path,
        'command': command,
        'modules': sorted(closure()),
        'ledger': os.path.join(paths['state_dir'], ledger_mod.LEDGER_NAME),
        'diff': engine.build_diff([], judged.file_changes),
    }
    return judged


def apply(params, host, labels, check_mode, run_command=None, systemctl=None):
    """Run an oom_monitor call; returns the module result (raises Refused/ApplyError)."""
    return engine.apply(plan, params, host, labels, check_mode, run_command, systemctl, OWNER, DEFAULT_PATHS)
