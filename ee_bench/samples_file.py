"""A run's samples JSONL, found and read without torch (the leaderboard, its site and the report's
degeneracy check read it; ``rescore`` and ``report`` read results files through :func:`read_results`;
:mod:`ee_bench.records` reads the per-layer sidecar into tensors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.preflight import path_inside


def samples_path(result: dict[str, Any], results_path: Path) -> Path | None:
    """The samples JSONL of a run: its results file's ``samples_file``, resolved next to the results.

    Returns:
        The path, or None when the entry is absent, not a string, names no file, or leads out of the
        results folder (``..``, an absolute path, a symlink out): results files may come from anyone,
        and the leaderboard site copies what they name.
    """
    entry = result.get("samples_file")
    if not entry or not isinstance(entry, str):
        return None
    path = path_inside(Path(results_path).parent, entry)
    return path if path is not None and path.is_file() else None


def read_results(path: Path) -> dict[str, Any]:
    """One results JSON, parsed (``rescore`` and ``report`` read results files through this).

    Raises:
        EEBenchError: if the file cannot be read, is not UTF-8 JSON, or is not a JSON object.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError and UnicodeDecodeError
        raise EEBenchError(f"{path} is not a readable results file ({type(exc).__name__}: {str(exc)[:120]}); "
                           f"delete or regenerate it.") from None
    if not isinstance(data, dict):
        raise EEBenchError(f"{path} is not a results file (a JSON {type(data).__name__}, not an object); "
                           f"delete or regenerate it.")
    return data


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The rows of a samples JSONL.

    Raises:
        EEBenchError: if the file is missing or a line is not JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise EEBenchError(f"samples file {path} does not exist; results and samples must stay in the same folder.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EEBenchError(f"samples file {path} is not valid UTF-8 (byte {exc.start}); the file is damaged. Rerun the "
                           f"evaluation that wrote it.") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise EEBenchError(f"{path}, line {n}: not JSON ({exc.msg}); the file is damaged.") from None
    return rows
