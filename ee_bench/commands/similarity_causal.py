"""The causal-LM half of ``ee-bench similarity`` (paper Fig. 3–4 for decoders)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ee_bench.errors import EEBenchError


def profiles_causal(args: argparse.Namespace) -> list:
    """Profiles of ``--model`` (and ``--model2``) on ``--task``'s first ``--limit`` documents.

    Raises:
        EEBenchError: without a generation ``--task``, with no documents, or for a model that is
            not a causal LM.
    """
    if not args.task or args.data_file:
        raise EEBenchError("for a causal LM give --task NAME (a generation task, e.g. wmt22_de_en, with --data-dir); "
                           "its references are teacher-forced after its prompts")
    if args.limit is not None and args.limit <= 0:
        raise EEBenchError(f"--limit must be a positive number of documents, got {args.limit}")
    import transformers

    from ee_bench.decoder_similarity import profile_decoder_on_task
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    spec = TaskIndex([Path(p) for p in args.include_path]).expand([args.task])[0]
    if spec.output_type != "generate_until":
        raise EEBenchError(f"--task {spec.task} is a {spec.output_type} task; a causal LM's similarity needs a "
                           f"generation task (e.g. wmt22_de_en)")
    docs = load_docs(spec, args.data_dir)
    docs = docs[: args.limit] if args.limit else docs
    if not docs:
        raise EEBenchError("no documents to analyse")
    transformers.logging.set_verbosity_error()
    profiles = []
    for name in [args.model] + ([args.model2] if args.model2 else []):
        card = resolve_card(name, args.model_args)
        if card.model != "hf-causal":
            raise EEBenchError(f"--model {args.model} is a causal LM but {name} uses {card.model}; compare two causal LMs")
        profiles.append(profile_decoder_on_task(load_model(card, device=args.device), spec, docs, name=card.name))
    return profiles
