# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collector the monitor role runs on each host (docs/monitoring.md).

One run: read the kernel's OOM kill counter and the reports it printed since
the last run, count every kill under a cause (what the counter says happened
is the truth; the reports only say why), read the posture, and write
node_exporter's textfile. What must outlive a run (the counters carried
across reboots, the log cursor, the usage samples of the forecast) is kept
in a state file the collector alone writes.
"""

import errno
import json
import os
import subprocess
import sys
import tempfile
import time

from ansible_collections.oomguard.linux.plugins.module_utils import audit
from ansible_collections.oomguard.linux.plugins.module_utils import domains as domains_mod
from ansible_collections.oomguard.linux.plugins.module_utils import ledger
from ansible_collections.oomguard.linux.plugins.module_utils import oom_events, oom_report, procfs, snapshot
from ansible_collections.oomguard.linux.plugins.module_utils._engine import Labels, Refused
from ansible_collections.oomguard.linux.plugins.module_utils.cgroups import unit_of
from ansible_collections.oomguard.linux.plugins.module_utils.posture import LEVELS, judge

STATE_VERSION = 1
# The kernel's kills: the report parser's causes, and those no report explained.
KERNEL_CAUSES = tuple(oom_report.CAUSES) + ('unattributed',)
CAUSES = KERNEL_CAUSES + ('early_killer',)
# Label values of the by-unit counter: at most this many units, the rest are 'other'.
MAX_UNITS = 50
# Domains exported: the host and the tightest others.
MAX_DOMAINS = 20
# Usage samples kept per domain for the forecast, and how old they may be.
MAX_SAMPLES = 12
SAMPLE_WINDOW_S = 3600
# The state file is refused beyond this (it holds at most a few hundred small entries).
MAX_STATE_BYTES = 1 << 20
# What one run may read of the kernel's logs.
LOG_READ_BYTES = 64 << 20
LOG_TIMEOUT_S = 20
# The previous boot's kernel lines looked at after a reboot (the end of that boot).
PREVIOUS_BOOT_LINES = 20000
TEXTFILE_NAME = 'oomguard.prom'
# The hardening policy oom_monitor writes beside the state (the harden role's variables), for the drift
# metric; the keys the drift audit takes, and how large the file may be.
POLICY_FILE = 'monitor-policy.json'
POLICY_KEYS = ('profile', 'sysctl', 'thp', 'services', 'cgroups', 'processes', 'protect_defaults', 'early_oom')
MAX_POLICY_BYTES = 1 << 20

HELP = (
    ('oomguard_monitor_last_run_timestamp_seconds', 'gauge', 'When the oomguard collector last finished, Unix time.'),
    ('oomguard_monitor_run_duration_seconds', 'gauge', 'How long the last oomguard collector run took.'),
    ('oomguard_monitor_read_errors', 'gauge', 'Sources the last collector run could not read (1 each).'),
    ('oomguard_risk_score', 'gauge', 'OOM risk score of the host from its posture (0 = no findings, at most 100).'),
    ('oomguard_risk_level', 'gauge', 'OOM risk level of the host: 1 for the current level.'),
    ('oomguard_findings', 'gauge', 'Posture findings present on the host (1 each).'),
    ('oomguard_oom_kills_total', 'counter', 'OOM kills by cause: the kernel\'s, and the early killers\' (early_killer).'),
    ('oomguard_kernel_oom_kills_total', 'counter', 'The kernel\'s OOM kill count (/proc/vmstat oom_kill), '
                                                   'carried across reboots.'),
    ('oomguard_oom_kills_by_unit_total', 'counter', 'Kernel OOM kills by the victim\'s systemd unit or cgroup.'),
    ('oomguard_early_killers', 'gauge', 'Userspace early OOM killers running on the host.'),
    ('oomguard_drift_settings', 'gauge', 'Settings of the hardening policy by status: drift (the live value '
                                         'differs) or missing (a file or unit of the policy is absent).'),
    ('oomguard_domain_limit_bytes', 'gauge', 'Memory an OOM domain may use before the kernel kills in it.'),
    ('oomguard_domain_headroom_bytes', 'gauge', 'Memory left in an OOM domain before its OOM.'),
    ('oomguard_domain_headroom_ratio', 'gauge', 'Headroom of an OOM domain as a share of its limit.'),
    ('oomguard_domain_time_to_oom_seconds', 'gauge', 'Forecast time to the OOM of a domain whose usage grows.'),
)


class StateError(Exception):
    """The state file is not one this collector wrote."""


# -- state ----------------------------------------------------------------------------

def fresh_state():
    return {'version': STATE_VERSION, 'boot_id': None, 'vmstat_oom_kill': 0, 'cursor_uptime_s': None,
            'early_since': None, 'kernel_total': 0, 'by_cause': dict((c, 0) for c in CAUSES), 'by_unit': {},
            'samples': {}}


def _count_map(value, what, limit):
    if not isinstance(value, dict) or len(value) > limit:
        raise StateError('%s is not a map of at most %d counts' % (what, limit))
    for key, count in value.items():
        if not isinstance(key, str) or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise StateError('%s holds %r: not a name and a count' % (what, key))
    return value


def check_state(state):
    """The state as loaded, every field of the right type and size; StateError otherwise."""
    if not isinstance(state, dict) or state.get('version') != STATE_VERSION:
        raise StateError('not a version %d state' % STATE_VERSION)
    for key in ('vmstat_oom_kill', 'kernel_total'):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StateError('%s is not a count' % key)
    if state.get('boot_id') is not None and not isinstance(state['boot_id'], str):
        raise StateError('boot_id is not text')
    for key in ('cursor_uptime_s', 'early_since'):
        if state.get(key) is not None and (isinstance(state[key], bool) or not isinstance(state[key], (int, float))):
            raise StateError('%s is not a number' % key)
    _count_map(state.get('by_cause'), 'by_cause', len(CAUSES))
    _count_map(state.get('by_unit'), 'by_unit', MAX_UNITS + 2)
    samples = state.get('samples')
    if not isinstance(samples, dict) or len(samples) > 4 * MAX_DOMAINS:
        raise StateError('samples is not a map of at most %d domains' % (4 * MAX_DOMAINS))
    for key, points in samples.items():
        if not isinstance(points, list) or len(points) > MAX_SAMPLES or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                            for v in p) for p in points):
            raise StateError('samples of %r are not at most %d [time, kB] pairs' % (key, MAX_SAMPLES))
    for cause in CAUSES:
        state['by_cause'].setdefault(cause, 0)
    return state


def read_json(path, limit):
    """(value, problem) of a JSON file this collector or oom_monitor wrote: (None, None) where there is none;
    never a symlink (O_NOFOLLOW), never more than limit bytes, never a wait (O_NONBLOCK)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return None, None if exc.errno == errno.ENOENT else 'cannot open %s: %s' % (path, os.strerror(exc.errno))
    try:
        with os.fdopen(fd, 'rb') as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        return None, 'cannot read %s: %s' % (path, os.strerror(exc.errno))
    if len(data) > limit:
        return None, '%s is larger than %d bytes' % (path, limit)
    try:
        return json.loads(data.decode('utf-8')), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, '%s is not JSON: %s' % (path, exc)


