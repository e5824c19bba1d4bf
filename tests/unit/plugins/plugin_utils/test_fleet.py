# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report builder, its HTML and its Prometheus textfiles, on real registered
results (tests/unit/fixtures/fleet, see its README): this machine audited, a host whose
SSH port refused, a host without the interpreter, a host with an invalid inventory."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import hashlib
import json
import os
import re
from html.parser import HTMLParser
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.oomguard.linux.plugins.action import fleet_report
from ansible_collections.oomguard.linux.plugins.plugin_utils import fleet, fleet_html

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'fleet')
ORIGINS = ('localhost', 'unreachable-ssh', 'no-python', 'bad-inventory')
prometheus_parser = pytest.importorskip('prometheus_client.parser')


def registered(origin):
    with open(os.path.join(FIXTURES, 'registered-%s.json' % origin)) as handle:
        return json.load(handle)


@pytest.fixture(scope='module')
def results():
    return [(origin, registered(origin)) for origin in ORIGINS]


@pytest.fixture(scope='module')
def document(results):
    return fleet.build(results, '2026-11-23T14:33:00Z')


def test_each_host_gets_its_status_and_the_reason(document):
    by_name = dict((h['name'], h) for h in document['hosts'])
    assert by_name['localhost']['status'] == 'ok' and by_name['localhost']['message'] is None
    assert by_name['unreachable-ssh']['status'] == 'unreachable'
    assert 'port 1: Connection refused' in by_name['unreachable-ssh']['message']
    assert by_name['no-python']['status'] == 'failed'
    assert by_name['no-python']['message'] == "The module interpreter '/nonexistent/python3' was not found."
    # An invalid inventory costs the policy part only: the posture, slab and events are still reported.
    bad = by_name['bad-inventory']
    assert bad['status'] == 'partial' and bad['drift'] is None
    assert "oomguard_sysctl['vm.swappiness'] = 500 is out of range" in bad['errors']['policy']
    assert bad['risk_score'] == registered('bad-inventory')['posture']['risk_score'] and bad['events'] is not None


def test_the_summary_counts_what_the_hosts_say(document, results):
    summary = document['summary']
    assert summary['hosts'] == 4
    assert summary['by_status'] == {'ok': 1, 'partial': 1, 'broken': 0, 'failed': 1, 'unreachable': 1, 'no_result': 0}
    local = registered('localhost')
    assert summary['oom_kills'] == 2 * local['events']['summary']['events']
    assert summary['oom_kills_by_cause'] == dict((k, 2 * v) for k, v in local['events']['summary']['by_cause'].items())
    # The capture is of a host never hardened: its policy's values are as the kernel has them
    # (no drift), the collection's files are absent (missing).
    assert (local['summary']['drift'], local['summary']['missing']) == (0, 3)
    assert summary['hosts_drifting'] == 0 and summary['hosts_incomplete'] == 1 and summary['hosts_no_policy'] == 0
    severities = [f['severity'] for f in local['posture']['findings']]
    assert summary['findings_by_severity'] == dict((s, 2 * severities.count(s)) for s in fleet.SEVERITIES)
    level = local['posture']['risk_level']
    assert summary['by_risk_level'][level] == 2 and sum(summary['by_risk_level'].values()) == 2


def test_hosts_are_listed_riskiest_first_and_the_unaudited_last(results):
    quiet = copy.deepcopy(registered('localhost'))
    quiet['posture']['risk_score'] = 0
    document = fleet.build([('quiet', quiet)] + results, 'now')
    names = [h['name'] for h in document['hosts']]
    assert names[-2:] == ['no-python', 'unreachable-ssh']
    scores = [h['risk_score'] for h in document['hosts'][:-2]]
    assert scores == sorted(scores, reverse=True) and names.index('quiet') == 2


def test_drift_rows_keep_only_what_differs(document):
    local = registered('localhost')
    drift = dict((h['name'], h) for h in document['hosts'])['localhost']['drift']
    assert drift['rows'] == [r for r in local['settings'] if r['status'] != 'ok']
    assert drift['summary'] == local['summary'] and drift['profile'] == 'default'


