"""Degenerate runs: final predictions that are (nearly) the same for every document.

On GLUE with a decoder, a model that answers one label everywhere makes layer 0 "match" the final
prediction on every token: first-match avg 0.00, perc 100 %, an implied speed-up of L×. Such a run
measures nothing about early exit. A run is **degenerate** when at least :data:`DEGENERATE_SHARE`
(95 %) of its evaluated documents (and at least two) share one final prediction (text predictions
compared after stripping surrounding whitespace). The report and the leaderboard mark these runs and
keep them out of rankings.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.samples_file import read_samples, samples_path

logger = logging.getLogger(__name__)

DEGENERATE_SHARE = 0.95
"""Share of documents with the most common final prediction from which a run is degenerate."""


@dataclass(frozen=True)
class Degeneracy:
    """How constant a run's final predictions are.

    Attributes:
        n_docs: documents with a prediction. top_share: share (0–1) of them with the most common
        prediction. top_prediction: that prediction. degenerate: ``top_share ≥ DEGENERATE_SHARE``
        and ``n_docs ≥ 2``.
    """

    n_docs: int
    top_share: float
    top_prediction: Any
    degenerate: bool


def degeneracy(predictions: list[Any]) -> Degeneracy:
    """Measure the constancy of a list of final predictions (strings or label indices)."""
    keys = [json.dumps(p.strip() if isinstance(p, str) else p, sort_keys=True, ensure_ascii=False) for p in predictions]
    if not keys:
        return Degeneracy(0, 0.0, None, False)
    key, count = min(Counter(keys).items(), key=lambda kv: (-kv[1], kv[0]))
    share = count / len(keys)
    return Degeneracy(len(keys), share, json.loads(key), len(keys) >= 2 and share >= DEGENERATE_SHARE)


def run_degeneracy(result: dict[str, Any], results_path: Path) -> Degeneracy | None:
    """:func:`degeneracy` of a run from its samples file (beside the results); None if it is missing,
    outside the results folder or unreadable (a warning names the file)."""
    path = samples_path(result, results_path)
    if path is None:
        return None
    try:
        rows = read_samples(path)
    except EEBenchError as exc:
        logger.warning("degeneracy of %s not checked: %s", results_path, exc)
        return None
    return degeneracy([r.get("prediction") if isinstance(r, dict) else None for r in rows])
