"""Bootstrap intervals over documents (ee_bench/uncertainty.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ee_bench.exits.oracle import first_match_layer, saturation_layer, summarize_layers
from ee_bench.exits.scoring import score_gate
from ee_bench.metrics.base import MetricInputs
from ee_bench.uncertainty import (
    Interval,
    exit_intervals,
    metric_intervals,
    percentile_interval,
    ratio_interval,
    resample_indices,
)

L = 4


def _docs(seed: int, lengths: list[int]):
    """Random per-layer top-1 (L, N) over documents of the given lengths, and a gate's layers."""
    g = torch.Generator().manual_seed(seed)
    top1 = torch.randint(0, 3, (L, sum(lengths)), generator=g)
    gate = torch.randint(0, L, (sum(lengths),), generator=g)
    return top1, gate


def test_resample_indices_are_seeded_and_in_range():
    a, b, c = resample_indices(5, 50, 7), resample_indices(5, 50, 7), resample_indices(5, 50, 8)
    assert a.shape == (50, 5) and a.min() >= 0 and a.max() <= 4
    assert (a == b).all() and not (a == c).all()
    with pytest.raises(ValueError):
        resample_indices(0, 10, 1)


def test_identical_documents_give_zero_width():
    top1_doc, gate_doc = _docs(0, [3])
    top1, gate = top1_doc.repeat(1, 4), gate_doc.repeat(4)  # 4 copies of one 3-token document
    fm, sat = first_match_layer(top1), saturation_layer(top1)
    out = exit_intervals(fm, sat, {0.5: gate}, top1, [3, 3, 3, 3], resample_indices(4, 200, 1))
    point = summarize_layers(fm, L)
    iv = out["oracle"]["first_match"]["avg"]
    assert iv["low"] == pytest.approx(point.avg) and iv["high"] == pytest.approx(point.avg)
    score = score_gate(0.5, gate, fm, top1)
    for stat in ("signed_distance", "abs_distance", "accuracy", "mean_layers_run", "implied_speedup"):
        got = out["gate_sweep"][0][stat]
        assert got["low"] == pytest.approx(getattr(score, stat)) == pytest.approx(got["high"])


def test_equals_reference_computed_on_concatenated_resamples():
    """Each resample's statistic is what summarize_layers / score_gate give on the resampled tokens."""
    lengths = [2, 5, 1, 3]
    top1, gate = _docs(3, lengths)
    fm, sat = first_match_layer(top1), saturation_layer(top1)
    idx = resample_indices(len(lengths), 40, 11)
    out = exit_intervals(fm, sat, {0.9: gate}, top1, lengths, idx)
    starts = np.cumsum([0, *lengths])
    ref = {"avg": [], "perc@1": [], "accuracy": [], "implied_speedup": [], "abs_distance": []}
    for row in idx:
        cols = torch.tensor([c for d in row for c in range(starts[d], starts[d + 1])])
        s = summarize_layers(sat[cols], L)  # saturation here, first-match below
        ref["avg"].append(s.avg)
        sc = score_gate(0.9, gate[cols], fm[cols], top1[:, cols])
        for k in ("accuracy", "implied_speedup", "abs_distance"):
            ref[k].append(getattr(sc, k))
    for key, got in (("avg", out["oracle"]["saturation"]["avg"]), ("accuracy", out["gate_sweep"][0]["accuracy"]),
                     ("implied_speedup", out["gate_sweep"][0]["implied_speedup"]),
                     ("abs_distance", out["gate_sweep"][0]["abs_distance"])):
        low, high = np.quantile(ref[key], [0.025, 0.975])
        assert got["low"] == pytest.approx(low) and got["high"] == pytest.approx(high), key
        assert got["n_resamples"] == 40 and got["level"] == 0.95 and got["method"] == "bootstrap"


def test_percentile_interval_by_hand():
    # 0..100: the 2.5 % and 97.5 % quantiles (linear interpolation) are 2.5 and 97.5.
    iv = percentile_interval(np.arange(101, dtype=float))
    assert (iv.low, iv.high, iv.half_width) == pytest.approx((2.5, 97.5, 47.5), abs=1e-12)
    assert iv.n_resamples == 101
    # undefined resamples (NaN) are dropped and not counted
    assert percentile_interval(np.array([1.0, np.nan, 1.0])) == Interval(1.0, 1.0, "bootstrap", 2, 0.95)


def test_ratio_interval_skips_resamples_without_tokens():
    idx = np.array([[0, 0], [1, 1], [0, 1]])  # the first resample holds only the empty document
    iv = ratio_interval(np.array([0.0, 6.0]), np.array([0.0, 3.0]), idx)
    assert iv.n_resamples == 2 and iv.low == iv.high == 2.0


