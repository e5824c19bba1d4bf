#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the fleet report at 1,000 and 10,000 host results, against json.dumps of the same results.

The host results are generated (tests/unit/fleet_hosts.py: the collection's real registered
results, varied per host: score, findings, memory, victims, domains, kills; 2 % unreachable,
1 % failed, 1 % partly audited).  For each size N, R alternated rounds (default 3) time, in
this process:

  baseline  json.dumps of the N registered results, once (the C encoder): the least any
            report of them does, read every value once and write it as text.  Its cost per
            result is the same at any N, so the ratio report/baseline stays flat when the
            report is linear, and it carries the machine's speed of the hour with it.
  report    what the fleet_report action computes, without writing files: the document
            (fleet.build), its JSON (fleet.to_json), the HTML page (fleet_html.render) and
            one Prometheus textfile per host (fleet.prometheus), each step timed too.

and prints, per N, the medians, the ratio report/baseline, the time of each step and the
cost per host, then the growth of the cost per host from the smallest N to the largest.
Goal: the report's cost per host at the largest N within 1.5x of that at the smallest
(linear).  The page itself in a browser: the fleet_audit integration target (check_scale.py,
10,000 hosts in chromium within 5 s).

Run it through
  tools/run bench benchmarks/fleet_report_scale.py [--rounds R] [--sizes 1000,10000]
"""

import argparse
import json
import os
import statistics
import sys
import time

import _common

GOAL_GROWTH = 1.5
STEPS = ('document', 'json', 'html', 'textfiles')


def report(fleet, fleet_html, results):
    """The seconds of each step of the report of `results`."""
    took = {}
    start = time.perf_counter()
    document = fleet.build(results, '2026-12-07T04:00:00Z', {'hosts_pattern_size': len(results)})
    took['document'] = time.perf_counter() - start
    start = time.perf_counter()
    text = fleet.to_json(document)
    took['json'] = time.perf_counter() - start
    start = time.perf_counter()
    page = fleet_html.render(document)
    took['html'] = time.perf_counter() - start
    start = time.perf_counter()
    files = [fleet.prometheus(host, 1796616000) for host in document['hosts']]
    took['textfiles'] = time.perf_counter() - start
    assert document['summary']['hosts'] == len(results) == len(files) and text and page
    return took, len(page)


def baseline(results):
    start = time.perf_counter()
    text = json.dumps(results)
    took = time.perf_counter() - start
    assert text
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--sizes', default='1000,10000')
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(',')]
    collections = _common.collections_path()
    sys.path.insert(0, collections)
    # pylint: disable=import-outside-toplevel
    from ansible_collections.oomguard.linux.plugins.plugin_utils import fleet, fleet_html
    from ansible_collections.oomguard.linux.tests.unit import fleet_hosts
    print('collection from %s, %d alternated rounds, python %s, cores %d, load %s' % (
        collections, args.rounds, sys.version.split()[0], os.cpu_count() or 0,
        ' '.join('%.1f' % load for load in os.getloadavg())))
    per_host = {}
    for size in sizes:
        results = fleet_hosts.generated(size)
        times = {'baseline': [], 'report': []}
        steps = dict((step, []) for step in STEPS)
        page = 0
        for dummy in range(args.rounds):
            times['baseline'].append(baseline(results))
            took, page = report(fleet, fleet_html, results)
            times['report'].append(sum(took.values()))
            for step in STEPS:
                steps[step].append(took[step])
        base, made = statistics.median(times['baseline']), statistics.median(times['report'])
        per_host[size] = made / size
        print('%6d hosts  json.dumps %6.3f s  report %7.3f s  ratio %5.1f  report per host %6.0f us  '
              '(json.dumps per host %4.1f us; runs: report %s)' % (
                  size, base, made, made / base, 1e6 * made / size, 1e6 * base / size, _common.runs(times['report'], 3)))
        print('              steps: %s; HTML %.1f MB' % (', '.join(
            '%s %.3f s' % (step, statistics.median(steps[step])) for step in STEPS), page / 1e6))
    smallest, largest = min(per_host), max(per_host)
    growth = per_host[largest] / per_host[smallest]
    print('report time per host, %d hosts against %d: %.2fx (goal <= %.1fx: linear)' % (largest, smallest, growth, GOAL_GROWTH))
    print('PASS' if growth <= GOAL_GROWTH else 'FAIL')


if __name__ == '__main__':
    main()
