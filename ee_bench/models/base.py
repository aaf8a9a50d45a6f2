"""The model-wrapper registry, and device/dtype resolution.

A wrapper loads a real checkpoint and exposes intermediate-layer decoding through the model's own
final norm and output head (no extra heads, no training). It follows one of the contracts of
:mod:`ee_bench.models.contracts`, is registered here by name and referenced from model cards
(``models/*.yaml``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from ee_bench.devices import check_device
from ee_bench.errors import EEBenchError
from ee_bench.hub import offline_if_unreachable
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
        check_device(device)  # sec: mps and other devices this machine lacks
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


TOKENIZER_KEYS = ("revision", "trust_remote_code")  # model_args keys that the tokenizer takes too


def load_checkpoint(card, auto_model, device: str | None, dtype: str | None, kwargs: dict[str, Any],
                    hint: str = "") -> tuple[Any, Any, torch.device]:
    """Load a card's hub id or local folder with a transformers ``Auto*`` class, the one loader of the
    three wrappers (causal, encoder-decoder, encoder classifier).

    Args:
        card: the model card (``pretrained``, ``name``, ``dtype``). auto_model: e.g.
            ``AutoModelForCausalLM``. device, dtype: ``--device`` / ``--dtype`` (None: the card's or
            the machine's choice, :func:`pick_device`, :func:`pick_dtype`). kwargs: ``model_args`` for
            ``from_pretrained`` (the wrapper has removed its own keys). hint: a sentence the failure
            message adds for this kind of model.

    Returns:
        (model on its device unless ``device_map`` places it, tokenizer, the device).

    Raises:
        EEBenchError: if the checkpoint cannot be found (the hub is unreachable here) or loaded (a bad
            ``--model_args`` key, a folder that is no checkpoint), naming the fix.
    """
    from transformers import AutoTokenizer  # deferred: transformers' Auto classes import slowly

    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype or card.dtype, dev)
    source = card.pretrained
    # a hub id with no hub: the hub clients' offline mode fails at once (or loads a cached copy) instead of retrying
    offline = contextlib.nullcontext() if Path(str(source)).exists() else offline_if_unreachable()
    try:
        with offline:
            tokenizer = AutoTokenizer.from_pretrained(source, **{k: v for k, v in kwargs.items() if k in TOKENIZER_KEYS})
            model = auto_model.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except OSError as exc:
        raise EEBenchError(
            f"Could not load checkpoint {source!r} for model {card.name}: {str(exc).splitlines()[0]} "
            f"The hub is unreachable here: download it where the hub is reachable and pass "
            f"--model_args pretrained=/local/path, or set HF_HUB_OFFLINE=1 with a filled cache.{hint}"
        ) from None
    except (TypeError, ValueError, ImportError) as exc:  # a bad --model_args key, or a folder that is no checkpoint
        raise EEBenchError(
            f"Could not load checkpoint {source!r} for model {card.name}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0]} Check --model_args (extra keys go to from_pretrained: "
            f"{sorted(kwargs) or 'none'}) and that the folder holds a config, weights and a tokenizer.{hint}"
        ) from None
    if "device_map" not in kwargs:
        model = model.to(dev)
    return model, tokenizer, dev
