"""Measured early-exit speed-up: the same prompts decoded at full depth and with early exit (paper §6).

Both modes use :class:`~ee_bench.decoding.early_exit.EarlyExitDecoder` — the same block loop, the
same :class:`~ee_bench.decoding.kv_store.KVStore` — the full-depth mode with no exit layers (so no
gate checks). Timing: a warm-up of each mode, then ``repeats`` interleaved rounds;
``time.perf_counter`` (CUDA synchronised at section boundaries); the median total wall time; the time
split of the median run.

The verdict words (:mod:`ee_bench.speedup_verdict`) are torch-free, so the leaderboard reads them too.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ee_bench.decoding.early_exit import EarlyExitDecoder
from ee_bench.decoding.timing import TimeSplit
from ee_bench.decoding.traces import DecodeCounts, DecodeResult, ExitTrace
from ee_bench.errors import EEBenchError
from ee_bench.exits.decide import DEFAULT_MIN_PREFIX
from ee_bench.exits.gates import gate_name as registered_gate_name
from ee_bench.metrics.base import METRICS, MetricInputs
from ee_bench.speedup_verdict import (  # noqa: F401  (re-exported: the verdict lives in a torch-free module)
    DEFAULT_MIN_QUALITY_RATIO,
    MAX_LENGTH_RATIO,
    SpeedupVerdict,
    result_verdicts,
    speedup_verdict,
    speedup_verdicts,
)
from ee_bench.uncertainty import LEVEL, N_RESAMPLES, N_RESAMPLES_CORPUS, Interval, percentile_interval, resample_indices

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
        full_repeats: timed rounds of the full-depth reference, when fewer than ``repeats`` (its rounds
            agreed within ``--speedup-reference-spread``; :func:`time_interleaved_rounds`), else None.
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
    full_repeats: int | None = None

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


def quality_ratio_interval(texts: Sequence[str], full_texts: Sequence[str], references: Sequence[Sequence[str]],
                           metric: str, target_lang: str | None, seed: int = 0,
                           n_resamples: int = N_RESAMPLES, level: float = LEVEL) -> Interval | None:
    """Paired bootstrap interval of 100 × metric(early exit) / metric(full depth), in percent.

    Each resample draws D documents with replacement (:func:`~ee_bench.uncertainty.resample_indices`)
    and scores *the same* documents' early-exit and full-depth outputs, so the interval measures how much
    the quality ratio that calibration compares with ``--min-quality-ratio`` depends on which documents
    were drawn (percentile bootstrap, ee_bench/uncertainty.py). Corpus metrics with per-document
    statistics (sacrebleu chrF, BLEU) are summed per resample; others are recomputed on each of the first
    ``N_RESAMPLES_CORPUS`` resamples.

    Args:
        texts / full_texts: D outputs each, aligned by document. references: D lists of references.
        metric: a registered metric name (e.g. "chrf"). target_lang: as :func:`quality`.

    Returns:
        The interval in percent, or None with fewer than 2 documents (every resample would be the one
        document: no spread to measure), where the metric has no value, or where a resample's full-depth
        score is 0.

    Raises:
        ValueError: if the three sequences differ in length or are empty.
    """
    if not len(texts) == len(full_texts) == len(references) or not texts:
        raise ValueError(f"need D > 0 aligned documents, got {len(texts)}, {len(full_texts)}, {len(references)}")
    if len(texts) < 2:
        return None
    scorer = METRICS.get(metric)()
    idx = resample_indices(len(texts), n_resamples, seed)
    scores = []
    for outs in (texts, full_texts):
        inputs = MetricInputs(list(outs), [list(r) for r in references], target_lang=target_lang)
        fast = scorer.resampled_values(inputs, idx)  # None: the metric has no per-document statistics
        if fast is None:
            fast = [scorer.compute(MetricInputs([outs[i] for i in row], [list(references[i]) for i in row],
                                                target_lang=target_lang)).value for row in idx[:N_RESAMPLES_CORPUS]]
        if any(v is None for v in fast):
            return None
        scores.append(np.asarray(fast, dtype=np.float64))
    ee, full = scores
    if np.any(full == 0):
        return None
    return percentile_interval(100.0 * ee / full, level)


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
        threshold_warmup: W, tokens (:func:`~ee_bench.exits.decide.warmed_threshold`); 0 = constant τ.
    """

    kv: str
    gate: object
    threshold: float | None
    exit_layers: tuple[int, ...] | None = None
    min_prefix: int = DEFAULT_MIN_PREFIX
    check: str | None = None
    draft_len: int | None = None
    threshold_warmup: float = 0.0


def reference_settled(walls: Sequence[float], spread: float | None) -> bool:
    """Whether a reference mode's round wall times (s) agree well enough to stop timing it: at least two
    rounds and (max − min) / median ≤ ``spread`` (a fraction; None never settles)."""
    if spread is None or len(walls) < 2:
        return False
    return (max(walls) - min(walls)) / statistics.median(walls) <= spread


def time_interleaved(modes: Sequence, prompts: Sequence[Sequence[int]], repeats: int,
                     batch_size: int = 1, progress: Any = None, labels: Sequence[str] | None = None,
                     reference_spread: float | None = None) -> list[DecodeResult]:
    """Per mode, the median round of :func:`time_interleaved_rounds` (same arguments)."""
    return time_interleaved_rounds(modes, prompts, repeats, batch_size, progress, labels, reference_spread)[0]


