"""Per-layer decoding is exact: the last exit reproduces the model, every exit matches its definition.

Checked on tiny random Llama and GPT-2 decoders (tests/tiny_models.py):

- Unembed (final norm + head) of the last block's output, captured with a forward hook, equals
  ``model(...).logits`` bit for bit (HF's ``hidden_states[-1]`` is already normed: decoding it again
  is the classic mistake, checked too);
- ``analyse_positions``: row L−1 equals the statistics of ``model(...).logits``, and every row ℓ
  those of ``Unembed(h^ℓ)`` (top-1 exactly; probability and entropy to float32 rounding);
- ``Unembed.reduce`` over several vocabulary tiles and row groups equals one whole-row reduction;
- batch size 1 and batch size N give the same oracle layers;
- an unknown architecture is refused with the list of supported ones.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import ee_bench.models.unembed as unembed_mod
from ee_bench.errors import ModelStructureError
from ee_bench.exits.oracle import first_match_layer, saturation_layer
from ee_bench.models.unembed import Unembed, reduce_logits

PROB_ATOL = 1e-6  # float32 probabilities of peaked distributions: rounding is ~1e-7
ENT_ATOL = 1e-5  # nats; float32 sums over V terms


def reference_stats(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Definition in float64: argmax, max softmax probability, −Σ p log p. logits (N, V)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    return logits.argmax(dim=-1), logp.max(dim=-1).values.exp(), -(logp.exp() * logp).sum(dim=-1)


def assert_stats_match(got, ref) -> None:
    assert torch.equal(got[0], ref[0])
    assert torch.allclose(got[1].double(), ref[1], rtol=0, atol=PROB_ATOL)
    assert torch.allclose(got[2].double(), ref[2], rtol=0, atol=ENT_ATOL)


def ids_batch(lm, seed: int = 1, batch: int = 2, length: int = 11) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, lm.model.config.vocab_size, (batch, length), generator=g)  # (B, T), no specials


def block_outputs(lm, ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every block's output (B, T, H), captured with forward hooks, and the model's logits."""
    outs: list[torch.Tensor] = []
    hooks = [blk.register_forward_hook(lambda _m, _a, o: outs.append(o[0] if isinstance(o, tuple) else o))
             for blk in lm.parts.layers]
    try:
        with torch.no_grad():
            logits = lm.model(input_ids=ids, use_cache=False).logits
    finally:
        for h in hooks:
            h.remove()
    assert len(outs) == lm.n_layers
    return outs, logits


def test_tiny_models_are_tiny(tiny_lm):
    assert sum(p.numel() for p in tiny_lm.model.parameters()) < 1_000_000


def test_unembed_of_last_block_reproduces_logits_exactly(tiny_lm):
    ids = ids_batch(tiny_lm)
    outs, logits = block_outputs(tiny_lm, ids)
    with torch.no_grad():
        lens = tiny_lm.unembed(outs[-1])  # (B, T, V)
    assert lens.shape == logits.shape
    assert torch.equal(lens, logits)


def test_hidden_states_last_is_already_normed(tiny_lm):
    """The HF pitfall: hidden_states[-1] went through the final norm; normalising again is wrong."""
    ids = ids_batch(tiny_lm)
    with torch.no_grad():
        out = tiny_lm.model(input_ids=ids, use_cache=False, output_hidden_states=True)
        assert torch.equal(tiny_lm.parts.head(out.hidden_states[-1]), out.logits)
        assert not torch.allclose(tiny_lm.unembed(out.hidden_states[-1]), out.logits, atol=1e-3)


