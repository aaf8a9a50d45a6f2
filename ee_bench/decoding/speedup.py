"""Measured early-exit speed-up: the same prompts decoded at full depth and with early exit (paper §6).

Both modes use :class:`~ee_bench.decoding.early_exit.EarlyExitDecoder` — the same block loop, the
same :class:`~ee_bench.decoding.kv_store.KVStore` — the full-depth mode with no exit layers (so no
gate checks). Timing: a warm-up of each mode, then ``repeats`` interleaved rounds;
``time.perf_counter`` (CUDA synchronised at section boundaries); the median total wall time; the time
split of the median run.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ee_bench.decoding.early_exit import (
    DecodeCounts,
    DecodeResult,
    EarlyExitDecoder,
    ExitTrace,
)
from ee_bench.decoding.timing import TimeSplit
from ee_bench.errors import EEBenchError
from ee_bench.exits.gates import gate_name as registered_gate_name
from ee_bench.metrics.base import METRICS, MetricInputs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeedupReport:
    """Full depth vs early exit on the same prompts.

    Attributes:
        kv, gate, threshold: the early-exit setting. n_docs, n_layers (L), repeats, batch_size.
        full_wall_s, ee_wall_s: median wall time of decoding every prompt, seconds.
        full_tokens, ee_tokens: tokens generated (before stop-string truncation).
        per_sequence_speedup: full_wall_s / ee_wall_s (same documents; > 1 is faster).
        per_token_speedup: (ee_tokens / ee_wall_s) / (full_tokens / full_wall_s), tokens/s ratio.
        implied_speedup: L / mean blocks run per generated token (the layer-count speed-up).
        work_ratio: blocks actually run (deferred catch-up included) / (tokens × L).
        full_split, ee_split: time split of the median runs.
        full_counts, ee_counts: work counts.
        quality: metric → {"early_exit", "full", "ratio"} (ratio None when full is 0).
        token_agreement: fraction of full-depth output positions where the early-exit output has the
            same token (a shorter output counts missing positions as disagreements).
        ee_traces, full_traces: the outputs (traces with exit layers).
    """

    kv: str
    gate: str
    threshold: float | None
    n_docs: int
    n_layers: int
    repeats: int
    batch_size: int
    full_wall_s: float
    ee_wall_s: float
    full_tokens: int
    ee_tokens: int
    per_sequence_speedup: float
    per_token_speedup: float
    implied_speedup: float
    work_ratio: float
    full_split: TimeSplit
    ee_split: TimeSplit
    full_counts: DecodeCounts
    ee_counts: DecodeCounts
    quality: dict
    token_agreement: float
    ee_traces: tuple[ExitTrace, ...]
    full_traces: tuple[ExitTrace, ...]

    def to_dict(self, traces: bool = False) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("ee_traces", "full_traces")}
        if traces:
            d["ee_traces"] = [t.to_dict() for t in self.ee_traces]
            d["full_traces"] = [t.to_dict() for t in self.full_traces]
        return d


def token_agreement(ee: Sequence[Sequence[int]], full: Sequence[Sequence[int]]) -> float:
    """Σ_docs #{i < |full|: ee[i] = full[i]} / Σ_docs |full| (1.0 when every full output is empty)."""
    total = sum(len(f) for f in full)
    if total == 0:
        return 1.0
    same = sum(sum(1 for a, b in zip(e, f) if a == b) for e, f in zip(ee, full))
    return same / total


def speedup_ratios(full_wall_s: float, ee_wall_s: float, full_tokens: int, ee: DecodeCounts,
                   n_layers: int) -> dict[str, float]:
    """The four speed-up figures of a :class:`SpeedupReport` (paper §6).

    Args:
        full_wall_s, ee_wall_s: wall time of the full-depth and the early-exit decoding (seconds, > 0).
        full_tokens: tokens generated at full depth. ee: the early-exit run's work counts. n_layers: L.

    Returns:
        ``per_sequence_speedup`` = full_wall_s / ee_wall_s; ``per_token_speedup`` = (ee tokens /
        ee_wall_s) / (full_tokens / full_wall_s); ``implied_speedup`` = L × ee tokens / blocks run by
        the tokens; ``work_ratio`` = (blocks run + deferred catch-up blocks) / (ee tokens × L).
    """
    fw, ew, c, L = full_wall_s, ee_wall_s, ee, n_layers
    return {
        "per_sequence_speedup": fw / ew,
        "per_token_speedup": (c.tokens / ew) / (full_tokens / fw),
        "implied_speedup": L * c.tokens / c.token_layers,
        "work_ratio": (c.token_layers + c.catchup_token_layers) / (c.tokens * L),
    }


