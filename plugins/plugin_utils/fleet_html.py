# -*- coding: utf-8 -*-
# Copyright (c) oomguard.linux contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report as one self-contained HTML page: no network asset, no
external script or font; the tables are rendered here (they read without
JavaScript), a small inline script sorts and filters them, and the charts
are inline SVG."""


from html import escape

from ansible_collections.oomguard.linux.plugins.plugin_utils import fleet
from ansible_collections.oomguard.linux.plugins.plugin_utils import report_text as rt
from ansible_collections.oomguard.linux.plugins.plugin_utils.report_text import plural

LEVEL_COLOURS = {'critical': '#b3261e', 'high': '#e8710a', 'medium': '#c9a400', 'low': '#2e7d32', None: '#777'}
# A reachable host is neutral: its risk is the risk column's to tell, not the status's.
STATUS_COLOURS = {'ok': '#5f6368', 'partial': '#c9a400', 'broken': '#b3261e', 'failed': '#b3261e', 'unreachable': '#b3261e',
                  'no_result': '#777'}
CAUSE_COLOUR = '#3f51b5'

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
tr.hidden{display:none}
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
.controls{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:8px}
.controls input,.controls select{padding:4px 6px;font-size:13px}
details summary{cursor:pointer;color:#1c4bb0}
ul.tight{margin:4px 0;padding-left:18px}
.muted{color:#666}
code{font-size:12px}
'''

SCRIPT = '''
(function () {
  function cellValue(row, index, type) {
    var cell = row.children[index];
    var value = cell ? (cell.getAttribute('data-sort') || cell.textContent.trim()) : '';
    if (type === 'number') { var number = parseFloat(value); return isNaN(number) ? -Infinity : number; }
    return value.toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th[data-type]').forEach(function (th, index) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var type = th.getAttribute('data-type');
        var descending = th.getAttribute('data-order') !== 'desc';
        th.setAttribute('data-order', descending ? 'desc' : 'asc');
        rows.sort(function (a, b) {
          var x = cellValue(a, index, type), y = cellValue(b, index, type);
          if (x < y) { return descending ? 1 : -1; }
          if (x > y) { return descending ? -1 : 1; }
          return 0;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  var text = document.getElementById('filter-text');
  var level = document.getElementById('filter-level');
  var status = document.getElementById('filter-status');
  var count = document.getElementById('filter-count');
  function applyFilter() {
    var needle = text.value.toLowerCase();
    var shown = 0;
    document.querySelectorAll('#hosts tbody tr').forEach(function (row) {
      var ok = (!needle || row.textContent.toLowerCase().indexOf(needle) >= 0) &&
               (!level.value || row.getAttribute('data-level') === level.value) &&
               (!status.value || row.getAttribute('data-status') === status.value);
      row.classList.toggle('hidden', !ok);
      if (ok) { shown += 1; }
    });
    count.textContent = shown + ' shown';
  }
  [text, level, status].forEach(function (element) { element.addEventListener('input', applyFilter); });
  applyFilter();
})();
'''


def _e(value):
    return escape('' if value is None else str(value), quote=True)


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
    return '<span class="badge" style="background:%s">%s</span>' % (colour, _e(text))


def _severity_counts(counts):
    """'2 high · 1 medium': every count says its severity, the colour only repeats it."""
    parts = ['<span class="sev sev-%s"></span>%d %s' % (severity, counts[severity], severity)
             for severity in fleet.SEVERITIES if counts.get(severity)]
    return '<span class="counts">%s</span>' % (' &middot; '.join(parts) if parts else 'no findings')


def _legend():
    return ('<p class="legend">Findings are counted by severity: %s<br>Risk: the host\'s OOM risk score (0-100) and level. '
            'Status: whether the audit got a result from the host.</p>' % ' '.join(
                '<span class="item"><span class="sev sev-%s"></span>%s</span>' % (s, s) for s in fleet.SEVERITIES))


def _unknown(text):
    return text if text is not None else '<span class="muted">unknown</span>'


def _basics_cells(basics):
    """Kernel, memory, swap, cgroup mode, PSI and who dies next, from the host's posture."""
    if basics is None:
        return ''.join('<td class="basic basic-%s"><span class="muted">unknown</span></td>' % key
                       for key in ('kernel', 'memory', 'swap', 'cgroup', 'psi', 'victim'))
    total, available = basics['mem_total_kb'], basics['mem_available_kb']
    memory = None
    if total is not None:
        memory = '%s RAM' % _e(rt.size_kb(total))
        if available is not None:
            memory += '<br><span class="muted">%s available</span>' % _e(rt.size_kb(available))
    swap = None
    if basics['swap_total_kb'] == 0:
        swap = 'none'
    elif basics['swap_total_kb'] is not None:
        swap = '%s total' % _e(rt.size_kb(basics['swap_total_kb']))
        swap += '<br><span class="muted">%s used</span>' % _e(rt.size_kb(basics['swap_used_kb']))
    psi = basics['psi']
    if psi is None:
        psi_text = 'not available'
    else:
        psi_text = 'some %s<br>full %s <span class="muted">(avg10)</span>' % (
            _e(rt.percent(psi['some_avg10_percent'], 2)), _e(rt.percent(psi['full_avg10_percent'], 2)))
    victim = basics['next_victim']
    victim_text = None
    if victim:
        victim_text = '<code>%s</code> (pid %s)<br><span class="muted">oom_score %s, RSS %s</span>' % (
            _e(victim['comm'] or 'unknown'), _e(rt.value_text(victim['pid'])),
            _e(rt.value_text(victim['oom_score']) if victim['oom_score'] is not None else 'unknown'), _e(rt.size_kb(victim['rss_kb'])))
    mode = basics['cgroup_mode']
    cgroup = None
    if mode:
        cgroup = _e(mode) + (' <span class="muted">(memory v%d)</span>' % basics['memory_controller']
                             if basics['memory_controller'] else '')
    cells = [('kernel', _e(basics['kernel_release']) if basics['kernel_release'] else None, basics['kernel_release'] or ''),
             ('memory', memory, total if total is not None else -1),
             ('swap', swap, basics['swap_total_kb'] if basics['swap_total_kb'] is not None else -1),
             ('cgroup', cgroup, mode or ''),
             ('psi', psi_text, psi['full_avg10_percent'] if psi and psi['full_avg10_percent'] is not None else -1),
             ('victim', victim_text, victim['comm'] or '' if victim else '')]
    return ''.join('<td class="basic basic-%s" data-sort="%s">%s</td>' % (key, _e(sort), _unknown(html)) for key, html, sort in cells)


