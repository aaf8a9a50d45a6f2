"""User-facing errors.

Every error a user can cause (an unknown name, a malformed YAML, a bad threshold, a missing data
folder) is an :class:`EEBenchError`. The CLI prints its message as one paragraph, without a
traceback, and exits with code 2.
"""

from __future__ import annotations


class EEBenchError(Exception):
    """An error caused by the user's input; the message names the problem and the fix."""


class ConfigError(EEBenchError):
    """A configuration (task YAML, model card, CLI option) with one or more problems.

    Args:
        source: what was being read (a file path or an option name).
        problems: every problem found; all are reported together.
    """

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid configuration in {source}:\n{lines}")


class UnknownNameError(EEBenchError):
    """A name (task, model, gate, metric, KV strategy) that no registry knows."""


class DataNotFoundError(EEBenchError):
    """A task's data is neither on the hub/registry nor in a local data folder."""


class ModelStructureError(EEBenchError):
    """A model whose layers, final norm or output head cannot be located."""


class DecodingOptionError(EEBenchError):
    """An early-exit option (exit layers, min prefix, forced layer, token budget, draft length) out of range."""
