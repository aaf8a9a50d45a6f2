"""The causal-LM half of ``ee-bench finetune``: parse-level checks, data, then one call to
:func:`ee_bench.training.causal_finetune.finetune_causal` (see docs/joint_decoders.md)."""

from __future__ import annotations

import argparse
import shlex

from ee_bench.errors import EEBenchError
from ee_bench.training.options import check_numbers, row_slice


def run_causal(args: argparse.Namespace, argv: list[str]) -> int:
    """Fine-tune a causal LM from parsed ``ee-bench finetune`` options; prints the saved folder.

    Raises:
        EEBenchError: for bad numbers, no or two data sources, corrupt data, or an unloadable model.
    """
    from pathlib import Path

    from ee_bench.training.causal_finetune import CausalFinetuneConfig, check_config
    from ee_bench.training.detect import detect_task_type

    check_numbers(args)
    if Path(args.model).is_dir():
        detect_task_type(args.model)  # an empty or damaged folder fails here, before any data is read
    if bool(args.train_file) == bool(args.train_task):
        raise EEBenchError("give exactly one training source: --train_file alpaca.jsonl (instruction/input/output) or "
                           "--train-task TASK (a generation task, e.g. wmt14_de_en, with --data-dir)")
    if args.task or args.fields or args.num_labels:
        raise EEBenchError("--task, --fields and --num_labels are for encoder classifiers; for a causal LM use "
                           "--train-task or --train_file")
    data_desc = args.train_task or args.train_file
    cfg = CausalFinetuneConfig(
        model=args.model, model_args=args.model_args, objective=args.objective, schedule=args.schedule,
        sample_layers=args.sample_layers, epochs=1.0 if args.epochs is None else args.epochs, max_steps=args.max_steps,
        learning_rate=2e-5 if args.lr is None else args.lr, batch_size=4 if args.batch_size is None else args.batch_size,
        max_length=256 if args.max_length is None else args.max_length, seed=args.seed, lora=args.lora,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, lora_targets=args.lora_targets,
        data=data_desc + (f" rows {args.rows}" if args.rows else ""),
    )
    check_config(cfg)
    if args.seed < 0:
        raise EEBenchError(f"--seed must be a non-negative integer, got {args.seed}.")
    rows = spec = docs = None
    if args.train_file:
        from ee_bench.training.causal_data import read_instruction_jsonl

        rows = read_instruction_jsonl(args.train_file)
        rows = rows[row_slice(args.rows, len(rows))]
    else:
        from ee_bench.tasks.index import TaskIndex
        from ee_bench.tasks.loaders import load_docs

        spec = TaskIndex().expand([args.train_task])[0]
        if spec.output_type != "generate_until":
            raise EEBenchError(f"--train-task {spec.task} is a {spec.output_type} task; causal fine-tuning needs a "
                               f"generation task (e.g. wmt14_de_en)")
        docs = load_docs(spec, args.data_dir)
        docs = docs[row_slice(args.rows, len(docs))]
    if not (rows or docs):
        raise EEBenchError("the training set is empty (check --rows and the data source)")

    import transformers

    from ee_bench.training.causal_data import instruction_examples, task_examples
    from ee_bench.training.causal_finetune import finetune_causal, load_causal

    transformers.logging.set_verbosity_error()
    if not args.progress:  # also transformers' own loading/saving bars
        transformers.utils.logging.disable_progress_bar()
    card, wrapper = load_causal(cfg, device=args.device, dtype=args.dtype)
    examples = instruction_examples(wrapper, rows) if rows is not None else task_examples(wrapper, spec, docs)
    out = finetune_causal(cfg, card, wrapper, examples, args.output_dir, device=args.device, progress=args.progress,
                          command="ee-bench finetune " + shlex.join(argv))
    if out is not None:  # rank 0
        print(f"saved {out} ({len(examples)} training examples, objective {cfg.objective}); use it as --model {out}")
    return 0
