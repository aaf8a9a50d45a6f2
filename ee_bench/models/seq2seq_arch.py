"""Where each encoder-decoder translator keeps its decoder blocks and what follows the last one.

One table keyed by ``config.model_type`` (no ``isinstance`` ladder). Paths are dotted attribute
paths from the ``*ForConditionalGeneration`` / ``FSMTForConditionalGeneration`` object; every entry
was read off the installed ``transformers`` source (5.x), ``modeling_<type>.py``:

========  ======================  ===========================  ==================  =======  =========
type      decoder blocks          final decoder norm           head                bias     T5 scale
========  ======================  ===========================  ==================  =======  =========
marian    model.decoder.layers    none (post-norm blocks)      lm_head             yes      no
bart      model.decoder.layers    none (only an *embedding*    lm_head             yes      no
                                  norm, layernorm_embedding)
mbart     model.decoder.layers    model.decoder.layer_norm     lm_head             yes      no
m2m_100   model.decoder.layers    model.decoder.layer_norm     lm_head             no       no
(NLLB)
fsmt      model.decoder.layers    none                         model.decoder.      no       no
          (time-major blocks)                                  output_projection
t5        decoder.block           decoder.final_layer_norm     lm_head             no       when
                                                                                            ``scale_decoder_outputs``
========  ======================  ===========================  ==================  =======  =========

"bias" is ``final_logits_bias`` (a (1, V) buffer added after the head); "T5 scale" is the
``d_model ** -0.5`` rescaling T5 applies before a head tied to the embeddings.

``blockwise`` marks the architectures whose blocks the early-exit loop
(:mod:`ee_bench.decoding.seq2seq_exit`) can run one at a time: all of them, whose attention modules
share one cache interface (``EncoderDecoderCache``); ``time_major`` marks FSMT's blocks, which take
(T, B, H) inputs, a boolean source-padding mask and an additive causal mask. For the loop and the
recompute KV strategy, paths inside one block: ``self_attn`` / ``cross_attn`` (the attention
modules), ``kv_proj`` (their key and value projections), ``self_attn_norm`` (the norm the
self-attention reads: mBART, M2M100 and T5 are pre-norm; None for post-norm Marian and BART, whose
self-attention reads the raw block input); ``shared_position_bias``: T5's first block computes the
relative position bias and every later block reuses it (blocks return it).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ee_bench.errors import ModelStructureError
from ee_bench.models.arch import add_to_table, blockwise_types, locate_parts


@dataclass(frozen=True)
class Seq2SeqArch:
    """Dotted paths and flags of one encoder-decoder architecture (see the module table)."""

    layers: str
    final_norm: str | None
    head: str
    logits_bias: bool
    t5_scale: bool = False
    time_major: bool = False
    blockwise: bool = False
    self_attn: str = "self_attn"
    self_attn_norm: str | None = None
    cross_attn: str = "encoder_attn"
    kv_proj: tuple[str, str] = ("k_proj", "v_proj")
    shared_position_bias: bool = False


_BART_LIKE = Seq2SeqArch("model.decoder.layers", None, "lm_head", logits_bias=True, blockwise=True)

SEQ2SEQ_ARCHS: dict[str, Seq2SeqArch] = {
    "marian": _BART_LIKE,
    "bart": _BART_LIKE,
    "mbart": Seq2SeqArch("model.decoder.layers", "model.decoder.layer_norm", "lm_head", logits_bias=True,
                         blockwise=True, self_attn_norm="self_attn_layer_norm"),
    "m2m_100": Seq2SeqArch("model.decoder.layers", "model.decoder.layer_norm", "lm_head", logits_bias=False,
                           blockwise=True, self_attn_norm="self_attn_layer_norm"),
    "fsmt": Seq2SeqArch("model.decoder.layers", None, "model.decoder.output_projection", logits_bias=False,
                        time_major=True, blockwise=True),
    "t5": Seq2SeqArch("decoder.block", "decoder.final_layer_norm", "lm_head", logits_bias=False, t5_scale=True,
                      blockwise=True, self_attn="layer.0.SelfAttention", self_attn_norm="layer.0.layer_norm",
                      cross_attn="layer.1.EncDecAttention", kv_proj=("k", "v"), shared_position_bias=True),
}


def register_seq2seq_arch(model_type: str, arch: Seq2SeqArch) -> None:
    """Teach ee-bench where a new encoder-decoder architecture keeps its parts (for plug-in packages).

    Raises:
        ValueError: if ``model_type`` is already in the table.
    """
    add_to_table(SEQ2SEQ_ARCHS, "SEQ2SEQ_ARCHS", model_type, arch)


def blockwise_seq2seq_types() -> list[str]:
    """The encoder-decoder model types the early-exit decoding loop supports, in table order."""
    return blockwise_types(SEQ2SEQ_ARCHS)


def require_blockwise(model_type: str, name: str) -> None:
    """Refuse block-by-block decoding of an architecture whose entry lacks ``blockwise``.

    Raises:
        ModelStructureError: naming the supported types and that the oracle analysis still works.
    """
    arch = SEQ2SEQ_ARCHS.get(model_type)
    if arch is None or not arch.blockwise:
        raise ModelStructureError(
            f"Early-exit decoding runs decoder blocks one at a time and supports model_type "
            f"{', '.join(blockwise_seq2seq_types())}; {name} is {model_type!r}. The oracle analysis (ee-bench run "
            f"without --kv) still works for it."
        )


class _Scale(nn.Module):
    """Multiply by a constant (T5's ``d_model ** -0.5`` before a tied head)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class BiasedHead(nn.Module):
    """``head(x) + bias``, in that order, as Marian/BART/mBART compute ``lm_logits``.

    Args:
        head: the model's ``lm_head``. bias: its ``final_logits_bias`` buffer, (1, V).
    """

    def __init__(self, head: nn.Module, bias):
        super().__init__()
        self.head = head
        self.bias = bias
        self.out_features = getattr(head, "out_features", None)

    def forward(self, x):
        return self.head(x) + self.bias.to(x.device)


@dataclass(frozen=True)
class Seq2SeqParts:
    """The located modules of one loaded encoder-decoder model.

    Attributes:
        arch: its table entry. layers: the decoder blocks. final_norm: what runs between the last
        block and the head (the final decoder norm and/or T5's scale; ``nn.Identity`` where the
        model has none). head: the head, with ``final_logits_bias`` folded in where the model adds it.
    """

    arch: Seq2SeqArch
    layers: nn.ModuleList
    final_norm: nn.Module
    head: nn.Module


def locate_seq2seq_parts(model: nn.Module) -> Seq2SeqParts:
    """Find decoder blocks, final decoder norm and head through :data:`SEQ2SEQ_ARCHS`.

    Raises:
        ModelStructureError: for an unknown ``model_type`` or a model missing a listed part; the
            message names the supported architectures.
    """
    cfg = model.config
    _, arch, parts = locate_parts(
        model, SEQ2SEQ_ARCHS, lambda a: {"layers": a.layers, "head": a.head, "final_norm": a.final_norm,
                                         "bias": "final_logits_bias" if a.logits_bias else None},
        unknown="decoder layers of encoder-decoder model_type {model_type}. Add an entry to "
                "ee_bench.models.seq2seq_arch.SEQ2SEQ_ARCHS.")
    layers, head, norm, bias = parts["layers"], parts["head"], parts["final_norm"], parts["bias"]
    steps: list[nn.Module] = [norm] if norm is not None else []
    # transformers 5 names the flag scale_decoder_outputs; older configs tie it to tie_word_embeddings
    if arch.t5_scale and getattr(cfg, "scale_decoder_outputs", getattr(cfg, "tie_word_embeddings", False)):
        steps.append(_Scale(cfg.d_model ** -0.5))
    final = nn.Identity() if not steps else steps[0] if len(steps) == 1 else nn.Sequential(*steps)
    return Seq2SeqParts(arch, layers, final, BiasedHead(head, bias) if bias is not None else head)
