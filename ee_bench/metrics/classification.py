"""GLUE classification metrics from scikit-learn: accuracy, F1 and Matthews correlation.

Predictions are label indices; each document's references hold one gold label index (the GLUE
``label`` field). GLUE reports MCC for CoLA, accuracy and F1 (of the positive class, label 1) for
MRPC and QQP, and accuracy for the other tasks (Wang et al., 2019).
"""

from __future__ import annotations

from importlib import metadata

from ee_bench.metrics.base import Metric, MetricInputs, MetricResult


def gold_and_predicted(inputs: MetricInputs) -> tuple[list[int], list[int]]:
    """(gold labels, predicted labels) as two length-N integer lists.

    Raises:
        ValueError: if lengths differ, a document lacks exactly one gold label, or a label is not
            an integer.
    """
    if len(inputs.predictions) != len(inputs.references):
        raise ValueError(f"{len(inputs.predictions)} predictions but {len(inputs.references)} references")
    gold, pred = [], []
    for i, (p, refs) in enumerate(zip(inputs.predictions, inputs.references)):
        if len(refs) != 1:
            raise ValueError(f"document {i} has {len(refs)} gold labels; classification needs exactly one")
        try:
            gold.append(int(refs[0]))
            pred.append(int(p))
        except (TypeError, ValueError):
            raise ValueError(f"document {i}: labels must be integers, got prediction {p!r}, gold {refs[0]!r}") from None
    return gold, pred


class _SklearnMetric(Metric):
    aggregation = "corpus"
    higher_is_better = True

    def _score(self, gold: list[int], pred: list[int]) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self, inputs: MetricInputs) -> MetricResult:
        gold, pred = gold_and_predicted(inputs)
        if not gold:
            return MetricResult(None, {"reason": "no documents to score"})
        return MetricResult(float(self._score(gold, pred)),
                            {"implementation": f"scikit-learn {metadata.version('scikit-learn')}", "n_docs": len(gold)})


class Accuracy(_SklearnMetric):
    """Fraction of documents whose predicted label equals the gold label (0–1)."""

    unit = "fraction"

    def _score(self, gold, pred):
        from sklearn.metrics import accuracy_score

        return accuracy_score(gold, pred)


class F1(_SklearnMetric):
    """Binary F1 of the positive class (label 1), 0–1; 0 when nothing is predicted positive."""

    unit = "fraction"

    def _score(self, gold, pred):
        from sklearn.metrics import f1_score

        return f1_score(gold, pred, pos_label=1, average="binary", zero_division=0)


class MCC(_SklearnMetric):
    """Matthews correlation coefficient, in [−1, 1] (0 when a row or column of the confusion is empty)."""

    unit = "coefficient"

    def _score(self, gold, pred):
        from sklearn.metrics import matthews_corrcoef

        return matthews_corrcoef(gold, pred)