def test_recent_kills_carry_their_cause_newest_first(document):
    recent = dict((h['name'], h) for h in document['hosts'])['localhost']['events']['recent']
    assert 0 < len(recent) <= fleet.RECENT_KILLS
    assert all(k['cause'] and k['victim'] and k['pid'] for k in recent)
    stamps = [k['timestamp'] for k in recent]
    assert stamps == sorted(stamps, reverse=True)


def test_a_host_without_a_result_is_listed():
    document = fleet.build([('late', None)], 'now')
    assert document['hosts'][0]['status'] == 'no_result'
    assert document['summary']['by_status']['no_result'] == 1


def test_the_textfiles_parse_as_prometheus_exposition_format(document):
    families = {}
    for host in document['hosts']:
        text = fleet.prometheus(host, 1795444383)
        for family in prometheus_parser.text_string_to_metric_families(text):
            assert family.type == 'gauge', family.name
            for sample in family.samples:
                assert sample.labels['host'] == host['name']
                families.setdefault(family.name, []).append(sample)
    up = dict((s.labels['host'], s.value) for s in families['oomguard_audit_up'])
    assert up == {'localhost': 1, 'bad-inventory': 1, 'no-python': 0, 'unreachable-ssh': 0}
    local = registered('localhost')
    kills = dict((s.labels['cause'], s.value) for s in families['oomguard_oom_kills'] if s.labels['host'] == 'localhost')
    assert kills == local['events']['summary']['by_cause']
    risk = dict((s.labels['host'], s.value) for s in families['oomguard_risk_score'])
    assert risk['localhost'] == local['posture']['risk_score']
    drift = dict((s.labels['host'], s.value) for s in families['oomguard_drift_settings'])
    assert drift == {'localhost': local['summary']['drift'] + local['summary']['missing']}     # bad-inventory: no policy
    assert len([s for s in families['oomguard_findings'] if s.labels['host'] == 'localhost']) == 5


def test_label_values_are_escaped():
    host = fleet.host_entry('we"ird\\host\nname', registered('localhost'))
    text = fleet.prometheus(host, 1)
    names = set(s.labels['host'] for f in prometheus_parser.text_string_to_metric_families(text) for s in f.samples)
    assert names == {'we"ird\\host\nname'}


class _Page(HTMLParser):
    def __init__(self):
        HTMLParser.__init__(self)
        self.rows = 0
        self.urls = []
        self.scripts = []
        self.svg = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'tr' and 'data-status' in attrs:
            self.rows += 1
        if tag == 'svg':
            self.svg += 1
        if tag == 'script':
            self.scripts.append(attrs)
            assert 'src' not in attrs
        for key in ('src', 'href'):
            if attrs.get(key):
                self.urls.append(attrs[key])


def test_the_html_is_self_contained_and_lists_every_host(document):
    page = fleet_html.render(document)
    parser = _Page()
    parser.feed(page)
    # The rows as data for the page's script (not run: JSON), then the script.
    assert parser.rows == 4 and parser.scripts == [{'type': 'application/json', 'id': 'fleet-data'}, {}] and parser.svg >= 2
    assert parser.urls == ['data:,']           # the favicon; nothing fetched from anywhere
    assert not re.search(r'https?://', page.replace('http://www.w3.org', ''))
    for name in ORIGINS:
        assert '<b>%s</b>' % name in page
    assert "The module interpreter &#x27;/nonexistent/python3&#x27; was not found." in page
    local = registered('localhost')
    for finding in local['posture']['findings']:
        assert '<code>%s</code>' % finding['id'] in page


def test_the_html_escapes_what_hosts_report(results):
    hostile = copy.deepcopy(registered('localhost'))
    hostile['posture']['findings'][0]['title'] = '<script>alert(1)</script>'
    page = fleet_html.render(fleet.build([('<b>x</b>', hostile)], 'now'))
    assert '<script>alert(1)</script>' not in page and '&lt;script&gt;alert(1)&lt;/script&gt;' in page
    assert '<b><b>x</b></b>' not in page


