# Copyright: oomguard maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build-stage check of execution-environment.yml (run by `tools/run build`).

No container engine runs on the machines this is tested on, and the base image's
registry is out of reach, so the image itself is not built here. What can be
checked without one is checked:

1. the definition names the tarball of galaxy.yml's version, in both places;
2. `ansible-builder create` accepts it (schema) and writes a build context whose
   Containerfile starts from the named base image and installs the collections of
   `_build/requirements.yml`, with the built tarball, byte for byte, in `_build/`;
3. the image's galaxy stage is replayed: `ansible-galaxy collection install -r
   requirements.yml` run from the context's `_build/` (the stage's WORKDIR) installs
   oomguard.linux offline, and ansible-doc lists every module from that install;
4. that install carries meta/execution-environment.yml, and `ansible-builder
   introspect` over it finds no Python or system requirement.

Usage: python tools/check_ee.py TARBALL MODULE [MODULE...]
"""

import hashlib
import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFINITION = os.path.join(ROOT, 'execution-environment.yml')


def fail(message):
    sys.exit('check_ee: %s' % message)


def sha256(path):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def run(argv, **kwargs):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
                          **kwargs)
    if proc.returncode != 0:
        fail('%s exited %d:\n%s' % (' '.join(argv), proc.returncode, proc.stdout[-4000:]))
    return proc.stdout


def check_definition(tarball_name):
    with open(DEFINITION) as handle:
        definition = yaml.safe_load(handle)
    names = [c['name'] for c in definition['dependencies']['galaxy']['collections']]
    sources = [os.path.basename(f['src']) for f in definition.get('additional_build_files', [])]
    if names != ['collections/' + tarball_name] or sources != [tarball_name]:
        fail('execution-environment.yml must install collections/%s from .build/dist/%s (galaxy.yml\'s version); '
             'it names %s from %s' % (tarball_name, tarball_name, names, sources))
    return definition['images']['base_image']['name']


def check_context(context, base_image, tarball):
    with open(os.path.join(context, 'Containerfile')) as handle:
        containerfile = handle.read()
    if 'ARG EE_BASE_IMAGE="%s"' % base_image not in containerfile:
        fail('the Containerfile does not start from %s' % base_image)
    if not re.search(r'ansible-galaxy collection install .*-r requirements\.yml', containerfile):
        fail('the Containerfile installs no collections from requirements.yml')
    copied = os.path.join(context, '_build', 'collections', os.path.basename(tarball))
    if not os.path.isfile(copied) or sha256(copied) != sha256(tarball):
        fail('the build context does not hold %s as built' % os.path.basename(tarball))


def main(argv):
    if len(argv) < 2:
        fail(__doc__.strip().splitlines()[-1])
    tarball, modules = os.path.abspath(argv[0]), argv[1:]
    base_image = check_definition(os.path.basename(tarball))
    with tempfile.TemporaryDirectory(prefix='oomguard-ee.') as tmp:
        context = os.path.join(tmp, 'context')
        run(['ansible-builder', 'create', '-f', DEFINITION, '-c', context, '--output-filename', 'Containerfile'],
            cwd=ROOT)
        check_context(context, base_image, tarball)

        installed = os.path.join(tmp, 'collections')
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=installed)
        run(['ansible-galaxy', 'collection', 'install', '--offline', '-r', 'requirements.yml', '-p', installed],
            cwd=os.path.join(context, '_build'), env=env)
        listing = run(['ansible-doc', '-t', 'module', '-l', 'oomguard.linux'], env=env)
        missing = [m for m in modules if not re.search(r'^oomguard\.linux\.%s\s' % re.escape(m), listing, re.M)]
        if missing:
            fail('modules missing from the EE install: %s' % ' '.join(missing))

        meta = os.path.join(installed, 'ansible_collections', 'oomguard', 'linux', 'meta', 'execution-environment.yml')
        if not os.path.isfile(meta):
            fail('the installed collection has no meta/execution-environment.yml for introspection')
        # Lines like 'name  # from collection oomguard.linux', one list per kind.
        found = yaml.safe_load(run(['ansible-builder', 'introspect', os.path.join(installed, 'ansible_collections')]))
        own = [line for kind in ('python', 'system') for line in (found or {}).get(kind) or []]
        if own:
            fail('ansible-builder introspect finds requirements beyond ansible-core: %s' % own)
    print('execution-environment.yml: ansible-builder create ok (base %s), the galaxy stage installs %s offline '
          'and ansible-doc lists all %d modules; introspect: no Python or system requirement'
          % (base_image, os.path.basename(tarball), len(modules)))


if __name__ == '__main__':
    main(sys.argv[1:])
