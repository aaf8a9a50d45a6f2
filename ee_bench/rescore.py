"""Rescore a finished run: the oracle and gate analysis again, from its logged records alone (no model).

The per-layer statistics the run analysed are in its sidecar (:mod:`ee_bench.records`); this module
rebuilds the run's records from the samples JSONL and the sidecar and calls the very function the
evaluation calls (:func:`ee_bench.exits.summary.summarise_exits`, as ``evaluation.score_records``),
with the thresholds chosen by the same rule (:func:`ee_bench.evaluation.gate_thresholds`). Rescoring with the run's own gate and
thresholds therefore reproduces its results JSON exactly; rescoring with another gate equals a fresh
run with that gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.evaluation import gate_thresholds
from ee_bench.exits.gates import GATES, gate_name
from ee_bench.exits.summary import ExitReport, summarise_exits
from ee_bench.records import records_from_files
from ee_bench.samples_file import read_results


@dataclass(frozen=True)
class Rescored:
    """One run rescored.

    Attributes:
        results_path: the run's results JSON. model, task: from it. source_gate: the gate it ran.
        gate: the gate rescored. threshold: the chosen τ. threshold_swept: whether a grid was swept.
        report: oracle, sweep and per-document layers (as the evaluation computes them).
    """

    results_path: Path
    model: str
    task: str
    source_gate: str
    gate: str
    threshold: float
    threshold_swept: bool
    report: ExitReport

    def to_dict(self) -> dict[str, Any]:
        return {"results_file": str(self.results_path), "model": self.model, "task": self.task,
                "source_gate": self.source_gate, "gate": self.gate, "threshold": self.threshold,
                "threshold_swept": self.threshold_swept, **self.report.to_dict(),
                "per_doc_gate_exit_layer": [d["gate_exit_layer"] for d in self.report.per_doc]}


def find_results(target: Path) -> list[Path]:
    """``results_*.json`` files: the file itself, or every one under a folder (sorted).

    Raises:
        EEBenchError: if the path does not exist or holds no results file.
    """
    target = Path(target)
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise EEBenchError(f"{target} does not exist. Give a results folder (e.g. runs/) or one results_*.json file.")
    found = sorted(target.rglob("results_*.json"))
    if not found:
        raise EEBenchError(f"no results_*.json under {target}. Give the --output_path folder of an evaluation.")
    return found


def rescore_run(results_path: Path, gate: str, threshold: float | None = None) -> Rescored:
    """Recompute the oracle and the gate analysis of one run from its samples and sidecar.

    Args:
        results_path: a results JSON written with its layer-statistics sidecar.
        gate: a registered gate name. threshold: one τ, or None: the run's own thresholds when
            ``gate`` is the run's gate, else the gate's documented grid (as a fresh run would sweep).

    Raises:
        EEBenchError: for an unknown gate, a threshold out of range, a gate that reads hidden
            states (not logged), or a run without sidecar.
    """
    result = read_results(Path(results_path))
    if not str(result.get("schema", "")).startswith("ee-bench/results/"):
        raise EEBenchError(f"{results_path} is not an ee-bench results file (no ee-bench/results schema).")
    g = GATES.get(gate)()
    if g.needs_hidden:
        raise EEBenchError(f"gate {gate} reads hidden states, which runs do not log; it cannot be rescored. "
                           f"Run the evaluation with --gate {gate} instead.")
    try:
        records = records_from_files(Path(results_path), result)
        n_layers = records[0].stats.n_layers if records else 0
        if threshold is None and gate == result.get("gate"):
            thresholds = [float(s["threshold"]) for s in result["gate_sweep"]]
            chosen = float(result["threshold"])
        else:
            thresholds, chosen = gate_thresholds(g, threshold, n_layers)
        report = summarise_exits(records, g, thresholds, chosen)
        return Rescored(Path(results_path), str(result["model"]), str(result["task"]), result.get("gate", "?"),
                        gate_name(g), chosen, threshold is None, report)
    except (KeyError, TypeError, IndexError) as exc:  # a results or samples file with entries missing or mistyped
        raise EEBenchError(f"{results_path}: entry {exc} is missing or mistyped in the results or samples file; "
                           f"the run is damaged. Rerun the evaluation that wrote it.") from None
    except ValueError as exc:
        raise EEBenchError(f"{results_path}: {exc}") from None
