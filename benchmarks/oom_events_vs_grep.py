#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: oom_events on a large kernel log against grep, side by side.

Builds a kernel log of the given sizes (default 256 MiB and 1 GiB) under
/var/tmp: real-looking noise (this host's own non-OOM kernel messages,
re-stamped) with real OOM reports from tests/unit/fixtures/oom_reports spliced
in every few MiB.  Then, on the same file, alternated, R rounds each:

  * the oom_events module run directly (python plugins/modules/oom_events.py
    ARGS.json), the way AnsiballZ runs it, and
  * `grep -c 'invoked oom-killer' FILE`.

Prints wall time, CPU time, throughput and peak RSS (GNU time) of each, the
module's throughput as a fraction of grep's (goal >= 0.5), and whether the
module's peak memory stays flat as the file grows.  The module searches and
parses a large file in one forked worker per CPU while grep uses one: the
machine's CPU count and load average (before and after each size) are
printed too, as a busy machine slows the module more than grep.  With
--wrap 72 every line is hard-wrapped at 72 columns the way a mail client
does (goal >= 0.3 for that log).  Run it through `tools/run bench
benchmarks/oom_events_vs_grep.py`.  The generated files are removed at the
end unless --keep.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap

import _common

REPORTS = [
    'tests/unit/fixtures/oom_reports/generated/host-6.18-fc-memcg-v1/dmesg.txt',
    'tests/unit/fixtures/oom_reports/seeds/seed004-3.2.59-32bit-lowmem.txt',
    'tests/unit/fixtures/oom_reports/seeds/seed003-nginx-kill-loop.txt',
]
# Lines of the host's own log that must not be used as noise.
NOT_NOISE = re.compile(r'oom|Kill|killed|Mem-Info|Memory cgroup|Tasks state|panic|Command line|cmdline')


