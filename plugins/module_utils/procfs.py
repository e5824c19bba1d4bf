# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only readers for the kernel's memory state in /proc and /sys.

Every reader takes a HostRoot so that tests can point it at a captured tree
(``tests/unit/fixtures/trees/<origin>``) instead of the live ``/``.  Parsers
(``parse_*``) are pure functions over the file text; readers (``read_*``)
open the files and tolerate what a kernel does not have.  Standard library
only: this code runs on the managed host.
"""


import errno
import os
import stat
import threading


class ReadError(Exception):
    """A file exists but could not be read (permission, I/O)."""

    def __init__(self, path, reason):
        super(ReadError, self).__init__('%s: %s' % (path, reason))
        self.path = path
        self.reason = reason


_FILE_KINDS = ((stat.S_ISREG, 'a regular file'), (stat.S_ISDIR, 'a directory'), (stat.S_ISLNK, 'a symlink'),
               (stat.S_ISFIFO, 'a FIFO (named pipe)'), (stat.S_ISCHR, 'a character device'),
               (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket'))


def file_kind(mode):
    """What an st_mode is, in words ('a FIFO (named pipe)'), for messages about a path given as an option."""
    for test, name in _FILE_KINDS:
        if test(mode):
            return name
    return 'a special file'


# The largest /proc or /sys file a captured tree holds is a few MiB (slabinfo,
# a big host's smaps_rollup); anything far above is not a capture.
CAPTURED_FILE_MAX_BYTES = 64 << 20


class HostRoot:
    """The filesystem root a snapshot is read from ('/' on a live host)."""

    def __init__(self, root='/'):
        self.root = root
        self.live = os.path.realpath(root) == '/'

    def path(self, rel):
        return os.path.join(self.root, rel.lstrip('/'))

    def exists(self, rel):
        return os.path.exists(self.path(rel))

    def read(self, rel, missing_ok=True):
        """Return the file's text, None when absent; ReadError when unreadable.

        A captured tree (any root but /) is read as files: a FIFO, device or
        socket there is refused, never opened, and no file is read past
        CAPTURED_FILE_MAX_BYTES.  The live /proc and /sys are read as they are.
        """
        full = self.path(rel)
        try:
            if not self.live:
                return self._read_captured(full)
            with open(full, 'rb') as handle:
                return handle.read().decode('utf-8', 'replace')
        except (IOError, OSError) as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ESRCH) and missing_ok:
                return None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise ReadError(full, 'permission denied (needs root)')
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ESRCH):
                raise ReadError(full, 'does not exist')
            raise ReadError(full, os.strerror(exc.errno or 0) or str(exc))

    def _read_captured(self, full):
        info = os.stat(full)
        if not stat.S_ISREG(info.st_mode):
            raise ReadError(full, 'not a regular file; a captured tree holds files only')
        fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, 'rb') as handle:
            data = handle.read(CAPTURED_FILE_MAX_BYTES + 1)
        if len(data) > CAPTURED_FILE_MAX_BYTES:
            raise ReadError(full, 'larger than %d MiB; no /proc or /sys file of a capture is' % (
                CAPTURED_FILE_MAX_BYTES >> 20))
        return data.decode('utf-8', 'replace')

    def listdir(self, rel):
        try:
            return os.listdir(self.path(rel))
        except (IOError, OSError):
            return []


def _to_number(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


# -- /proc/meminfo -----------------------------------------------------------

# Lines of /proc/meminfo that are counts, not kB.
HUGEPAGE_COUNTS = ('HugePages_Total', 'HugePages_Free', 'HugePages_Rsvd', 'HugePages_Surp')


def parse_meminfo(text):
    """Parse /proc/meminfo (or a node's meminfo) into {name: kB}.

    Node meminfo lines read 'Node 0 MemTotal:  123 kB'; the 'Node N' prefix is
    dropped.  HugePages_* lines are counts and come back in a second dict.
    """
    memory_kb = {}
    hugepages = {}
    for line in text.splitlines():
        if ':' not in line:
            continue
        key, dummy, value = line.partition(':')
        key = key.split()[-1] if key.strip() else key
        fields = value.split()
        if not fields:
            continue
        try:
            number = int(fields[0])
        except ValueError:
            continue
        if key in HUGEPAGE_COUNTS:
            hugepages[key] = number
        else:
            memory_kb[key] = number
    return memory_kb, hugepages


def read_meminfo(host):
    text = host.read('proc/meminfo', missing_ok=False)
    return parse_meminfo(text)


# -- /proc/vmstat -----------------------------------------------------------

def parse_vmstat(text):
    counters = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            try:
                counters[fields[0]] = int(fields[1])
            except ValueError:
                continue
    return counters


def read_vmstat(host):
    text = host.read('proc/vmstat')
    return parse_vmstat(text) if text is not None else None


# -- /proc/zoneinfo ---------------------------------------------------------

_ZONE_PAGE_FIELDS = ('free', 'min', 'low', 'high', 'spanned', 'present', 'managed')


def parse_zoneinfo(text, page_kb=4):
    """Per-zone free pages and watermarks, converted to kB.

    Works for the 2.6.32 layout ('pages free N' then 'min N' ...) and the
    current one (which adds 'boost', 'promo' and a per-node stats block).
    """
    zones = []
    zone = None
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith('Node '):
            # 'Node 0, zone   Normal'
            head, dummy, name = line.partition(', zone')
            try:
                node = int(head.split()[1])
            except (IndexError, ValueError):
                zone = None
                continue
            zone = {'node': node, 'zone': name.strip()}
            zones.append(zone)
            continue
        if zone is None or not stripped:
            continue
        fields = stripped.split()
        if len(fields) == 3 and fields[0] == 'pages' and fields[1] == 'free':
            key, value = 'free', fields[2]
        elif len(fields) == 2 and fields[0] in _ZONE_PAGE_FIELDS:
            key, value = fields
        else:
            continue
        if key + '_kb' not in zone:
            try:
                zone[key + '_kb'] = int(value) * page_kb
            except ValueError:
                pass
    return zones


def read_zoneinfo(host, page_kb=4):
    text = host.read('proc/zoneinfo')
    return parse_zoneinfo(text, page_kb) if text is not None else None


# -- /proc/buddyinfo --------------------------------------------------------

def parse_buddyinfo(text):
    """Free blocks per order, per zone: [{'node', 'zone', 'free_blocks': [...]}]."""
    result = []
    for line in text.splitlines():
        # 'Node 0, zone   Normal      1      3 ...'
        head, sep, rest = line.partition(', zone')
        if not sep:
            continue
        fields = rest.split()
        try:
            node = int(head.split()[1])
            blocks = [int(count) for count in fields[1:]]
        except (IndexError, ValueError):
            continue
        result.append({'node': node, 'zone': fields[0], 'free_blocks': blocks})
    return result


def read_buddyinfo(host):
    text = host.read('proc/buddyinfo')
    return parse_buddyinfo(text) if text is not None else None


# -- /proc/slabinfo ---------------------------------------------------------

def parse_slabinfo(text, page_kb=4):
    """Caches from slabinfo 2.x with their footprint in bytes.

    The footprint is num_slabs * pagesperslab * page size: what the cache holds
    in memory, used and unused objects alike.
    """
    caches = []
    for line in text.splitlines():
        if line.startswith('slabinfo') or line.startswith('#'):
            continue
        head, dummy, rest = line.partition(':')
        fields = head.split()
        slabdata = rest.rpartition('slabdata')[2].split()
        if len(fields) < 6:
            continue
        try:
            active_objs, num_objs, objsize, objperslab, pagesperslab = [int(f) for f in fields[1:6]]
            num_slabs = int(slabdata[1]) if len(slabdata) >= 2 else 0
        except ValueError:
            continue
        size_bytes = num_slabs * pagesperslab * page_kb * 1024
        if not size_bytes:
            size_bytes = num_objs * objsize
        caches.append({
            'name': fields[0],
            'active_objs': active_objs,
            'num_objs': num_objs,
            'objsize_bytes': objsize,
            'size_bytes': size_bytes,
        })
    return caches


def read_slabinfo(host, page_kb=4):
    """Raise ReadError without root (the file is 0400 on current kernels)."""
    text = host.read('proc/slabinfo')
    return parse_slabinfo(text, page_kb) if text is not None else None


# -- /proc/pressure/memory --------------------------------------------------

def parse_pressure(text):
    """PSI lines 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0' -> dict."""
    result = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] not in ('some', 'full'):
            continue
        values = {}
        for item in fields[1:]:
            key, dummy, value = item.partition('=')
            if key == 'total':
                values['total_us'] = int(value)
            else:
                values[key] = float(value)
        result[fields[0]] = values
    return result


