"""Where task YAML files are found: the shipped ``tasks/`` folder, ``--include_path`` folders and
plug-ins (entry-point group ``ee_bench.tasks``). A later source wins over an earlier one, as with
lm-eval's ``--include_path``; :meth:`TaskIndex.origin` tells where each task came from.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ee_bench.errors import ConfigError, EEBenchError
from ee_bench.registry import did_you_mean
from ee_bench.errors import UnknownNameError
from ee_bench.tasks.spec import GroupSpec, TaskSpec, load_task_file, read_yaml

logger = logging.getLogger(__name__)


def builtin_task_dir() -> Path:
    """The shipped ``tasks/`` folder: inside the wheel (``ee_bench/_tasks``) or at the repo root."""
    packaged = Path(__file__).resolve().parent.parent / "_tasks"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "tasks"


def plugin_task_dirs() -> list[tuple[Path, str]]:
    """Folders contributed by plug-ins (entry-point group ``ee_bench.tasks`` → a package name).

    Raises:
        EEBenchError: naming the distribution and entry point of a plug-in that cannot be imported.
    """
    out = []
    for ep in metadata.entry_points(group="ee_bench.tasks"):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        try:
            module = importlib.import_module(ep.value.split(":")[0])
        except Exception as exc:
            raise EEBenchError(
                f"Could not load task plug-in {dist} (entry point {ep.name} = {ep.value}): "
                f"{type(exc).__name__}: {exc}. Fix or uninstall that plug-in."
            ) from exc
        out.append((Path(module.__file__).resolve().parent, f"plugin {dist}"))
    return out


def _names_in(path: Path) -> tuple[str | None, bool]:
    """(name, is_group) declared by a file, without full validation."""
    data = read_yaml(path)
    if "group" in data:
        return (data["group"] if isinstance(data["group"], str) else None), True
    return (data["task"] if isinstance(data.get("task"), str) else None), False


@dataclass
class TaskIndex:
    """Name → YAML file for every known task and group.

    Files whose name starts with ``_`` are include-only and are not indexed.
    """

    include_paths: list[Path] = field(default_factory=list)
    with_plugins: bool = True

    def __post_init__(self) -> None:
        self._files: dict[str, Path] = {}
        self._origin: dict[str, str] = {}
        self._groups: set[str] = set()
        sources = [(builtin_task_dir(), "built-in")]
        if self.with_plugins:
            sources += plugin_task_dirs()
        for inc in self.include_paths:
            if not Path(inc).is_dir():
                raise EEBenchError(f"--include_path {inc} is not a folder. Give a folder of task YAML files.")
            sources.append((Path(inc).resolve(), f"include_path {inc}"))
        for root, origin in sources:
            for path in sorted(root.rglob("*.yaml")):
                if path.name.startswith("_"):
                    continue
                try:
                    name, is_group = _names_in(path)
                except ConfigError:
                    name, is_group = path.stem, False  # reported when loaded or validated
                if name is None:
                    name = path.stem
                self._files[name] = path
                self._origin[name] = f"{origin}: {path}"
                (self._groups.add if is_group else self._groups.discard)(name)

    def names(self) -> list[str]:
        return sorted(self._files)

    def files(self) -> list[Path]:
        return [self._files[n] for n in self.names()]

    def origin(self, name: str) -> str:
        return self._origin[name]

    def is_group(self, name: str) -> bool:
        return name in self._groups

    def load(self, name: str) -> TaskSpec | GroupSpec:
        """Load one task or group by name.

        Raises:
            UnknownNameError: with suggestions, if no file declares ``name``.
            ConfigError: if the file is invalid.
        """
        if name not in self._files:
            raise UnknownNameError(did_you_mean("task", name, self.names()) +
                                   ". Add task folders with --include_path DIR.")
        return load_task_file(self._files[name])

    def expand(self, names: list[str]) -> list[TaskSpec]:
        """Resolve task and group names (recursively, in order, without duplicates) to task specs."""
        out: list[TaskSpec] = []
        seen: set[str] = set()

        def visit(name: str, stack: tuple[str, ...]) -> None:
            if name in stack:
                raise EEBenchError(f"group cycle: {' -> '.join((*stack, name))}")
            spec = self.load(name)
            if isinstance(spec, GroupSpec):
                for member in spec.tasks:
                    visit(member, (*stack, name))
            elif spec.task not in seen:
                seen.add(spec.task)
                out.append(spec)

        for n in names:
            visit(n, ())
        return out
