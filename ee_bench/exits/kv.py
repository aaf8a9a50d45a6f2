"""KV-cache strategies: what fills the keys/values of the layers an exited token skipped (paper §6).

A token s that exits at layer j leaves no keys/values in layers ℓ > j. Later tokens that reach
those layers attend to position s there, so something must stand in for them. A strategy is a
registered class; the decoding loop (:mod:`ee_bench.decoding.early_exit`) makes one instance per
decoding call and calls:

- :meth:`KVStrategy.on_exit` when tokens stop at layer j (n tokens, with their block outputs h^j);
- :meth:`KVStrategy.joining` before running block ℓ of a row, for strategies that catch tokens up
  (``adds_queries = True``): extra (column, hidden state) query slots that run block ℓ together with
  that row's new token.

Built-ins: ``copy`` (paper "-d"), ``recompute`` (paper "-c", CALM's state propagation) and
``deferred`` (beyond the paper; as in FREE and EE-LLM). See ``docs/kv_strategies.md``.

Shape notation: n = exiting tokens, H = hidden size, H_kv = key/value heads, D = head size, L = layers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor

from ee_bench.registry import Registry


@dataclass(frozen=True)
class KVContext:
    """What a strategy may touch during one decoding call.

    Attributes:
        runner: the :class:`~ee_bench.decoding.blocks.BlockExecutor` (blocks, projections, rotary).
        store: the :class:`~ee_bench.decoding.kv_store.KVStore` being filled.
        n_pad: (B,) int64 left-padding columns per row (rotary position = column − n_pad).
    """

    runner: object
    store: object
    n_pad: Tensor


class KVStrategy(ABC):
    """Contract for a KV-cache strategy (one instance per decoding call; it may keep state).

    Attributes:
        adds_queries: True if :meth:`joining` can return slots (the loop then packs several query
            slots per row); False lets the loop keep one slot per row.
        paper_variant: the paper's name for it ("-d", "-c"), or "" if the paper has none.
    """

    adds_queries: bool = False
    paper_variant: str = ""

    def __init__(self, ctx: KVContext):
        self.ctx = ctx

    @abstractmethod
    def on_exit(self, rows: Tensor, cols: Tensor, exit_layer: int, hidden: Tensor) -> int:
        """Handle n tokens that stopped after block ``exit_layer`` (< L−1).

        Args:
            rows, cols: (n,) int64 batch rows and cache columns of the tokens.
            exit_layer: j, 0-based; blocks j+1 … L−1 were skipped.
            hidden: (n, H) the tokens' block outputs h^j.

        Returns:
            Token-layers of key/value entries filled now (n × (L−1−j) for copy/recompute, 0 if
            deferred), for the cost report.
        """

    def joining(self, row: int, layer: int) -> list[tuple[int, Tensor]]:
        """Extra (column, (H,) input hidden state) slots that must run block ``layer`` with ``row``'s
        new token. Default: none."""
        return []

    def drop_row(self, row: int) -> None:
        """Forget pending work of a finished row (its cache is never read again). Default: no-op."""


KV_STRATEGIES: Registry[type[KVStrategy]] = Registry("kv strategy", base=KVStrategy, entry_point_group="ee_bench.kv_strategies")


@KV_STRATEGIES.register("copy")
class CopyKV(KVStrategy):
    """Paper "-d": the exit layer's keys/values are copied into every skipped layer.

    ``K_s^ℓ, V_s^ℓ := K_s^j, V_s^j`` for every skipped ℓ > j.

    Extra cost per exited token: (L−1−j) copies of 2·H_kv·D numbers; no arithmetic. The keys/values
    are wrong for the skipped layers (they were made by layer j's projections), which costs quality.
    """

    paper_variant = "-d"

    def on_exit(self, rows: Tensor, cols: Tensor, exit_layer: int, hidden: Tensor) -> int:
        store = self.ctx.store
        n_layers = len(store.keys)
        for layer in range(exit_layer + 1, n_layers):
            store.copy_layer(exit_layer, layer, rows, cols)
        return int(rows.numel()) * (n_layers - 1 - exit_layer)


@KV_STRATEGIES.register("recompute")
class RecomputeKV(KVStrategy):
    """Paper "-c" (CALM): every skipped layer projects the exit hidden state to its own keys/values.

    The exit hidden state h_s^j is the input of every skipped layer ℓ > j, which computes its own
    ``K = RoPE(k_proj(norm_ℓ(h^j)))``, ``V = v_proj(norm_ℓ(h^j))`` without running attention or MLP.

    Extra cost per exited token: (L−1−j) × (one RMSNorm, the k and v projections — 2·H·H_kv·D
    multiply-adds — and a rotary), about 2·H_kv·D / (4·H + 3·I) of a block (≈6 % on SmolLM2).
    """

    paper_variant = "-c"

    def on_exit(self, rows: Tensor, cols: Tensor, exit_layer: int, hidden: Tensor) -> int:
        runner, store = self.ctx.runner, self.ctx.store
        positions = cols - self.ctx.n_pad[rows]
        for layer in range(exit_layer + 1, runner.n_layers):
            k, v = runner.project_kv(layer, hidden, positions)
            store.write(layer, rows, cols, k, v)
        return int(rows.numel()) * (runner.n_layers - 1 - exit_layer)


@KV_STRATEGIES.register("deferred")
class DeferredKV(KVStrategy):
    """Beyond the paper (FREE, EE-LLM): skipped blocks run exactly, later, with the row's next token.

    The skipped blocks of an exited token run as extra query slots batched with the next token of
    the same row that reaches them.

    A token that exited at j waits with h^j; when the row's next token is about to run block j+1,
    the waiting token joins it there and runs blocks j+1, j+2, … with it. If that next token exits
    at j' first, the waiting tokens stop with it and wait again from j'+1. The keys/values are the
    full model's own, given the emitted tokens.

    Extra cost: every skipped block is run in full later (no compute is saved, only latency, when
    the extra query slots are nearly free — memory-bound decoding on an accelerator); tokens still
    waiting when a row finishes are never run. Pending states cost H numbers each.
    """

    adds_queries = True

    def __init__(self, ctx: KVContext):
        super().__init__(ctx)
        self.pending: dict[int, list[tuple[int, int, Tensor]]] = {}  # row -> [(column, next block, h)]

    def on_exit(self, rows: Tensor, cols: Tensor, exit_layer: int, hidden: Tensor) -> int:
        for r, c, h in zip(rows.tolist(), cols.tolist(), hidden):
            self.pending.setdefault(r, []).append((c, exit_layer + 1, h))
        return 0

    def joining(self, row: int, layer: int) -> list[tuple[int, Tensor]]:
        waiting = self.pending.get(row)
        if not waiting:
            return []
        out = [(c, h) for c, nxt, h in waiting if nxt == layer]
        if out:
            self.pending[row] = [w for w in waiting if w[1] != layer]
        return out

    def drop_row(self, row: int) -> None:
        self.pending.pop(row, None)


@KV_STRATEGIES.register("speculative")
class SelfSpeculativeKV(KVStrategy):
    """Lossless self-speculative decoding (LayerSkip; Draft & Verify): draft with blocks 0..E, verify with the rest.

    Not a fill rule but a decoding mode: no token ever skips a block for good, because blocks E+1 … L−1 run
    over every drafted position in the verification pass, so the cache always holds the full model's keys
    and values, and the output equals full-depth greedy decoding. The draft layer E is the one exit layer
    given (``--exit-layers E``), or chosen per draft token by the gate among several; :data:`draft_len`
    tokens are drafted per round (``--draft-len`` overrides it). Cost with a fixed E: d·(E+1) + d·(L−1−E)
    block-slots and 2d head rows per round (:mod:`ee_bench.decoding.speculative`).
    """

    self_speculative = True
    draft_len = 4

    def on_exit(self, rows: Tensor, cols: Tensor, exit_layer: int, hidden: Tensor) -> int:
        raise RuntimeError("self-speculative decoding never exits a token for good; on_exit is not used")
