"""The headline oracle of few-choice tasks (issue 24): one rule for the leaderboard, the report and the
degeneracy text, and first-match's chance level worked out by hand."""

from __future__ import annotations

import pytest

from ee_bench.exits.headline import (
    chance_first_match,
    headline_oracle,
    result_chance_first_match,
)
from ee_bench.leaderboard import columns


def test_headline_is_saturation_for_multiple_choice_only():
    assert headline_oracle("multiple_choice") == "saturation"
    assert headline_oracle("generate_until") == "first_match"
    assert headline_oracle("loglikelihood") == "first_match"
    assert headline_oracle(None) == "first_match"


@pytest.mark.parametrize("C, L, avg, perc", [
    (2, 3, 0.75, 75.0),          # p = 1/2: P(0) = .5, P(1) = .25, P(2) = .25 -> 0.25 + 0.5; perc 1 - .25
    (2, 1, 0.0, 0.0),            # one layer: it is the final one
    (3, 2, 2 / 3, 100 / 3),      # p = 1/3: layer 0 with 1/3, else layer 1 -> avg 2/3, perc 1/3
    (4, 3, 0.75 * 0.25 + 2 * 0.5625, 100 * (1 - 0.5625)),  # P(1) = .75 * .25, P(2) = .75^2
])
def test_chance_first_match_by_hand(C, L, avg, perc):
    got = chance_first_match(C, L)
    assert got["avg"] == pytest.approx(avg, abs=1e-12)
    assert got["perc"] == pytest.approx(perc, abs=1e-9)


def test_chance_first_match_rejects_one_choice():
    with pytest.raises(ValueError):
        chance_first_match(1, 30)


def _result(output_type: str, n_choices: int | None = None) -> dict:
    res = {"metrics": {"acc": 0.6}, "oracle": {"first_match": {"avg": 1.0, "perc": 90.0, "n_layers": 30},
                                             "saturation": {"avg": 20.0, "perc": 50.0, "n_layers": 30}},
           "gate_at_threshold": {}, "task_info": {"output_type": output_type}}
    if n_choices:
        res["metrics_by_layer"] = {"n_choices": n_choices}
    return res


def test_leaderboard_puts_the_headline_oracle_first():
    mc = [c.label for c in columns([_result("multiple_choice")])]
    assert mc[1:4] == ["saturation avg", "saturation perc %", "first-match avg"]
    gen = [c.label for c in columns([_result("generate_until")])]
    assert gen[1:4] == ["first-match avg", "perc %", "saturation avg"]


def test_result_chance_needs_the_number_of_choices():
    assert result_chance_first_match(_result("multiple_choice", 2)) == chance_first_match(2, 30)
    assert result_chance_first_match(_result("multiple_choice")) is None
    assert result_chance_first_match(_result("generate_until", 2)) is None
