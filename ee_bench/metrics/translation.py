"""BLEU and chrF from sacrebleu (Post, 2018), with the target language's tokeniser.

BLEU tokenises with ``ja-mecab`` for Japanese, ``zh`` for Chinese and ``13a`` otherwise, as the WMT
shared tasks do. Both metrics use every reference the task provides (WMT22 has A and, for some pairs,
B); the sacrebleu signature records the tokeniser, the case and the number of references.
Options (``metric_list`` keys): ``tokenize`` (a sacrebleu tokeniser name; ``none`` for data that is
already tokenised, e.g. IWSLT14 as fairseq prepares it), ``lowercase``, and ``pretokenize: moses``
(Moses-tokenise the outputs first, so they match references that were Moses-tokenised).
"""

from __future__ import annotations

from typing import Any

from ee_bench.metrics.base import Metric, MetricInputs, MetricResult

TOKENIZER_BY_LANG = {"ja": "ja-mecab", "zh": "zh"}


def bleu_tokenizer(target_lang: str | None) -> str:
    """sacrebleu tokeniser name for a target language code (``13a`` when unknown)."""
    return TOKENIZER_BY_LANG.get((target_lang or "").lower(), "13a")


def moses_tokenize(texts: list[str], lang: str) -> list[str]:
    """Moses-tokenise outputs as fairseq's ``prepare-iwslt14.sh`` tokenised its references
    (sacremoses: XML escapes such as ``&apos;``, aggressive dash splits ``@-@``)."""
    from sacremoses import MosesTokenizer

    tok = MosesTokenizer(lang=lang)
    return [tok.tokenize(t, escape=True, aggressive_dash_splits=True, return_str=True) for t in texts]


PRETOKENIZERS = {None: None, "moses": moses_tokenize}
PRETOKENIZE_NOTES = {"moses": "outputs Moses-tokenised with sacremoses (escape=True, aggressive_dash_splits=True) "
                              "to match references tokenised by fairseq's prepare-iwslt14.sh"}


def _transpose_refs(references: list[list[str]]) -> list[list[str]]:
    """N docs × R refs → R streams × N docs, as sacrebleu wants. Every doc must have R refs."""
    n_refs = {len(r) for r in references}
    if len(n_refs) != 1 or 0 in n_refs:
        raise ValueError(f"every document needs the same, non-zero number of references; got {sorted(n_refs)}")
    return [list(stream) for stream in zip(*references)]


class _SacreBLEUMetric(Metric):
    unit = "points"
    aggregation = "corpus"
    higher_is_better = True

    def __init__(self, tokenize: str | None = None, lowercase: bool = False, pretokenize: str | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        if pretokenize not in PRETOKENIZERS:
            raise ValueError(f"pretokenize must be one of {sorted(k for k in PRETOKENIZERS if k)} or absent, got {pretokenize!r}")
        self.tokenize = tokenize
        self.lowercase = bool(lowercase)
        self.pretokenize = pretokenize

    def _scorer(self, target_lang: str | None):  # pragma: no cover - abstract helper
        raise NotImplementedError

    def _predictions(self, inputs: MetricInputs) -> list[str]:
        if len(inputs.predictions) != len(inputs.references):
            raise ValueError("predictions and references differ in length")
        predictions = [str(p) for p in inputs.predictions]
        if self.pretokenize:
            predictions = PRETOKENIZERS[self.pretokenize](predictions, inputs.target_lang or "en")
        return predictions

    def resampled_values(self, inputs: MetricInputs, idx):
        """The corpus score of every bootstrap resample, from per-document sacrebleu statistics
        extracted once and summed per resample, as sacrebleu's own bootstrap does
        (``sacrebleu.significance._bootstrap_resample``), but over the caller's document indices.

        Args:
            idx: (B, N) int document indices, one resample per row.

        Returns:
            (B,) float64 scores, equal to ``compute`` on each resampled document list; or None when this
            sacrebleu lacks the statistics methods (the caller then recomputes each resample).
        """
        import numpy as np

        scorer = self._scorer(inputs.target_lang)
        if not (hasattr(scorer, "_extract_corpus_statistics") and hasattr(scorer, "_compute_score_from_stats")):
            return None
        stats = np.asarray(scorer._extract_corpus_statistics(self._predictions(inputs),
                                                             _transpose_refs(inputs.references)), dtype=np.float64)
        return np.array([float(scorer._compute_score_from_stats(stats[row].sum(axis=0)).score) for row in idx])

    def compute(self, inputs: MetricInputs) -> MetricResult:
        predictions = self._predictions(inputs)
        scorer = self._scorer(inputs.target_lang)
        details: dict[str, Any] = {}
        if self.pretokenize:
            details["pretokenize"] = PRETOKENIZE_NOTES[self.pretokenize]
        if self.tokenize == "none":  # e.g. IWSLT14 as fairseq prepares it
            details["note"] = ("references are pre-tokenised" + (" and lowercased" if self.lowercase else "")
                               + "; scored with tokenize=none" + (", lowercase=True" if self.lowercase else "")
                               + " (tokenised BLEU, not comparable with detokenised sacreBLEU)")
        score = scorer.corpus_score(predictions, _transpose_refs(inputs.references))
        details["signature"] = str(scorer.get_signature())  # sacrebleu knows the reference count only now
        return MetricResult(float(score.score), details)


class BLEU(_SacreBLEUMetric):
    """Corpus BLEU (sacrebleu.metrics.BLEU), 0–100, with a language-dependent tokeniser."""

    def _scorer(self, target_lang: str | None):
        from sacrebleu.metrics import BLEU as SacreBLEU

        # force: with tokenize=none the data is tokenised on purpose; silence sacrebleu's warning about it
        return SacreBLEU(tokenize=self.tokenize or bleu_tokenizer(target_lang), lowercase=self.lowercase,
                         force=self.tokenize == "none")


class ChrF(_SacreBLEUMetric):
    """Corpus chrF (sacrebleu.metrics.CHRF, char order 6, β = 2), 0–100."""

    def _scorer(self, target_lang: str | None):
        from sacrebleu.metrics import CHRF

        return CHRF(lowercase=self.lowercase)