def load_state(path):
    """(state, problem): the saved state, or a fresh one and why the saved one was not used."""
    state, problem = read_json(path, MAX_STATE_BYTES)
    if problem or state is None:
        return fresh_state(), problem
    try:
        return check_state(state), None
    except StateError as exc:
        return fresh_state(), '%s is not a state this collector wrote (%s): counting starts again' % (path, exc)


# -- counting -------------------------------------------------------------------------

def read_counters(host):
    """(boot id, /proc/vmstat oom_kill); the count is None on kernels before 4.13, which have none."""
    boot_id = (host.read('proc/sys/kernel/random/boot_id') or '').strip() or None
    kills = None
    for line in (host.read('proc/vmstat') or '').splitlines():
        name, dummy, value = line.partition(' ')
        if name == 'oom_kill' and value.strip().isdigit():
            kills = int(value)
    return boot_id, kills


def _victims(event):
    """How many tasks the kernel killed in one report (a memory.oom.group kill: all its members)."""
    if event.get('victims'):
        return len(event['victims'])
    return 1 if event.get('victim') else 0


def unit_label(event):
    """The by-unit label of a kill: the victim's unit, else its cgroup path, else 'unknown'."""
    memcg = event.get('task_memcg')
    if not memcg:
        return 'unknown'
    return unit_of(memcg) or memcg


