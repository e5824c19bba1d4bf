# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for the posture judge.

Most cases are data in posture_cases.yml: a real snapshot, a few changes,
the findings expected.  The tests here run them, and check what data cannot:
the score arithmetic, the catalogue against docs/findings.md, purity.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import json
import os
import re

import pytest
import yaml

from ansible_collections.oomguard.linux.plugins.module_utils import posture

HERE = os.path.dirname(os.path.abspath(__file__))
SNAPSHOTS = os.path.join(HERE, '..', '..', 'fixtures', 'snapshots')
CASES_FILE = os.path.join(HERE, 'posture_cases.yml')
FINDINGS_DOC = os.path.join(HERE, '..', '..', '..', '..', 'docs', 'findings.md')

with open(CASES_FILE) as _handle:
    CASES_DATA = yaml.safe_load(_handle)
CASES = CASES_DATA['cases']


def load_snapshot(name):
    with open(os.path.join(SNAPSHOTS, name)) as handle:
        return json.load(handle)


def _walk(tree, path):
    """The container holding path's last key, and that key."""
    for key in path[:-1]:
        tree = tree[key]
    return tree, path[-1]


def build_snapshot(case):
    snap = load_snapshot(case.get('base', CASES_DATA['base']))
    for path, value in case.get('set') or []:
        parent, key = _walk(snap, path)
        parent[key] = copy.deepcopy(value)
    for path in case.get('delete') or []:
        parent, key = _walk(snap, path)
        del parent[key]
    return snap


