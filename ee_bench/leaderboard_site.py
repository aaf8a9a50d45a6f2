"""``ee-bench leaderboard --html DIR``: the leaderboard as a self-contained static site.

No server, no CDN, no external request: ``DIR/index.html`` holds the overview (one row per model × task
family, :mod:`ee_bench.leaderboard_overview`), one section per task (its trade-off plot and its full
table, each row with its exit-layer strip and a ``<details>`` holding the less-used numbers, links and
figures), filters by model, gate and task, and sorting by any column (page:
:mod:`ee_bench.leaderboard_page`). Next to it:

- ``data/…``: a copy of every results JSON and its samples JSONL (same relative layout as under the
  scanned folder), so every row links to its own files and the folder can be moved or served as is;
- ``figures/…``: per task, the trade-off plot of every run over its threshold sweep; per run, the
  exit-layer strip of its row and the oracle exit-layer histogram (from the samples file), the gate
  trade-off curve (layers run against gate accuracy, with bootstrap bars), quality against measured
  speed-up where it was measured, and any analysis figure the results file lists in its ``figures``
  field (paths relative to the results file, inside its folder; copied as they are).

The page is rendered by jinja2's sandboxed environment with autoescaping: names and values come
from results files, which may come from anyone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ee_bench import leaderboard_figures as figs
from ee_bench.errors import EEBenchError
from ee_bench.files import atomic_write, safe_name
from ee_bench.leaderboard import (
    MIN_DOCS,
    SITE_MARKER,
    collect,
    columns,
    group_by_task,
    predicted_cell,
)
from ee_bench.leaderboard_fields import (
    fmt_speedup,
    half_width,
    predicted_at_threshold,
    predicted_ceiling,
    predicted_profile,
    predicted_sweep,
    row_is_degenerate,
    row_is_preview,
)
from ee_bench.leaderboard_overview import (
    OVERVIEW_HEADERS,
    OverviewRow,
    distance_text,
    docs_text,
    gate_text,
    overview_rows,
    perc_text,
)
from ee_bench.leaderboard_page import PAGE_JS, TEMPLATE
from ee_bench.preflight import check_output_folder, path_inside
from ee_bench.samples_file import read_samples, samples_path
from ee_bench.speedup_verdict import result_verdicts

FIGURE_SUFFIXES = (".png", ".svg")


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _site_names(items: list[tuple[dict[str, Any], Path]], dirs: list[Path]) -> list[str]:
    """For each results file, its path relative to the scanned folder it was found in (prefixed by
    the folder's index when several folders are scanned): where its copy goes under ``data/``."""
    roots = [Path(d).resolve() for d in dirs]
    out = []
    for _, path in items:
        p = path.resolve()
        k = next(i for i, r in enumerate(roots) if p.is_relative_to(r))
        rel = _rel(p, roots[k])
        out.append(rel if len(roots) == 1 else f"{k}/{rel}")
    return out


def check_site_folder(out_dir: Path) -> None:
    """Refuse a site folder that cannot hold the site; writes nothing.

    Raises:
        EEBenchError: ``out_dir`` is a file, lies under a file, cannot be written, or is a non-empty
            folder that ``ee-bench leaderboard --html`` did not write (its files would be mixed with
            the site's, and a rerun clears the site's ``data/`` and ``figures/``).
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir, option="--html")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / SITE_MARKER).exists():
        raise EEBenchError(f"--html {out_dir} is a non-empty folder that ee-bench did not write; give a new or empty "
                           f"folder (e.g. runs/site), or one an earlier `ee-bench leaderboard --html` wrote.")


def _analysis_figures(res: dict[str, Any], res_path: Path) -> tuple[list[Path], list[str]]:
    """The results file's ``figures`` entries that exist inside its folder (and notes for the rest)."""
    found, notes = [], []
    for entry in res.get("figures") or []:
        p = path_inside(res_path.parent, str(entry))
        if p is None or p.suffix.lower() not in FIGURE_SUFFIXES:
            notes.append(f"figure {entry!s} skipped: not a PNG/SVG inside the results folder")
        elif not p.is_file():
            notes.append(f"figure {entry!s} listed in the results file was not found")
        else:
            found.append(p)
    return found, notes


def _run_figures(res: dict[str, Any], res_path: Path, site: Path, name: str) -> tuple[list[dict], list[str], dict | None]:
    """Write (or copy) one run's figures under ``site/figures``.

    Returns:
        [{src, caption}] of the figures for the row's details, notes (what could not be drawn and why),
        and the row's exit-layer strip ({src, full}) or None without per-token samples.
    """
    stem = name.removesuffix(".json")
    out_dir = site / "figures"
    title = f"{res['model']} · {res['task']} · {res['gate']} τ={res['threshold']:g}"
    made, notes, thumb = [], [], None
    samples = samples_path(res, res_path)
    n_layers = res["oracle"]["first_match"]["n_layers"]
    if samples is not None:
        try:
            rows = read_samples(samples)
            fm = [int(x) for r in rows for x in r.get("oracle_first_match", [])]
            sat = [int(x) for r in rows for x in r.get("oracle_saturation", [])]
            shares = figs.layer_shares(fm, n_layers) if fm else None
        except (EEBenchError, AttributeError, TypeError, ValueError) as exc:  # a damaged or foreign samples file
            fm, sat, shares = [], [], None
            notes.append(f"samples file {samples.name} unreadable ({exc}): no exit-layer histogram")
        if fm:
            full = figs.exit_histogram(fm, sat, n_layers, title, out_dir / f"{stem}_exit_hist.png")
            made.append((full, "oracle exit-layer histogram"))
            strip = figs.exit_thumbnail(shares, out_dir / f"{stem}_exit_strip.png")
            thumb = {"src": _rel(strip, site), "full": _rel(full, site)}
    else:
        notes.append("no samples file next to the results: no exit-layer histogram")
    if res.get("gate_sweep"):
        p = figs.gate_tradeoff(res["gate_sweep"], (res.get("intervals") or {}).get("gate_sweep"), res["threshold"],
                               title, out_dir / f"{stem}_gate_tradeoff.png")
        made.append((p, "gate trade-off over the threshold sweep"))
    if isinstance(res.get("measured_speedup"), dict):
        p = figs.quality_vs_speedup(res["measured_speedup"], title, out_dir / f"{stem}_quality_speedup.png")
        if p is not None:
            made.append((p, "quality against measured speed-up"))
    extra, extra_notes = _analysis_figures(res, res_path)
    notes += extra_notes
    for src in extra:
        dst = out_dir / f"{stem}_analysis" / safe_name(src.name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        made.append((dst, f"analysis: {src.name}"))
    return [{"src": _rel(p, site), "caption": c} for p, c in made], notes, thumb


def _measured_site_cell(res: dict[str, Any]) -> dict:
    """The measured-speed-up cell: per setting ``copy 1.93×`` on its own line (⚠ where not headlined), the
    same verdicts as the markdown (``speedup_verdict``); it sorts on the best headlined speed-up only
    (flagged settings never rank), and is marked ``flagged`` (with the reasons as its title) when any
    setting failed the quality floor or the length limit. The full verdicts are in the row's details."""
    value = res.get("measured_speedup")
    if not isinstance(value, dict):
        text = "n/a" if value is None else fmt_speedup(float(value))
        return {"v": "" if value is None else repr(float(value)), "text": text, "cls": ""}
    verdicts = result_verdicts(res)
    kept = [v.speedup for v in verdicts if v.headlined]
    flagged = [v for v in verdicts if v.flags]
    lines = [f"{v.setting} {fmt_speedup(v.speedup)}" + ("" if v.headlined else " ⚠") for v in verdicts]
    return {"v": repr(max(kept)) if kept else "", "text": lines[0] if lines else "n/a",
            "sub": " · ".join(lines[1:]), "cls": "flagged" if flagged else ("headline" if kept else ""),
            "title": "; ".join(f"{v.setting}: {', '.join(v.flags)}" for v in flagged)}


def _num_cell(value: float | None, interval: dict[str, Any] | None, digits: int, cls: str = "",
              n_docs: int | None = None) -> dict:
    """A numeric cell: the value, ``± half-width`` under it (``n/a`` for a run on one document, where a
    bootstrap over documents measures nothing), the exact bounds as its tooltip."""
    if value is None:
        return {"v": "", "text": "n/a", "cls": cls}
    cell = {"v": repr(float(value)), "text": f"{value:.{digits}f}", "cls": cls}
    if interval:
        cell["pm"] = "n/a" if n_docs is not None and n_docs < 2 else f"{half_width(interval):.{digits}f}"
        cell["title"] = (f"95 % interval [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}], "
                         f"{interval.get('n_resamples', '?')} resamples")
    return cell


def _folded(res: dict[str, Any], cols: list) -> tuple[str, list[str], list[str]]:
    """The row's details: its summary line, the folded numbers (saturation, signed distance, every
    interval's exact bounds, the predicted sweep) and the measured verdicts in full."""
    sat, signed = res["oracle"]["saturation"].get("avg"), res["gate_at_threshold"].get("signed_distance")
    summary = (f"saturation avg {'n/a' if sat is None else f'{sat:.2f}'} · signed distance "
               f"{'n/a' if signed is None else f'{signed:+.2f}'} · intervals · files · figures")
    ivs = res.get("intervals") or {}
    numbers = []
    for label, value, iv, digits in (
            ("saturation avg", sat, ((ivs.get("oracle") or {}).get("saturation") or {}).get("avg"), 2),
            ("signed distance", signed, (ivs.get("gate_at_threshold") or {}).get("signed_distance"), 2),
            *((c.label, c.value(res), c.interval(res), c.digits) for c in cols if c.label != "saturation avg")):
        if value is None:
            continue
        bounds = f" [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]" if isinstance(iv, dict) and "low" in iv else ""
        numbers.append(f"{label}: {value:.{digits}f}{bounds}")
    numbers.append(f"predicted: {predicted_cell(res)}")
    if predicted_profile(res):
        numbers.append(f"predicted with the {predicted_profile(res)}")
    sweep = predicted_sweep(res)
    if sweep:
        numbers.append("predicted over the sweep: " + ", ".join(f"τ={t:g} {x:.2f}×" for t, x in sorted(sweep.items())))
    return summary, numbers, [v.text() for v in result_verdicts(res)]


def _table(task: str, rows: list[tuple[dict[str, Any], Path | None]], per_run: dict[int, dict]) -> dict:
    cols = [c for c in columns([r for r, _ in rows]) if c.label != "saturation avg"]  # folded into the details
    headers = [{"label": "model", "dir": "text", "title": "sort by name"},
               {"label": "gate", "dir": "text", "title": "sort by name"},
               {"label": "τ", "dir": "none", "title": "threshold"}]
    for c in cols:
        d = "none" if c.higher_is_better is None else ("higher" if c.higher_is_better else "lower")
        headers.append({"label": c.label, "dir": d, "title": f"{d} is better" if d != "none" else ""})
    headers += [{"label": "predicted ×/token", "dir": "higher",
                 "title": "cost model's per-token speed-up at τ (ceiling: in the row's details)"},
                {"label": "measured speed-up", "dir": "higher",
                 "title": "higher is better (best headlined setting; flagged ones do not sort)"},
                {"label": "docs", "dir": "higher", "title": f"documents evaluated / total; preview under {MIN_DOCS}"},
                {"label": "exit layers", "dir": "none", "title": "first-match exit layer histogram (click: full)"}]
    ranked = [r for r, p in rows if not (row_is_preview(r) or row_is_degenerate((r, p)))]
    best = {}
    for c in cols:
        vals = [c.value(r) for r in ranked if c.value(r) is not None]
        if vals and c.higher_is_better is not None:
            best[c.label] = max(vals) if c.higher_is_better else min(vals)
    out_rows = []
    for res, path in rows:
        degenerate = row_is_degenerate((res, path))
        preview = row_is_preview(res) or degenerate  # both follow the ranked rows, unranked
        cells = [{"v": res["model"], "text": res["model"] + (" (degenerate)" if degenerate else ""), "cls": "name"},
                 {"v": res["gate"], "text": res["gate"], "cls": "text"},
                 {"v": res["threshold"], "text": f"{res['threshold']:g}", "cls": ""}]
        for c in cols:
            v = c.value(res)
            cls = "best" if (not preview and v is not None and best.get(c.label) == v) else ""
            cells.append(_num_cell(v, c.interval(res), c.digits, cls, res["n_docs"]["evaluated"]))
        at = predicted_at_threshold(res)
        cells.append({"v": "" if at is None else repr(at), "text": fmt_speedup(at), "cls": "",
                      "title": f"ceiling {fmt_speedup(predicted_ceiling(res))}"})
        cells.append(_measured_site_cell(res))
        n = res["n_docs"]
        badge = "degenerate" if degenerate else ("preview" if preview else "")
        cells.append({"v": n["evaluated"], "text": f"{n['evaluated']}/{n['total']}", "cls": "", "badge": badge})
        run = per_run.get(id(res), {})
        summary, numbers, verdicts = _folded(res, columns([r for r, _ in rows]))
        out_rows.append({"preview": preview, "cells": cells, "model": res["model"], "gate": res["gate"],
                         "thumb": run.get("thumb"), "summary": summary, "numbers": numbers, "verdicts": verdicts,
                         "pairs": ", ".join(res.get("pairs", [])), "links": run.get("links", []),
                         "figures": run.get("figures", []), "notes": run.get("notes", [])})
    return {"task": task, "id": safe_name(task), "headers": headers, "rows": out_rows}


def _tradeoff_plot(task: str, rows: list[tuple[dict[str, Any], Path | None]], site: Path) -> dict | None:
    """The task's trade-off plot (every run over its threshold sweep, measured points apart), or None
    when no run has a sweep or a measured point."""
    series = []
    for res, path in rows:
        sweep = [s for s in res.get("gate_sweep") or []
                 if s.get("implied_speedup") is not None and s.get("accuracy") is not None]
        acc = {float(s["threshold"]): s["accuracy"] for s in sweep}
        predicted = tuple((x, acc[t], t) for t, x in predicted_sweep(res).items() if t in acc)
        measured = tuple((v.speedup, 100 * v.quality_ratio, v.setting, v.headlined) for v in result_verdicts(res)
                         if v.speedup is not None and v.quality_ratio is not None)
        if not sweep and not measured:
            continue
        degenerate = row_is_degenerate((res, path))
        status = " degenerate" if degenerate else (" preview" if row_is_preview(res) else "")
        series.append(figs.TradeoffSeries(
            label=f"{res['model']} · {res['gate']} ({res['n_docs']['evaluated']} docs{status})",
            implied=tuple((s["implied_speedup"], s["accuracy"], float(s["threshold"])) for s in sweep),
            predicted=predicted, measured=measured, chosen=float(res["threshold"]), ceiling=predicted_ceiling(res),
            faded=bool(status)))
    if not series:
        return None
    path = figs.task_tradeoff(series, f"{task}: quality kept against speed-up",
                              site / "figures" / "tasks" / f"{safe_name(task)}_tradeoff.png")
    w, h = (round(x * figs.DPI) for x in figs.TRADEOFF)
    return {"src": _rel(path, site), "width": w, "height": h, "alt": f"{task}: quality kept against speed-up",
            "caption": "Per run, the gate's threshold sweep: quality kept (gate accuracy, % of tokens whose prediction "
                       "at the exit layer is the full-depth token) against implied speed-up (solid, L / layers run) "
                       "and predicted speed-up (dashed, cost model, where the results have it); the row's threshold "
                       "ringed; stars: measured early exit (quality: metric ratio to full depth; hollow: not "
                       "headlined); dotted: predicted ceiling; square: full depth."}


def _overview(rows: list[OverviewRow]) -> dict:
    dirs = ("text", "text", "none", "lower", "higher", "text", "lower", "higher", "higher", "higher", "higher")
    titles = ("sort by name", "sort by name; click a task for its full table",
              "the task's first metric (± half the 95 % interval)",
              "first-match average exit layer over L; sorts by avg / L (lower: earlier exit)",
              "% of tokens whose first-match layer is below L−1", "sort by name",
              "mean |gate exit − first-match| in layers (lower: nearer the oracle)",
              "cost model's per-token speed-up at τ", "cost model's per-token speed-up, every token at its oracle exit",
              "best headlined measured speed-up (⚠: not headlined; tooltip: why)", "documents evaluated / total")
    headers = [{"label": h, "dir": d, "title": t} for h, d, t in zip(OVERVIEW_HEADERS, dirs, titles)]
    out = []
    for r in rows:
        q, q_iv = r.quality()
        fm, fm_iv = r.stat("oracle.first_match", "avg")
        perc, _ = r.stat("oracle.first_match", "perc")
        dist, dist_iv = r.stat("gate_at_threshold", "abs_distance")
        n_eval = r.res["n_docs"]["evaluated"]
        quality = _num_cell(q, q_iv, 2, n_docs=n_eval)
        quality["text"] = f"{r.quality_metric} {quality['text']}" if r.quality_metric else "n/a"
        quality["cls"] = "text"
        fm_cell = _num_cell(fm, fm_iv, 2, n_docs=n_eval)
        fm_cell["v"] = "" if fm is None or not r.n_layers else repr(fm / r.n_layers)
        if fm is not None:
            fm_cell["text"] = f"{fm:.2f} / {r.n_layers}"
        m = r.measured
        measured = {"v": "", "text": "n/a", "cls": ""}
        if m is not None:
            measured = {"v": repr(m.speedup) if m.headlined else "", "text": m.text().removesuffix(f" ({m.source})"),
                        "sub": f"from {m.source}" if m.source else "", "cls": "headline" if m.headlined else "flagged",
                        "title": "; ".join(m.flags)}
        n = r.res["n_docs"]
        cells = [{"v": r.model, "text": r.model, "cls": "name"},
                 {"v": r.task_label, "text": r.task_label, "cls": "text", "href": f"#task-{safe_name(r.task)}"},
                 quality, fm_cell, {"v": "" if perc is None else repr(perc), "text": perc_text(r), "cls": ""},
                 {"v": gate_text(r), "text": gate_text(r), "cls": "text"},
                 {**_num_cell(dist, dist_iv, 2, n_docs=n_eval), "text": distance_text(r).split(" ± ")[0]},
                 {"v": "" if r.predicted is None else repr(r.predicted), "text": fmt_speedup(r.predicted), "cls": ""},
                 {"v": "" if r.ceiling is None else repr(r.ceiling), "text": fmt_speedup(r.ceiling), "cls": ""},
                 measured,
                 {"v": n["evaluated"], "text": f"{n['evaluated']}/{n['total']}", "cls": "",
                  "badge": docs_text(r).split(" ", 1)[1] if " " in docs_text(r) else ""}]
        out.append({"model": r.model, "gate": r.res["gate"], "tasks": " ".join(safe_name(t) for t in r.tasks),
                    "preview": r.preview or r.degenerate, "cells": cells})
    return {"headers": headers, "rows": out}


def write_site(dirs: list[Path], out_dir: Path, items: list[tuple[dict[str, Any], Path]] | None = None) -> Path:
    """Write the static site for every results file under ``dirs`` (or the given ``items``, as
    :func:`~ee_bench.leaderboard.collect` returns them) into ``out_dir``; returns index.html.

    Raises:
        EEBenchError: from :func:`check_site_folder`, or when there is no usable results file.
    """
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    out_dir = Path(out_dir)
    check_site_folder(out_dir)
    items = collect(dirs, exclude=[out_dir]) if items is None else items
    if not items:
        raise EEBenchError(f"no usable results_*.json under {', '.join(map(str, dirs))}; run ee-bench with "
                           f"--output_path first (or fix the files the warnings name).")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SITE_MARKER).write_text("written by ee-bench leaderboard --html; rerunning it clears data/ and figures/\n")
    for sub in ("data", "figures"):  # a rerun leaves no file of an earlier run behind
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    per_run: dict[int, dict] = {}
    for (res, path), name in zip(items, _site_names(items, dirs)):
        dst = out_dir / "data" / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
        links = [{"href": _rel(dst, out_dir), "label": "results JSON"}]
        samples = samples_path(res, path)
        if samples is not None:
            shutil.copyfile(samples, dst.parent / samples.name)
            links.append({"href": _rel(dst.parent / samples.name, out_dir), "label": "samples JSONL"})
        figures, notes, thumb = _run_figures(res, path, out_dir, name)
        per_run[id(res)] = {"links": links, "figures": figures, "notes": notes, "thumb": thumb}
    by_task = group_by_task(items)
    tables = []
    for task, rows in by_task.items():
        table = _table(task, rows, per_run)
        table["plot"] = _tradeoff_plot(task, rows, out_dir)
        tables.append(table)
    env = ImmutableSandboxedEnvironment(autoescape=True)
    html = env.from_string(TEMPLATE).render(
        tables=tables, overview=_overview(overview_rows(by_task)), n_results=len(items), min_docs=MIN_DOCS,
        model_names=sorted({r["model"] for r, _ in items}), gate_names=sorted({r["gate"] for r, _ in items}),
        js=PAGE_JS)
    index = out_dir / "index.html"
    atomic_write(index, html)
    return index
