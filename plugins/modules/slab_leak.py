#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: slab_leak
short_description: Detect kernel slab leaks - unreclaimable slab share, top caches and growth over samples
version_added: 0.1.0
description:
  - Reads C(SUnreclaim) and C(MemTotal) from C(/proc/meminfo) and, where the kernel allows it, the caches of
    C(/proc/slabinfo), O(samples) times O(interval_s) seconds apart.
  - Judges the host in RV(verdict) - C(ok); C(high) when unreclaimable slab is above O(unreclaimable_percent) of RAM
    (the 10 % rule); C(growing) when it grew in every interval at O(growth_kb_per_min) or more;
    C(leak) when both - and each cache - C(growing), C(steady), C(shrinking) or C(unknown) (it came or went
    during the window) - with its size, growth, rate and whether the kernel reclaims it
    (C(/sys/kernel/slab/<cache>/reclaim_account), SLUB only).
  - Works without root. C(/proc/slabinfo) is readable by root only on current kernels; without it the
    verdict stands on C(/proc/meminfo) alone and RV(unread) says what could not be read.
  - Read-only. A slow leak needs a long window (for example 6 samples 600 s apart); the default window
    (3 samples 5 s apart) catches fast growth only.
author:
  - oomguard.linux maintainers (@oomguard)
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode returns the same result.
  diff_mode:
    support: none
    description: Nothing is changed.
options:
  samples:
    description: How many readings to take (1..1000). With one, there is no growth and only the share is judged.
    type: int
    default: 3
  interval_s:
    description: Seconds between two readings (0.1..3600).
    type: float
    default: 5
  top:
    description: How many caches to return in RV(top_caches) and RV(growing_caches) (1..1000).
    type: int
    default: 10
  unreclaimable_percent:
    description: Share of MemTotal above which unreclaimable slab is flagged (0.1..100).
    type: float
    default: 10
  growth_kb_per_min:
    description:
      - Growth of C(SUnreclaim) (or of one cache) in kB per minute that counts as growing, when it also grew in
        every interval (1..2^30).
    type: int
    default: 1024
  fail_on_leak:
    description: Fail the task when RV(verdict) is not C(ok) (for CI gates and alerts).
    type: bool
    default: false
extends_documentation_fragment:
  - oomguard.linux.labels.host
notes:
  - Sizes are each cache's slabs times pages per slab (used and free objects alike), assuming 4 KiB pages.
  - Merged SLUB caches show under one name in C(/proc/slabinfo); boot with C(slab_nomerge) to tell them apart.
seealso:
  - module: oomguard.linux.oom_facts
    description: The posture finding C(slab_unreclaimable_high) points here.
'''

EXAMPLES = r'''
- name: Is the kernel leaking slab? (one minute, six readings)
  oomguard.linux.slab_leak:
    samples: 7
    interval_s: 10
  become: true
  register: slab

- name: Show the fastest growing caches
  ansible.builtin.debug:
    var: slab.growing_caches

- name: Gate a canary host on slab growth
  oomguard.linux.slab_leak:
    samples: 4
    interval_s: 300
    growth_kb_per_min: 256
    fail_on_leak: true
'''

RETURN = r'''
verdict:
  description: C(ok), C(growing), C(high) or C(leak) (high and growing).
  returned: always
  type: str
  sample: leak
flagged:
  description: RV(verdict) is not C(ok).
  returned: always
  type: bool
reasons:
  description: Why the host was flagged, one sentence each, the fastest growing cache last.
  returned: always
  type: list
  elements: str
  sample: ['SUnreclaim grew in every interval, 90210.5 kB/min over 10.0 s (threshold 1024 kB/min)']
sunreclaim_kb:
  description: C(SUnreclaim) at the last reading.
  returned: always
  type: int
sreclaimable_kb:
  description: C(SReclaimable) at the last reading (dentries, inodes; the kernel frees these under pressure).
  returned: always
  type: int
mem_total_kb:
  description: C(MemTotal).
  returned: always
  type: int
sunreclaim_percent:
  description: C(SUnreclaim) as a share of C(MemTotal).
  returned: always
  type: float
sunreclaim_series_kb:
  description: C(SUnreclaim) at each reading.
  returned: always
  type: list
  elements: int
sunreclaim_growth_kb:
  description: Last reading minus the first.
  returned: always
  type: int
sunreclaim_rate_kb_per_min:
  description: Growth per minute over the window; null with one sample.
  returned: always
  type: float
minutes_to_threshold:
  description: At the current rate, minutes until unreclaimable slab reaches O(unreclaimable_percent).
  returned: when RV(verdict) is C(growing)
  type: float
window_s:
  description: Seconds from the first reading to the last.
  returned: always
  type: float
samples:
  description: Readings taken.
  returned: always
  type: int
thresholds:
  description: The O(unreclaimable_percent) and O(growth_kb_per_min) judged against.
  returned: always
  type: dict
unread:
  description: What could not be read and why (for example C(/proc/slabinfo) without root).
  returned: always
  type: list
  elements: str
top_caches:
  description:
    - The O(top) largest caches at the last reading - C(name), C(size_kb), C(active_objs), C(objsize_bytes), C(reclaimable)
      (true, false, or null where not exposed), C(growth_kb), C(rate_kb_per_min), C(verdict). Null without C(/proc/slabinfo).
  returned: always
  type: list
  elements: dict
growing_caches:
  description: Caches whose verdict is C(growing), fastest first, same keys. Null without C(/proc/slabinfo).
  returned: always
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oomguard.linux.plugins.module_utils import _argspec, procfs, slab


def argument_spec():
    return dict(
        samples=dict(type='int', default=slab.DEFAULTS['samples']),
        interval_s=dict(type='float', default=slab.DEFAULTS['interval_s']),
        top=dict(type='int', default=slab.DEFAULTS['top']),
        unreclaimable_percent=dict(type='float', default=slab.DEFAULTS['unreclaimable_percent']),
        growth_kb_per_min=dict(type='int', default=slab.DEFAULTS['growth_kb_per_min']),
        fail_on_leak=dict(type='bool', default=False),
        **_argspec.host_label_spec(),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    label = _argspec.host_name(params)
    try:
        result = slab.run(procfs.HostRoot('/'), params, label)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if params['fail_on_leak'] and result['flagged']:
        module.fail_json(msg='host %s: slab_leak verdict %s: %s' % (label, result['verdict'], '; '.join(result['reasons'])),
                         **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
