"""Running a decoder's blocks one at a time, on any subset of rows and positions.

:class:`BlockExecutor` reuses the model's own pieces — its embedding, each ``*DecoderLayer.forward``
(input norm, attention through the configured ``attn_implementation``, MLP), its rotary embedding
(``model.model.rotary_emb``) and its ``apply_rotary_pos_emb`` — and replaces only the cache
(:class:`~ee_bench.decoding.kv_store.KVStore`) and the mask (built here like
``transformers.masking_utils.create_causal_mask``: causal + left padding, as a 4-D mask).

Supported architectures: those marked ``blockwise`` in the causal family's one table
(:data:`~ee_bench.models.arch.DECODER_ARCHS`: llama (SmolLM2, Llama 2/3), mistral, qwen2 and gemma3_text)
— pre-norm blocks with ``input_layernorm``, ``self_attn.{k,v}_proj`` and rotary positions. Gemma-3
adds what its own ``Gemma3TextModel.forward`` does: an embedding scale (inside ``embed_tokens``), a
per-head key norm (``self_attn.k_norm``) and two kinds of layer (``config.layer_types``): local
``sliding_attention`` layers with their own rotary base and a window of ``config.sliding_window``
tokens (key k is visible to query q iff q − window < k ≤ q, as
``transformers.masking_utils.sliding_window_overlay``), and global ``full_attention`` layers. So
:meth:`BlockExecutor.rope` and :meth:`BlockExecutor.mask` return one entry per layer type, and
:meth:`BlockExecutor.run_layer` picks the block's. For mistral and qwen2, whose window is not per
layer type here, a sequence longer than the window is refused. Anything else raises
:class:`~ee_bench.errors.ModelStructureError`.

Shape notation: B = batch rows, b = rows in one call, q = query slots per row, H = hidden size,
H_kv = key/value heads, D = head size, W = attended cache columns.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from ee_bench.decoding.kv_store import KVStore, SlotIndex
from ee_bench.errors import ModelStructureError
from ee_bench.models.arch import DECODER_ARCHS, blockwise_model_types, get_path

SUPPORTED_ATTENTION = ("sdpa", "eager")


def take_rows(value, keep: Tensor):
    """The rows ``keep`` ((b,) bool or int64) of a :meth:`BlockExecutor.mask` or :meth:`BlockExecutor.rope`
    result: a tensor, a (cos, sin) pair, a per-layer-type dict of either, or None (kept as None)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {t: take_rows(v, keep) for t, v in value.items()}
    if isinstance(value, tuple):
        return tuple(v[keep] for v in value)
    return value[keep]


