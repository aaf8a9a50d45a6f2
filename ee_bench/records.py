"""Per-layer records of a run: the layer-statistics sidecar beside the samples JSONL.

The samples JSONL keeps one small row per document; the per-layer statistics of every output token
(the :class:`~ee_bench.types.LayerStats` the oracle and the gates were computed from, paper §3.2 and
§4) go to one binary file per task, beside it::

    DIR/<model>/samples_<task>_<gate>.jsonl   one row per document; row["layer_stats"] = {file, offset, length}
    DIR/<model>/samples_<task>_<gate>.npz     the statistics of every output token of the run

The ``.npz`` (NumPy's zip of arrays, read with :func:`numpy.load`) holds, for N output tokens over D
documents and L layers:

======================  ==========  ==================================================================
array                   shape       meaning
======================  ==========  ==================================================================
``top1``                (L, N)      int64 argmax token id at each exit (0-based layers)
``top1_prob``           (L, N)      float32 its softmax probability, in [0, 1] (the confidence)
``entropy``             (L, N)      float32 entropy of the softmax, nats
``doc_ids``             (D,)        int64 document index in the task's test split
``offsets``             (D + 1,)    int64; document i owns columns ``offsets[i]:offsets[i+1]``
======================  ==========  ==================================================================

These are exactly the values the run analysed (float32, not rounded), so ``ee-bench rescore``
reproduces the results JSON bit for bit. Nothing of size L × N × vocabulary is ever stored. A gate
that reads hidden states (``needs_hidden``) cannot be rescored from these records; the results say so.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ee_bench.errors import EEBenchError
from ee_bench.files import write_bytes
from ee_bench.samples_file import read_samples
from ee_bench.types import DocRecord, LayerStats

SIDECAR_SCHEMA = "ee-bench/layer-stats/v1"
FIELDS = ("top1", "top1_prob", "entropy")


def sidecar_path(samples_path: Path) -> Path:
    """``…/samples_<task>_<gate>.jsonl`` → ``…/samples_<task>_<gate>.npz``."""
    return Path(samples_path).with_suffix(".npz")


def write_layer_stats(samples_path: Path, records: list[DocRecord], rows: list[dict[str, Any]],
                      gate: Any = None) -> dict[str, Any]:
    """Write the sidecar of a run atomically and point each samples row at its slice.

    Args:
        samples_path: the samples JSONL the rows will be written to (the sidecar goes beside it).
        records: the run's documents, in samples order; each has (L, N_doc) stats.
        rows: the samples rows, one per record; each gains ``"layer_stats": {"file", "offset",
            "length"}`` (columns ``offset:offset+length`` of the sidecar arrays).
        gate: the run's gate; a gate with ``needs_hidden`` is recorded as not rescorable.

    Returns:
        The block for the results JSON: ``{"file", "schema", "fields", "n_layers", "n_tokens",
        "n_docs", "rescorable", "note"}``.

    Raises:
        ValueError: if ``rows`` and ``records`` differ in length or the records differ in layer count.
    """
    if len(rows) != len(records):
        raise ValueError(f"{len(rows)} samples rows for {len(records)} records")
    path = sidecar_path(samples_path)
    stats = LayerStats.cat([r.stats for r in records]) if records else None
    lengths = [r.stats.n_tokens for r in records]
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    arrays = {
        "top1": _np(stats.top1, np.int64) if stats else np.zeros((0, 0), np.int64),
        "top1_prob": _np(stats.top1_prob, np.float32) if stats else np.zeros((0, 0), np.float32),
        "entropy": _np(stats.entropy, np.float32) if stats else np.zeros((0, 0), np.float32),
        "doc_ids": np.asarray([r.doc_id for r in records], dtype=np.int64),
        "offsets": offsets,
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())
    for row, start, n in zip(rows, offsets[:-1].tolist(), lengths):
        row["layer_stats"] = {"file": path.name, "offset": int(start), "length": int(n)}
    needs_hidden = bool(getattr(gate, "needs_hidden", False))
    return {
        "file": path.name, "schema": SIDECAR_SCHEMA, "fields": list(FIELDS),
        "n_layers": stats.n_layers if stats else 0, "n_tokens": int(offsets[-1]), "n_docs": len(records),
        "rescorable": not needs_hidden,
        "note": ("the gate reads hidden states, which are not logged: it cannot be rescored from these records"
                 if needs_hidden else "oracle and every head-statistics gate can be rescored (ee-bench rescore)"),
    }


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
        t = t.to(torch.float32)  # exact widening
    return t.detach().cpu().numpy().astype(dtype, copy=False)


@dataclass(frozen=True)
class LayerStatsFile:
    """The contents of one sidecar.

    Attributes:
        stats: (L, N) statistics of every output token of the run.
        doc_ids: (D,) document indices. offsets: (D + 1,) column offsets per document.
        path: where it was read from.
    """

    stats: LayerStats
    doc_ids: list[int]
    offsets: list[int]
    path: Path

    def doc(self, i: int) -> LayerStats:
        """(L, N_i) statistics of the i-th document (in file order)."""
        return self.stats.select(slice(self.offsets[i], self.offsets[i + 1]))


def read_layer_stats(path: Path) -> LayerStatsFile:
    """Read a sidecar written by :func:`write_layer_stats`.

    Raises:
        EEBenchError: if the file is missing or lacks an array or has inconsistent shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise EEBenchError(f"layer-statistics file {path} does not exist. Rerun the evaluation with this ee-bench "
                           f"(it writes samples_<task>_<gate>.npz beside the samples JSONL), or keep the file with its results.")
    try:  # never allow_pickle: a sidecar may come from anyone, and a pickle runs code
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):  # a bare .npy array, not the .npz archive this module writes
                raise ValueError("a single array, not an .npz archive")
            missing = [k for k in (*FIELDS, "doc_ids", "offsets") if k not in z.files]
            if missing:
                raise EEBenchError(f"{path} is not an ee-bench layer-statistics file (missing {', '.join(missing)}).")
            top1, prob, ent = (torch.from_numpy(np.array(z[k], copy=True)) for k in FIELDS)
            doc_ids, offsets = z["doc_ids"].tolist(), z["offsets"].tolist()
    except EEBenchError:
        raise
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        why = ("it holds pickled objects, which ee-bench never loads" if "pickle" in str(exc)
               else f"{type(exc).__name__}")  # numpy's own advice (load it unsafely) must not reach a user
        raise EEBenchError(f"layer-statistics file {path} is damaged or not an ee-bench .npz ({why}); rerun the "
                           f"evaluation that wrote it, or delete it with its results file.") from None
    if len(offsets) != len(doc_ids) + 1 or (offsets and offsets[-1] != top1.shape[1]):
        raise EEBenchError(f"{path}: offsets do not match the {top1.shape[1]} token columns; the file is damaged.")
    try:
        stats = LayerStats(top1, prob, ent)
    except ValueError as exc:
        raise EEBenchError(f"{path}: {exc}; the file is damaged.") from None
    return LayerStatsFile(stats, doc_ids, offsets, path)


