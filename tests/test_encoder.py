"""Encoder classifiers: per-layer classification, real early exit, runner (tiny random models, offline)."""

from __future__ import annotations

import pytest
import torch
import transformers as tf
from tiny_models import encoder_config, encoder_tokenizer, tiny_encoder, toy_rows

from ee_bench.decoding.encoder_exit import early_exit_classify, measure_encoder_speedup
from ee_bench.errors import ModelStructureError
from ee_bench.exits.decide import gate_exit_layers
from ee_bench.exits.gates import GATES
from ee_bench.models.hf_encoder import EncoderBatch, HFEncoderClassifier
from ee_bench.task_runners.classification import run_classification
from ee_bench.tasks.spec import parse_task

KINDS = ["bert", "roberta", "distilbert", "electra", "mpnet"]


def _batch(kind: str, seed: int = 1) -> EncoderBatch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 19, (4, 7), generator=g)
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[1, 5:] = 0  # right padding of different lengths
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    tt = torch.zeros_like(ids) if kind not in ("distilbert", "mpnet") else None
    if tt is not None:
        tt[0, 4:] = 1  # a sentence pair in row 0
    return EncoderBatch(ids, mask, tt)


def _wrap(model, name="tiny") -> HFEncoderClassifier:
    return HFEncoderClassifier(model, encoder_tokenizer(), name)


@pytest.mark.parametrize("kind", KINDS)
def test_last_layer_reproduces_model_logits(kind):
    model = tiny_encoder(kind)
    w = _wrap(model)
    b = _batch(kind)
    with torch.no_grad():
        ref = model(**b.model_inputs())
        hs = model(**b.model_inputs(), output_hidden_states=True).hidden_states
    an = w.layer_logits(b, keep_hidden=True)
    assert an.logits.shape == (3, 4, 2) and an.stats.top1.shape == (3, 4)
    assert torch.equal(an.logits[-1], ref.logits.float())
    # the shared head applied to the last block's [CLS] state is exactly the model's own computation
    with torch.no_grad():
        assert torch.equal(w.head_logits(hs[-1][:, 0]), ref.logits)
    assert torch.equal(an.stats.top1[-1], ref.logits.argmax(-1))
    # the layer-by-layer path (used by real early exit) gives the same logits
    with torch.no_grad():
        h = w.embed(b)
        ctx = w.layer_context(h, b.attention_mask)
        for i in range(w.n_layers):
            h = w.run_layer(i, h, ctx)
        assert torch.equal(w.head_logits(h[:, 0]), ref.logits)


def _truncated(model, kind: str, n_layers: int):
    """An independently built model with the first ``n_layers`` blocks and the same weights."""
    small = tf.AutoModelForSequenceClassification.from_config(encoder_config(kind, n_layers)).eval()
    missing, unexpected = small.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k in small.state_dict()}, strict=False)
    assert not missing  # every weight of the small model was copied
    return small


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("layer", [0, 1])
def test_forced_early_exit_equals_truncated_model(kind, layer):
    model = tiny_encoder(kind, n_layers=3)
    w = _wrap(model)
    b = _batch(kind)
    small = _truncated(model, kind, layer + 1)
    with torch.no_grad():
        ref = small(**b.model_inputs()).logits.float()
    out = early_exit_classify(w, b, gate=None, force_layer=layer)
    assert torch.equal(out.exit_layer, torch.full((4,), layer))
    torch.testing.assert_close(out.logits, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(w.layer_logits(b).logits[layer], ref, rtol=0, atol=1e-6)
    assert out.implied_speedup == pytest.approx(3 / (layer + 1))


@pytest.mark.parametrize("gate_name,tau", [("confidence", None), ("entropy", None), ("patience", 1)])
def test_real_early_exit_matches_offline_gate(gate_name, tau):
    model = tiny_encoder("bert", n_layers=3, seed=3)
    w = _wrap(model)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(5, 19, (16, 6), generator=g)
    b = EncoderBatch(ids, torch.ones_like(ids), torch.zeros_like(ids))
    an = w.layer_logits(b)
    gate = GATES.get(gate_name)()
    if tau is None:  # a threshold in the middle of the observed values, so some examples exit early
        col = an.stats.top1_prob if gate_name == "confidence" else an.stats.entropy
        tau = float(col[:-1].median())
    offline = gate_exit_layers(gate, an.stats, tau)
    real = early_exit_classify(w, b, gate, tau)
    assert torch.equal(real.exit_layer, offline)
    assert 0 < int((offline < 2).sum()) or gate_name == "patience"
    expect = an.logits[offline, torch.arange(16)]  # (16, C): each example's logits at its exit layer
    torch.testing.assert_close(real.logits, expect, rtol=0, atol=1e-5)


def test_never_firing_gate_gives_model_logits():
    model = tiny_encoder("roberta")
    w = _wrap(model)
    b = _batch("roberta")
    out = early_exit_classify(w, b, GATES.get("confidence")(), 1.0 + 0.0)  # p >= 1.0 never holds here
    with torch.no_grad():
        ref = model(**b.model_inputs()).logits
    assert torch.equal(out.exit_layer, torch.full((4,), 2))
    torch.testing.assert_close(out.logits, ref, rtol=0, atol=1e-6)


def test_measure_speedup_reports_implied_from_layers():
    w = _wrap(tiny_encoder("bert"))
    m = measure_encoder_speedup(w, _batch("bert"), None, force_layer=0, repeats=2, warmup=1)
    assert m.mean_layers_run == 1.0 and m.implied_speedup == 3.0
    assert m.full_forward_s > 0 and m.early_exit_s > 0
    assert m.measured_speedup == pytest.approx(m.full_forward_s / m.early_exit_s)


def test_unknown_model_type_lists_supported():
    cfg = tf.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=20, n_positions=16, num_labels=2, pad_token_id=0)
    model = tf.GPT2ForSequenceClassification(cfg)
    with pytest.raises(ModelStructureError, match="bert, distilbert, electra, mpnet, roberta"):
        HFEncoderClassifier(model, None, "gpt2")