# -- what each host is: the basics from its posture ------------------------------------

def test_the_json_carries_each_hosts_basics_from_its_posture(document):
    posture = registered('localhost')['posture']
    basics = dict((h['name'], h['basics']) for h in document['hosts'])
    victim = posture['victims'][0]
    # This capture was made before oom_facts read OOM domains: there is no tightest one.
    assert 'domains' not in posture
    assert basics['localhost'] == {
        'kernel_release': posture['kernel']['release'], 'machine': posture['kernel']['machine'],
        'mem_total_kb': posture['memory']['MemTotal'], 'mem_available_kb': posture['memory']['MemAvailable'],
        'swap_total_kb': 0, 'swap_used_kb': 0, 'cgroup_mode': 'hybrid', 'memory_controller': 1,
        'psi': {'some_avg10_percent': posture['pressure']['some']['avg10'], 'full_avg10_percent': posture['pressure']['full']['avg10']},
        'next_victim': {'comm': victim['comm'], 'pid': victim['pid'], 'oom_score': victim['oom_score'], 'rss_kb': victim['rss_kb']},
        'tightest_domain': None}
    assert basics['unreachable-ssh'] is None and basics['no-python'] is None


def _row_of(page, name):
    row = re.search(r'<tr data-level="[^"]*" data-status="[^"]*"><td><b>%s</b>.*?</tr>' % re.escape(name), page, re.S)
    return row.group(0)


def _cell(row, key):
    return re.sub(r'<[^>]+>', ' ', re.search(r'<td class="basic basic-%s"[^>]*>(.*?)</td>' % key, row).group(1)).split()


def test_the_html_shows_each_hosts_basics_with_units(document):
    page = fleet_html.render(document)
    row = _row_of(page, 'localhost')
    assert _cell(row, 'kernel') == ['6.18.44-fc-v657']
    assert _cell(row, 'memory') == ['23.5', 'GiB', 'RAM', '19.5', 'GiB', 'available']
    assert _cell(row, 'swap') == ['none']
    assert _cell(row, 'cgroup') == ['hybrid', '(memory', 'v1)']
    assert _cell(row, 'psi') == ['some', '0.00', '%', 'full', '0.00', '%', '(avg10)']
    assert _cell(row, 'victim') == ['qemu-system-x86', '(pid', '29034)', 'oom_score', '716,', 'RSS', '1.8', 'GiB']
    assert _cell(_row_of(page, 'unreachable-ssh'), 'kernel') == ['unknown']


def test_the_html_says_reachable_and_names_each_severity_count(document):
    page = fleet_html.render(document)
    row = _row_of(page, 'localhost')
    # Reachable is neutral; the medium risk is the risk column's, in its own colour.
    assert '>reachable</span>' in row and '#2e7d32">reachable' not in row and '>ok<' not in row
    assert 'background:%s">medium</span>' % fleet_html.LEVEL_COLOURS['medium'] in row
    counts = re.sub(r'<[^>]+>', '', re.search(r'<span class="counts">(.*?)</span></td>', row).group(1))
    assert counts == '2 medium \u00b7 1 low \u00b7 1 info'
    assert 'Findings are counted by severity:' in page
    assert re.sub(r'<[^>]+>', '', re.search(r'<span class="counts">(.*?)</span></td>', _row_of(page, 'no-python')).group(1)) \
        == 'no findings'


def test_a_posture_without_psi_swap_in_use_and_no_scan():
    result = copy.deepcopy(registered('localhost'))
    result['posture'].update(pressure=None, victims=[], cgroup_mode='v2', memory_controller=2)
    result['posture']['memory'].update(SwapTotal=2097152, SwapFree=1572864)
    del result['posture']['kernel']['release']
    document = fleet.build([('old-kernel', result)], 'now')
    basics = document['hosts'][0]['basics']
    assert basics['psi'] is None and basics['next_victim'] is None and basics['swap_used_kb'] == 524288
    row = _row_of(fleet_html.render(document), 'old-kernel')
    assert _cell(row, 'psi') == ['not', 'available'] and _cell(row, 'victim') == ['unknown']
    assert _cell(row, 'swap') == ['2.0', 'GiB', 'total', '512.0', 'MiB', 'used']
    assert _cell(row, 'kernel') == ['unknown'] and _cell(row, 'cgroup') == ['v2', '(memory', 'v2)']


