"""What one early-exit decoding call returns: the traces, the work counts and the time split.

Shared by every decoding loop (:mod:`ee_bench.decoding.early_exit`, :mod:`ee_bench.decoding.seq2seq_exit`,
:mod:`ee_bench.decoding.speculative`) and read by the speed-up measurement, the calibration and the
samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ee_bench.decoding.timing import TimeSplit


@dataclass(frozen=True)
class ExitTrace:
    """One sequence decoded with early exit (a row of paper Table 6 / 11).

    Attributes:
        kv: KV strategy name. n_layers: L.
        token_ids: output ids, cut after EOS or the token completing a stop string (as
            :meth:`HFCausalLM.truncate_output`).
        text: output text with the stop string removed.
        exit_layers: 0-based exit layer of each token in ``token_ids`` (L−1 = full depth).
        speculative: self-speculative decoding only: this sequence's draft length, rounds, drafted and
            accepted tokens, acceptance rate and mean accepted tokens per round
            (:func:`speculative_summary`); None otherwise (and left out of :meth:`to_dict`).
    """

    kv: str
    n_layers: int
    token_ids: tuple[int, ...]
    text: str
    exit_layers: tuple[int, ...]
    speculative: dict | None = None

    @property
    def mean_layers_run(self) -> float:
        """Mean blocks run per token, Σ(exit+1)/N, in layers (L for an empty output)."""
        if not self.exit_layers:
            return float(self.n_layers)
        return sum(e + 1 for e in self.exit_layers) / len(self.exit_layers)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["token_ids"], d["exit_layers"] = list(self.token_ids), list(self.exit_layers)
        if d["speculative"] is None:
            del d["speculative"]
        return d


@dataclass(frozen=True)
class DecodeCounts:
    """Work done by one decoding call (all rows).

    Attributes:
        tokens: tokens generated (before truncation at a stop string).
        token_layers: blocks run by generated tokens themselves, Σ(exit+1).
        catchup_token_layers: blocks run by deferred catch-up slots.
        kv_fill_token_layers: (token, layer) key/value entries filled by copy/recompute.
        gate_checks: (token, layer) gate evaluations.
        restricted_checks: those of them computed on a candidate set only (``--check topk:K`` or
            ``shortlist:N``, approximate; each costs H·K or H·N instead of H·V multiply-adds).
        head_rows: rows projected through the full LM head (gate checks + emitted tokens).
        prompt_positions: B × prompt width run through every block in the prompt pass.
        draft_rounds / draft_tokens / accepted_tokens: self-speculative decoding only (``--kv
            speculative``): draft-and-verify rounds, tokens drafted, drafts accepted by the verification.
        restricted_rows: head rows computed by restricted checks: K per ``topk:K`` check, N per
            ``shortlist:N`` check (each row H multiply-adds).
        head_gaps: {g: full-head rows (full checks and emitted tokens' heads, after the prompt pass) read g
            blocks after the row's previous full-head read}, from the causal loop: how cold the head's
            weights are in the CPU cache (``CostProfile.cold_head``); empty where a loop does not count it.
    """

    tokens: int = 0
    token_layers: int = 0
    catchup_token_layers: int = 0
    kv_fill_token_layers: int = 0
    gate_checks: int = 0
    restricted_checks: int = 0
    head_rows: int = 0
    prompt_positions: int = 0
    draft_rounds: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    restricted_rows: int = 0
    head_gaps: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def zero() -> dict:
        """A mutable counter dict for a decoding loop: every field at 0 (``head_gaps`` an empty dict)."""
        return {f: ({} if f == "head_gaps" else 0) for f in DecodeCounts.__dataclass_fields__}

    @property
    def acceptance_rate(self) -> float | None:
        """accepted_tokens / draft_tokens (self-speculative decoding); None when nothing was drafted."""
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else None

    @property
    def mean_accepted_per_round(self) -> float | None:
        """accepted_tokens / draft_rounds, in tokens; None without rounds."""
        return self.accepted_tokens / self.draft_rounds if self.draft_rounds else None

    @staticmethod
    def sum(parts: Sequence[DecodeCounts]) -> DecodeCounts:
        """Field by field; ``head_gaps`` merged gap by gap."""
        out = DecodeCounts.zero()
        for part in parts:
            for f in out:
                if f == "head_gaps":
                    add_gap(out[f], part.head_gaps)
                else:
                    out[f] += getattr(part, f)
        return DecodeCounts(**out)


def add_gap(gaps: dict[int, int], more: dict[int, int] | int, n: int = 0) -> None:
    """Add to a ``head_gaps`` counter: another counter, or ``n`` reads at gap ``more``."""
    for g, c in (more.items() if isinstance(more, dict) else [(more, n)]):
        if c:
            gaps[int(g)] = gaps.get(int(g), 0) + int(c)


def speculative_summary(counts: DecodeCounts, draft_len) -> dict:
    """Acceptance figures of self-speculative decoding, for results and samples.

    Args:
        draft_len: an int, or a schedule (:class:`~ee_bench.decoding.draft_length.DraftLength`, written as
            its ``--draft-len`` spelling, e.g. ``"adaptive:4"``).

    Returns:
        ``{"draft_len", "draft_rounds", "draft_tokens", "accepted_tokens", "acceptance_rate" (accepted /
        drafted, None without drafts), "mean_accepted_per_round" (tokens, None without rounds)}``.
    """
    return {"draft_len": draft_len if isinstance(draft_len, int) else str(draft_len),
            "draft_rounds": counts.draft_rounds, "draft_tokens": counts.draft_tokens,
            "accepted_tokens": counts.accepted_tokens, "acceptance_rate": counts.acceptance_rate,
            "mean_accepted_per_round": counts.mean_accepted_per_round}


@dataclass(frozen=True)
class DecodeResult:
    """Traces, time split and work counts of one decoding call."""

    traces: tuple[ExitTrace, ...]
    split: TimeSplit
    counts: DecodeCounts


def shallow_layers(n_layers: int) -> int:
    """How many of the first blocks count as *shallow* for :func:`shallow_exit_note`: a tenth of the
    depth, rounded up, but at least 2 (layers 0 and 1). SmolLM2 (L = 30) → 3 (layers 0–2); Gemma-3-270M
    (L = 18) → 2; a 6-layer encoder → 2."""
    return max(2, -(-n_layers // 10))


def shallow_exit_note(trace: ExitTrace, last_prompt_id: int, min_prefix: int) -> str | None:
    """A warning when most gated tokens of ``trace`` exit in its first few blocks, else None.

    A token "gated" is one that could exit: position ≥ max(1, ``min_prefix``), since earlier ones never
    exit and the first token always comes from the full-depth prompt pass. *Shallow* layers are
    0 … :func:`shallow_layers` − 1. Near the bottom the hidden state is still mostly the input token's
    embedding, so on a model whose head is tied to its embeddings the head there tends to echo the input
    token (Gemma-3-270M at confidence τ 0.9 exits at layer 0; SmolLM2 with ``--exit-layers 1,11`` at τ 0.01
    exits at layer 1). The note counts the shallow exits and how many of them repeat their input token (the
    previous output token, or the prompt's last token for the first), and says the input embedding is
    the likely cause only when at least half of them do.

    Args:
        trace: one decoded sequence. last_prompt_id: the prompt's last token id. min_prefix: as decode.

    Returns:
        The warning text when at least half of the gated tokens exited at a shallow layer, else None.
    """
    gated = range(min(max(1, min_prefix), len(trace.token_ids)), len(trace.token_ids))
    top = shallow_layers(trace.n_layers) - 1
    shallow = [i for i in gated if trace.exit_layers[i] <= top]
    if not gated or 2 * len(shallow) < len(gated):
        return None
    echo = sum(trace.token_ids[i] == (trace.token_ids[i - 1] if i else last_prompt_id) for i in shallow)
    why = ("the head there mostly reads the input embedding, so these exits are degenerate" if 2 * echo >= len(shallow)
           else "exits this shallow are rarely the full-depth token; compare the output with full depth")
    return (f"{len(shallow)} of {len(gated)} gated tokens exited at layers 0-{top} (of {trace.n_layers}), and {echo} "
            f"of them repeat their input token: {why}. Raise the threshold or start --exit-layers later.")

