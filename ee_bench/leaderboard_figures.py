"""Per-run figures of the HTML leaderboard (matplotlib, PNG).

PNG, not SVG: a histogram of thousands of tokens and a sweep with error bars stay a few tens of kB
whatever the number of points, every browser and file viewer shows them, and ``ee-bench similarity``
already writes PNG. Each function writes one file and returns its path; inputs come from one results
file (and its samples file for the per-token histogram).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DPI = 100
SIZE = (5.6, 3.4)  # inches


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version stamp: same input, same bytes
    _pyplot().close(fig)
    return path


def exit_histogram(first_match: list[int], saturation: list[int], n_layers: int, title: str, path: Path) -> Path:
    """Bar chart: % of output tokens whose oracle exit layer is ℓ, for ℓ = 0 … L−1 (paper §4).

    Args:
        first_match / saturation: per-token 0-based oracle layers (all documents of a run).
        n_layers: L.

    Raises:
        ValueError: on no tokens, or a layer outside [0, L−1].
    """
    import numpy as np

    if not first_match or len(first_match) != len(saturation):
        raise ValueError("the histogram needs the same, non-zero number of first-match and saturation layers")
    fm, sat = np.asarray(first_match), np.asarray(saturation)
    if min(fm.min(), sat.min()) < 0 or max(fm.max(), sat.max()) > n_layers - 1:
        raise ValueError(f"oracle layers must lie in [0, {n_layers - 1}]")
    x = np.arange(n_layers)
    pct = lambda a: 100.0 * np.bincount(a, minlength=n_layers) / a.size  # noqa: E731
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    ax.bar(x - 0.2, pct(fm), width=0.4, label="first-match")
    ax.bar(x + 0.2, pct(sat), width=0.4, label="saturation")
    ax.set_xlabel("oracle exit layer (0-based)")
    ax.set_ylabel("% of output tokens")
    ax.set_title(f"{title} ({fm.size} tokens)", fontsize=9, parse_math=False)
    ax.legend(fontsize=8)
    return _save(fig, path)


def gate_tradeoff(sweep: list[dict[str, Any]], intervals: list[dict[str, Any]] | None, chosen: float, title: str,
                  path: Path) -> Path:
    """Gate accuracy (%) against mean layers run, one point per threshold of the sweep (paper §3.2),
    with the bootstrap intervals as error bars where the results hold them.

    Args:
        sweep: the results' ``gate_sweep`` entries; intervals: ``intervals.gate_sweep`` or None.
        chosen: the threshold reported in the table (ringed).
    """
    plt = _pyplot()
    pts = sorted(sweep, key=lambda s: s["mean_layers_run"])
    by_tau = {iv["threshold"]: iv for iv in (intervals or [])}
    fig, ax = plt.subplots(figsize=SIZE)
    xs = [s["mean_layers_run"] for s in pts]
    ys = [s["accuracy"] for s in pts]
    ax.plot(xs, ys, marker="o", ms=4)
    for s in pts:
        iv = by_tau.get(s["threshold"])
        if iv:
            xe = [[s["mean_layers_run"] - iv["mean_layers_run"]["low"]], [iv["mean_layers_run"]["high"] - s["mean_layers_run"]]]
            ye = [[s["accuracy"] - iv["accuracy"]["low"]], [iv["accuracy"]["high"] - s["accuracy"]]]
            ax.errorbar([s["mean_layers_run"]], [s["accuracy"]], xerr=xe, yerr=ye, color="grey", lw=0.8, capsize=2)
        ax.annotate(f"{s['threshold']:g}", (s["mean_layers_run"], s["accuracy"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 3))
        if s["threshold"] == chosen:
            ax.plot([s["mean_layers_run"]], [s["accuracy"]], "o", ms=10, mfc="none", color="red")
    ax.set_xlabel("mean layers run")
    ax.set_ylabel("gate accuracy %")
    ax.set_title(title + (" (95 % bootstrap bars)" if intervals else ""), fontsize=9, parse_math=False)
    return _save(fig, path)


def quality_vs_speedup(measured: dict[str, dict[str, Any]], title: str, path: Path) -> Path | None:
    """Early-exit quality against measured per-token speed-up, one point per KV strategy, and the
    full-depth point (speed-up 1). Returns None when no report holds both a speed-up and a quality."""
    plt = _pyplot()
    pts = []
    full = None
    for kv, rep in sorted(measured.items()):
        q = rep.get("quality") if isinstance(rep, dict) else None
        sp = rep.get("per_token_speedup") if isinstance(rep, dict) else None
        if not q or sp is None:
            continue
        metric = sorted(q)[0]
        pts.append((kv, float(sp), q[metric].get("early_exit"), metric))
        full = q[metric].get("full")
    pts = [p for p in pts if p[2] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    for kv, sp, q, _ in pts:
        ax.plot([sp], [q], "o")
        ax.annotate(kv, (sp, q), fontsize=8, textcoords="offset points", xytext=(4, 4), parse_math=False)
    if full is not None:
        ax.plot([1.0], [full], "s", color="black")
        ax.annotate("full depth", (1.0, full), fontsize=8, textcoords="offset points", xytext=(4, -10))
    ax.set_xlabel("measured speed-up (tokens/s ratio)")
    ax.set_ylabel(pts[0][3])
    ax.set_title(title, fontsize=9, parse_math=False)
    return _save(fig, path)
