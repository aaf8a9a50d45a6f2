"""benchmarks/add_predicted.py (issue 22): predicted speed-up and ceiling added to results files that predate
the cost model, checked against a hand computation on a toy profile; an architecture twin's profile is
used and recorded, a mismatched architecture is refused with nothing written; the profile's recorded
architecture (``ee-bench cost``) and the run's mean context, by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ee_bench.cli import main
from ee_bench.costs.predict import mean_context
from ee_bench.costs.profile import CostProfile, load_profile
from ee_bench.leaderboard_fields import predicted_profile

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "add_predicted.py"
ARCH = {"model_type": "llama", "n_layers": 3, "hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
        "num_key_value_heads": 1, "vocab_size": 32}
# 3 layers; block (k = 1) 2 ms at 16 cached tokens, 4 ms at 64; head 6 ms; full check 7 ms
TOY = CostProfile(model="toy", device="cpu", dtype="float32", threads=1, source="measured", n_layers=3,
                  block_ms={16: {1: 2.0, 2: 2.0, 4: 3.0, 8: 5.0}, 64: {1: 4.0, 2: 4.0, 4: 5.0, 8: 7.0}},
                  prefill_block_ms={16: 3.0, 64: 9.0}, head_ms={1: 6.0, 2: 6.0, 4: 7.0, 8: 9.0},
                  check_ms={"full": 7.0, "state": 0.1}, kv_ms={"copy": 0.5}, architecture=ARCH)
INFO = {"name": "toy", "model_type": "llama", "n_layers": 3, "hidden_size": 8, "vocab_size": 32,
        "dtype": "torch.float32", "device": "cpu", "chat_template": False, "eos_token_ids": [2]}


def write_run(folder: Path, model: str, info: dict | None = None, sweep: bool = True) -> Path:
    """A results file of ``model`` (first-match avg 0.5 of L = 3; sweep τ 0.9: 2.0 layers run, 1.5 checks;
    τ 0.5: 1.0 and 1.0) and its samples file: prompts of 30 and 44 tokens, outputs of 4 and 8."""
    folder = folder / model
    folder.mkdir(parents=True)
    res = {"schema": "ee-bench/results/v1", "model": model, "task": "toy_task", "gate": "confidence",
           "threshold": 0.9, "metrics": {"chrf": 10.0}, "n_docs": {"evaluated": 2, "total": 2},
           "oracle": {"first_match": {"avg": 0.5, "perc": 100.0, "n_layers": 3},
                      "saturation": {"avg": 0.5, "perc": 100.0, "n_layers": 3}},
           "gate_sweep": [{"threshold": 0.9, "mean_layers_run": 2.0, "mean_checks": 1.5, "implied_speedup": 1.5},
                          {"threshold": 0.5, "mean_layers_run": 1.0, "mean_checks": 1.0, "implied_speedup": 3.0}]
           if sweep else [],
           "gate_at_threshold": {"threshold": 0.9, "mean_layers_run": 2.0},
           "config": {"kv": None, "check": None}, "model_info": info or dict(INFO, name=model),
           "samples_file": "samples_toy_task_confidence.jsonl"}
    path = folder / "results_toy_task_confidence.json"
    path.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    rows = [{"doc_id": 0, "prompt_token_ids": list(range(30)), "output_token_ids": [5] * 4},
            {"doc_id": 1, "prompt_token_ids": list(range(44)), "output_token_ids": [5] * 8}]
    (folder / res["samples_file"]).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_script(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def profiles(tmp_path) -> Path:
    folder = tmp_path / "costs"
    folder.mkdir()
    (folder / "toy.json").write_text(json.dumps(TOY.to_dict()), encoding="utf-8")
    return folder


def test_mean_context_by_hand():
    assert mean_context([30, 44], [4, 8]) == (30 + 2 + 44 + 4) / 2 == 40.0
    assert mean_context([], []) is None


def test_architecture_problems():
    assert TOY.architecture_problems(INFO) == []
    assert TOY.architecture_problems({**INFO, "hidden_size": 16}) == ["hidden_size: run 16, profile 8"]
    assert TOY.architecture_problems({**INFO, "dtype": "torch.bfloat16", "device": "cuda:0"}) == [
        "dtype: run 'bfloat16', profile 'float32'", "device: run 'cuda', profile 'cpu'"]
    assert TOY.architecture_problems({k: v for k, v in INFO.items() if k != "vocab_size"}) == [
        "the run's model_info records no vocab_size"]
    bare = replace(TOY, architecture={})
    assert bare.architecture_problems(INFO) != []  # a profile that records no architecture proves no fit


def test_writes_hand_computed_numbers_and_twin(tmp_path, profiles):
    board = tmp_path / "board"
    own, twin = write_run(board, "toy"), write_run(board, "toy-joint")
    encoder = write_run(board, "enc", info={"name": "enc", "model_type": "bert", "n_layers": 3, "n_labels": 2,
                                             "hidden_size": 8, "dtype": "torch.float32", "device": "cpu"})
    nosweep = write_run(board, "toy-nosweep", sweep=False)
    before = {p: p.read_bytes() for p in (own, twin, encoder, nosweep)}

    dry = run_script(board, "--profiles", profiles, "--twin", "toy-joint=toy", "--twin", "toy-nosweep=toy", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would write" in dry.stdout and "0 file(s) written" in dry.stdout
    assert {p: p.read_bytes() for p in before} == before

    done = run_script(board, "--profiles", profiles, "--twin", "toy-joint=toy", "--twin", "toy-nosweep=toy")
    assert done.returncode == 0, done.stderr
    assert "2 file(s) written" in done.stdout
    assert encoder.read_bytes() == before[encoder] and nosweep.read_bytes() == before[nosweep]
    # context 40 tokens (test_mean_context_by_hand): block = 2 + (4 - 2)·(40 - 16)/(64 - 16) = 3 ms; head 6 ms
    # full depth = 3·3 + 6 = 15 ms; ceiling = 15 / ((0.5 + 1)·3 + 6) = 15 / 10.5
    # τ 0.9 (full checks): 2 layers · 3 + 1.5 checks · 7 + (1 − 0.5 exited through a check) · 6 = 19.5 ms
    # τ 0.5: 1 · 3 + 1 · 7 + 0 · 6 = 10 ms
    for path, relation in ((own, "own"), (twin, "architecture twin (same shapes, other weights)")):
        res = json.loads(path.read_text(encoding="utf-8"))
        pred = res["predicted_speedup"]
        assert pred["context_tokens"] == 40.0
        assert pred["ceiling"]["per_token"] == pytest.approx(15 / 10.5)
        assert [p["per_token"] for p in pred["sweep"]] == pytest.approx([15 / 19.5, 15 / 10])
        assert pred["at_threshold"] == {"threshold": 0.9, "per_token": pytest.approx(15 / 19.5)}
        assert pred["profile"]["model"] == "toy" and pred["profile"]["head_in_blocks"] == 3.0
        assert pred["profile_use"]["model"] == "toy" and pred["profile_use"]["relation"] == relation
        assert pred["profile_use"]["run_model"] == res["model"]
        assert {k: v for k, v in res.items() if k != "predicted_speedup"} == json.loads(before[path])
        twin_note = "architecture twin; " if relation != "own" else ""
        assert predicted_profile(res) == f"cost profile of toy ({twin_note}cpu, float32, 1 thread, measured; head = 3.00 blocks)"
    assert predicted_profile(json.loads(encoder.read_text(encoding="utf-8"))) is None

    again = {p: p.read_bytes() for p in (own, twin)}
    rerun = run_script(board, "--profiles", profiles, "--twin", "toy-joint=toy")  # rerunnable: nothing to change
    assert rerun.returncode == 0 and rerun.stdout.count("unchanged") == 2 and "0 file(s) written" in rerun.stdout
    assert {p: p.read_bytes() for p in again} == again


def test_refuses_mismatched_architecture_and_writes_nothing(tmp_path, profiles):
    board = tmp_path / "board"
    good = write_run(board, "toy")
    wide = write_run(board, "toy-wide", info={**INFO, "name": "toy-wide", "hidden_size": 16})
    before = {p: p.read_bytes() for p in (good, wide)}
    out = run_script(board, "--profiles", profiles, "--twin", "toy-wide=toy")
    assert out.returncode == 2
    assert "nothing was written" in out.stderr and "hidden_size: run 16, profile 8" in out.stderr
    assert "Traceback" not in out.stderr
    assert {p: p.read_bytes() for p in before} == before


def test_bad_twin_and_missing_profiles_exit_2(tmp_path, profiles):
    write_run(tmp_path / "board", "toy")
    bad = run_script(tmp_path / "board", "--profiles", profiles, "--twin", "toy-joint")
    assert bad.returncode == 2 and "RUN_MODEL=PROFILE_MODEL" in bad.stderr
    missing = run_script(tmp_path / "board", "--profiles", tmp_path / "nope")
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_cost_command_records_architecture(tmp_path, monkeypatch, capsys):
    from tiny_models import save_tiny_llama

    monkeypatch.setenv("EE_BENCH_CACHE", str(tmp_path / "cache"))
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    out = tmp_path / "p.json"
    assert main(["cost", "--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--device", "cpu",
                 "--threads", "1", "--repeats", "1", "--contexts", "4,8", "--output", str(out)]) == 0
    config = json.loads((ckpt / "config.json").read_text())
    arch = load_profile(out).architecture
    assert arch == {"model_type": config["model_type"], "n_layers": config["num_hidden_layers"],
                    "hidden_size": config["hidden_size"], "intermediate_size": config["intermediate_size"],
                    "num_attention_heads": config["num_attention_heads"],
                    "num_key_value_heads": config.get("num_key_value_heads") or config["num_attention_heads"],
                    "vocab_size": config["vocab_size"]}


def test_keeps_a_runs_own_prediction_unless_replace(tmp_path, profiles):
    path = write_run(tmp_path / "board", "toy")
    res = json.loads(path.read_text(encoding="utf-8"))
    own = {"profile": {"model": "toy"}, "ceiling": {"per_token": 2.0}, "at_threshold": {"threshold": 0.9, "per_token": 1.5},
           "sweep": [{"threshold": 0.9, "per_token": 1.5}]}
    path.write_text(json.dumps({**res, "predicted_speedup": own}), encoding="utf-8")
    kept = run_script(tmp_path / "board", "--profiles", profiles)
    assert kept.returncode == 0 and "written by the run" in kept.stdout
    assert json.loads(path.read_text(encoding="utf-8"))["predicted_speedup"] == own
    assert run_script(tmp_path / "board", "--profiles", profiles, "--replace").returncode == 0
    assert json.loads(path.read_text(encoding="utf-8"))["predicted_speedup"]["ceiling"]["per_token"] == pytest.approx(15 / 10.5)