def test_analyse_positions_matches_definitions_at_every_layer(tiny_lm):
    ids = ids_batch(tiny_lm)
    B, T = ids.shape
    outs, logits = block_outputs(tiny_lm, ids)
    rows = torch.arange(B).repeat_interleave(T)
    cols = torch.arange(T).repeat(B)
    res = tiny_lm.analyse_positions(ids, torch.ones_like(ids), (rows, cols))
    L = tiny_lm.n_layers
    assert res.stats.top1.shape == (L, B * T)
    # Row L−1 is the model's own output.
    assert_stats_match(tuple(x[L - 1] for x in (res.stats.top1, res.stats.top1_prob, res.stats.entropy)),
                       reference_stats(logits.reshape(B * T, -1)))
    assert torch.equal(res.stats.top1[L - 1], logits.argmax(-1).reshape(-1))
    # Rows ℓ < L−1: final norm + head of block ℓ's output.
    with torch.no_grad():
        for layer in range(L - 1):
            ref = reference_stats(tiny_lm.unembed(outs[layer]).reshape(B * T, -1))
            got = (res.stats.top1[layer], res.stats.top1_prob[layer], res.stats.entropy[layer])
            assert_stats_match(got, ref)


def test_analyse_positions_keeps_hidden_states(tiny_llama_lm):
    lm = tiny_llama_lm
    ids = ids_batch(lm, batch=1, length=6)
    outs, _ = block_outputs(lm, ids)
    res = lm.analyse_positions(ids, torch.ones_like(ids), (torch.zeros(2, dtype=torch.long), torch.tensor([2, 5])),
                               keep_hidden=True)
    assert res.hidden.shape == (lm.n_layers, 2, lm.model.config.hidden_size)
    for layer in range(lm.n_layers):
        assert torch.equal(res.hidden[layer], outs[layer][0, [2, 5]])
    with torch.no_grad():
        emb = lm.parts.embed(ids)[0, [2, 5]]
    assert torch.equal(res.embeddings, emb)


@pytest.mark.parametrize("softcap", [None, 2.5])
def test_tiled_reduce_equals_whole_row_reduction(monkeypatch, softcap):
    """Several vocabulary tiles (online merge) and row groups give the one-shot statistics."""
    torch.manual_seed(3)
    head, norm = nn.Linear(16, 250, bias=True), nn.LayerNorm(16)
    with torch.no_grad():
        head.weight.mul_(15)
    hidden = torch.randn(300, 16)  # > 256 rows: two row groups
    monkeypatch.setattr(unembed_mod, "_MIN_TILE_COLS", 8)
    tiled = Unembed(norm, head, softcap=softcap, tile_elems=256 * 40)  # 40-column tiles: 7 per row
    with torch.no_grad():
        logits = tiled(hidden)  # (300, 250)
    ref = reference_stats(logits)
    got = tiled.reduce(hidden)
    # A tile's matrix product may round differently from the whole one: logits differ by a few
    # float32 ulps of their magnitude, and p and H by about that much (∂p/∂z ≤ 1, ∂H/∂z ≤ |log p|+H).
    tol = 16 * torch.finfo(torch.float32).eps * logits.abs().max().item()
    assert torch.equal(got[0], ref[0])
    assert torch.allclose(got[1].double(), ref[1], rtol=0, atol=tol)
    assert torch.allclose(got[2].double(), ref[2], rtol=0, atol=tol)
    whole = Unembed(norm, head, softcap=softcap)  # one tile per row group: the plain reduction
    assert_stats_match(whole.reduce(hidden), ref)


def test_tiled_top1_tie_goes_to_lowest_id(monkeypatch):
    """Token ids 5 and 37 have identical head rows, so identical logits; argmax picks 5."""
    head = nn.Linear(4, 64, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[5] = head.weight[37] = torch.tensor([3.0, 0.0, 0.0, 0.0])
    monkeypatch.setattr(unembed_mod, "_MIN_TILE_COLS", 8)
    un = Unembed(nn.Identity(), head, tile_elems=16)  # 16-column tiles: 5 and 37 in different tiles
    top1, prob, ent = un.reduce(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert top1.tolist() == [5]
    # Two logits of 3, sixty-two of 0: p = e³ / (2e³ + 62).
    z = 2 * math.e ** 3 + 62
    assert prob.item() == pytest.approx(math.e ** 3 / z, abs=PROB_ATOL)
    expected_h = -(2 * (math.e ** 3 / z) * math.log(math.e ** 3 / z) + 62 / z * math.log(1 / z))
    assert ent.item() == pytest.approx(expected_h, abs=ENT_ATOL)


# (logits of one row, top-1, top-1 probability, entropy in nats), worked out by hand.
REDUCE_CASES = [
    ([0.0, 0.0], 0, 0.5, math.log(2)),
    ([5.0, 5.0, 5.0, 5.0], 0, 0.25, math.log(4)),
    ([0.0, math.log(3.0)], 1, 0.75, -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))),
    ([100.0, 0.0, 0.0], 0, 1.0, 0.0),  # e^−100 terms vanish in float32
]


