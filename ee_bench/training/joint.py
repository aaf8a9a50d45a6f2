"""Fine-tuning objectives for encoder classifiers: final-layer only, or joint (paper §5, Table 9).

- ``final``: cross-entropy of the last layer's logits (ordinary fine-tuning; the paper's backbone).
- ``joint``: ``Σ_i w_i · CE(head(h^i[CLS]), y)`` over all L layers, through the model's *one shared*
  pooler and classifier (no extra output layers), in BranchyNet's weighted-sum form
  (Teerapittayanon et al., 2016; the paper's §5 "Loss = Σ w_i · Loss_i").

Weight schedules (``i`` = 1..L is the layer number; the weights are normalised to sum to 1, so the
joint loss is a weighted *mean* of the per-layer losses and has the same scale as the final-layer
loss, which keeps one learning rate meaningful for both objectives):

- ``uniform``: ``w_i = 1 / L``;
- ``increasing``: ``w_i = i / Σ_j j`` (deeper layers weigh more, as in PABEE's weighted average).

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
    losses = per_layer_losses(parts, outputs, labels)
    return (weights.to(losses.device) * losses).sum()


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
