"""The overview that leads the leaderboard (markdown and site): one row per model × task family.

Families: WMT22 (a model's average over its pairs, or its one pair where it has a single one) and each
other task. A row shows the headline numbers only — quality, the first-match oracle (average over L and
perc), the gate nearest the oracle and its absolute distance, the predicted and ceiling speed-up, the
measured speed-up and the documents — and links to the task's full table, which keeps every number.

Which run a row shows: among the model's runs of the family (the WMT22 averages when the model has one),
ranked before preview before degenerate, then the run on the most documents, then the gate with the
smallest absolute distance to the oracle ("the best gate"), then gate name and threshold. Where that run
has no measured speed-up, the measured cell reports the model's measured run of the same family on the
most documents, and names its task and document count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ee_bench.leaderboard_fields import (
    WMT22_AVERAGE,
    WMT22_PREFIX,
    fmt_speedup,
    fmt_value,
    md_text,
    metric_direction,
    predicted_at_threshold,
    predicted_ceiling,
    row_is_degenerate,
    row_is_preview,
)
from ee_bench.speedup_verdict import result_verdicts

WMT22_FAMILY = "WMT22"

Item = tuple[dict[str, Any], Path | None]


@dataclass(frozen=True)
class MeasuredBrief:
    """The overview's measured-speed-up cell: the best headlined setting, else the fastest flagged one.

    Attributes:
        setting: KV strategy (or "layerwise"); "" for a bare number. speedup: × over full depth.
        unit: "token" (tokens/s ratio), "seq" (wall-time ratio) or "" for a bare number.
        headlined: kept the quality floor and the length limit (:func:`~ee_bench.speedup_verdict.speedup_verdict`).
        flags: why it is not headlined. source: "" when from the row's own run, else "<task>, <n> docs".
    """

    setting: str
    speedup: float
    unit: str
    headlined: bool
    flags: tuple[str, ...]
    source: str

    def text(self, bold: str = "") -> str:
        """``copy 0.76×/token`` (``bold`` around it when headlined), ``⚠`` when not, and the source."""
        head = " ".join(x for x in (self.setting, f"{self.speedup:.2f}×" + (f"/{self.unit}" if self.unit else "")) if x)
        head = f"{bold}{head}{bold}" if self.headlined else head + " ⚠"
        return head + (f" ({self.source})" if self.source else "")


@dataclass(frozen=True)
class OverviewRow:
    """One model × task family.

    Attributes:
        family: "WMT22" or the task name. task: the full table the row comes from (its heading).
        tasks: every task the row covers (a WMT22 average: its pairs' tasks and the average's table).
        res, path: the run shown (path None for an average). preview, degenerate: its status.
        measured: the measured-speed-up cell, or None.
    """

    family: str
    task: str
    tasks: tuple[str, ...]
    res: dict[str, Any]
    path: Path | None
    preview: bool
    degenerate: bool
    measured: MeasuredBrief | None

    @property
    def model(self) -> str:
        return self.res["model"]

    @property
    def quality_metric(self) -> str | None:
        """The task's first metric (the one its table is sorted by)."""
        return next(iter(self.res["metrics"]), None)

    def quality(self) -> tuple[float | None, dict[str, Any] | None]:
        m = self.quality_metric
        if m is None:
            return None, None
        return self.res["metrics"].get(m), ((self.res.get("intervals") or {}).get("metrics") or {}).get(m)

    def stat(self, section: str, key: str) -> tuple[float | None, dict[str, Any] | None]:
        """``oracle.first_match``/``gate_at_threshold`` statistic and its interval."""
        parts = section.split(".")
        cur: Any = self.res
        iv: Any = self.res.get("intervals") or {}
        for p in parts:
            cur = (cur or {}).get(p)
            iv = (iv or {}).get(p) if isinstance(iv, dict) else None
        value = (cur or {}).get(key)
        interval = (iv or {}).get(key) if isinstance(iv, dict) else None
        return value, interval if isinstance(interval, dict) and "low" in interval else None

    @property
    def n_layers(self) -> int | None:
        return self.res["oracle"]["first_match"].get("n_layers")

    @property
    def predicted(self) -> float | None:
        return predicted_at_threshold(self.res)

    @property
    def ceiling(self) -> float | None:
        return predicted_ceiling(self.res)

    @property
    def task_label(self) -> str:
        """``wmt22 avg (8 pairs)``, or the task name."""
        if self.task == WMT22_AVERAGE:
            return f"wmt22 avg ({len(self.res.get('pairs', []))} pairs)"
        return self.task


def family_of(task: str) -> str:
    """The overview family of a task table: WMT22 for its pairs and their average, else the task."""
    return WMT22_FAMILY if task == WMT22_AVERAGE or task.startswith(WMT22_PREFIX) else task


def measured_brief(res: dict[str, Any], source: str = "") -> MeasuredBrief | None:
    """The best headlined measured setting of a run, else its fastest flagged one; None when not measured."""
    value = res.get("measured_speedup")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return MeasuredBrief("", float(value), "", True, (), source)
    verdicts = [v for v in result_verdicts(res) if v.speedup is not None]
    if not verdicts:
        return None
    kept = [v for v in verdicts if v.headlined]
    best = max(kept or verdicts, key=lambda v: v.speedup)
    return MeasuredBrief(best.setting, best.speedup, "token" if best.per_token is not None else "seq",
                         best.headlined, best.flags, source)


