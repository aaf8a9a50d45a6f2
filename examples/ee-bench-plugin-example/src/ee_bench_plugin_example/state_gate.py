"""CALM's "state" gate: exit when consecutive hidden states stop changing.

Schuster et al., *Confident Adaptive Language Modeling* (NeurIPS 2022), §3.5 "hidden-state
saturation": the confidence at layer ℓ is the cosine similarity of the token's hidden state after
block ℓ and the one entering it, ``cos(h^ℓ, h^{ℓ−1})``; the token exits at the first ℓ where it
reaches τ. It needs no output-head projection at the checks, which is the point of the gate: a check
costs 2·H multiply-adds instead of H·V (the head projection of the confidence gate).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ee_bench.exits.gates import Gate, GateObservation, ThresholdError


class StateGate(Gate):
    """Exit at the first ℓ with cos(h^ℓ, h^{ℓ−1}) ≥ τ, τ in [−1, 1] (CALM §3.5, plug-in example).

    h^ℓ is the token's output of block ℓ and h^{ℓ−1} its input (the embeddings at ℓ = 0), both
    before the final norm (:class:`~ee_bench.exits.gates.GateObservation` ``hidden`` and
    ``prev_hidden``, each (B, H)). Cost per check: two norms and a dot product, no head projection.
    """

    needs_head = False
    needs_hidden = True
    default_threshold = 0.98
    grid = (0.999, 0.995, 0.99, 0.985, 0.98, 0.97, 0.95, 0.9)  # least → most aggressive
    aggressive = "lower"
    unit = "cosine similarity"

    def check_threshold(self, threshold: float, n_layers: int | None = None) -> float:
        """Validate τ (a cosine similarity).

        Raises:
            ThresholdError: if τ is not in [−1, 1].
        """
        threshold = super().check_threshold(threshold, n_layers)
        if not -1.0 <= threshold <= 1.0:
            raise ThresholdError(
                f"state threshold {threshold} is out of range: it is a cosine similarity in [-1, 1]. "
                f"Try --threshold 0.98, or omit --threshold to sweep {list(self.grid)}."
            )
        return threshold

    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        """(B,) bool: cos(hidden, prev_hidden) ≥ τ, computed in float32."""
        cos = torch.nn.functional.cosine_similarity(obs.hidden.float(), obs.prev_hidden.float(), dim=-1)  # (B,)
        return cos >= threshold
