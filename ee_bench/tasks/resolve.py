"""``--tasks`` names → tasks: ee-bench's own first, then lm-eval's.

Precedence, name by name:

1. ``lm_eval:NAME`` is always lm-eval's task ``NAME``, looked up in lm-eval's ``TaskManager`` (its installed
   tasks plus the ``--include_path`` folders);
2. a plain name is ee-bench's task or group (shipped, plug-ins, ``--include_path``) when ee-bench has it; a
   task file that uses a feature only lm-eval implements is then built by lm-eval
   (``TaskSpec.engine == "lm-eval"``);
3. otherwise the plain name is looked up in lm-eval's ``TaskManager``;
4. otherwise it is an unknown-task error naming the closest names of both.

lm-eval is imported only when a name needs it (rules 1, 3, and lm-eval-built files), so ee-bench's own
tasks run without lm-eval installed.
"""

from __future__ import annotations

from pathlib import Path

from ee_bench.errors import EEBenchError, UnknownNameError
from ee_bench.tasks.index import TaskIndex

PREFIX = "lm_eval:"


def _lm_eval_tasks():
    try:
        from ee_bench.lm_eval import tasks
    except ImportError as exc:
        raise EEBenchError(f"lm-eval tasks need lm-eval ({exc}). Install it: pip install 'ee-bench[lm-eval]'.") from None
    return tasks


def is_lm_eval(spec) -> bool:
    """Whether lm-eval builds and scores this resolved task."""
    return getattr(spec, "engine", "ee-bench") == "lm-eval"


def resolve_tasks(names: list[str], include_paths: list[Path], data_dir=None, limit: int | None = None) -> list:
    """Resolve ``--tasks`` names (see the module docstring) to ee-bench ``TaskSpec`` s and built
    :class:`~ee_bench.lm_eval.tasks.LmEvalTask` s, in order, without duplicates.

    lm-eval tasks are built here (their data loaded), so bad input fails before the model loads.

    Raises:
        UnknownNameError: a name neither knows. ConfigError / DataNotFoundError: from the task or its data.
    """
    index = TaskIndex(list(include_paths))
    out, seen = [], set()
    for name in names:
        if name.startswith(PREFIX):
            built = [_lm_eval_tasks().from_name(name[len(PREFIX):], include_paths, data_dir, limit)]
        else:
            try:
                specs = index.expand([name])
            except UnknownNameError as ee_miss:
                try:
                    lm = _lm_eval_tasks()
                except EEBenchError:
                    raise ee_miss from None
                try:
                    built = [lm.from_name(name, include_paths, data_dir, limit)]
                except UnknownNameError as lm_miss:
                    raise UnknownNameError(f"{ee_miss} | lm-eval: {lm_miss}") from None
            else:
                built = [_lm_eval_tasks().from_spec(s, data_dir, limit) if is_lm_eval(s) else s for s in specs]
        for spec in built:
            if spec.task not in seen:
                seen.add(spec.task)
                out.append(spec)
    return out
