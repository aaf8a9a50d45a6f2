"""Fit the early-exit classifier's probes (CALM §3.5; the gate is :mod:`ee_bench.exits.classifier_gate`).

Data: the per-layer records of documents run at full depth with hidden states kept (the oracle pass of
the analysis, :func:`ee_bench.evaluation.run_documents` with ``keep_hidden``). For exit layer ℓ every
output token is one example: features h^ℓ (the block output, before the final norm), label 1 where
``top1_ℓ = top1_{L−1}`` (the layer's top-1 already is the full model's). One logistic regression per
layer (scikit-learn's ``LogisticRegression``, L2, ``C``), on standardised features; the standardisation
is folded back into the weights so that the probe applies to raw h^ℓ.

Held-out figures: given each token's document (``groups``), the tokens are split into ``folds`` folds by
document (scikit-learn's ``GroupKFold``: a document's tokens never sit on both sides) and each probe's
held-out accuracy and log loss are measured on them. With ``c="auto"`` the inverse L2 strength is chosen
per layer from :data:`AUTO_CS` by that held-out log loss (``LogisticRegressionCV``), then the probe is
refitted on every token. The gate thresholds a probability, so log loss (calibration), not accuracy,
picks ``C``. With 576 features and a few thousand tokens an unregularised probe memorises its training
tokens (training accuracy 0.98–0.999 at layers whose held-out accuracy is lower); the held-out figure
is the one to read. A layer whose tokens all carry the
same label gets a constant probe (w = 0, b = ±:data:`CONSTANT_LOGIT`): never or always fires.

Shape notation: L = blocks, N = tokens, H = hidden size.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CONSTANT_LOGIT = 12.0
"""Bias of a constant probe (σ(12) ≈ 0.999994): a layer whose training tokens all agree (or all
disagree) with the final layer."""

AUTO_CS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
"""The inverse L2 strengths ``c="auto"`` chooses from (on standardised features)."""


@dataclass(frozen=True)
class ProbeFit:
    """One layer's fitted probe and how it did on its training tokens.

    Attributes:
        layer: ℓ. w: (H,) float32 weights on raw h^ℓ. b: bias. n_tokens: N. positive_rate: share of
            tokens with top1_ℓ = top1_{L−1}. train_accuracy: share classified right at p ≥ 0.5.
        c: the inverse L2 strength used. heldout_accuracy / heldout_log_loss: the same probe (same
            ``c``) fitted on the other folds, scored on each fold's tokens (None without groups).
    """

    layer: int
    w: Tensor
    b: float
    n_tokens: int
    positive_rate: float
    train_accuracy: float
    c: float | None = None
    heldout_accuracy: float | None = None
    heldout_log_loss: float | None = None

    def summary(self) -> dict:
        """The probe's figures without its weights (for provenance)."""
        out = {"layer": self.layer, "n_tokens": self.n_tokens, "positive_rate": round(self.positive_rate, 4),
               "train_accuracy": round(self.train_accuracy, 4)}
        if self.c is not None:
            out["C"] = self.c
        if self.heldout_accuracy is not None:
            out["heldout_accuracy"] = round(self.heldout_accuracy, 4)
            out["heldout_log_loss"] = round(self.heldout_log_loss, 4)
        return out


def probe_labels(top1: Tensor) -> Tensor:
    """(L, N) bool: top1_ℓ = top1_{L−1} (the label of the probe of layer ℓ), from (L, N) int64 top-1 ids."""
    return top1 == top1[-1:]


