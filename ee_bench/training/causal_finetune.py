"""Fine-tune a causal LM (final or joint objective, optional LoRA) and save it as an ee-bench model.

The model is loaded through its ee-bench model card (:func:`ee_bench.models.cards.resolve_card`), so
the embedded GGUF models (``smollm2-135m-ee``), checkpoint folders and hub ids all work; training is
``transformers.Trainer`` with :class:`~ee_bench.training.causal_joint.CausalJointTrainer`'s loss, so
``accelerate launch`` / ``torchrun`` run it on several processes (only rank 0 writes).

The saved folder is a normal Hugging Face checkpoint (LoRA adapters merged into the weights with
peft's ``merge_and_unload``), its tokenizer, ``ee_bench_card.yaml`` (wrapper ``hf-causal``; chat
template and stop tokens copied from the source card) and ``ee_bench_finetune.json`` (settings,
layer weights, training loss and time), so ``--model PATH`` works in every ee-bench command.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ee_bench.errors import EEBenchError
from ee_bench.models.cards import CARD_FILE_IN_CHECKPOINT, list_cards, load_model, resolve_card
from ee_bench.training.causal_data import IGNORE_INDEX, tokenize_examples
from ee_bench.training.causal_joint import CausalJointTrainer
from ee_bench.training.save import save_checkpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CausalFinetuneConfig:
    """What to train and how (recorded in ``ee_bench_finetune.json`` and the card's description).

    Attributes:
        model: model card, checkpoint folder or hub id. model_args: ``k=v,...`` card overrides.
        objective: ``final`` or ``joint``. schedule: joint weights (``uniform`` / ``increasing``).
        sample_layers: early layers sampled per step (LayerSkip-style) or None for all.
        epochs: passes over the data; max_steps: optimiser steps (overrides epochs when set).
        learning_rate, batch_size (examples per process and step), max_length (tokens per example),
        seed, warmup_ratio, weight_decay.
        lora: train LoRA adapters (peft) instead of all weights; lora_r, lora_alpha, lora_dropout,
        lora_targets (module names, or ``all-linear``: every linear layer of the blocks).
        data: a one-line description of the training data (card, provenance).
    """

    model: str
    model_args: str | None = None
    objective: str = "joint"
    schedule: str = "uniform"
    sample_layers: int | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float = 2e-5
    batch_size: int = 4
    max_length: int = 256
    seed: int = 0
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: str = "all-linear"
    data: str = ""


def check_config(cfg: CausalFinetuneConfig) -> None:
    """Reject bad numbers before anything loads.

    Raises:
        EEBenchError: naming the option and the fix.
    """
    problems = []
    if not (isinstance(cfg.learning_rate, float) and math.isfinite(cfg.learning_rate) and cfg.learning_rate > 0):
        problems.append(f"--lr must be a positive finite number (e.g. 2e-5), got {cfg.learning_rate}")
    if cfg.batch_size < 1:
        problems.append(f"--batch_size must be a positive integer, got {cfg.batch_size}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        problems.append(f"--max-steps must be a positive integer, got {cfg.max_steps}; omit it to train --epochs")
    if cfg.max_steps is None and not (math.isfinite(cfg.epochs) and cfg.epochs > 0):
        problems.append(f"--epochs must be a positive number, got {cfg.epochs}")
    if cfg.max_length < 2:
        problems.append(f"--max_length must be at least 2 tokens, got {cfg.max_length}")
    if cfg.sample_layers is not None and cfg.sample_layers < 1:
        problems.append(f"--sample-layers must be a positive integer, got {cfg.sample_layers}")
    if cfg.lora and (cfg.lora_r < 1 or cfg.lora_alpha <= 0 or not 0 <= cfg.lora_dropout < 1):
        problems.append("--lora-r must be ≥ 1, --lora-alpha > 0 and --lora-dropout in [0, 1)")
    if problems:
        raise EEBenchError("Bad fine-tuning options: " + "; ".join(problems) + ".")


def load_causal(cfg: CausalFinetuneConfig, device: str | None = None, dtype: str = "float32"):
    """The card and the :class:`~ee_bench.models.hf_causal.HFCausalLM` wrapper of ``cfg.model``.

    A name that is neither a card nor a folder is taken as a hub id (``--model hf`` with
    ``pretrained=NAME``).

    Raises:
        EEBenchError: if the model cannot be resolved or loaded, or is not a causal LM.
    """
    name, margs = cfg.model, cfg.model_args
    if name not in list_cards() and not Path(name).is_dir() and "pretrained=" not in (margs or ""):
        margs, name = ",".join(x for x in (f"pretrained={name}", margs) if x), "hf-causal"
    card = resolve_card(name, margs)
    if card.model != "hf-causal":
        raise EEBenchError(f"--model {cfg.model} uses the {card.model} wrapper; causal fine-tuning needs a causal LM "
                           f"(wrapper hf-causal). Drop --task-type causal to fine-tune an encoder.")
    return card, load_model(card, device=device, dtype=dtype)


def write_card(output_dir: Path, source_card, cfg: CausalFinetuneConfig) -> Path:
    """Write the ``ee_bench_card.yaml`` that makes the folder usable as ``--model``."""
    how = f"objective {cfg.objective}"
    if cfg.objective != "final":
        how += f", {cfg.schedule} weights" + (f", {cfg.sample_layers} sampled layers/step" if cfg.sample_layers else "")
    steps = f"{cfg.max_steps} steps" if cfg.max_steps else f"{cfg.epochs:g} epochs"
    card = {
        "name": output_dir.resolve().name,
        "model": "hf-causal",
        "chat_template": bool(source_card.chat_template),
        "stop_tokens": list(source_card.stop_tokens),
        "dtype": "auto",
        "description": (f"{source_card.name} fine-tuned by `ee-bench finetune` on {cfg.data or 'instruction data'} "
                        f"({how}, {steps}, lr {cfg.learning_rate:g}, batch {cfg.batch_size}"
                        + (f", LoRA r={cfg.lora_r} merged" if cfg.lora else "") + ")"),
    }
    path = output_dir / CARD_FILE_IN_CHECKPOINT
    path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return path


def add_lora(model, cfg: CausalFinetuneConfig):
    """Wrap ``model`` with peft LoRA adapters (the base weights, final norm and head stay frozen).

    Raises:
        EEBenchError: if peft is not installed or the target modules do not exist.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise EEBenchError("--lora needs peft: pip install 'ee-bench[train]' (or pip install peft)") from None
    targets: Any = cfg.lora_targets if cfg.lora_targets == "all-linear" else [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets,
                      task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise EEBenchError(f"--lora-targets {cfg.lora_targets!r}: {str(exc).splitlines()[0]} Name linear modules of "
                           f"the blocks (e.g. q_proj,v_proj) or use all-linear.") from None


def finetune_causal(cfg: CausalFinetuneConfig, card, wrapper, examples, output_dir: str | Path,
                    device: str | None = None, progress: bool = False, command: str = "") -> Path | None:
    """Fine-tune the wrapper's model on ``examples`` and save it to ``output_dir``.

    Args:
        cfg: the configuration (checked by :func:`check_config`).
        card, wrapper: from :func:`load_causal`.
        examples: :class:`~ee_bench.training.causal_data.Example` pairs built with this wrapper.
        output_dir: checkpoint folder to write (rank 0 only).
        device: ``cpu`` to force the CPU; default lets the Trainer choose.
        progress: show the Trainer's progress bar and loss log.
        command: the command line, recorded in ``ee_bench_finetune.json`` (provenance).

    Returns:
        The checkpoint folder (None on the processes other than rank 0, which write nothing).

    Raises:
        EEBenchError: on bad options, an empty training set, or a failing LoRA setup.
    """
    from transformers import DataCollatorForSeq2Seq, TrainingArguments, set_seed


    check_config(cfg)
    if not examples:
        raise EEBenchError("the training set is empty")
    set_seed(cfg.seed)
    tokenizer = wrapper.tokenizer
    train = tokenize_examples(examples, tokenizer, cfg.max_length)
    model = wrapper.model
    model.config.use_cache = False
    if cfg.lora:
        model = add_lora(model, cfg)
    side, tokenizer.padding_side = tokenizer.padding_side, "right"  # training batches: right padding, labels −100 on padding
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, padding=True)
    scratch = tempfile.mkdtemp(prefix="ee-bench-trainer-")  # the Trainer's own folder; nothing is kept there
    args = TrainingArguments(
        output_dir=scratch, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate, per_device_train_batch_size=cfg.batch_size, warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay, seed=cfg.seed, data_seed=cfg.seed, save_strategy="no", eval_strategy="no",
        report_to=[], logging_strategy="steps" if progress else "no", logging_steps=max(1, (cfg.max_steps or 50) // 10),
        disable_tqdm=not progress, use_cpu=device == "cpu", dataloader_num_workers=0, remove_unused_columns=False,
        ddp_find_unused_parameters=False,
    )
    trainer = CausalJointTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                                 data_collator=collator, objective=cfg.objective, schedule=cfg.schedule,
                                 sample_layers=cfg.sample_layers, layer_seed=cfg.seed)
    try:
        result = trainer.train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tokenizer.padding_side = side
    out = Path(output_dir)
    if not trainer.is_world_process_zero():
        return None
    trained = trainer.model.merge_and_unload() if cfg.lora else trainer.model
    trained.config.use_cache = True
    save_checkpoint(trained, tokenizer, out)
    write_card(out, card, cfg)
    record = {"schema": "ee-bench/finetune-causal/v1", "command": command, "config": asdict(cfg), "source_card": card.name,
              "n_examples": len(examples), "n_train_rows": len(train), "n_layers": trainer.n_layers,
              "world_size": trainer.args.world_size, "global_steps": int(result.global_step),
              "train_loss": float(result.training_loss), "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
              "layer_weights": trainer.weights.tolist() if cfg.objective != "final" else None}
    (out / "ee_bench_finetune.json").write_text(json.dumps(record, indent=2, allow_nan=False), encoding="utf-8")
    return out
