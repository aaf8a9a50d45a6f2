"""Metric values against hand-worked numbers (each case shows its arithmetic) or the reference library."""

from __future__ import annotations

import math

import pytest

from ee_bench.metrics.base import METRICS, MetricInputs


def score(name: str, predictions, references, target_lang: str | None = "en", **options):
    return METRICS.get(name)(**options).compute(MetricInputs(predictions, references, target_lang=target_lang))


def bleu_by_hand(matches, totals, hyp_len, ref_len) -> float:
    """BLEU = BP · exp(mean log p_n) × 100 with BP = min(1, exp(1 − r/c)) (Papineni et al., 2002)."""
    bp = min(1.0, math.exp(1 - ref_len / hyp_len))
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals)) / 4)


# (case, hypothesis, references of the one document, target language, hand-worked BLEU)
BLEU_CASES = [
    # zh tokeniser splits every CJK character: hyp 我|喜|欢|吃|苹|果|。 (7), ref 我|很|喜|欢|吃|苹|果|。 (8).
    # n-gram matches 7/7, 5/6, 4/5, 3/4; BP = exp(1 − 8/7).
    ("zh", "我喜欢吃苹果。", ["我很喜欢吃苹果。"], "zh", bleu_by_hand([7, 5, 4, 3], [7, 6, 5, 4], 7, 8)),
    # ja-mecab: 私|は|猫|が|好き|です|。 vs 私|は|犬|が|好き|です|。 → 6/7, 4/6, 2/5, 1/4; BP = 1.
    ("ja", "私は猫が好きです。", ["私は犬が好きです。"], "ja", bleu_by_hand([6, 4, 2, 1], [7, 6, 5, 4], 7, 7)),
    # Two references: "a cat" only in B, "cat is" only in A → 6/6, 5/5, 3/4, 2/3 = 0.5^(1/4).
    ("multi-ref", "a cat is on the mat", ["the cat is on the mat", "a cat sits on the mat"], "en",
     bleu_by_hand([6, 5, 3, 2], [6, 5, 4, 3], 6, 6)),
    # Reference A alone: 5/6, 4/5, 3/4, 2/3 = (1/3)^(1/4).
    ("single-ref", "a cat is on the mat", ["the cat is on the mat"], "en", bleu_by_hand([5, 4, 3, 2], [6, 5, 4, 3], 6, 6)),
]


@pytest.mark.parametrize("case, hyp, refs, lang, expected", BLEU_CASES, ids=[c[0] for c in BLEU_CASES])
def test_bleu(case, hyp, refs, lang, expected):
    res = score("bleu", [hyp], [refs], target_lang=lang)
    assert res.value == pytest.approx(expected, abs=1e-6)
    sig = res.details["signature"]
    assert f"nrefs:{len(refs)}" in sig
    assert {"zh": "tok:zh", "ja": "tok:ja-mecab"}.get(lang, "tok:13a") in sig


def test_tokenised_lowercased_bleu_moses_pretokenises_outputs():
    # Output "Don't stop-now, Anna." → Moses: "don &apos;t stop @-@ now , anna ." equals the reference
    # (fairseq IWSLT14 style), so BLEU = 100; without pretokenising the output shares no 4-gram.
    ref = ["don &apos;t stop @-@ now , anna ."]
    res = score("bleu", ["Don't stop-now, Anna."], [ref], tokenize="none", lowercase=True, pretokenize="moses")
    assert res.value == pytest.approx(100.0)
    assert "tok:none" in res.details["signature"] and "case:lc" in res.details["signature"]
    assert "pre-tokenised" in res.details["note"] and "sacremoses" in res.details["pretokenize"]
    raw = score("bleu", ["Don't stop-now, Anna."], [ref], tokenize="none", lowercase=True)
    assert raw.value < 10


def test_chrf_equals_sacrebleu():
    from sacrebleu.metrics import CHRF

    hyps, refs = ["the cat sat", "a dog"], [["the cat sat down"], ["the dog"]]
    expected = CHRF().corpus_score(hyps, [[r[0] for r in refs]]).score
    assert score("chrf", hyps, refs).value == pytest.approx(expected, abs=1e-9)


