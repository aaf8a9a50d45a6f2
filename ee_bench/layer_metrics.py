"""The task's metrics at every exit layer: what accuracy (F1, MCC, …) would each layer's choice give?

For classification and multiple-choice runs, each exit layer ℓ makes its own choice per document:

- decoders (ee-bench's runner and lm-eval's tasks): the choice with the highest log-likelihood computed
  at layer ℓ (:func:`~ee_bench.models.layer_loglik.layer_logliks`; row L−1 is the reported final
  log-likelihood, so the last point of the curve is the reported score);
- encoders: layer ℓ's classifier argmax (``stats.top1[ℓ]``, paper §5, Fig. 2).

The task's metrics are then computed on those choices, layer by layer, by the same code that scores the
final layer (ee-bench's metric classes, or lm-eval's ``process_results`` + aggregation), with percentile
bootstrap intervals over documents from :mod:`ee_bench.uncertainty` (the same index matrix as the run's
``intervals``: its first ``N_RESAMPLES_CORPUS`` rows, so at the last layer the interval of an
ee-bench metric is the headline one).

The results key ``metrics_by_layer`` is::

    {"layers": [0, …, L−1], "n_docs": D, "choice": how each layer chose,
     "metrics": {name: [value at layer 0, …, value at layer L−1]},
     "intervals": {name: [Interval dict or None per layer]},
     "method": "bootstrap", "level": 0.95, "n_resamples": B, "seed": s,
     "n_choices": the largest number of choices of a document (the chance level of first-match,
                  :func:`ee_bench.exits.headline.chance_first_match`)}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ee_bench.types import DocRecord
from ee_bench.uncertainty import (
    LEVEL,
    METHOD,
    N_RESAMPLES,
    N_RESAMPLES_CORPUS,
    percentile_interval,
    resample_indices,
)

LAYER_LOGLIK_KEY = "loglik_by_layer"
"""``DocRecord.extra`` key of a decoder choice record: (L, C) log-likelihoods (nats), layer by layer."""

LayerScore = Callable[[int, Sequence[int]], dict[str, float | None]]
"""(layer ℓ, document indices, repeats allowed) → metric name → value of the task's metrics at ℓ on them."""


