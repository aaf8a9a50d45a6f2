"""The evaluation layer: one task, one model, one gate → a typed :class:`TaskResult`.

In the spirit of lm-eval's ``evaluate(lm, task_dict)``: :func:`evaluate_task` executes; the CLI
(``ee_bench/commands/evaluate.py``) only resolves options, loads, calls it and prints, and
:mod:`ee_bench.results` turns the result into the results JSON and the samples JSONL.

The work is split into three stages, each usable on its own (the extension points):

1. :func:`run_documents` — documents → per-document :class:`~ee_bench.types.DocRecord` rows, by the
   task runner registered for (model kind, output type) (:data:`~ee_bench.task_runners.TASK_RUNNERS`),
   sharded across processes. A document-level cache or another runner plugs in here: anything that
   yields the same records.
2. :func:`score_records` — records → oracle exits, the gate sweep (:mod:`ee_bench.exits.decide`) and
   the task's metrics. Interval estimates over documents plug in here (the records are kept in the result).
3. the measured stage — real early exit for generation tasks
   (:func:`~ee_bench.decoding.early_exit_stage.run_early_exit_stage`, with ``--kv``), or the
   layer-by-layer encoder exit, timed.

Data flow: tasks → documents → prompts → model (per-layer statistics) → exits → metrics → results.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ee_bench.distributed import DistContext
from ee_bench.errors import EEBenchError
from ee_bench.types import DocRecord

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ee_bench.decoding.early_exit_stage import EarlyExitOptions
    from ee_bench.exits.summary import ExitReport
    from ee_bench.tasks.spec import TaskSpec


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate a task (everything but the model, the task and the gate).

    Attributes:
        limit: evaluate only the first N documents (None: all).
        batch_size: documents per forward pass.
        progress: show a progress bar (on the main process).
        early_exit: :class:`~ee_bench.decoding.early_exit_stage.EarlyExitOptions` for real early-exit
            decoding on generation tasks (``--kv``), or None.
        output_dir: where side files (calibration sweeps) go, the model's results folder; None
            writes nothing.
        dist: the process group (single process by default).
        seed: seeds the bootstrap intervals over documents (:mod:`ee_bench.uncertainty`).
    """

    limit: int | None = None
    batch_size: int = 1
    progress: bool = True
    early_exit: EarlyExitOptions | None = None
    output_dir: Path | None = None
    dist: DistContext = field(default_factory=DistContext)
    seed: int = 1234
    record_cache: Any = None  # a ee_bench.resume.RecordCache (document-level resume), single process only


@dataclass(frozen=True)
class Scores:
    """Stage 2's output: exits and metrics of a set of records.

    Attributes:
        exits: :class:`~ee_bench.exits.summary.ExitReport` (oracle, gate sweep, per-document layers).
        metrics: metric name → value (None where undefined).
        metric_details: metric name → direction, unit, aggregation and the metric's own details.
        target_lang: the language the metrics were computed for (None if not a translation task).
        intervals: the bootstrap intervals over documents of every oracle, gate and metric figure
            (:func:`ee_bench.uncertainty.task_intervals`), or None when not computed.
        by_layer: the task's metrics at every exit layer, with intervals (issue 24,
            :mod:`ee_bench.layer_metrics`), for classification and multiple-choice runs; else None.
    """

    exits: ExitReport
    metrics: dict[str, float | None]
    metric_details: dict[str, Any]
    target_lang: str | None
    intervals: dict[str, Any] | None = None
    by_layer: dict[str, Any] | None = None


@dataclass(frozen=True)
class TaskResult:
    """Everything one evaluation of one task produced; :mod:`ee_bench.results` writes it.

    Attributes:
        spec: the task (:class:`~ee_bench.tasks.spec.TaskSpec`).
        model_info: the model's :meth:`describe`.
        gate: the gate's registered name. threshold: the chosen τ. threshold_swept: whether the
            gate's grid was swept (no ``--threshold``).
        records: the evaluated documents, sorted by doc_id.
        scores: :class:`Scores`.
        measured_speedup: the measured stage's report (KV strategy → report, or
            ``{"layerwise": …}`` for an encoder), or None.
        early_exit_samples: per record, the samples row's ``early_exit`` field (with ``--kv``), or None.
        n_docs_total: documents in the task's split.
        world_size: processes that ran the documents.
        timings: ``run_s``, ``analysis_and_metrics_s`` (bootstrap intervals included),
            ``early_exit_and_speedup_s`` (seconds).
    """

    spec: TaskSpec
    model_info: dict[str, Any]
    gate: str
    threshold: float
    threshold_swept: bool
    records: tuple[DocRecord, ...]
    scores: Scores
    measured_speedup: dict[str, Any] | None
    early_exit_samples: tuple[dict[str, Any], ...] | None
    n_docs_total: int
    world_size: int
    timings: dict[str, float]

    @property
    def n_output_tokens(self) -> int:
        """Output tokens over all evaluated documents."""
        return sum(r.stats.n_tokens for r in self.records)


