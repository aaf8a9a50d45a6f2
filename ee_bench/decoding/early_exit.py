"""Greedy early-exit decoding that really skips blocks (paper §6, Tables 6 and 11).

Each generated token runs the decoder blocks one at a time. After every allowed exit layer ℓ the
gate (:class:`~ee_bench.exits.gates.Gate`) looks at the token's h^ℓ; where it fires, the token
emitted is layer ℓ's top-1 (``argmax head(final_norm(h^ℓ))``), blocks ℓ+1 … L−1 are not run for it,
and the KV strategy (:mod:`ee_bench.exits.kv`) fills what they would have cached. Gates with
``needs_head = False`` cause no head projection at the checks (only one for the emitted token).

Batching: rows run together; a row that exits or finishes leaves the running subset, so it never
makes the others run extra blocks and never runs blocks itself (no forced cost to report). The
deferred strategy adds catch-up query slots; their block runs are counted separately.

The first generated token comes from the prompt pass, which runs every block anyway to fill the
cache for the prompt; it is always emitted from layer L−1, so the effective ``min_prefix`` is at
least 1. Full-depth decoding is the same loop with no exit layers (no gate checks at all).

Check modes (:mod:`ee_bench.decoding.checks`, ``--check``): ``full`` reads the whole head at every
check; ``topk:K`` (approximate) reads it at a token's first check only, then the K candidates kept
there; ``shortlist:N`` (approximate) reads only the N head rows of a fixed shortlist at every check;
the emitted token is always the exact full-head argmax.

The oracle gate (``needs_final``, :class:`~ee_bench.exits.gates.OracleGate`) is an analysis mode: a
step runs every block for every row, finds each token's first-match layer among the allowed exits
(:func:`~ee_bench.exits.decide.first_exit_layers`), emits the final layer's top-1 (= that layer's) and
then lets the KV strategy overwrite the skipped layers' cache as if the token had exited there, so
later tokens read what the strategy would have left. No speed-up is measured for it.

Shape notation: B = rows, b = running rows, q = query slots per row, H = hidden size, L = blocks.

Size (a little over 400 lines): one loop and the three step kinds it runs (gate checks, the oracle mode,
deferred catch-up slots) share the batch state (`_Batch`, `_Flight`); the result types, option checks,
exit decision and speculative decoding live in their own modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from ee_bench.decoding.blocks import BlockExecutor, take_rows
from ee_bench.decoding.checks import (
    FULL,
    CheckMode,
    check_draft_len,
    check_gate_mode,
    full_check,
    parse_check_mode,
    restricted_check,
    shortlist_check,
)
from ee_bench.decoding.kv_store import SlotIndex
from ee_bench.decoding.speculative import decode_speculative
from ee_bench.decoding.timing import SectionTimer, TimeSplit
from ee_bench.decoding.traces import DecodeCounts, DecodeResult, ExitTrace, add_gap, speculative_summary
from ee_bench.errors import DecodingOptionError
from ee_bench.exits.decide import DEFAULT_MIN_PREFIX, ExitSchedule, Point
from ee_bench.exits.gates import Gate, GateObservation
from ee_bench.exits.kv import KV_STRATEGIES, KVContext, KVStrategy

__all__ = ["DecodeCounts", "DecodeResult", "DecodingOptionError", "EarlyExitDecoder", "ExitTrace",
           "early_exit_generate", "speculative_summary"]


class _Flight:
    """Rows still running blocks in the current step (mutable, internal)."""

    def __init__(self, rows: Tensor, cols: Tensor, valid: Tensor, hidden: Tensor, width: int, all_rows: bool):
        self.rows, self.cols, self.valid, self.hidden = rows, cols, valid, hidden  # (b,), (b,q), (b,q), (b,q,H)
        self.width, self.all_rows = width, all_rows
        self.mask = self.rope = None

    def index(self) -> SlotIndex:
        return SlotIndex(self.rows, self.cols, self.valid, self.width, self.all_rows)

    def subset(self, keep: Tensor) -> _Flight:
        out = _Flight(self.rows[keep], self.cols[keep], self.valid[keep], self.hidden[keep], self.width, False)
        out.mask, out.rope = take_rows(self.mask, keep), take_rows(self.rope, keep)
        return out


class _Batch:
    """Mutable state of one decoding batch (internal): store, masks, outputs, counters, timer."""

    def __init__(self, store, attn: Tensor, max_gen_toks: int, timer: SectionTimer):
        B, P = attn.shape
        self.store, self.timer, self.max_gen_toks = store, timer, max_gen_toks
        self.key_real = torch.ones(store.written.shape[1:], dtype=torch.bool, device=attn.device)  # (B, T_max)
        self.key_real[:, :P] = attn.bool()
        self.n_pad = (attn == 0).sum(dim=1)  # (B,)
        self.gen: list[list[int]] = [[] for _ in range(B)]
        self.exit_at: list[list[int]] = [[] for _ in range(B)]
        self.done = [False] * B
        self.counts = DecodeCounts.zero()

    def emit(self, row: int, token: int, layer: int) -> None:
        self.gen[row].append(token)
        self.exit_at[row].append(layer)


def check_budget(max_gen_toks: int) -> None:
    """Raises DecodingOptionError for a negative token budget."""
    if max_gen_toks < 0:
        raise DecodingOptionError(f"max_gen_toks {max_gen_toks} is negative.")


class EarlyExitDecoder:
    """Greedy early-exit decoding of one model.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM` of a supported architecture.
        check: the default check mode of :meth:`decode` (``"full"``, ``"topk:K"`` or a
            :class:`~ee_bench.decoding.checks.CheckMode`).
        draft_len: the default draft length of self-speculative decoding (None: the strategy's
            ``draft_len``).

    Raises:
        ModelStructureError: for an unsupported architecture (see :mod:`ee_bench.decoding.blocks`).
        CheckModeError: for an unknown check mode. DecodingOptionError: for a draft length < 1.
    """

    def __init__(self, model, check: str | CheckMode | None = None, draft_len: int | None = None):
        self.model = model
        self.runner = BlockExecutor(model)
        self.n_layers = self.runner.n_layers
        self.check = parse_check_mode(check)
        self.draft_len = check_draft_len(draft_len)

    @torch.no_grad()
    def decode(self, prompts: Sequence[Sequence[int]], gate: Gate | str | None, threshold: float | None,
               kv: str, until: Sequence[str], max_gen_toks: int, exit_layers: Iterable[int] | None = None,
               min_prefix: int = DEFAULT_MIN_PREFIX, batch_size: int | None = None,
               check: str | CheckMode | None = None, draft_len: int | None = None,
               threshold_warmup: float = 0.0) -> DecodeResult:
        """Decode every prompt greedily with early exit.

        Args:
            prompts: token-id lists.
            gate: a gate instance or registered name; None (with ``exit_layers=()``) for full depth.
            threshold: τ for the gate (validated by ``gate.check_threshold``).
            kv: registered KV strategy name (``copy``, ``recompute``, ``deferred``, plug-ins).
            until: stop strings. max_gen_toks: token budget per row.
            exit_layers: 0-based layers where a token may exit; default every layer below L−1;
                ``()`` decodes at full depth without any gate check.
            min_prefix: tokens 0 … min_prefix−1 of each output never exit (default
                :data:`~ee_bench.exits.decide.DEFAULT_MIN_PREFIX`, the paper's 4).
            batch_size: rows decoded together (default: all).
            check: check mode (default: the decoder's); ``topk:K`` needs a gate that reads the head.
            draft_len: tokens drafted per round with ``kv="speculative"`` (default: the decoder's, else
                the strategy's ``draft_len``).
            threshold_warmup: W, tokens: token min_prefix + k faces τ + (τ_strict − τ)·exp(−k/W)
                (:func:`~ee_bench.exits.decide.warmed_threshold`); 0 (default) = τ for every token.

        Returns:
            :class:`DecodeResult` with one :class:`ExitTrace` per prompt, in order.

        Raises:
            UnknownNameError: unknown gate or KV strategy.
            ThresholdError: τ out of the gate's range.
            DecodingOptionError: exit layers outside 0..L−1, negative min_prefix, warm-up or budget, a
                warm-up with a gate that has no strictest threshold, a draft
                length < 1, a restricted check with a head-free or oracle gate, the oracle gate with a
                strategy that adds queries (deferred), a ``shortlist:N`` check without its ids.
            CheckModeError: unknown check mode.
        """
        schedule = ExitSchedule.build(self.n_layers, gate, threshold, exit_layers, min_prefix, warmup=threshold_warmup)
        check_budget(max_gen_toks)
        mode = self.check if check is None else parse_check_mode(check)
        if schedule.gate is not None and schedule.gate.needs_head and mode.shortlist is not None and not mode.ids:
            raise DecodingOptionError(f"--check {mode.name} needs its shortlist: build the mode with "
                                      f"checks.with_shortlist from calibration outputs before decoding.")
        draft_len = check_draft_len(draft_len) or self.draft_len
        strategy_cls = KV_STRATEGIES.get(kv)
        if getattr(strategy_cls, "self_speculative", False) and schedule.exits_early:
            return decode_speculative(self, prompts, tuple(until), max_gen_toks, schedule,
                                      draft_len or strategy_cls.draft_len, mode)
        if schedule.exits_early:
            if schedule.gate is None:
                raise DecodingOptionError("early exit needs a gate; pass a gate or exit_layers=() for full depth.")
            check_gate_mode(schedule.gate, mode, strategy_cls.adds_queries, kv)
        size = batch_size or max(1, len(prompts))
        results = [
            self._decode_batch([list(p) for p in prompts[i : i + size]], schedule, strategy_cls, kv, tuple(until),
                               max_gen_toks, mode)
            for i in range(0, len(prompts), size)
        ]
        return DecodeResult(
            tuple(t for r in results for t in r.traces),
            TimeSplit.sum([r.split for r in results]),
            DecodeCounts.sum([r.counts for r in results]),
        )

    # ------------------------------------------------------------------ one batch
    def _decode_batch(self, prompts, schedule: ExitSchedule, strategy_cls: type[KVStrategy], kv: str, until,
                      max_gen_toks, mode: CheckMode = FULL) -> DecodeResult:
        model, runner, L = self.model, self.runner, self.n_layers
        timer = SectionTimer(model.device)
        if max_gen_toks == 0:
            return DecodeResult(tuple(ExitTrace(kv, L, (), "", ()) for _ in prompts), timer.split(), DecodeCounts())
        ids, attn = model.left_pad(prompts)
        B, P = ids.shape
        runner.check_length(P + max_gen_toks)
        st = _Batch(runner.new_store(B, P + max_gen_toks), attn, max_gen_toks, timer)
        strategy = strategy_cls(KVContext(runner, st.store, st.n_pad))
        first = self._prompt_pass(st, ids)
        for b, t in enumerate(first):
            st.emit(b, t, L - 1)
        self._mark_finished(st, range(B), strategy, until)
        for step in range(1, max_gen_toks):
            alive = [b for b in range(B) if not st.done[b]]
            if not alive:
                break
            gate = schedule.gate  # token ``step`` of every alive row is generated now
            if gate is not None and gate.needs_final and schedule.checked_layers(step):
                self._step_oracle(st, alive, P + step - 1, schedule, step, strategy)
            else:
                self._step(st, alive, P + step - 1, schedule, step, strategy, mode)
            self._mark_finished(st, alive, strategy, until)
        st.counts["tokens"] = sum(len(g) for g in st.gen)
        st.counts["token_layers"] += B * L  # first tokens ran every block in the prompt pass
        traces = []
        for g, e in zip(st.gen, st.exit_at):
            kept, text = model.truncate_output(g, until)
            traces.append(ExitTrace(kv, L, tuple(kept), text, tuple(e[: len(kept)])))
        self.last_store = st.store  # for tests and inspection
        return DecodeResult(tuple(traces), timer.split(), DecodeCounts(**st.counts))

    def _prompt_pass(self, st: _Batch, ids: Tensor) -> list[int]:
        """Every block over every prompt position (fills the store); returns the B first tokens."""
        runner = self.runner
        B, P = ids.shape
        cols = torch.arange(P, device=ids.device).expand(B, P)
        index = SlotIndex(torch.arange(B, device=ids.device), cols, torch.ones_like(cols, dtype=torch.bool), P, True)
        mask = runner.mask(index, st.key_real)
        rope = runner.rope((cols - st.n_pad.unsqueeze(1)).clamp_min(0))
        hidden = runner.embed(ids)  # (B, P, H)
        with st.timer.section("layers"):
            for layer in range(self.n_layers):
                hidden = runner.run_layer(layer, hidden, index, st.store, mask, rope)
        with st.timer.section("emit"):
            first = runner.unembed(hidden[:, -1]).argmax(dim=-1).tolist()  # (B,)
        st.counts["prompt_positions"] = B * P
        st.counts["head_rows"] += B
        return first

    def _flight(self, st: _Batch, alive: list[int], col: int) -> _Flight:
        """One query slot per alive row, holding the embedding of its last token at column ``col``."""
        dev, b = st.store.written.device, len(alive)
        tok = torch.tensor([st.gen[r][-1] for r in alive], device=dev)
        return _Flight(torch.tensor(alive, device=dev), torch.full((b, 1), col, device=dev),
                       torch.ones((b, 1), dtype=torch.bool, device=dev), self.runner.embed(tok).unsqueeze(1), col + 1,
                       b == len(st.gen))

    def _step(self, st: _Batch, alive: list[int], col: int, schedule: ExitSchedule, token_index: int,
              strategy: KVStrategy, mode: CheckMode = FULL) -> None:
        """Feed each alive row's last token (cache column ``col``) and emit its next token (output index
        ``token_index``), running blocks until ``schedule`` lets each row leave."""
        runner, counts, timer, gate = self.runner, st.counts, st.timer, schedule.gate
        fl = self._flight(st, alive, col)
        obs = cand = None  # cand: (b, K) candidate ids of a restricted check, kept from the token's first check
        last = -1  # layer of the running rows' last full-head read this step; -1: the previous token's (its exit)
        gaps = counts["head_gaps"]
        for layer in range(self.n_layers):
            if strategy.adds_queries:
                with timer.section("kv"):
                    fl = self._join(fl, strategy, layer)
            if fl.mask is None and fl.rope is None:
                fl.mask = runner.mask(fl.index(), st.key_real)
                fl.rope = runner.rope(fl.cols - st.n_pad[fl.rows].unsqueeze(1))
            prev_hidden = fl.hidden[:, -1] if gate is not None and gate.needs_hidden else None
            with timer.section("layers"):
                fl.hidden = runner.run_layer(layer, fl.hidden, fl.index(), st.store, fl.mask, fl.rope)
            n_run = int(fl.rows.numel())
            counts["token_layers"] += n_run
            counts["catchup_token_layers"] += int(fl.valid.sum()) - n_run
            point = schedule.point(layer, token_index)
            if point is Point.PASS:
                continue
            h = fl.hidden[:, -1]  # (b, H) the new token's h^layer
            if point is Point.EXIT:  # the last layer (or a forced one): every running row leaves
                with timer.section("emit"):
                    toks = runner.unembed(h).argmax(dim=-1)
                counts["head_rows"] += n_run
                add_gap(gaps, layer - last, n_run)
                self._leave(st, fl, torch.arange(n_run, device=h.device), toks, layer, schedule, strategy)
                return
            restricted = gate.needs_head and mode.restricted_at(cand)
            with timer.section("gate"):
                obs, cand = self._observe(schedule, layer, h, prev_hidden, obs, mode, cand)
                fire = schedule.fires(obs, token_index)
                n_fire = int(fire.sum())
            counts["gate_checks"] += n_run
            counts["restricted_checks"] += n_run if restricted else 0
            counts["restricted_rows"] += n_run * mode.restricted_width() if restricted else 0
            if gate.needs_head and not restricted:
                counts["head_rows"] += n_run
                add_gap(gaps, layer - last, n_run)
                last = layer
            if not n_fire:
                continue
            fired = fire.nonzero().squeeze(1)
            if gate.needs_head and not restricted:  # exact full-head statistics: their top-1 is the argmax
                toks = obs.top1[fired]
            else:
                with timer.section("emit"):
                    toks = runner.unembed(h[fired]).argmax(dim=-1)
                counts["head_rows"] += n_fire
                add_gap(gaps, layer - last, n_fire)
            self._leave(st, fl, fired, toks, layer, schedule, strategy)
            keep = ~fire
            fl = fl.subset(keep)
            obs = obs.select(keep)
            cand = None if cand is None else cand[keep]
            if not bool(keep.any()):
                return

    def _leave(self, st: _Batch, fl: _Flight, fired: Tensor, toks: Tensor, layer: int, schedule: ExitSchedule,
               strategy: KVStrategy) -> None:
        """Emit ``toks`` for the rows ``fired`` (indices into the flight) that exit at ``layer``, and let the
        KV strategy fill what the blocks they skip would have cached."""
        for r, t in zip(fl.rows[fired].tolist(), toks.tolist()):
            st.emit(r, t, layer)
        if not schedule.skips_blocks(layer):
            return
        with st.timer.section("kv"):
            v = fl.valid[fired]  # (n_fire, q)
            st.counts["kv_fill_token_layers"] += strategy.on_exit(
                fl.rows[fired].unsqueeze(1).expand_as(v)[v], fl.cols[fired][v], layer, fl.hidden[fired][v])

    def _mark_finished(self, st: _Batch, rows: Iterable[int], strategy: KVStrategy, until: tuple[str, ...]) -> None:
        for r in rows:
            if self._finished(st.gen[r], until, st.max_gen_toks):
                st.done[r] = True
                strategy.drop_row(r)

    def _finished(self, ids: list[int], until: tuple[str, ...], max_gen_toks: int) -> bool:
        if len(ids) >= max_gen_toks or ids[-1] in self.model.eos_token_ids:
            return True
        if until:
            text = self.model.decode(ids)
            return any(u in text for u in until)
        return False

    def _observe(self, schedule: ExitSchedule, layer: int, h: Tensor, prev_hidden: Tensor | None,
                 previous: GateObservation | None, mode: CheckMode = FULL,
                 cand: Tensor | None = None) -> tuple[GateObservation, Tensor | None]:
        """Gate observation at ``layer`` for (b, H) states (:func:`~ee_bench.exits.decide.observe_layer`);
        the streak counts consecutive checks. With a restricted check mode the statistics come from
        :mod:`ee_bench.decoding.checks` (full head at the token's first check, then its candidates
        ``cand`` (b, K)); returns the observation and the candidates to carry (None in ``full`` mode)."""
        gate, top1, prob, ent = schedule.gate, None, None, None
        if gate.needs_head:
            if mode.shortlist is not None:  # only the shortlist's N head rows
                top1, prob, ent = shortlist_check(self.runner.unembed, h, mode)
            elif not mode.approximate:
                top1, prob, ent = self.runner.unembed.reduce(h)
            elif cand is None:
                top1, prob, ent, cand = full_check(self.runner.unembed, h, mode.k)
            else:
                top1, prob, ent = restricted_check(self.runner.unembed, h, cand)
        obs = schedule.observe(layer, previous, top1=top1, top1_prob=prob, entropy=ent,
                               hidden=h if gate.needs_hidden else None, prev_hidden=prev_hidden)
        return obs, cand

    def _step_oracle(self, st: _Batch, alive: list[int], col: int, schedule: ExitSchedule, token_index: int,
                     strategy: KVStrategy) -> None:
        """One step of the oracle exit mode (analysis; see the module docstring).

        Every alive row runs all L blocks (writing every layer's keys/values); the exit layer of each
        new token is the first allowed layer whose top-1 equals the final layer's
        (:meth:`~ee_bench.exits.decide.ExitSchedule.walk` with the oracle gate); the token emitted is the
        final layer's top-1; then ``strategy.on_exit`` overwrites layers exit+1 … L−1 of that column.
        """
        runner, L, counts, timer = self.runner, self.n_layers, st.counts, st.timer
        fl = self._flight(st, alive, col)
        mask, rope = runner.mask(fl.index(), st.key_real), runner.rope(fl.cols - st.n_pad[fl.rows].unsqueeze(1))
        states = []  # L × (b, H) the new token's block outputs
        with timer.section("layers"):
            for layer in range(L):
                fl.hidden = runner.run_layer(layer, fl.hidden, fl.index(), st.store, mask, rope)
                states.append(fl.hidden[:, -1])
        b = len(alive)
        counts["token_layers"] += b * L
        check = schedule.checked_layers(token_index)
        with timer.section("gate"):
            stats = {layer: runner.unembed.reduce(states[layer]) for layer in (*check, L - 1)}
            final = stats[L - 1][0]  # (b,) the final layer's top-1
            observations, previous = [], None
            for layer in check:
                top1, prob, ent = stats[layer]
                previous = schedule.observe(layer, previous, top1=top1, top1_prob=prob, entropy=ent, final_top1=final)
                observations.append(previous)
            exit_layer = schedule.walk(observations, b, token_index)  # (b,)
        counts["gate_checks"] += b * len(check)
        counts["head_rows"] += b * (len(check) + 1)
        for r, t, e in zip(alive, final.tolist(), exit_layer.tolist()):
            st.emit(r, t, e)
        with timer.section("kv"):
            for e in sorted(e for e in set(exit_layer.tolist()) if schedule.skips_blocks(e)):
                sel = (exit_layer == e).nonzero().squeeze(1)
                counts["kv_fill_token_layers"] += strategy.on_exit(fl.rows[sel], fl.cols[sel, -1], e, states[e][sel])

    def _join(self, fl: _Flight, strategy: KVStrategy, layer: int) -> _Flight:
        """Add the strategy's catch-up slots for block ``layer``; slots are left-padded, sorted by column."""
        joins = [strategy.joining(r, layer) for r in fl.rows.tolist()]
        if not any(joins):
            return fl
        slots = []
        for i, extra in enumerate(joins):
            v = fl.valid[i]
            mine = list(zip(fl.cols[i][v].tolist(), fl.hidden[i][v]))
            slots.append(sorted(mine + extra, key=lambda s: s[0]))
        q = max(len(s) for s in slots)
        b, H = len(slots), fl.hidden.shape[-1]
        cols = torch.empty((b, q), dtype=torch.long, device=fl.cols.device)
        valid = torch.zeros((b, q), dtype=torch.bool, device=fl.cols.device)
        hidden = torch.zeros((b, q, H), dtype=fl.hidden.dtype, device=fl.hidden.device)
        for i, s in enumerate(slots):
            pad = q - len(s)
            cols[i, :] = s[-1][0]  # padding slots sit on the new token's column and are never written
            cols[i, pad:] = torch.tensor([c for c, _ in s])
            valid[i, pad:] = True
            hidden[i, pad:] = torch.stack([h for _, h in s])
        return _Flight(fl.rows, cols, valid, hidden, fl.width, fl.all_rows)


def early_exit_generate(model, prompts: Sequence[Sequence[int]], gate: Gate | str, threshold: float | None, kv: str,
                        until: Sequence[str], max_gen_toks: int, exit_layers: Iterable[int] | None = None,
                        min_prefix: int = DEFAULT_MIN_PREFIX, batch_size: int | None = None) -> list[ExitTrace]:
    """Early-exit greedy decoding; see :meth:`EarlyExitDecoder.decode` for arguments and errors.

    Returns:
        One :class:`ExitTrace` per prompt (output ids/text and exit layer per token).
    """
    result = EarlyExitDecoder(model).decode(prompts, gate, threshold, kv, until, max_gen_toks, exit_layers,
                                            min_prefix, batch_size)
    return list(result.traces)