def noise_lines():
    out = subprocess.run(['dmesg'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout
    lines = [line.split('] ', 1)[1] for line in out.decode('utf-8', 'replace').splitlines()
             if '] ' in line and not NOT_NOISE.search(line)]
    if len(lines) < 50:
        sys.exit('not enough kernel messages on this host to build noise (need root for dmesg)')
    return lines


def mail_wrap(text, width):
    """text hard-wrapped the way a mail client does (at spaces, longer words cut)."""
    if not width:
        return text
    out = []
    for line in text.split('\n'):
        if len(line) <= width:
            out.append(line)
        else:
            out.extend(textwrap.wrap(line, width, break_on_hyphens=False))
    return '\n'.join(out)


def build(path, size_bytes, noise, reports, every_bytes=4 << 20, wrap=0):
    """Write size_bytes of log (wrapped at wrap columns, 0: not); returns the
    number of OOM reports ('invoked oom-killer' lines before wrapping)."""
    if wrap:
        reports = [mail_wrap(report, wrap) for report in reports]
    invoked = 0
    written = 0
    uptime = 1.0
    next_report = every_bytes
    index = 0
    with open(path, 'wb') as out:
        block = []
        while written < size_bytes:
            line = '[%12.6f] %s\n' % (uptime, noise[index % len(noise)])
            if wrap and len(line) > wrap + 1:
                line = mail_wrap(line[:-1], wrap) + '\n'
            index += 1
            uptime += 0.000731
            block.append(line)
            written += len(line)
            if written >= next_report:
                report = reports[(next_report // every_bytes) % len(reports)]
                block.append(report)
                written += len(report)
                invoked += report.count('oom-killer:')
                next_report += every_bytes
            if len(block) >= 4096:
                out.write(''.join(block).encode())
                block = []
        out.write(''.join(block).encode())
    return invoked


def timed(argv):
    """(seconds, peak RSS kB, stdout, CPU seconds) through GNU time (RSS: the largest of the process and its workers)."""
    fmt = '%e %M %U %S'
    with tempfile.NamedTemporaryFile('r', suffix='.time') as stats:
        result = subprocess.run(['/usr/bin/time', '-o', stats.name, '-f', fmt] + argv,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if result.returncode not in (0, 1):
            sys.exit('failed (%d): %s\n%s' % (result.returncode, ' '.join(argv), result.stderr.decode()[-2000:]))
        seconds, rss_kb, user, system = stats.read().split()[-4:]
    return float(seconds), int(rss_kb), result.stdout.decode(), float(user) + float(system)


def load():
    return ' '.join('%.2f' % value for value in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes-mib', default='256,1024', help='file sizes in MiB (default 256,1024)')
    parser.add_argument('--rounds', type=int, default=3, help='alternated rounds (default 3)')
    parser.add_argument('--keep', action='store_true', help='keep the generated files')
    parser.add_argument('--wrap', type=int, default=0, metavar='COLUMNS',
                        help='hard-wrap the log at COLUMNS like a mail client (e.g. 72; default: not wrapped)')
    args = parser.parse_args()
    if not os.path.exists('/usr/bin/time'):
        sys.exit('needs GNU time (/usr/bin/time, Debian package "time")')
    collections = _common.collections_path()
    module = os.path.join(collections, 'ansible_collections', 'oomguard', 'linux', 'plugins', 'modules', 'oom_events.py')
    reports = []
    for rel in REPORTS:
        with open(os.path.join(_common.ROOT, rel)) as handle:
            reports.append(handle.read())
    noise = noise_lines()
    workdir = tempfile.mkdtemp(prefix='oomguard-bench-events-', dir='/var/tmp')
    env_python = sys.executable
    peaks = {}
    try:
        for size_mib in [int(s) for s in args.sizes_mib.split(',')]:
            path = os.path.join(workdir, 'kern-%dm.log' % size_mib)
            invoked = build(path, size_mib << 20, noise, reports, wrap=args.wrap)
            size_bytes = os.path.getsize(path)
            args_file = os.path.join(workdir, 'args.json')
            with open(args_file, 'w') as handle:
                json.dump({'ANSIBLE_MODULE_ARGS': {'path': [path], 'year': 2021, 'max_events': 0}}, handle)
            env_argv = ['env', 'PYTHONPATH=' + collections, env_python, module, args_file]
            # The file was just written: let writeback finish (it competes for
            # the CPUs) and warm the page cache once for both, unmeasured.
            os.sync()
            timed(env_argv)
            timed(['grep', '-c', 'invoked oom-killer', path])
            mod_runs, grep_runs = [], []
            load_before = load()
            for dummy in range(args.rounds):
                mod_runs.append(timed(env_argv))
                grep_runs.append(timed(['grep', '-c', 'invoked oom-killer', path]))
            found = json.loads(mod_runs[-1][2])['summary']
            grep_count = int(grep_runs[-1][2].strip())
            mod_s = statistics.median(r[0] for r in mod_runs)
            grep_s = statistics.median(r[0] for r in grep_runs)
            mod_rss = max(r[1] for r in mod_runs)
            peaks[size_mib] = mod_rss
            mib = size_bytes / float(1 << 20)
            print('%d MiB log%s, %d reports spliced in (%d "invoked oom-killer" lines), median of %d alternated rounds after a warm-up'
                  % (size_mib, ' wrapped at %d columns' % args.wrap if args.wrap else '', invoked, grep_count,
                     args.rounds))
            print('  %d CPUs, load average %s before, %s after' % (os.cpu_count(), load_before, load()))
            print('  oom_events module  %7.2f s  %7.0f MiB/s  CPU %5.2f s  peak RSS %6.1f MiB  events found %d  (runs: %s)'
                  % (mod_s, mib / mod_s, statistics.median(r[3] for r in mod_runs), mod_rss / 1024.0, found['events'],
                     _common.runs(r[0] for r in mod_runs)))
            print('  grep -c            %7.2f s  %7.0f MiB/s  CPU %5.2f s  peak RSS %6.1f MiB  (runs: %s)'
                  % (grep_s, mib / max(grep_s, 0.01), statistics.median(r[3] for r in grep_runs),
                     max(r[1] for r in grep_runs) / 1024.0, _common.runs(r[0] for r in grep_runs)))
            # A mail-wrapped log is repaired window by window: its goal is lower (issue 19).
            print('  module throughput / grep throughput: %.2f  (goal >= %s)'
                  % (max(grep_s, 0.01) / mod_s, '0.30' if args.wrap else '0.50'))
            if not args.keep:
                os.remove(path)  # one large file on disk at a time
        sizes = sorted(peaks)
        if len(sizes) >= 2:
            print('peak RSS of the module: %s  (flat: the largest file costs %.2fx the smallest)'
                  % (', '.join('%d MiB log -> %.1f MiB' % (s, peaks[s] / 1024.0) for s in sizes),
                     peaks[sizes[-1]] / float(peaks[sizes[0]])))
    finally:
        if not args.keep:
            shutil.rmtree(workdir)


if __name__ == '__main__':
    main()
