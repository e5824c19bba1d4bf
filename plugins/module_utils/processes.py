# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process scan: who the OOM killer would pick, who is protected, which
userspace early OOM killers run, and which programs fork workers.

The scan reads three small files per process (stat, oom_score,
oom_score_adj) and only enriches the top N; processes that exit while we
read them are counted and skipped.  Standard library only.
"""


import os
import re

from ansible_collections.oomguard.linux.plugins.module_utils.cgroups import (
    parse_proc_cgroup, unit_of,
)
from ansible_collections.oomguard.linux.plugins.module_utils import _bounded
from ansible_collections.oomguard.linux.plugins.module_utils import procfs
from ansible_collections.oomguard.linux.plugins.module_utils.procfs import ReadError

PF_KTHREAD = 0x00200000
OOM_SCORE_ADJ_MIN = -1000

# comm of each userspace early OOM killer.  A script run through its shebang
# gets the script's name as comm, so nohang is seen even though it is Python.
EARLY_KILLERS = {
    'earlyoom': 'earlyoom',
    'systemd-oomd': 'systemd-oomd',
    'oomd': 'oomd',
    'oomd_bin': 'oomd',
    'nohang': 'nohang',
}
_INTERPRETERS = ('python', 'python2', 'python3', 'perl')


def parse_status(text):
    """The few /proc/PID/status lines the posture needs (kB and uids)."""
    result = {}
    for line in text.splitlines():
        key, dummy, value = line.partition(':')
        if key in ('RssAnon', 'RssFile', 'RssShmem', 'VmRSS', 'VmSwap'):
            try:
                result[key] = int(value.split()[0])
            except (IndexError, ValueError):
                continue
        elif key == 'Uid':
            result['uid'] = int(value.split()[0])
    return result


def _read_int(host, rel):
    text = _read_quiet(host, rel)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _read_quiet(host, rel):
    """A per-process file, None when the process is gone or hides it."""
    try:
        return host.read(rel)
    except ReadError:
        return None


def _argv(host, pid, limit=4096):
    """A process's arguments (its cmdline split at NULs, at most limit characters read)."""
    text = _read_quiet(host, 'proc/%d/cmdline' % pid) or ''
    return [arg for arg in text[:limit].split('\0') if arg]


# POSIX bracket classes, which earlyoom's regcomp knows and Python's re does not.
_POSIX_CLASSES = {
    '[:alpha:]': 'a-zA-Z', '[:digit:]': '0-9', '[:alnum:]': 'a-zA-Z0-9', '[:upper:]': 'A-Z', '[:lower:]': 'a-z',
    '[:space:]': ' \\t\\n\\r\\f\\v', '[:blank:]': ' \\t', '[:xdigit:]': '0-9A-Fa-f',
    '[:punct:]': re.escape('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'),
}


def earlyoom_patterns(argv):
    """earlyoom's --prefer and --avoid (getopt_long: "--avoid RE" or "--avoid=RE"; the last one counts)."""
    found = {}
    for index, arg in enumerate(argv):
        for name in ('prefer', 'avoid'):
            option = '--' + name
            if arg == option and index + 1 < len(argv):
                found[name] = argv[index + 1]
            elif arg.startswith(option + '='):
                found[name] = arg[len(option) + 1:]
    return found


def _earlyoom_coverage(killer, argv, comms):
    """The running process names each of earlyoom's patterns matches (as earlyoom matches them: the
    comm, POSIX ERE), matched within _bounded's time budget."""
    patterns = earlyoom_patterns(argv)
    killer['patterns'] = patterns
    killer['matches'] = {}
    killer['pattern_problems'] = {}
    names = sorted(patterns)
    compiled = []
    for name in names:
        text = patterns[name]
        for posix, python in _POSIX_CLASSES.items():
            text = text.replace(posix, python)
        try:
            re.compile(text)
        except (re.error, OverflowError, RecursionError) as exc:
            killer['pattern_problems'][name] = 'not read: %s' % exc
            continue
        compiled.append((name, text))
    if not compiled:
        return
    texts = dict((comm, comm) for comm in comms)
    found, slow = _bounded.search_all([text for dummy, text in compiled], texts)
    for index, (name, dummy) in enumerate(compiled):
        if index in slow:
            killer['pattern_problems'][name] = 'not matched within %g s' % _bounded.PATTERN_BUDGET_S
        else:
            killer['matches'][name] = found.get(index, [])


