"""Task runners: turn a task's documents into :class:`~ee_bench.types.DocRecord` rows.

Which runner serves a (model kind, task output type) pair is a table, imported lazily:

- ("causal", "generate_until"): greedy generation + teacher-forced per-layer analysis;
- ("causal", "multiple_choice"): lm-eval-style label log-likelihoods, label-restricted head per layer;
- ("encoder", "multiple_choice"): per-layer classifier predictions;
- ("seq2seq", "generate_until"): encoder-decoder greedy generation + per-decoder-layer analysis.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ee_bench.errors import EEBenchError

TASK_RUNNERS: dict[tuple[str, str], str] = {
    ("causal", "generate_until"): "ee_bench.runners.generation:run_generation",
    ("causal", "multiple_choice"): "ee_bench.runners.multiple_choice:run_multiple_choice",
    ("encoder", "multiple_choice"): "ee_bench.runners.classification:run_classification",
    ("seq2seq", "generate_until"): "ee_bench.runners.seq2seq:run_seq2seq_generation",
}


def get_runner(model_kind: str, output_type: str) -> Callable:
    """The runner function for a model kind and a task output type.

    Raises:
        EEBenchError: if the combination is not supported (e.g. an encoder on a generation task).
    """
    target = TASK_RUNNERS.get((model_kind, output_type))
    if target is None:
        supported = ", ".join(f"{k}+{o}" for k, o in TASK_RUNNERS)
        raise EEBenchError(
            f"A {model_kind} model cannot run a {output_type} task (supported: {supported}). "
            f"Pick a task that fits the model, e.g. a GLUE task for an encoder classifier."
        )
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)
