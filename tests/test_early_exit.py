"""Early-exit decoding loop on a tiny random Llama (offline)."""

from __future__ import annotations

import pytest
from tiny_models import N_LAYERS, AlwaysGate, NeverGate, prompt_ids, tiny_llama

from ee_bench.decoding.early_exit import DecodingOptionError, EarlyExitDecoder, early_exit_generate
from ee_bench.errors import ModelStructureError, UnknownNameError

KVS = ("copy", "recompute", "deferred")


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.mark.parametrize("kv", KVS)
@pytest.mark.parametrize("batch", [1, 3])
def test_never_firing_gate_matches_generate(model, kv, batch):
    prompts = prompt_ids(model)[:batch]
    until = ("\n",)
    ref = model.generate(prompts, until, 10)
    traces = early_exit_generate(model, prompts, NeverGate(), 0.5, kv, until, 10)
    assert [list(t.token_ids) for t in traces] == [r[0] for r in ref]
    assert [t.text for t in traces] == [r[1] for r in ref]
    assert all(set(t.exit_layers) == {N_LAYERS - 1} for t in traces)


def test_full_depth_runs_every_block_and_no_gate(model):
    prompts = prompt_ids(model)
    res = EarlyExitDecoder(model).decode(prompts, None, None, "copy", (), 6, exit_layers=())
    assert res.counts.tokens == 18
    assert res.counts.token_layers == 18 * N_LAYERS
    assert res.counts.gate_checks == 0 and res.counts.head_rows == 18
    assert res.split.gate_s == 0.0


@pytest.mark.parametrize("kv", KVS)
def test_min_prefix_and_exit_layers_hold(model, kv):
    prompts = prompt_ids(model)
    res = EarlyExitDecoder(model).decode(prompts, AlwaysGate(), 0.5, kv, (), 8, exit_layers=[2, 1], min_prefix=3)
    for t in res.traces:
        assert t.exit_layers == (3, 3, 3, 1, 1, 1, 1, 1)
    # tokens 1, 2 run every block with no check; tokens 3..7 run blocks 0, 1 and one check at block 1
    assert res.counts.gate_checks == 3 * 5
    assert res.counts.token_layers == 3 * (3 * N_LAYERS + 5 * 2)


def test_exit_layers_restricted_by_confidence_gate(model):
    prompts = prompt_ids(model)
    traces = early_exit_generate(model, prompts, "confidence", 0.05, "copy", (), 10, exit_layers=[2], min_prefix=4)
    for t in traces:
        assert t.exit_layers[:4] == (3, 3, 3, 3)
        assert set(t.exit_layers) <= {2, 3}


def test_gate_without_head_costs_no_head_projection_at_checks(model):
    prompts = prompt_ids(model)
    res = EarlyExitDecoder(model).decode(prompts, AlwaysGate(needs_head=False), 0.5, "copy", (), 5, exit_layers=[0], min_prefix=0)
    assert res.counts.gate_checks == 3 * 4
    assert res.counts.head_rows == res.counts.tokens == 15  # one projection per emitted token
    with_head = EarlyExitDecoder(model).decode(prompts, AlwaysGate(), 0.5, "copy", (), 5, exit_layers=[0], min_prefix=0)
    assert with_head.counts.head_rows == 3 + 3 * 4  # prompt-pass tokens + one check per exited token
    assert [t.token_ids for t in with_head.traces] == [t.token_ids for t in res.traces]


def test_emitted_token_is_exit_layer_top1(model):
    """With exact caches before it, the first exited token is layer j's top-1 of the full model."""
    prompts = prompt_ids(model)[:1]
    t = early_exit_generate(model, prompts, AlwaysGate(), 0.5, "copy", (), 3, exit_layers=[1], min_prefix=2)[0]
    assert t.exit_layers == (3, 3, 1)
    stats = model.analyse_outputs(prompts, [list(t.token_ids)])[0].stats
    assert t.token_ids[2] == int(stats.top1[1, 2])
    assert list(t.token_ids[:2]) == stats.top1[N_LAYERS - 1, :2].tolist()


def test_option_errors(model):
    dec = EarlyExitDecoder(model)
    with pytest.raises(DecodingOptionError, match="outside 0..3"):
        dec.decode(prompt_ids(model), "confidence", 0.9, "copy", (), 4, exit_layers=[7])
    with pytest.raises(DecodingOptionError, match="min_prefix"):
        dec.decode(prompt_ids(model), "confidence", 0.9, "copy", (), 4, min_prefix=-1)
    with pytest.raises(UnknownNameError, match="Did you mean: copy"):
        dec.decode(prompt_ids(model), "confidence", 0.9, "cpy", (), 4)


def test_unsupported_architecture_is_named():
    from tiny_models import byte_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    from ee_bench.models.hf_causal import HFCausalLM

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=257, n_embd=16, n_layer=2, n_head=2, n_positions=64))
    wrapper = HFCausalLM(gpt2, byte_tokenizer(), name="tiny-gpt2")
    with pytest.raises(ModelStructureError, match="supports model_type llama, mistral, qwen2, gemma3_text"):
        EarlyExitDecoder(wrapper)


