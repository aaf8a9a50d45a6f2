"""Check modes (``--check``): the candidate-restricted check (approximate) on hand-built hidden states
and a hand-built head, and in the decoding loop on a tiny Llama (the emitted token stays the exact
full-head argmax)."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import N_LAYERS, prompt_ids, tiny_llama
from torch import nn

from ee_bench.decoding.checks import (
    CheckMode,
    CheckModeError,
    full_check,
    parse_check_mode,
    restricted_check,
)
from ee_bench.decoding.early_exit import DecodingOptionError, EarlyExitDecoder
from ee_bench.exits.decide import first_exit_layers, observe_layer
from ee_bench.exits.gates import ConfidenceGate
from ee_bench.models.unembed import Unembed


def hand_unembed() -> Unembed:
    """H = 2, V = 4, identity final norm, head rows e0 = (1, 0), e1 = (0, 1), e2 = (−1, 0), e3 = (0, −1):
    logits of h = (x, y) are (x, y, −x, −y)."""
    head = nn.Linear(2, 4, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    return Unembed(nn.Identity(), head)


# one token, its block outputs at layers 0, 1, 2 (L = 4)
H_LAYERS = [torch.tensor([[1.0, 0.5]]), torch.tensor([[2.0, 1.0]]), torch.tensor([[3.0, 1.0]])]


def softmax_top(logits: list[float]) -> float:
    return math.exp(max(logits)) / sum(math.exp(z) for z in logits)


def test_restricted_statistics_by_hand():
    u = hand_unembed()
    top1, prob, ent, cand = full_check(u, H_LAYERS[0], 2)
    assert cand.tolist() == [[0, 1]] and top1.tolist() == [0]  # logits (1, .5, −1, −.5): top-2 = ids 0, 1
    assert prob.item() == pytest.approx(softmax_top([1, 0.5, -1, -0.5]), abs=1e-6)  # 0.5089
    top1, prob, ent = restricted_check(u, H_LAYERS[1], cand)  # logits of ids 0, 1: (2, 1)
    p = 1 / (1 + math.exp(-1))  # 0.7311, against 0.6964 over the whole vocabulary
    assert top1.tolist() == [0]
    assert prob.item() == pytest.approx(p, abs=1e-6)
    assert ent.item() == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)), abs=1e-6)  # 0.5822 nats
    torch.testing.assert_close(u.candidate_logits(H_LAYERS[1], cand), torch.tensor([[2.0, 1.0]]))


def walk(mode_k: int | None, tau: float) -> int:
    """Exit layer of the hand-built token under the confidence gate, full or restricted checks."""
    u, obs, cand, observations = hand_unembed(), None, None, []
    for layer, h in enumerate(H_LAYERS):
        if mode_k is None:
            top1, prob, ent = u.reduce(h)
        elif cand is None:
            top1, prob, ent, cand = full_check(u, h, mode_k)
        else:
            top1, prob, ent = restricted_check(u, h, cand)
        obs = observe_layer(layer, 4, top1=top1, top1_prob=prob, entropy=ent, previous=obs)
        observations.append(obs)
    return int(first_exit_layers(ConfidenceGate(), tau, observations, 1, 4)[0])


@pytest.mark.parametrize(("k", "tau", "expected"), [
    # full softmax: 0.5089, 0.6964, 0.8650 at layers 0, 1, 2
    (None, 0.7, 2), (None, 0.5, 0), (None, 0.9, 3),
    # top-2 of layer 0 = {0, 1}: layer 1 restricted to them 0.7311, layer 2: logits (3, 1) → 0.8808
    (2, 0.7, 1), (2, 0.88, 2), (2, 0.89, 3),
    # top-1: every restricted probability is 1, so the second check always fires
    (1, 0.99, 1),
])
def test_exit_layers_full_and_restricted_by_hand(k, tau, expected):
    assert walk(k, tau) == expected


def test_parse_check_mode():
    assert parse_check_mode("full") == CheckMode() and parse_check_mode(None) == CheckMode()
    assert parse_check_mode("topk:16") == CheckMode(16)
    assert CheckMode(16).label == "topk:16 (approximate)" and CheckMode().label == "full"
    for bad in ("topk", "topk:0", "topk:-3", "top:4", "bottomk:2", "topk:1.5"):
        with pytest.raises(CheckModeError, match="--check full .* --check topk:K"):
            parse_check_mode(bad)


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


def test_topk_over_the_whole_vocabulary_equals_full_checks(model):
    """K = V: the candidates are every token, so the restricted statistics are the full ones."""
    prompts = prompt_ids(model)
    dec = EarlyExitDecoder(model)
    full = dec.decode(prompts, "confidence", 0.05, "copy", (), 8, min_prefix=0)
    topv = dec.decode(prompts, "confidence", 0.05, "copy", (), 8, min_prefix=0, check="topk:257")
    assert [t.token_ids for t in topv.traces] == [t.token_ids for t in full.traces]
    assert [t.exit_layers for t in topv.traces] == [t.exit_layers for t in full.traces]
    assert topv.counts.gate_checks == full.counts.gate_checks


def test_topk1_exits_at_the_second_check_and_emits_the_exact_argmax(model):
    """topk:1: a token's first check (layer 0, full head) fires only if its top-1 probability reaches
    τ; the second (layer 1, one candidate) always has probability 1. Token 1 follows the full-depth
    token 0, so its hidden states are the teacher-forced ones: its exit layer is 1 and its token the
    full head's argmax at layer 1 (not the candidate of layer 0, when the two differ)."""
    prompt = prompt_ids(model)[:1]
    dec = EarlyExitDecoder(model, check="topk:1")
    res = dec.decode(prompt, "confidence", 0.99, "copy", (), 2, min_prefix=0)
    (trace,) = res.traces
    an = model.analyse_outputs(prompt, [list(trace.token_ids)])[0]
    assert float(an.stats.top1_prob[0, 1]) < 0.99
    assert trace.exit_layers[1] == 1
    assert trace.token_ids[1] == int(an.stats.top1[1, 1])
    c = res.counts
    # one step, one row: full check at 0 (head row), restricted at 1, full head at the exit; + prompt pass
    assert (c.gate_checks, c.restricted_checks, c.head_rows) == (2, 1, 1 + 1 + 1)


