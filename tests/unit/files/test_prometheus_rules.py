# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Prometheus alerting rules of files/prometheus, their unit tests and their runbooks.

promtool checks the rules and runs their unit tests (oomguard.rules.test.yml); the rest is
checked here: every alert has a severity, a summary, a description and a runbook_url whose
anchor is a heading of docs/runbooks.md, and every alert has a case where it fires and one
where it must not.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import io
import os
import re
import shutil
import subprocess

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
# tests/unit/files -> the collection's root (in the .build copy when run by tools/run units).
COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
RULES = 'files/prometheus/oomguard.rules.yml'
RULE_TESTS = 'files/prometheus/oomguard.rules.test.yml'
RUNBOOKS = 'docs/runbooks.md'
RUNBOOK_BASE = 'https://github.com/oomguard/linux/blob/main/docs/runbooks.md#'
SEVERITIES = ('critical', 'warning', 'info')
ANNOTATIONS = ('summary', 'description', 'runbook_url')
PROMTOOL_TIMEOUT_S = 120


def _read(relpath):
    path = os.path.join(COLLECTION, relpath)
    if not os.path.isfile(path):
        pytest.fail('%s is not in %s: the unit tests run on a copy of the collection, and this file '
                    'must be in it' % (relpath, COLLECTION))
    with io.open(path, encoding='utf-8') as handle:
        return handle.read()


def _alerts():
    doc = yaml.safe_load(_read(RULES))
    groups = doc['groups']
    assert [group['name'] for group in groups] == ['oomguard']
    alerts = [rule for rule in groups[0]['rules'] if 'alert' in rule]
    assert alerts, 'no alerting rule in %s' % RULES
    return alerts


def _promtool(*args):
    """promtool's exit code and output, run from the collection's root."""
    promtool = shutil.which('promtool')
    if promtool is None:
        pytest.fail('promtool is not installed. On Debian 12 it comes with Prometheus 2.42: '
                    'apt-get install -y prometheus (or apt-get install -y --no-install-recommends prometheus)')
    proc = subprocess.run([promtool] + list(args), cwd=COLLECTION, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=PROMTOOL_TIMEOUT_S,
                          check=False)
    return proc.returncode, proc.stdout


def _slug(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def _anchors(markdown):
    """Anchors of the headings of a Markdown text (headings in fenced code blocks are not headings)."""
    anchors = []
    fenced = False
    for line in markdown.splitlines():
        if line.startswith('```'):
            fenced = not fenced
            continue
        match = re.match(r'^#{1,6} +(.+?) *#*$', line)
        if match and not fenced:
            anchors.append(_slug(match.group(1)))
    return anchors


def _test_cases():
    """{alertname: [exp_alerts of each case]} of the rule tests."""
    doc = yaml.safe_load(_read(RULE_TESTS))
    assert doc['rule_files'] == [os.path.basename(RULES)]
    cases = {}
    for group in doc['tests']:
        for case in group.get('alert_rule_test') or []:
            cases.setdefault(case['alertname'], []).append(case.get('exp_alerts') or [])
    return cases


def test_promtool_check_rules():
    rc, output = _promtool('check', 'rules', RULES)
    assert rc == 0, 'promtool check rules %s failed (rc %d):\n%s' % (RULES, rc, output)
    assert 'SUCCESS: %d rules found' % len(_alerts()) in output, output


def test_promtool_test_rules():
    rc, output = _promtool('test', 'rules', RULE_TESTS)
    assert rc == 0, 'promtool test rules %s failed (rc %d):\n%s' % (RULE_TESTS, rc, output)
    assert 'SUCCESS' in output, output


def test_every_alert_has_severity_summary_description_and_runbook():
    problems = []
    names = [alert['alert'] for alert in _alerts()]
    assert len(names) == len(set(names)), 'alert names repeat: %s' % names
    for alert in _alerts():
        name = alert['alert']
        severity = (alert.get('labels') or {}).get('severity')
        if severity not in SEVERITIES:
            problems.append('%s: severity %r, expected one of %s' % (name, severity, ', '.join(SEVERITIES)))
        annotations = alert.get('annotations') or {}
        for key in ANNOTATIONS:
            if not str(annotations.get(key) or '').strip():
                problems.append('%s: no %s annotation' % (name, key))
        url = annotations.get('runbook_url') or ''
        if url != RUNBOOK_BASE + name.lower():
            problems.append('%s: runbook_url %s, expected %s%s' % (name, url, RUNBOOK_BASE, name.lower()))
    assert not problems, '\n'.join(problems)


def test_every_runbook_anchor_is_a_heading_of_the_runbooks():
    anchors = _anchors(_read(RUNBOOKS))
    repeated = sorted(set(anchor for anchor in anchors if anchors.count(anchor) > 1))
    assert not repeated, '%s has headings with the same anchor (GitHub appends -1 to the second): %s' % (
        RUNBOOKS, ', '.join(repeated))
    missing = []
    for alert in _alerts():
        url = alert['annotations']['runbook_url']
        anchor = url.split('#', 1)[1] if '#' in url else ''
        if anchor not in anchors:
            missing.append('%s: #%s' % (alert['alert'], anchor))
    assert not missing, 'runbook anchors with no heading in %s:\n%s' % (RUNBOOKS, '\n'.join(missing))


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases = _test_cases()
    names = set(alert['alert'] for alert in _alerts())
    unknown = sorted(set(cases) - names)
    # A test of a misspelt alert name would pass wherever it expects no alert.
    assert not unknown, '%s tests alerts that %s does not define: %s' % (RULE_TESTS, RULES, ', '.join(unknown))
    no_firing = sorted(name for name in names if not any(expected for expected in cases.get(name, [])))
    no_quiet = sorted(name for name in names if not any(not expected for expected in cases.get(name, [])))
    assert not no_firing, 'alerts without a case where they fire in %s: %s' % (RULE_TESTS, ', '.join(no_firing))
    assert not no_quiet, 'alerts without a case where they must not fire in %s: %s' % (
        RULE_TESTS, ', '.join(no_quiet))
