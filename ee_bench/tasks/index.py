"""Where task YAML files are found: the shipped ``tasks/`` folder, ``--include_path`` folders and
plug-ins (entry-point group ``ee_bench.tasks``). An ``--include_path`` folder wins over earlier
sources (and a later one over an earlier one), as with lm-eval's ``--include_path``; a plug-in task
whose name is already taken by a built-in or another plug-in is an error (:class:`PluginLoadError`),
never a silent override. :meth:`TaskIndex.origin` tells where each task came from.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ee_bench.errors import ConfigError, EEBenchError, UnknownNameError
from ee_bench.registry import PluginLoadError, did_you_mean
from ee_bench.tasks.spec import GroupSpec, TaskSpec, load_task_file, read_yaml

logger = logging.getLogger(__name__)


def builtin_task_dir() -> Path:
    """The shipped ``tasks/`` folder: inside the wheel (``ee_bench/_tasks``) or at the repo root."""
    packaged = Path(__file__).resolve().parent.parent / "_tasks"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "tasks"


@dataclass(frozen=True)
class TaskPluginSource:
    """One ``ee_bench.tasks`` entry point: the folder it names, or why it could not be imported.

    Attributes:
        dist: the distribution that declares it. entry_point: ``name = value`` as declared.
        folder: the package folder whose ``*.yaml`` files are indexed, or None if broken.
        error: ``ExceptionType: message`` of the failed import, or None.
    """

    dist: str
    entry_point: str
    folder: Path | None
    error: str | None = None

    @property
    def origin(self) -> str:
        return f"plugin {self.dist} (entry point {self.entry_point})"


def plugin_task_sources() -> list[TaskPluginSource]:
    """Every ``ee_bench.tasks`` entry point (its value names a package of YAML files).

    A plug-in whose package cannot be imported is returned with its error instead of raising, so one
    broken plug-in does not stop other tasks from running; :meth:`TaskIndex.load` names it when a
    task is not found.
    """
    out = []
    for ep in metadata.entry_points(group="ee_bench.tasks"):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        declared = f"{ep.name} = {ep.value}"
        try:
            module = importlib.import_module(ep.value.split(":")[0])
            folder = Path(module.__file__).resolve().parent
        except Exception as exc:  # a broken plug-in must not look like our bug
            out.append(TaskPluginSource(dist, declared, None, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(TaskPluginSource(dist, declared, folder))
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
        self.broken_plugins: list[TaskPluginSource] = []
        self.unreadable: list[Path] = []  # YAML files whose task name could not be read
        sources = [(builtin_task_dir(), "built-in")]
        if self.with_plugins:
            for src in plugin_task_sources():
                if src.folder is None:
                    logger.warning("task %s could not be imported (%s); its tasks are unavailable", src.origin, src.error)
                    self.broken_plugins.append(src)
                else:
                    sources.append((src.folder, src.origin))
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
                    self.unreadable.append(path)
                if name is None:
                    name = path.stem
                if origin.startswith("plugin ") and name in self._files and not self._origin[name].startswith("include_path"):
                    raise PluginLoadError(
                        f"Task {name!r} of {origin} ({path}) clashes with the {self._origin[name]} task of "
                        f"that name. Rename the task in the plug-in (its 'task:' or 'group:' key)."
                    )
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
                                   ". Add task folders with --include_path DIR." + self.miss_notes())
        return load_task_file(self._files[name])

    def miss_notes(self) -> str:
        """What may explain a missing task: plug-ins that failed to import and task files that failed
        to parse (empty when there are none)."""
        broken = "".join(f" Task {b.origin} could not be imported ({b.error}); fix or uninstall it."
                         for b in self.broken_plugins)
        return broken + "".join(f" {p} could not be parsed, so the tasks it defines are unknown "
                                f"(see `ee-bench validate --include_path {p.parent}`)." for p in self.unreadable)

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
