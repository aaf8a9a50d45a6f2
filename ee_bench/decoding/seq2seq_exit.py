"""Greedy early-exit decoding for encoder-decoder translators that really skips decoder blocks.

The encoder runs once per batch, in full. The decoder runs block by block, as in the causal loop
(:mod:`ee_bench.decoding.early_exit`): after every allowed exit layer ℓ the gate looks at the token's
h^ℓ through the one exit decider (:class:`~ee_bench.exits.decide.ExitSchedule`,
its ``point`` and ``fires``); where it fires, the token emitted is
layer ℓ's top-1 through the model's own final decoder norm and head, blocks ℓ+1 … L−1 are not run
for it, and the KV strategy (:mod:`ee_bench.exits.kv`, ``copy`` or ``recompute``) fills the
*self-attention* keys/values they would have cached, in the same :class:`KVStore`.

Cross-attention keys/values. ``transformers`` fills a block's cross-attention cache lazily, the first
time a token runs that block; a first decoder token that exits at layer 0 would leave blocks 1 … L−1
with no encoder keys/values for the tokens that later reach them. Here every block's cross-attention
keys and values are computed from the encoder output *up front*, with the block's own ``k_proj`` /
``v_proj`` (exactly what HF computes on first reach), and handed to each block call through a cache
object whose cross-attention part is marked as filled. No block ever computes them lazily.

The decoder prefix (``decoder_start_token_id``, plus a forced target-language token for NLLB) is
the "prompt" of the decoder: it runs through the blocks in one pass and the next token is predicted
from its last position. That first generated token may itself exit (with ``min_prefix = 0``); tokens
0 … min_prefix−1 never do (the :class:`~ee_bench.exits.decide.ExitSchedule` decides, as in the causal
loop). Supported: the BART family (marian, bart, mbart, m2m_100), T5
(its first block's relative position biases are reused by the later blocks, as T5 does) and FSMT
(time-major blocks), with sdpa or eager attention; ``deferred`` (catch-up query slots) is refused.

Timing sections (:class:`~ee_bench.decoding.timing.TimeSplit`): the encoder, the cross-attention
projections and the decoder blocks count as ``layers`` (both modes pay the first two alike).

Shape notation: B = rows, b = running rows, q = query slots per row (prefix length, then 1),
S = source length, H = hidden size, h = heads, D = head size, L = decoder blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import SimpleNamespace

import torch
from torch import Tensor
from transformers.cache_utils import EncoderDecoderCache

from ee_bench.decoding.checks import parse_check_mode
from ee_bench.decoding.early_exit import check_budget
from ee_bench.decoding.kv_store import KVStore, SlotIndex
from ee_bench.decoding.timing import SectionTimer, TimeSplit
from ee_bench.decoding.traces import DecodeCounts, DecodeResult, ExitTrace
from ee_bench.errors import DecodingOptionError, ModelStructureError
from ee_bench.exits.decide import DEFAULT_MIN_PREFIX, ExitSchedule, Point
from ee_bench.exits.kv import KV_STRATEGIES, KVContext
from ee_bench.models.arch import get_path
from ee_bench.models.seq2seq_arch import require_blockwise

SUPPORTED_ATTENTION = ("sdpa", "eager")


class _Filled(dict):
    """``is_updated`` of the step cache: every block's cross-attention keys/values exist."""

    def get(self, key, default=None):
        return True


