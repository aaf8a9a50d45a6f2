"""Top-k hypotheses of every layer (and sub-layer) for the tokens of one generated sentence.

Paper Fig. 1(c) shows, for one output token, the top hypotheses of every block read through the
output head; §6.2 and Table 10 do the same for the attention output, the FFN output and the two
residual streams of each block (:mod:`ee_bench.models.sublayers`). :func:`inspect_sentence`
generates greedily at full depth, then runs one teacher-forced forward pass over prompt + output
with hooks that copy the (N, H) vectors of the N output positions, and reads them one layer at a
time through the model's own final norm and head (:class:`~ee_bench.models.unembed.Unembed`): at
most (N × V) logits exist at once, never (L × N × V). The block output of the last layer is read
from the model's own logits instead, so it reproduces ``model(...).logits`` exactly.

Shape notation: L = decoder blocks, N = generated tokens, k = hypotheses kept, H = hidden size,
V = vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ee_bench.errors import EEBenchError
from ee_bench.models.sublayers import READOUTS, capture_sublayers, sublayer_arch
from ee_bench.models.unembed import TILE_ELEMS, Unembed


@dataclass(frozen=True)
class TopK:
    """The k most probable next tokens of one readout, at every layer and output position.

    Attributes:
        name: the readout (one of :data:`~ee_bench.models.sublayers.READOUTS`).
        ids: (L, N, k) int64 token ids, most probable first.
        probs: (L, N, k) float32 softmax probabilities, in [0, 1], non-increasing along k.
    """

    name: str
    ids: Tensor
    probs: Tensor

    def __post_init__(self) -> None:
        if self.ids.dim() != 3 or tuple(self.probs.shape) != tuple(self.ids.shape):
            raise ValueError(f"TopK {self.name}: ids {tuple(self.ids.shape)} and probs "
                             f"{tuple(self.probs.shape)} must both be (L, N, k)")


@dataclass(frozen=True)
class Inspection:
    """Per-layer hypotheses of one greedily generated sentence.

    Attributes:
        prompt_ids: the prompt's token ids.
        output_ids: the N generated token ids (the stop token included, as generated).
        output_text: the generated text, cut at the stop string.
        readouts: one :class:`TopK` per readout, in :data:`~ee_bench.models.sublayers.READOUTS`
            order; only ``block_out`` without sub-layers.
    """

    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    output_text: str
    readouts: tuple[TopK, ...]

    def readout(self, name: str) -> TopK:
        """The readout called ``name``. Raises KeyError if it was not computed."""
        for r in self.readouts:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def final_top1(self) -> Tensor:
        """(N,) int64: the last layer's top-1 of the block output (the model's own prediction)."""
        return self.readout("block_out").ids[-1, :, 0]


def topk_of_logits(logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest softmax probabilities of each row and their token ids.

    Args:
        logits: (N, V) any float dtype; computed in float32.
        k: 1 ≤ k ≤ V.

    Returns:
        ids (N, k) int64 and probs (N, k) float32, most probable first (``torch.topk``; the order
        of exactly tied logits is unspecified).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    top, ids = logp.topk(k, dim=-1)  # (N, k)
    return ids, top.exp()


@torch.no_grad()
def topk_readout(unembed: Unembed, hidden: Tensor, k: int, tile_elems: int = TILE_ELEMS) -> tuple[Tensor, Tensor]:
    """Top-k hypotheses of hidden states read through the final norm and head, a few rows at a time.

    Args:
        unembed: the model's final norm + head.
        hidden: (N, H) vectors of the residual stream or a module output (before the final norm).
        k: hypotheses kept, 1 ≤ k ≤ V.
        tile_elems: logit entries (rows × V) decoded at once.

    Returns:
        ids (N, k) int64, probs (N, k) float32 (:func:`topk_of_logits` of ``unembed(hidden)``).
    """
    vocab = unembed.head.weight.shape[0]
    rows = max(1, tile_elems // vocab)
    parts = [topk_of_logits(unembed(hidden[r : r + rows]), k) for r in range(0, hidden.shape[0], rows)]
    return torch.cat([p[0] for p in parts]).cpu(), torch.cat([p[1] for p in parts]).cpu()


def check_top_k(model, top_k: int) -> None:
    """Raises EEBenchError unless 1 ≤ top_k ≤ the model's vocabulary size."""
    vocab = model.parts.head.weight.shape[0]
    if not 1 <= top_k <= vocab:
        raise EEBenchError(f"--top-k must be between 1 and the vocabulary size {vocab}, got {top_k}; "
                           f"pass e.g. --top-k 5")


