"""Wall-clock accounting for the decoding loop: named sections timed with ``time.perf_counter``.

On CUDA each section boundary calls ``torch.cuda.synchronize`` so kernel time lands in the section
that launched it (this adds a little time to every section; both decoding modes pay it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

SECTIONS = ("layers", "gate", "emit", "kv")


@dataclass(frozen=True)
class TimeSplit:
    """Where the wall time of one decoding call went, in seconds.

    Attributes:
        layers_s: decoder blocks (prompt pass and generated tokens, catch-up slots included).
        gate_s: gate checks: the head projections (final norm + LM head) and softmax statistics the
            gate reads, and the gate rule itself.
        emit_s: the head projection that produces each emitted token (the full model pays it too).
        kv_s: KV-strategy work done outside the blocks (copy / recompute fills, bookkeeping).
        other_s: everything else (embedding, masks, stop checks, Python overhead).
        total_s: wall time of the call.
    """

    layers_s: float
    gate_s: float
    emit_s: float
    kv_s: float
    other_s: float
    total_s: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @staticmethod
    def sum(parts: list[TimeSplit]) -> TimeSplit:
        """Field-wise sum (several batches of one run)."""
        return TimeSplit(*(sum(getattr(p, f) for p in parts) for f in TimeSplit.__dataclass_fields__))


class SectionTimer:
    """Accumulates seconds per section.

    Args:
        device: the model's device; CUDA devices are synchronised at every boundary.
    """

    def __init__(self, device: torch.device):
        self.sync = device.type == "cuda"
        self.totals = {name: 0.0 for name in SECTIONS}
        self._start = self._now()

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time the body under ``name`` (one of :data:`SECTIONS`)."""
        t0 = self._now()
        try:
            yield
        finally:
            self.totals[name] += self._now() - t0

    def split(self) -> TimeSplit:
        """The split from construction until now."""
        total = self._now() - self._start
        t = self.totals
        other = max(0.0, total - sum(t.values()))
        return TimeSplit(t["layers"], t["gate"], t["emit"], t["kv"], other, total)