def records_from_files(results_path: Path, result: dict[str, Any]) -> list[DocRecord]:
    """Rebuild the run's :class:`DocRecord` list from its samples JSONL and sidecar (no model).

    Only the fields the oracle/gate analysis reads are real (doc id, texts, ids, stats); hidden
    states are not logged.

    Raises:
        EEBenchError: if the results have no sidecar, or samples and sidecar disagree.
    """
    folder = Path(results_path).parent
    block = result.get("layer_stats")
    if not block:
        raise EEBenchError(
            f"{results_path} has no per-layer records (no \"layer_stats\" entry): it was written by an older ee-bench. "
            f"Rerun the evaluation to get samples_<task>_<gate>.npz, then rescore.")
    side = read_layer_stats(folder / block["file"])
    rows = read_samples(folder / result.get("samples_file", Path(block["file"]).with_suffix(".jsonl").name))
    if [r["doc_id"] for r in rows] != side.doc_ids:
        raise EEBenchError(f"{side.path} and its samples file list different documents; keep the files of one run together.")
    out = []
    for i, row in enumerate(rows):
        ref = row.get("layer_stats", {})
        if ref and (ref["offset"], ref["length"]) != (side.offsets[i], side.offsets[i + 1] - side.offsets[i]):
            raise EEBenchError(f"document {row['doc_id']}: its samples row points at other columns than {side.path} holds.")
        out.append(DocRecord(doc_id=row["doc_id"], prompt=row.get("prompt", ""),
                             prompt_token_ids=row.get("prompt_token_ids", []), output_text=row.get("output_text", ""),
                             output_token_ids=row.get("output_token_ids", []), prediction=row.get("prediction"),
                             references=row.get("references", []), stats=side.doc(i)))
    return out
