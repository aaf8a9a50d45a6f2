"""The early-exit decoding options of the main evaluation (``ee-bench --kv copy,recompute ...``).

:func:`add_arguments` adds ``--kv``, ``--exit-layers``, ``--min-prefix``, ``--calibrate``,
``--calibration-docs``, ``--min-quality-ratio`` and ``--speedup-repeats`` to the evaluation parser;
:func:`run_early_exit` runs, for one generation task, after the oracle pass:

1. with ``--calibrate``: the threshold sweep on documents disjoint from the evaluated ones (paper
   Fig. 2 protocol), written to ``calibration_<task>_<kv>.json`` after every point, choosing τ;
2. the measured speed-up against full depth on the evaluated documents, per KV strategy
   (``measured_speedup`` in the results JSON), whose early-exit runs also give the exit traces
   (output text, ids and exit layer per token) added to each document's samples row.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the early-exit decoding options to the evaluation parser."""
    g = p.add_argument_group("early-exit decoding (real token-level exits; generation tasks)")
    g.add_argument("--kv", default=None, help="comma-separated KV strategies (ee-bench ls kv); enables early-exit decoding")
    g.add_argument("--exit-layers", "--exit_layers", dest="exit_layers", default=None,
                   help="comma-separated 0-based layers where tokens may exit (default: every layer)")
    g.add_argument("--min-prefix", "--min_prefix", dest="min_prefix", type=int, default=4,
                   help="the first N generated tokens never exit (paper: 4)")
    g.add_argument("--calibrate", action="store_true",
                   help="choose the threshold by a sweep on documents disjoint from the evaluated ones")
    g.add_argument("--calibration-docs", dest="calibration_docs", type=int, default=20,
                   help="documents in the calibration subset (default 20)")
    g.add_argument("--min-quality-ratio", dest="min_quality_ratio", type=float, default=0.98,
                   help="calibration keeps the most aggressive threshold with quality >= this x full model")
    g.add_argument("--speedup-repeats", dest="speedup_repeats", type=int, default=3,
                   help="timed repeats per mode for the measured speed-up (median)")


def check_arguments(args: argparse.Namespace) -> list[str] | None:
    """Validate the options before anything loads; returns the KV strategy names (None without --kv).

    Raises:
        EEBenchError: for bad values (message names the fix); UnknownNameError for unknown strategies.
    """
    from ee_bench.commands.trace import parse_layers
    from ee_bench.decoding.samples import parse_kv_list

    if args.kv is None:
        if args.calibrate or args.exit_layers is not None:
            raise EEBenchError("--calibrate and --exit-layers apply to early-exit decoding; add --kv copy (or recompute, deferred).")
        return None
    if args.min_prefix < 0:
        raise EEBenchError(f"--min-prefix must be >= 0, got {args.min_prefix}.")
    if not 0.0 < args.min_quality_ratio <= 1.0:
        raise EEBenchError(f"--min-quality-ratio must be in (0, 1], e.g. 0.98; got {args.min_quality_ratio}.")
    if args.speedup_repeats < 1 or args.calibration_docs < 1:
        raise EEBenchError("--speedup-repeats and --calibration-docs must be positive integers.")
    args.exit_layers_list = parse_layers(args.exit_layers)
    return parse_kv_list(args.kv)


def run_early_exit(args: argparse.Namespace, kvs: list[str], model, spec, records, gate, threshold: float,
                   data_dir: str | None, out_dir: Path | None) -> tuple[list[dict], dict[str, Any]]:
    """Calibrate (optionally), decode with early exit and measure the speed-up for one task.

    Args:
        args: parsed options (see :func:`add_arguments`). kvs: strategy names. model: the wrapper.
        spec: the task (generation). records: its evaluated DocRecords, sorted by doc_id.
        gate, threshold: the gate and the τ to use without ``--calibrate``.
        data_dir: ``--data-dir``, to read calibration documents. out_dir: where sweep files go.

    Returns:
        (per-record extra fields for the samples JSONL, the ``measured_speedup`` results entry).

    Raises:
        EEBenchError: if the task is not a generation task, or too few documents remain to calibrate.
    """
    from ee_bench.exits.gates import gate_name

    from ee_bench.decoding.calibration import calibrate, calibration_ids
    from ee_bench.decoding.early_exit import EarlyExitDecoder
    from ee_bench.decoding.speedup import EESetting, measure_speedups
    from ee_bench.runners.generation import build_prompts, references_of
    from ee_bench.tasks.loaders import load_docs

    if spec.output_type != "generate_until":
        raise EEBenchError(f"--kv decodes generation tasks; {spec.task} is {spec.output_type}. Drop --kv for it.")
    if getattr(model, "kind", "causal") == "seq2seq":  # encoder-decoder: its own block loop and inputs
        from ee_bench.runners.seq2seq import build_sources as build_prompts  # noqa: F811

        dec = model.early_exit_decoder()
    else:
        dec = EarlyExitDecoder(model)
    layers = getattr(args, "exit_layers_list", None)
    prompts = [r.prompt_token_ids for r in records]
    refs = [r.references for r in records]
    lang = getattr(spec, "dataset_name", None) or ""
    lang = lang.split("-")[1] if "-" in lang else None
    taus = {kv: threshold for kv in kvs}
    calibrations = {}
    if args.calibrate:
        docs = load_docs(spec, data_dir)
        cal_ids = calibration_ids(len(docs), [r.doc_id for r in records], args.calibration_docs)
        cal_docs = [docs[i] for i in cal_ids]
        cal_prompts = [ids for _, ids in build_prompts(model, spec, cal_docs)]
        cal_refs = [references_of(spec, d) for d in cal_docs]
        for kv in kvs:
            path = None if out_dir is None else out_dir / f"calibration_{spec.task}_{kv}.json"
            cal = calibrate(dec, cal_prompts, cal_refs, cal_ids, gate, kv, spec.until, spec.max_gen_toks, layers,
                            args.min_prefix, "chrf", args.min_quality_ratio, target_lang=lang,
                            batch_size=args.batch_size, out_path=path)
            calibrations[kv] = cal.to_dict()
            if cal.chosen is not None:
                taus[kv] = cal.chosen
    settings = [EESetting(kv, gate, taus[kv], None if layers is None else tuple(layers), args.min_prefix) for kv in kvs]
    reports = measure_speedups(model, prompts, settings, spec.until, spec.max_gen_toks, repeats=args.speedup_repeats,
                               batch_size=1, references=refs, target_lang=lang, decoder=dec)
    measured = {kv: {**rep.to_dict(), "calibration": calibrations.get(kv)} for kv, rep in zip(kvs, reports)}
    extras = []
    for i in range(len(records)):
        traces = {kv: {**rep.ee_traces[i].to_dict(), "mean_layers_run": rep.ee_traces[i].mean_layers_run}
                  for kv, rep in zip(kvs, reports)}
        extras.append({"early_exit": {"gate": gate_name(gate), "thresholds": taus, "min_prefix": args.min_prefix,
                                      "exit_layers_allowed": layers, "traces": traces}})
    return extras, measured
