"""Task runners: turn a task's documents into :class:`~ee_bench.types.DocRecord` rows.

A runner serves one (model kind, task output type) pair and is registered in :data:`TASK_RUNNERS`
under ``"<kind>/<output_type>"``, lazily imported, like gates and metrics. Built in:

- ``causal/generate_until``: greedy generation + teacher-forced per-layer analysis;
- ``causal/multiple_choice``: lm-eval-style label log-likelihoods, label-restricted head per layer;
- ``encoder/multiple_choice``: per-layer classifier predictions;
- ``seq2seq/generate_until``: encoder-decoder greedy generation + per-decoder-layer analysis.

A plug-in adds a model kind or an ``output_type`` with an entry point in the group
``ee_bench.task_runners`` (name ``"<kind>/<output_type>"``, value ``"module:function"``); the
function follows :class:`TaskRunner`.
"""

from __future__ import annotations

from typing import Any

from ee_bench.task_runner_registry import TASK_RUNNERS, TaskRunner, get_runner, runner_key
from ee_bench.task_runners.multiple_choice import gold_label
from ee_bench.tasks.templates import render

__all__ = ["TASK_RUNNERS", "TaskRunner", "check_first_document", "get_runner", "runner_key"]


def check_first_document(spec: Any, doc: dict[str, Any]) -> None:
    """Render ``spec``'s templates on one document, as the run will (before the model loads).

    Raises:
        ConfigError: naming the task file, if a template fails or the gold label cannot be read.
    """
    render(spec.doc_to_text, doc, source=spec.source_file)
    if spec.doc_to_target:
        render(spec.doc_to_target, doc, source=spec.source_file)
    if spec.output_type == "multiple_choice":
        gold_label(spec, doc)
