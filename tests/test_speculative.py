"""Lossless self-speculative decoding (``--kv speculative``) on a tiny random Llama: the output equals
full-depth greedy decoding, and the draft/accept counts follow the definition on hand-built cases."""

from __future__ import annotations

import itertools

import pytest
import torch
from tiny_models import N_LAYERS, prompt_ids, tiny_llama

from ee_bench.decoding.early_exit import DecodingOptionError, EarlyExitDecoder
from ee_bench.decoding.speculative import DraftRound, accepted_prefix
from ee_bench.exits.gates import Gate, GateObservation


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
    spec = dec.decode(prompts, None, None, "speculative", (), 10, exit_layers=[1], min_prefix=0)
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
    res = dec.decode(prompt_ids(m)[:1], None, None, "speculative", (), 9, exit_layers=[1], min_prefix=0)
    (trace,) = res.traces
    c = res.counts
    assert (c.tokens, c.draft_rounds, c.draft_tokens, c.accepted_tokens) == (9, 2, 8, 8)
    assert list(trace.exit_layers) == [N_LAYERS - 1] + [1] * 8
    assert c.token_layers == N_LAYERS + 8 * N_LAYERS  # prompt pass token + (E+1)+(L−1−E) per drafted position
    assert c.head_rows == 1 + 2 * 8
    full = dec.decode(prompt_ids(m)[:1], None, None, "copy", (), 9, exit_layers=())
    assert trace.token_ids == full.traces[0].token_ids


def test_speculative_needs_one_draft_layer_or_a_gate(model):
    dec = EarlyExitDecoder(model)
    with pytest.raises(DecodingOptionError, match="one exit layer .* or a gate to choose"):
        dec.decode(prompt_ids(model)[:1], None, None, "speculative", (), 4)
    with pytest.raises(DecodingOptionError, match="one exit layer .* or a gate to choose"):
        dec.decode(prompt_ids(model)[:1], None, None, "speculative", (), 4, exit_layers=[0, 1])
    with pytest.raises(DecodingOptionError, match="deployable gate"):
        dec.decode(prompt_ids(model)[:1], "oracle", None, "speculative", (), 4, exit_layers=[0, 1])
    with pytest.raises(DecodingOptionError, match="--draft-len 0 is invalid"):
        dec.decode(prompt_ids(model)[:1], None, None, "speculative", (), 4, exit_layers=[1], draft_len=0)
    with pytest.raises(DecodingOptionError, match="--draft-len -2 is invalid"):
        EarlyExitDecoder(model, draft_len=-2)


class FireAtLayer(Gate):
    """Fires for every token at exit layer ``at`` and nowhere else (no head projection)."""

    needs_head = False
    needs_hidden = True
    default_threshold = 0.5
    grid = (0.5,)

    def __init__(self, at: int):
        self.at = at

    def fires(self, obs: GateObservation, threshold: float) -> torch.Tensor:
        return torch.full((obs.hidden.shape[0],), obs.layer == self.at, dtype=torch.bool)


@pytest.mark.parametrize("draft_len", [1, 2, 4])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("gate", "tau"), [("confidence", 0.2), ("state", 0.5), ("entropy", 3.0)])
def test_gate_chosen_draft_layer_equals_full_depth_greedy(model, draft_len, batch, gate, tau):
    prompts = prompt_ids(model)[:batch]
    dec = EarlyExitDecoder(model)
    full = dec.decode(prompts, None, None, "copy", (), 10, exit_layers=())
    spec = dec.decode(prompts, gate, tau, "speculative", (), 10, exit_layers=None, draft_len=draft_len, min_prefix=0)
    for row, (s, f) in enumerate(zip(spec.traces, full.traces)):
        for pos, (a, b) in enumerate(zip(s.token_ids, f.token_ids)):
            assert a == b, f"row {row}: gate-chosen speculative diverges from full depth at position {pos}: {a} != {b}"
        assert list(s.token_ids) == list(f.token_ids)
        assert s.speculative["draft_len"] == draft_len
        assert set(s.exit_layers) <= set(range(N_LAYERS))  # drafts exit at 0..L−2, corrections at L−1
    c = spec.counts
    assert c.accepted_tokens <= c.draft_tokens <= draft_len * c.draft_rounds
    assert c.gate_checks > 0
    assert sum(t.speculative["draft_tokens"] for t in spec.traces) == c.draft_tokens


@pytest.mark.parametrize("batch", [1, 3])
def test_gate_chosen_draft_with_restricted_checks_equals_full_depth_greedy(model, batch):
    prompts = prompt_ids(model)[:batch]
    dec = EarlyExitDecoder(model, check="topk:2")
    full = dec.decode(prompts, None, None, "copy", (), 10, exit_layers=())
    spec = dec.decode(prompts, "confidence", 0.3, "speculative", (), 10, draft_len=3, min_prefix=0)
    assert [t.token_ids for t in spec.traces] == [t.token_ids for t in full.traces]
    assert spec.counts.restricted_checks > 0


