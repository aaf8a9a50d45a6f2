"""Per-layer readout of selected positions in one forward pass, shared by the causal and the
encoder-decoder wrappers (paper §3.1: every block's output decoded by the model's own final norm and
head).

- :func:`capture_block_outputs`: forward hooks on the blocks that reduce each block's output at the
  selected positions to (top-1, probability, entropy) as the forward pass goes, so no (L × T × V)
  tensor is ever built.
- :func:`reduce_selected_logits`: the same statistics for the last layer, from the model's own logits.
- :func:`assemble_analysis` and :func:`split_analysis`: the (L, N) result, and its split per document.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ee_bench.models.unembed import reduce_logits
from ee_bench.types import LayerStats

Reduce = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]
"""(N, H) block outputs → (top1 (N,), top1_prob (N,), entropy (N,)), e.g. ``Unembed.reduce``."""


@dataclass(frozen=True)
class LayerAnalysis:
    """Per-layer statistics of N selected positions, plus optional hidden states.

    Attributes:
        stats: (L, N) statistics.
        hidden: (L, N, H) float32 block outputs (before the final norm), if requested.
        embeddings: (N, H) float32 inputs of block 0, if requested.
    """

    stats: LayerStats
    hidden: Tensor | None = None
    embeddings: Tensor | None = None


@contextlib.contextmanager
def capture_block_outputs(layers: nn.ModuleList, select: tuple[Tensor, Tensor], keep_hidden: bool,
                          reduce: Reduce, *, time_major: bool = False) -> Iterator[dict[str, Any]]:
    """Forward hooks that reduce each block's output at the selected positions.

    Args:
        layers: the L blocks, in order.
        select: (batch index (N,), position index (N,)) of the positions to decode, on the blocks' device.
        keep_hidden: also keep the (N, H) block outputs and the block-0 inputs.
        reduce: (N, H) → per-row statistics (``Unembed.reduce``); applied to blocks 0..L−2 only, since
            the caller reduces block L−1 from the model's own logits (:func:`reduce_selected_logits`).
        time_major: the blocks' hidden states are (T, B, H) (FSMT) instead of (B, T, H).

    Yields:
        A dict filled during the forward pass: ``stats[ℓ]`` = (top1, prob, entropy) for ℓ < L−1, and
        ``hidden[ℓ]`` (N, H) / ``embeddings`` (N, H) when ``keep_hidden``. The hooks are removed on
        exit, also after an error.
    """
    rows, cols = select
    store: dict[str, Any] = {"stats": {}, "hidden": {}, "embeddings": None}
    last = len(layers) - 1

    def batch_first(h: Tensor) -> Tensor:
        return h.transpose(0, 1) if time_major else h

    def post_hook(layer: int):
        def hook(_module, _args, output):
            picked = batch_first(output[0] if isinstance(output, tuple) else output)[rows, cols]  # (N, H)
            if layer < last:
                store["stats"][layer] = reduce(picked)
            if keep_hidden:
                store["hidden"][layer] = picked.float()
        return hook

    def pre_hook(_module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        store["embeddings"] = batch_first(h)[rows, cols].float()

    handles = [blk.register_forward_hook(post_hook(i)) for i, blk in enumerate(layers)]
    if keep_hidden:
        handles.append(layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def reduce_selected_logits(logits: Tensor, rows: Tensor, cols: Tensor,
                           tile_elems: int) -> tuple[Tensor, Tensor, Tensor]:
    """Statistics of the selected rows of the model's logits, gathering a few rows at a time.

    Args:
        logits: (B, T, V) the model's output logits. rows, cols: (N,) batch and position indices.
        tile_elems: logit entries gathered at once (``Unembed.tile_elems``).

    Returns:
        top1 (N,) int64, top1_prob (N,) float32, entropy (N,) float32 in nats
        (:func:`~ee_bench.models.unembed.reduce_logits`).
    """
    step = max(1, tile_elems // logits.shape[-1])
    parts = [reduce_logits(logits[rows[i : i + step], cols[i : i + step]], inplace=True)  # a gathered copy
             for i in range(0, rows.numel(), step)]
    return tuple(torch.cat(xs) for xs in zip(*parts))  # type: ignore[return-value]


def assemble_analysis(store: dict[str, Any], final: tuple[Tensor, Tensor, Tensor], n_layers: int) -> LayerAnalysis:
    """The :class:`LayerAnalysis`, on the CPU, of what :func:`capture_block_outputs` caught.

    Args:
        store: the filled dict (N selected positions). final: (top1, top1_prob, entropy), each (N,),
            of layer L−1, from the model's own logits. n_layers: L.

    Returns:
        (L, N) stats; (L, N, H) hidden states and (N, H) embeddings when they were kept.
    """
    per_layer = [store["stats"][i] for i in range(n_layers - 1)] + [final]
    hidden = embeddings = None
    if store["hidden"]:
        hidden = torch.stack([store["hidden"][i] for i in range(n_layers)]).cpu()  # (L, N, H)
        embeddings = store["embeddings"].cpu()
    return LayerAnalysis(LayerStats.stack(per_layer), hidden, embeddings)


def empty_analyses(n_layers: int, count: int) -> list[LayerAnalysis]:
    """``count`` analyses with no position: (L, 0) stats each."""
    empty = LayerStats(torch.zeros(n_layers, 0, dtype=torch.long), torch.zeros(n_layers, 0), torch.zeros(n_layers, 0))
    return [LayerAnalysis(empty) for _ in range(count)]


def split_analysis(res: LayerAnalysis, sizes: Sequence[int]) -> list[LayerAnalysis]:
    """Split an (L, ΣN_b) analysis into one (L, N_b) analysis per document, in order.

    Raises:
        ValueError: if the sizes do not add up to the analysed positions.
    """
    if sum(sizes) != res.stats.top1.shape[1]:
        raise ValueError(f"sizes add up to {sum(sizes)}, but {res.stats.top1.shape[1]} positions were analysed")
    out, start = [], 0
    for n in sizes:
        sl = slice(start, start + n)
        out.append(LayerAnalysis(res.stats.select(sl), None if res.hidden is None else res.hidden[:, sl],
                                 None if res.embeddings is None else res.embeddings[sl]))
        start += n
    return out
