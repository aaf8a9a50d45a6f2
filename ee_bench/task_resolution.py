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
from ee_bench.tasks.lm_eval_vocab import RUNNABLE_OUTPUT_TYPES
from ee_bench.tasks.spec import is_lm_eval, with_max_gen_toks

PREFIX = "lm_eval:"


def _lm_eval_tasks():
    try:  # deferred: imports lm-eval (an optional heavy dependency), only when a name needs it
        from ee_bench.lm_eval import task_build as tasks
    except ImportError as exc:
        raise EEBenchError(f"lm-eval tasks need lm-eval ({exc}). Install it: pip install 'ee-bench[lm-eval]'.") from None
    return tasks


def _both_missed(name: str, ee_names: list[str], lm_close: list[str]) -> str:
    """One message for a name neither ee-bench nor lm-eval has: the close names of each, labelled."""
    import difflib

    by_lower = {n.lower(): n for n in ee_names}  # case-insensitive, as registry.did_you_mean
    ee_close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)]
    hints = [f"{', '.join(c)} ({who})" for c, who in ((ee_close, "ee-bench"), (lm_close[:3], "lm-eval")) if c]
    return (f"Unknown task {name!r}: neither ee-bench nor lm-eval has it."
            + (f" Did you mean: {'; '.join(hints)}?" if hints else "")
            + " List them with `ee-bench ls tasks` and `ee-bench ls tasks --lm-eval`; add task folders with "
              "--include_path DIR.")


def resolve_tasks(names: list[str], include_paths: list[Path], data_dir=None, limit: int | None = None,
                  seed: int = 1234) -> list:
    """Resolve ``--tasks`` names (see the module docstring) to ee-bench ``TaskSpec`` s and built
    :class:`~ee_bench.lm_eval.tasks.LmEvalTask` s, in order, without duplicates.

    lm-eval tasks are built here (their data loaded), so bad input fails before the model loads; ``seed`` is
    their few-shot seed (lm-eval's ``fewshot_random_seed``).

    Raises:
        UnknownNameError: a name neither knows. ConfigError / DataNotFoundError: from the task or its data.
    """
    index = TaskIndex(list(include_paths))
    out, seen = [], set()
    for name in names:
        if name.startswith(PREFIX):
            built = [_lm_eval_tasks().from_name(name[len(PREFIX):], include_paths, data_dir, limit, seed)]
        else:
            try:
                specs = index.expand([name])
            except UnknownNameError as ee_miss:
                try:
                    lm = _lm_eval_tasks()
                except EEBenchError:
                    raise ee_miss from None
                try:
                    built = [lm.from_name(name, include_paths, data_dir, limit, seed)]
                except UnknownNameError as lm_miss:
                    raise UnknownNameError(_both_missed(name, index.names(), getattr(lm_miss, "suggestions", []))
                                           + index.miss_notes()) from None
            else:
                built = [_lm_eval_tasks().from_spec(s, data_dir, limit, seed) if is_lm_eval(s) else s for s in specs]
        for spec in built:
            if spec.task not in seen:
                seen.add(spec.task)
                out.append(spec)
    return out


def lm_eval_listing(include_paths: list[Path], match: str | None = None) -> tuple[list[tuple], str]:
    """Rows (name, kind, output type, what ee-bench does with it, file) for every lm-eval task, group and
    tag, and a one-line summary by output type.

    The output type is read from lm-eval's index (task files with their includes, functions unresolved).
    """
    import fnmatch
    from collections import Counter


    lm = _lm_eval_tasks()
    entries = dict(lm.task_manager(()).task_index)
    if include_paths:  # include folders override installed tasks, as in lm-eval
        entries.update(lm.task_manager(tuple(str(p) for p in include_paths), include_defaults=False).task_index)
    rows, counts = [], Counter()
    for name, entry in sorted(entries.items()):
        if match and not fnmatch.fnmatch(name, match):
            continue
        kind = entry.kind.name.lower().replace("py_task", "python task")
        if kind == "task":
            out = (entry.cfg or {}).get("output_type", "generate_until")
            verdict = "yes" if out in RUNNABLE_OUTPUT_TYPES else "no (not supported yet)"
            counts[out] += 1
        else:
            out = ""
            verdict = "name its tasks" if kind in ("group", "tag") else "no (Python class)"
        path = str(entry.yaml_path or "")
        rows.append((name, kind, out, verdict, path.split("lm_eval/tasks/")[-1] if "lm_eval/tasks/" in path else path))
    summary = ("lm-eval task files by output type: " + ", ".join(f"{k} {v}" for k, v in counts.most_common())
               + f"; ee-bench analyses {', '.join(RUNNABLE_OUTPUT_TYPES)} (run with --tasks lm_eval:NAME)")
    return rows, summary


def apply_gen_kwargs(specs: list, overrides: dict) -> list:
    """Tasks with ``--gen_kwargs`` applied (:func:`~ee_bench.tasks.spec.parse_gen_kwargs`'s overrides).

    As in lm-eval, the overrides reach ``generate_until`` tasks only; other tasks are returned as they
    are, with a note on stderr. The new budget is recorded in the results (``max_gen_toks_source``) and in the task's hash, so
    an interrupted run resumes only with the same budget.
    """
    if "max_gen_toks" not in overrides:
        return list(specs)
    n, out = overrides["max_gen_toks"], []
    for spec in specs:
        if spec.output_type != "generate_until":
            import sys

            print(f"ee-bench: --gen_kwargs max_gen_toks={n} does not apply to {spec.task} ({spec.output_type}: "
                  f"nothing is generated); it runs as its task file says", file=sys.stderr)
            out.append(spec)
        elif is_lm_eval(spec):  # lm-eval's evaluator reads the built task's config: set it as lm-eval's own
            from dataclasses import replace  # --gen_kwargs does (ConfigurableTask.set_config)

            spec.lm_task.set_config(key="generation_kwargs",
                                    value={**(spec.lm_task.config.generation_kwargs or {}), "max_gen_toks": n})
            out.append(replace(spec, max_gen_toks_override=n))
        else:
            out.append(with_max_gen_toks(spec, n, f"--gen_kwargs max_gen_toks={n}"))
    return out
