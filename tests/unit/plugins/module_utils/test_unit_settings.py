# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""unit_settings: oomguard_services validation and drop-ins (data-driven)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

import pytest
import yaml

from ansible_collections.oomguard.linux.plugins.module_utils import unit_settings as us
from ansible_collections.oomguard.linux.plugins.module_utils._engine import Labels

HERE = os.path.dirname(__file__)
with open(os.path.join(HERE, 'unit_settings_cases.yml')) as handle:
    CASES = yaml.safe_load(handle)
LIVE = {'mem_total_bytes': 4 << 30, 'numa_nodes': [0, 1]}


@pytest.mark.parametrize('case', CASES, ids=[c['name'] for c in CASES])
def test_validate_services(case):
    settings, problems = us.validate_services(case['services'], case.get('live', LIVE), Labels('web1'))
    assert settings == case['settings']
    assert len(problems) == len(case['problems']), problems
    for problem, (want_id, pattern) in zip(problems, case['problems']):
        assert problem.id == want_id
        assert re.search(pattern, problem.message), problem.message
        assert problem.message.startswith('host web1: ')


def test_render_dropin_orders_properties_and_picks_the_section():
    text = us.render_dropin('nginx.service', {'OOMPolicy': 'kill', 'MemoryMax': '1G', 'OOMScoreAdjust': '-500'})
    assert text.splitlines()[1:] == ['[Service]', 'MemoryMax=1G', 'OOMScoreAdjust=-500', 'OOMPolicy=kill']
    assert us.render_dropin('batch.slice', {'MemoryMax': '1G'}).splitlines()[1] == '[Slice]'
    assert us.dropin_path('/etc/systemd/system', 'nginx.service') == \
        '/etc/systemd/system/nginx.service.d/90-oomguard.conf'
