"""Issue 21: one exit schedule drives every early-exit loop.

One hand-worked table: L layers, every layer below L−1 allowed, a gate that fires at layer 1 and
nowhere else, ``min_prefix`` = 2. Then token i of an output exits at

    i < 2 (a prefix token): L−1;      i ≥ 2: layer 1 (checks at 0 and 1, the gate fires at 1).

The causal loop, the self-speculative draft (every draft accepted on a model whose upper blocks are
identities), the encoder-decoder loop and the offline walk must give exactly that; the encoder
classifier (examples, not tokens: no prefix) exits every example at 1.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import (
    D_LAYERS,
    N_LAYERS,
    build_tiny_seq2seq,
    encoder_tokenizer,
    prompt_ids,
    tiny_encoder,
    tiny_llama,
    wrap_seq2seq,
)
from tiny_models import seq2seq_sources as sources

from ee_bench.decoding.decoders import decoder_for
from ee_bench.decoding.encoder_exit import early_exit_classify
from ee_bench.errors import DecodingOptionError
from ee_bench.exits.decide import DEFAULT_MIN_PREFIX, ExitSchedule, Point
from ee_bench.exits.gates import Gate, GateObservation
from ee_bench.models.hf_encoder import EncoderBatch, HFEncoderClassifier

MIN_PREFIX, FIRE_AT = 2, 1


class FireAtLayerHidden(Gate):
    """Fires for every row at exit layer ``at`` and nowhere else; reads no head, and the (b, H) hidden
    states only to know how many rows it sees."""

    needs_head, needs_hidden = False, True
    default_threshold, grid = 0.5, (0.5,)

    def __init__(self, at: int = FIRE_AT):
        self.at = at

    def fires(self, obs: GateObservation, threshold: float) -> torch.Tensor:
        return torch.full((obs.hidden.shape[0],), obs.layer == self.at, dtype=torch.bool)


def expected(n_tokens: int, n_layers: int) -> list[int]:
    return [n_layers - 1 if i < MIN_PREFIX else FIRE_AT for i in range(n_tokens)]


def test_point_table_by_hand():
    s = ExitSchedule.build(4, FireAtLayerHidden(), 0.5, None, MIN_PREFIX)
    table = {t: [s.point(layer, t).value for layer in range(4)] for t in range(4)}
    assert table == {0: ["pass", "pass", "pass", "exit"], 1: ["pass", "pass", "pass", "exit"],
                     2: ["check", "check", "check", "exit"], 3: ["check", "check", "check", "exit"]}
    forced = ExitSchedule(4, None, None, frozenset(), min_prefix=0, force_layer=2)
    assert [forced.point(layer, 0) for layer in range(4)] == [Point.PASS, Point.PASS, Point.EXIT, Point.EXIT]
    sparse = ExitSchedule.build(4, FireAtLayerHidden(), 0.5, [2, 3], 0)  # L−1 is full depth, not an exit
    assert sparse.exit_layers == frozenset({2}) and sparse.checked_layers(0) == (2,)
    assert ExitSchedule.build(4, "confidence", None, ()).gate is None  # full depth: no gate is asked
    assert ExitSchedule.build(4).min_prefix == DEFAULT_MIN_PREFIX == 4


def test_offline_walk_follows_the_table():
    s = ExitSchedule.build(4, FireAtLayerHidden(), 0.5, None, MIN_PREFIX)
    obs = [s.observe(layer, hidden=torch.zeros(3, 2)) for layer in range(3)]
    assert s.walk(obs, 3, token_index=0).tolist() == [3, 3, 3]
    assert s.walk(obs, 3, token_index=2).tolist() == [FIRE_AT] * 3


def test_bad_options_are_refused_in_one_place():
    with pytest.raises(DecodingOptionError, match=r"exit layers \[7\] are outside 0..3"):
        ExitSchedule.build(4, "confidence", 0.9, [7])
    with pytest.raises(DecodingOptionError, match="min_prefix -1 is negative"):
        ExitSchedule.build(4, "confidence", 0.9, None, -1)
    with pytest.raises(DecodingOptionError, match="forced exit layer 4"):
        ExitSchedule.build(4, force_layer=4)


def test_causal_loop_follows_the_table():
    m = tiny_llama()
    res = decoder_for(m).decode(prompt_ids(m), FireAtLayerHidden(), 0.5, "copy", (), 6, min_prefix=MIN_PREFIX)
    for trace in res.traces:
        assert list(trace.exit_layers) == expected(len(trace.exit_layers), N_LAYERS)
    assert any(len(t.exit_layers) > MIN_PREFIX for t in res.traces)  # the case is not trivial


def test_speculative_draft_follows_the_table():
    m = tiny_llama()
    with torch.no_grad():  # blocks 2, 3 are identities: every draft at layer 1 equals the full model's token
        for layer in m.model.model.layers[2:]:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        m.model.lm_head.weight[256].zero_()  # no EOS: the run uses its budget
    res = decoder_for(m, draft_len=2).decode(prompt_ids(m)[:1], FireAtLayerHidden(), 0.5, "speculative", (), 7,
                                             min_prefix=MIN_PREFIX)
    (trace,) = res.traces
    assert list(trace.exit_layers) == expected(7, N_LAYERS)
    assert res.counts.draft_tokens == res.counts.accepted_tokens == 7 - MIN_PREFIX


def test_encoder_decoder_loop_follows_the_table():
    tiny = wrap_seq2seq(build_tiny_seq2seq("marian"), name="marian")
    res = decoder_for(tiny).decode(sources(3), FireAtLayerHidden(), 0.5, "copy", (), 5, min_prefix=MIN_PREFIX)
    for trace in res.traces:
        assert list(trace.exit_layers) == expected(len(trace.exit_layers), D_LAYERS)
    assert any(len(t.exit_layers) > MIN_PREFIX for t in res.traces)


def test_encoder_classifier_follows_the_table():
    w = HFEncoderClassifier(tiny_encoder("bert", n_layers=4), encoder_tokenizer(), "tiny")
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 10, 11, 3, 0]])
    mask = (ids != 0).long()
    batch = EncoderBatch(ids, mask, torch.zeros_like(ids))
    out = early_exit_classify(w, batch, FireAtLayerHidden(), 0.5)
    assert out.exit_layer.tolist() == [FIRE_AT, FIRE_AT]  # examples: no prefix
