# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report as one self-contained HTML page: no network asset, no
external script or font; the charts are inline SVG.

The host table stays usable at 10,000 hosts and more: each host's row is built
here once, as a tree of elements and texts, and the page carries every row in
one JSON data block (identical subtrees stored once: the same finding's advice
on 5,000 hosts is one entry).  The first page of rows, riskiest first, is also
written out as HTML, so the summary and that page read without JavaScript; a
small inline script sorts, filters and pages over every host and builds only
the rows of the page shown.  Both the HTML here and the script's DOM come from
the same trees: the markup of a row is the same either way, and every text
from a host is a text node or an escaped attribute value, never markup."""


import gc
import heapq
import json
from html import escape
from itertools import islice

from ansible_collections.oomguard.linux.plugins.plugin_utils import fleet
from ansible_collections.oomguard.linux.plugins.plugin_utils import report_text as rt
from ansible_collections.oomguard.linux.plugins.plugin_utils.report_text import plural

LEVEL_COLOURS = {'critical': '#b3261e', 'high': '#e8710a', 'medium': '#c9a400', 'low': '#2e7d32', None: '#777'}
# A reachable host is neutral: its risk is the risk column's to tell, not the status's.
STATUS_COLOURS = {'ok': '#5f6368', 'partial': '#c9a400', 'broken': '#b3261e', 'failed': '#b3261e', 'unreachable': '#b3261e',
                  'no_result': '#777'}
CAUSE_COLOUR = '#3f51b5'

# Rows of the host table per page: the page's choices and the first page (also the rows written as HTML).
PAGE_SIZES = (25, 50, 100, 250, 1000)
PAGE_SIZE = 50
# The summary's list of the riskiest hosts, and how many hosts not fully audited are listed by name.
RISKIEST_LISTED = 10
DOWN_LISTED = 100
# (key, header, sort type): the host table's sortable columns, in order; the key names the column in the
# page's address (#sort=-risk).  Then two columns that do not sort: the top finding and the details.
COLUMNS = (('host', 'Host', 'text'), ('status', 'Status', 'text'), ('risk', 'Risk', 'number'),
           ('findings', 'Findings by severity', 'number'), ('kernel', 'Kernel', 'text'), ('memory', 'Memory', 'number'),
           ('swap', 'Swap', 'number'), ('cgroup', 'cgroup', 'text'), ('psi', 'Memory PSI', 'number'),
           ('victim', 'Who dies next', 'text'), ('drift', 'Drift', 'number'), ('slab', 'Slab', 'number'),
           ('kills', 'OOM kills', 'number'))
# What a row may be made of; the script builds nothing else.
TAGS = frozenset(('tr', 'td', 'b', 'span', 'br', 'code', 'details', 'summary', 'p', 'ul', 'li'))
ATTRIBUTES = frozenset(('class', 'style', 'title', 'data-sort', 'data-level', 'data-status'))
VOID = frozenset(('br',))

STYLE = '''
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1c1b1f;background:#f6f6f8}
header{background:#1c2540;color:#fff;padding:16px 24px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85;font-size:14px}
main{padding:16px 24px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:12px 16px;margin:0 0 16px}
h2{font-size:17px;margin:4px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:16px}
.card{flex:1 1 280px;min-width:260px}
.big{font-size:28px;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e4e4e8;vertical-align:top}
th{background:#eef0f6;cursor:pointer;user-select:none;white-space:nowrap}
th[data-type]:after{content:" \\2195";opacity:.4}
th[data-order=desc]:after{content:" \\2193";opacity:1}
th[data-order=asc]:after{content:" \\2191";opacity:1}
.badge{display:inline-block;white-space:nowrap;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.sev{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:3px;vertical-align:baseline}
.counts{white-space:nowrap}
.legend{font-size:12px;color:#444;margin:0 0 8px}
.legend span.item{margin-right:12px}
td.basic{white-space:nowrap}
.scroll{overflow-x:auto}
td.top{min-width:220px}
.sev-critical{background:#b3261e}.sev-high{background:#e8710a}.sev-medium{background:#c9a400}.sev-low{background:#2e7d32}
.sev-info{background:#777}
.controls{display:flex;gap:12px;flex-wrap:wrap;align-items:center;margin-bottom:8px}
.controls[hidden]{display:none}
.controls input,.controls select,.controls button{padding:4px 6px;font-size:13px}
.pager{display:flex;gap:4px;align-items:center}
details summary{cursor:pointer;color:#1c4bb0}
ul.tight{margin:4px 0;padding-left:18px}
.muted{color:#666}
code{font-size:12px}
table.mini td{border:0;padding:2px 6px 2px 0}
'''

# The page's script.  The host rows are in the data block #fleet-data: {nodes, rows, page_size}, where
# nodes[i] = [tag, {attribute: value} or 0, child...] and a child is a text or the index of an earlier
# node; rows[j] is the node of host j's <tr>, riskiest first.  Only a page of rows is in the DOM at a
# time; sorting (stable, as clicked), filtering and counting go over every host.  The state is kept in
# the page's address (#q=..&level=..&status=..&sort=-risk&page=2&size=100), so a view can be linked.
SCRIPT = '''
(function () {
  'use strict';
  function sortValue(value, type) {
    if (type === 'number') { var number = parseFloat(value); return isNaN(number) ? -Infinity : number; }
    return value.toLowerCase();
  }
  function compare(x, y, descending) {
    if (x < y) { return descending ? 1 : -1; }
    if (x > y) { return descending ? -1 : 1; }
    return 0;
  }
  // Tables that hold all their rows (the recent kills): sorted in place.
  document.querySelectorAll('table.sortable').forEach(function (table) {
    if (table.id === 'hosts') { return; }
    table.querySelectorAll('th[data-type]').forEach(function (th, index) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var type = th.getAttribute('data-type');
        var descending = th.getAttribute('data-order') !== 'desc';
        th.setAttribute('data-order', descending ? 'desc' : 'asc');
        var keys = new Map();
        rows.forEach(function (row) {
          var cell = row.children[index];
          keys.set(row, sortValue(cell ? (cell.getAttribute('data-sort') || cell.textContent.trim()) : '', type));
        });
        rows.sort(function (a, b) { return compare(keys.get(a), keys.get(b), descending); });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });

  var source = document.getElementById('fleet-data');
  var table = document.getElementById('hosts');
  if (!source || !table) { return; }
  var data = JSON.parse(source.textContent);
  var nodes = data.nodes, rows = data.rows;
  var TAGS = {tr: 1, td: 1, b: 1, span: 1, br: 1, code: 1, details: 1, summary: 1, p: 1, ul: 1, li: 1};
  var ATTRIBUTES = {'class': 1, style: 1, title: 1, 'data-sort': 1, 'data-level': 1, 'data-status': 1};
  var own = Object.prototype.hasOwnProperty;
  var texts = [];
  // A child refers to an earlier node only: no loop, whatever the data.
  function child(ref, value) { return typeof value !== 'number' || (value >= 0 && value < ref); }
  function textOf(ref) {
    var text = texts[ref];
    if (text === undefined) {
      var node = nodes[ref], parts = [];
      for (var i = 2; i < node.length; i += 1) {
        if (child(ref, node[i])) { parts.push(typeof node[i] === 'number' ? textOf(node[i]) : String(node[i])); }
      }
      text = texts[ref] = parts.join('');
    }
    return text;
  }
  function element(ref) {
    var node = nodes[ref];
    if (!own.call(TAGS, node[0])) { return document.createTextNode(''); }
    var made = document.createElement(node[0]);
    var attributes = node[1] || {};
    Object.keys(attributes).forEach(function (name) {
      if (own.call(ATTRIBUTES, name)) { made.setAttribute(name, String(attributes[name])); }
    });
    for (var i = 2; i < node.length; i += 1) {
      if (child(ref, node[i])) {
        made.appendChild(typeof node[i] === 'number' ? element(node[i]) : document.createTextNode(String(node[i])));
      }
    }
    return made;
  }
  function attribute(index, name) { var attributes = nodes[rows[index]][1]; return (attributes && attributes[name]) || ''; }

  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.querySelectorAll('th[data-key]'));
  var keyed = {};
  headers.forEach(function (th, column) { keyed[th.getAttribute('data-key')] = column; });
  var text = document.getElementById('filter-text');
  var level = document.getElementById('filter-level');
  var status = document.getElementById('filter-status');
  var size = document.getElementById('page-size');
  var count = document.getElementById('filter-count');
  var info = document.getElementById('page-info');
  var buttons = {first: document.getElementById('page-first'), prev: document.getElementById('page-prev'),
                 next: document.getElementById('page-next'), last: document.getElementById('page-last')};
  function choices(select) { return Array.prototype.map.call(select.options, function (option) { return option.value; }); }
  var state = {q: '', level: '', status: '', sort: '', page: 1, size: data.page_size};
  var order = rows.map(function (ref, index) { return index; });
  var matching = order, lowered = null, keys = {}, pages = 1;

  function sortKeys(column) {
    if (!keys[column]) {
      var type = headers[column].getAttribute('data-type');
      keys[column] = rows.map(function (ref) {
        var cell = nodes[ref][2 + column];
        if (typeof cell !== 'number' || !child(ref, cell)) { return sortValue('', type); }
        var attributes = nodes[cell][1];
        return sortValue((attributes && attributes['data-sort']) || textOf(cell).trim(), type);
      });
    }
    return keys[column];
  }
  function sortBy(column, descending) {
    var values = sortKeys(column);
    order.sort(function (a, b) { return compare(values[a], values[b], descending); });
    headers.forEach(function (th, index) {
      if (index === column) { th.setAttribute('data-order', descending ? 'desc' : 'asc'); } else { th.removeAttribute('data-order'); }
    });
    state.sort = (descending ? '-' : '') + headers[column].getAttribute('data-key');
  }
  function filter() {
    var needle = state.q.toLowerCase();
    if (needle && !lowered) { lowered = rows.map(function (ref) { return textOf(ref).toLowerCase(); }); }
    matching = order.filter(function (index) {
      return (!needle || lowered[index].indexOf(needle) >= 0) &&
             (!state.level || attribute(index, 'data-level') === state.level) &&
             (!state.status || attribute(index, 'data-status') === state.status);
    });
  }
  function saveAddress() {
    var parts = [];
    ['q', 'level', 'status', 'sort'].forEach(function (name) {
      if (state[name]) { parts.push(name + '=' + encodeURIComponent(state[name])); }
    });
    if (state.page > 1) { parts.push('page=' + state.page); }
    if (state.size !== data.page_size) { parts.push('size=' + state.size); }
    var hash = parts.length ? '#' + parts.join('&') : '';
    if (hash !== location.hash) {
      try { history.replaceState(null, '', hash || location.pathname + location.search); } catch (error) { /* a view not kept */ }
    }
  }
  function render() {
    pages = Math.max(1, Math.ceil(matching.length / state.size));
    state.page = Math.min(Math.max(1, state.page), pages);
    var first = (state.page - 1) * state.size;
    var shown = matching.slice(first, first + state.size);
    var fragment = document.createDocumentFragment();
    shown.forEach(function (index) { fragment.appendChild(element(rows[index])); });
    body.textContent = '';
    body.appendChild(fragment);
    count.setAttribute('data-matching', String(matching.length));
    count.setAttribute('data-total', String(rows.length));
    count.textContent = matching.length === rows.length ? rows.length + (rows.length === 1 ? ' host' : ' hosts')
      : matching.length + ' of ' + rows.length + ' hosts match';
    info.setAttribute('data-first', String(shown.length ? first + 1 : 0));
    info.setAttribute('data-last', String(first + shown.length));
    info.textContent = shown.length ? 'rows ' + (first + 1) + '\\u2013' + (first + shown.length) + ', page ' + state.page +
      ' of ' + pages : 'no host matches';
    buttons.first.disabled = buttons.prev.disabled = state.page <= 1;
    buttons.next.disabled = buttons.last.disabled = state.page >= pages;
    saveAddress();
  }
  function readAddress() {
    var params = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (part) {
      var at = part.indexOf('=');
      if (at > 0) {
        try { params[part.slice(0, at)] = decodeURIComponent(part.slice(at + 1).replace(/[+]/g, ' ')); } catch (error) { /* ignored */ }
      }
    });
    state.q = params.q || '';
    state.level = choices(level).indexOf(params.level) > 0 ? params.level : '';
    state.status = choices(status).indexOf(params.status) > 0 ? params.status : '';
    state.size = choices(size).indexOf(params.size) >= 0 ? parseInt(params.size, 10) : data.page_size;
    state.page = parseInt(params.page, 10) || 1;
    text.value = state.q;
    level.value = state.level;
    status.value = state.status;
    size.value = String(state.size);
    order = rows.map(function (ref, index) { return index; });
    state.sort = '';
    headers.forEach(function (th) { th.removeAttribute('data-order'); });
    var sort = /^(-?)([a-z]+)$/.exec(params.sort || '');
    if (sort && own.call(keyed, sort[2])) { sortBy(keyed[sort[2]], sort[1] === '-'); }
    filter();
  }

  headers.forEach(function (th, column) {
    th.addEventListener('click', function () {
      sortBy(column, th.getAttribute('data-order') !== 'desc');
      filter();
      state.page = 1;
      render();
    });
  });
  function changed() {
    state.q = text.value;
    state.level = level.value;
    state.status = status.value;
    state.size = parseInt(size.value, 10) || data.page_size;
    state.page = 1;
    filter();
    render();
  }
  [text, level, status, size].forEach(function (control) { control.addEventListener('input', changed); });
  function go(page) { state.page = page; render(); }
  buttons.first.addEventListener('click', function () { go(1); });
  buttons.prev.addEventListener('click', function () { go(state.page - 1); });
  buttons.next.addEventListener('click', function () { go(state.page + 1); });
  buttons.last.addEventListener('click', function () { go(pages); });
  window.addEventListener('hashchange', function () { readAddress(); render(); });
  document.getElementById('host-controls').hidden = false;
  readAddress();
  render();
  // When the first page is in the DOM and laid out, in ms since the page was asked for.
  void table.offsetHeight;
  table.setAttribute('data-rendered-ms', String(Math.round(performance.now())));
})();
'''


def _clean(value):
    """A text that encodes as UTF-8: a lone surrogate (a non-UTF-8 byte Python kept, or a broken escape
    in a result) is written as its escape, \\udcff, as in the textfiles."""
    text = '' if value is None else str(value)
    if text.isascii():
        return text
    try:
        text.encode('utf-8')
        return text
    except UnicodeEncodeError:
        return text.encode('utf-8', 'backslashreplace').decode('utf-8')


def _e(value):
    return escape(_clean(value), quote=True)


# -- rows as trees: (tag, ((attribute, value), ...), (child, ...)), a child a text or a tree ---------

def _node(tag, attributes=(), *children):
    return (tag, attributes, children)


def markup(node):
    """A tree as HTML: every text escaped, every attribute value quoted and escaped."""
    if isinstance(node, str):
        return _e(node)
    tag, attributes, children = node
    start = '<%s%s>' % (tag, ''.join(' %s="%s"' % (name, _e(value)) for name, value in attributes))
    if tag in VOID:
        return start
    return '%s%s</%s>' % (start, ''.join(markup(child) for child in children), tag)


class Nodes(object):
    """The rows' nodes, each distinct subtree once: [tag, {attribute: value} or 0, child...], a child a text
    or the index of an earlier node.  Adding a tree is one pass over it (a dict look-up per node)."""

    def __init__(self):
        self.table = []
        self._index = {}

    def add(self, node):
        tag, attributes, children = node
        if tag not in TAGS:
            raise ValueError('a row may not hold <%s>' % tag)
        # Loops, not generators: this runs for every element of every row.
        key = [tag, ()]
        if attributes:
            cleaned = []
            for name, value in attributes:
                if name not in ATTRIBUTES:
                    raise ValueError('a row may not hold <%s %s=...>' % (tag, name))
                cleaned.append((name, value if value.isascii() else _clean(value)))
            key[1] = tuple(cleaned)
        add = self.add
        for child in children:
            key.append((child if child.isascii() else _clean(child)) if child.__class__ is str else add(child))
        key = tuple(key)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.table)
            entry = list(key)
            entry[1] = dict(key[1]) or 0
            self.table.append(entry)
        return index


def script_json(value):
    """JSON that can stand inside a <script> element: ASCII only (U+2028, U+2029 and lone surrogates
    as escapes), and no <, > or & that the HTML parser could read as the end of the element."""
    text = json.dumps(value, ensure_ascii=True, separators=(',', ':'), allow_nan=False)
    return text.replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026')


def bar_chart(title, items, colour_of, empty):
    """A horizontal bar chart in inline SVG: items [(label, value)]."""
    items = [(label, value) for label, value in items if value]
    if not items:
        return '<p class="muted">%s</p>' % _e(empty)
    width, bar_h, gap, label_w = 460, 18, 6, 190
    top = max(value for dummy, value in items)
    height = len(items) * (bar_h + gap) + gap
    # Scales down with its card (viewBox), never wider than drawn.
    parts = ['<svg role="img" aria-label="%s" style="width:100%%;max-width:%dpx;height:auto" viewBox="0 0 %d %d">' % (
        _e(title), width, width, height)]
    for index, (label, value) in enumerate(items):
        y = gap + index * (bar_h + gap)
        length = max(2, int((width - label_w - 50) * value / float(top)))
        parts.append('<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>' % (label_w - 6, y + 13, _e(label)))
        parts.append('<rect x="%d" y="%d" width="%d" height="%d" rx="3" fill="%s"><title>%s: %s</title></rect>' % (
            label_w, y, length, bar_h, colour_of(label), _e(label), value))
        parts.append('<text x="%d" y="%d" font-size="12">%s</text>' % (label_w + length + 6, y + 13, value))
    parts.append('</svg>')
    return ''.join(parts)


def _badge(text, colour):
    return _node('span', (('class', 'badge'), ('style', 'background:%s' % colour)), text)


def _muted(text):
    return _node('span', (('class', 'muted'),), text)


def _severity_counts(counts):
    """'2 high · 1 medium': every count says its severity, the colour only repeats it."""
    children = []
    for severity in fleet.SEVERITIES:
        if counts.get(severity):
            if children:
                children.append(' \u00b7 ')
            children.append(_node('span', (('class', 'sev sev-%s' % severity),)))
            children.append('%d %s' % (counts[severity], severity))
    return _node('span', (('class', 'counts'),), *(children or ['no findings']))


def _legend():
    return ('<p class="legend">Findings are counted by severity: %s<br>Risk: the host\'s OOM risk score (0-100) and level. '
            'Status: whether the audit got a result from the host.</p>' % ' '.join(
                '<span class="item"><span class="sev sev-%s"></span>%s</span>' % (s, s) for s in fleet.SEVERITIES))


UNKNOWN = _muted('unknown')


def _basics_cells(basics):
    """Kernel, memory, swap, cgroup mode, PSI and who dies next, from the host's posture: one <td> each."""
    keys = ('kernel', 'memory', 'swap', 'cgroup', 'psi', 'victim')
    if basics is None:
        return [_node('td', (('class', 'basic basic-%s' % key),), UNKNOWN) for key in keys]
    total, available = basics['mem_total_kb'], basics['mem_available_kb']
    memory = None
    if total is not None:
        memory = ['%s RAM' % rt.size_kb(total)]
        if available is not None:
            memory += [_node('br'), _muted('%s available' % rt.size_kb(available))]
    swap = None
    if basics['swap_total_kb'] == 0:
        swap = ['none']
    elif basics['swap_total_kb'] is not None:
        swap = ['%s total' % rt.size_kb(basics['swap_total_kb']), _node('br'),
                _muted('%s used' % rt.size_kb(basics['swap_used_kb']))]
    psi = basics['psi']
    if psi is None:
        psi_cell = ['not available']
    else:
        psi_cell = ['some %s' % rt.percent(psi['some_avg10_percent'], 2), _node('br'),
                    'full %s ' % rt.percent(psi['full_avg10_percent'], 2), _muted('(avg10)')]
    victim = basics['next_victim']
    victim_cell = None
    if victim:
        victim_cell = [_node('code', (), victim['comm'] or 'unknown'), ' (pid %s)' % rt.value_text(victim['pid']), _node('br'),
                       _muted('oom_score %s, RSS %s' % (rt.value_text(victim['oom_score']) if victim['oom_score'] is not None
                                                        else 'unknown', rt.size_kb(victim['rss_kb'])))]
    mode = basics['cgroup_mode']
    cgroup = None
    if mode:
        cgroup = [mode]
        if basics['memory_controller']:
            cgroup = [mode + ' ', _muted('(memory v%d)' % basics['memory_controller'])]
    cells = (('kernel', [basics['kernel_release']] if basics['kernel_release'] else None, basics['kernel_release'] or ''),
             ('memory', memory, total if total is not None else -1),
             ('swap', swap, basics['swap_total_kb'] if basics['swap_total_kb'] is not None else -1),
             ('cgroup', cgroup, mode or ''),
             ('psi', psi_cell, psi['full_avg10_percent'] if psi and psi['full_avg10_percent'] is not None else -1),
             ('victim', victim_cell, (victim['comm'] or '') if victim else ''))
    return [_node('td', (('class', 'basic basic-%s' % key), ('data-sort', '%s' % sort)), *(children or [UNKNOWN]))
            for key, children, sort in cells]


