"""ROUGE-1/2/L/Lsum from Google's ``rouge-score`` package (Lin, 2004), with Porter stemming.

Each document is scored on its own (F-measure; with several references, the best one, as
``RougeScorer.score_multi`` does) and the task score is the **mean of the per-document F-measures**,
×100. ``rougeLsum`` splits prediction and references into sentences at newlines ("\\n") and takes
the union longest common subsequence over sentence pairs; that is how CNN/DailyMail highlights (one
sentence a line) are scored. Text is tokenised by rouge-score's default tokenizer (lowercase,
non-alphanumeric characters dropped), so the metric is meant for English output.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from ee_bench.metrics.base import Metric, MetricInputs, MetricResult


def rouge_fmeasures(rouge_type: str, predictions: list[str], references: list[list[str]]) -> list[float]:
    """Per-document ROUGE F-measures in [0, 1] (best reference per document).

    Args:
        rouge_type: ``rouge1``, ``rouge2``, ``rougeL`` or ``rougeLsum``.
        predictions: N output strings.
        references: N non-empty lists of reference strings.

    Returns:
        N F-measures.

    Raises:
        ValueError: if the lengths differ or a document has no reference.
    """
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if any(len(r) == 0 for r in references):
        raise ValueError("every document needs at least one reference")
    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=True)
    return [scorer.score_multi([str(r) for r in refs], str(pred))[rouge_type].fmeasure
            for pred, refs in zip(predictions, references)]


class _Rouge(Metric):
    unit = "points"
    aggregation = "mean"
    higher_is_better = True
    rouge_type = ""

    def compute(self, inputs: MetricInputs) -> MetricResult:
        scores = rouge_fmeasures(self.rouge_type, list(inputs.predictions), inputs.references)
        if not scores:
            return MetricResult(None, {"reason": "no documents to score"})
        details: dict[str, Any] = {
            "implementation": f"rouge-score {metadata.version('rouge-score')}",
            "use_stemmer": True,
            "scoring": "mean over documents of the per-document F-measure (best reference), x100",
            "n_docs": len(scores),
        }
        if self.rouge_type == "rougeLsum":
            details["sentence_split"] = "newlines"
        return MetricResult(100.0 * sum(scores) / len(scores), details)

    def document_scores(self, inputs: MetricInputs) -> list[float]:
        """Per-document F-measures ×100 (one scorer for all documents); their mean is the value."""
        return [100.0 * f for f in rouge_fmeasures(self.rouge_type, list(inputs.predictions), inputs.references)]


class Rouge1(_Rouge):
    """ROUGE-1 F-measure (unigram overlap), mean over documents, 0–100."""

    rouge_type = "rouge1"


class Rouge2(_Rouge):
    """ROUGE-2 F-measure (bigram overlap), mean over documents, 0–100."""

    rouge_type = "rouge2"


class RougeL(_Rouge):
    """ROUGE-L F-measure (longest common subsequence over the whole text), mean over documents, 0–100."""

    rouge_type = "rougeL"


class RougeLsum(_Rouge):
    """ROUGE-Lsum F-measure (union LCS over newline-split sentences), mean over documents, 0–100."""

    rouge_type = "rougeLsum"