def assert_subset(expected, actual, where):
    """expected is contained in actual: dicts by key, lists item by item."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), '%s: expected a dict, got %r' % (where, actual)
        for key, value in expected.items():
            assert key in actual, '%s: no key %r in %r' % (where, key, sorted(actual))
            assert_subset(value, actual[key], '%s.%s' % (where, key))
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), \
            '%s: expected %d items, got %r' % (where, len(expected), actual)
        for index, (item, got) in enumerate(zip(expected, actual)):
            assert_subset(item, got, '%s[%d]' % (where, index))
    else:
        assert actual == expected, '%s: expected %r, got %r' % (where, expected, actual)


@pytest.mark.parametrize('case', CASES, ids=[c['name'] for c in CASES])
def test_case(case):
    snap = build_snapshot(case)
    result = posture.judge(snap, case.get('thresholds'))
    found = dict((f['id'], f) for f in result['findings'])
    skipped = dict((entry['id'], entry['reason']) for entry in result['not_evaluated'])

    for fid, severity in (case.get('present') or {}).items():
        assert fid in found, '%s not found; found %s; not evaluated %s' % (fid, sorted(found), skipped)
        assert found[fid]['severity'] == severity
    for fid in case.get('absent') or []:
        assert fid in posture.CATALOGUE, 'unknown id %s in the case' % fid
        assert fid not in found, '%s fired: %r' % (fid, found[fid]['evidence'])
    if case.get('only'):
        assert sorted(found) == sorted(case.get('present') or {})
    if 'risk_score' in case:
        assert result['risk_score'] == case['risk_score']
    if 'risk_level' in case:
        assert result['risk_level'] == case['risk_level']
    for fid, evidence in (case.get('evidence') or {}).items():
        assert_subset(evidence, found[fid]['evidence'], fid)
    for fid, keys in (case.get('evidence_absent') or {}).items():
        for key in keys:
            assert key not in found[fid]['evidence']
    for fid in case.get('not_evaluated') or []:
        assert fid in skipped, '%s was evaluated' % fid
        assert fid not in found
    if case.get('all_evaluated'):
        assert skipped == {}
    # A reason from the safety net means a check met a shape it does not
    # handle on purpose: that is a bug to fix, not an outcome to accept.
    assert not [r for r in skipped.values() if r.startswith('unexpected')], skipped


def test_result_shape_on_live_capture():
    result = posture.judge(build_snapshot({}))
    assert sorted(result) == ['findings', 'not_evaluated', 'risk_level', 'risk_score', 'summary']
    ranks = [(posture.SEVERITY_RANK[f['severity']], f['id']) for f in result['findings']]
    assert ranks == sorted(ranks)
    assert sum(result['summary'].values()) == len(result['findings'])
    for finding in result['findings']:
        assert sorted(finding) == ['advice', 'evidence', 'id', 'severity', 'title']
        assert result['summary'][finding['severity']] >= 1
        json.dumps(finding)  # plain data, fit for facts


def test_judge_does_not_change_the_snapshot():
    snap = build_snapshot({'set': [[['sysctl', 'vm.panic_on_oom'], 2], [['cgroups', 0, 'max_bytes'], 10]]})
    before = copy.deepcopy(snap)
    posture.judge(snap)
    assert snap == before


def test_the_fixture_has_no_supervisor_arguments():
    snap = load_snapshot(CASES_DATA['base'])
    assert snap['kernel']['cmdline'] == '<dropped: supervisor arguments>'


# -- thresholds ---------------------------------------------------------------

def test_thresholds_override_moves_the_line():
    snap = build_snapshot({'set': [[['memory', 'MemAvailable'], 4000000]]})  # 16.2 %
    assert 'memavailable_low' not in ids(posture.judge(snap))
    assert 'memavailable_low' in ids(posture.judge(snap, {'memavailable_low_percent': 20}))


def test_unknown_threshold_is_an_error():
    with pytest.raises(ValueError, match='memavailable_lwo_percent'):
        posture.judge(build_snapshot({}), {'memavailable_lwo_percent': 20})


def test_defaults_are_not_changed_by_an_override():
    posture.judge(build_snapshot({}), {'critical_processes': ['python3']})
    assert 'python3' not in posture.DEFAULT_THRESHOLDS['critical_processes']


def ids(result):
    return [f['id'] for f in result['findings']]


# -- the score ----------------------------------------------------------------

def findings_of(*severities):
    return [{'severity': s} for s in severities]


@pytest.mark.parametrize('severities, score, level', [
    ((), 0, 'low'),
    (('info', 'info'), 0, 'low'),
    (('low',) * 4, 12, 'low'),
    (('low',) * 5, 15, 'medium'),         # the score alone reaches medium
    (('medium',), 10, 'medium'),          # the worst finding sets medium
    (('medium',) * 3 + ('low',) * 3, 39, 'medium'),
    (('medium',) * 4, 40, 'high'),        # four mediums compound to high
    (('high',), 25, 'high'),
    (('high',) * 2 + ('medium',) * 2 + ('low',) * 3, 79, 'critical'),
    (('high',) * 2 + ('medium',) * 2 + ('low',) * 1, 73, 'high'),
    (('critical',), 50, 'critical'),      # one critical is critical
    (('critical',) * 3, 100, 'critical'),  # saturates
])
def test_risk_arithmetic(severities, score, level):
    findings = findings_of(*severities)
    assert posture.risk_score(findings) == score
    assert posture.risk_level(posture.risk_score(findings), findings) == level


def test_risk_is_monotonic():
    findings = []
    last_score, last_level = 0, 0
    for severity in ('info', 'low', 'medium', 'low', 'high', 'medium', 'critical', 'high', 'critical'):
        findings.append({'severity': severity})
        score = posture.risk_score(findings)
        level = posture.LEVELS.index(posture.risk_level(score, findings))
        assert score >= last_score and level >= last_level
        last_score, last_level = score, level


# -- the catalogue --------------------------------------------------------------

def test_every_check_owns_known_ids():
    owned = [fid for _check, fids in posture.CHECKS for fid in fids]
    assert len(owned) == len(set(owned)), 'an id belongs to two checks'
    assert sorted(owned) == sorted(posture.CATALOGUE)


@pytest.mark.parametrize('fid', sorted(posture.CATALOGUE))
def test_catalogue_entry(fid):
    entry = posture.CATALOGUE[fid]
    assert re.match(r'^[a-z][a-z0-9_]*$', fid)
    assert entry['severity'] in posture.SEVERITIES
    assert entry['title'] and entry['advice'].endswith('.')
    # The advice names the role and the inventory variable that fix it.
    assert re.search(r'oomguard\.linux\.[a-z_]+ role', entry['advice']), entry['advice']
    assert re.search(r'`oomguard_[a-z_]+', entry['advice']), entry['advice']


def test_every_finding_fires_and_stays_quiet_somewhere():
    fired, quiet = set(), set()
    for case in CASES:
        fired.update(case.get('present') or {})
        quiet.update(case.get('absent') or [])
        if case.get('only'):
            quiet.update(set(posture.CATALOGUE) - set(case.get('present') or {}))
    assert sorted(set(posture.CATALOGUE) - fired) == []
    assert sorted(set(posture.CATALOGUE) - quiet) == []


def test_case_names_are_unique():
    names = [c['name'] for c in CASES]
    assert len(names) == len(set(names))


def read_doc():
    with open(FINDINGS_DOC) as handle:
        return handle.read()


def test_doc_lists_every_id_with_its_severity():
    doc = read_doc()
    documented = dict(re.findall(r'^### `([a-z0-9_]+)`\n- \*\*Severity:\*\* ([a-z]+)$', doc, re.M))
    assert sorted(documented) == sorted(posture.CATALOGUE)
    for fid, entry in posture.CATALOGUE.items():
        assert documented[fid] == entry['severity'], fid


def test_doc_lists_every_threshold_and_weight():
    doc = read_doc()
    rows = dict(re.findall(r'^\| `([a-z0-9_]+)` \| ([^|]+) \|', doc, re.M))
    assert sorted(rows) == sorted(posture.DEFAULT_THRESHOLDS)
    for name, default in posture.DEFAULT_THRESHOLDS.items():
        if not isinstance(default, list):
            assert rows[name].strip() == str(default), name
    weights = dict(re.findall(r'^\| (critical|high|medium|low|info) \| (\d+) \|$', doc, re.M))
    assert dict((k, int(v)) for k, v in weights.items()) == posture.SEVERITY_WEIGHTS
    for level, bound in posture.LEVEL_SCORE_BOUNDS:
        assert '`%s` at ≥ %d' % (level, bound) in doc


# -- oom_facts' sampling and what_if options -----------------------------------------

def _labels():
    from ansible_collections.oomguard.linux.plugins.module_utils._engine import Labels
    return Labels('web1')


@pytest.mark.parametrize('samples, interval_s, messages', [
    (1, 10.0, []),
    (361, 10.0, []),
    (0, 10.0, ['host web1: samples = 0; allowed: an integer 1..720']),
    (721, 1.0, ['host web1: samples = 721; allowed: an integer 1..720']),
    (5, 0, ['host web1: interval_s = 0; allowed: seconds, a number above 0 and at most 3600']),
    (5, True, ['host web1: interval_s = true; allowed: seconds, a number above 0 and at most 3600']),
    (362, 10.0, ['host web1: samples x interval_s = 361 x 10.0 s is longer than 3600 s; allowed: a watch of at most '
                 '3600 s (a longer one belongs in a monitor: docs/domains.md)']),
    # Both wrong: both said, in one run.
    (-1, -1, ['host web1: samples = -1; allowed: an integer 1..720',
              'host web1: interval_s = -1; allowed: seconds, a number above 0 and at most 3600']),
])
def test_sampling_options(samples, interval_s, messages):
    dummy, dummy2, problems = posture.sampling_options(samples, interval_s, _labels(), lambda key: key)
    assert [p.message for p in problems] == messages


@pytest.mark.parametrize('value, request_or_messages', [
    (None, None),
    ({'path': 'system.slice/db.service', 'grow_kb': 1024}, {'path': '/system.slice/db.service', 'grow_kb': 1024, 'pid': None}),
    ({'path': '//system.slice//db.service/', 'grow_kb': '2048', 'pid': 42},
     {'path': '/system.slice/db.service', 'grow_kb': 2048, 'pid': 42}),
    ({'path': '/a/../etc', 'grow_kb': 1}, ["host web1: what_if['path'] = '/a/../etc'; allowed: a cgroup path without . or .. parts"]),
    ({'path': '', 'grow_kb': 0, 'pid': -3, 'size': 1}, [
        "host web1: what_if['size']: unknown key; allowed: path, grow_kb, pid",
        "host web1: what_if['path'] = ''; allowed: a cgroup path such as system.slice/db.service (at most 4096 characters)",
        "host web1: what_if['grow_kb'] = 0; allowed: an integer 1..1125899906842624",
        "host web1: what_if['pid'] = -3; allowed: an integer 1..4194304"]),
    ('db', ['host web1: what_if must be a mapping with path, grow_kb and optionally pid']),
])
def test_what_if_options(value, request_or_messages):
    request, problems = posture.what_if_options(value, _labels(), lambda key: key)
    if isinstance(request_or_messages, list):
        assert request is None and [p.message for p in problems] == request_or_messages
    else:
        assert problems == [] and request == request_or_messages
