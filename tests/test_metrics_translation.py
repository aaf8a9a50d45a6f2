"""ee-bench's BLEU and chrF equal sacrebleu's own corpus_bleu / corpus_chrf on the same strings,
with the WMT tokeniser of the target language (zh, ja-mecab, 13a) and one or two references."""

from __future__ import annotations

import pytest
import sacrebleu

from ee_bench.metrics.base import METRICS, MetricInputs
from ee_bench.metrics.translation import bleu_tokenizer

# (case, target language, sacrebleu tokeniser, hypotheses, references: N docs × R refs) — team-written.
CASES = [
    ("en-1ref", "en", "13a",
     ["The train leaves an hour later today.", "My sister works in a small hospital."],
     [["The train to Hamburg leaves an hour later today."], ["My sister works as a doctor in a small hospital."]]),
    ("en-2ref", "en", "13a",
     ["The train leaves an hour later today.", "Can you pass me the salt, please?"],
     [["The train to Hamburg leaves an hour later today.", "Today the train departs one hour late."],
      ["Can you please pass me the salt?", "Could you pass the salt, please?"]]),
    ("zh-2ref", "zh", "zh",
     ["今天火车晚一个小时出发。", "我姐姐在一家小医院工作。"],
     [["去汉堡的火车今天晚一个小时出发。", "今天的火车推迟一小时开。"],
      ["我姐姐在一家小医院当医生。", "我的姐姐在小医院工作。"]]),
    ("ja-1ref", "ja", "ja-mecab",
     ["電車は今日一時間遅れて出発します。", "姉は小さな病院で働いています。"],
     [["ハンブルク行きの電車は今日一時間遅れて出発します。"], ["姉は小さな病院で医者として働いています。"]]),
    ("ja-2ref", "ja", "ja-mecab",
     ["塩を取ってください。", "図書館は九時に開きます。"],
     [["塩を取ってくれますか。", "塩を渡してください。"], ["図書館は九時に開館します。", "図書館の開館は九時です。"]]),
]


def streams(refs: list[list[str]]) -> list[list[str]]:
    return [list(s) for s in zip(*refs)]  # R streams × N docs, sacrebleu's layout


def compute(name: str, hyps, refs, lang):
    return METRICS.get(name)().compute(MetricInputs(hyps, refs, target_lang=lang))


@pytest.mark.parametrize("case, lang, tok, hyps, refs", CASES, ids=[c[0] for c in CASES])
def test_bleu_equals_sacrebleu(case, lang, tok, hyps, refs):
    assert bleu_tokenizer(lang) == tok
    ours = compute("bleu", hyps, refs, lang)
    theirs = sacrebleu.corpus_bleu(hyps, streams(refs), tokenize=tok)
    assert ours.value == theirs.score  # same library, same inputs: identical
    assert f"tok:{tok}" in ours.details["signature"]
    assert f"nrefs:{len(refs[0])}" in ours.details["signature"]


@pytest.mark.parametrize("case, lang, tok, hyps, refs", CASES, ids=[c[0] for c in CASES])
def test_chrf_equals_sacrebleu(case, lang, tok, hyps, refs):
    ours = compute("chrf", hyps, refs, lang)
    theirs = sacrebleu.corpus_chrf(hyps, streams(refs))
    assert ours.value == theirs.score
    assert f"nrefs:{len(refs[0])}" in ours.details["signature"]


def test_tokeniser_matters_for_chinese():
    """Without the zh tokeniser a CJK sentence is one "word": BLEU would differ (here: be 0)."""
    hyps, refs = CASES[2][3], CASES[2][4]
    assert compute("bleu", hyps, refs, "zh").value > 0
    assert sacrebleu.corpus_bleu(hyps, streams(refs), tokenize="13a").score == 0.0


def test_two_references_score_at_least_one():
    hyps, refs = CASES[1][3], CASES[1][4]
    both = compute("bleu", hyps, refs, "en").value
    only_a = compute("bleu", hyps, [[r[0]] for r in refs], "en").value
    assert both >= only_a


def test_uneven_reference_counts_are_refused():
    with pytest.raises(ValueError, match="same, non-zero number of references"):
        compute("bleu", ["a", "b"], [["a"], ["b", "c"]], "en")


def test_prediction_reference_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in length"):
        compute("chrf", ["a", "b"], [["a"]], "en")
