"""Writing files safely: sanitised names and atomic writes (temp file + rename). The ground floor.

Every module that writes a results, samples, sidecar, profile or page file goes through
:func:`atomic_write` (or :func:`write_json` / :func:`write_jsonl` / :func:`write_bytes` on top of it), so an
interrupted run never leaves a half-written file, and every file name built from a model or task
name goes through :func:`safe_name`. Imports nothing of ee-bench.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any


def safe_name(name: str) -> str:
    """A file-name-safe form of a model or task name: letters, digits, ``.``, ``_``, ``-`` only, and no
    leading or trailing dot (so ``..`` or ``../x`` can never name a parent folder or a hidden file)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_.") or "model"


def model_dir(output_path: str | Path, model: str) -> Path:
    """``<output_path>/<model>``: the folder of one model's results, samples and side files (name sanitised)."""
    return Path(output_path) / safe_name(model)


def result_paths(output_path: str | Path, model: str, task: str, gate: str) -> tuple[Path, Path]:
    base = model_dir(output_path, model)
    stem = f"{safe_name(task)}_{safe_name(gate)}"
    return base / f"results_{stem}.json", base / f"samples_{stem}.jsonl"


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write ``text`` (str: UTF-8; bytes: as is) to ``path`` via a temp file in the same folder and a
    rename (creates the folder); on any error nothing is left behind and an existing file is unchanged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        binary = isinstance(text, bytes)
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary, shareable files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write one JSON document atomically (``allow_nan=False``: NaN is a bug, not a value)."""
    atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write JSON lines atomically."""
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows))


def write_bytes(path: Path, data: bytes) -> None:
    """Write a binary file (e.g. the layer-statistics sidecar) atomically."""
    atomic_write(path, data)
