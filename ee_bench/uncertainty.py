"""Bootstrap confidence intervals over documents for the statistics of one task run.

Method: the percentile bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
ch. 13) with the **document** as the resampling unit: a resample draws D documents with replacement
from the D evaluated ones, every statistic is recomputed on it, and the interval at level 1 − α is the
α/2 and 1 − α/2 quantiles (numpy's default linear interpolation) of the resampled values. Tokens of
one document are never split, so the correlation between the tokens of a document is kept.

Cost is bounded:

- oracle and gate statistics are ratios of per-document sums (e.g. mean exit layer = Σ layers / Σ
  tokens), so each resample is a sum over an index matrix of precomputed per-document sums:
  ``N_RESAMPLES`` (1000) resamples, milliseconds;
- metrics with ``aggregation == "mean"`` (ROUGE, token F1, COMET-22) are the mean of per-document
  scores (:meth:`Metric.document_scores`, computed once), resampled the same way (1000 resamples);
- BLEU and chrF: sacrebleu's per-document statistics are extracted once by the metric class and
  summed per resample (:meth:`Metric.resampled_values`, what sacrebleu's own bootstrap does), 1000
  resamples, each equal to the corpus score of the resampled documents;
- other corpus metrics (accuracy/F1/MCC: scikit-learn) are recomputed by the metric class itself on
  each resampled document list: ``N_RESAMPLES_CORPUS`` (200) resamples.

Every resample comes from one index matrix drawn by ``numpy.random.default_rng(seed)`` (the run's
``--seed``); the corpus metrics use its first rows. Same seed, same documents → same intervals.
With a single document every resample is that document and each interval has zero width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ee_bench.exits.decide import gate_exit_layers
from ee_bench.exits.oracle import PERC_AT_K, first_match_layer, saturation_layer
from ee_bench.metrics.base import METRICS, MetricInputs, metric_options
from ee_bench.types import LayerStats

LEVEL = 0.95
N_RESAMPLES = 1000
N_RESAMPLES_CORPUS = 200
METHOD = "bootstrap"


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval of one statistic, in the statistic's unit.

    Attributes:
        low / high: the α/2 and 1 − α/2 quantiles of the resampled statistic.
        method: "bootstrap" (percentile bootstrap over documents).
        n_resamples: resamples the quantiles were taken over (resamples where the statistic was
            undefined, e.g. no output token at all, are not counted).
        level: 1 − α, e.g. 0.95.
    """

    low: float
    high: float
    method: str
    n_resamples: int
    level: float

    @property
    def half_width(self) -> float:
        """(high − low) / 2: what the leaderboard prints after ``±``."""
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resample_indices(n_docs: int, n_resamples: int, seed: int) -> np.ndarray:
    """Document indices of every bootstrap resample.

    Returns:
        (n_resamples, n_docs) int64, each row drawn uniformly with replacement from [0, n_docs).

    Raises:
        ValueError: if ``n_docs`` or ``n_resamples`` is not positive, or ``seed`` is negative.
    """
    if n_docs <= 0 or n_resamples <= 0:
        raise ValueError(f"need n_docs > 0 and n_resamples > 0, got {n_docs} and {n_resamples}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(seed).integers(0, n_docs, size=(n_resamples, n_docs))


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    """Percentile interval of resampled values (B,); the NaNs of undefined resamples are dropped.

    Raises:
        ValueError: if no resample is defined or ``level`` is not in (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ValueError("every resample is undefined; no interval")
    alpha = 1.0 - level
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return Interval(float(low), float(high), METHOD, int(values.size), level)


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray, idx: np.ndarray, scale: float = 1.0,
                   level: float = LEVEL) -> Interval:
    """Interval of ``scale · Σ numerator / Σ denominator`` over resampled documents.

    Args:
        numerator / denominator: (D,) per-document sums (e.g. Σ exit layers, token count).
        idx: (B, D) resample indices from :func:`resample_indices`.
        scale: constant factor (100 for percentages, L for the implied speed-up).
    """
    num = numerator[idx].sum(axis=1)  # (B,)
    den = denominator[idx].sum(axis=1)  # (B,)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(den > 0, scale * num / np.where(den > 0, den, 1), np.nan)
    return percentile_interval(stat, level)


def _doc_sums(x: Tensor, doc_of_token: np.ndarray, n_docs: int) -> np.ndarray:
    """(N,) per-token values → (D,) per-document sums (float64)."""
    return np.bincount(doc_of_token, weights=x.to(torch.float64).numpy(), minlength=n_docs)


def exit_intervals(first_match: Tensor, saturation: Tensor, gate_layers: dict[float, Tensor], top1: Tensor,
                   doc_lengths: list[int], idx: np.ndarray, level: float = LEVEL) -> dict[str, Any]:
    """Intervals of every oracle summary and every gate score (paper §4, §3.2).

    The statistics are those of :func:`ee_bench.exits.oracle.summarize_layers` and
    :func:`ee_bench.exits.scoring.score_gate`, written as ratios of per-document sums.

    Args:
        first_match / saturation: (N,) int64 oracle layers of all N output tokens, documents in order.
        gate_layers: threshold → (N,) int64 gate exit layers.
        top1: (L, N) int64 per-layer top-1 (row L−1 is the final prediction).
        doc_lengths: D token counts, summing to N.
        idx: (B, D) resample indices.

    Returns:
        {"oracle": {"first_match": {stat: Interval dict}, "saturation": {...}},
         "gate_sweep": [{"threshold": τ, stat: Interval dict, ...}, ...]} with the stat names of the
        results file (avg, perc, perc@k; signed_distance, abs_distance, accuracy, mean_layers_run,
        implied_speedup).

    Raises:
        ValueError: if the lengths do not add up.
    """
    L, N = top1.shape
    D = len(doc_lengths)
    if sum(doc_lengths) != N or first_match.numel() != N or saturation.numel() != N or idx.shape[1] != D:
        raise ValueError(f"doc_lengths sum to {sum(doc_lengths)}, tokens {N}, resample width {idx.shape[1]}, docs {D}")
    doc_of_token = np.repeat(np.arange(D), doc_lengths)
    n = np.asarray(doc_lengths, dtype=np.float64)  # (D,)
    sums = lambda x: _doc_sums(x, doc_of_token, D)  # noqa: E731
    last = L - 1
    oracle = {}
    for name, layers in (("first_match", first_match), ("saturation", saturation)):
        s = {"avg": ratio_interval(sums(layers), n, idx, level=level),
             "perc": ratio_interval(sums(layers < last), n, idx, 100.0, level)}
        s.update({f"perc@{k}": ratio_interval(sums(layers <= last - k), n, idx, 100.0, level) for k in PERC_AT_K})
        oracle[name] = {k: v.to_dict() for k, v in s.items()}
    sweep = []
    for tau, g in gate_layers.items():
        diff = (g - first_match).to(torch.float64)
        correct = top1.gather(0, g.view(1, -1)).squeeze(0) == top1[-1]  # (N,)
        run = sums(g + 1)
        s = {"signed_distance": ratio_interval(sums(diff), n, idx, level=level),
             "abs_distance": ratio_interval(sums(diff.abs()), n, idx, level=level),
             "accuracy": ratio_interval(sums(correct), n, idx, 100.0, level),
             "mean_layers_run": ratio_interval(run, n, idx, level=level),
             "implied_speedup": ratio_interval(n, run, idx, float(L), level)}
        sweep.append({"threshold": float(tau), **{k: v.to_dict() for k, v in s.items()}})
    return {"oracle": oracle, "gate_sweep": sweep}


def metric_intervals(metric_list: list[dict[str, Any]], inputs, values: dict[str, float | None], idx: np.ndarray,
                     n_resamples_corpus: int = N_RESAMPLES_CORPUS, level: float = LEVEL
                     ) -> tuple[dict[str, dict | None], dict[str, str]]:
    """Intervals of the task's quality metrics, recomputed by the metric classes themselves.

    Args:
        metric_list: the task spec's ``metric_list`` entries ({"metric": name, **options}).
        inputs: the run's :class:`~ee_bench.metrics.base.MetricInputs` (D documents).
        values: the metric values of the run (None where the metric could not be computed).
        idx: (B, D) resample indices; corpus metrics without :meth:`Metric.resampled_values` use the
            first ``n_resamples_corpus`` rows (recomputed one by one).

    Returns:
        (metric → Interval dict or None, metric → reason it has no interval).
    """
    out: dict[str, dict | None] = {}
    reasons: dict[str, str] = {}
    for entry in metric_list:
        name = entry["metric"]
        out[name] = None
        if values.get(name) is None:
            reasons[name] = "the metric has no value in this run"
            continue
        metric = METRICS.get(name)(**metric_options(entry))  # lm-eval's aggregation/higher_is_better are not options
        if metric.aggregation == "mean":
            scores = metric.document_scores(inputs)
            if scores is None:
                reasons[name] = "the metric gave no per-document scores"
                continue
            scores = np.asarray(scores, dtype=np.float64)
            out[name] = percentile_interval(scores[idx].mean(axis=1), level).to_dict()
            continue
        fast = metric.resampled_values(inputs, idx)  # sacrebleu: statistics extracted once, all resamples
        if fast is not None:
            out[name] = percentile_interval(np.asarray(fast, dtype=np.float64), level).to_dict()
            continue
        stats = []
        for row in idx[:n_resamples_corpus]:
            pick = lambda xs: None if xs is None else [xs[i] for i in row]  # noqa: E731
            sub = MetricInputs(pick(inputs.predictions), pick(inputs.references), pick(inputs.sources),
                               inputs.target_lang)
            v = metric.compute(sub).value
            stats.append(np.nan if v is None else v)
        out[name] = percentile_interval(np.asarray(stats), level).to_dict()
    return out, reasons


def task_intervals(records, gate, thresholds: list[float], chosen: float, metric_list: list[dict[str, Any]], inputs,
                   values: dict[str, float | None], seed: int, n_resamples: int = N_RESAMPLES,
                   n_resamples_corpus: int = N_RESAMPLES_CORPUS, level: float = LEVEL) -> dict[str, Any]:
    """The ``intervals`` block of a results file: every oracle, gate and metric interval of a run.

    The oracle layers and gate exit layers are recomputed from the records with the same functions
    the analysis uses (:func:`~ee_bench.exits.oracle.first_match_layer`,
    :func:`~ee_bench.exits.decide.gate_exit_layers`), so they equal the reported ones.

    Args:
        records: the run's DocRecords, in document order (each (L, N_doc) stats).
        gate / thresholds / chosen: as given to :func:`~ee_bench.exits.summary.summarise_exits`.
        metric_list / inputs / values: the task's metric entries, MetricInputs and values.
        seed: the run's ``--seed``.

    Raises:
        ValueError: if there are no records.
    """
    if not records:
        raise ValueError("no documents; no intervals")
    stats = LayerStats.cat([r.stats for r in records])  # (L, N)
    hidden = embeddings = None
    if gate.needs_hidden:
        hidden = torch.cat([r.hidden for r in records], dim=1)
        embeddings = torch.cat([r.embeddings for r in records], dim=0)
    fm = first_match_layer(stats.top1)
    idx = resample_indices(len(records), n_resamples, seed)
    layers = {float(t): gate_exit_layers(gate, stats, t, hidden, embeddings) for t in thresholds}
    exits = exit_intervals(fm, saturation_layer(stats.top1), layers, stats.top1,
                           [r.stats.n_tokens for r in records], idx, level)
    metrics, reasons = metric_intervals(metric_list, inputs, values, idx, n_resamples_corpus, level)
    at = next(s for s in exits["gate_sweep"] if s["threshold"] == float(chosen))
    return {
        "method": METHOD, "level": level, "seed": seed, "resampling_unit": "document", "n_docs": len(records),
        "n_resamples": n_resamples, "n_resamples_corpus": min(n_resamples_corpus, n_resamples),
        "metrics": metrics, "not_resampled": reasons,
        "oracle": exits["oracle"], "gate_sweep": exits["gate_sweep"], "gate_at_threshold": at,
    }
