"""Exit statistics of an ``ee-hf`` run inside lm-eval: what is logged and written to the side file.

One :class:`ExitStatsRecorder` per ``ee-hf`` model instance counts, separately for the
log-likelihood requests (``loglikelihood`` and ``loglikelihood_rolling``) and the ``generate_until``
requests:

- ``n_tokens``: scored continuation tokens / generated tokens (kept after stop-string truncation);
- ``mean_exit_layer``: mean 0-based exit layer e over those tokens (L−1 = full depth);
- ``mean_layers_run``: mean(e + 1), layers; ``implied_speedup`` = L / mean_layers_run (layers only,
  no gate or head cost: *implied*, never *measured*);
- ``exit_layer_histogram``: tokens per exit layer 0 … L−1;
- generation only, when measured: ``full_wall_s`` and ``ee_wall_s`` (seconds, ``time.perf_counter``,
  the same batches decoded at full depth and with early exit by the same block loop) and
  ``measured_speedup`` = full_wall_s / ee_wall_s (same requests; > 1 is faster); ``full_tokens`` and
  ``ee_tokens`` (generated before stop-string truncation) and ``per_token_speedup`` =
  (ee_tokens / ee_wall_s) / (full_tokens / full_wall_s), since early exit can change the output
  length; ``full_depth_same_output`` = share of requests whose early-exit output equals the full-depth
  output. Log-likelihood scoring runs every block (it is
  teacher-forced), so its ``measured_speedup`` is null with the reason.

Every recorder created in the process is kept in :data:`RECORDERS` (small: counts only), so
``ee-bench lm-eval`` can write them next to lm-eval's results after lm-eval's own CLI returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA = "ee-bench/lm-eval-exit-stats/v1"
LOGLIK_NOT_MEASURED = ("log-likelihood scoring is teacher-forced and runs every block to score each "
                       "continuation token, so it saves no time; see generate_until for the measured speed-up")


@dataclass
class _Tally:
    """Running counts for one request kind (mutable, internal)."""

    n_layers: int
    n_requests: int = 0
    histogram: list[int] = field(default_factory=list)
    full_wall_s: float = 0.0
    ee_wall_s: float = 0.0
    full_tokens: int = 0
    ee_tokens: int = 0
    same_output: int = 0

    def __post_init__(self) -> None:
        self.histogram = [0] * self.n_layers

    def add(self, exit_layers: list[int]) -> None:
        for e in exit_layers:
            self.histogram[int(e)] += 1

    def to_dict(self, measured: bool, reason: str | None) -> dict[str, Any]:
        n = sum(self.histogram)
        mean_exit = sum(i * c for i, c in enumerate(self.histogram)) / n if n else None
        layers_run = None if mean_exit is None else mean_exit + 1
        out: dict[str, Any] = {
            "n_requests": self.n_requests,
            "n_tokens": n,
            "mean_exit_layer": mean_exit,
            "mean_layers_run": layers_run,
            "implied_speedup": None if layers_run is None else self.n_layers / layers_run,
            "exit_layer_histogram": list(self.histogram),
        }
        if measured and self.ee_wall_s > 0:
            out.update({
                "full_wall_s": self.full_wall_s, "ee_wall_s": self.ee_wall_s,
                "full_tokens": self.full_tokens, "ee_tokens": self.ee_tokens,
                "measured_speedup": self.full_wall_s / self.ee_wall_s,
                "per_token_speedup": ((self.ee_tokens / self.ee_wall_s) / (self.full_tokens / self.full_wall_s)
                                      if self.full_tokens and self.full_wall_s > 0 else None),
                "full_depth_same_output": self.same_output / self.n_requests if self.n_requests else None,
            })
        else:
            out.update({"measured_speedup": None, "measured_speedup_reason": reason})
        return out


class ExitStatsRecorder:
    """Exit statistics of one ``ee-hf`` instance (see the module docstring for every field).

    Args:
        config: the early-exit setting recorded with the numbers (model, gate, threshold, kv, …).
        n_layers: L.
        measure_speedup: whether generate_until decodes each batch at full depth too.
        path: optional JSON file rewritten (atomically) after every request batch.
    """

    def __init__(self, config: dict[str, Any], n_layers: int, measure_speedup: bool, path: str | Path | None = None):
        self.config = dict(config)
        self.n_layers = n_layers
        self.measure_speedup = measure_speedup
        self.path = Path(path) if path else None
        self.loglikelihood = _Tally(n_layers)
        self.generate_until = _Tally(n_layers)
        RECORDERS.append(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            **self.config,
            "n_layers": self.n_layers,
            "loglikelihood": self.loglikelihood.to_dict(False, LOGLIK_NOT_MEASURED),
            "generate_until": self.generate_until.to_dict(
                self.measure_speedup, None if self.measure_speedup else "measure_speedup=false"),
        }

    def summary(self) -> str:
        """One line per request kind that saw tokens, for the log and the terminal."""
        d = self.to_dict()
        lines = []
        for kind in ("loglikelihood", "generate_until"):
            s = d[kind]
            if not s["n_tokens"]:
                continue
            measured = "n/a" if s["measured_speedup"] is None else f"x{s['measured_speedup']:.2f}"
            lines.append(
                f"ee-hf {kind}: {s['n_requests']} requests, {s['n_tokens']} tokens, mean exit layer "
                f"{s['mean_exit_layer']:.2f} of 0..{self.n_layers - 1} ({s['mean_layers_run']:.2f} layers run), "
                f"implied speed-up x{s['implied_speedup']:.2f}, measured speed-up {measured} "
                f"[gate {self.config.get('gate')} τ={self.config.get('threshold')}"
                + (f" W{self.config['threshold_warmup']:g}" if kind == "generate_until" and self.config.get("threshold_warmup")
                   else "") + f", kv {self.config.get('kv')}]"
            )
        return "\n".join(lines)

    def flush(self) -> None:
        """Log the summary and, if a path was given, rewrite the JSON file."""
        text = self.summary()
        if text:
            logger.info("%s", text)
        if self.path is not None:
            from ee_bench.files import write_json

            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, self.to_dict())


RECORDERS: list[ExitStatsRecorder] = []


def last_exit_stats() -> dict[str, Any] | None:
    """The statistics of the most recently created ``ee-hf`` model in this process, or None."""
    return RECORDERS[-1].to_dict() if RECORDERS else None
