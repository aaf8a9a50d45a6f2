"""A checkpoint's depth read from its configuration alone, before any weight loads, so that options
that depend on it (``--exit-layers``) are refused in seconds and before anything is written.

:func:`checkpoint_depth` reads, in order: a local checkpoint folder's ``config.json``; a GGUF card's
dequantised-cache entry (:mod:`ee_bench.models.gguf_cache`), else the GGUF file's own metadata
(``<arch>.block_count``); a hub id's configuration only if it is already in the local cache (no
network). Where none of these answers it returns None, and the caller checks again right after the
model loads (:func:`check_exit_layers` with the loaded model's ``n_layers``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.exits.layers import layers_outside

logger = logging.getLogger(__name__)


def _config_depth(cfg: Any) -> int | None:
    """Decoder blocks of a transformers config: ``decoder_layers`` / ``num_decoder_layers`` for an
    encoder-decoder, else the text model's ``num_hidden_layers``."""
    if getattr(cfg, "is_encoder_decoder", False):
        n = getattr(cfg, "decoder_layers", None) or getattr(cfg, "num_decoder_layers", None)
    else:
        text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        n = getattr(text, "num_hidden_layers", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def _gguf_depth(path: Path) -> int | None:
    from ee_bench.models.gguf_cache import (  # deferred: torch and transformers, not needed to read a depth
        GGUFCacheKey,
        cache_root,
    )

    entry = GGUFCacheKey.of(path).entry_dir(cache_root())
    if (entry / "config.json").is_file():
        return _folder_depth(entry)
    # optional heavy dependency (gguf), installed with transformers' GGUF support
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    arch = fields["general.architecture"]
    name = bytes(arch.parts[arch.data[0]]).decode("utf-8")
    count = fields[f"{name}.block_count"]
    return int(count.parts[count.data[0]][0])


def _folder_depth(folder: Path) -> int | None:
    # optional heavy dependency (transformers); reads config.json only
    from transformers import AutoConfig

    return _config_depth(AutoConfig.from_pretrained(str(folder)))


def checkpoint_depth(card: Any) -> int | None:
    """The number of decoder blocks L of ``card``'s checkpoint, without loading weights.

    Args:
        card: a :class:`~ee_bench.models.cards.ModelCard`.

    Returns:
        L, or None when the configuration cannot be read without loading or downloading (the
        caller then checks after the load).
    """
    try:
        if card.gguf:
            if "assemble" in card.gguf:  # the file is rebuilt by its package at load time
                return None
            from ee_bench.models.packaging import gguf_file  # deferred: only for packaged GGUF cards

            return _gguf_depth(gguf_file(card.gguf))
        if card.pretrained and Path(card.pretrained).is_dir():
            return _folder_depth(Path(card.pretrained))
        if card.pretrained:
            # optional heavy dependency (transformers)
            from transformers import AutoConfig

            return _config_depth(AutoConfig.from_pretrained(card.pretrained, local_files_only=True,
                                                            revision=card.model_args.get("revision")))
    except Exception as exc:  # noqa: BLE001 - any failure here only means "known after loading"
        logger.debug("depth of %s not known before loading: %s", card.name, exc)
    return None


def check_exit_layers(exit_layers: Sequence[int] | None, n_layers: int | None, model: str,
                      option: str = "--exit-layers") -> None:
    """Refuse exit layers that a model of ``n_layers`` blocks does not have (nothing when either is None).

    Raises:
        EEBenchError: naming the option, the bad layers, the model's depth and the valid range.
    """
    if exit_layers is None or n_layers is None:
        return
    bad = layers_outside(exit_layers, n_layers)
    if bad:
        raise EEBenchError(f"{option} {','.join(map(str, bad))}: {model} has {n_layers} layers, so exit layers are "
                           f"0-based in 0..{n_layers - 1} ({n_layers - 1} is full depth); e.g. {option} "
                           f"{max(0, n_layers // 3 - 1)},{max(0, 2 * n_layers // 3 - 1)}.")
