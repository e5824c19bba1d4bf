# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd units' OOM settings, read with ONE `systemctl show` call.

One call for all units, not one per unit: on a host with hundreds of units
the difference is seconds.  Standard library only.
"""

from ansible_collections.oomguard.linux.plugins.module_utils import schema


UNIT_PROPERTIES = (
    'Id', 'LoadState', 'ActiveState', 'SubState', 'MainPID', 'ControlGroup',
    'OOMScoreAdjust', 'OOMPolicy', 'MemoryMax', 'MemoryHigh', 'MemoryLow', 'MemoryMin',
    'MemorySwapMax', 'MemoryCurrent', 'MemoryAccounting', 'AllowedMemoryNodes',
    'ManagedOOMMemoryPressure', 'ManagedOOMSwap',
)
UNIT_TYPES = 'service,slice,scope'

# systemd prints these for "no value".
_UNSET = ('', 'infinity', '[not set]', '18446744073709551615')


def show_command(systemctl='systemctl'):
    # The '*' pattern makes `show` list every loaded unit (not the manager);
    # --type keeps the ones that own processes or group them.  This is the
    # call recorded in the test captures (tests/unit/fixtures/trees).
    return [systemctl, 'show', '--type=' + UNIT_TYPES, '--all',
            '--property=' + ','.join(UNIT_PROPERTIES), '*']


def _size(value):
    if value in _UNSET:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _int(value):
    try:
        return int(value)
    except ValueError:
        return None


def parse_show(text):
    """`systemctl show` output (blank-line separated blocks) -> list of units.

    Units that are not loaded (LoadState=not-found) are dropped: they have no
    settings that matter.
    """
    units = []
    for block in text.split('\n\n'):
        props = {}
        for line in block.splitlines():
            key, sep, value = line.partition('=')
            if sep:
                props[key] = value
        if not props.get('Id') or props.get('LoadState') in ('not-found', 'masked'):
            continue
        main_pid = _int(props.get('MainPID', '0'))
        units.append({
            'id': props['Id'],
            'active_state': props.get('ActiveState'),
            'sub_state': props.get('SubState'),
            'main_pid': main_pid or None,
            'control_group': props.get('ControlGroup') or None,
            'oom_score_adjust': _int(props.get('OOMScoreAdjust', '0')),
            'oom_policy': props.get('OOMPolicy') or None,
            'memory_max_bytes': _size(props.get('MemoryMax', '')),
            'memory_high_bytes': _size(props.get('MemoryHigh', '')),
            'memory_low_bytes': _size(props.get('MemoryLow', '')) or None,
            'memory_min_bytes': _size(props.get('MemoryMin', '')) or None,
            'memory_swap_max_bytes': _size(props.get('MemorySwapMax', '')),
            'memory_current_bytes': _size(props.get('MemoryCurrent', '')),
            'allowed_memory_nodes': props.get('AllowedMemoryNodes') or None,
            'managed_oom_memory_pressure': props.get('ManagedOOMMemoryPressure') or None,
            'managed_oom_swap': props.get('ManagedOOMSwap') or None,
        })
    units.sort(key=lambda u: u['id'])
    return units


def read_units(run_command, systemctl_path):
    """Run the one show call. Returns (units, note); units is None on failure.

    run_command(argv) -> (rc, stdout, stderr), e.g. AnsibleModule.run_command.
    """
    if not systemctl_path:
        return None, 'systemctl not found: not a systemd host'
    rc, out, err = run_command(show_command(systemctl_path))
    if rc != 0:
        message = (err or out or '').strip().splitlines()
        return None, 'systemctl show failed (rc=%d): %s' % (rc, message[0] if message else 'no output')
    return parse_show(out), None


# -- reading back what a drop-in asked for ---------------------------------------

# Properties whose value systemd shows in bytes ("infinity" for none).
SIZE_PROPERTIES = ('MemoryMax', 'MemoryHigh', 'MemoryLow', 'MemoryMin', 'MemorySwapMax')


def show_blocks(text, units):
    """{unit: {property: value}} of `systemctl show --property=Id,... UNIT...` output.

    A property systemd does not know is not printed at all: it is missing
    from its unit's dict.
    """
    found = {}
    for unit, block in zip(units, text.split('\n\n')):
        found[unit] = dict(line.partition('=')[::2] for line in block.splitlines() if '=' in line)
    return found


def _nodes(text):
    """A node list as systemd shows it ('0-1 3') or as the drop-in says it, or None when it is none."""
    try:
        return schema.node_list(text)
    except schema.Invalid:
        return None


def property_kept(prop, wanted_bytes_or_text, shown, page_bytes=4096):
    """Whether `systemctl show` says systemd took a drop-in's value.

    wanted: bytes (None for infinity) for a size property, else the text
    written; shown: the value systemctl printed, None when it printed none
    (systemd ignored the property).  A size may differ by a page: systemd
    scales percentages itself.
    """
    if shown is None:
        return False
    if prop in SIZE_PROPERTIES:
        if wanted_bytes_or_text is None:
            return shown in ('infinity', '18446744073709551615')
        try:
            return abs(int(shown) - int(wanted_bytes_or_text)) <= page_bytes
        except ValueError:
            return False
    if prop == 'AllowedMemoryNodes':
        return _nodes(shown) == _nodes(str(wanted_bytes_or_text))
    return shown.strip() == str(wanted_bytes_or_text).strip()
