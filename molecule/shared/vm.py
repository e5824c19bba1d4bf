#!/usr/bin/env python
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small Debian VMs with their own kernel, for the Molecule scenarios.

    vm.py image [--suite S]           build the base image of a Debian suite if its recipe changed;
                                      print where it is
    vm.py up   --run-root DIR --spec JSON
                                      boot one VM per platform (copy-on-write overlays of the
                                      read-only base), wait for SSH, print Molecule's instance config
    vm.py down --run-root DIR [NAME ...]
                                      stop the VMs (all under DIR without names) and delete
                                      their overlays
    vm.py restart --run-root DIR NAME ...
                                      once each guest has powered off, boot it again from cold
                                      (same disk, port and -uuid); wait for SSH
    vm.py reap --run-root DIR         stop every VM anywhere under DIR, kill any process still
                                      holding a file there, delete DIR (after a run, on interruption)
    vm.py accel                       print the accelerator QEMU will use (kvm or tcg)

A platform (from molecule.yml) is {name, suite (the Debian release:
bullseye, bookworm or trixie, default bookworm), memory_mib, cpus,
numa_nodes, kernel_args, tcg_cpu (the -cpu model under TCG, default max)}.
The image recipe is molecule/shared/image/; each suite's image is cached
under OOMGUARD_VM_CACHE (default /var/cache/oomguard/vm as root,
~/.cache/oomguard/vm otherwise) in a directory named by the suite and a
hash of that recipe, so a warm run reuses it and a changed recipe rebuilds it.

Environment: OOMGUARD_VM_ACCEL (auto|kvm|tcg, default auto: KVM when a
test kernel boots under it, else TCG), OOMGUARD_VM_BOOT_TIMEOUT (seconds
to wait for SSH, default 600), OOMGUARD_VM_MIRROR (Debian mirror).
Standard library only; runs on the controller.
"""

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPE = os.path.join(HERE, 'image')
QEMU = 'qemu-system-x86_64'
USER = 'root'
SSH_OPTIONS = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
               '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=20']
# Kernel arguments every VM gets: the serial console (kept in serial.log, quiet:
# each byte written to an emulated UART costs, and an OOM report is long) and a
# ring buffer large enough for several OOM reports.
BASE_KERNEL_ARGS = 'root=/dev/vda rw console=ttyS0 quiet log_buf_len=4M'
# The Debian releases an image can be built from (all on the package mirror):
# 11 (kernel 5.10, systemd 247), 12 (6.1, 252), 13 (6.12, 257).
SUITES = ('bullseye', 'bookworm', 'trixie')
DEFAULT_SUITE = 'bookworm'


class VMError(Exception):
    pass


def say(message):
    sys.stderr.write('vm.py: %s\n' % message)
    sys.stderr.flush()


# -- the image -------------------------------------------------------------------

def cache_root():
    default = '/var/cache/oomguard/vm' if os.geteuid() == 0 else os.path.expanduser('~/.cache/oomguard/vm')
    return os.environ.get('OOMGUARD_VM_CACHE') or default


def recipe_hash(suite=DEFAULT_SUITE):
    """sha256 over the suite and the recipe directory: every file's path and content."""
    digest = hashlib.sha256(suite.encode() + b'\0')
    for top, dirs, files in os.walk(RECIPE):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            digest.update(os.path.relpath(path, RECIPE).encode() + b'\0')
            with open(path, 'rb') as handle:
                digest.update(handle.read() + b'\0')
    return digest.hexdigest()


def image_paths(directory):
    return dict((key, os.path.join(directory, name)) for key, name in (
        ('dir', ''), ('base', 'base.raw'), ('kernel', 'vmlinuz'), ('initrd', 'initrd.img'),
        ('key', 'id_ed25519'), ('ready', 'READY')))