def gate_thresholds(gate, threshold: float | None, n_layers: int | None = None) -> tuple[list[float], float]:
    """The thresholds to sweep and the one reported.

    Without ``threshold``: the gate's documented grid (plus its default, the one reported); with
    ``n_layers`` (once the model is loaded), grid points the model cannot take are dropped (e.g. a
    patience longer than L−1).

    Args:
        gate: the gate. threshold: ``--threshold`` or None. n_layers: L, or None before loading.

    Returns:
        (validated thresholds in sweep order, the chosen τ).

    Raises:
        ThresholdError: if ``threshold`` (or, for a plug-in gate, its default) is out of range.
    """
    if threshold is not None:
        chosen = gate.check_threshold(threshold, n_layers)
        return [chosen], chosen
    chosen = gate.check_threshold(gate.default_threshold)
    thresholds = [gate.check_threshold(t) for t in gate.grid]
    if chosen not in thresholds:
        thresholds.append(chosen)
    if n_layers is None:
        return thresholds, chosen
    fits = []
    for t in thresholds:
        try:
            fits.append(gate.check_threshold(t, n_layers))
        except EEBenchError:
            continue
    return fits, chosen


def metric_inputs(records: list[DocRecord], docs: list[dict[str, Any]], target_lang: str | None):
    """The :class:`~ee_bench.metrics.base.MetricInputs` of a run: predictions and references from the
    records, sources from the docs (when every doc has a string ``src``)."""
    from ee_bench.metrics.base import MetricInputs

    sources = [d.get("src") for d in docs]
    return MetricInputs(
        predictions=[r.prediction for r in records],
        references=[r.references for r in records],
        sources=sources if all(isinstance(s, str) for s in sources) else None,
        target_lang=target_lang,
    )


