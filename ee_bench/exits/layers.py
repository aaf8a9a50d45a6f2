"""Which 0-based exit layers a model of a given depth has: the one range rule that the exit schedule
(:meth:`ee_bench.exits.decide.ExitSchedule.build`, every decoding loop) and the checks before a model
loads (``--exit-layers``, :mod:`ee_bench.models.depth`) share. Torch-free, so a command can check
``--exit-layers`` against a model's config before torch or the weights load."""

from __future__ import annotations

from collections.abc import Iterable


def layers_outside(exit_layers: Iterable[int], n_layers: int) -> list[int]:
    """The entries of ``exit_layers`` that are not a block of an ``n_layers``-block model.

    Args:
        exit_layers: 0-based layer indices (``--exit-layers``). n_layers: the model's blocks, L.

    Returns:
        The sorted indices outside ``0 .. L−1`` (empty when all are valid).
    """
    return sorted({int(x) for x in exit_layers if not 0 <= int(x) < n_layers})