def _list(title, items):
    return [_node('b', (), title), _node('ul', (('class', 'tight'),), *items)]


def _host_details(host):
    blocks = []
    if host['message']:
        blocks.append(_node('p', (), host['message']))
    if host['malformed']:
        blocks += _list('What is wrong with the result', [_node('li', (), problem) for problem in host['malformed']])
    if host['findings']:
        blocks += _list('Findings', [_node('li', (), _node('span', (('class', 'sev sev-%s' % f['severity']),)),
                                           '%s ' % f['severity'], _node('code', (), f['id']), ' %s' % (f['title'] or ''),
                                           _node('br'), _muted(f['advice'] or ''))
                                     for f in host['findings']])
    tightest = (host['basics'] or {}).get('tightest_domain')
    if tightest:
        victim = tightest['next_victim']
        line = ['%s ' % tightest['kind'], _node('code', (), rt.cut_middle(fleet.domain_where(tightest), 80)),
                ': %s headroom of %s%s; next victim ' % (
                    rt.size_kb(tightest['headroom_kb']), rt.size_kb(tightest['limit_kb']),
                    (', full in about %s at its present growth' % rt.seconds(tightest['time_to_oom_s']))
                    if tightest['time_to_oom_s'] is not None else '')]
        if victim:
            line += [_node('code', (), victim['comm'] or 'unknown'), ' (pid %s)' % rt.value_text(victim['pid'])]
        else:
            line[-1] += 'nobody the OOM killer may kill'
        blocks += [_node('b', (), 'Tightest OOM domain'), _node('p', (), *line)]
    drift = host['drift']
    if drift and drift['rows']:
        blocks += _list('Drift from the policy', [
            _node('li', (), '%s ' % r['status'], _node('code', (), rt.cut_middle(r['item'] or '', 80)),
                  ' %s: want ' % (r['setting'] or ''), _node('code', (), rt.value_text(r['desired'])), ', have ',
                  _node('code', (), rt.value_text(r['live'])), *([' ', _muted('(%s)' % r['note'])] if r['note'] else []))
            for r in drift['rows']])
    slab = host['slab']
    if slab and slab['flagged']:
        blocks += _list('Slab', [_node('li', (), reason) for reason in slab['reasons']])
    events = host['events']
    if events and events['recent']:
        blocks += _list('Recent OOM kills', [
            _node('li', (), '%s ' % _when(k), _node('code', (), k['victim'] or 'unknown'),
                  ' (pid %s) \u2014 %s' % (rt.value_text(k['pid']), k['cause'] or 'unknown cause'))
            for k in events['recent']])
    if not blocks:
        return _muted('nothing to report')
    return _node('details', (), _node('summary', (), 'details'), *blocks)


