# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report survives any host result: the malformed results of
fleet_malformed_cases.yml, then random JSON-like trees put in place of each field
of a real result (registered-localhost.json).  A bad host is 'broken' with the
field named and what was expected; the good host beside it is reported as
usual; the JSON, the HTML, the textfiles, the console lines and the posture
filter all come out whole, escaped and without Python reprs."""

import copy
import json
import os
import random
import re
from html.parser import HTMLParser

import pytest
import yaml

from ansible_collections.oomguard.linux.plugins.filter.posture_report import posture_report
from ansible_collections.oomguard.linux.plugins.plugin_utils import fleet, fleet_html

HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, '..', '..', 'fixtures', 'fleet')
prometheus_parser = pytest.importorskip('prometheus_client.parser')

with open(os.path.join(HERE, 'fleet_malformed_cases.yml')) as _handle:
    CASES = yaml.safe_load(_handle)

with open(os.path.join(FIXTURES, 'registered-localhost.json')) as _handle:
    LOCAL_TEXT = _handle.read()
LOCAL = json.loads(LOCAL_TEXT)

# What a Python repr or a unit-less placeholder looks like in text meant for people.
REPR = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\{'|\['|'\]|'\}|\bnan\b|\binf\b")
PATH_PART = re.compile(r'([^.\[\]]+)|\[(\d+)\]')


def _steps(path):
    return [int(index) if index else key for key, index in PATH_PART.findall(path)]


def _set(tree, path, value):
    steps = _steps(path)
    for step in steps[:-1]:
        tree = tree[step]
    tree[steps[-1]] = value


def _delete(tree, path):
    steps = _steps(path)
    for step in steps[:-1]:
        tree = tree[step]
    del tree[steps[-1]]


def _expand(value):
    if isinstance(value, dict) and set(value) == {'repeat', 'times'}:
        return value['repeat'] * value['times']
    return value


def case_result(case):
    if case.get('base') == 'none':
        return _expand(case['result']) if not isinstance(case['result'], dict) else dict(
            (k, _expand(v)) for k, v in case['result'].items())
    result = copy.deepcopy(LOCAL)
    for path, value in (case.get('set') or {}).items():
        _set(result, path, _expand(value))
    for path in case.get('delete') or []:
        _delete(result, path)
    return result


class _Page(HTMLParser):
    """The page's elements; a script element anywhere but the page's own one is injected."""

    def __init__(self):
        HTMLParser.__init__(self)
        self.tags = []
        self.handlers = []
        self.scripts = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.handlers.extend(name for name, dummy in attrs if name.startswith('on'))
        if tag == 'script':
            self.scripts.append(dict(attrs))


def check_outputs(document, names):
    """Everything the action writes or prints, from one document."""
    text = fleet.to_json(document)
    assert json.loads(text, parse_constant=lambda c: pytest.fail('non-JSON constant %s' % c)) == json.loads(text)
    page = fleet_html.render(document)
    parser = _Page()
    parser.feed(page)
    # The rows' data (JSON, never run) and the page's own script; nothing else.
    assert parser.scripts == [{'type': 'application/json', 'id': 'fleet-data'}, {}] and parser.handlers == []
    assert parser.tags.count('tr') >= len(names)
    for host in document['hosts']:
        families = list(prometheus_parser.text_string_to_metric_families(fleet.prometheus(host, 1795444383)))
        labels = set(s.labels['host'] for f in families for s in f.samples)
        assert labels == {host['name']}
    lines = fleet.summary_text(document)
    assert all(isinstance(line, str) for line in lines)
    assert not REPR.search('\n'.join(lines)), lines
    return page


@pytest.mark.parametrize('case', CASES, ids=[c['id'] for c in CASES])
def test_a_malformed_host_is_listed_as_broken_and_the_others_reported(case):
    name = case.get('host', 'bad-host')
    good = fleet.host_entry('good', copy.deepcopy(LOCAL))
    document = fleet.build([('good', copy.deepcopy(LOCAL)), (name, case_result(case))], 'now')
    hosts = dict((h['name'], h) for h in document['hosts'])
    assert hosts['good'] == good and good['status'] == 'ok' and good['risk_score'] == LOCAL['posture']['risk_score']
    bad = hosts[name]
    expect = case['expect']
    assert bad['status'] == expect['status'], bad['message']
    if expect['status'] == 'broken':
        assert bad['malformed'][0].startswith(expect['field'] + ' = '), bad['malformed']
        assert expect.get('says', '') in bad['malformed'][0]
        assert bad['message'].startswith('the audit result is not what oom_audit returns: ' + expect['field'] + ' = ')
        assert document['summary']['by_status']['broken'] == 1
        assert not REPR.search(bad['message']), bad['message']
    if 'findings_by_severity' in expect:
        assert bad['findings_by_severity'] == expect['findings_by_severity']
    assert len(bad['message'] or '') <= fleet.MESSAGE_CHARS + 200
    page = check_outputs(document, [name, 'good'])
    assert '<script>alert' not in page and '<img src=x' not in page and '<svg onload' not in page
    posture = case_result(case).get('posture') if isinstance(case_result(case), dict) else None
    if posture is not None:
        text = posture_report(posture, host=name)
        assert not REPR.search(text.replace(name, '')), text[:500]
        if expect.get('field', '').startswith('posture'):
            assert text.startswith('OOM posture of %s: cannot be read: %s = ' % (name, expect['field']))


def test_an_unreachable_host_with_a_huge_message_keeps_its_start_and_end():
    case = dict((c['id'], c) for c in CASES)['unreachable_with_a_one_megabyte_message']
    entry = fleet.host_entry('far', case_result(case))
    assert entry['status'] == 'unreachable' and len(entry['message']) == fleet.MESSAGE_CHARS
    assert entry['message'].startswith('ssh: refused ') and '\u2026' in entry['message']


# -- random trees in place of each field -----------------------------------------------

FIELDS = (
    'posture', 'posture.risk_score', 'posture.risk_level', 'posture.findings', 'posture.findings[0]',
    'posture.findings[0].severity', 'posture.findings[1].evidence', 'posture.kernel', 'posture.kernel.release',
    'posture.memory', 'posture.memory.MemAvailable', 'posture.memory.SwapTotal', 'posture.cgroup_mode',
    'posture.memory_controller', 'posture.pressure', 'posture.pressure.full', 'posture.pressure.some.avg10',
    'posture.victims', 'posture.victims[0]', 'posture.victims[0].rss_kb', 'posture.victims[0].pid',
    'posture.early_killers', 'posture.notes', 'posture.not_evaluated', 'posture.oom_kills_since_boot',
    'settings', 'settings[0]', 'settings[5].live', 'summary', 'summary.missing', 'compliant', 'guards_fired', 'profile',
    'slab', 'slab.top_caches', 'slab.sunreclaim_percent', 'slab.flagged', 'slab.reasons', 'slab.unread',
    'events', 'events.events', 'events.events[0]', 'events.events[0].victim', 'events.events[0].timestamp',
    'events.summary', 'events.summary.by_cause', 'events.summary.events', 'events.kill_loops', 'events.notes',
    'errors', 'failed', 'unreachable', 'skipped',
)
TEXTS = ('', 'x', 'medium', '<script>alert(1)</script>', 'w\u00e9b \u202e \u65e5\u672c', 'a"b\\c\nd', '0', '-1', 'v2',
         '&amp;', 'high')


def random_tree(rng, depth=0):
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice((0, 1, -1, 7, 100, 101, 2 ** 64, -2 ** 63))
    if kind == 3:
        return rng.choice((0.5, -0.0, 1e308, float('nan'), float('inf'), float('-inf'), 99.9))
    if kind == 4:
        return rng.choice(TEXTS)
    if kind == 5:
        return rng.choice(TEXTS) * rng.choice((1, 500, 5000))
    if kind in (6, 7):
        return [random_tree(rng, depth + 1) for dummy in range(rng.randrange(4))]
    keys = [rng.choice(TEXTS + ('id', 'severity', 'comm', 'pid', 'avg10', 'events', 'by_cause'))
            if rng.random() < 0.85 else rng.choice((1, 2.5, None, True)) for dummy in range(rng.randrange(4))]
    return dict((key, random_tree(rng, depth + 1)) for key in keys)


def test_random_trees_in_any_field_never_break_the_report():
    rng = random.Random(18)
    seen = {'ok': 0, 'broken': 0}
    for iteration in range(300):
        field = FIELDS[iteration % len(FIELDS)]
        value = random_tree(rng)
        result = json.loads(LOCAL_TEXT)
        _set(result, field, value)
        name = rng.choice(('fuzzed', '<b>fuzz</b>', 'web/1', 'f\u00fczz "q"\n'))
        document = fleet.build([('good', LOCAL), (name, result)], 'now')
        hosts = dict((h['name'], h) for h in document['hosts'])
        assert hosts['good']['status'] == 'ok'
        bad = hosts[name]
        assert bad['status'] in ('ok', 'partial', 'broken', 'failed', 'unreachable'), (field, value)
        if bad['status'] == 'broken':
            # Each problem names the field that was replaced, or one inside it.
            assert bad['malformed'] and all(p.startswith(field) for p in bad['malformed']), (field, bad['malformed'])
        seen[bad['status']] = seen.get(bad['status'], 0) + 1
        check_outputs(document, [name, 'good'])
        if field.startswith('posture'):
            text = posture_report(result['posture'], host='h')
            assert not REPR.search(text), (field, text[:400])
            if bad['status'] == 'broken' and any(p.startswith('posture') for p in bad['malformed']):
                assert text.startswith('OOM posture of h: cannot be read: posture')
    # The trees are random, not hopeless: some fields take them, most do not.
    assert seen['ok'] > 15 and seen['broken'] > 150, seen


def test_every_number_in_the_json_is_finite():
    result = copy.deepcopy(LOCAL)
    result['slab']['sunreclaim_percent'] = float('nan')
    document = fleet.build([('h', result)], 'now')
    host = document['hosts'][0]
    assert host['slab'] is None and host['status'] == 'broken'
    assert host['malformed'] == ['slab.sunreclaim_percent = NaN; expected: a finite number 0..100']
    constants = []
    json.loads(fleet.to_json(document), parse_constant=constants.append)
    assert constants == []