def _cmdline(host, pid, limit=200):
    text = _read_quiet(host, 'proc/%d/cmdline' % pid)
    if not text:
        return ''
    return text.replace('\0', ' ').strip()[:limit]


def cgroup_of(host, pid):
    """(cgroup path, unit): the v2 path, else the v1 memory or systemd path."""
    groups = parse_proc_cgroup(_read_quiet(host, 'proc/%d/cgroup' % pid))
    path = groups.get('memory') or groups.get('') or groups.get('name=systemd')
    unit = unit_of(groups.get('') or groups.get('name=systemd') or path)
    return path, unit


def _enrich(host, pid, base):
    entry = dict(base)
    entry['cmdline'] = _cmdline(host, pid)
    entry['cgroup'], entry['unit'] = cgroup_of(host, pid)
    status = parse_status(_read_quiet(host, 'proc/%d/status' % pid) or '')
    entry['rss_anon_kb'] = status.get('RssAnon')
    entry['swap_kb'] = status.get('VmSwap')
    if 'uid' in status:
        entry['uid'] = status['uid']
    return entry


def _parse_stat(stat_bytes, score_bytes):
    """(comm, ppid, rss_pages, oom_score) of a stat line, 'kthread', or None when it vanished."""
    if stat_bytes is None:
        return None
    try:
        # Only the fields needed, without a full parse: comm sits in
        # parentheses and may hold spaces; after it come state, ppid, ...
        right = stat_bytes.rindex(b')')
        fields = stat_bytes[right + 2:].split(b' ', 22)
        if int(fields[6]) & PF_KTHREAD:
            return 'kthread'
        comm = stat_bytes[stat_bytes.index(b'(') + 1:right].decode('utf-8', 'replace')
        return comm, int(fields[1]), int(fields[21]), int(score_bytes)
    except (ValueError, IndexError, TypeError):
        return None


def _victims(host, entries, page_kb, top_n, exclude_pids):
    """The top_n of the ranked entries, with what the report shows of each."""
    victims = []
    for score, rss_pages, pid, comm, ppid in entries:
        if len(victims) >= top_n or score <= 0:
            # oom_score 0: exempt (-1000) or nothing to free; never chosen.
            break
        if pid in exclude_pids:
            continue
        adj = _read_int(host, 'proc/%d/oom_score_adj' % pid)
        if adj is None:
            continue
        victims.append(_enrich(host, pid, {
            'pid': pid, 'comm': comm, 'oom_score': score, 'oom_score_adj': adj,
            'rss_kb': rss_pages * page_kb, 'ppid': ppid, 'uid': None,
        }))
    return victims


# The wrappers between a connection and the module it runs (a shell, sudo, su, timeout).
_WRAPPERS = ('sh', 'bash', 'dash', 'zsh', 'sudo', 'su', 'doas', 'timeout', 'env')
# Processes of Ansible itself (the controller and its forked workers, with the local
# connection) name it on their command line.
_ANSIBLE_RE = re.compile(r'(^|[/ ])ansible(-[a-z]+)?( |$)|ansible_collections|AnsiballZ_')


def _program(host, pid, comm):
    """The program's name: comm, or in full from the command line when the kernel cut comm at 15 characters."""
    if len(comm) < 15:
        return comm
    for word in _cmdline(host, pid, 4096).split():
        if os.path.basename(word).startswith(comm):
            return os.path.basename(word)
    return comm


def own_tree(host, by_pid, own_pid):
    """The pids of the process tree that runs this scan, and its root: (pids, root pid).

    The root is the topmost ancestor that is Ansible itself (its command line
    says so: the local connection runs the module under ansible-playbook, whose
    other workers audit other hosts), else the topmost of the wrappers and
    interpreters right above this process (an SSH session's shell, sudo).
    """
    chain = []
    pid = own_pid
    while pid in by_pid and pid > 1 and len(chain) < 64:
        chain.append(pid)
        pid = by_pid[pid][4]
    if not chain:
        return set([own_pid]), own_pid
    ansible = [p for p in chain if _ANSIBLE_RE.search(_cmdline(host, p, 4096))]
    if ansible:
        root = ansible[-1]
    else:
        root = chain[0]
        for pid in chain[1:]:
            comm = by_pid[pid][3]
            if comm not in _WRAPPERS and not comm.startswith(_INTERPRETERS):
                break
            root = pid
    children = {}
    for entry in by_pid.values():
        children.setdefault(entry[4], []).append(entry[2])
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree, root


