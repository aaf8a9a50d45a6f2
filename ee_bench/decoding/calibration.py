"""Threshold calibration (paper §5, Fig. 2 protocol).

Sweep the gate's threshold grid (``Gate.grid``, least → most aggressive) with real early-exit
decoding on a calibration subset disjoint from the evaluated documents; keep the most aggressive
threshold whose quality is at least ``min_ratio`` (default 98 %) of the full model's on the same
subset. With ``patience`` N the sweep stops after N consecutive thresholds below that floor: the grid
runs from least to most aggressive, and on the models measured here quality only fell further past
such a point, while an aggressive point costs the most (degenerate outputs run to the token budget).

Two objectives choose among the qualifying thresholds. ``token`` (the default, the paper's protocol)
keeps the most aggressive one, which exits earliest per token. ``sequence`` keeps the one with the
highest implied speed-up per sequence, L × (full-depth tokens) / (blocks run in all): an aggressive
threshold whose outputs grow longer can run more blocks per document although it runs fewer per token
(issue 23 measured outputs 9–16 % longer). Both figures are recorded for every point.
The sweep file is rewritten atomically after every point, so a crash keeps what finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ee_bench.decoding.early_exit import EarlyExitDecoder
from ee_bench.decoding.speedup import quality
from ee_bench.errors import EEBenchError
from ee_bench.exits.decide import DEFAULT_MIN_PREFIX
from ee_bench.exits.gates import gate_name as registered_gate_name
from ee_bench.files import write_json


class CalibrationError(EEBenchError):
    """Calibration options that cannot work (ratio out of range, overlapping or too few documents)."""


@dataclass(frozen=True)
class SweepPoint:
    """One threshold of the sweep.

    Attributes:
        threshold: τ. quality: the metric on the calibration subset. relative_quality: quality / full
            model's (None when the full model scores 0). implied_speedup: L / mean blocks per token.
        tokens: tokens generated over the subset. implied_sequence_speedup: L × full-depth tokens /
            blocks run over the subset (per sequence: longer outputs count against it).
    """

    threshold: float
    quality: float
    relative_quality: float | None
    implied_speedup: float
    tokens: int | None = None
    implied_sequence_speedup: float | None = None


@dataclass(frozen=True)
class CalibrationResult:
    """The sweep and its choice (``chosen`` is None when no threshold keeps the quality)."""

    gate: str
    kv: str
    metric: str
    min_ratio: float
    doc_ids: tuple[int, ...]
    full_quality: float
    points: tuple[SweepPoint, ...]
    chosen: float | None
    complete: bool
    patience: int | None = None
    objective: str = "token"
    full_tokens: int | None = None
    threshold_warmup: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["doc_ids"] = list(self.doc_ids)
        d["points"] = [asdict(p) for p in self.points]
        return d


def select_threshold(points: Sequence[tuple[float, float]], full_quality: float, min_ratio: float,
                     aggressive: str) -> float | None:
    """The most aggressive threshold whose quality ≥ ``min_ratio`` × ``full_quality``.

    Args:
        points: (threshold, quality) pairs, any order; quality in the metric's unit, higher is better.
        full_quality: the full model's quality on the same documents.
        min_ratio: fraction in (0, 1], e.g. 0.98.
        aggressive: "lower" if a lower threshold exits earlier (confidence), "higher" otherwise (entropy).

    Returns:
        The chosen threshold, or None if no point qualifies. Points are not assumed monotone: a
        qualifying aggressive point is chosen even when a less aggressive one failed.

    Raises:
        CalibrationError: if ``min_ratio`` is outside (0, 1] or ``aggressive`` is neither value.
    """
    if not 0.0 < min_ratio <= 1.0:
        raise CalibrationError(f"min quality ratio {min_ratio} must be in (0, 1], e.g. 0.98 for 98 %")
    if aggressive not in ("lower", "higher"):
        raise CalibrationError(f"aggressive must be 'lower' or 'higher', got {aggressive!r}")
    ok = [t for t, q in points if q >= min_ratio * full_quality]
    if not ok:
        return None
    return min(ok) if aggressive == "lower" else max(ok)


OBJECTIVES = ("token", "sequence")
"""How :func:`calibrate` chooses among the thresholds that keep the quality (module docstring)."""


def check_objective(objective: str) -> str:
    """``objective`` if it is one of :data:`OBJECTIVES`.

    Raises:
        CalibrationError: otherwise, naming the choices.
    """
    if objective not in OBJECTIVES:
        raise CalibrationError(f"calibration objective {objective!r} is not one of {', '.join(OBJECTIVES)}; "
                               f"e.g. --calibration-objective sequence")
    return objective


def best_per_sequence(points: Sequence[SweepPoint], full_quality: float, min_ratio: float, aggressive: str) -> float | None:
    """The qualifying threshold (quality ≥ ``min_ratio`` × ``full_quality``) with the highest implied
    per-sequence speed-up; a tie goes to the more aggressive threshold. None if none qualifies.

    Raises:
        CalibrationError: as :func:`select_threshold`.
    """
    select_threshold([], 1.0, min_ratio, aggressive)  # validates min_ratio and aggressive
    ok = [p for p in points if p.quality >= min_ratio * full_quality and p.implied_sequence_speedup is not None]
    if not ok:
        return None
    sign = -1.0 if aggressive == "lower" else 1.0
    return max(ok, key=lambda p: (p.implied_sequence_speedup, sign * p.threshold)).threshold


def calibration_ids(n_docs: int, evaluated: Iterable[int], n_cal: int) -> list[int]:
    """The first ``n_cal`` document ids in 0..n_docs−1 that are not evaluated.

    Raises:
        CalibrationError: if fewer than ``n_cal`` documents are left.
    """
    used = set(evaluated)
    free = [i for i in range(n_docs) if i not in used]
    if len(free) < n_cal:
        raise CalibrationError(f"calibration needs {n_cal} documents disjoint from the {len(used)} evaluated ones; "
                               f"only {len(free)} of {n_docs} are left. Evaluate fewer documents (--limit).")
    return free[:n_cal]


def calibrate(decoder: EarlyExitDecoder, prompts: Sequence[Sequence[int]], references: Sequence[Sequence[str]],
              doc_ids: Sequence[int], gate, kv: str, until: Sequence[str], max_gen_toks: int,
              exit_layers: Iterable[int] | None = None, min_prefix: int = DEFAULT_MIN_PREFIX, metric: str = "chrf",
              min_ratio: float = 0.98, grid: Sequence[float] | None = None, target_lang: str | None = None,
              batch_size: int | None = None, out_path: str | Path | None = None,
              patience: int | None = None, objective: str = "token", threshold_warmup: float = 0.0) -> CalibrationResult:
    """Sweep thresholds on the calibration prompts and choose one (paper Fig. 2 protocol).

    Args:
        decoder: the model's decoder. prompts / references / doc_ids: the calibration subset.
        gate: a gate instance (its ``grid`` and ``aggressive`` are used). kv, until, max_gen_toks,
            exit_layers, min_prefix, threshold_warmup: as :meth:`EarlyExitDecoder.decode` (the warm-up is
            held fixed; τ is swept).
        metric: registered metric (higher is better) measuring quality. min_ratio: e.g. 0.98.
        grid: thresholds to sweep (default ``gate.grid``).
        out_path: JSON file rewritten atomically after the full-model run and after every point.
        patience: stop after this many consecutive points below ``min_ratio`` × full quality (None:
            sweep the whole grid). The points not run are absent from the result; ``complete`` is True.
        objective: ``token`` (the most aggressive qualifying τ) or ``sequence`` (the qualifying τ with
            the highest implied per-sequence speed-up); see the module docstring.

    Returns:
        :class:`CalibrationResult`.

    Raises:
        CalibrationError: bad ``min_ratio``, ``patience`` < 1 or an unknown ``objective``; plus the errors of
            :meth:`EarlyExitDecoder.decode`.
    """

    select_threshold([], 1.0, min_ratio, gate.aggressive)  # validate options before decoding
    check_objective(objective)
    if patience is not None and patience < 1:
        raise CalibrationError(f"calibration patience {patience} must be >= 1 (or omitted to sweep the whole grid)")
    grid = tuple(gate.grid if grid is None else grid)
    lang = target_lang
    full = decoder.decode(prompts, None, None, kv, until, max_gen_toks, exit_layers=(), batch_size=batch_size)
    full_q = quality([t.text for t in full.traces], references, [metric], lang)[metric]
    full_tokens = full.counts.tokens
    points: list[SweepPoint] = []

    def result(complete: bool) -> CalibrationResult:
        if objective == "sequence":
            chosen = best_per_sequence(points, full_q, min_ratio, gate.aggressive)
        else:
            chosen = select_threshold([(p.threshold, p.quality) for p in points], full_q, min_ratio, gate.aggressive)
        return CalibrationResult(registered_gate_name(gate), kv, metric, min_ratio, tuple(doc_ids), full_q, tuple(points),
                                 chosen if complete else None, complete, patience, objective, full_tokens,
                                 threshold_warmup)

    if out_path is not None:
        write_json(Path(out_path), result(False).to_dict())
    below = 0
    for k, tau in enumerate(grid):
        res = decoder.decode(prompts, gate, tau, kv, until, max_gen_toks, exit_layers, min_prefix, batch_size,
                             threshold_warmup=threshold_warmup)
        q = quality([t.text for t in res.traces], references, [metric], lang)[metric]
        c = res.counts
        points.append(SweepPoint(float(tau), q, q / full_q if full_q else None,
                                 decoder.n_layers * c.tokens / c.token_layers, c.tokens,
                                 decoder.n_layers * full_tokens / c.token_layers))
        below = below + 1 if q < min_ratio * full_q else 0
        stop = patience is not None and below >= patience
        if out_path is not None:
            write_json(Path(out_path), result(stop or k == len(grid) - 1).to_dict())
        if stop:
            break
    return result(True)