# -- console lines ---------------------------------------------------------------------

def test_the_summary_lines_are_written_for_people(document):
    local = registered('localhost')
    kills = 2 * local['events']['summary']['events']
    assert fleet.summary_text(document) == [
        '4 hosts: 1 reachable, 1 partly audited, 1 audit failed, 1 unreachable',
        'OOM risk: 2 hosts at medium risk',
        'Findings: 4 medium, 2 low, 2 info (8 findings)',
        'Policy: 1 host lacks files or units of the policy (never hardened, or removed since: localhost)',
        'Slab: no host flagged',
        'OOM kills in the logs read: %d (%d memcg_limit)' % (kills, kills),
        'bad-inventory (partly audited): ' + local_errors(),
        'no-python (audit failed): The module interpreter \'/nonexistent/python3\' was not found.',
        'unreachable-ssh (unreachable): Task failed: Failed to connect to the host via ssh: ssh: connect to host 127.0.0.1 '
        'port 1: Connection refused',
    ]
    assert fleet.drift_text(document) == '1 host lacks files or units of the policy (never hardened, or removed since: localhost)'


def local_errors():
    return registered('bad-inventory')['errors']['policy']


def test_one_host_and_many_hosts_are_counted_in_words():
    one = fleet.build([('a', registered('localhost'))], 'now')
    assert fleet.summary_text(one)[0] == '1 host: 1 reachable'
    many = fleet.build([('h%02d' % i, registered('unreachable-ssh')) for i in range(12)], 'now')
    lines = fleet.summary_text(many)
    assert lines[0] == '12 hosts: 12 unreachable' and lines[1] == 'OOM risk: no host has a posture in this report'
    assert lines[-1] == '... and 2 more hosts not fully audited (see the report)'
    assert 'h09 (unreachable)' in lines[-2]


# -- textfile names ----------------------------------------------------------------------

COLLIDING = ('web/1', 'web_1', 'web:1', 'web 1', 'WEB_1', 'Web_1', 'web_1~0', 'web/1/', '', '.', '..', 'w\u00e9b_1',
             'a' * 300, 'a' * 301, 'db.example.com', 'db-example-com')


def test_textfile_names_differ_for_every_host_name_and_never_change():
    names = [fleet.textfile_name(host) for host in COLLIDING]
    assert len(set(name.lower() for name in names)) == len(COLLIDING)     # also on a case-insensitive file system
    assert names == [fleet.textfile_name(host) for host in COLLIDING]
    assert all(re.match(r'^oomguard-[a-z0-9._~-]+\.prom$', name) and len(name) < 255 for name in names), names
    kept = dict(zip(COLLIDING, names))
    assert kept['web_1'] == 'oomguard-web_1.prom' and kept['db.example.com'] == 'oomguard-db.example.com.prom'
    assert re.match(r'^oomguard-web_1~[0-9a-f]{16}\.prom$', kept['web/1'])
    assert fleet.textfile_name('web/1') == 'oomguard-web_1~%s.prom' % hashlib.sha256(b'web/1').hexdigest()[:16]


def _action(tmp_path, hosts, results, check_mode=False):
    task = mock.MagicMock()
    task.args = {'hosts': hosts, 'result_var': 'audit', 'dest': str(tmp_path), 'generated_at': '2026-12-07T04:00:00Z'}
    task.check_mode = check_mode
    task.async_val = 0
    action = fleet_report.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None,
                                       shared_loader_obj=None)
    hostvars = dict((name, {'audit': result}) for name, result in zip(hosts, results))
    return action.run(task_vars={'hostvars': hostvars})


