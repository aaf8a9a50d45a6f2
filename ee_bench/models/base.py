"""The model-wrapper registry, and device/dtype resolution.

A wrapper loads a real checkpoint and exposes intermediate-layer decoding through the model's own
final norm and output head (no extra heads, no training). It follows one of the contracts of
:mod:`ee_bench.models.contracts`, is registered here by name and referenced from model cards
(``models/*.yaml``).
"""

from __future__ import annotations

import torch

from ee_bench.errors import EEBenchError
from ee_bench.models.contracts import ExitModel
from ee_bench.registry import Registry

__all__ = ["DTYPES", "MODELS", "ExitModel", "pick_device", "pick_dtype"]


MODELS: Registry[type[ExitModel]] = Registry("model wrapper", base=ExitModel, entry_point_group="ee_bench.models")
MODELS.register("hf-causal", "ee_bench.models.hf_causal:HFCausalLM")
MODELS.register("hf-encoder", "ee_bench.models.hf_encoder:HFEncoderClassifier")
MODELS.register("hf-seq2seq", "ee_bench.models.hf_seq2seq:HFSeq2SeqLM")


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise EEBenchError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EEBenchError(f"--device {device} was asked for, but this torch has no usable CUDA device; "
                               f"use --device cpu or omit --device")
        from ee_bench.preflight import check_device  # sec: mps and other devices this machine lacks

        check_device(device)
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """Resolve a dtype name; ``auto`` (or None) is bfloat16 on CUDA with bf16 support, else float32.

    Raises:
        EEBenchError: for a name other than auto, float32, bfloat16, float16.
    """
    if dtype in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise EEBenchError(f"unknown dtype {dtype!r} (from --dtype or --model_args dtype=); use one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]
