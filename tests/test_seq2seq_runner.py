"""The seq2seq runner produces the causal runner's DocRecords, so the oracle and gates are the same code.

- a hand-built per-layer table fed through the seq2seq runner and through the causal runner gives
  the same oracle/gate report, whose values are worked out by hand below;
- the encoder input is the task's ``seq2seq_source`` (not the Table 8 prompt), after the card prefix;
- a task without ``seq2seq_source`` is refused with the fix;
- ``ee-bench --model PATH`` on a tiny saved Marian checkpoint and the demo task writes results,
  samples and a leaderboard row.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny_models import save_tiny_marian

from ee_bench.decoding.decoders import decoder_for
from ee_bench.errors import EEBenchError
from ee_bench.exits.gates import GATES
from ee_bench.exits.summary import summarise_exits
from ee_bench.models.capture import LayerAnalysis
from ee_bench.task_runners import get_runner
from ee_bench.tasks.index import TaskIndex
from ee_bench.types import LayerStats

# L = 4 layers, 3 output tokens. Columns: token 0 [5, 7, 9, 9], token 1 [9, 3, 3, 3], token 2 [4, 2, 4, 4].
TOP1 = torch.tensor([[5, 9, 4], [7, 3, 2], [9, 3, 4], [9, 3, 4]])
PROB = torch.tensor([[0.2, 0.3, 0.95], [0.5, 0.92, 0.4], [0.93, 0.97, 0.5], [0.99, 0.99, 0.99]])
OUTPUT = [9, 3, 4]
# by hand: first-match [2, 1, 0] (avg 1.0, perc 100 %); saturation [2, 1, 2] (avg 5/3);
# confidence τ = 0.9 exits at the first layer with p ≥ 0.9: [2, 1, 0] -> distance 0, accuracy 100 %.


def _table() -> LayerAnalysis:
    return LayerAnalysis(LayerStats(TOP1.clone(), PROB.clone(), torch.zeros(4, 3)))


class _FakeSeq2Seq:
    kind, n_layers, decoder_prefix = "seq2seq", 4, (1,)
    tokenizer = None

    def set_languages(self, src, tgt):
        self.langs = (src, tgt)

    def source_text(self, source, doc):
        return "PREFIX: " + source

    def encode_source(self, text):
        return [len(text)]

    def generate(self, sources, until, max_gen_toks):
        return [(list(OUTPUT), "w6 w0 w1") for _ in sources]

    def analyse_outputs(self, sources, outputs, keep_hidden=False):
        return [_table() for _ in sources]


class _FakeCausal(_FakeSeq2Seq):
    kind = "causal"
    tokenizer = SimpleNamespace(decode=lambda ids: "decoded")

    def encode_prompt(self, text):
        return [len(text)]


def test_hand_built_table_same_oracle_through_both_runners():
    (spec,) = TaskIndex().expand(["demo_de_en"])
    docs = [{"src": "Guten Tag", "ref": "Good day", "src_lang": "de", "tgt_lang": "en",
             "src_lang_name": "German", "tgt_lang_name": "English"}]
    gate = GATES.get("confidence")()
    s2s = _FakeSeq2Seq()
    rec_s = get_runner("seq2seq", "generate_until")(s2s, spec, docs, [0])
    rec_c = get_runner("causal", "generate_until")(_FakeCausal(), spec, docs, [0])
    assert s2s.langs == ("de", "en")
    assert rec_s[0].prompt == "PREFIX: Guten Tag"  # seq2seq_source, not the instruction prompt
    assert "### Instruction" not in rec_s[0].prompt
    rep_s, rep_c = (summarise_exits(r, gate, [0.9], 0.9) for r in (rec_s, rec_c))
    assert rep_s.to_dict() == rep_c.to_dict()
    assert rep_s.per_doc == rep_c.per_doc == [{"oracle_first_match": [2, 1, 0], "oracle_saturation": [2, 1, 2],
                                                "gate_exit_layer": [2, 1, 0]}]
    fm, sat = rep_s.to_dict()["oracle"]["first_match"], rep_s.to_dict()["oracle"]["saturation"]
    assert fm["avg"] == pytest.approx(1.0) and fm["perc"] == pytest.approx(100.0)
    assert sat["avg"] == pytest.approx(5 / 3) and sat["perc"] == pytest.approx(100.0)
    assert rep_s.chosen.accuracy == pytest.approx(100.0)


def test_task_without_seq2seq_source_is_refused():
    (spec,) = TaskIndex().expand(["cnn_dailymail"])
    with pytest.raises(EEBenchError, match="seq2seq_source"):
        get_runner("seq2seq", "generate_until")(_FakeSeq2Seq(), spec, [{"article": "x"}], [0])


def test_seq2seq_model_on_multiple_choice_is_refused():
    with pytest.raises(EEBenchError, match="seq2seq"):
        get_runner("seq2seq", "multiple_choice")


def test_end_to_end_tiny_marian_checkpoint(tmp_path):
    from ee_bench.cli import main

    ckpt = save_tiny_marian(tmp_path / "tiny-marian")
    out = tmp_path / "runs"
    code = main(["--model", str(ckpt), "--tasks", "demo_de_en", "--limit", "3", "--output_path", str(out),
                 "--device", "cpu", "--no-progress", "--threshold", "0.5"])
    assert code == 0
    res = json.loads((out / "tiny-marian" / "results_demo_de_en_confidence.json").read_text())
    assert res["model_info"]["kind"] == "seq2seq" and res["model_info"]["model_type"] == "marian"
    assert res["model_info"]["n_layers"] == 3 and res["oracle"]["first_match"]["n_layers"] == 3
    assert res["n_docs"] == {"total": 12, "evaluated": 3}
    rows = [json.loads(line) for line in (out / "tiny-marian" / "samples_demo_de_en_confidence.jsonl").open()]
    assert len(rows) == 3
    demo_file = Path(TaskIndex().expand(["demo_de_en"])[0].source_file).with_suffix(".jsonl")
    demo = [json.loads(line) for line in demo_file.read_text(encoding="utf-8").splitlines()]
    for row, doc in zip(rows, demo):
        assert row["prompt"] == doc["src"]  # the raw source, no instruction
        n = len(row["output_token_ids"])
        assert n > 0 and len(row["oracle_first_match"]) == len(row["gate_exit_layer"]) == n
        assert all(0 <= x <= 2 for x in row["oracle_first_match"])
        assert row["extra"]["decoder_prefix_ids"] == [1]
    assert res["n_output_tokens"] == sum(len(r["output_token_ids"]) for r in rows)
    board = (out / "leaderboard.md").read_text()
    assert "tiny-marian" in board and "demo_de_en" in board


S2S_TASK = """task: tiny_s2s
dataset_path: json
dataset_kwargs: {data_files: {test: docs.jsonl}}
test_split: test
dataset_name: de-en
doc_to_text: "Translate: {{src}}"
seq2seq_source: "{{src}}"
doc_to_target: "{{ref}}"
generation_kwargs: {until: ["\\n"], max_gen_toks: 5}
metric_list: [{metric: chrf}]
metadata: {version: 1}
"""


def test_end_to_end_kv_on_tiny_marian(tmp_path):
    from ee_bench.cli import main

    ckpt = save_tiny_marian(tmp_path / "tiny-marian")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_s2s.yaml").write_text(S2S_TASK)
    with (tasks / "docs.jsonl").open("w") as fh:
        for i in range(3):
            fh.write(json.dumps({"src": " ".join(f"w{(7 * i + k) % 90}" for k in range(3 + i)), "ref": "w1 w2"}) + "\n")
    out = tmp_path / "runs"
    code = main(["--model", str(ckpt), "--tasks", "tiny_s2s", "--include_path", str(tasks), "--output_path", str(out),
                 "--device", "cpu", "--no-progress", "--threshold", "0.5", "--kv", "copy,recompute",
                 "--min-prefix", "0", "--speedup-repeats", "1"])
    assert code == 0
    res = json.loads((out / "tiny-marian" / "results_tiny_s2s_confidence.json").read_text())
    rows = [json.loads(line) for line in (out / "tiny-marian" / "samples_tiny_s2s_confidence.jsonl").open()]
    for kv in ("copy", "recompute"):
        rep = res["measured_speedup"][kv]
        assert rep["n_layers"] == 3 and rep["n_docs"] == 3 and rep["full_wall_s"] > 0
        # the seq2seq loop at full depth generates what HF generate gave the oracle pass
        assert rep["full_tokens"] == sum(len(r["output_token_ids"]) for r in rows)
    for row in rows:
        traces = row["early_exit"]["traces"]
        for kv in ("copy", "recompute"):
            assert len(traces[kv]["exit_layers"]) == len(traces[kv]["token_ids"]) > 0
            assert all(0 <= x <= 2 for x in traces[kv]["exit_layers"])


def test_trace_on_tiny_marian_decodes_the_raw_source(tmp_path, capsys):
    """``ee-bench trace`` on a translator: the source goes in raw (seq2seq_source); the full-depth trace and the
    early-exit trace equal the seq2seq loop's own decodings of that source (confidence τ = 0.5, copy)."""
    from ee_bench.cli import main
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.task_runners.seq2seq import build_sources
    from ee_bench.tasks.loaders import translation_doc

    ckpt = save_tiny_marian(tmp_path / "tiny-marian")
    text = "w3 w4 w5"
    assert main(["trace", "--model", str(ckpt), "--text", text, "--kv", "copy", "--threshold", "0.5", "--json",
                 "--max-gen-toks", "5", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = load_model(resolve_card(str(ckpt)), device="cpu")
    spec = TaskIndex().load("wmt22_de_en")
    ids = build_sources(model, spec, [translation_doc(text, [""], spec.dataset_name)])[0][1]
    dec = decoder_for(model)
    ref = dec.decode([ids], None, None, "copy", spec.until, 5, exit_layers=()).traces[0]
    ee = dec.decode([ids], "confidence", 0.5, "copy", spec.until, 5, None, 4).traces[0]  # trace's default min_prefix 4
    assert out["full"]["token_ids"] == list(ref.token_ids) and out["full"]["exit_layers"] == [model.n_layers - 1] * len(ref.token_ids)
    assert (out["traces"][0]["token_ids"], out["traces"][0]["exit_layers"]) == (list(ee.token_ids), list(ee.exit_layers))
    from ee_bench.decoding.traces import shallow_exit_note

    note = shallow_exit_note(ee, ids[-1], 4)  # the same warnings as the table view, keyed by strategy
    assert out["warnings"] == ({} if note is None else {"copy": note})
