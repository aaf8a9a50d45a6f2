"""A key/value store with per-row, per-position writes, for block-by-block decoding.

Early exit needs what ``transformers``' ``DynamicCache`` cannot give: a block must be able to write
the keys and values of *some* batch rows (the tokens still running) at *some* positions (the new
token, plus any tokens a KV strategy catches up), while the other rows keep their own state.
:class:`KVStore` preallocates ``(B, H_kv, T_max, D)`` tensors per layer and writes by index;
:meth:`KVStore.adapter` hands a block an object with ``DynamicCache``'s ``update`` signature, so the
model's own attention module (``LlamaAttention.forward``) runs unchanged on top of it.

Shape notation: B = batch rows, b = rows running in one call, q = query slots per row,
H_kv = key/value heads, D = head size, T_max = prompt width + max_gen_toks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SlotIndex:
    """Which rows and positions one block call computes.

    Attributes:
        rows: (b,) int64 batch rows.
        cols: (b, q) int64 cache columns (absolute positions in the left-padded sequence).
        valid: (b, q) bool; False marks padding slots (nothing is written for them).
        width: number of cache columns the call attends over (max column + 1).
        all_rows: True when ``rows`` is 0..B−1 in order (reads can then use a view, not a gather).
    """

    rows: Tensor
    cols: Tensor
    valid: Tensor
    width: int
    all_rows: bool


class KVStore:
    """Preallocated per-layer keys and values.

    Args:
        n_layers: L. batch: B. kv_heads: H_kv. head_dim: D. max_len: T_max.
        dtype, device: of the model.

    Attributes:
        keys, values: L tensors (B, H_kv, T_max, D); columns never written stay zero.
        written: (L, B, T_max) bool, which (layer, row, column) entries hold real keys/values; the
            tests and the KV strategies read it.
    """

    def __init__(self, n_layers: int, batch: int, kv_heads: int, head_dim: int, max_len: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (batch, kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.written = torch.zeros((n_layers, batch, max_len), dtype=torch.bool, device=device)

    def write(self, layer: int, rows: Tensor, cols: Tensor, k: Tensor, v: Tensor) -> None:
        """Store keys/values of n (row, column) pairs.

        Args:
            rows, cols: (n,) int64. k, v: (n, H_kv, D).
        """
        self.keys[layer][rows, :, cols] = k.to(self.keys[layer].dtype)
        self.values[layer][rows, :, cols] = v.to(self.values[layer].dtype)
        self.written[layer, rows, cols] = True

    def read(self, layer: int, index: SlotIndex) -> tuple[Tensor, Tensor]:
        """Keys and values of the called rows up to ``index.width``: each (b, H_kv, width, D)."""
        if index.all_rows:
            return self.keys[layer][:, :, : index.width], self.values[layer][:, :, : index.width]
        return self.keys[layer][index.rows, :, : index.width], self.values[layer][index.rows, :, : index.width]

    def copy_layer(self, src: int, dst: int, rows: Tensor, cols: Tensor) -> None:
        """Copy the keys/values of n (row, column) pairs from layer ``src`` to layer ``dst``."""
        self.write(dst, rows, cols, self.keys[src][rows, :, cols], self.values[src][rows, :, cols])

    def adapter(self, index: SlotIndex) -> _StoreAdapter:
        """An object with ``Cache.update(key_states, value_states, layer_idx, ...)`` for one call."""
        return _StoreAdapter(self, index)


class _StoreAdapter:
    """What a ``transformers`` attention module sees as its cache for one block call.

    ``update`` receives (b, H_kv, q, D) keys/values of the called slots (after rotary), writes the
    valid ones into the store and returns the stored (b, H_kv, width, D) keys/values of those rows.
    """

    is_compileable = False

    def __init__(self, store: KVStore, index: SlotIndex):
        self.store = store
        self.index = index
        valid = index.valid
        self._rows = index.rows.unsqueeze(1).expand_as(valid)[valid]  # (n,)
        self._cols = index.cols[valid]  # (n,)
        self._valid = valid

    def update(self, key_states: Tensor, value_states: Tensor, layer_idx: int, *args, **kwargs) -> tuple[Tensor, Tensor]:
        k = key_states.transpose(1, 2)[self._valid]  # (n, H_kv, D)
        v = value_states.transpose(1, 2)[self._valid]
        self.store.write(layer_idx, self._rows, self._cols, k, v)
        return self.store.read(layer_idx, self.index)
