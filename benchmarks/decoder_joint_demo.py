"""Joint optimisation on a real decoder (paper §6, "-J" rows of Tables 6/11, Fig. 10), in one command.

    python benchmarks/decoder_joint_demo.py                       # the demonstration (defaults: docs/joint_decoders.md)
    python benchmarks/decoder_joint_demo.py --steps 3 --train-docs 12 --eval-docs 2 --calibration-docs 2 \\
        --gates confidence --speedup-repeats 1 --out runs/joint_smoke   # a smoke run (minutes)

A thin script over the package's public entry points (``ee_bench.cli.main`` for ``finetune``, the main
evaluation and ``trace``; :func:`ee_bench.decoder_similarity.profile_decoder_on_task` for the
three-model similarity plot); it only chooses arguments and lays the numbers out side by side:

1. trains ``final`` and ``joint`` from ``--model`` (default SmolLM2-135M) on the first ``--train-docs``
   WMT14 newstest2014 de→en pairs (the task's prompt and chat template, reference as response) with the
   same steps, data, lr and seed (``ee-bench finetune --train-task wmt14_de_en``);
2. evaluates pretrained, final and joint on the first ``--eval-docs`` WMT22 de-en documents, once per gate,
   with real early-exit decoding per KV strategy and ``--calibrate`` (the threshold keeping ≥ 98 % of that
   model's own full-depth chrF, chosen on ``--calibration-docs`` documents disjoint from the evaluated
   ones): chrF/BLEU, first-match and saturation avg/perc/perc@k, each gate's signed/abs distance to the
   oracle and accuracy at the calibrated threshold, quality, token agreement and measured per-token
   speed-up per KV strategy. Results go to ``OUT/results/<model>/`` (``ee-bench leaderboard`` reads them,
   one row per model);
3. profiles per-layer mean confidence and KL/JS to the last layer of all three (table + PNG);
4. traces "Die Ware hat unter 20 Euro gekostet." in the paper's Table 6/11 layout (rows pre, pre-d,
   pre-c, j, j-d, j-c: output and exit layer per token, early exit from the 4th token; -d = copy,
   -c = recompute), each KV strategy at its own calibrated confidence threshold;
5. writes ``OUT/summary.md`` and ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from pathlib import Path

from ee_bench.cli import main as ee_bench

SENTENCE = "Die Ware hat unter 20 Euro gekostet."
KEEP = 0.98


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-ee", help="causal LM card or folder (default smollm2-135m-ee)")
    p.add_argument("--data-dir", default=os.environ.get("EE_BENCH_DATA_DIR", "../shared/data"))
    p.add_argument("--out", default="runs/decoder_joint_demo")
    p.add_argument("--steps", type=int, default=120, help="optimiser steps per trained model")
    p.add_argument("--train-docs", type=int, default=480, help="first N WMT14 newstest2014 de-en pairs")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--sample-layers", type=int, default=6, help="joint: early layers sampled per step (+ the last)")
    p.add_argument("--layer-weights", default="increasing", choices=("uniform", "increasing"))
    p.add_argument("--eval-docs", type=int, default=50, help="first N WMT22 de-en documents")
    p.add_argument("--calibration-docs", type=int, default=10, help="disjoint WMT22 documents for the thresholds")
    p.add_argument("--calibration-patience", type=int, default=2,
                   help="stop a threshold sweep after N consecutive points below the 98%% floor")
    p.add_argument("--gates", default="confidence,entropy,patience",
                   help="the first gets real early-exit decoding per --kv; the others are calibrated with "
                        "--gate-kv and scored offline on the same documents (ee-bench rescore)")
    p.add_argument("--kv", default="copy,recompute")
    p.add_argument("--exit-layers", default="11,17,23",
                   help="0-based layers where early-exit decoding may exit ('all': every layer). One full-head check "
                        "costs about 11.7 SmolLM2 blocks, so checks at every layer cannot pay (docs/kv_strategies.md); "
                        "the Table 6 traces always allow every layer")
    p.add_argument("--gate-kv", default="recompute", help="KV strategy calibrating the thresholds of the other gates")
    p.add_argument("--eval-batch-size", type=int, default=8, help="rows per batch of the analysis and calibration runs")
    p.add_argument("--speedup-repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1… (default: cuda when available, else cpu)")
    p.add_argument("--reuse", action="store_true", help="keep checkpoints already in OUT/ckpt")
    return p.parse_args(argv)


def run(argv: list[str]) -> str:
    """``ee-bench ARGV`` in-process; returns what it printed; exits with a message on failure."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = ee_bench(argv)
    if code != 0:
        sys.exit(f"ee-bench {' '.join(argv)} failed with exit code {code}")
    return buf.getvalue()


