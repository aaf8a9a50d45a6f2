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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """:func:`degeneracy` of a run from its samples file (beside the results); None if it is missing."""
    name = result.get("samples_file")
    path = Path(results_path).parent / name if name else None
    if path is None or not path.is_file():
        return None
    preds = [json.loads(line).get("prediction") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return degeneracy(preds)
