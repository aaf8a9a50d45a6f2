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

A gate that never fires exits at the final layer L−1.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

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
    """

    layer: int
    n_layers: int
    top1: Tensor | None = None
    top1_prob: Tensor | None = None
    entropy: Tensor | None = None
    streak: Tensor | None = None
    hidden: Tensor | None = None
    prev_hidden: Tensor | None = None

    def select(self, keep: Tensor) -> GateObservation:
        """The observation of a subset of the tokens (``keep``: (B,) bool or (B',) int64)."""
        def pick(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[keep]

        return GateObservation(self.layer, self.n_layers, pick(self.top1), pick(self.top1_prob), pick(self.entropy),
                               pick(self.streak), pick(self.hidden), pick(self.prev_hidden))


class Gate(ABC):
    """Contract for a gate. Subclasses set the class attributes and implement :meth:`fires`.

    Attributes:
        needs_head: whether :meth:`fires` reads top1/top1_prob/entropy/streak (each check then
            costs one output-head projection).
        needs_hidden: whether :meth:`fires` reads hidden/prev_hidden.
        default_threshold: used when the user gives none and no sweep is wanted.
        grid: the documented default sweep, ordered from least to most aggressive.
        aggressive: "lower" if a lower τ exits earlier, "higher" otherwise.
        unit: unit of τ, for messages and reports.
    """

    needs_head: bool = True
    needs_hidden: bool = False
    default_threshold: float
    grid: tuple[float, ...]
    aggressive: str = "lower"
    unit: str = ""

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


def gate_name(gate: Gate | str) -> str:
    """The name a gate was chosen by (``--gate``), or its class name if it never went through
    :data:`GATES`."""
    if isinstance(gate, str):
        return gate
    return vars(type(gate)).get("registry_name", type(gate).__name__)  # not inherited by subclasses
