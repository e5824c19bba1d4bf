# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test services' workload: a named process that holds or grows memory.

    hold.py NAME hold MIB          touch MIB MiB, then sleep (a service's working set)
    hold.py NAME grow              grow 16 MiB at a time until killed (a runaway)
    hold.py NAME grow-while PID [CGROUP_DIR]
                                   grow 8 MiB at a time while PID lives, then exit
                                   (first moving itself into CGROUP_DIR when given)

NAME becomes the process name (/proc/self/comm), which is what earlyoom's
prefer/avoid patterns and the kernel's OOM report show.
"""
import mmap
import os
import sys
import time


# MAP_POPULATE makes every page resident in one system call (fast under TCG).
# Python names it from 3.10; Debian 11 has 3.9 (0x8000 is its value on x86).
POPULATE = getattr(mmap, 'MAP_POPULATE', 0x8000)


def chunk(mib):
    return mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | POPULATE)


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().split(') ')[1][0] not in 'ZX'
    except (IOError, OSError, IndexError):
        return False


def main():
    name, mode = sys.argv[1], sys.argv[2]
    with open('/proc/self/comm', 'w') as handle:
        handle.write(name[:15])
    held = []
    if mode == 'hold':
        held.append(chunk(int(sys.argv[3])))
        while True:
            time.sleep(3600)
    elif mode == 'grow':
        while True:
            held.append(chunk(16))
    elif mode == 'grow-while':
        pid = int(sys.argv[3])
        if len(sys.argv) > 4:
            with open(sys.argv[4] + '/cgroup.procs', 'w') as handle:
                handle.write(str(os.getpid()))
        while alive(pid):
            held.append(chunk(8))
    else:
        sys.exit('unknown mode %s' % mode)


if __name__ == '__main__':
    main()
