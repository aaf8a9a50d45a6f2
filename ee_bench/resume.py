"""Document-level resume and the output lock.

**Record cache.** While a task runs, each finished document's :class:`~ee_bench.types.DocRecord` is
appended to ``<output_path>/<model>/.records/<task>_<gate>_<key>.bin`` and fsync'd. The key is a
sha256 of everything that determines a record (:func:`cache_key`): the model (card, model_args with
revision, the wrapper's description), the task spec hash, the gate and its thresholds, the early-exit
options (KV strategies...), the seed, the batch size and the ee-bench version; a change to any of them
starts a new cache. A rerun of the same command reads the records back, runs only the missing
documents, and says so on stderr (``resumed N of M documents``); ``--no-resume`` ignores and
replaces the cache. The cache is deleted once the task's results are written.

File format: a sequence of frames ``<8-byte big-endian payload length><32-byte sha256 of the
payload><payload>``, the payload being ``torch.save`` of the record as plain types and tensors
(lossless: tensors keep their dtype and bits). A frame cut short by a kill (torn length, hash or
payload) or failing its hash is dropped, and the file is truncated to the last whole frame before
new records are appended. Frames are read with ``torch.load(weights_only=True)``, so a cache file
cannot run code.

Records computed in chunks of ``batch_size`` documents are the records of one uninterrupted run at
``batch_size`` 1 bit for bit; at larger batch sizes a resumed run's batches hold different
neighbours, which the runners' padding makes equal only up to float rounding.

**Output lock.** :class:`OutputLock` holds ``<output_path>/.ee-bench.lock`` (the pid and host) for
the whole run: a second run on the same output folder refuses with a message naming the first run's
pid; a lock left by a process that no longer exists (kill -9) is stale and taken over.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from ee_bench import __version__
from ee_bench.errors import EEBenchError
from ee_bench.files import safe_name
from ee_bench.types import DocRecord, LayerStats

logger = logging.getLogger(__name__)

_HEADER = 8 + 32


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of ``parts`` (keys sorted; non-JSON values via ``repr``)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=repr).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _to_plain(record) -> dict[str, Any]:
    s = record.stats
    return {"doc_id": record.doc_id, "prompt": record.prompt, "prompt_token_ids": list(record.prompt_token_ids),
            "output_text": record.output_text, "output_token_ids": list(record.output_token_ids),
            "prediction": record.prediction, "references": list(record.references),
            "top1": s.top1, "top1_prob": s.top1_prob, "entropy": s.entropy,
            "hidden": record.hidden, "embeddings": record.embeddings, "extra": record.extra}


def _from_plain(d: dict[str, Any]):
    return DocRecord(doc_id=d["doc_id"], prompt=d["prompt"], prompt_token_ids=d["prompt_token_ids"],
                     output_text=d["output_text"], output_token_ids=d["output_token_ids"], prediction=d["prediction"],
                     references=d["references"], stats=LayerStats(d["top1"], d["top1_prob"], d["entropy"]),
                     hidden=d["hidden"], embeddings=d["embeddings"], extra=d["extra"])


class RecordCache:
    """Append-only, fsync'd store of one task's finished document records (see the module docstring).

    Args:
        path: the cache file. key: its :func:`cache_key` (stored in the first frame and checked).
        fresh: ignore and replace an existing file (``--no-resume``).
    """

    def __init__(self, path: Path, key: str, *, fresh: bool = False):
        self.path, self.key, self.fresh = Path(path), key, fresh

    def load(self) -> dict[int, Any]:
        """Records already in the cache, by doc_id; drops a torn or corrupt tail (truncating the file).

        Returns:
            {doc_id: DocRecord}; empty when the file is absent, belongs to another key, or ``fresh``.
        """
        import torch

        if self.fresh or not self.path.exists():
            self._start()
            return {}
        data = self.path.read_bytes()
        out, pos, first = {}, 0, True
        while pos + _HEADER <= len(data):
            n = int.from_bytes(data[pos:pos + 8], "big")
            digest, payload = data[pos + 8:pos + _HEADER], data[pos + _HEADER:pos + _HEADER + n]
            if len(payload) < n or hashlib.sha256(payload).digest() != digest:
                break
            try:
                obj = torch.load(io.BytesIO(payload), weights_only=True)
            except Exception:  # noqa: BLE001  (an unreadable frame ends the usable part)
                break
            if first:
                if obj != {"key": self.key}:
                    logger.warning("record cache %s belongs to another configuration; starting afresh", self.path)
                    self._start()
                    return {}
                first = False
            else:
                out[obj["doc_id"]] = _from_plain(obj)
            pos += _HEADER + n
        if first:  # not even the key frame survived
            self._start()
            return {}
        if pos < len(data):
            logger.warning("record cache %s: dropped a torn record at byte %d of %d", self.path, pos, len(data))
            with self.path.open("r+b") as fh:
                fh.truncate(pos)
                fh.flush()
                os.fsync(fh.fileno())
        return out

    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("wb") as fh:
            fh.write(self._frame({"key": self.key}))
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _frame(obj: Any) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        payload = buf.getvalue()
        return len(payload).to_bytes(8, "big") + hashlib.sha256(payload).digest() + payload

    def append(self, records: list) -> None:
        """Append records (one frame each) and fsync before returning."""
        blob = b"".join(self._frame(_to_plain(r)) for r in records)
        with self.path.open("ab") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self) -> None:
        """Delete the cache (the task's results are written); removes an emptied ``.records`` folder."""
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass


def run_cached(runner, model, spec, docs: list[dict[str, Any]], doc_ids: list[int], cache: RecordCache, *,
               batch_size: int, keep_hidden: bool, progress=None) -> list:
    """Run ``runner`` over the documents the cache lacks, ``batch_size`` at a time, appending each
    chunk's records to the cache as soon as it is done.

    Args:
        runner: a task runner (``runner(model, spec, docs, doc_ids, batch_size=, keep_hidden=, progress=)``).
        docs, doc_ids: the documents of this process and their ids in the task.
        cache: the task's :class:`RecordCache`.

    Returns:
        The records of every document in ``doc_ids`` (cached ones read back, the rest computed).
    """
    done = cache.load()
    have = {i: done[i] for i in doc_ids if i in done}
    todo = [(d, i) for d, i in zip(docs, doc_ids) if i not in have]
    if have:
        print(f"ee-bench: {spec.task}: resumed {len(have)} of {len(doc_ids)} documents from {cache.path}; "
              f"computing the other {len(todo)}", file=sys.stderr)
    if progress is not None and have:
        progress.update(len(have))
    computed = []
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        recs = runner(model, spec, [d for d, _ in chunk], [i for _, i in chunk], batch_size=batch_size,
                      keep_hidden=keep_hidden, progress=progress)
        cache.append(recs)
        computed += recs
    return sorted([*have.values(), *computed], key=lambda r: r.doc_id)


def task_cache(output_path: str | os.PathLike, model_name: str, spec, gate: str, parts: dict[str, Any],
               *, fresh: bool) -> RecordCache:
    """The record cache of one task under ``output_path`` (see the module docstring for the layout)."""
    key = cache_key({**parts, "task_spec_hash": spec.spec_hash, "gate": gate, "ee_bench_version": __version__})
    folder = Path(output_path) / safe_name(model_name) / ".records"
    return RecordCache(folder / f"{safe_name(spec.task)}_{safe_name(gate)}_{key[:16]}.bin", key, fresh=fresh)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """``<output_path>/.ee-bench.lock`` held for a run (context manager); see the module docstring.

    Raises:
        EEBenchError: on enter, when a live process on this host holds the lock.
    """

    NAME = ".ee-bench.lock"

    def __init__(self, output_path: str | os.PathLike):
        self.folder = Path(output_path)
        self.path = self.folder / self.NAME
        self._created_folder = False
        self._held = False

    def __enter__(self) -> OutputLock:
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            self._created_folder = True
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:  # stale: its process is gone
                    logger.warning("removing the stale lock %s left by a run that no longer exists", self.path)
                    self.path.unlink(missing_ok=True)
                    continue
                self._cleanup_folder()
                raise EEBenchError(
                    f"Another ee-bench run (pid {holder[0]} on {holder[1]}) is writing to {self.folder} "
                    f"(lock file {self.path}). Wait for it to finish, or give this run another --output_path. "
                    f"If no such run exists, delete the lock file.") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self._held = True
            return self
        raise EEBenchError(f"Could not take the lock {self.path}; delete it if no ee-bench run is using {self.folder}.")

    def _holder(self) -> tuple[int, str] | None:
        try:
            pid_s, host = self.path.read_text(encoding="utf-8").split()
            pid = int(pid_s)
        except (OSError, ValueError):
            return None  # unreadable or half-written: treated as stale
        if host == socket.gethostname() and not _alive(pid):
            return None
        return pid, host

    def _cleanup_folder(self) -> None:
        if self._created_folder:
            try:
                self.folder.rmdir()  # only when the run wrote nothing else
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False
        self._cleanup_folder()
