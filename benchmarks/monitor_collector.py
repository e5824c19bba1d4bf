#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: one run of the monitor role's collector against one node_exporter scrape of the same host.

N sleeping processes (default 5,000) in M throwaway memory cgroups (default 200) with a limit each, so
every process is in some OOM domain. The collector is installed the way the role installs it (the
oom_monitor module, every path in a temporary directory; this machine's systemd and cron are left
alone) and its entry script run as the timer runs it; Debian's node_exporter
(prometheus-node-exporter) runs on a loopback port with its textfile collector reading the
collector's directory. Alternated, R rounds each:

* collector: wall time, CPU time (user + system) and peak RSS of one whole run (GNU time);
* scrape: wall time of one GET /metrics, and the CPU node_exporter spent on it (its utime + stime
  from /proc before and after).

Goal (issue 22): one collector run <= 0.3 s CPU on a 5,000-process host.
Run it through `tools/run bench benchmarks/monitor_collector.py`.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import _common

EXPORTER = '/usr/bin/prometheus-node-exporter'


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def cpu_s(pid):
    """utime + stime of a process, seconds."""
    with open('/proc/%d/stat' % pid) as handle:
        fields = handle.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))


def install(collections, top):
    """The collector installed by the oom_monitor module under top; returns its command line."""
    os.makedirs(os.path.join(top, 'cron.d'))
    args = os.path.join(top, 'args.json')
    with open(args, 'w') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': {
            'monitor': {'textfile_dir': os.path.join(top, 'textfile')}, 'monitor_lib_dir': os.path.join(top, 'lib'),
            'cron_dir': os.path.join(top, 'cron.d'), 'systemd_dir': os.path.join(top, 'systemd'),
            'state_dir': os.path.join(top, 'state')}}, handle)
    module = os.path.join(collections, 'ansible_collections', 'oomguard', 'linux', 'plugins', 'modules',
                          'oom_monitor.py')
    elapsed, result = _common.run_timed([sys.executable, module, args], env=dict(os.environ, PYTHONPATH=collections))
    if result.returncode != 0:
        sys.exit(_common.failure([module, args], result, 'oom_monitor failed'))
    return json.loads(result.stdout.decode())['command'].split()


def timed_run(command):
    """(wall s, CPU s, peak RSS KiB) of one collector run."""
    with tempfile.NamedTemporaryFile('r') as stats:
        result = subprocess.run(['/usr/bin/time', '-o', stats.name, '-f', '%e %U %S %M'] + command,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={'PATH': '/usr/bin:/bin'},
                                check=False)
        if result.returncode != 0:
            sys.exit('the collector failed (%d): %s' % (result.returncode, result.stdout.decode()[-2000:]))
        wall, user, system, rss = stats.read().split()[-4:]
    return float(wall), float(user) + float(system), int(rss)


def timed_scrape(url, pid):
    """(wall s, node_exporter CPU s, bytes) of one scrape."""
    before = cpu_s(pid)
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
    wall = time.perf_counter() - start
    return wall, cpu_s(pid) - before, len(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--processes', type=int, default=5000)
    parser.add_argument('--cgroups', type=int, default=200)
    parser.add_argument('--rounds', type=int, default=7)
    args = parser.parse_args()
    for tool in (EXPORTER, '/usr/bin/time'):
        if not os.path.exists(tool):
            sys.exit('needs %s (apt-get install -y prometheus-node-exporter time)' % tool)
    collections = _common.collections_path()
    top = tempfile.mkdtemp(prefix='oomguard-bench-monitor-')
    exporter = None
    try:
        command = install(collections, top)
        with _common.limited_sleepers(args.processes, args.cgroups) as (placed, version):
            total = sum(1 for name in os.listdir('/proc') if name.isdigit())
            port = free_port()
            exporter = subprocess.Popen([EXPORTER, '--web.listen-address=127.0.0.1:%d' % port,
                                         '--collector.textfile.directory=%s' % os.path.join(top, 'textfile')],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            url = 'http://127.0.0.1:%d/metrics' % port
            deadline = time.monotonic() + 30
            while True:
                try:
                    timed_scrape(url, exporter.pid)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit('node_exporter did not answer on %s in 30 s' % url)
                    time.sleep(0.2)
            timed_run(command)  # the first run counts the boot's kills and writes the state: not timed
            runs, scrapes = [], []
            for dummy in range(args.rounds):
                runs.append(timed_run(command))
                scrapes.append(timed_scrape(url, exporter.pid))
        print('processes on the host: %d; %d of them in %d limited cgroups (cgroup v%d); %d CPUs'
              % (total, placed, args.cgroups, version, os.cpu_count()))
        print('median of %d alternated rounds' % args.rounds)
        run_wall = statistics.median(r[0] for r in runs)
        run_cpu = statistics.median(r[1] for r in runs)
        scrape_wall = statistics.median(s[0] for s in scrapes)
        scrape_cpu = statistics.median(s[1] for s in scrapes)
        print('  collector run        %6.3f s wall  %6.3f s CPU  peak RSS %5.1f MiB  (wall runs: %s)' % (
            run_wall, run_cpu, max(r[2] for r in runs) / 1024.0, _common.runs((r[0] for r in runs), 3)))
        print('  node_exporter scrape %6.3f s wall  %6.3f s CPU  %d kB of metrics  (wall runs: %s)' % (
            scrape_wall, scrape_cpu, scrapes[-1][2] // 1000, _common.runs((s[0] for s in scrapes), 3)))
        print('  collector / scrape   %6.2f wall    %6.2f CPU' % (run_wall / scrape_wall, run_cpu / max(scrape_cpu, 0.001)))
        print('  collector CPU per run: %.3f s (goal <= 0.300 s)' % run_cpu)
    finally:
        if exporter is not None:
            exporter.kill()
            exporter.wait()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == '__main__':
    main()
