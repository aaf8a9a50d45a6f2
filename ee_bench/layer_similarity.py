"""Layer similarity of encoder classifiers (paper §5.1, Fig. 3 and 4).

For N examples, per-layer class distributions ``p_ℓ`` (softmax of the shared head's logits at layer
ℓ) and per-layer first-token hidden states ``h_ℓ`` (the ``[CLS]``/``<s>`` state the head reads),
ℓ = 0..L−1 (0-based):

- distribution similarity, in nats: ``KL(p_a ‖ p_b) = Σ_c p_a(c) · ln(p_a(c) / p_b(c))`` and
  ``JS(p_a, p_b) = ½ KL(p_a ‖ m) + ½ KL(p_b ‖ m)`` with ``m = ½(p_a + p_b)`` (bounded by ln 2);
- hidden-state similarity: cosine similarity, and the Pearson correlation across the H hidden
  dimensions (the cosine of the mean-centred vectors);
- the mean confidence ``mean_n max_c p_ℓ(c)`` of each layer (Fig. 4).

Pairs: *to last* compares layer ℓ with the final layer (``KL(p_{L−1} ‖ p_ℓ)``: what the final
distribution loses when approximated by layer ℓ), *consecutive* compares ℓ with ℓ+1
(``KL(p_{ℓ+1} ‖ p_ℓ)``). Every measure is averaged over the N examples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor


def kl_divergence(p: Tensor, q: Tensor) -> Tensor:
    """``KL(p ‖ q)`` in nats over the last dimension.

    Args:
        p, q: (..., C) probability distributions (rows sum to 1). Terms with p = 0 count 0.

    Returns:
        (...) float64, ≥ 0 (``inf`` where q = 0 < p).
    """
    p, q = p.double(), q.double()
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1)


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Jensen–Shannon divergence in nats over the last dimension: (..., C) × (..., C) → (...), in [0, ln 2]."""
    m = 0.5 * (p.double() + q.double())
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity over the last dimension: (..., H) × (..., H) → (...) float64 in [−1, 1]."""
    a, b = a.double(), b.double()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-300)


def pearson_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation across the last dimension (the H hidden units): (..., H) × (..., H) → (...)."""
    a, b = a.double(), b.double()
    return cosine_similarity(a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True))


@dataclass(frozen=True)
class LayerSimilarity:
    """Per-layer similarity profile of one model on N examples (all lists have L entries, 0-based).

    ``*_to_last[ℓ]`` compares layer ℓ with layer L−1 (so entry L−1 is 0 for divergences and 1 for
    similarities); ``*_next[ℓ]`` compares ℓ with ℓ+1 (entry L−1 is None). Divergences in nats.
    """

    name: str
    n_examples: int
    n_layers: int
    mean_confidence: list[float]
    kl_to_last: list[float]
    js_to_last: list[float]
    cosine_to_last: list[float]
    pearson_to_last: list[float]
    kl_next: list[float | None]
    js_next: list[float | None]
    cosine_next: list[float | None]
    pearson_next: list[float | None]

    def to_dict(self) -> dict:
        return asdict(self)


MEASURES = ("mean_confidence", "kl_to_last", "js_to_last", "cosine_to_last", "pearson_to_last",
            "kl_next", "js_next", "cosine_next", "pearson_next")


def layer_similarity(probs: Tensor, hidden: Tensor, name: str = "model") -> LayerSimilarity:
    """Similarity profile from per-layer distributions and hidden states.

    Args:
        probs: (L, N, C) per-layer class probabilities.
        hidden: (L, N, H) per-layer first-token hidden states.
        name: label for tables and plots.

    Raises:
        ValueError: if the shapes disagree or N = 0.
    """
    if probs.dim() != 3 or hidden.dim() != 3 or probs.shape[:2] != hidden.shape[:2]:
        raise ValueError(f"need probs (L, N, C) and hidden (L, N, H) with the same L, N; got "
                         f"{tuple(probs.shape)} and {tuple(hidden.shape)}")
    L, N = probs.shape[:2]
    if N == 0:
        raise ValueError("no examples")
    mean = lambda x: [float(v) for v in x.mean(-1)]  # (L', N) -> L' floats  # noqa: E731
    last_p, last_h = probs[-1:].expand_as(probs), hidden[-1:].expand_as(hidden)
    nxt = lambda x: x + [None]  # noqa: E731
    return LayerSimilarity(
        name=name, n_examples=int(N), n_layers=int(L),
        mean_confidence=mean(probs.double().max(-1).values),
        kl_to_last=mean(kl_divergence(last_p, probs)),
        js_to_last=mean(js_divergence(probs, last_p)),
        cosine_to_last=mean(cosine_similarity(hidden, last_h)),
        pearson_to_last=mean(pearson_correlation(hidden, last_h)),
        kl_next=nxt(mean(kl_divergence(probs[1:], probs[:-1]))),
        js_next=nxt(mean(js_divergence(probs[:-1], probs[1:]))),
        cosine_next=nxt(mean(cosine_similarity(hidden[:-1], hidden[1:]))),
        pearson_next=nxt(mean(pearson_correlation(hidden[:-1], hidden[1:]))),
    )


