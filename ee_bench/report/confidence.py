"""Confidence per layer and agreement with the last layer, from the logged statistics (paper Fig. 3–4).

What the logged top-1 statistics give, per layer ℓ (0-based), averaged over output tokens:

- confidence: the top-1 probability max_v p_ℓ(v) (Fig. 4);
- entropy of p_ℓ, nats;
- top-1 agreement with the last layer: share of tokens whose top-1 at ℓ is the final top-1.

The layer-to-last KL and JS divergences (Fig. 3's distribution similarity) and the cosine similarity
of hidden states need the full distributions or the hidden states, which runs do not log: they need
the model (``ee-bench inspect``).
"""

from __future__ import annotations

from dataclasses import dataclass

NEEDS_MODEL = ("layer-to-last KL divergence", "layer-to-last JS divergence", "cosine similarity of hidden states")


@dataclass(frozen=True)
class LayerCurves:
    """Per-layer means over a run's output tokens.

    Attributes:
        source: where they come from ("sidecar", or "samples top1_prob" for older runs, whose
            probabilities are rounded to 6 decimals).
        n_tokens: tokens averaged. confidence: (L,) mean top-1 probability.
        entropy: (L,) mean entropy, nats, or None. agreement: (L,) share (0–1) of tokens whose top-1
            equals the final layer's, or None.
    """

    source: str
    n_tokens: int
    confidence: list[float]
    entropy: list[float] | None
    agreement: list[float] | None


def layer_curves(run) -> LayerCurves | None:
    """The curves of a :class:`~ee_bench.report.runs.Run`, or None if it logged no per-layer values."""
    if run.side is not None and run.side.stats.n_tokens:
        s = run.side.stats
        prob, ent = s.top1_prob.double(), s.entropy.double()
        agree = (s.top1 == s.top1[-1:]).double()
        return LayerCurves("sidecar", s.n_tokens, prob.mean(1).tolist(), ent.mean(1).tolist(), agree.mean(1).tolist())
    per_token = [tok for r in run.rows or [] for tok in r.get("top1_prob", [])]  # (N, L) in older samples
    if not per_token:
        return None
    L = len(per_token[0])
    conf = [sum(t[layer] for t in per_token) / len(per_token) for layer in range(L)]
    return LayerCurves("samples top1_prob (rounded to 6 decimals)", len(per_token), conf, None, None)