def score_metrics(spec, records: list[DocRecord], docs: list[dict[str, Any]],
                  target_lang: str | None) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Compute the task's ``metric_list`` on the records (sources from the docs).

    Returns:
        (metric name → value or None, metric name → direction/unit/aggregation and the metric's details).
    """
    from ee_bench.metrics.base import METRICS, direction_warning, metric_options

    inputs = metric_inputs(records, docs, target_lang)
    values, details = {}, {}
    for entry in spec.metric_list:
        cls = METRICS.get(entry["metric"])
        res = cls(**metric_options(entry)).compute(inputs)  # aggregation/higher_is_better are not options
        values[entry["metric"]] = res.value
        details[entry["metric"]] = {**cls.describe(), **res.details}
        if warning := direction_warning(entry, cls):  # issue 16: a task file's contradicting higher_is_better
            logger.warning("%s: %s", spec.task, warning)
            details[entry["metric"]]["task_file_note"] = warning
    return values, details


def run_documents(model, spec, docs: list[dict[str, Any]], *, keep_hidden: bool, options: EvalOptions) -> list[DocRecord] | None:
    """Stage 1: run the task's registered runner over ``docs`` (this process's shard of them).

    Args:
        model: a wrapper (its ``kind`` picks the runner). spec: the task. docs: the documents to
            evaluate (doc_id = index in this list). keep_hidden: keep hidden states (gate needs them).

    Returns:
        Every process's records, sorted by doc_id, on the main process; None on the others.

    Raises:
        EEBenchError: if no runner is registered for (model kind, output type).
    """
    from tqdm import tqdm

    from ee_bench.task_runners import get_runner

    dist = options.dist
    runner = get_runner(model.kind, spec.output_type)
    mine = dist.shard(len(docs))
    with tqdm(total=len(mine), desc=f"{spec.task}", disable=not (options.progress and dist.is_main),
              file=sys.stderr) as bar:
        if options.record_cache is not None and dist.world_size == 1:  # sec: document-level resume
            from ee_bench.resume import run_cached

            records = run_cached(runner, model, spec, [docs[i] for i in mine], mine, options.record_cache,
                                 batch_size=options.batch_size, keep_hidden=keep_hidden, progress=bar)
        else:
            records = runner(model, spec, [docs[i] for i in mine], mine, batch_size=options.batch_size,
                             keep_hidden=keep_hidden, progress=bar)
    records = dist.gather(records)
    return None if records is None else sorted(records, key=lambda r: r.doc_id)


def score_records(spec, records: list[DocRecord], docs: list[dict[str, Any]], gate, thresholds: list[float],
                  chosen: float, seed: int | None = None) -> Scores:
    """Stage 2: oracle exit layers, the gate at every threshold, the task's metrics, and (with a ``seed``)
    their bootstrap intervals over documents.

    Args:
        spec: the task. records: evaluated records (sorted). docs: the evaluated documents.
        gate: the gate; thresholds: the validated sweep; chosen: the τ whose per-token exit layers
            go to the samples file (in ``thresholds``).
        seed: seeds :func:`ee_bench.uncertainty.task_intervals` and the metrics by exit layer
            (:func:`ee_bench.layer_metrics.records_metrics_by_layer`); None skips both.

    Raises:
        ValueError: if the records hold no output token at all.
    """
    from ee_bench.exits.summary import summarise_exits
    from ee_bench.tasks.loaders import target_language

    exits = summarise_exits(records, gate, thresholds, chosen)
    lang = target_language(spec, docs)
    metrics, details = score_metrics(spec, records, docs, lang)
    intervals = None
    if seed is not None:
        from ee_bench.uncertainty import task_intervals

        intervals = task_intervals(records, gate, thresholds, chosen, spec.metric_list,
                                   metric_inputs(records, docs, lang), metrics, seed=seed)
    from ee_bench.layer_metrics import records_metrics_by_layer  # issue 24: accuracy by exit layer

    by_layer = None if seed is None else records_metrics_by_layer(records, spec.output_type, spec.metric_list, seed)
    return Scores(exits, metrics, details, lang, intervals, by_layer)


def _measured_stage(model, spec, all_docs, docs, records, gate, chosen, scores: Scores, options: EvalOptions):
    """Stage 3: (measured_speedup, per-record early_exit fields or None)."""
    if options.early_exit is not None and spec.output_type == "generate_until":
        from ee_bench.decoding.early_exit_stage import run_early_exit_stage

        stage = run_early_exit_stage(model, spec, all_docs, records, gate, chosen, options.early_exit,
                                     target_lang=scores.target_lang, batch_size=options.batch_size,
                                     out_dir=options.output_dir, progress=options.progress and options.dist.is_main)
        return stage.measured_speedup, stage.samples
    if model.kind == "encoder" and not getattr(gate, "needs_final", False):  # real layer-by-layer exit, timed
        # (not for the oracle gate: it reads the final layer, so there is no exit to time)
        from ee_bench.decoding.encoder_exit import measure_classification_speedup

        timing = measure_classification_speedup(model, spec, docs, gate, chosen, batch_size=min(32, len(docs)))
        return {"layerwise": timing.to_dict()}, None
    return None, None


def evaluate_task(model, spec, docs: list[dict[str, Any]], gate, thresholds: list[float], chosen: float,
                  options: EvalOptions | None = None, *, threshold_swept: bool = True) -> TaskResult | None:
    """Evaluate one task with one model and one gate.

    Args:
        model: a loaded wrapper following :mod:`ee_bench.models.contracts` (``kind`` picks the runner).
        spec: the task. docs: every document of its test split (the first ``options.limit`` are
            evaluated; calibration may draw from the rest).
        gate: a gate instance; thresholds: the validated sweep; chosen: the τ reported (in ``thresholds``).
        options: :class:`EvalOptions`. threshold_swept: recorded in the result (no ``--threshold``).

    Returns:
        :class:`TaskResult` on the main process; None on the other processes of a distributed run.

    Raises:
        EEBenchError: for a model/task pair no runner serves, or the errors of the stages.
        ValueError: if the task has no document or the run produced no output token.
    """
    from ee_bench.exits.gates import gate_name

    options = options or EvalOptions()
    if not docs:
        raise ValueError(f"task {spec.task} has no documents")
    evaluated = docs[: options.limit] if options.limit else docs
    t_run = time.perf_counter()
    records = run_documents(model, spec, evaluated, keep_hidden=gate.needs_hidden, options=options)
    run_s = time.perf_counter() - t_run
    if records is None:
        return None
    t_an = time.perf_counter()
    scores = score_records(spec, records, evaluated, gate, thresholds, chosen, seed=options.seed)
    analysis_s = time.perf_counter() - t_an
    t_ee = time.perf_counter()
    measured, ee_samples = _measured_stage(model, spec, docs, evaluated, records, gate, chosen, scores, options)
    early_exit_s = time.perf_counter() - t_ee
    return TaskResult(
        spec=spec, model_info=model.describe(), gate=gate_name(gate), threshold=chosen,
        threshold_swept=threshold_swept, records=tuple(records), scores=scores, measured_speedup=measured,
        early_exit_samples=ee_samples, n_docs_total=len(docs), world_size=options.dist.world_size,
        timings={"run_s": run_s, "analysis_and_metrics_s": analysis_s, "early_exit_and_speedup_s": early_exit_s},
    )