def test_trace_table_lists_token_and_exit_layer_per_strategy(model):
    from ee_bench.commands.trace import trace_table
    from ee_bench.options import parse_layers

    prompts = prompt_ids(model)[:1]
    traces = [early_exit_generate(model, prompts, AlwaysGate(), 0.5, kv, (), 5, exit_layers=[1], min_prefix=4)[0]
              for kv in ("copy", "recompute")]
    table = trace_table(model.tokenizer, ["copy", "recompute"], traces, N_LAYERS).splitlines()
    assert [c.strip() for c in table[0].split("|")[1:-1]] == ["#", "token (copy)", "exit (copy)", "token (recompute)", "exit (recompute)"]
    cells = [c.strip() for c in table[2 + 4].split("|")[1:-1]]  # 5th token: first one allowed to exit
    assert cells[0] == "5" and cells[2] == "1" and cells[4] == "1"
    assert "3.6/4 layers run" in table[-1]  # (4·4 + 2) / 5 blocks per token
    assert parse_layers("8, 12") == [8, 12] and parse_layers(None) is None
    with pytest.raises(Exception, match="comma-separated integers"):
        parse_layers("8;12")


def test_measure_speedups_reports_consistent_ratios(model):
    from ee_bench.decoding.speedup import EESetting, measure_speedups, token_agreement

    prompts = prompt_ids(model)  # 3 prompts, 6 tokens each (no stop string)
    always = EESetting("copy", AlwaysGate(), 0.5, exit_layers=(1,), min_prefix=2)
    never = EESetting("copy", AlwaysGate(), 0.5, exit_layers=(1,), min_prefix=6)  # the prefix covers the budget
    rep, full_depth = measure_speedups(model, prompts, [always, never], (), 6, repeats=1,
                                       references=[["a"], ["b"], ["c"]])
    # tokens 0, 1 run 4 blocks, tokens 2..5 exit at block 1 (2 blocks): L / mean = 4 / (16/6)
    assert rep.implied_speedup == pytest.approx(4 / (16 / 6))
    assert rep.ee_counts.tokens == 18 and rep.ee_counts.token_layers == 3 * (4 + 4 + 4 * 2)  # 48 blocks
    assert rep.work_ratio == pytest.approx(48 / (18 * 4))
    assert rep.per_token_speedup == pytest.approx(rep.per_sequence_speedup)  # same token counts (18 / 18)
    assert set(rep.quality) == {"chrf", "bleu"}
    assert rep.token_agreement >= 6 / 18  # tokens 0 and 1 of each output are decoded at full depth
    # Nothing exits: the same blocks as full depth, so the same tokens and every ratio of layers is 1.
    assert full_depth.ee_counts.token_layers == 72 and full_depth.ee_counts.gate_checks == 0
    assert full_depth.token_agreement == 1.0
    assert full_depth.implied_speedup == 1.0 and full_depth.work_ratio == 1.0
    assert token_agreement([[1, 2, 3]], [[1, 5, 3, 4]]) == 0.5  # 2 of 4 full-depth positions


def test_speedup_ratios_hand_values():
    from ee_bench.decoding.early_exit import DecodeCounts
    from ee_bench.decoding.speedup import speedup_ratios

    # full depth: 12 tokens in 2.0 s; early exit: 10 tokens in 0.5 s, 20 blocks run + 4 catch-up blocks, L = 4
    r = speedup_ratios(2.0, 0.5, 12, DecodeCounts(tokens=10, token_layers=20, catchup_token_layers=4), 4)
    assert r["per_sequence_speedup"] == pytest.approx(4.0)  # 2.0 / 0.5
    assert r["per_token_speedup"] == pytest.approx(10 / 3)  # (10 / 0.5) / (12 / 2.0) = 20 / 6
    assert r["implied_speedup"] == pytest.approx(2.0)  # 4 · 10 / 20
    assert r["work_ratio"] == pytest.approx(0.6)  # (20 + 4) / (10 · 4)


def test_samples_fields_carry_one_trace_per_strategy(model):
    from ee_bench.decoding.samples import early_exit_fields
    from ee_bench.options import parse_kv_list

    prompts = prompt_ids(model)[:2]
    fields = early_exit_fields(model, prompts, (), 6, AlwaysGate(), 0.5, ["copy", "recompute"], [1], 2)
    assert len(fields) == 2
    for f in fields:
        ee = f["early_exit"]
        assert set(ee["traces"]) == {"copy", "recompute"} and ee["exit_layers_allowed"] == [1]
        for tr in ee["traces"].values():
            assert tr["exit_layers"] == [3, 3, 1, 1, 1, 1] and len(tr["token_ids"]) == 6
            assert tr["mean_layers_run"] == pytest.approx((4 + 4 + 4 * 2) / 6)
    assert parse_kv_list(" copy, deferred ") == ["copy", "deferred"]
    with pytest.raises(UnknownNameError, match="Did you mean: recompute"):
        parse_kv_list("recomput")