def read_pressure(host):
    """None where the kernel has no PSI (before 4.20, or psi=0)."""
    try:
        text = host.read('proc/pressure/memory')
    except ReadError as exc:
        # With CONFIG_PSI but psi disabled on the command line the file
        # exists yet reading it fails with EOPNOTSUPP.
        if 'not supported' in exc.reason.lower():
            return None
        raise
    return parse_pressure(text) if text is not None else None


# -- sysctls -----------------------------------------------------------------

OOM_SYSCTLS = (
    'vm.panic_on_oom',
    'kernel.panic',
    'vm.overcommit_memory',
    'vm.overcommit_ratio',
    'vm.overcommit_kbytes',
    'vm.min_free_kbytes',
    'vm.watermark_scale_factor',
    'vm.watermark_boost_factor',
    'vm.oom_kill_allocating_task',
    'vm.oom_dump_tasks',
    'vm.compaction_proactiveness',
    'vm.extfrag_threshold',
    'vm.swappiness',
    'vm.admin_reserve_kbytes',
    'vm.user_reserve_kbytes',
    'vm.zone_reclaim_mode',
    'vm.nr_hugepages',
    'vm.lowmem_reserve_ratio',
)


def sysctl_path(name):
    return 'proc/sys/' + name.replace('.', '/')


