"""Gemma-3 block by block: local (sliding) and global layers, key norm, embedding scale.

The block loop (``ee_bench.decoding.blocks.BlockExecutor``) must reproduce Hugging Face's own greedy
decoding of a Gemma3ForCausalLM when no token exits early — with prompts longer than the sliding
window, one and three rows (left padding) and every KV strategy — and CALM's state propagation must
write the keys the block itself would write. Tiny random model (3 blocks: local, local, global;
window 4), built from a config here.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import NeverGate, prompt_ids, tiny_gemma3_bytes

from ee_bench.decoding.blocks import BlockExecutor
from ee_bench.decoding.early_exit import early_exit_generate
from ee_bench.decoding.kv_store import SlotIndex
from ee_bench.exits.gates import Gate, GateObservation

KVS = ("copy", "recompute", "deferred")


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request):
    return tiny_gemma3_bytes(request.param)


def test_layer_types_and_window_are_the_models(model):
    ex = BlockExecutor(model)
    assert ex.layer_types == ["sliding_attention", "sliding_attention", "full_attention"]
    assert ex.local_window == 4 and ex.sliding_window is None  # per-layer masks, no length refusal
    rope = ex.rope(torch.tensor([[0, 5]]))
    assert set(rope) == {"sliding_attention", "full_attention"}
    # different rotary bases (local 10k, global 1M): position 5 turns differently
    assert not torch.allclose(rope["sliding_attention"][0], rope["full_attention"][0])


def test_local_mask_hides_keys_beyond_the_window(model):
    """Query at column 6, window 4: the local layer sees columns 3..6, the global one 0..6."""
    ex = BlockExecutor(model)
    cols = torch.tensor([[6]])
    index = SlotIndex(torch.zeros(1, dtype=torch.long), cols, torch.ones_like(cols, dtype=torch.bool), 7, True)
    masks = ex.mask(index, torch.ones((1, 8), dtype=torch.bool))
    visible = lambda m: [int(i) for i in range(7) if (bool(m[0, 0, 0, i]) if m.dtype == torch.bool else m[0, 0, 0, i] == 0)]  # noqa: E731
    assert masks["full_attention"] is None  # q = 1, everything visible
    assert visible(masks["sliding_attention"]) == [3, 4, 5, 6]


@pytest.mark.parametrize("kv", KVS)
@pytest.mark.parametrize("batch", [1, 3])
def test_never_firing_gate_matches_generate(model, kv, batch):
    prompts = prompt_ids(model)[:batch]  # 12, 33 and 2 tokens: longer and shorter than the window
    ref = model.generate(prompts, (), 10)
    traces = early_exit_generate(model, prompts, NeverGate(), 0.5, kv, (), 10)
    assert [list(t.token_ids) for t in traces] == [r[0] for r in ref]
    assert all(set(t.exit_layers) == {2} for t in traces)


@pytest.mark.parametrize("draft_layer", [0, 1])
def test_self_speculation_is_token_identical(model, draft_layer):
    prompts = prompt_ids(model)
    ref = model.generate(prompts, (), 10)
    traces = early_exit_generate(model, prompts, None, None, "speculative", (), 10, exit_layers=[draft_layer], min_prefix=0)
    assert [list(t.token_ids) for t in traces] == [r[0] for r in ref]


def test_state_propagation_writes_the_blocks_own_keys(model):
    """project_kv (k_norm, then the local rotary table) equals what block 0 writes for the same input."""
    ex = BlockExecutor(model)
    store = ex.new_store(1, 8)
    torch.manual_seed(1)
    h = torch.randn(1, 1, int(ex.config.hidden_size))
    cols = torch.tensor([[5]])
    index = SlotIndex(torch.zeros(1, dtype=torch.long), cols, torch.ones_like(cols, dtype=torch.bool), 6, True)
    key_real = torch.ones((1, 8), dtype=torch.bool)
    with torch.no_grad():
        ex.run_layer(0, h, index, store, ex.mask(index, key_real), ex.rope(cols))
        k, v = ex.project_kv(0, h[:, 0], torch.tensor([5]))  # (1, H_kv, D)
    torch.testing.assert_close(k[0], store.keys[0][0, :, 5], rtol=0, atol=1e-6)
    torch.testing.assert_close(v[0], store.values[0][0, :, 5], rtol=0, atol=1e-6)


class EvenTopGate(Gate):
    """Fires where the check's top-1 id is even: some rows leave, the others run on (a row subset)."""

    needs_head = True
    default_threshold = 0.5
    grid = (0.5,)

    def fires(self, obs: GateObservation, threshold: float) -> torch.Tensor:
        return obs.top1 % 2 == 0


@pytest.mark.parametrize("kv", KVS)
def test_rows_leaving_early_decode_as_they_would_alone(model, kv):
    """A batch whose rows exit at different layers (so the per-layer-type masks and rotary tables are
    cut to the rows still running) gives each row what it gives decoded alone."""
    prompts = prompt_ids(model)
    batch = early_exit_generate(model, prompts, EvenTopGate(), 0.5, kv, (), 10, exit_layers=[0, 1], min_prefix=1)
    alone = [early_exit_generate(model, [p], EvenTopGate(), 0.5, kv, (), 10, exit_layers=[0, 1], min_prefix=1)[0]
             for p in prompts]
    assert {0, 2} <= {e for t in batch for e in t.exit_layers}  # rows really leave at different layers
    assert any(len({t.exit_layers[i] for t in batch if len(t.exit_layers) > i}) > 1 for i in range(10))  # in one step
    assert [t.token_ids for t in batch] == [t.token_ids for t in alone]
    assert [t.exit_layers for t in batch] == [t.exit_layers for t in alone]
