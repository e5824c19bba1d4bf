# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""files/grafana/oomguard-fleet.json, the Grafana dashboard of the collector's metrics (docs/monitoring.md).

Three checks, each by a real tool where one exists:

- Grafana's own types: the dashboard is compiled by the TypeScript compiler (npm `typescript`) as an object
  literal of the dashboard, panel, panel-options and Prometheus-query types that Grafana Labs publishes for
  Grafana 11.6 (npm `@grafana/grafana-foundation-sdk`, generated from Grafana's schemas). A key Grafana does
  not know, a value of the wrong type, an enum value it does not have or a missing required option fails,
  with tsc's message at the dashboard's line and column. Both npm packages are pinned below and installed
  under .build/grafana-lint (see _lint_dir()).
- PromQL syntax: promtool (Debian package `prometheus`) checks a rules file whose recording rules are the
  dashboard's expressions, with Grafana's variables replaced by values PromQL accepts.
- This collection's rules, in Python: metric and label names from docs/monitoring.md (and the fleet audit's
  oomguard_drift_settings), the `${datasource}` variable everywhere, balanced brackets, unique panel ids, a
  grid position for every panel without overlaps, descriptions, units and minimums, the risk levels.

A missing tool fails the test (with the command that installs it); it is never skipped.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.oomguard.linux.plugins.module_utils import posture
from ansible_collections.oomguard.linux.plugins.plugin_utils import fleet

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DASHBOARD = os.path.join(COLLECTION, 'files', 'grafana', 'oomguard-fleet.json')
MONITORING_DOC = os.path.join(COLLECTION, 'docs', 'monitoring.md')

# The linter: the TypeScript compiler and Grafana Labs' types for Grafana 11.6, exact versions, from
# requirements/grafana-lint.txt (tools/run installs the same).
with open(os.path.join(COLLECTION, 'requirements', 'grafana-lint.txt')) as _handle:
    _PINS = [line.strip().rpartition('@') for line in _handle if line.strip() and not line.startswith('#')]
TYPESCRIPT = next((name, version) for name, dummy, version in _PINS if name == 'typescript')
GRAFANA_TYPES = next((name, version) for name, dummy, version in _PINS if name == '@grafana/grafana-foundation-sdk')
LINT_DIR_ENV = 'OOMGUARD_GRAFANA_LINT'
LINT_DIR = os.path.join('.build', 'grafana-lint')
NPM_INSTALL = ('npm install --prefix .build/grafana-lint --no-audit --no-fund --save-exact %s@%s %s@%s'
               % (TYPESCRIPT + GRAFANA_TYPES))
PROMTOOL_INSTALL = 'apt-get install -y prometheus'

DATASOURCE = '${datasource}'
INSTANCE_MATCHER = 'instance=~"${instance:regex}"'
GRID_COLUMNS = 24
# The fleet audit's controller-side textfiles (plugins/plugin_utils/fleet.py); the only one of their
# metrics the dashboard may use, with its labels.
FLEET_METRIC = 'oomguard_drift_settings'
FLEET_LABELS = {'host', 'status'}
# node_exporter's own labels on every textfile metric.
EXPORTER_LABELS = {'instance', 'job'}
# Grafana's variables and what stands for them in the expressions promtool checks.
PROMTOOL_VALUES = (
    ('$__rate_interval', '5m'),
    ('$__interval', '1m'),
    ('$__range', '1h'),
    ('${instance:regex}', '.*'),
    ('${instance}', '.*'),
    ('$instance', '.*'),
)

# Panel types the compiled check knows: (panel type, foundation SDK module with its Options type, whether
# the module has a FieldConfig type for fieldConfig.defaults.custom; False: custom must be absent). Another
# panel type fails the check until it is added here.
PANEL_TYPES = (
    ('timeseries', 'timeseries', True),
    ('table', 'table', True),
    ('bargauge', 'bargauge', False),
    ('stat', 'stat', False),
    ('gauge', 'gauge', False),
    ('barchart', 'barchart', True),
    ('piechart', 'piechart', True),
    ('state-timeline', 'statetimeline', True),
    ('status-history', 'statushistory', True),
    ('heatmap', 'heatmap', True),
    ('histogram', 'histogram', True),
    ('text', 'text', False),
)