def quality(texts: Sequence[str], references: Sequence[Sequence[str]], metrics: Iterable[str],
            target_lang: str | None) -> dict[str, float | None]:
    """Corpus scores of ``texts`` by registered metric name (sacrebleu BLEU/chrF, ...)."""
    inputs = MetricInputs(list(texts), [list(r) for r in references], target_lang=target_lang)
    return {m: METRICS.get(m)().compute(inputs).value for m in metrics}


def _concat(parts: list[DecodeResult]) -> DecodeResult:
    """One result from the results of consecutive chunks of prompts."""
    return DecodeResult(tuple(t for p in parts for t in p.traces), TimeSplit.sum([p.split for p in parts]),
                        DecodeCounts.sum([p.counts for p in parts]))


def _median_run(runs: list[DecodeResult]) -> DecodeResult:
    walls = [r.split.total_s for r in runs]
    med = statistics.median_low(walls)
    return runs[walls.index(med)]


@dataclass(frozen=True)
class EESetting:
    """One early-exit configuration to time against full depth.

    Attributes:
        kv: KV strategy name. gate: gate instance or name. threshold: τ.
        exit_layers: allowed exits (None = every layer). min_prefix: tokens that never exit.
        check: check mode, ``"full"`` or ``"topk:K"`` (approximate); None = the decoder's.
        draft_len: tokens drafted per round with ``speculative``; None = the decoder's / strategy's.
    """

    kv: str
    gate: object
    threshold: float | None
    exit_layers: tuple[int, ...] | None = None
    min_prefix: int = 0
    check: str | None = None
    draft_len: int | None = None


def time_interleaved(modes: Sequence, prompts: Sequence[Sequence[int]], repeats: int,
                     batch_size: int = 1, progress: Any = None, labels: Sequence[str] | None = None) -> list[DecodeResult]:
    """Time decoding modes against each other, in one process: the one timing protocol of ee-bench.

    Warm-up: each mode decodes the first prompt once. Then ``repeats`` rounds; in each, every chunk
    of ``batch_size`` prompts is decoded by every mode, one after the other (modes interleaved chunk
    by chunk, so load changes on a shared machine hit them alike); a mode's round is the sum over
    chunks (:class:`DecodeResult` concatenated), and per mode the round with the median (lower median
    for an even count) wall time is returned.

    Args:
        modes: callables ``chunk of prompts -> DecodeResult`` (an :class:`EarlyExitDecoder` setting,
            or :func:`hf_generate_mode`). prompts: token-id lists. repeats: timed rounds (≥ 1).
        batch_size: prompts per chunk.
        progress: a tqdm bar (or None), advanced once per mode call; its total is set here to
            ``len(modes) × (1 + repeats × chunks)`` and its postfix names the mode and the round.
        labels: a name per mode for that postfix (default ``mode 0``, ``mode 1``…).

    Returns:
        Per mode, in order, the median round.

    Raises:
        EEBenchError: if ``repeats`` < 1, or there are no prompts or modes.
    """
    if repeats < 1 or not prompts or not modes:
        raise EEBenchError(f"timing needs repeats >= 1, prompts and modes (got {repeats}, {len(prompts)} prompts, "
                           f"{len(modes)} modes); give --repeats 1 or more and at least one document.")
    chunks = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    names = list(labels) if labels is not None else [f"mode {k}" for k in range(len(modes))]

    def call(k: int, stage: str, chunk) -> DecodeResult:  # the bar names the mode running now
        if progress is not None:
            progress.set_postfix_str(f"{names[k]}, {stage}")
        out = modes[k](chunk)
        if progress is not None:
            progress.update(1)
        return out

    if progress is not None:
        progress.reset(total=len(modes) * (1 + repeats * len(chunks)))
    for k in range(len(modes)):
        call(k, "warm-up", prompts[:1])
    runs: list[list[DecodeResult]] = [[] for _ in modes]
    for rep in range(repeats):
        parts: list[list[DecodeResult]] = [[] for _ in modes]
        for chunk in chunks:
            for k in range(len(modes)):
                parts[k].append(call(k, f"repeat {rep + 1}/{repeats}", chunk))
        for r, p in zip(runs, parts):
            r.append(_concat(p))
        logger.info("round %d/%d: %s", rep + 1, repeats, ", ".join(f"{r[-1].split.total_s:.2f} s" for r in runs))
    return [_median_run(r) for r in runs]