def count_kills(state, boot_id, vmstat_kills, events, previous_boot_events=None):
    """Add the kills since the last run to state; returns {cause: new kills}.

    events: this boot's reports (oom_events), oldest first. The kernel's counter
    says how many kills happened; the reports after the cursor say why, oldest
    first, and what no report explains is 'unattributed'. More reports than kills
    means a kill was printed after the counter was read: the cursor stops at the
    last report counted, and the next run counts the rest. After a reboot the counter
    starts again from 0; previous_boot_events, the previous boot's reports after
    the cursor, are the kills that boot made after the last run (None: the
    previous boot's log could not be read).
    """
    new = dict((cause, 0) for cause in KERNEL_CAUSES)
    same_boot = boot_id is not None and boot_id == state['boot_id']
    cursor = state['cursor_uptime_s'] if same_boot else None
    if not same_boot and state['boot_id'] is not None and previous_boot_events:
        for event in previous_boot_events:
            if state['cursor_uptime_s'] is None or (event.get('uptime_s') or 0) > state['cursor_uptime_s']:
                _add(state, new, event, _victims(event))
    if vmstat_kills is None:
        delta = None
    elif same_boot:
        delta = vmstat_kills - state['vmstat_oom_kill'] if vmstat_kills >= state['vmstat_oom_kill'] else vmstat_kills
    else:
        delta = vmstat_kills
    fresh = [e for e in events if _victims(e) and (cursor is None or (e.get('uptime_s') or 0) > cursor)]
    if delta is None:
        # No kernel counter (before 4.13): the reports are all there is.
        delta = sum(_victims(e) for e in fresh)
    left = delta
    if not same_boot:
        state['cursor_uptime_s'] = None
    for event in fresh:
        if left < _victims(event):
            break
        _add(state, new, event, _victims(event))
        left -= _victims(event)
        state['cursor_uptime_s'] = event.get('uptime_s') or 0
    if left > 0:
        _add(state, new, None, left)
    state['boot_id'] = boot_id
    if vmstat_kills is not None:
        state['vmstat_oom_kill'] = vmstat_kills
    return new


def _add(state, new, event, kills):
    cause = 'unattributed' if event is None else event.get('cause') or 'unknown'
    if cause not in new:
        cause = 'unknown'
    new[cause] += kills
    state['by_cause'][cause] = state['by_cause'].get(cause, 0) + kills
    state['kernel_total'] += kills
    unit = 'unknown' if event is None else unit_label(event)
    by_unit = state['by_unit']
    if unit not in by_unit and len([u for u in by_unit if u not in ('other', 'unknown')]) >= MAX_UNITS:
        unit = 'other'
    by_unit[unit] = by_unit.get(unit, 0) + kills


def count_early_kills(state, kills):
    """Add the early killers' kills newer than the last run's; returns how many."""
    since = state.get('early_since')
    fresh = [k for k in kills if not k.get('dry_run') and _epoch(k) is not None
             and (since is None or _epoch(k) > since)]
    if fresh:
        state['early_since'] = max(_epoch(k) for k in fresh)
    state['by_cause']['early_killer'] += len(fresh)
    return len(fresh)


def _epoch(kill):
    return oom_report.epoch(kill.get('timestamp'))


# -- reading the logs -------------------------------------------------------------------

