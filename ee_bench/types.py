"""Shared data types passed between the pipeline stages.

Shape notation: L = exits (one per decoder/encoder block), B = batch, T = positions (generated
tokens, or 1 for a classifier), N = tokens after flattening the valid (B, T) entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LayerStats:
    """Per-layer next-token statistics (paper §3.2 and §4).

    Row ℓ is ``head(final_norm(h^ℓ))`` reduced to what the oracle and the gates need; row L−1
    reproduces the model's own output. Layers are 0-based.

    Attributes:
        top1: (L, N) int64, argmax token at each exit.
        top1_prob: (L, N) float32, softmax probability of that token, in [0, 1] (the confidence).
        entropy: (L, N) float32, entropy of the softmax, in nats.
    """

    top1: Tensor  # (L, N) int64
    top1_prob: Tensor  # (L, N) float32
    entropy: Tensor  # (L, N) float32

    def __post_init__(self) -> None:
        if self.top1.dim() != 2:
            raise ValueError(f"LayerStats.top1 must be (L, N), got shape {tuple(self.top1.shape)}")
        shape = tuple(self.top1.shape)
        for name in ("top1_prob", "entropy"):
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"LayerStats.{name} has shape {got}, expected {shape}")

    @property
    def n_layers(self) -> int:
        return int(self.top1.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.top1.shape[1])

    def select(self, index: Tensor | slice) -> LayerStats:
        """The statistics of a subset of tokens (columns)."""
        return LayerStats(self.top1[:, index], self.top1_prob[:, index], self.entropy[:, index])

    @staticmethod
    def cat(parts: list[LayerStats]) -> LayerStats:
        """Concatenate along tokens; every part must have the same number of layers."""
        if not parts:
            raise ValueError("LayerStats.cat needs at least one part")
        return LayerStats(
            torch.cat([p.top1 for p in parts], dim=1),
            torch.cat([p.top1_prob for p in parts], dim=1),
            torch.cat([p.entropy for p in parts], dim=1),
        )

    @staticmethod
    def stack(per_layer: Sequence[tuple[Tensor, Tensor, Tensor]]) -> LayerStats:
        """Assemble (L, N) statistics, on the CPU, from L per-layer (top1, top1_prob, entropy) triples.

        The one place per-layer reductions (``Unembed.reduce``, ``reduce_logits``) become a
        :class:`LayerStats`: each triple holds (N,) tensors on any device, probability and entropy
        in any float dtype (stored as float32).
        """
        top1, prob, ent = (torch.stack([p[k] for p in per_layer]).cpu() for k in range(3))  # (L, N)
        return LayerStats(top1, prob.float(), ent.float())


@dataclass(frozen=True)
class DocRecord:
    """Everything ee-bench keeps about one evaluated document (one row of the samples JSONL).

    Produced by the task runners (generation, multiple choice, encoder classification) and consumed,
    whatever the task type, by the oracle/gate analysis and the metrics.

    Attributes:
        doc_id: index of the document in the task's test split.
        prompt: the rendered prompt (after the chat template, if any).
        prompt_token_ids: its token ids.
        output_text: generated text (stop string removed), or the chosen label word.
        output_token_ids: the N generated token ids (for multiple choice: the chosen label's id).
        prediction: what the metrics score: output text, or the predicted label index.
        references: one or more references (strings, or the gold label index).
        stats: (L, N) per-layer statistics of the N output tokens (N = 1 for classification).
        hidden: (L, N, H) block outputs, kept only for gates that read hidden states.
        embeddings: (N, H) block-0 inputs, kept only with ``hidden``.
        extra: task-specific fields written to the samples file (e.g. per-choice log-likelihoods).
    """

    doc_id: int
    prompt: str
    prompt_token_ids: list[int]
    output_text: str
    output_token_ids: list[int]
    prediction: object
    references: list
    stats: LayerStats
    hidden: Tensor | None = None
    embeddings: Tensor | None = None
    extra: dict | None = None
