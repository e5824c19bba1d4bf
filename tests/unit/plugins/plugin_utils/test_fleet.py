# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report builder, its HTML and its Prometheus textfiles, on real registered
results (tests/unit/fixtures/fleet, see its README): this machine audited, a host whose
SSH port refused, a host without the interpreter, a host with an invalid inventory."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import json
import os
import re
from html.parser import HTMLParser

import pytest

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
    assert summary['by_status'] == {'ok': 1, 'partial': 1, 'failed': 1, 'unreachable': 1, 'no_result': 0}
    local = registered('localhost')
    assert summary['oom_kills'] == 2 * local['events']['summary']['events']
    assert summary['oom_kills_by_cause'] == dict((k, 2 * v) for k, v in local['events']['summary']['by_cause'].items())
    assert summary['hosts_drifting'] == (0 if local['compliant'] else 1)
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
    assert fleet.textfile_name('we"ird/host') == 'oomguard-we_ird_host.prom'


class _Page(HTMLParser):
    def __init__(self):
        HTMLParser.__init__(self)
        self.rows = 0
        self.urls = []
        self.scripts = 0
        self.svg = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'tr' and 'data-status' in attrs:
            self.rows += 1
        if tag == 'svg':
            self.svg += 1
        if tag == 'script':
            self.scripts += 1
            assert 'src' not in attrs
        for key in ('src', 'href'):
            if attrs.get(key):
                self.urls.append(attrs[key])


def test_the_html_is_self_contained_and_lists_every_host(document):
    page = fleet_html.render(document)
    parser = _Page()
    parser.feed(page)
    assert parser.rows == 4 and parser.scripts == 1 and parser.svg >= 2
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
