"""``ee-bench trace``: early-exit decode one sentence and print, token by token, the exit layer under
each KV strategy (paper §6, Tables 6 and 11).

Example (the paper's Table 6 sentence, the first WMT22 de-en segment)::

    ee-bench trace --model smollm2-135m-ee --text "Die Ware hat unter 20 Euro gekostet." --kv copy,recompute

The sentence goes through the task's prompt template (default ``wmt22_de_en``). Exit layers are
0-based everywhere, as in the paper's tables (L−1 = full depth: 31 for a 32-layer Llama-2-7B).

``--gate oracle`` exits every token at its first-match layer (every layer runs; the KV strategy then
fills the skipped layers as if the token had exited there): the paper's Tables 6 and 11 setting.
``--check topk:K`` makes the gate's statistics approximate (see ``ee_bench.decoding.checks``).
"""

from __future__ import annotations

import argparse
import json

from ee_bench.errors import EEBenchError
from ee_bench.options import help_text
from ee_bench.preflight import add_threads_argument, check_threads


def add_sentence_args(p: argparse.ArgumentParser, model_help: str) -> None:
    """The options ``trace`` and ``inspect`` share: the model and one source sentence in a task's prompt."""
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--model_args", default=None, help="lm-eval style k=v,k2=v2")
    p.add_argument("--text", required=True, help="the source sentence")
    p.add_argument("--task", default="wmt22_de_en", help="translation task whose prompt template is used")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ee-bench trace", description=help_text(__doc__.split("\n\n")[0]))
    add_sentence_args(p, model_help="model card (ee-bench ls models)")
    p.add_argument("--kv", default="copy,recompute", help="comma-separated KV strategies (ee-bench ls kv)")
    p.add_argument("--gate", default="confidence", help="exit gate (ee-bench ls gates)")
    p.add_argument("--gate-file", "--gate_file", dest="gate_file", default=None,
                   help="--gate classifier: the probe file written by ee-bench fit-gate")
    p.add_argument("--threshold", type=float, default=None, help="gate threshold (default: the gate's default)")
    p.add_argument("--exit-layers", default=None, help="comma-separated 0-based layers where exits are allowed")
    p.add_argument("--min-prefix", type=int, default=4, help="first N tokens never exit (paper: 4)")
    p.add_argument("--threshold-warmup", type=float, default=0.0, metavar="W",
                   help="tokens: the threshold starts at the gate's strictest value and relaxes to τ with time "
                        "constant W (default 0: constant; docs/definitions.md)")
    p.add_argument("--max-gen-toks", type=int, default=None, help="token budget (default: the task's)")
    from ee_bench.options import add_check_arguments

    add_check_arguments(p)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    add_threads_argument(p)
    p.add_argument("--json", action="store_true", help="print the traces as JSON instead of a table")
    return p


def check_text(text: str) -> None:
    """Refuse an empty ``--text`` or one holding bytes that are not UTF-8 (the shell passes them through
    as lone surrogates, which no tokenizer accepts).

    Raises:
        EEBenchError: naming the problem and the fix.
    """
    if not text.strip():
        raise EEBenchError('--text is empty; give the source sentence to decode, e.g. --text "Die Ware hat unter 20 '
                           'Euro gekostet."')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EEBenchError(f"--text holds bytes that are not UTF-8 (at character {exc.start + 1}); pass the sentence "
                           f"in UTF-8, e.g. convert it with iconv -t UTF-8.") from None


def translation_prompt(task: str, text: str):
    """The prompt a translation task's template makes of one source sentence.

    Args:
        task: a translation task name (e.g. ``wmt22_de_en``); its ``doc_to_text`` template is used.
        text: the source sentence.

    Returns:
        (the task spec, the rendered prompt string).

    Raises:
        EEBenchError: for an unknown task, or a task without a language pair.
    """
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import translation_doc
    from ee_bench.tasks.templates import render

    spec = TaskIndex().expand([task])[0]
    if not spec.dataset_name or "-" not in spec.dataset_name:
        raise EEBenchError(f"--task {task} is not a translation task (no language pair); use e.g. wmt22_de_en")
    return spec, render(spec.doc_to_text, translation_doc(text, [""], spec.dataset_name), source=spec.source_file)


def show_token(tokenizer, tid: int) -> str:
    """A token as a quoted Python literal, so spaces and newlines stay visible (``' W'``, ``'\\n'``)."""
    return repr(tokenizer.decode([tid]))


