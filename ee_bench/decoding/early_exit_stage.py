"""The early-exit stage of an evaluation: real token-level exits, measured speed-up (paper §6, Fig. 2).

:func:`run_early_exit_stage` runs, for one generation task, after the oracle pass
(:func:`ee_bench.evaluation.evaluate_task` calls it when :class:`EarlyExitOptions` are given):

1. with ``calibrate``: the threshold sweep on documents disjoint from the evaluated ones (paper
   Fig. 2 protocol), written to ``calibration_<task>_<gate>_<kv>.json`` (next to the model's
   results) after every point, choosing τ;
2. the measured speed-up against full depth on the evaluated documents, per KV strategy
   (``measured_speedup`` in the results JSON), whose early-exit runs also give the exit traces
   (output text, ids and exit layer per token) of each document's samples row
   (:func:`early_exit_sample`, the one builder of that row).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ee_bench.decoding.calibration import calibrate, calibration_ids, check_objective
from ee_bench.decoding.checks import check_options, parse_check_mode, with_shortlist
from ee_bench.decoding.decoders import decoder_for
from ee_bench.decoding.speedup import EESetting, measure_speedups
from ee_bench.decoding.traces import speculative_summary
from ee_bench.errors import EEBenchError
from ee_bench.exits.decide import DEFAULT_MIN_PREFIX, check_min_prefix, check_threshold_warmup
from ee_bench.exits.gates import GATES, gate_name
from ee_bench.exits.kv import KV_STRATEGIES
from ee_bench.files import safe_name
from ee_bench.task_runners.generation import build_prompts, references_of
from ee_bench.task_runners.seq2seq import build_sources


@dataclass(frozen=True)
class EarlyExitOptions:
    """How to decode with real early exit (``ee-bench --kv …``; generation tasks).

    Attributes:
        kvs: KV strategy names (registered in :data:`~ee_bench.exits.kv.KV_STRATEGIES`).
        exit_layers: 0-based layers where a token may exit; None = every layer below L−1.
        min_prefix: the first N generated tokens never exit (paper: 4).
        calibrate: choose τ by a sweep on documents disjoint from the evaluated ones.
        calibration_docs: documents in that sweep. min_quality_ratio: keep the most aggressive τ
            whose chrF is ≥ this × full depth. speedup_repeats: timed repeats per mode (median).
        reference_spread: full depth is not timed again once its rounds agree within this fraction
            ((max − min) / median; None: timed every round).
        calibration_patience: stop the sweep after this many consecutive thresholds below that
            floor (None: the whole grid; :func:`~ee_bench.decoding.calibration.calibrate`).
        calibration_objective: ``token`` (the most aggressive qualifying τ) or ``sequence`` (the
            qualifying τ with the highest implied per-sequence speed-up).
        check: check mode, ``full`` or ``topk:K`` (approximate; :mod:`ee_bench.decoding.checks`).
        draft_len: tokens drafted per round with ``speculative`` (None: the strategy's default, 4).
        threshold_warmup: W, tokens: the threshold starts at the gate's strictest value at the first
            token that may exit and relaxes to τ with time constant W
            (:func:`~ee_bench.exits.decide.warmed_threshold`); 0 = a constant τ.

    Raises:
        EEBenchError: for an empty ``kvs`` or a value out of range (the message names the fix).
    """

    kvs: tuple[str, ...]
    exit_layers: tuple[int, ...] | None = None
    min_prefix: int = DEFAULT_MIN_PREFIX
    calibrate: bool = False
    calibration_docs: int = 20
    min_quality_ratio: float = 0.98
    speedup_repeats: int = 3
    check: str = "full"
    draft_len: int | None = None
    calibration_patience: int | None = None
    reference_spread: float | None = 0.02
    calibration_objective: str = "token"
    threshold_warmup: float = 0.0

    def __post_init__(self) -> None:
        if not self.kvs:
            raise EEBenchError("--kv is empty; give one or more KV strategies, e.g. --kv copy,recompute (ee-bench ls kv).")
        check_min_prefix(self.min_prefix, "--min-prefix")
        check_threshold_warmup(self.threshold_warmup, option="--threshold-warmup")
        if not 0.0 < self.min_quality_ratio <= 1.0:
            raise EEBenchError(f"--min-quality-ratio must be in (0, 1], e.g. 0.98; got {self.min_quality_ratio}.")
        for flag, value in (("--speedup-repeats", self.speedup_repeats), ("--calibration-docs", self.calibration_docs)):
            if value < 1:
                raise EEBenchError(f"{flag} must be a positive integer, got {value}; omit it for the default "
                                   f"({3 if flag == '--speedup-repeats' else 20}).")
        if self.calibration_patience is not None and self.calibration_patience < 1:  # 0 is bad, not "unset"
            raise EEBenchError(f"--calibration-patience must be positive (got {self.calibration_patience}); give 1 "
                               f"or more, or omit it to sweep the whole grid.")

        if self.reference_spread is not None and not 0.0 <= self.reference_spread < 1.0:
            raise EEBenchError(f"--speedup-reference-spread must be a fraction in [0, 1), e.g. 0.02; got "
                               f"{self.reference_spread}. Give 0 to time full depth in every round.")
        check_options(self.check, self.draft_len)
        check_objective(self.calibration_objective)


@dataclass(frozen=True)
class EarlyExitStageResult:
    """What the stage adds to a task's results.

    Attributes:
        samples: one ``{"early_exit": …}`` dict per evaluated record (:func:`early_exit_sample`).
        measured_speedup: KV strategy → its speed-up report (``measured_speedup`` in the results JSON).
    """

    samples: tuple[dict[str, Any], ...]
    measured_speedup: dict[str, Any]


def early_exit_sample(gate, thresholds: Mapping[str, float | None], min_prefix: int,
                      exit_layers: Sequence[int] | None, traces: Mapping[str, Any], check: str = "full",
                      threshold_warmup: float = 0.0) -> dict[str, Any]:
    """The ``early_exit`` field of one document's samples row.

    Args:
        gate: the gate (or its name). thresholds: KV strategy → τ used. min_prefix, exit_layers: the
            options. traces: KV strategy → that document's :class:`~ee_bench.decoding.early_exit.ExitTrace`.
        check: the check mode's name (``full`` or ``topk:K``). threshold_warmup: W, tokens (0: constant τ).

    Returns:
        ``{"early_exit": {"gate", "thresholds", "threshold_warmup", "min_prefix", "exit_layers_allowed", "check" (its label:
        ``topk:K (approximate)``), "traces": {kv: {"kv", "n_layers", "token_ids", "text", "exit_layers",
        "mean_layers_run", and for speculative "speculative": acceptance figures}}}}`` (exit layers
        0-based, L−1 = full depth).
    """

    return {"early_exit": {
        "gate": gate_name(gate), "thresholds": dict(thresholds), "threshold_warmup": threshold_warmup,
        "min_prefix": min_prefix,
        "exit_layers_allowed": None if exit_layers is None else list(exit_layers),
        "check": parse_check_mode(check).label,
        "traces": {kv: {**t.to_dict(), "mean_layers_run": t.mean_layers_run} for kv, t in traces.items()},
    }}


ORACLE_NOTE = ("not applicable: the oracle exit mode runs every layer to find each token's first-match layer "
               "(an analysis of the KV strategy's quality cost at a perfect gate); no speed-up is claimed")


def measured_labels(gate, kv: str, counts, options: EarlyExitOptions) -> dict[str, Any]:
    """What a measured report adds about its setting: the check mode (labelled approximate), the
    speculative acceptance figures, and for the oracle gate that the speed-up is not applicable.

    Returns:
        ``{"check", "check_approximate", "speedup_applicable", "speedup_note", "threshold_warmup"}``, plus ``"speculative"``
        (:func:`~ee_bench.decoding.early_exit.speculative_summary`) for a self-speculative strategy; for
        the oracle gate the speed-up figures are set to None (they override the report's).
    """

    mode = parse_check_mode(options.check)
    oracle = bool(getattr(GATES.get(gate) if isinstance(gate, str) else gate, "needs_final", False))
    out = {"check": mode.label, "check_approximate": mode.approximate, "speedup_applicable": not oracle,
           "speedup_note": ORACLE_NOTE if oracle else None, "threshold_warmup": options.threshold_warmup}
    if oracle:  # the wall times stay in the report; no speed-up figure is derived from them
        out.update(per_sequence_speedup=None, per_token_speedup=None, implied_speedup=None)
    strategy = KV_STRATEGIES.get(kv)
    if getattr(strategy, "self_speculative", False):
        out["speculative"] = speculative_summary(counts, options.draft_len or strategy.draft_len)
    return out


def run_early_exit_stage(model, spec, docs: Sequence[dict], records, gate, threshold: float,
                         options: EarlyExitOptions, *, target_lang: str | None, batch_size: int = 1,
                         out_dir: Path | None = None, progress: bool = False) -> EarlyExitStageResult:
    """Calibrate (optionally), decode with early exit and measure the speed-up for one task.

    Args:
        model: a causal wrapper (:class:`~ee_bench.models.contracts.CausalExitModel`).
        spec: the task (generation). docs: every document of its split (calibration draws from those
            not evaluated). records: the evaluated DocRecords, sorted by doc_id.
        gate, threshold: the gate and the τ to use without ``calibrate``.
        options: :class:`EarlyExitOptions`. target_lang: for chrF/BLEU. batch_size: calibration batch.
        out_dir: where the calibration sweep files go (None: not written).
        progress: show a tqdm bar over the timed decoding (one step per mode, chunk and repeat).

    Returns:
        :class:`EarlyExitStageResult`.

    Raises:
        EEBenchError: if the task is not a generation task, or too few documents remain to calibrate.
    """

    if spec.output_type != "generate_until":
        raise EEBenchError(f"--kv decodes generation tasks; {spec.task} is {spec.output_type}. Drop --kv for it.")
    kvs, layers = list(options.kvs), None if options.exit_layers is None else list(options.exit_layers)
    dec = decoder_for(model, options.check, options.draft_len)
    prompts_of = build_sources if model.kind == "seq2seq" else build_prompts  # encoder-decoder: encoder inputs
    prompts = [r.prompt_token_ids for r in records]
    refs = [r.references for r in records]
    taus = {kv: threshold for kv in kvs}
    calibrations = {}
    check = parse_check_mode(options.check)
    if check.shortlist is not None:  # issue 23: the N most frequent full-depth output tokens of calibration docs
        sl_ids = calibration_ids(len(docs), [r.doc_id for r in records], options.calibration_docs)
        sl_prompts = [ids for _, ids in prompts_of(model, spec, [docs[i] for i in sl_ids])]
        full = dec.decode(sl_prompts, None, None, kvs[0], spec.until, spec.max_gen_toks, exit_layers=(),
                          batch_size=batch_size)
        check = with_shortlist(check, [t.token_ids for t in full.traces])
        dec.check = check  # the calibration sweep decodes with the decoder's check mode
    if options.calibrate:
        cal_ids = calibration_ids(len(docs), [r.doc_id for r in records], options.calibration_docs)
        cal_docs = [docs[i] for i in cal_ids]
        cal_prompts = [ids for _, ids in prompts_of(model, spec, cal_docs)]
        cal_refs = [references_of(spec, d) for d in cal_docs]
        for kv in kvs:

            name = f"calibration_{safe_name(spec.task)}_{safe_name(gate_name(gate))}_{safe_name(kv)}.json"
            path = None if out_dir is None else out_dir / name
            cal = calibrate(dec, cal_prompts, cal_refs, cal_ids, gate, kv, spec.until, spec.max_gen_toks, layers,
                            options.min_prefix, "chrf", options.min_quality_ratio, target_lang=target_lang,
                            batch_size=batch_size, out_path=path, patience=options.calibration_patience,
                            objective=options.calibration_objective, threshold_warmup=options.threshold_warmup)
            calibrations[kv] = cal.to_dict()
            if cal.chosen is not None:
                taus[kv] = cal.chosen
    settings = [EESetting(kv, gate, taus[kv], None if layers is None else tuple(layers), options.min_prefix,
                          check, options.draft_len, options.threshold_warmup) for kv in kvs]
    with tqdm(desc=f"{spec.task} speed-up (--kv)", disable=not progress, file=sys.stderr) as bar:
        reports = measure_speedups(model, prompts, settings, spec.until, spec.max_gen_toks,
                                   repeats=options.speedup_repeats, batch_size=1, references=refs,
                                   reference_spread=options.reference_spread or None,
                                   target_lang=target_lang, decoder=dec, progress=bar)
    measured = {kv: {**rep.to_dict(), "calibration": calibrations.get(kv),
                     **measured_labels(gate, kv, rep.ee_counts, options)} for kv, rep in zip(kvs, reports)}
    samples = tuple(early_exit_sample(gate, taus, options.min_prefix, layers,
                                      {kv: rep.ee_traces[i] for kv, rep in zip(kvs, reports)}, options.check,
                                      options.threshold_warmup)
                    for i in range(len(records)))
    return EarlyExitStageResult(samples, measured)
