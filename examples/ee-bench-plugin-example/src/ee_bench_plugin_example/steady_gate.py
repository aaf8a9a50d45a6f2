"""A plug-in gate example: confidence that has held for one layer ("steady").

The built-in ``confidence`` gate exits as soon as max_v p_ℓ(v) ≥ τ; a top-1 that is confident at one
layer and replaced at the next still exits. This gate asks for both: the probability reaches τ *and*
the top-1 is the same as at the previous observed layer (``streak`` ≥ 1, the top-1 streak that
:func:`ee_bench.exits.decide.observe_layer` carries). It reads only what
:class:`~ee_bench.exits.gates.GateObservation` offers, which is all a plug-in gate needs.
"""

from __future__ import annotations

from torch import Tensor

from ee_bench.exits.gates import Gate, GateObservation, ThresholdError


class SteadyConfidenceGate(Gate):
    """Exit at the first ℓ with top1_prob_ℓ ≥ τ and top1_ℓ = top1 of the previous observed layer.

    τ is a probability in (0, 1]. At the first observed layer the streak is 0, so the gate never
    fires there. Cost per check: one head projection and a softmax (as ``confidence``).
    """

    needs_head = True
    default_threshold = 0.9
    grid = (0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)  # least → most aggressive
    aggressive = "lower"
    unit = "probability"

    def check_threshold(self, threshold: float, n_layers: int | None = None) -> float:
        """Validate τ (a probability).

        Raises:
            ThresholdError: if τ is not in (0, 1].
        """
        threshold = super().check_threshold(threshold, n_layers)
        if not 0.0 < threshold <= 1.0:
            raise ThresholdError(
                f"steady_confidence threshold {threshold} is out of range: it is a probability in (0, 1]. "
                f"Try --threshold 0.9, or omit --threshold to sweep {list(self.grid)}."
            )
        return threshold

    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        """(B,) bool: top1_prob ≥ τ and streak ≥ 1."""
        return (obs.top1_prob >= threshold) & (obs.streak >= 1)
