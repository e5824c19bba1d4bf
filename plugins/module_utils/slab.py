# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Slab leak detection: read (samples of meminfo and slabinfo) -> judge (verdicts).

Kernel memory that is never freed shows as unreclaimable slab (SUnreclaim in
/proc/meminfo) that only grows.  This samples SUnreclaim and, where it can
be read (root on current kernels), /proc/slabinfo, N times at an interval,
and judges:

- the share of MemTotal (the seeds' rule: above 10 % is a problem on its own);
- the growth of SUnreclaim over the window: a rate, and whether it grew in
  every interval (a leak grows steadily; a busy host goes up and down);
- per cache: size, growth and rate, reclaimable or not (SLUB's
  /sys/kernel/slab/<cache>/reclaim_account), and a verdict.

Standard library only: runs on the managed host.
"""


import time

from ansible_collections.oomguard.linux.plugins.module_utils import procfs

DEFAULTS = {
    'samples': 3,
    'interval_s': 5.0,
    'top': 10,
    'unreclaimable_percent': 10.0,
    'growth_kb_per_min': 1024,
}
LIMITS = {
    'samples': (1, 1000),
    'interval_s': (0.1, 3600.0),
    'top': (1, 1000),
    'unreclaimable_percent': (0.1, 100.0),
    'growth_kb_per_min': (1, 1 << 30),
}
VERDICTS = ('ok', 'growing', 'high', 'leak')


class Sample:
    """One reading: when, the meminfo values it needs, the caches (or None)."""

    def __init__(self, t, meminfo_kb, caches):
        self.t = t
        self.meminfo_kb = meminfo_kb
        self.caches = caches


def validate(params, host_label='localhost'):
    """Errors for out-of-range options, each naming the host, the option and the range."""
    errors = []
    for key, (low, high) in LIMITS.items():
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            errors.append('host %s: slab_leak %s = %r is out of range; allowed: %s..%s' % (host_label, key, value, low, high))
    return errors


def read_sample(host, clock=time.monotonic):
    """Read meminfo and slabinfo once; slabinfo may be unreadable (None, with the reason)."""
    meminfo_kb, dummy = procfs.read_meminfo(host)
    unread = None
    try:
        caches = procfs.read_slabinfo(host)
        if caches is None:
            unread = '/proc/slabinfo: absent (kernel without CONFIG_SLUB_DEBUG or slabinfo)'
    except procfs.ReadError as exc:
        caches = None
        unread = '/proc/slabinfo: %s' % exc.reason
    return Sample(clock(), meminfo_kb, caches), unread


def collect(host, samples, interval_s, clock=time.monotonic, sleep=time.sleep):
    """`samples` readings `interval_s` apart; returns (samples, what could not be read)."""
    taken = []
    unread = []
    for index in range(samples):
        if index:
            sleep(interval_s)
        sample, reason = read_sample(host, clock)
        taken.append(sample)
        if reason and reason not in unread:
            unread.append(reason)
    return taken, unread


def reclaim_flags(host, names):
    """Cache name -> True (SReclaimable) / False / None (not exposed: SLAB, or no sysfs)."""
    flags = {}
    for name in names:
        try:
            text = host.read('sys/kernel/slab/%s/reclaim_account' % name)
        except procfs.ReadError:
            text = None
        flags[name] = None if text is None else text.strip().startswith('1')
    return flags


def _rate_kb_per_min(first, last, seconds):
    if seconds <= 0:
        return None
    return round((last - first) * 60.0 / seconds, 1)


def _steady(values):
    """Grew in every interval (a leak's shape); False for a single sample."""
    return len(values) > 1 and all(b > a for a, b in zip(values, values[1:]))


def judge_caches(samples, flags, options):
    """Per cache across the samples: size now, growth, rate, verdict; largest first."""
    series = {}
    for sample in samples:
        for cache in sample.caches or []:
            series.setdefault(cache['name'], []).append(cache)
    seconds = samples[-1].t - samples[0].t if len(samples) > 1 else 0
    result = []
    for name, points in series.items():
        sizes_kb = [p['size_bytes'] // 1024 for p in points]
        last = points[-1]
        entry = {
            'name': name,
            'size_kb': sizes_kb[-1],
            'active_objs': last['active_objs'],
            'objsize_bytes': last['objsize_bytes'],
            'reclaimable': flags.get(name),
            'growth_kb': sizes_kb[-1] - sizes_kb[0],
            'rate_kb_per_min': _rate_kb_per_min(sizes_kb[0], sizes_kb[-1], seconds) if len(points) == len(samples) else None,
        }
        entry['verdict'] = _cache_verdict(entry, sizes_kb, options)
        result.append(entry)
    result.sort(key=lambda c: (-c['size_kb'], c['name']))
    return result


def _cache_verdict(entry, sizes_kb, options):
    rate = entry['rate_kb_per_min']
    if rate is None:
        return 'unknown'
    if rate >= options['growth_kb_per_min'] and _steady(sizes_kb):
        return 'growing'
    if rate <= -options['growth_kb_per_min']:
        return 'shrinking'
    return 'steady'


def judge(samples, unread, flags, options):
    """The whole answer: share, growth, verdict, reasons, caches."""
    first, last = samples[0], samples[-1]
    mem_total_kb = last.meminfo_kb.get('MemTotal')
    series_kb = [s.meminfo_kb.get('SUnreclaim') for s in samples]
    if mem_total_kb is None or None in series_kb:
        raise ValueError('/proc/meminfo has no SUnreclaim or MemTotal: kernel older than 2.6.19?')
    seconds = last.t - first.t
    share = round(series_kb[-1] * 100.0 / mem_total_kb, 2) if mem_total_kb else None
    rate = _rate_kb_per_min(series_kb[0], series_kb[-1], seconds)
    high = share is not None and share > options['unreclaimable_percent']
    growing = rate is not None and rate >= options['growth_kb_per_min'] and _steady(series_kb)
    reasons = []
    if high:
        reasons.append('SUnreclaim is %s %% of MemTotal, above %s %%' % (share, options['unreclaimable_percent']))
    if growing:
        reasons.append('SUnreclaim grew in every interval, %s kB/min over %s s (threshold %s kB/min)'
                       % (rate, round(seconds, 1), options['growth_kb_per_min']))
    verdict = 'leak' if high and growing else 'high' if high else 'growing' if growing else 'ok'
    caches = judge_caches(samples, flags, options) if last.caches is not None else None
    result = {
        'verdict': verdict,
        'flagged': verdict != 'ok',
        'reasons': reasons,
        'mem_total_kb': mem_total_kb,
        'sunreclaim_kb': series_kb[-1],
        'sreclaimable_kb': last.meminfo_kb.get('SReclaimable'),
        'sunreclaim_percent': share,
        'sunreclaim_series_kb': series_kb,
        'sunreclaim_growth_kb': series_kb[-1] - series_kb[0],
        'sunreclaim_rate_kb_per_min': rate,
        'window_s': round(seconds, 3),
        'samples': len(samples),
        'thresholds': {'unreclaimable_percent': options['unreclaimable_percent'],
                       'growth_kb_per_min': options['growth_kb_per_min']},
        'unread': list(unread),
        'top_caches': None,
        'growing_caches': None,
    }
    if growing and rate > 0 and not high and share is not None:
        # At this rate, when SUnreclaim reaches the share threshold.
        to_go_kb = mem_total_kb * options['unreclaimable_percent'] / 100.0 - series_kb[-1]
        result['minutes_to_threshold'] = round(to_go_kb / rate, 1)
    if caches is not None:
        result['top_caches'] = caches[:options['top']]
        growing_caches = [c for c in caches if c['verdict'] == 'growing']
        growing_caches.sort(key=lambda c: (-c['rate_kb_per_min'], c['name']))
        result['growing_caches'] = growing_caches[:options['top']]
        if growing and growing_caches:
            result['reasons'].append('fastest growing cache: %s, %s kB/min%s' % (
                growing_caches[0]['name'], growing_caches[0]['rate_kb_per_min'],
                '' if growing_caches[0]['reclaimable'] is None else
                ' (reclaimable)' if growing_caches[0]['reclaimable'] else ' (unreclaimable)'))
    return result


def run(host, params, host_label='localhost', clock=time.monotonic, sleep=time.sleep):
    """Validate, sample, judge. Raises ValueError with the message for bad options."""
    options = dict(DEFAULTS)
    options.update(dict((k, v) for k, v in params.items() if k in DEFAULTS and v is not None))
    errors = validate(options, host_label)
    if errors:
        raise ValueError('; '.join(errors))
    samples, unread = collect(host, int(options['samples']), float(options['interval_s']), clock, sleep)
    names = sorted(set(c['name'] for c in samples[-1].caches or []))
    return judge(samples, unread, reclaim_flags(host, names), options)
