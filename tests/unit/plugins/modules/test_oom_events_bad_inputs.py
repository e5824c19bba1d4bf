# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oom_events on hostile and mistaken inputs (oom_events_bad_inputs.yml).

Each case runs the real module as a subprocess with a memory ceiling
(RLIMIT_AS: the peak of a normal run plus EXTRA_BYTES) and a 30 s timeout:
it must fail with a message naming the option and what is allowed, or
succeed with a note saying what a read limit cut - never hang, never a
traceback, never a Python repr.
"""

import gzip
import json
import os
import socket
import subprocess
import sys
import zlib

import pytest
import yaml

from ansible_collections.oomguard.linux.plugins.modules import oom_events
from ansible_collections.oomguard.linux.tests.unit.plugins.module_utils.test_oom_events import FIXTURE

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'oom_events_bad_inputs.yml')) as _handle:
    CASES = yaml.safe_load(_handle)
# The collections root the module is imported from in the subprocess.
COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(oom_events.__file__), *['..'] * 5))
EXTRA_BYTES = 280 << 20
TIMEOUT_S = 30
# Runs the module under a memory ceiling; prints its VmPeak on stderr at exit.
DRIVER = r'''
import atexit, resource, runpy, sys
limit = int(sys.argv[2])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
def peak():
    with open('/proc/self/status') as handle:
        for line in handle:
            if line.startswith('VmPeak:'):
                sys.stderr.write('\n' + line)
atexit.register(peak)
sys.argv = ['oom_events', sys.argv[1]]
runpy.run_module('ansible_collections.oomguard.linux.plugins.modules.oom_events', run_name='__main__')
'''


def run_module(args, tmp_path, limit_bytes=0):
    """(result, stderr, peak bytes) of the module run as a subprocess."""
    argfile = tmp_path / 'args.json'
    argfile.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    proc = subprocess.run([sys.executable, '-c', DRIVER, str(argfile), str(limit_bytes)], capture_output=True,
                          timeout=TIMEOUT_S, env=env, cwd=str(tmp_path), check=False)
    out = proc.stdout.decode('utf-8', 'replace')
    err = proc.stderr.decode('utf-8', 'replace')
    assert 'Traceback' not in out + err, out + err
    peak_kb = [int(line.split()[1]) for line in err.splitlines() if line.startswith('VmPeak:')]
    return json.loads(out[out.index('{'):]), err, (peak_kb[-1] << 10) if peak_kb else None


@pytest.fixture(scope='module')
def ceiling_bytes(tmp_path_factory):
    """What a normal run (a real 14-kill log) peaks at, plus EXTRA_BYTES."""
    result, dummy, peak = run_module({'path': [FIXTURE]}, tmp_path_factory.mktemp('normal'))
    assert result['summary']['events'] == 14 and not result.get('failed'), result
    return peak + EXTRA_BYTES


def _zeros_gzip(path, total_bytes, block):
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header
    with open(path, 'wb') as handle:
        for dummy in range(total_bytes // len(block)):
            handle.write(packer.compress(block))
        handle.write(packer.flush())


def setup(kind, tmp):
    if kind == 'fifo':
        os.mkfifo(str(tmp / 'kern.fifo'))
    elif kind == 'socket':
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp / 's.sock'))
        return server
    elif kind == 'dir':
        (tmp / 'logs').mkdir()
        (tmp / 'a.log').write_bytes(b'')
    elif kind == 'zero_link':
        os.symlink('/dev/zero', str(tmp / 'kern.log'))
    elif kind == 'gzip_bomb':
        _zeros_gzip(str(tmp / 'kern.log.2.gz'), 300 << 20, bytes(1 << 20))
    elif kind == 'long_line_gzip':
        _zeros_gzip(str(tmp / 'kern.log.3.gz'), 300 << 20, b'x' * (1 << 20))
    elif kind == 'long_line':
        # One 200 MB line ending like a report's first line: its "comm" must not come back.
        with open(str(tmp / 'kern.log'), 'wb') as handle:
            handle.write(b'Nov 23 01:46:01 vm kernel: [   81.382304] ')
            block = b'A' * (1 << 20)
            for dummy in range(200):
                handle.write(block)
            handle.write(b' invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n')
    elif kind == 'gzip_fixture':
        with open(FIXTURE, 'rb') as source:
            (tmp / 'kern.log.1.gz').write_bytes(gzip.compress(source.read()))
    elif kind is not None:
        raise ValueError(kind)
    return None


def _fill(value, tmp):
    if isinstance(value, str):
        return value.replace('{tmp}', str(tmp)).replace('{fixture}', FIXTURE)
    if isinstance(value, list):
        return [_fill(item, tmp) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, tmp) for key, item in value.items()}
    return value


def test_the_suite_covers_what_issue_18_lists():
    names = {case['name'] for case in CASES}
    assert len(CASES) >= 15 and len(names) == len(CASES)
    for name in ('dev_zero', 'dev_urandom', 'dev_kmsg_as_path', 'fifo', 'unix_socket', 'directory', 'gzip_bomb',
                 'one_200_mb_line', 'relative_path', 'glob_matching_nothing', 'glob_matching_a_device', 'year_99999',
                 'max_events_negative', 'max_events_huge', 'since_garbage', 'byte_budget_hit', 'symlink_to_dev_zero'):
        assert name in names


@pytest.mark.parametrize('case', CASES, ids=[case['name'] for case in CASES])
def test_bad_input(case, tmp_path, ceiling_bytes):
    keep = setup(case.get('setup'), tmp_path)
    try:
        result, err, peak = run_module(dict(_fill(case['args'], tmp_path), host_label='web1'), tmp_path, ceiling_bytes)
    finally:
        if keep is not None:
            keep.close()
    assert bool(result.get('failed')) is case['failed'], (result, err)
    if case['failed']:
        for text in _fill(case['msg'], tmp_path):
            assert text in result['msg'], result['msg']
        assert 'allowed: ' in result['msg']
        # Every line names the host, as the roles and playbooks label it.
        assert all(line.startswith('host web1: ') for line in result['msg'].splitlines()), result['msg']
        assert 'Traceback' not in result['msg'] and '{' not in result['msg'] and 'None' not in result['msg']
    else:
        notes = ' | '.join(result['notes'])
        for text in _fill(case.get('notes', []), tmp_path):
            assert text in notes, notes
        if 'events' in case:
            assert len(result['events']) == case['events'], result['events']
        assert peak is not None and peak <= ceiling_bytes
