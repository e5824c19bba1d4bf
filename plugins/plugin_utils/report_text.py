# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text for people, shared by the fleet report, its HTML and the posture_report
filter: sizes with their unit, percentages with %, seconds with s, counts with
a singular or plural noun, long paths cut in the middle, and any JSON-like
value written out without Python's repr (no None, True, {...} or [...])."""


import math

ELLIPSIS = '\u2026'
# How much of a value to write out: enough to read, bounded whatever the input.
VALUE_ITEMS = 8
VALUE_CHARS = 200


def plural(count, noun, nouns=None):
    """'1 host', '2 hosts', '0 hosts'."""
    return '%s %s' % (count, noun if count == 1 else (nouns or noun + 's'))


def is_number(value):
    """An int or float that is not a bool and is finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not (isinstance(value, float) and (math.isnan(value) or math.isinf(value)))


def size_kb(value):
    """kB (KiB, as /proc says kB) -> '23.5 GiB', '512.0 MiB', '900 KiB'; 'unknown' when not a number."""
    if not is_number(value):
        return 'unknown'
    for unit, factor in (('TiB', 1024 ** 3), ('GiB', 1024 ** 2), ('MiB', 1024)):
        if abs(value) >= factor:
            return '%.1f %s' % (value / float(factor), unit)
    return '%d KiB' % value


def size_bytes(value):
    if not is_number(value):
        return 'unknown'
    if abs(value) < 1024:
        return '%d B' % value
    return size_kb(value / 1024.0)


def percent(value, digits=1):
    if not is_number(value):
        return 'unknown'
    return '%.*f %%' % (digits, value)


def seconds(value):
    if not is_number(value):
        return 'unknown'
    if value >= 86400 * 2:
        return '%.1f d (%d s)' % (value / 86400.0, value)
    if value >= 100:
        return '%d s' % value
    return '%g s' % value


def cut_middle(text, width=48, path=True):
    """Cut a long text in the middle; a path keeps its start and its last component
    (the unit or cgroup name), which is what a reader looks for."""
    text = str(text)
    width = max(width, 8)
    if len(text) <= width:
        return text
    head, sep, last = text.rpartition('/')
    if path and sep and head and len(last) + 10 <= width:
        keep = width - len(last) - 2
        return text[:keep] + ELLIPSIS + '/' + last
    keep_head = (width - 1) // 2
    keep_tail = width - 1 - keep_head
    return text[:keep_head] + ELLIPSIS + text[-keep_tail:]


def value_text(value, chars=VALUE_CHARS, depth=0):
    """Any JSON-like value as short text: null -> 'none', true -> 'yes', a list
    comma-separated, a mapping 'key: value'; numbers finite or 'not a number'."""
    if value is None:
        return 'none'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return 'not a number'
        return '%g' % value if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return cut_middle(value, chars)
    if depth >= 3:
        return ELLIPSIS
    if isinstance(value, dict):
        keys = list(value)[:VALUE_ITEMS]
        text = ', '.join('%s: %s' % (cut_middle(str(k), 40), value_text(value[k], chars, depth + 1)) for k in keys)
        more = len(value) - len(keys)
    elif isinstance(value, (list, tuple)):
        items = list(value[:VALUE_ITEMS])
        text = ', '.join(value_text(item, chars, depth + 1) for item in items)
        more = len(value) - len(items)
    else:
        return cut_middle(type(value).__name__, 40)
    if more > 0:
        text += ' and %d more' % more
    return cut_middle(text, chars) if text else 'empty'


def unit_value(key, value):
    """A value named with its unit (_kb, _kbytes, _bytes, _percent, _seconds, _s) written with that unit."""
    key = str(key)
    if is_number(value):
        if key.endswith(('_kb', '_kbytes')):
            return size_kb(value)
        if key.endswith('_bytes'):
            return size_bytes(value)
        if key.endswith('_percent'):
            return percent(value, 2 if value < 10 else 1)
        if key.endswith(('_seconds', '_s')):
            return seconds(value)
    if isinstance(value, dict) and set(value) == {'count', 'items'} and isinstance(value['items'], list):
        # A capped list from the posture: items shown, count said.
        shown = value_text(value['items'])
        return shown if value['count'] == len(value['items']) else '%s (%s in all)' % (shown, value_text(value['count']))
    return value_text(value)


def describe(value):
    """What a value is, for a message about a malformed result: never the value's repr, never all of a huge one."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return 'NaN'
        if isinstance(value, float) and math.isinf(value):
            return 'infinity' if value > 0 else '-infinity'
        return 'the number %s' % value_text(value)
    if isinstance(value, str):
        if len(value) > 40:
            return 'a text of %d characters' % len(value)
        return 'the text "%s"' % value
    if isinstance(value, dict):
        return 'a mapping of %s' % plural(len(value), 'key')
    if isinstance(value, (list, tuple)):
        return 'a list of %s' % plural(len(value), 'item')
    return 'a value of type %s' % type(value).__name__
