"""The one timing protocol (time_interleaved) and transformers' generate as a timed mode (issue 12,
the peers side by side)."""

from __future__ import annotations

import pytest

from ee_bench.decoding.early_exit import (
    DecodeCounts,
    DecodeResult,
    EarlyExitDecoder,
    ExitTrace,
)
from ee_bench.decoding.speedup import (
    compare_runs,
    full_depth_mode,
    hf_generate_mode,
    reference_settled,
    speedup_verdict,
    time_interleaved,
    time_interleaved_rounds,
)
from ee_bench.decoding.timing import TimeSplit
from ee_bench.errors import EEBenchError
from tests.tiny_models import prompt_ids, tiny_llama


def _fake(name: str, walls: list[float], log: list[str]):
    """A mode whose k-th call takes walls[k] seconds (recorded, not slept) and emits one token per prompt."""
    calls = iter(walls)

    def run(chunk) -> DecodeResult:
        log.append(f"{name}{len(chunk)}")
        w = next(calls)
        traces = tuple(ExitTrace(name, 4, (7,), "x", (3,)) for _ in chunk)
        return DecodeResult(traces, TimeSplit(w, 0, 0, 0, 0, w), DecodeCounts(tokens=len(chunk), token_layers=4 * len(chunk)))

    return run


def test_time_interleaved_order_and_median():
    log: list[str] = []
    # 3 prompts, batch 2 -> chunks of 2 and 1; call 0 is the warm-up; rounds: (1+2), (5+6), (3+4)
    a = _fake("a", [9, 1, 2, 5, 6, 3, 4], log)
    b = _fake("b", [9, 10, 10, 1, 1, 2, 2], log)
    ra, rb = time_interleaved([a, b], [[1], [2], [3]], repeats=3, batch_size=2)
    assert log == ["a1", "b1"] + ["a2", "b2", "a1", "b1"] * 3  # warm-up, then modes alternate chunk by chunk
    assert ra.split.total_s == 7 and len(ra.traces) == 3  # rounds 3, 11, 7 -> median 7
    assert rb.split.total_s == 4  # rounds 20, 2, 4 -> median 4
    with pytest.raises(EEBenchError, match="repeats"):
        time_interleaved([a], [[1]], repeats=0)


def test_reference_stops_once_its_rounds_agree():
    """Full depth (mode 0) takes 10.0 s then 10.1 s: spread 0.1 / 10.05 ≈ 1 % ≤ 2 %, so rounds 3 and 4 time
    only the setting; its median is the lower of its two rounds (10.0), the setting's over all four."""
    log: list[str] = []
    full = _fake("f", [9, 10.0, 10.1], log)
    ee = _fake("e", [9, 8, 6, 7, 5], log)
    (rf, re_), rounds = time_interleaved_rounds([full, ee], [[1]], repeats=4, reference_spread=0.02)
    assert log == ["f1", "e1"] + ["f1", "e1"] * 2 + ["e1"] * 2
    assert rounds == [2, 4] and rf.split.total_s == 10.0 and re_.split.total_s == 6  # 8, 6, 7, 5 -> lower median 6
    # 10.0 then 10.5 (5 % apart): full depth stays in every round
    log.clear()
    _, rounds = time_interleaved_rounds([_fake("f", [9, 10.0, 10.5, 10.2], log), _fake("e", [9, 1, 1, 1], log)],
                                        [[1]], repeats=3, reference_spread=0.02)
    assert rounds == [3, 3]
    assert reference_settled([10.0, 10.1], 0.02) and not reference_settled([10.0], 0.02)
    assert not reference_settled([10.0, 10.1], None)


def test_hf_generate_mode_matches_full_depth_and_is_lossless_with_the_early_exit_assistant():
    model = tiny_llama()
    prompts = prompt_ids(model)
    dec = EarlyExitDecoder(model)
    full, hf, hf_ee = time_interleaved([full_depth_mode(dec, (), 6), hf_generate_mode(model, (), 6),
                                        hf_generate_mode(model, (), 6, assistant_early_exit=2)], prompts, repeats=1)
    ref = [t.token_ids for t in full.traces]
    assert [t.token_ids for t in hf.traces] == ref  # the same greedy tokens as the ee-bench loop
    assert [t.token_ids for t in hf_ee.traces] == ref  # assisted decoding is lossless
    assert hf_ee.counts.tokens == sum(len(t) for t in ref) == 18 and hf_ee.counts.token_layers == 18 * 4
    assert hf_ee.split.total_s == hf_ee.split.other_s > 0
    rep = compare_runs("hf_assistant_early_exit_2", None, None, full, hf_ee, n_layers=4, repeats=1, batch_size=1,
                       references=[["a"], ["b"], ["c"]])
    assert rep.token_agreement == 1.0 and rep.gate == "none" and rep.implied_speedup == 1.0
    assert rep.per_token_speedup == pytest.approx(full.split.total_s / hf_ee.split.total_s)  # same tokens
    assert speedup_verdict("hf", rep.to_dict()).quality_ratio in (None, 1.0)  # identical outputs
    with pytest.raises(EEBenchError, match="block count in 1..3"):
        hf_generate_mode(model, (), 6, assistant_early_exit=4)
