"""``ee-bench validate``: check every shipped task YAML and model card, reporting all errors at once.

For each task: the schema (strict keys), that every metric name resolves in the metric registry and
accepts its options, that ``offline.format`` and ``process_docs`` name registered functions, the
truncation rule, and, when the task's data ships beside its YAML (``dataset_kwargs.data_files``) or a
data folder is given (``--data-dir`` or ``EE_BENCH_DATA_DIR``) and holds the task's offline files, that ``doc_to_text`` / ``doc_to_target`` render (and the gold label,
label words, encoder and truncation fields exist) for the first documents. Tasks whose offline files
are absent are listed as skipped, not failed. For each group: that its members exist. For each
model card: the schema, that its name matches its file, and that its wrapper is registered.

Exit code 0 when everything passes, 2 when any error was found (each printed on its own line).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ee_bench.options import help_text

DATA_DIR_ENV = "EE_BENCH_DATA_DIR"
WARNINGS: list[str] = []  # non-fatal findings of the current run (e.g. a contradicting higher_is_better)


def task_problems(spec, data_dir: str | None, n_docs: int) -> tuple[list[str], str]:
    """Problems of one parsed task, and a status word ("ok", "ok+data", "skipped-data").

    Args:
        spec: a :class:`~ee_bench.tasks.spec.TaskSpec`.
        data_dir: local data folder, or None to skip the rendering checks.
        n_docs: how many leading documents to render.
    """
    from ee_bench.errors import DataNotFoundError, EEBenchError
    from ee_bench.metrics.base import METRICS, direction_warning, metric_options
    from ee_bench.tasks.loaders import DOC_PROCESSORS, OFFLINE_READERS, load_docs
    from ee_bench.tasks.spec import is_lm_eval
    from ee_bench.tasks.templates import render
    from ee_bench.tasks.truncation import truncation_problems

    problems: list[str] = []
    if is_lm_eval(spec):  # built and scored by lm-eval: its metrics and filters
        try:
            from ee_bench.lm_eval.task_build import lm_eval_metric_problems
        except ImportError as exc:
            return [f"this task is built by lm-eval ({'; '.join(spec.lm_eval_reasons)}), which is not installed "
                    f"({exc}); pip install 'ee-bench[lm-eval]'"], "ok"
        return lm_eval_metric_problems(spec), "ok"
    for entry in spec.metric_list:
        name = entry["metric"]
        options = metric_options(entry)
        try:
            cls = METRICS.get(name)
            cls(**options)
        except EEBenchError as exc:
            problems.append(f"metric: {exc}")
            continue
        except (TypeError, ValueError) as exc:
            problems.append(f"metric {name!r} rejects its options {options}: {exc}")
            continue
        if warning := direction_warning(entry, cls):
            WARNINGS.append(f"{spec.source_file}: {warning}")
    if spec.offline and spec.offline.get("format") not in OFFLINE_READERS:
        problems.append(f"offline.format: unknown offline data format {spec.offline.get('format')!r}; "
                        f"available: {', '.join(OFFLINE_READERS.names())}")
    if spec.process_docs and spec.process_docs not in DOC_PROCESSORS:
        problems.append(f"process_docs: unknown document processor {spec.process_docs!r}; "
                        f"available: {', '.join(DOC_PROCESSORS.names())}")
    problems += truncation_problems(spec.truncation)
    if spec.output_type == "multiple_choice" and not spec.doc_to_target:
        problems.append("multiple_choice tasks need 'doc_to_target' giving the gold label index")
    local_files = isinstance((spec.dataset_kwargs or {}).get("data_files"), dict)  # data beside the YAML (demo)
    if problems or not (local_files or (data_dir and spec.offline)):
        return problems, "ok"
    try:
        docs = load_docs(spec, data_dir)
    except DataNotFoundError:
        return problems, "skipped-data"
    except EEBenchError as exc:
        return problems + [f"data: {exc}"], "ok"
    if not docs:
        return problems + [f"data: no documents under {data_dir}"], "ok"
    for i, doc in enumerate(docs[:n_docs]):
        try:
            render(spec.doc_to_text, doc, source=spec.source_file)
            if spec.doc_to_target:
                target = render(spec.doc_to_target, doc, source=spec.source_file)
                if spec.output_type == "multiple_choice":
                    from ee_bench.task_runners.multiple_choice import gold_label

                    gold_label(spec, doc)
                elif not target.strip():
                    problems.append(f"document {i}: doc_to_target renders to an empty reference")
        except EEBenchError as exc:
            problems.append(f"document {i}: {exc}".replace("\n", " "))
        for field in spec.encoder_fields or ():
            if field not in doc:
                problems.append(f"document {i}: encoder field {field!r} missing (fields: {sorted(doc)})")
        if spec.truncation and not isinstance(doc.get(spec.truncation.get("field")), str):
            problems.append(f"document {i}: truncation field {spec.truncation.get('field')!r} is not a text field")
    return problems, "ok+data"


def card_problems() -> dict[str, list[str]]:
    """Problems of every shipped model card, by file path (empty lists for valid cards)."""
    from ee_bench.errors import ConfigError, EEBenchError
    from ee_bench.models.base import MODELS
    from ee_bench.models.cards import list_cards, parse_card
    from ee_bench.tasks.spec import read_yaml

    out: dict[str, list[str]] = {}
    for stem, path in list_cards().items():
        problems: list[str] = []
        try:
            card = parse_card(read_yaml(path), str(path))
        except ConfigError as exc:
            out[str(path)] = exc.problems
            continue
        if card.name != stem:
            problems.append(f"'name' is {card.name!r} but the file is {stem}.yaml")
        try:
            if card.model not in MODELS:
                problems.append(f"wrapper {card.model!r} is not registered (available: {', '.join(MODELS.names())})")
        except EEBenchError as exc:
            problems.append(str(exc))
        out[str(path)] = problems
    return out


def main(argv: list[str] | None = None) -> int:
    from ee_bench.errors import ConfigError, EEBenchError
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.spec import GroupSpec

    p = argparse.ArgumentParser(prog="ee-bench validate", description=help_text(__doc__.split("\n\n")[0]))
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", default=None,
                   help=f"data folder in the official layouts (default ${DATA_DIR_ENV}); enables rendering checks")
    p.add_argument("--include_path", action="append", default=[], help="extra folder of task YAMLs (repeatable)")
    p.add_argument("--n-docs", type=int, default=3, help="leading documents rendered per task (default 3)")
    args = p.parse_args(argv)
    data_dir = args.data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir and not Path(data_dir).is_dir():
        raise EEBenchError(f"--data-dir {data_dir} is not a folder; give the folder holding the official layouts "
                           f"(e.g. ../shared/data) or leave it out to check schemas and metrics only.")

    errors: list[str] = []
    index = TaskIndex([Path(x) for x in args.include_path])
    names = set(index.names())
    counts = {"ok": 0, "ok+data": 0, "skipped-data": 0}
    skipped: list[str] = []
    for name in index.names():
        where = index.origin(name).split(": ", 1)[-1]
        try:
            spec = index.load(name)
        except ConfigError as exc:
            errors += [f"{where}: {pr}" for pr in exc.problems]
            continue
        except EEBenchError as exc:
            errors.append(f"{where}: {exc}")
            continue
        if isinstance(spec, GroupSpec):
            errors += [f"{where}: group {name!r} names unknown task {t!r}" for t in spec.tasks if t not in names]
            continue
        problems, status = task_problems(spec, data_dir, args.n_docs)
        errors += [f"{where}: {pr}" for pr in problems]
        counts[status] += 1
        if status == "skipped-data":
            skipped.append(name)
    cards = card_problems()
    for path, problems in cards.items():
        errors += [f"{path}: {pr}" for pr in problems]

    for w in WARNINGS:
        print(f"warning: {w}")
    WARNINGS.clear()
    n_tasks = sum(counts.values())
    print(f"tasks: {n_tasks} checked ({counts['ok+data']} rendered on local data, "
          f"{counts['skipped-data']} without local data{': ' + ', '.join(skipped) if skipped else ''}); "
          f"model cards: {len(cards)} checked")
    if errors:
        print(f"{len(errors)} error(s):")
        for e in errors:
            print(f"  - {e}")
        return 2
    print("all valid")
    return 0
