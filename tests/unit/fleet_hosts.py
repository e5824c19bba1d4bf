# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Registered results for a fleet of any size, for the fleet report at scale: made from the
real ones of tests/unit/fixtures/fleet (this machine audited, a refused SSH port, a host
without its interpreter, an invalid inventory), varied per host where real hosts differ.

Not a test.  Used by tests/unit/plugins/plugin_utils/test_fleet.py (the work stays linear),
benchmarks/fleet_report_scale.py and the fleet_audit integration target (10,000 hosts in
chromium).  Standard library only; the results are shallow copies that share what they do
not change (the report never changes a result), so 10,000 cost little to make."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import random

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'fleet')
ORIGINS = ('localhost', 'unreachable-ssh', 'no-python', 'bad-inventory')
# What the policy part of oom_audit returns; a host whose inventory sets no policy has none of it.
POLICY_KEYS = ('settings', 'summary', 'drift', 'missing', 'compliant', 'guards_fired', 'profile', 'killer')
# Names a fleet may hold and a page must escape: markup, quotes, a newline, a non-UTF-8 byte as Python
# keeps it (surrogateescape), a broken surrogate escape from JSON, right-to-left override, CJK.
ODD_NAMES = ('<b>web</b>&"x"', "db'1<script>alert(1)</script>", 'line\nbreak', 'latin1-\udcff', 'broken-\ud800',
             'r\u202etl \u65e5\u672c', 'u2028-\u2028-\u2029')


def registered(origin):
    with open(os.path.join(FIXTURES, 'registered-%s.json' % origin)) as handle:
        return json.load(handle)


def level_of(score):
    return 'critical' if score >= 75 else 'high' if score >= 50 else 'medium' if score >= 25 else 'low'


def _domain(rng, index):
    """One memory cgroup domain as oom_facts returns it (see test_fleet._domain)."""
    limit = rng.choice((524288, 1048576, 4194304))
    headroom = rng.randrange(1024, limit)
    return {'kind': 'memcg', 'path': '/system.slice/app-%d.service' % (index % 50), 'unit': 'app-%d.service' % (index % 50),
            'limit_kb': limit, 'usage_kb': limit - headroom, 'headroom_kb': headroom, 'tasks': rng.randrange(1, 40),
            'group_kill': None, 'group_victims': [],
            'next_victim': {'pid': rng.randrange(300, 4000000), 'comm': 'app-%d' % (index % 50), 'unit': None,
                            'oom_score_adj': 0, 'rss_kb': rng.randrange(1024, limit)},
            'forecast': None if rng.random() < 0.7 else {
                'samples': 5, 'span_s': 40.0, 'growth_kb_per_s': 100.0, 'time_to_oom_s': float(rng.randrange(60, 86400)),
                'time_to_oom_range_s': None}}


def _audited(rng, index, base):
    """An audited host: this machine's capture with its own score, findings, memory, victim, domains and kills."""
    posture = base['posture']
    score = rng.randrange(0, 101)
    findings = [f for f in posture['findings'] if rng.random() < 0.7]
    memory = dict(posture['memory'], MemAvailable=rng.randrange(1, posture['memory']['MemTotal']))
    victims = [dict(posture['victims'][0], pid=rng.randrange(300, 4000000), rss_kb=rng.randrange(1024, 8388608))]
    victims += posture['victims'][1:]
    result = dict(base, posture=dict(posture, risk_score=score, risk_level=level_of(score), findings=findings,
                                     memory=memory, victims=victims,
                                     domains=[_domain(rng, index + k) for k in range(rng.randrange(0, 4))]))
    events = base['events']
    kills = []
    # Most hosts of a fleet have no OOM kill in their logs; one in five has some (up to oom_audit's 20).
    found = rng.randrange(1, len(events['events']) + 1) if rng.random() < 0.2 else 0
    for number, event in enumerate(events['events'][:found]):
        victim = dict(event['oom_kill_task'], pid=rng.randrange(300, 4000000))
        kills.append(dict(event, oom_kill_task=victim, timestamp='2026-%02d-%02dT%02d:%02d:%02d+00:00' % (
            rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(24), rng.randrange(60), number % 60)))
    summary = dict(events['summary'], events=len(kills), by_cause={'memcg_limit': len(kills)} if kills else {})
    result['events'] = dict(events, events=kills, summary=summary)
    if index % 2:
        # Half the fleet has no policy in its inventory: oom_audit returns no policy part.
        result = dict((key, value) for key, value in result.items() if key not in POLICY_KEYS)
    return result


def generated(count, seed=18):
    """[(host name, registered result)] for `count` hosts, in inventory order; the same for the same
    count and seed.  Of every 100 hosts: 2 unreachable, 1 whose task failed (no interpreter), 1 partly
    audited (an invalid inventory), the others audited; 1 in 500 has an odd name (ODD_NAMES)."""
    rng = random.Random(seed)
    bases = dict((origin, registered(origin)) for origin in ORIGINS)
    hosts = []
    for index in range(count):
        name = 'fleet-%05d' % index
        if index % 500 == 250:
            name = '%s %s' % (ODD_NAMES[(index // 500) % len(ODD_NAMES)], index)
        kind = index % 100
        if kind in (17, 67):
            result = bases['unreachable-ssh']
        elif kind == 42:
            result = bases['no-python']
        elif kind == 91:
            score = rng.randrange(0, 101)
            result = dict(bases['bad-inventory'], posture=dict(bases['bad-inventory']['posture'], risk_score=score,
                                                               risk_level=level_of(score)))
        else:
            result = _audited(rng, index, bases['localhost'])
        hosts.append((name, result))
    return hosts
