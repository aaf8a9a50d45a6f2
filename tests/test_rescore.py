"""The per-layer sidecar and `ee-bench rescore`: the results JSON is reproduced from the logged records
alone, and rescoring with another gate equals a fresh run with that gate (tiny random Llama)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import save_tiny_llama, write_tiny_task

from ee_bench.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rescore")
    ckpt = save_tiny_llama(tmp / "ckpt")
    tasks = write_tiny_task(tmp / "tasks", n_docs=4)
    common = ["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
              "--include_path", str(tasks), "--device", "cpu", "--no-progress"]
    for gate in ("confidence", "entropy", "patience"):
        assert main([*common, "--gate", gate, "--output_path", str(tmp / gate)]) == 0
    assert main([*common, "--gate", "entropy", "--threshold", "1.5", "--output_path", str(tmp / "entropy_1.5")]) == 0
    return tmp


def _load(tmp, gate):
    folder = tmp / gate / "ckpt"
    name = gate.split("_")[0]
    res = json.loads((folder / f"results_tiny_copy_{name}.json").read_text())
    rows = [json.loads(x) for x in (folder / f"samples_tiny_copy_{name}.jsonl").read_text().splitlines()]
    return folder, res, rows


def test_sidecar_layout_and_references(runs):
    folder, res, rows = _load(runs, "confidence")
    block = res["layer_stats"]
    assert block["file"] == "samples_tiny_copy_confidence.npz" and block["rescorable"] is True
    with np.load(folder / block["file"]) as z:
        top1, prob, ent, offsets = z["top1"], z["top1_prob"], z["entropy"], z["offsets"]
        assert z["doc_ids"].tolist() == [0, 1, 2, 3]
    n = sum(len(r["output_token_ids"]) for r in rows)
    assert top1.shape == prob.shape == ent.shape == (4, n) and block["n_tokens"] == n == res["n_output_tokens"]
    assert prob.dtype == np.float32 and top1.dtype == np.int64
    start = 0
    for i, row in enumerate(rows):
        k = len(row["output_token_ids"])
        assert row["layer_stats"] == {"file": block["file"], "offset": start, "length": k}
        assert offsets[i] == start
        # the final layer's top-1 is the generated token (greedy decoding)
        assert top1[-1, start:start + k].tolist() == row["output_token_ids"]
        # first-match oracle recomputed by hand from the logged top-1
        fm = [int(np.argmax(top1[:, start + j] == top1[-1, start + j])) for j in range(k)]
        assert fm == row["oracle_first_match"]
        start += k
    assert "top1_prob" not in rows[0]  # the JSONL stays small: per-layer values live in the sidecar


@pytest.mark.parametrize("gate", ["confidence", "entropy", "patience"])
def test_rescore_with_same_gate_reproduces_results(runs, gate, tmp_path, capsys):
    folder, res, rows = _load(runs, gate)
    out = tmp_path / "rescored.json"
    assert main(["rescore", str(runs / gate), "--gate", gate, "--output", str(out)]) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["oracle"] == res["oracle"]
    assert run["gate_sweep"] == res["gate_sweep"]
    assert run["gate_at_threshold"] == res["gate_at_threshold"]
    assert run["per_doc_gate_exit_layer"] == [r["gate_exit_layer"] for r in rows]


@pytest.mark.parametrize("other, threshold", [("entropy", None), ("patience", None), ("entropy_1.5", 1.5)])
def test_rescore_with_another_gate_equals_fresh_run(runs, other, threshold, tmp_path):
    _, fresh, fresh_rows = _load(runs, other)
    out = tmp_path / "rescored.json"
    argv = ["rescore", str(runs / "confidence"), "--gate", other.split("_")[0], "--output", str(out)]
    if threshold is not None:
        argv += ["--threshold", str(threshold)]
    assert main(argv) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["source_gate"] == "confidence"
    for key in ("oracle", "gate_sweep", "gate_at_threshold", "threshold"):
        assert run[key] == fresh[key], key
    assert run["per_doc_gate_exit_layer"] == [r["gate_exit_layer"] for r in fresh_rows]


def test_rescore_errors(runs, tmp_path, capsys):
    assert main(["rescore", str(tmp_path / "nowhere"), "--gate", "confidence"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["rescore", str(runs / "confidence"), "--gate", "confidance"]) == 2
    assert "Did you mean" in capsys.readouterr().err
    assert main(["rescore", str(runs / "confidence"), "--gate", "confidence", "--threshold", "1.5"]) == 2
    assert "out of range" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    res = json.loads((runs / "confidence" / "ckpt" / "results_tiny_copy_confidence.json").read_text())
    del res["layer_stats"]
    (old / "results_x.json").write_text(json.dumps(res))
    assert main(["rescore", str(old), "--gate", "confidence"]) == 2
    assert "no per-layer records" in capsys.readouterr().err


def test_sidecar_round_trip_and_hidden_state_gates(tmp_path):
    import torch

    from ee_bench.records import read_layer_stats, write_layer_stats
    from ee_bench.types import DocRecord, LayerStats

    def rec(doc_id, n):
        top1 = torch.arange(3 * n, dtype=torch.int64).view(3, n)
        prob = torch.linspace(0, 1, 3 * n).view(3, n).to(torch.bfloat16)  # widened exactly to float32
        return DocRecord(doc_id, "", [], "", [], "", [], LayerStats(top1, prob, prob * 2))

    records = [rec(4, 2), rec(7, 0), rec(9, 3)]
    rows = [{}, {}, {}]

    class HiddenGate:
        needs_hidden = True

    block = write_layer_stats(tmp_path / "samples_t_g.jsonl", records, rows, HiddenGate())
    assert block["rescorable"] is False and "cannot be rescored" in block["note"]
    assert (block["n_layers"], block["n_tokens"], block["n_docs"]) == (3, 5, 3)
    assert [r["layer_stats"] for r in rows] == [{"file": "samples_t_g.npz", "offset": o, "length": n}
                                                 for o, n in ((0, 2), (2, 0), (2, 3))]
    side = read_layer_stats(tmp_path / "samples_t_g.npz")
    assert side.doc_ids == [4, 7, 9] and side.offsets == [0, 2, 2, 5]
    for i, r in enumerate(records):
        got = side.doc(i)
        assert torch.equal(got.top1, r.stats.top1)
        assert torch.equal(got.top1_prob, r.stats.top1_prob.float()) and got.top1_prob.dtype == torch.float32
