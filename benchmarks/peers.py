"""The peers side by side: full depth, transformers' early-exit assistant, ee-bench speculative, copy
and recompute, on the same model, prompts and token budget, in one process (issue 12).

    python benchmarks/peers.py                                   # SmolLM2-135M, 8 WMT22 de-en docs
    python benchmarks/peers.py --n-docs 20 --repeats 3 --draft-layers 11,17
    python benchmarks/peers.py --model CKPT --task tiny_copy --include-path TASKS --n-docs 1 --max-gen-toks 4

Modes, all timed by ``ee_bench.decoding.speedup.time_interleaved`` (warm-up, ``--repeats`` rounds with
the modes alternating prompt by prompt, median round; batch 1):

- ``full depth``: the ee-bench decoding loop with no exit layers (the reference of every ratio);
- ``hf generate``: transformers' greedy ``generate`` (the same stop strings and budget);
- ``hf assistant E``: ``generate(assistant_early_exit=E+1)`` for each 0-based draft layer E of
  ``--draft-layers`` (transformers counts blocks: draft = blocks 0..E), LayerSkip's self-speculation;
- ``speculative E d``: ee-bench ``--kv speculative`` drafting with blocks 0..E (lossless), for each
  draft length of ``--draft-lens`` (a number, or ``adaptive``: transformers' heuristic, issue 23);
- ``KV gate/check``: real early exit for each KV strategy of ``--kv`` and each ``GATE:CHECK`` of
  ``--settings`` (``confidence:full``, ``confidence:shortlist:1024``, ``classifier:full`` with
  ``--gate-file``, ``state:full`` …) at ``--threshold`` (or calibrated on disjoint documents with
  ``--calibrate``), exits allowed only at ``--sparse-exit-layers``. A ``shortlist:N`` check's shortlist is
  the N most frequent full-depth output tokens of the first ``--shortlist-docs`` documents not evaluated
  (default: the calibration documents).

Predicted ×/token (issue 22's cost model): each run's own work counts (``DecodeCounts``) priced by the
model's cost profile (``--profile FILE``, or measured now with ``topk`` = the shortlist's N, since a
shortlist check is the same candidate-row product as a ``topk:N`` one), against full depth's. The oracle
ceiling: (L·b + h) / ((avg first-match + 1)·b + h) over the evaluated documents' full-depth outputs.

For each: per-token and per-sequence speed-up against full depth, token agreement with full depth,
chrF/BLEU against the references and the quality ratio, the verdict of
``ee_bench.decoding.speedup.speedup_verdict`` and the time split. Then the issue's targets, MET or
NOT MET and by how much, with the reason from the time split. Writes ``--out``/peers.json and
``--out``/peers.txt (the printout).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

TARGET_SPEEDUP = 1.15  # issue 23: per-token speed-up of the best setting keeping ≥ 98 % chrF
TARGET_SEQ_SPEEDUP = 1.10  # issue 23: its per-sequence speed-up
TARGET_PREDICTED_SHARE = 0.9  # measured per-token ≥ 0.9 × predicted (issue 22's cost model)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-ee", help="model card or checkpoint folder")
    p.add_argument("--task", default="wmt22_de_en")
    p.add_argument("--include-path", default=None, help="extra folder of task YAMLs")
    p.add_argument("--data-dir", default=None, help="offline data folder (e.g. ../shared/data)")
    p.add_argument("--n-docs", type=int, default=8, help="evaluated documents 0..N-1")
    p.add_argument("--max-gen-toks", type=int, default=24)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--draft-layers", default="11,17", help="0-based draft layers E (speculative and HF assistant)")
    p.add_argument("--sparse-exit-layers", default="11,17,23",
                   help="0-based exit layers of copy/recompute, or 'all' (every layer below the last)")
    p.add_argument("--draft-lens", default="4,adaptive",
                   help="speculative draft lengths: numbers and/or adaptive[:N], each optionally +gate (--draft-gate "
                        "ends a round after a draft it does not fire on)")
    p.add_argument("--draft-gate", default="confidence:0.4",
                   help="GATE:τ of +gate draft lengths (default confidence:0.4, transformers' default "
                        "assistant_confidence_threshold; classifier:τ reads --gate-file)")
    p.add_argument("--kv", default="recompute", help="non-lossless KV strategies to time")
    p.add_argument("--settings", default="confidence:full,confidence:shortlist:1024",
                   help="GATE:CHECK pairs of the early-exit rows (classifier needs --gate-file)")
    p.add_argument("--gate-file", default=None, help="probes of --settings classifier:… (ee-bench fit-gate)")
    p.add_argument("--profile", default=None, help="cost profile file (default: measure one now)")
    p.add_argument("--calibration-patience", type=int, default=2)
    p.add_argument("--shortlist-docs", type=int, default=None,
                   help="documents whose full-depth outputs give a shortlist: the first N not evaluated (default --n-cal)")
    p.add_argument("--threshold", type=float, default=None, help="τ without --calibrate (default: the gate's)")
    p.add_argument("--calibrate", action="store_true",
                   help="choose τ per KV strategy on --n-cal disjoint documents (quality ≥ --min-quality-ratio)")
    p.add_argument("--n-cal", type=int, default=6)
    p.add_argument("--calibration-objective", default="token",
                   help="among qualifying τ: the most aggressive (token) and/or the best implied ×/seq (sequence); "
                        "token,sequence times both choices of the one sweep side by side")
    p.add_argument("--min-prefix", type=int, default=4)
    p.add_argument("--threshold-warmups", default="0", metavar="W[,W…]",
                   help="threshold warm-ups in tokens, one calibrated row each (0: constant τ; ee-bench --threshold-warmup)")
    p.add_argument("--min-quality-ratio", type=float, default=0.98)
    p.add_argument("--device", default=None, help="cpu, cuda (default: the card's choice)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 … (default: the card's)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--calibration-threads", type=int, default=None,
                   help="torch CPU threads of the untimed calibration sweep and shortlist (None: as --threads); "
                        "the timed runs always use --threads")
    p.add_argument("--out", default="runs/peers")
    return p.parse_args(argv)


def _draft_gate(text: str, gate_file: str | None):
    """``--draft-gate GATE:τ`` → (gate, τ), checked before the model loads (EEBenchError naming the fix)."""
    from ee_bench.decoding.speculative import check_draft_stop
    from ee_bench.errors import EEBenchError
    from ee_bench.exits.classifier_gate import gate_from_options

    name, _, tau = text.partition(":")
    try:
        threshold = float(tau)
    except ValueError:
        raise EEBenchError(f"--draft-gate {text!r} must be GATE:τ, e.g. confidence:0.4 or classifier:0.5") from None
    name = name.strip()
    gate = gate_from_options(name, gate_file if name == "classifier" else None, ("--draft-gate", "--gate-file"))
    check_draft_stop(gate, True, "…+gate", fix="use e.g. --draft-gate confidence:0.4 or --draft-gate classifier:0.5 "
                                               "with --gate-file F")
    try:
        return gate, gate.check_threshold(threshold)
    except EEBenchError as exc:
        raise EEBenchError(f"--draft-gate {text!r}: τ {threshold} does not suit the {name} gate ({exc}); give e.g. "
                           f"--draft-gate {name}:{gate.default_threshold}") from None


def _layers(text: str, option: str) -> list[int]:
    """``"11,17"`` → [11, 17].

    Raises:
        EEBenchError: an entry that is not an integer.
    """
    from ee_bench.errors import EEBenchError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EEBenchError(f"{option} {text!r} must be comma-separated 0-based layers, e.g. 11,17") from None


def _check_depth(draft: list[int], sparse: tuple[int, ...] | None, n_layers: int | None) -> None:
    """Draft and exit layers lie in 0 … L−2 (0-based; L−1 is the full depth); a no-op while L is unknown.

    Raises:
        EEBenchError: a layer outside that range, named in ee-bench's 0-based units.
    """
    from ee_bench.errors import EEBenchError

    if n_layers is None:
        return
    for option, layers in (("--draft-layers", draft), ("--sparse-exit-layers", sparse or ())):
        bad = [x for x in layers if not 0 <= x < n_layers - 1]
        if bad:
            raise EEBenchError(f"{option} {bad}: this model's layers that can exit or draft are 0..{n_layers - 2} "
                               f"(0-based; layer {n_layers - 1} is the full depth)")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _split_row(name: str, s) -> list[str]:
    parts = [s.layers_s, s.gate_s, s.emit_s, s.kv_s, s.other_s]
    return [name, *[f"{x:.2f} ({100 * x / s.total_s:.0f}%)" if s.total_s else "0" for x in parts], f"{s.total_s:.2f}"]


def _settings(text: str) -> list[tuple[str, str]]:
    """``"confidence:full,confidence:shortlist:1024"`` → [(gate, check), …]."""
    out = []
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        gate, _, check = item.partition(":")
        out.append((gate, check or "full"))
    return out


def run(args) -> dict:
    import torch
    import transformers
    from tabulate import tabulate

    from ee_bench.costs.predict import ceiling, run_ms, run_work
    from ee_bench.costs.profile import load_profile
    from ee_bench.decoding.calibration import (
        best_per_sequence,
        calibrate,
        calibration_ids,
        check_objective,
        select_threshold,
    )
    from ee_bench.decoding.checks import parse_check_mode, with_shortlist
    from ee_bench.decoding.cost_profile import measure_profile
    from ee_bench.decoding.draft_length import parse_draft_len
    from ee_bench.decoding.early_exit import EarlyExitDecoder
    from ee_bench.decoding.speedup import (
        EESetting,
        compare_runs,
        full_depth_mode,
        hf_generate_mode,
        quality,
        quality_ratio_interval,
        setting_mode,
        speedup_verdict,
        time_interleaved,
    )
    from ee_bench.errors import EEBenchError
    from ee_bench.exits.classifier_gate import gate_from_options
    from ee_bench.exits.decide import check_threshold_warmup
    from ee_bench.exits.oracle import first_match_layer
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.models.depth import checkpoint_depth
    from ee_bench.results import package_versions
    from ee_bench.task_runners.generation import build_prompts, references_of
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs, target_language

    for obj in args.calibration_objective.split(","):
        check_objective(obj.strip())
    if args.n_docs < 1 or args.repeats < 1:
        raise EEBenchError(f"--n-docs {args.n_docs} and --repeats {args.repeats}: both must be at least 1")
    if args.threads < 1:
        raise EEBenchError(f"--threads {args.threads} must be at least 1, e.g. --threads 1")
    if args.calibration_threads is not None and args.calibration_threads < 1:
        raise EEBenchError(f"--calibration-threads {args.calibration_threads} must be at least 1, e.g. "
                           f"--calibration-threads 2 (or leave it out: as --threads)")
    cal_threads = args.threads if args.calibration_threads is None else args.calibration_threads
    draft = _layers(args.draft_layers, "--draft-layers")
    sparse = None if args.sparse_exit_layers.strip().lower() == "all" else tuple(_layers(args.sparse_exit_layers,
                                                                                         "--sparse-exit-layers"))
    lens = [parse_draft_len(x.strip()) for x in args.draft_lens.split(",") if x.strip()]
    draft_gate = _draft_gate(args.draft_gate, args.gate_file) if any(getattr(d, "gate_stop", False) for d in lens) else None
    pairs = _settings(args.settings)
    gates = {g: gate_from_options(g, args.gate_file if g == "classifier" else None) for g, _ in pairs}
    try:
        warmups = [float(w) for w in args.threshold_warmups.split(",") if w.strip()]
    except ValueError:
        raise EEBenchError(f"--threshold-warmups {args.threshold_warmups!r} must be comma-separated numbers of tokens, "
                           f"e.g. 0,4") from None
    if not warmups:
        raise EEBenchError("--threshold-warmups names no value; give e.g. 0 (a constant threshold) or 0,4")
    for w in warmups:
        for gate in gates.values():
            check_threshold_warmup(w, gate, option="--threshold-warmups")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    card = resolve_card(args.model)
    _check_depth(draft, sparse, checkpoint_depth(card))  # from the configuration, before any weight loads
    model = load_model(card, device=args.device, dtype=args.dtype)
    spec = TaskIndex([Path(args.include_path)] if args.include_path else []).expand([args.task])[0]
    docs = load_docs(spec, args.data_dir)
    eval_ids = list(range(min(args.n_docs, len(docs))))
    lang = target_language(spec, docs)
    prompts = [ids for _, ids in build_prompts(model, spec, [docs[i] for i in eval_ids])]
    refs = [references_of(spec, docs[i]) for i in eval_ids]
    until, budget = tuple(spec.until), args.max_gen_toks
    dec = EarlyExitDecoder(model)
    L = dec.n_layers
    _check_depth(draft, sparse, L)
    for g in gates.values():
        if hasattr(g, "check_model"):
            g.check_model(L, model.describe()["hidden_size"], card.name)
    print(f"model {model.name}: L = {L} blocks, {model.device} {dec.runner.dtype}, {args.threads} thread(s) timed, "
          f"{cal_threads} for the calibration, "
          f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"task {spec.task}: docs 0..{len(eval_ids) - 1}, max_gen_toks {budget}, batch 1, {args.repeats} repeats "
          f"(median), draft layers E {draft} (0-based) × draft lengths {[str(x) for x in lens]}"
          + (f" ({args.draft_gate} ends rounds)" if draft_gate else "") + ", early exit: "
          + (f"{args.kv} × {args.settings}, exit layers {'all' if sparse is None else list(sparse)}"
             if args.kv.strip() and pairs else "none") + f", min_prefix {args.min_prefix}"
          + (f", classifier probes {args.gate_file}" if args.gate_file else ""))

    modes, names, kinds, meta = [full_depth_mode(dec, until, budget)], ["full depth"], ["full"], [{}]
    modes.append(hf_generate_mode(model, until, budget))
    names.append("hf generate")
    kinds.append("hf")
    meta.append({})
    notes = []
    for e in draft:
        mode = hf_generate_mode(model, until, budget, assistant_early_exit=e + 1)
        try:
            mode(prompts[:1])
        except Exception as exc:  # noqa: BLE001 -- an unsupported model or transformers version: say so, keep the rest
            notes.append(f"hf assistant {e}: generate(assistant_early_exit={e + 1}) is unsupported here "
                         f"(transformers {transformers.__version__}, {type(model.model).__name__}): {exc}")
            continue
        modes.append(mode)
        names.append(f"hf assistant {e}")
        kinds.append("hf_assist")
        meta.append({})
    for e in draft:
        for d in lens:
            gate, tau = draft_gate if getattr(d, "gate_stop", False) else (None, None)
            modes.append(setting_mode(dec, EESetting("speculative", gate, tau, (e,), args.min_prefix, None, d),
                                      until, budget))
            names.append(f"speculative {e} d={d}" + (f" ({args.draft_gate})" if gate is not None else ""))
            kinds.append("speculative")
            meta.append({"draft_layer": e, "check": "full", "needs_head": True})
    n_cal = args.n_cal if args.calibrate else min(args.n_cal, len(docs) - len(eval_ids))  # shortlists only: what is left
    cal_ids = calibration_ids(len(docs), eval_ids, n_cal)
    cal_docs = [docs[i] for i in cal_ids]
    cal_prompts = [ids for _, ids in build_prompts(model, spec, cal_docs)]
    cal_refs = [references_of(spec, d) for d in cal_docs]
    torch.set_num_threads(cal_threads)  # untimed: the shortlist and the sweeps (timed runs below use --threads)
    checks = {}
    for _, c in pairs:
        mode = parse_check_mode(c)
        if mode.shortlist is not None and c not in checks:  # built once from full-depth outputs of docs not evaluated
            sl_ids = calibration_ids(len(docs), eval_ids, args.shortlist_docs or n_cal)
            sl_prompts = [ids for _, ids in build_prompts(model, spec, [docs[i] for i in sl_ids])]
            ref = dec.decode(sl_prompts, None, None, "copy", until, budget, exit_layers=())
            mode = with_shortlist(mode, [t.token_ids for t in ref.traces])
            print(f"{c}: {len(mode.ids)} ids from the full-depth outputs of docs {sl_ids[0]}..{sl_ids[-1]}")
        checks[c] = mode
    taus, calibrations = {}, {}
    objectives = [o.strip() for o in args.calibration_objective.split(",") if o.strip()]
    for kv in [k for k in args.kv.split(",") if k]:
        for (g, c), warmup in ((pair, w) for pair in pairs for w in warmups):
            gate, mode, name = gates[g], checks[c], f"{kv} {g}/{c}" + (f" W{warmup:g}" if warmup else "")
            chosen = {"-": gate.default_threshold if args.threshold is None else args.threshold}
            if args.calibrate:
                dec.check = mode  # the sweep decodes with the decoder's check mode
                cal = calibrate(dec, cal_prompts, cal_refs, cal_ids, gate, kv, until, budget, sparse,
                                args.min_prefix, "chrf", args.min_quality_ratio, target_lang=lang,
                                patience=args.calibration_patience, objective=objectives[0], threshold_warmup=warmup)
                dec.check = parse_check_mode("full")
                calibrations[name] = cal.to_dict()
                print("  sweep (τ: chrF ratio, implied ×/token, implied ×/seq, tokens of "
                      f"{cal.full_tokens} at full depth): " + "; ".join(
                          f"{p.threshold:g}: {_pct(p.relative_quality)}, {p.implied_speedup:.2f}, "
                          f"{p.implied_sequence_speedup:.2f}, {p.tokens}" for p in cal.points), flush=True)
                chosen = {}
                for obj in objectives:  # one sweep, each objective's choice (docs/kv_strategies.md)
                    tau = (cal.chosen if obj == objectives[0] else
                           best_per_sequence(cal.points, cal.full_quality, args.min_quality_ratio, gate.aggressive)
                           if obj == "sequence" else
                           select_threshold([(p.threshold, p.quality) for p in cal.points], cal.full_quality,
                                            args.min_quality_ratio, gate.aggressive))
                    print(f"[{name}] calibrated on docs {cal_ids[0]}..{cal_ids[-1]} ({obj} objective): "
                          + (f"τ {tau:g}" if tau is not None else
                             f"none kept {args.min_quality_ratio:g}: default τ {gate.default_threshold:g} used"),
                          flush=True)
                    chosen[obj] = gate.default_threshold if tau is None else tau
            for tau in dict.fromkeys(chosen.values()):  # one row per distinct τ
                by = [o for o, t in chosen.items() if t == tau and o != "-"]
                row = f"{name} τ{tau:g}" + (f" ({', '.join(by)})" if len(objectives) > 1 and by else "")
                taus[row] = tau
                modes.append(setting_mode(dec, EESetting(kv, gate, tau, sparse, args.min_prefix, mode,
                                                         threshold_warmup=warmup), until, budget))
                names.append(row)
                kinds.append("early_exit")
                meta.append({"gate": gate, "check": c, "needs_head": gate.needs_head, "kv": kv, "mode": mode,
                             "tau": tau})
    for n in notes:
        print(n)

    torch.set_num_threads(args.threads)  # the timed runs and the cost profile
    t0 = time.perf_counter()
    runs = time_interleaved(modes, prompts, args.repeats, batch_size=1)
    print(f"timed {len(modes)} modes x {args.repeats} repeats ({time.perf_counter() - t0:.0f} s)", flush=True)
    full = runs[0]
    q_full = quality([t.text for t in full.traces], refs, ("chrf", "bleu"), lang)
    reports = [compare_runs(n, m.get("gate"), m.get("tau") if k == "early_exit" else None, full, r,
                            n_layers=L, repeats=args.repeats, batch_size=1, references=refs, target_lang=lang,
                            full_quality=q_full) for n, k, m, r in zip(names, kinds, meta, runs)]
    verdicts = [speedup_verdict(n, r.to_dict(), args.min_quality_ratio) for n, r in zip(names, reports)]

    # issue 22: predicted ×/token from each run's own counts, and the oracle ceiling
    shortlist_n = max([m.shortlist for m in checks.values() if m.shortlist] or [16])
    if args.profile:
        prof = load_profile(args.profile, card.name)
    else:
        dtype = str(next(model.model.parameters()).dtype).removeprefix("torch.")
        prof = measure_profile(model, card.name, dtype=dtype, config=model.model.config.to_dict(),
                               versions=package_versions(), topk=shortlist_n, contexts=(32, 256))
    lengths = [len(p) for p in prompts]
    full_ms = run_ms(prof, run_work(full.counts.to_dict(), L, "copy", "full", lengths))
    predicted = []
    for k, m, r in zip(kinds, meta, reports):
        if k in ("hf", "hf_assist"):
            predicted.append(None)
            continue
        if k == "full":
            predicted.append(1.0)
            continue
        mode = m.get("mode")
        price = f"topk:{len(mode.ids)}" if mode is not None and mode.shortlist else m["check"]
        if price.startswith("topk:") and price not in prof.check_ms:
            price = f"topk:{shortlist_n}"
        try:
            w = run_work(r.ee_counts.to_dict(), L, m.get("kv", "speculative"), price, lengths,
                         needs_head=m["needs_head"], draft_layer=m.get("draft_layer"))
            predicted.append((r.ee_tokens / run_ms(prof, w)) / (r.full_tokens / full_ms))
        except Exception as exc:  # noqa: BLE001 -- a mode the profile cannot price: say so, keep the rest
            notes.append(f"{k}: no predicted figure ({exc})")
            predicted.append(None)
    an = model.analyse_outputs(prompts, [list(t.token_ids) for t in full.traces])
    fm = torch.cat([first_match_layer(a.stats.top1).float() for a in an if a.stats.n_tokens])
    ceil = ceiling(prof, float(fm.mean()))
    print(f"cost profile ({prof.source}): block {prof.block(1):.3f} ms, head {prof.head(1):.3f} ms = "
          f"{prof.head_in_blocks:.2f} blocks; first-match avg {float(fm.mean()):.2f} (0-based) over "
          f"{fm.numel()} full-depth tokens → oracle ceiling {ceil:.3f}× per token")

    def accept(r) -> str:
        c = r.ee_counts
        if not c.draft_tokens:
            return "-"
        return f"{c.accepted_tokens / c.draft_tokens:.2f} / {c.accepted_tokens / max(1, c.draft_rounds):.2f}"

    full_texts = [t.text for t in full.traces]
    cis = [quality_ratio_interval([t.text for t in run.traces], full_texts, refs, "chrf", lang) for run in runs]
    rows = []
    for n, k, r, v, pr, ci in zip(names, kinds, reports, verdicts, predicted, cis):
        q = r.quality
        rows.append([n, f"{r.per_token_speedup:.3f}", f"{r.per_sequence_speedup:.3f}",
                     "n/a" if pr is None else f"{pr:.3f}",
                     "n/a" if k.startswith("hf") else f"{r.implied_speedup:.2f}", f"{r.token_agreement:.3f}",
                     f"{q['chrf']['early_exit']:.2f}", f"{q['bleu']['early_exit']:.2f}", _pct(v.quality_ratio),
                     "-" if k == "full" else "n/a" if ci is None else f"{ci.low:.1f}–{ci.high:.1f} %", f"{r.ee_tokens}", accept(r), f"{r.ee_wall_s / max(1, r.ee_tokens) * 1e3:.1f}",
                     "ok" if v.headlined else "; ".join(v.flags)])
    print()
    print(tabulate(rows, headers=["mode", "×/token", "×/seq", "predicted", "implied", "agreement", "chrF", "BLEU",
                                  "chrF ratio", "95 % CI", "tokens", "accept rate / mean accepted", "ms/token", "verdict"],
                   tablefmt="github", disable_numparse=True))
    print(f"\n×/token, ×/seq: against ee-bench full depth in this run; predicted: the cost model's ×/token from "
          f"the run's own work counts; oracle ceiling {ceil:.3f}×/token; agreement: share of full-depth tokens "
          f"reproduced; implied: L / mean blocks per token (n/a: work inside transformers is not counted); 95 % CI: "
          f"paired bootstrap over documents of the chrF ratio (1000 resamples; n/a with fewer than 2 documents)")
    print("\ntime split, seconds (share): layers = blocks, gate = head + statistics of gate checks, emit = head of "
          "emitted tokens, kv = KV-strategy work outside blocks; transformers' generate is all 'other'")
    print(tabulate([_split_row(n, r.ee_split) for n, r in zip(names, reports)],
                   headers=["mode", "layers", "gate", "emit", "kv", "other", "total"], tablefmt="github"))

    targets = _targets(names, kinds, reports, verdicts, predicted, L)
    print("\ntargets (issue 23; set for the joint-optimised checkpoint, printed for this model):")
    for t in targets:
        print(f"- {t['target']}: {t['status']}. {t['detail']}")
    print(f"\n({time.perf_counter() - t_start:.0f} s in all)")
    return {"args": vars(args), "n_layers": L, "transformers": transformers.__version__, "notes": notes,
            "thresholds": taus, "calibrations": calibrations, "full_quality": q_full, "targets": targets,
            "ceiling_per_token": ceil, "first_match_avg": float(fm.mean()), "profile": prof.to_dict(),
            "modes": [{"mode": n, "kind": k, "report": r.to_dict(), "verdict": v.to_dict(), "predicted_per_token": pr,
                       "chrf_ratio_interval": None if ci is None else ci.to_dict()}
                      for n, k, r, v, pr, ci in zip(names, kinds, reports, verdicts, predicted, cis)]}


def _why(r, L: int) -> str:
    """The reason a mode fell short, read off its time split and counts."""
    s, c = r.ee_split, r.ee_counts
    if r.ee_split.layers_s and not c.gate_checks and not c.draft_rounds:
        return (f"no gate check ran (min_prefix covers the budget, or no exit layer allowed); blocks "
                f"{100 * s.layers_s / s.total_s:.0f}% / other {100 * s.other_s / s.total_s:.0f}% of its time")
    if c.draft_rounds:
        mean_acc = c.accepted_tokens / c.draft_rounds
        return (f"acceptance {c.accepted_tokens}/{c.draft_tokens} drafts ({mean_acc:.2f} accepted per round of "
                f"{c.draft_tokens / c.draft_rounds:.1f}); blocks run {r.work_ratio:.2f}× full depth's; "
                f"layers {100 * s.layers_s / s.total_s:.0f}% / other {100 * s.other_s / s.total_s:.0f}% of its time")
    if c.gate_checks:
        return (f"{c.gate_checks / c.tokens:.1f} gate checks per token took {100 * s.gate_s / s.total_s:.0f}% of the "
                f"time; {L / r.implied_speedup:.1f} of {L} blocks run per token (implied {r.implied_speedup:.2f}×)")
    return "no split inside transformers' generate; see the wall time per token"


def _targets(names, kinds, reports, verdicts, predicted, L: int) -> list[dict]:
    def status(value: float, goal: float) -> tuple[str, str]:
        return ("MET" if value >= goal else "NOT MET"), f"{value:.3f} vs {goal:.3f} ({value - goal:+.3f})"

    out = []
    ee = [(n, r, v, p) for n, k, r, v, p in zip(names, kinds, reports, verdicts, predicted) if k == "early_exit"]
    kept = [x for x in ee if x[2].headlined]
    if ee:
        n, r, v, p = max(kept or ee, key=lambda x: x[1].per_token_speedup)
        why = f"{'' if kept else f'; no setting kept quality ({chr(59).join(v.flags)})'}. Why: {_why(r, L)}"
        st, how = status(r.per_token_speedup, TARGET_SPEEDUP)
        out.append({"target": f"best setting keeping ≥ 98 % chrF: ≥ {TARGET_SPEEDUP}× per token",
                    "status": st if kept else "NOT MET", "detail": f"{n}: {how}{why}"})
        st, how = status(r.per_sequence_speedup, TARGET_SEQ_SPEEDUP)
        out.append({"target": f"the same setting: ≥ {TARGET_SEQ_SPEEDUP}× per sequence",
                    "status": st if kept else "NOT MET", "detail": f"{n}: {how}"})
        if p:
            st, how = status(r.per_token_speedup / p, TARGET_PREDICTED_SHARE)
            out.append({"target": f"measured per-token ≥ {TARGET_PREDICTED_SHARE} × predicted ({n})", "status": st,
                        "detail": f"measured {r.per_token_speedup:.3f} / predicted {p:.3f}: {how}"})
    for n, k, r in zip(names, kinds, reports):
        if k != "speculative":
            continue
        identical = r.token_agreement == 1.0 and r.ee_tokens == r.full_tokens
        e = n.split()[1]
        hf = next((x for x, kk in zip(zip(names, reports), kinds) if kk == "hf_assist" and x[0].endswith(f" {e}")), None)
        if hf is None:
            out.append({"target": f"{n} token-identical and at least as fast as hf assistant {e}",
                        "status": "NOT MEASURED" if identical else "NOT MET",
                        "detail": f"token agreement {r.token_agreement:.3f}; transformers' assistant_early_exit did "
                                  f"not run here (see the note above)"})
            continue
        ratio = r.per_token_speedup / hf[1].per_token_speedup
        st, how = status(ratio, 1.0)
        out.append({"target": f"{n} token-identical and at least as fast as hf assistant {e} (ratio of per-token "
                              f"speed-ups)", "status": st if identical else "NOT MET",
                    "detail": f"{how}; hf assistant {e} {hf[1].per_token_speedup:.3f}×, {n} {r.per_token_speedup:.3f}×; "
                              f"token agreement {r.token_agreement:.3f}{'' if identical else ' (NOT identical)'}. "
                              f"Why: {_why(r, L)}"})
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from ee_bench.errors import EEBenchError
    from ee_bench.preflight import check_output_folder

    out = Path(args.out)
    buf = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, s):
            buf.write(s)
            return sys.__stdout__.write(s)

        def flush(self):
            sys.__stdout__.flush()

    try:
        check_output_folder(out, "--out")
        with redirect_stdout(Tee()):
            report = run(args)
    except EEBenchError as exc:  # bad input: one line, nothing written
        print(f"peers.py: error: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    from ee_bench.files import atomic_write

    atomic_write(out / "peers.json", json.dumps(report, indent=1))
    atomic_write(out / "peers.txt", buf.getvalue())
    print(f"written: {out / 'peers.json'}, {out / 'peers.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
