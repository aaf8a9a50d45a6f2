"""Every gate scored against the oracle on the same tokens: confidence, entropy, patience, state and the
learned exit classifier side by side (issue 23).

    python benchmarks/gate_compare.py --data-dir ../shared/data --n-docs 20 \\
        --gate-file runs/gates/smollm2-135m-ee-wmt22.json            # SmolLM2-135M, WMT22 de-en docs 0..19

One analysis pass over documents 0..N−1 at full depth with hidden states kept
(``ee_bench.evaluation.run_documents``, the oracle pass of the main command), then each gate's sweep over
its documented grid (``ee_bench.exits.summary.summarise_exits``: signed and absolute distance to the
first-match layer, accuracy = share of tokens whose exit layer's top-1 equals the final one, mean layers
run, implied speed-up L / layers run, mean checks). Offline: every exit layer below L−1 is allowed and
nothing is timed. The classifier's probes must come from documents disjoint from 0..N−1 (``ee-bench
fit-gate --docs``; the script refuses overlapping ones when the file records them). Prints the table and
writes ``--out``/gate_compare.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-ee", help="model card or checkpoint folder")
    p.add_argument("--task", default="wmt22_de_en")
    p.add_argument("--include-path", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n-docs", type=int, default=20)
    p.add_argument("--gates", default="confidence,entropy,patience,state,classifier")
    p.add_argument("--gate-file", default=None, help="probes of the classifier gate (ee-bench fit-gate)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/gate_compare")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from tabulate import tabulate

    from ee_bench.evaluation import EvalOptions, run_documents
    from ee_bench.exits.classifier_gate import gate_from_options
    from ee_bench.exits.summary import summarise_exits
    from ee_bench.files import atomic_write
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    torch.set_num_threads(args.threads)
    names = [g.strip() for g in args.gates.split(",") if g.strip()]
    if "classifier" in names and not args.gate_file:
        names.remove("classifier")
        print("classifier left out: no --gate-file")
    gates = {g: gate_from_options(g, args.gate_file if g == "classifier" else None) for g in names}
    fitted = getattr(gates.get("classifier"), "provenance", {}).get("docs")
    if fitted and fitted[0] < args.n_docs:
        raise SystemExit(f"the classifier was fitted on documents {fitted[0]}..{fitted[1] - 1}, which overlap the "
                         f"evaluated 0..{args.n_docs - 1}; fit it on other documents (ee-bench fit-gate --docs).")
    t0 = time.perf_counter()
    card = resolve_card(args.model)
    model = load_model(card, device=args.device)
    for g in gates.values():
        if hasattr(g, "check_model"):
            g.check_model(model.n_layers, model.describe()["hidden_size"])
    spec = TaskIndex([Path(args.include_path)] if args.include_path else []).expand([args.task])[0]
    docs = load_docs(spec, args.data_dir)[: args.n_docs]
    records = run_documents(model, spec, docs, keep_hidden=True,
                            options=EvalOptions(batch_size=args.batch_size, progress=False))
    run_s = time.perf_counter() - t0
    rows, out = [], {"args": vars(args), "model": card.name, "n_layers": model.n_layers, "gates": {}}
    report = None
    for name, gate in gates.items():
        report = summarise_exits(records, gate, list(gate.grid), gate.grid[0])
        out["gates"][name] = [s.to_dict() for s in report.sweep]
        for s in report.sweep:
            rows.append([name, f"{s.threshold:g}", f"{s.signed_distance:+.2f}", f"{s.abs_distance:.2f}",
                         f"{s.accuracy:.1f}", f"{s.mean_layers_run:.2f}", f"{s.implied_speedup:.2f}",
                         f"{s.mean_checks:.2f}"])
    fm = report.first_match
    out["first_match"] = {"avg": fm.avg, "perc": fm.perc, "n_tokens": fm.n_tokens}
    print(f"{card.name} on {spec.task} docs 0..{len(docs) - 1}: {fm.n_tokens} output tokens at full depth, "
          f"L = {model.n_layers}; first-match avg {fm.avg:.2f} (0-based), perc {fm.perc:.1f} % "
          f"({run_s:.0f} s analysis pass)")
    if "classifier" in gates:
        print(f"classifier probes: {args.gate_file} (fitted on docs {fitted[0]}..{fitted[1] - 1})" if fitted else
              f"classifier probes: {args.gate_file}")
    print(tabulate(rows, headers=["gate", "τ", "signed dist", "|dist|", "acc %", "layers run", "implied ×",
                                  "checks/token"], tablefmt="github", disable_numparse=True))
    print("\nsigned / |dist|: gate exit layer − first-match layer (layers); acc: tokens whose exit layer's top-1 "
          "equals the final layer's; offline, every layer below L−1 allowed, nothing timed")
    atomic_write(Path(args.out) / "gate_compare.json", json.dumps(out, indent=1))
    print(f"written: {Path(args.out) / 'gate_compare.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
