"""The runs of a results folder, as the report reads them: results JSON, samples rows and, when the
run logged it, the per-layer sidecar (:mod:`ee_bench.records`)."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.preflight import path_inside
from ee_bench.records import LayerStatsFile, read_layer_stats
from ee_bench.report.degenerate import Degeneracy, degeneracy
from ee_bench.samples_file import read_results, read_samples, samples_path
from ee_bench.tasks.index import TaskIndex
from ee_bench.tasks.loaders import target_language
from ee_bench.tasks.spec import TaskSpec

logger = logging.getLogger(__name__)
_PAIR = re.compile(r"_([a-z]{2,3})_([a-z]{2,3})$")


@dataclass(frozen=True)
class Run:
    """One evaluated (model, task, gate) run.

    Attributes:
        path: its results JSON. rel: that path relative to the report's results folder (posix).
        result: the parsed results. rows: its samples rows (None if the file is missing).
        side: its per-layer sidecar (None if the run predates it or the file is missing).
        target_lang: the output language (ISO code) or None when unknown.
        degeneracy: constancy of the final predictions (None without samples).
        missing: what the report could not find, in words.
        label: a short unique name for tables and legends.
    """

    path: Path
    rel: str
    result: dict[str, Any]
    rows: list[dict[str, Any]] | None
    side: LayerStatsFile | None
    target_lang: str | None
    degeneracy: Degeneracy | None
    missing: list[str] = field(default_factory=list)
    label: str = ""

    @property
    def task(self) -> str:
        return self.result["task"]

    @property
    def model(self) -> str:
        return self.result["model"]

    @property
    def is_generation(self) -> bool:
        return self.result.get("task_info", {}).get("output_type") == "generate_until"

    @property
    def n_layers(self) -> int:
        return int(self.result["oracle"]["first_match"]["n_layers"])

    @property
    def degenerate(self) -> bool:
        return bool(self.degeneracy and self.degeneracy.degenerate)

    def first_match_layers(self) -> list[list[int]]:
        """Per document, the first-match oracle layer of each output token (from the samples)."""
        return [list(r.get("oracle_first_match", [])) for r in self.rows or []]


@functools.lru_cache(maxsize=None)
def task_language(task: str) -> str | None:
    """The output language the task itself declares (:func:`~ee_bench.tasks.loaders.target_language` of
    its spec: ``metadata.language`` or the language pair), or None when this ee-bench does not know the
    task (a plug-in's, or a renamed one) or it declares none."""
    try:
        spec = TaskIndex().load(task)
    except EEBenchError:
        return None
    return target_language(spec, []) if isinstance(spec, TaskSpec) else None


def output_language(result: dict[str, Any], overrides: dict[str, str]) -> str | None:
    """The run's output language: the results' ``task_info.target_lang``, else ``--lang TASK=CODE``, else
    the task's own (:func:`task_language`), else the target of a ``…_<src>_<tgt>`` task name (e.g.
    ``wmt22_de_en`` → ``en``), else None.

    Raises:
        EEBenchError: if ``--lang`` names another language than the one the results recorded.
    """
    task = result["task"]
    lang = (result.get("task_info") or {}).get("target_lang")
    if lang and task in overrides and overrides[task] != lang:
        raise EEBenchError(f"--lang {task}={overrides[task]} contradicts the output language {lang!r} that the "
                           f"results of {task} recorded; drop --lang {task}=… (it is for tasks whose results "
                           f"record no language).")
    if not lang and task in overrides:
        return overrides[task]
    lang = lang or task_language(task)
    if lang:
        return lang
    m = _PAIR.search(task)
    return m.group(2) if m else None


def _complete(result: dict[str, Any]) -> bool:
    """Whether a results file has the entries (and types) every report section reads."""
    try:
        return (isinstance(result["task"], str) and isinstance(result["model"], str)
                and isinstance(result["metrics"], dict) and isinstance(result["threshold"], (int, float))
                and int(result["n_docs"]["evaluated"]) >= 0 and int(result["oracle"]["first_match"]["n_layers"]) > 0)
    except (KeyError, TypeError, ValueError):
        return False


def load_runs(folder: Path, lang_overrides: dict[str, str] | None = None) -> list[Run]:
    """Every ee-bench results file under ``folder``, sorted by task, model, gate, threshold and path.

    Raises:
        EEBenchError: if the folder does not exist or holds no results.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EEBenchError(f"results folder {folder} does not exist. Give the --output_path folder of an evaluation.")
    runs, skipped = [], []
    for path in sorted(folder.rglob("results_*.json")):
        try:
            result = read_results(path)
        except EEBenchError as exc:
            skipped.append(str(exc))
            continue
        if not str(result.get("schema", "")).startswith("ee-bench/results/"):
            continue
        if not _complete(result):
            skipped.append(f"{path} lacks entries the report reads (task, model, n_docs, oracle, metrics, threshold); "
                           f"delete or regenerate it.")
            continue
        missing, rows, side = [], None, None
        sam = samples_path(result, path)
        try:
            rows = None if sam is None else read_samples(sam)
        except EEBenchError as exc:
            missing.append(f"samples file ({exc})")
        if sam is None:
            missing.append("samples file")
        block = result.get("layer_stats")
        side_file = path_inside(path.parent, block["file"]) if isinstance(block, dict) and isinstance(
            block.get("file"), str) else None
        if side_file is not None and side_file.is_file():
            try:
                side = read_layer_stats(side_file)
            except EEBenchError as exc:
                missing.append(f"per-layer sidecar ({exc})")
        else:
            missing.append("per-layer sidecar (.npz; written by runs from this version on)")
        deg = degeneracy([r.get("prediction") for r in rows]) if rows is not None else None
        runs.append(Run(path, path.relative_to(folder).as_posix(), result, rows, side,
                        output_language(result, lang_overrides or {}), deg, missing))
    if runs:
        for s in skipped:
            logger.warning("skipping %s", s)
    elif skipped:
        raise EEBenchError(f"every results file under {folder} was skipped; nothing was written:\n"
                           + "\n".join(f"  - {s}" for s in skipped))
    else:
        raise EEBenchError(f"no results_*.json under {folder}. Give the --output_path folder of an evaluation.")
    runs.sort(key=lambda r: (r.task, r.model, r.result.get("gate", ""), float(r.result.get("threshold", 0)), r.rel))
    return _label(runs)


def _label(runs: list[Run]) -> list[Run]:
    base = [f"{r.model} ({r.result['n_docs']['evaluated']} docs)" for r in runs]
    seen: dict[tuple[str, str], int] = {}
    for r, b in zip(runs, base):
        seen[(r.task, b)] = seen.get((r.task, b), 0) + 1
    out = []
    for r, b in zip(runs, base):
        label = b if seen[(r.task, b)] == 1 else f"{b}, {Path(r.rel).parent.as_posix()}"
        out.append(Run(r.path, r.rel, r.result, r.rows, r.side, r.target_lang, r.degeneracy, r.missing, label))
    return out