def _identity_upper_blocks():
    m = tiny_llama()
    with torch.no_grad():
        for layer in m.model.model.layers[2:]:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        m.model.lm_head.weight[256].zero_()  # EOS logit 0, below the top-1: the run uses its budget
    return m


def test_gate_chosen_counts_on_a_hand_built_case():
    """Blocks 2 and 3 are identities (h^3 = h^1), the gate fires at layer 1 only: every draft exits at
    e = 1 (checks at layers 0 and 1; E = 2 is the deepest allowed layer and never checked), its
    layer-2 cache gets a copy of layer 1 (one fill each), every draft is accepted. Budget 9, d = 4:
    2 rounds of 4 drafts. Blocks: 4 (prompt pass token) + 8 × (e + 1) + 8 × (L − 1 − e_min) = 4 + 16 + 16.
    Head rows: 1 + 8 drafts (head-free gate) + 8 verified. Acceptance 8/8, 4 per round."""
    m = _identity_upper_blocks()
    res = EarlyExitDecoder(m).decode(prompt_ids(m)[:1], FireAtLayer(1), 0.5, "speculative", (), 9,
                                     exit_layers=[0, 1, 2], draft_len=4, min_prefix=0)
    (trace,) = res.traces
    c = res.counts
    assert (c.tokens, c.draft_rounds, c.draft_tokens, c.accepted_tokens) == (9, 2, 8, 8)
    assert list(trace.exit_layers) == [N_LAYERS - 1] + [1] * 8
    assert (c.gate_checks, c.kv_fill_token_layers, c.head_rows) == (16, 8, 17)
    assert c.token_layers == 4 + 16 + 16
    assert (c.acceptance_rate, c.mean_accepted_per_round) == (1.0, 4.0)
    assert trace.speculative == {"draft_len": 4, "draft_rounds": 2, "draft_tokens": 8, "accepted_tokens": 8,
                                 "acceptance_rate": 1.0, "mean_accepted_per_round": 4.0}


def test_speculative_honours_min_prefix():
    """Issue 21: --kv speculative drafts no token below --min-prefix. Same model and gate as above with
    min_prefix 3: token 0 (prompt pass) and tokens 1, 2 (one full-depth step each) exit at L−1 = 3;
    tokens 3 … 8 are drafted: a round of 4 then, with 2 tokens of budget left, a round of 2, all
    accepted at e = 1. Blocks: 4 + 2 × 4 + 6 × (e + 1) + 6 × (L − 1 − e) = 4 + 8 + 12 + 12 = 36.
    Gate checks 6 × 2 (layers 0 and 1); fills 6 × 1; head rows 1 + 2 + 6 drafts + 6 verified = 15."""
    m = _identity_upper_blocks()
    res = EarlyExitDecoder(m).decode(prompt_ids(m)[:1], FireAtLayer(1), 0.5, "speculative", (), 9,
                                     exit_layers=[0, 1, 2], draft_len=4, min_prefix=3)
    (trace,) = res.traces
    c = res.counts
    assert list(trace.exit_layers) == [N_LAYERS - 1] * 3 + [1] * 6
    assert (c.tokens, c.draft_rounds, c.draft_tokens, c.accepted_tokens) == (9, 2, 6, 6)
    assert (c.gate_checks, c.kv_fill_token_layers, c.head_rows, c.token_layers) == (12, 6, 15, 36)
    fixed = EarlyExitDecoder(m).decode(prompt_ids(m)[:1], None, None, "speculative", (), 9, exit_layers=[1],
                                       draft_len=4, min_prefix=5)
    assert list(fixed.traces[0].exit_layers)[:5] == [N_LAYERS - 1] * 5
    assert list(fixed.traces[0].token_ids) == list(trace.token_ids)  # lossless either way


def test_acceptance_figures_without_drafts_are_none():
    from ee_bench.decoding.early_exit import DecodeCounts

    assert DecodeCounts().acceptance_rate is None and DecodeCounts().mean_accepted_per_round is None
    c = DecodeCounts(draft_rounds=4, draft_tokens=8, accepted_tokens=6)
    assert (c.acceptance_rate, c.mean_accepted_per_round) == (0.75, 1.5)


# --- adaptive draft length (issue 23) -----------------------------------------------------------------


