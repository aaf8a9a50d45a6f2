"""Hub data sets that ee-bench's own tasks already read offline, and where their local files are.

ee-bench's task files name a hub data set (``dataset_path``, ``dataset_name``, ``test_split``) and, in
their ``offline`` block, the local file that holds the same rows (e.g. ``nyu-mll/glue`` / ``sst2`` /
``validation`` → ``glue/sst2/validation.jsonl``). lm-eval's tasks name the same hub data sets; with
``--data-dir`` they are served from the same local files (:func:`local_file_for`, called by
:func:`ee_bench.lm_eval.task_build.local_data_overrides`). Only ``offline.format: jsonl`` files without a
``process_docs`` step qualify: their rows carry the hub's fields unchanged.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ee_bench.errors import EEBenchError
from ee_bench.tasks.index import TaskIndex
from ee_bench.tasks.spec import TaskSpec


@lru_cache(maxsize=1)
def hub_aliases() -> dict[tuple[str, str | None, str], str]:
    """(hub ``dataset_path``, ``dataset_name``, split) → path of the local file under ``--data-dir``,
    from ee-bench's built-in task files (jsonl layouts whose rows are the hub's)."""
    index = TaskIndex(with_plugins=False)
    out: dict[tuple[str, str | None, str], str] = {}
    for name in index.names():
        if index.is_group(name):
            continue
        try:
            spec = index.load(name)
        except EEBenchError:
            continue
        if not isinstance(spec, TaskSpec) or not spec.offline or spec.offline.get("format") != "jsonl":
            continue
        if spec.process_docs or not spec.dataset_path or not spec.test_split or not isinstance(spec.offline.get("path"), str):
            continue
        out[(spec.dataset_path, spec.dataset_name, spec.test_split)] = spec.offline["path"]
    return out


def local_file_for(data_dir: str | Path, dataset_path: str, dataset_name: str | None, split: str | None) -> Path | None:
    """The local file ee-bench's own tasks read for a hub data set's split, if it is under ``data_dir``.

    A ``dataset_path`` without an owner (``glue``) also matches the owned id (``nyu-mll/glue``).

    Returns:
        The file (inside ``data_dir``), or None when no ee-bench task reads that split offline or the
        file is absent.
    """
    if not split:
        return None
    root = Path(data_dir).resolve()
    for (path, name, sp), rel in hub_aliases().items():
        same_path = path == dataset_path or ("/" not in dataset_path and path.split("/")[-1] == dataset_path)
        if same_path and name == dataset_name and sp == split:
            f = (root / rel).resolve()
            if f.is_relative_to(root) and f.is_file():
                return f
    return None
