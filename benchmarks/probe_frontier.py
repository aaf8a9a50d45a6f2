"""Where each exit-classifier probe file keeps quality: real early-exit decoding of the same documents
at several thresholds, without timing (the exit classifier of docs/kv_strategies.md).

    python benchmarks/probe_frontier.py --model /work/ckpt/smollm2-135m-ee-wmt14-joint --data-dir ../shared/data \\
        --n-docs 50 --gate-files "C=1, 60 docs=OLD.json" "C auto, 400 docs=NEW.json" --taus 0.4,0.3,0.2,0.1 \\
        --exit-layers 11,17,23 all --docs 100:150

Decodes documents 0..N−1 at full depth once, then with ``--gate classifier`` per probe file and τ
(``EarlyExitDecoder.decode``: the KV strategy, exit layers and min_prefix given), and prints per point
the chrF ratio to full depth with its paired-bootstrap 95 % interval over documents, the implied
speed-up per token (L × tokens / blocks run) and per sequence (L × full-depth tokens / blocks run), the tokens generated and the position-wise token agreement. The
cost model turns the same work counts into its prediction; measure wall clock with ``peers.py``.
Choose the probe files' fitting documents disjoint from 0..N−1.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-ee", help="model card or checkpoint folder")
    p.add_argument("--task", default="wmt22_de_en", help="a generation task (ee-bench ls tasks)")
    p.add_argument("--data-dir", default=None, help="offline data folder, e.g. ../shared/data")
    p.add_argument("--n-docs", type=int, default=50, help="decode documents 0..N-1 of the test split")
    p.add_argument("--docs", default=None, metavar="START:END",
                   help="decode documents START..END-1 instead of --n-docs (e.g. ones disjoint from an evaluation's 0..N-1)")
    p.add_argument("--max-gen-toks", type=int, default=24, help="token budget per document")
    p.add_argument("--gate-files", nargs="+", required=True,
                   help="one NAME=PATH per probe file (ee-bench fit-gate), e.g. 'C auto=runs/gates/g.json'")
    p.add_argument("--taus", default="0.4,0.3,0.2,0.1", help="thresholds, comma-separated")
    p.add_argument("--kv", default="recompute", help="KV strategy (ee-bench ls kv)")
    p.add_argument("--exit-layers", nargs="+", default=["11,17,23"],
                   help="one or more sets of 0-based layers where a token may exit, each comma-separated "
                        "or 'all' (every layer below the last); each set is decoded at every τ")
    p.add_argument("--min-prefix", type=int, default=4, help="the first N tokens never exit")
    p.add_argument("--warmups", default="0", help="threshold warm-ups W in tokens, comma-separated (0: constant τ; "
                                                 "ee-bench --threshold-warmup)")
    p.add_argument("--device", default=None, help="cpu, cuda …; None: the card's choice")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


def fail(message: str):
    """Bad input: one line on stderr, exit status 2 (as ee-bench's commands)."""
    print(f"probe_frontier.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_docs(args) -> tuple[int, int]:
    """(START, END) of the decoded documents: ``--docs START:END``, else 0 … ``--n-docs``."""
    if args.docs is None:
        if args.n_docs < 1:
            fail(f"--n-docs {args.n_docs}: decode at least one document")
        return 0, args.n_docs
    try:
        start, end = (int(x) for x in args.docs.split(":"))
    except ValueError:
        fail(f"--docs {args.docs!r} is not START:END, e.g. --docs 100:150")
    if not 0 <= start < end:
        fail(f"--docs {args.docs}: need 0 <= START < END")
    return start, end


def parse_layer_sets(texts: list[str]) -> list[tuple[int, ...] | None]:
    """Each ``--exit-layers`` set as sorted layers, or None for 'all' (any case)."""
    out = []
    for text in texts:
        if text.strip().lower() == "all":
            out.append(None)
            continue
        try:
            layers = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
        except ValueError:
            fail(f"--exit-layers {text!r} is not comma-separated integers or 'all', e.g. --exit-layers 11,17,23 all")
        if not layers:
            fail(f"--exit-layers {text!r} names no layer; give e.g. 11,17,23 or all")
        out.append(layers)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    bad = [item for item in args.gate_files if "=" not in item]
    if bad:
        fail(f"--gate-files {bad[0]!r} is not NAME=PATH; e.g. --gate-files 'C auto={bad[0]}'")
    files = dict(item.rsplit("=", 1) for item in args.gate_files)
    try:
        taus = [float(x) for x in args.taus.split(",") if x.strip()]
    except ValueError:
        fail(f"--taus {args.taus!r} is not comma-separated numbers, e.g. --taus 0.5,0.4")
    if not taus:
        fail("--taus names no threshold; give e.g. --taus 0.5,0.4")
    try:
        warmups = [float(x) for x in args.warmups.split(",") if x.strip()]
    except ValueError:
        fail(f"--warmups {args.warmups!r} is not comma-separated numbers of tokens, e.g. --warmups 0,4")
    if not warmups or any(not w >= 0 for w in warmups):
        fail(f"--warmups {args.warmups!r}: give numbers of tokens >= 0, e.g. --warmups 0,4")
    start, end = parse_docs(args)
    layer_sets = parse_layer_sets(args.exit_layers)

    import torch

    from ee_bench.decoding.early_exit import EarlyExitDecoder
    from ee_bench.decoding.speedup import quality, quality_ratio_interval
    from ee_bench.errors import EEBenchError
    from ee_bench.exits.classifier_gate import gate_from_options
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.task_runners.generation import build_prompts, references_of
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs, target_language

    torch.set_num_threads(args.threads)
    try:  # bad files and thresholds fail before the model loads, as one line
        gates = {name: gate_from_options("classifier", path) for name, path in files.items()}
        for g in gates.values():
            for tau in taus:
                g.check_threshold(tau)
    except EEBenchError as exc:  # its messages name ee-bench's options: say which of ours they mean
        fail(str(exc).replace("--gate-file ", "--gate-files: ").split(". Try --threshold")[0])
    model = load_model(resolve_card(args.model), device=args.device)
    spec = TaskIndex([]).expand([args.task])[0]
    docs = load_docs(spec, args.data_dir)
    if end > len(docs):
        fail(f"--docs/--n-docs: documents {start}..{end - 1} run past the {len(docs)} documents of {spec.task}; "
             f"use an END of at most {len(docs)}")
    ids = list(range(start, end))
    prompts = [p for _, p in build_prompts(model, spec, [docs[i] for i in ids])]
    refs = [references_of(spec, docs[i]) for i in ids]
    lang = target_language(spec, docs)
    dec, until = EarlyExitDecoder(model), tuple(spec.until)
    L = dec.n_layers
    layer_sets = [tuple(range(L - 1)) if s is None else s for s in layer_sets]
    if any(not 0 <= x < L - 1 for s in layer_sets for x in s):
        fail(f"--exit-layers: exits lie in 0..{L - 2} (layer {L - 1} is the full depth)")
    full = dec.decode(prompts, None, None, args.kv, until, args.max_gen_toks, exit_layers=())
    q_full = quality([t.text for t in full.traces], refs, ["chrf"], lang)["chrf"]
    n_full = full.counts.tokens
    print(f"{model.name} on {spec.task} docs {ids[0]}..{ids[-1]}, max_gen_toks {args.max_gen_toks}, {args.kv}, "
          f"min_prefix {args.min_prefix}; full depth chrF {q_full:.2f}, {n_full} tokens")
    print("| probes | exits | W | τ | chrF ratio | 95 % CI | implied ×/token | implied ×/seq | tokens | agreement |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (name, gate), layers, warmup in ((g, s, w) for g in gates.items() for s in layer_sets for w in warmups):
        gate.check_model(L, model.describe()["hidden_size"])
        label = "all" if layers == tuple(range(L - 1)) else ",".join(map(str, layers))
        for tau in taus:
            r = dec.decode(prompts, gate, tau, args.kv, until, args.max_gen_toks, layers, args.min_prefix,
                           threshold_warmup=warmup)
            texts = [t.text for t in r.traces]
            q = quality(texts, refs, ["chrf"], lang)["chrf"]
            ci = quality_ratio_interval(texts, [t.text for t in full.traces], refs, "chrf", lang)
            same = sum(sum(a == b for a, b in zip(e.token_ids, f.token_ids)) for e, f in zip(r.traces, full.traces))
            c = r.counts
            span = "n/a" if ci is None else f"{ci.low:.1f}–{ci.high:.1f} %"
            print(f"| {name} | {label} | {warmup:g} | {tau:g} | {100 * q / q_full:.1f} % | {span} | {L * c.tokens / c.token_layers:.3f} | "
                  f"{L * n_full / c.token_layers:.3f} | {c.tokens} | {same / n_full:.3f} |", flush=True)
    print("\nW: threshold warm-up, tokens (τ_k = τ + (1 − τ)·exp(−k/W) for the k-th token after the prefix; 0 = constant "
          "τ); chrF ratio: early exit / full depth; 95 % CI: paired bootstrap over the documents (1000 resamples; "
          "n/a with fewer than 2 documents); implied: L × tokens / blocks run (×/token) and L × full-depth tokens "
          "/ blocks run (×/seq); agreement: share of full-depth tokens reproduced at their position")
    for name, gate in gates.items():
        fitted = gate.provenance
        if fitted.get("model") not in (None, model.name):
            print(f"note: {name} was fitted on {fitted['model']}, not {model.name}")
        lo, hi = fitted.get("docs", (None, None))
        if fitted.get("task") == spec.task and lo is not None and lo < end and start < hi:
            print(f"note: {name} was fitted on documents {lo}..{hi - 1} of {spec.task}, which overlap the decoded ones")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
