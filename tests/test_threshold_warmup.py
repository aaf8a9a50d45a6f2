"""The threshold warm-up (stop 24): τ_k = τ + (τ_strict − τ)·exp(−k / W) for the k-th token that may
exit, checked by hand in the formula, in the exit schedule and in the decoding loop of a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import N_LAYERS, prompt_ids, tiny_llama

from ee_bench.decoding.early_exit import EarlyExitDecoder
from ee_bench.errors import DecodingOptionError
from ee_bench.exits.classifier_gate import ClassifierGate
from ee_bench.exits.decide import ExitSchedule, check_threshold_warmup, warmed_threshold
from ee_bench.exits.gates import GATES
from ee_bench.training.exit_classifier import CONSTANT_LOGIT


def test_warmed_threshold_by_hand():
    assert warmed_threshold(0.5, 1.0, 4.0, 0) == 1.0  # the first token that may exit: the strictest τ
    assert warmed_threshold(0.5, 1.0, 4.0, 4) == pytest.approx(0.5 + 0.5 / math.e)  # 0.68394
    assert warmed_threshold(0.5, 1.0, 4.0, 8) == pytest.approx(0.5 + 0.5 * math.exp(-2))  # 0.56767
    assert warmed_threshold(0.5, 1.0, 0.0, 0) == 0.5  # W = 0: constant
    assert warmed_threshold(1.0, 0.0, 2.0, 2) == pytest.approx(1.0 - 1.0 / math.e)  # entropy: strictest 0 nats


def test_schedule_threshold_counts_tokens_after_the_prefix():
    s = ExitSchedule.build(N_LAYERS, "confidence", 0.6, min_prefix=4, warmup=2.0)
    assert s.threshold_at(4) == 1.0
    assert s.threshold_at(6) == pytest.approx(0.6 + 0.4 / math.e)  # 0.74715
    assert s.threshold_at(None) == 0.6  # offline: τ itself
    assert ExitSchedule.build(N_LAYERS, "confidence", 0.6).threshold_at(4) == 0.6  # no warm-up


def test_warmup_refusals():
    with pytest.raises(DecodingOptionError, match="is not a number of tokens"):
        ExitSchedule.build(N_LAYERS, "confidence", 0.6, warmup=-1.0)
    with pytest.raises(DecodingOptionError, match="strictest threshold"):
        ExitSchedule.build(N_LAYERS, "patience", 2, warmup=4.0)
    with pytest.raises(DecodingOptionError, match="strictest threshold"):
        check_threshold_warmup(4.0, GATES.get("patience"))
    assert check_threshold_warmup(0.0, GATES.get("patience")()) == 0.0  # no warm-up: any gate


@pytest.mark.parametrize("kv", ["copy", "recompute"])
def test_decoding_loop_follows_the_warmed_threshold(kv):
    """Layer 1's probe is constant at σ(ln 4) = 0.8, layer 0's never fires. τ = 0.5, W = 4, min_prefix 0:
    τ_1 = 0.5 + 0.5·e^(−1/4) = 0.889, τ_2 = 0.5 + 0.5·e^(−1/2) = 0.803 (> 0.8: no exit), τ_3 = 0.736 (exit).
    Token 0 comes from the prompt pass (full depth). Without the warm-up, tokens 1… exit at layer 1."""
    model = tiny_llama()
    H = model.describe()["hidden_size"]
    gate = ClassifierGate({0: (torch.zeros(H), -CONSTANT_LOGIT), 1: (torch.zeros(H), math.log(4.0))}, N_LAYERS)
    dec = EarlyExitDecoder(model)
    prompts = prompt_ids(model)[:2]
    warm = dec.decode(prompts, gate, 0.5, kv, (), 6, min_prefix=0, threshold_warmup=4.0)
    flat = dec.decode(prompts, gate, 0.5, kv, (), 6, min_prefix=0)
    full = N_LAYERS - 1
    for w, f in zip(warm.traces, flat.traces):
        n = len(w.exit_layers)
        assert n == 6 and list(w.exit_layers) == [full, full, full, 1, 1, 1]
        assert list(f.exit_layers) == ([full] + [1] * 5)[: len(f.exit_layers)]


def test_threshold_warmup_end_to_end(tmp_path, capsys):
    """``ee-bench --kv copy --threshold-warmup 4`` with the constant probes above (τ 0.5, min_prefix 0):
    every document's tokens 0, 1, 2 run at full depth (layer 3) and later ones exit at layer 1; the
    samples and the measured report record W; the calibration sweep holds W fixed and records it."""
    import json

    from tiny_models import save_tiny_llama, write_tiny_task

    from ee_bench.cli import main
    from ee_bench.decoding.calibration import calibrate
    from ee_bench.exits.classifier_gate import save_classifier

    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=5, max_gen_toks=6)
    model = tiny_llama()
    H = model.describe()["hidden_size"]
    probes = tmp_path / "probes.json"
    save_classifier(probes, {0: (torch.zeros(H), -CONSTANT_LOGIT), 1: (torch.zeros(H), math.log(4.0))}, N_LAYERS, H, {})
    out = tmp_path / "out"
    code = main(["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
                 "--include_path", str(tasks), "--gate", "classifier", "--gate-file", str(probes), "--threshold", "0.5",
                 "--limit", "3", "--output_path", str(out), "--kv", "copy", "--min-prefix", "0",
                 "--threshold-warmup", "4", "--speedup-repeats", "1", "--no-progress", "--device", "cpu"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "decoded at τ 0.5, threshold warm-up 4 tokens" in printed.out
    result = json.loads(next(out.rglob("results_*.json")).read_text())
    rep = result["measured_speedup"]["copy"]
    assert rep["threshold_warmup"] == 4.0 and result["config"]["threshold_warmup"] == 4.0
    rows = [json.loads(line) for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    assert len(rows) == 3
    assert max(len(r["early_exit"]["traces"]["copy"]["exit_layers"]) for r in rows) >= 4  # past the warm-up
    for row in rows:
        ee = row["early_exit"]
        assert ee["threshold_warmup"] == 4.0
        exits = ee["traces"]["copy"]["exit_layers"]
        assert exits == ([N_LAYERS - 1] * 3 + [1] * 3)[: len(exits)]
    dec = EarlyExitDecoder(model)
    cal = calibrate(dec, prompt_ids(model)[:2], [["a"], ["b"]], [0, 1], ClassifierGate.load(probes), "copy", (), 6,
                    min_prefix=0, grid=(0.5,), threshold_warmup=4.0)
    assert cal.to_dict()["threshold_warmup"] == 4.0 and cal.points[0].tokens == 12
