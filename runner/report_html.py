"""The report as one self-contained HTML page: nothing is fetched, every plot and diagram is inside the file.

The page shows the experiment (status, objective, trial counts), the best trial with its architecture text
and network diagram, the plots of report.py (objective per trial with the best so far, the Pareto front,
every trial's objective per report), and a table of every trial that sorts by any column (click its
header), with each trial's curve in its row. Clicking a trial opens its details: every metric (min, max,
latest), its assignments, a curve for each metric it reported more than once, and its network diagram.
Plots are PNG and diagrams SVG, both as data: URIs; the only script is the page's own sorting and opening.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from katib_nas.contract.codec import decode
from katib_nas.contract.errors import InvalidInput

from .metrics_collector import go_float
from .report import ReportInput, architecture_text, metric_value, series, train_command
from .status import Summary, objective_value
from .store import TrialRow

if TYPE_CHECKING:
    from katib_nas.contract.spec import Architecture

#: Longest text shown in a table cell; the whole text is in the cell's tooltip and the trial's details.
CELL_CHARS = 48
PLOTS = (("objective", "objective per trial"), ("pareto", "Pareto front"), ("curves", "every trial's curve"))

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2733;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#52606d}.note{color:#8a5a00}
code,.arch,pre.command{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
pre.command{white-space:pre-wrap;background:#f1f3f5;padding:6px 8px}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots figure{margin:0}.plots img{max-width:640px;width:100%}
figcaption{color:#52606d;font-size:12px}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #dde3ea;padding:4px 8px;text-align:left}
th{cursor:pointer;background:#f1f4f8;position:sticky;top:0;user-select:none;white-space:nowrap}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
tbody tr{cursor:pointer}tbody tr:hover{background:#f7f9fb}tr.best{background:#fff4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.arch{max-width:340px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.detail{border:1px solid #dde3ea;border-radius:6px;padding:12px 16px;margin-top:16px}
.curves{display:flex;flex-wrap:wrap;gap:16px}.diagram img{max-width:100%;max-height:560px}
td.name{white-space:nowrap}
"""

SCRIPT = """
(function () {
  const table = document.getElementById("trials");
  const body = table.tBodies[0];
  const number = text => (text !== "" && isFinite(Number(text))) ? Number(text) : null;
  function compare(a, b) {
    const x = number(a), y = number(b);
    if (x !== null && y !== null) return x - y;
    if (x !== null) return -1;
    if (y !== null) return 1;
    return a.localeCompare(b);
  }
  function sortBy(header) {
    const column = header.cellIndex;
    const direction = header.dataset.dir === "asc" ? "desc" : "asc";
    for (const other of table.tHead.rows[0].cells) delete other.dataset.dir;
    header.dataset.dir = direction;
    const key = row => row.cells[column].dataset.value ?? row.cells[column].textContent;
    const rows = Array.from(body.rows);
    rows.sort((a, b) => compare(key(a), key(b)) * (direction === "asc" ? 1 : -1));
    for (const row of rows) body.appendChild(row);
  }
  function open(name) {
    let shown = null;
    for (const detail of document.querySelectorAll(".detail")) {
      detail.hidden = detail.dataset.trial !== name;
      if (!detail.hidden) shown = detail;
    }
    if (shown) shown.scrollIntoView({block: "nearest"});
  }
  for (const header of table.tHead.rows[0].cells) header.addEventListener("click", () => sortBy(header));
  body.addEventListener("click", event => {
    const row = event.target.closest("tr");
    if (row) open(row.dataset.trial);
  });
})();
"""


def write_html(path: Path, spec: ReportInput, summary: Summary, files: dict[str, str]) -> Path:
    """Write report.html next to the report's other files (its plots are read from there and inlined)."""
    images = {key: _data_uri("image/png", (path.parent / files[key]).read_bytes())
              for key, _ in PLOTS if key in files}
    path.write_text(render(spec, summary, images, _diagrams(spec.trials)))
    return path


