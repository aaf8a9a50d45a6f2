"""An exact-match metric (plug-in example): the share of predictions equal to a reference."""

from __future__ import annotations

from ee_bench.metrics.base import Metric, MetricInputs, MetricResult


def _normalise(text: str, ignore_case: bool) -> str:
    text = " ".join(str(text).split())  # collapse whitespace, strip the ends
    return text.lower() if ignore_case else text


class ExactMatch(Metric):
    """Percentage of predictions equal to at least one of their references after whitespace
    normalisation (runs of whitespace → one space, ends stripped), in points (0–100).

    Options (``metric_list`` keys): ``ignore_case`` (bool, default False).
    """

    higher_is_better = True
    unit = "points"
    aggregation = "mean"

    def __init__(self, ignore_case: bool = False) -> None:
        super().__init__()
        if not isinstance(ignore_case, bool):
            raise TypeError(f"exact_match option ignore_case must be true or false, got {ignore_case!r}")
        self.ignore_case = ignore_case

    def compute(self, inputs: MetricInputs) -> MetricResult:
        """Score N predictions against their references.

        Raises:
            ValueError: if predictions and references differ in length, or there are none.
        """
        preds, refs = inputs.predictions, inputs.references
        if len(preds) != len(refs) or not preds:
            raise ValueError(f"exact_match needs N > 0 predictions and N reference lists, got {len(preds)} and {len(refs)}")
        hits = sum(
            any(_normalise(p, self.ignore_case) == _normalise(r, self.ignore_case) for r in rs)
            for p, rs in zip(preds, refs)
        )
        return MetricResult(100.0 * hits / len(preds), {"n": len(preds), "ignore_case": self.ignore_case})
