"""Results JSON and samples JSONL, written atomically (temp file + rename), with provenance.

Layout under ``--output_path DIR``::

    DIR/<model>/results_<task>_<gate>.json    one run: metrics, oracle, gate sweep, config, provenance
    DIR/<model>/samples_<task>_<gate>.jsonl   one row per document
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_SCHEMA = "ee-bench/results/v1"
TRACKED_PACKAGES = ("ee-bench", "torch", "transformers", "accelerate", "datasets", "sacrebleu", "rouge-score",
                    "scikit-learn", "gguf", "numpy")


def safe_name(name: str) -> str:
    """A file-name-safe form of a model or task name: letters, digits, ``.``, ``_``, ``-`` only, and no
    leading or trailing dot (so ``..`` or ``../x`` can never name a parent folder or a hidden file)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_.") or "model"


def result_paths(output_path: str | Path, model: str, task: str, gate: str) -> tuple[Path, Path]:
    base = Path(output_path) / safe_name(model)
    stem = f"{safe_name(task)}_{safe_name(gate)}"
    return base / f"results_{stem}.json", base / f"samples_{stem}.jsonl"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
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
    _atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write JSON lines atomically."""
    _atomic_write(path, "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows))


def git_sha() -> str | None:
    """The commit of the ee-bench checkout in use (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
