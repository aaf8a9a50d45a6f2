"""Token-level F1 for extractive/abstractive QA (SQuAD, Rajpurkar et al., 2016), as used for NarrativeQA.

Normalisation (the SQuAD evaluation script's): lowercase, drop ASCII punctuation, drop the articles
"a", "an", "the", collapse whitespace. F1 is computed on the bag of normalised tokens; each document
takes the **best** F1 over its reference answers (NarrativeQA has two), and the task score is the
mean over documents, ×100. If the prediction or an answer normalises to nothing, F1 is 1 when both
are empty and 0 otherwise (the SQuAD v2 convention).
"""

from __future__ import annotations

import re
import string
from collections import Counter

from ee_bench.metrics.base import Metric, MetricInputs, MetricResult

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD answer normalisation (lowercase, no punctuation, no articles, single spaces)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, answer: str) -> float:
    """F1 in [0, 1] between the normalised token bags of a prediction and one answer."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


class TokenF1(Metric):
    """SQuAD-style token F1, best over reference answers, mean over documents, 0–100."""

    unit = "points"
    aggregation = "mean"
    higher_is_better = True

    def compute(self, inputs: MetricInputs) -> MetricResult:
        if len(inputs.predictions) != len(inputs.references):
            raise ValueError(f"{len(inputs.predictions)} predictions but {len(inputs.references)} reference lists")
        if any(len(r) == 0 for r in inputs.references):
            raise ValueError("every document needs at least one reference answer")
        scores = [max(token_f1(str(p), str(a)) for a in refs) for p, refs in zip(inputs.predictions, inputs.references)]
        if not scores:
            return MetricResult(None, {"reason": "no documents to score"})
        return MetricResult(100.0 * sum(scores) / len(scores), {
            "normalisation": "SQuAD (lowercase, no punctuation, no articles)",
            "scoring": "mean over documents of the best F1 over reference answers, x100",
            "n_docs": len(scores),
        })
