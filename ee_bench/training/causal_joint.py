"""The final, joint and joint-distill objectives for causal LMs (paper §6, "-J" rows of Tables 6 and 11).

- ``final``: next-token cross-entropy of the last layer on the response tokens (ordinary
  instruction tuning).
- ``joint``: ``Σ_i w_i · CE(head(final_norm(h^i)), y)`` over the L blocks, through the model's **own**
  final norm and LM head (:class:`~ee_bench.models.unembed.Unembed`), shared by every layer: no new
  parameters. The weights, the schedules and LayerSkip-style layer sampling are those of
  :mod:`ee_bench.training.joint` (one place for both encoders and decoders).
- ``joint-distill``: the same weighted sum, but each *early* layer's target is the last layer's own
  top-1 token at that position (computed in the same forward pass, without gradient), while the last
  layer keeps the reference token: ``w_L · CE(z^L, y) + Σ_{i<L} w_i · CE(z^i, argmax z^L)``. This is
  hard self-distillation ("Be Your Own Teacher", Zhang et al., 2019; the student–teacher form of
  BERxiT's and FastBERT's exits). The oracle exit layer (issue 11) is the first layer whose top-1
  equals the last layer's, so this objective trains early layers towards exactly that event; the
  paper's joint objective (above) trains them towards the reference, which the last layer itself
  misses on many tokens of a weak translator. ee-bench reports both side by side (docs/training.md).

Labels follow Hugging Face's causal-LM convention: ``labels`` is aligned with ``input_ids``; position
t predicts ``labels[t + 1]``; prompt and padding positions are −100 and carry no loss. Each layer's
CE is the mean over the batch's response tokens, in nats.

Memory: the logits are never held for all layers, nor for all tokens of one layer. Each layer's
response rows (N, H) are cut into chunks of ``tile_elems / V`` rows; each chunk's (rows × V) logits
and CE run inside ``torch.utils.checkpoint`` (non-reentrant), so the backward pass recomputes that
chunk's logits instead of keeping them: the extra peak memory is one chunk's logits (32 MiB of
float32 by default) plus a float32 loss per chunk, whatever L, B and T are. The price is one more
head projection per chunk in the backward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers import Trainer

from ee_bench.errors import EEBenchError
from ee_bench.models.arch import DecoderParts, locate_decoder_parts
from ee_bench.models.unembed import Unembed
from ee_bench.training.joint import (
    OBJECTIVES,
    layer_weights,
    sample_early_layers,
    sampled_layer_weights,
    weighted_sum,
)

IGNORE_INDEX = -100
CAUSAL_OBJECTIVES = (*OBJECTIVES, "joint-distill")
"""Objectives of causal fine-tuning: the shared ones of :mod:`ee_bench.training.joint` plus hard self-distillation."""
CE_TILE_ELEMS = 1 << 23
"""Logit entries (rows × vocabulary) of one cross-entropy chunk: 32 MiB of float32."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain ``*ForCausalLM`` under a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def shared_unembed(model: nn.Module) -> tuple[DecoderParts, Unembed]:
    """The model's blocks and its own final norm + head (with Gemma's softcap where set).

    Raises:
        ModelStructureError: for an architecture ee-bench cannot locate.
    """
    base = unwrap(model)
    parts = locate_decoder_parts(base)
    softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
    return parts, Unembed(parts.final_norm, parts.head, softcap=softcap)


@contextlib.contextmanager
def capture_block_outputs(parts: DecoderParts, layers: list[int]) -> Iterator[dict[int, Tensor]]:
    """Forward hooks that keep the outputs (B, T, H) of the given blocks, with their autograd graph.

    The hooks are removed on exit, also after an error.
    """
    store: dict[int, Tensor] = {}

    def hook(layer: int):
        def fn(_module, _args, output):
            store[layer] = output[0] if isinstance(output, tuple) else output
        return fn

    handles = [parts.layers[i].register_forward_hook(hook(i)) for i in layers]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def _chunk_ce_sum(unembed: Unembed, hidden: Tensor, targets: Tensor) -> Tensor:
    """Summed CE (nats, float32 scalar) of (R, H) block outputs against (R,) targets."""
    return F.cross_entropy(unembed(hidden).float(), targets, reduction="sum")