def device_args(args) -> list[str]:
    """``--device`` for the ee-bench commands this script runs, when one was chosen."""
    return ["--device", args.device] if args.device else []


def train(args, objective: str, ckpt: Path) -> dict:
    if not (args.reuse and (ckpt / "ee_bench_card.yaml").exists()):
        cmd = ["finetune", "--model", args.model, "--task-type", "causal", "--train-task", "wmt14_de_en",
               "--data-dir", args.data_dir, "--rows", f"0:{args.train_docs}", "--objective", objective,
               "--max-steps", str(args.steps), "--lr", str(args.lr), "--batch_size", str(args.batch_size),
               "--seed", str(args.seed), "--output_dir", str(ckpt)] + device_args(args)
        if objective == "joint":
            cmd += ["--layer-weights", args.layer_weights, "--sample-layers", str(args.sample_layers)]
        print(run(cmd).strip(), flush=True)
    return json.loads((ckpt / "ee_bench_finetune.json").read_text())


def evaluate(args, model: str, gate: str, results: Path) -> tuple[dict, Path]:
    """The main evaluation with real early-exit decoding per ``--kv`` and calibrated thresholds."""
    out = run(["--model", model, "--tasks", "wmt22_de_en", "--data-dir", args.data_dir, "--limit", str(args.eval_docs),
               "--gate", gate, "--kv", args.kv, "--calibrate", "--calibration-docs", str(args.calibration_docs),
               "--calibration-patience", str(args.calibration_patience), "--min-quality-ratio", str(KEEP),
               "--speedup-repeats", str(args.speedup_repeats), "--batch_size", str(args.eval_batch_size),
               "--seed", str(args.seed), "--no-progress", "--output_path", str(results)]
              + device_args(args) + ([] if args.exit_layers == "all" else ["--exit-layers", args.exit_layers]))
    path = Path(next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("results: ")).split(", ")[0])
    return json.loads(path.read_text()), path


def other_gate(args, model_path: str, gate: str, results_path: Path, out: Path) -> dict:
    """A further gate on the same documents: its threshold calibrated with ``--gate-kv`` on the same
    disjoint documents (:func:`ee_bench.decoding.calibration.calibrate`), its offline sweep from the
    first gate's records (:func:`ee_bench.rescore.rescore_run`). No early-exit decoding of the 50."""
    from ee_bench.decoding.calibration import calibrate, calibration_ids
    from ee_bench.decoding.early_exit import EarlyExitDecoder
    from ee_bench.exits.gates import GATES
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.options import parse_layers
    from ee_bench.rescore import rescore_run
    from ee_bench.task_runners.generation import build_prompts, references_of
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    spec = TaskIndex().expand(["wmt22_de_en"])[0]
    docs = load_docs(spec, args.data_dir)
    model = load_model(resolve_card(model_path), device=args.device)
    ids = calibration_ids(len(docs), range(args.eval_docs), args.calibration_docs)
    prompts = [p for _, p in build_prompts(model, spec, [docs[i] for i in ids])]
    layers = None if args.exit_layers == "all" else parse_layers(args.exit_layers)
    cal = calibrate(EarlyExitDecoder(model), prompts, [references_of(spec, docs[i]) for i in ids], ids, GATES.get(gate)(),
                    args.gate_kv, spec.until, spec.max_gen_toks, layers, 4, "chrf", KEEP, target_lang="en",
                    batch_size=args.eval_batch_size, patience=args.calibration_patience,
                    out_path=out / f"calibration_wmt22_de_en_{gate}_{args.gate_kv}.json")
    sweep = rescore_run(results_path, gate).report.sweep
    return {"gate_sweep": [s.to_dict() for s in sweep],
            "calibration": cal.to_dict()}