def this_boot_events(paths=None):
    """(events, problem): the reports in the kernel's ring buffer (or in paths, for a test)."""
    budget = oom_events.ReadBudget(LOG_READ_BYTES, LOG_TIMEOUT_S)
    try:
        events, dummy, dummy2, notes = oom_events.collect(
            sources=[] if paths else ['dmesg'], paths=paths or [], keep=None, link=False, budget=budget)
    except oom_events.SourceError as exc:
        return [], str(exc)
    events.sort(key=lambda e: e.get('uptime_s') or 0)
    return events, '; '.join(notes) or None


def previous_boot_events(journalctl, boot_id):
    """(events, problem) of the previous boot's last kernel lines in the journal."""
    if not journalctl or not boot_id or len(boot_id.replace('-', '')) != 32:
        return None, 'no journal to read the previous boot from'
    with tempfile.NamedTemporaryFile(prefix='oomguard-monitor-', suffix='.log') as out:
        # -o export: each entry keeps the kernel's own stamp (_SOURCE_MONOTONIC_TIMESTAMP), which the cursor
        # is; short-monotonic shows when journald received the line, later than the kernel's stamp.
        argv = [journalctl, '-k', '-b', boot_id.replace('-', ''), '-o', 'export', '--no-pager', '-q',
                '-n', str(PREVIOUS_BOOT_LINES)]
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, timeout=LOG_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, 'journal: %s' % exc
        if proc.returncode != 0:
            err = proc.stderr.decode('utf-8', 'replace').strip()[:200]
            return None, 'journal: %s failed (rc=%d): %s' % (' '.join(argv), proc.returncode, err)
        out.flush()
        if not os.path.getsize(out.name):
            return [], None
        return this_boot_events([out.name])


# -- the posture ---------------------------------------------------------------------------

def read_posture(host, state, now, run_command=None, systemctl=None):
    """(verdict, snapshot) of the host, read as oom_facts reads it but without slabinfo and without ranking
    the domains' tasks (a status read per task: too much every minute on a large host; oom_facts has the
    next victims), its domains' forecasts from the usage of the last runs."""
    snap = snapshot.collect(host, skip=['slabinfo', 'domain_victims'], victims_count=1, run_command=run_command,
                            systemctl_path=systemctl)
    forecast_domains(state, exported_domains(snap), now)
    return judge(snap, None), snap


def exported_domains(snap):
    """The host and the MAX_DOMAINS tightest other domains that have a limit."""
    domains = [d for d in snap.get('domains') or [] if d.get('limit_kb')]
    host = [d for d in domains if d['kind'] == 'host']
    return host + [d for d in domains if d['kind'] != 'host'][:MAX_DOMAINS]


def domain_key(domain):
    return '%s:%s' % (domain['kind'], domain['path'])


def forecast_domains(state, domains, now):
    """Each domain's forecast from its usage over the last runs; keeps MAX_SAMPLES per domain."""
    samples = state['samples']
    kept = {}
    for domain in domains:
        key = domain_key(domain)
        points = [p for p in samples.get(key, []) if now - SAMPLE_WINDOW_S <= p[0] < now]
        if domain.get('usage_kb') is not None:
            points.append([now, domain['usage_kb']])
        kept[key] = points[-MAX_SAMPLES:]
        domain['forecast'] = domains_mod.forecast([tuple(p) for p in kept[key]], domain['limit_kb'])
    state['samples'] = kept


# -- drift from the hardening policy ---------------------------------------------------------

def read_policy(path):
    """(policy or None, problem): the policy oom_monitor wrote, or None where there is none."""
    policy, problem = read_json(path, MAX_POLICY_BYTES)
    if problem or policy is None:
        return None, problem
    if not isinstance(policy, dict) or set(policy) - set(POLICY_KEYS):
        return None, '%s is not a policy oom_monitor wrote' % path
    return policy, None


def drift_counts(policy, host, run_command, systemctl):
    """{'drift': n, 'missing': n} of the host against the policy: the drift audit of oom_audit."""
    result = audit.run(dict(policy), host, Labels(os.uname()[1]), run_command, systemctl)
    return {'drift': result['drift'], 'missing': result['missing']}


