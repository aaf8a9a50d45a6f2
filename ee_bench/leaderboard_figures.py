"""Per-run figures of the HTML leaderboard (matplotlib, PNG).

PNG, not SVG: a histogram of thousands of tokens and a sweep with error bars stay a few tens of kB
whatever the number of points, every browser and file viewer shows them, and ``ee-bench similarity``
already writes PNG. Each function writes one file and returns its path; inputs come from one results
file (and its samples file for the per-token histogram).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DPI = 100
SIZE = (5.6, 3.4)  # inches
THUMB = (1.5, 0.44)  # inches: 150 × 44 px, a table row's exit-layer strip
TRADEOFF = (8.6, 3.6)  # inches: a task's trade-off plot, legend to the right


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


def layer_shares(layers: list[int], n_layers: int) -> list[float]:
    """% of tokens per exit layer ℓ = 0 … L−1 (sums to 100).

    Raises:
        ValueError: on no tokens, or a layer outside [0, L−1].
    """
    import numpy as np

    a = np.asarray(layers, dtype=np.int64)
    if a.size == 0:
        raise ValueError("no tokens to count")
    if a.min() < 0 or a.max() > n_layers - 1:
        raise ValueError(f"oracle layers must lie in [0, {n_layers - 1}]")
    return [float(x) for x in 100.0 * np.bincount(a, minlength=n_layers) / a.size]


def exit_thumbnail(shares: list[float], path: Path) -> Path:
    """A 150 × 44 px bar strip of ``shares`` (% of tokens per first-match exit layer, ℓ = 0 … L−1, left to
    right), for a table row; no axes text (the row's cell title says what it is)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=THUMB)
    ax.bar(range(len(shares)), shares, width=0.9, color="#3b6ea8")
    ax.set_xlim(-0.6, len(shares) - 0.4)
    ax.set_ylim(0, max(max(shares), 1e-9) * 1.05)
    ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
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
    x = np.arange(n_layers)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    ax.bar(x - 0.2, layer_shares(first_match, n_layers), width=0.4, label="first-match")
    ax.bar(x + 0.2, layer_shares(saturation, n_layers), width=0.4, label="saturation")
    ax.set_xlabel("oracle exit layer (0-based)")
    ax.set_ylabel("% of output tokens")
    ax.set_title(f"{title} ({len(first_match)} tokens)", fontsize=9, parse_math=False)
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


@dataclass(frozen=True)
class TradeoffSeries:
    """One run's points on a task's trade-off plot (x: speed-up × over full depth; y: quality kept, %).

    Attributes:
        label: legend text. implied: (implied speed-up, gate accuracy %, τ) over the threshold sweep.
        predicted: (predicted per-token speed-up, gate accuracy %, τ) where the results predict it.
        measured: (measured speed-up, quality ratio %, setting, headlined) per measured setting.
        chosen: the threshold of the table row (ringed). ceiling: predicted per-token ceiling or None.
        faded: drawn lighter (preview or degenerate row).
    """

    label: str
    implied: tuple[tuple[float, float, float], ...]
    predicted: tuple[tuple[float, float, float], ...] = ()
    measured: tuple[tuple[float, float, str, bool], ...] = ()
    chosen: float | None = None
    ceiling: float | None = None
    faded: bool = False


def task_tradeoff(series: list[TradeoffSeries], title: str, path: Path) -> Path:
    """Quality kept against speed-up for every run of one task, one colour per run (paper §6).

    Sweep lines: y is the gate accuracy (% of tokens whose top-1 at the gate's exit layer is the
    full-depth token, teacher-forced); solid with circles at the *implied* speed-up (L / mean layers
    run), dashed with triangles at the *predicted* one (cost model). Stars: *measured* real early exit,
    y = the corpus metric of the early-exit output over full depth (filled: headlined; hollow: flagged).
    The row's threshold is ringed; a dotted vertical line marks a run's predicted ceiling; the black
    square is full depth (1×, 100 %).
    """
    from matplotlib.lines import Line2D

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=TRADEOFF)
    colours = plt.get_cmap("tab10").colors
    handles = []
    for i, s in enumerate(series):
        c = colours[i % len(colours)]
        alpha = 0.45 if s.faded else 1.0
        for pts, style, marker in ((s.implied, "-", "o"), (s.predicted, "--", "^")):
            pts = sorted(pts)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker=marker, ms=4, color=c, alpha=alpha, lw=1.2)
            for x, y, tau in pts:
                if s.chosen is not None and tau == s.chosen:
                    ax.plot([x], [y], "o", ms=11, mfc="none", mec=c, mew=1.5, alpha=alpha)
        for x, y, setting, headlined in s.measured:
            ax.plot([x], [y], "*", ms=15, color=c, mfc=c if headlined else "white", mec=c, mew=1.5, alpha=alpha)
            ax.annotate(setting, (x, y), fontsize=7, textcoords="offset points", xytext=(6, -3), parse_math=False)
        if s.ceiling is not None:
            ax.axvline(s.ceiling, ls=":", color=c, alpha=alpha, lw=1)
        handles.append(Line2D([], [], color=c, lw=2, alpha=alpha, label=s.label))
    ax.plot([1.0], [100.0], "s", color="black", ms=6)
    ax.set_xscale("log", base=2)  # speed-ups are ratios: 0.5× and 2× equally far from full depth
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:g}×")
    ax.set_xlabel("speed-up over full depth (log scale)")
    ax.set_ylabel("quality kept, % of full depth")
    ax.set_title(title, fontsize=10, parse_math=False)
    ax.grid(alpha=0.3)
    kinds = [Line2D([], [], color="grey", ls="-", marker="o", ms=4, label="sweep, implied (y: gate acc %)"),
             Line2D([], [], color="grey", ls="--", marker="^", ms=4, label="sweep, predicted (y: gate acc %)"),
             Line2D([], [], color="grey", ls="", marker="*", ms=11, label="measured (y: metric ratio %)"),
             Line2D([], [], color="grey", ls="", marker="o", ms=9, mfc="none", label="row's threshold"),
             Line2D([], [], color="grey", ls=":", label="predicted ceiling"),
             Line2D([], [], color="black", ls="", marker="s", ms=5, label="full depth")]
    for h in handles:  # legend text drawn without mathtext: names come from results files
        h.set_label(h.get_label().replace("$", "\\$"))
    ax.legend(handles=[*handles, *kinds], fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)
