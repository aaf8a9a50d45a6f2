"""Threshold calibration: the pure selection rule on hand-built curves, and the sweep file."""

from __future__ import annotations

import json

import pytest
import torch

from ee_bench.decoding.calibration import CalibrationError, calibrate, calibration_ids, select_threshold
from ee_bench.decoding.early_exit import EarlyExitDecoder
from ee_bench.exits.gates import ConfidenceGate, GateObservation

# confidence grid, least → most aggressive, with chrF falling as τ falls; full model chrF = 50
CURVE = [(0.99, 50.0), (0.95, 49.9), (0.9, 49.2), (0.8, 49.0), (0.7, 48.0), (0.6, 45.0), (0.5, 40.0)]


@pytest.mark.parametrize("ratio, expected", [
    (0.98, 0.8),    # 0.98 × 50 = 49.0: 0.8 scores exactly 49.0 (≥ holds), 0.7 scores 48.0
    (0.96, 0.7),    # 48.0 ≥ 48.0
    (0.999, 0.99),  # 49.95: only 0.99 (50.0)
    (0.8, 0.5),     # 40.0 ≥ 40.0: the most aggressive point
])
def test_select_confidence_threshold(ratio, expected):
    assert select_threshold(CURVE, 50.0, ratio, "lower") == expected


def test_select_entropy_threshold_is_the_highest_that_qualifies():
    curve = [(0.05, 30.0), (0.5, 29.5), (1.0, 29.0), (2.0, 20.0)]
    assert select_threshold(curve, 30.0, 0.98, "higher") == 0.5  # 29.4 needed; 1.0 gives 29.0


def test_non_monotone_curve_keeps_the_aggressive_point():
    curve = [(0.9, 47.0), (0.8, 49.5), (0.7, 30.0)]  # 0.9 fails, 0.8 passes
    assert select_threshold(curve, 50.0, 0.98, "lower") == 0.8


def test_no_threshold_qualifies():
    assert select_threshold([(0.9, 10.0)], 50.0, 0.98, "lower") is None


@pytest.mark.parametrize("ratio", [0.0, 1.5, -0.1])
def test_bad_ratio(ratio):
    with pytest.raises(CalibrationError, match=r"\(0, 1\]"):
        select_threshold(CURVE, 50.0, ratio, "lower")


def test_calibration_ids_are_disjoint():
    assert calibration_ids(10, [0, 1, 2, 5], 3) == [3, 4, 6]
    with pytest.raises(CalibrationError, match="only 2 of 4"):
        calibration_ids(4, [0, 1], 3)


class CrashAt(ConfidenceGate):
    """A confidence gate that raises once τ reaches ``crash``."""

    def __init__(self, crash: float):
        self.crash = crash

    def fires(self, obs: GateObservation, threshold: float) -> torch.Tensor:
        if threshold <= self.crash:
            raise RuntimeError("boom")
        return super().fires(obs, threshold)


@pytest.fixture(scope="module")
def decoder():
    from tiny_models import tiny_llama

    return EarlyExitDecoder(tiny_llama(seed=2))


def test_sweep_writes_every_point_and_chooses_by_the_rule(decoder, tmp_path):
    from tiny_models import prompt_ids

    prompts = prompt_ids(decoder.model)
    refs = [["Die Ware"], ["kostet"], ["ja"]]
    out = tmp_path / "sweep.json"
    grid = (0.9, 0.5, 0.1)
    res = calibrate(decoder, prompts, refs, [7, 8, 9], ConfidenceGate(), "copy", (), 6, grid=grid, out_path=out)
    saved = json.loads(out.read_text())
    assert saved["complete"] and [p["threshold"] for p in saved["points"]] == list(grid)
    assert saved["chosen"] == res.chosen == select_threshold(
        [(p.threshold, p.quality) for p in res.points], res.full_quality, 0.98, "lower")
    assert saved["doc_ids"] == [7, 8, 9]

    crash = tmp_path / "crash.json"
    with pytest.raises(RuntimeError, match="boom"):
        calibrate(decoder, prompts, refs, [7, 8, 9], CrashAt(0.5), "copy", (), 6, grid=grid, out_path=crash)
    kept = json.loads(crash.read_text())
    assert [p["threshold"] for p in kept["points"]] == [0.9]
    assert kept["complete"] is False and kept["chosen"] is None


class ScriptedDecoder:
    """Decodes the reference when τ >= 0.5 (or at full depth) and a wrong word below: a hand-known sweep."""

    n_layers = 4

    def __init__(self):
        self.taus = []

    def decode(self, prompts, gate, tau, *args, **kwargs):
        from types import SimpleNamespace

        self.taus.append(tau)
        text = "Die Ware hat unter 20 Euro gekostet." if tau is None or tau >= 0.5 else "zzz"
        return SimpleNamespace(traces=[SimpleNamespace(text=text)], counts=SimpleNamespace(tokens=2, token_layers=4))


