"""``ee-bench finetune``: fine-tune an encoder classifier or a causal LM with the final or the joint objective.

Examples::

    # joint optimisation of the embedded all-MiniLM-L6-v2 on a local SST-2 file
    ee-bench finetune --model all-minilm-l6-v2 --task glue_sst2 --train_file train.jsonl \\
        --objective joint --output_dir ckpt/minilm-sst2-joint
    # then evaluate it like any other model
    ee-bench --model ckpt/minilm-sst2-joint --tasks glue_sst2 --gate confidence

    # causal LM (detected from the card): joint objective on WMT14 de→en through the task's prompt
    ee-bench finetune --model smollm2-135m-ee --train-task wmt14_de_en --data-dir ../shared/data \\
        --objective joint --layer-weights increasing --sample-layers 6 --max-steps 200 \\
        --output_dir ckpt/smollm2-wmt14-joint
    # or Alpaca-style instruction JSONL (instruction / input / output), with LoRA merged at the end
    ee-bench finetune --model smollm2-135m-ee --train_file alpaca.jsonl --lora --output_dir ckpt/x

Causal LMs: see docs/joint_decoders.md and ee_bench.training.causal_joint. Encoders:
the text fields and label words come from the task YAML (``encoder_fields``, ``doc_to_choice``);
``--fields``/``--num_labels`` give them for a task without a YAML. Without ``--train_file`` the
task's hub dataset is loaded with split ``--split`` (default ``train``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ee_bench.errors import EEBenchError
from ee_bench.options import help_text
from ee_bench.training.options import check_numbers, row_slice


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ee-bench finetune", description=help_text(__doc__.split("\n\n")[0]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="all-minilm-l6-v2",
                   help="model card, hub id, local folder, or the embedded all-minilm-l6-v2 (default)")
    p.add_argument("--task-type", "--task_type", dest="task_type", choices=("encoder", "causal"),
                   help="encoder classifier or causal LM (default: detected from the model card / config.json)")
    p.add_argument("--model_args", help="causal LMs: k=v,... card overrides (lm-eval syntax)")
    p.add_argument("--task", help="task name (its YAML gives encoder_fields, doc_to_choice and the hub dataset)")
    p.add_argument("--train_file", help="local JSONL training file: encoders: text fields and 'label'; causal LMs: "
                                        "Alpaca's instruction / input / output")
    p.add_argument("--train-task", "--train_task", dest="train_task",
                   help="causal LMs: a generation task whose documents (prompt through the task's template, first "
                        "reference as response) are the training data, e.g. wmt14_de_en")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", help="local data folder for --train-task")
    p.add_argument("--split", default="train", help="hub split to train on when no --train_file (default: train)")
    p.add_argument("--rows", help="START:END slice of the training rows (e.g. 0:436)")
    p.add_argument("--fields", help="comma-separated text fields (overrides the task's encoder_fields)")
    p.add_argument("--num_labels", type=int, help="number of classes (default: len(doc_to_choice))")
    p.add_argument("--objective", choices=("final", "joint", "joint-distill"), default="joint",
                   help="final: last layer only; joint: every layer towards the reference (the paper's); "
                        "joint-distill (causal LMs): early layers towards the last layer's own top-1, the last "
                        "towards the reference (see ee_bench.training.causal_joint)")
    p.add_argument("--schedule", "--layer-weights", "--layer_weights", dest="schedule", choices=("uniform", "increasing"),
                   default="uniform", help="joint loss weights, normalised to sum 1: uniform w_i = 1/L, increasing "
                                           "w_i = i / Σ_j j for i = 1..L (see ee_bench.training.joint)")
    p.add_argument("--sample-layers", "--sample_layers", dest="sample_layers", type=int,
                   help="causal joint: sample k of the L−1 early layers per step (plus the last), LayerSkip-style")
    p.add_argument("--epochs", type=float, default=None, help="passes over the data (default 3 encoders, 1 causal)")
    p.add_argument("--max-steps", "--max_steps", dest="max_steps", type=int, help="causal: optimiser steps (overrides --epochs)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 5e-5 encoders, 2e-5 causal)")
    p.add_argument("--batch_size", type=int, default=None, help="examples per step and process (default 16 encoders, 4 causal)")
    p.add_argument("--max_length", type=int, default=None, help="tokens per example (default 128 encoders, 256 causal)")
    p.add_argument("--dtype", default="float32", help="causal: training dtype (default float32)")
    p.add_argument("--lora", action="store_true", help="causal: train LoRA adapters (peft), merged into the saved checkpoint")
    p.add_argument("--lora-r", "--lora_r", dest="lora_r", type=int, default=8)
    p.add_argument("--lora-alpha", "--lora_alpha", dest="lora_alpha", type=int, default=16)
    p.add_argument("--lora-dropout", "--lora_dropout", dest="lora_dropout", type=float, default=0.0)
    p.add_argument("--lora-targets", "--lora_targets", dest="lora_targets", default="all-linear",
                   help="comma-separated module names, or all-linear (every linear layer of the blocks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu to force the CPU (default: the Trainer's choice)")
    p.add_argument("--output_dir", required=True,
                   help="checkpoint folder to write: new, empty, or an earlier ee-bench finetune checkpoint")
    p.add_argument("--overwrite_output_dir", "--overwrite-output-dir", dest="overwrite_output_dir", action="store_true",
                   help="write into a non-empty --output_dir that is not an earlier ee-bench checkpoint")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the training progress bar")
    p.add_argument("--progress", dest="progress", action="store_true", help=argparse.SUPPRESS)  # the default now
    return p


def load_rows(args: argparse.Namespace, spec) -> list[dict]:
    """Training rows from ``--train_file`` or the task's hub dataset.

    Raises:
        EEBenchError: if neither source is available.
    """
    if args.train_file:
        from ee_bench.tasks.loaders import read_jsonl_file

        path = Path(args.train_file)
        if not path.exists():
            raise EEBenchError(f"--train_file {path} does not exist; give a local JSONL file (one row a line, "
                               f"with the text fields and 'label').")
        rows = read_jsonl_file(path, "--train_file")
        if not rows:
            raise EEBenchError(f"--train_file {path} holds no rows; give a JSONL file with at least one training row.")
        return rows
    if spec is None or not spec.dataset_path:
        raise EEBenchError("give --train_file, or a --task whose YAML names a hub dataset")
    import datasets

    try:
        ds = datasets.load_dataset(spec.dataset_path, spec.dataset_name, split=args.split)
    except Exception as exc:  # network, missing cache
        raise EEBenchError(
            f"Could not load split {args.split!r} of {spec.dataset_path} ({spec.dataset_name}): "
            f"{type(exc).__name__}: {str(exc)[:200]}. Pass --train_file with a local JSONL copy."
        ) from None
    return [dict(r) for r in ds]


def check_args(args: argparse.Namespace) -> None:
    """Refuse numeric options that cannot train (:func:`~ee_bench.training.options.check_numbers`), a model folder without a checkpoint,
    and an output folder that cannot be written, before any data or model is read (both model kinds).

    Raises:
        EEBenchError: naming the option and the fix.
    """
    from ee_bench.preflight import check_output_folder

    check_numbers(args)
    if args.num_labels is not None and args.num_labels < 2:
        raise EEBenchError(f"--num_labels must be at least 2, got {args.num_labels}.")
    if args.seed < 0:
        raise EEBenchError(f"--seed must be a non-negative integer, got {args.seed}.")
    folder = Path(args.model)
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise EEBenchError(f"--model {folder} is a folder without a checkpoint (no config.json). Give a folder "
                           f"written by save_pretrained or `ee-bench finetune`, a hub id, or all-minilm-l6-v2.")
    if not args.overwrite_output_dir:  # before the write probe, which would touch the folder
        from ee_bench.preflight import check_fresh_folder
        from ee_bench.results import TRAINING_RECORD

        check_fresh_folder(args.output_dir, "--output_dir", TRAINING_RECORD, "--overwrite_output_dir")
    check_output_folder(args.output_dir, "--output_dir")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ee_bench.training.detect import detect_task_type

    check_args(args)  # both kinds: numbers, an empty model folder, the output folder
    kind = args.task_type or detect_task_type(args.model, args.model_args, causal_hint=bool(args.train_task))
    if kind == "causal":
        from ee_bench.commands.finetune_causal import run_causal

        return run_causal(args, argv)
    causal_only = [o for o, v in (("--train-task", args.train_task), ("--max-steps", args.max_steps),
                                  ("--sample-layers", args.sample_layers), ("--lora", args.lora),
                                  ("--objective joint-distill", args.objective == "joint-distill")) if v]
    if causal_only:
        raise EEBenchError(f"{', '.join(causal_only)} {'apply' if len(causal_only) > 1 else 'applies'} to causal LMs, "
                           f"and --model {args.model} is an encoder classifier; drop "
                           f"{'them' if len(causal_only) > 1 else 'it'}, or, if --model is in fact a causal LM, add "
                           f"--task-type causal")
    args.epochs = 3.0 if args.epochs is None else args.epochs
    args.lr = 5e-5 if args.lr is None else args.lr
    args.batch_size = 16 if args.batch_size is None else args.batch_size
    args.max_length = 128 if args.max_length is None else args.max_length
    spec = None
    if args.task:
        from ee_bench.tasks.index import TaskIndex

        spec = TaskIndex().load(args.task)
    fields = tuple(f.strip() for f in args.fields.split(",")) if args.fields else (spec.encoder_fields if spec else None)
    if not fields:
        raise EEBenchError("no text fields: give --fields (e.g. sentence or sentence1,sentence2) or a --task with encoder_fields")
    choices = spec.doc_to_choice if spec else None
    num_labels = args.num_labels or (len(choices) if choices else None)
    if not num_labels:
        raise EEBenchError("give --num_labels (the task has no doc_to_choice)")
    rows = load_rows(args, spec)
    rows = rows[row_slice(args.rows, len(rows))]
    if spec is not None and spec.doc_to_target:
        from ee_bench.task_runners.classification import gold_label

        rows = [{**r, "label": gold_label(spec, r)} for r in rows]

    import transformers

    from ee_bench.training.finetune import FinetuneConfig, finetune_classifier

    transformers.logging.set_verbosity_error()
    cfg = FinetuneConfig(
        model=args.model, fields=fields, num_labels=num_labels, objective=args.objective, schedule=args.schedule,
        epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, max_length=args.max_length,
        seed=args.seed, label_names=tuple(choices) if choices and len(choices) == num_labels else None,
        task=args.task or (args.train_file or ""),
    )
    out = finetune_classifier(cfg, rows, args.output_dir, device=args.device, progress=args.progress)
    print(f"saved {out} ({len(rows)} training rows, objective {args.objective}); use it as --model {out}")
    return 0
