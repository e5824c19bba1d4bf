# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema: the parsers every inventory value goes through, and the one message shape."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import time

import shutil
import subprocess

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import schema
from ansible_collections.oomguard.linux.plugins.module_utils import tunables as tn
from ansible_collections.oomguard.linux.plugins.module_utils import units_apply as ua
from ansible_collections.oomguard.linux.plugins.module_utils._engine import Labels


@pytest.mark.parametrize('text, expected', [
    ('512M', 512 << 20), ('2G', 2 << 30), ('1.5G', int(1.5 * (1 << 30))), ('1T', 1 << 40), ('4096', 4096),
    (4096, 4096), ('25%', 1 << 30), ('infinity', None), ('0', 0)])
def test_size_bytes(text, expected):
    assert schema.size_bytes(text, 4 << 30) == expected


@pytest.mark.parametrize('text, allowed', [
    ('2GB', 'a size like 512M'), ('150%', 'at most 100%'), (True, 'not a boolean'), (-1, 'cannot be negative'), (2 ** 64, 'up to 2^63-1'),
    ('99999999999999999999T', 'up to 2^63-1'), ('1' * 5000, 'a size like 512M'), ('-1G', 'a size like 512M'),
    ('1.5', 'a whole number of bytes, or a fraction with a suffix like 1.5G')])
def test_size_bytes_refuses(text, allowed):
    with pytest.raises(schema.Invalid) as raised:
        schema.size_bytes(text, 4 << 30)
    assert allowed in str(raised.value)


@pytest.mark.parametrize('text', ['0', 0, '0K', '0%'])
def test_a_zero_limit_is_refused_where_it_would_stop_the_unit(text):
    with pytest.raises(schema.Invalid) as raised:
        schema.size_bytes(text, 4 << 30, zero_ok=False)
    assert 'a size above 0' in str(raised.value)
    assert schema.size_bytes(text, 4 << 30) == 0


@pytest.mark.parametrize('text, expected', [
    ('Sun *-*-* 03:30:00', 'Sun *-*-* 03:30:00'), ('Daily', 'daily'), ('*-*-*  04:00', '*-*-* 04:00'),
    ('Mon..Fri 22:30', 'Mon..Fri 22:30'), ('Sat,Sun 20:00', 'Sat,Sun 20:00'), ('*:0/15', '*:0/15'),
    ('2026-12-24 00:00:00 UTC', '2026-12-24 00:00:00 UTC'), ('*-02~03 12:00', '*-02~03 12:00'),
    ('Mon *-*-* 03:00 Europe/Berlin', 'Mon *-*-* 03:00 Europe/Berlin'), ('*:*:0/10.5', '*:*:0/10.5')])
def test_calendar_spec(text, expected):
    assert schema.calendar_spec(text) == expected


@pytest.mark.parametrize('text, why', [
    ('99:99:99', 'hour 99 is out of range 0..23'), ('*-*-* 03:60', 'minute 60 is out of range 0..59'),
    ('*-13-01', 'month 13 is out of range 1..12'), ('99999-01-01 00:00', 'year 99999 is not a value'),
    ('2200-01-01', 'year 2200 is out of range 1970..2199'), ('Funday 03:00', 'weekday Funday is not one of Mon..Sun'),
    ('daily; rm -rf /', 'weekday daily; is not one of Mon..Sun'), ('$(reboot)', 'is neither a date'), ('', 'OnCalendar='),
    (None, 'OnCalendar='), (3, 'OnCalendar='), ('*-*-* 1' + ':1' * 200, 'OnCalendar='),
    ('*-*-* 03:30:00.5:1', 'time 03:30:00.5:1 is not HOUR:MINUTE[:SECOND]'), ('*-*-* 3.5:00', 'only the second'),
    ('*-*-* 05..01:00', 'hour range 05..01 must go up')])
def test_calendar_spec_refuses(text, why):
    with pytest.raises(schema.Invalid) as raised:
        schema.calendar_spec(text)
    assert why in str(raised.value)
    assert str(raised.value).startswith('a systemd OnCalendar= expression such as')


def test_calendar_spec_agrees_with_systemd_analyze_where_this_machine_has_it():
    analyze = shutil.which('systemd-analyze')
    if analyze is None:
        pytest.skip('systemd-analyze is not installed here')
    for text in ['Sun *-*-* 03:30:00', 'daily', 'Mon..Fri 22:30', '*:0/15', '*-02~03 12:00', '*:*:0/10.5',
                 '99:99:99', '*-13-01', 'Funday 03:00', '*-*-* 05..01:00']:
        try:
            ours = bool(schema.calendar_spec(text))
        except schema.Invalid:
            ours = False
        theirs = subprocess.run([analyze, 'calendar', '--', text], capture_output=True, check=False).returncode == 0
        assert ours == theirs, text


@pytest.mark.parametrize('value, shown', [
    ('2GB', "'2GB'"), ("it's", "'it''s'"), ('a\tb', '"a\\tb"'), (True, 'true'), (None, 'null'), (1.5, '1.5'),
    ({'match': 'x', 'adj': None}, "{match: 'x', adj: null}"), ([1, 'x', False], "[1, 'x', false]"),
    ('x' * 500, "'" + 'x' * 58 + '\u2026' + 'x' * 59 + "'")])