def time_interleaved_rounds(modes: Sequence, prompts: Sequence[Sequence[int]], repeats: int,
                            batch_size: int = 1, progress: Any = None, labels: Sequence[str] | None = None,
                            reference_spread: float | None = None) -> tuple[list[DecodeResult], list[int]]:
    """Time decoding modes against each other, in one process: the one timing protocol of ee-bench.

    Warm-up: each mode decodes the first prompt once. Then ``repeats`` rounds; in each, every chunk
    of ``batch_size`` prompts is decoded by every mode, one after the other (modes interleaved chunk
    by chunk, so load changes on a shared machine hit them alike); a mode's round is the sum over
    chunks (:class:`DecodeResult` concatenated), and per mode the round with the median wall time over
    the rounds it ran is returned (``statistics.median_low``: for an even count, the lower of the two
    middle rounds, so the result is a real round, never an average of two).

    With ``reference_spread``, mode 0 (the full-depth reference) stops being timed once its rounds agree
    (:func:`reference_settled`: from the second round on, (max − min) / median ≤ ``reference_spread``);
    the other modes run all ``repeats`` rounds, so a run with one setting saves up to a third of its
    time at 3 repeats. The later rounds of the settings are then not paired with a reference round:
    use it where the load is steady (a dedicated machine), not to hide a drifting one.

    Args:
        modes: callables ``chunk of prompts -> DecodeResult`` (an :class:`EarlyExitDecoder` setting,
            or :func:`hf_generate_mode`). prompts: token-id lists. repeats: timed rounds (≥ 1).
        batch_size: prompts per chunk.
        progress: a tqdm bar (or None), advanced once per mode call; its total is set here to
            ``len(modes) × (1 + repeats × chunks)`` and its postfix names the mode and the round.
        labels: a name per mode for that postfix (default ``mode 0``, ``mode 1``…).
        reference_spread: the relative spread below which mode 0 is not timed again (None: time it every
            round).

    Returns:
        Per mode, in order, the median round (the reference's over the rounds it ran), and the number of
        timed rounds each mode ran.

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
        settled = len(modes) > 1 and reference_settled([r.split.total_s for r in runs[0]], reference_spread)
        timed = range(1 if settled else 0, len(modes))
        if settled and progress is not None:
            progress.total -= len(chunks)
        parts: list[list[DecodeResult]] = [[] for _ in modes]
        for chunk in chunks:
            for k in timed:
                parts[k].append(call(k, f"repeat {rep + 1}/{repeats}", chunk))
        for k in timed:
            runs[k].append(_concat(parts[k]))
        logger.info("round %d/%d: %s", rep + 1, repeats, ", ".join(f"{r[-1].split.total_s:.2f} s" for r in runs))
    return [_median_run(r) for r in runs], [len(r) for r in runs]


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
                 full_quality: dict | None = None, full_repeats: int | None = None) -> SpeedupReport:
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
        full_repeats=full_repeats if full_repeats is not None and full_repeats < repeats else None,
    )


def measure_speedups(model, prompts: Sequence[Sequence[int]], settings: Sequence[EESetting], until: Sequence[str],
                     max_gen_toks: int, repeats: int = 3, batch_size: int = 1,
                     references: Sequence[Sequence[str]] | None = None, metrics: Sequence[str] = ("chrf", "bleu"),
                     target_lang: str | None = None, decoder: EarlyExitDecoder | None = None,
                     progress: Any = None, reference_spread: float | None = None) -> list[SpeedupReport]:
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
        reference_spread: stop timing full depth once its rounds agree within this fraction
            (:func:`time_interleaved_rounds`); None: every round.

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
    (f, *runs), rounds = time_interleaved_rounds(modes, prompts, repeats, batch_size, progress=progress,
                                                 labels=["full depth", *[s.kv for s in settings]],
                                                 reference_spread=reference_spread)
    q_full = quality([t.text for t in f.traces], references, metrics, target_lang) if references is not None else None
    return [compare_runs(s.kv, s.gate, s.threshold, f, e, n_layers=dec.n_layers, repeats=repeats,
                         batch_size=batch_size, references=references, metrics=metrics, target_lang=target_lang,
                         full_quality=q_full, full_repeats=rounds[0]) for s, e in zip(settings, runs)]


def full_depth_mode(dec: EarlyExitDecoder, until: Sequence[str], max_gen_toks: int, kv: str = "copy",
                    batch_size: int = 1):
    """``chunk -> DecodeResult``: the ee-bench loop at full depth (no exit layers, no gate checks)."""
    return lambda ps: dec.decode(ps, None, None, kv, until, max_gen_toks, exit_layers=(), batch_size=batch_size)


def setting_mode(dec: EarlyExitDecoder, s: EESetting, until: Sequence[str], max_gen_toks: int, batch_size: int = 1):
    """``chunk -> DecodeResult``: the ee-bench loop under one early-exit setting."""
    return lambda ps: dec.decode(ps, s.gate, s.threshold, s.kv, until, max_gen_toks, s.exit_layers, s.min_prefix,
                                 batch_size, check=s.check, draft_len=s.draft_len, threshold_warmup=s.threshold_warmup)
