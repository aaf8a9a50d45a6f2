"""``ee-bench --model M --tasks T[,T2] --gate G``: the main evaluation (parse, call, print).

Order of work, so that bad input fails before anything heavy runs and nothing half-written is left:
parse and validate every option, resolve tasks, the model card, the gate and its thresholds, load every
task's documents; then load the model; then, task by task, call
:func:`ee_bench.evaluation.evaluate_task` and write that task's results atomically
(:func:`ee_bench.results.write_task_result`; an interrupted run keeps the tasks that finished).
"""

from __future__ import annotations

import argparse
import logging
import random
import shlex
import time
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.tasks.spec import is_lm_eval

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ee-bench",
        description="Per-token oracle exit layers, gates scored against the oracle, and task quality.",
    )
    p.add_argument("--model", required=True, help="model card (ee-bench ls models), wrapper name, or checkpoint folder")
    p.add_argument("--model_args", default=None, help="lm-eval style k=v,k2=v2 (pretrained=..., dtype=...)")
    p.add_argument("--tasks", required=True, help="comma-separated task or group names (ee-bench ls tasks); lm_eval:NAME for an lm-eval task "
                        "(ee-bench ls tasks --lm-eval)")
    p.add_argument("--gate", default="confidence", help="exit gate (ee-bench ls gates); default confidence")
    p.add_argument("--gate-file", "--gate_file", dest="gate_file", default=None,
                   help="--gate classifier: the probe file written by ee-bench fit-gate")
    p.add_argument("--threshold", type=float, default=None,
                   help="one gate threshold; without it the gate's documented grid is swept")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N documents of each task")
    p.add_argument("--gen_kwargs", "--gen-kwargs", dest="gen_kwargs", default=None,
                   help="lm-eval style overrides of generation tasks: max_gen_toks=N (the token budget); "
                        "do_sample=false and temperature=0 are accepted (decoding is greedy)")
    p.add_argument("--output_path", default=None, help="folder for results JSON, samples JSONL and leaderboard.md")
    p.add_argument("--trust-path", "--trust_path", dest="trust_path", action="append", default=[], metavar="DIR",
                   help="a folder outside a task file's own where its data_files may lie (your own data; "
                        "repeatable). By default task files may read only inside their folder and --data-dir")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", default=None,
                   help="local copy of the data in the official layouts (or set EE_BENCH_DATA_DIR)")
    p.add_argument("--comet-model", "--comet_model", dest="comet_model", default=None,
                   help="local COMET-22 checkpoint (folder or .ckpt) instead of Unbabel/wmt22-comet-da "
                        "(or set EE_BENCH_COMET_MODEL)")
    p.add_argument("--include_path", action="append", default=[], help="extra folder of task YAMLs (repeatable)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="auto, float32, bfloat16, float16 (default: the card's)")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="recompute every document instead of reusing the records of an interrupted run (ee_bench/resume.py)")
    p.add_argument("--cost-profile", "--cost_profile", dest="cost_profile", default="auto",
                   help="cost profile for the predicted speed-up (ee-bench cost): auto (the cached profile of this "
                        "model, device, dtype and threads if one exists; nothing is timed), a profile FILE, "
                        "measure (time one now and cache it) or none")
    from ee_bench.options import add_early_exit_arguments

    add_early_exit_arguments(p)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit <= 0:
        raise EEBenchError(f"--limit must be a positive number of documents, got {args.limit}. Omit it to run every document.")
    if args.seed < 0:
        raise EEBenchError(f"--seed must be a non-negative integer, got {args.seed}.")
    if args.batch_size <= 0:
        raise EEBenchError(f"--batch_size must be a positive integer, got {args.batch_size}.")
    if args.dtype is not None:
        from ee_bench.models.base import DTYPES

        if args.dtype != "auto" and args.dtype not in DTYPES:
            raise EEBenchError(f"unknown --dtype {args.dtype!r}; use one of auto, {', '.join(DTYPES)}")
    from ee_bench import preflight  # sec: data folder (missing or a file), output folder writable
    from ee_bench.devices import check_device  # sec: a device this machine lacks
    from ee_bench.tasks.loaders import data_dir_problem

    if args.data_dir is not None and data_dir_problem(Path(args.data_dir)):
        raise EEBenchError(data_dir_problem(Path(args.data_dir)))
    if args.output_path is not None:
        preflight.check_output_folder(args.output_path)
    if args.device is not None:
        check_device(args.device)
    if args.comet_model:
        from ee_bench.metrics.comet import check_comet_model

        check_comet_model(args.comet_model)


def _prepare(args: argparse.Namespace):
    """Resolve everything that can fail on bad input, before loading the model."""
    from ee_bench.evaluation import gate_thresholds
    from ee_bench.exits.classifier_gate import gate_from_options
    from ee_bench.metrics.base import METRICS, metric_options
    from ee_bench.models.cards import resolve_card
    from ee_bench.task_resolution import apply_gen_kwargs, resolve_tasks
    from ee_bench.tasks.loaders import load_docs
    from ee_bench.tasks.spec import parse_gen_kwargs

    _check_args(args)
    if args.comet_model:
        import os

        from ee_bench.metrics.comet import COMET_MODEL_ENV

        os.environ[COMET_MODEL_ENV] = args.comet_model
    gate = gate_from_options(args.gate, args.gate_file)  # issue 23: the classifier reads its probes from a file
    thresholds, chosen = gate_thresholds(gate, args.threshold)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not names:
        raise EEBenchError("--tasks is empty. Give one or more task names, e.g. --tasks wmt22_de_en.")
    # issue 16: ee-bench's tasks first, then lm-eval's (lm_eval:NAME); lm-eval tasks are built here
    gen_kwargs = parse_gen_kwargs(args.gen_kwargs)  # before any task file or data is read
    specs = resolve_tasks(names, [Path(p) for p in args.include_path], args.data_dir, args.limit, args.seed)
    specs = apply_gen_kwargs(specs, gen_kwargs)
    for spec in specs:
        for m in ([] if is_lm_eval(spec) else spec.metric_list):
            try:  # options checked before the model loads (lm-eval's aggregation/higher_is_better are not options)
                METRICS.get(m["metric"])(**metric_options(m))
            except (TypeError, ValueError) as exc:
                from ee_bench.errors import ConfigError

                raise ConfigError(spec.source_file, [f"metric {m['metric']!r} rejects its options "
                                                     f"{metric_options(m)}: {exc}"]) from None
    card = resolve_card(args.model, args.model_args)
    data = {}
    for spec in specs:
        # issue 16: lm-eval loaded an lm-eval task's documents (after --limit) when it built the task
        data[spec.task] = spec.docs if is_lm_eval(spec) else load_docs(spec, args.data_dir, args.trust_path)
        if not data[spec.task]:
            raise EEBenchError(f"Task {spec.task} has no documents in its {spec.test_split} split.")
        if not is_lm_eval(spec):  # lm-eval rendered its own task's prompts when it built the task
            from ee_bench.task_runners import check_first_document  # templates render before the model loads

            check_first_document(spec, data[spec.task][0])
    return gate, thresholds, chosen, specs, card, data


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    command = "ee-bench " + shlex.join(argv)
    gate, thresholds, chosen, specs, card, data = _prepare(args)
    profile_file = _cost_profile_file(args, card.name)  # issue 22: checked before the model loads
    from ee_bench.options import early_exit_options

    ee_options = early_exit_options(args)
    if ee_options:
        other = [f"{s.task} ({s.output_type})" for s in specs if s.output_type != "generate_until"]
        other += [f"{s.task} (built by lm-eval)" for s in specs if is_lm_eval(s)]  # issue 16
        if other:
            raise EEBenchError(f"--kv (real early-exit decoding) applies to generation tasks only; "
                               f"{', '.join(other)} is not one. Run those tasks without --kv.")
    from ee_bench.models.depth import check_exit_layers, checkpoint_depth

    exit_layers = ee_options.exit_layers if ee_options else None
    if exit_layers is not None:  # the depth from the checkpoint's config, before any weight loads
        check_exit_layers(exit_layers, checkpoint_depth(card), card.name)

    import torch

    from ee_bench.distributed import DistContext
    from ee_bench.evaluation import EvalOptions, evaluate_task, gate_thresholds
    from ee_bench.files import model_dir
    from ee_bench.leaderboard import format_rows, write_leaderboard
    from ee_bench.models.cards import load_model
    from ee_bench.results import git_sha, package_versions, result_dict, sample_rows, training_provenance, write_task_result

    dist = DistContext.from_env()
    if not (args.progress and dist.is_main):  # also silence transformers' and datasets' own bars
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    provenance = {"command": command, "git_sha": git_sha(), "seed": args.seed, "versions": package_versions()}
    if (trained := training_provenance(card.pretrained)) is not None:  # the finetune command, for -J rows
        provenance["training"] = trained
    if getattr(gate, "source", None):  # issue 23: which probes the classifier gate read, and how they were fitted
        provenance["gate_file"] = {"path": gate.source, "fitted": gate.provenance}
    config = dict(vars(args))
    if ee_options:  # the parsed --exit-layers, as recorded since the early-exit options exist
        config["exit_layers_list"] = None if ee_options.exit_layers is None else list(ee_options.exit_layers)
        config["threshold_warmup"] = ee_options.threshold_warmup  # the default 0.0 where not given
    from dataclasses import replace

    from ee_bench.resume import OutputLock, task_cache  # sec: output lock + document-level resume

    lock = OutputLock(args.output_path) if args.output_path and dist.is_main else None
    if lock is not None:  # sec: a second run on the same output folder refuses before loading the model
        lock.__enter__()
    try:
        random.seed(args.seed)
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        model = load_model(card, device=args.device or dist.device, dtype=args.dtype)
        load_s = time.perf_counter() - t0
        check_exit_layers(exit_layers, model.n_layers, card.name)  # a hub config not cached: before any record
        if hasattr(gate, "check_model"):  # probes fitted on another model are refused before any document runs
            gate.check_model(model.n_layers, model.describe()["hidden_size"], card.name)
        thresholds, _ = gate_thresholds(gate, args.threshold, model.n_layers)
        profile = _cost_profile(args, card.name, model, profile_file)
        options = EvalOptions(limit=args.limit, seed=args.seed, batch_size=args.batch_size, progress=args.progress, early_exit=ee_options,
                              output_dir=model_dir(args.output_path, card.name) if args.output_path else None,
                              dist=dist)  # side files (calibration sweeps) go next to the model's results
        written = []
        for spec in specs:
            cache = None
            if args.output_path and dist.world_size == 1:  # sec: key = everything that determines a record
                cache = task_cache(args.output_path, card.name, spec, args.gate, {
                    "card": card.name, "model_args": card.model_args, "pretrained": card.pretrained,
                    "model_info": model.describe(), "thresholds": thresholds, "chosen": chosen,
                    "early_exit": repr(ee_options), "seed": args.seed, "batch_size": args.batch_size,
                    "limit": args.limit}, fresh=not args.resume)
            task_options = replace(options, record_cache=cache)
            if is_lm_eval(spec):  # lm-eval builds, runs and scores the task (issue 16; ee_bench/lm_eval/tasks.py)
                from ee_bench.lm_eval.tasks import evaluate_lm_eval_task  # deferred: imports lm-eval

                task_result = evaluate_lm_eval_task(model, spec, gate, thresholds, chosen, task_options,
                                                    threshold_swept=args.threshold is None)
            else:
                task_result = evaluate_task(model, spec, data[spec.task], gate, thresholds, chosen, task_options,
                                            threshold_swept=args.threshold is None)
            if task_result is None:  # not the main process
                continue
            result = result_dict(task_result, model=card.name, config=config, provenance=provenance, model_load_s=load_s)
            result["model_info"]["trust_remote_code"] = bool(card.model_args.get("trust_remote_code", False))  # sec
            result["predicted_speedup"] = _predicted(result, profile, task_result.records)  # issue 22
            if args.output_path:
                written.append(write_task_result(args.output_path, result, sample_rows(task_result),
                                                 records=task_result.records, gate=gate))
                board = write_leaderboard([Path(args.output_path)], Path(args.output_path) / "leaderboard.md")
                if cache is not None:
                    cache.finish()
            _print_summary(result)
            print(format_rows([(result, None)]))
        dist.barrier()
        if args.output_path and dist.is_main:
            print(f"results: {', '.join(str(p) for p in written)}")
            print(f"leaderboard: {board}")
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)
    return 0


def _cost_profile_file(args: argparse.Namespace, model: str):
    """The ``--cost-profile FILE`` profile, read and checked (schema, numbers, model) before the model loads;
    None for auto / measure / none. Raises ProfileError (exit 2) for a damaged file or another model's."""
    if args.cost_profile in ("auto", "measure", "none"):
        return None
    from ee_bench.costs.profile import load_profile

    return load_profile(args.cost_profile, model)


def _cost_profile(args: argparse.Namespace, model_name: str, model, from_file):
    """The profile the predicted speed-up uses (None: none available): the given file, the cached profile
    of this model / device / dtype / threads (auto), or one measured now (measure, then cached)."""
    if args.cost_profile == "none" or not hasattr(model, "unembed") or getattr(model, "kind", "causal") != "causal":
        return None
    import torch

    from ee_bench.costs.profile import ProfileError, cache_path, cached_profile, save_profile
    from ee_bench.decoding.cost_profile import device_label

    prof = from_file
    dtype = str(next(model.model.parameters()).dtype).removeprefix("torch.")
    key = (model_name, device_label(model.device), dtype, torch.get_num_threads())
    if prof is None and args.cost_profile == "auto":
        prof = cached_profile(*key)
    elif prof is None and args.cost_profile == "measure":
        from ee_bench.decoding.cost_profile import measure_profile
        from ee_bench.results import package_versions

        prof = measure_profile(model, model_name, dtype=dtype, config=model.model.config.to_dict(),
                               versions=package_versions())
        save_profile(cache_path(*key), prof)
    if prof is not None and prof.n_layers != model.n_layers:
        raise ProfileError(f"the cost profile of {model_name} has {prof.n_layers} layers; the loaded model has "
                           f"{model.n_layers}. Give the profile of this model (ee-bench cost --model {model_name}).")
    return prof


def _predicted(result: dict[str, Any], profile, records) -> dict[str, Any] | None:
    """``predicted_speedup`` of one results JSON (:func:`ee_bench.costs.predict.predicted_speedup`) at the
    run's mean context: prompt tokens + half the output tokens, averaged over documents."""
    if profile is None or not records:
        return None
    from ee_bench.costs.predict import mean_context, predicted_speedup

    ctx = mean_context([len(r.prompt_token_ids) for r in records], [len(r.output_token_ids) for r in records])
    return predicted_speedup(result, profile, ctx)


def _print_summary(result: dict[str, Any]) -> None:
    fm, sat = result["oracle"]["first_match"], result["oracle"]["saturation"]
    L = fm["n_layers"]
    print(f"\n== {result['model']} | {result['task']} | {result['n_docs']['evaluated']}/{result['n_docs']['total']} docs, "
          f"{result['n_output_tokens']} output tokens, L = {L}")
    print("quality: " + ", ".join(f"{k} = {'n/a' if v is None else f'{v:.2f}'}" for k, v in result["metrics"].items()))
    from ee_bench.exits.headline import result_chance_first_match, result_headline_oracle

    head, chance = result_headline_oracle(result), result_chance_first_match(result)
    for name, s in (("first-match", fm), ("saturation", sat)):
        perc_k = ", ".join(f"perc@{k} {s[f'perc@{k}']:.1f}%" for k in (5, 10, 15, 20))
        note = " (headline)" if name.replace("-", "_") == head and head == "saturation" else ""
        if name == "first-match" and chance is not None:  # issue 24: few choices, chance level beside it
            note = f" (chance: avg {chance['avg']:.2f}, perc {chance['perc']:.1f}%)"
        print(f"oracle {name:11s}: avg {s['avg']:.2f}, perc {s['perc']:.1f}%, {perc_k}{note}")
    by_layer = result.get("metrics_by_layer")
    if by_layer:  # issue 24: the task's metrics at every exit layer
        for metric, values in by_layer["metrics"].items():
            print(f"{metric} by exit layer 0..{len(values) - 1}: " + " ".join("n/a" if v is None else f"{v:.2f}" for v in values))
    print(f"gate {result['gate']} (threshold -> signed / |abs| distance to first-match, gate accuracy, layers run, implied speed-up):")
    for g in result["gate_sweep"]:
        mark = " *" if g["threshold"] == result["threshold"] else ""
        print(f"  {g['threshold']:>6g}: {g['signed_distance']:+.2f} / {g['abs_distance']:.2f}, acc {g['accuracy']:.1f}%, "
              f"{g['mean_layers_run']:.2f} layers, implied x{g['implied_speedup']:.2f}{mark}")
    pred = result.get("predicted_speedup")
    if pred:  # issue 22: cost-model figures (docs/definitions.md)
        pr = pred["profile"]
        print(f"predicted speed-up ({pr['source']} profile: {pr['device']}, {pr['dtype']}, {pr['threads']} threads; "
              f"block {pr['block_ms']:.2f} ms, head {pr['head_ms']:.2f} ms = {pr['head_in_blocks']:.2f} blocks; "
              f"check {pred['check']}, kv {pred['kv'] or 'none counted'}):")
        print(f"  at threshold {pred['at_threshold']['threshold']:g}: x{pred['at_threshold']['per_token']:.2f}/token; "
              f"oracle ceiling x{pred['ceiling']['per_token']:.2f}/token; sweep: "
              + ", ".join(f"{p['threshold']:g} x{p['per_token']:.2f}" for p in pred["sweep"]))
    else:
        print("predicted speed-up: no cost profile for this model/device/dtype/threads (ee-bench cost --model M, "
              "or --cost-profile measure)")
    from ee_bench.decoding.speedup import result_verdicts

    verdicts = result_verdicts(result)
    if verdicts:  # issue 12: per-sequence and per-token, quality ratio, and why a figure is not headlined
        print("measured speed-up (per token, per sequence, quality ratio to full depth):")
        for v in verdicts:
            print(f"  {v.text()}")
    _print_early_exit_notes(result)


def _print_early_exit_notes(result: dict[str, Any]) -> None:
    """Per KV strategy: the check mode (approximate or not), the oracle's "speed-up not applicable",
    and speculative decoding's acceptance figures."""
    for kv, rep in (result.get("measured_speedup") or {}).items():
        if not isinstance(rep, dict) or "check" not in rep:
            continue
        line = f"early exit {kv}: check {rep['check']}"
        if rep.get("threshold") is not None:  # the τ the measured figures were taken at (may differ from the sweep's)
            cal = rep.get("calibration") or {}
            how = ""
            if cal.get("doc_ids"):
                ids = cal["doc_ids"]
                how = (f" (calibrated on docs {ids[0]}..{ids[-1]}, {cal.get('objective', 'token')} objective)"
                       if cal.get("chosen") is not None else
                       f" (calibration on docs {ids[0]}..{ids[-1]} kept no threshold: default)")
            line += f"; decoded at τ {rep['threshold']:g}{how}"
            if rep.get("threshold_warmup"):
                line += f", threshold warm-up {rep['threshold_warmup']:g} tokens"
        if not rep.get("speedup_applicable", True):
            line += f"; measured speed-up {rep['speedup_note']}"
        spec = rep.get("speculative")
        if spec:
            rate, per_round = spec["acceptance_rate"], spec["mean_accepted_per_round"]
            line += (f"; draft length {spec['draft_len']}, acceptance {'n/a' if rate is None else f'{rate:.1%}'} "
                     f"({spec['accepted_tokens']}/{spec['draft_tokens']}), "
                     f"{'n/a' if per_round is None else f'{per_round:.2f}'} accepted per round")
        print(line)
