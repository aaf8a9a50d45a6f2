"""Where a token's exit layer is decided: one observation builder, one walk to the first exit.

Every place that exits — the offline gate sweep (:func:`gate_exit_layers`, on the oracle pass), the
early-exit decoding loop (:class:`~ee_bench.decoding.early_exit.EarlyExitDecoder`), the encoder
early exit (:func:`~ee_bench.exits.encoder_exit.early_exit_classify`) and the lm-eval bridge
(:meth:`~ee_bench.lm_eval.model.EarlyExitLM.exit_logits`) — goes through the same two steps:

1. :func:`observe_layer` builds the :class:`~ee_bench.exits.gates.GateObservation` of one exit layer
   from that layer's statistics and hidden states, carrying the top-1 streak over from the previous
   observation of the same tokens;
2. :func:`exits_here` asks the gate which of those tokens exit there; :func:`first_exit_layers` walks
   a sequence of observations to each token's first exit (L−1 where the gate never fires).

Loops that run blocks between observations (the decoding loop, the encoder exit) call the two steps
layer by layer and drop exited rows with :meth:`GateObservation.select`; everything else calls the walk.

Shape notation: L = exit layers, N = tokens (or examples), H = hidden size.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ee_bench.exits.gates import Gate, GateObservation
from ee_bench.types import LayerStats


def observe_layer(layer: int, n_layers: int, *, top1: Tensor | None = None, top1_prob: Tensor | None = None,
                  entropy: Tensor | None = None, previous: GateObservation | None = None,
                  hidden: Tensor | None = None, prev_hidden: Tensor | None = None,
                  final_top1: Tensor | None = None) -> GateObservation:
    """The gate's view of N tokens at exit layer ``layer`` (paper §3.2).

    The streak counts consecutive observations, ending at this one, over which the top-1 stayed the
    same: 0 for the first observation (``previous`` is None) or after a change, else the previous
    streak + 1. Offline every layer is observed, so it counts layer transitions; in the decoding loop
    with ``--exit-layers`` it counts the allowed layers that were checked.

    Args:
        layer: 0-based exit layer ℓ. n_layers: L.
        top1: (N,) int64 argmax at ℓ; top1_prob: (N,) float32; entropy: (N,) float32 nats.
            None for gates that do not read the head (then there is no streak either).
        previous: this function's result for the same N tokens at the previous observed layer.
        hidden: (N, H) block-ℓ output; prev_hidden: (N, H) block-ℓ input. None unless the gate
            reads hidden states.
        final_top1: (N,) int64 top-1 of the final layer, for gates with ``needs_final`` (the oracle).

    Returns:
        :class:`GateObservation` with ``streak`` (N,) int64 (None without ``top1``).
    """
    streak = None
    if top1 is not None:
        if previous is None or previous.top1 is None:
            streak = torch.zeros_like(top1)
        else:
            streak = torch.where(top1 == previous.top1, previous.streak + 1, torch.zeros_like(previous.streak))
    return GateObservation(layer=layer, n_layers=n_layers, top1=top1, top1_prob=top1_prob, entropy=entropy,
                           streak=streak, hidden=hidden, prev_hidden=prev_hidden, final_top1=final_top1)


def exits_here(gate: Gate, obs: GateObservation, threshold: float) -> Tensor:
    """(N,) bool: the tokens that exit at ``obs.layer`` (the gate fires there)."""
    return gate.fires(obs, threshold).to(torch.bool)


def first_exit_layers(gate: Gate, threshold: float, observations: Iterable[GateObservation], n_tokens: int,
                      n_layers: int) -> Tensor:
    """Walk observations (in layer order) to each token's first exit.

    Args:
        gate, threshold: the gate and a validated τ.
        observations: one :class:`GateObservation` of all N tokens per checked layer below L−1.
        n_tokens: N. n_layers: L.

    Returns:
        (N,) int64 0-based exit layers; L−1 where the gate never fires (the last layer always exits).
    """
    exit_layer = torch.full((n_tokens,), n_layers - 1, dtype=torch.int64)
    done = torch.zeros(n_tokens, dtype=torch.bool)
    for obs in observations:
        fire = exits_here(gate, obs, threshold) & ~done
        exit_layer[fire] = obs.layer
        done |= fire
    return exit_layer


def layer_observations(stats: LayerStats, hidden: Tensor | None = None,
                       embeddings: Tensor | None = None) -> Iterable[GateObservation]:
    """Observations of layers 0 … L−2 from the oracle pass's statistics (lazily, one per layer).

    Each carries the final layer's top-1 (``final_top1``, a view of ``stats.top1[L−1]``), which only
    the oracle gate reads.

    Args:
        stats: (L, N) per-layer statistics.
        hidden: (L, N, H) block outputs, or None. embeddings: (N, H) block-0 inputs, or None.
    """
    previous = None
    for layer in range(stats.n_layers - 1):  # the final layer always exits
        previous = observe_layer(
            layer, stats.n_layers, top1=stats.top1[layer], top1_prob=stats.top1_prob[layer],
            entropy=stats.entropy[layer], previous=previous,
            hidden=None if hidden is None else hidden[layer],
            prev_hidden=None if hidden is None else (embeddings if layer == 0 else hidden[layer - 1]),
            final_top1=stats.top1[stats.n_layers - 1],
        )
        yield previous


def top1_streak(top1: Tensor) -> Tensor:
    """Consecutive-unchanged counts of the top-1 along layers (the streaks :func:`observe_layer` gives).

    Args:
        top1: (L, N) int64.

    Returns:
        (L, N) int64; row 0 is 0, row ℓ is row ℓ−1 + 1 where top1 did not change, else 0.
    """
    rows, previous = [], None
    for layer in range(top1.shape[0]):
        previous = observe_layer(layer, top1.shape[0], top1=top1[layer], previous=previous)
        rows.append(previous.streak)
    return torch.stack(rows) if rows else torch.zeros_like(top1)


def gate_exit_layers(gate: Gate, stats: LayerStats, threshold: float, hidden: Tensor | None = None,
                     embeddings: Tensor | None = None) -> Tensor:
    """Offline exit layer of every token under ``gate`` at ``threshold`` (the sweep of paper §3.2).

    Args:
        gate: the gate.
        stats: (L, N) per-layer statistics from the oracle pass.
        threshold: τ (validated by the caller with :meth:`Gate.check_threshold`).
        hidden: (L, N, H) hidden states after each block, for gates with ``needs_hidden``.
        embeddings: (N, H) block-0 inputs, for gates with ``needs_hidden``.

    Returns:
        (N,) int64 0-based exit layers; L−1 for tokens where the gate never fires.

    Raises:
        ValueError: if the gate needs hidden states and none were given.
    """
    if gate.needs_hidden and (hidden is None or embeddings is None):
        raise ValueError(f"gate {type(gate).__name__} needs hidden states; run the analysis with them")
    return first_exit_layers(gate, threshold, layer_observations(stats, hidden, embeddings), stats.n_tokens,
                             stats.n_layers)
