"""Checks run before the model loads, so bad input fails in seconds and nothing is half-written.

The ground floor: it imports nothing of ee-bench but its errors.

- :func:`check_output_folder`: ``--output_path`` can be created and written (probed with a temporary
  folder that is removed at once), not ``/proc/x`` or a path under a regular file;
- :func:`check_output_file`: an ``--output FILE`` is not a folder and its folder can be written;
- :func:`check_fresh_folder`: an output folder is absent, empty, or an earlier output of the same command;
- :func:`path_inside`: a path named by a task or results file stays inside its folder;
- :func:`add_threads_argument` / :func:`check_threads`: ``--threads N`` (torch's CPU threads), one option
  for every command that runs a model on a CPU (``cost``, ``fit-gate``, ``trace``); it is applied by
  :func:`ee_bench.devices.apply_threads`, which needs torch;
- (a task's templates on its first document: :func:`ee_bench.task_runners.check_first_document`;
  the device: :func:`ee_bench.devices.check_device`, which needs torch).

Each raises :class:`~ee_bench.errors.EEBenchError` with a message naming the problem and the fix.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from ee_bench.errors import EEBenchError

THREADS_HELP = "torch CPU threads (default: torch's; 1 gives the steadiest timings on a shared CPU)"


def add_threads_argument(p) -> None:
    """Add ``--threads N`` to an ``argparse.ArgumentParser`` (default None: torch's own thread count)."""
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)


def check_threads(threads: int | None) -> None:
    """Refuse ``--threads`` below 1 before anything loads.

    Raises:
        EEBenchError: naming the value and the fix.
    """
    if threads is not None and threads < 1:
        raise EEBenchError(f"--threads must be a whole number >= 1, got {threads}. Omit it for torch's default.")


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
        # a folder that exists but answers "no such file" to a new entry is a virtual file system (/proc, /sys)
        why = ("it exists, but nothing can be created in it (a virtual file system such as /proc or /sys)"
               if exc.errno == errno.ENOENT else exc.strerror or str(exc))
        raise EEBenchError(f"{option} {path} cannot be written ({probe}: {why}). Give a folder "
                           f"you can write to, e.g. runs/.") from None


def check_output_file(path: str | os.PathLike, option: str = "--output") -> None:
    """Refuse an output file that is a folder or whose folder cannot be created or written; writes nothing.

    Raises:
        EEBenchError: naming ``option``, the path and the fix.
    """
    target = Path(path)
    if target.is_dir():
        raise EEBenchError(f"{option} {target} is a folder; give the file to write, e.g. {target / 'report.md'}.")
    parent = target.parent if str(target.parent) else Path(".")
    check_output_folder(parent, option=f"{option} {target}: its folder")


def check_fresh_folder(path: str | os.PathLike, option: str, marker: str, overwrite_flag: str) -> None:
    """Refuse a non-empty output folder that is not an earlier output of the same command.

    Args:
        path: the output folder. option: its option name, for the message.
        marker: a file the command writes into every folder it fills (e.g. ``ee_bench_finetune.json``);
            a folder holding it is an earlier output and may be replaced.
        overwrite_flag: the option that allows writing into any folder (named in the message).

    Raises:
        EEBenchError: the folder holds other files and no ``marker``.
    """
    folder = Path(path)
    if not folder.is_dir() or (folder / marker).is_file():
        return
    entries = sorted(p.name for p in folder.iterdir())
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise EEBenchError(f"{option} {folder} is not empty ({shown}) and is not an earlier ee-bench output (no "
                           f"{marker}); writing there would mix new files in with these. Give a new or empty folder, "
                           f"or pass {overwrite_flag} to write into it anyway.")
