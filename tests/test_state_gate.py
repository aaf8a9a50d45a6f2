"""The built-in head-free ``state`` gate (CALM §3.5): hand-computed cosines, exit layers offline and in
the decoding loop (no head projection at the checks), on tiny models from tests/tiny_models.py."""

from __future__ import annotations

import itertools

import pytest
import torch

from ee_bench.exits.decide import gate_exit_layers
from ee_bench.exits.gates import GATES, Gate, GateObservation, StateGate
from ee_bench.types import LayerStats


def test_state_is_a_built_in_head_free_gate():
    assert GATES.get("state") is StateGate and GATES.origin("state") == "built-in"
    assert StateGate.needs_head is False and StateGate.needs_hidden is True


def test_state_gate_fires_on_cosine():
    gate = StateGate()
    assert gate.needs_head is False and gate.needs_hidden is True and issubclass(StateGate, Gate)
    h = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    prev = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0]])
    # cosines by hand: 1, 0, 1/sqrt(2) ≈ 0.7071, -1
    obs = GateObservation(layer=3, n_layers=8, hidden=h, prev_hidden=prev)
    assert gate.fires(obs, 0.7).tolist() == [True, False, True, False]
    assert gate.fires(obs, 0.71).tolist() == [True, False, False, False]
    assert gate.fires(obs, -1.0).tolist() == [True, True, True, True]
    for bad in (1.01, -1.5, float("nan")):
        with pytest.raises(Exception, match="threshold"):
            gate.check_threshold(bad)


def test_state_gate_offline_exit_layers():
    # L = 3 layers, N = 2 tokens, H = 2; embeddings e, block outputs h^0, h^1, h^2
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    hidden = torch.tensor([
        [[1.0, 1.0], [1.0, 0.1]],   # h^0: cos(h^0, e) = 0.707, 0.995
        [[1.0, 1.1], [0.0, 1.0]],   # h^1: cos(h^1, h^0) ≈ 0.9989, ≈ 0.0995
        [[0.0, 1.0], [0.0, 1.0]],
    ])
    stats = LayerStats(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2), torch.zeros(3, 2))
    layers = gate_exit_layers(StateGate(), stats, 0.99, hidden, emb)
    assert layers.tolist() == [1, 0]
    assert gate_exit_layers(StateGate(), stats, 0.9999, hidden, emb).tolist() == [2, 2]  # never fires → L−1




class CountingUnembed:
    """Wraps the runner's Unembed and counts head projections (rows through the head)."""

    def __init__(self, inner):
        self.inner, self.rows, self.reduce_calls = inner, 0, 0

    def __call__(self, h):
        self.rows += h.reshape(-1, h.shape[-1]).shape[0]
        return self.inner(h)

    def reduce(self, h):
        self.reduce_calls += 1
        self.rows += h.shape[0]
        return self.inner.reduce(h)


@pytest.mark.parametrize("kv", ["copy", "recompute", "deferred"])
def test_state_gate_in_the_decoding_loop_projects_only_emitted_tokens(kv):
    from tiny_models import N_LAYERS, prompt_ids, tiny_llama

    from ee_bench.decoding.early_exit import EarlyExitDecoder

    model = tiny_llama()
    dec = EarlyExitDecoder(model)
    counter = CountingUnembed(dec.runner.unembed)
    dec.runner.unembed = counter
    prompts = prompt_ids(model)
    res = dec.decode(prompts, StateGate(), -1.0, kv, ("\n",), 6, min_prefix=0)  # τ = −1: fires at the first check
    assert counter.reduce_calls == 0  # no head projection at any gate check
    assert counter.rows == res.counts.tokens == res.counts.head_rows  # one per emitted token
    assert res.counts.gate_checks > 0
    for t in res.traces:  # first token from the prompt pass (L−1), then every token exits at layer 0
        assert t.exit_layers[0] == N_LAYERS - 1 and set(t.exit_layers[1:]) <= {0}


def test_state_gate_loop_agrees_with_offline_analysis():
    """Token 1 follows a full-depth token 0, so its hidden states in the loop are the teacher-forced
    ones: the loop's exit layer must equal the offline gate's, for any threshold."""
    from tiny_models import prompt_ids, tiny_llama

    from ee_bench.decoding.early_exit import early_exit_generate

    model = tiny_llama()
    prompt = prompt_ids(model)[:1]
    ref = model.generate(prompt, (), 3)[0][0]
    an = model.analyse_outputs(prompt, [ref], keep_hidden=True)[0]
    h = torch.cat([an.embeddings[1:2].unsqueeze(0), an.hidden[:, 1:2]], dim=0)  # (L+1, 1, H)
    cos = torch.nn.functional.cosine_similarity(h[1:], h[:-1], dim=-1)[:-1, 0]  # (L−1,) checks
    values = sorted(cos.tolist())
    for tau in [(a + b) / 2 for a, b in itertools.pairwise(values)]:  # thresholds away from ties
        offline = gate_exit_layers(StateGate(), an.stats, tau, an.hidden, an.embeddings)
        trace = early_exit_generate(model, prompt, StateGate(), tau, "recompute", (), 2, min_prefix=0)[0]
        assert trace.exit_layers[1] == int(offline[1])
        assert trace.token_ids[1] == int(an.stats.top1[offline[1], 1])
