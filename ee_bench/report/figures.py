"""The report's PNG figures, byte-identical when regenerated from the same inputs.

matplotlib's object API on the Agg canvas (no pyplot global state, no display), a fixed size, dpi
and font, and PNG metadata without the matplotlib version (``Software``), written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

from ee_bench.files import write_bytes

DPI = 100


def _figure(n_panels: int, width: float = 5.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, 4.5), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]
    return fig, axes


def _save(fig, path: Path) -> Path:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "svg.hashsalt": "ee-bench"}):
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    write_bytes(path, buf.getvalue())
    return path


def exit_by_length(path: Path, task: str, curves: list[tuple[str, list[tuple[int, float]], list[tuple[str, float]]]],
                   n_layers: int, bucket_order: list[str]) -> Path:
    """Mean first-match layer by output position (left) and by output-length bucket (right) (paper Fig. 5).

    Args:
        path: PNG to write. task: title. curves: per run (label, [(position, mean layer)],
            [(length bucket label, mean layer)]). n_layers: the largest L, for the y range.
        bucket_order: every length-bucket label used, in length order (the x axis of the right panel).
    """
    fig, (a, b) = _figure(2)
    labels = list(bucket_order)
    for label, pos, lengths in curves:
        a.plot([p for p, _ in pos], [m for _, m in pos], label=label, linewidth=1.2)
        b.plot([labels.index(lab) for lab, _ in lengths], [m for _, m in lengths], marker="o", label=label)
    a.set(title=f"{task}: exit layer by output position", xlabel="output position (0-based)",
          ylabel="mean first-match layer (0-based)", ylim=(0, n_layers - 0.5))
    b.set(title=f"{task}: exit layer by output length", xlabel="output length (tokens)",
          ylabel="mean first-match layer (0-based)", ylim=(0, n_layers - 0.5))
    b.set_xticks(range(len(labels)), labels)
    a.legend(fontsize=7)
    return _save(fig, path)


def confidence_by_layer(path: Path, task: str, curves: list[tuple[str, list[float], list[float] | None]]) -> Path:
    """Mean top-1 probability per layer and, where logged, top-1 agreement with the last layer (paper Fig. 4).

    Args:
        path: PNG to write. task: title. curves: per run (label, (L,) confidence, (L,) agreement or None).
    """
    fig, (a,) = _figure(1)
    for label, conf, agree in curves:
        line = a.plot(range(len(conf)), conf, label=f"{label}: confidence")[0]
        if agree is not None:
            a.plot(range(len(agree)), agree, linestyle="--", color=line.get_color(), label=f"{label}: top-1 = last")
    a.set(title=f"{task}: per-layer confidence", xlabel="layer (0-based)", ylabel="mean over output tokens", ylim=(0, 1))
    a.legend(fontsize=7)
    return _save(fig, path)


def subword_bars(path: Path, rows: list[tuple[str, dict[str, float | None]]], classes: tuple[str, ...]) -> Path:
    """Mean first-match layer of word-initial, continuation and other pieces per run (paper Fig. 11).

    Args:
        path: PNG to write. rows: per run (label, class → mean layer or None). classes: bar order.
    """
    fig, (a,) = _figure(1, width=max(5.5, 1.3 * len(rows)))
    width = 0.8 / max(len(classes), 1)
    for k, cls in enumerate(classes):
        xs = [i + k * width for i in range(len(rows))]
        a.bar(xs, [(v.get(cls) or 0.0) for _, v in rows], width=width, label=cls)
    a.set_xticks([i + width * (len(classes) - 1) / 2 for i in range(len(rows))], [lab for lab, _ in rows],
                 rotation=20, ha="right", fontsize=7)
    a.set(title="exit layer of word pieces", ylabel="mean first-match layer (0-based)")
    a.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def metric_by_layer(path: Path, task: str, metric: str, curves: list[tuple[str, list[float | None], list[tuple[float, float] | None]]],
                    chance: float | None = None) -> Path:
    """The task's metric at every exit layer, one line per run, its 95 % interval shaded (issue 24; paper Fig. 2).

    Args:
        path: PNG to write. task / metric: title and y label. curves: per run (label, L values, L
            (low, high) intervals or None). chance: a horizontal reference line (e.g. 1/C accuracy), or None.
    """
    fig, (a,) = _figure(1, width=7.0)
    for label, values, intervals in curves:
        xs = [i for i, v in enumerate(values) if v is not None]
        a.plot(xs, [values[i] for i in xs], marker=".", label=label, linewidth=1.2)
        band = [(i, iv) for i, iv in enumerate(intervals) if iv is not None]
        if band:
            a.fill_between([i for i, _ in band], [lo for _, (lo, _) in band], [hi for _, (_, hi) in band], alpha=0.15)
    if chance is not None:
        a.axhline(chance, color="grey", linestyle="--", linewidth=0.8, label="chance (1/C)")
    a.set(title=f"{task}: {metric} by exit layer", xlabel="exit layer (0-based)", ylabel=metric)
    a.legend(fontsize=7)
    return _save(fig, path)
