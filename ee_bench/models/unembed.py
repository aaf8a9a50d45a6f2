"""Intermediate-layer decoding: the model's own final norm and output head, in one place.

``Unembed(h) = head(final_norm(h))`` (the "logit lens" with the model's shared head; paper §3.1).
:meth:`Unembed.reduce` turns hidden states into the per-token statistics the oracle and the gates
need (top-1 id, its probability, the entropy) without ever holding a (positions × vocab) tensor:
the logits are produced one tile of at most ``tile_elems`` entries at a time (rows × a slice of the
vocabulary) and folded into running per-row sums, the way an online (streaming) softmax does.

Per row of logits z (length V), with m = max z and y = z − m ≤ 0:

- S = Σ_v exp(y_v), T = Σ_v exp(y_v)·y_v;
- top-1 probability = exp(0) / S = 1 / S;
- entropy H = −Σ p·log p = log S − T / S (nats), since p = exp(y) / S.

Two tiles (m₁, S₁, T₁) and (m₂, S₂, T₂) merge exactly: with M = max(m₁, m₂) and dᵢ = mᵢ − M,
S = Σᵢ exp(dᵢ)·Sᵢ and T = Σᵢ exp(dᵢ)·(Tᵢ + dᵢ·Sᵢ). Ties for the top-1 go to the lowest token id,
as ``argmax`` over the whole row would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TILE_ELEMS = 1 << 20
"""Logit entries decoded at once (rows × vocabulary columns): 4 MiB of float32 per tile buffer."""

_MAX_TILE_ROWS = 256  # rows per tile; the head's weight is read once per group of this many rows
_MIN_TILE_COLS = 1024  # narrower vocabulary slices make too many small matrix products


def softcap(z: Tensor, cap: float | None, *, inplace: bool = False) -> Tensor:
    """Logit soft-capping ``tanh(z / cap) · cap`` (Gemma 2's ``final_logit_softcapping``); z unchanged
    for a falsy ``cap``. ``inplace`` overwrites ``z`` (same float operations, same result)."""
    if not cap:
        return z
    if inplace:
        return z.div_(cap).tanh_().mul_(cap)
    return torch.tanh(z / cap) * cap


def _tile_moments(z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Row max, argmax, S and T (see the module docstring) of one tile; overwrites ``z``.

    Args:
        z: (R, C) float32 logits, finite; used as scratch space.

    Returns:
        m (R,) float32, argmax (R,) int64 (column within the tile), S (R,) float32 ≥ 1,
        T (R,) float32 ≤ 0.
    """
    m, idx = z.max(dim=-1)  # (R,)
    z.sub_(m.unsqueeze(-1))  # y = z − m ≤ 0, in place
    e = torch.exp(z)  # (R, C) exp(y)
    s = e.sum(dim=-1)
    t = e.mul_(z).sum(dim=-1)  # Σ exp(y)·y, product in place
    return m, idx, s, t


def _finish(s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(top-1 probability, entropy in nats) from S and T."""
    return s.reciprocal(), (s.log() - t / s).clamp_min(0.0)


def _empty(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    return (torch.zeros(0, dtype=torch.int64, device=device), torch.zeros(0, device=device),
            torch.zeros(0, device=device))


class _Running:
    """Running (max, argmax, S, T) of rows whose vocabulary arrives in slices."""

    def __init__(self) -> None:
        self.m = self.idx = self.s = self.t = None

    def add(self, m: Tensor, idx: Tensor, s: Tensor, t: Tensor, offset: int) -> None:
        idx = idx + offset
        if self.m is None:
            self.m, self.idx, self.s, self.t = m, idx, s, t
            return
        new_m = torch.maximum(self.m, m)
        d_old, d_new = self.m - new_m, m - new_m  # ≤ 0
        a, b = torch.exp(d_old), torch.exp(d_new)
        self.t = a * (self.t + d_old * self.s) + b * (t + d_new * s)
        self.s = a * self.s + b * s
        self.idx = torch.where(m > self.m, idx, self.idx)  # strict: earlier slice wins a tie
        self.m = new_m

    def result(self) -> tuple[Tensor, Tensor, Tensor]:
        prob, ent = _finish(self.s, self.t)
        return self.idx, prob, ent


def reduce_logits(logits: Tensor, *, tile_elems: int = TILE_ELEMS, inplace: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Top-1 id, top-1 probability and entropy of each row of logits.

    Rows are processed in groups of about ``tile_elems / V`` rows, each copied to float32 once (or
    overwritten, with ``inplace=True`` on float32 input), so the extra memory is a few such groups.

    Args:
        logits: (N, V) any float dtype, finite; computed in float32.
        tile_elems: logit entries processed at once.
        inplace: allow ``logits`` (float32) to be overwritten instead of copied.

    Returns:
        top1 (N,) int64 (lowest id on ties); top1_prob (N,) float32 in [0, 1]; entropy (N,)
        float32 in nats, H = log S − T/S (module docstring).
    """
    n, v = logits.shape
    if n == 0:
        return _empty(logits.device)
    rows = max(1, tile_elems // max(v, 1))
    parts = []
    for r in range(0, n, rows):
        z = logits[r : r + rows]
        z = z if inplace and z.dtype == torch.float32 else z.to(torch.float32, copy=True)
        m, idx, s, t = _tile_moments(z)
        parts.append((idx, *_finish(s, t)))
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(xs) for xs in zip(*parts))  # type: ignore[return-value]


class Unembed(nn.Module):
    """Final norm + output head of a decoder, applied to any block's output.

    Args:
        final_norm: the model's final norm module.
        head: the model's output projection (LM head).
        softcap: ``config.final_logit_softcapping`` where the model applies it (Gemma 2), else None.
        tile_elems: logit entries (rows × vocabulary columns) :meth:`reduce` holds at once.
    """

    def __init__(self, final_norm: nn.Module, head: nn.Module, softcap: float | None = None,
                 tile_elems: int = TILE_ELEMS):
        super().__init__()
        self.final_norm = final_norm
        self.head = head
        self.softcap = softcap
        self.tile_elems = tile_elems

    def forward(self, hidden: Tensor) -> Tensor:
        """Logits of block outputs. hidden: (..., H) → (..., V)."""
        return softcap(self.head(self.final_norm(hidden)), self.softcap)

    def _plain_linear(self) -> bool:
        """Whether the head is an ordinary ``nn.Linear`` whose weight can be sliced by vocabulary."""
        head = self.head
        return (type(head) is nn.Linear and not getattr(head, "_hf_hook", None)
                and not head._forward_hooks and not head._forward_pre_hooks and head.weight.device.type != "meta")

    @torch.no_grad()
    def reduce(self, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-row next-token statistics of block outputs, one logit tile at a time.

        Shape notation: N = rows, H = hidden size, V = vocabulary.

        Args:
            hidden: (N, H) block outputs (before the final norm), in the model's dtype.

        Returns:
            top1 (N,) int64; top1_prob (N,) float32 in [0, 1]; entropy (N,) float32, nats. Equal
            (up to float32 rounding) to :func:`reduce_logits` of ``self(hidden)``.
        """
        if hidden.shape[0] == 0:
            return _empty(hidden.device)
        if not self._plain_linear():  # e.g. a quantised or offloaded head: whole rows at a time
            vocab = getattr(self.head, "out_features", None) or _MIN_TILE_COLS
            rows = max(1, self.tile_elems // vocab)
            parts = [reduce_logits(self(hidden[r : r + rows]), inplace=True) for r in range(0, hidden.shape[0], rows)]
            return tuple(torch.cat(xs) for xs in zip(*parts))  # type: ignore[return-value]
        weight, bias = self.head.weight, self.head.bias
        x = self.final_norm(hidden).to(weight.device)  # (N, H)
        n, vocab = x.shape[0], weight.shape[0]
        rows = min(n, _MAX_TILE_ROWS)
        cols = min(vocab, max(_MIN_TILE_COLS, self.tile_elems // max(rows, 1)))
        parts = []
        for r in range(0, n, rows):
            xr = x[r : r + rows]
            acc = _Running()
            for c in range(0, vocab, cols):
                z = F.linear(xr, weight[c : c + cols], None if bias is None else bias[c : c + cols])  # (R, C)
                z = z if z.dtype == torch.float32 else z.float()
                acc.add(*_tile_moments(softcap(z, self.softcap, inplace=True)), offset=c)
            parts.append(acc.result())
        out = parts[0] if len(parts) == 1 else tuple(torch.cat(xs) for xs in zip(*parts))
        return tuple(p.to(hidden.device) for p in out)  # type: ignore[return-value]

    @torch.no_grad()
    def candidate_logits(self, hidden: Tensor, ids: Tensor) -> Tensor:
        """Logits of a candidate token set per row (the head restricted to those rows of its weight).

        Shape notation: N = rows, H = hidden size, k = candidates per row.

        Cost: N·k·H multiply-adds (against N·V·H for :meth:`reduce`), plus the final norm.

        Args:
            hidden: (N, H) block outputs (before the final norm).
            ids: (N, k) int64 token ids, each row's candidates.

        Returns:
            (N, k) float32 logits ``head(final_norm(h))[ids]`` (soft-capped as the full head is); equal
            (up to float rounding) to gathering those columns from ``self(hidden)``.
        """
        if not self._plain_linear():  # a head that cannot be sliced: full rows, then gather
            return self(hidden).float().gather(-1, ids)
        weight, bias = self.head.weight, self.head.bias
        x = self.final_norm(hidden).to(weight.device)  # (N, H)
        z = torch.einsum("nh,nkh->nk", x, weight[ids.to(weight.device)])  # (N, k)
        if bias is not None:
            z = z + bias[ids.to(weight.device)]
        return softcap(z.float(), self.softcap).to(hidden.device)