def _host_details(host):
    blocks = []
    if host['message']:
        blocks.append('<p>%s</p>' % _e(host['message']))
    if host['malformed']:
        blocks.append('<b>What is wrong with the result</b><ul class="tight">%s</ul>' % ''.join(
            '<li>%s</li>' % _e(problem) for problem in host['malformed']))
    if host['findings']:
        blocks.append('<b>Findings</b><ul class="tight">%s</ul>' % ''.join(
            '<li><span class="sev sev-%s"></span>%s <code>%s</code> %s<br><span class="muted">%s</span></li>' % (
                _e(f['severity']), _e(f['severity']), _e(f['id']), _e(f['title']), _e(f['advice'])) for f in host['findings']))
    tightest = (host['basics'] or {}).get('tightest_domain')
    if tightest:
        victim = tightest['next_victim']
        blocks.append('<b>Tightest OOM domain</b><p>%s <code>%s</code>: %s headroom of %s%s; next victim %s</p>' % (
            _e(tightest['kind']), _e(rt.cut_middle(fleet.domain_where(tightest), 80)),
            _e(rt.size_kb(tightest['headroom_kb'])), _e(rt.size_kb(tightest['limit_kb'])),
            (', full in about %s at its present growth' % _e(rt.seconds(tightest['time_to_oom_s'])))
            if tightest['time_to_oom_s'] is not None else '',
            ('<code>%s</code> (pid %s)' % (_e(victim['comm'] or 'unknown'), _e(rt.value_text(victim['pid']))))
            if victim else 'nobody the OOM killer may kill'))
    drift = host['drift']
    if drift and drift['rows']:
        blocks.append('<b>Drift from the policy</b><ul class="tight">%s</ul>' % ''.join(
            '<li>%s <code>%s</code> %s: want <code>%s</code>, have <code>%s</code>%s</li>' % (
                _e(r['status']), _e(rt.cut_middle(r['item'] or '', 80)), _e(r['setting']), _e(rt.value_text(r['desired'])),
                _e(rt.value_text(r['live'])), (' <span class="muted">(%s)</span>' % _e(r['note'])) if r['note'] else '')
            for r in drift['rows']))
    slab = host['slab']
    if slab and slab['flagged']:
        blocks.append('<b>Slab</b><ul class="tight">%s</ul>' % ''.join('<li>%s</li>' % _e(r) for r in slab['reasons']))
    events = host['events']
    if events and events['recent']:
        blocks.append('<b>Recent OOM kills</b><ul class="tight">%s</ul>' % ''.join(
            '<li>%s <code>%s</code> (pid %s) &mdash; %s</li>' % (
                _e(_when(k)), _e(k['victim'] or 'unknown'), _e(rt.value_text(k['pid'])), _e(k['cause'] or 'unknown cause'))
            for k in events['recent']))
    if not blocks:
        return '<span class="muted">nothing to report</span>'
    return '<details><summary>details</summary>%s</details>' % ''.join(blocks)