def test_adaptive_draft_length_follows_transformers_heuristic_by_hand():
    """Start 4. Rounds (drafted, accepted): (4, 4) all accepted → 6; (6, 2) rejection → 5; (5, 0) → 4;
    (4, 3) → 3; (3, 0) → 2; (2, 1) → 1; (1, 0) → 1 (never below 1); (1, 1) all accepted → 3."""
    from ee_bench.decoding.draft_length import DraftLength

    policy = DraftLength(4, adaptive=True)
    d, seen = policy.start, []
    for accepted in (4, 2, 0, 3, 0, 1, 0, 1):
        d = policy.next(d, accepted)
        seen.append(d)
    assert seen == [6, 5, 4, 3, 2, 1, 1, 3]
    assert DraftLength(4).next(4, 0) == 4 and DraftLength(4).next(4, 4) == 4  # constant
    with pytest.raises(ValueError):
        policy.next(2, 3)


@pytest.mark.parametrize(("text", "expected"), [(None, None), ("3", 3), (5, 5), ("adaptive", "adaptive:4"),
                                                ("adaptive:2", "adaptive:2"), ("ADAPTIVE:7", "adaptive:7")])
def test_parse_draft_len(text, expected):
    from ee_bench.decoding.draft_length import parse_draft_len

    got = parse_draft_len(text)
    assert (None if got is None else str(got)) == (None if expected is None else str(expected))


@pytest.mark.parametrize("text", ["0", "adaptive:0", "adaptiv", "-1", "2.5", "adaptive:x"])
def test_bad_draft_len_is_refused(text):
    from ee_bench.decoding.draft_length import parse_draft_len

    with pytest.raises(DecodingOptionError, match="--draft-len"):
        parse_draft_len(text)


def test_adaptive_rounds_follow_the_heuristic_and_stay_lossless(model):
    """On the random tiny model most drafts are rejected: every round's length is the previous round's
    length passed through the heuristic (capped by the budget), and the output equals full depth."""
    from ee_bench.decoding.draft_length import DraftLength
    from ee_bench.decoding.speculative import SelfSpeculativeDecoder
    from ee_bench.decoding.timing import SectionTimer
    from ee_bench.exits.decide import ExitSchedule

    dec = EarlyExitDecoder(model)
    policy = DraftLength(3, adaptive=True)
    spec = SelfSpeculativeDecoder(dec.runner, model, ExitSchedule(N_LAYERS, None, None, frozenset(), 0, force_layer=1),
                                  policy)
    budget = 16
    for prompt in prompt_ids(model)[:2]:
        gen, _, rounds, _ = spec.decode_row(list(prompt), (), budget, SectionTimer(model.device), dec._finished)
        assert len(rounds[0].drafted) == 3
        produced = 1
        for prev, cur in itertools.pairwise(rounds):
            produced += len(prev.emitted)
            want = min(policy.next(len(prev.drafted), prev.accepted), budget - produced)
            assert len(cur.drafted) == want
        full = dec.decode([prompt], None, None, "copy", (), budget, exit_layers=())
        assert gen[: len(full.traces[0].token_ids)] == list(full.traces[0].token_ids)
    res = dec.decode(prompt_ids(model)[:2], None, None, "speculative", (), budget, exit_layers=[1], min_prefix=0,
                     draft_len="adaptive:3")
    assert res.traces[0].speculative["draft_len"] == "adaptive:3"


def test_adaptive_grows_when_every_draft_is_accepted():
    """Upper blocks are identities, so every draft is accepted: budget 12, start 1 → rounds of 1, 3, 5, then
    min(7, 12 − 10) = 2 drafts (token 1 comes from the prompt pass; 10 made before the last round)."""
    m = _identity_upper_blocks()
    dec = EarlyExitDecoder(m)
    res = dec.decode(prompt_ids(m)[:1], None, None, "speculative", (), 12, exit_layers=[1], min_prefix=0,
                     draft_len="adaptive:1")
    c = res.counts
    assert (c.tokens, c.draft_rounds, c.draft_tokens, c.accepted_tokens) == (12, 4, 11, 11)


# --- the gate ends a draft round early (--draft-len …+gate, issue 23) -----------------------------------


class FireNever(FireAtLayer):
    """Never fires (head-free): with +gate every round stops after its first draft."""

    def __init__(self):
        super().__init__(at=-1)


@pytest.mark.parametrize(("text", "expected"), [("4+gate", "4+gate"), ("adaptive+gate", "adaptive:4+gate"),
                                                ("adaptive:6+GATE", "adaptive:6+gate"), (" 2+gate ", "2+gate")])
def test_parse_draft_len_with_gate_stop(text, expected):
    from ee_bench.decoding.draft_length import DraftLength, parse_draft_len

    got = parse_draft_len(text)
    assert isinstance(got, DraftLength) and got.gate_stop and str(got) == expected


