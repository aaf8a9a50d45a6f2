"""Gates on hand-built per-layer statistics (paper §3.2), threshold ranges, and gate scoring.

L = 4 layers, N = 3 tokens. A gate exits a token at the first layer ℓ ≤ L−2 where it fires; a
token for which it never fires exits at the final layer L−1 = 3.
"""

from __future__ import annotations

import math

import pytest
import torch

from ee_bench.errors import EEBenchError, UnknownNameError
from ee_bench.exits.decide import gate_exit_layers, top1_streak
from ee_bench.exits.gates import GATES, ThresholdError
from ee_bench.exits.scoring import score_gate
from ee_bench.types import LayerStats

TOP1 = torch.tensor([
    [1, 2, 3],
    [1, 5, 4],
    [1, 5, 5],
    [1, 5, 6],
])
PROB = torch.tensor([
    [0.20, 0.95, 0.10],
    [0.60, 0.50, 0.20],
    [0.91, 0.99, 0.30],
    [0.99, 0.99, 0.40],
])
ENTROPY = torch.tensor([  # nats
    [2.00, 0.10, 3.00],
    [0.40, 1.00, 3.00],
    [0.20, 0.05, 3.00],
    [0.10, 0.10, 0.01],  # the final row is never checked: the last layer always exits
])
STATS = LayerStats(TOP1, PROB, ENTROPY)


def exits(name: str, threshold: float) -> list[int]:
    return gate_exit_layers(GATES.get(name)(), STATS, threshold).tolist()


def test_top1_streak_hand_table():
    # t0 never changes: 0,1,2,3; t1 changes at 1 then holds: 0,0,1,2; t2 changes every layer: 0s.
    assert top1_streak(TOP1).tolist() == [[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 2, 0]]


@pytest.mark.parametrize("threshold, expected", [
    (0.9, [2, 0, 3]),  # t0: 0.91 at layer 2; t1: 0.95 at layer 0; t2: never (max 0.3 before the end)
    (0.95, [3, 0, 3]),  # t0 reaches 0.99 only at the final layer
    (0.5, [1, 0, 3]),  # ≥ is inclusive: t1 fires at 0 already (0.95); t0 at 1 (0.60)
    (1.0, [3, 3, 3]),  # never fires: everything exits at L−1
])
def test_confidence_gate(threshold, expected):
    assert exits("confidence", threshold) == expected


@pytest.mark.parametrize("threshold, expected", [
    (0.5, [1, 0, 3]),  # t0: 0.40 at layer 1; t1: 0.10 at 0; t2: 3.0 until the end
    (0.1, [3, 0, 3]),  # ≤ is inclusive: t1 fires at 0 (0.10); t0 never before the end
    (0.0, [3, 3, 3]),  # never fires
])
def test_entropy_gate(threshold, expected):
    assert exits("entropy", threshold) == expected


@pytest.mark.parametrize("threshold, expected", [
    (1, [1, 2, 3]),  # first layer with streak ≥ 1
    (2, [2, 3, 3]),  # t1 reaches streak 2 only at layer 3 = L−1
    (3, [3, 3, 3]),  # never before the final layer
])
def test_patience_gate(threshold, expected):
    assert exits("patience", threshold) == expected


def test_exit_layers_dtype_and_shape():
    out = gate_exit_layers(GATES.get("confidence")(), STATS, 0.9)
    assert out.dtype == torch.int64 and out.shape == (3,)


def test_hidden_state_gate_without_hidden_states_is_refused():
    class NeedsHidden(GATES.get("confidence")):
        needs_hidden = True

    with pytest.raises(ValueError, match="hidden states"):
        gate_exit_layers(NeedsHidden(), STATS, 0.9)


