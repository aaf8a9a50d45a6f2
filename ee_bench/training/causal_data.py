"""Training data for causal LMs: (prompt, response) pairs, tokenised with the prompt masked.

Two sources:

- **Instruction JSONL** with Alpaca's fields ``instruction``, ``input`` (optional, may be empty) and
  ``output`` (the paper fine-tunes on ``tatsu-lab/alpaca``). The prompt is Alpaca's template (Taori et
  al., 2023, Stanford Alpaca's ``PROMPT_DICT``): :data:`ALPACA_PROMPT` when ``input`` is non-empty,
  :data:`ALPACA_PROMPT_NO_INPUT` otherwise; the response is ``output``.
- **An ee-bench generation task's documents**: the prompt is exactly what evaluation feeds the model
  (:func:`ee_bench.task_runners.generation.build_prompts`: the task's ``doc_to_text`` and, when the model
  card asks for it, the chat template); the response is the document's first reference.

Either prompt goes through the model wrapper's ``encode_prompt``, so a chat model sees the same
template in training and in evaluation. The response is tokenised without special tokens and ends
with the tokenizer's EOS token. ``labels`` equal ``input_ids`` on the response tokens and −100 on
the prompt (instruction tuning: no loss on the prompt).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.task_runners.generation import build_prompts, references_of
from ee_bench.tasks.loaders import read_jsonl_file

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


@dataclass(frozen=True)
class Example:
    """One training pair: the prompt's token ids (as evaluation would encode it) and the response text."""

    prompt_ids: list[int]
    response: str


def read_instruction_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Rows of an Alpaca-style JSONL file.

    Raises:
        EEBenchError: if the file is missing or empty, not UTF-8, a line is not a JSON object
            (:func:`~ee_bench.tasks.loaders.read_jsonl_file`, with the line number), or a row lacks a
            non-empty ``instruction`` or a string ``output`` (with the row number).
    """
    p = Path(path)
    if not p.is_file():
        raise EEBenchError(f"--train_file {p} does not exist; give a JSONL file with instruction/input/output fields")
    rows = read_jsonl_file(p, "--train_file")
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("instruction"), str) or not row["instruction"].strip() \
                or not isinstance(row.get("output"), str) or not isinstance(row.get("input", ""), str):
            raise EEBenchError(f"--train_file {p} row {n} (blank lines not counted) needs a non-empty string "
                               f"'instruction' and a string 'output' ('input' optional); it has {sorted(row)}")
    if not rows:
        raise EEBenchError(f"--train_file {p} has no rows")
    return rows


def alpaca_prompt(row: dict[str, str]) -> str:
    """Alpaca's prompt text for one row (module docstring)."""
    if row.get("input", "").strip():
        return ALPACA_PROMPT.format(instruction=row["instruction"], input=row["input"])
    return ALPACA_PROMPT_NO_INPUT.format(instruction=row["instruction"])


def instruction_examples(model, rows: list[dict[str, str]]) -> list[Example]:
    """Alpaca rows → examples, prompts encoded by ``model.encode_prompt`` (an HFCausalLM wrapper)."""
    return [Example(model.encode_prompt(alpaca_prompt(r)), r["output"]) for r in rows]


def task_examples(model, spec, docs: list[dict[str, Any]]) -> list[Example]:
    """A generation task's documents → examples: the evaluation prompt and the first reference."""
    if spec.output_type != "generate_until":
        raise EEBenchError(f"--train-task {spec.task} is a {spec.output_type} task; causal fine-tuning needs a "
                           f"generation task (e.g. wmt14_de_en)")
    prompts = build_prompts(model, spec, docs)
    return [Example(ids, references_of(spec, d)[0]) for (_, ids), d in zip(prompts, docs)]


def tokenize_examples(examples: list[Example], tokenizer, max_length: int):
    """Token ids, attention mask and masked labels as a ``datasets.Dataset``.

    The response (plus EOS) is cut at ``max_length`` tokens in all; an example whose prompt leaves no
    room for one response token is skipped and counted in the log.

    Returns:
        A ``datasets.Dataset`` with ``input_ids``, ``attention_mask``, ``labels`` (−100 on the prompt).

    Raises:
        EEBenchError: if no example is left.
    """
    import datasets

    eos = tokenizer.eos_token_id
    ids, labels, skipped = [], [], 0
    for ex in examples:
        resp = tokenizer(ex.response, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        room = max_length - len(ex.prompt_ids)
        if room < 1:
            skipped += 1
            continue
        resp = resp[:room]
        ids.append(list(ex.prompt_ids) + resp)
        labels.append([IGNORE_INDEX] * len(ex.prompt_ids) + resp)
    if skipped:
        logger.warning("%d of %d training examples skipped: prompt longer than --max_length %d tokens",
                       skipped, len(examples), max_length)
    if not ids:
        raise EEBenchError(f"no training example fits --max_length {max_length} tokens (all {len(examples)} prompts "
                           f"are longer); raise --max_length")
    return datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids],
                                       "labels": labels})