def test_metric_intervals_mean_and_corpus_equal_reference():
    from sacrebleu.metrics import BLEU, CHRF

    from ee_bench.metrics.qa import token_f1

    preds = ["the cat sat", "a dog", "hello world", "green tea"]
    refs = [["the cat sat down"], ["the dog"], ["hello there world"], ["black coffee"]]
    inputs = MetricInputs(preds, refs, None, "en")
    idx = resample_indices(4, 30, 5)
    out, reasons = metric_intervals([{"metric": "token_f1"}, {"metric": "chrf"}, {"metric": "bleu"}, {"metric": "rouge1"}],
                                    inputs, {"token_f1": 1.0, "chrf": 1.0, "bleu": 1.0, "rouge1": None}, idx)
    # mean metric: the per-document scores, resampled
    per_doc = np.array([100 * token_f1(p, r[0]) for p, r in zip(preds, refs)])
    low, high = np.quantile(per_doc[idx].mean(axis=1), [0.025, 0.975])
    assert out["token_f1"]["low"] == pytest.approx(low) and out["token_f1"]["high"] == pytest.approx(high)
    assert out["token_f1"]["n_resamples"] == 30
    # sacrebleu metrics: every resample equals sacrebleu's corpus score of the resampled documents
    for name, scorer in (("chrf", CHRF()), ("bleu", BLEU())):
        ref = [scorer.corpus_score([preds[i] for i in row], [[refs[i][0] for i in row]]).score for row in idx]
        low, high = np.quantile(ref, [0.025, 0.975])
        assert out[name]["low"] == pytest.approx(low) and out[name]["high"] == pytest.approx(high), name
        assert out[name]["n_resamples"] == 30
    assert out["rouge1"] is None and "no value" in reasons["rouge1"]


def test_corpus_metric_without_fast_path_is_recomputed_on_the_first_rows():
    from sklearn.metrics import matthews_corrcoef

    gold, pred = [0, 1, 1, 0, 1, 0], [0, 1, 0, 0, 1, 1]
    inputs = MetricInputs(pred, [[g] for g in gold])
    idx = resample_indices(6, 50, 9)
    out, _ = metric_intervals([{"metric": "mcc"}], inputs, {"mcc": 0.3}, idx, n_resamples_corpus=7)
    ref = [matthews_corrcoef([gold[i] for i in row], [pred[i] for i in row]) for row in idx[:7]]
    low, high = np.quantile(ref, [0.025, 0.975])
    assert (out["mcc"]["low"], out["mcc"]["high"]) == pytest.approx((low, high))
    assert out["mcc"]["n_resamples"] == 7


def test_cli_writes_intervals_that_match_the_samples(tmp_path, capsys):
    from tiny_models import save_tiny_llama, write_tiny_task

    from ee_bench.cli import main

    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=4, max_gen_toks=5)
    out = tmp_path / "out"
    code = main(["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
                 "--include_path", str(tasks), "--gate", "confidence", "--output_path", str(out),
                 "--no-progress", "--device", "cpu", "--seed", "21"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(next(out.rglob("results_*.json")).read_text())
    rows = [json.loads(line) for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    iv = result["intervals"]
    assert (iv["seed"], iv["n_docs"], iv["n_resamples"], iv["level"]) == (21, 4, 1000, 0.95)
    per_doc_sum = np.array([sum(r["oracle_first_match"]) for r in rows], dtype=float)
    per_doc_n = np.array([len(r["oracle_first_match"]) for r in rows], dtype=float)
    idx = resample_indices(4, 1000, 21)
    low, high = np.quantile(per_doc_sum[idx].sum(1) / per_doc_n[idx].sum(1), [0.025, 0.975])
    got = iv["oracle"]["first_match"]["avg"]
    assert got["low"] == pytest.approx(low) and got["high"] == pytest.approx(high)
    assert [s["threshold"] for s in iv["gate_sweep"]] == [s["threshold"] for s in result["gate_sweep"]]
    assert iv["gate_at_threshold"]["threshold"] == result["threshold"]
    assert set(iv["metrics"]) == set(result["metrics"])


def test_document_scores_average_to_the_metric_value():
    from ee_bench.metrics.base import METRICS

    inputs = MetricInputs(["the cat sat on the mat", "a dog\nran"], [["the cat sat"], ["the dog ran\nfast"]])
    for name in ("rouge1", "rougeLsum", "token_f1"):
        metric = METRICS.get(name)()
        scores = metric.document_scores(inputs)
        assert len(scores) == 2 and sum(scores) / 2 == pytest.approx(metric.compute(inputs).value), name
    assert METRICS.get("bleu")().document_scores(inputs) is None  # corpus metric: no per-document scores