def test_restricted_checks_refused_for_head_free_gates(model):
    dec = EarlyExitDecoder(model)
    with pytest.raises(DecodingOptionError, match="reads no head. Use --check full"):
        dec.decode(prompt_ids(model)[:1], "state", 0.9, "copy", (), 4, check="topk:8")
    with pytest.raises(CheckModeError):
        EarlyExitDecoder(model, check="topk:x")
    assert N_LAYERS == 4


def test_speedup_settings_carry_the_check_mode_and_draft_length(model):
    from ee_bench.decoding.speedup import EESetting, measure_speedups

    prompts = prompt_ids(model)[:2]
    settings = [EESetting("copy", "confidence", 0.99, None, 0, "topk:4"), EESetting("copy", "confidence", 0.99, None, 0),
                EESetting("speculative", "confidence", 0.3, None, 0, None, 2)]
    full, restricted, spec = measure_speedups(model, prompts, settings[1:2] + settings[:1] + settings[2:], (), 6,
                                              repeats=1)
    assert full.ee_counts.restricted_checks == 0 and restricted.ee_counts.restricted_checks > 0
    assert spec.ee_counts.draft_tokens <= 2 * spec.ee_counts.draft_rounds and spec.token_agreement == 1.0
    assert spec.ee_traces[0].speculative["draft_len"] == 2


# --- shortlist:N (issue 23) ------------------------------------------------------------------------