def test_show_writes_values_as_yaml_not_python(value, shown):
    assert schema.show(value) == shown


@pytest.mark.parametrize('text, expected', [
    ('0', [0]), ('0-1', [0, 1]), ('0,2', [0, 2]), ('0 2-3', [0, 2, 3]), ([1, 0], [0, 1]), ('1023', [1023])])
def test_node_list(text, expected):
    assert schema.node_list(text) == expected


@pytest.mark.parametrize('text', ['', 'all', '1-0', '0;1', '-1', '1024', '0-99999999999999', '0-' + '9' * 5000])
def test_node_list_refuses(text):
    started = time.monotonic()
    with pytest.raises(schema.Invalid):
        schema.node_list(text)
    # Bounded before it is expanded: a huge range is refused at once, not built.
    assert time.monotonic() - started < 0.5


def test_node_list_names_the_missing_nodes():
    with pytest.raises(schema.Invalid) as raised:
        schema.node_list('0-2', existing=[0, 1])
    assert str(raised.value) == 'node 2 does not exist; this host has node(s) 0, 1'


@pytest.mark.parametrize('value, ok', [
    (0, True), ('-1000', True), (' 7 ', True), (1001, False), (True, False), (1.0, False), ('1.5', False),
    ('x', False), (None, False), ([1], False), ('9' * 30, False)])
def test_integer(value, ok):
    if ok:
        assert schema.integer(value, -1000, 1000) == int(value)
    else:
        with pytest.raises(schema.Invalid) as raised:
            schema.integer(value, -1000, 1000)
        assert str(raised.value) == 'an integer -1000..1000'


@pytest.mark.parametrize('name, suffixes, ok', [
    ('nginx.service', None, True), ('system.slice', ('.slice',), True), ('user@1000.service', None, True),
    ('a b.service', None, False), ('../etc/passwd', None, False), ('-x.service', None, False),
    ('machine.target', ('.service', '.slice'), False), (5, None, False), ('x' * 300 + '.service', None, False)])
def test_unit_name(name, suffixes, ok):
    if ok:
        assert schema.unit_name(name, suffixes) == name
    else:
        with pytest.raises(schema.Invalid):
            schema.unit_name(name, suffixes)


def test_limit_order():
    assert schema.limit_order({'memory_min': 1, 'memory_high': 5, 'memory_max': 4}) == [('memory_high', 'memory_max')]
    # infinity (None) is not compared
    assert schema.limit_order({'memory_high': None, 'memory_max': 4}) == []
    assert schema.limit_order({}) == []


def test_checker_builds_every_message_in_one_shape():
    checker = schema.Checker(Labels('web1'))
    assert checker.check("oomguard_services['db'][cpu_weight]", 0, schema.integer, 1, 10000) is schema.INVALID
    assert checker.check("oomguard_services['db'][memory_max]", 'infinity', schema.size_bytes, 1 << 30) is None
    assert checker.check("x", 'kill', schema.choice, ('stop', 'kill')) == 'kill'
    checker.limits("oomguard_services['db']", {'memory_high': 2, 'memory_max': 1}, {'memory_high': '2G', 'memory_max': '1G'})
    assert [(p.id, p.message) for p in checker.problems] == [
        ('invalid_value', "host web1: oomguard_services['db'][cpu_weight] = 0; allowed: an integer 1..10000"),
        ('inconsistent_limits', "host web1: oomguard_services['db']: memory_high (2G) is above memory_max (1G); "
                                'the kernel expects memory_min <= memory_low <= memory_high <= memory_max'),
    ]


def test_force_names_only_guards_the_collection_has():
    # The list is every guard the concerns fire, and nothing else.
    assert set(schema.GUARD_IDS) == set(tn.GUARDS) | set(ua.GUARDS)
    with open(ua.__file__) as handle:
        fired = set(re.findall(r"_guard\(plan, labels, '(\w+)'", handle.read()))
    assert fired == set(ua.GUARDS)
    checker = schema.Checker(Labels('web1'))
    checker.force(['unit_missing', 'min_free_abvoe_5_percent'])
    checker.force([])
    assert [(p.id, p.message) for p in checker.problems] == [
        ('invalid_value', 'host web1: oomguard_force names no guard: min_free_abvoe_5_percent; allowed: the guard ids '
                          + ', '.join(schema.GUARD_IDS))]


def test_a_huge_unknown_variable_name_is_refused_quickly_and_shown_cut():
    checker = schema.Checker(Labels('web1'))
    checker.variables(['oomguard_' + 'x' * 1000000, 'oomguard_sysctll', 'other_var'])
    messages = [p.message for p in checker.problems]
    assert len(messages) == 2
    assert messages[0].startswith('host web1: oomguard_sysctll is not a variable of oomguard.linux (did you mean '
                                  'oomguard_sysctl?)')
    assert len(messages[1]) < 400 and '\u2026' in messages[1] and 'did you mean' not in messages[1]