def render(spec: ReportInput, summary: Summary, images: dict[str, str], diagrams: dict[str, str]) -> str:
    """The page; `images` maps plot keys to data: URIs, `diagrams` architecture texts to SVG data: URIs."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(spec.name)}: katib-nas report</title><style>{STYLE}</style></head><body>",
             _header(spec, summary), _best(spec, summary, diagrams)]
    plots = [f'<figure><img alt="{esc(caption)}" src="{images[key]}"><figcaption>{esc(caption)}</figcaption>'
             "</figure>" for key, caption in PLOTS if key in images]
    if plots:
        parts += ["<h2>Plots</h2>", f'<div class="plots">{"".join(plots)}</div>']
    parts += [f"<h2>Trials ({len(spec.trials)})</h2>",
              '<p class="meta">Click a column header to sort, a trial to open its details.</p>',
              _table(spec, summary)]
    parts += [_detail(spec, trial, diagrams) for trial in spec.trials]
    parts += [f"<script>{SCRIPT}</script></body></html>"]
    return "\n".join(parts) + "\n"


def _header(spec: ReportInput, summary: Summary) -> str:
    esc = html.escape
    objective = spec.objective
    goal = f" (goal {objective.goal:g})" if objective.goal is not None else ""
    counts = ", ".join(f"{count} {condition.lower()}" for condition, count in sorted(summary.counts.items()))
    status = esc(spec.condition) + (f" ({esc(spec.reason)})" if spec.reason else "")
    lines = [f"<h1>{esc(spec.name)}</h1>",
             f'<p class="meta">{esc(spec.source)}</p>' if spec.source else "",
             f"<p>Algorithm <code>{esc(spec.algorithm)}</code>; objective: {esc(objective.type)} "
             f"<code>{esc(objective.metric)}</code>{esc(goal)}. Status: <b>{status}</b>. "
             f"Trials: {len(spec.trials)}{' (' + esc(counts) + ')' if counts else ''}.</p>"]
    lines += [f'<p class="note">{esc(note)}</p>' for note in spec.notes]
    return "\n".join(line for line in lines if line)


def _best(spec: ReportInput, summary: Summary, diagrams: dict[str, str]) -> str:
    esc = html.escape
    best = summary.best
    if best is None:
        return "<h2>Best trial</h2><p>No trial reported the objective yet.</p>"
    metrics = ", ".join(f"{esc(name)}={esc(metric_value(best, spec, name))}" for name in spec.objective.metric_names)
    text = architecture_text(best)
    parts = ["<h2>Best trial</h2>", f"<p><code>{esc(best.name)}</code>: {metrics}</p>"]
    if text:
        parts.append(f'<p class="arch">{esc(text)}</p>')
    if text in diagrams:
        parts.append(f'<div class="diagram"><img alt="network of {esc(best.name)}" src="{diagrams[text]}"></div>')
    if text:
        caption, command = train_command(decode(text), spec)
        parts += [f"<p>{esc(caption)}</p>", f'<pre class="command">{esc(command)}</pre>']
    return "\n".join(parts)


def _table(spec: ReportInput, summary: Summary) -> str:
    esc = html.escape
    metrics = spec.objective.metric_names
    headers = ["#", "trial", "condition", *metrics, "duration (s)", f"{spec.objective.metric} per report",
               "architecture"]
    rows = []
    for trial in spec.trials:
        best = summary.best is not None and trial.name == summary.best.name
        cells = [_cell(str(trial.seq), numeric=True), _cell(trial.name, css="name"), _cell(trial.condition)]
        cells += [_cell(metric_value(trial, spec, name), numeric=True) for name in metrics]
        duration = f"{trial.duration:.1f}" if trial.duration is not None else ""
        curve = series(spec.logs.get(trial.name, ()), spec.objective.metric)
        cells += [_cell(duration, numeric=True),
                  f'<td data-value="{len(curve)}">{sparkline(curve, 110, 26)}</td>',
                  _cell(architecture_text(trial), css="arch")]
        rows.append(f'<tr data-trial="{esc(trial.name)}"{" class=best" if best else ""}>{"".join(cells)}</tr>')
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f'<table id="trials"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _cell(text: str, numeric: bool = False, css: str = "") -> str:
    """A table cell: long text is cut (the whole of it in the tooltip); numbers sort by value."""
    esc = html.escape
    number = go_float(text) if numeric else None
    classes = " ".join(c for c in (css, "num" if number is not None else "") if c)
    shown = text if len(text) <= CELL_CHARS else text[:CELL_CHARS - 1] + "\u2026"
    attributes = f' class="{classes}"' if classes else ""
    if number is not None and math.isfinite(number):
        attributes += f' data-value="{number!r}"'
    if shown != text:
        attributes += f' title="{esc(text)}"'
    return f"<td{attributes}>{esc(shown)}</td>"


def _detail(spec: ReportInput, trial: TrialRow, diagrams: dict[str, str]) -> str:
    """A trial's hidden details panel: metrics, assignments, curves, diagram."""
    esc = html.escape
    logs = spec.logs.get(trial.name, [])
    rows = "".join(f"<tr><td>{esc(name)}</td><td>{esc(s.min)}</td><td>{esc(s.max)}</td>"
                   f'<td class="arch">{esc(s.latest)}</td></tr>' for name, s in trial.observation.items())
    assigned = "".join(f'<li><code>{esc(name)}</code>: <span class="arch">{esc(value)}</span></li>'
                       for name, value in sorted(trial.assignments.items()))
    names = list(dict.fromkeys(log.name for log in logs))
    curves = [(name, series(logs, name)) for name in names]
    charts = "".join(f"<figure>{sparkline(values, 280, 90, name)}<figcaption>{esc(name)} per report"
                     "</figcaption></figure>" for name, values in curves if len(values) > 1)
    text = architecture_text(trial)
    parts = [f'<section class="detail" data-trial="{esc(trial.name)}" hidden>',
             f"<h2>{esc(trial.name)}</h2>",
             f"<p>Condition <b>{esc(trial.condition)}</b>{(': ' + esc(trial.message)) if trial.message else ''}"
             f"; objective {esc(objective_value(trial, spec.objective))}.</p>"]
    if rows:
        parts.append(f"<table><thead><tr><th>metric</th><th>min</th><th>max</th><th>latest</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    if assigned:
        parts.append(f"<p>Assignments:</p><ul>{assigned}</ul>")
    if charts:
        parts.append(f'<div class="curves">{charts}</div>')
    if text in diagrams:
        parts.append(f'<div class="diagram"><img alt="network of {esc(trial.name)}" loading="lazy" '
                     f'src="{diagrams[text]}"></div>')
    parts.append("</section>")
    return "\n".join(parts)


def sparkline(values: Sequence[float], width: int, height: int, label: str = "") -> str:
    """A small inline SVG line of `values` (finite numbers) scaled to its own range; labelled with the range when
    `label` is given. An empty SVG for no values."""
    esc = html.escape
    if not values:
        return f'<svg width="{width}" height="{height}" role="img" aria-label="no values"></svg>'
    pad = 14 if label else 3
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    points = " ".join(f"{pad + i * step:.1f},{height - pad - (v - low) / span * (height - 2 * pad):.1f}"
                      for i, v in enumerate(values))
    marks = "".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="1.8" fill="#1d3557"/>'
                    for p in points.split()) if len(values) <= 40 else ""
    text = (f'<text x="2" y="10" font-size="9" fill="#52606d">{high:.4g}</text>'
            f'<text x="2" y="{height - 2}" font-size="9" fill="#52606d">{low:.4g}</text>') if label else ""
    title = f"<title>{esc(label or 'curve')}: {', '.join(f'{v:.4g}' for v in values)}</title>"
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">{title}{text}'
            f'<polyline fill="none" stroke="#1d3557" stroke-width="1.3" points="{points}"/>{marks}</svg>')


def _diagrams(trials: Sequence[TrialRow]) -> dict[str, str]:
    """Each distinct architecture's network diagram as an SVG data: URI (texts that do not decode get none)."""
    from katib_nas.contract.codec import decode

    found: dict[str, str] = {}
    for trial in trials:
        text = architecture_text(trial)
        if not text or text in found:
            continue
        try:
            arch = decode(text)
        except InvalidInput:
            continue
        found[text] = _data_uri("image/svg+xml", _svg(arch))
    return found


def _svg(arch: Architecture) -> bytes:
    import matplotlib
    import matplotlib.pyplot as plt

    from .diagram import figure

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: a fraction of the size of paths
        fig = figure(arch)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg")
        plt.close(fig)
    return buffer.getvalue()


def _data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