def _when(kill):
    if kill['timestamp']:
        return kill['timestamp']
    if kill['uptime_s'] is not None:
        return '%s after boot' % rt.seconds(kill['uptime_s'])
    return 'unknown time'


def host_row(host):
    """One host's <tr> as a tree; its cells in the order of COLUMNS, then the top finding and the details."""
    level = host['risk_level']
    drift = host['drift']
    slab = host['slab']
    events = host['events']
    drift_count = (drift['summary'].get('drift', 0) + drift['summary'].get('missing', 0)) if drift else None
    drift_parts = []
    if drift and drift['summary'].get('drift', 0):
        drift_parts.append(plural(drift['summary']['drift'], 'value') + ' differ' + ('s' if drift['summary']['drift'] == 1 else ''))
    if drift and drift['summary'].get('missing', 0):
        drift_parts.append(plural(drift['summary']['missing'], 'file') + ' absent')
    kills = events['total'] if events else None
    top = host['findings'][0]['title'] or host['findings'][0]['id'] if host['findings'] else ''
    if drift_count is None:
        drift_text = 'no policy' if host['status'] == 'ok' else '-'
    else:
        drift_text = 'compliant' if drift_count == 0 else ', '.join(drift_parts)
    if not slab:
        slab_text = '-'
    else:
        slab_text = '%s (SUnreclaim %s of RAM)' % (slab['verdict'] or 'unknown', rt.percent(slab['sunreclaim_percent'], 2))
    score = host['risk_score']
    risk = ['%s ' % (rt.value_text(score) if score is not None else '-')]
    if level:
        risk.append(_badge(level, LEVEL_COLOURS.get(level)))
    cells = [_node('td', (), _node('b', (), host['name'])),
             _node('td', (('data-sort', host['status']),), _badge(fleet.STATUS_LABELS[host['status']],
                                                                  STATUS_COLOURS.get(host['status'], '#777'))),
             _node('td', (('data-sort', '%s' % (score if score is not None else -1)),), *risk),
             _node('td', (('data-sort', '%d' % sum(host['findings_by_severity'].values())),),
                   _severity_counts(host['findings_by_severity']))]
    cells += _basics_cells(host['basics'])
    cells += [_node('td', (('data-sort', '%s' % (drift_count if drift_count is not None else -1)),), drift_text),
              _node('td', (('data-sort', '%s' % (slab['sunreclaim_percent'] if slab and slab['sunreclaim_percent'] is not None
                                                 else -1)),), slab_text),
              _node('td', (('data-sort', '%s' % (kills if kills is not None else -1)),), '-' if kills is None else '%s' % kills),
              _node('td', (('class', 'top'),), top),
              _node('td', (), _host_details(host))]
    return _node('tr', (('data-level', level or ''), ('data-status', host['status'])), *cells)


