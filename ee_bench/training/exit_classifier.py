"""Fit the early-exit classifier's probes (CALM §3.5; the gate is :mod:`ee_bench.exits.classifier_gate`).

Data: the per-layer records of documents run at full depth with hidden states kept (the oracle pass of
the analysis, :func:`ee_bench.evaluation.run_documents` with ``keep_hidden``). For exit layer ℓ every
output token is one example: features h^ℓ (the block output, before the final norm), label 1 where
``top1_ℓ = top1_{L−1}`` (the layer's top-1 already is the full model's). One logistic regression per
layer (scikit-learn's ``LogisticRegression``, L2, ``C``), on standardised features; the standardisation
is folded back into the weights so that the probe applies to raw h^ℓ. A layer whose tokens all carry the
same label gets a constant probe (w = 0, b = ±:data:`CONSTANT_LOGIT`): never or always fires.

Shape notation: L = blocks, N = tokens, H = hidden size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CONSTANT_LOGIT = 12.0
"""Bias of a constant probe (σ(12) ≈ 0.999994): a layer whose training tokens all agree (or all
disagree) with the final layer."""


@dataclass(frozen=True)
class ProbeFit:
    """One layer's fitted probe and how it did on its training tokens.

    Attributes:
        layer: ℓ. w: (H,) float32 weights on raw h^ℓ. b: bias. n_tokens: N. positive_rate: share of
            tokens with top1_ℓ = top1_{L−1}. train_accuracy: share classified right at p ≥ 0.5.
    """

    layer: int
    w: Tensor
    b: float
    n_tokens: int
    positive_rate: float
    train_accuracy: float

    def summary(self) -> dict:
        """The probe's figures without its weights (for provenance)."""
        return {"layer": self.layer, "n_tokens": self.n_tokens, "positive_rate": round(self.positive_rate, 4),
                "train_accuracy": round(self.train_accuracy, 4)}


def probe_labels(top1: Tensor) -> Tensor:
    """(L, N) bool: top1_ℓ = top1_{L−1} (the label of the probe of layer ℓ), from (L, N) int64 top-1 ids."""
    return top1 == top1[-1:]


def fit_probes(hidden: Tensor, top1: Tensor, layers: Iterable[int] | None = None, c: float = 1.0,
               seed: int = 0) -> list[ProbeFit]:
    """One logistic-regression probe per exit layer.

    Args:
        hidden: (L, N, H) block outputs. top1: (L, N) int64 top-1 ids of every layer.
        layers: the exit layers to fit (default 0 … L−2). c: inverse L2 strength (scikit-learn's ``C``).
        seed: the solver's random state.

    Returns:
        One :class:`ProbeFit` per layer, in layer order.

    Raises:
        ValueError: mismatched shapes, no tokens, or a layer outside 0 … L−2.
    """
    from sklearn.linear_model import (
        LogisticRegression,  # optional heavy dependency: scikit-learn
    )

    L, N = top1.shape
    if hidden.shape[:2] != (L, N):
        raise ValueError(f"hidden has shape {tuple(hidden.shape)}, expected ({L}, {N}, H)")
    if N == 0:
        raise ValueError("no output tokens to fit the probes on")
    layers = list(range(L - 1)) if layers is None else sorted({int(x) for x in layers})
    if any(not 0 <= x < L - 1 for x in layers):
        raise ValueError(f"probe layers {layers} must lie in 0..{L - 2} (the last layer always exits)")
    labels = probe_labels(top1).numpy()
    fits = []
    for layer in layers:
        x = hidden[layer].double().numpy()  # (N, H)
        y = labels[layer]
        rate = float(y.mean())
        if y.all() or not y.any():
            fits.append(ProbeFit(layer, torch.zeros(x.shape[1]), CONSTANT_LOGIT if y.all() else -CONSTANT_LOGIT, N,
                                 rate, 1.0))
            continue
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit((x - mean) / scale, y)
        w = clf.coef_[0] / scale  # folded standardisation: w·(x−μ)/σ + b = (w/σ)·x + (b − Σ w μ/σ)
        b = float(clf.intercept_[0] - np.dot(clf.coef_[0], mean / scale))
        acc = float(((x @ w + b >= 0) == y).mean())
        fits.append(ProbeFit(layer, torch.tensor(w, dtype=torch.float32), b, N, rate, acc))
    return fits