def _forking(host, children, by_pid):
    """Parents with workers of their own name (a kill loop's shape)."""
    forking = []
    for parent_pid, comms in children.items():
        parent = by_pid.get(parent_pid)
        if parent is None or parent_pid == 1:
            continue
        workers = sum(1 for c in comms if c == parent[3])
        if workers:
            cgroup, unit = cgroup_of(host, parent_pid)
            forking.append({'pid': parent_pid, 'comm': parent[3], 'workers': workers,
                            'cgroup': cgroup, 'unit': unit})
    forking.sort(key=lambda f: (f['comm'], f['pid']))
    return forking


def scan_processes(host, page_kb=4, top_n=10, exclude_pids=(), own_pid=None):
    """Rank user processes by oom_score and collect what the posture needs.

    Returns a dict with 'victims' (top_n by oom_score, then rss), 'protected'
    (oom_score_adj -1000), 'early_killers', 'forking' (parents with workers
    of the same name), 'pid1', and the counts 'count', 'kernel_threads' and
    'vanished' (exited during the scan).

    Only stat and oom_score are read for every process; oom_score_adj, uid,
    cmdline and cgroup only for the few that are reported.  exclude_pids are
    left out of victims, and with own_pid (the scanning process on a live
    host) its whole tree (own_tree): the audit is not a victim anyone needs to
    hear about; 'excluded' says how many and under which process.  An
    oom_score of 0 is how the kernel shows oom_score_adj -1000 (or no memory
    at all), so the protected ones are found without reading every
    oom_score_adj.
    """
    entries = []
    kernel_threads = 0
    vanished = 0
    killers = []
    children = {}
    zero_score = []
    names = [name for name in host.listdir('proc') if name.isdigit()]
    for name, files in procfs.read_pid_files(host.path('proc'), names, ('stat', 'oom_score')):
        parsed = _parse_stat(*(files or (None, None)))
        if parsed is None:
            vanished += 1
            continue
        if parsed == 'kthread':
            kernel_threads += 1
            continue
        comm, ppid, rss_pages, score = parsed
        pid = int(name)
        killer = EARLY_KILLERS.get(comm)
        if killer is None and comm.startswith(_INTERPRETERS):
            if 'nohang' in _cmdline(host, pid):
                killer = 'nohang'
        if killer:
            killers.append({'name': killer, 'pid': pid, 'comm': comm})
        if score <= 0:
            zero_score.append((pid, comm))
        children.setdefault(ppid, []).append(comm)
        entries.append((score, rss_pages, pid, comm, ppid))

    # Highest score first; rss breaks ties the way the kernel's points would.
    entries.sort(key=lambda e: (-e[0], -e[1], e[2]))
    by_pid = dict((e[2], e) for e in entries)
    protected = []
    for pid, comm in zero_score:
        if pid != 1 and _read_int(host, 'proc/%d/oom_score_adj' % pid) == OOM_SCORE_ADJ_MIN:
            protected.append({'pid': pid, 'comm': comm})

    pid1 = None
    if 1 in by_pid:
        status = parse_status(_read_quiet(host, 'proc/1/status') or '')
        pid1 = {'comm': by_pid[1][3], 'rss_anon_kb': status.get('RssAnon'),
                'rss_kb': status.get('VmRSS')}

    excluded = None
    if own_pid is not None:
        tree, root = own_tree(host, by_pid, own_pid)
        exclude_pids = set(exclude_pids) | tree
        excluded = {'count': len(tree), 'root_pid': root,
                    'root_comm': _program(host, root, by_pid[root][3]) if root in by_pid else None}

    comms = sorted(set(entry[3] for entry in entries))
    for killer in killers:
        killer['oom_score_adj'] = _read_int(host, 'proc/%d/oom_score_adj' % killer['pid'])
        killer['cgroup'], killer['unit'] = cgroup_of(host, killer['pid'])
        if killer['name'] == 'earlyoom':
            _earlyoom_coverage(killer, _argv(host, killer['pid']), comms)

    return {
        'count': len(entries),
        'kernel_threads': kernel_threads,
        'vanished': vanished,
        'victims': _victims(host, entries, page_kb, top_n, exclude_pids),
        'protected': sorted(protected, key=lambda p: p['pid']),
        'early_killers': killers,
        'forking': _forking(host, children, by_pid),
        'pid1': pid1,
        'excluded': excluded,
        # For the other readers of this snapshot (the OOM domains); not reported.
        'excluded_pids': sorted(exclude_pids),
    }
