"""``ee-bench similarity``: layer similarity of one model, or two side by side (paper §5.1).

Encoder classifiers: the label distributions at [CLS]; causal LMs: the next-token distributions of
the task's reference tokens teacher-forced after its prompt (:mod:`ee_bench.decoder_similarity`).

Example (backbone vs joint, as in the paper's Fig. 3–4)::

    ee-bench similarity --model ckpt/minilm-sst2-final --model2 ckpt/minilm-sst2-joint \\
        --task glue_sst2 --data-dir ../shared/data --limit 200 --output_dir runs/similarity

Prints a table (one row per layer; ``A → B`` cells with two models) and writes
``similarity.png`` and ``similarity.json`` to ``--output_dir``. Measures: see
:mod:`ee_bench.layer_similarity`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ee_bench.errors import EEBenchError
from ee_bench.options import help_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ee-bench similarity", description=help_text(__doc__.split("\n\n")[0]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model card name or checkpoint folder (encoder or causal LM)")
    p.add_argument("--model2", help="a second model, compared side by side (e.g. the joint-optimised one)")
    p.add_argument("--model_args", help="k=v,... overrides for both cards (lm-eval syntax)")
    p.add_argument("--task", help="task whose documents are used (needs encoder_fields)")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", help="local data folder for the task")
    p.add_argument("--data_file", help="a JSONL file instead of a task (with --fields)")
    p.add_argument("--fields", help="comma-separated text fields for --data_file")
    p.add_argument("--include_path", action="append", default=[], help="extra folder of task YAMLs (repeatable)")
    p.add_argument("--limit", type=int, help="first N documents only")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--device", help="cpu, cuda, ... (default: CUDA when available)")
    p.add_argument("--output_dir", help="folder for similarity.png and similarity.json")
    return p


def load_texts(args: argparse.Namespace) -> list[tuple[str, ...]]:
    """Examples' text fields from ``--task`` or ``--data_file``.

    Raises:
        EEBenchError: if neither is given, or fields are missing.
    """
    if args.data_file:
        if not args.fields:
            raise EEBenchError("--data_file needs --fields (e.g. sentence, or sentence1,sentence2)")
        from ee_bench.tasks.loaders import read_jsonl_file

        fields = [f.strip() for f in args.fields.split(",")]
        if not Path(args.data_file).exists():
            raise EEBenchError(f"--data_file {args.data_file} does not exist; give a JSONL file with the --fields "
                               f"columns, or use --task NAME.")
        docs = read_jsonl_file(Path(args.data_file), "--data_file")
        docs = docs[: args.limit] if args.limit else docs
        try:
            return [tuple(str(d[f]) for f in fields) for d in docs]
        except KeyError as exc:
            raise EEBenchError(f"--data_file rows have no field {exc}; fix --fields") from None
    if not args.task:
        raise EEBenchError("give --task NAME (with --data-dir for local data) or --data_file FILE --fields F")
    from ee_bench.task_runners.classification import doc_texts
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    spec = TaskIndex().load(args.task)
    docs = load_docs(spec, args.data_dir)
    docs = docs[: args.limit] if args.limit else docs
    return [doc_texts(spec, d) for d in docs]


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        raise EEBenchError(f"--limit must be a positive number of documents, got {args.limit}. Omit it to use every document.")
    if args.batch_size <= 0:
        raise EEBenchError(f"--batch_size must be a positive integer, got {args.batch_size}.")
    if args.output_dir:
        from ee_bench.preflight import check_output_folder

        check_output_folder(args.output_dir, "--output_dir")
    if args.device is not None:
        from ee_bench.devices import check_device

        check_device(args.device)
    from ee_bench.models.cards import resolve_card

    if resolve_card(args.model, args.model_args).model == "hf-causal":  # decoders: a generation task's references
        from ee_bench.commands.similarity_causal import profiles_causal

        return _report(args, profiles_causal(args))
    texts = load_texts(args)
    if not texts:
        raise EEBenchError("no documents to analyse")
    import transformers

    from ee_bench.layer_similarity import profile_model
    from ee_bench.models.cards import load_model

    transformers.logging.set_verbosity_error()
    profiles = []
    for name in [args.model] + ([args.model2] if args.model2 else []):
        card = resolve_card(name, args.model_args)
        if card.model != "hf-encoder":
            raise EEBenchError(f"--model {name} uses the {card.model} wrapper; layer similarity needs an "
                               f"encoder classifier (model: hf-encoder)")
        model = load_model(card, device=args.device)
        profiles.append(profile_model(model, texts, args.batch_size, name=card.name))
    return _report(args, profiles)


def _report(args: argparse.Namespace, profiles: list) -> int:
    """Print the table; write similarity.png and similarity.json to --output_dir."""
    from ee_bench.layer_similarity import format_table, plot_profiles

    if len({p.n_layers for p in profiles}) != 1:
        raise EEBenchError("the two models have different numbers of layers; compare models of the same depth")
    print(format_table(profiles))
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        png = plot_profiles(profiles, str(out / "similarity.png"))
        payload = {"schema": "ee-bench/similarity/v1", "task": args.task, "data_file": args.data_file,
                   "profiles": [p.to_dict() for p in profiles]}
        (out / "similarity.json").write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
        print(f"plot: {png}\ndata: {out / 'similarity.json'}")
    return 0
