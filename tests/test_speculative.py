"""Lossless self-speculative decoding (``--kv speculative``) on a tiny random Llama: the output equals
full-depth greedy decoding, and the draft/accept counts follow the definition on hand-built cases."""

from __future__ import annotations

import pytest
import torch

from ee_bench.decoding.early_exit import DecodingOptionError, EarlyExitDecoder
from ee_bench.decoding.speculative import DraftRound, accepted_prefix
from tiny_models import N_LAYERS, prompt_ids, tiny_llama


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.mark.parametrize(("drafted", "verified", "k", "emitted"), [
    ((5, 6, 7), (5, 6, 8), 2, (5, 6, 8)),   # third draft rejected: two accepted, then the correction
    ((1,), (2,), 0, (2,)),                  # nothing accepted: only the correction
    ((3, 4), (3, 4), 2, (3, 4)),            # all accepted: no correction (the next round verifies on)
    ((9, 1, 9), (9, 2, 9), 1, (9, 2)),      # a later match after a mismatch does not count
])
def test_accepted_prefix_and_emitted_tokens(drafted, verified, k, emitted):
    assert accepted_prefix(drafted, verified) == k
    assert DraftRound(drafted, verified, k).emitted == emitted


def test_accepted_prefix_needs_equal_lengths():
    with pytest.raises(ValueError, match="differ in number"):
        accepted_prefix([1, 2], [1])


@pytest.mark.parametrize("draft_len", [1, 2, 4])
@pytest.mark.parametrize("batch", [1, 3])
def test_output_equals_full_depth_greedy(model, draft_len, batch, monkeypatch):
    from ee_bench.exits.kv import KV_STRATEGIES

    monkeypatch.setattr(KV_STRATEGIES.get("speculative"), "draft_len", draft_len)
    prompts = prompt_ids(model)[:batch]
    dec = EarlyExitDecoder(model)
    full = dec.decode(prompts, None, None, "copy", (), 10, exit_layers=())
    spec = dec.decode(prompts, None, None, "speculative", (), 10, exit_layers=[1])
    reference = model.generate(prompts, (), 10)
    for s, f, (ids, _text) in zip(spec.traces, full.traces, reference):
        for pos, (a, b) in enumerate(zip(s.token_ids, f.token_ids)):
            assert a == b, f"speculative output diverges from full depth at position {pos}: {a} != {b}"
        assert list(s.token_ids) == list(f.token_ids) == list(ids)
    c = spec.counts
    assert c.accepted_tokens <= c.draft_tokens <= draft_len * c.draft_rounds
    # every emitted token after the prompt pass is an accepted draft or a round's correction
    assert c.tokens - batch <= c.accepted_tokens + c.draft_rounds


def test_counts_when_the_upper_blocks_are_identities(monkeypatch):
    """Blocks 2 and 3 add nothing to the residual stream (zero o_proj and down_proj), so h^3 = h^1 and every
    draft is accepted. Budget 9 tokens, d = 4, draft layer E = 1: the prompt pass gives token 1, round 1
    drafts 4 (tokens 2–5), round 2 drafts min(4, 9 − 5) = 4 (tokens 6–9)."""
    from ee_bench.exits.kv import KV_STRATEGIES

    monkeypatch.setattr(KV_STRATEGIES.get("speculative"), "draft_len", 4)
    m = tiny_llama()
    with torch.no_grad():
        for layer in m.model.model.layers[2:]:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        m.model.lm_head.weight[256].zero_()  # EOS (id 256) logit 0, below the top-1: the run uses its budget
    dec = EarlyExitDecoder(m)
    res = dec.decode(prompt_ids(m)[:1], None, None, "speculative", (), 9, exit_layers=[1])
    (trace,) = res.traces
    c = res.counts
    assert (c.tokens, c.draft_rounds, c.draft_tokens, c.accepted_tokens) == (9, 2, 8, 8)
    assert list(trace.exit_layers) == [N_LAYERS - 1] + [1] * 8
    assert c.token_layers == N_LAYERS + 8 * N_LAYERS  # prompt pass token + (E+1)+(L−1−E) per drafted position
    assert c.head_rows == 1 + 2 * 8
    full = dec.decode(prompt_ids(m)[:1], None, None, "copy", (), 9, exit_layers=())
    assert trace.token_ids == full.traces[0].token_ids


def test_speculative_needs_exactly_one_draft_layer(model):
    dec = EarlyExitDecoder(model)
    with pytest.raises(DecodingOptionError, match="exactly one exit layer"):
        dec.decode(prompt_ids(model)[:1], None, None, "speculative", (), 4)
    with pytest.raises(DecodingOptionError, match="exactly one exit layer"):
        dec.decode(prompt_ids(model)[:1], None, None, "speculative", (), 4, exit_layers=[0, 1])