def test_the_action_writes_one_textfile_per_host_and_removes_nothing(tmp_path):
    textfiles = tmp_path / 'textfiles'
    textfiles.mkdir()
    # Files the action did not write: another collector's, and one of an earlier run.
    (textfiles / 'node.prom').write_text('node_custom 1\n')
    (textfiles / 'oomguard-retired.prom').write_text('oomguard_audit_up{host="retired"} 1\n')
    hosts = ['web/1', 'web_1', 'WEB_1']
    result = _action(tmp_path, hosts, [registered('localhost'), registered('unreachable-ssh'), registered('localhost')])
    assert len(result['textfiles']) == 3
    up = {}
    stamps = set()
    for path in result['textfiles']:
        with open(path) as handle:
            for family in prometheus_parser.text_string_to_metric_families(handle.read()):
                up.update((s.labels['host'], s.value) for s in family.samples if s.name == 'oomguard_audit_up')
                stamps.update(s.value for s in family.samples if s.name == 'oomguard_audit_timestamp_seconds')
    assert up == {'web/1': 1, 'web_1': 0, 'WEB_1': 1}
    assert stamps == {1796616000}  # generated_at, 2026-12-07T04:00:00Z: the second run writes the same bytes
    assert (textfiles / 'node.prom').read_text() == 'node_custom 1\n'
    assert (textfiles / 'oomguard-retired.prom').read_text() == 'oomguard_audit_up{host="retired"} 1\n'
    assert sorted(p.name for p in textfiles.iterdir()) == sorted(
        ['node.prom', 'oomguard-retired.prom'] + [os.path.basename(p) for p in result['textfiles']])
    summary = result['summary']
    assert summary['by_status'] == {'ok': 2, 'partial': 0, 'broken': 0, 'failed': 0, 'unreachable': 1, 'no_result': 0}
    assert summary['text'][0] == '3 hosts: 2 reachable, 1 unreachable'
    assert summary['text'][-1] == 'Report: JSON %s/oom-fleet-report.json; HTML %s/oom-fleet-report.html; ' \
        '3 Prometheus textfiles under %s/textfiles' % (tmp_path, tmp_path, tmp_path)
    assert summary['drift_text'] == ('2 hosts lack files or units of the policy (never hardened, or removed since: '
                                     'WEB_1, web/1); see %s' % tmp_path)
    again = _action(tmp_path, hosts, [registered('localhost'), registered('unreachable-ssh'), registered('localhost')])
    assert again['written'] == [] and again['textfiles'] == result['textfiles']     # the same names on every run


def test_the_action_reports_a_broken_host_and_names_bad_arguments(tmp_path):
    result = _action(tmp_path, ['good', 'bad'], [registered('localhost'), {'posture': 'high'}])
    assert result['summary']['by_status']['broken'] == 1
    assert 'bad (unreadable result): the audit result is not what oom_audit returns: posture = the text "high"; ' \
        'expected: a mapping' in result['summary']['text']
    with pytest.raises(AnsibleActionFail, match=r'^generated_at = the text "yesterday"; allowed: a UTC time like '):
        task = mock.MagicMock(check_mode=False, async_val=0,
                              args={'hosts': [], 'result_var': 'a', 'dest': str(tmp_path), 'generated_at': 'yesterday'})
        fleet_report.ActionModule(task, mock.MagicMock(), mock.MagicMock(), None, None, None).run(task_vars={})
    with pytest.raises(AnsibleActionFail, match=r'^dest = the text "report"; allowed: an absolute directory'):
        task = mock.MagicMock(check_mode=False, async_val=0, args={'hosts': [], 'result_var': 'a', 'dest': 'report'})
        fleet_report.ActionModule(task, mock.MagicMock(), mock.MagicMock(), None, None, None).run(task_vars={})


def _without_policy(result):
    """What oom_audit returns for a host whose inventory sets no policy: no policy part at all."""
    return dict((k, v) for k, v in result.items()
                if k not in ('settings', 'summary', 'drift', 'missing', 'compliant', 'guards_fired', 'profile', 'killer'))


