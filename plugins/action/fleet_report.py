# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for oomguard.linux.fleet_report: runs on the controller only
(documented in plugins/modules/fleet_report.py)."""


import datetime
import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase

from ansible_collections.oomguard.linux.plugins.plugin_utils import fleet, fleet_html
from ansible_collections.oomguard.linux.plugins.plugin_utils.report_text import describe, plural

FORMATS = ('json', 'html', 'prometheus')
JSON_NAME = 'oom-fleet-report.json'
HTML_NAME = 'oom-fleet-report.html'
TEXTFILE_DIR = 'textfiles'


def _write_if_changed(path, data, check_mode):
    """Write atomically when the content differs; True when it differed."""
    try:
        with open(path, 'rb') as handle:
            if handle.read() == data:
                return False
    except (IOError, OSError):
        pass
    if check_mode:
        return True
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix='.oomguard-', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('hosts', 'result_var', 'dest', 'formats', 'generated_at'))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        hosts = args.get('hosts')
        result_var = args.get('result_var')
        dest = args.get('dest')
        formats = args.get('formats', list(FORMATS))
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise AnsibleActionFail('hosts = %s; allowed: a list of inventory host names' % describe(hosts))
        if not result_var or not isinstance(result_var, str):
            raise AnsibleActionFail('result_var = %s; allowed: the name of the variable the audit registered on each host'
                                    % describe(result_var))
        if not dest or not isinstance(dest, str) or not os.path.isabs(dest):
            raise AnsibleActionFail('dest = %s; allowed: an absolute directory on the controller' % describe(dest))
        if not isinstance(formats, list) or not formats or not all(isinstance(f, str) and f in FORMATS for f in formats):
            raise AnsibleActionFail('formats = %s; allowed: a non-empty list of %s' % (describe(formats), ', '.join(FORMATS)))

        hostvars = task_vars.get('hostvars', {})
        now = datetime.datetime.now(datetime.timezone.utc)
        generated_at = args.get('generated_at')
        if generated_at is not None:
            # The textfiles' timestamp is the report's: one moment for all of a run's files.
            try:
                now = datetime.datetime.strptime(generated_at, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)
            except (TypeError, ValueError):
                raise AnsibleActionFail('generated_at = %s; allowed: a UTC time like 2026-12-07T04:00:00Z'
                                        % describe(generated_at))
        generated_at = now.strftime('%Y-%m-%dT%H:%M:%SZ')
        results = []
        for name in hosts:
            try:
                registered = hostvars[name].get(result_var)
            except KeyError:
                registered = None
            results.append((name, registered))
        document = fleet.build(results, generated_at, {'hosts_pattern_size': len(hosts)})
        # The document's summary stays data; the lines to print are added to the task's result only.
        summary = dict(document['summary'])

        files = {}
        if 'json' in formats:
            files[os.path.join(dest, JSON_NAME)] = to_bytes(fleet.to_json(document))
        if 'html' in formats:
            files[os.path.join(dest, HTML_NAME)] = to_bytes(fleet_html.render(document))
        if 'prometheus' in formats:
            timestamp = int((now - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)).total_seconds())
            for host in document['hosts']:
                files[os.path.join(dest, TEXTFILE_DIR, fleet.textfile_name(host['name']))] = to_bytes(
                    fleet.prometheus(host, timestamp))

        check_mode = bool(self._task.check_mode)
        changed = []
        try:
            for directory in sorted(set(os.path.dirname(p) for p in files)):
                if not os.path.isdir(directory) and not check_mode:
                    os.makedirs(directory, 0o755)
            for path in sorted(files):
                if _write_if_changed(path, files[path], check_mode):
                    changed.append(path)
        except (IOError, OSError) as exc:
            raise AnsibleActionFail('cannot write the fleet report under %s: %s' % (dest, to_text(exc)))

        where = []
        if 'json' in formats:
            where.append('JSON %s' % os.path.join(dest, JSON_NAME))
        if 'html' in formats:
            where.append('HTML %s' % os.path.join(dest, HTML_NAME))
        if 'prometheus' in formats:
            where.append('%s under %s' % (plural(len(document['hosts']), 'Prometheus textfile'), os.path.join(dest, TEXTFILE_DIR)))
        summary['text'] = fleet.summary_text(document) + ['Report: %s' % '; '.join(where)]
        summary['drift_text'] = '%s; see %s' % (fleet.drift_text(document), dest)
        result.update({
            'changed': bool(changed),
            'dest': dest,
            'json': os.path.join(dest, JSON_NAME) if 'json' in formats else None,
            'html': os.path.join(dest, HTML_NAME) if 'html' in formats else None,
            'textfiles': sorted(p for p in files if p.endswith('.prom')),
            'written': changed,
            'summary': summary,
            'hosts_not_audited': [dict(name=h['name'], status=h['status'], message=h['message'])
                                  for h in document['hosts'] if h['status'] in fleet.NOT_AUDITED],
            'drifting_hosts': [h['name'] for h in document['hosts'] if fleet.off_policy(h)],
        })
        return result