@pytest.mark.parametrize("name, threshold, fragment", [
    ("confidence", 0.0, "(0, 1]"),
    ("confidence", 1.5, "(0, 1]"),
    ("confidence", -0.2, "(0, 1]"),
    ("entropy", -0.1, ">= 0"),
    ("patience", 0, "[1, 3]"),
    ("patience", 2.5, "[1, 3]"),
    ("patience", 4, "[1, 3]"),  # at most L−1 = 3 transitions
    ("confidence", math.nan, "not a finite number"),
    ("entropy", math.inf, "not a finite number"),
])
def test_check_threshold_range_errors(name, threshold, fragment):
    with pytest.raises(ThresholdError) as err:
        GATES.get(name)().check_threshold(threshold, n_layers=4)
    assert fragment in str(err.value)
    assert isinstance(err.value, EEBenchError)


@pytest.mark.parametrize("name, threshold, expected", [
    ("confidence", 1.0, 1.0), ("confidence", 0.5, 0.5), ("entropy", 0.0, 0.0), ("entropy", 2.0, 2.0),
    ("patience", 3, 3.0), ("patience", 1.0, 1.0),
])
def test_check_threshold_accepts_valid(name, threshold, expected):
    assert GATES.get(name)().check_threshold(threshold, n_layers=4) == expected


def test_default_thresholds_and_grids_are_valid():
    for name in ("confidence", "entropy", "patience"):
        gate = GATES.get(name)()
        for tau in (gate.default_threshold, *gate.grid):
            gate.check_threshold(tau, n_layers=30)


def test_unknown_gate_suggests():
    with pytest.raises(UnknownNameError) as err:
        GATES.get("confidance")
    assert "Did you mean: confidence" in str(err.value)


def test_score_gate_hand_example():
    # Gate exits [2, 0, 3]; first-match oracle [1, 0, 3].
    top1 = torch.tensor([
        [4, 9, 1],
        [8, 9, 2],
        [8, 9, 3],
        [8, 7, 5],
    ])
    s = score_gate(0.9, torch.tensor([2, 0, 3]), torch.tensor([1, 0, 3]), top1)
    assert s.threshold == 0.9
    assert s.signed_distance == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3
    assert s.abs_distance == pytest.approx(1 / 3)
    # Top-1 at the gate's layer vs the final: t0 8 = 8 ✓, t1 9 ≠ 7 ✗, t2 5 = 5 ✓.
    assert s.accuracy == pytest.approx(200 / 3)
    assert s.mean_layers_run == pytest.approx(8 / 3)  # (3 + 1 + 4) / 3
    assert s.implied_speedup == pytest.approx(4 / (8 / 3))  # = 1.5
    assert s.n_tokens == 3
    assert s.to_dict()["implied_speedup"] == pytest.approx(1.5)


def test_score_gate_signed_distance_can_be_negative():
    top1 = torch.tensor([[1, 1], [1, 2], [1, 2]])
    s = score_gate(1, torch.tensor([0, 0]), torch.tensor([0, 1]), top1)
    assert s.signed_distance == pytest.approx(-0.5)
    assert s.abs_distance == pytest.approx(0.5)
    assert s.accuracy == pytest.approx(50.0)


@pytest.mark.parametrize("gate_layers, first_match, top1", [
    (torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64), torch.zeros(3, 0, dtype=torch.int64)),
    (torch.tensor([0, 1]), torch.tensor([0]), torch.zeros(3, 2, dtype=torch.int64)),
    (torch.tensor([0, 1]), torch.tensor([0, 1]), torch.zeros(3, 3, dtype=torch.int64)),
])
def test_score_gate_rejects_bad_input(gate_layers, first_match, top1):
    with pytest.raises(ValueError):
        score_gate(0.5, gate_layers, first_match, top1)


def test_gate_name_is_the_registry_name():
    from ee_bench.exits.gates import GATES, ConfidenceGate, gate_name

    assert gate_name(GATES.get("patience")()) == "patience"
    assert gate_name(GATES.get("confidence")()) == "confidence"
    assert gate_name("entropy") == "entropy"

    class Unregistered(ConfidenceGate):
        pass

    assert gate_name(Unregistered()) == "Unregistered"  # never chosen through the registry