def test_shallow_exit_note_counts_layer0_exits_and_echoes_by_hand():
    """min_prefix 2: tokens 2…5 are gated. Exits (3, 3, 0, 0, 0, 5), ids (8, 9, 9, 9, 4, 4): three of four
    gated tokens exit at layer 0 (≥ half: warn); token 2 (9) repeats its input 9, token 3 (9) repeats 9,
    token 4 (4) does not (input 9): 2 echoes of 3, so the input embedding is named. With min_prefix 0 the
    first token still comes from the prompt pass, so tokens 1…5 are gated: 3 of 5."""
    from ee_bench.decoding.traces import ExitTrace, shallow_exit_note

    t = ExitTrace("copy", 6, (8, 9, 9, 9, 4, 4), "x", (5, 3, 0, 0, 0, 5))
    note = shallow_exit_note(t, 8, 2)
    assert note.startswith("3 of 4 gated tokens exited at layers 0-1 (of 6), and 2 of them repeat")
    assert "mostly reads the input embedding" in note
    assert shallow_exit_note(t, 8, 0).startswith("3 of 5 gated tokens exited at layers 0-1")
    assert shallow_exit_note(ExitTrace("copy", 6, (8, 9, 9), "x", (5, 0, 5)), 8, 0).startswith("1 of 2")  # half: warn
    assert shallow_exit_note(ExitTrace("copy", 6, (8, 9, 9, 4), "x", (5, 0, 5, 5)), 8, 0) is None  # 1 of 3
    assert shallow_exit_note(ExitTrace("copy", 6, (8,), "x", (5,)), 8, 4) is None  # nothing gated


def test_shallow_exit_note_counts_layer1_and_the_first_tenth_of_the_depth_by_hand():
    """L 30: shallow layers are 0-2 (⌈30/10⌉ = 3). Exits (29, 1, 2, 1, 11, 29), ids (5, 5, 7, 7, 3, 3),
    min_prefix 0 (token 0 from the prompt pass is not gated): tokens 1, 2, 3 are shallow (3 of 5, ≥ half);
    token 1 (5) repeats 5, token 2 (7) does not, token 3 (7) repeats 7: 2 echoes of 3, the embedding is
    named. On L 6 only layers 0-1 are shallow, so the exit at 2 is not counted: 2 of 5 < half. With one
    echo of three the note says to compare with full depth instead."""
    from ee_bench.decoding.traces import ExitTrace, shallow_exit_note, shallow_layers

    assert [shallow_layers(n) for n in (6, 18, 20, 21, 30)] == [2, 2, 2, 3, 3]
    note = shallow_exit_note(ExitTrace("copy", 30, (5, 5, 7, 7, 3, 3), "x", (29, 1, 2, 1, 11, 29)), 5, 0)
    assert note.startswith("3 of 5 gated tokens exited at layers 0-2 (of 30)") and "and 2 of them repeat" in note
    assert "input embedding" in note
    assert shallow_exit_note(ExitTrace("copy", 6, (5, 5, 7, 7, 3, 3), "x", (5, 1, 2, 1, 4, 5)), 5, 0) is None
    few = shallow_exit_note(ExitTrace("copy", 30, (5, 6, 7, 7, 3, 3), "x", (29, 1, 2, 1, 11, 29)), 5, 0)
    assert "1 of them repeat" in few and "compare the output with full depth" in few


def test_quality_ratio_interval_from_the_definition():
    """Paired bootstrap of 100 × chrF(early exit) / chrF(full depth): identical outputs give exactly
    [100, 100]; one document gives no interval (nothing to resample); with two
    documents every resample is one of {doc 0 twice, doc 1 twice, both}, so both ends lie among those three
    ratios, each computed here with sacrebleu's CHRF directly."""
    import sacrebleu

    from ee_bench.decoding.speedup import quality_ratio_interval

    refs = [["the cat sat on the mat"], ["a dog ran in the park"]]
    full = ["the cat sat on a mat", "a dog ran in a park"]
    ee = ["the cat sat on a mat", "the dog walked"]
    same = quality_ratio_interval(full, full, refs, "chrf", "en")
    assert (same.low, same.high) == (100.0, 100.0)

    def ratio(rows):
        chrf = lambda outs: sacrebleu.CHRF().corpus_score([outs[i] for i in rows], [[refs[i][0] for i in rows]]).score  # noqa: E731
        return 100 * chrf(ee) / chrf(full)

    assert quality_ratio_interval(ee[1:], full[1:], refs[1:], "chrf", "en") is None
    two = quality_ratio_interval(ee, full, refs, "chrf", "en", n_resamples=200)
    assert two.low == pytest.approx(ratio([1, 1])) and two.high == pytest.approx(ratio([0, 0]))  # 100: doc 0 unchanged
    assert ratio([1, 1]) < ratio([0, 1]) < ratio([0, 0]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="aligned documents"):
        quality_ratio_interval(ee, full[:1], refs, "chrf", "en")