@torch.no_grad()
def inspect_outputs(model, prompt_ids: list[int], output_ids: list[int], top_k: int,
                    sublayers: bool) -> tuple[TopK, ...]:
    """Top-k hypotheses of every layer for each output token, teacher-forced in one forward pass.

    Token i of the output is predicted at position len(prompt) + i − 1 of prompt + output[:-1].

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM`.
        prompt_ids: the prompt (at least one token). output_ids: N ≥ 1 generated tokens.
        top_k: hypotheses kept per readout, 1 ≤ top_k ≤ V.
        sublayers: also read the mid-stream, FFN output, block input and attention output.

    Returns:
        One :class:`TopK` of shape (L, N, k) per readout, in ``READOUTS`` order.

    Raises:
        EEBenchError: for an empty prompt or output, or top_k outside [1, V].
        ModelStructureError: with ``sublayers``, for an architecture not in the sub-layer table.
    """
    check_top_k(model, top_k)
    if not prompt_ids or not output_ids:
        raise EEBenchError("inspect needs a non-empty prompt and at least one generated token")
    arch = sublayer_arch(model.model) if sublayers else None
    n = len(output_ids)
    ids = torch.tensor([list(prompt_ids) + list(output_ids[:-1])], device=model.device)  # (1, T)
    cols = torch.arange(ids.shape[1] - n, ids.shape[1], device=model.device)  # (N,)
    select = (torch.zeros_like(cols), cols)
    with capture_sublayers(model.parts.layers, arch, select) as store:
        logits = model.model(input_ids=ids, use_cache=False, logits_to_keep=n).logits[0]  # (N, V)
    last = model.n_layers - 1
    out = []
    for name in READOUTS if sublayers else ("block_out",):
        per_layer = []
        for layer in range(model.n_layers):
            if name == "block_out" and layer == last:
                per_layer.append(tuple(t.cpu() for t in topk_of_logits(logits, top_k)))
            else:
                per_layer.append(topk_readout(model.unembed, store[name].pop(layer), top_k))
        out.append(TopK(name, torch.stack([p[0] for p in per_layer]), torch.stack([p[1] for p in per_layer])))
    return tuple(out)


def inspect_sentence(model, prompt_ids: list[int], until: tuple[str, ...], max_gen_toks: int, top_k: int,
                     sublayers: bool = False, positions: Sequence[int] | None = None,
                     progress: Any = None) -> Inspection:
    """Greedy full-depth generation of one prompt, then the top-k hypotheses of every layer.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM`.
        prompt_ids: the prompt's token ids.
        until: stop strings. max_gen_toks: token budget, ≥ 1.
        top_k: hypotheses kept per layer and readout.
        sublayers: also read the sub-layer vectors (paper §6.2).
        positions: 0-based generated-token indices the caller will show; checked against the
            number generated before the layers are read (None: no check).
        progress: a tqdm bar advanced once after generating and once after reading the layers, or None.

    Returns:
        An :class:`Inspection`.

    Raises:
        EEBenchError: for max_gen_toks < 1, a bad top_k (see :func:`inspect_outputs`), or a position
            beyond the generated tokens.
    """
    if max_gen_toks < 1:
        raise EEBenchError(f"--max-gen-toks must be at least 1, got {max_gen_toks}")
    check_top_k(model, top_k)
    if progress is not None:
        progress.set_postfix_str("generating")
    output_ids, text = model.generate([list(prompt_ids)], until, max_gen_toks)[0]
    n = len(output_ids)
    if positions and max(positions) >= n:
        raise EEBenchError(f"--positions asks for token {max(positions)}, but only {n} tokens were generated "
                           f"(indices 0..{n - 1}); pick positions below {n}.")
    if progress is not None:
        progress.update(1)
        progress.set_postfix_str("reading every layer")
    readouts = inspect_outputs(model, prompt_ids, output_ids, top_k, sublayers)
    if progress is not None:
        progress.update(1)
    return Inspection(tuple(prompt_ids), tuple(output_ids), text, readouts)
