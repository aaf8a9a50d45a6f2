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

Shape notation: B = rows, b = running rows, q = query slots per row, H = hidden size, L = blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ee_bench.decoding.blocks import BlockExecutor
from ee_bench.decoding.kv_store import SlotIndex
from ee_bench.decoding.timing import SectionTimer, TimeSplit
from ee_bench.errors import EEBenchError
from ee_bench.exits.decide import exits_here, observe_layer
from ee_bench.exits.gates import GATES, Gate, GateObservation
from ee_bench.exits.kv import KV_STRATEGIES, KVContext, KVStrategy


class DecodingOptionError(EEBenchError):
    """An early-exit option (exit layers, min prefix, token budget) out of range."""


@dataclass(frozen=True)
class ExitTrace:
    """One sequence decoded with early exit (a row of paper Table 6 / 11).

    Attributes:
        kv: KV strategy name. n_layers: L.
        token_ids: output ids, cut after EOS or the token completing a stop string (as
            :meth:`HFCausalLM.truncate_output`).
        text: output text with the stop string removed.
        exit_layers: 0-based exit layer of each token in ``token_ids`` (L−1 = full depth).
    """

    kv: str
    n_layers: int
    token_ids: tuple[int, ...]
    text: str
    exit_layers: tuple[int, ...]

    @property
    def mean_layers_run(self) -> float:
        """Mean blocks run per token, Σ(exit+1)/N, in layers (L for an empty output)."""
        if not self.exit_layers:
            return float(self.n_layers)
        return sum(e + 1 for e in self.exit_layers) / len(self.exit_layers)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["token_ids"], d["exit_layers"] = list(self.token_ids), list(self.exit_layers)
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
        head_rows: rows projected through the LM head (gate checks + emitted tokens).
        prompt_positions: B × prompt width run through every block in the prompt pass.
    """

    tokens: int = 0
    token_layers: int = 0
    catchup_token_layers: int = 0
    kv_fill_token_layers: int = 0
    gate_checks: int = 0
    head_rows: int = 0
    prompt_positions: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def sum(parts: Sequence[DecodeCounts]) -> DecodeCounts:
        return DecodeCounts(*(sum(getattr(p, f) for p in parts) for f in DecodeCounts.__dataclass_fields__))


@dataclass(frozen=True)
class DecodeResult:
    """Traces, time split and work counts of one decoding call."""

    traces: tuple[ExitTrace, ...]
    split: TimeSplit
    counts: DecodeCounts


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
        if self.mask is not None:
            out.mask = self.mask[keep]
        if self.rope is not None:
            out.rope = (self.rope[0][keep], self.rope[1][keep])
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
        self.counts = dict.fromkeys(DecodeCounts.__dataclass_fields__, 0)

    def emit(self, row: int, token: int, layer: int) -> None:
        self.gen[row].append(token)
        self.exit_at[row].append(layer)


def _resolve_gate(gate: Gate | str) -> Gate:
    return GATES.get(gate)() if isinstance(gate, str) else gate


def _check_options(n_layers: int, exit_layers: Iterable[int] | None, min_prefix: int, max_gen_toks: int) -> frozenset[int]:
    problems = []
    layers = frozenset(range(n_layers - 1)) if exit_layers is None else frozenset(int(x) for x in exit_layers)
    bad = sorted(x for x in layers if not 0 <= x < n_layers)
    if bad:
        problems.append(f"exit layers {bad} are outside 0..{n_layers - 1} (0-based blocks of this model)")
    if min_prefix < 0:
        problems.append(f"min_prefix {min_prefix} is negative; use 0 to allow exits from the first token")
    if max_gen_toks < 0:
        problems.append(f"max_gen_toks {max_gen_toks} is negative")
    if problems:
        raise DecodingOptionError("; ".join(problems) + ".")
    return frozenset(x for x in layers if x < n_layers - 1)  # L−1 is full depth, not an exit


class EarlyExitDecoder:
    """Greedy early-exit decoding of one model.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM` of a supported architecture.

    Raises:
        ModelStructureError: for an unsupported architecture (see :mod:`ee_bench.decoding.blocks`).
    """

    def __init__(self, model):
        self.model = model
        self.runner = BlockExecutor(model)
        self.n_layers = self.runner.n_layers

    @torch.no_grad()
    def decode(self, prompts: Sequence[Sequence[int]], gate: Gate | str | None, threshold: float | None,
               kv: str, until: Sequence[str], max_gen_toks: int, exit_layers: Iterable[int] | None = None,
               min_prefix: int = 0, batch_size: int | None = None) -> DecodeResult:
        """Decode every prompt greedily with early exit.

        Args:
            prompts: token-id lists.
            gate: a gate instance or registered name; None (with ``exit_layers=()``) for full depth.
            threshold: τ for the gate (validated by ``gate.check_threshold``).
            kv: registered KV strategy name (``copy``, ``recompute``, ``deferred``, plug-ins).
            until: stop strings. max_gen_toks: token budget per row.
            exit_layers: 0-based layers where a token may exit; default every layer below L−1;
                ``()`` decodes at full depth without any gate check.
            min_prefix: tokens 0 … min_prefix−1 of each output never exit (the paper uses 4).
            batch_size: rows decoded together (default: all).

        Returns:
            :class:`DecodeResult` with one :class:`ExitTrace` per prompt, in order.

        Raises:
            UnknownNameError: unknown gate or KV strategy.
            ThresholdError: τ out of the gate's range.
            DecodingOptionError: exit layers outside 0..L−1, negative min_prefix or budget.
        """
        exits = _check_options(self.n_layers, exit_layers, min_prefix, max_gen_toks)
        strategy_cls = KV_STRATEGIES.get(kv)
        gate_obj = None
        if exits:
            if gate is None:
                raise DecodingOptionError("early exit needs a gate; pass a gate or exit_layers=() for full depth.")
            gate_obj = _resolve_gate(gate)
            threshold = gate_obj.check_threshold(gate_obj.default_threshold if threshold is None else threshold, self.n_layers)
        size = batch_size or max(1, len(prompts))
        results = [
            self._decode_batch([list(p) for p in prompts[i : i + size]], gate_obj, threshold, strategy_cls, kv,
                               tuple(until), max_gen_toks, exits, min_prefix)
            for i in range(0, len(prompts), size)
        ]
        return DecodeResult(
            tuple(t for r in results for t in r.traces),
            TimeSplit.sum([r.split for r in results]),
            DecodeCounts.sum([r.counts for r in results]),
        )

    # ------------------------------------------------------------------ one batch
    def _decode_batch(self, prompts, gate, threshold, strategy_cls: type[KVStrategy], kv: str, until, max_gen_toks,
                      exits: frozenset[int], min_prefix: int) -> DecodeResult:
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
            self._step(st, alive, P + step - 1, gate, threshold, strategy, exits if step >= min_prefix else frozenset())
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

    def _step(self, st: _Batch, alive: list[int], col: int, gate, threshold, strategy: KVStrategy,
              check: frozenset[int]) -> None:
        """Feed each alive row's last token (cache column ``col``) and emit its next token."""
        runner, L, dev, counts, timer = self.runner, self.n_layers, st.store.written.device, st.counts, st.timer
        b = len(alive)
        tok = torch.tensor([st.gen[r][-1] for r in alive], device=dev)
        fl = _Flight(torch.tensor(alive, device=dev), torch.full((b, 1), col, device=dev),
                     torch.ones((b, 1), dtype=torch.bool, device=dev), runner.embed(tok).unsqueeze(1), col + 1,
                     b == len(st.gen))
        obs = None
        for layer in range(L):
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
            if layer == L - 1 or layer not in check:
                continue
            with timer.section("gate"):
                h = fl.hidden[:, -1]  # (b, H) the new token's h^layer
                obs = self._observe(gate, layer, h, prev_hidden, obs)
                fire = exits_here(gate, obs, threshold)
                n_fire = int(fire.sum())
            counts["gate_checks"] += n_run
            counts["head_rows"] += n_run if gate.needs_head else 0
            if not n_fire:
                continue
            fired = fire.nonzero().squeeze(1)
            if gate.needs_head:
                toks = obs.top1[fired]
            else:
                with timer.section("emit"):
                    toks = runner.unembed(h[fired]).argmax(dim=-1)
                counts["head_rows"] += n_fire
            for r, t in zip(fl.rows[fired].tolist(), toks.tolist()):
                st.emit(r, t, layer)
            with timer.section("kv"):
                v = fl.valid[fired]  # (n_fire, q)
                counts["kv_fill_token_layers"] += strategy.on_exit(
                    fl.rows[fired].unsqueeze(1).expand_as(v)[v], fl.cols[fired][v], layer, fl.hidden[fired][v])
            keep = ~fire
            fl = fl.subset(keep)
            obs = obs.select(keep)
            if not bool(keep.any()):
                return
        with timer.section("emit"):  # rows that reached the last block
            toks = runner.unembed(fl.hidden[:, -1]).argmax(dim=-1)
        counts["head_rows"] += int(fl.rows.numel())
        for r, t in zip(fl.rows.tolist(), toks.tolist()):
            st.emit(r, t, L - 1)

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

    def _observe(self, gate: Gate, layer: int, h: Tensor, prev_hidden: Tensor | None,
                 previous: GateObservation | None) -> GateObservation:
        """Gate observation at ``layer`` for (b, H) states (:func:`~ee_bench.exits.decide.observe_layer`);
        the streak counts consecutive checks."""
        top1 = prob = ent = None
        if gate.needs_head:
            top1, prob, ent = self.runner.unembed.reduce(h)
        return observe_layer(layer, self.n_layers, top1=top1, top1_prob=prob, entropy=ent, previous=previous,
                             hidden=h if gate.needs_hidden else None, prev_hidden=prev_hidden)

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
                        min_prefix: int = 0, batch_size: int | None = None) -> list[ExitTrace]:
    """Early-exit greedy decoding; see :meth:`EarlyExitDecoder.decode` for arguments and errors.

    Returns:
        One :class:`ExitTrace` per prompt (output ids/text and exit layer per token).
    """
    result = EarlyExitDecoder(model).decode(prompts, gate, threshold, kv, until, max_gen_toks, exit_layers,
                                            min_prefix, batch_size)
    return list(result.traces)