def _spec(fields=("sentence",)):
    return parse_task({"task": "toy", "dataset_path": "json", "output_type": "multiple_choice", "doc_to_text": "",
                       "doc_to_choice": ["neg", "pos"], "doc_to_target": "{{label}}", "encoder_fields": list(fields),
                       "metric_list": [{"metric": "acc"}], "metadata": {"version": 0}}, "<toy>")


def test_runner_records_and_batch_invariance():
    w = _wrap(tiny_encoder("bert"))
    docs = toy_rows(5)
    r1 = run_classification(w, _spec(), docs, batch_size=1)
    r3 = run_classification(w, _spec(), docs, list(range(10, 15)), batch_size=3)
    assert [r.doc_id for r in r3] == [10, 11, 12, 13, 14]
    for a, b, d in zip(r1, r3, docs):
        assert a.stats.top1.shape == (3, 1)
        assert a.prediction == int(a.stats.top1[-1, 0]) and a.output_token_ids == [a.prediction]
        assert a.references == [d["label"]]
        assert a.output_text == ["neg", "pos"][a.prediction]
        assert a.prompt.startswith("[CLS]") and a.prompt.split() == ["[CLS]", *d["sentence"].split(), "[SEP]"]
        assert torch.equal(a.stats.top1, b.stats.top1)
        torch.testing.assert_close(a.stats.top1_prob, b.stats.top1_prob, rtol=0, atol=1e-5)


def test_runner_pairs_and_label_mismatch():
    from ee_bench.errors import EEBenchError

    w = _wrap(tiny_encoder("bert"))
    docs = [{"s1": "good film", "s2": "bad plot", "label": 0}]
    rec = run_classification(w, _spec(("s1", "s2")), docs)[0]
    assert rec.prompt.split() == ["[CLS]", "good", "film", "[SEP]", "bad", "plot", "[SEP]"]
    w3 = _wrap(tiny_encoder("bert", num_labels=3))
    with pytest.raises(EEBenchError, match="3 labels"):
        run_classification(w3, _spec(), toy_rows(2))


def test_measure_classification_speedup_on_task_docs():
    from ee_bench.decoding.encoder_exit import measure_classification_speedup

    w = _wrap(tiny_encoder("bert"))
    m = measure_classification_speedup(w, _spec(), toy_rows(6), GATES.get("confidence")(), 1.0,
                                       batch_size=4, repeats=1, warmup=0)
    assert m.batch_size == 4 and m.mean_layers_run == 3.0 and m.implied_speedup == 1.0  # gate never fires


def test_accuracy_by_layer_of_an_encoder_run_is_each_layers_classifier_argmax():
    # issue 24: layer ℓ's choice is argmax head(h^{ℓ+1}[CLS]) (the model's logits at L−1), by hand here
    from ee_bench.layer_metrics import records_metrics_by_layer

    w = _wrap(tiny_encoder("bert"))
    docs = toy_rows(8)
    records = run_classification(w, _spec(), docs, batch_size=3)
    with torch.no_grad():
        out = w.model(**w.encode([(d["sentence"],) for d in docs]).model_inputs(), output_hidden_states=True)
        per_layer = [w.model.classifier(w.model.bert.pooler(out.hidden_states[i + 1])).argmax(-1) for i in range(2)]
        per_layer.append(out.logits.argmax(-1))
    hand = [sum(int(p[i]) == d["label"] for i, d in enumerate(docs)) / len(docs) for p in per_layer]
    block = records_metrics_by_layer(records, "multiple_choice", [{"metric": "acc"}], seed=3)
    assert block["metrics"]["acc"] == pytest.approx(hand, abs=1e-12)
    assert block["metrics"]["acc"][-1] == sum(r.prediction == r.references[0] for r in records) / len(records)
    assert block["n_choices"] == 2 and block["choice"] == "the layer's classifier argmax"
