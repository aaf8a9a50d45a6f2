"""Cost model (issue 22): the oracle ceiling and the predicted speed-up worked out by hand on a toy
profile, FLOPs by hand, profile checks, ``ee-bench cost`` bad input (exit 2 before any timing), and a
measured profile of the tiny model (its structure; no timing assertion)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import AlwaysGate, NeverGate, tiny_llama

from ee_bench.cli import main
from ee_bench.costs.flops import ACCELERATORS, Shape, block_bytes, block_flops, head_flops, roofline_ms
from ee_bench.costs.predict import TokenWork, ceiling, full_depth_ms, predicted_speedup, run_ms, run_work, token_ms
from ee_bench.costs.profile import PROFILE_SCHEMA, CostProfile, ProfileError, load_profile, profile_from_dict
from ee_bench.exits.scoring import score_gate

# 3 layers; block 2 ms (k = 1), head 6 ms; full check 7 ms, state check 0.1 ms; copy 0.5 ms per fill
TOY = CostProfile(model="toy", device="cpu", dtype="float32", threads=1, source="measured", n_layers=3,
                  block_ms={16: {1: 2.0, 2: 2.0, 4: 3.0, 8: 5.0}, 64: {1: 4.0, 2: 4.0, 4: 5.0, 8: 7.0}},
                  prefill_block_ms={16: 3.0, 64: 9.0}, head_ms={1: 6.0, 2: 6.0, 4: 7.0, 8: 9.0},
                  check_ms={"full": 7.0, "state": 0.1, "topk:4": 0.5}, kv_ms={"copy": 0.5})
FIRST_MATCH = [0, 1, 2, 0]  # avg 0.75


def toy_result(gate_layers=(0, 1, 2, 0), gate="confidence", kv=None, check="full") -> dict:
    g = torch.tensor(gate_layers)
    top1 = torch.zeros((3, len(gate_layers)), dtype=torch.long)
    score = score_gate(0.9, g, torch.tensor(FIRST_MATCH), top1).to_dict()
    return {"gate": gate, "threshold": 0.9, "config": {"kv": kv, "check": check}, "gate_sweep": [score],
            "oracle": {"first_match": {"avg": sum(FIRST_MATCH) / 4, "n_layers": 3}}}


def test_ceiling_by_hand():
    # per token: exit at m costs (m+1)·2 + 6: 8, 10, 12, 8 -> mean 9.5; full depth 3·2 + 6 = 12
    assert full_depth_ms(TOY) == 12.0
    assert ceiling(TOY, 0.75) == pytest.approx(12 / 9.5)
    out = predicted_speedup(toy_result(), TOY)
    assert out["ceiling"]["per_token"] == pytest.approx(24 / 19)


def test_mean_checks_by_hand():
    s = score_gate(0.9, torch.tensor([0, 1, 2, 0]), torch.tensor(FIRST_MATCH), torch.zeros((3, 4), dtype=torch.long))
    assert s.mean_layers_run == pytest.approx(1.75)
    assert s.mean_checks == pytest.approx((1 + 2 + 2 + 1) / 4)  # no check at the last layer


def test_predicted_full_check_by_hand():
    # g=0: 2 + 7 (head reused) = 9; g=1: 4 + 14 = 18; g=2: 6 + 14 + 6 = 26; g=0: 9 -> mean 15.5
    out = predicted_speedup(toy_result(), TOY)
    assert out["at_threshold"] == {"threshold": 0.9, "per_token": pytest.approx(12 / 15.5)}
    assert out["sweep"][0]["per_token"] == pytest.approx(12 / 15.5)
    assert out["profile"] == {"model": "toy", "device": "cpu", "dtype": "float32", "threads": 1, "source": "measured",
                              "block_ms": 2.0, "head_ms": 6.0, "head_in_blocks": 3.0}
    # copy fills L−1−g: 2, 1, 0, 2 -> 1.25 per token × 0.5 ms
    out = predicted_speedup(toy_result(kv="copy,recompute"), TOY)
    assert out["kv"] == "copy" and out["at_threshold"]["per_token"] == pytest.approx(12 / (15.5 + 0.625))


def test_predicted_state_and_topk_by_hand():
    # state: every token pays one head; g=0: 2 + .1 + 6; g=1: 4 + .2 + 6; g=2: 6 + .2 + 6 -> mean 9.65
    out = predicted_speedup(toy_result(gate="state"), TOY)
    assert out["check"] == "state" and out["at_threshold"]["per_token"] == pytest.approx(12 / 9.65)
    # topk:4: first check full (7), later ones 0.5, one head each: g=0: 2+7+6=15; g=1: 4+7.5+6=17.5;
    # g=2: 6+7.5+6=19.5 -> mean (15+17.5+19.5+15)/4 = 16.75
    work = TokenWork(layers_run=1.75, checks=1.5)
    assert token_ms(TOY, work, "topk:4") == pytest.approx(16.75)


def test_interpolation_by_hand():
    assert TOY.block(1, 40) == pytest.approx(3.0)  # halfway between contexts 16 (2 ms) and 64 (4 ms)
    assert TOY.block(3, 16) == pytest.approx(2.5)  # halfway between k = 2 and 4
    assert TOY.block(1, 1000) == pytest.approx(4.0)  # held at the last context
    assert TOY.prefill(40) == pytest.approx(6.0)


def test_run_work_by_hand():
    # one prompt of 16 tokens, 3 tokens generated, copy: first token in the prompt pass (3 blocks + head),
    # then tokens exit at 0 and at 2: blocks 1 + 3 = 4, full checks 1 + 2 = 3, one emit head, fills 2
    counts = {"tokens": 3, "token_layers": 3 + 4, "catchup_token_layers": 0, "kv_fill_token_layers": 2,
              "gate_checks": 3, "restricted_checks": 0, "head_rows": 1 + 3 + 1}
    w = run_work(counts, 3, "copy", "full", [16])
    assert w.blocks == {1: 4} and w.heads == {1: 1} and w.checks == {"full": 3} and w.kv_fills == 2
    # context 16 + 3/2 -> block 2 + (17.5−16)/48·2 = 2.0625 ms
    b = 2 + 1.5 / 48 * 2
    assert run_ms(TOY, w) == pytest.approx(3 * 3.0 + 6 + 4 * b + 6 + 3 * 7 + 2 * 0.5)


# the same toy with a head that blocks push out of the cache: 7 ms after 1 block, 9 ms after 3 (6 back to
# back): the extra p(g) is 1, 2 (interpolated), 3 ms after g = 1, 2, 3 blocks
COLD = CostProfile(**{**TOY.__dict__, "head_after_ms": {1: 7.0, 3: 9.0}})


def test_cold_head_by_hand():
    assert [COLD.cold_head(g) for g in (1, 2, 3, 30)] == [1.0, 2.0, 3.0, 3.0] and TOY.cold_head(3) == 0.0
    assert full_depth_ms(COLD) == 3 * 2 + 6 + 3  # the head after all 3 blocks
    # ceiling: exit at m costs (m+1)·2 + 6 + p(m+1): 9, 12, 15, 9 -> mean 11.25
    assert ceiling(COLD, 0.75) == pytest.approx(15 / 11.25)
    # full checks, each 1 block after the previous head call: 7 + p(1) = 8; g=0: 2 + 8 = 10; g=1: 4 + 16 = 20;
    # g=2: 6 + 16 + (6 + p(1)) = 29; g=0: 10 -> mean 17.25
    assert predicted_speedup(toy_result(), COLD)["at_threshold"]["per_token"] == pytest.approx(15 / 17.25)
    # state: the emitted head comes after the token's own blocks: g=0: 2+.1+6+1; g=1: 4+.2+6+2; g=2: 6+.2+6+3
    assert predicted_speedup(toy_result(gate="state"), COLD)["at_threshold"]["per_token"] == pytest.approx(
        15 / ((9.1 + 12.2 + 15.2 + 9.1) / 4))
    # a measured run: the loop's gaps (as read back from JSON: string keys) and the prompt pass's head p(3)
    counts = {"tokens": 3, "token_layers": 7, "catchup_token_layers": 0, "kv_fill_token_layers": 2,
              "gate_checks": 3, "restricted_checks": 0, "head_rows": 5, "head_gaps": {"1": 3, "3": 1}}
    w = run_work(counts, 3, "copy", "full", [16])
    assert w.head_gaps == {1: 3.0, 3: 1.0}
    assert run_ms(COLD, w) == pytest.approx(run_ms(TOY, w) + 3 * 1 + 1 * 3 + 3)
    assert profile_from_dict(json.loads(json.dumps(COLD.to_dict()))).head_after_ms == {1: 7.0, 3: 9.0}


@pytest.mark.parametrize("needs_head", [True, False])
def test_loop_counts_head_gaps_by_hand(needs_head):
    """4 blocks, exit layer 1 only, min_prefix 2: output token 1 runs all 4 blocks and reads one head after
    them (gap 4); every later token reads one head at layer 1 (its check's, or its emitted token's for a
    head-free gate), 2 blocks after the previous token's head (gap 2). The prompt pass's head is not counted."""
    from tiny_models import prompt_ids

    from ee_bench.decoding.early_exit import EarlyExitDecoder

    lm = tiny_llama()
    res = EarlyExitDecoder(lm).decode(prompt_ids(lm)[:1], AlwaysGate(needs_head), 0.5, "copy", (), 6, exit_layers=[1],
                                      min_prefix=2)
    exits = list(res.traces[0].exit_layers)
    assert exits[:2] == [3, 3] and set(exits[2:]) == {1}
    assert res.counts.head_gaps == {4: 1, 2: len(exits) - 2}


def test_loop_counts_dense_checks_one_block_apart():
    """Exits at every layer, a gate that never fires: per token three checks (layers 0, 1, 2) and the head
    after block 3, each one block after the previous head call."""
    from tiny_models import prompt_ids

    from ee_bench.decoding.early_exit import EarlyExitDecoder

    lm = tiny_llama()
    res = EarlyExitDecoder(lm).decode(prompt_ids(lm)[:1], NeverGate(), 0.5, "copy", (), 5, min_prefix=0)
    n = len(res.traces[0].exit_layers) - 1  # the first token came from the prompt pass
    assert res.counts.head_gaps == {1: 4 * n}


def test_flops_by_hand():
    s = Shape(n_layers=2, hidden=8, intermediate=16, heads=2, kv_heads=1, vocab=10)  # D = 4, kv dim 4
    # 2·(2·64 + 2·8·4) + 6·8·16 = 2·192 + 768 = 1152 per token; attention 4·2·4·(3+1) = 128
    assert block_flops(s, 1, 3) == 1152 + 128
    assert head_flops(s, 2) == 2 * 2 * 8 * 10
    # params 2·64 + 2·8·4 + 3·8·16 + 2·8 = 128 + 64 + 384 + 16 = 592; kv 2·1·4·(3+1) = 32; bf16
    assert block_bytes(s, "bfloat16", 1, 3) == 2 * (592 + 32)
    acc = ACCELERATORS["h100-80gb"]
    assert roofline_ms(989.4e12, 0, acc, "bfloat16") == pytest.approx(1e3)
    assert roofline_ms(0, 3.35e12, acc, "bfloat16") == pytest.approx(1e3)


def test_profile_round_trip_and_refusals(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps(TOY.to_dict()))
    assert load_profile(p, "toy").block_ms == TOY.block_ms
    with pytest.raises(ProfileError, match="is for model 'toy', not 'other'"):
        load_profile(p, "other")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match="corrupt"):
        load_profile(bad)
    d = TOY.to_dict()
    d["head_ms"]["1"] = "fast"
    with pytest.raises(ProfileError, match=r"head_ms\[1\]"):
        profile_from_dict(d)
    assert TOY.to_dict()["schema"] == PROFILE_SCHEMA


@pytest.mark.parametrize("argv, words", [
    (["--threads", "0"], "--threads must be"),
    (["--roofline", "tpu-v9"], "unknown --roofline device"),
    (["--contexts", "32"], "--contexts must be"),
])
def test_cost_bad_input_exits_2(argv, words, capsys):
    assert main(["cost", "--model", "llama2-7b-ee", *argv]) == 2
    assert words in capsys.readouterr().err


def test_cost_bad_profile_files_exit_2(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps(TOY.to_dict()))
    assert main(["cost", "--model", "llama2-7b-ee", "--profile", str(other)]) == 2
    assert "is for model 'toy'" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("[1, 2")
    assert main(["cost", "--model", "llama2-7b-ee", "--profile", str(corrupt)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_cost_card_without_config_exits_2(capsys):
    assert main(["cost", "--model", "llama3.1-8b-ee", "--roofline", "h100-80gb"]) == 2
    assert "no config available offline" in capsys.readouterr().err


def test_roofline_from_shipped_config(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["cost", "--model", "llama2-7b-ee", "--roofline", "a100-80gb", "--output", str(out)]) == 0
    prof = load_profile(out, "llama2-7b-ee")
    assert prof.n_layers == 32 and prof.source == "estimated-roofline:a100-80gb"
    # head: 2 bytes × (32000 × 4096 + 4096) / 2.039e12 B/s (memory-bound)
    assert prof.head(1) == pytest.approx(1e3 * 2 * (32000 * 4096 + 4096) / 2039e9)
    text = capsys.readouterr().out
    assert "head in blocks" in text and "Table 2" in text and "estimated (roofline)" in text


def test_measured_profile_of_tiny_model():
    from ee_bench.decoding.cost_profile import measure_profile

    lm = tiny_llama()
    prof = measure_profile(lm, "tiny", dtype="float32", contexts=(4, 8), repeats=1)
    assert prof.n_layers == 4 and prof.contexts == [4, 8] and sorted(prof.head_ms) == [1, 2, 4, 8]
    assert sorted(prof.check_ms) == ["full", "state", "topk:16"] and sorted(prof.kv_ms) == ["copy", "recompute"]
    assert sorted(prof.head_after_ms) == [1, 2, 4]  # gaps up to the 4 blocks built
    assert prof.flops == {} and prof.threads == torch.get_num_threads()


def _toy4(model: str) -> dict:
    d = TOY.to_dict()
    d.update(model=model, n_layers=4)
    return d


def test_run_writes_predicted_speedup(tmp_path, capsys):
    from tiny_models import save_tiny_llama, write_tiny_task

    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=3, max_gen_toks=5)
    argv = ["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
            "--include_path", str(tasks), "--gate", "confidence", "--limit", "2", "--no-progress", "--device", "cpu"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_toy4("someone-else")))
    out = tmp_path / "out"
    assert main([*argv, "--output_path", str(out), "--cost-profile", str(other)]) == 2  # before the model loads
    assert "is for model 'someone-else'" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--output_path", str(out), "--cost-profile", "none"]) == 0
    name = json.loads(next(out.rglob("results_*.json")).read_text())["model"]
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(_toy4(name)))
    assert main([*argv, "--output_path", str(out), "--cost-profile", str(prof), "--no-resume"]) == 0
    assert "oracle ceiling" in capsys.readouterr().out
    result = json.loads(next(out.rglob("results_*.json")).read_text())
    pred = result["predicted_speedup"]
    avg, ctx = result["oracle"]["first_match"]["avg"], pred["context_tokens"]
    b, h = TOY.block(1, ctx), 6.0
    assert pred["ceiling"]["per_token"] == pytest.approx((4 * b + h) / ((avg + 1) * b + h))
    assert [p["threshold"] for p in pred["sweep"]] == [s["threshold"] for s in result["gate_sweep"]]
    assert pred["at_threshold"]["threshold"] == result["threshold"]


def test_rescore_adds_predicted(tmp_path, capsys):
    from tiny_models import save_tiny_llama, write_tiny_task

    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=2, max_gen_toks=4)
    out = tmp_path / "out"
    assert main(["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
                 "--include_path", str(tasks), "--gate", "confidence", "--limit", "2", "--no-progress",
                 "--device", "cpu", "--output_path", str(out), "--cost-profile", "none"]) == 0
    res = json.loads(next(out.rglob("results_*.json")).read_text())
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(_toy4(res["model"])))
    dump = tmp_path / "rescored.json"
    assert main(["rescore", str(out), "--gate", "confidence", "--cost-profile", str(prof), "--output", str(dump)]) == 0
    pred = json.loads(dump.read_text())["runs"][0]["predicted_speedup"]
    avg = res["oracle"]["first_match"]["avg"]  # shortest context (16): b = 2, h = 6
    assert pred["ceiling"]["per_token"] == pytest.approx((4 * 2 + 6) / ((avg + 1) * 2 + 6))
    assert main(["rescore", str(out), "--gate", "confidence", "--cost-profile", str(tmp_path / "nope.json")]) == 2


def test_encoder_prediction_by_hand():
    """benchmarks/encoder_cost_check.py: two examples exiting at 0 and 2 of L = 3; embed 1 ms, block 3 / 2 ms,
    head .6 / .5 ms, check .2 / .1 ms for 2 / 1 rows: layer 0 (2 rows) 3 + .6 + .2, layer 1 (1 row) 2 + .5 + .1,
    layer 2 (1 row, no check at the last layer) 2 + .5 -> 1 + 3.8 + 2.6 + 2.5 = 9.9 ms."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "encoder_cost_check.py"
    spec = importlib.util.spec_from_file_location("encoder_cost_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pieces = {"embed": 1.0, "block": {1: 2.0, 2: 3.0}, "head": {1: 0.5, 2: 0.6}, "check": {1: 0.1, 2: 0.2},
              "context": {1: 0.0, 2: 0.0}}
    assert mod.predicted_ms([0, 2], 3, True, pieces) == pytest.approx(9.9)
    assert mod.predicted_ms([2, 2], 3, False, pieces) == pytest.approx(1 + 3 * 3.6)  # full depth, no checks
    # the mask: 0.4 ms for 2 rows at the start, 0.3 ms for the 1 row left after layer 0
    pieces["context"] = {1: 0.3, 2: 0.4}
    assert mod.predicted_ms([0, 2], 3, True, pieces) == pytest.approx(9.9 + 0.4 + 0.3)
    assert mod._interp({1: 2.0, 4: 5.0}, 2) == pytest.approx(3.0)