def _rank(task_res_path: tuple[str, dict[str, Any], Path | None]) -> tuple:
    _, res, path = task_res_path
    dist = res["gate_at_threshold"].get("abs_distance")
    return (row_is_degenerate((res, path)), row_is_preview(res), -res["n_docs"]["evaluated"],
            math.inf if dist is None else dist, res["gate"], res["threshold"])


def _measured_elsewhere(cands: list[tuple[str, dict[str, Any], Path | None]], chosen: dict[str, Any]) -> MeasuredBrief | None:
    """The chosen run's own measured speed-up, else the family's measured run on the most documents."""
    own = measured_brief(chosen)
    if own is not None:
        return own
    others = [(t, r) for t, r, _ in cands if r is not chosen and measured_brief(r) is not None]
    if not others:
        return None
    task, res = max(others, key=lambda tr: (measured_brief(tr[1]).headlined, tr[1]["n_docs"]["evaluated"]))
    return measured_brief(res, f"{task}, {res['n_docs']['evaluated']} docs")


def overview_rows(by_task: dict[str, list[Item]]) -> list[OverviewRow]:
    """One :class:`OverviewRow` per model × family, from :func:`~ee_bench.leaderboard.group_by_task`'s tables.

    Order: WMT22 first, then the other families by name; within a family, ranked rows (neither preview
    nor degenerate) first, by the family's first metric in its own direction, then by model.
    """
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any], Path | None]]] = {}
    for task, rows in by_task.items():
        for res, path in rows:
            groups.setdefault((res["model"], family_of(task)), []).append((task, res, path))
    out = []
    for (_, family), cands in groups.items():
        averages = [c for c in cands if c[0] == WMT22_AVERAGE]
        task, res, path = min(averages or cands, key=_rank)
        covered = ((WMT22_AVERAGE, *(WMT22_PREFIX + p for p in res["pairs"])) if task == WMT22_AVERAGE else (task,))
        degenerate = row_is_degenerate((res, path))
        out.append(OverviewRow(family, task, covered, res, path, row_is_preview(res), degenerate,
                               _measured_elsewhere(cands, res)))

    def order(row: OverviewRow) -> tuple:
        value, _ = row.quality()
        m = row.quality_metric
        signed = 0.0 if value is None else (-value if m and metric_direction(row.res, m) else value)
        return (row.family != WMT22_FAMILY, row.family, row.preview or row.degenerate, value is None, signed, row.model)

    return sorted(out, key=order)


def quality_text(row: OverviewRow) -> str:
    """``chrf 18.47 ± 1.28`` (the task's first metric), or n/a."""
    value, interval = row.quality()
    return "n/a" if value is None else f"{row.quality_metric} {fmt_value(value, interval, n_docs=row.res['n_docs']['evaluated'])}"


def first_match_text(row: OverviewRow) -> str:
    """``25.72 / 30``: the first-match average exit layer over L."""
    value, _ = row.stat("oracle.first_match", "avg")
    return "n/a" if value is None else f"{value:.2f} / {row.n_layers if row.n_layers is not None else '?'}"


def perc_text(row: OverviewRow) -> str:
    value, _ = row.stat("oracle.first_match", "perc")
    return "n/a" if value is None else f"{value:.1f}"


def gate_text(row: OverviewRow) -> str:
    return f"{row.res['gate']} τ={row.res['threshold']:g}"


def distance_text(row: OverviewRow) -> str:
    value, interval = row.stat("gate_at_threshold", "abs_distance")
    return fmt_value(value, interval, n_docs=row.res["n_docs"]["evaluated"])


def docs_text(row: OverviewRow) -> str:
    n = row.res["n_docs"]
    flag = " degenerate" if row.degenerate else (" preview" if row.preview else "")
    return f"{n['evaluated']}/{n['total']}{flag}"


OVERVIEW_HEADERS = ("model", "task", "quality", "first-match avg / L", "perc %", "best gate", "gate abs dist",
                    "predicted ×/token", "ceiling ×/token", "measured speed-up", "docs")


def md_anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation (but ``-`` and ``_``) dropped,
    spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def format_overview(rows: list[OverviewRow]) -> str:
    """The overview as a markdown table (task cells link to the task's full table below)."""
    table = []
    for r in rows:
        measured = "n/a" if r.measured is None else r.measured.text("**")
        table.append([md_text(r.model), f"[{md_text(r.task_label)}](#{md_anchor(md_text(r.task))})", quality_text(r),
                      first_match_text(r), perc_text(r), md_text(gate_text(r)), distance_text(r),
                      fmt_speedup(r.predicted), fmt_speedup(r.ceiling), md_text(measured), docs_text(r)])
    return "## Overview\n\n" + tabulate(table, headers=list(OVERVIEW_HEADERS), tablefmt="github", disable_numparse=True)
