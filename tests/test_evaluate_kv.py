"""End to end: ``ee-bench --kv ... --calibrate`` on a tiny random Llama checkpoint (offline)."""

from __future__ import annotations

import json

from ee_bench.cli import main
from tests._tiny_ckpt import save_tiny_llama, write_tiny_task


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
        sweep = json.loads((out / f"calibration_tiny_copy_{kv}.json").read_text())
        assert len(sweep["points"]) == 7  # the confidence grid
    rows = [json.loads(line) for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    assert [r["doc_id"] for r in rows] == [0, 1, 2]
    for row in rows:
        ee = row["early_exit"]
        assert set(ee["traces"]) == {"copy", "recompute"} and ee["exit_layers_allowed"] == [1, 2]
        for tr in ee["traces"].values():
            assert len(tr["exit_layers"]) == len(tr["token_ids"])
            assert tr["exit_layers"][:1] == [3] and set(tr["exit_layers"]) <= {1, 2, 3}
