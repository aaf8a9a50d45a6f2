"""`ee-bench report`: sub-word classes, POS alignment, length/position means, degenerate runs, and a
byte-identical regeneration (tiny offline tokenizers and the tiny random Llama)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import save_tiny_llama, write_tiny_task

from ee_bench.cli import main
from ee_bench.report.degenerate import degeneracy
from ee_bench.report.positions import length_buckets, length_slope, position_buckets, position_means
from ee_bench.report.subword import decoder_of, split_pieces, tokenizer_kind


def _fast(pieces: list[str], decoder):
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=[]))
    tok.decoder = decoder
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


BYTE_BPE = ["<eos>", "Die", "ĠW", "elt", "Ġhat", "Ġ", "2", "0", ".", "Ġf", "Ã", "¼", "r", "Ċ", "ber", "Ġ("]
SENTENCEPIECE = ["<eos>", "▁Die", "▁W", "elt", "▁hat", "▁", "2", "0", ".", "▁für", "▁Ge", "b", "ühr", "▁(", "Haus", ")"]


@pytest.mark.parametrize("pieces, decoder, ids, text, expected", [
    # byte-level BPE (SmolLM2 style): "Die Welt hat 20." then " für" with ü split over two byte tokens
    (BYTE_BPE, "byte", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0],
     "Die Welt hat 20. für",
     ["initial", "initial", "continuation", "initial", "other", "initial", "continuation", "other",
      "initial", "continuation", "continuation", "continuation", "other"]),
    # a word that starts with a split character: " über" = "Ġ" + "Ã" + "¼" + "ber"; "\n" is other
    (BYTE_BPE, "byte", [5, 10, 11, 14, 13], " über\n", ["other", "initial", "continuation", "continuation", "other"]),
    # SentencePiece (Gemma style): "▁" marks the space; the first piece starts the output
    (SENTENCEPIECE, "metaspace", [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 0],
     "Die Welt hat 20. Gebühr (Haus)",
     ["initial", "initial", "continuation", "initial", "other", "initial", "continuation", "other",
      "initial", "continuation", "continuation", "other", "continuation", "other", "other"]),
])
def test_subword_classes_on_hand_written_pieces(pieces, decoder, ids, text, expected):
    import tokenizers.decoders as d

    dec = d.ByteLevel() if decoder == "byte" else d.Metaspace(replacement="▁", prepend_scheme="always")
    tok = _fast(pieces, dec)
    got = split_pieces(ids, decoder_of(tok), set(tok.all_special_ids))
    assert got.text == text
    assert got.classes == expected
    assert tokenizer_kind(tok) == ("byte-level BPE" if decoder == "byte" else "SentencePiece")
    # every visible character belongs to exactly one token
    covered = sorted(c for a, b in got.spans for c in range(a, b))
    assert covered == list(range(len(text)))


def test_pos_alignment_on_a_hand_written_sentence():
    pytest.importorskip("spacy")
    from ee_bench.report.pos import align_pos, load_english

    text = "The cat sat on the mat.\n"
    # model tokens: "The", " c", "at", " sat", " on", " the", " mat", ".", "\n"
    cuts = [0, 3, 5, 7, 11, 14, 18, 22, 23, 24]
    spans = list(zip(cuts[:-1], cuts[1:]))
    nlp = load_english()
    tags = align_pos(text, spans, nlp(text))
    assert tags == ["DET", "NOUN", "NOUN", "VERB", "ADP", "DET", "NOUN", "PUNCT", None]


# Four documents' first-match layers, worked out by hand below.
DOCS = [[4, 2], [3, 3, 1], [5], [2, 2, 2, 2, 2, 2, 2, 2, 0]]


def test_position_and_length_means_by_hand():
    pos = position_means(DOCS)
    # t=0: (4+3+5+2)/4 = 3.5; t=1: (2+3+2)/3 = 7/3; t=2: (1+2)/2 = 1.5; t=3..7: 2; t=8: 0
    assert [(b.label, b.n_tokens) for b in pos] == [("0", 4), ("1", 3), ("2", 2), *[(str(t), 1) for t in range(3, 9)]]
    assert [b.mean_layer for b in pos[:3]] == [3.5, 7 / 3, 1.5] and pos[8].mean_layer == 0.0
    buckets = position_buckets(DOCS)
    # 0, 1, 2, 3, 4–7 (four tokens of doc 4: 2 each), 8–15 (one token: 0)
    assert [(b.label, b.n_docs, b.n_tokens, b.mean_layer) for b in buckets] == [
        ("0", 4, 4, 3.5), ("1", 3, 3, 7 / 3), ("2", 2, 2, 1.5), ("3", 1, 1, 2.0), ("4–7", 1, 4, 2.0), ("8–15", 1, 1, 0.0)]
    lengths = length_buckets(DOCS)
    # 1–8: docs of length 2, 3, 1 → tokens 4,2,3,3,1,5 → 18/6 = 3; 9–16: the 9-token doc → 16/9
    assert [(b.label, b.n_docs, b.n_tokens) for b in lengths] == [("1–8", 3, 6), ("9–16", 1, 9)]
    assert lengths[0].mean_layer == 3.0 and lengths[1].mean_layer == pytest.approx(16 / 9, abs=1e-12)
    # per-doc (length, mean): (2, 3), (3, 7/3), (1, 5), (9, 16/9); OLS slope by hand
    xs, ys = [2, 3, 1, 9], [3, 7 / 3, 5, 16 / 9]
    mx, my = sum(xs) / 4, sum(ys) / 4
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert length_slope(DOCS) == pytest.approx(slope, abs=1e-12) and slope < 0
    assert length_slope([[1, 2], [3, 4]]) is None  # one distinct length


@pytest.mark.parametrize("preds, share, flagged", [
    ([0, 0, 0, 0, 0], 1.0, True),
    ([0, 0, 0, 0, 1], 0.8, False),
    (["yes ", "yes"] * 10, 1.0, True),  # whitespace ignored
    ([1] * 19 + [0], 0.95, True),       # exactly the threshold
    (["a"], 1.0, False),                 # one document proves nothing
])
def test_degeneracy(preds, share, flagged):
    d = degeneracy(preds)
    assert d.top_share == pytest.approx(share) and d.degenerate is flagged


def _hand_built_run(folder: Path, preds: list) -> Path:
    model = folder / "m"
    model.mkdir(parents=True)
    rows = [{"doc_id": i, "prediction": p, "references": [0], "output_token_ids": [1], "oracle_first_match": [0]}
            for i, p in enumerate(preds)]
    (model / "samples_t_confidence.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"avg": 0.0, "perc": 100.0, "n_tokens": len(rows), "n_layers": 4, **{f"perc@{k}": 0.0 for k in (5, 10, 15, 20)}}
    gate = {"threshold": 0.9, "signed_distance": 0.0, "abs_distance": 0.0, "accuracy": 100.0, "mean_layers_run": 1.0,
            "implied_speedup": 4.0, "n_tokens": len(rows)}
    res = {"schema": "ee-bench/results/v1", "model": "m", "task": "t", "gate": "confidence", "threshold": 0.9,
           "metrics": {"acc": 50.0}, "metric_details": {}, "oracle": {"first_match": summary, "saturation": summary},
           "gate_sweep": [gate], "gate_at_threshold": gate, "n_docs": {"total": 9, "evaluated": len(rows)},
           "n_output_tokens": len(rows), "task_info": {"output_type": "multiple_choice"},
           "samples_file": "samples_t_confidence.jsonl"}
    (model / "results_t_confidence.json").write_text(json.dumps(res))
    return folder


def test_leaderboard_marks_degenerate_rows_and_lists_them_last(tmp_path):
    from ee_bench.leaderboard import render_leaderboard

    _hand_built_run(tmp_path / "a", [1, 1, 1, 1])
    good = _hand_built_run(tmp_path / "b", [0, 1, 0, 1])
    res = json.loads((good / "m" / "results_t_confidence.json").read_text())
    res["metrics"]["acc"] = 10.0  # worse than the degenerate run, still ranked first
    (good / "m" / "results_t_confidence.json").write_text(json.dumps(res))
    text = render_leaderboard([tmp_path], tmp_path / "README.md")
    overview, table = text.split("## Overview\n")[1].split("\n## t\n")
    # the overview shows the ranked run, not the degenerate one with the higher accuracy
    assert [line.split("|")[3].strip() for line in overview.splitlines() if line.startswith("| m ")] == ["acc 10.00"]
    rows = [line for line in table.splitlines() if line.startswith("| m ")]
    assert len(rows) == 2
    assert "degenerate" not in rows[0] and "10.00" in rows[0]
    assert rows[1].startswith("| m (degenerate)") and "50.00" in rows[1]


def test_report_ranks_no_previews(tmp_path):
    """Same rule as the leaderboard: 4 of 9 documents is a preview (not ranked); 9 of 9 is ranked."""
    from ee_bench.report.render import _ranking_section
    from ee_bench.report.runs import load_runs

    _hand_built_run(tmp_path / "a", [0, 1, 0, 1])  # 4/9 documents
    whole = _hand_built_run(tmp_path / "b", [0, 1, 0, 1, 0, 1, 0, 1, 0])  # 9/9
    res = json.loads((whole / "m" / "results_t_confidence.json").read_text())
    res["metrics"]["acc"] = 10.0  # worse than the preview, still the only ranked run
    (whole / "m" / "results_t_confidence.json").write_text(json.dumps(res))
    text = _ranking_section(load_runs(tmp_path))
    rows = [line for line in text.splitlines() if line.startswith(("| 1 ", "| 2 "))]
    assert len(rows) == 1 and "m (9 docs)" in rows[0] and "10.00" in rows[0]
    assert "Not ranked (preview): m (4 docs)." in text


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    ckpt = save_tiny_llama(tmp / "ckpt")
    tasks = write_tiny_task(tmp / "tasks", n_docs=4)
    assert main(["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
                 "--include_path", str(tasks), "--device", "cpu", "--no-progress", "--gate", "confidence",
                 "--output_path", str(tmp / "runs")]) == 0
    return tmp / "runs"


def test_report_is_byte_identical_when_regenerated(tiny_run, tmp_path):
    out = tmp_path / "rep" / "report.md"
    argv = ["report", str(tiny_run), "--output", str(out), "--lang", "tiny_copy=en"]
    assert main(argv) == 0
    first = {p.relative_to(out.parent): p.read_bytes() for p in sorted(out.parent.rglob("*")) if p.is_file()}
    assert main(argv) == 0
    second = {p.relative_to(out.parent): p.read_bytes() for p in sorted(out.parent.rglob("*")) if p.is_file()}
    assert first == second
    assert {str(p) for p in first} >= {"report.md", "report_figures/exit_by_length_tiny_copy.png",
                                       "report_figures/confidence_tiny_copy.png", "report_figures/subword.png"}
    text = first[Path("report.md")].decode("utf-8")
    assert "## Exit layer by output position and output length" in text
    assert "from sidecar" in text  # per-layer curves come from the logged .npz
    assert "Nothing: every run has its samples and per-layer sidecar." in text
    assert b"matplotlib" not in first[Path("report_figures/subword.png")]  # no version in the PNG metadata


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no results_*.json" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--lang", "oops"]) == 2
    assert "TASK=CODE" in capsys.readouterr().err


def test_output_language_comes_from_the_task_itself():
    """Without --lang, a run whose results predate ``task_info.target_lang`` takes its task's own language:
    CNN/DailyMail and NarrativeQA declare ``metadata.language: en``; a WMT22 pair's is its target."""
    from ee_bench.report.runs import output_language

    def lang(task, recorded=None, overrides=None):
        return output_language({"task": task, "task_info": {"target_lang": recorded}}, overrides or {})

    assert [lang(t) for t in ("cnn_dailymail", "narrativeqa", "wmt22_en_ja")] == ["en", "en", "ja"]
    assert lang("glue_rte") is None and lang("not_a_task") is None  # none declared / unknown here
    assert lang("cnn_dailymail", recorded="de") == "de" and lang("cnn_dailymail", overrides={"cnn_dailymail": "fr"}) == "fr"
