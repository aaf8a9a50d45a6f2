"""Where each architecture keeps its blocks, final norm and output head.

One table keyed by ``config.model_type`` (no ``isinstance`` ladder). Paths are dotted attribute
paths from the ``*ForCausalLM`` object. ``hidden_states[-1]`` of these models has already gone
through the final norm, which is why ee-bench decodes block outputs itself (see
:mod:`ee_bench.models.unembed`) and takes the last layer from the model's own logits.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ee_bench.errors import ModelStructureError


@dataclass(frozen=True)
class DecoderArch:
    """Dotted paths to the parts of a causal LM."""

    layers: str
    final_norm: str
    head: str
    embed: str


_LLAMA_LIKE = DecoderArch("model.layers", "model.norm", "lm_head", "model.embed_tokens")

DECODER_ARCHS: dict[str, DecoderArch] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "mixtral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,  # Gemma3ForCausalLM (270M, 1B); embedding scale lives in embed_tokens
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


def locate_decoder_parts(model: nn.Module) -> DecoderParts:
    """Find blocks, final norm, head and embeddings through :data:`DECODER_ARCHS`.

    Raises:
        ModelStructureError: for an unknown ``model_type`` or a model missing a listed part; the
            message names the supported architectures.
    """
    model_type = getattr(model.config, "model_type", None)
    supported = ", ".join(sorted(DECODER_ARCHS))
    arch = DECODER_ARCHS.get(model_type)
    if arch is None:
        raise ModelStructureError(
            f"Cannot locate the layers and final norm of model_type {model_type!r}. Supported "
            f"architectures: {supported}. Add an entry to ee_bench.models.arch.DECODER_ARCHS."
        )
    try:
        parts = DecoderParts(*(get_path(model, p) for p in (arch.layers, arch.final_norm, arch.head, arch.embed)))
    except AttributeError as exc:
        raise ModelStructureError(
            f"model_type {model_type!r} has no {exc.name or exc}; its layout differs from "
            f"ee-bench's table ({arch}). Supported architectures: {supported}."
        ) from None
    if not isinstance(parts.layers, nn.ModuleList) or len(parts.layers) == 0:
        raise ModelStructureError(f"{arch.layers} of model_type {model_type!r} is not a non-empty list of blocks")
    return parts