def _when(kill):
    if kill['timestamp']:
        return kill['timestamp']
    if kill['uptime_s'] is not None:
        return '%s after boot' % rt.seconds(kill['uptime_s'])
    return 'unknown time'


def _host_row(host):
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
        slab_text = '%s (SUnreclaim %s of RAM)' % (_e(slab['verdict'] or 'unknown'), _e(rt.percent(slab['sunreclaim_percent'], 2)))
    return ''.join([
        '<tr data-level="%s" data-status="%s">' % (_e(level or ''), _e(host['status'])),
        '<td><b>%s</b></td>' % _e(host['name']),
        '<td data-sort="%s">%s</td>' % (_e(host['status']), _badge(fleet.STATUS_LABELS[host['status']],
                                                                   STATUS_COLOURS.get(host['status'], '#777'))),
        '<td data-sort="%s">%s %s</td>' % (host['risk_score'] if host['risk_score'] is not None else -1,
                                           _e(rt.value_text(host['risk_score']) if host['risk_score'] is not None else '-'),
                                           _badge(level, LEVEL_COLOURS.get(level)) if level else ''),
        '<td data-sort="%d">%s</td>' % (sum(host['findings_by_severity'].values()), _severity_counts(host['findings_by_severity'])),
        _basics_cells(host['basics']),
        '<td data-sort="%s">%s</td>' % (drift_count if drift_count is not None else -1, drift_text),
        '<td data-sort="%s">%s</td>' % (slab['sunreclaim_percent'] if slab and slab['sunreclaim_percent'] is not None else -1,
                                        slab_text),
        '<td data-sort="%s">%s</td>' % (kills if kills is not None else -1, '-' if kills is None else kills),
        '<td class="top">%s</td>' % _e(top),
        '<td>%s</td>' % _host_details(host),
        '</tr>'])


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
        '<section><h2>Hosts</h2>',
        '<div class="controls"><input id="filter-text" type="search" placeholder="filter: host, finding, cause" aria-label="filter">',
        '<select id="filter-level" aria-label="risk level"><option value="">any risk</option>%s</select>' % ''.join(
            '<option value="%s">%s</option>' % (level, level) for level in fleet.LEVELS),
        '<select id="filter-status" aria-label="status"><option value="">any status</option>%s</select>' % ''.join(
            '<option value="%s">%s</option>' % (status, fleet.STATUS_LABELS[status]) for status in fleet.STATUSES),
        '<span id="filter-count" class="muted"></span></div>',
        _legend(),
        '<div class="scroll"><table id="hosts" class="sortable"><thead><tr><th data-type="text">Host</th><th data-type="text">Status</th>'
        '<th data-type="number">Risk</th><th data-type="number">Findings by severity</th>'
        '<th data-type="text">Kernel</th><th data-type="number">Memory</th><th data-type="number">Swap</th>'
        '<th data-type="text">cgroup</th><th data-type="number">Memory PSI</th><th data-type="text">Who dies next</th>'
        '<th data-type="number">Drift</th>'
        '<th data-type="number">Slab</th><th data-type="number">OOM kills</th><th>Top finding</th><th></th></tr></thead><tbody>',
    ]
    lines.extend(_host_row(host) for host in hosts)
    lines.append('</tbody></table></div></section>')
    kills = [(host['name'], kill) for host in hosts if host['events'] for kill in host['events']['recent']]
    kills.sort(key=lambda hk: hk[1]['timestamp'] or '', reverse=True)
    lines.append('<section><h2>Recent OOM kills and their causes</h2>')
    if kills:
        lines.append('<table class="sortable"><thead><tr><th data-type="text">Host</th><th data-type="text">When</th>'
                     '<th data-type="text">Victim</th><th data-type="text">Cause</th><th data-type="text">cgroup</th>'
                     '</tr></thead><tbody>')
        advice = {}
        for name, kill in kills[:200]:
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
            for h in down))
    else:
        lines.append('<p class="muted">Every host answered.</p>')
    lines.append('</section></main><script>%s</script></body></html>\n' % SCRIPT)
    return '\n'.join(lines)