def hf_generate_mode(model, until: Sequence[str], max_gen_toks: int, assistant_early_exit: int | None = None):
    """A timed mode for :func:`time_interleaved`: transformers' greedy ``generate``, plain or with
    its self-speculative early-exit assistant (``generate(assistant_early_exit=E)``, LayerSkip).

    The call is :meth:`HFCausalLM.generate` (same stop strings, EOS and budget as the ee-bench loop),
    one prompt at a time (assisted generation supports batch 1 only). Its wall time (``time.perf_counter``,
    CUDA synchronised) is the TimeSplit's ``total_s`` and ``other_s`` (no split inside transformers).
    Counts: tokens = kept output tokens (at batch 1 generation stops at the token that ends the output,
    so nothing is cut), token_layers = tokens × L (the work inside ``generate`` is not counted, so an
    implied speed-up of 1 means "unknown" here). Traces: exit layer L−1 for every token.

    Note: ``assistant_early_exit`` counts blocks (the draft runs blocks 0..E−1); the 0-based ee-bench
    draft layer E corresponds to ``assistant_early_exit = E + 1``.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM`. until, max_gen_toks: stop strings, budget.
        assistant_early_exit: None for plain greedy decoding, else the number of draft blocks (1..L−1).

    Returns:
        ``chunk of prompts -> DecodeResult``.
    """
    import time

    import torch

    L = model.n_layers
    if assistant_early_exit is not None and not 1 <= assistant_early_exit < L:
        raise EEBenchError(f"assistant_early_exit must be a block count in 1..{L - 1}, got {assistant_early_exit}.")
    kwargs = {} if assistant_early_exit is None else {"assistant_early_exit": int(assistant_early_exit)}
    name = "hf_generate" if assistant_early_exit is None else f"hf_assistant_early_exit_{assistant_early_exit}"
    sync = model.device.type == "cuda"

    def run(chunk) -> DecodeResult:
        traces, total = [], 0.0
        for p in chunk:
            if sync:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            (ids, text), = model.generate([list(p)], tuple(until), max_gen_toks, **kwargs)
            if sync:
                torch.cuda.synchronize()
            total += time.perf_counter() - t0
            traces.append(ExitTrace(name, L, tuple(ids), text, (L - 1,) * len(ids)))
        n = sum(len(t.token_ids) for t in traces)
        return DecodeResult(tuple(traces), TimeSplit(0.0, 0.0, 0.0, 0.0, total, total),
                            DecodeCounts(tokens=n, token_layers=n * L, head_rows=n))

    return run


def compare_runs(kv: str, gate, threshold: float | None, full: DecodeResult, ee: DecodeResult, *, n_layers: int,
                 repeats: int, batch_size: int, references: Sequence[Sequence[str]] | None = None,
                 metrics: Sequence[str] = ("chrf", "bleu"), target_lang: str | None = None,
                 full_quality: dict | None = None) -> SpeedupReport:
    """The :class:`SpeedupReport` of a timed run ``ee`` against the timed full-depth run ``full``
    (speed-ups :func:`speedup_ratios`, token agreement, quality by ``metrics`` when ``references`` are
    given; ``full_quality`` reuses the full-depth scores). ``gate`` may be None (reported as "none")."""
    fw, ew, c, L = full.split.total_s, ee.split.total_s, ee.counts, n_layers
    qual: dict = {}
    if references is not None:
        q_full = full_quality if full_quality is not None else quality([t.text for t in full.traces], references,
                                                                      metrics, target_lang)
        q_ee = quality([t.text for t in ee.traces], references, metrics, target_lang)
        for m in metrics:
            ratio = None if not q_full[m] or q_ee[m] is None else q_ee[m] / q_full[m]
            qual[m] = {"early_exit": q_ee[m], "full": q_full[m], "ratio": ratio}
    return SpeedupReport(
        kv=kv, gate="none" if gate is None else registered_gate_name(gate), threshold=threshold,
        n_docs=len(full.traces), n_layers=L, repeats=repeats, batch_size=batch_size, full_wall_s=fw, ee_wall_s=ew,
        full_tokens=full.counts.tokens, ee_tokens=c.tokens, **speedup_ratios(fw, ew, full.counts.tokens, c, L),
        full_split=full.split, ee_split=ee.split, full_counts=full.counts, ee_counts=c, quality=qual,
        token_agreement=token_agreement([t.token_ids for t in ee.traces], [t.token_ids for t in full.traces]),
        ee_traces=ee.traces, full_traces=full.traces,
    )