def test_a_host_without_a_policy_does_not_drift():
    """A fresh host whose inventory sets no policy: nothing compared, drifting 0, said in words."""
    document = fleet.build([('fresh', _without_policy(registered('localhost')))], '2026-12-07T04:00:00Z')
    summary = document['summary']
    assert summary['by_status']['ok'] == 1
    assert (summary['hosts_drifting'], summary['hosts_incomplete'], summary['hosts_no_policy']) == (0, 0, 1)
    assert fleet.drift_text(document) == 'no host is off its policy'
    assert 'Policy: 1 host without a policy in the inventory (not compared)' in fleet.summary_text(document)
    assert '<td data-sort="-1">no policy</td>' in fleet_html.render(document)


def test_values_that_differ_and_files_that_are_absent_are_told_apart():
    drifted = dict(registered('localhost'), summary={'drift': 2, 'missing': 0, 'ok': 7, 'unsupported': 0},
                   drift=2, missing=0, compliant=False)
    document = fleet.build([('drifted', drifted), ('fresh', registered('localhost'))], '2026-12-07T04:00:00Z')
    summary = document['summary']
    assert (summary['hosts_drifting'], summary['hosts_incomplete']) == (1, 1)
    assert fleet.drift_text(document) == (
        "1 host drifts from the inventory's policy (drifted); "
        '1 host lacks files or units of the policy (never hardened, or removed since: fresh)')
    html = fleet_html.render(document)
    assert '2 values differ' in html and '3 files absent' in html


def _domain(kind, path, headroom_kb, time_to_oom_s=None, victim='worker'):
    return {'kind': kind, 'path': path, 'unit': None, 'limit_kb': 1048576, 'usage_kb': 1048576 - headroom_kb,
            'headroom_kb': headroom_kb, 'tasks': 2, 'group_kill': None, 'group_victims': [],
            'next_victim': {'pid': 4242, 'comm': victim, 'unit': None, 'oom_score_adj': 0, 'rss_kb': 8192},
            'forecast': None if time_to_oom_s is None else {'samples': 5, 'span_s': 40.0, 'growth_kb_per_s': 100.0,
                                                            'time_to_oom_s': time_to_oom_s,
                                                            'time_to_oom_range_s': None}}


def test_the_tightest_domain_is_the_soonest_forecast_else_the_least_headroom(tmp_path):
    host = _domain('host', '/', 900000)
    roomy = _domain('memcg', '/roomy.slice', 500000, time_to_oom_s=120.0, victim='cache')
    tight = _domain('memcg', '/tight.slice', 4096)
    posture = dict(registered('localhost')['posture'], domains=[host, roomy, tight])
    read = fleet.read_posture(posture)
    assert read['basics']['tightest_domain'] == {
        'kind': 'memcg', 'path': '/roomy.slice', 'unit': None, 'limit_kb': 1048576, 'headroom_kb': 500000,
        'time_to_oom_s': 120.0, 'next_victim': {'comm': 'cache', 'pid': 4242}}
    read = fleet.read_posture(dict(posture, domains=[host, tight]))
    assert read['basics']['tightest_domain']['path'] == '/tight.slice'
    page = fleet_html.render(fleet.build([('web1', {'posture': dict(posture, domains=[host, roomy, tight])})],
                                         '2026-12-07T04:00:00Z', {}))
    text = re.sub(r'<[^>]+>', ' ', page)
    assert 'Tightest OOM domain' in page
    assert re.search(r'memcg\s+/roomy\.slice\s*: 488\.3 MiB headroom of 1\.0 GiB, full in about 120 s at its present '
                     r'growth; next victim\s+cache\s+\(pid 4242\)', text), text[text.find('Tightest'):][:300]


def test_a_malformed_forecast_makes_the_host_broken():
    bad = dict(_domain('memcg', '/a', 10), forecast={'samples': 'many'})
    entry = fleet.host_entry('web1', {'posture': dict(registered('localhost')['posture'], domains=[bad])})
    assert entry['status'] == 'broken'
    assert 'posture.domains[0].forecast.samples' in entry['message'], entry['message']
