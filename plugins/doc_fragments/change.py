# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of the modules that change a host (change_spec() and path_spec() in module_utils/_argspec.py)."""


class ModuleDocFragment:

    # force, validate_only, systemd_dir, state_dir: kernel_tunables, oom_units, early_oom.
    DOCUMENTATION = r'''
options:
  force:
    description:
      - Guard ids to override on purpose. A forced guard becomes a warning and is returned in RV(forced); a value
        that is refused cannot be forced.
    type: list
    elements: str
    default: []
  validate_only:
    description:
      - Validate every value and check the guards against the live host, return the plan, and change nothing (a
        preflight). The result reports what a real run would change, with C(changed) false.
    type: bool
    default: false
  systemd_dir:
    description:
      - Where the units, drop-ins and unit links go. systemd is reloaded and units are started or changed only when
        this is V(/etc/systemd/system); with another directory (a test tree) only the files are written.
    type: path
    default: /etc/systemd/system
  state_dir:
    description:
      - Where the ledger of original values (C(ledger.json)) is kept. M(oomguard.linux.restore) reads it from there.
    type: path
    default: /var/lib/oomguard
'''

    # state_dir alone: restore, which reads the ledger the others write.
    LEDGER = r'''
options:
  state_dir:
    description:
      - Where the ledger of original values (C(ledger.json)) is kept; the same O(state_dir) the changing modules
        were given.
    type: path
    default: /var/lib/oomguard
'''
