"""Lossless self-speculative decoding: draft with the first blocks, verify with the rest (``--kv speculative``).

The early layers of the model itself are the draft model (LayerSkip's self-speculation; Draft & Verify):

1. **draft**: up to d tokens are generated one at a time by blocks 0 … E only, each read out through the
   model's own final norm and head (``argmax head(final_norm(h^E))``); blocks 0 … E write their keys
   and values into the cache as they would at full depth;
2. **verify**: blocks E+1 … L−1 run once over the d drafted positions together (d query slots), starting
   from the drafts' h^E, so blocks ≤ E are never recomputed; this gives the full model's greedy token at
   each of those positions;
3. **accept** the longest prefix of drafts equal to the verified tokens, then the first verified token
   that differs (the correction); the cache columns of rejected drafts are overwritten by the next round
   (the causal mask never lets a query see a column beyond its own).

Every emitted token is the full model's greedy token, so the output equals full-depth greedy decoding up
to floating-point differences between one query slot and d query slots in the verify pass (tested
token-identical on tiny models; a divergence would show as ``token_agreement`` < 1 in the speed-up
report). Rows are decoded one after the other (acceptance differs per row).

Cost per round (fixed E): d × (E+1) blocks for the draft, d × (L−1−E) blocks for the verification (d slots in one
call: on an accelerator almost the price of one), and 2d head projections. Nothing is saved when drafts
are rejected: the speed-up comes from verifying several tokens per call, so it needs acceptance.

Tokens 0 … min_prefix−1 of the output are not drafted: each is one full-depth step (the
:class:`~ee_bench.exits.decide.ExitSchedule` lets no such token exit), so ``--min-prefix`` means the same
here as in the early-exit loop. Every emitted token is the full model's either way.

The draft layer is fixed (one ``--exit-layers E``) or **chosen by the gate** (several exit layers, or
none = every layer): each draft token runs blocks one at a time and stops at the first checked layer
e_i ≤ E where the gate fires (E = the deepest allowed layer, where every draft stops at the latest).
Layers e_i+1 … E of a draft's column get layer e_i's keys/values (copied) so that later drafts of the
round read something. The verification runs blocks e_min+1 … L−1 over all d positions from each draft's
stored h^{e_min}, e_min = min_i e_i: every draft ran at least that far, and blocks 0 … e_min of every
drafted column were computed exactly (they only read columns whose blocks ≤ e_min are exact), so the
verification rebuilds the full model's keys/values above e_min and stays lossless. This is the simpler
of the two lossless choices (verifying each position from its own exit layer would save
Σ_i (e_i − e_min) block-slots but needs a pass per distinct exit layer). Gate checks cost what they
cost in the early-exit loop (``gate_checks``; one head row each for a head-reading gate).

Draft length: constant (``--draft-len N``, default 4) or adaptive (``--draft-len adaptive[:N]``:
transformers' heuristic, +2 after a fully accepted round, −1 after a rejection, at least 1, per row;
:mod:`ee_bench.decoding.draft_length`). It only changes how many drafts one verification covers.
With ``+gate`` the run's gate also ends a round early: after each draft the gate is asked at the
draft's layer (with a gate-chosen draft layer, a draft on which no checked layer ≤ E fired is asked
once more at E), and the round stops after a draft it does not fire on. The check reuses the draft's
hidden state (and, for a head-reading gate, the draft's own head row), so it adds no blocks; its cost
is counted as ``gate_checks`` like any other.

Acceptance: ``DecodeCounts.acceptance_rate`` = accepted / drafted, ``mean_accepted_per_round`` =
accepted / rounds (reported per run and per document).

Shape notation: P = prompt length, d = draft length, H = hidden size, L = blocks, E = draft layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ee_bench.decoding.checks import FULL, CheckMode, check_gate_mode
from ee_bench.decoding.draft_length import DraftLength, as_schedule
from ee_bench.decoding.kv_store import SlotIndex
from ee_bench.decoding.timing import SectionTimer
from ee_bench.decoding.traces import (
    DecodeCounts,
    DecodeResult,
    ExitTrace,
    speculative_summary,
)
from ee_bench.errors import DecodingOptionError
from ee_bench.exits.decide import ExitSchedule, Point


@dataclass(frozen=True)
class DraftRound:
    """One draft-and-verify round of one row.

    Attributes:
        drafted: the d draft tokens. verified: the full model's greedy token at each drafted position.
        accepted: length of the longest prefix where drafted == verified (0 … d).
    """

    drafted: tuple[int, ...]
    verified: tuple[int, ...]
    accepted: int

    @property
    def emitted(self) -> tuple[int, ...]:
        """The accepted drafts, then the correction if a draft was rejected."""
        if self.accepted == len(self.drafted):
            return self.drafted
        return self.drafted[: self.accepted] + (self.verified[self.accepted],)


def accepted_prefix(drafted: Sequence[int], verified: Sequence[int]) -> int:
    """Length of the longest common prefix of ``drafted`` and ``verified`` (the accepted drafts).

    Raises:
        ValueError: if the two lists differ in length.
    """
    if len(drafted) != len(verified):
        raise ValueError(f"drafted ({len(drafted)}) and verified ({len(verified)}) tokens differ in number")
    k = 0
    while k < len(drafted) and drafted[k] == verified[k]:
        k += 1
    return k


class SelfSpeculativeDecoder:
    """Draft with the first blocks, verify with the remaining blocks (see the module docstring).

    Args:
        runner: the :class:`~ee_bench.decoding.blocks.BlockExecutor` of the model (blocks, cache, rotary).
        model: the causal wrapper (its ``eos_token_ids``, ``decode``, ``truncate_output``).
        schedule: the draft's :class:`~ee_bench.exits.decide.ExitSchedule`: ``force_layer`` = E, the
            fixed draft layer or, with a gate, the deepest layer a draft may run to; with a gate, each
            draft token exits at the first of ``exit_layers`` (< E) where it fires; ``min_prefix``:
            output tokens that are never drafted.
        draft_len: d ≥ 1, tokens drafted per round, or a :class:`~ee_bench.decoding.draft_length.DraftLength`
            schedule (``adaptive``: the length of each row's next round follows the last one's acceptance).
        observe: with a gate, callable(layer, h (1, H), prev_h (1, H), previous, candidates) →
            (GateObservation, candidates), the decoding loop's observation builder with its check mode
            (:meth:`~ee_bench.exits.decide.ExitSchedule.observe` underneath; candidates None in ``full``
            mode).
        mode: the check mode of the draft's gate checks (which checks read candidate rows only).

    Raises:
        ValueError: for a draft layer outside 0 … L−2, a draft length < 1, or a gate without ``observe``.
    """

    def __init__(self, runner, model, schedule: ExitSchedule, draft_len: int | DraftLength, observe=None,
                 mode: CheckMode = FULL):
        L = runner.n_layers
        draft_layer = schedule.force_layer
        if draft_layer is None or not 0 <= draft_layer < L - 1:
            raise ValueError(f"draft layer {draft_layer} is outside 0..{L - 2} (the draft must stop before the last block)")
        self.lengths = as_schedule(draft_len)  # DecodingOptionError for a length < 1
        if schedule.gate is not None and observe is None:
            raise ValueError("a gate-chosen draft layer needs the observation builder (observe)")
        if self.lengths.gate_stop and schedule.gate is None:
            raise ValueError(f"--draft-len {self.lengths} needs a gate to end rounds early")
        self.runner, self.model, self.schedule = runner, model, schedule
        self.E, self.d, self.L = draft_layer, self.lengths.start, L
        self.gate, self.observe, self.mode = schedule.gate, observe, mode
        self.gate_stop = self.lengths.gate_stop

    def _slots(self, cols: list[int], device, key_real: Tensor):
        """(index, mask, rope) of one row's query slots at cache columns ``cols``."""
        runner = self.runner
        c = torch.tensor([cols], device=device)  # (1, q)
        index = SlotIndex(torch.zeros(1, dtype=torch.long, device=device), c, torch.ones_like(c, dtype=torch.bool),
                          cols[-1] + 1, True)
        return index, runner.mask(index, key_real), runner.rope(c)

    def _run(self, layers: range, hidden: Tensor, cols: list[int], store, key_real: Tensor) -> Tensor:
        """Blocks ``layers`` over one row's (1, q, H) inputs at cache columns ``cols``; returns (1, q, H)."""
        index, mask, rope = self._slots(cols, hidden.device, key_real)
        for layer in layers:
            hidden = self.runner.run_layer(layer, hidden, index, store, mask, rope)
        return hidden

    def _draft(self, tok: int, col: int, token_index: int, store, key_real: Tensor, timer: SectionTimer,
               counts: dict[str, int]) -> tuple[int, int, list[Tensor], bool]:
        """Draft output token ``token_index``, fed ``tok`` at column ``col``: blocks 0 … e, e the first
        layer where the schedule lets it leave (a checked layer where the gate fires, else E). Layers
        e+1 … E of that column get layer e's keys/values (a copy, so later drafts of the round read
        something; the verification overwrites them).

        Returns:
            (draft token, e, the (1, 1, H) outputs of blocks 0 … e, trusted: whether the gate fired on
            this draft — always True without ``+gate``, when nothing ends a round early).
        """
        runner, dev, schedule = self.runner, store.written.device, self.schedule
        index, mask, rope = self._slots([col], dev, key_real)
        x = runner.embed(torch.tensor([[tok]], device=dev))  # (1, 1, H)
        states, obs, cand, exact, fire = [], None, None, False, False
        for layer in range(self.L):
            prev = x[:, -1]
            with timer.section("layers"):
                x = runner.run_layer(layer, x, index, store, mask, rope)
            states.append(x)
            point = schedule.point(layer, token_index)
            if point is Point.EXIT:
                break
            if point is Point.PASS:
                continue
            obs, cand, fire, exact = self._check(layer, x, prev, obs, cand, token_index, timer, counts)
            if fire:
                break
        exit_layer = len(states) - 1
        if self.gate_stop and not fire:  # +gate: ask at the draft layer E too (the fixed layer has no check)
            obs, cand, fire, exact = self._check(exit_layer, x, prev, obs, cand, token_index, timer, counts)
        if exit_layer < self.E:
            rows, cols = torch.zeros(1, dtype=torch.long, device=dev), torch.tensor([col], device=dev)
            with timer.section("kv"):
                for layer in range(exit_layer + 1, self.E + 1):
                    store.copy_layer(exit_layer, layer, rows, cols)
            counts["kv_fill_token_layers"] += self.E - exit_layer
        trusted = fire or not self.gate_stop
        if obs is not None and exit_layer == obs.layer and exact:  # full-head statistics: top-1 = argmax
            return int(obs.top1[0]), exit_layer, states, trusted
        with timer.section("emit"):
            draft = int(runner.unembed(x[:, -1]).argmax(dim=-1))
        counts["head_rows"] += 1
        return draft, exit_layer, states, trusted

    def _check(self, layer: int, x: Tensor, prev: Tensor, obs, cand, token_index: int, timer: SectionTimer,
               counts: dict[str, int]):
        """Ask the gate after block ``layer`` of one draft (x: (1, 1, H) its output, prev: (1, H) its input).

        Returns:
            (observation, candidates, fire, exact: the observation read the full head, so its top-1 is
            the draft token).
        """
        restricted = self.gate.needs_head and self.mode.restricted_at(cand)  # topk after the first check; shortlist
        with timer.section("gate"):
            obs, cand = self.observe(layer, x[:, -1], prev, obs, cand)
            fire = bool(self.schedule.fires(obs, token_index)[0])
        counts["gate_checks"] += 1
        counts["restricted_checks"] += 1 if restricted else 0
        counts["restricted_rows"] += self.mode.restricted_width() if restricted else 0
        counts["head_rows"] += 1 if self.gate.needs_head and not restricted else 0
        return obs, cand, fire, self.gate.needs_head and not restricted

    def _full_step(self, tok: int, col: int, store, key_real: Tensor, timer: SectionTimer,
                   counts: dict[str, int]) -> int:
        """One output token at full depth (a prefix token the schedule never lets exit): blocks 0 … L−1
        over ``tok`` at column ``col``; returns the full model's greedy token."""
        dev = store.written.device
        with timer.section("layers"):
            y = self._run(range(self.L), self.runner.embed(torch.tensor([[tok]], device=dev)), [col], store, key_real)
        with timer.section("emit"):
            nxt = int(self.runner.unembed(y[:, -1]).argmax(dim=-1))
        counts["token_layers"] += self.L
        counts["head_rows"] += 1
        return nxt

    def decode_row(self, prompt: Sequence[int], until: tuple[str, ...], max_gen_toks: int, timer: SectionTimer,
                   finished) -> tuple[list[int], list[int], list[DraftRound], dict[str, int]]:
        """Decode one prompt.

        Args:
            prompt: token ids (P ≥ 1). until, max_gen_toks: stop strings and token budget.
            timer: where block time ("layers"), gate checks ("gate"), head time ("emit") and draft copies
                ("kv") are accounted.
            finished: callable(list of ids) → bool, the stop rule shared with the early-exit loop.

        Returns:
            (generated ids, exit layer per id — the draft's exit layer for an accepted draft, L−1 for
            the prompt pass's token and for corrections —, the rounds, work counts {token_layers,
            head_rows, prompt_positions, gate_checks, restricted_checks, restricted_rows, kv_fill_token_layers}).
        """
        runner, L = self.runner, self.L
        P = len(prompt)
        store = runner.new_store(1, P + max_gen_toks + self.d)
        key_real = torch.ones(store.written.shape[1:], dtype=torch.bool, device=store.written.device)  # (1, T_max)
        ids = torch.tensor([list(prompt)], device=store.written.device)
        counts = {"token_layers": L, "head_rows": 1, "prompt_positions": P, "gate_checks": 0, "restricted_checks": 0,
                  "restricted_rows": 0, "kv_fill_token_layers": 0}
        with timer.section("layers"):
            h = self._run(range(L), runner.embed(ids), list(range(P)), store, key_real)  # (1, P, H)
        with timer.section("emit"):
            gen = [int(runner.unembed(h[:, -1]).argmax(dim=-1))]
        exits, rounds = [L - 1], []
        col = P  # cache column of gen[-1], not yet fed to the model
        d_next = self.lengths.start  # this row's next draft length (adaptive: follows acceptance)
        while not finished(gen, until, max_gen_toks):
            if not self.schedule.may_exit(len(gen)):  # a prefix token: never drafted
                gen.append(self._full_step(gen[-1], col, store, key_real, timer, counts))
                exits.append(L - 1)
                col += 1
                continue
            planned = min(d_next, max_gen_toks - len(gen))
            drafted, drafts_at, states = [], [], []
            tok = gen[-1]
            for i in range(planned):  # draft: blocks 0..e_i, one position at a time
                tok, e, s, trusted = self._draft(tok, col + i, len(gen) + i, store, key_real, timer, counts)
                drafted.append(tok)
                drafts_at.append(e)
                states.append(s)
                if not trusted:  # +gate: the gate predicts this draft is rejected; verify what we have
                    break
            d = len(drafted)
            start = min(drafts_at)  # verify from the shallowest exit of the round, for every position
            with timer.section("layers"):  # verify: blocks start+1..L-1 over the d drafted positions at once
                y = self._run(range(start + 1, L), torch.cat([s[start] for s in states], dim=1),
                              list(range(col, col + d)), store, key_real)
            with timer.section("emit"):
                verified = runner.unembed(y[0]).argmax(dim=-1).tolist()  # (d,)
            rnd = DraftRound(tuple(drafted), tuple(verified), accepted_prefix(drafted, verified))
            rounds.append(rnd)
            d_next = self.lengths.next(d, rnd.accepted, planned)
            counts["token_layers"] += sum(e + 1 for e in drafts_at) + d * (L - 1 - start)
            counts["head_rows"] += d
            for i, t in enumerate(rnd.emitted):
                gen.append(t)
                exits.append(drafts_at[i] if i < rnd.accepted else L - 1)
                col += 1
                if finished(gen, until, max_gen_toks):
                    break
        return gen, exits, rounds, counts


