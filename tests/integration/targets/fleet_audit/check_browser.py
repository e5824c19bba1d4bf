# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open the fleet report in Debian's headless chromium: a screenshot that is a rendered
page, the DOM after the page's script ran (it counted the 101 hosts, built the same first
page of rows as the page wrote, and with 250 rows a page shows them all; a host's basics
are this machine's: kernel release, RAM with its unit, cgroup mode), and no console
message from the page.  Argument: the report directory; the screenshot is left in it
(fleet-report.png).  The page at 10,000 hosts: check_scale.py."""

import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from html.parser import HTMLParser

report = sys.argv[1]
page = 'file://' + os.path.join(report, 'oom-fleet-report.html')
shot = os.path.join(report, 'fleet-report.png')
common = ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1400,1200',
          '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
          '--enable-logging=stderr', '--v=0']


def fresh():
    """A new, empty chromium profile for one run."""
    return ['--user-data-dir=' + tempfile.mkdtemp(prefix='oomguard-chromium-', dir=report)]


run = subprocess.run(common + fresh() + ['--screenshot=' + shot, page], capture_output=True, text=True, timeout=180, check=False)
assert run.returncode == 0, run.stderr[-2000:]
# Page console messages (script errors included) are logged as CONSOLE lines.
console = [line for line in run.stderr.splitlines() if 'CONSOLE' in line]
assert console == [], console

with open(shot, 'rb') as handle:
    png = handle.read()
assert png[:8] == b'\x89PNG\r\n\x1a\n'
width, height = struct.unpack('>II', png[16:24])
assert (width, height) == (1400, 1200), (width, height)
# A blank page compresses to almost nothing and holds a handful of byte values.
chunks, offset = [], 8
while offset < len(png):
    length, kind = struct.unpack('>I4s', png[offset:offset + 8])
    if kind == b'IDAT':
        chunks.append(png[offset + 8:offset + 8 + length])
    offset += 12 + length
pixels = zlib.decompress(b''.join(chunks))
assert len(png) > 30000 and len(set(pixels)) > 64, (len(png), len(set(pixels)))

dom = subprocess.run(common + fresh() + ['--dump-dom', page], capture_output=True, text=True, timeout=180, check=False)
assert dom.returncode == 0, dom.stderr[-2000:]
counted = re.search(r'id="filter-count"[^>]*data-matching="(\d+)" data-total="(\d+)"[^>]*>(\d+) hosts<', dom.stdout)
assert counted and counted.groups() == ('101',) * 3, counted and counted.group(0)
assert re.search(r'id="page-info"[^>]*>rows 1\u201350, page 1 of 3<', dom.stdout)
assert 'refused-ssh' in dom.stdout and '<svg' in dom.stdout
assert [line for line in dom.stderr.splitlines() if 'CONSOLE' in line] == []


def host_rows(html):
    """The host table's rows as tags and texts, every character reference read."""
    items = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            items.append(('<', tag, tuple(attrs)))

        def handle_endtag(self, tag):
            items.append(('>', tag))

        def handle_data(self, data):
            if data.strip():
                items.append(('text', data))

    Rows().feed(re.search(r'<table id="hosts"[^>]*>.*?<tbody>(.*?)</tbody>', html, re.S).group(1))
    return items


with open(os.path.join(report, 'oom-fleet-report.html'), encoding='utf-8') as handle:
    written = handle.read()
# The script rebuilt the first page from the page's data: the same rows as the page wrote.
assert host_rows(dom.stdout) == host_rows(written), 'the script built other rows than the page wrote'
assert len(re.findall(r'<tr data-level=', dom.stdout)) == 50

# 250 rows a page: every host in the DOM, refused-ssh (no result, the last) too.
dom = subprocess.run(common + fresh() + ['--dump-dom', page + '#size=250'], capture_output=True, text=True, timeout=180,
                     check=False)
assert dom.returncode == 0 and [line for line in dom.stderr.splitlines() if 'CONSOLE' in line] == [], dom.stderr[-2000:]
assert len(re.findall(r'<tr data-level=', dom.stdout)) == 101 and '<b>refused-ssh</b>' in dom.stdout
row = re.search(r'<tr [^>]*data-status="ok"[^>]*><td><b>fleet-001</b>.*?</tr>', dom.stdout, re.S)
assert row, 'no row of fleet-001 in the DOM'
row = row.group(0)


def cell(key):
    found = re.search(r'<td class="basic basic-%s"[^>]*>(.*?)</td>' % key, row, re.S)
    assert found, key
    return ' '.join(re.sub(r'<[^>]+>', ' ', found.group(1)).split())


with open('/proc/mounts') as handle:
    fstypes = set(line.split()[2] for line in handle)
mode = {(True, True): 'hybrid', (False, True): 'v2', (True, False): 'v1'}.get(('cgroup' in fstypes, 'cgroup2' in fstypes), 'none')
assert cell('kernel') == os.uname().release, cell('kernel')
assert re.match(r'^\d+(\.\d)? (KiB|MiB|GiB|TiB) RAM \d+(\.\d)? (KiB|MiB|GiB|TiB) available$', cell('memory')), cell('memory')
assert cell('cgroup').split()[0] == mode, (cell('cgroup'), mode)
assert cell('swap') == 'none' or re.match(r'^\d+(\.\d)? (KiB|MiB|GiB|TiB) total', cell('swap')), cell('swap')
assert re.match(r'^(some \d+\.\d\d % full \d+\.\d\d % \(avg10\)|not available)$', cell('psi')), cell('psi')
assert re.match(r'^.+ \(pid \d+\) oom_score \d+, RSS \d+(\.\d)? (KiB|MiB|GiB)$', cell('victim')), cell('victim')
assert '>reachable<' in row and 'Findings are counted by severity' in dom.stdout
print('chromium: screenshot %dx%d (%d bytes), %s hosts counted by the page script, its first page as written; '
      'fleet-001: kernel %s, %s, cgroup %s'
      % (width, height, len(png), counted.group(1), cell('kernel'), cell('memory'), cell('cgroup')))
