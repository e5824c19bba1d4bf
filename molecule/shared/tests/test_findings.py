# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 21: the protection and killer-coverage findings, on a real kernel and a real systemd.

Each finding is seeded the way an operator would get it wrong, with transient units (nothing
the converge wrote is touched), and the same setup done right stays silent:

* cgroup_protection_nullified: MemoryLow= on a service under a slice that grants none;
* cgroup_high_not_below_max: MemoryHigh= above the service's MemoryMax=;
* cgroup_min_overcommitted: two services' MemoryMin= over their slice's;
* group_kill_overrides_adj: a service protected by OOMScoreAdjust=-500 with OOMPolicy=kill;
* earlyoom's --avoid that misses a critical process, a --prefer that matches nothing (a second
  earlyoom, in dry run, beside the inventory's);
* oomd_covers_nothing: Debian's own systemd-oomd, started as the package ships it.
"""

import pytest

HOLD = '/usr/bin/python3 /usr/local/lib/oomguard-test/hold.py'
SLEEP = '/usr/bin/sleep 600'


def _posture(host):
    facts = host.ansible('oomguard.linux.oom_facts', 'skip=slabinfo', check=False)
    assert 'ansible_facts' in facts, facts
    return facts['ansible_facts']['oom_posture']


def _findings(posture, name):
    return [f for f in posture['findings'] if f['id'] == name]


def _start(host, unit, properties, command, slice_name=None):
    host.run('systemctl stop %s; systemctl reset-failed %s' % (unit, unit))
    host.run_expect([0], 'systemd-run --quiet --unit=%s %s %s -p RuntimeMaxSec=600 %s' % (
        unit, '--slice=%s' % slice_name if slice_name else '', ' '.join('-p ' + p for p in properties), command))


def _stop(host, units):
    host.run('systemctl stop %s; systemctl reset-failed %s' % (' '.join(units), ' '.join(units)))


def _paths(finding):
    return set(item['path'] for item in finding[0]['evidence']['cgroups']['items']) if finding else set()


CGROUP_SEEDS = [
    # (unit, slice, properties) - the good slice grants what its services ask for.
    ('oomguard-good-low', 'oomguardgood.slice', ['MemoryLow=32M', 'MemoryMin=8M', 'MemoryHigh=48M', 'MemoryMax=64M']),
    ('oomguard-good-min', 'oomguardgood.slice', ['MemoryMin=8M']),
    ('oomguard-bad-low', 'oomguardbad.slice', ['MemoryLow=32M', 'MemoryMin=16M']),
    ('oomguard-bad-high', 'oomguardbad.slice', ['MemoryHigh=96M', 'MemoryMax=64M', 'MemoryMin=16M']),
]


def test_cgroup_protection_findings_fire_on_the_bad_slice_only(host, scenario):
    if scenario.get('seeded_findings') != 'cgroups':
        pytest.skip('the cgroup seeds run on the default scenario (cgroup v2)')
    units = ['%s.service' % unit for unit, dummy, dummy2 in CGROUP_SEEDS]
    try:
        for unit, slice_name, properties in CGROUP_SEEDS:
            _start(host, unit, properties, SLEEP, slice_name)
        # The good slice grants its services' protection; the bad one only a minimum smaller than
        # its two services' (16M + 16M over 16M).
        host.run_expect([0], 'systemctl set-property --runtime oomguardgood.slice MemoryLow=64M MemoryMin=32M')
        host.run_expect([0], 'systemctl set-property --runtime oomguardbad.slice MemoryMin=16M')
        posture = _posture(host)
    finally:
        _stop(host, units + ['oomguardgood.slice', 'oomguardbad.slice'])
        host.run('rm -rf /run/systemd/system.control/oomguardgood.slice.d /run/systemd/system.control/oomguardbad.slice.d'
                 ' && systemctl daemon-reload')
    nullified = _findings(posture, 'cgroup_protection_nullified')
    bad = '/oomguardbad.slice/oomguard-bad-low.service'
    assert bad in _paths(nullified), nullified
    assert not [p for p in _paths(nullified) if p.startswith('/oomguardgood.slice')], nullified
    high = _findings(posture, 'cgroup_high_not_below_max')
    assert _paths(high) & set(['/oomguardbad.slice/oomguard-bad-high.service']), high
    assert not [p for p in _paths(high) if p.startswith('/oomguardgood.slice')], high
    over = _findings(posture, 'cgroup_min_overcommitted')
    assert '/oomguardbad.slice' in _paths(over), over
    assert '/oomguardgood.slice' not in _paths(over), over


def test_a_group_kill_over_a_protected_task_is_found(host, scenario):
    if scenario.get('seeded_findings') != 'cgroups':
        pytest.skip('memory.oom.group is cgroup v2: the seeds run on the default scenario')
    good, bad = 'oomguard-group-good.service', 'oomguard-group-bad.service'
    try:
        # OOMPolicy=kill sets memory.oom.group; the bad one protects its task with -500, which the
        # group kill ignores; the good one spares it the only way a group kill can (-1000) - and a
        # group of one unkillable task has no next victim at all.
        _start(host, good, ['MemoryMax=64M', 'OOMPolicy=kill', 'OOMScoreAdjust=-1000'], SLEEP)
        _start(host, bad, ['MemoryMax=64M', 'OOMPolicy=kill', 'OOMScoreAdjust=-500'], SLEEP)
        bad_pid = int(host.check_output('systemctl show -P MainPID %s' % bad))
        posture = _posture(host)
    finally:
        _stop(host, [good, bad])
    found = _findings(posture, 'group_kill_overrides_adj')
    assert found, [f['id'] for f in posture['findings']]
    tasks = found[0]['evidence']['tasks']['items']
    assert [(t['pid'], t['oom_score_adj'], t['group']) for t in tasks if t['group'].endswith(bad)] == [
        (bad_pid, -500, '/system.slice/' + bad)], tasks
    assert not [t for t in tasks if t['group'].endswith(good)], tasks


def test_earlyoom_coverage_findings_name_the_seeded_earlyoom_only(host, scenario):
    if scenario.get('seeded_findings') != 'earlyoom':
        pytest.skip('the earlyoom seeds run where the inventory deploys earlyoom (numa)')
    # The preferred victim may have died in an earlier test's OOM: the inventory's --prefer names it.
    if host.check_output('systemctl show -P ActiveState oomguard-batch.service') != 'active':
        host.run_expect([0], 'systemctl restart oomguard-batch.service')
    good = _posture(host)
    inventory_pid = [k['pid'] for k in good['early_killers'] if k['name'] == 'earlyoom']
    assert len(inventory_pid) == 1, good['early_killers']
    for name in ('earlyoom_avoid_misses_critical', 'earlyoom_pattern_matches_nothing'):
        assert not _findings(good, name), _findings(good, name)
    seeds = ['oomguard-seed-redis.service', 'oomguard-seed-earlyoom.service']
    try:
        # A critical process (by name) that ranks first, and an earlyoom whose --avoid does not
        # cover it and whose --prefer names nothing that runs. --dryrun: it never kills.
        _start(host, seeds[0], ['OOMScoreAdjust=900'], '%s redis-server hold 16' % HOLD)
        _start(host, seeds[1], [], "/usr/bin/earlyoom --dryrun -r 0 --avoid '^(oomguard-db)$' "
                                   "--prefer '^(oomguard-gone)$'")
        seed_pid = int(host.check_output('systemctl show -P MainPID %s' % seeds[1]))
        redis_pid = int(host.check_output('systemctl show -P MainPID %s' % seeds[0]))
        bad = _posture(host)
    finally:
        _stop(host, seeds)
    missed = [f for f in _findings(bad, 'earlyoom_avoid_misses_critical') if f['evidence']['earlyoom_pid'] == seed_pid]
    assert missed, _findings(bad, 'earlyoom_avoid_misses_critical')
    assert redis_pid in [p['pid'] for p in missed[0]['evidence']['processes']['items']], missed
    empty = [f for f in _findings(bad, 'earlyoom_pattern_matches_nothing') if f['evidence']['earlyoom_pid'] == seed_pid]
    assert empty and empty[0]['evidence']['patterns'] == [{'option': '--prefer', 'pattern': '^(oomguard-gone)$'}], empty


def _enrolled(host):
    """{setting: [unit]} of the units systemd reports with ManagedOOMMemoryPressure= or ManagedOOMSwap= kill."""
    found = {'ManagedOOMMemoryPressure': [], 'ManagedOOMSwap': []}
    text = host.check_output("systemctl show '*' --all -p Id -p ManagedOOMMemoryPressure -p ManagedOOMSwap")
    for block in text.split('\n\n'):
        values = dict(line.partition('=')[::2] for line in block.splitlines() if '=' in line)
        for key in found:
            if values.get(key) == 'kill':
                found[key].append(values.get('Id'))
    return found


def test_debian_stock_systemd_oomd_is_judged_for_what_it_covers(host, scenario):
    if scenario.get('seeded_findings') != 'earlyoom':
        pytest.skip('runs where systemd-oomd is installed and not deployed (numa)')
    try:
        host.run_expect([0], 'systemctl start systemd-oomd.service')
        enrolled = _enrolled(host)
        swap_total_kb = int(host.check_output("awk '/^SwapTotal:/ {print $2}' /proc/meminfo"))
        posture = _posture(host)
    finally:
        host.run('systemctl stop systemd-oomd.service systemd-oomd.socket')
    # Debian's package enrolls the root slice for a swap kill and nothing for a pressure kill: on a
    # host without swap (this VM) the daemon runs and can act on nothing.
    assert enrolled == {'ManagedOOMMemoryPressure': [], 'ManagedOOMSwap': ['-.slice']}, enrolled
    assert swap_total_kb == 0
    found = _findings(posture, 'oomd_covers_nothing')
    assert found, [f['id'] for f in posture['findings']]
    assert found[0]['evidence']['swap_enrolled'] == ['-.slice'] and found[0]['evidence']['pressure_enrolled'] == []
    assert found[0]['evidence']['psi'] is True


def test_systemd_oomd_enrolled_for_pressure_covers_something(host, scenario):
    if scenario.get('seeded_findings') != 'cgroups':
        pytest.skip('the inventory enrolls system.slice for systemd-oomd on the default scenario')
    enrolled = _enrolled(host)
    assert 'system.slice' in enrolled['ManagedOOMMemoryPressure'], enrolled
    posture = _posture(host)
    assert [k for k in posture['early_killers'] if k['name'] == 'systemd-oomd'], posture['early_killers']
    assert not _findings(posture, 'oomd_covers_nothing')
