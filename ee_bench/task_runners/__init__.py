"""Task runners: turn a task's documents into :class:`~ee_bench.types.DocRecord` rows.

A runner serves one (model kind, task output type) pair and is registered in :data:`TASK_RUNNERS`
under ``"<kind>/<output_type>"``, lazily imported, like gates and metrics. Built in:

- ``causal/generate_until``: greedy generation + teacher-forced per-layer analysis;
- ``causal/multiple_choice``: lm-eval-style label log-likelihoods, label-restricted head per layer;
- ``encoder/multiple_choice``: per-layer classifier predictions.

A plug-in adds a model kind or an ``output_type`` with an entry point in the group
``ee_bench.task_runners`` (name ``"<kind>/<output_type>"``, value ``"module:function"``); the
function follows :class:`TaskRunner`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ee_bench.errors import EEBenchError
from ee_bench.registry import Registry
from ee_bench.types import DocRecord


class TaskRunner(Protocol):
    """Contract of a task runner.

    Args:
        model: a wrapper of the kind the runner is registered for.
        spec: the task. docs: the documents to run. doc_ids: their indices in the split.
        batch_size: documents per forward pass (results must not depend on it).
        keep_hidden: keep (L, N, H) hidden states in each record (gates that read them).
        progress: a tqdm bar advanced once per document, or None.

    Returns:
        One :class:`DocRecord` per document, in order, with (L, N) per-layer statistics.
    """

    def __call__(self, model: Any, spec: Any, docs: list[dict[str, Any]], doc_ids: list[int], *,
                 batch_size: int = 1, keep_hidden: bool = False, progress: Any = None) -> list[DocRecord]: ...


TASK_RUNNERS: Registry[Callable[..., list[DocRecord]]] = Registry("task runner", entry_point_group="ee_bench.task_runners")
TASK_RUNNERS.register("causal/generate_until", "ee_bench.task_runners.generation:run_generation")
TASK_RUNNERS.register("causal/multiple_choice", "ee_bench.task_runners.multiple_choice:run_multiple_choice")
TASK_RUNNERS.register("encoder/multiple_choice", "ee_bench.task_runners.classification:run_classification")


def runner_key(model_kind: str, output_type: str) -> str:
    """The registry name of the runner for a model kind and an output type: ``"<kind>/<output_type>"``."""
    return f"{model_kind}/{output_type}"


def get_runner(model_kind: str, output_type: str) -> TaskRunner:
    """The runner for a model kind and a task output type.

    Raises:
        EEBenchError: if no runner is registered for the pair (e.g. an encoder on a generation task).
    """
    key = runner_key(model_kind, output_type)
    if key not in TASK_RUNNERS:
        supported = ", ".join(n.replace("/", "+") for n in TASK_RUNNERS.names())
        raise EEBenchError(
            f"A {model_kind} model cannot run a {output_type} task (supported: {supported}). "
            f"Pick a task that fits the model, e.g. a GLUE task for an encoder classifier, or install a "
            f"plug-in that registers the task runner {key!r} (entry-point group ee_bench.task_runners)."
        )
    return TASK_RUNNERS.get(key)
