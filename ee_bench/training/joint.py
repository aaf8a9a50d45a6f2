"""Fine-tuning objectives: final-layer only, or joint (paper §5, Table 9; §6 for decoders).

This module is the one place for the joint objective's weighting, shared by encoders (below) and
causal LMs (:mod:`ee_bench.training.causal_joint`, which adds the per-token, per-layer cross-entropy):
:func:`layer_weights`, :func:`sample_early_layers` / :func:`sampled_layer_weights` (LayerSkip's
stochastic early-exit loss) and :func:`weighted_sum`.

- ``final``: cross-entropy of the last layer's logits (ordinary fine-tuning; the paper's backbone).
- ``joint``: ``Σ_i w_i · CE(head(h^i[CLS]), y)`` over all L layers, through the model's *one shared*
  pooler and classifier (no extra output layers), in BranchyNet's weighted-sum form
  (Teerapittayanon et al., 2016; the paper's §5 "Loss = Σ w_i · Loss_i").

Weight schedules (``i`` = 1..L is the layer number; the weights are normalised to sum to 1, so the
joint loss is a weighted *mean* of the per-layer losses and has the same scale as the final-layer
loss, which keeps one learning rate meaningful for both objectives):

- ``uniform``: ``w_i = 1 / L``;
- ``increasing``: ``w_i = i / Σ_j j`` (deeper layers weigh more, as in PABEE's weighted average).

Layer sampling: LayerSkip (Elhoushi et al., 2024) turns the early-exit loss on for only a subset of
the layers at each iteration (its early-exit "curriculum"); ee-bench draws that subset uniformly at
random, so at a training step only k of the L−1 early layers pay the head cost, plus always the last
layer. The k layers are the first k entries of ``torch.randperm(L − 1, generator=g)`` with
``g = torch.Generator().manual_seed(seed + step)`` (``step`` = the Trainer's global optimiser step,
so every process and every micro-batch of one step draws the same layers). Their weights are
rescaled so that the sampled loss is an unbiased estimate of the full joint loss:
``v_{L−1} = w_{L−1}``, ``v_i = w_i · (L − 1) / k`` for a sampled early layer i, 0 otherwise
(E[Σ v_i · CE_i] = Σ w_i · CE_i over the uniform choice of k layers). With k = L − 1 this is the full
joint loss.

Training uses ``transformers.Trainer``; :class:`JointTrainer` only replaces ``compute_loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import Trainer

from ee_bench.errors import EEBenchError
from ee_bench.models.encoder_arch import EncoderParts, locate_encoder_parts

OBJECTIVES = ("final", "joint")
SCHEDULES = {
    "uniform": lambda n: [1.0] * n,
    "increasing": lambda n: [float(i) for i in range(1, n + 1)],
}


def layer_weights(n_layers: int, schedule: str) -> Tensor:
    """Normalised per-layer loss weights ``w`` (see the module docstring).

    Returns:
        (L,) float32, non-negative, summing to 1.

    Raises:
        EEBenchError: for an unknown schedule or n_layers < 1.
    """
    if schedule not in SCHEDULES:
        raise EEBenchError(f"Unknown weight schedule {schedule!r}. Available: {', '.join(SCHEDULES)}")
    if n_layers < 1:
        raise EEBenchError("n_layers must be >= 1")
    w = torch.tensor(SCHEDULES[schedule](n_layers), dtype=torch.float32)
    return w / w.sum()


def sample_early_layers(n_layers: int, k: int, seed: int, step: int) -> list[int]:
    """The 0-based layers that carry the loss at one training step (module docstring).

    Args:
        n_layers: L. k: early layers sampled, 1 ≤ k ≤ L − 1. seed: the run's seed. step: the
            global optimiser step (≥ 0).

    Returns:
        Sorted layers: k distinct early layers in [0, L − 1) and then L − 1.

    Raises:
        EEBenchError: if k is outside [1, L − 1].
    """
    if not 1 <= k <= n_layers - 1:
        raise EEBenchError(f"--sample-layers must be between 1 and L−1 = {n_layers - 1} for a {n_layers}-layer "
                           f"model, got {k}; omit it to train every layer")
    g = torch.Generator().manual_seed(int(seed) + int(step))
    return sorted(torch.randperm(n_layers - 1, generator=g)[:k].tolist()) + [n_layers - 1]


def sampled_layer_weights(weights: Tensor, layers: list[int]) -> Tensor:
    """Weights ``v`` of the sampled layers (module docstring): (L,) → (len(layers),), aligned with
    ``layers`` (whose last entry is L − 1); early weights scaled by (L − 1) / k."""
    n = weights.shape[0]
    k = len(layers) - 1
    scale = torch.tensor([(n - 1) / k if i < n - 1 else 1.0 for i in layers], dtype=weights.dtype) if k else \
        torch.ones(len(layers), dtype=weights.dtype)
    return weights[layers] * scale


def weighted_sum(losses: Tensor, weights: Tensor) -> Tensor:
    """``Σ_i w_i · loss_i``, a scalar; ``losses`` and ``weights`` are (n,)."""
    return (weights.to(losses.device, losses.dtype) * losses).sum()


def all_layer_logits(parts: EncoderParts, outputs) -> list[Tensor]:
    """Class logits of every layer from a forward pass run with ``output_hidden_states=True``.

    Layers 0..L−2 go through the shared head (``parts.head``, dropout active in training mode);
    layer L−1 is the model's own ``outputs.logits``.

    Returns:
        L tensors (B, C).
    """
    hs = outputs.hidden_states  # L+1 tensors (B, T, H); [0] = embeddings
    n = len(parts.layers)
    return [parts.head(hs[i + 1][:, 0]) for i in range(n - 1)] + [outputs.logits]


def per_layer_losses(parts: EncoderParts, outputs, labels: Tensor) -> Tensor:
    """Mean cross-entropy (nats) of every layer's logits against ``labels`` ((B,) int64) → (L,)."""
    return torch.stack([F.cross_entropy(z.float(), labels) for z in all_layer_logits(parts, outputs)])


def joint_loss(parts: EncoderParts, outputs, labels: Tensor, weights: Tensor) -> Tensor:
    """``Σ_i w_i · CE_i`` (nats), a scalar; ``weights`` is (L,)."""
    return weighted_sum(per_layer_losses(parts, outputs, labels), weights)


class JointTrainer(Trainer):
    """``transformers.Trainer`` with the final or joint objective.

    Args:
        objective: ``final`` or ``joint``.
        schedule: the joint weight schedule (``uniform`` or ``increasing``); ignored for ``final``.
        *args, **kwargs: passed to ``Trainer``.

    Raises:
        EEBenchError: for an unknown objective or schedule, or an unsupported model type.
    """

    def __init__(self, *args, objective: str = "joint", schedule: str = "uniform", **kwargs):
        if objective not in OBJECTIVES:
            raise EEBenchError(f"Unknown objective {objective!r}. Available: {', '.join(OBJECTIVES)}")
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.parts = locate_encoder_parts(self.model)
        self.weights = layer_weights(len(self.parts.layers), schedule)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        if self.objective == "final":
            outputs = model(**inputs)
            loss = F.cross_entropy(outputs.logits.float(), labels)
        else:
            outputs = model(**inputs, output_hidden_states=True)
            loss = joint_loss(self.parts, outputs, labels, self.weights)
        return (loss, outputs) if return_outputs else loss