def fit_probes(hidden: Tensor, top1: Tensor, layers: Iterable[int] | None = None, c: float | str = 1.0,
               seed: int = 0, groups: Sequence[int] | None = None, folds: int = 5) -> list[ProbeFit]:
    """One logistic-regression probe per exit layer.

    Args:
        hidden: (L, N, H) block outputs. top1: (L, N) int64 top-1 ids of every layer.
        layers: the exit layers to fit (default 0 … L−2). c: inverse L2 strength (scikit-learn's ``C``),
            or ``"auto"``: per layer, the :data:`AUTO_CS` value with the lowest held-out log loss.
        seed: the solver's random state.
        groups: (N,) the document of each token; with it every probe gets held-out figures over
            ``folds`` document-disjoint folds (scikit-learn's ``GroupKFold``). Required by ``"auto"``.
        folds: the number of folds (at most the number of documents).

    Returns:
        One :class:`ProbeFit` per layer, in layer order.

    Raises:
        ValueError: mismatched shapes, no tokens, a layer outside 0 … L−2, ``c`` neither positive nor
            ``"auto"``, ``"auto"`` without groups, or fewer documents than folds.
    """
    from sklearn.linear_model import (  # optional heavy dependency: scikit-learn
        LogisticRegression,
        LogisticRegressionCV,
    )
    from sklearn.model_selection import GroupKFold

    L, N = top1.shape
    if hidden.shape[:2] != (L, N):
        raise ValueError(f"hidden has shape {tuple(hidden.shape)}, expected ({L}, {N}, H)")
    if N == 0:
        raise ValueError("no output tokens to fit the probes on")
    layers = list(range(L - 1)) if layers is None else sorted({int(x) for x in layers})
    if any(not 0 <= x < L - 1 for x in layers):
        raise ValueError(f"probe layers {layers} must lie in 0..{L - 2} (the last layer always exits)")
    auto = c == "auto"
    if not auto and not (isinstance(c, (int, float)) and 0 < c < float("inf")):
        raise ValueError(f"c must be a positive number or 'auto', got {c!r}")
    splits = None
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (N,):
            raise ValueError(f"groups has shape {groups.shape}, expected ({N},): one document id per token")
        if len(np.unique(groups)) < folds:
            raise ValueError(f"{len(np.unique(groups))} documents cannot fill {folds} folds; fit on more documents")
        splits = list(GroupKFold(n_splits=folds).split(np.zeros(N), groups=groups))
    elif auto:
        raise ValueError("c='auto' chooses C on held-out documents: pass groups (each token's document)")
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
        z = (x - mean) / scale
        usable = splits is not None and all(len(np.unique(y[tr])) == 2 for tr, _ in splits)
        if auto and usable:
            with warnings.catch_warnings():  # scikit-learn 1.9 announces default changes that do not touch L2
                warnings.simplefilter("ignore", FutureWarning)
                cv = LogisticRegressionCV(Cs=list(AUTO_CS), cv=splits, scoring="neg_log_loss", max_iter=2000,
                                          random_state=seed).fit(z, y)
            layer_c = float(np.atleast_1d(cv.C_)[0])
        else:
            layer_c = 1.0 if auto else float(c)  # "auto" on a layer a fold leaves one-class: the default
        clf = LogisticRegression(C=layer_c, max_iter=2000, random_state=seed).fit(z, y)
        w = clf.coef_[0] / scale  # folded standardisation: w·(x−μ)/σ + b = (w/σ)·x + (b − Σ w μ/σ)
        b = float(clf.intercept_[0] - np.dot(clf.coef_[0], mean / scale))
        acc = float(((x @ w + b >= 0) == y).mean())
        h_acc = h_loss = None
        if usable:
            h_acc, h_loss = _heldout(z, y, splits, layer_c, seed)
        fits.append(ProbeFit(layer, torch.tensor(w, dtype=torch.float32), b, N, rate, acc, layer_c, h_acc, h_loss))
    return fits


def _heldout(z: np.ndarray, y: np.ndarray, splits, c: float, seed: int) -> tuple[float, float]:
    """Accuracy (p ≥ 0.5) and mean log loss of ``LogisticRegression(C=c)`` over document-disjoint folds,
    pooled over every token (each token scored by the probe that did not see its document)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    p = np.empty(len(y))
    for train, test in splits:
        p[test] = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(z[train], y[train]).predict_proba(
            z[test])[:, 1]
    return float(((p >= 0.5) == y).mean()), float(log_loss(y, p, labels=[False, True]))