@pytest.mark.parametrize("text", ["4+gat", "+gate", "adaptive:0+gate", "gate", "4+gate+gate", "4+"])
def test_bad_draft_len_with_gate_stop_is_refused(text):
    from ee_bench.decoding.draft_length import parse_draft_len

    with pytest.raises(DecodingOptionError, match=r"--draft-len .*\+gate"):
        parse_draft_len(text)


def test_adaptive_length_after_rounds_the_gate_ended_early_by_hand():
    """transformers: +2 from the planned length when every *drafted* token was accepted, else −1.
    Start 4. Rounds (planned, drafted, accepted): (4, 2, 2) → 6; (6, 6, 3) → 5; (5, 1, 0) → 4; (4, 4, 4) → 6;
    (6, 1, 1) → 8."""
    from ee_bench.decoding.draft_length import DraftLength

    policy = DraftLength(4, adaptive=True, gate_stop=True)
    planned, seen = policy.start, []
    for drafted, accepted in ((2, 2), (6, 3), (1, 0), (4, 4), (1, 1)):
        drafted = min(drafted, planned)
        planned = policy.next(drafted, accepted, planned)
        seen.append(planned)
    assert seen == [6, 5, 4, 6, 8]
    assert DraftLength(4, gate_stop=True).next(2, 2, 4) == 4  # constant length: the gate only shortens rounds
    with pytest.raises(ValueError):
        policy.next(5, 1, 4)  # more drafted than planned


def test_gate_stop_on_a_hand_built_case():
    """Upper blocks are identities, so every draft is accepted. Fixed draft layer E = 1, budget 12,
    min_prefix 0, adaptive start 1.
    - A gate that never fires ends every round after one draft: token 0 from the prompt pass, then 11 rounds of
      1 draft, all accepted. The planned length still grows (1, 3, 5, …) because every drafted token was
      accepted, but never matters. Gate checks: 11, one per draft, at E; head-free, so head rows
      1 + 11 drafts + 11 verified = 23.
    - A gate that fires at E on every token changes nothing: rounds of 1, 3, 5, then 2 (as without +gate)."""
    m = _identity_upper_blocks()
    dec = EarlyExitDecoder(m)
    never = dec.decode(prompt_ids(m)[:1], FireNever(), 0.5, "speculative", (), 12, exit_layers=[1], min_prefix=0,
                       draft_len="adaptive:1+gate")
    c = never.counts
    assert (c.tokens, c.draft_rounds, c.draft_tokens, c.accepted_tokens) == (12, 11, 11, 11)
    assert (c.gate_checks, c.head_rows) == (11, 23)
    assert never.traces[0].speculative["draft_len"] == "adaptive:1+gate"
    always = dec.decode(prompt_ids(m)[:1], FireAtLayer(1), 0.5, "speculative", (), 12, exit_layers=[1],
                        min_prefix=0, draft_len="adaptive:1+gate")
    c = always.counts
    assert (c.tokens, c.draft_rounds, c.draft_tokens, c.accepted_tokens, c.gate_checks) == (12, 4, 11, 11, 11)
    plain = dec.decode(prompt_ids(m)[:1], None, None, "speculative", (), 12, exit_layers=[1], min_prefix=0,
                       draft_len="adaptive:1")
    assert list(never.traces[0].token_ids) == list(always.traces[0].token_ids) == list(plain.traces[0].token_ids)


@pytest.mark.parametrize(("gate", "tau", "layers"), [("confidence", 0.2, [1]), ("confidence", 0.9, [1]),
                                                      ("state", 0.5, None)])
def test_gate_stop_stays_lossless(model, gate, tau, layers):
    """On the random tiny model: +gate with a fixed draft layer and with a gate-chosen one equals full depth."""
    prompts = prompt_ids(model)[:3]
    dec = EarlyExitDecoder(model)
    full = dec.decode(prompts, None, None, "copy", (), 10, exit_layers=())
    spec = dec.decode(prompts, gate, tau, "speculative", (), 10, exit_layers=layers, min_prefix=0,
                      draft_len="adaptive:3+gate")
    assert [t.token_ids for t in spec.traces] == [t.token_ids for t in full.traces]
    assert spec.counts.gate_checks >= spec.counts.draft_tokens  # at least one check per draft


def test_gate_stop_needs_a_deployable_gate(model):
    dec = EarlyExitDecoder(model)
    with pytest.raises(DecodingOptionError, match=r"\+gate"):
        dec.decode(prompt_ids(model)[:1], None, None, "speculative", (), 4, exit_layers=[1], draft_len="2+gate")
    with pytest.raises(DecodingOptionError, match="deployable gate"):
        dec.decode(prompt_ids(model)[:1], "oracle", None, "speculative", (), 4, exit_layers=[1], draft_len="2+gate")
