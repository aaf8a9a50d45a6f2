"""Where each decoder block keeps its sub-layers, and hooks that capture them (paper §6.2, Eq. 3).

A pre-norm decoder block ℓ turns its input ``h^{ℓ−1}`` (the block input; the embeddings for ℓ = 0)
into its output ``h^ℓ`` in two residual steps::

    h_attn^ℓ = h^{ℓ−1} + ATTN(h^{ℓ−1})        # the mid-stream (paper: h_attn)
    h^ℓ      = h_attn^ℓ + FFN(h_attn^ℓ)        # the block output (paper: h_ffn)

where ATTN and FFN include the block's own norms (the input norm before the module and, in Gemma-2/3,
the extra norm after it). Eq. 3 of the paper reads each term through the output head; ee-bench reads
all five vectors — block output, mid-stream, FFN output, block input, attention output — through the
model's own final norm and head (:class:`~ee_bench.models.unembed.Unembed`). The five vectors add up
exactly; the readouts do not (the final norm and the softmax are not linear).

The table :data:`SUBLAYER_ARCHS` is keyed by ``config.model_type`` and names, inside one block, the
module whose output is the attention term that is added to the residual stream, the module whose
output is the FFN term, and the norm whose input is the mid-stream:

- llama, mistral, qwen2: ``input_layernorm → self_attn → +`` then ``post_attention_layernorm → mlp → +``;
  the terms added are the outputs of ``self_attn`` and ``mlp``, and ``post_attention_layernorm``
  (the pre-FFN norm, despite its name) reads the mid-stream.
- gemma3_text, gemma3: ``input_layernorm → self_attn → post_attention_layernorm → +`` then
  ``pre_feedforward_layernorm → mlp → post_feedforward_layernorm → +``; the terms added are the
  post-normed module outputs, and ``pre_feedforward_layernorm`` reads the mid-stream.
- gpt2: ``ln_1 → attn → +`` then ``ln_2 → mlp → +`` (blocks at ``transformer.h``).

The blocks themselves are located through :func:`~ee_bench.models.arch.locate_decoder_parts`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor, nn

from ee_bench.errors import ModelStructureError

READOUTS: tuple[str, ...] = ("block_out", "mid", "ffn", "block_in", "attn")
"""The five vectors of block ℓ, in the row order of paper Table 10: h^ℓ, h_attn^ℓ, FFN(h_attn^ℓ),
h^{ℓ−1}, ATTN(h^{ℓ−1})."""

READOUT_LABELS: dict[str, str] = {
    "block_out": "block output h^ℓ",
    "mid": "mid-stream h_attn^ℓ",
    "ffn": "FFN(h_attn^ℓ)",
    "block_in": "block input h^ℓ−1",
    "attn": "ATTN(h^ℓ−1)",
}


@dataclass(frozen=True)
class SublayerArch:
    """Names of sub-modules inside one decoder block (attribute names on the block).

    Attributes:
        attn_term: module whose output is the attention term added to the residual stream.
        ffn_term: module whose output is the FFN term added to the residual stream.
        mid_norm: the norm in front of the FFN; its input is the mid-stream h_attn.
    """

    attn_term: str
    ffn_term: str
    mid_norm: str


_PRE_NORM = SublayerArch(attn_term="self_attn", ffn_term="mlp", mid_norm="post_attention_layernorm")
_GEMMA_SANDWICH = SublayerArch(attn_term="post_attention_layernorm", ffn_term="post_feedforward_layernorm",
                               mid_norm="pre_feedforward_layernorm")

SUBLAYER_ARCHS: dict[str, SublayerArch] = {
    "llama": _PRE_NORM,
    "mistral": _PRE_NORM,
    "qwen2": _PRE_NORM,
    "gemma3_text": _GEMMA_SANDWICH,
    "gemma3": _GEMMA_SANDWICH,  # Gemma3ForConditionalGeneration: same text blocks
    "gpt2": SublayerArch(attn_term="attn", ffn_term="mlp", mid_norm="ln_2"),
}


def sublayer_arch(model: nn.Module) -> SublayerArch:
    """The :data:`SUBLAYER_ARCHS` entry of a loaded causal LM.

    Raises:
        ModelStructureError: for a model_type not in the table (the message lists the supported
            ones), or a GPT-2 with cross-attention (a third residual step the table does not cover).
    """
    config = model.config
    model_type = getattr(config, "model_type", None)
    arch = SUBLAYER_ARCHS.get(model_type)
    if arch is None:
        raise ModelStructureError(
            f"Sub-layer readouts (--sublayers) do not know the block layout of model_type {model_type!r}. "
            f"Supported: {', '.join(sorted(SUBLAYER_ARCHS))}. Run without --sublayers, or add an entry "
            f"to ee_bench.models.sublayers.SUBLAYER_ARCHS."
        )
    if getattr(config, "add_cross_attention", False):
        raise ModelStructureError(
            f"model_type {model_type!r} with add_cross_attention has a cross-attention step between the "
            f"attention and the FFN; sub-layer readouts support decoder-only blocks. Run without --sublayers."
        )
    return arch


def _block_part(block: nn.Module, name: str, layer: int) -> nn.Module:
    part = getattr(block, name, None)
    if not isinstance(part, nn.Module):
        raise ModelStructureError(
            f"Block {layer} ({type(block).__name__}) has no sub-module {name!r}; its layout differs from "
            f"ee_bench.models.sublayers.SUBLAYER_ARCHS. Run without --sublayers."
        )
    return part


def _first(x):
    return x[0] if isinstance(x, tuple) else x


@contextlib.contextmanager
def capture_sublayers(layers: nn.ModuleList, arch: SublayerArch | None,
                      select: tuple[Tensor, Tensor]) -> Iterator[dict[str, dict[int, Tensor]]]:
    """Forward hooks that copy the block vectors at selected positions during one forward pass.

    Shape notation: N = selected positions, H = hidden size.

    Args:
        layers: the model's decoder blocks.
        arch: the block layout; None captures only the block outputs.
        select: (batch index (N,), position index (N,)) int64.

    Yields:
        ``store[name][ℓ]`` = (N, H) tensor in the model's dtype, for name in :data:`READOUTS`
        (only ``"block_out"`` when ``arch`` is None), filled as the forward pass runs. The hooks are
        removed on exit, also after an error.

    Raises:
        ModelStructureError: if a block lacks a sub-module the table names.
    """
    rows, cols = select
    names = READOUTS if arch is not None else ("block_out",)
    store: dict[str, dict[int, Tensor]] = {n: {} for n in names}

    def keep(name: str, layer: int, h: Tensor) -> None:
        store[name][layer] = h[rows, cols].detach()  # (B, T, H) -> (N, H), a copy

    def on_output(name: str, layer: int):
        return lambda _m, _args, out: keep(name, layer, _first(out))

    def on_input(name: str, layer: int):
        def hook(_m, args, kwargs):
            keep(name, layer, args[0] if args else kwargs["hidden_states"])
        return hook

    plan = []  # (module, kind, name, layer); resolved first so a missing module fails before any hook
    for i, block in enumerate(layers):
        plan.append((block, "out", "block_out", i))
        if arch is not None:
            plan += [(block, "in", "block_in", i),
                     (_block_part(block, arch.attn_term, i), "out", "attn", i),
                     (_block_part(block, arch.mid_norm, i), "in", "mid", i),
                     (_block_part(block, arch.ffn_term, i), "out", "ffn", i)]
    handles = []
    try:
        for module, kind, name, layer in plan:
            if kind == "out":
                handles.append(module.register_forward_hook(on_output(name, layer)))
            else:
                handles.append(module.register_forward_pre_hook(on_input(name, layer), with_kwargs=True))
        yield store
    finally:
        for h in handles:
            h.remove()
