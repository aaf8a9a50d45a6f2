"""``ee-bench fit-gate``: fit the early-exit classifier's probes (CALM §3.5; parse, call, print).

    ee-bench fit-gate --model smollm2-135m-ee --task wmt22_de_en --data-dir ../shared/data \\
        --docs 1884:1984 --output runs/gates/smollm2-wmt22.json

Runs the documents ``--docs A:B`` (choose them disjoint from the ones you evaluate and calibrate on) at
full depth with hidden states kept (the analysis' oracle pass), fits one logistic-regression probe per
exit layer (:func:`ee_bench.training.exit_classifier.fit_probes`) and writes them with their provenance
(:func:`ee_bench.exits.classifier_gate.save_classifier`). Use the file with
``--gate classifier --gate-file FILE``. Every option is checked before the model loads.
"""

from __future__ import annotations

import argparse
import math
import shlex
import time
from pathlib import Path

from ee_bench.errors import EEBenchError, UnknownNameError
from ee_bench.preflight import add_threads_argument, check_threads


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ee-bench fit-gate", description=__doc__.split("\n\n")[0].replace("; parse, call, print", "").replace("``", ""))
    p.add_argument("--model", required=True, help="model card (ee-bench ls models) or checkpoint folder")
    p.add_argument("--model_args", default=None, help="lm-eval style k=v,k2=v2 (pretrained=..., dtype=...)")
    p.add_argument("--task", required=True, help="a generation task (ee-bench ls tasks), e.g. wmt22_de_en")
    p.add_argument("--include_path", default=None, help="extra folder of task YAMLs")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", default=None, help="local copy of the data")
    p.add_argument("--docs", required=True, help="START:END document range to fit on (disjoint from evaluated ones)")
    p.add_argument("--exit-layers", "--exit_layers", dest="exit_layers", default=None,
                   help="0-based layers to fit probes for (default: every layer below the last)")
    p.add_argument("--C", dest="c", default="1", help="inverse L2 strength of the regression (default 1), or 'auto': "
                   "per layer, the value with the lowest held-out log loss over --folds document-disjoint folds")
    p.add_argument("--folds", type=int, default=5, help="document-disjoint folds for the held-out accuracy and log loss "
                   "(default 5; skipped with fewer documents unless --C auto)")
    p.add_argument("--output", required=True, help="the probe file to write (JSON)")
    p.add_argument("--device", default=None, help="cpu, cuda … (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 … (default: the card's)")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    add_threads_argument(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return p


def _doc_range(text: str) -> tuple[int, int]:
    a, sep, b = text.partition(":")
    if not sep or not a.strip().isdigit() or not b.strip().isdigit() or int(a) >= int(b):
        raise EEBenchError(f"--docs {text!r} is not a range START:END of document indices with START < END; "
                           f"e.g. --docs 1884:1984.")
    return int(a), int(b)


def _parse_c(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        c = float(text)
    except ValueError:
        c = float("nan")
    if not (c > 0 and math.isfinite(c)):
        raise EEBenchError(f"--C must be a positive finite number or 'auto', got {text!r}; e.g. --C 1 or --C auto.")
    return c


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ee_bench import preflight
    from ee_bench.options import parse_layers
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    start, end = _doc_range(args.docs)
    c = _parse_c(args.c)
    if args.folds < 2:
        raise EEBenchError(f"--folds must be at least 2, got {args.folds}.")
    if c == "auto" and end - start < args.folds:
        raise EEBenchError(f"--C auto needs at least --folds {args.folds} documents, --docs {args.docs} has "
                           f"{end - start}; widen --docs or lower --folds.")
    if args.batch_size <= 0:
        raise EEBenchError(f"--batch_size must be a positive integer, got {args.batch_size}.")
    check_threads(args.threads)
    out = Path(args.output)
    if out.is_dir():
        raise EEBenchError(f"--output {out} is a folder; give the probe file's name, e.g. {out / 'gate.json'}.")
    preflight.check_output_folder(out.parent, "--output's folder")
    if args.device is not None:
        # deferred: ee_bench.devices imports torch, needed only when a device is named
        from ee_bench.devices import check_device

        check_device(args.device)
    layers = parse_layers(args.exit_layers)
    if layers == []:
        raise EEBenchError(f"--exit-layers {args.exit_layers!r} names no layer; give e.g. --exit-layers 11,17,23, "
                           f"or leave it out to fit a probe at every layer below the last.")
    index = TaskIndex([Path(args.include_path)] if args.include_path else [])
    try:
        specs = index.expand([args.task])
    except UnknownNameError as miss:  # the main command also knows lm-eval's tasks; fit-gate reads ee-bench's
        raise UnknownNameError(f"{miss} fit-gate reads ee-bench's own generation tasks only, not lm-eval's.") from None
    if len(specs) != 1 or index.is_group(args.task):
        raise EEBenchError(f"--task {args.task} is a group of {len(specs)} tasks ({', '.join(s.task for s in specs[:4])}"
                           f"{', …' if len(specs) > 4 else ''}); fit-gate fits on one task: name one, e.g. "
                           f"--task {specs[0].task}.")
    spec = specs[0]
    if spec.output_type != "generate_until":
        raise EEBenchError(f"fit-gate fits probes on generated tokens; {spec.task} is a {spec.output_type} task. "
                           f"Use a generation task, e.g. --task wmt22_de_en.")
    docs = load_docs(spec, args.data_dir)
    if end > len(docs):
        raise EEBenchError(f"--docs {args.docs} runs past the {len(docs)} documents of {spec.task}; "
                           f"use an END of at most {len(docs)}.")
    from ee_bench.models.cards import resolve_card

    card = resolve_card(args.model, args.model_args)
    from ee_bench.models.depth import checkpoint_depth

    depth = checkpoint_depth(card)  # from the configuration alone, before any weight loads (None: check after)
    _check_probe_layers(layers, depth, args.exit_layers)

    import torch

    from ee_bench.devices import apply_threads
    from ee_bench.evaluation import EvalOptions, run_documents
    from ee_bench.exits.classifier_gate import save_classifier
    from ee_bench.models.cards import load_model
    from ee_bench.results import git_sha
    from ee_bench.training.exit_classifier import fit_probes

    torch.manual_seed(args.seed)
    apply_threads(args.threads)
    model = load_model(card, device=args.device, dtype=args.dtype)
    L, H = model.n_layers, model.describe()["hidden_size"]
    _check_probe_layers(layers, L, args.exit_layers)
    t0 = time.perf_counter()
    records = run_documents(model, spec, docs[start:end], keep_hidden=True,
                            options=EvalOptions(batch_size=args.batch_size, progress=args.progress))
    run_s = time.perf_counter() - t0
    hidden = torch.cat([r.hidden for r in records], dim=1).float().cpu()  # (L, N, H)
    top1 = torch.cat([r.stats.top1 for r in records], dim=1).cpu()  # (L, N)
    groups = [start + r.doc_id for r in records for _ in range(r.stats.top1.shape[1])]  # (N,) each token's document
    folds = args.folds if len(records) >= args.folds else None
    t1 = time.perf_counter()
    fits = fit_probes(hidden, top1, layers, c=c, seed=args.seed, groups=groups if folds else None,
                      folds=folds or args.folds)
    fit_s = time.perf_counter() - t1
    provenance = {"command": "ee-bench fit-gate " + shlex.join(argv), "git_sha": git_sha(), "model": card.name,
                  "pretrained": card.pretrained, "task": spec.task, "docs": [start, end], "n_tokens": int(top1.shape[1]),
                  "label": "top1 of layer l equals top1 of layer L-1", "regression": f"sklearn LogisticRegression C={c}",
                  "heldout": (f"GroupKFold({folds}) by document" if folds else "none (fewer documents than --folds)"),
                  "run_s": round(run_s, 1), "fit_s": round(fit_s, 1), "layers": [f.summary() for f in fits]}
    save_classifier(out, {f.layer: (f.w, f.b) for f in fits}, L, H, provenance)
    print(f"fit-gate {card.name} on {spec.task} docs {start}..{end - 1}: {top1.shape[1]} tokens, "
          f"{len(fits)} probes ({run_s:.0f} s run, {fit_s:.1f} s fit) -> {out}")
    if not folds:
        print(f"no held-out figures: {len(records)} documents cannot fill --folds {args.folds} (widen --docs or "
              f"lower --folds)")
    print("layer  agree-with-final  train-acc  held-out-acc  majority-class  held-out-log-loss        C")
    for f in fits:
        held = (f"{f.heldout_accuracy:12.3f}  {max(f.positive_rate, 1 - f.positive_rate):14.3f}  "
                f"{f.heldout_log_loss:17.3f}" if f.heldout_accuracy is not None else f"{'-':>12}  {'-':>14}  {'-':>17}")
        constant = f.positive_rate in (0.0, 1.0)
        print(f"{f.layer:5d}  {f.positive_rate:16.3f}  {f.train_accuracy:9.3f}  {held}  {f.c if f.c else '-':>7}"
              + (f"  (constant probe: {'always' if f.positive_rate == 1.0 else 'never'} fires)" if constant else ""))
    print("majority-class: the accuracy of always answering the commoner label; a held-out accuracy near it means "
          "the probe adds little")
    if folds and any(f.heldout_accuracy is None and 0 < f.positive_rate < 1 for f in fits):
        print("-: no held-out figures at this layer, because some fold's training documents hold only one label "
              "there (fit on more documents)")
    return 0


def _check_probe_layers(layers, n_layers: int | None, text: str) -> None:
    """Refuse ``--exit-layers`` outside 0 … L−2 (layer L−1 is the full depth, which needs no probe); a
    no-op while L is unknown (None).

    Raises:
        EEBenchError: a layer outside that range.
    """
    if layers is not None and n_layers is not None and any(not 0 <= x < n_layers - 1 for x in layers):
        raise EEBenchError(f"--exit-layers {text}: probes exist for layers 0..{n_layers - 2} of this model "
                           f"(layer {n_layers - 1} is the full depth).")