def _host_table(hosts):
    """The host table: the first page written out, every row in the data block for the script."""
    nodes = Nodes()
    refs = []
    first = []
    # A row's tree is some hundred tuples, and no cycle: with the collector on, 10,000 rows cost
    # twice as long, as each of its passes walks the whole report again.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for host in hosts:
            row = host_row(host)
            refs.append(nodes.add(row))
            if len(first) < PAGE_SIZE:
                first.append(markup(row))
    finally:
        if collecting:
            gc.enable()
    shown = len(first)
    where = ('%s, riskiest first' % plural(len(hosts), 'host') if shown == len(hosts)
             else 'hosts 1\u2013%d of %d, riskiest first' % (shown, len(hosts)))
    lines = [
        '<section><h2>Hosts</h2>',
        # Without the script these do nothing: they are shown by it.
        '<div class="controls" id="host-controls" hidden>'
        '<input id="filter-text" type="search" placeholder="filter: host, finding, cause" aria-label="filter">',
        '<select id="filter-level" aria-label="risk level"><option value="">any risk</option>%s</select>' % ''.join(
            '<option value="%s">%s</option>' % (level, level) for level in fleet.LEVELS),
        '<select id="filter-status" aria-label="status"><option value="">any status</option>%s</select>' % ''.join(
            '<option value="%s">%s</option>' % (status, fleet.STATUS_LABELS[status]) for status in fleet.STATUSES),
        '<span id="filter-count" class="muted" data-matching="%d" data-total="%d"></span>' % (len(hosts), len(hosts)),
        '<span class="pager"><button type="button" id="page-first" aria-label="first page">&laquo;</button>'
        '<button type="button" id="page-prev" aria-label="previous page">&lsaquo;</button>'
        '<button type="button" id="page-next" aria-label="next page">&rsaquo;</button>'
        '<button type="button" id="page-last" aria-label="last page">&raquo;</button></span>',
        '<select id="page-size" aria-label="rows per page">%s</select> rows per page</div>' % ''.join(
            '<option value="%d"%s>%d</option>' % (size, ' selected' if size == PAGE_SIZE else '', size) for size in PAGE_SIZES),
        '<p class="legend"><span id="page-info" data-first="%d" data-last="%d">%s</span></p>' % (
            1 if shown else 0, shown, where),
    ]
    if shown < len(hosts):
        lines.append('<noscript><p class="muted">Sorting, filtering and the other %s need JavaScript; the JSON report '
                     '(oom-fleet-report.json) has every host.</p></noscript>' % plural(len(hosts) - shown, 'host'))
    lines += [
        _legend(),
        '<div class="scroll"><table id="hosts" class="sortable"><thead><tr>%s<th>Top finding</th><th></th></tr></thead><tbody>' % ''.join(
            '<th data-key="%s" data-type="%s">%s</th>' % (key, kind, header) for key, header, kind in COLUMNS),
    ]
    lines += first
    lines.append('</tbody></table></div>')
    lines.append('<script type="application/json" id="fleet-data">%s</script></section>' % script_json(
        {'nodes': nodes.table, 'rows': refs, 'page_size': PAGE_SIZE}))
    return lines