def measure_speedups(model, prompts: Sequence[Sequence[int]], settings: Sequence[EESetting], until: Sequence[str],
                     max_gen_toks: int, repeats: int = 3, batch_size: int = 1,
                     references: Sequence[Sequence[str]] | None = None, metrics: Sequence[str] = ("chrf", "bleu"),
                     target_lang: str | None = None, decoder: EarlyExitDecoder | None = None,
                     progress: Any = None) -> list[SpeedupReport]:
    """Decode ``prompts`` at full depth and under each early-exit setting, in one process, and compare.

    The full-depth decoding (the same loop and store, no exit layers, so no gate checks) is shared by
    all settings; the timing protocol is :func:`time_interleaved` (warm-up, ``repeats`` rounds with
    the modes interleaved chunk by chunk, the median round per mode).

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM`.
        prompts: token-id lists. settings: the early-exit configurations.
        until, max_gen_toks: stop strings and token budget.
        repeats: timed rounds. batch_size: rows decoded together (1 = latency setting).
        references: per-prompt reference lists, to score both outputs with ``metrics``.
        target_lang: output language code (selects the BLEU tokeniser). decoder: reuse a decoder.
        progress: a tqdm bar advanced once per decoded chunk of every mode (:func:`time_interleaved`), or None.

    Returns:
        One :class:`SpeedupReport` per setting.

    Raises:
        EEBenchError: if ``repeats`` < 1, or there are no prompts or settings; plus those of
            :meth:`EarlyExitDecoder.decode`.
    """
    if repeats < 1 or not prompts or not settings:
        raise EEBenchError(f"measure_speedups needs repeats >= 1, prompts and settings (got {repeats}, "
                           f"{len(prompts)} prompts, {len(settings)} settings)")
    dec = decoder or EarlyExitDecoder(model)
    modes = [full_depth_mode(dec, until, max_gen_toks, settings[0].kv, batch_size),
             *[setting_mode(dec, s, until, max_gen_toks, batch_size) for s in settings]]
    f, *runs = time_interleaved(modes, prompts, repeats, batch_size, progress=progress,
                                labels=["full depth", *[s.kv for s in settings]])
    q_full = quality([t.text for t in f.traces], references, metrics, target_lang) if references is not None else None
    return [compare_runs(s.kv, s.gate, s.threshold, f, e, n_layers=dec.n_layers, repeats=repeats,
                         batch_size=batch_size, references=references, metrics=metrics, target_lang=target_lang,
                         full_quality=q_full) for s, e in zip(settings, runs)]


def full_depth_mode(dec: EarlyExitDecoder, until: Sequence[str], max_gen_toks: int, kv: str = "copy",
                    batch_size: int = 1):
    """``chunk -> DecodeResult``: the ee-bench loop at full depth (no exit layers, no gate checks)."""
    return lambda ps: dec.decode(ps, None, None, kv, until, max_gen_toks, exit_layers=(), batch_size=batch_size)


def setting_mode(dec: EarlyExitDecoder, s: EESetting, until: Sequence[str], max_gen_toks: int, batch_size: int = 1):
    """``chunk -> DecodeResult``: the ee-bench loop under one early-exit setting."""
    return lambda ps: dec.decode(ps, s.gate, s.threshold, s.kv, until, max_gen_toks, s.exit_layers, s.min_prefix,
                                 batch_size, check=s.check, draft_len=s.draft_len)


# --- verdict: whether a measured speed-up may be headlined (issue 12, the reporting defect) ---------------

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
        A :class:`SpeedupVerdict`. Flags: quality ratio < floor; quality not measured; early-exit
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
    return SpeedupVerdict(setting, None if per_seq is None else float(per_seq),
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