class _StepCache(EncoderDecoderCache):
    """What a decoder block sees as its ``EncoderDecoderCache`` for one call (not a real cache).

    ``self_attention_cache`` writes the called slots into the :class:`KVStore` and returns the stored
    keys/values; ``cross_attention_cache.layers[ℓ]`` holds block ℓ's precomputed encoder keys/values
    of the rows in the call; ``get_seq_length`` gives the number of earlier positions (T5's relative
    position bias). ``EncoderDecoderCache.__init__`` is skipped on purpose: nothing else is used.
    """

    def __init__(self, self_cache, cross_layers, past: int):  # no super().__init__: see the class docstring
        self.self_attention_cache = self_cache
        self.cross_attention_cache = SimpleNamespace(layers=cross_layers)
        self.is_updated = _Filled()
        self.past = past

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Positions before the called query slots (T5 places its relative position bias with it)."""
        return self.past


class _CrossRows:
    """Block ℓ's cross-attention keys/values of the called rows, computed on indexing."""

    def __init__(self, cross: list[tuple[Tensor, Tensor]], rows: Tensor, all_rows: bool):
        self.cross, self.rows, self.all_rows = cross, rows, all_rows

    def __getitem__(self, layer: int):
        k, v = self.cross[layer]
        if not self.all_rows:
            k, v = k[self.rows], v[self.rows]
        return SimpleNamespace(keys=k, values=v)


