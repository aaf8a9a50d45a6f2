"""Whether a measured early-exit speed-up may be headlined (issue 12, the reporting defect).

Torch-free on purpose: the leaderboard, the static site and the printed summary read these verdicts
from results JSON, and rendering code must not import torch or :mod:`ee_bench.decoding`. The timing
itself is :mod:`ee_bench.decoding.speedup`, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEFAULT_MIN_QUALITY_RATIO = 0.98
"""Quality floor: early-exit quality / full-depth quality below this flags a speed-up (``--min-quality-ratio``)."""

MAX_LENGTH_RATIO = 1.5
"""Early-exit tokens / full-depth tokens above this flags a speed-up (runaway, often repetitive, outputs)."""


@dataclass(frozen=True)
class SpeedupVerdict:
    """What the leaderboard, the site and the printed summary say about one measured setting.

    Attributes:
        setting: the KV strategy (or "layerwise" for an encoder's batch timing).
        per_sequence: full wall time / early-exit wall time on the same documents (None if absent).
        per_token: early-exit tokens/s / full-depth tokens/s (None for an encoder's batch timing).
        metric: the quality metric of ``quality_ratio`` (chrF when present). quality_ratio:
            early-exit / full-depth corpus score (None when not measured or full depth scored 0).
        length_ratio: early-exit tokens / full-depth tokens (None when not counted).
        min_quality_ratio, max_length_ratio: the limits applied.
        flags: the reasons the speed-up is not headlined, empty when it is.
    """

    setting: str
    per_sequence: float | None
    per_token: float | None
    metric: str | None
    quality_ratio: float | None
    length_ratio: float | None
    min_quality_ratio: float
    max_length_ratio: float
    flags: tuple[str, ...]

    @property
    def headlined(self) -> bool:
        """True when the speed-up kept quality and length (no flag) and a speed-up was measured."""
        return not self.flags and self.speedup is not None

    @property
    def speedup(self) -> float | None:
        """The figure a table sorts on: per token where decoded, else per sequence."""
        return self.per_token if self.per_token is not None else self.per_sequence

    def text(self, bold: str = "") -> str:
        """``copy 1.93×/token, 0.40×/seq, chrF 42% — NOT HEADLINED: …``; ``bold`` wraps the
        headline figure (``"**"`` in markdown)."""
        figs = []
        if self.per_token is not None:
            figs.append(f"{self.per_token:.2f}×/token")
        if self.per_sequence is not None:
            figs.append(f"{self.per_sequence:.2f}×/seq")
        if not figs:
            figs.append("n/a")
        if self.headlined:
            figs[0] = f"{bold}{figs[0]}{bold}"
        if self.quality_ratio is not None:
            figs.append(f"{self.metric} {100 * self.quality_ratio:.0f}%")
        head = f"{self.setting} " + ", ".join(figs)
        return head if not self.flags else head + " — ⚠ not headlined: " + "; ".join(self.flags)

    def to_dict(self) -> dict:
        return {**asdict(self), "headlined": self.headlined}


def speedup_verdict(setting: str, report: dict, min_quality_ratio: float = DEFAULT_MIN_QUALITY_RATIO,
                    max_length_ratio: float = MAX_LENGTH_RATIO) -> SpeedupVerdict:
    """The one decision whether a measured speed-up is headlined.

    Args:
        setting: the report's key in ``measured_speedup`` (KV strategy or "layerwise").
        report: a :meth:`SpeedupReport.to_dict` (``per_sequence_speedup``, ``per_token_speedup``,
            ``full_tokens``, ``ee_tokens``, ``quality`` metric → {"early_exit", "full"[, "ratio"]}), or an
            encoder timing with ``measured_speedup`` only.
        min_quality_ratio: the floor (``--min-quality-ratio``). max_length_ratio: the length limit.

    Returns:
        A :class:`SpeedupVerdict` whose setting names the decoding threshold and the threshold warm-up
        when the report records them (``"recompute τ0.8 W8"``; the τ of a calibrated run can differ from
        the row's offline τ). Flags: quality ratio < floor; quality not measured; early-exit
        tokens > ``max_length_ratio`` × full-depth tokens; no speed-up measured. The quality ratio is
        ``quality[m]["ratio"]``, or early_exit / full when the ratio is not stored (m = chrF when
        present, else the first metric in name order).
    """
    per_seq = report.get("per_sequence_speedup", report.get("measured_speedup"))
    per_tok = report.get("per_token_speedup")
    q = report.get("quality") or {}
    metric = "chrf" if "chrf" in q else (min(q) if q else None)
    ratio = None
    if metric is not None:
        m = q[metric]
        ratio = m.get("ratio")
        if ratio is None and m.get("early_exit") is not None and m.get("full"):
            ratio = m["early_exit"] / m["full"]
    full_t, ee_t = report.get("full_tokens"), report.get("ee_tokens")
    length = ee_t / full_t if full_t and ee_t is not None else None
    flags = []
    if per_seq is None and per_tok is None:
        flags.append("no speed-up measured")
    if ratio is None:
        flags.append("quality not measured")
    elif ratio < min_quality_ratio:
        flags.append(f"{metric} {100 * ratio:.0f}% of full depth < {100 * min_quality_ratio:.0f}% floor")
    if length is not None and length > max_length_ratio:
        flags.append(f"outputs {length:.2f}× longer than full depth ({ee_t} vs {full_t} tokens; "
                     f"limit {max_length_ratio:g}×)")
    tau, warmup = report.get("threshold"), report.get("threshold_warmup")
    label = " ".join([setting, *([f"τ{tau:g}"] if isinstance(tau, (int, float)) else []),
                      *([f"W{warmup:g}"] if warmup else [])])
    return SpeedupVerdict(label, None if per_seq is None else float(per_seq),
                          None if per_tok is None else float(per_tok), metric,
                          None if ratio is None else float(ratio), length, min_quality_ratio, max_length_ratio,
                          tuple(flags))


def speedup_verdicts(measured: dict | None, min_quality_ratio: float | None = None,
                     max_length_ratio: float = MAX_LENGTH_RATIO) -> list[SpeedupVerdict]:
    """:func:`speedup_verdict` for every setting of a results JSON's ``measured_speedup`` (sorted by
    setting; [] when None or not a dict). ``min_quality_ratio`` None: the default floor."""
    if not isinstance(measured, dict):
        return []
    floor = DEFAULT_MIN_QUALITY_RATIO if min_quality_ratio is None else min_quality_ratio
    return [speedup_verdict(k, rep, floor, max_length_ratio) for k, rep in sorted(measured.items())
            if isinstance(rep, dict)]


def result_verdicts(result: dict) -> list[SpeedupVerdict]:
    """The verdicts of one results JSON, at the floor it was run with (``config.min_quality_ratio``)."""
    return speedup_verdicts(result.get("measured_speedup"), (result.get("config") or {}).get("min_quality_ratio"))
