"""Joint optimisation: layer weights, the joint loss by hand, and training through Trainer (tiny, offline)."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import encoder_tokenizer, tiny_encoder, toy_rows

from ee_bench.errors import EEBenchError
from ee_bench.training.joint import JointTrainer, joint_loss, layer_weights, per_layer_losses


@pytest.mark.parametrize("schedule,n,expected", [
    ("uniform", 3, [1 / 3, 1 / 3, 1 / 3]),
    ("increasing", 3, [1 / 6, 2 / 6, 3 / 6]),
    ("increasing", 1, [1.0]),
])
def test_layer_weights(schedule, n, expected):
    torch.testing.assert_close(layer_weights(n, schedule), torch.tensor(expected), rtol=0, atol=1e-7)


def test_unknown_schedule():
    with pytest.raises(EEBenchError, match="uniform, increasing"):
        layer_weights(3, "decreasing")


def _inputs(tok, rows):
    enc = tok([r["sentence"] for r in rows], padding=True, return_tensors="pt")
    return {**enc, "labels": torch.tensor([r["label"] for r in rows])}


def _hand_ce(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the batch of −log softmax(z)[y], written out with exp/log on Python floats."""
    total = 0.0
    for z, y in zip(logits.tolist(), labels.tolist()):
        total += -(z[y] - math.log(sum(math.exp(v) for v in z)))
    return total / len(labels)


def test_joint_loss_equals_hand_weighted_sum():
    from ee_bench.models.encoder_arch import locate_encoder_parts
    from ee_bench.models.hf_encoder import EncoderBatch, HFEncoderClassifier

    model, tok = tiny_encoder("bert", n_layers=3, seed=2), encoder_tokenizer()
    inputs = _inputs(tok, toy_rows(6))
    labels = inputs.pop("labels")
    w = HFEncoderClassifier(model, tok, "tiny")
    per_layer = w.layer_logits(EncoderBatch(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])).logits
    ces = [_hand_ce(per_layer[i], labels) for i in range(3)]
    weights = [1 / 6, 2 / 6, 3 / 6]
    expected = sum(wi * ci for wi, ci in zip(weights, ces))
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        parts = locate_encoder_parts(model)
        got = joint_loss(parts, out, labels, layer_weights(3, "increasing"))
        torch.testing.assert_close(per_layer_losses(parts, out, labels), torch.tensor(ces), rtol=0, atol=1e-5)
    assert float(got) == pytest.approx(expected, abs=1e-5)


def _trainer(model, tok, objective, schedule="uniform"):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="/tmp/unused", report_to=[], use_cpu=True)
    return JointTrainer(model=model, args=args, objective=objective, schedule=schedule)


def test_trainer_compute_loss_final_and_joint(tmp_path):
    model, tok = tiny_encoder("roberta", n_layers=3, seed=4), encoder_tokenizer()
    inputs = _inputs(tok, toy_rows(4))
    inputs.pop("token_type_ids")
    with torch.no_grad():
        ref = model(**{k: v for k, v in inputs.items() if k != "labels"}, output_hidden_states=True)
        final = _trainer(model, tok, "final").compute_loss(model, dict(inputs))
        joint = _trainer(model, tok, "joint").compute_loss(model, dict(inputs))
    from ee_bench.models.encoder_arch import locate_encoder_parts

    parts = locate_encoder_parts(model)
    ces = [_hand_ce(parts.head(ref.hidden_states[i + 1][:, 0]), inputs["labels"]) for i in range(2)]
    ces.append(_hand_ce(ref.logits, inputs["labels"]))
    assert float(final) == pytest.approx(ces[-1], abs=1e-5)
    assert float(joint) == pytest.approx(sum(ces) / 3, abs=1e-5)


def test_unknown_objective():
    with pytest.raises(EEBenchError, match="final, joint"):
        _trainer(tiny_encoder("bert"), encoder_tokenizer(), "all")


def _layer_losses(model, tok, rows) -> torch.Tensor:
    from ee_bench.models.encoder_arch import locate_encoder_parts

    inputs = _inputs(tok, rows)
    labels = inputs.pop("labels")
    model.eval()
    with torch.no_grad():
        return per_layer_losses(locate_encoder_parts(model), model(**inputs, output_hidden_states=True), labels)


def test_joint_training_lowers_every_layer_loss_and_saves_a_usable_checkpoint(tmp_path):
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.models.hf_encoder import HFEncoderClassifier
    from ee_bench.training.finetune import FinetuneConfig, finetune_classifier

    model, tok = tiny_encoder("bert", n_layers=3, seed=7), encoder_tokenizer()
    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    rows = toy_rows(48, seed=1)
    before = _layer_losses(model, tok, rows)
    cfg = FinetuneConfig(model=str(base), fields=("sentence",), num_labels=2, objective="joint", epochs=4,
                         learning_rate=3e-3, batch_size=8, max_length=16, seed=0, warmup_ratio=0.0,
                         label_names=("neg", "pos"), task="toy")
    out = finetune_classifier(cfg, rows, tmp_path / "ckpt", device="cpu")
    card = resolve_card(str(out))
    assert card.model == "hf-encoder" and card.name == "ckpt" and card.model_args == {"max_length": 16}
    wrapped = load_model(card, device="cpu")
    assert isinstance(wrapped, HFEncoderClassifier) and wrapped.model.config.id2label == {0: "neg", 1: "pos"}
    after = _layer_losses(wrapped.model, wrapped.tokenizer, rows)
    assert after.shape == (3,)
    assert bool((after < before).all()), (before, after)


def test_finetune_and_similarity_cli_in_process(tmp_path):
    import json

    from ee_bench.cli import main

    model, tok = tiny_encoder("bert", n_layers=3, seed=8), encoder_tokenizer()
    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in toy_rows(12)), encoding="utf-8")
    code = main(["finetune", "--model", str(base), "--train_file", str(data), "--fields", "sentence", "--num_labels", "2",
                 "--objective", "final", "--epochs", "1", "--batch_size", "4", "--rows", "0:8", "--device", "cpu",
                 "--output_dir", str(tmp_path / "ck")])
    assert code == 0
    record = json.loads((tmp_path / "ck" / "ee_bench_finetune.json").read_text())
    assert record["n_train_rows"] == 8 and record["config"]["objective"] == "final" and record["layer_weights"] is None
    code = main(["similarity", "--model", str(tmp_path / "ck"), "--model2", str(tmp_path / "ck"), "--data_file", str(data),
                 "--fields", "sentence", "--limit", "5", "--device", "cpu", "--output_dir", str(tmp_path / "sim")])
    assert code == 0
    out = json.loads((tmp_path / "sim" / "similarity.json").read_text())
    a, b = out["profiles"]
    assert a["n_examples"] == 5 and a["n_layers"] == 3 and a == b  # the same model twice gives the same profile
    assert a["kl_to_last"][-1] == 0.0 and a["cosine_to_last"][-1] == pytest.approx(1.0)
    assert (tmp_path / "sim" / "similarity.png").stat().st_size > 0
    assert main(["finetune", "--train_file", str(data), "--output_dir", str(tmp_path / "x")]) == 2  # no fields: user error