def read_sysctls(host, names=OOM_SYSCTLS):
    """{name: value} for the sysctls this kernel has; absent ones are left out.

    Integer values come back as int, multi-value ones (lowmem_reserve_ratio)
    as a list of int, anything else as the stripped string.
    """
    values = {}
    for name in names:
        text = host.read(sysctl_path(name))
        if text is None:
            continue
        fields = text.split()
        numbers = [_to_number(f) for f in fields]
        if len(fields) == 1:
            values[name] = numbers[0]
        elif fields and all(isinstance(n, int) for n in numbers):
            values[name] = numbers
        else:
            values[name] = text.strip()
    return values


# -- transparent huge pages -------------------------------------------------

THP_DIR = 'sys/kernel/mm/transparent_hugepage'


def parse_bracketed(text):
    """'always [madvise] never' -> ('madvise', ['always', 'madvise', 'never'])."""
    options = []
    selected = None
    for word in text.split():
        if word.startswith('[') and word.endswith(']'):
            word = word[1:-1]
            selected = word
        options.append(word)
    if selected is None and len(options) == 1:
        selected = options[0]
    return selected, options


def read_thp(host):
    """None where the kernel has no THP (CONFIG_TRANSPARENT_HUGEPAGE=n)."""
    enabled = host.read(THP_DIR + '/enabled')
    if enabled is None:
        return None
    result = {}
    result['enabled'], result['enabled_options'] = parse_bracketed(enabled)
    defrag = host.read(THP_DIR + '/defrag')
    if defrag is not None:
        result['defrag'], result['defrag_options'] = parse_bracketed(defrag)
    khugepaged = host.read(THP_DIR + '/khugepaged/defrag')
    if khugepaged is not None:
        result['khugepaged_defrag'] = _to_number(khugepaged.strip())
    return result


# -- NUMA -------------------------------------------------------------------

# -- per-process files, many at once ----------------------------------------------

# Below this many processes one thread is as fast; above it two threads
# overlap the /proc reads (syscalls release the GIL), about 1.5x on 2 CPUs.
THREADED_READ_MIN = 1000


def read_small(path):
    """One small /proc file with the fewest syscalls, at most 4 KiB (non-blocking: a
    capture holds no FIFO to wait on)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _pid_rows(proc, pids, files):
    rows = []
    for pid in pids:
        base = '%s/%s/' % (proc, pid)
        try:
            rows.append((pid, [read_small(base + name) for name in files]))
        except OSError:
            # Gone (ESRCH/ENOENT) or hidden (hidepid): either way not readable.
            rows.append((pid, None))
    return rows


def read_pid_files(proc, pids, files):
    """[(pid, [bytes of each file] or None when the process is gone)], in the pids' order."""
    if len(pids) < THREADED_READ_MIN:
        return _pid_rows(proc, pids, files)
    half = len(pids) // 2
    box = []
    worker = threading.Thread(target=lambda: box.append(_pid_rows(proc, pids[half:], files)))
    worker.start()
    rows = _pid_rows(proc, pids[:half], files)
    worker.join()
    return rows + (box[0] if box else [])


