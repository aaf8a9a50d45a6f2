"""KV strategies after a forced exit at a known layer, compared tensor by tensor (tiny Llama, offline)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import N_LAYERS, prompt_ids, tiny_llama
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ee_bench.commands.ls import lazy_registries
from ee_bench.decoding.early_exit import EarlyExitDecoder
from ee_bench.exits.gates import Gate, GateObservation
from ee_bench.exits.kv import KV_STRATEGIES, KVStrategy

EXIT = 1  # forced exit layer
MAX_TOKS = 4  # steps 1..3; the token fed at step 2 (column P+1) exits at EXIT


class FireOnce(Gate):
    """Fires for every row at the first check it sees, never again."""

    needs_head = False
    needs_hidden = True
    default_threshold = 0.5
    grid = (0.5,)

    def __init__(self):
        self.fired = False

    def fires(self, obs: GateObservation, threshold: float) -> torch.Tensor:
        out = torch.full((obs.hidden.shape[0],), not self.fired, dtype=torch.bool)
        self.fired = True
        return out


@pytest.fixture(scope="module")
def model():
    return tiny_llama(seed=1)


def run(model, kv, prompts):
    dec = EarlyExitDecoder(model)
    res = dec.decode(prompts, FireOnce(), 0.5, kv, (), MAX_TOKS, exit_layers=[EXIT], min_prefix=2)
    for t in res.traces:
        assert t.exit_layers == (3, 3, EXIT, 3)
    return dec, res


def reference(model, prompt, out):
    """Full-model cache and hidden states of prompt + out[:-1], teacher-forced (no padding)."""
    ids = torch.tensor([prompt + list(out[:-1])])
    o = model.model.model(input_ids=ids, use_cache=True, output_hidden_states=True)
    keys = [layer.keys[0] for layer in o.past_key_values.layers]  # L × (H_kv, T, D)
    values = [layer.values[0] for layer in o.past_key_values.layers]
    return keys, values, o.hidden_states


def test_registry_lists_the_strategies():
    reg = lazy_registries()["kv"]()
    assert reg.names() == ["copy", "deferred", "recompute", "speculative"]
    assert all(issubclass(KV_STRATEGIES.get(n), KVStrategy) for n in reg.names())
    assert KV_STRATEGIES.get("copy").paper_variant == "-d" and KV_STRATEGIES.get("recompute").paper_variant == "-c"


@pytest.mark.parametrize("batch", [1, 3])
def test_copy_fills_skipped_layers_with_exit_layer_kv(model, batch):
    prompts = prompt_ids(model)[:batch]
    dec, res = run(model, "copy", prompts)
    store, P = dec.last_store, max(len(p) for p in prompts)
    col = P + 1
    for b, (p, t) in enumerate(zip(prompts, res.traces)):
        keys, values, _ = reference(model, p, t.token_ids)
        pos = len(p) + 1
        for layer in range(EXIT + 1):  # blocks the token ran: the full model's own K/V
            torch.testing.assert_close(store.keys[layer][b, :, col], keys[layer][:, pos], atol=1e-5, rtol=1e-5)
        for layer in range(EXIT + 1, N_LAYERS):  # skipped blocks: exactly the exit layer's K/V
            assert torch.equal(store.keys[layer][b, :, col], store.keys[EXIT][b, :, col])
            assert torch.equal(store.values[layer][b, :, col], store.values[EXIT][b, :, col])
            assert not torch.allclose(store.keys[layer][b, :, col], keys[layer][:, pos], atol=1e-3)


@pytest.mark.parametrize("batch", [1, 3])
def test_recompute_fills_skipped_layers_with_own_projections(model, batch):
    prompts = prompt_ids(model)[:batch]
    dec, res = run(model, "recompute", prompts)
    store, P = dec.last_store, max(len(p) for p in prompts)
    col = P + 1
    base = model.model.model
    for b, (p, t) in enumerate(zip(prompts, res.traces)):
        keys, values, hidden = reference(model, p, t.token_ids)
        pos = len(p) + 1
        h = hidden[EXIT + 1][0, pos]  # block EXIT's output h^j at the exited position
        cos, sin = base.rotary_emb(h, position_ids=torch.tensor([[pos]]))
        for layer in range(EXIT + 1, N_LAYERS):
            blk = base.layers[layer]
            x = blk.input_layernorm(h)
            k = blk.self_attn.k_proj(x).view(1, 2, 1, 8)  # (1, H_kv, 1, D): 2 kv heads of size 32 / 4
            v = blk.self_attn.v_proj(x).view(2, 8)
            _, k = apply_rotary_pos_emb(k, k, cos, sin)
            torch.testing.assert_close(store.keys[layer][b, :, col], k[0, :, 0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(store.values[layer][b, :, col], v, atol=1e-5, rtol=1e-5)
            assert not torch.allclose(store.keys[layer][b, :, col], store.keys[EXIT][b, :, col], atol=1e-3)


@pytest.mark.parametrize("batch", [1, 3])
def test_deferred_ends_with_the_full_models_cache(model, batch):
    prompts = prompt_ids(model)[:batch]
    dec, res = run(model, "deferred", prompts)
    store, P = dec.last_store, max(len(p) for p in prompts)
    assert res.counts.catchup_token_layers == batch * (N_LAYERS - 1 - EXIT)
    for b, (p, t) in enumerate(zip(prompts, res.traces)):
        keys, values, _ = reference(model, p, t.token_ids)
        pad = P - len(p)
        n = len(p) + MAX_TOKS - 1  # every position fed to the model
        for layer in range(N_LAYERS):
            assert bool(store.written[layer, b, pad : pad + n].all())
            torch.testing.assert_close(store.keys[layer][b, :, pad : pad + n], keys[layer], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(store.values[layer][b, :, pad : pad + n], values[layer], atol=1e-5, rtol=1e-5)
