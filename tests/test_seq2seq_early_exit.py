"""Real early-exit decoding on tiny random Marian, BART, mBART, M2M100, T5 and FSMT translators.

- full depth (no exit layers) and a gate that never fires are token-identical to
  ``model.generate(num_beams=1, do_sample=False)``, batched with padded sources and one by one;
- every block's cross-attention keys/values, computed up front, equal those HF caches in a full run;
- the first generated token exits at layer 0: the second token, at full depth, has in every block
  exactly the hidden state of an HF reference run whose cross-attention cache HF fills itself from
  the encoder output (and whose self-attention cache holds what the KV strategy wrote);
- copy / recompute write what their definitions say into the skipped layers;
- deferred and architectures without a blockwise entry are refused with a message; the measured speed-up runs on the seq2seq loop.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import D_LAYERS, build_tiny_seq2seq, wrap_seq2seq
from tiny_models import seq2seq_sources as sources
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from ee_bench.decoding.decoders import decoder_for
from ee_bench.decoding.early_exit import DecodingOptionError
from ee_bench.decoding.speedup import EESetting, measure_speedups
from ee_bench.errors import ModelStructureError
from ee_bench.exits.gates import Gate

BLOCK_ARCHS = ("marian", "bart", "mbart", "m2m_100", "t5", "fsmt")


class FirstCheckGate(Gate):
    """Fires for every row at its first check (layer 0 of the first checked token), never again."""

    default_threshold, grid = 0.5, (0.5,)

    def __init__(self):
        self.calls = 0

    def fires(self, obs, threshold):
        self.calls += 1
        n = obs.top1.shape[0]
        return torch.full((n,), self.calls == 1 and obs.layer == 0, dtype=torch.bool)


class NeverGate(FirstCheckGate):
    def fires(self, obs, threshold):
        return torch.zeros(obs.top1.shape[0], dtype=torch.bool)


@pytest.fixture(scope="module", params=BLOCK_ARCHS)
def tiny(request):
    return wrap_seq2seq(build_tiny_seq2seq(request.param), name=request.param)


def _hf_greedy(w, src, n):
    ids, mask = w.pad_sources(src)
    with torch.no_grad():
        out = w.model.generate(input_ids=ids, attention_mask=mask, num_beams=1, do_sample=False, max_new_tokens=n)
    rows = []
    for row in out[:, 1:].tolist():
        rows.append(tuple(row[: row.index(2) + 1] if 2 in row else row))
    return rows


@pytest.mark.parametrize("batch_size", [None, 1])
def test_full_depth_and_silent_gate_equal_hf_generate(tiny, batch_size):
    src = sources(3)
    ref = _hf_greedy(tiny, src, 7)
    dec = decoder_for(tiny)
    full = dec.decode(src, None, None, "copy", (), 7, exit_layers=(), batch_size=batch_size)
    assert [t.token_ids for t in full.traces] == ref
    assert all(set(t.exit_layers) == {D_LAYERS - 1} for t in full.traces)
    silent = dec.decode(src, NeverGate(), 0.5, "recompute", (), 7, min_prefix=0, batch_size=batch_size)
    assert [t.token_ids for t in silent.traces] == ref
    assert silent.counts.gate_checks == sum(len(t.token_ids) for t in silent.traces) * (D_LAYERS - 1)


def test_cross_attention_kv_equal_hf_cache(tiny):
    src = sources(2)
    dec = decoder_for(tiny)
    dec.decode(src, None, None, "copy", (), 2, exit_layers=())
    ids, mask = tiny.pad_sources(src)
    with torch.no_grad():
        out = tiny.model(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.tensor([[1], [1]]), use_cache=True)
    hf_cross = out.past_key_values.cross_attention_cache
    for layer in range(D_LAYERS):
        assert torch.allclose(dec.last_cross[layer][0], hf_cross.layers[layer].keys, atol=1e-6)
        assert torch.allclose(dec.last_cross[layer][1], hf_cross.layers[layer].values, atol=1e-6)


def _capture(layers):
    seen: list[list[torch.Tensor]] = [[] for _ in layers]
    handles = [blk.register_forward_hook(lambda m, a, out, i=i: seen[i].append(out[0] if isinstance(out, tuple) else out))
               for i, blk in enumerate(layers)]
    return seen, handles


@pytest.mark.parametrize("kv", ["copy", "recompute"])
def test_first_token_exits_at_layer_0_second_token_sees_right_cross_attention(tiny, kv):
    src = sources(1)
    dec = decoder_for(tiny)
    seen, handles = _capture(tiny.layers)
    try:
        res = dec.decode(src, FirstCheckGate(), 0.5, kv, (), 2, exit_layers=(0,), min_prefix=0)
    finally:
        for h in handles:
            h.remove()
    (trace,) = res.traces
    assert trace.exit_layers[:2] == (0, D_LAYERS - 1)
    # block 0 ran twice (first and second token); deeper blocks ran once: the second token
    assert [len(s) for s in seen] == [2] + [1] * (D_LAYERS - 1)
    store = dec.last_store
    assert bool(store.written[:, 0, :2].all())  # both tokens' keys/values exist in every layer
    tok0 = trace.token_ids[0]
    # HF reference: self-attention cache = what the strategy wrote for position 0 (layer 0: the real
    # one); cross-attention cache EMPTY, so HF computes every block's encoder keys/values itself.
    self_cache = DynamicCache()
    for layer in range(D_LAYERS):
        self_cache.update(store.keys[layer][:, :, :1].clone(), store.values[layer][:, :, :1].clone(), layer)
    cache = EncoderDecoderCache(self_cache, DynamicCache())
    ids, mask = tiny.pad_sources(src)
    ref_seen, handles = _capture(tiny.layers)
    try:
        with torch.no_grad():
            enc = tiny.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            if tiny.parts.arch.time_major:  # FSMT's decoder takes its masks positionally
                tiny.model.get_decoder()(torch.tensor([[tok0]]), enc, mask, None, None, cache=cache, use_cache=True)
            else:
                tiny.model.get_decoder()(input_ids=torch.tensor([[tok0]]), encoder_hidden_states=enc,
                                         encoder_attention_mask=mask, cache=cache, use_cache=True)
    finally:
        for h in handles:
            h.remove()
    for layer in range(D_LAYERS):
        got = seen[layer][-1]  # the second token's output of this block (FSMT: time-major, as HF's)
        assert torch.allclose(got, ref_seen[layer][0], atol=1e-5), f"block {layer}"
    # and the strategy's fill for position 0 follows its definition
    with torch.no_grad():
        first = seen[0][0].transpose(0, 1) if tiny.parts.arch.time_major else seen[0][0]
        exit_h = first[0, -1:]  # (1, H) first token's h^0
        for layer in range(1, D_LAYERS):
            if kv == "copy":
                want_k, want_v = store.keys[0][0, :, 0], store.values[0][0, :, 0]
            else:
                k, v = dec.project_kv(layer, exit_h, torch.zeros(1, dtype=torch.long))
                want_k, want_v = k[0], v[0]
            assert torch.allclose(store.keys[layer][0, :, 0], want_k, atol=1e-6)
            assert torch.allclose(store.values[layer][0, :, 0], want_v, atol=1e-6)


def test_deferred_and_non_blockwise_architectures_are_refused(tiny):
    with pytest.raises(DecodingOptionError, match="copy or --kv recompute"):
        decoder_for(tiny).decode(sources(1), "confidence", 0.9, "deferred", (), 3)
    from ee_bench.models.seq2seq_arch import require_blockwise

    with pytest.raises(ModelStructureError, match="oracle analysis"):  # e.g. a plug-in entry without blockwise
        require_blockwise("pegasus_x", "some-model")


def test_measured_speedup_runs_on_seq2seq_loop(tiny):
    src = sources(2)
    dec = decoder_for(tiny)
    (rep,) = measure_speedups(tiny, src, [EESetting("copy", NeverGate(), 0.5, None, 0)], (), 4, repeats=1, decoder=dec)
    assert rep.n_layers == D_LAYERS and rep.token_agreement == 1.0 and rep.implied_speedup == pytest.approx(1.0)
    assert rep.full_wall_s > 0 and rep.ee_wall_s > 0