NODE_DIR = 'sys/devices/system/node'


# Node and CPU numbers stay far below this (MAX_NUMNODES is at most 1024, NR_CPUS 8192 on x86): a
# list that goes beyond it is not the kernel's, and is refused rather than expanded.
LIST_ID_MAX = 65535


def parse_node_list(text, path='-'):
    """Kernel list format '0-2,4' -> [0, 1, 2, 4]; ReadError naming path for anything else."""
    nodes = []
    for part in (text or '').strip().split(','):
        if not part:
            continue
        low, sep, high = part.partition('-')
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            first = last = None
        if first is None or not 0 <= first <= last <= LIST_ID_MAX:
            raise ReadError(path, "%s is not in the kernel's list format ('0-2,4', numbers up to %d): '%s'"
                            % (path, LIST_ID_MAX, part[:40]))
        nodes.extend(range(first, last + 1))
    return nodes


def _distances(text, path):
    """A node's distance line ('10 21') -> [10, 21]; ReadError naming path for anything else."""
    words = (text or '').split()
    if len(words) > LIST_ID_MAX or not all(word.isdigit() for word in words):
        raise ReadError(path, "%s is not a line of distances ('10 21'): '%s'" % (path, (text or '').strip()[:40]))
    return [int(word) for word in words]


def read_numa(host):
    """Nodes with their CPUs and per-node meminfo (kB).

    Kernels without CONFIG_NUMA have no node directory: one implicit node 0
    is reported with meminfo left empty.
    """
    online = host.read(NODE_DIR + '/online')
    node_ids = parse_node_list(online, NODE_DIR + '/online') if online is not None else []
    if online is None:
        node_ids = sorted(int(name[4:]) for name in host.listdir(NODE_DIR)
                          if name.startswith('node') and name[4:].isdigit())
    has_memory = host.read(NODE_DIR + '/has_memory')
    with_memory = parse_node_list(has_memory, NODE_DIR + '/has_memory') if has_memory is not None else node_ids
    nodes = []
    for node in node_ids:
        base = '%s/node%d' % (NODE_DIR, node)
        meminfo = host.read(base + '/meminfo')
        memory_kb = parse_meminfo(meminfo)[0] if meminfo is not None else {}
        cpulist = host.read(base + '/cpulist')
        distance = host.read(base + '/distance')
        nodes.append({
            'node': node,
            'cpus': parse_node_list(cpulist, base + '/cpulist') if cpulist else [],
            'has_memory': node in with_memory,
            'memory_kb': memory_kb,
            'distance': _distances(distance, base + '/distance'),
        })
    return {'numa_kernel': online is not None or bool(node_ids), 'nodes': nodes}


# -- kernel / platform ------------------------------------------------------

_32BIT_MACHINES = ('i386', 'i486', 'i586', 'i686', 'x86', 'armv6l', 'armv7l', 'arm',
                   'mips', 'mipsel', 'ppc', 'powerpc', 's390', 'sparc', 'm68k', 'parisc')


def read_kernel(host, meminfo_kb, zones):
    """Release, architecture, word size and HighMem presence.

    The architecture comes from kernel.arch (sysctl, present on current
    kernels); on a live host os.uname() covers older ones.  HighMem is what
    makes the 32-bit lowmem OOM possible: a HighTotal line in meminfo or a
    HighMem zone in zoneinfo.
    """
    release = host.read('proc/sys/kernel/osrelease')
    arch = host.read('proc/sys/kernel/arch')
    machine = arch.strip() if arch else (os.uname()[4] if host.live else None)
    cmdline = host.read('proc/cmdline')
    high_total_kb = meminfo_kb.get('HighTotal')
    high_zone = any(z.get('zone') == 'HighMem' for z in zones or [])
    bits = None
    if machine:
        bits = 32 if machine in _32BIT_MACHINES or machine.startswith('i') and machine.endswith('86') else 64
    return {
        'release': release.strip() if release else None,
        'machine': machine,
        'bits': bits,
        'highmem': bool(high_total_kb) or high_zone,
        'high_total_kb': high_total_kb,
        'cmdline': _kernel_args(cmdline),
    }


def _kernel_args(cmdline):
    """The kernel's own parameters: what follows ' -- ' is init's argv and
    may carry a supervisor's addresses or secrets, so it is not reported."""
    if not cmdline:
        return None
    return cmdline.strip().split(' -- ', 1)[0]
