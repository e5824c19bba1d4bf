# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report at scale, on generated fleets made from the real registered results
(tests/unit/fleet_hosts.py): the work grows linearly with the hosts (counted, not timed),
and the page writes its first page of rows and carries every host as data that is safe
inside its <script> element.  The page itself in chromium with 10,000 hosts: the
fleet_audit integration target (check_scale.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import cProfile
import gc
import html
import json
import pstats
import re

import pytest

from ansible_collections.oomguard.linux.plugins.plugin_utils import fleet, fleet_html
from ansible_collections.oomguard.linux.tests.unit import fleet_hosts


def _counted(phase):
    """Function calls made by phase() as cProfile counts them: every Python function, lambda, generator
    step and built-in call.  Deterministic for the same input, unlike a clock."""
    profile = cProfile.Profile()
    collecting = gc.isenabled()
    gc.disable()        # the counts do not depend on it; the run is quicker without it
    try:
        profile.enable()
        try:
            phase()
        finally:
            profile.disable()
    finally:
        if collecting:
            gc.enable()
    return pstats.Stats(profile).total_calls


def _work(count):
    """The calls of each step of the fleet_report action for `count` generated hosts (the JSON is left
    out: json.dumps's own encoder, one pass)."""
    results = fleet_hosts.generated(count)
    made = {}
    calls = {'document': _counted(lambda: made.update(document=fleet.build(results, '2026-12-07T04:00:00Z')))}
    document = made['document']
    assert document['summary']['hosts'] == count
    calls['html'] = _counted(lambda: made.update(page=fleet_html.render(document)))
    calls['textfiles'] = _counted(lambda: [fleet.prometheus(host, 1796616000) for host in document['hosts']])
    calls['console'] = _counted(lambda: (fleet.summary_text(document), fleet.drift_text(document)))
    return calls, made['page']


def test_the_work_grows_linearly_with_the_fleet():
    small, small_page = _work(1000)
    large, large_page = _work(10000)
    growth = dict((step, large[step] / float(small[step])) for step in small)
    # Linear work is 10x; n log n (the one sort of the hosts) a little more; anything quadratic 100x.
    assert all(ratio < 20 for ratio in growth.values()), (growth, small, large)
    assert sum(large.values()) < 20 * sum(small.values())
    # The page grows with the hosts' data, its first page of rows and summary stay.
    assert len(large_page) < 20 * len(small_page)


@pytest.fixture(scope='module')
def fleet_page():
    local = fleet_hosts.registered('localhost')
    results = fleet_hosts.generated(1000) + [(name, local) for name in fleet_hosts.ODD_NAMES]
    document = fleet.build(results, '2026-12-07T04:00:00Z')
    return document, fleet_html.render(document)


def _data(page):
    found = re.search(r'<script type="application/json" id="fleet-data">(.*?)</script>', page, re.S)
    return found.group(1)


def _markup(nodes, ref):
    """A row from the page's data, built as the page's script builds it (element(ref)), as HTML."""
    node = nodes[ref]
    tag, attributes = node[0], node[1] or {}
    assert tag in fleet_html.TAGS and set(attributes) <= fleet_html.ATTRIBUTES
    start = '<%s%s>' % (tag, ''.join(' %s="%s"' % (name, html.escape(value, quote=True)) for name, value in attributes.items()))
    if tag == 'br':
        return start
    children = []
    for child in node[2:]:
        if isinstance(child, int):
            assert 0 <= child < ref        # an earlier node: no loop
            children.append(_markup(nodes, child))
        else:
            children.append(html.escape(child, quote=True))
    return '%s%s</%s>' % (start, ''.join(children), tag)


def _text(nodes, ref):
    return ''.join(_text(nodes, child) if isinstance(child, int) else child for child in nodes[ref][2:])


def test_the_page_writes_the_first_page_and_carries_every_host(fleet_page):
    document, page = fleet_page
    data = json.loads(_data(page))
    nodes, rows = data['nodes'], data['rows']
    assert data['page_size'] == fleet_html.PAGE_SIZE == 50 and len(rows) == 1007
    # Every host, in the document's order (riskiest first), its name the first cell's text.
    names = [_text(nodes, nodes[row][2]) for row in rows]
    assert names == [fleet_html._clean(h['name']) for h in document['hosts']]
    # The first page is written as HTML too, and the script builds exactly those rows from the data.
    body = re.search(r'<table id="hosts" class="sortable">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    written = re.split(r'\n(?=<tr data-level=)', body.strip())
    assert len(written) == 50
    assert written == [_markup(nodes, row) for row in rows[:50]]
    assert '<span id="filter-count" class="muted" data-matching="1007" data-total="1007">' in page
    assert 'hosts 1\u201350 of 1007, riskiest first' in page
    assert 'the other 957 hosts need JavaScript' in page
    # The same finding's advice on hundreds of hosts is one node: the data is far smaller than the rows as HTML.
    assert len(nodes) < 40 * len(rows)
    assert len(_data(page)) < 0.6 * sum(len(_markup(nodes, row)) for row in rows)


def test_the_data_is_inert_inside_its_script_element(fleet_page):
    document, page = fleet_page
    data = _data(page)
    # ASCII only (U+2028, U+2029 and lone surrogates as escapes); nothing the HTML parser reads as a tag
    # or a character reference.
    assert data.isascii() and not set('<>&') & set(data)
    assert '\\u2028' in data and '\\u003c' in data and '\\u0026' in data
    odd = [h['name'] for h in document['hosts'] if not h['name'].startswith('fleet-')]
    assert len(odd) == 2 + len(fleet_hosts.ODD_NAMES)
    decoded = json.dumps(json.loads(data))
    for name in odd:
        assert json.dumps(fleet_html._clean(name))[1:-1] in decoded
    # The page's two script elements, and no other: a name like <script>alert(1)</script> is text.
    assert page.count('<script') == 2 and page.count('</script>') == 2


def test_a_lone_surrogate_anywhere_still_writes_every_file():
    names = ['latin1-\udcff', 'broken-\ud800', 'ok']
    results = [(names[0], {'unreachable': True, 'msg': 'ssh said \udcfe'}),
               (names[1], {'failed': True, 'msg': 'half an escape \ud800'}),
               ('ok', fleet_hosts.registered('localhost'))]
    document = fleet.build(results, '2026-12-07T04:00:00Z')
    page = fleet_html.render(document)
    page.encode('utf-8')
    assert 'broken-\\ud800' in page and 'half an escape \\ud800' in page
    text = fleet.to_json(document)
    text.encode('utf-8')
    # The JSON's escape reads back as the very name.
    assert sorted(h['name'] for h in json.loads(text)['hosts']) == sorted(names)
    for host in document['hosts']:
        fleet.prometheus(host, 1).encode('utf-8')


def test_many_hosts_not_fully_audited_are_listed_up_to_a_hundred():
    refused = fleet_hosts.registered('unreachable-ssh')
    document = fleet.build([('far-%03d' % i, refused) for i in range(150)], 'now')
    page = fleet_html.render(document)
    section = page[page.index('<h2>Hosts not fully audited</h2>'):]
    assert section.count('<tr><td>far-') == 100 and 'far-099' in section and 'far-100' not in section
    assert 'and 50 more hosts: choose a status in the host table' in section


def test_the_riskiest_hosts_are_in_the_summary():
    local = fleet_hosts.registered('localhost')
    results = [('h%02d' % score, dict(local, posture=dict(local['posture'], risk_score=score))) for score in range(30)]
    page = fleet_html.render(fleet.build(results, 'now'))
    card = re.search(r'<h2>Riskiest hosts</h2>(.*?)</div>', page, re.S).group(1)
    assert re.findall(r'<tr><td>(h\d\d)</td>', card) == ['h%02d' % score for score in range(29, 19, -1)]


@pytest.mark.parametrize('node', [('script', (), ('alert(1)',)), ('span', (('onclick', 'alert(1)'),), ()),
                                  ('td', (), (('img', (('src', 'x'),), ()),))])
def test_a_row_holds_only_what_the_script_builds(node):
    with pytest.raises(ValueError, match='a row may not hold'):
        fleet_html.Nodes().add(node)
