# Copyright: oomguard maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates its sanity-test virtual environments without pip, then runs
``get-pip-<version>.py`` from ci-files.testing.ansible.com (cached as
``~/.ansible/test/cache/get_pip_<version>.py``) to put pip in them. That host is
not reachable from every machine that can reach PyPI, so ``tools/run`` puts this
file at the cache path when no script is cached there yet.

It does what get-pip.py does with the same arguments: install a pip (here the
one bundled with Python through ``ensurepip``), then use it to install the
requested packages (``pip==<version>``) from the package index.
"""

from __future__ import annotations

import subprocess
import sys

# Options that get-pip.py understands and pip install does not.
GET_PIP_ONLY_OPTIONS = frozenset(('--no-setuptools', '--no-wheel'))


def main() -> None:
    """Bootstrap pip into the running interpreter's environment."""
    pip_args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]

    subprocess.run([sys.executable, '-m', 'ensurepip', '--default-pip'], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--upgrade', '--force-reinstall', '--quiet'] + pip_args, check=True)


if __name__ == '__main__':
    main()