def chunk_rows(unembed: Unembed, tile_elems: int) -> int:
    """Rows per chunk so that one chunk's (rows × V) logits hold at most ``tile_elems`` entries (≥ 1)."""
    vocab = unembed.head.weight.shape[0] if hasattr(unembed.head, "weight") else 1
    return max(1, tile_elems // max(vocab, 1))


def layer_ce(unembed: Unembed, hidden: Tensor, labels: Tensor, tile_elems: int = CE_TILE_ELEMS) -> Tensor:
    """Mean next-token CE of one layer over the response tokens, chunked and checkpointed.

    Shape notation: B = batch, T = positions, H = hidden size, V = vocabulary.

    Args:
        unembed: final norm + head. hidden: (B, T, H) block outputs (before the final norm).
        labels: (B, T) int64 aligned with the inputs, −100 where no loss (prompt, padding).
        tile_elems: logit entries per chunk (module docstring).

    Returns:
        Scalar float32, nats; 0 (still attached to the graph) when no position has a label.
    """
    targets = labels[:, 1:]  # (B, T−1): position t predicts labels[t + 1]
    keep = targets != IGNORE_INDEX
    h = hidden[:, :-1][keep]  # (N, H)
    y = targets[keep]  # (N,)
    n = y.numel()
    if n == 0:
        return hidden.sum().float() * 0.0
    rows = chunk_rows(unembed, tile_elems)
    total = hidden.new_zeros((), dtype=torch.float32)
    for r in range(0, n, rows):
        hc, yc = h[r : r + rows], y[r : r + rows]
        if torch.is_grad_enabled() and hc.requires_grad:
            total = total + checkpoint(_chunk_ce_sum, unembed, hc, yc, use_reentrant=False)
        else:
            total = total + _chunk_ce_sum(unembed, hc, yc)
    return total / n


def causal_layer_losses(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor,
                        layers: list[int], tile_elems: int = CE_TILE_ELEMS,
                        located: tuple[DecoderParts, Unembed] | None = None) -> Tensor:
    """One forward pass; the mean response-token CE of each requested layer (0-based).

    The model's own logits are only produced for the last position (``logits_to_keep=1``); every
    layer, the last included, goes through :class:`Unembed` (for the last layer this equals the
    model's logits). Position ids follow the attention mask (right padding: 0, 1, 2, …).

    Args:
        model: a ``*ForCausalLM`` (or a peft wrapper of one).
        input_ids, attention_mask, labels: (B, T).
        layers: distinct 0-based layers.
        located: :func:`shared_unembed` of the plain model, when ``model`` is wrapped (DDP) and
            cannot be located itself.

    Returns:
        (len(layers),) float32, nats, in the order of ``layers``.
    """
    parts, unembed = located or shared_unembed(model)
    with capture_block_outputs(parts, layers) as store:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1)
    return torch.stack([layer_ce(unembed, store[i], labels, tile_elems) for i in layers])


@torch.no_grad()
def top1_labels(unembed: Unembed, hidden: Tensor, labels: Tensor, tile_elems: int = CE_TILE_ELEMS) -> Tensor:
    """Labels whose response positions hold one layer's own top-1 token instead of the reference.

    Position t's prediction (argmax of ``unembed(hidden[:, t])``) is written to ``labels[:, t + 1]``
    wherever that label is not −100, so :func:`layer_ce` against the result is the CE towards this
    layer's greedy token (hard self-distillation). No gradient flows into the targets.

    Args:
        unembed: final norm + head. hidden: (B, T, H) outputs of the teacher layer (the last block).
        labels: (B, T) int64, −100 where no loss.
        tile_elems: logit entries per chunk (rows × V), as in :func:`layer_ce`.

    Returns:
        (B, T) int64: a copy of ``labels`` with the response positions replaced.
    """
    out = labels.clone()
    keep = labels[:, 1:] != IGNORE_INDEX  # (B, T−1)
    h = hidden[:, :-1][keep]  # (N, H)
    if h.shape[0] == 0:
        return out
    rows = chunk_rows(unembed, tile_elems)
    top1 = torch.cat([unembed(h[r : r + rows]).argmax(dim=-1) for r in range(0, h.shape[0], rows)])
    shifted = out[:, 1:]
    shifted[keep] = top1.to(out.dtype)
    return out