class BlockExecutor:
    """Block-by-block execution of one loaded causal LM.

    Args:
        wrapper: an :class:`~ee_bench.models.hf_causal.HFCausalLM`.

    Raises:
        ModelStructureError: for an architecture or attention implementation this runner does not
            support; the message lists the supported ones.
    """

    def __init__(self, wrapper):
        cfg = wrapper.model.config
        arch = DECODER_ARCHS.get(cfg.model_type)
        if arch is None or not arch.blockwise:
            raise ModelStructureError(
                f"Early-exit decoding runs blocks one at a time and supports model_type "
                f"{', '.join(blockwise_model_types())}; {wrapper.name} is {cfg.model_type!r}. The oracle "
                f"analysis (ee-bench run without --kv) still works for it."
            )
        impl = getattr(cfg, "_attn_implementation", None) or "eager"
        if impl not in SUPPORTED_ATTENTION:
            raise ModelStructureError(
                f"Early-exit decoding needs attn_implementation sdpa or eager (4-D masks); {wrapper.name} "
                f"uses {impl!r}. Load it with --model_args attn_implementation=sdpa."
            )
        self.wrapper = wrapper
        self.config = cfg
        self.attn_impl = impl
        self.layers = wrapper.parts.layers
        self.embed = wrapper.parts.embed
        self.unembed = wrapper.unembed
        self.n_layers = len(self.layers)
        self.rotary = get_path(wrapper.model, arch.rotary)
        module = sys.modules[type(self.layers[0]).__module__]
        self._rotate_half = module.rotate_half
        attn = self.layers[0].self_attn
        self.head_dim = int(attn.head_dim)
        self.kv_heads = int(cfg.num_key_value_heads)
        self.dtype = next(wrapper.model.parameters()).dtype
        self.device = wrapper.device
        window = getattr(cfg, "sliding_window", None)
        if cfg.model_type == "qwen2" and not getattr(cfg, "use_sliding_window", False):
            window = None
        # Gemma-3: local (sliding) and global layers, each with its own rotary table and mask
        self.per_layer_type = cfg.model_type == "gemma3_text"
        self.layer_types = list(cfg.layer_types) if self.per_layer_type else ["full_attention"] * self.n_layers
        self.local_window = int(window) if self.per_layer_type and window else None
        self.sliding_window = None if self.per_layer_type else window  # refused beyond, see check_length

    def check_length(self, total: int) -> None:
        """Refuse sequences longer than a sliding window (the mask here is plain causal).

        Raises:
            ModelStructureError: if ``total`` tokens exceed the model's sliding window.
        """
        if self.sliding_window is not None and total > self.sliding_window:
            raise ModelStructureError(
                f"{self.wrapper.name} uses sliding-window attention ({self.sliding_window} tokens) and this "
                f"run needs {total}; early-exit decoding only builds full causal masks. Shorten the "
                f"prompts or max_gen_toks."
            )

    def new_store(self, batch: int, max_len: int) -> KVStore:
        """An empty (L, B, H_kv, T_max, D) store for this model."""
        return KVStore(self.n_layers, batch, self.kv_heads, self.head_dim, max_len, self.dtype, self.device)

    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor] | dict[str, tuple[Tensor, Tensor]]:
        """Rotary (cos, sin) for integer positions (b, q) → each (b, q, D), the model's own rotary.

        Returns:
            one (cos, sin) pair; for a model with per-layer-type rotary tables (Gemma-3), a dict
            ``{layer type: (cos, sin)}`` that :meth:`run_layer` picks from.
        """
        probe = torch.empty(0, dtype=self.dtype, device=self.device)
        if self.per_layer_type:
            return {t: self.rotary(probe, positions, t) for t in set(self.layer_types)}
        return self.rotary(probe, position_ids=positions)

    def _pick(self, layer: int, value):
        """The entry of a per-layer-type :meth:`rope` / :meth:`mask` result for block ``layer``."""
        return value[self.layer_types[layer]] if isinstance(value, dict) else value

    def mask(self, index: SlotIndex, key_real: Tensor) -> Tensor | None | dict[str, Tensor | None]:
        """4-D attention mask for one call, or None when every key is visible to every query.

        Query slot (r, s) at column c may see key column k iff k ≤ c and column k of row r is a real
        token (not left padding); every slot may see its own column, so a padding query attends to
        itself rather than to nothing (which would make NaNs that end up in the cache). A model with
        local layers (Gemma-3) gets a dict ``{"full_attention": …, "sliding_attention": …}``, the local
        mask also requiring k > c − window (columns are contiguous token positions: padding is on the left).

        Args:
            index: the call's rows and columns.
            key_real: (B, T_max) bool, False on left-padding columns.

        Returns:
            (b, 1, q, W) bool for sdpa, or additive float (0 / dtype min) for eager; None when
            q = 1 and nothing is masked.
        """
        k = torch.arange(index.width, device=self.device)
        qc = index.cols.unsqueeze(-1)  # (b, q, 1)
        real = key_real[index.rows, : index.width].unsqueeze(1)  # (b, 1, W)
        if self.local_window is not None:
            full = self._as_mask(((k <= qc) & real) | (k == qc), index)
            local = self._as_mask(((k <= qc) & (k > qc - self.local_window) & real) | (k == qc), index)
            return {"full_attention": full, "sliding_attention": local}
        return self._as_mask(((k <= qc) & real) | (k == qc), index)

    def _as_mask(self, allowed: Tensor, index: SlotIndex) -> Tensor | None:
        """(b, q, W) bool → the attention implementation's 4-D mask, None when nothing is masked at q = 1."""
        if index.cols.shape[1] == 1 and bool(allowed.all()):
            return None
        allowed = allowed.unsqueeze(1)  # (b, 1, q, W)
        if self.attn_impl == "sdpa":
            return allowed
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        return torch.where(allowed, zero, torch.finfo(self.dtype).min)

    def run_layer(self, layer: int, hidden: Tensor, index: SlotIndex, store: KVStore,
                  mask: Tensor | None, rope: tuple[Tensor, Tensor]) -> Tensor:
        """Run block ``layer`` on (b, q, H) inputs; valid slots' keys/values go into ``store``.

        Returns:
            (b, q, H) block outputs h^layer.
        """
        out = self.layers[layer](
            hidden, attention_mask=self._pick(layer, mask), position_ids=None, cache=store.adapter(index),
            use_cache=True, position_embeddings=self._pick(layer, rope),
        )
        return out[0] if isinstance(out, tuple) else out

    def project_kv(self, layer: int, hidden: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Block ``layer``'s own keys and values of given inputs, without attention or MLP.

        ``k = RoPE(k_proj(input_layernorm(h)))``, ``v = v_proj(input_layernorm(h))`` — CALM's state
        propagation (paper §6 "-c" variant); Gemma-3 normalises each key head (``self_attn.k_norm``)
        before RoPE, with the block's own rotary table.

        Args:
            layer: the block. hidden: (n, H) inputs. positions: (n,) int64 rotary positions.

        Returns:
            keys, values: each (n, H_kv, D).
        """
        blk = self.layers[layer]
        n = hidden.shape[0]
        x = blk.input_layernorm(hidden.unsqueeze(1))  # (n, 1, H)
        k = blk.self_attn.k_proj(x).view(n, 1, self.kv_heads, self.head_dim)  # (n, 1, H_kv, D)
        v = blk.self_attn.v_proj(x).view(n, 1, self.kv_heads, self.head_dim)
        k_norm = getattr(blk.self_attn, "k_norm", None)
        if k_norm is not None:
            k = k_norm(k)
        cos, sin = self._pick(layer, self.rope(positions.unsqueeze(1)))  # (n, 1, D)
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # broadcast over heads
        k = k * cos + self._rotate_half(k) * sin
        return k[:, 0], v[:, 0]