# (metric, prediction, reference, hand-worked F-measure)
ROUGE_CASES = [
    # Same two sentences, swapped order. Lsum: each reference sentence is matched whole → P = R = 1.
    ("rougeLsum", "the cat sat\nthe dog ran", "the dog ran\nthe cat sat", 1.0),
    # ROUGE-L over the whole text: LCS = "the cat sat" (3 of 6 tokens each side) → F = 0.5.
    ("rougeL", "the cat sat\nthe dog ran", "the dog ran\nthe cat sat", 0.5),
    # Porter stemming: cats→cat, running→run.
    ("rouge1", "cats running", "cat run", 1.0),
    # Bigrams "the cat", "cat sat" vs "the cat", "cat ran": 1 of 2 each side → F = 0.5.
    ("rouge2", "the cat sat", "the cat ran", 0.5),
]


@pytest.mark.parametrize("name, pred, ref, f", ROUGE_CASES)
def test_rouge_cases(name, pred, ref, f):
    res = score(name, [pred], [[ref]])
    assert res.value == pytest.approx(100 * f)
    assert res.details["use_stemmer"] is True


def test_rouge_is_mean_of_document_fmeasures_and_best_reference():
    # doc 1: exact → 1.0; doc 2: "cat dog" vs "cat fish" → P = R = 1/2 → 0.5; mean = 0.75.
    assert score("rouge1", ["the cat", "cat dog"], [["the cat"], ["cat fish"]]).value == pytest.approx(75.0)
    # Two references: the better one (exact) counts.
    assert score("rouge1", ["cat dog"], [["cat fish", "cat dog"]]).value == pytest.approx(100.0)


def test_classification_metrics_on_a_hand_made_confusion():
    # gold 1 1 1 1 0 0 0 0 0 0, pred 1 1 1 0 1 1 0 0 0 0 → TP 3, FN 1, FP 2, TN 4.
    gold = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    pred = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    refs = [[g] for g in gold]
    mcc = (3 * 4 - 2 * 1) / math.sqrt((3 + 2) * (3 + 1) * (4 + 2) * (4 + 1))  # 10 / √600
    assert score("mcc", pred, refs).value == pytest.approx(mcc)
    assert score("acc", pred, refs).value == pytest.approx(7 / 10)
    assert score("f1", pred, refs).value == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    with pytest.raises(ValueError, match="exactly one"):
        score("acc", [1], [[1, 0]])


def test_narrativeqa_token_f1_best_of_two_answers():
    answers = ["They set up a school.", "They are schoolmistresses."]
    # doc 1: "sisters run school" vs "they set up school": 1 common, P = 1/3, R = 1/4 → F = 2/7;
    #        vs the second answer: 0 → best 2/7.
    # doc 2: "schoolmistresses" vs "they are schoolmistresses": P = 1, R = 1/3 → F = 1/2.
    res = score("token_f1", ["The sisters run a school", "Schoolmistresses!"], [answers, answers])
    assert res.value == pytest.approx(100 * (2 / 7 + 1 / 2) / 2)


def test_every_metric_declares_direction_unit_aggregation():
    for name in ["bleu", "chrf", "comet22", "rouge1", "rouge2", "rougeL", "rougeLsum", "token_f1", "acc", "f1", "mcc"]:
        d = METRICS.get(name).describe()
        assert d["higher_is_better"] is True
        assert d["unit"] in ("points", "fraction", "coefficient")
        assert d["aggregation"] in ("corpus", "mean")


def test_details_never_shadow_the_declared_direction_unit_aggregation():
    # Results files merge describe() and details into one mapping; a details key must not overwrite them.
    cases = {"bleu": (["a b c d"], [["a b c d"]]), "chrf": (["a b"], [["a b"]]), "rouge1": (["a"], [["a"]]),
             "rougeLsum": (["a"], [["a"]]), "token_f1": (["a"], [["a"]]), "acc": ([1], [[1]]), "f1": ([1], [[1]]),
             "mcc": ([1, 0], [[1], [0]]), "comet22": (["a"], [["a"]])}
    for name, (pred, refs) in cases.items():
        res = METRICS.get(name)().compute(MetricInputs(pred, refs, target_lang="en"))
        assert not set(res.details) & {"higher_is_better", "unit", "aggregation"}, name
