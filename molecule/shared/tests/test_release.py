# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What differs between releases (issue 20), on each scenario's own VM.

* the VM is the release the scenario names (os-release, systemd, kernel),
  read without the collection, and oom_facts reads the same (its platform);
* one inventory, the scenario's own plus ManagedOOMPreference=avoid on the
  protected service (systemd 248), given to the harden playbook the way an
  operator runs it: refused on a systemd older than 248 naming both versions,
  with nothing on the host changed; converging where systemd is new enough;
* the same setting forced past that refusal onto systemd 247: systemd ignores
  it ("Unknown key") and the read-back after the daemon-reload fails the run.
  The inventory's own drop-ins are put back afterwards.
"""

import json
import os
import re
import subprocess

import pytest

# The setting newer than Debian 11's systemd, and the release it needs.
TOO_NEW = {'oomguard-db': {'managed_oom_preference': 'avoid'}}
NEEDS_SYSTEMD = 248
# What the harden role writes or records on the VM: a refused run changes none of it.
# The monitor's collector (debian13) rewrites its state file on its timer: not the run's doing.
STATE = ("find /etc/systemd/system /etc/sysctl.d /var/lib/oomguard /etc/default/earlyoom "
         "-xdev \\( -name '*oomguard*' -o -path '*oomguard*' -o -name earlyoom \\) -type f "
         "! -name monitor-state.json -exec sha256sum {} + 2>/dev/null | sort")


@pytest.fixture(scope='module')
def inventory(host):
    return host.ansible.get_variables()


@pytest.fixture(scope='module')
def release(scenario):
    if 'release' not in scenario:
        pytest.skip('the scenario names no release')
    return scenario['release']


def systemd_major(host):
    return int(re.match(r'systemd (\d+)', host.check_output('systemctl --version')).group(1))


def test_the_vm_is_the_release_under_test(host, release):
    os_release = dict(line.split('=', 1) for line in host.file('/etc/os-release').content_string.splitlines()
                      if '=' in line)
    assert os_release['VERSION_ID'].strip('"') == release['VERSION_ID']
    assert systemd_major(host) == release['systemd']
    assert host.check_output('uname -r').startswith(release['kernel'] + '.')
    # oom_facts reads the same (what the hardening modules gate on).
    platform = host.ansible('oomguard.linux.oom_facts', 'victims_count=1', check=False)[
        'ansible_facts']['oom_posture']['platform']
    assert (platform['os_family'], platform['os_version_id'], platform['systemd_version']) == (
        'Debian', release['VERSION_ID'], release['systemd'])
    assert platform['systemd_running'] and platform['package_manager'] == 'apt'
    assert platform['kernel_release'] == host.check_output('uname -r')


def with_too_new(inventory):
    services = json.loads(json.dumps(inventory.get('oomguard_services') or {}))
    for unit, settings in TOO_NEW.items():
        services.setdefault(unit, {}).update(settings)
    return services


def harden(workdir, extra):
    """ansible-playbook oomguard.linux.harden_oom over the scenario's inventory; (rc, output)."""
    path = os.path.join(workdir, 'extra.json')
    with open(path, 'w') as handle:
        json.dump(extra, handle)
    proc = subprocess.run(['ansible-playbook', '-i', os.environ['MOLECULE_INVENTORY_FILE'],
                           'oomguard.linux.harden_oom', '-e', '@' + path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=900, check=False)
    return proc.returncode, proc.stdout


@pytest.fixture(scope='module')
def too_new_case(scenario, release):
    # Debian 12's scenarios leave it out: there the run would change their converged state.
    if not scenario.get('too_new_case'):
        pytest.skip('the release proofs run on the debian11 and debian13 scenarios')
    return release


def test_a_setting_too_new_for_systemd_is_refused_before_any_write(host, inventory, too_new_case, tmp_path):
    release = too_new_case
    before = host.check_output(STATE)
    rc, output = harden(str(tmp_path), {'oomguard_services': with_too_new(inventory)})
    after = host.check_output(STATE)
    assert after == before, 'the run changed files on the VM'
    if release['systemd'] >= NEEDS_SYSTEMD:
        # The same inventory converges: the scenario's own asks for it too, so
        # converge made it so and this run changes nothing.
        assert rc == 0, output[-6000:]
        assert re.search(r'changed=0 ', output), output[-6000:]
        assert host.check_output('systemctl show -P ManagedOOMPreference oomguard-db.service') == 'avoid'
        return
    assert rc != 0, output[-6000:]
    # One message names the host, the variable, the release it needs and the host's.
    assert re.search(r"host \S+: guard unsupported_systemd: oomguard_services\['oomguard-db'\]\[managed_oom_preference\]: "
                     r"ManagedOOMPreference= needs systemd %d; this host has systemd %d"
                     % (NEEDS_SYSTEMD, release['systemd']), output), output[-6000:]


def test_a_property_systemd_ignores_fails_the_run(host, inventory, too_new_case, tmp_path):
    release = too_new_case
    if release['systemd'] >= NEEDS_SYSTEMD:
        pytest.skip('systemd %d knows ManagedOOMPreference=' % release['systemd'])
    dropin = '/etc/systemd/system/oomguard-db.service.d/90-oomguard-protect.conf'
    original = host.file(dropin).content_string
    rc, output = harden(str(tmp_path), {'oomguard_services': with_too_new(inventory),
                                        'oomguard_force': ['unsupported_systemd']})
    try:
        # Forced past validation, the drop-in holds the line, systemd ignores it,
        # and the read-back says so.
        assert 'ManagedOOMPreference=avoid' in host.file(dropin).content_string
        assert host.run('systemctl show -P ManagedOOMPreference oomguard-db.service').stdout.strip() == ''
        assert rc != 0, output[-6000:]
        assert re.search(r'systemd did not take 1 drop-in setting\(s\) after daemon-reload: oomguard-db.service '
                         r'ManagedOOMPreference=avoid \(systemctl show: no such property\)', output), output[-6000:]
    finally:
        # The scenario's inventory again: the drop-in as converge left it.
        rc_back, output_back = harden(str(tmp_path), {})
    assert rc_back == 0, output_back[-6000:]
    assert host.file(dropin).content_string == original
