"""Accuracy by exit layer (issue 24): per-layer continuation log-likelihoods checked against their
definition on a tiny random Llama (built offline, asserted tiny), and the per-layer metric curve of a
multiple-choice run checked against choices worked out by hand from those log-likelihoods."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import N_LAYERS, tiny_llama_mc

from ee_bench.layer_metrics import (
    LAYER_LOGLIK_KEY,
    argmax_first,
    layer_choices,
    metrics_by_layer,
    records_metrics_by_layer,
)
from ee_bench.models.choice import continuation_ids
from ee_bench.models.layer_loglik import layer_logliks
from ee_bench.task_runners.multiple_choice import run_multiple_choice
from ee_bench.tasks.index import TaskIndex
from ee_bench.tasks.loaders import load_docs
from ee_bench.types import DocRecord, LayerStats
from ee_bench.uncertainty import N_RESAMPLES, N_RESAMPLES_CORPUS, resample_indices

FIXTURES = Path(__file__).parent / "fixtures" / "offline"


@pytest.fixture(scope="module")
def model():
    return tiny_llama_mc()


@torch.no_grad()
def hand_logliks(model, ctx: list[int], cont: list[int]) -> tuple[list[float], list[bool]]:
    """Per-layer log-likelihood and is_greedy by the definition: hidden_states[ℓ+1] (block ℓ's output)
    through the final norm and head for ℓ < L−1, the model's own logits for ℓ = L−1."""
    out = model.model(input_ids=torch.tensor([ctx + cont]), output_hidden_states=True)
    lls, greedy = [], []
    for layer in range(N_LAYERS):
        if layer < N_LAYERS - 1:
            logits = model.model.lm_head(model.model.model.norm(out.hidden_states[layer + 1][0]))
        else:
            logits = out.logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        pos = [len(ctx) - 1 + j for j in range(len(cont))]
        lls.append(sum(logp[p, t].item() for p, t in zip(pos, cont)))
        greedy.append(all(int(logp[p].argmax()) == t for p, t in zip(pos, cont)))
    return lls, greedy


def test_layer_logliks_follow_the_definition_and_do_not_depend_on_padding(model):
    tok = model.tokenizer
    requests = [(model.encode_prompt("Is it good?\nAnswer:"), continuation_ids(tok, " yes")),
                (model.encode_prompt("ok"), continuation_ids(tok, " perhaps")),
                (model.encode_prompt("A longer prompt about a film.\nAnswer:"), continuation_ids(tok, " no"))]
    together = layer_logliks(model, requests)
    for (ctx, cont), res in zip(requests, together):
        lls, greedy = hand_logliks(model, ctx, cont)
        assert res.loglik == pytest.approx(lls, abs=1e-4)
        assert res.is_greedy == greedy
        alone = layer_logliks(model, [(ctx, cont)])[0]
        assert alone.loglik == pytest.approx(res.loglik, abs=1e-4)


def test_greedy_continuation_is_greedy_at_the_last_layer(model):
    ctx = model.encode_prompt("Is it good?\nAnswer:")
    with torch.no_grad():
        nxt = int(model.model(input_ids=torch.tensor([ctx])).logits[0, -1].argmax())
    res = layer_logliks(model, [(ctx, [nxt])])[0]
    assert res.is_greedy[-1] is True


def test_accuracy_curve_of_a_multiple_choice_run_equals_hand_computed_choices(model):
    spec = TaskIndex(with_plugins=False).load("glue_sst2")  # label words " negative" / " positive"
    docs = load_docs(spec, FIXTURES)[:6]
    records = run_multiple_choice(model, spec, docs, batch_size=3)
    conts = [continuation_ids(model.tokenizer, " " + w) for w in ("negative", "positive")]
    hand_acc = []
    per_doc_lls = []
    for rec, d in zip(records, docs):
        per_doc_lls.append([hand_logliks(model, rec.prompt_token_ids, c)[0] for c in conts])  # C × (L,)
    for layer in range(N_LAYERS):
        correct = [argmax_first([lls[c][layer] for c in range(2)]) == d["label"] for lls, d in zip(per_doc_lls, docs)]
        hand_acc.append(sum(correct) / len(docs))
    for rec, lls in zip(records, per_doc_lls):
        rows = rec.extra[LAYER_LOGLIK_KEY]
        assert len(rows) == N_LAYERS and len(rows[0]) == 2
        for layer in range(N_LAYERS):
            assert rows[layer] == pytest.approx([lls[0][layer], lls[1][layer]], abs=1e-4)
        assert rows[-1] == rec.extra["loglik"]  # the reported final log-likelihoods, exactly
    block = records_metrics_by_layer(records, "multiple_choice", spec.metric_list, seed=1234)
    assert block["layers"] == list(range(N_LAYERS))
    assert block["metrics"]["acc"] == pytest.approx(hand_acc, abs=1e-12)
    final_acc = sum(r.prediction == r.references[0] for r in records) / len(records)
    assert block["metrics"]["acc"][-1] == final_acc  # the curve ends at the reported accuracy
    assert len(block["intervals"]["acc"]) == N_LAYERS and block["n_resamples"] == N_RESAMPLES_CORPUS


def _record(doc_id: int, top1: list[int], gold: int) -> DocRecord:
    t = torch.tensor(top1).view(-1, 1)
    return DocRecord(doc_id, "", [], "", [top1[-1]], top1[-1], [gold], LayerStats(t, torch.ones(t.shape), torch.zeros(t.shape)))


def test_encoder_records_choose_by_their_layer_argmax_and_intervals_are_the_bootstraps():
    # 3 layers, 4 documents; gold labels 1, 0, 1, 1
    records = [_record(0, [0, 1, 1], 1), _record(1, [0, 0, 0], 0), _record(2, [1, 0, 1], 1), _record(3, [0, 0, 0], 1)]
    assert layer_choices(records, "multiple_choice") == [[0, 0, 1, 0], [1, 0, 0, 0], [1, 0, 1, 0]]
    block = records_metrics_by_layer(records, "multiple_choice", [{"metric": "acc"}], seed=7)
    assert block["metrics"]["acc"] == [0.5, 0.5, 0.75]  # 2/4, 2/4, 3/4 by hand
    # the interval of the last layer: accuracy of the final predictions on the same resamples
    idx = resample_indices(4, N_RESAMPLES, 7)[:N_RESAMPLES_CORPUS]
    correct = torch.tensor([1.0, 1.0, 1.0, 0.0])
    import numpy as np

    acc = np.array([correct[row].mean().item() for row in idx])
    lo, hi = np.quantile(acc, [0.025, 0.975])
    assert block["intervals"]["acc"][-1]["low"] == pytest.approx(lo) and block["intervals"]["acc"][-1]["high"] == pytest.approx(hi)
    assert layer_choices(records, "generate_until") is None


def test_a_last_layer_that_disagrees_with_the_prediction_is_an_error():
    bad = DocRecord(0, "", [], "", [0], 1, [1], LayerStats(torch.tensor([[0], [0]]), torch.ones(2, 1), torch.zeros(2, 1)))
    with pytest.raises(ValueError, match="inconsistent"):
        layer_choices([bad], "multiple_choice")


def test_metrics_by_layer_rejects_empty_runs():
    with pytest.raises(ValueError):
        metrics_by_layer(0, 3, lambda layer, docs: {}, seed=1, choice="x")


def test_cli_run_writes_the_curve_prints_it_and_the_report_draws_it(model, tmp_path, capsys):
    import json

    from ee_bench.cli import main

    ckpt = tmp_path / "ckpt"
    model.model.save_pretrained(ckpt)
    model.tokenizer.save_pretrained(ckpt)
    out = tmp_path / "out"
    assert main(["--model", str(ckpt), "--tasks", "glue_sst2", "--data-dir", str(FIXTURES), "--limit", "6",
                 "--device", "cpu", "--no-progress", "--output_path", str(out)]) == 0
    printed = capsys.readouterr().out
    res_path = next(out.rglob("results_glue_sst2_confidence.json"))
    res = json.loads(res_path.read_text())
    samples = [json.loads(x) for x in res_path.with_name("samples_glue_sst2_confidence.jsonl").read_text().splitlines()]
    curve = res["metrics_by_layer"]["metrics"]["acc"]
    assert len(curve) == N_LAYERS and curve[-1] == res["metrics"]["acc"]
    for layer in range(N_LAYERS):  # each layer's accuracy from the samples' per-layer log-likelihoods
        hits = [argmax_first(s["extra"]["loglik_by_layer"][layer]) == s["references"][0] for s in samples]
        assert curve[layer] == sum(hits) / len(hits)
    assert res["metrics_by_layer"]["n_choices"] == 2
    assert "acc by exit layer 0..3: " + " ".join(f"{v:.2f}" for v in curve) in printed
    assert "(chance: avg" in printed
    report = tmp_path / "report.md"
    assert main(["report", str(out), "--output", str(report)]) == 0
    text = report.read_text()
    assert "## Task metrics by exit layer" in text and "| glue_sst2 |" in text
    assert (tmp_path / "report_figures" / "by_layer_glue_sst2_acc.png").is_file()
    assert "### glue_sst2" in text.split("## Ranking per task")[1] and "saturation avg" in text.split("## Ranking per task")[1]
