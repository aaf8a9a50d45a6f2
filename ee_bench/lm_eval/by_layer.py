"""lm-eval's log-likelihood tasks layer by layer: each exit layer's answers, scored by lm-eval's own code.

For ``multiple_choice`` and ``loglikelihood`` tasks lm-eval answers every request with a pair
(log-likelihood of the continuation, ``is_greedy``). ee-bench computes the same pair at every exit layer
(:func:`~ee_bench.models.layer_loglik.layer_logliks`, on lm-eval's own token ids of each request) and
hands each layer's pairs to the task's ``process_results`` and ``aggregation`` — lm-eval's code, as for
the final layer — so each layer gets the task's metrics (``acc``, ``acc_norm``, ``f1``, ``mcc``,
``perplexity``…). Row L−1 is lm-eval's own answer, so the last point of the curve is lm-eval's score.

Shape notation: L = layers, C = requests (choices) of a document.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ee_bench.layer_metrics import (
    LAYER_LOGLIK_KEY,
    LayerScore,
    metrics_by_layer,
    n_choices,
)
from ee_bench.models.layer_loglik import layer_logliks
from ee_bench.types import DocRecord

logger = logging.getLogger(__name__)

GREEDY_KEY = "is_greedy_by_layer"
"""``DocRecord.extra`` key: (L, C) booleans, whether layer ℓ's greedy tokens are request c's continuation."""

BY_LAYER_TYPES = ("multiple_choice", "loglikelihood")


def request_ids(lm, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-eval's ``HFLM.loglikelihood`` encodes a request
    (``_encode_pair``; an empty context becomes lm-eval's prefix token)."""
    if context:
        return lm._encode_pair(context, continuation)
    return [lm.prefix_token_id], lm.tok_encode(continuation)


def layer_answers(model, pairs: list[tuple[list[int], list[int]]], final: Sequence[tuple[float, bool]]
                  ) -> tuple[list[list[float]], list[list[bool]]]:
    """Every layer's (log-likelihood, is_greedy) of a document's C requests, row L−1 set to lm-eval's.

    Args:
        model: the causal wrapper. pairs: C (context ids, continuation ids). final: lm-eval's C answers.

    Returns:
        ((L, C) log-likelihoods in nats, (L, C) is_greedy).
    """
    per_request = layer_logliks(model, pairs)
    lls = [list(r) for r in zip(*(p.loglik for p in per_request))]
    greedy = [list(r) for r in zip(*(p.is_greedy for p in per_request))]
    lls[-1] = [float(ll) for ll, _ in final]
    greedy[-1] = [bool(g) for _, g in final]
    return lls, greedy


def lm_eval_layer_score(lm_task, docs: Sequence[Any], records: Sequence[DocRecord], metrics: Sequence[str]) -> LayerScore:
    """A :data:`~ee_bench.layer_metrics.LayerScore` by lm-eval's ``process_results`` and ``aggregation``.

    Each (layer, document) is processed once; a resample aggregates the cached per-document items.

    Args:
        lm_task: the built ``ConfigurableTask``. docs: its evaluated documents (by doc_id).
        records: the run's records, each with ``extra[loglik_by_layer]`` and ``extra[is_greedy_by_layer]``
            ((L, C), or (L,) for a one-request ``loglikelihood`` task). metrics: the metric names reported.
    """
    aggregation = lm_task.aggregation()
    n_layers = len(records[0].extra[LAYER_LOGLIK_KEY])
    items: list[list[dict[str, Any]]] = []  # (L, D) per-document results
    for layer in range(n_layers):
        row = []
        for r in records:
            lls, greedy = r.extra[LAYER_LOGLIK_KEY][layer], r.extra[GREEDY_KEY][layer]
            answers = list(zip(lls, greedy)) if isinstance(lls, list) else [(lls, greedy)]
            row.append(lm_task.process_results(docs[r.doc_id], answers))
        items.append(row)

    def score(layer: int, picked: Sequence[int]) -> dict[str, float | None]:
        out = {}
        for m in metrics:
            values = [items[layer][i][m] for i in picked]
            out[m] = float(aggregation[m](values))
        return out

    return score


def lm_eval_metrics_by_layer(task, records: Sequence[DocRecord], reported: dict[str, float | None], seed: int
                             ) -> dict[str, Any] | None:
    """The ``metrics_by_layer`` block of an lm-eval ``multiple_choice`` / ``loglikelihood`` run, or None
    (other output types; a task whose ``process_results`` cannot take per-layer answers, with a warning).

    Args:
        task: the :class:`~ee_bench.lm_eval.task_build.LmEvalTask`. records: its run's records.
        reported: lm-eval's aggregated scores (only metrics of the ``none`` filter are followed by layer).
        seed: the run's ``--seed``.
    """
    if task.output_type not in BY_LAYER_TYPES or not records:
        return None
    if not all(r.extra and LAYER_LOGLIK_KEY in r.extra for r in records):
        return None
    names = [m for m in reported if "," not in m]
    try:
        score = lm_eval_layer_score(task.lm_task, task.docs, records, names)
        block = metrics_by_layer(len(records[0].extra[LAYER_LOGLIK_KEY]), len(records), score, seed=seed,
                                 choice="lm-eval's process_results on each layer's (log-likelihood, is_greedy) answers")
    except (KeyError, TypeError, ValueError) as exc:  # e.g. acc_mutual_info needs unconditional requests
        logger.warning("task %s: no metrics by layer (%s: %s)", task.task, type(exc).__name__, exc)
        return None
    for m in names:
        last = block["metrics"][m][-1]
        if reported[m] is not None and last is not None and abs(last - reported[m]) > 1e-9:
            raise ValueError(f"task {task.task}: {m} at the last layer is {last}, lm-eval reported {reported[m]}")
    return {**block, "n_choices": n_choices(records) if task.output_type == "multiple_choice" else None}