def test_shortlist_is_the_most_frequent_calibration_tokens():
    from ee_bench.decoding.checks import with_shortlist

    mode = parse_check_mode("shortlist:2")
    assert (mode.shortlist, mode.ids, mode.name, mode.approximate) == (2, None, "shortlist:2", True)
    # counts: 5 → 3, 3 → 2, 9 → 1
    assert with_shortlist(mode, [[5, 5, 3], [3, 9, 5]]).ids == (5, 3)
    assert with_shortlist(parse_check_mode("shortlist:1"), [[7, 2]]).ids == (2,)  # a tie: the smaller id
    assert with_shortlist(parse_check_mode("shortlist:9"), [[7, 2]]).ids == (2, 7)  # fewer distinct than N
    assert with_shortlist(parse_check_mode("topk:3"), [[1]]) == CheckMode(3)  # other modes unchanged
    with pytest.raises(CheckModeError, match="empty"):
        with_shortlist(mode, [[], []])
    with pytest.raises(CheckModeError, match="shortlist:N"):
        parse_check_mode("shortlist:0")


def test_shortlist_statistics_by_hand():
    """Shortlist ids (1, 2) of the hand head: h = (2, 1) gives logits (2, 1, −2, −1); over ids 1, 2 the
    logits are (1, −2): top-1 id 1, probability σ(3) = 0.9526, whatever ids 0 and 3 score."""
    from ee_bench.decoding.checks import shortlist_check

    top1, prob, ent = shortlist_check(hand_unembed(), H_LAYERS[1], CheckMode(shortlist=2, ids=(1, 2)))
    p = 1 / (1 + math.exp(-3))
    assert top1.tolist() == [1]
    assert prob.item() == pytest.approx(p, abs=1e-6)
    assert ent.item() == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)), abs=1e-6)
    with pytest.raises(CheckModeError, match="no shortlist yet"):
        shortlist_check(hand_unembed(), H_LAYERS[1], CheckMode(shortlist=2))


class CountingUnembed(nn.Module):
    """Counts the full-head rows (forward / reduce) and the candidate rows a check computes."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.full_rows, self.candidate_rows = inner, 0, 0

    def forward(self, h):
        self.full_rows += h.shape[0]
        return self.inner(h)

    def reduce(self, h):
        self.full_rows += h.shape[0]
        return self.inner.reduce(h)

    def candidate_logits(self, h, ids):
        self.candidate_rows += ids.numel()
        return self.inner.candidate_logits(h, ids)


def test_shortlist_check_computes_only_n_head_rows(model):
    """shortlist:5 from the full-depth outputs; τ = 0.01 fires at every token's first check (layer 0),
    as with full checks, and the emitted token is the full head's argmax at layer 0 in both, so the
    outputs are equal. Per check exactly 5 head rows are computed; the full head runs once per emitted
    token (prompt pass and exits), never at a check."""
    from ee_bench.decoding.checks import with_shortlist

    prompts = prompt_ids(model)[:2]
    dec = EarlyExitDecoder(model)
    ref = dec.decode(prompts, None, None, "copy", (), 6, exit_layers=())
    mode = with_shortlist(parse_check_mode("shortlist:5"), [t.token_ids for t in ref.traces])
    assert len(mode.ids) == 5
    full = dec.decode(prompts, "confidence", 0.01, "copy", (), 6, min_prefix=0)
    counter = CountingUnembed(dec.runner.unembed)
    dec.runner.unembed = counter
    try:
        short = dec.decode(prompts, "confidence", 0.01, "copy", (), 6, min_prefix=0, check=mode)
    finally:
        dec.runner.unembed = counter.inner
    assert [t.token_ids for t in short.traces] == [t.token_ids for t in full.traces]
    c = short.counts
    assert c.gate_checks == c.restricted_checks == c.tokens - len(prompts) > 0
    assert c.restricted_rows == 5 * c.gate_checks == counter.candidate_rows
    assert c.head_rows == c.tokens == counter.full_rows
    with pytest.raises(DecodingOptionError, match="needs its shortlist"):
        dec.decode(prompts, "confidence", 0.01, "copy", (), 6, min_prefix=0, check="shortlist:5")
    with pytest.raises(DecodingOptionError, match="reads no head"):
        dec.decode(prompts, "state", 0.9, "copy", (), 6, min_prefix=0, check=mode)