def ensure_image(suite=DEFAULT_SUITE):
    """The cached image of a suite for the current recipe, built (once, under a lock) when missing."""
    if suite not in SUITES:
        raise VMError('suite %r: use one of %s' % (suite, ', '.join(SUITES)))
    root = cache_root()
    os.makedirs(root, exist_ok=True)
    key = '%s-%s' % (suite, recipe_hash(suite)[:16])
    paths = image_paths(os.path.join(root, key))
    if os.path.exists(paths['ready']):
        return paths
    with open(os.path.join(root, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel scenario may be building it
        if os.path.exists(paths['ready']):
            return paths
        if os.geteuid() != 0:
            raise VMError('building the VM image needs root (debootstrap, chroot); cache: %s' % root)
        for tool in ('debootstrap', 'mkfs.ext4', 'ssh-keygen'):
            if not shutil.which(tool):
                raise VMError('%s is missing (tools/run installs the VM packages when run as root)' % tool)
        work = tempfile.mkdtemp(prefix='.build-%s-' % key, dir=root)
        log_path = os.path.join(work, 'build.log')
        started = time.time()
        say('building the VM image %s (recipe changed or no cache): log %s' % (key, log_path))
        try:
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'oomguard-molecule',
                            '-f', os.path.join(work, 'id_ed25519')], check=True)
            with open(log_path, 'wb') as log:
                result = subprocess.run(['bash', os.path.join(RECIPE, 'build-image.sh'), work,
                                         os.path.join(work, 'id_ed25519.pub'), suite],
                                        stdout=log, stderr=subprocess.STDOUT, check=False)
            if result.returncode != 0:
                with open(log_path, 'rb') as log:
                    tail = log.read()[-3000:].decode('utf-8', 'replace')
                raise VMError('image build failed (exit %d); end of %s:\n%s' % (result.returncode, log_path, tail))
            os.chmod(os.path.join(work, 'base.raw'), 0o444)  # overlays only, never written
            with open(os.path.join(work, 'RECIPE_SHA256'), 'w') as handle:
                handle.write(recipe_hash(suite) + '\n')
            os.rename(work, paths['dir'])
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        with open(paths['ready'], 'w') as handle:
            handle.write('built in %.0f s\n' % (time.time() - started))
        say('image %s built in %.0f s' % (key, time.time() - started))
        for name in os.listdir(root):  # this suite's images of older recipes (and unnamed ones)
            if name != key and not name.startswith('.') and os.path.isdir(os.path.join(root, name)) \
                    and (name.startswith(suite + '-') or '-' not in name):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return paths


# -- the accelerator ----------------------------------------------------------------

def qemu_version():
    out = subprocess.run([QEMU, '--version'], stdout=subprocess.PIPE, check=True).stdout.decode()
    return out.splitlines()[0]


def kvm_boots(image, timeout_s=20):
    """Whether the test kernel boots under KVM: it must reach its panic for
    want of a root file system, which takes a second or two where KVM works.
    (Some paravirtual KVMs expose /dev/kvm but hang stock kernels.)"""
    argv = [QEMU, '-accel', 'kvm', '-cpu', 'host', '-m', '256', '-nodefaults', '-display', 'none',
            '-no-reboot', '-serial', 'stdio', '-kernel', image['kernel'],
            '-append', 'console=ttyS0 panic=-1 root=/dev/nonexistent']
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                timeout=timeout_s, check=False)
        output = result.stdout
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout or b''
    return b'Kernel panic' in output or b'VFS: Unable to mount root' in output


def accel(image):
    wanted = os.environ.get('OOMGUARD_VM_ACCEL', 'auto')
    if wanted in ('kvm', 'tcg'):
        return wanted
    if wanted != 'auto':
        raise VMError('OOMGUARD_VM_ACCEL=%s: use auto, kvm or tcg' % wanted)
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        return 'tcg'
    probe = os.path.join(image['dir'], 'accel.json')
    marker = {'qemu': qemu_version(), 'kernel': os.uname().release}
    try:
        with open(probe) as handle:
            cached = json.load(handle)
        if cached.get('for') == marker:
            return cached['accel']
    except (OSError, ValueError):
        pass
    chosen = 'kvm' if kvm_boots(image) else 'tcg'
    say('KVM %s a stock kernel here: using %s' % ('boots' if chosen == 'kvm' else 'does not boot', chosen))
    try:
        with open(probe, 'w') as handle:
            json.dump({'for': marker, 'accel': chosen}, handle)
    except OSError:
        pass
    return chosen


