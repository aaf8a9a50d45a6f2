"""The `none` gate never exits; `confidence` at τ = 1.0 does fire where float32 rounds p to 1.0."""

from __future__ import annotations

import torch
from tiny_models import N_LAYERS, prompt_ids, tiny_llama

from ee_bench.decoding.early_exit import early_exit_generate
from ee_bench.exits.decide import gate_exit_layers
from ee_bench.exits.gates import GATES
from ee_bench.types import LayerStats


def test_float32_softmax_rounds_to_exactly_one():
    # float32 numbers just above 1 are 2^-23 apart, so the denominator 1 + e^-d rounds to 1 once
    # e^-d < 2^-24, i.e. d > 24 ln 2 ≈ 16.6 nats: d = 17 gives p == 1.0 exactly, d = 16 does not.
    assert torch.softmax(torch.tensor([0.0, -17.0]), 0)[0].item() == 1.0
    assert torch.softmax(torch.tensor([0.0, -16.0]), 0)[0].item() < 1.0


def test_confidence_at_one_fires_but_none_never_does():
    # 3 layers, 2 tokens: token 0 reaches p == 1.0 (rounded) at layer 0, token 1 never does.
    prob = torch.tensor([[1.0, 0.5], [1.0, 0.9], [1.0, 0.99]])
    stats = LayerStats(top1=torch.zeros(3, 2, dtype=torch.int64), top1_prob=prob, entropy=torch.zeros(3, 2))
    conf = GATES.get("confidence")()
    assert gate_exit_layers(conf, stats, conf.check_threshold(1.0)).tolist() == [0, 2]
    none = GATES.get("none")()
    assert gate_exit_layers(none, stats, none.check_threshold(0.0)).tolist() == [2, 2]
    assert none.check_threshold(123.0) == 123.0  # τ is ignored, any finite value accepted


def test_none_gate_decodes_like_generate():
    model = tiny_llama()
    prompts = prompt_ids(model)
    ref = model.generate(prompts, ("\n",), 8)
    traces = early_exit_generate(model, prompts, GATES.get("none")(), 0.0, "recompute", ("\n",), 8)
    assert [list(t.token_ids) for t in traces] == [r[0] for r in ref]
    assert all(set(t.exit_layers) == {N_LAYERS - 1} for t in traces)
