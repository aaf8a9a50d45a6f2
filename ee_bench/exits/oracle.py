"""The oracle exit layers and their summary statistics (paper §4, Tables 1 and 3).

Definitions (layers are 0-based, L−1 is the final layer; see ``docs/definitions.md``):

- first-match layer ``m_t = min{ℓ : top1_ℓ(t) = top1_{L−1}(t)}``;
- saturation layer ``s_t = min{ℓ : top1_ℓ'(t) = top1_{L−1}(t) for every ℓ' ≥ ℓ}``;
- ``avg``: the mean layer over tokens; ``perc``: % of tokens whose layer is < L−1;
  ``perc@k``: % of tokens whose layer is ≤ L−1−k.

The paper's "minimal early exit layer" is the first-match layer; saturation is the stricter variant
(the prediction never changes again). Both are reported side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PERC_AT_K = (5, 10, 15, 20)


def first_match_layer(top1: Tensor) -> Tensor:
    """Earliest layer whose top-1 equals the final layer's.

    Args:
        top1: (L, N) int64 per-layer top-1 token ids.

    Returns:
        (N,) int64 layer indices in [0, L−1]; L−1 when only the final layer matches.
    """
    match = top1 == top1[-1:]  # (L, N) bool; the last row is always True
    return match.to(torch.int8).argmax(dim=0).to(torch.int64)  # argmax returns the first True


def saturation_layer(top1: Tensor) -> Tensor:
    """Earliest layer from which every later layer's top-1 equals the final layer's.

    Args:
        top1: (L, N) int64 per-layer top-1 token ids.

    Returns:
        (N,) int64 layer indices in [0, L−1].
    """
    match = top1 == top1[-1:]  # (L, N)
    # Suffix-AND: all_after[ℓ] is True when rows ℓ..L−1 all match.
    all_after = match.flip(0).to(torch.int64).cumprod(dim=0).flip(0).bool()  # (L, N)
    return all_after.to(torch.int8).argmax(dim=0).to(torch.int64)


@dataclass(frozen=True)
class ExitSummary:
    """avg / perc / perc@k of a set of per-token exit layers (paper Tables 1, 3, 7).

    Attributes:
        avg: mean 0-based layer over tokens (layers).
        perc: % of tokens whose layer is < L−1 (percent, 0–100).
        perc_at: k → % of tokens whose layer is ≤ L−1−k, for k in ``PERC_AT_K``.
        n_tokens: number of tokens summarised.
        n_layers: L.
    """

    avg: float
    perc: float
    perc_at: dict[int, float]
    n_tokens: int
    n_layers: int

    def to_dict(self) -> dict:
        out = {"avg": self.avg, "perc": self.perc, "n_tokens": self.n_tokens, "n_layers": self.n_layers}
        out.update({f"perc@{k}": v for k, v in self.perc_at.items()})
        return out


def summarize_layers(layers: Tensor, n_layers: int) -> ExitSummary:
    """Summarise per-token exit layers.

    Args:
        layers: (N,) int64 0-based exit layers.
        n_layers: L, the model's number of exits.

    Raises:
        ValueError: if ``layers`` is empty or holds a value outside [0, L−1].
    """
    if layers.numel() == 0:
        raise ValueError("cannot summarise an empty set of tokens")
    if int(layers.min()) < 0 or int(layers.max()) > n_layers - 1:
        raise ValueError(f"exit layers must lie in [0, {n_layers - 1}]")
    last = n_layers - 1
    x = layers.to(torch.float64)
    pct = lambda mask: 100.0 * float(mask.to(torch.float64).mean())  # noqa: E731
    return ExitSummary(
        avg=float(x.mean()),
        perc=pct(layers < last),
        perc_at={k: pct(layers <= last - k) for k in PERC_AT_K},
        n_tokens=int(layers.numel()),
        n_layers=n_layers,
    )
