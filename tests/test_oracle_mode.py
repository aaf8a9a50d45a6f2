"""The oracle exit mode (``--gate oracle``, paper Tables 6 and 11): offline it gives the first-match
layers by definition; in the decoding loop every token exits at the first-match layer of its own
per-layer top-1 (logged by a spy on the head), the emitted token is the final layer's top-1, and with
``recompute`` the cache after the exit equals a hand-built reference (tiny Llama, offline)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import N_LAYERS, prompt_ids, tiny_llama
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ee_bench.decoding.early_exit import DecodingOptionError, EarlyExitDecoder
from ee_bench.exits.decide import gate_exit_layers
from ee_bench.exits.gates import GATES, OracleGate
from ee_bench.exits.oracle import first_match_layer
from ee_bench.types import LayerStats


def test_offline_oracle_is_the_first_match_layer():
    top1 = torch.tensor([[1, 2, 3, 9], [1, 5, 4, 9], [7, 5, 5, 9], [1, 5, 6, 8]])  # (L=4, N=4)
    stats = LayerStats(top1, torch.zeros(4, 4), torch.zeros(4, 4))
    # by hand: token 0 matches at 0; token 1 at 1; token 2 never below L−1 → 3; token 3 → 3
    assert gate_exit_layers(OracleGate(), stats, 0.0).tolist() == [0, 1, 3, 3]
    assert torch.equal(gate_exit_layers(OracleGate(), stats, 0.0), first_match_layer(top1))
    assert GATES.get("oracle") is OracleGate and OracleGate.needs_final and OracleGate().grid == (0.0,)


class TopSpy:
    """Wraps the runner's Unembed and logs the top-1 of every ``reduce`` call."""

    def __init__(self, inner):
        self.inner, self.log = inner, []

    def __call__(self, h):
        return self.inner(h)

    def reduce(self, h):
        out = self.inner.reduce(h)
        self.log.append(out[0].clone())
        return out


@pytest.mark.parametrize("kv", ["copy", "recompute"])
def test_every_token_exits_at_its_logged_first_match_layer(kv):
    model = tiny_llama()
    prompts = prompt_ids(model)[:1]
    dec = EarlyExitDecoder(model)
    spy = TopSpy(dec.runner.unembed)
    dec.runner.unembed = spy
    res = dec.decode(prompts, "oracle", None, kv, (), 8, min_prefix=0)
    (trace,) = res.traces
    steps = [torch.stack(spy.log[i : i + N_LAYERS]) for i in range(0, len(spy.log), N_LAYERS)]  # (L, 1) each
    assert len(steps) == len(trace.token_ids) - 1  # one oracle step per token after the prompt pass
    for i, top1 in enumerate(steps, start=1):
        assert trace.exit_layers[i] == int(first_match_layer(top1)[0])
        assert trace.token_ids[i] == int(top1[-1, 0])  # the final layer's top-1 is emitted
    assert any(e < N_LAYERS - 1 for e in trace.exit_layers[1:])  # the case is not trivial
    c = res.counts
    assert c.token_layers == len(trace.token_ids) * N_LAYERS  # analysis mode: every block runs
    assert c.kv_fill_token_layers == sum(N_LAYERS - 1 - e for e in trace.exit_layers[1:])


def test_recompute_cache_after_an_oracle_exit_equals_a_hand_built_reference():
    """Budget 2: the prompt pass emits g0 (full depth), the oracle step feeds g0 at column P, runs every
    block, exits g1 at its first-match layer e, and recompute overwrites column P's layers > e with
    RoPE(k_proj(norm_ℓ(h^e))), v_proj(norm_ℓ(h^e)); layers ≤ e keep the full model's keys/values."""
    model = tiny_llama()
    p = prompt_ids(model)[0]
    dec = EarlyExitDecoder(model)
    (trace,) = dec.decode([p], "oracle", None, "recompute", (), 2, min_prefix=0).traces
    P, e = len(p), trace.exit_layers[1]
    base = model.model.model
    o = base(input_ids=torch.tensor([p + [trace.token_ids[0]]]), use_cache=True, output_hidden_states=True)
    logits = model.model.lm_head(torch.stack([base.norm(h[0, P]) for h in o.hidden_states[1:-1]] + [o.hidden_states[-1][0, P]]))
    assert e == int(first_match_layer(logits.argmax(-1).unsqueeze(1))[0]) and e < N_LAYERS - 1
    store = dec.last_store
    for layer in range(e + 1):
        torch.testing.assert_close(store.keys[layer][0, :, P], o.past_key_values.layers[layer].keys[0, :, P],
                                   atol=1e-5, rtol=1e-5)
    h = o.hidden_states[e + 1][0, P]  # block e's output at column P
    cos, sin = base.rotary_emb(h, position_ids=torch.tensor([[P]]))
    for layer in range(e + 1, N_LAYERS):
        blk = base.layers[layer]
        x = blk.input_layernorm(h)
        k = blk.self_attn.k_proj(x).view(1, 2, 1, 8)  # (1, H_kv, 1, D)
        v = blk.self_attn.v_proj(x).view(2, 8)
        _, k = apply_rotary_pos_emb(k, k, cos, sin)
        torch.testing.assert_close(store.keys[layer][0, :, P], k[0, :, 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(store.values[layer][0, :, P], v, atol=1e-5, rtol=1e-5)
        if layer > e + 1:  # block e+1's input is h^e, so its recomputed keys are the full model's own
            assert not torch.allclose(store.keys[layer][0, :, P], o.past_key_values.layers[layer].keys[0, :, P],
                                      atol=1e-3)


def test_oracle_refuses_deferred_and_restricted_checks():
    model = tiny_llama()
    dec = EarlyExitDecoder(model)
    with pytest.raises(DecodingOptionError, match="Use --kv copy or recompute with the oracle gate"):
        dec.decode(prompt_ids(model)[:1], "oracle", None, "deferred", (), 4)
    with pytest.raises(DecodingOptionError, match="Use --check full"):
        dec.decode(prompt_ids(model)[:1], "oracle", None, "copy", (), 4, check="topk:4")


def test_trace_command_runs_the_oracle_mode(tmp_path, capsys):
    import json

    from tiny_models import save_tiny_llama

    from ee_bench.cli import main

    ckpt = save_tiny_llama(tmp_path / "ckpt")
    code = main(["trace", "--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--text", "w1 w2 w3",
                 "--gate", "oracle", "--kv", "copy,recompute", "--max-gen-toks", "6", "--min-prefix", "1",
                 "--device", "cpu", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gate"] == "oracle" and out["check"] == "full"
    assert [t["kv"] for t in out["traces"]] == ["copy", "recompute"]
    for t in out["traces"]:  # the first token comes from the prompt pass; both strategies agree on it
        assert t["exit_layers"][0] == N_LAYERS - 1 and t["token_ids"][0] == out["full"]["token_ids"][0]