_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_RE = re.compile(r'[A-Za-z_:][A-Za-z0-9_:]*')
_MATCHER_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"')
_GROUPING_RE = re.compile(r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)')
_LABEL_VALUES_RE = re.compile(r'^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$', re.S)
_DOC_ROW_RE = re.compile(r'^\|\s*`(oomguard_[a-z0-9_]+)`\s*\|\s*[a-z]+\s*\|([^|]*)\|', re.M)


def _load():
    with open(DASHBOARD) as handle:
        return json.load(handle)


DASH = _load()


def _doc_metrics():
    """{metric: labels} from the metric table of docs/monitoring.md."""
    with open(MONITORING_DOC) as handle:
        rows = _DOC_ROW_RE.findall(handle.read())
    return dict((name, set(re.findall(r'`([a-z_]+)`', labels))) for name, labels in rows)


def _panels(panels=None):
    """Every panel, those inside rows too."""
    for panel in DASH.get('panels', []) if panels is None else panels:
        yield panel
        yield from _panels(panel.get('panels') or [])


def _data_panels():
    return [panel for panel in _panels() if panel['type'] not in ('row', 'text')]


def _expressions():
    """(where, PromQL expression, datasource of the query) of every target and query variable."""
    found = []
    for panel in _data_panels():
        for target in panel.get('targets') or []:
            where = 'panel %s (%s) target %s' % (panel.get('id'), panel.get('title'), target.get('refId'))
            found.append((where, target.get('expr', ''), target.get('datasource') or panel.get('datasource')))
    for variable in DASH['templating']['list']:
        if variable['type'] != 'query':
            continue
        query = variable['query']
        text = query.get('query', '') if isinstance(query, dict) else query
        match = _LABEL_VALUES_RE.match(text)
        found.append(('variable %s' % variable['name'], match.group(1) if match else text, variable.get('datasource')))
    return found


def _strip_strings(expr):
    return _STRING_RE.sub('""', expr)


# -- the linter: tsc on Grafana's types ------------------------------------------------------------------

def _lint_dir():
    """The npm prefix holding the pinned packages: $OOMGUARD_GRAFANA_LINT, else .build/grafana-lint in the
    checkout (found from the work tree and from its .build/collections copy alike)."""
    if os.environ.get(LINT_DIR_ENV):
        return os.environ[LINT_DIR_ENV]
    path = HERE
    while True:
        candidate = os.path.join(path, LINT_DIR)
        if os.path.isdir(os.path.join(candidate, 'node_modules')):
            return candidate
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def _installed_version(lint_dir, package):
    try:
        with open(os.path.join(lint_dir, 'node_modules', package, 'package.json')) as handle:
            return json.load(handle).get('version')
    except (IOError, OSError, ValueError):
        return None


def _typescript_source(dashboard_text):
    """The TypeScript module whose compilation is the check: the dashboard JSON, verbatim, as the value of
    a constant of Grafana's dashboard type. Returns (source, lines before the dashboard's first line)."""
    imports = sorted(set(['dashboard', 'prometheus'] + [module for dummy, module, dummy2 in PANEL_TYPES]))
    panel_types = []
    for panel_type, module, custom in PANEL_TYPES:
        panel_types.append('  | P<"%s", %s.Options, %s>' % (panel_type, module,
                                                            '%s.FieldConfig' % module if custom else 'never'))
    header = [
        '// Generated by tests/unit/files/test_grafana_dashboard.py.',
    ] + ['import type * as %s from "%s/%s";' % (module, GRAFANA_TYPES[0], module) for module in imports] + [
        '// The JSON form of a type: a string enum as its values; the SDK\'s marker methods dropped.',
        'type Json<T> =',
        '  T extends string ? `${T}` :',
        '  T extends number | boolean | null | undefined ? T :',
        '  T extends (infer U)[] ? Json<U>[] :',
        '  T extends object ? { [K in keyof T as T[K] extends Function ? never : K]: Json<T[K]> } :',
        '  T;',
        'type Query = Json<prometheus.dataquery>;',
        'type Source<C> = Omit<Json<dashboard.FieldConfigSource>, "defaults"> & {',
        '  defaults: Omit<Json<dashboard.FieldConfig>, "custom"> & { custom?: C };',
        '};',
        'type P<T extends string, O, C> =',
        '  Omit<Json<dashboard.Panel>, "type" | "options" | "fieldConfig" | "targets"> & {',
        '    type: T; options: Json<O>; fieldConfig: Source<Json<C>>; targets?: Query[];',
        '  };',
        'type Panel =',
    ] + panel_types + [
        '  | (Omit<Json<dashboard.RowPanel>, "panels"> & { panels: Panel[] });',
        'type Dashboard = Omit<Json<dashboard.Dashboard>, "panels"> & { panels: Panel[] };',
        'export const oomguardFleet: Dashboard =',
    ]
    return '\n'.join(header) + '\n' + dashboard_text.rstrip() + ';\n', len(header)