# -- VMs ---------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def platform_spec(raw):
    """A molecule.yml platform, checked, with defaults."""
    name = raw.get('name')
    if not name or not all(c.isalnum() or c in '-_.' for c in name):
        raise VMError('platform name %r: use letters, digits, - _ .' % (name,))
    spec = {'name': name, 'memory_mib': int(raw.get('memory_mib', 1024)), 'cpus': int(raw.get('cpus', 1)),
            'numa_nodes': int(raw.get('numa_nodes', 0)), 'kernel_args': str(raw.get('kernel_args', '') or ''),
            'tcg_cpu': str(raw.get('tcg_cpu', 'max') or 'max'),
            'suite': str(raw.get('suite', DEFAULT_SUITE) or DEFAULT_SUITE)}
    if spec['suite'] not in SUITES:
        raise VMError('platform %s: suite %r: use one of %s' % (name, spec['suite'], ', '.join(SUITES)))
    if not all(c.isalnum() or c in ',=_-' for c in spec['tcg_cpu']):
        raise VMError('platform %s: tcg_cpu %r: a QEMU CPU model with features, e.g. max,erms=off' % (name, spec['tcg_cpu']))
    if spec['numa_nodes'] > 1 and (spec['cpus'] % spec['numa_nodes'] or spec['memory_mib'] % spec['numa_nodes']):
        raise VMError('platform %s: cpus and memory_mib must divide evenly into %d NUMA nodes' % (name, spec['numa_nodes']))
    return spec


def qemu_argv(spec, image, run_dir, port, accel_name):
    argv = [QEMU, '-name', 'oomguard-%s' % spec['name'], '-nodefaults', '-display', 'none',
            '-accel', 'kvm' if accel_name == 'kvm' else 'tcg,thread=multi',
            '-cpu', 'host' if accel_name == 'kvm' else spec['tcg_cpu'],
            '-smp', str(spec['cpus']), '-m', str(spec['memory_mib']),
            '-uuid', str(uuid.uuid4()),  # systemd makes the machine-id from it
            '-kernel', image['kernel'], '-initrd', image['initrd'],
            '-append', ' '.join(filter(None, (BASE_KERNEL_ARGS, spec['kernel_args']))),
            '-drive', 'file=%s,if=virtio,format=qcow2,discard=unmap' % os.path.join(run_dir, 'overlay.qcow2'),
            '-netdev', 'user,id=net0,hostfwd=tcp:127.0.0.1:%d-:22' % port,
            '-device', 'virtio-net-pci,netdev=net0', '-device', 'virtio-rng-pci',
            '-serial', 'file:%s' % os.path.join(run_dir, 'serial.log'),
            '-monitor', 'unix:%s,server,nowait' % os.path.join(run_dir, 'monitor.sock'),
            '-pidfile', os.path.join(run_dir, 'qemu.pid'), '-daemonize']
    nodes = spec['numa_nodes']
    if nodes > 1:
        per_cpu = spec['cpus'] // nodes
        per_mib = spec['memory_mib'] // nodes
        for node in range(nodes):
            first = node * per_cpu
            cpus = str(first) if per_cpu == 1 else '%d-%d' % (first, first + per_cpu - 1)
            argv += ['-object', 'memory-backend-ram,id=mem%d,size=%dM' % (node, per_mib),
                     '-numa', 'node,nodeid=%d,cpus=%s,memdev=mem%d' % (node, cpus, node)]
    return argv


