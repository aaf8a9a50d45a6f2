"""How a gate check reads the output head: the full vocabulary, or a candidate set (``--check``).

A confidence-type check (the ``confidence``, ``entropy`` and ``patience`` gates) projects the token's
h^ℓ through the final norm and the LM head and reduces the V logits to top-1, top-1 probability and
entropy (:meth:`~ee_bench.models.unembed.Unembed.reduce`). On SmolLM2-135M that head (49152 × 576) costs
about as much as 12 decoder blocks, so a check after every layer costs more than exiting saves.

Check modes:

- ``full`` (default): every check reads the whole vocabulary (exact statistics).
- ``topk:K`` (**approximate**): the first check of a token reads the whole vocabulary and keeps its K
  most likely ids; every later check of the same token computes the logits of those K ids only
  (:meth:`~ee_bench.models.unembed.Unembed.candidate_logits`) and the gate reads the softmax
  statistics *restricted to the candidates* (:func:`~ee_bench.models.unembed.reduce_logits` on the
  (b, K) logits: the top-1 probability is renormalised over K ids, so it is ≥ the full one, and the
  entropy ≤ the full one). The gate decision is therefore approximate; the token emitted at an exit
  is still the exact argmax of the full head (one full head projection at the exit).

Cost per check of a token (H = hidden size, V = vocabulary): ``full`` H·V multiply-adds; ``topk:K`` H·V
for the first check, then H·K (SmolLM2-135M with K = 16: 9.2 k against 28.3 M), plus H·V once at the
exit. Counted in :class:`~ee_bench.decoding.early_exit.DecodeCounts` as ``restricted_checks`` (checks
on candidates only) and ``head_rows`` (full head rows); timed in the ``gate`` section (checks) and the
``emit`` section (the exit's full projection).

Shape notation: b = rows checked, H = hidden size, V = vocabulary, K = candidates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor

from ee_bench.decoding.draft_length import parse_draft_len
from ee_bench.errors import DecodingOptionError, EEBenchError
from ee_bench.exits.gates import Gate
from ee_bench.models.unembed import reduce_logits


class CheckModeError(EEBenchError):
    """An unknown or malformed ``--check`` value."""


@dataclass(frozen=True)
class CheckMode:
    """How gate checks read the head.

    Attributes:
        k: candidates per token for the ``topk:K`` check; None otherwise.
        shortlist: N of the ``shortlist:N`` check; None otherwise.
        ids: the shortlist's token ids (at most N, most frequent first), set by :func:`with_shortlist`
            from calibration outputs; None until then (a shortlist check without ids is refused).
    """

    k: int | None = None
    shortlist: int | None = None
    ids: tuple[int, ...] | None = None

    @property
    def approximate(self) -> bool:
        """True for candidate-restricted checks (gate statistics not those of the full softmax)."""
        return self.k is not None or self.shortlist is not None

    @property
    def name(self) -> str:
        """``full``, ``topk:K`` or ``shortlist:N`` (the ``--check`` spelling)."""
        if self.shortlist is not None:
            return f"shortlist:{self.shortlist}"
        return "full" if self.k is None else f"topk:{self.k}"

    @property
    def label(self) -> str:
        """The name, marked ``(approximate)`` for restricted checks (for results and printouts)."""
        return self.name + (" (approximate)" if self.approximate else "")

    def restricted_at(self, cand: Tensor | None) -> bool:
        """Whether a check reads candidate rows only: every ``shortlist`` check; a ``topk`` check once
        the token's first check kept its candidates ``cand``."""
        return self.shortlist is not None or (self.k is not None and cand is not None)

    def restricted_width(self) -> int:
        """Head rows a restricted check computes per token: K, or the shortlist's size."""
        return len(self.ids or ()) if self.shortlist is not None else int(self.k or 0)


FULL = CheckMode()


def parse_check_mode(text: str | CheckMode | None) -> CheckMode:
    """``"full"`` → :data:`FULL`; ``"topk:16"`` → ``CheckMode(16)``; ``"shortlist:1024"`` →
    ``CheckMode(shortlist=1024)`` (ids still to be set by :func:`with_shortlist`); a CheckMode or None
    passes (None → FULL).

    Raises:
        CheckModeError: for any other text, or K, N < 1 (the message names the accepted forms).
    """
    if text is None:
        return FULL
    if isinstance(text, CheckMode):
        return text
    t = text.strip().lower()
    if t == "full":
        return FULL
    kind, _, k = t.partition(":")
    if kind == "topk" and k.isdigit() and int(k) >= 1:
        return CheckMode(int(k))
    if kind == "shortlist" and k.isdigit() and int(k) >= 1:
        return CheckMode(shortlist=int(k))
    raise CheckModeError(f"unknown check mode {text!r}: use --check full (exact, default), --check topk:K with a "
                         f"whole number K >= 1 (approximate gate statistics on the previous check's K most likely "
                         f"tokens), e.g. --check topk:16, or --check shortlist:N (approximate: the N most frequent "
                         f"output tokens of the calibration documents), e.g. --check shortlist:1024.")


