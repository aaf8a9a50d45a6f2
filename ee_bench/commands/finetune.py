"""``ee-bench finetune``: fine-tune an encoder classifier with the final or the joint objective.

Examples::

    # joint optimisation of the embedded all-MiniLM-L6-v2 on a local SST-2 file
    ee-bench finetune --model all-minilm-l6-v2 --task glue_sst2 --train_file train.jsonl \\
        --objective joint --output_dir ckpt/minilm-sst2-joint
    # then evaluate it like any other model
    ee-bench --model ckpt/minilm-sst2-joint --tasks glue_sst2 --gate confidence

The text fields and label words come from the task YAML (``encoder_fields``, ``doc_to_choice``);
``--fields``/``--num_labels`` give them for a task without a YAML. Without ``--train_file`` the
task's hub dataset is loaded with split ``--split`` (default ``train``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ee_bench.errors import EEBenchError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ee-bench finetune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="all-minilm-l6-v2",
                   help="hub id, local folder, or the embedded all-minilm-l6-v2 (default)")
    p.add_argument("--task", help="task name (its YAML gives encoder_fields, doc_to_choice and the hub dataset)")
    p.add_argument("--train_file", help="local JSONL training file (one row a line, with the text fields and 'label')")
    p.add_argument("--split", default="train", help="hub split to train on when no --train_file (default: train)")
    p.add_argument("--rows", help="START:END slice of the training rows (e.g. 0:436)")
    p.add_argument("--fields", help="comma-separated text fields (overrides the task's encoder_fields)")
    p.add_argument("--num_labels", type=int, help="number of classes (default: len(doc_to_choice))")
    p.add_argument("--objective", choices=("final", "joint"), default="joint")
    p.add_argument("--schedule", choices=("uniform", "increasing"), default="uniform",
                   help="joint loss weights, normalised to sum 1 (see ee_bench.training.joint)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--max_length", type=int, default=128, help="tokens per example (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu to force the CPU (default: the Trainer's choice)")
    p.add_argument("--output_dir", required=True, help="checkpoint folder to write")
    p.add_argument("--progress", action="store_true", help="show the Trainer's progress bar")
    return p


def _slice(text: str | None, n: int) -> slice:
    if not text:
        return slice(0, n)
    try:
        a, b = text.split(":")
        return slice(int(a) if a else 0, int(b) if b else n)
    except ValueError:
        raise EEBenchError(f"--rows {text!r} is not START:END (example: --rows 0:436)") from None


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
    """Refuse numeric options that cannot train, a model folder without a checkpoint, and an output
    folder that cannot be written, before any data or model is read.

    Raises:
        EEBenchError: naming the option and the fix.
    """
    import math

    from ee_bench.preflight import check_output_folder

    if not (math.isfinite(args.epochs) and args.epochs > 0):
        raise EEBenchError(f"--epochs must be a positive number, got {args.epochs}; e.g. --epochs 3 "
                           f"(a run that trains nothing would save an untrained checkpoint).")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise EEBenchError(f"--lr must be a positive finite learning rate, got {args.lr}; e.g. --lr 5e-5.")
    for name in ("batch_size", "max_length"):
        if getattr(args, name) <= 0:
            raise EEBenchError(f"--{name} must be a positive integer, got {getattr(args, name)}.")
    if args.num_labels is not None and args.num_labels < 2:
        raise EEBenchError(f"--num_labels must be at least 2, got {args.num_labels}.")
    if args.seed < 0:
        raise EEBenchError(f"--seed must be a non-negative integer, got {args.seed}.")
    folder = Path(args.model)
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise EEBenchError(f"--model {folder} is a folder without a checkpoint (no config.json). Give a folder "
                           f"written by save_pretrained or `ee-bench finetune`, a hub id, or all-minilm-l6-v2.")
    check_output_folder(args.output_dir, "--output_dir")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
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
    rows = rows[_slice(args.rows, len(rows))]
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
