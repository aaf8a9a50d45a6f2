"""Fine-tune an encoder classifier with ``transformers.Trainer`` and save it as an ee-bench model.

The saved folder is a normal Hugging Face checkpoint (``save_pretrained`` of model and tokenizer) plus
a generated model card, ``ee_bench_card.yaml``, so ``ee-bench --model path/to/ckpt`` loads it with the
``hf-encoder`` wrapper. The objective (final or joint) is :mod:`ee_bench.training.joint`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ee_bench.errors import EEBenchError
from ee_bench.models.cards import CARD_FILE_IN_CHECKPOINT
from ee_bench.training.detect import EMBEDDED_ENCODERS
from ee_bench.training.joint import JointTrainer
from ee_bench.training.save import save_checkpoint

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class FinetuneConfig:
    """What to train and how (recorded in the card's description and ``ee_bench_finetune.json``).

    Attributes:
        model: hub id, local folder, or an embedded encoder name (``all-minilm-l6-v2``).
        fields: the one or two text fields of each training row.
        num_labels: C.
        objective: ``final`` or ``joint``. schedule: joint weight schedule (uniform, increasing).
        epochs, learning_rate, batch_size, max_length (tokens), seed, warmup_ratio, weight_decay.
        label_names: optional C label words, stored as ``config.id2label``.
        task: task name, for the card's description.
    """

    model: str
    fields: tuple[str, ...]
    num_labels: int
    objective: str = "joint"
    schedule: str = "uniform"
    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    label_names: tuple[str, ...] | None = None
    task: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_model_source(name: str) -> str:
    """An embedded encoder's folder, else ``name`` unchanged (hub id or local path)."""
    if name in EMBEDDED_ENCODERS:
        import importlib

        module, _, func = EMBEDDED_ENCODERS[name].partition(":")
        return getattr(importlib.import_module(module), func)()
    return name


def load_for_training(cfg: FinetuneConfig):
    """(model, tokenizer) for fine-tuning; a missing pooler/classifier is freshly initialised
    (e.g. a sentence-transformers ``BertModel`` folder such as all-MiniLM-L6-v2).

    Raises:
        EEBenchError: if the checkpoint cannot be loaded.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_model_source(cfg.model)
    kwargs: dict[str, Any] = {"num_labels": cfg.num_labels}
    if cfg.label_names:
        kwargs["id2label"] = dict(enumerate(cfg.label_names))
        kwargs["label2id"] = {n: i for i, n in enumerate(cfg.label_names)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source, ignore_mismatched_sizes=True, **kwargs)
    except OSError as exc:
        raise EEBenchError(
            f"Could not load {cfg.model!r} for fine-tuning: {str(exc).splitlines()[0]} Use a local folder, "
            f"a reachable hub id, or the embedded all-minilm-l6-v2."
        ) from None
    return model, tokenizer


def rows_to_dataset(rows: list[dict[str, Any]], fields: tuple[str, ...], tokenizer, max_length: int):
    """Tokenise training rows (each with ``fields`` and an integer ``label``) into a ``datasets.Dataset``.

    Raises:
        EEBenchError: if a row lacks a field or its label.
    """
    import datasets

    for key in (*fields, "label"):
        if rows and key not in rows[0]:
            raise EEBenchError(f"training rows have no {key!r} field (they have {sorted(rows[0])}); "
                               f"fix --fields or the training file")
    cols = [[str(r[f]) for r in rows] for f in fields]
    enc = tokenizer(*cols, truncation=True, max_length=max_length)
    data = {k: v for k, v in enc.items()}
    data["labels"] = [int(r["label"]) for r in rows]
    return datasets.Dataset.from_dict(data)


def write_card(output_dir: Path, cfg: FinetuneConfig) -> Path:
    """Write the ``ee_bench_card.yaml`` that makes the folder usable as ``--model``."""
    card = {
        "name": output_dir.resolve().name,
        "model": "hf-encoder",
        "chat_template": False,
        "model_args": {"max_length": cfg.max_length},
        "description": (f"{cfg.model} fine-tuned by `ee-bench finetune` on {cfg.task or 'a classification task'} "
                        f"(objective {cfg.objective}" + (f", {cfg.schedule} weights" if cfg.objective == "joint" else "")
                        + f", {cfg.epochs:g} epochs, lr {cfg.learning_rate:g}, max_length {cfg.max_length})"),
    }
    path = output_dir / CARD_FILE_IN_CHECKPOINT
    path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return path


def finetune_classifier(cfg: FinetuneConfig, rows: list[dict[str, Any]], output_dir: str | Path,
                        device: str | None = None, progress: bool = False) -> Path:
    """Fine-tune ``cfg.model`` on ``rows`` with ``cfg.objective`` and save it to ``output_dir``.

    Args:
        cfg: the configuration.
        rows: training rows, each with ``cfg.fields`` and an integer ``label`` in [0, C).
        output_dir: where the checkpoint, its tokenizer, the card and ``ee_bench_finetune.json`` go.
        device: ``cpu`` to force the CPU; default lets the Trainer choose.
        progress: show the Trainer's progress bar.

    Returns:
        The checkpoint folder.

    Raises:
        EEBenchError: on an empty training set, labels out of range, or an unloadable model.
    """
    from transformers import DataCollatorWithPadding, TrainingArguments, set_seed


    if not rows:
        raise EEBenchError("the training set is empty")
    bad = sorted({int(r.get("label", -1)) for r in rows} - set(range(cfg.num_labels)))
    if bad:
        raise EEBenchError(f"training labels {bad} are outside [0, {cfg.num_labels}); fix --num_labels or the data")
    set_seed(cfg.seed)
    model, tokenizer = load_for_training(cfg)
    train = rows_to_dataset(rows, cfg.fields, tokenizer, cfg.max_length)
    out = Path(output_dir)
    scratch = tempfile.mkdtemp(prefix="ee-bench-trainer-")  # the Trainer's own folder; nothing is saved there
    args = TrainingArguments(
        output_dir=scratch, num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        seed=cfg.seed, data_seed=cfg.seed, save_strategy="no", eval_strategy="no", report_to=[],
        logging_strategy="no", disable_tqdm=not progress, use_cpu=device == "cpu", dataloader_num_workers=0,
    )
    trainer = JointTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                           data_collator=DataCollatorWithPadding(tokenizer), objective=cfg.objective,
                           schedule=cfg.schedule)
    try:
        result = trainer.train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    save_checkpoint(trainer.model, tokenizer, out)
    write_card(out, cfg)
    record = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
              "n_train_rows": len(rows), "train_loss": float(result.training_loss),
              "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
              "layer_weights": trainer.weights.tolist() if cfg.objective == "joint" else None}
    (out / "ee_bench_finetune.json").write_text(json.dumps(record, indent=2, allow_nan=False), encoding="utf-8")
    return out
