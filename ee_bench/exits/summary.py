"""Exit summary of a whole task run (paper §4 and §3.2), from its DocRecords: each output token's oracle
exit layers (first-match, saturation) and the gate's exit layer at every threshold, scored against the
oracle. (Renamed from ``exits/analysis.py``: "analysis" also named the layer-similarity study.)"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ee_bench.exits.decide import gate_exit_layers
from ee_bench.exits.gates import Gate
from ee_bench.exits.oracle import ExitSummary, first_match_layer, saturation_layer, summarize_layers
from ee_bench.exits.scoring import GateScore, score_gate
from ee_bench.types import DocRecord, LayerStats


@dataclass(frozen=True)
class ExitReport:
    """Oracle summaries, the gate sweep and per-document layers of one task run.

    Attributes:
        first_match / saturation: summaries over all N output tokens of the run.
        sweep: one :class:`GateScore` per threshold, in the order swept.
        chosen: the score at the chosen threshold (also in ``sweep``).
        per_doc: for each record, {"oracle_first_match", "oracle_saturation", "gate_exit_layer"}:
            lists of 0-based layers, one per output token.
    """

    first_match: ExitSummary
    saturation: ExitSummary
    sweep: list[GateScore]
    chosen: GateScore
    per_doc: list[dict[str, list[int]]] = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "oracle": {"first_match": self.first_match.to_dict(), "saturation": self.saturation.to_dict()},
            "gate_sweep": [s.to_dict() for s in self.sweep],
            "gate_at_threshold": self.chosen.to_dict(),
        }


def summarise_exits(records: list[DocRecord], gate: Gate, thresholds: list[float], chosen: float) -> ExitReport:
    """Oracle layers and gate scores over every output token of every record.

    Args:
        records: the run's documents; each has (L, N_doc) stats.
        gate: the gate; thresholds: the sweep (validated); chosen: the threshold whose per-token
            exit layers go to the samples file (must be in ``thresholds``).

    Raises:
        ValueError: if the run produced no output tokens at all.
    """
    stats = LayerStats.cat([r.stats for r in records])  # (L, N)
    if stats.n_tokens == 0:
        raise ValueError("the run produced no output tokens; nothing to analyse")
    L = stats.n_layers
    hidden = embeddings = None
    if gate.needs_hidden:
        hidden = torch.cat([r.hidden for r in records], dim=1)
        embeddings = torch.cat([r.embeddings for r in records], dim=0)
    fm, sat = first_match_layer(stats.top1), saturation_layer(stats.top1)
    sweep, chosen_layers = [], None
    for tau in thresholds:
        layers = gate_exit_layers(gate, stats, tau, hidden, embeddings)
        sweep.append(score_gate(tau, layers, fm, stats.top1))
        if tau == chosen:
            chosen_layers = layers
    chosen_score = next(s for s in sweep if s.threshold == float(chosen))
    per_doc, start = [], 0
    for r in records:
        n = r.stats.n_tokens
        sl = slice(start, start + n)
        per_doc.append({
            "oracle_first_match": fm[sl].tolist(),
            "oracle_saturation": sat[sl].tolist(),
            "gate_exit_layer": chosen_layers[sl].tolist(),
        })
        start += n
    return ExitReport(summarize_layers(fm, L), summarize_layers(sat, L), sweep, chosen_score, per_doc)
