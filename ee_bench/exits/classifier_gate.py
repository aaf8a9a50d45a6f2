"""A learned early-exit classifier (CALM §3.5): one linear probe per exit layer on the hidden state.

Schuster et al., *Confident Adaptive Language Modeling* (NeurIPS 2022), §3.5 "early-exit classifier":
a small classifier on h^ℓ predicts whether exiting at ℓ keeps the prediction consistent with the full
model. Here the probe of layer ℓ is a logistic regression

    p_ℓ(exit) = σ(w_ℓ · h^ℓ + b_ℓ),

trained (``ee-bench fit-gate``, :mod:`ee_bench.training.exit_classifier`) on tokens of documents
disjoint from the evaluated ones, with label 1 where layer ℓ's top-1 already equals the final layer's
(``top1_ℓ = top1_{L−1}``). The gate fires where p_ℓ ≥ τ, τ in (0, 1).

Cost per check: one dot product of H multiply-adds per token and a sigmoid, in float32, and no head
projection (``needs_head = False``; SmolLM2-135M: 576 against the head's 28 M). The emitted token still
needs one head projection at the exit, as for the ``state`` gate.

The probes live in a small JSON file (never a pickle), written by :func:`save_classifier`: the schema
``ee-bench/exit-classifier/v1``, per layer ``w`` (H floats) and ``b``, the hidden size, L, and the
provenance (command, model, task, documents, token counts, training accuracy). Standardisation used
while fitting is folded into ``w`` and ``b``, so the file is applied to raw h^ℓ.

Shape notation: B = tokens at a check, H = hidden size, L = blocks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from ee_bench.errors import EEBenchError
from ee_bench.exits.gates import GATES, Gate, GateObservation, ThresholdError
from ee_bench.files import atomic_write

SCHEMA = "ee-bench/exit-classifier/v1"


class ClassifierFileError(EEBenchError):
    """A missing, unreadable or malformed exit-classifier file, or one for another model."""


class ClassifierGate(Gate):
    """Exit at the first ℓ with σ(w_ℓ · h^ℓ + b_ℓ) ≥ τ, τ in (0, 1) (CALM §3.5 early-exit classifier).

    Args:
        weights: layer ℓ → (w (H,) float32, b float); layers without a probe never fire.
        n_layers: L of the model the probes were fitted on (checked against the run's model by
            :meth:`check_model`). provenance: how the probes were fitted (written back to results).
        source: the file they came from (for messages and results), or None.

    Build it from a file with :meth:`load` (``--gate classifier --gate-file FILE``). The registry's
    no-argument instance has no probes and is refused by :meth:`fires`.
    """

    needs_head = False
    needs_hidden = True
    needs_file = True  # built from --gate-file by gate_from_options
    default_threshold = 0.9
    grid = (0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)  # least → most aggressive (0.5, 0.3, then 0.1 were binding on the joint SmolLM2)
    aggressive = "lower"
    unit = "predicted probability"
    strictest = 1.0

    def __init__(self, weights: dict[int, tuple[Tensor, float]] | None = None, n_layers: int | None = None,
                 provenance: dict | None = None, source: str | None = None):
        self.weights = dict(weights or {})
        self.n_layers = n_layers
        self.provenance = dict(provenance or {})
        self.source = source
        self._on: dict[tuple[int, str], tuple[Tensor, float]] = {}

    @classmethod
    def load(cls, path: str | Path, option: str = "--gate-file") -> ClassifierGate:
        """Read a file written by :func:`save_classifier`; ``option`` names where the path came from in
        the messages (``ee-hf``'s model_args say ``gate_file=``).

        Raises:
            ClassifierFileError: missing file, not JSON, another schema, no probe, or a probe of the wrong size.
        """
        p = Path(path)
        fix = "Fit one with `ee-bench fit-gate --model M --task T --docs A:B --output FILE`."
        if not p.is_file():
            raise ClassifierFileError(f"{option} {p} does not exist or is not a file. {fix}")
        try:
            data = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ClassifierFileError(f"{option} {p} is not a readable exit-classifier JSON file ({exc}). {fix}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ClassifierFileError(f"{option} {p} is not an exit-classifier file (schema "
                                      f"{data.get('schema') if isinstance(data, dict) else None!r}, expected {SCHEMA!r}). {fix}")
        H, weights = int(data["hidden_size"]), {}
        for key, probe in data["layers"].items():
            w = torch.tensor(probe["w"], dtype=torch.float32)
            if w.shape != (H,) or not torch.isfinite(w).all() or not math.isfinite(float(probe["b"])):
                raise ClassifierFileError(f"{option} {p}: the probe of layer {key} is not {H} finite weights "
                                          f"and a finite bias. {fix}")
            weights[int(key)] = (w, float(probe["b"]))
        if not weights:
            raise ClassifierFileError(f"{option} {p} holds no probes (fitted with an empty --exit-layers?). {fix}")
        gate = cls(weights, int(data["n_layers"]), data.get("provenance", {}), str(p))
        gate.option = option
        return gate

    def check_model(self, n_layers: int, hidden_size: int, model_name: str | None = None) -> None:
        """Refuse probes fitted on a model of another depth or width; warn (logger ``ee_bench.exits``)
        when the file's provenance names another model of the same shapes (another checkpoint of one
        architecture: allowed, but the probes then describe other weights).

        Raises:
            ClassifierFileError: naming both shapes.
        """
        option = getattr(self, "option", "--gate-file")
        H = next(iter(self.weights.values()))[0].numel() if self.weights else hidden_size
        if (self.n_layers is not None and self.n_layers != n_layers) or H != hidden_size:
            raise ClassifierFileError(f"{option} {self.source}: its probes were fitted on a model with "
                                      f"{self.n_layers} blocks of width {H}; this model has {n_layers} of width "
                                      f"{hidden_size}. Fit probes for this model with ee-bench fit-gate.")
        fitted_on = self.provenance.get("model")
        if model_name and fitted_on and fitted_on != model_name:
            import logging

            logging.getLogger("ee_bench.exits").warning(
                "%s %s was fitted on %s, not %s (same shapes, other weights); fit probes for this model with "
                "ee-bench fit-gate", option, self.source, fitted_on, model_name)

    def check_threshold(self, threshold: float, n_layers: int | None = None) -> float:
        """Validate τ (a probability).

        Raises:
            ThresholdError: if τ is not in (0, 1).
        """
        threshold = super().check_threshold(threshold, n_layers)
        if not 0.0 < threshold < 1.0:
            raise ThresholdError(f"classifier threshold {threshold} is out of range: it is a predicted probability "
                                 f"in (0, 1). Try --threshold 0.9, or omit --threshold to sweep {list(self.grid)}.")
        return threshold

    def probability(self, layer: int, hidden: Tensor) -> Tensor:
        """(B,) float32 σ(w_ℓ · h + b_ℓ) for (B, H) states ``hidden``; zeros where layer ℓ has no probe."""
        if layer not in self.weights:
            return torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        key = (layer, str(hidden.device))
        if key not in self._on:  # the probe on the states' device, moved once
            w, b = self.weights[layer]
            self._on[key] = (w.to(hidden.device), b)
        w, b = self._on[key]
        return torch.sigmoid(hidden.float() @ w + b)  # (B,)

    def fires(self, obs: GateObservation, threshold: float) -> Tensor:
        """(B,) bool: σ(w_ℓ · h^ℓ + b_ℓ) ≥ τ (never at a layer without a probe).

        Raises:
            ValueError: if the gate has no probes (built without a file) or the observation no hidden state.
        """
        if not self.weights:
            raise ValueError("the classifier gate has no probes; build it with ClassifierGate.load(FILE) "
                             "(--gate-file FILE, written by ee-bench fit-gate)")
        if obs.hidden is None:
            raise ValueError("the classifier gate reads the hidden state; observe layers with hidden")
        return self.probability(obs.layer, obs.hidden) >= threshold


def save_classifier(path: str | Path, weights: dict[int, tuple[Tensor, float]], n_layers: int, hidden_size: int,
                    provenance: dict) -> None:
    """Write probes as JSON (atomically; floats as decimal text, no pickle).

    Args:
        weights: layer ℓ → (w (H,), b). n_layers: L. hidden_size: H. provenance: recorded as given.
    """
    layers = {str(k): {"w": [float(x) for x in w.tolist()], "b": float(b)} for k, (w, b) in sorted(weights.items())}
    atomic_write(Path(path), json.dumps({"schema": SCHEMA, "n_layers": n_layers, "hidden_size": hidden_size,
                                          "provenance": provenance, "layers": layers}))


def gate_from_options(name: str, gate_file: str | None, options: tuple[str, str] = ("--gate", "--gate-file")) -> Gate:
    """The gate of ``--gate NAME`` (and ``--gate-file FILE`` for a gate built from a file); ``options``
    names the two options in the messages (``("gate=", "gate_file=")`` for ee-hf's model_args).

    Raises:
        UnknownNameError: unknown gate. EEBenchError: ``--gate classifier`` without ``--gate-file``, or
            ``--gate-file`` with a gate that takes none. ClassifierFileError: a bad file.
    """
    g, f = options
    sep = "" if g.endswith("=") else " "
    cls = GATES.get(name)
    if getattr(cls, "needs_file", False):
        if not gate_file:
            raise EEBenchError(f"{g}{sep}{name} needs its probes: add {f}{sep}FILE (written by "
                               f"`ee-bench fit-gate --model M --task T --docs A:B --output FILE`).")
        return cls.load(gate_file, option=f)
    if gate_file:
        raise EEBenchError(f"{f} applies to {g}{sep}classifier; {g}{sep}{name} takes none. Drop {f}.")
    return cls()
