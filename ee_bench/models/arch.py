"""Where each causal architecture keeps its blocks, final norm and output head: the one table of the
causal family.

One table keyed by ``config.model_type`` (no ``isinstance`` ladder). Paths are dotted attribute
paths from the ``*ForCausalLM`` object. ``blockwise`` marks the architectures whose blocks the
early-exit decoding loop can run one at a time (:class:`~ee_bench.decoding.blocks.BlockExecutor`).
A plug-in adds an architecture with :func:`register_decoder_arch` (no edit of this file). ``hidden_states[-1]`` of these models has already gone
through the final norm, which is why ee-bench decodes block outputs itself (see
:mod:`ee_bench.models.unembed`) and takes the last layer from the model's own logits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from ee_bench.errors import ModelStructureError


@dataclass(frozen=True)
class DecoderArch:
    """Dotted paths to the parts of a causal LM.

    Attributes:
        layers, final_norm, head, embed: paths of the block list, final norm, LM head, embeddings.
        rotary: path of the rotary embedding module (None: no rotary positions).
        blockwise: the early-exit loop can run these blocks one at a time (pre-norm blocks with
            ``input_layernorm``, ``self_attn.{k,v}_proj`` and rotary positions; Gemma-3's embedding
            scale, key norm and local/global layers are handled in ``ee_bench.decoding.blocks``).
    """

    layers: str
    final_norm: str
    head: str
    embed: str
    rotary: str | None = None
    blockwise: bool = False


_LLAMA_LIKE = DecoderArch("model.layers", "model.norm", "lm_head", "model.embed_tokens", "model.rotary_emb")
_BLOCKWISE = replace(_LLAMA_LIKE, blockwise=True)

DECODER_ARCHS: dict[str, DecoderArch] = {
    "llama": _BLOCKWISE,  # SmolLM2, Llama 2/3
    "mistral": _BLOCKWISE,
    "mixtral": _LLAMA_LIKE,
    "qwen2": _BLOCKWISE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    # Gemma3ForCausalLM (270M, 1B); embedding scale lives in embed_tokens; local/global layers
    "gemma3_text": _BLOCKWISE,
    # Gemma3ForConditionalGeneration (4B–27B; AutoModelForCausalLM maps "gemma3" to it): the text
    # decoder sits under model.language_model; lm_head stays on the outer model.
    "gemma3": DecoderArch("model.language_model.layers", "model.language_model.norm", "lm_head",
                          "model.language_model.embed_tokens"),
    "phi3": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    "granite": _LLAMA_LIKE,
    "gpt2": DecoderArch("transformer.h", "transformer.ln_f", "lm_head", "transformer.wte"),
    "gpt_neox": DecoderArch("gpt_neox.layers", "gpt_neox.final_layer_norm", "embed_out", "gpt_neox.embed_in"),
    "opt": DecoderArch("model.decoder.layers", "model.decoder.final_layer_norm", "lm_head", "model.decoder.embed_tokens"),
}


def register_decoder_arch(model_type: str, arch: DecoderArch) -> None:
    """Teach ee-bench where a new causal architecture keeps its parts (for plug-in model packages).

    Raises:
        ValueError: if ``model_type`` is already in the table.
    """
    add_to_table(DECODER_ARCHS, "DECODER_ARCHS", model_type, arch)


def add_to_table(table: dict[str, Any], table_name: str, model_type: str, arch: Any) -> None:
    """Add one entry to an architecture table (decoder, encoder-decoder or encoder), never replacing one.

    Raises:
        ValueError: if ``model_type`` is already in ``table``.
    """
    if model_type in table:
        raise ValueError(f"model_type {model_type!r} is already in {table_name} ({table[model_type]})")
    table[model_type] = arch


def blockwise_types(table: dict[str, Any]) -> list[str]:
    """The model types of an architecture table whose entry supports block-by-block decoding, in table order."""
    return [t for t, a in table.items() if a.blockwise]


def blockwise_model_types() -> list[str]:
    """The model types the early-exit decoding loop supports, in table order."""
    return blockwise_types(DECODER_ARCHS)


def get_path(root: nn.Module, path: str) -> nn.Module:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class DecoderParts:
    """The located modules of one loaded causal LM."""

    layers: nn.ModuleList
    final_norm: nn.Module
    head: nn.Linear
    embed: nn.Module


def locate_parts(model: nn.Module, table: dict[str, Any], paths, *, unknown: str, layout: str = "",
                 supported: str | None = None) -> tuple[str, Any, dict[str, nn.Module | None]]:
    """The one part-locating step of the three architecture tables (causal, encoder-decoder, encoder).

    Args:
        model: the loaded ``transformers`` model. table: ``model_type`` → architecture entry.
        paths: callable(entry) → {part name: dotted path, or None for a part the entry lacks}; the
            part named ``layers`` must be a non-empty ``nn.ModuleList``.
        unknown: what cannot be located for an unknown type, and how a plug-in adds one (message text).
        layout: a sentence the message adds when a listed part is missing. supported: the supported
            types as the message lists them (default: the table's keys, sorted).

    Returns:
        (model_type, the table entry, {part name: module or None}).

    Raises:
        ModelStructureError: for an unknown ``model_type``, a missing part or an empty block list; each
            message names the supported architectures.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    supported = supported or ", ".join(sorted(table))
    arch = table.get(model_type)
    if arch is None:
        raise ModelStructureError(f"Cannot locate the {unknown.format(model_type=repr(model_type))} "
                                  f"Supported architectures: {supported}.")
    try:
        parts = {name: None if path is None else get_path(model, path) for name, path in paths(arch).items()}
    except AttributeError as exc:
        raise ModelStructureError(
            f"model_type {model_type!r} has no {exc.name or exc}; {layout}its layout differs from ee-bench's "
            f"table ({arch}). Supported architectures: {supported}."
        ) from None
    layers = parts.get("layers")
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ModelStructureError(f"{paths(arch)['layers']} of model_type {model_type!r} is not a non-empty list of blocks")
    return model_type, arch, parts


def locate_decoder_parts(model: nn.Module) -> DecoderParts:
    """Find blocks, final norm, head and embeddings through :data:`DECODER_ARCHS` (:func:`locate_parts`).

    Raises:
        ModelStructureError: for an unknown ``model_type`` or a model missing a listed part; the
            message names the supported architectures.
    """
    _, _, parts = locate_parts(
        model, DECODER_ARCHS, lambda a: {"layers": a.layers, "final_norm": a.final_norm, "head": a.head, "embed": a.embed},
        unknown="layers and final norm of model_type {model_type}. A plug-in adds one with "
                "ee_bench.models.arch.register_decoder_arch.")
    return DecoderParts(**parts)
