"""One registry type, one instance per plug-in kind (models, gates, KV strategies, metrics).

Modelled on lm-eval-harness's ``Registry``: decorator registration, a base-class check, an error on a
duplicate name, lazy ``"module:attr"`` entries for heavy objects, entry-point discovery for third-party
plug-ins, and a "Did you mean …" message on a miss.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from importlib import metadata
from typing import Any, Generic, TypeVar

from ee_bench.errors import EEBenchError, UnknownNameError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def did_you_mean(kind: str, name: str, available: list[str]) -> str:
    """Format the standard miss message: ``Unknown gate 'x'. Did you mean: y? Available: …``."""
    by_lower = {a.lower(): a for a in available}  # case-insensitive: WMT22_DE_EN suggests wmt22_de_en
    close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    listing = ", ".join(sorted(available)) or "(none)"
    return f"Unknown {kind} {name!r}.{hint} Available: {listing}"


class PluginLoadError(EEBenchError):
    """A third-party entry point that could not be imported."""


class Registry(Generic[T]):
    """Name → object registry for one plug-in kind.

    Args:
        kind: human name used in messages ("gate", "metric", …).
        base: objects must be subclasses (or instances) of this type; checked on first use.
        entry_point_group: the ``importlib.metadata`` entry-point group scanned, lazily, for plug-ins.

    Raises:
        UnknownNameError: from :meth:`get` on a miss, with suggestions.
        ValueError: from :meth:`register` on a duplicate name.
        PluginLoadError: when a plug-in's entry point cannot be loaded.
    """

    def __init__(self, kind: str, base: type | None = None, entry_point_group: str | None = None):
        self.kind = kind
        self.base = base
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Any] = {}  # name -> object or "module:attr" string
        self._origin: dict[str, str] = {}  # name -> "built-in" or "plugin <dist> (<ep>)"
        self._plugins_scanned = False
        self._scan_error: PluginLoadError | None = None

    def register(self, name: str, obj: Any = None, *, origin: str = "built-in") -> Any:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def add(target: Any) -> Any:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered ({self._origin[name]}); "
                    f"choose another name"
                )
            self._entries[name] = target
            self._origin[name] = origin
            return target

        if obj is None:
            return add
        return add(obj)

    def _scan_plugins(self) -> None:
        """Add the entry points of ``entry_point_group`` (once; nothing is imported here).

        Raises:
            PluginLoadError: on a name clash with a built-in or another plug-in, on this and every
                later use of the registry (a clash is never resolved silently).
        """
        if self._scan_error is not None:
            raise self._scan_error
        if self._plugins_scanned or self.entry_point_group is None:
            self._plugins_scanned = True
            return
        found: dict[str, tuple[metadata.EntryPoint, str]] = {}
        for ep in metadata.entry_points(group=self.entry_point_group):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            origin = f"plugin {dist} (entry point {ep.name} = {ep.value})"
            if ep.name in self._entries or ep.name in found:
                other = self._origin[ep.name] if ep.name in self._entries else found[ep.name][1]
                self._scan_error = PluginLoadError(
                    f"Plug-in {origin} registers {self.kind} {ep.name!r}, which clashes with the "
                    f"{other} {self.kind} of that name. Rename it in the plug-in's "
                    f"[project.entry-points.\"{self.entry_point_group}\"] table."
                )
                raise self._scan_error
            found[ep.name] = (ep, origin)
        for name, (ep, origin) in found.items():
            self._entries[name] = ep  # resolved on first use
            self._origin[name] = origin
        self._plugins_scanned = True

    def names(self) -> list[str]:
        """Every registered name, built-in and plug-in, sorted."""
        self._scan_plugins()
        return sorted(self._entries)

    def origin(self, name: str) -> str:
        self._scan_plugins()
        return self._origin[name]

    def __contains__(self, name: str) -> bool:
        self._scan_plugins()
        return name in self._entries

    def get(self, name: str) -> T:
        """Resolve ``name`` to its object, importing lazy entries on first use."""
        self._scan_plugins()
        if name not in self._entries:
            raise UnknownNameError(did_you_mean(self.kind, name, list(self._entries)))
        entry = self._entries[name]
        if isinstance(entry, metadata.EntryPoint):
            try:
                entry = entry.load()
            except Exception as exc:  # a broken plug-in must not look like our bug
                raise PluginLoadError(
                    f"Could not load {self.kind} {name!r} from {self._origin[name]}: "
                    f"{type(exc).__name__}: {exc}. Fix or uninstall that plug-in."
                ) from exc
        elif isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module_name), attr)
        self._check(name, entry)
        if isinstance(entry, type) and "registry_name" not in vars(entry):
            try:
                entry.registry_name = name  # lets an instance report the name it was chosen by
            except TypeError:  # built-in / extension types are immutable
                pass
        self._entries[name] = entry
        return entry

    def _check(self, name: str, entry: Any) -> None:
        if self.base is None:
            return
        ok = isinstance(entry, self.base) or (isinstance(entry, type) and issubclass(entry, self.base))
        if not ok:
            raise PluginLoadError(
                f"{self.kind} {name!r} ({self._origin[name]}) is {entry!r}, "
                f"not a {self.base.__name__}"
            )

