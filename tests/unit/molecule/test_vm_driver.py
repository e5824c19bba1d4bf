# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of the VM driver (molecule/shared/vm.py): platform checks,
the QEMU command line, the image recipe's hash.  Booting is tested by the
vm stage itself."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import os
import shutil

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
VM_PY = os.path.join(HERE, '..', '..', '..', 'molecule', 'shared', 'vm.py')


@pytest.fixture(scope='module')
def vm():
    spec = importlib.util.spec_from_file_location('oomguard_vm_driver', VM_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IMAGE = {'kernel': '/c/vmlinuz', 'initrd': '/c/initrd.img', 'base': '/c/base.raw'}


def test_platform_defaults_and_checks(vm):
    assert vm.platform_spec({'name': 'a-1'}) == {'name': 'a-1', 'memory_mib': 1024, 'cpus': 1, 'numa_nodes': 0,
                                                 'kernel_args': '', 'tcg_cpu': 'max', 'suite': 'bookworm'}
    assert vm.platform_spec({'name': 'd11', 'suite': 'bullseye'})['suite'] == 'bullseye'
    with pytest.raises(vm.VMError, match="suite 'buster': use one of bullseye, bookworm, trixie"):
        vm.platform_spec({'name': 'd10', 'suite': 'buster'})
    with pytest.raises(vm.VMError, match='platform name'):
        vm.platform_spec({'name': 'a b'})
    with pytest.raises(vm.VMError, match='divide evenly into 2 NUMA nodes'):
        vm.platform_spec({'name': 'n', 'cpus': 3, 'numa_nodes': 2, 'memory_mib': 1024})


def test_numa_platform_gets_one_memory_backend_and_node_per_node(vm):
    spec = vm.platform_spec({'name': 'n', 'cpus': 2, 'numa_nodes': 2, 'memory_mib': 1536,
                             'kernel_args': 'systemd.unified_cgroup_hierarchy=0'})
    argv = vm.qemu_argv(spec, IMAGE, '/run/n', 40022, 'tcg')
    assert argv[argv.index('-m') + 1] == '1536' and argv[argv.index('-smp') + 1] == '2'
    objects = [argv[i + 1] for i, arg in enumerate(argv) if arg == '-object']
    nodes = [argv[i + 1] for i, arg in enumerate(argv) if arg == '-numa']
    assert objects == ['memory-backend-ram,id=mem0,size=768M', 'memory-backend-ram,id=mem1,size=768M']
    assert nodes == ['node,nodeid=0,cpus=0,memdev=mem0', 'node,nodeid=1,cpus=1,memdev=mem1']
    assert argv[argv.index('-append') + 1].endswith(' systemd.unified_cgroup_hierarchy=0')
    assert 'user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22' in argv
    assert argv[argv.index('-accel') + 1] == 'tcg,thread=multi' and argv[argv.index('-cpu') + 1] == 'max'


def test_tcg_cpu_is_the_cpu_model_under_tcg_only(vm):
    spec = vm.platform_spec({'name': 'b', 'tcg_cpu': 'max,erms=off'})
    tcg = vm.qemu_argv(spec, IMAGE, '/run/b', 1, 'tcg')
    kvm = vm.qemu_argv(spec, IMAGE, '/run/b', 1, 'kvm')
    assert tcg[tcg.index('-cpu') + 1] == 'max,erms=off'
    assert kvm[kvm.index('-cpu') + 1] == 'host'
    with pytest.raises(vm.VMError, match=r"tcg_cpu 'max erms': a QEMU CPU model"):
        vm.platform_spec({'name': 'b', 'tcg_cpu': 'max erms'})


def test_every_vm_gets_its_own_uuid(vm):
    spec = vm.platform_spec({'name': 'a'})
    first = vm.qemu_argv(spec, IMAGE, '/run/a', 1, 'kvm')
    second = vm.qemu_argv(spec, IMAGE, '/run/a', 1, 'kvm')
    assert first[first.index('-uuid') + 1] != second[second.index('-uuid') + 1]
    assert first[first.index('-cpu') + 1] == 'host'


def test_recipe_hash_follows_every_file_of_the_recipe(vm, tmp_path, monkeypatch):
    recipe = tmp_path / 'image'
    shutil.copytree(vm.RECIPE, str(recipe))
    monkeypatch.setattr(vm, 'RECIPE', str(recipe))
    before = vm.recipe_hash()
    assert vm.recipe_hash() == before
    with open(str(recipe / 'files' / 'initramfs-modules'), 'a') as handle:
        handle.write('virtio_net\n')
    assert vm.recipe_hash() != before
    # Each suite has its own image, rebuilt with the recipe.
    assert vm.recipe_hash('trixie') != vm.recipe_hash('bookworm')


def test_reap_and_down_of_nothing_are_empty(vm, tmp_path):
    assert vm.reap(str(tmp_path / 'absent')) == []
    assert vm.down(str(tmp_path / 'absent'), []) == []