def read_pid(run_dir):
    try:
        with open(os.path.join(run_dir, 'qemu.pid')) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def alive(pid, run_dir):
    """pid is a QEMU started for run_dir (not a reused pid, not a tool that names the path)."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().split(b'\0')
    except OSError:
        return False
    return b'qemu' in os.path.basename(argv[0]) and any(run_dir.encode() in arg for arg in argv[1:])


def serial_tail(run_dir, size=2500):
    try:
        with open(os.path.join(run_dir, 'serial.log'), 'rb') as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode('utf-8', 'replace')
    except OSError:
        return '(no serial log)'


def start(spec, image, run_root, accel_name):
    run_dir = os.path.join(run_root, spec['name'])
    if os.path.exists(run_dir):
        stop(run_dir)  # left over from an interrupted run
    os.makedirs(run_dir)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', image['base'],
                    os.path.join(run_dir, 'overlay.qcow2')], check=True)
    for attempt in range(3):
        port = free_port()
        argv = qemu_argv(spec, image, run_dir, port, accel_name)
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                check=False)
        if result.returncode == 0:
            break
        message = result.stdout.decode('utf-8', 'replace').strip()
        if 'host forwarding' not in message or attempt == 2:  # only a port race is worth a retry
            raise VMError('QEMU did not start %s: %s' % (spec['name'], message))
    with open(os.path.join(run_dir, 'port'), 'w') as handle:
        handle.write('%d\n' % port)
    config = {'instance': spec['name'], 'address': '127.0.0.1', 'user': USER, 'port': port,
              'identity_file': image['key'], 'run_dir': run_dir, 'accel': accel_name}
    # What restart() needs to boot the same machine again: the same disk, port and -uuid.
    with open(os.path.join(run_dir, 'machine.json'), 'w') as handle:
        json.dump({'argv': argv, 'config': config}, handle)
    return config


def ssh_argv(config, command):
    return ['ssh', '-i', config['identity_file'], '-p', str(config['port'])] + SSH_OPTIONS + [
        '%s@%s' % (config['user'], config['address']), command]


def wait_ssh(configs, timeout_s):
    """Wait until every VM answers over SSH; fail early if its QEMU died."""
    deadline = time.time() + timeout_s
    pending = list(configs)
    while pending:
        for config in list(pending):
            pid = read_pid(config['run_dir'])
            if pid is None or not alive(pid, config['run_dir']):
                raise VMError('%s: QEMU exited while booting; serial console:\n%s'
                              % (config['instance'], serial_tail(config['run_dir'])))
            result = subprocess.run(ssh_argv(config, 'true'), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, timeout=60, check=False)
            if result.returncode == 0:
                config['boot_s'] = round(time.time() - config['started'], 1)
                say('%s answers on 127.0.0.1:%d after %.0f s (%s)'
                    % (config['instance'], config['port'], config['boot_s'], config['accel']))
                pending.remove(config)
        if pending:
            if time.time() > deadline:
                raise VMError('%s: no SSH after %d s; serial console of the first:\n%s'
                              % (', '.join(c['instance'] for c in pending), timeout_s, serial_tail(pending[0]['run_dir'])))
            time.sleep(2)


def stop(run_dir):
    """Stop the VM of run_dir (TERM, then KILL) and delete the directory."""
    pid = read_pid(run_dir)
    if pid is not None and alive(pid, run_dir):
        os.kill(pid, signal.SIGTERM)
        for dummy in range(50):
            if not alive(pid, run_dir):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    kill_leftovers_and_remove(run_dir)  # a QEMU whose pidfile was never written


def kill_leftovers_and_remove(path):
    """SIGKILL any QEMU still naming path (it has no pidfile), then delete path."""
    for proc in os.listdir('/proc'):
        if proc.isdigit() and alive(int(proc), path):
            try:
                os.kill(int(proc), signal.SIGKILL)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def up(specs, run_root):
    images = dict((suite, ensure_image(suite)) for suite in sorted(set(spec['suite'] for spec in specs)))
    accel_name = accel(images[specs[0]['suite']]) if specs else 'tcg'
    os.makedirs(run_root, exist_ok=True)
    configs = []
    try:
        for spec in specs:
            config = start(spec, images[spec['suite']], run_root, accel_name)
            config['started'] = time.time()
            configs.append(config)
        wait_booted(configs)
    except BaseException:
        for config in configs:
            stop(config['run_dir'])
        raise
    return configs


def wait_booted(configs):
    """wait_ssh() for VMs whose QEMU just started (config['started']), within OOMGUARD_VM_BOOT_TIMEOUT."""
    wait_ssh(configs, int(os.environ.get('OOMGUARD_VM_BOOT_TIMEOUT', '600')))
    for config in configs:
        del config['started']


def restart(run_root, names, timeout_s):
    """Boot each VM again from cold once its guest has powered off (QEMU exits on an ACPI poweroff):
    the same QEMU command line, so the same disk, port and -uuid. The side effect's reboot uses this
    because a warm reset under TCG boots three to five times slower than a cold start (seen: 140 s
    against 26-45 s; after the reset the kernel cannot calibrate against the PIT and the initramfs
    takes 90 s)."""
    configs = []
    for name in names:
        run_dir = os.path.join(run_root, name)
        with open(os.path.join(run_dir, 'machine.json')) as handle:
            machine = json.load(handle)
        pid = read_pid(run_dir)
        deadline = time.time() + timeout_s
        while pid is not None and alive(pid, run_dir):
            if time.time() > deadline:
                raise VMError('%s: still running %d s after the poweroff; serial console:\n%s'
                              % (name, timeout_s, serial_tail(run_dir)))
            time.sleep(0.5)
        result = subprocess.run(machine['argv'], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise VMError('QEMU did not start %s again: %s' % (name, result.stdout.decode('utf-8', 'replace').strip()))
        configs.append(dict(machine['config'], started=time.time()))
    wait_booted(configs)
    return configs


def down(run_root, names):
    if not os.path.isdir(run_root):
        return []
    names = names or sorted(n for n in os.listdir(run_root) if os.path.isdir(os.path.join(run_root, n)))
    for name in names:
        stop(os.path.join(run_root, name))
    if not os.listdir(run_root):
        os.rmdir(run_root)
    return names


def reap(run_root):
    """Stop every VM under run_root (scenario/instance directories) and delete it."""
    if not os.path.isdir(run_root):
        return []
    stopped = []
    for top, dirs, files in os.walk(run_root, topdown=False):
        if 'overlay.qcow2' in files or 'qemu.pid' in files:
            stop(top)
            stopped.append(os.path.relpath(top, run_root))
    kill_leftovers_and_remove(run_root)  # also a QEMU whose directory was already gone
    return stopped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    image_parser = sub.add_parser('image')
    image_parser.add_argument('--suite', default=DEFAULT_SUITE, choices=SUITES)
    sub.add_parser('accel')
    up_parser = sub.add_parser('up')
    up_parser.add_argument('--run-root', required=True)
    up_parser.add_argument('--spec', required=True, help='JSON list of platforms')
    down_parser = sub.add_parser('down')
    down_parser.add_argument('--run-root', required=True)
    down_parser.add_argument('names', nargs='*')
    restart_parser = sub.add_parser('restart')
    restart_parser.add_argument('--run-root', required=True)
    restart_parser.add_argument('--timeout', type=int, default=120, help='seconds to wait for the poweroff')
    restart_parser.add_argument('names', nargs='+')
    reap_parser = sub.add_parser('reap')
    reap_parser.add_argument('--run-root', required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == 'image':
            print(json.dumps(ensure_image(args.suite), indent=2))
        elif args.command == 'accel':
            print(accel(ensure_image()))
        elif args.command == 'up':
            specs = [platform_spec(p) for p in json.loads(args.spec)]
            print(json.dumps(up(specs, os.path.abspath(args.run_root)), indent=2))
        elif args.command == 'restart':
            print(json.dumps(restart(os.path.abspath(args.run_root), args.names, args.timeout), indent=2))
        elif args.command == 'reap':
            print(json.dumps(reap(os.path.abspath(args.run_root))))
        else:
            print(json.dumps(down(os.path.abspath(args.run_root), args.names)))
    except (VMError, subprocess.CalledProcessError, OSError, ValueError) as exc:
        say('error: %s' % exc)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
