"""``ee-bench ls tasks|models|gates|metrics|kv|task-runners``: list what is available, and where it comes from."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tabulate import tabulate

from ee_bench.options import help_text
from ee_bench.registry import Registry

KINDS = ("tasks", "models", "gates", "metrics", "kv", "task-runners")

# The plug-in registries by CLI name, each imported on demand (keeps ``--help`` fast). Only this
# command needs to know them all; no registry module knows the others.
_REGISTRIES: dict[str, tuple[str, str]] = {
    "models": ("ee_bench.models.base", "MODELS"),
    "gates": ("ee_bench.exits.gates", "GATES"),
    "metrics": ("ee_bench.metrics.base", "METRICS"),
    "kv": ("ee_bench.exits.kv", "KV_STRATEGIES"),
    "task-runners": ("ee_bench.task_runners", "TASK_RUNNERS"),
}


def lazy_registries() -> dict[str, Callable[[], Registry]]:
    """The plug-in registries by CLI name, each imported when called."""
    import importlib

    def loader(module: str, attr: str) -> Callable[[], Registry]:
        return lambda: getattr(importlib.import_module(module), attr)

    return {kind: loader(*target) for kind, target in _REGISTRIES.items()}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ee-bench ls", description=help_text(__doc__))
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--include_path", action="append", default=[], help="extra folder of task YAMLs (repeatable)")
    p.add_argument("--lm-eval", "--lm_eval", dest="lm_eval", action="store_true",
                   help="tasks: list lm-eval's tasks (run them with --tasks lm_eval:NAME) and whether ee-bench "
                        "can analyse their output type")
    p.add_argument("--match", default=None, help="with --lm-eval: only names matching this glob (e.g. 'wmt*')")
    args = p.parse_args(argv)
    if args.kind == "tasks" and args.lm_eval:
        from ee_bench.task_resolution import lm_eval_listing

        rows, summary = lm_eval_listing([Path(x) for x in args.include_path], args.match)
        print(tabulate(rows, headers=["name", "kind", "output type", "ee-bench analyses", "from"], tablefmt="simple"))
        print(summary)
        return 0
    if args.kind == "tasks":
        from ee_bench.tasks.index import TaskIndex

        idx = TaskIndex([Path(x) for x in args.include_path])
        rows = [(n, "group" if idx.is_group(n) else "task", idx.origin(n)) for n in idx.names()]
        rows += [("?", "BROKEN", f"{b.origin}: {b.error}") for b in idx.broken_plugins]
        print(tabulate(rows, headers=["name", "kind", "from"], tablefmt="simple"))
        return 0
    if args.kind == "models":
        from ee_bench.models.base import MODELS
        from ee_bench.models.cards import list_cards, parse_card
        from ee_bench.tasks.spec import read_yaml

        rows = []
        for name, path in list_cards().items():
            card = parse_card(read_yaml(path), str(path))
            rows.append((name, "card", card.model, card.pretrained or (card.gguf or {}).get("file", ""), card.description))
        rows += [(n, "wrapper", n, "", MODELS.origin(n)) for n in MODELS.names()]
        print(tabulate(rows, headers=["name", "kind", "wrapper", "checkpoint", "description / origin"], tablefmt="simple"))
        return 0
    from ee_bench.registry import PluginLoadError

    reg = lazy_registries()[args.kind]()
    rows = []
    for n in reg.names():
        try:
            obj = reg.get(n)
        except PluginLoadError as exc:  # one broken plug-in must not hide the others
            rows.append((n, reg.origin(n), f"BROKEN: {exc}"))
            continue
        doc = (obj.__doc__ or "").strip().splitlines()[0] if getattr(obj, "__doc__", None) else ""
        rows.append((n, reg.origin(n), doc))
    print(tabulate(rows, headers=["name", "from", "description"], tablefmt="simple"))
    return 0
