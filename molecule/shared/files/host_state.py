# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print, as JSON, the host state hardening may touch: the full `sysctl -a`,
the THP files and every path under /etc (type, mode, owner, sha256 or link
target).  `save` reads the sysctls twice 2 s apart; keys that differ between
the two reads are listed as volatile (counters such as fs.dentry-state), so a
comparison leaves out what moves by itself and nothing else.  `compare` reads
once, and a second time 2 s later only when a sysctl differs from the saved
state (one wait per corpus case saved when nothing changed).
Usage: host_state.py save NAME | compare NAME.  `compare` prints the
differences from the state saved under NAME and how many sysctls it compared.
"""
import hashlib
import sys
import json
import os
import stat
import subprocess
import time

THP = ('/sys/kernel/mm/transparent_hugepage/enabled', '/sys/kernel/mm/transparent_hugepage/defrag',
       '/sys/kernel/mm/transparent_hugepage/khugepaged/defrag')
EXTRA = ('/var/lib/oomguard',)


def sysctls():
    out = subprocess.run(['sysctl', '-a'], capture_output=True, text=True, check=True).stdout
    values = {}
    for line in out.splitlines():
        key, sep, value = line.partition(' = ')
        if sep:
            values[key] = value
    return values


def describe(path):
    info = os.lstat(path)
    entry = {'mode': oct(stat.S_IMODE(info.st_mode)), 'uid': info.st_uid, 'gid': info.st_gid}
    if stat.S_ISLNK(info.st_mode):
        entry['link'] = os.readlink(path)
    elif stat.S_ISDIR(info.st_mode):
        entry['dir'] = True
    elif stat.S_ISREG(info.st_mode):
        with open(path, 'rb') as handle:
            entry['sha256'] = hashlib.sha256(handle.read()).hexdigest()
    return entry


def tree(root):
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            found[path] = describe(path)
    return found


# Counters and random values that move without anyone changing a setting,
# even when they happen not to move during the 2 s of one reading.
ALWAYS_VOLATILE = ('fs.aio-nr', 'fs.dentry-state', 'fs.file-nr', 'fs.inode-nr', 'fs.inode-state',
                   'kernel.ns_last_pid', 'kernel.pty.nr', 'kernel.random.entropy_avail', 'kernel.random.uuid',
                   'kernel.perf_event_max_sample_rate')
VOLATILE_PREFIXES = ('fs.quota.',)


def snapshot(settle=True):
    first = sysctls()
    if settle:
        time.sleep(2)
        second = sysctls()
    else:
        second = first
    files = tree('/etc')
    for extra in EXTRA:
        if os.path.lexists(extra):
            files[extra] = describe(extra)
            files.update(tree(extra))
    thp = {}
    for path in THP:
        if os.path.exists(path):
            with open(path) as handle:
                thp[path] = handle.read()
    return {
        'sysctl': second,
        'volatile': sorted(k for k in set(first) | set(second) if first.get(k) != second.get(k)),
        'thp': thp,
        'files': files,
    }


def compare(old, new):
    skip = set(old['volatile']) | set(new['volatile']) | set(ALWAYS_VOLATILE)
    keys = sorted(k for k in set(old['sysctl']) | set(new['sysctl'])
                  if k not in skip and not k.startswith(VOLATILE_PREFIXES))
    return {
        'compared_sysctls': len(keys),
        'skipped_sysctls': sorted(skip),
        'compared_files': len(set(old['files']) | set(new['files'])),
        'sysctl': ['%s: %r -> %r' % (k, old['sysctl'].get(k), new['sysctl'].get(k))
                   for k in keys if old['sysctl'].get(k) != new['sysctl'].get(k)],
        'thp': ['%s: %r -> %r' % (k, old['thp'].get(k), new['thp'].get(k))
                for k in sorted(set(old['thp']) | set(new['thp'])) if old['thp'].get(k) != new['thp'].get(k)],
        'files': ['%s: %r -> %r' % (k, old['files'].get(k), new['files'].get(k))
                  for k in sorted(set(old['files']) | set(new['files']))
                  if old['files'].get(k) != new['files'].get(k)],
    }


def main():
    action, name = sys.argv[1], sys.argv[2]
    saved = '/var/tmp/oomguard-state-%s.json' % name
    state = snapshot(settle=action == 'save')
    if action == 'save':
        with open(saved, 'w') as handle:
            json.dump(state, handle)
        print(json.dumps({'saved': saved, 'sysctls': len(state['sysctl']), 'files': len(state['files'])}))
    else:
        with open(saved) as handle:
            old = json.load(handle)
        result = compare(old, state)
        if result['sysctl']:
            # Something differs: read again 2 s later, so a counter that moved by itself is left out.
            state = snapshot()
            result = compare(old, state)
        print(json.dumps(result))


if __name__ == '__main__':
    main()
