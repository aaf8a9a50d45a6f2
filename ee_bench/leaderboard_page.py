"""The static site's page: one jinja2 template, its styles and its inline JavaScript (no library, no
network; works from ``file://``). :mod:`ee_bench.leaderboard_site` fills it.

Layout, top to bottom: a two-line lede, the filters (model, gate, task), the overview table (the first
table of the page), a folded "how to read" note, then one section per task: its trade-off plot and its
full table. Each run of a full table is one ``<tbody class="run">``: the row itself (with its
exit-layer strip) and a second row holding a ``<details>`` with the less-used numbers (saturation,
signed distance, every interval's exact bounds, the measured verdicts in full), the links to the
run's files, and its figures. Sorting moves whole ``tbody`` groups; previews stay below the ranked
rows. Tables fit a 1366 px window: intervals sit under their value, headers wrap, names break.
"""

from __future__ import annotations

PAGE_JS = """
(function () {
  function units(table) {
    var runs = table.querySelectorAll(':scope > tbody.run');
    return Array.prototype.slice.call(runs.length ? runs : table.tBodies[0].rows);
  }
  function cellsOf(u) { return u.tagName === 'TBODY' ? u.rows[0].cells : u.cells; }
  document.querySelectorAll('table.board').forEach(function (table) {
    table.querySelectorAll('th[data-dir]').forEach(function (th) {
      if (th.dataset.dir === 'none') return;
      th.addEventListener('click', function () {
        var col = th.cellIndex, dir = th.dataset.dir;
        var best = th.getAttribute('aria-sort') === null || th.dataset.order !== 'best';
        var sign = (dir === 'higher') === best ? -1 : 1;
        var list = units(table);
        list.sort(function (a, b) {
          var pa = a.dataset.preview === '1', pb = b.dataset.preview === '1';
          if (pa !== pb) return pa ? 1 : -1;
          var ca = cellsOf(a)[col].dataset.v, cb = cellsOf(b)[col].dataset.v;
          if (dir === 'text') return sign * ca.localeCompare(cb);
          var va = parseFloat(ca), vb = parseFloat(cb);
          if (isNaN(va) || isNaN(vb)) return isNaN(va) === isNaN(vb) ? 0 : (isNaN(va) ? 1 : -1);
          return sign * (va - vb);
        });
        list.forEach(function (u) { u.parentNode.appendChild(u); });
        table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.dataset.order = best ? 'best' : 'reversed';
        th.setAttribute('aria-sort', sign < 0 ? 'descending' : 'ascending');
      });
    });
  });
  var fm = document.getElementById('filter-model'), fg = document.getElementById('filter-gate'),
      ft = document.getElementById('filter-task'), count = document.getElementById('filter-count');
  function apply() {
    var m = fm.value, g = fg.value, t = ft.value;
    document.querySelectorAll('[data-model]').forEach(function (el) {
      el.hidden = !((!m || el.dataset.model === m) && (!g || el.dataset.gate === g) &&
                    (!t || el.dataset.tasks.split(' ').indexOf(t) >= 0));
    });
    document.querySelectorAll('section.task').forEach(function (s) {
      s.hidden = Boolean(t && s.dataset.task !== t) || !s.querySelector('tbody.run:not([hidden])');
    });
    var rows = document.querySelectorAll('#table-overview tbody tr');
    var shown = document.querySelectorAll('#table-overview tbody tr:not([hidden])').length;
    count.textContent = (m || g || t) ? shown + ' of ' + rows.length + ' overview rows shown' : '';
  }
  [fm, fg, ft].forEach(function (s) { s.addEventListener('change', apply); });
  apply();
})();
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ee-bench leaderboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:10px 18px;color:#222;font-size:14px}
h1{font-size:22px;margin:2px 0 4px} h2{font-size:17px;margin:22px 0 4px}
p.lede{margin:2px 0 6px;max-width:80em;line-height:1.35}
.filters{display:flex;gap:16px;align-items:center;flex-wrap:wrap;margin:4px 0 6px;padding:5px 8px;background:#f4f4f4;border-radius:4px;font-size:13px}
.filters select{max-width:20em}
#filter-count{color:#555}
table.board{border-collapse:collapse;margin:.2em 0 .8em;font-size:12.5px;max-width:100%}
th,td{border:1px solid #d8d8d8;padding:2px 5px;text-align:right;vertical-align:middle}
th{background:#f0f0f0;cursor:pointer;font-weight:600;white-space:normal;vertical-align:bottom;font-size:12px}
th[data-dir="none"]{cursor:default}
td{white-space:nowrap}
td.text{text-align:left} td.name{white-space:normal;overflow-wrap:anywhere;max-width:12em;text-align:left}
td.best{font-weight:bold;background:#e6f4e6}
td.flagged{color:#a33} td.headline{font-weight:bold}
span.pm{display:block;font-size:10.5px;color:#777;font-weight:normal}
tbody.run.preview td, tr.preview td{color:#888}
span.badge{display:block;font-size:10.5px;color:#7a4b00;font-weight:normal}
span.sub{display:block;font-size:10.5px;font-weight:normal}
tr.main td{border-bottom-color:#f0f0f0}
tr.more td{border-top:none;padding:0 5px 2px;text-align:left;font-size:11.5px;color:#555;white-space:normal}
tr.more summary{cursor:pointer;color:#666}
div.more-body{padding:3px 0 6px}
div.more-body ul{margin:2px 0 4px 1.2em;padding:0;columns:3;column-gap:2em}
div.more-body li{break-inside:avoid}
td.thumb{padding:1px 3px} img.thumb{display:block;width:150px;height:44px}
figure{display:inline-block;margin:0 1em .4em 0;vertical-align:top} figcaption{font-size:12px;max-width:62em;color:#444}
img.plot{max-width:100%;height:auto}
div.more-body img{max-width:100%;height:auto}
.note{max-width:80em;font-size:13px}
p.jump{font-size:13px;margin:4px 0} p.jump a{margin-right:.7em}
[hidden]{display:none !important}
</style></head><body>
<h1>ee-bench leaderboard</h1>
<p class="lede">{{ n_results }} runs, read in a minute: <b>which model exits earliest</b> (oracle avg / L: first-match, saturation on classification; lower
is earlier), <b>which gate comes nearest the oracle</b> (gate abs dist, layers) and <b>what speed that buys at what
quality</b> (predicted, ceiling and measured speed-up). One overview row per model and task family; each links to its
task below: a trade-off plot and the full table (click ▸ under a row for the rest). <a href="#how-to-read">How to read</a>.</p>
<div class="filters" role="search">
<label>model <select id="filter-model"><option value="">all</option>{% for m in model_names %}<option value="{{ m }}">{{ m }}</option>{% endfor %}</select></label>
<label>gate <select id="filter-gate"><option value="">all</option>{% for g in gate_names %}<option value="{{ g }}">{{ g }}</option>{% endfor %}</select></label>
<label>task <select id="filter-task"><option value="">all</option>{% for t in tables %}<option value="{{ t.id }}">{{ t.task }}</option>{% endfor %}</select></label>
<span id="filter-count"></span>
</div>
<h2 id="overview">Overview: one row per model × task family</h2>
<table class="board overview" id="table-overview"><thead><tr>
{% for h in overview.headers %}<th data-dir="{{ h.dir }}" title="{{ h.title }}">{{ h.label }}</th>{% endfor %}
</tr></thead><tbody>
{% for r in overview.rows %}<tr data-model="{{ r.model }}" data-gate="{{ r.gate }}" data-tasks="{{ r.tasks }}" data-preview="{{ '1' if r.preview else '0' }}"{% if r.preview %} class="preview"{% endif %}>
{% for c in r.cells %}<td data-v="{{ c.v }}" class="{{ c.cls }}"{% if c.title %} title="{{ c.title }}"{% endif %}>{% if c.href %}<a href="{{ c.href }}">{{ c.text }}</a>{% else %}{{ c.text }}{% endif %}{% if c.pm %}<span class="pm">± {{ c.pm }}</span>{% endif %}{% if c.sub %}<span class="sub">{{ c.sub }}</span>{% endif %}{% if c.badge %}<span class="badge">{{ c.badge }}</span>{% endif %}</td>{% endfor %}
</tr>
{% endfor %}</tbody></table>
<details id="how-to-read" class="note"><summary>How to read the tables</summary>
<p>Generated by <code>ee-bench leaderboard --html</code> from {{ n_results }} results files; do not edit by hand.
Quality metrics are computed on the final-layer outputs; oracle columns use the first-match exit layer (0-based, of
L layers). Under a value, <b>± b</b> is half the width of its seeded 95 % percentile-bootstrap interval over
documents (exact bounds: the cell's tooltip and the row's ▸ details). The overview shows, per model and task family
(WMT22: the average over the model's pairs, or its one pair), the run on the most documents and the gate with the
smallest absolute distance to the oracle; where that run has no measured speed-up, the model's measured run of the
same family is shown and named. <i>Implied</i> speed-up: L / mean layers run (layer count only). <i>Predicted</i>:
the cost model's per-token estimate at the threshold, and its <i>ceiling</i> with every token at its oracle exit
(n/a where the results predate it). <i>Measured</i>: tokens/s of real early-exit decoding over full depth, per KV
strategy, named with the τ it decoded at (a calibrated τ can differ from the row's) and its threshold warm-up W if
any (<code>recompute τ0.8 W8</code>); bold only where quality kept the run's floor and outputs grew at most 1.5× in tokens; ⚠ and red otherwise (tooltip:
why). Click a header to sort: first click best first in the column's direction (exit layers and distances: lower is
better), second reverses. <b>Bold</b> marks the best ranked value per column. Rows marked <i>preview</i> rest on
fewer than {{ min_docs }} documents (and not the whole test set), <i>degenerate</i> rows on near-constant
predictions: both stay below the ranked rows and are never marked best. The WMT22 average is the unweighted mean
over the listed pairs (paper Table 2). Trade-off plots: per run, the threshold sweep as quality kept (gate accuracy:
% of tokens whose exit-layer prediction is the full-depth token) against implied (solid) and predicted (dashed)
speed-up; stars are measured runs (quality: the metric's ratio to full depth).</p></details>
<p class="jump">Tasks: {% for t in tables %}<a href="#task-{{ t.id }}">{{ t.task }}</a>{% endfor %}</p>
{% for t in tables %}
<section class="task" id="task-{{ t.id }}" data-task="{{ t.id }}">
<h2>{{ t.task }}</h2>
{% if t.plot %}<figure><img class="plot" src="{{ t.plot.src }}" alt="{{ t.plot.alt }}" width="{{ t.plot.width }}" height="{{ t.plot.height }}"><figcaption>{{ t.plot.caption }}</figcaption></figure>{% endif %}
<table class="board full" id="table-{{ t.id }}"><thead><tr>
{% for h in t.headers %}<th data-dir="{{ h.dir }}" title="{{ h.title }}">{{ h.label }}</th>{% endfor %}
</tr></thead>
{% for r in t.rows %}<tbody class="run{% if r.preview %} preview{% endif %}" data-preview="{{ '1' if r.preview else '0' }}" data-model="{{ r.model }}" data-gate="{{ r.gate }}" data-tasks="{{ t.id }}">
<tr class="main">{% for c in r.cells %}<td data-v="{{ c.v }}" class="{{ c.cls }}"{% if c.title %} title="{{ c.title }}"{% endif %}>{{ c.text }}{% if c.pm %}<span class="pm">± {{ c.pm }}</span>{% endif %}{% if c.sub %}<span class="sub">{{ c.sub }}</span>{% endif %}{% if c.badge %}<span class="badge">{{ c.badge }}</span>{% endif %}</td>{% endfor %}
<td class="thumb" data-v="">{% if r.thumb %}<a href="{{ r.thumb.full }}"><img class="thumb" src="{{ r.thumb.src }}" alt="exit-layer histogram" title="first-match exit layer, % of output tokens per layer 0 … L−1 (click: full histogram)" width="150" height="44"></a>{% else %}<span title="no per-token samples for this row">–</span>{% endif %}</td></tr>
<tr class="more"><td colspan="{{ t.headers | length }}"><details><summary>{{ r.summary }}</summary><div class="more-body">
{% if r.pairs %}<div>pairs: {{ r.pairs }}</div>{% endif %}
<ul>{% for line in r.numbers %}<li>{{ line }}</li>{% endfor %}</ul>
{% for line in r.verdicts %}<div>measured {{ line }}</div>{% endfor %}
{% if r.links %}<div>files: {% for l in r.links %}<a href="{{ l.href }}">{{ l.label }}</a> {% endfor %}</div>{% endif %}
{% for f in r.figures %}<figure><img src="{{ f.src }}" alt="{{ f.caption }}"><figcaption>{{ f.caption }}</figcaption></figure>{% endfor %}
{% for n in r.notes %}<p class="note">{{ n }}</p>{% endfor %}
</div></details></td></tr>
</tbody>
{% endfor %}</table>
</section>
{% endfor %}
<script>{{ js | safe }}</script>
</body></html>
"""
