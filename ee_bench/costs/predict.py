"""Predicted speed-up and the oracle ceiling from a cost profile (issue 22; docs/definitions.md).

Torch-free: the run, ``rescore`` and the leaderboard call the same :func:`predicted_speedup`.

Cost of one generated token under early exit (ms; b = block, c = check, h = head, all from the profile):

    cost = layers_run · b(1) + checks · c(mode) + heads · h(1) + kv_fills · kv(strategy)

with, for a token that exits at layer g (0-based) when every layer below L−1 is an exit:
layers_run = g + 1, checks = min(g + 1, L − 1) (no check at the last layer), heads = 1 except for a
token that exits through a ``full`` check (the check's head gives the emitted token, as in the decoding
loop), kv_fills = L − 1 − g (``copy``/``recompute``; 0 without a strategy). For ``topk:K`` the first
check of a token is a full check and the later ones cost c(topk:K). Full depth: L · b(1) + h(1).

    predicted (per token) = (L · b + h) / mean cost         ceiling = (L · b + h) / ((avg_fm + 1) · b + h)

where avg_fm is the mean 0-based first-match layer: every token exits at its first-match layer, checks
cost nothing, one head per token — the most any exit policy can give on that machine.

A cold head. Every full-head call (an emitted token's head, a ``full`` check, a ``topk`` token's first
check) also pays ``p(g)`` = :meth:`CostProfile.cold_head`, the extra time of a head whose weights ``g``
blocks pushed out of the CPU cache since the previous head call (0 for profiles without
``head_after_ms``). So full depth costs L · b + h + p(L) and the ceiling's token (avg_fm + 1) · b + h +
p(avg_fm + 1). In the per-token formula (every layer below L−1 an exit) the full-head checks and the head
after a ``full`` gate's last check come 1 block after the previous head call (p(1)); a ``topk`` token's
emitted head comes g blocks after its first check at layer 0 (p(layers_run − 1)); a head-free gate's
emitted head comes after all the token's blocks (p(layers_run)). A measured run (:func:`run_work`) takes
each call's gap from the decoding loop's own count (``DecodeCounts.head_gaps``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ee_bench.costs.profile import CostProfile, ProfileError
from ee_bench.exits.headline import result_headline_oracle

HEAD_FREE_GATES = ("state", "classifier")
"""Gates whose checks read no head (their check cost is ``check_ms['state']``: the classifier's one dot
product of H multiply-adds costs at most the state gate's cosine, 3·H)."""
MODELLED_KV = ("copy", "recompute")

PAPER_TABLE2 = {
    "llama2-7b-ee": {"task": "WMT22", "n_layers": 32, "avg": 23.49, "perc": 88.23},
    "llama2-13b-ee": {"task": "WMT22", "n_layers": 40, "avg": 25.5, "perc": 92.43},
}
"""The paper's Table 2 oracle figures (Llama-2-Chat, WMT22 average): ``avg`` = mean optimal exit layer
(read as ee-bench's 0-based mean first-match layer, so a token runs avg + 1 blocks), ``perc`` = % of
tokens that can exit before the last layer."""


@dataclass(frozen=True)
class TokenWork:
    """Mean work per generated token (all figures are means over tokens).

    Attributes:
        layers_run: blocks run (layers). checks: gate checks. exits_by_full_check: share of tokens whose
            emitted token came from a full check's head (no separate head). kv_fills: skipped (token,
            layer) entries filled by the KV strategy.
    """

    layers_run: float
    checks: float
    exits_by_full_check: float = 0.0
    kv_fills: float = 0.0


def full_depth_ms(profile: CostProfile, context: float | None = None) -> float:
    """ms per token at full depth: L · b(1) + h(1) + p(L) (the head after all L blocks)."""
    L = profile.n_layers
    return L * profile.block(1, context) + profile.head(1) + profile.cold_head(L)


def token_ms(profile: CostProfile, work: TokenWork, check_mode: str = "full", kv: str | None = None,
             context: float | None = None) -> float:
    """Mean ms per generated token for ``work`` (module docstring formula).

    Raises:
        ProfileError: if the profile lacks the check mode or the KV strategy's figure.
    """
    b, h, p = profile.block(1, context), profile.head(1), profile.cold_head
    if check_mode.startswith("topk:") and work.checks > 0:
        first = min(1.0, work.checks)
        checks_ms = first * (profile.check("full") + p(1)) + (work.checks - first) * profile.check(check_mode)
        emit_gap = max(1.0, work.layers_run - 1.0)  # the emitted head comes after the first (full) check
    elif check_mode == "full" and work.checks > 0:
        checks_ms = work.checks * (profile.check("full") + p(1))
        emit_gap = 1.0  # after the last check below the exit
    else:
        checks_ms = work.checks * profile.check(check_mode) if work.checks else 0.0
        emit_gap = work.layers_run  # no head since the previous token's
    heads = 1.0 - (work.exits_by_full_check if check_mode == "full" else 0.0)
    kv_ms = 0.0
    if kv is not None and work.kv_fills:
        if kv not in profile.kv_ms:
            raise ProfileError(f"the cost profile of {profile.model} has no figure for KV strategy {kv!r} "
                               f"(it has {', '.join(sorted(profile.kv_ms)) or 'none'}).")
        kv_ms = work.kv_fills * profile.kv_ms[kv]
    return work.layers_run * b + checks_ms + heads * (h + p(emit_gap)) + kv_ms


def ceiling(profile: CostProfile, first_match_avg: float, context: float | None = None) -> float:
    """The oracle ceiling per token: (L·b + h + p(L)) / ((avg_fm + 1)·b + h + p(avg_fm + 1)), avg_fm the mean
    0-based first-match layer (p: :meth:`CostProfile.cold_head`)."""
    b, h, run = profile.block(1, context), profile.head(1), first_match_avg + 1.0
    return full_depth_ms(profile, context) / (run * b + h + profile.cold_head(run))


def mean_context(prompt_lengths: Sequence[int], output_lengths: Sequence[int]) -> float | None:
    """Mean cached tokens while generating (tokens): prompt tokens + half the output tokens, averaged over
    documents (one length of each per document); None for no documents. The ``context`` of a run's
    :func:`predicted_speedup`."""
    if not prompt_lengths:
        return None
    if len(prompt_lengths) != len(output_lengths):
        raise ValueError(f"{len(prompt_lengths)} prompt lengths but {len(output_lengths)} output lengths")
    return sum(p + o / 2 for p, o in zip(prompt_lengths, output_lengths)) / len(prompt_lengths)


def sweep_work(score: Mapping[str, Any], n_layers: int, check_mode: str) -> TokenWork:
    """The mean :class:`TokenWork` of one ``gate_sweep`` entry (every layer below L−1 is an exit).

    ``mean_checks`` = mean min(g+1, L−1) (``GateScore``); files written before it existed fall back
    to min(mean_layers_run, L−1). Tokens at full depth = mean_layers_run − mean_checks; the others exit
    through a check.
    """
    run = float(score["mean_layers_run"])
    checks = float(score.get("mean_checks", min(run, n_layers - 1)))
    at_full = max(0.0, run - checks)
    return TokenWork(layers_run=run, checks=checks, exits_by_full_check=max(0.0, 1.0 - at_full) if check_mode == "full" else 0.0,
                     kv_fills=max(0.0, n_layers - run))


def check_mode_of(result: Mapping[str, Any]) -> str:
    """The check mode a results JSON's gate implies: ``state`` for a head-free gate, else its ``--check``."""
    if result.get("gate") in HEAD_FREE_GATES:
        return "state"
    return str((result.get("config") or {}).get("check") or "full")


def kv_of(result: Mapping[str, Any]) -> str | None:
    """The KV strategy whose extra work the prediction counts: the run's first ``--kv`` if modelled
    (copy, recompute), else None (no KV work counted)."""
    kv = (result.get("config") or {}).get("kv")
    first = str(kv).split(",")[0].strip() if kv else None
    return first if first in MODELLED_KV else None


def predicted_speedup(result: Mapping[str, Any], profile: CostProfile | None,
                      context: float | None = None) -> dict[str, Any] | None:
    """The ``predicted_speedup`` entry of a results JSON (None without a profile or a gate sweep).

    Args:
        result: a results JSON (``oracle.first_match``, ``gate_sweep``, ``threshold``, ``gate``, ``config``).
        profile: the model's cost profile, or None.
        context: mean cached tokens while generating (None: the profile's shortest context).

    Returns:
        ``{"profile": {model, device, dtype, threads, source, block_ms, head_ms, head_in_blocks},
        "check": mode, "kv": strategy or None, "context_tokens": context or None,
        "ceiling": {"per_token": x}, "at_threshold": {"threshold": τ, "per_token": x},
        "sweep": [{"threshold": τ, "per_token": x}, …]}``.

    Raises:
        ProfileError: if the profile lacks the check mode the run used, or is for another model / depth.
    """
    sweep = result.get("gate_sweep")
    if profile is None or not sweep:
        return None
    fm = (result.get("oracle") or {}).get("first_match") or {}
    L = int(fm.get("n_layers") or profile.n_layers)
    if L != profile.n_layers:
        raise ProfileError(f"the cost profile of {profile.model} has {profile.n_layers} layers; the run has {L}. "
                           f"Use the profile of the model that ran.")
    mode, kv = check_mode_of(result), kv_of(result)
    # the ceiling exits every token at the headline oracle: first-match, or saturation on classification and
    # multiple choice, where an early layer agrees with the final one by chance (docs/definitions.md)
    headline = (result.get("oracle") or {}).get(result_headline_oracle(result)) or fm
    full = full_depth_ms(profile, context)
    points = [{"threshold": float(s["threshold"]),
               "per_token": full / token_ms(profile, sweep_work(s, L, mode), mode, kv, context)} for s in sweep]
    chosen = result.get("threshold")
    at = next((p for p in points if chosen is not None and p["threshold"] == float(chosen)), points[-1])
    return {"profile": profile.summary(), "check": mode, "kv": kv, "context_tokens": context,
            "ceiling": {"per_token": ceiling(profile, float(headline["avg"]), context),
                        "oracle": result_headline_oracle(result)},
            "at_threshold": dict(at), "sweep": points}


# ------------------------------------------------------------------ a measured run's work counts
@dataclass(frozen=True)
class RunWork:
    """Work of a whole decoding call, as counted by the decoding loop (``DecodeCounts.to_dict()``).

    Attributes:
        blocks: {query width k: block calls}. heads: {rows k: head calls}. checks: {mode: checks}.
        kv_fills: (token, layer) fills. kv: strategy. prefill: prompt widths of the prompt passes.
        context: mean cached tokens while generating. head_gaps: {g: full-head calls (emitted heads and
        full checks) made g blocks after the previous head call}, each priced p(g) on top (empty: unknown).
    """

    blocks: dict[float, float]
    heads: dict[float, float]
    checks: dict[str, float]
    kv_fills: float
    kv: str | None
    prefill: tuple[int, ...]
    context: float
    head_gaps: dict[int, float] = field(default_factory=dict)


def run_work(counts: Mapping[str, int], n_layers: int, kv: str, check_mode: str, prompt_lengths: list[int],
             needs_head: bool = True, draft_layer: int | None = None) -> RunWork:
    """Turn a decoding call's counts (batch 1, one row per prompt) into :class:`RunWork`.

    Standard loop (copy, recompute, full depth): token_layers − L·rows blocks at k = 1 after the prompt
    pass; head rows not spent on full checks or prompt passes are emit heads at k = 1. Speculative
    (fixed draft layer E): draft_tokens · (E+1) blocks at k = 1, draft_rounds · (L−1−E) verify block
    calls at k = draft_tokens / draft_rounds, draft_tokens heads at k = 1 and draft_rounds at that k.
    Head gaps: the loop's ``head_gaps`` count (keys may be strings, as read from JSON); speculative: each
    draft's head E + 1 blocks after the previous head call, each verify head L − 1 − E blocks after.
    """
    L, rows = n_layers, len(prompt_lengths)
    tokens = counts["tokens"]
    ctx = sum(prompt_lengths) / max(1, rows) + tokens / max(1, 2 * rows)
    g, r = counts["gate_checks"], counts["restricted_checks"]
    if kv == "speculative" and counts.get("draft_rounds"):
        if draft_layer is None:
            raise ValueError("speculative work needs the draft layer E")
        d = counts["draft_tokens"] / counts["draft_rounds"]
        blocks = {1: counts["draft_tokens"] * (draft_layer + 1), d: counts["draft_rounds"] * (L - 1 - draft_layer)}
        heads = {1: counts["draft_tokens"], d: counts["draft_rounds"]}
        gaps = {draft_layer + 1: counts["draft_tokens"], max(1, L - 1 - draft_layer): counts["draft_rounds"]}
        return RunWork(blocks, heads, {}, 0.0, None, tuple(prompt_lengths), ctx, gaps)
    full_checks = (g - r) if needs_head else 0
    checks = {("full" if needs_head else "state"): g - r}
    if r:
        checks[check_mode] = r
    emit = counts["head_rows"] - full_checks - rows
    blocks = {1: counts["token_layers"] - L * rows + counts.get("catchup_token_layers", 0)}
    gaps = {int(g): float(n) for g, n in (counts.get("head_gaps") or {}).items()}
    return RunWork(blocks, {1: emit}, checks, counts.get("kv_fill_token_layers", 0),
                   kv if kv in MODELLED_KV else None, tuple(prompt_lengths), ctx, gaps)


def run_ms(profile: CostProfile, work: RunWork) -> float:
    """Predicted ms of a whole decoding call: prompt passes (L blocks over the prompt + one head after
    them each, h(1) + p(L)), then Σ block calls · b(k) + head calls · h(k) + checks · c(mode) + kv fills ·
    kv(strategy) + Σ head_gaps[g] · p(g) (p: :meth:`CostProfile.cold_head`)."""
    L = profile.n_layers
    t = sum(L * profile.prefill(p) + profile.head(1) + profile.cold_head(L) for p in work.prefill)
    t += sum(n * profile.cold_head(g) for g, n in work.head_gaps.items())
    t += sum(n * profile.block(k, work.context) for k, n in work.blocks.items())
    t += sum(n * profile.head(k) for k, n in work.heads.items())
    t += sum(n * profile.check(m) for m, n in work.checks.items() if n)
    if work.kv is not None and work.kv_fills:
        t += work.kv_fills * profile.kv_ms[work.kv]
    return t