def with_shortlist(mode: CheckMode, outputs) -> CheckMode:
    """The shortlist check with its ids: the ``mode.shortlist`` most frequent tokens of ``outputs``.

    Args:
        mode: a ``shortlist:N`` mode (other modes are returned unchanged).
        outputs: token-id sequences (the full-depth outputs of the calibration documents).

    Returns:
        ``CheckMode(shortlist=N, ids=…)``, ids by falling count, ties by smaller id; fewer than N ids
        when the outputs hold fewer distinct tokens.

    Raises:
        CheckModeError: if ``outputs`` hold no token at all.
    """
    if mode.shortlist is None:
        return mode
    counts = Counter(int(t) for seq in outputs for t in seq)
    if not counts:
        raise CheckModeError(f"--check {mode.name} needs the output tokens of calibration documents to build its "
                             f"shortlist; their full-depth outputs were empty.")
    ids = tuple(t for t, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[: mode.shortlist])
    return CheckMode(shortlist=mode.shortlist, ids=ids)


def shortlist_check(unembed, hidden: Tensor, mode: CheckMode) -> tuple[Tensor, Tensor, Tensor]:
    """Softmax statistics over the shortlist only (approximate): only its N head rows are computed.

    Args:
        unembed: the model's Unembed. hidden: (b, H). mode: a shortlist mode with ids.

    Returns:
        top1 (b,) int64 — the shortlisted id with the largest logit —, top1_prob (b,) float32
        renormalised over the N ids, entropy (b,) float32 nats over them.

    Raises:
        CheckModeError: if the mode has no ids (build it with :func:`with_shortlist`).
    """
    if not mode.ids:
        raise CheckModeError(f"--check {mode.name} has no shortlist yet: it is built from the calibration "
                             f"documents' full-depth outputs (with_shortlist) before decoding.")
    ids = torch.tensor(mode.ids, device=hidden.device)  # (N,)
    logits = unembed.candidate_logits(hidden, ids.expand(hidden.shape[0], -1))  # (b, N)
    idx, prob, ent = reduce_logits(logits, inplace=True)
    return ids[idx], prob, ent


def full_check(unembed, hidden: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A token's first check: full-vocabulary statistics and its K candidates.

    Args:
        unembed: the model's :class:`~ee_bench.models.unembed.Unembed`. hidden: (b, H). k: K.

    Returns:
        top1 (b,) int64, top1_prob (b,) float32, entropy (b,) float32 nats, candidates (b, K') int64
        with K' = min(K, V), most likely first.
    """
    logits = unembed(hidden).float()  # (b, V)
    cand = logits.topk(min(k, logits.shape[-1]), dim=-1).indices  # (b, K')
    top1, prob, ent = reduce_logits(logits, inplace=True)
    return top1, prob, ent, cand


def restricted_check(unembed, hidden: Tensor, cand: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Softmax statistics over each row's candidates only (approximate; see the module docstring).

    Args:
        unembed: the model's Unembed. hidden: (b, H). cand: (b, K) int64 candidate ids.

    Returns:
        top1 (b,) int64 — the candidate with the largest logit —, top1_prob (b,) float32 renormalised
        over the K candidates, entropy (b,) float32 nats over the K candidates.
    """
    logits = unembed.candidate_logits(hidden, cand)  # (b, K)
    idx, prob, ent = reduce_logits(logits, inplace=True)
    return cand.gather(1, idx.unsqueeze(1)).squeeze(1), prob, ent


def check_draft_len(draft_len, option: str = "draft length"):
    """Validate a self-speculative draft length: None, a whole number >= 1, or an adaptive schedule
    (``adaptive`` / ``adaptive:N``; :mod:`ee_bench.decoding.draft_length`).

    Args:
        option: kept for callers that name the option (the message names ``--draft-len``).

    Returns:
        None, the int N, or a :class:`~ee_bench.decoding.draft_length.DraftLength` for an adaptive one.

    Raises:
        DecodingOptionError: naming the fix.
    """
    return parse_draft_len(draft_len)


def check_options(check: str | CheckMode | None, draft_len: int | None) -> tuple[CheckMode, int | None]:
    """Validate ``--check`` and ``--draft-len`` before anything loads (the command line and the stage).

    Returns:
        (the :class:`CheckMode`, the draft length or None).

    Raises:
        CheckModeError: unknown check mode. DecodingOptionError: a draft length < 1 (both name the fix).
    """
    return parse_check_mode(check), check_draft_len(draft_len, "--draft-len")


def check_gate_mode(gate: Gate, mode: CheckMode, adds_queries: bool = False, kv: str = "") -> None:
    """Refuse gate / check-mode / KV-strategy combinations that have no meaning.

    Args:
        gate: the resolved gate. mode: the check mode. adds_queries, kv: whether the KV strategy adds
            catch-up query slots (deferred), and its name for the message.

    Raises:
        DecodingOptionError: a restricted check with a head-free or oracle gate; the oracle gate with a
            strategy that re-runs skipped layers exactly.
    """
    if mode.approximate and (not gate.needs_head or gate.needs_final):
        raise DecodingOptionError(f"--check {mode.name} restricts the head statistics a gate reads; the "
                                  f"{type(gate).__name__} reads {'no head' if not gate.needs_head else 'the final layer'}. "
                                  f"Use --check full with this gate.")
    if gate.needs_final and adds_queries:
        raise DecodingOptionError(f"--gate oracle fills skipped layers with a KV strategy as if the token had exited; "
                                  f"{kv} re-runs them exactly (full-depth keys/values), so there is nothing to "
                                  f"measure. Use --kv copy or recompute with the oracle gate.")
