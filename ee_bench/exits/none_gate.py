"""The ``none`` gate: never exits, so every token runs all L layers (the full-depth baseline).

Why it exists: ``confidence`` with τ = 1.0 is *not* "never exit". The top-1 probability is computed
in float32, and it rounds to exactly 1.0 once the other probabilities sum below 2⁻²⁴ (one rival logit
more than ~16.6 nats behind), so τ = 1.0 fires on such tokens (docs/definitions.md, issue 10). ``--gate none`` is the exact way to ask for no early
exit; its threshold is ignored (any finite value is accepted; the grid is the single value 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ee_bench.exits.gates import Gate, GateObservation


class NoExitGate(Gate):
    """Never fires: every token exits at the final layer L−1 (paper §3: the full-depth model).

    Cost per check: the head projection the decoding loop makes for any head-reading gate (its result
    is not used), so measured speed-ups against full depth stay like for like.
    """

    default_threshold = 0.0
    grid = (0.0,)
    aggressive = "lower"
    unit = "ignored"

    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        """(B,) all False, B = ``obs.top1.shape[0]``."""
        return torch.zeros(obs.top1.shape[0], dtype=torch.bool, device=obs.top1.device)
