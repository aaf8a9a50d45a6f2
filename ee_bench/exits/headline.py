"""Which oracle a run's headline quotes, and the chance level of first-match on few-choice tasks.

One rule, called by the leaderboard, the report and the degeneracy flag (docs/definitions.md,
"The headline oracle"):

- generation tasks (many possible tokens at each position): the **first-match** oracle (paper §4);
- classification and multiple choice (``output_type: multiple_choice``, C choices): the **saturation**
  oracle. With C choices some early layer agrees with the final choice by chance: if each of the L−1
  earlier layers picked uniformly at random, a document's first-match layer would be
  :func:`chance_first_match` (for C = 2, L = 30: avg ≈ 1.0 layer, perc ≈ 100 %), so first-match says
  little there; saturation (the layer from which the choice never changes again) does not reward a
  lucky early agreement. First-match is still shown, with its chance level beside it.

Pure Python (no torch): the leaderboard imports it.
"""

from __future__ import annotations

FEW_CHOICE_OUTPUT_TYPES = ("multiple_choice",)
ORACLE_LABELS = {"first_match": "first-match", "saturation": "saturation"}


def headline_oracle(output_type: str | None) -> str:
    """``"saturation"`` for classification and multiple-choice tasks, ``"first_match"`` otherwise.

    Args:
        output_type: the task's ``output_type`` (a results file's ``task_info.output_type``), or None.
    """
    return "saturation" if output_type in FEW_CHOICE_OUTPUT_TYPES else "first_match"


def result_headline_oracle(result: dict) -> str:
    """:func:`headline_oracle` of a results file's mapping (``task_info.output_type``; generation if absent)."""
    info = result.get("task_info")
    return headline_oracle(info.get("output_type") if isinstance(info, dict) else None)


def chance_first_match(n_choices: int, n_layers: int) -> dict[str, float]:
    """First-match statistics if each of the layers 0…L−2 agreed with the final choice independently
    with probability p = 1/C (uniformly random choices), and layer L−1 always does.

    avg = Σ_{k=0}^{L−2} k·p·(1−p)^k + (L−1)·(1−p)^{L−1} (layers), perc = 100·(1 − (1−p)^{L−1}) (%).

    Raises:
        ValueError: for fewer than two choices or fewer than one layer.
    """
    if n_choices < 2 or n_layers < 1:
        raise ValueError(f"need at least two choices and one layer, got {n_choices} and {n_layers}")
    p = 1.0 / n_choices
    miss = 1.0 - p
    avg = sum(k * p * miss**k for k in range(n_layers - 1)) + (n_layers - 1) * miss ** (n_layers - 1)
    return {"avg": avg, "perc": 100.0 * (1.0 - miss ** (n_layers - 1))}


def result_chance_first_match(result: dict) -> dict[str, float] | None:
    """:func:`chance_first_match` of a few-choice results file: C from ``metrics_by_layer.n_choices`` (the
    largest number of choices of a document), L from the oracle; None for other runs or when unknown."""
    by_layer = result.get("metrics_by_layer") if isinstance(result.get("metrics_by_layer"), dict) else {}
    n_choices = by_layer.get("n_choices")
    oracle = result.get("oracle", {}).get("first_match", {}) if isinstance(result.get("oracle"), dict) else {}
    n_layers = oracle.get("n_layers") if isinstance(oracle, dict) else None
    if result_headline_oracle(result) != "saturation" or not isinstance(n_choices, int) or not isinstance(n_layers, int):
        return None
    if n_choices < 2 or n_layers < 1:
        return None
    return chance_first_match(n_choices, n_layers)
