"""The report page: one HTML string with its CSS, its sort script and its pictures inline, so it
opens from anywhere with no network (no CDN, no external file)."""

from __future__ import annotations

import html
import math
import time
from typing import Any, Iterable, Sequence

from ..overlay import label_colour
from .collect import CaseRow, ModelSummary, natural_key

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1f3b5a;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px;word-break:break-all}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px}
table{border-collapse:collapse;font-size:13px}th,td{padding:4px 10px;border-bottom:1px solid #e6e9ee;text-align:right}
th:first-child,td:first-child,td.text{text-align:left}
table.sortable th{cursor:pointer;user-select:none;background:#eef2f7}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #dde1e7;border-radius:8px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:22px}.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px}
img{max-width:100%;height:auto}.bad{color:#b3261e;font-weight:600}.muted{color:#6b7280}
figure{margin:10px 0}figcaption{font-size:12px;color:#4b5563}
"""

# Sorts a table's body by the clicked column: numbers by data-v (NaN last), text otherwise; click again to reverse.
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(r){var c = r.cells[col], v = c.getAttribute('data-v'); return v === null ? c.textContent : parseFloat(v);}
      rows.sort(function(a, b){
        var x = key(a), y = key(b);
        if (typeof x === 'number' && typeof y === 'number') {
          if (isNaN(x)) return isNaN(y) ? 0 : 1; if (isNaN(y)) return -1;
          return asc ? x - y : y - x;
        }
        return asc ? String(x).localeCompare(String(y), undefined, {numeric: true})
                   : String(y).localeCompare(String(x), undefined, {numeric: true});
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def num_cell(value: Any, digits: int = 4, css: str = "") -> str:
    v = float("nan") if value is None else float(value)
    cls = f' class="{css}"' if css else ""
    return f'<td data-v="{"NaN" if math.isnan(v) else repr(v)}"{cls}>{fmt(v, digits)}</td>'


def table(head: Sequence[str], rows: Iterable[Sequence[str]], sortable: bool = False, table_id: str = "") -> str:
    """``rows`` are lists of ready ``<td>`` strings."""
    attrs = (' class="sortable"' if sortable else "") + (f' id="{table_id}"' if table_id else "")
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<table{attrs}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def text_cell(value: Any) -> str:
    return f'<td class="text">{esc(value)}</td>'


def section(title: str, body: str, section_id: str) -> str:
    return f'<section id="{section_id}"><h2>{esc(title)}</h2>{body}</section>'


def _label_title(summary: ModelSummary, key: str) -> str:
    name = summary.label_names.get(key)
    return f"{name} ({key})" if name else key


def _swatch(key: str) -> str:
    try:
        value = int(key)
    except ValueError:  # a region: no single colour
        return ""
    if value == 0:
        return ""
    r, g, b = label_colour(value)
    return f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>'


def dataset_section(summary: ModelSummary) -> str:
    ds = summary.dataset_json
    labels = ", ".join(f"{_swatch(str(v)) if not isinstance(v, list) else ''}{esc(k)} = {esc(v)}"
                       for k, v in ds.get("labels", {}).items())
    rows = [("name", esc(summary.plans.get("dataset_name", ""))), ("description", esc(ds.get("name", ""))),
            ("channels", esc(", ".join(f"{k}: {v}" for k, v in ds.get("channel_names", ds.get("modality", {})).items()))),
            ("labels", labels), ("training cases", esc(ds.get("numTraining", "?"))), ("file ending", esc(ds.get("file_ending", "")))]
    fp = summary.fingerprint
    if fp:
        import numpy as np

        shapes = fp.get("shapes_after_crop") or []
        spacings = fp.get("spacings") or []
        if shapes:
            rows.append(("median shape after crop", esc(" × ".join(str(int(v)) for v in np.median(np.array(shapes), 0)))))
        if spacings:
            rows.append(("median spacing", esc(" × ".join(f"{v:.3g}" for v in np.median(np.array(spacings), 0)))))
    body = "".join(f'<tr><td class="text">{esc(k)}</td><td class="text">{v}</td></tr>' for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def plans_section(summary: ModelSummary, network_uri: str | None) -> str:
    from ..planning import resolve_configuration

    plans = summary.plans
    rows = []
    for name in plans.get("configurations", {}):
        try:
            cfg = resolve_configuration(plans, name, "plans.json")
        except Exception:
            continue
        arch = cfg.get("architecture", {})
        kwargs = arch.get("arch_kwargs", {})
        mark = " (this model)" if name == summary.configuration else ""
        rows.append([text_cell(name + mark), text_cell(" × ".join(map(str, cfg.get("patch_size", [])))),
                     text_cell(" × ".join(f"{s:.3g}" for s in cfg.get("spacing", []))), num_cell(cfg.get("batch_size"), 0),
                     num_cell(kwargs.get("n_stages"), 0), text_cell(arch.get("network_class_name", "").rsplit(".", 1)[-1])])
    out = (f'<p>plans <b>{esc(plans.get("plans_name", ""))}</b> by {esc(plans.get("experiment_planner_used", ""))}; '
           f'trainer <b>{esc(summary.trainer)}</b>, configuration <b>{esc(summary.configuration)}</b></p>')
    out += table(["configuration", "patch", "spacing", "batch", "stages", "network"], rows)
    if network_uri:
        out += f'<figure><img alt="network of {esc(summary.configuration)}" src="{network_uri}"><figcaption>' \
               f'The {esc(summary.configuration)} network: encoder (blue), decoder (green), skip connections ' \
               f'(dashed), deep-supervision heads (orange).</figcaption></figure>'
    return out


def training_section(summary: ModelSummary, curves: dict[str, str | None]) -> str:
    if not summary.logs:
        return '<p class="muted">No training log in this folder.</p>'
    rows = []
    for fold, log in summary.logs.items():
        epochs = log.get("epochs", [])
        last = epochs[-1] if epochs else {}
        ema = [e.get("ema_fg_dice") for e in epochs if e.get("ema_fg_dice") is not None]
        dbg = summary.debug.get(fold, {})
        rows.append([text_cell(fold), num_cell(len(epochs), 0), num_cell(last.get("train_loss")),
                     num_cell(last.get("val_loss")), num_cell(max(ema) if ema else None),
                     num_cell(sum(e.get("epoch_time_s") or 0 for e in epochs), 0),
                     text_cell(f'{dbg.get("device", "?")}, {dbg.get("precision", "?")}, batch {dbg.get("batch_size", "?")}')])
    out = table(["fold", "epochs", "last train loss", "last val loss", "best pseudo-Dice EMA", "training s", "device"], rows)
    for fold, uri in curves.items():
        if uri:
            out += f'<figure><img alt="training curves of fold {esc(fold)}" src="{uri}"></figure>'
    return out


def validation_section(summary: ModelSummary) -> str:
    if not summary.cases:
        return '<p class="muted">No validation summary (fold_X/validation/summary.json) yet.</p>'
    keys, metrics = summary.label_keys, summary.metric_columns
    cards = []
    for key in keys:
        dice = [row.metrics.get(key, {}).get("Dice") for row in summary.cases]
        values = [v for v in dice if v is not None and not math.isnan(v)]
        mean = sum(values) / len(values) if values else float("nan")
        cards.append(f'<div class="card">{_swatch(key)}{esc(_label_title(summary, key))}<b>{fmt(mean, 3)}</b>'
                     f'<span class="muted">mean Dice, {len(values)} cases</span></div>')
    head = ["fold", "case", "mean Dice"] + [f"{m} {_label_title(summary, k)}" for k in keys for m in metrics]
    rows = []
    for row in sorted(summary.cases, key=lambda r: (natural_key(r.fold), natural_key(r.case))):
        cells = [text_cell(row.fold), text_cell(row.case), num_cell(row.mean_dice())]
        for k in keys:
            for m in metrics:
                v = row.metrics.get(k, {}).get(m)
                cells.append(num_cell(v, 4 if m in ("Dice", "IoU", "NSD") else 2,
                                      "bad" if m == "Dice" and v is not None and v < 0.5 else ""))
        rows.append(cells)
    return (f'<div class="cards">{"".join(cards)}</div><p class="muted">Click a column header to sort '
            f'(again to reverse). Dice below 0.5 in red.</p>' + table(head, rows, sortable=True, table_id="cases"))


def worst_section(worst: list[tuple[CaseRow, str | None, int | None, str | None]]) -> str:
    if not worst:
        return '<p class="muted">No validation cases to show.</p>'
    out = "<p>Per case: image, image + reference, image + prediction, at the slice where they disagree most.</p>"
    for row, uri, z, problem in worst:
        caption = f"fold {esc(row.fold)}, {esc(row.case)}: mean Dice {fmt(row.mean_dice())}"
        if uri:
            out += f'<figure><img alt="{esc(row.case)}" src="{uri}"><figcaption>{caption}, slice {z}</figcaption></figure>'
        else:
            out += f'<p>{caption}: <span class="muted">{esc(problem)}</span></p>'
    return out


def stages_section(summary: ModelSummary) -> str:
    if not summary.stages:
        return '<p class="muted">No timings recorded.</p>'
    rows = [[text_cell(s.name), num_cell(s.seconds, 1), num_cell(s.peak_rss_mib, 0), num_cell(s.worker_peak_rss_mib, 0)]
            for s in summary.stages]
    return (table(["stage", "seconds", "peak memory so far (MiB)", "largest worker so far (MiB)"], rows)
            + '<p class="muted">Memory: the peak resident size of the process, and of its largest finished worker '
              'process, up to the end of the stage (peaks only grow: a stage that needs more shows a step).</p>')


def render_page(summary: ModelSummary, *, network_uri: str | None, curves: dict[str, str | None],
                worst: list, title: str | None = None) -> str:
    name = summary.plans.get("dataset_name", summary.folder.parent.name)
    title = title or f"oxunet report: {name}, {summary.folder.name}"
    parts = [
        section("Validation per case", validation_section(summary), "validation"),
        section("Worst cases", worst_section(worst), "worst"),
        section("Training", training_section(summary, curves), "training"),
        section("Dataset", dataset_section(summary), "dataset"),
        section("Plans and network", plans_section(summary, network_uri), "plans"),
        section("Time and memory per stage", stages_section(summary), "stages"),
    ]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
            f'<header><h1>{esc(title)}</h1><p>{esc(summary.folder)} · written {esc(time.strftime("%Y-%m-%d %H:%M"))}'
            f'</p></header><main>{"".join(parts)}</main><script>{SORT_JS}</script></body></html>')
