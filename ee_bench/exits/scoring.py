"""Gate-vs-oracle scoring on the same tokens (paper §3.2 and Fig. 2).

For per-token gate exit layers g_t and first-match oracle layers m_t over N tokens:

- signed distance: mean(g_t − m_t) (layers; > 0 means the gate exits late);
- absolute distance: mean(|g_t − m_t|) (layers);
- gate accuracy: % of tokens whose top-1 at g_t equals the final top-1;
- mean layers run: mean(g_t + 1) (layers);
- mean checks: mean(min(g_t + 1, L − 1)), the gate checks a token makes when every layer below L−1 is
  an exit (no check at the last layer; the cost model's input, ``ee_bench.costs.predict``);
- implied speed-up: L / mean layers run. It counts layers only (no gate or head cost), so it is
  labelled *implied*, never *measured*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GateScore:
    """One gate at one threshold, scored against the oracle."""

    threshold: float
    signed_distance: float
    abs_distance: float
    accuracy: float
    mean_layers_run: float
    implied_speedup: float
    n_tokens: int
    mean_checks: float

    def to_dict(self) -> dict:
        return asdict(self)


def score_gate(threshold: float, gate_layers: Tensor, first_match: Tensor, top1: Tensor) -> GateScore:
    """Score gate exit layers against the first-match oracle.

    Args:
        threshold: τ, recorded in the result.
        gate_layers: (N,) int64 gate exit layers.
        first_match: (N,) int64 oracle first-match layers.
        top1: (L, N) int64 per-layer top-1 (row L−1 is the final prediction).

    Raises:
        ValueError: on empty input or mismatched shapes.
    """
    n = gate_layers.numel()
    if n == 0 or first_match.shape != gate_layers.shape or top1.shape[1] != n:
        raise ValueError("score_gate needs N > 0 tokens with matching shapes")
    L = top1.shape[0]
    diff = (gate_layers - first_match).to(torch.float64)
    chosen = top1.gather(0, gate_layers.view(1, -1)).squeeze(0)  # (N,)
    layers_run = (gate_layers + 1).to(torch.float64).mean()
    return GateScore(
        threshold=float(threshold),
        signed_distance=float(diff.mean()),
        abs_distance=float(diff.abs().mean()),
        accuracy=100.0 * float((chosen == top1[-1]).to(torch.float64).mean()),
        mean_layers_run=float(layers_run),
        implied_speedup=float(L / layers_run),
        n_tokens=int(n),
        mean_checks=float((gate_layers + 1).clamp_max(max(L - 1, 0)).to(torch.float64).mean()),
    )
