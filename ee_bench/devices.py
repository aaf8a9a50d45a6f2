"""Is a ``--device`` usable on this machine? Checked before the model loads (cuda without CUDA, mps
without Metal, a device string torch cannot parse). Kept apart from :mod:`ee_bench.preflight`, which
needs no torch, so the leaderboard's renderers never import torch."""

from __future__ import annotations

import torch

from ee_bench.errors import EEBenchError


def check_device(device: str) -> None:
    """Refuse a device this machine does not have (cuda without CUDA, mps without Metal, ...).

    Raises:
        EEBenchError: naming the device and the fix.
    """
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise EEBenchError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise EEBenchError(f"--device {device} was asked for, but this machine has no usable MPS (Apple Metal) "
                           f"device; use --device cpu or omit --device")
    try:
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError, AttributeError) as exc:
        reason = str(exc).strip().split("\n")[0].split(". ")[0][:160]
        raise EEBenchError(f"--device {device} was asked for, but this machine cannot use it ({reason}); "
                           f"use --device cpu or omit --device") from None


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given (checked by :func:`ee_bench.preflight.check_threads`):
    intra-op threads on the CPU; a GPU's kernels are unaffected."""
    if threads is not None:
        torch.set_num_threads(threads)