def argmax_first(values: Sequence[float]) -> int:
    """Index of the largest value, the first one on ties (``torch.argmax``'s and ``max``'s rule)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def layer_choices(records: Sequence[DocRecord], output_type: str) -> list[list[int]] | None:
    """Each layer's choice on each document, for classification and multiple-choice runs.

    Args:
        records: the run's records, in document order. output_type: the task's.

    Returns:
        (L, D) choice indices: argmax of ``extra["loglik_by_layer"][ℓ]`` where every record has it
        (decoders), else ``stats.top1[ℓ, 0]`` (encoders: one classifier column); None for other
        output types.

    Raises:
        ValueError: if a record's last-layer choice is not its reported prediction (the curve would not
            end at the reported score).
    """
    if output_type != "multiple_choice" or not records:
        return None
    if all(r.extra and LAYER_LOGLIK_KEY in r.extra for r in records):
        per_doc = [[argmax_first(row) for row in r.extra[LAYER_LOGLIK_KEY]] for r in records]
    elif all(r.stats.n_tokens == 1 for r in records):
        per_doc = [r.stats.top1[:, 0].tolist() for r in records]
    else:
        return None
    for r, layers in zip(records, per_doc):
        if layers[-1] != r.prediction:
            raise ValueError(f"document {r.doc_id}: the last layer chose {layers[-1]}, the run reported "
                             f"{r.prediction}; the per-layer choices are inconsistent")
    return [list(col) for col in zip(*per_doc)]


def ee_bench_layer_score(metric_list: Sequence[dict[str, Any]], choices: list[list[int]],
                         references: Sequence[list[Any]]) -> LayerScore:
    """A :data:`LayerScore` that computes the task's ``metric_list`` with ee-bench's metric classes.

    Args:
        metric_list: the task's metric entries. choices: (L, D) from :func:`layer_choices`.
        references: D reference lists (the gold label index each).
    """
    from ee_bench.metrics.base import METRICS, MetricInputs, metric_options

    metrics = [(m["metric"], METRICS.get(m["metric"])(**metric_options(m))) for m in metric_list]

    def score(layer: int, docs: Sequence[int]) -> dict[str, float | None]:
        inputs = MetricInputs([choices[layer][i] for i in docs], [references[i] for i in docs])
        return {name: metric.compute(inputs).value for name, metric in metrics}

    return score


def n_choices(records: Sequence[DocRecord]) -> int | None:
    """The largest number of choices of a document (``extra``: ``loglik_by_layer`` rows, ``choices`` or
    an encoder's ``final_probs``), or None when the records do not say."""
    counts = []
    for r in records:
        extra = r.extra or {}
        rows = extra.get(LAYER_LOGLIK_KEY)
        if isinstance(rows, list) and rows and isinstance(rows[0], list):
            counts.append(len(rows[0]))
        elif isinstance(extra.get("choices"), list):
            counts.append(len(extra["choices"]))
        elif isinstance(extra.get("final_probs"), list):
            counts.append(len(extra["final_probs"]))
    return max(counts) if counts else None


def metrics_by_layer(n_layers: int, n_docs: int, score: LayerScore, *, seed: int, choice: str,
                     n_resamples: int = N_RESAMPLES_CORPUS, level: float = LEVEL) -> dict[str, Any]:
    """The task's metrics at every exit layer, each with a percentile bootstrap interval over documents.

    Args:
        n_layers: L. n_docs: D. score: the task's metrics at one layer on a list of documents.
        seed: the run's ``--seed`` (:func:`~ee_bench.uncertainty.resample_indices`, ``N_RESAMPLES`` rows,
            of which the first ``n_resamples`` are used). choice: how each layer chose (recorded).

    Returns:
        The ``metrics_by_layer`` block (module docstring); a metric undefined on a resample leaves that
        resample out; an interval is None where no resample is defined.

    Raises:
        ValueError: if ``n_layers`` or ``n_docs`` is not positive.
    """
    if n_layers < 1 or n_docs < 1:
        raise ValueError(f"need at least one layer and one document, got {n_layers} and {n_docs}")
    idx = resample_indices(n_docs, max(N_RESAMPLES, n_resamples), seed)[:n_resamples]  # (B, D)
    every = list(range(n_docs))
    values: dict[str, list[float | None]] = {}
    intervals: dict[str, list[dict[str, Any] | None]] = {}
    for layer in range(n_layers):
        point = score(layer, every)
        resampled = [score(layer, row.tolist()) for row in idx]
        for name, value in point.items():
            values.setdefault(name, []).append(None if value is None else float(value))
            stats = np.array([np.nan if r.get(name) is None else float(r[name]) for r in resampled])
            try:
                intervals.setdefault(name, []).append(percentile_interval(stats, level).to_dict())
            except ValueError:  # every resample undefined
                intervals.setdefault(name, []).append(None)
    return {"layers": list(range(n_layers)), "n_docs": n_docs, "choice": choice, "metrics": values,
            "intervals": intervals, "method": METHOD, "level": level, "n_resamples": int(idx.shape[0]), "seed": seed}


def records_metrics_by_layer(records: Sequence[DocRecord], output_type: str, metric_list: Sequence[dict[str, Any]],
                             seed: int) -> dict[str, Any] | None:
    """:func:`metrics_by_layer` of an ee-bench-scored run (its ``metric_list`` on each layer's choice);
    None for runs that are not classification or multiple choice."""
    choices = layer_choices(records, output_type)
    if choices is None:
        return None
    how = ("argmax over choices of the log-likelihood at that layer" if records[0].extra and LAYER_LOGLIK_KEY in records[0].extra
           else "the layer's classifier argmax")
    score = ee_bench_layer_score(metric_list, choices, [r.references for r in records])
    return {**metrics_by_layer(len(choices), len(records), score, seed=seed, choice=how), "n_choices": n_choices(records)}