class Seq2SeqEarlyExitDecoder:
    """Greedy early-exit decoding of one encoder-decoder model (same ``decode`` as
    :class:`~ee_bench.decoding.early_exit.EarlyExitDecoder`, so :func:`~ee_bench.decoding.speedup.
    measure_speedups` times it unchanged).

    Args:
        model: a :class:`~ee_bench.models.contracts.Seq2SeqExitModel` whose architecture
            entry has ``blockwise``.

    Raises:
        ModelStructureError: for an architecture whose blocks cannot be run one at a time, or an
            attention implementation other than sdpa / eager.
    """

    def __init__(self, model):
        arch = model.parts.arch
        require_blockwise(model.model.config.model_type, model.name)
        impl = getattr(model.model.config, "_attn_implementation", None) or "eager"
        if impl not in SUPPORTED_ATTENTION:
            raise ModelStructureError(
                f"Early-exit decoding needs attn_implementation sdpa or eager (4-D masks); {model.name} uses "
                f"{impl!r}. Load it with --model_args attn_implementation=sdpa."
            )
        self.model, self.attn_impl = model, impl
        self.layers = model.layers
        self.n_layers = len(self.layers)
        self.unembed = model.unembed
        self.arch = arch
        k_name = arch.kv_proj[0]
        attn = get_path(self.layers[0], arch.self_attn)
        self.head_dim = int(getattr(attn, "head_dim", None) or attn.key_value_proj_dim)  # T5: key_value_proj_dim
        self.heads = int(getattr(attn, k_name).out_features) // self.head_dim
        self.dtype = next(model.model.parameters()).dtype
        self.device = model.device

    # ------------------------------------------------------------------ pieces a KV strategy uses
    def project_kv(self, layer: int, hidden: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Block ``layer``'s own self-attention keys/values of given inputs, without attention or MLP
        (the recompute strategy; paper §6 "-c"). Positions are already in the inputs (absolute
        position embeddings), so ``positions`` is unused.

        ``k = k_proj(x)``, ``v = v_proj(x)`` with ``x`` the block's self-attention norm of ``h`` in
        pre-norm blocks (mBART, M2M100, T5) and ``x = h`` in post-norm blocks (Marian, BART); the
        names come from the architecture table (:mod:`ee_bench.models.seq2seq_arch`).

        Args:
            layer: the block. hidden: (n, H) block inputs. positions: (n,) int64, unused.

        Returns:
            keys, values: each (n, h, D).
        """
        blk, arch = self.layers[layer], self.arch
        x = get_path(blk, arch.self_attn_norm)(hidden) if arch.self_attn_norm else hidden
        att, n = get_path(blk, arch.self_attn), hidden.shape[0]
        k_proj, v_proj = (getattr(att, name) for name in arch.kv_proj)
        return k_proj(x).view(n, self.heads, self.head_dim), v_proj(x).view(n, self.heads, self.head_dim)

    def cross_kv(self, enc: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Every block's cross-attention keys/values of the encoder output, as HF computes them on first
        reach: ``k_proj(enc)`` / ``v_proj(enc)`` split into heads. enc: (B, S, H) → L pairs (B, h, S, D)."""
        B, S, _ = enc.shape
        out = []
        for blk in self.layers:
            att = get_path(blk, self.arch.cross_attn)
            k_proj, v_proj = (getattr(att, name) for name in self.arch.kv_proj)
            k = k_proj(enc).view(B, S, -1, self.head_dim).transpose(1, 2)
            v = v_proj(enc).view(B, S, -1, self.head_dim).transpose(1, 2)
            out.append((k, v))
        return out

    def _additive(self, allowed: Tensor) -> Tensor | None:
        """0 where allowed, the dtype's minimum elsewhere (None when everything is allowed)."""
        if bool(allowed.all()):
            return None
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        return torch.where(allowed, zero, torch.finfo(self.dtype).min)

    def _mask(self, allowed: Tensor | None) -> Tensor | None:
        """A boolean (…, q, W) 'may attend' mask as the attention implementation wants it."""
        if allowed is None or bool(allowed.all()):
            return None
        return allowed if self.attn_impl == "sdpa" else self._additive(allowed)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode(self, prompts: Sequence[Sequence[int]], gate, threshold: float | None, kv: str, until: Sequence[str],
               max_gen_toks: int, exit_layers: Iterable[int] | None = None, min_prefix: int = DEFAULT_MIN_PREFIX,
               batch_size: int | None = None, check: str | None = None, draft_len: int | None = None,
               threshold_warmup: float = 0.0) -> DecodeResult:
        """Decode every source greedily with early exit in the decoder.

        Args:
            prompts: encoder input id lists (sources). The decoder starts from ``model.decoder_prefix``.
            gate, threshold, kv, until, max_gen_toks, exit_layers, min_prefix, batch_size, threshold_warmup: as
                :meth:`EarlyExitDecoder.decode` (``exit_layers=()`` decodes at full depth).

        Returns:
            :class:`DecodeResult` with one :class:`ExitTrace` per source, in order.

        Raises:
            UnknownNameError: unknown gate or KV strategy. ThresholdError: τ out of range.
            DecodingOptionError: bad options, or a strategy that adds query slots (``deferred``).
        """
        schedule = ExitSchedule.build(self.n_layers, gate, threshold, exit_layers, min_prefix, warmup=threshold_warmup)
        check_budget(max_gen_toks)
        if parse_check_mode(check).approximate or draft_len is not None:  # the causal loop's options
            raise DecodingOptionError("--check and --draft-len apply to decoder-only models; drop them for a translator.")
        strategy_cls = KV_STRATEGIES.get(kv)
        if getattr(strategy_cls, "self_speculative", False) and schedule.exits_early:
            raise DecodingOptionError(
                f"KV strategy {kv!r} (self-speculative decoding) runs on decoder-only models; use --kv copy or "
                f"--kv recompute for translators.")
        if schedule.gate is not None and schedule.gate.needs_final:
            raise DecodingOptionError("the oracle exit mode (--gate oracle) runs on decoder-only models; for translators "
                                      "the offline oracle analysis (without --kv) gives each token's first-match layer.")
        if strategy_cls.adds_queries:
            raise DecodingOptionError(
                f"KV strategy {kv!r} catches skipped blocks up with extra query slots, which the encoder-decoder "
                f"loop does not run; use --kv copy or --kv recompute for translators."
            )
        if schedule.exits_early and schedule.gate is None:
            raise DecodingOptionError("early exit needs a gate; pass a gate or exit_layers=() for full depth.")
        size = batch_size or max(1, len(prompts))
        results = [self._decode_batch([list(p) for p in prompts[i : i + size]], schedule, strategy_cls, kv,
                                      tuple(until), max_gen_toks)
                   for i in range(0, len(prompts), size)]
        return DecodeResult(tuple(t for r in results for t in r.traces),
                            TimeSplit.sum([r.split for r in results]),
                            DecodeCounts.sum([r.counts for r in results]))

    def _decode_batch(self, sources, schedule: ExitSchedule, strategy_cls, kv: str, until,
                      max_gen_toks: int) -> DecodeResult:
        model, L = self.model, self.n_layers
        timer = SectionTimer(self.device)
        B = len(sources)
        if max_gen_toks == 0:
            return DecodeResult(tuple(ExitTrace(kv, L, (), "", ()) for _ in sources), timer.split(), DecodeCounts())
        prefix = list(model.decoder_prefix)
        P = len(prefix)
        counts = DecodeCounts.zero()
        with timer.section("layers"):
            ids, src_mask = model.pad_sources(sources)
            enc = model.encode(ids, src_mask)  # (B, S, H), once
            cross = self.cross_kv(enc)  # L × (B, h, S, D), up front: never filled lazily
        self.last_cross = cross  # for tests and inspection
        store = KVStore(L, B, self.heads, self.head_dim, P + max_gen_toks, self.dtype, self.device)
        self.last_store = store
        strategy = strategy_cls(KVContext(self, store, torch.zeros(B, dtype=torch.long, device=self.device)))
        st = SimpleNamespace(enc=enc, src_real=src_mask.bool(), cross=cross, store=store, strategy=strategy,
                             timer=timer, counts=counts, gen=[[] for _ in range(B)], exit_at=[[] for _ in range(B)])
        done = [False] * B
        all_rows = torch.arange(B, device=self.device)
        # the prefix pass: P query slots per row, causal among themselves
        cols = torch.arange(P, device=self.device).expand(B, P)
        causal = torch.ones(P, P, dtype=torch.bool, device=self.device).tril()
        self._run(st, all_rows, cols, torch.tensor([prefix] * B, device=self.device), causal[None, None],
                  schedule, 0)  # output token 0
        counts["prompt_positions"] = B * P
        for step in range(max_gen_toks):
            for r in range(B):
                if not done[r] and self._finished(st.gen[r], until, max_gen_toks):
                    done[r] = True
                    strategy.drop_row(r)
            alive = [r for r in range(B) if not done[r]]
            if not alive:
                break
            col = P + step  # cache column of the token just generated
            rows = torch.tensor(alive, device=self.device)
            seq = torch.tensor([prefix + st.gen[r] for r in alive], device=self.device)  # (b, col+1)
            self._run(st, rows, torch.full((len(alive), 1), col, device=self.device), seq, None, schedule,
                      step + 1)  # output token step + 1
        counts["tokens"] = sum(len(g) for g in st.gen)
        traces = []
        for g, e in zip(st.gen, st.exit_at):
            kept, text = model.truncate_output(g, until)
            traces.append(ExitTrace(kv, L, tuple(kept), text, tuple(e[: len(kept)])))
        return DecodeResult(tuple(traces), timer.split(), DecodeCounts(**counts))

    def _run(self, st, rows: Tensor, cols: Tensor, seq: Tensor, self_allowed: Tensor | None,
             schedule: ExitSchedule, token_index: int) -> None:
        """Run the last ``q = cols.shape[1]`` positions of ``seq`` (b, T) through the blocks for ``rows``,
        asking ``schedule`` after each block about the output token ``token_index`` (the last position);
        emit each row's token where it leaves."""
        counts, timer, gate = st.counts, st.timer, schedule.gate
        q = cols.shape[1]
        hidden = self.model.embed_decoder(seq)[:, -q:]  # (b, q, H) block-0 inputs
        width = int(cols.max()) + 1
        obs = None
        biases: dict = {}  # T5: the first block's relative position biases, (1, h, q, W) and (1, h, q, S)
        for layer in range(self.n_layers):
            b = rows.numel()
            index = SlotIndex(rows, cols, torch.ones_like(cols, dtype=torch.bool), width, b == len(st.gen))
            src = st.src_real[rows][:, None, None, :]  # (b, 1, 1, S)
            cache = _StepCache(st.store.adapter(index), _CrossRows(st.cross, rows, index.all_rows), width - q)
            prev_hidden = hidden[:, -1] if gate is not None and gate.needs_hidden else None
            with timer.section("layers"):
                if self.arch.time_major:  # FSMT: (q, b, H) blocks, True = padding, additive (q, W) causal mask
                    causal = None if self_allowed is None else self._additive(self_allowed[0, 0])
                    out = self.layers[layer](hidden.transpose(0, 1), st.enc[rows].transpose(0, 1),
                                             encoder_attn_mask=~st.src_real[rows], layer_state=cache,
                                             causal_mask=causal)
                    hidden = out[0].transpose(0, 1)
                else:
                    out = self.layers[layer](hidden, attention_mask=self._mask(self_allowed),
                                             encoder_hidden_states=st.enc[rows],
                                             encoder_attention_mask=self._mask(src), cache=cache, use_cache=True,
                                             **biases)
                    hidden = out[0] if isinstance(out, tuple) else out  # (b, q, H)
                if self.arch.shared_position_bias and not biases:  # independent of the batch row
                    biases = {"position_bias": out[1], "encoder_decoder_position_bias": out[2]}
            counts["token_layers"] += b
            point = schedule.point(layer, token_index)
            if point is Point.PASS:
                continue
            h = hidden[:, -1]  # (b, H)
            if point is Point.EXIT:  # the last layer: every running row leaves
                with timer.section("emit"):
                    toks = self.unembed(h).argmax(dim=-1)
                counts["head_rows"] += b
                self._leave(st, rows, cols, hidden, torch.arange(b, device=h.device), toks, layer, schedule)
                return
            with timer.section("gate"):
                top1 = prob = ent = None
                if gate.needs_head:
                    top1, prob, ent = self.unembed.reduce(h)
                obs = schedule.observe(layer, obs, top1=top1, top1_prob=prob, entropy=ent,
                                       hidden=h if gate.needs_hidden else None, prev_hidden=prev_hidden)
                fire = schedule.fires(obs, token_index)
                n_fire = int(fire.sum())
            counts["gate_checks"] += b
            counts["head_rows"] += b if gate.needs_head else 0
            if not n_fire:
                continue
            fired = fire.nonzero().squeeze(1)
            if gate.needs_head:
                toks = obs.top1[fired]
            else:
                with timer.section("emit"):
                    toks = self.unembed(h[fired]).argmax(dim=-1)
                counts["head_rows"] += n_fire
            self._leave(st, rows, cols, hidden, fired, toks, layer, schedule)
            keep = ~fire
            rows, cols, hidden = rows[keep], cols[keep], hidden[keep]
            obs = obs.select(keep)
            if not bool(keep.any()):
                return

    def _leave(self, st, rows: Tensor, cols: Tensor, hidden: Tensor, fired: Tensor, toks: Tensor, layer: int,
               schedule: ExitSchedule) -> None:
        """Emit ``toks`` for the rows ``fired`` (indices into ``rows``) exiting at ``layer``; the KV strategy
        fills the self-attention keys/values of the blocks they skip, for all q query slots."""
        for r, t in zip(rows[fired].tolist(), toks.tolist()):
            st.gen[r].append(t)
            st.exit_at[r].append(layer)
        if not schedule.skips_blocks(layer):
            return
        with st.timer.section("kv"):
            n, q = fired.numel(), cols.shape[1]
            st.counts["kv_fill_token_layers"] += st.strategy.on_exit(
                rows[fired].repeat_interleave(q), cols[fired].reshape(-1), layer, hidden[fired].reshape(n * q, -1))

    def _finished(self, ids: list[int], until: tuple[str, ...], max_gen_toks: int) -> bool:
        if not ids:
            return False
        if len(ids) >= max_gen_toks or ids[-1] in self.model.eos_token_ids:
            return True
        return bool(until) and any(u in self.model.decode(ids) for u in until)
