"""Which thresholds a gate is swept over, and which one is chosen (paper §3.2).

One decision, used by the main evaluation and by ``ee-bench rescore``:

- with a threshold τ given, the sweep is [τ] and τ is chosen;
- without one, the sweep is the gate's documented grid, and the chosen threshold is the gate's
  ``default_threshold`` (appended to the sweep when the grid lacks it);
- once the model's number of layers L is known, thresholds out of range for it (e.g. a patience
  larger than L − 1) are dropped from the grid; a τ given by the user that is out of range is an error.
"""

from __future__ import annotations

from ee_bench.errors import EEBenchError
from ee_bench.exits.gates import Gate


def sweep_thresholds(gate: Gate, threshold: float | None, n_layers: int | None = None) -> tuple[list[float], float]:
    """The thresholds to sweep and the chosen one.

    Args:
        gate: the gate. threshold: the user's τ, or None for the gate's grid.
        n_layers: L, when known (after loading the model, or from a results file).

    Returns:
        (thresholds in sweep order, chosen threshold).

    Raises:
        ThresholdError: if ``threshold`` is out of the gate's range (for L, when given).
    """
    if threshold is not None:
        thresholds = [gate.check_threshold(threshold)]
        chosen = thresholds[0]
    else:
        thresholds = [gate.check_threshold(t) for t in gate.grid]
        chosen = gate.check_threshold(gate.default_threshold)
    if chosen not in thresholds:
        thresholds.append(chosen)
    if n_layers is not None:
        if threshold is not None:
            gate.check_threshold(threshold, n_layers)
        thresholds = [t for t in thresholds if _fits(gate, t, n_layers)]
    return thresholds, chosen


def _fits(gate: Gate, threshold: float, n_layers: int) -> bool:
    try:
        gate.check_threshold(threshold, n_layers)
        return True
    except EEBenchError:
        return False