def _riskiest(hosts):
    """The riskiest hosts by score (the document lists them first), for the summary."""
    top = list(islice((h for h in hosts if h['risk_score'] is not None), RISKIEST_LISTED))
    if not top:
        return '<p class="muted">no posture in this report</p>'
    return '<table class="mini"><tbody>%s</tbody></table>' % ''.join(
        '<tr><td>%s</td><td>%s</td></tr>' % (
            _e(h['name']), markup(_node('span', (), *(['%s ' % rt.value_text(h['risk_score'])] + (
                [_badge(h['risk_level'], LEVEL_COLOURS.get(h['risk_level']))] if h['risk_level'] else [])))))
        for h in top)


def render(document):
    summary = document['summary']
    hosts = document['hosts']
    by_status = summary['by_status']
    title = 'OOM fleet audit'
    levels = [(level, summary['by_risk_level'].get(level, 0)) for level in fleet.LEVELS]
    causes = list(summary['oom_kills_by_cause'].items())
    findings = list(summary['hosts_by_finding'].items())[:10]
    statuses = ', '.join('%d %s' % (by_status[s], fleet.STATUS_LABELS[s]) for s in fleet.STATUSES if by_status[s])
    lines = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        '<title>%s</title><style>%s</style></head><body>' % (title, STYLE),
        '<header><h1>%s</h1><p>%s &middot; %s &middot; made %s</p></header>' % (
            title, _e(plural(summary['hosts'], 'host')), _e(statuses or 'none'), _e(document['generated_at'])),
        '<main>',
        '<section class="cards">',
        '<div class="card"><h2>Hosts by OOM risk</h2>%s</div>' % bar_chart(
            'Hosts by OOM risk', levels, lambda label: LEVEL_COLOURS.get(label, '#777'), 'no posture in this report'),
        '<div class="card"><h2>Riskiest hosts</h2>%s</div>' % _riskiest(hosts),
        '<div class="card"><h2>OOM kills by cause</h2>%s</div>' % bar_chart(
            'OOM kills by cause', causes, lambda label: CAUSE_COLOUR, 'no OOM kill found in the logs read'),
        '<div class="card"><h2>Findings: hosts affected</h2>%s</div>' % bar_chart(
            'Findings by hosts affected', findings, lambda label: '#5c6bc0', 'no finding'),
        '<div class="card"><h2>At a glance</h2><p><span class="big">%d</span> %s from the policy</p>'
        '<p><span class="big">%d</span> %s files or units of the policy</p>'
        '<p><span class="big">%d</span> %s for slab</p><p><span class="big">%d</span> %s in the logs read</p></div>' % (
            summary['hosts_drifting'], 'host drifts' if summary['hosts_drifting'] == 1 else 'hosts drift',
            summary['hosts_incomplete'], 'host lacks' if summary['hosts_incomplete'] == 1 else 'hosts lack',
            summary['hosts_slab_flagged'], 'host flagged' if summary['hosts_slab_flagged'] == 1 else 'hosts flagged',
            summary['oom_kills'], 'OOM kill' if summary['oom_kills'] == 1 else 'OOM kills'),
        '</section>',
    ]
    lines += _host_table(hosts)
    # The 200 newest of the fleet's recent kills (at most 10 a host), newest first.
    kills = heapq.nlargest(200, ((host['name'], kill) for host in hosts if host['events'] for kill in host['events']['recent']),
                           key=lambda hk: hk[1]['timestamp'] or '')
    lines.append('<section><h2>Recent OOM kills and their causes</h2>')
    if kills:
        lines.append('<table class="sortable"><thead><tr><th data-type="text">Host</th><th data-type="text">When</th>'
                     '<th data-type="text">Victim</th><th data-type="text">Cause</th><th data-type="text">cgroup</th>'
                     '</tr></thead><tbody>')
        advice = {}
        for name, kill in kills:
            if kill['advice']:
                advice.setdefault(kill['cause'] or 'unknown cause', kill['advice'])
            lines.append('<tr><td>%s</td><td>%s</td><td>%s (pid %s)</td><td>%s</td><td><code title="%s">%s</code></td></tr>' % (
                _e(name), _e(_when(kill)), _e(kill['victim'] or 'unknown'), _e(rt.value_text(kill['pid'])),
                _e(kill['cause'] or 'unknown cause'), _e(kill['cgroup']), _e(rt.cut_middle(kill['cgroup'] or '', 60))))
        lines.append('</tbody></table>')
        # The advice follows from the cause: said once per cause, not on every kill.
        lines.append('<h2>What to change, by cause</h2><ul class="tight">%s</ul>' % ''.join(
            '<li><b>%s</b>: %s</li>' % (_e(cause), _e(text)) for cause, text in sorted(advice.items())))
    else:
        lines.append('<p class="muted">No OOM kill in the logs read.</p>')
    lines.append('</section>')
    down = [host for host in hosts if host['status'] != 'ok']
    lines.append('<section><h2>Hosts not fully audited</h2>')
    if down:
        lines.append('<table><thead><tr><th>Host</th><th>Status</th><th>Why</th></tr></thead><tbody>%s</tbody></table>' % ''.join(
            '<tr><td>%s</td><td>%s</td><td>%s</td></tr>' % (_e(h['name']), _e(fleet.STATUS_LABELS[h['status']]), _e(h['message']))
            for h in down[:DOWN_LISTED]))
        if len(down) > DOWN_LISTED:
            lines.append('<p class="muted">and %s: choose a status in the host table\'s filter (each host\'s reason is '
                         'under its details), or read the JSON report.</p>' % plural(len(down) - DOWN_LISTED, 'more host'))
    else:
        lines.append('<p class="muted">Every host answered.</p>')
    lines.append('</section></main><script>%s</script></body></html>\n' % SCRIPT)
    return '\n'.join(lines)
