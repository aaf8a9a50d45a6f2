"""Gates: rules that decide at which layer a token exits (paper §3.2).

A gate sees one exit layer at a time (:class:`GateObservation`) and says, per token, whether to
exit there. Observations are built and walked to the first exit in one place,
:mod:`ee_bench.exits.decide`, for the offline analysis and every real early-exit loop alike.

Built-in gates (τ is the threshold):

- ``confidence``: exit at the first ℓ with max_v p_ℓ(v) ≥ τ, τ in (0, 1].
- ``entropy``: exit at the first ℓ with H(p_ℓ) ≤ τ nats, τ ≥ 0.
- ``patience``: exit at the first ℓ whose top-1 has been unchanged across the last τ layer
  transitions (top1_ℓ = top1_{ℓ−1} = … = top1_{ℓ−τ}), τ a positive integer.
- ``none``: never exits (:mod:`ee_bench.exits.none_gate`); τ is ignored.
- ``state``: exit at the first ℓ with cos(h^ℓ, h^{ℓ−1}) ≥ τ, τ in [−1, 1] (CALM's head-free gate: no
  head projection at the checks).
- ``classifier``: exit at the first ℓ where a learned linear probe on h^ℓ predicts, with probability
  ≥ τ, that layer ℓ's top-1 equals the final layer's (CALM §3.5; :mod:`ee_bench.exits.classifier_gate`,
  probes from ``--gate-file``, fitted by ``ee-bench fit-gate``; no head projection at the checks).
- ``oracle``: exit at the token's first-match layer (analysis only: its decision reads the final
  layer's top-1, so every layer runs; see :class:`OracleGate`).

A gate that never fires exits at the final layer L−1.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from ee_bench.errors import EEBenchError
from ee_bench.registry import Registry


class ThresholdError(EEBenchError):
    """A threshold outside the gate's valid range."""