def format_table(profiles: list[LayerSimilarity], floatfmt: str = ".3f") -> str:
    """One row per layer; with two profiles each cell reads ``A → B`` (the paper's Table 9 style).

    Raises:
        ValueError: for zero or more than two profiles, or profiles with different L.
    """
    from tabulate import tabulate

    if not 1 <= len(profiles) <= 2 or len({p.n_layers for p in profiles}) != 1:
        raise ValueError("give one or two profiles with the same number of layers")
    cell = lambda v: "" if v is None else format(v, floatfmt)  # noqa: E731
    headers = ["layer", "conf", "KL→last", "JS→last", "cos→last", "r→last", "KL→next", "JS→next", "cos→next", "r→next"]
    rows = []
    for layer in range(profiles[0].n_layers):
        row = [layer]
        for m in MEASURES:
            vals = [cell(getattr(p, m)[layer]) for p in profiles]
            row.append(" → ".join(vals) if any(vals) else "")
        rows.append(row)
    title = " → ".join(f"{p.name} (N={p.n_examples})" for p in profiles)
    return f"{title}\n" + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def plot_profiles(profiles: list[LayerSimilarity], path: str, title: str = "") -> str:
    """Line plots (one line per model) of every measure against the 0-based layer; writes a PNG.

    Top row: each layer against the last layer, plus the mean confidence. Bottom row: consecutive
    layers (ℓ, ℓ+1). Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        [("kl_to_last", "KL(p_last ‖ p_ℓ), nats"), ("js_to_last", "JS(p_ℓ, p_last), nats"),
         ("cosine_to_last", "cosine(h_ℓ, h_last)"), ("pearson_to_last", "Pearson(h_ℓ, h_last)"),
         ("mean_confidence", "mean confidence max p_ℓ")],
        [("kl_next", "KL(p_ℓ+1 ‖ p_ℓ), nats"), ("js_next", "JS(p_ℓ, p_ℓ+1), nats"),
         ("cosine_next", "cosine(h_ℓ, h_ℓ+1)"), ("pearson_next", "Pearson(h_ℓ, h_ℓ+1)"), None],
    ]
    fig, axes = plt.subplots(2, 5, figsize=(20, 7.5), constrained_layout=True)
    markers = ["o", "s", "^", "D"]
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            ax = axes[r][c]
            if panel is None:
                ax.axis("off")
                continue
            key, label = panel
            for i, prof in enumerate(profiles):
                ys = getattr(prof, key)
                xs = [x for x, y in enumerate(ys) if y is not None]
                ax.plot(xs, [ys[x] for x in xs], marker=markers[i % len(markers)], label=prof.name)
            ax.set_title(label, fontsize=11)
            ax.set_xlabel("layer ℓ (0-based)")
            ax.set_xticks(range(profiles[0].n_layers))
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=10)
    fig.suptitle(title or "Layer similarity (paper §5.1, Fig. 3–4): top = vs last layer, bottom = consecutive layers",
                 fontsize=13)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def profile_model(model, texts: list[tuple[str, ...]], batch_size: int = 32, name: str | None = None) -> LayerSimilarity:
    """Run an :class:`~ee_bench.models.hf_encoder.HFEncoderClassifier` on examples and profile it.

    Args:
        model: the encoder wrapper. texts: N examples of one or two text fields.
        batch_size: examples per forward pass.

    Raises:
        ValueError: if ``texts`` is empty.
    """
    if not texts:
        raise ValueError("no examples")
    probs, hidden = [], []
    for start in range(0, len(texts), batch_size):
        an = model.layer_logits(model.encode(texts[start : start + batch_size]), keep_hidden=True)
        probs.append(an.logits.softmax(-1))  # (L, B, C)
        hidden.append(an.hidden)  # (L, B, H)
    return layer_similarity(torch.cat(probs, dim=1), torch.cat(hidden, dim=1), name or model.name)
