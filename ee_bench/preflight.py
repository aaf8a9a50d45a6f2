"""Checks run before the model loads, so bad input fails in seconds and nothing is half-written.

The ground floor: it imports nothing of ee-bench but its errors.

- :func:`check_output_folder`: ``--output_path`` can be created and written (probed with a temporary
  folder that is removed at once), not ``/proc/x`` or a path under a regular file;
- (a task's templates on its first document: :func:`ee_bench.task_runners.check_first_document`);
- :func:`path_inside`: a path named by a task or results file stays inside its folder;
- (the device: :func:`ee_bench.devices.check_device`, which needs torch).

Each raises :class:`~ee_bench.errors.EEBenchError` with a message naming the problem and the fix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ee_bench.errors import EEBenchError


def path_inside(base: str | os.PathLike, entry: str | os.PathLike) -> Path | None:
    """``base / entry`` resolved (symlinks and ``..`` followed; an absolute ``entry`` replaces ``base``),
    or None when it lies outside ``base``. Task files and results files come from strangers: every path
    they name is followed through this one check (offline data, samples files, figures).
    """
    root = Path(base).resolve()
    real = (root / entry).resolve()
    return real if real.is_relative_to(root) else None


def check_output_folder(path: str | os.PathLike, option: str = "--output_path") -> None:
    """Refuse an output folder that cannot be created or written; writes nothing.

    The nearest existing ancestor of ``path`` must be a folder in which a folder can be created
    (a temporary one is made and removed at once).

    Raises:
        EEBenchError: ``path`` is a file, lies under a file, or cannot be written.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise EEBenchError(f"{option} {path} is a file, not a folder. Give a folder (it is created if missing).")
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise EEBenchError(f"{option} {path} lies under {probe}, which is a file, not a folder. Give a folder "
                           f"path whose parents are folders.")
    try:
        tmp = tempfile.mkdtemp(prefix=".ee-bench-probe-", dir=probe)
        os.rmdir(tmp)
    except OSError as exc:
        raise EEBenchError(f"{option} {path} cannot be written ({probe}: {exc.strerror or exc}). Give a folder "
                           f"you can write to, e.g. runs/.") from None