@pytest.mark.parametrize("row, top1, prob, ent", REDUCE_CASES)
def test_reduce_logits_hand_cases(row, top1, prob, ent):
    t, p, h = reduce_logits(torch.tensor([row]))
    assert t.tolist() == [top1]
    assert p.item() == pytest.approx(prob, abs=1e-6)
    assert h.item() == pytest.approx(ent, abs=1e-6)


def test_reduce_logits_leaves_input_alone_unless_inplace():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    before = x.clone()
    reduce_logits(x)
    assert torch.equal(x, before)
    bf = x.to(torch.bfloat16)
    assert reduce_logits(bf)[0].tolist() == [2]


def test_reduce_of_no_rows_is_empty(tiny_llama_lm):
    for top1, prob, ent in (reduce_logits(torch.zeros(0, 7)), tiny_llama_lm.unembed.reduce(torch.zeros(0, 32))):
        assert top1.shape == prob.shape == ent.shape == (0,)
        assert top1.dtype == torch.int64 and prob.dtype == torch.float32


def test_batch_of_one_and_batch_of_n_give_the_same_oracle(tiny_llama_lm):
    lm = tiny_llama_lm
    g = torch.Generator().manual_seed(7)
    prompts = [torch.randint(3, 96, (n,), generator=g).tolist() for n in (3, 9, 5)]
    outputs = [torch.randint(3, 96, (n,), generator=g).tolist() for n in (4, 1, 6)]
    batched = lm.analyse_outputs(prompts, outputs)
    for b, (p, o) in enumerate(zip(prompts, outputs)):
        alone = lm.analyse_outputs([p], [o])[0]
        assert batched[b].stats.n_tokens == len(o)
        assert torch.equal(batched[b].stats.top1, alone.stats.top1)
        assert torch.equal(first_match_layer(batched[b].stats.top1), first_match_layer(alone.stats.top1))
        assert torch.equal(saturation_layer(batched[b].stats.top1), saturation_layer(alone.stats.top1))
        assert torch.allclose(batched[b].stats.top1_prob, alone.stats.top1_prob, rtol=0, atol=1e-5)
        assert torch.allclose(batched[b].stats.entropy, alone.stats.entropy, rtol=0, atol=1e-4)


def test_analyse_outputs_teacher_forcing_positions(tiny_llama_lm):
    """Token i of output b is predicted at position len(prompt) + i − 1 of prompt + output."""
    lm = tiny_llama_lm
    prompt, output = [5, 9, 14], [20, 31, 7]
    res = lm.analyse_outputs([prompt], [output])[0]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([prompt + output[:-1]]), use_cache=False).logits[0]  # (5, V)
    assert res.stats.top1[-1].tolist() == logits[2:].argmax(-1).tolist()


def test_analyse_outputs_empty_output(tiny_llama_lm):
    res = tiny_llama_lm.analyse_outputs([[4, 5], [6]], [[], [8]])
    assert res[0].stats.top1.shape == (tiny_llama_lm.n_layers, 0)
    assert res[1].stats.top1.shape == (tiny_llama_lm.n_layers, 1)


def test_unknown_model_type_names_supported_architectures():
    from ee_bench.models.hf_causal import HFCausalLM

    class Mamba(nn.Module):
        config = SimpleNamespace(model_type="mamba")

    with pytest.raises(ModelStructureError) as err:
        HFCausalLM(Mamba(), tokenizer=None, name="x")
    msg = str(err.value)
    assert "'mamba'" in msg
    assert "Supported architectures" in msg
    for arch in ("gpt2", "llama", "mistral", "qwen2"):
        assert arch in msg
