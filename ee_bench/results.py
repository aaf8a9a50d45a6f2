"""Results JSON and samples JSONL, written atomically (temp file + rename), with provenance.

Layout under ``--output_path DIR``::

    DIR/<model>/results_<task>_<gate>.json    one run: metrics, oracle, gate sweep, config, provenance
    DIR/<model>/samples_<task>_<gate>.jsonl   one row per document

This module owns the result schema (:data:`RESULTS_SCHEMA`): :func:`result_dict` and
:func:`sample_rows` turn an :class:`~ee_bench.evaluation.TaskResult` into the two files, and
:func:`write_task_result` writes them (:func:`ee_bench.files.atomic_write`). It sits above the
evaluation layer (it reads :class:`~ee_bench.evaluation.TaskResult`); the file writing itself is the
ground floor's :mod:`ee_bench.files`.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ee_bench.evaluation import TaskResult
from ee_bench.files import result_paths, write_json, write_jsonl
from ee_bench.records import write_layer_stats

RESULTS_SCHEMA = "ee-bench/results/v1"
TRACKED_PACKAGES = ("ee-bench", "torch", "transformers", "accelerate", "datasets", "sacrebleu", "rouge-score",
                    "scikit-learn", "gguf", "numpy")


TRAINING_RECORD = "ee_bench_finetune.json"  # written by `ee-bench finetune` next to the checkpoint
TRAINING_KEYS = ("command", "config", "n_examples", "global_steps", "train_loss", "train_runtime_s", "world_size")


def training_provenance(pretrained: str | None) -> dict[str, Any] | None:
    """How a checkpoint folder was trained, for a results file's provenance (None for anything else).

    Args:
        pretrained: the card's ``pretrained`` (a hub id, or the folder ``ee-bench finetune`` wrote).

    Returns:
        The training command, settings, steps, loss and ``train_runtime_s`` (seconds) of the folder's
        ``ee_bench_finetune.json``; None when there is no such file or it is not JSON.
    """
    if not pretrained or not (Path(pretrained) / TRAINING_RECORD).is_file():
        return None
    try:
        rec = json.loads((Path(pretrained) / TRAINING_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {k: rec[k] for k in TRAINING_KEYS if k in rec} if isinstance(rec, dict) else None


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


def sample_rows(result: TaskResult) -> list[dict[str, Any]]:
    """One samples-JSONL row per evaluated document: prompt and output (text and ids), prediction,
    references, per-token oracle and gate exit layers, the runner's ``extra`` fields and, with ``--kv``,
    the ``early_exit`` traces. Per-layer statistics go to the sidecar (:mod:`ee_bench.records`)."""
    rows = []
    for i, (r, layers) in enumerate(zip(result.records, result.scores.exits.per_doc)):
        row = {
            "doc_id": r.doc_id, "prompt": r.prompt, "prompt_token_ids": r.prompt_token_ids,
            "output_text": r.output_text, "output_token_ids": r.output_token_ids,
            "prediction": r.prediction, "references": r.references, **layers,
        }
        if r.extra:
            row["extra"] = r.extra
        if result.early_exit_samples is not None:
            row.update(result.early_exit_samples[i])
        rows.append(row)
    return rows


def result_dict(result: TaskResult, *, model: str, config: dict[str, Any], provenance: dict[str, Any],
                model_load_s: float | None) -> dict[str, Any]:
    """The results JSON of one task (schema :data:`RESULTS_SCHEMA`).

    Args:
        result: the evaluation's :class:`~ee_bench.evaluation.TaskResult`.
        model: the model (card) name. config: the resolved options. provenance: command, git sha,
            seed, package versions (a ``date`` is added). model_load_s: seconds spent loading the model.
    """
    spec, timings, n_tokens = result.spec, result.timings, result.n_output_tokens
    run_s = timings["run_s"]
    return {
        "schema": RESULTS_SCHEMA,
        "model": model, "task": spec.task, "gate": result.gate,
        "threshold": result.threshold, "threshold_swept": result.threshold_swept,
        "metrics": result.scores.metrics, "metric_details": result.scores.metric_details,
        **result.scores.exits.to_dict(),
        "intervals": result.scores.intervals,
        "metrics_by_layer": result.scores.by_layer,  # issue 24: the task's metrics at every exit layer
        "measured_speedup": result.measured_speedup,
        "n_docs": {"total": result.n_docs_total, "evaluated": len(result.records)},
        "n_output_tokens": n_tokens,
        "model_info": result.model_info,
        "task_info": {"version": spec.version, "spec_hash": spec.spec_hash, "source_file": spec.source_file,
                      "output_type": spec.output_type, "until": list(spec.until), "max_gen_toks": spec.max_gen_toks,
                      "target_lang": result.scores.target_lang,
                      "max_gen_toks_source": spec.max_gen_toks_source,  # issue 16
                      **(spec.task_info() if hasattr(spec, "task_info") else {})},  # issue 16: lm-eval-built tasks
        "config": config,
        "provenance": {**provenance, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "world_size": result.world_size,
        "timings": {"model_load_s": model_load_s, "run_s": run_s,
                    "analysis_and_metrics_s": timings["analysis_and_metrics_s"],
                    "early_exit_and_speedup_s": timings["early_exit_and_speedup_s"],
                    "output_tokens_per_s": n_tokens / run_s if run_s > 0 else None},
    }


def write_task_result(output_path: str | Path, result: dict[str, Any], samples: list[dict[str, Any]],
                      records=None, gate=None) -> Path:
    """Write the per-layer sidecar (with ``records``), the samples JSONL, then the results JSON (naming
    the samples file), each atomically.

    Args:
        records: the run's DocRecords (samples order); their (L, N) statistics go to
            ``samples_<task>_<gate>.npz`` and each row and the results point at them
            (:func:`ee_bench.records.write_layer_stats`). gate: the gate (hidden-state gates are
            recorded as not rescorable).

    Returns:
        The results file's path (``<output_path>/<model>/results_<task>_<gate>.json``).
    """
    res_path, sam_path = result_paths(output_path, result["model"], result["task"], result["gate"])
    if records is not None:  # per-layer sidecar (issue 13)
        result["layer_stats"] = write_layer_stats(sam_path, list(records), samples, gate)
    write_jsonl(sam_path, samples)
    result["samples_file"] = sam_path.name
    write_json(res_path, result)
    return res_path