def trace_table(tokenizer, names: list[str], traces: list, n_layers: int) -> str:
    """Side-by-side table: one row per output position, (token, 0-based exit layer) per strategy."""
    from tabulate import tabulate

    rows = []
    for i in range(max(len(t.token_ids) for t in traces)):
        row = [i + 1]
        for t in traces:
            row += [show_token(tokenizer, t.token_ids[i]), t.exit_layers[i]] if i < len(t.token_ids) else ["", ""]
        rows.append(row)
    headers = ["#"] + [h for n in names for h in (f"token ({n})", f"exit ({n})")]
    foot = ["mean"] + [x for t in traces for x in ("", f"{t.mean_layers_run:.1f}/{n_layers} layers run")]
    return tabulate(rows + [foot], headers=headers, tablefmt="github")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ee_bench.decoding.checks import check_options
    from ee_bench.exits.classifier_gate import gate_from_options
    from ee_bench.exits.decide import check_min_prefix, check_threshold_warmup
    from ee_bench.exits.kv import KV_STRATEGIES
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.options import parse_layers

    check_text(args.text)
    check_threads(args.threads)
    if args.max_gen_toks is not None and args.max_gen_toks <= 0:
        raise EEBenchError(f"--max-gen-toks must be a positive number of tokens, got {args.max_gen_toks}; "
                           f"omit it to use the task's budget.")
    check_min_prefix(args.min_prefix, "--min-prefix")
    names = [k.strip() for k in args.kv.split(",") if k.strip()]
    if not names:
        raise EEBenchError("--kv is empty; give one or more KV strategies (ee-bench ls kv), e.g. --kv copy,recompute")
    for n in names:
        KV_STRATEGIES.get(n)  # unknown names fail before the model loads
    gate = gate_from_options(args.gate, args.gate_file)
    threshold = gate.check_threshold(gate.default_threshold if args.threshold is None else args.threshold)
    check_threshold_warmup(args.threshold_warmup, gate, "--threshold-warmup")
    layers = parse_layers(args.exit_layers)
    mode, draft_len = check_options(args.check, args.draft_len)
    if mode.shortlist is not None:
        raise EEBenchError(f"--check {mode.name} builds its shortlist from calibration documents, which trace has "
                           f"none of; use it with the main command (ee-bench --kv ... --check {mode.name}).")
    spec, prompt = translation_prompt(args.task, args.text)
    from ee_bench.models.depth import check_exit_layers, checkpoint_depth

    card = resolve_card(args.model, args.model_args)
    if layers is not None:  # the depth from the checkpoint's config, before any weight loads
        check_exit_layers(layers, checkpoint_depth(card), card.name)
    from ee_bench.devices import apply_threads  # deferred: torch

    apply_threads(args.threads)
    model = load_model(card, device=args.device, dtype=args.dtype)
    check_exit_layers(layers, model.n_layers, card.name)

    from ee_bench.decoding.decoders import decoder_for
    from ee_bench.decoding.traces import shallow_exit_note

    dec = decoder_for(model, mode, draft_len)  # the model's own block loop (encoder-decoder or causal)
    if model.kind == "seq2seq":  # encoder-decoder: the raw source (task's seq2seq_source)
        from ee_bench.task_runners.seq2seq import build_sources
        from ee_bench.tasks.loaders import translation_doc

        ids = [build_sources(model, spec, [translation_doc(args.text, [""], spec.dataset_name)])[0][1]]
    else:
        ids = [model.encode_prompt(prompt)]
    budget = spec.max_gen_toks if args.max_gen_toks is None else args.max_gen_toks
    full = dec.decode(ids, None, None, names[0], spec.until, budget, exit_layers=()).traces[0]
    traces = [dec.decode(ids, gate, threshold, n, spec.until, budget, layers, args.min_prefix,
                         threshold_warmup=args.threshold_warmup).traces[0] for n in names]
    warnings = {n: note for n, t in zip(names, traces) if (note := shallow_exit_note(t, ids[0][-1], args.min_prefix))}
    if args.json:
        print(json.dumps({"model": model.name, "gate": args.gate, "threshold": threshold,
                          "threshold_warmup": args.threshold_warmup, "check": mode.label,
                          "text": args.text, "full": full.to_dict(), "traces": [t.to_dict() for t in traces],
                          "warnings": warnings}, ensure_ascii=False, indent=1))
        return 0
    print(f"model {model.name} ({dec.n_layers} layers), gate {args.gate} τ={threshold:g}, check {mode.label}, "
          f"min_prefix {args.min_prefix}" + (f", threshold warm-up {args.threshold_warmup:g} tokens"
                                             if args.threshold_warmup else "") + f", task {spec.task} prompt")
    if gate.needs_final:
        print("oracle exit mode: every layer runs; exits at each token's first-match layer (no speed-up claimed)")
    print(f"source: {args.text}")
    print(f"full depth: {full.text}")
    for n, t in zip(names, traces):
        print(f"{n}: {t.text}")
    for n, note in warnings.items():
        print(f"warning ({n}): {note}")
    print()
    print(trace_table(model.tokenizer, names, traces, dec.n_layers))
    return 0