def _to_dashboard_lines(output, offset):
    """tsc's check.ts(L,C) positions as the dashboard file's own line:column."""
    def position(match):
        line = int(match.group(1)) - offset
        if line < 1:
            return 'check.ts(%s,%s)' % (match.group(1), match.group(2))
        return 'files/grafana/oomguard-fleet.json:%d:%s' % (line, match.group(2))
    return re.sub(r'check\.ts\((\d+),(\d+)\)', position, output)


def test_grafana_types_accept_the_dashboard(tmp_path):
    lint_dir = _lint_dir()
    node = shutil.which('node')
    if node is None or lint_dir is None:
        pytest.fail('the Grafana dashboard linter is not installed: it needs node and, in the checkout, %s'
                    % NPM_INSTALL)
    for package, version in (TYPESCRIPT, GRAFANA_TYPES):
        installed = _installed_version(lint_dir, package)
        if installed is None:
            pytest.fail('%s is not installed in %s: %s' % (package, lint_dir, NPM_INSTALL))
        assert installed == version, ('%s has %s %s, the test pins %s: %s'
                                      % (lint_dir, package, installed, version, NPM_INSTALL))
    with open(DASHBOARD) as handle:
        source, offset = _typescript_source(handle.read())
    (tmp_path / 'check.ts').write_text(source)
    (tmp_path / 'tsconfig.json').write_text(json.dumps({
        'compilerOptions': {'strict': True, 'noEmit': True, 'module': 'esnext', 'moduleResolution': 'bundler',
                            'target': 'es2022', 'skipLibCheck': True, 'types': []},
        'files': ['check.ts'],
    }))
    os.symlink(os.path.join(os.path.abspath(lint_dir), 'node_modules'), str(tmp_path / 'node_modules'))
    tsc = os.path.join(lint_dir, 'node_modules', 'typescript', 'bin', 'tsc')
    proc = subprocess.run([node, tsc, '-p', 'tsconfig.json', '--pretty', 'false'], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, 'tsc %s with %s@%s rejects the dashboard:\n%s%s' % (
        TYPESCRIPT[1], GRAFANA_TYPES[0], GRAFANA_TYPES[1], _to_dashboard_lines(proc.stdout, offset), proc.stderr)


# -- PromQL syntax: promtool ---------------------------------------------------------------------------

def _promtool():
    promtool = shutil.which('promtool')
    if promtool is None:
        pytest.fail('promtool not found; it checks the dashboard\'s PromQL: %s' % PROMTOOL_INSTALL)
    return promtool


def _for_promtool(expr):
    for variable, value in PROMTOOL_VALUES:
        expr = expr.replace(variable, value)
    return expr


def _check_rules(tmp_path, exprs):
    rules = [{'record': 'oomguard_dashboard:expr_%d' % index, 'expr': expr} for index, expr in enumerate(exprs)]
    path = tmp_path / 'dashboard_rules.yml'
    path.write_text(json.dumps({'groups': [{'name': 'oomguard_dashboard', 'rules': rules}]}, indent=2))
    return subprocess.run([_promtool(), 'check', 'rules', str(path)], capture_output=True, text=True, timeout=120,
                          check=False)


def test_promql_parses(tmp_path):
    found = [(where, _for_promtool(expr)) for where, expr, dummy in _expressions()]
    for where, expr in found:
        assert '$' not in expr, '%s: a Grafana variable promtool has no value for: %s' % (where, expr)
    proc = _check_rules(tmp_path, [expr for dummy, expr in found])
    index = '\n'.join('  expr_%d: %s: %s' % (number, where, expr) for number, (where, expr) in enumerate(found))
    assert proc.returncode == 0, 'promtool check rules:\n%s%s\nrules:\n%s' % (proc.stdout, proc.stderr, index)


def test_promtool_rejects_a_broken_expression(tmp_path):
    # The check above has teeth: the same rules file with an unbalanced expression fails.
    proc = _check_rules(tmp_path, ['sum by (cause) (oomguard_oom_kills_total'])
    assert proc.returncode != 0, proc.stdout


# -- this collection's rules -----------------------------------------------------------------------------

def test_dashboard_identity_and_variables():
    assert DASH['uid'] == 'oomguard-fleet'
    assert DASH['id'] is None
    assert 38 <= DASH['schemaVersion'] <= 41, 'schemaVersion of Grafana 10/11'
    variables = dict((variable['name'], variable) for variable in DASH['templating']['list'])
    assert variables['datasource']['type'] == 'datasource'
    assert variables['datasource']['query'] == 'prometheus'
    instance = variables['instance']
    assert instance['type'] == 'query'
    assert instance['multi'] is True
    assert instance['datasource']['uid'] == DATASOURCE
    match = _LABEL_VALUES_RE.match(instance['query'])
    assert match and match.group(2) == 'instance'
    assert match.group(1).startswith('oomguard_risk_score')


def test_no_hard_coded_datasource():
    def walk(node, path):
        if isinstance(node, dict):
            if 'datasource' in node and node['datasource'] is not None:
                reference = node['datasource']
                assert isinstance(reference, dict) and reference.get('uid') == DATASOURCE, (
                    '%s: datasource %r, not the ${datasource} variable' % (path, reference))
            for key, value in node.items():
                walk(value, path + '.' + key)
        elif isinstance(node, list):
            for number, value in enumerate(node):
                walk(value, '%s[%d]' % (path, number))
    walk(DASH, 'dashboard')


def test_every_query_uses_the_datasource_variable():
    expressions = _expressions()
    assert expressions
    for where, expr, datasource in expressions:
        assert expr.strip(), where
        assert datasource and datasource.get('uid') == DATASOURCE, '%s: datasource %r' % (where, datasource)


def test_metric_and_label_names_are_documented():
    documented = _doc_metrics()
    assert 'oomguard_risk_score' in documented, 'the metric table of docs/monitoring.md was not found'
    assert FLEET_METRIC in [name for name, dummy in fleet.METRICS]
    metrics = dict(documented, **{FLEET_METRIC: FLEET_LABELS})
    labels = set(EXPORTER_LABELS) | FLEET_LABELS
    for names in documented.values():
        labels |= names
    for where, expr, dummy in _expressions():
        code = _strip_strings(expr)
        used = [name for name in _NAME_RE.findall(code) if name.startswith('oomguard_')]
        assert used, '%s: no oomguard metric in %s' % (where, expr)
        unknown = sorted(set(used) - set(metrics))
        assert not unknown, '%s: metrics not in docs/monitoring.md: %s' % (where, unknown)
        named = set(_MATCHER_RE.findall(expr))
        for group in _GROUPING_RE.findall(code):
            named |= set(name.strip() for name in group.split(',') if name.strip())
        assert named <= labels, '%s: unknown labels %s' % (where, sorted(named - labels))
        if FLEET_METRIC not in used and not where.startswith('variable'):
            assert INSTANCE_MATCHER in expr, '%s: the instance variable does not select the hosts' % where


@pytest.mark.parametrize('where, expr', [(where, expr) for where, expr, dummy in _expressions()],
                         ids=[where for where, dummy, dummy2 in _expressions()])
def test_brackets_balance(where, expr):
    pairs = {')': '(', ']': '[', '}': '{'}
    stack = []
    for char in _strip_strings(expr):
        if char in '([{':
            stack.append(char)
        elif char in pairs:
            assert stack and stack.pop() == pairs[char], '%s: unbalanced %r in %s' % (where, char, expr)
    assert not stack, '%s: unclosed %s in %s' % (where, ''.join(stack), expr)


def test_panel_ids_are_unique():
    ids = [panel.get('id') for panel in _panels()]
    assert all(isinstance(number, int) and number > 0 for number in ids), ids
    assert len(ids) == len(set(ids)), ids


def test_panels_sit_on_the_grid_without_overlapping():
    boxes = []
    for panel in _panels():
        grid = panel.get('gridPos')
        assert isinstance(grid, dict), 'panel %s has no gridPos' % panel.get('id')
        x, y, w, h = (grid.get(key) for key in 'xywh')
        assert all(isinstance(value, int) for value in (x, y, w, h)), (panel['id'], grid)
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= GRID_COLUMNS, (panel['id'], grid)
        boxes.append((panel['id'], x, y, w, h))
    for number, (first, x1, y1, w1, h1) in enumerate(boxes):
        for second, x2, y2, w2, h2 in boxes[number + 1:]:
            overlap = x1 < x2 + w2 and x2 < x1 + w1 and y1 < y2 + h2 and y2 < y1 + h1
            assert not overlap, 'panels %s and %s overlap' % (first, second)


@pytest.mark.parametrize('panel', _data_panels(), ids=lambda panel: str(panel.get('id')))
def test_panel_has_description_unit_and_minimum(panel):
    assert (panel.get('description') or '').strip(), 'no description'
    assert (panel.get('title') or '').strip(), 'no title'
    assert panel.get('targets'), 'no query'
    defaults = panel['fieldConfig']['defaults']
    assert defaults.get('unit'), 'no unit'
    assert isinstance(defaults.get('min'), (int, float)), 'no minimum'


def test_risk_panels_follow_the_collections_levels():
    score_panels = [panel for panel in _data_panels()
                    if any('oomguard_risk_score' in target['expr'] for target in panel['targets'])]
    assert score_panels
    bounds = sorted(bound for dummy, bound in posture.LEVEL_SCORE_BOUNDS)
    for panel in score_panels:
        steps = panel['fieldConfig']['defaults']['thresholds']['steps']
        assert [step['value'] for step in steps] == [None] + bounds, panel['title']
        assert panel['fieldConfig']['defaults'].get('max') == 100
    level_panels = [panel for panel in _data_panels()
                    if any('oomguard_risk_level' in target['expr'] for target in panel['targets'])]
    assert level_panels
    for panel in level_panels:
        named = set(override['matcher']['options'] for override in panel['fieldConfig']['overrides'])
        assert named == set(posture.LEVELS), panel['title']


def test_units_of_the_domain_table():
    tables = [panel for panel in _data_panels()
              if any('oomguard_domain_headroom_ratio' in target['expr'] for target in panel['targets'])]
    assert len(tables) == 1
    panel = tables[0]
    assert panel['type'] == 'table'
    units = {}
    for override in panel['fieldConfig']['overrides']:
        properties = dict((item['id'], item.get('value')) for item in override['properties'])
        units[override['matcher']['options']] = properties.get('unit')
    by_metric = {}
    for target in panel['targets']:
        metric = [name for name in _NAME_RE.findall(_strip_strings(target['expr'])) if name.startswith('oomguard_')][0]
        by_metric[metric] = units.get('Value #' + target['refId'])
    assert by_metric['oomguard_domain_headroom_ratio'] == 'percentunit'
    assert by_metric['oomguard_domain_headroom_bytes'] == 'bytes'  # bytes (IEC); decbytes is SI
    assert by_metric['oomguard_domain_time_to_oom_seconds'] == 's'