def check_draft_stop(gate, gate_stop: bool, draft_len,
                     fix: str = "use e.g. --gate confidence or --gate classifier --gate-file F, or drop +gate") -> None:
    """``--draft-len …+gate`` needs a deployable gate to end rounds early.

    Args:
        draft_len: as the user wrote it (named in the message). fix: the remedy, in the caller's options.

    Raises:
        DecodingOptionError: no gate, or the oracle (it reads the final layer, which a draft never runs).
    """
    if gate_stop and (gate is None or gate.needs_final):
        raise DecodingOptionError(
            f"--draft-len {draft_len} lets the gate end a draft round early, and needs a deployable gate: {fix}.")


def decode_speculative(decoder, prompts, until: tuple[str, ...], max_gen_toks: int, schedule: ExitSchedule,
                       draft_len: int | DraftLength, mode: CheckMode) -> DecodeResult:
    """Lossless self-speculative decoding of every prompt, row by row (``--kv speculative``).

    One allowed exit layer: the fixed draft layer E (no gate checks). Several (or every layer): each
    draft token's exit layer is chosen by the schedule's gate among them, up to the deepest.

    Args:
        decoder: the :class:`~ee_bench.decoding.early_exit.EarlyExitDecoder` (its block runner, model,
            observation builder and stop rule).
        prompts: token-id lists. until, max_gen_toks: stop strings and token budget per row.
        schedule: the run's exit schedule (exit layers, gate, τ, min_prefix). draft_len: d ≥ 1, or a
            :class:`~ee_bench.decoding.draft_length.DraftLength` schedule (adaptive).
        mode: the check mode of gate checks.

    Returns:
        :class:`~ee_bench.decoding.traces.DecodeResult`, each trace carrying its acceptance figures.

    Raises:
        DecodingOptionError: several exit layers without a gate, or the oracle gate (also with ``+gate``).
    """
    L = decoder.n_layers
    layers = sorted(schedule.exit_layers)
    if len(layers) > 1 and schedule.gate is None:
        raise DecodingOptionError(
            "speculative decoding drafts with blocks 0..E and verifies with the rest; give the draft layer E as "
            f"one exit layer (--exit-layers E, 0-based, below {L - 1}), or a gate to choose each "
            f"draft's exit layer among several; got exit layers {layers} and no gate.")
    if len(layers) > 1 and schedule.gate.needs_final:
        raise DecodingOptionError(
            "speculative decoding with a gate-chosen draft layer takes a deployable gate; the oracle reads the "
            "final layer. Use e.g. --gate confidence, or one --exit-layers E.")
    gate_stop = as_schedule(draft_len).gate_stop
    check_draft_stop(schedule.gate, gate_stop, draft_len)
    if len(layers) > 1 or gate_stop:
        check_gate_mode(schedule.gate, mode)
        draft = ExitSchedule(L, schedule.gate, schedule.threshold, frozenset(layers[:-1]), schedule.min_prefix,
                             force_layer=layers[-1], warmup=schedule.warmup)

        def observe(layer, h, prev, previous, cand):
            return decoder._observe(draft, layer, h, prev, previous, mode, cand)

        spec = SelfSpeculativeDecoder(decoder.runner, decoder.model, draft, draft_len, observe, mode)
    else:
        draft = ExitSchedule(L, None, None, frozenset(), schedule.min_prefix, force_layer=layers[0])
        spec = SelfSpeculativeDecoder(decoder.runner, decoder.model, draft, draft_len)
    timer = SectionTimer(decoder.model.device)
    counts = DecodeCounts.zero()
    traces = []
    for prompt in prompts:
        if max_gen_toks == 0:
            traces.append(ExitTrace("speculative", L, (), "", ()))
            continue
        gen, exit_at, rounds, work = spec.decode_row(list(prompt), until, max_gen_toks, timer, decoder._finished)
        for k, v in work.items():
            counts[k] += v
        row = DecodeCounts(draft_rounds=len(rounds), draft_tokens=sum(len(r.drafted) for r in rounds),
                           accepted_tokens=sum(r.accepted for r in rounds))
        counts["tokens"] += len(gen)
        for k in ("draft_rounds", "draft_tokens", "accepted_tokens"):
            counts[k] += getattr(row, k)
        kept, text = decoder.model.truncate_output(gen, until)
        traces.append(ExitTrace("speculative", L, tuple(kept), text, tuple(exit_at[: len(kept)]),
                                speculative=speculative_summary(row, draft_len)))
    return DecodeResult(tuple(traces), timer.split(), DecodeCounts(**counts))
