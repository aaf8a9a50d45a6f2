"""Real early exit for encoder classifiers, and its measured speed-up (paper §5, Table 5, Fig. 2).

:func:`early_exit_classify` runs the encoder blocks one at a time. After block ℓ it decodes every
still-running example through the model's own pooler and classifier, asks the exit schedule
(:class:`~ee_bench.exits.decide.ExitSchedule`: the gate, a forced layer, the last block that always
exits), and removes the examples that exit, so the batch shrinks as examples leave.
The gate sees exactly what the offline analysis (:func:`~ee_bench.exits.decide.gate_exit_layers`)
sees, so both give the same exit layers.

:func:`measure_encoder_speedup` times that loop against the model's own full forward on the same batch
(warm-up runs, then the median of repeated ``time.perf_counter`` timings, with
``torch.cuda.synchronize`` on GPU) and reports it next to the *implied* speed-up
``L / mean layers run``, which counts layers only.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ee_bench.exits.decide import ExitSchedule, Point
from ee_bench.exits.gates import Gate
from ee_bench.models.unembed import reduce_logits
from ee_bench.task_runners.classification import doc_texts
from ee_bench.tasks.spec import TaskSpec


@dataclass(frozen=True)
class EarlyExitOutput:
    """Result of one early-exit pass over B examples.

    Attributes:
        logits: (B, C) float32 class logits at each example's exit layer.
        exit_layer: (B,) int64 0-based exit layers.
        n_layers: L.
    """

    logits: Tensor
    exit_layer: Tensor
    n_layers: int

    @property
    def mean_layers_run(self) -> float:
        """Mean number of blocks run per example (layers)."""
        return float((self.exit_layer + 1).to(torch.float64).mean())

    @property
    def implied_speedup(self) -> float:
        """L / mean layers run (layers only: no gate or head cost)."""
        return self.n_layers / self.mean_layers_run


@torch.no_grad()
def early_exit_classify(model, batch, gate: Gate | None, threshold: float | None = None,
                        force_layer: int | None = None) -> EarlyExitOutput:
    """Classify a batch, exiting each example at the first layer where the gate fires.

    Args:
        model: an :class:`~ee_bench.models.hf_encoder.HFEncoderClassifier`.
        batch: an :class:`~ee_bench.models.hf_encoder.EncoderBatch` of B examples.
        gate: the gate (validated ``threshold``), or None together with ``force_layer``.
        threshold: τ for the gate.
        force_layer: exit every example at this 0-based layer instead of asking a gate (for tests
            and for timing a fixed depth).

    Returns:
        :class:`EarlyExitOutput`; with a gate that never fires, the logits are the model's own.

    Raises:
        ValueError: if neither a gate nor ``force_layer`` is given, ``force_layer`` is out of range, or the
            gate reads the final layer (the oracle).
    """
    L = model.n_layers
    if gate is None and force_layer is None:
        raise ValueError("give a gate (with its threshold) or force_layer")
    if gate is not None and getattr(gate, "needs_final", False):
        raise ValueError(f"gate {type(gate).__name__} reads the final layer (an analysis of decoder KV strategies); "
                         f"the encoder's layer-by-layer exit takes a deployable gate, e.g. confidence")
    if force_layer is not None and not 0 <= force_layer < L:
        raise ValueError(f"force_layer must lie in [0, {L - 1}], got {force_layer}")
    if force_layer is not None:  # examples, not tokens: no prefix
        schedule = ExitSchedule(L, None, None, frozenset(), min_prefix=0, force_layer=force_layer)
    else:
        schedule = ExitSchedule(L, gate, threshold, frozenset(range(L - 1)), min_prefix=0)
    B = len(batch)
    out_logits = torch.zeros(B, model.n_labels, dtype=torch.float32, device=model.device)
    exit_layer = torch.full((B,), L - 1, dtype=torch.int64, device=model.device)
    active = torch.arange(B, device=model.device)
    mask = batch.attention_mask
    h = model.embed(batch)  # (B, T, H)
    prev_cls = h[:, 0]
    context = model.layer_context(h, mask)
    obs = None
    for layer in range(L):
        h = model.run_layer(layer, h, context)  # (B', T, H)
        cls = h[:, 0]  # (B', H)
        logits = model.head_logits(cls).float()  # (B', C)
        point = schedule.point(layer, 0)
        if point is Point.CHECK:
            top1, prob, ent = reduce_logits(logits)
            obs = schedule.observe(layer, obs, top1=top1, top1_prob=prob, entropy=ent, hidden=cls.float(),
                                   prev_hidden=prev_cls.float())
            fire = schedule.fires(obs)
        else:
            fire = torch.full((len(active),), point is Point.EXIT, dtype=torch.bool, device=model.device)
        if fire.any():
            out_logits[active[fire]] = logits[fire]
            exit_layer[active[fire]] = layer
        keep = ~fire
        if not keep.any():
            break
        if not keep.all():  # shrink the batch to the examples still running
            h, active, mask = h[keep], active[keep], mask[keep]
            obs = None if obs is None else obs.select(keep)
            cls = cls[keep]
            context = model.layer_context(h, mask)
        prev_cls = cls
    return EarlyExitOutput(out_logits.cpu(), exit_layer.cpu(), L)


@dataclass(frozen=True)
class SpeedupMeasurement:
    """Measured against implied speed-up of early exit on one batch.

    Attributes:
        full_forward_s: median wall time of the model's own full forward (seconds).
        early_exit_s: median wall time of :func:`early_exit_classify` (seconds).
        measured_speedup: full_forward_s / early_exit_s.
        implied_speedup: L / mean layers run.
        mean_layers_run: layers.
        n_layers: L. batch_size: B. repeats / warmup: timed and untimed runs of each.
        device: where it ran.
    """

    full_forward_s: float
    early_exit_s: float
    measured_speedup: float
    implied_speedup: float
    mean_layers_run: float
    n_layers: int
    batch_size: int
    repeats: int
    warmup: int
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def measure_encoder_speedup(model, batch, gate: Gate | None, threshold: float | None = None, *,
                    force_layer: int | None = None, repeats: int = 5, warmup: int = 1) -> SpeedupMeasurement:
    """Time early exit against the model's full forward on the same batch.

    The two are timed alternately (warm-up first), each ``repeats`` times; the medians are compared.

    Raises:
        ValueError: if ``repeats`` < 1 or ``warmup`` < 0.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    inputs = batch.model_inputs()

    def full() -> None:
        with torch.no_grad():
            model.model(**inputs)

    def early() -> EarlyExitOutput:
        return early_exit_classify(model, batch, gate, threshold, force_layer=force_layer)

    result = early()
    for _ in range(warmup):
        full()
        early()
    t_full, t_early = [], []
    for _ in range(repeats):
        t_full.append(_timed(full, model.device))
        t_early.append(_timed(early, model.device))
    f, e = statistics.median(t_full), statistics.median(t_early)
    return SpeedupMeasurement(
        full_forward_s=f, early_exit_s=e, measured_speedup=f / e if e > 0 else float("inf"),
        implied_speedup=result.implied_speedup, mean_layers_run=result.mean_layers_run,
        n_layers=model.n_layers, batch_size=len(batch), repeats=repeats, warmup=warmup, device=str(model.device),
    )


def measure_classification_speedup(model, spec: TaskSpec, docs: list[dict], gate, threshold: float, *,
                                   batch_size: int = 32, repeats: int = 5, warmup: int = 1) -> SpeedupMeasurement:
    """Measured early-exit speed-up of an encoder on the first ``batch_size`` documents of a task.

    Real layer-by-layer early exit (:func:`measure_encoder_speedup`) against the model's full forward on
    the same batch; the result carries the implied speed-up next to it.

    Raises:
        EEBenchError: if the task has no ``encoder_fields``; ValueError if ``docs`` is empty.
    """
    if not docs:
        raise ValueError("no documents to time")
    batch = model.encode([doc_texts(spec, d) for d in docs[:batch_size]])
    return measure_encoder_speedup(model, batch, gate, threshold, repeats=repeats, warmup=warmup)
