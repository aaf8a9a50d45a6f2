"""Task files given to the lm-eval bridge are data too: their Jinja templates run in a sandbox.

lm-eval renders ``doc_to_text`` / ``doc_to_target`` / ``doc_to_choice`` with a plain
``jinja2.Environment`` (``lm_eval.utils.env``), through which a task YAML could run shell commands.
:func:`install` swaps that environment for an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`
with the same settings and filters, and :func:`scan_task_files` refuses, before the model loads, any
YAML under ``--include_path`` whose templates reach for underscore attributes (naming the file).

Note: lm-eval's own ``!function module.name`` YAML tag imports Python from beside the YAML by
design; that is code the user chose to run, not a template, and is left as lm-eval defines it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ee_bench.errors import ConfigError
from ee_bench.tasks.templates import unsafe_names


def install() -> None:
    """Make lm-eval render every template in the sandbox (idempotent)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from lm_eval import utils

    if isinstance(utils.env, ImmutableSandboxedEnvironment):
        return
    env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader, undefined=jinja2.StrictUndefined,
                                        keep_trailing_newline=True)
    env.filters.update({k: v for k, v in utils.env.filters.items() if k not in env.filters})
    utils.env = env


def _strings(node: Any, key: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str) and ("{{" in node or "{%" in node):
        yield key, node


def _load_lenient(path: Path) -> Any:
    """``yaml.safe_load`` that reads lm-eval's custom tags (``!function``) as plain strings."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return None  # lm-eval reports unreadable files itself


def scan_task_files(argv: list[str]) -> int:
    """Check the templates of every YAML under the ``--include_path`` folders of an lm-eval command.

    Returns:
        The number of YAML files scanned.

    Raises:
        ConfigError: naming the first file with a template that reaches for an underscore attribute.
    """
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--include_path", default=None)
    known, _ = p.parse_known_args(argv)
    if not known.include_path:
        return 0
    n = 0
    for folder in known.include_path.split(","):
        root = Path(folder)
        files = [root] if root.is_file() else sorted(root.rglob("*.yaml")) + sorted(root.rglob("*.yml"))
        for path in files:
            n += 1
            for key, text in _strings(_load_lenient(path)):
                try:
                    bad = unsafe_names(text)
                except Exception:  # noqa: BLE001  (syntax errors are lm-eval's to report)
                    continue
                if bad:
                    raise ConfigError(str(path), [
                        f"{key} reaches for {', '.join(sorted(set(bad)))}: unsafe template refused (templates "
                        f"may only read document fields and use Jinja filters); remove it from the task file"])
    return n
