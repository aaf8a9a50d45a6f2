"""End to end: ``ee-bench --kv ... --calibrate`` on a tiny random Llama checkpoint (offline)."""

from __future__ import annotations

import json

import pytest
from tiny_models import save_tiny_llama, write_tiny_task

from ee_bench.cli import main


def test_kv_calibrate_writes_traces_speedup_and_sweep(tmp_path, capsys):
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=6, max_gen_toks=6)
    out = tmp_path / "out"
    code = main(["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
                 "--include_path", str(tasks), "--gate", "confidence", "--limit", "3", "--output_path", str(out),
                 "--kv", "copy,recompute", "--calibrate", "--calibration-docs", "2", "--min-prefix", "1",
                 "--exit-layers", "1,2", "--speedup-repeats", "1", "--no-progress", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    res_file = next(out.rglob("results_*.json"))
    result = json.loads(res_file.read_text())
    speed = result["measured_speedup"]
    assert result["config"]["threshold_warmup"] == 0.0  # the default where --threshold-warmup is not given
    assert set(speed) == {"copy", "recompute"}
    for kv, rep in speed.items():
        assert rep["n_docs"] == 3 and rep["kv"] == kv
        assert rep["calibration"]["doc_ids"] == [3, 4]  # disjoint from the evaluated docs 0..2
        assert rep["calibration"]["complete"] is True
        # full depth runs all 4 blocks of the tiny Llama for every token and checks no gate
        assert rep["full_counts"]["token_layers"] == 4 * rep["full_tokens"] and rep["full_counts"]["gate_checks"] == 0
        # each of the 3 documents' first token (prompt pass) runs 4 blocks; with --exit-layers 1,2 every
        # later token runs 2, 3 or 4 blocks
        assert 3 * 4 + 2 * (rep["ee_tokens"] - 3) <= rep["ee_counts"]["token_layers"] <= 4 * rep["ee_tokens"]
        sweep = json.loads((res_file.parent / f"calibration_tiny_copy_confidence_{kv}.json").read_text())  # by model
        assert len(sweep["points"]) == 7  # the confidence grid
    rows = [json.loads(line) for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    assert [r["doc_id"] for r in rows] == [0, 1, 2]
    for row in rows:
        ee = row["early_exit"]
        assert set(ee["traces"]) == {"copy", "recompute"} and ee["exit_layers_allowed"] == [1, 2]
        for tr in ee["traces"].values():
            assert len(tr["exit_layers"]) == len(tr["token_ids"])
            assert tr["exit_layers"][:1] == [3] and set(tr["exit_layers"]) <= {1, 2, 3}


def _run(tmp_path, capsys, *extra):
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=4, max_gen_toks=6)
    out = tmp_path / "out"
    code = main(["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
                 "--include_path", str(tasks), "--limit", "2", "--output_path", str(out), "--min-prefix", "1",
                 "--speedup-repeats", "1", "--no-progress", "--device", "cpu", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(next(out.rglob("results_*.json")).read_text())
    rows = [json.loads(line) for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    return result, rows, captured.out


def test_oracle_gate_offline_distance_zero_and_no_speedup_claimed(tmp_path, capsys):
    result, rows, printed = _run(tmp_path, capsys, "--gate", "oracle", "--kv", "copy,recompute")
    (point,) = result["gate_sweep"]  # the oracle has one "threshold" and is the first-match layer
    assert point["signed_distance"] == 0.0 and point["abs_distance"] == 0.0
    for kv, rep in result["measured_speedup"].items():
        assert rep["speedup_applicable"] is False and "not applicable" in rep["speedup_note"]
        assert rep["per_token_speedup"] is None and rep["per_sequence_speedup"] is None
        assert rep["check"] == "full"
    assert "measured speed-up not applicable" in printed
    for row in rows:
        for tr in row["early_exit"]["traces"].values():
            assert tr["exit_layers"][:1] == [3] and len(tr["exit_layers"]) == len(tr["token_ids"])


def test_topk_check_and_speculative_options_are_recorded(tmp_path, capsys):
    result, rows, printed = _run(tmp_path, capsys, "--gate", "confidence", "--threshold", "0.2",
                                 "--kv", "copy,speculative", "--check", "topk:4", "--draft-len", "2")
    copy, spec = result["measured_speedup"]["copy"], result["measured_speedup"]["speculative"]
    assert copy["check"] == "topk:4 (approximate)" and copy["check_approximate"] is True
    assert copy["ee_counts"]["restricted_checks"] > 0
    s = spec["speculative"]
    assert s["draft_len"] == 2 and s["draft_tokens"] == spec["ee_counts"]["draft_tokens"] > 0
    assert s["acceptance_rate"] == s["accepted_tokens"] / s["draft_tokens"]
    assert s["mean_accepted_per_round"] == s["accepted_tokens"] / s["draft_rounds"]
    assert spec["token_agreement"] == 1.0  # lossless
    assert result["config"]["draft_len"] == 2 and result["config"]["check"] == "topk:4"
    assert rows[0]["early_exit"]["check"] == "topk:4 (approximate)"
    assert rows[0]["early_exit"]["traces"]["speculative"]["speculative"]["draft_len"] == 2
    assert "check topk:4 (approximate)" in printed and "draft length 2, acceptance" in printed


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--kv", "copy", "--check", "topk:0"], "unknown check mode 'topk:0'"),
    (["--kv", "copy", "--check", "bottom:3"], "--check topk:K"),
    (["--kv", "speculative", "--draft-len", "0"], "--draft-len 0 is invalid"),
    (["--check", "topk:4"], "add --kv copy"),
])
def test_bad_check_and_draft_options_exit_2(tmp_path, capsys, extra, fragment):
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=2, max_gen_toks=4)
    code = main(["--model", "smollm2-135m-ee", "--tasks", "tiny_copy", "--include_path", str(tasks), *extra])
    assert code == 2
    assert fragment in capsys.readouterr().err


def test_shortlist_check_end_to_end(tmp_path, capsys):
    """--check shortlist:3: the shortlist comes from the calibration documents (3, 4 = the first two not
    evaluated); every gate check computes 3 head rows; results label the check approximate."""
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=5, max_gen_toks=6)
    out = tmp_path / "out"
    code = main(["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
                 "--include_path", str(tasks), "--gate", "confidence", "--threshold", "0.05", "--limit", "3",
                 "--output_path", str(out), "--kv", "copy", "--check", "shortlist:3", "--calibration-docs", "2",
                 "--min-prefix", "1", "--speedup-repeats", "1", "--no-progress", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    rep = json.loads(next(out.rglob("results_*.json")).read_text())["measured_speedup"]["copy"]
    c = rep["ee_counts"]
    assert rep["check"] == "shortlist:3 (approximate)"
    assert c["gate_checks"] == c["restricted_checks"] > 0 and c["restricted_rows"] == 3 * c["gate_checks"]
