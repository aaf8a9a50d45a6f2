"""Intermediate-layer decoding: the model's own final norm and output head, in one place.

``Unembed(h) = head(final_norm(h))`` (the "logit lens" with the model's shared head; paper §3.1).
:meth:`Unembed.reduce` turns hidden states into the per-token statistics the oracle and the gates
need, in chunks, so no (positions × vocab) tensor larger than ``chunk × V`` exists at once.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def reduce_logits(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Top-1 id, top-1 probability and entropy of each row of logits.

    Args:
        logits: (N, V) any float dtype; computed in float32.

    Returns:
        top1 (N,) int64; top1_prob (N,) float32 in [0, 1]; entropy (N,) float32 in nats, using
        H = logsumexp(z) − Σ softmax(z)·z.
    """
    z = logits.float()
    top_val, top1 = z.max(dim=-1)  # (N,)
    lse = torch.logsumexp(z, dim=-1)  # (N,)
    p = torch.exp(z - lse.unsqueeze(-1))  # (N, V)
    entropy = lse - (p * z).sum(dim=-1)
    return top1, torch.exp(top_val - lse), entropy.clamp_min(0.0)


class Unembed(nn.Module):
    """Final norm + output head of a decoder, applied to any block's output.

    Args:
        final_norm: the model's final norm module.
        head: the model's output projection (LM head).
        softcap: ``config.final_logit_softcapping`` where the model applies it (Gemma 2), else None.
        chunk: rows decoded at once by :meth:`reduce` (bounds memory to ``chunk × V`` floats).
    """

    def __init__(self, final_norm: nn.Module, head: nn.Module, softcap: float | None = None, chunk: int = 16):
        super().__init__()
        self.final_norm = final_norm
        self.head = head
        self.softcap = softcap
        self.chunk = chunk

    def forward(self, hidden: Tensor) -> Tensor:
        """Logits of block outputs. hidden: (..., H) → (..., V)."""
        logits = self.head(self.final_norm(hidden))
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @torch.no_grad()
    def reduce(self, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-row (top1, top1_prob, entropy) of ``hidden`` (N, H), chunk by chunk; each (N,)."""
        parts = [reduce_logits(self(hidden[i : i + self.chunk])) for i in range(0, hidden.shape[0], self.chunk)]
        return tuple(torch.cat(xs) for xs in zip(*parts))  # type: ignore[return-value]