def test_patience_stops_the_sweep_after_consecutive_points_below_the_floor(tmp_path):
    refs = [["Die Ware hat unter 20 Euro gekostet."]]
    grid = (0.9, 0.7, 0.3, 0.2, 0.6)
    dec = ScriptedDecoder()
    res = calibrate(dec, [[1]], refs, [0], ConfidenceGate(), "copy", (), 6, grid=grid, patience=2,
                    out_path=tmp_path / "s.json")
    # 0.9 and 0.7 keep 100 %; 0.3 and 0.2 score chrF 0 (two below the floor: stop); 0.6 never runs
    assert dec.taus == [None, 0.9, 0.7, 0.3, 0.2]
    assert [p.threshold for p in res.points] == [0.9, 0.7, 0.3, 0.2]
    assert res.chosen == 0.7 and res.complete and res.patience == 2
    assert json.loads((tmp_path / "s.json").read_text())["chosen"] == 0.7
    # without patience the whole grid runs and the most aggressive qualifying τ, 0.6, wins
    full = calibrate(ScriptedDecoder(), [[1]], refs, [0], ConfidenceGate(), "copy", (), 6, grid=grid)
    assert [p.threshold for p in full.points] == list(grid) and full.chosen == 0.6
    with pytest.raises(CalibrationError, match="patience 0"):
        calibrate(ScriptedDecoder(), [[1]], refs, [0], ConfidenceGate(), "copy", (), 6, grid=grid, patience=0)


class LengthScriptedDecoder:
    """L = 4. Full depth: 10 tokens, 40 blocks. τ 0.9: 10 tokens in 38 blocks; τ 0.5: 12 tokens in 34;
    τ 0.3: 16 tokens in 40 (the outputs grow); τ 0.1: a wrong text (fails the quality floor)."""

    n_layers = 4
    COUNTS = {None: (10, 40), 0.9: (10, 38), 0.5: (12, 34), 0.3: (16, 40), 0.1: (24, 24)}

    def decode(self, prompts, gate, tau, *args, **kwargs):
        from types import SimpleNamespace

        tokens, layers = self.COUNTS[tau]
        text = "zzz" if tau == 0.1 else "Die Ware hat unter 20 Euro gekostet."
        return SimpleNamespace(traces=[SimpleNamespace(text=text)],
                               counts=SimpleNamespace(tokens=tokens, token_layers=layers))


def test_sequence_objective_counts_longer_outputs_against_a_threshold():
    """Per token: 4·10/38 = 1.05, 4·12/34 = 1.41, 4·16/40 = 1.60 → ``token`` keeps 0.3, the most
    aggressive that keeps quality. Per sequence (4 × 10 full-depth tokens / blocks run): 40/38 = 1.05,
    40/34 = 1.18, 40/40 = 1.00 → ``sequence`` keeps 0.5."""
    refs = [["Die Ware hat unter 20 Euro gekostet."]]
    grid = (0.9, 0.5, 0.3, 0.1)
    by_token = calibrate(LengthScriptedDecoder(), [[1]], refs, [0], ConfidenceGate(), "copy", (), 24, grid=grid)
    by_seq = calibrate(LengthScriptedDecoder(), [[1]], refs, [0], ConfidenceGate(), "copy", (), 24, grid=grid,
                       objective="sequence")
    assert by_token.chosen == 0.3 and by_seq.chosen == 0.5
    assert by_seq.objective == "sequence" and by_seq.full_tokens == 10
    assert [p.tokens for p in by_seq.points] == [10, 12, 16, 24]
    assert [round(p.implied_sequence_speedup, 4) for p in by_seq.points] == [round(40 / 38, 4), round(40 / 34, 4), 1.0,
                                                                            round(40 / 24, 4)]
    assert [round(p.implied_speedup, 4) for p in by_seq.points] == [round(40 / 38, 4), round(48 / 34, 4), 1.6, 4.0]
    with pytest.raises(CalibrationError, match="not one of token, sequence"):
        calibrate(LengthScriptedDecoder(), [[1]], refs, [0], ConfidenceGate(), "copy", (), 24, grid=grid,
                  objective="speed")


def test_sequence_objective_breaks_ties_toward_the_aggressive_threshold():
    from ee_bench.decoding.calibration import SweepPoint, best_per_sequence

    points = [SweepPoint(0.9, 50.0, 1.0, 1.1, 10, 1.2), SweepPoint(0.5, 50.0, 1.0, 1.3, 11, 1.2),
              SweepPoint(0.3, 10.0, 0.2, 1.5, 12, 1.4)]  # 0.3 fails the floor
    assert best_per_sequence(points, 50.0, 0.98, "lower") == 0.5
    assert best_per_sequence(points, 50.0, 0.98, "higher") == 0.9  # entropy-like gates: higher is aggressive
    assert best_per_sequence(points[2:], 50.0, 0.98, "lower") is None


def test_console_names_the_tau_the_measured_figures_were_decoded_at(capsys):
    """The sweep's table marks the gate's --threshold; the early-exit line says which τ was decoded."""
    from ee_bench.commands.evaluate import _print_early_exit_notes

    result = {"measured_speedup": {
        "recompute": {"check": "full", "threshold": 0.5,
                      "calibration": {"doc_ids": [50, 51, 52], "chosen": 0.5, "objective": "sequence"}},
        "copy": {"check": "full", "threshold": 0.9, "calibration": {"doc_ids": [50, 51, 52], "chosen": None}}}}
    _print_early_exit_notes(result)
    out = capsys.readouterr().out.splitlines()
    assert out == ["early exit recompute: check full; decoded at τ 0.5 (calibrated on docs 50..52, sequence objective)",
                   "early exit copy: check full; decoded at τ 0.9 (calibration on docs 50..52 kept no threshold: default)"]
