"""The metric contract and its registry.

A metric turns the predictions of a whole task run into one number. It declares:

- ``higher_is_better``: the direction used to sort the leaderboard;
- ``unit``: e.g. "points" (0–100) or "fraction";
- ``aggregation``: "corpus" (computed on the whole corpus at once, e.g. BLEU) or "mean" (the mean of
  per-sample scores, e.g. ROUGE F-measures).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ee_bench.registry import Registry


@dataclass(frozen=True)
class MetricInputs:
    """Everything a metric may read for one task run (N documents).

    Attributes:
        predictions: N model outputs: strings for generation tasks, label indices for
            multiple-choice tasks.
        references: N lists of references (one or more strings, or one label index).
        sources: N source texts, where the task has them (translation), else None.
        target_lang: ISO 639-1 code of the output language, where known (selects tokenisers).
    """

    predictions: list[Any]
    references: list[list[Any]]
    sources: list[str] | None = None
    target_lang: str | None = None


@dataclass(frozen=True)
class MetricResult:
    """A metric's value, or ``None`` with the reason it could not be computed.

    Attributes:
        value: the score in the metric's unit, or None.
        details: provenance such as the sacrebleu signature, or ``{"reason": …}`` when value is None.
    """

    value: float | None
    details: dict[str, Any] = field(default_factory=dict)


class Metric(ABC):
    """Contract for a metric. Constructed with the keyword options of its ``metric_list`` entry."""

    higher_is_better: bool = True
    unit: str = "points"
    aggregation: str = "corpus"

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no options, got {sorted(options)}")

    @abstractmethod
    def compute(self, inputs: MetricInputs) -> MetricResult:
        """Score a task run. Raises ValueError on malformed inputs (e.g. N mismatch)."""

    def document_scores(self, inputs: MetricInputs) -> list[float] | None:
        """Per-document scores whose mean is :meth:`compute`'s value (metrics with
        ``aggregation == "mean"``; used to resample documents cheaply, see ``ee_bench.uncertainty``).

        The default scores each document alone with :meth:`compute`; a metric with a cheaper batch
        path (COMET-22: one forward pass) overrides it. Returns None for corpus metrics, or where a
        document has no score.
        """
        if self.aggregation != "mean":
            return None
        out = []
        for i in range(len(inputs.predictions)):
            one = MetricInputs([inputs.predictions[i]], [inputs.references[i]],
                               None if inputs.sources is None else [inputs.sources[i]], inputs.target_lang)
            value = self.compute(one).value
            if value is None:
                return None
            out.append(float(value))
        return out

    def resampled_values(self, inputs: MetricInputs, idx) -> Any:
        """(B,) values of the metric on each resample (rows of the (B, N) index array ``idx``), by a
        path cheaper than calling :meth:`compute` B times; None where the metric has none (the default),
        and the caller recomputes each resample with :meth:`compute`."""
        return None

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"higher_is_better": cls.higher_is_better, "unit": cls.unit, "aggregation": cls.aggregation}


# lm-eval's standard keys of a metric_list entry: the metric's name, how per-document scores are
# aggregated, and its direction. They are never metric options (ee-bench's registry gives the direction).
STANDARD_METRIC_KEYS = ("metric", "aggregation", "higher_is_better")


def metric_options(entry: dict[str, Any]) -> dict[str, Any]:
    """The options of a ``metric_list`` entry: every key but lm-eval's standard ones."""
    return {k: v for k, v in entry.items() if k not in STANDARD_METRIC_KEYS}


def direction_warning(entry: dict[str, Any], cls: type[Metric]) -> str | None:
    """A warning when a task file's ``higher_is_better`` contradicts the metric's registered direction."""
    stated = entry.get("higher_is_better")
    if isinstance(stated, bool) and stated != cls.higher_is_better:
        return (f"metric {entry['metric']!r}: the task file says higher_is_better: {str(stated).lower()}, but the "
                f"metric is {'higher' if cls.higher_is_better else 'lower'}-is-better; the registry's direction is used")
    return None


METRICS: Registry[type[Metric]] = Registry("metric", base=Metric, entry_point_group="ee_bench.metrics")

# Built-ins are imported lazily by name ("module:attr") so `ee-bench --help` stays fast.
METRICS.register("bleu", "ee_bench.metrics.translation:BLEU")
METRICS.register("chrf", "ee_bench.metrics.translation:ChrF")
METRICS.register("comet22", "ee_bench.metrics.comet:COMET22")
METRICS.register("rouge1", "ee_bench.metrics.rouge:Rouge1")
METRICS.register("rouge2", "ee_bench.metrics.rouge:Rouge2")
METRICS.register("rougeL", "ee_bench.metrics.rouge:RougeL")
METRICS.register("rougeLsum", "ee_bench.metrics.rouge:RougeLsum")
METRICS.register("token_f1", "ee_bench.metrics.qa:TokenF1")
METRICS.register("acc", "ee_bench.metrics.classification:Accuracy")
METRICS.register("f1", "ee_bench.metrics.classification:F1")
METRICS.register("mcc", "ee_bench.metrics.classification:MCC")