# -- the textfile -----------------------------------------------------------------------------

def label(value):
    """A label value as the exposition format writes it (\\, newline and " escaped)."""
    text = str(value).encode('utf-8', 'backslashreplace').decode('utf-8')
    return text.replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')


def sample_text(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(samples):
    """The textfile: samples {metric: [(labels dict, value)]}, in HELP's order."""
    lines = []
    for metric, kind, text in HELP:
        if not samples.get(metric):
            continue
        lines.append('# HELP %s %s' % (metric, text))
        lines.append('# TYPE %s %s' % (metric, kind))
        for labels, value in samples[metric]:
            shown = ','.join('%s="%s"' % (name, label(labels[name])) for name in sorted(labels))
            lines.append('%s%s %s' % (metric, '{%s}' % shown if shown else '', sample_text(value)))
    return '\n'.join(lines) + '\n'


def metrics(state, verdict, snap, domains, errors, finished, duration_s, drift=None):
    """{metric: [(labels, value)]} of one run."""
    out = dict((name, []) for name, dummy, dummy2 in HELP)
    out['oomguard_monitor_last_run_timestamp_seconds'].append(({}, round(finished, 3)))
    out['oomguard_monitor_run_duration_seconds'].append(({}, round(duration_s, 3)))
    for source in sorted(errors):
        out['oomguard_monitor_read_errors'].append(({'source': source}, 1))
    if verdict is not None:
        out['oomguard_risk_score'].append(({}, verdict['risk_score']))
        for level in LEVELS:
            out['oomguard_risk_level'].append(({'level': level}, 1 if verdict['risk_level'] == level else 0))
        seen = set()
        for finding in verdict['findings']:
            key = (finding['id'], finding['severity'])
            if key not in seen:
                seen.add(key)
                out['oomguard_findings'].append(({'id': finding['id'], 'severity': finding['severity']}, 1))
    for cause in CAUSES:
        out['oomguard_oom_kills_total'].append(({'cause': cause}, state['by_cause'].get(cause, 0)))
    out['oomguard_kernel_oom_kills_total'].append(({}, state['kernel_total']))
    for unit in sorted(state['by_unit']):
        out['oomguard_oom_kills_by_unit_total'].append(({'unit': unit}, state['by_unit'][unit]))
    if snap is not None and snap.get('processes') is not None:
        out['oomguard_early_killers'].append(({}, len(snap['processes'].get('early_killers') or [])))
    for status in sorted(drift or {}):
        out['oomguard_drift_settings'].append(({'status': status}, drift[status]))
    for domain in domains:
        labels = {'kind': domain['kind'], 'path': domain['path'] if domain['kind'] != 'node'
                  else 'node:' + domains_mod.format_node_list(domain.get('nodes') or [])}
        out['oomguard_domain_limit_bytes'].append((labels, domain['limit_kb'] * 1024))
        if domain.get('headroom_kb') is not None:
            out['oomguard_domain_headroom_bytes'].append((labels, max(0, domain['headroom_kb']) * 1024))
            out['oomguard_domain_headroom_ratio'].append(
                (labels, round(max(0, domain['headroom_kb']) / float(domain['limit_kb']), 4)))
        forecast = domain.get('forecast') or {}
        if forecast.get('time_to_oom_s') is not None:
            out['oomguard_domain_time_to_oom_seconds'].append((labels, forecast['time_to_oom_s']))
    return out


# -- one run -------------------------------------------------------------------------------------

def run(textfile_dir, state_path, host=None, run_command=None, systemctl=None, journalctl=None, log_paths=None,
        clock=time.time):
    """One collector run; returns {'textfile', 'errors', 'new_kills', 'duration_s'}."""
    started = clock()
    host = host or procfs.HostRoot('/')
    errors = {}
    state, problem = load_state(state_path)
    if problem:
        errors['state'] = problem
    boot_id, vmstat_kills = read_counters(host)
    events, problem = this_boot_events(log_paths)
    if problem:
        errors['kmsg'] = problem
    previous = None
    if boot_id != state['boot_id'] and state['boot_id'] is not None:
        previous, problem = previous_boot_events(journalctl, state['boot_id'])
        if problem:
            errors['journal'] = problem
    new = count_kills(state, boot_id, vmstat_kills, events, previous)
    if journalctl:
        if state.get('early_since') is None:
            # The first run counts this boot's early kills, as the kernel's counter does.
            state['early_since'] = oom_events.boot_time()
        try:
            count_early_kills(state, oom_events.read_early_kills(journalctl, state['early_since']))
        except oom_events.SourceError as exc:
            errors['journal'] = str(exc)
    verdict = snap = None
    domains = []
    try:
        verdict, snap = read_posture(host, state, started, run_command, systemctl)
        domains = exported_domains(snap)
    except procfs.ReadError as exc:
        errors['posture'] = str(exc)
    drift = None
    policy, problem = read_policy(os.path.join(os.path.dirname(state_path), POLICY_FILE))
    if problem:
        errors['policy'] = problem
    elif policy is not None:
        try:
            drift = drift_counts(policy, host, run_command, systemctl)
        except (Refused, procfs.ReadError, OSError, ValueError) as exc:
            # A policy this host refuses, a read that fails: the other metrics are still written.
            errors['policy'] = 'the drift audit failed: %s' % exc
    ledger.write_file(state_path, json.dumps(state, sort_keys=True, separators=(',', ':')), 0o600)
    finished = clock()
    textfile = os.path.join(textfile_dir, TEXTFILE_NAME)
    text = render(metrics(state, verdict, snap, domains, errors, finished, finished - started, drift))
    ledger.write_file(textfile, text, 0o644)
    return {'textfile': textfile, 'errors': errors, 'new_kills': new, 'duration_s': round(finished - started, 3)}


def _run_command(argv):
    """run_command as AnsibleModule's: (rc, stdout, stderr), never waiting more than 30 s."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, '', str(exc)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace')


def _which(name):
    for directory in ('/usr/bin', '/bin', '/usr/sbin', '/sbin'):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def main(argv=None):
    """The collector's command line: oomguard-monitor --textfile-dir DIR --state FILE."""
    import argparse
    parser = argparse.ArgumentParser(prog='oomguard-monitor', description='Write the oomguard OOM metrics for '
                                     "node_exporter's textfile collector (docs/monitoring.md).")
    parser.add_argument('--textfile-dir', required=True, help="node_exporter's --collector.textfile.directory")
    parser.add_argument('--state', required=True, help='the state file the collector keeps between runs')
    args = parser.parse_args(argv)
    for path, what in ((args.textfile_dir, '--textfile-dir'), (args.state, '--state')):
        if not os.path.isabs(path) or os.path.normpath(path) != path:
            parser.error('%s = %s: allowed: an absolute, normalised path' % (what, path))
    if not os.path.isdir(os.path.dirname(args.state)):
        parser.error('--state = %s: allowed: a file in an existing directory' % args.state)
    # node_exporter's package makes the directory; a collector set up first makes it (restore removes it).
    if not os.path.isdir(args.textfile_dir):
        os.makedirs(args.textfile_dir, 0o755)
    booted = os.path.isdir('/run/systemd/system')
    result = run(args.textfile_dir, args.state, run_command=_run_command,
                 systemctl=_which('systemctl') if booted else None,
                 journalctl=_which('journalctl') if booted else None)
    for source, problem in sorted(result['errors'].items()):
        sys.stdout.write('oomguard-monitor: %s: %s\n' % (source, problem))
    new = sum(result['new_kills'].values())
    sys.stdout.write('oomguard-monitor: wrote %s in %.2f s; %d new OOM kill%s\n' % (
        result['textfile'], result['duration_s'], new, '' if new == 1 else 's'))
    return 0
