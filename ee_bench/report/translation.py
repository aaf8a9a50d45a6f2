"""Translation quality per reference (paper Table 7) and WMT22 averaged over its pairs (Table 2).

Scores are computed from the samples' final predictions and references with the task's own metrics
(:mod:`ee_bench.metrics`, i.e. sacreBLEU), with the options of the task's ``metric_list`` when the
task is known to this ee-bench, and the output language for BLEU's tokeniser.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.metrics.base import METRICS, MetricInputs, metric_options
from ee_bench.tasks.index import TaskIndex

logger = logging.getLogger(__name__)
PER_REFERENCE_METRICS = ("chrf", "bleu")
"""Metrics scored against each reference separately (COMET needs its checkpoint: not recomputed here)."""


@dataclass(frozen=True)
class ReferenceScores:
    """One metric of one run against each reference alone and all together.

    Attributes:
        metric: its name. per_reference: "A", "B", … → score (points). combined: against all
            references (multi-reference sacreBLEU). in_results: the value the run's results JSON holds.
    """

    metric: str
    per_reference: dict[str, float | None]
    combined: float | None
    in_results: float | None


def _metric_options(task: str) -> dict[str, dict[str, Any]]:
    try:
        spec = TaskIndex().load(task)

        return {m["metric"]: metric_options(m) for m in getattr(spec, "metric_list", ())}
    except EEBenchError:
        logger.info("task %s is not known here; metrics use their default options", task)
        return {}


def _score(name: str, options: dict[str, Any], preds: list[str], refs: list[list[str]], lang: str | None) -> float | None:
    return METRICS.get(name)(**options).compute(MetricInputs(predictions=preds, references=refs, target_lang=lang)).value


def reference_scores(run) -> list[ReferenceScores]:
    """chrF and BLEU of a translation run against reference A, reference B, … and all of them.

    Returns an empty list for runs without samples, with fewer than two references per document, or
    without chrF/BLEU among their metrics.
    """
    rows = run.rows or []
    if not rows or any(not isinstance(r.get("prediction"), str) for r in rows):
        return []
    n_refs = min(len(r.get("references", [])) for r in rows)
    names = [m for m in PER_REFERENCE_METRICS if m in run.result.get("metrics", {})]
    if n_refs < 2 or not names:
        return []
    options = _metric_options(run.task)
    preds = [r["prediction"] for r in rows]
    out = []
    for name in names:
        opts = options.get(name, {})
        per = {chr(ord("A") + i): _score(name, opts, preds, [[r["references"][i]] for r in rows], run.target_lang)
               for i in range(n_refs)}
        combined = _score(name, opts, preds, [list(r["references"][:n_refs]) for r in rows], run.target_lang)
        out.append(ReferenceScores(name, per, combined, run.result["metrics"].get(name)))
    return out


@dataclass(frozen=True)
class PairAverage:
    """A model's WMT22 results averaged over the language pairs it was run on.

    Attributes:
        model, gate, threshold: the setting. folder: where its results files are. pairs: the task names averaged. metrics: metric → mean
        over the pairs that have it (None values left out; ``n`` per metric in ``counts``).
        first_match_avg: mean of the pairs' first-match averages (layers). excluded: degenerate runs left out.
    """

    model: str
    gate: str
    threshold: float
    folder: str
    pairs: list[str]
    metrics: dict[str, float | None]
    counts: dict[str, int]
    first_match_avg: float
    excluded: list[str]


def wmt22_averages(runs) -> list[PairAverage]:
    """Average the ``wmt22_*`` runs of each (model, gate, threshold) over their pairs (degenerate runs excluded).

    Runs are grouped by the folder of their results file too, so runs of different sizes kept in
    different folders are never mixed.
    """
    from pathlib import PurePosixPath

    groups: dict[tuple[str, str, float, str], dict[str, Any]] = {}
    for r in runs:
        if not r.task.startswith("wmt22_"):
            continue
        key = (r.model, r.result.get("gate", ""), float(r.result.get("threshold", 0)), str(PurePosixPath(r.rel).parent))
        g = groups.setdefault(key, {"runs": {}, "excluded": []})
        if r.degenerate:
            g["excluded"].append(r.task)
        else:
            g["runs"][r.task] = r
    out = []
    for (model, gate, tau, folder), g in sorted(groups.items()):
        chosen = [g["runs"][t] for t in sorted(g["runs"])]
        if not chosen:
            continue
        names = sorted({m for r in chosen for m in r.result.get("metrics", {})})
        metrics, counts = {}, {}
        for m in names:
            vals = [r.result["metrics"][m] for r in chosen if r.result["metrics"].get(m) is not None]
            metrics[m] = sum(vals) / len(vals) if vals else None
            counts[m] = len(vals)
        fm = sum(r.result["oracle"]["first_match"]["avg"] for r in chosen) / len(chosen)
        out.append(PairAverage(model, gate, tau, folder, [r.task for r in chosen], metrics, counts, fm,
                               sorted(g["excluded"])))
    return out