@dataclass(frozen=True)
class GateObservation:
    """What a gate sees at exit layer ``layer`` for B tokens.

    Fields a gate does not need may be ``None`` (the decoding loop skips the head projection for
    gates with ``needs_head = False``).

    Attributes:
        layer: 0-based exit layer ℓ.
        n_layers: L.
        top1: (B,) int64 argmax token of head(final_norm(h^ℓ)).
        top1_prob: (B,) float32 its probability, in [0, 1].
        entropy: (B,) float32 entropy of the distribution, nats.
        streak: (B,) int64 number of consecutive layer transitions, ending at ℓ, over which top1
            stayed the same (0 at ℓ = 0 or after a change).
        hidden: (B, H) hidden state after block ℓ (before the final norm).
        prev_hidden: (B, H) hidden state entering block ℓ (the embeddings for ℓ = 0).
        final_top1: (B,) int64 top-1 of the final layer L−1, only for gates with ``needs_final``
            (the oracle); None otherwise.
    """

    layer: int
    n_layers: int
    top1: Tensor | None = None
    top1_prob: Tensor | None = None
    entropy: Tensor | None = None
    streak: Tensor | None = None
    hidden: Tensor | None = None
    prev_hidden: Tensor | None = None
    final_top1: Tensor | None = None

    def select(self, keep: Tensor) -> GateObservation:
        """The observation of a subset of the tokens (``keep``: (B,) bool or (B',) int64)."""
        def pick(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[keep]

        return GateObservation(self.layer, self.n_layers, pick(self.top1), pick(self.top1_prob), pick(self.entropy),
                               pick(self.streak), pick(self.hidden), pick(self.prev_hidden),
                               pick(self.final_top1))


class Gate(ABC):
    """Contract for a gate. Subclasses set the class attributes and implement :meth:`fires`.

    Attributes:
        needs_head: whether :meth:`fires` reads top1/top1_prob/entropy/streak (each check then
            costs one output-head projection).
        needs_hidden: whether :meth:`fires` reads hidden/prev_hidden.
        needs_final: whether :meth:`fires` reads ``final_top1`` (the final layer's top-1): such a gate
            is an analysis tool, the decoding loop runs every layer before it decides.
        default_threshold: used when the user gives none and no sweep is wanted.
        grid: the documented default sweep, ordered from least to most aggressive.
        aggressive: "lower" if a lower τ exits earlier, "higher" otherwise.
        unit: unit of τ, for messages and reports.
        strictest: the τ at which the gate (almost) never fires, where the threshold warm-up starts
            (:func:`ee_bench.exits.decide.warmed_threshold`); None for gates that cannot take a warm-up.
    """

    needs_head: bool = True
    needs_hidden: bool = False
    needs_final: bool = False
    default_threshold: float
    grid: tuple[float, ...]
    aggressive: str = "lower"
    unit: str = ""
    strictest: float | None = None

    @abstractmethod
    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        """Return a (B,) bool tensor: True where the token exits at ``obs.layer``."""

    def check_threshold(self, threshold: float, n_layers: int | None = None) -> float:
        """Validate τ; returns it as float.

        Raises:
            ThresholdError: if τ is outside the gate's range (message names the range).
        """
        if not math.isfinite(threshold):
            raise ThresholdError(f"threshold {threshold} is not a finite number")
        return float(threshold)


GATES: Registry[type[Gate]] = Registry("gate", base=Gate, entry_point_group="ee_bench.gates")


@GATES.register("confidence")
class ConfidenceGate(Gate):
    """Exit when the top-1 probability reaches τ (paper §3.2, "confidence"; CALM's softmax response).

    Cost per check: one head projection over the vocabulary and a softmax.
    """

    default_threshold = 0.9
    grid = (0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
    aggressive = "lower"
    strictest = 1.0
    unit = "probability"

    def check_threshold(self, threshold: float, n_layers: int | None = None) -> float:
        threshold = super().check_threshold(threshold, n_layers)
        if not 0.0 < threshold <= 1.0:
            raise ThresholdError(
                f"confidence threshold {threshold} is out of range: it is a probability in (0, 1]. "
                f"Try --threshold 0.9, or omit --threshold to sweep {list(self.grid)}."
            )
        return threshold

    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        return obs.top1_prob >= threshold


@GATES.register("entropy")
class EntropyGate(Gate):
    """Exit when the entropy of the layer's distribution falls to τ nats (paper §3.2, "entropy").

    Cost per check: one head projection and a softmax.
    """

    default_threshold = 0.5
    grid = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0)
    aggressive = "higher"
    strictest = 0.0
    unit = "nats"

    def check_threshold(self, threshold: float, n_layers: int | None = None) -> float:
        threshold = super().check_threshold(threshold, n_layers)
        if threshold < 0.0:
            raise ThresholdError(
                f"entropy threshold {threshold} is out of range: it is an entropy in nats, >= 0. "
                f"Try --threshold 0.5, or omit --threshold to sweep {list(self.grid)}."
            )
        return threshold

    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        return obs.entropy <= threshold


@GATES.register("patience")
class PatienceGate(Gate):
    """Exit once the top-1 has stayed the same across τ consecutive layer transitions (PABEE-style).

    Cost per check: one head projection (argmax only).
    """

    default_threshold = 3
    grid = (8, 6, 4, 3, 2, 1)
    aggressive = "lower"
    unit = "layer transitions"

    def check_threshold(self, threshold: float, n_layers: int | None = None) -> float:
        threshold = super().check_threshold(threshold, n_layers)
        upper = f"{n_layers - 1}" if n_layers else "L-1"
        if threshold != int(threshold) or threshold < 1 or (n_layers and threshold > n_layers - 1):
            raise ThresholdError(
                f"patience threshold {threshold} is out of range: it is a whole number of layer "
                f"transitions in [1, {upper}]. Try --threshold 3."
            )
        return float(int(threshold))

    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        return obs.streak >= int(threshold)


GATES.register("none", "ee_bench.exits.none_gate:NoExitGate")  # sec: never exits (τ = 1.0 is not that)
GATES.register("classifier", "ee_bench.exits.classifier_gate:ClassifierGate")  # issue 23: learned probes (--gate-file)
@GATES.register("state")
class StateGate(Gate):
    """Exit at the first ℓ with cos(h^ℓ, h^{ℓ−1}) ≥ τ, τ in [−1, 1] (CALM §3.5, "hidden-state saturation").

    Schuster et al., *Confident Adaptive Language Modeling* (NeurIPS 2022): h^ℓ is the token's output
    of block ℓ and h^{ℓ−1} its input (the embeddings at ℓ = 0), both before the final norm
    (:class:`GateObservation` ``hidden`` and ``prev_hidden``, each (B, H)).

    Cost per check: two norms and a dot product, 3·H multiply-adds per token, in float32, and no head
    projection (``needs_head = False``), against H·V for the confidence gate's head (SmolLM2-135M:
    1.7 k against 28 M multiply-adds). The emitted token still needs one head projection, at the exit
    (counted in ``DecodeCounts.head_rows``, timed in the ``emit`` section; the checks are counted in
    ``gate_checks`` and timed in the ``gate`` section).
    """

    needs_head = False
    needs_hidden = True
    default_threshold = 0.98
    grid = (0.999, 0.995, 0.99, 0.985, 0.98, 0.97, 0.95, 0.9)  # least → most aggressive
    aggressive = "lower"
    strictest = 1.0
    unit = "cosine similarity"

    def check_threshold(self, threshold: float, n_layers: int | None = None) -> float:
        """Validate τ (a cosine similarity).

        Raises:
            ThresholdError: if τ is not in [−1, 1].
        """
        threshold = super().check_threshold(threshold, n_layers)
        if not -1.0 <= threshold <= 1.0:
            raise ThresholdError(
                f"state threshold {threshold} is out of range: it is a cosine similarity in [-1, 1]. "
                f"Try --threshold 0.98, or omit --threshold to sweep {list(self.grid)}."
            )
        return threshold

    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        """(B,) bool: cos(hidden, prev_hidden) ≥ τ, computed in float32."""
        cos = torch.nn.functional.cosine_similarity(obs.hidden.float(), obs.prev_hidden.float(), dim=-1)  # (B,)
        return cos >= threshold


@GATES.register("oracle")
class OracleGate(Gate):
    """Exit at the token's first-match layer (analysis only; paper Tables 6 and 11, the optimal exit).

    The first-match layer is the first ℓ whose top-1 equals the final layer's
    (:func:`~ee_bench.exits.oracle.first_match_layer`). An analysis mode, not a deployable gate: its decision reads the final layer's top-1
    (``needs_final``), so the decoding loop runs every block for every token, finds the first-match
    layer, and only then lets the KV strategy fill the skipped layers as if the token had exited
    there. It measures the quality cost of a KV strategy at a perfect gate; no speed-up is claimed.
    Offline its exit layers are the first-match layers by definition (gate distance 0). It has no
    threshold: τ is ignored (grid ``(0,)``).

    Cost: every token runs all L blocks and L head projections (analysis only).
    """

    needs_final = True
    default_threshold = 0.0
    grid = (0.0,)
    aggressive = "lower"
    unit = "none (no threshold)"

    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        """(B,) bool: top1 == final_top1 (τ ignored).

        Raises:
            ValueError: if the observation has no ``top1`` or ``final_top1``.
        """
        if obs.final_top1 is None or obs.top1 is None:
            raise ValueError("the oracle gate needs each token's final-layer top-1; observe layers with final_top1")
        return obs.top1 == obs.final_top1


def gate_name(gate: Gate | str) -> str:
    """The name a gate was chosen by (``--gate``), or its class name if it never went through
    :data:`GATES`."""
    if isinstance(gate, str):
        return gate
    return vars(type(gate)).get("registry_name", type(gate).__name__)  # not inherited by subclasses