def causal_distill_losses(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor,
                          layers: list[int], tile_elems: int = CE_TILE_ELEMS,
                          located: tuple[DecoderParts, Unembed] | None = None) -> Tensor:
    """One forward pass; the last layer's CE against the reference, every other layer's against the last's top-1.

    Args and returns as :func:`causal_layer_losses`; ``layers`` must include the last block
    (L − 1), the teacher.

    Raises:
        EEBenchError: when ``layers`` lacks the last block.
    """
    parts, unembed = located or shared_unembed(model)
    last = len(parts.layers) - 1
    if last not in layers:
        raise EEBenchError(f"joint-distill needs the last block ({last}) among the loss layers, got {layers}.")
    with capture_block_outputs(parts, layers) as store:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1)
    teacher = top1_labels(unembed, store[last].detach(), labels, tile_elems)
    return torch.stack([layer_ce(unembed, store[i], labels if i == last else teacher, tile_elems) for i in layers])


class CausalJointTrainer(Trainer):
    """``transformers.Trainer`` with the final or joint objective for causal LMs.

    Args:
        objective: ``final``, ``joint`` or ``joint-distill`` (module docstring).
        schedule: joint weight schedule (``uniform`` or ``increasing``, see
            :mod:`ee_bench.training.joint`); ignored for ``final``.
        sample_layers: k, the early layers sampled per step (LayerSkip-style), or None for all L−1.
        layer_seed: the seed of the layer sampling.
        *args, **kwargs: passed to ``Trainer``.

    Raises:
        EEBenchError: for an unknown objective or schedule, or k outside [1, L−1].
        ModelStructureError: for an architecture ee-bench cannot locate.
    """

    def __init__(self, *args, objective: str = "joint", schedule: str = "uniform", sample_layers: int | None = None,
                 layer_seed: int = 0, **kwargs):
        if objective not in CAUSAL_OBJECTIVES:
            raise EEBenchError(f"Unknown objective {objective!r}. Available: {', '.join(CAUSAL_OBJECTIVES)}")
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # our loss is a per-micro-batch mean: let Trainer scale it
        self.objective = objective
        self.located = shared_unembed(self.model)
        self.n_layers = len(self.located[0].layers)
        self.weights = layer_weights(self.n_layers, schedule)
        if sample_layers is not None and objective != "final":
            sample_early_layers(self.n_layers, sample_layers, layer_seed, 0)  # validates k
        self.sample_layers = sample_layers
        self.layer_seed = layer_seed

    def step_layers(self, step: int) -> tuple[list[int], Tensor]:
        """(layers carrying the loss, their weights) at a global optimiser step."""
        last = self.n_layers - 1
        if self.objective == "final":
            return [last], torch.ones(1)
        if self.sample_layers is None or self.sample_layers >= last:
            return list(range(self.n_layers)), self.weights
        layers = sample_early_layers(self.n_layers, self.sample_layers, self.layer_seed, step)
        return layers, sampled_layer_weights(self.weights, layers)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        inputs = dict(inputs)
        layers, weights = self.step_layers(self.state.global_step)
        losses_of = causal_distill_losses if self.objective == "joint-distill" else causal_layer_losses
        losses = losses_of(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"], layers,
                           located=self.located)
        loss = weighted_sum(losses, weights)
        return (loss, {"layer_losses": losses.detach()}) if return_outputs else loss
