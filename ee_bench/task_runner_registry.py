"""The task-runner registry: which function turns a task's documents into records, per model kind
and output type (:data:`TASK_RUNNERS`, names ``"<kind>/<output_type>"``).

It sits low in the house, beside the other registries, so that the task layer can list the output
types a plug-in runner adds (:func:`ee_bench.tasks.spec.known_output_types`) without importing the
runners; the runners themselves (:mod:`ee_bench.task_runners`) are imported lazily on first use.
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
TASK_RUNNERS.register("seq2seq/generate_until", "ee_bench.task_runners.seq2seq:run_seq2seq_generation")


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