def gate_at_calibrated(res: dict, kv: str) -> dict:
    """The offline gate row (distance to the first-match oracle, accuracy) at the τ calibrated for ``kv``."""
    cal = res["calibration"] if "calibration" in res else res["measured_speedup"][kv].get("calibration")
    tau = (cal or {}).get("chosen")
    row = next((g for g in res["gate_sweep"] if tau is not None and g["threshold"] == tau), None)
    return {"threshold": tau, **({k: row[k] for k in ("signed_distance", "abs_distance", "accuracy",
                                                       "mean_layers_run")} if row else {})}


def trace(args, model: str, kv: str, tau, gate: str = "confidence") -> dict:
    cmd = ["trace", "--model", model, "--text", SENTENCE, "--kv", kv, "--gate", gate, "--min-prefix", "4",
           "--json"] + device_args(args) + ([] if tau is None else ["--threshold", str(tau)])
    return json.loads(run(cmd))


def finite(obj):
    """``obj`` with every non-finite float as None: KL(p_last ‖ p_ℓ) is inf where an early layer's
    float32 softmax underflows to 0 on a token the last layer gives mass (strict JSON has no inf)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def tables(names: list[str], evals: dict, kvs: list[str], gates: list[str]) -> str:
    from tabulate import tabulate

    first = {n: evals[n][gates[0]] for n in names}
    rows = []
    for n in names:
        r = first[n]
        fm, sat = r["oracle"]["first_match"], r["oracle"]["saturation"]
        rows.append([n, fmt(r["metrics"].get("chrf")), fmt(r["metrics"].get("bleu")),
                     *(f"{fmt(s['avg'])} / {fmt(s['perc'], '.1f')} / {fmt(s['perc@5'], '.1f')}" for s in (fm, sat))])
    out = ["Quality and oracle (Tables 1/2 form; avg layer 0-based / perc % / perc@5 %):",
           tabulate(rows, headers=["model", "chrF", "BLEU", "first-match avg/perc/perc@5", "saturation avg/perc/perc@5"],
                    tablefmt="github", disable_numparse=True), ""]
    rows = []
    for n in names:
        for g in gates:
            r = evals[n][g]
            for kv in (kvs if "measured_speedup" in r else [f"{r['calibration']['kv']} (τ only)"]):
                at = gate_at_calibrated(r, kv)
                m = r.get("measured_speedup", {}).get(kv)
                if m is None:  # calibrated and scored offline only
                    rows.append([n, g, kv, fmt(at["threshold"], "g"), fmt(at.get("signed_distance"), "+.2f"),
                                 fmt(at.get("abs_distance")), fmt(at.get("accuracy"), ".1f"), *["-"] * 5])
                    continue
                q = m["quality"].get("chrf", {})
                tau = fmt(at["threshold"], "g") if at["threshold"] is not None else f"none kept {KEEP:.0%}; ran {m['threshold']:g}"
                rows.append([n, g, kv, tau, fmt(at.get("signed_distance"), "+.2f"),
                             fmt(at.get("abs_distance")), fmt(at.get("accuracy"), ".1f"), fmt(q.get("early_exit")),
                             fmt(None if q.get("ratio") is None else 100 * q["ratio"], ".1f"),
                             fmt(100 * m["token_agreement"], ".1f"), fmt(m["implied_speedup"]), fmt(m["per_token_speedup"])])
    out += [(f"Gates at the threshold keeping ≥ {KEEP:.0%} of the model's own full-depth chrF (calibrated on disjoint "
             "documents), and real early-exit decoding (Fig. 2/10, Tables 6/11):"),
            tabulate(rows, headers=["model", "gate", "kv", "τ", "signed dist", "|dist|", "gate acc %", "EE chrF",
                                    "chrF kept %", "token agree %", "implied spd", "measured spd/token"],
                     tablefmt="github", disable_numparse=True)]
    return "\n".join(out)


def table6(rows: list[tuple[str, dict]]) -> str:
    from tabulate import tabulate

    return tabulate([[name, t["text"], str(list(t["exit_layers"]))] for name, t in rows],
                    headers=["", f"output for “{SENTENCE}”", "exit layer per token (0-based)"], tablefmt="github")


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gates, kvs = args.gates.split(","), args.kv.split(",")
    t0 = time.perf_counter()
    base = Path(args.model).name
    ckpts = {o: out / "ckpt" / f"{base}-wmt14-{o}" for o in ("final", "joint")}
    training = {}
    for objective, ckpt in ckpts.items():
        t, cpu = time.perf_counter(), time.process_time()
        reused = args.reuse and (ckpt / "ee_bench_card.yaml").exists()
        rec = train(args, objective, ckpt)
        if reused:  # trained by an earlier run: its own record holds the time (Trainer's train_runtime)
            training[objective] = {**rec, "reused": True}
            print(f"[{time.perf_counter() - t0:6.0f}s] reused {objective}: {rec['global_steps']} steps, train loss "
                  f"{rec['train_loss']:.3f}, train_runtime {rec['train_runtime_s']:.0f} s ({rec['command']})", flush=True)
            continue
        training[objective] = {**rec, "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - cpu}
        print(f"[{time.perf_counter() - t0:6.0f}s] trained {objective}: {rec['global_steps']} steps, train loss "
              f"{rec['train_loss']:.3f}, {training[objective]['wall_s']:.0f} s wall, {training[objective]['cpu_s']:.0f} "
              f"CPU-s (model load and save included)", flush=True)
    models = {"pretrained": args.model, "final": str(ckpts["final"]), "joint": str(ckpts["joint"])}
    evals: dict = {n: {} for n in models}
    for n, m in models.items():
        evals[n][gates[0]], path = evaluate(args, m, gates[0], out / "results")
        print(f"[{time.perf_counter() - t0:6.0f}s] evaluated {n} with gate {gates[0]}", flush=True)
        for g in gates[1:]:
            evals[n][g] = other_gate(args, m, g, path, out / "calibration" / n)
            print(f"[{time.perf_counter() - t0:6.0f}s] calibrated {n} with gate {g}", flush=True)
    report = tables(list(models), evals, kvs, gates)

    from ee_bench.decoder_similarity import profile_decoder_on_task
    from ee_bench.layer_similarity import format_table, plot_profiles
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    spec = TaskIndex().expand(["wmt22_de_en"])[0]
    docs = load_docs(spec, args.data_dir)[: args.eval_docs]
    profs = [profile_decoder_on_task(load_model(resolve_card(m), device=args.device), spec, docs, name=n)
             for n, m in models.items()]
    png = plot_profiles(profs, str(out / "similarity.png"), f"{base} on WMT22 de-en ({len(docs)} docs): pretrained, final, joint")
    sim = "\n\n".join(format_table([profs[0], p]) for p in profs[1:])

    t6 = []
    for tag, n in (("pre", "pretrained"), ("j", "joint")):
        # each KV strategy at the τ its early-exit decoding ran with (the calibrated one, else the gate's default)
        taus = {kv: evals[n][gates[0]]["measured_speedup"][kv]["threshold"] for kv in kvs}
        per_kv = {kv: trace(args, models[n], kv, taus[kv], gates[0]) for kv in kvs}
        t6.append((tag, per_kv[kvs[0]]["full"]))
        t6 += [(f"{tag}-{ {'copy': 'd', 'recompute': 'c'}.get(kv, kv) } (τ {taus[kv]:g})", per_kv[kv]["traces"][0])
               for kv in kvs]
    text = "\n\n".join([f"# Joint optimisation demo: {base}, {args.steps} steps, {args.eval_docs} WMT22 de-en docs "
                        f"(early-exit decoding exits at layers {args.exit_layers}; {args.calibration_docs} disjoint "
                        f"calibration docs; {args.speedup_repeats} timed round(s))",
                        report, "Per-layer confidence and divergence to the last layer (cells: pretrained → other):",
                        sim, f"plot: {png}", f"Table 6/11 layout ({gates[0]} gate, exits at every layer; τ per KV strategy as in its early-exit run):",
                        table6(t6)])
    print(text)
    (out / "summary.md").write_text(text + "\n", encoding="utf-8")
    summary = {"schema": "ee-bench/decoder-joint-demo/v1", "settings": vars(args), "command": "python " + " ".join(sys.argv),
               "training": training, "similarity": [p.to_dict() for p in profs], "table6": [[n, t] for n, t in t6],
               "results_dir": str(out / "results"), "total_s": time.perf_counter() - t0}
    text_json = json.dumps(finite(summary), indent=1, allow_nan=False, ensure_ascii=False)
    (out / "summary.json").write_text(text_json, encoding="utf-8")
    print(f"results: {out / 'results'} (leaderboard: {out / 'results' / 'leaderboard.md'}); summary: {out / 'summary.md'}; "
          f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
