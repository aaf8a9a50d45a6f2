"""FLOPs and bytes of a decoder block and of the head, from a model's config alone, and the roofline
estimate of their time on a documented accelerator (issue 22).

Llama-style pre-norm block (llama, mistral, qwen2; H = hidden size, I = intermediate size, n_h / n_kv =
attention / key-value heads, D = H / n_h, c = cached tokens, k = new tokens, s = bytes per parameter):

- FLOPs (2 per multiply-add): k · [2·(2H² + 2·H·n_kv·D) + 2·3·H·I] + 4 · k · n_h · D · (c + k)
  (q, k, v, o projections; gated MLP; attention scores and weighted sum);
- bytes: s · (2H² + 2·H·n_kv·D + 3·H·I + 2H) weights read once + s · 2 · n_kv · D · (c + k) cached keys/values;
- head over k rows (final norm + LM head): FLOPs 2·k·H·V, bytes s · (V·H + H).

Roofline time = max(FLOPs / peak FLOP/s, bytes / bandwidth): a lower bound that ignores kernel launch
and framework overhead, which dominate small decoding steps on a GPU (so it flatters early exit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ee_bench.costs.profile import TOKEN_COUNTS, CostProfile
from ee_bench.errors import EEBenchError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Accelerator:
    """Peak figures of one accelerator, from its vendor datasheet.

    Attributes:
        name: the ``--roofline`` spelling. peak_flops: dtype → dense FLOP/s (no sparsity).
        bandwidth: memory bandwidth, bytes/s. source: where the figures come from.
    """

    name: str
    peak_flops: dict[str, float]
    bandwidth: float
    source: str


ACCELERATORS = {
    "a100-80gb": Accelerator(
        "a100-80gb", {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12}, 2039e9,
        "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM): BF16/FP16 Tensor Core 312 TFLOPS dense "
        "(624 with sparsity), FP32 19.5 TFLOPS, GPU memory bandwidth 2,039 GB/s"),
    "h100-80gb": Accelerator(
        "h100-80gb", {"bfloat16": 989.4e12, "float16": 989.4e12, "float32": 67e12}, 3.35e12,
        "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM 80GB): BF16/FP16 Tensor Core 1,979 TFLOPS with "
        "sparsity (989.4 dense), FP32 67 TFLOPS, GPU memory bandwidth 3.35 TB/s"),
}


def accelerator(name: str) -> Accelerator:
    """The documented accelerator ``name``.

    Raises:
        EEBenchError: for an unknown name (the message lists the known ones).
    """
    if name not in ACCELERATORS:
        raise EEBenchError(f"unknown --roofline device {name!r}; known: {', '.join(sorted(ACCELERATORS))} "
                           f"(peak FLOP/s and bandwidth from NVIDIA's datasheets, docs/definitions.md).")
    return ACCELERATORS[name]


@dataclass(frozen=True)
class Shape:
    """The sizes of a Llama-style decoder that set its cost (from ``config.json``)."""

    n_layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def block_params(self) -> int:
        H, kvd = self.hidden, self.kv_heads * self.head_dim
        return 2 * H * H + 2 * H * kvd + 3 * H * self.intermediate + 2 * H

    @property
    def head_params(self) -> int:
        return self.vocab * self.hidden + self.hidden


def shape_of(config: Mapping[str, Any]) -> Shape:
    """The :class:`Shape` of a Hugging Face config mapping (``num_hidden_layers``, ``hidden_size``, …).

    Raises:
        EEBenchError: if a size is missing or not a positive whole number.
    """
    keys = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")
    bad = [k for k in keys if not isinstance(config.get(k), int) or config[k] < 1]
    if bad:
        raise EEBenchError(f"the model config lacks {', '.join(bad)} (positive whole numbers); FLOPs and bytes "
                           f"need a Llama-style config.json.")
    kv = config.get("num_key_value_heads") or config["num_attention_heads"]
    return Shape(config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"],
                 config["num_attention_heads"], int(kv), config["vocab_size"])


def architecture_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The shapes a cost profile depends on, named as in a results file's ``model_info`` (``model_type``,
    ``n_layers``, ``hidden_size``, ``vocab_size``) plus the block's inner sizes.

    Raises:
        EEBenchError: if a size is missing (:func:`shape_of`).
    """
    s = shape_of(config)
    return {"model_type": str(config.get("model_type") or ""), "n_layers": s.n_layers, "hidden_size": s.hidden,
            "intermediate_size": s.intermediate, "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads,
            "vocab_size": s.vocab}


def block_flops(s: Shape, k: int = 1, context: int = 0) -> float:
    """FLOPs of one block over ``k`` new tokens with ``context`` cached (module docstring)."""
    H, kvd = s.hidden, s.kv_heads * s.head_dim
    return k * (2 * (2 * H * H + 2 * H * kvd) + 6 * H * s.intermediate) + 4 * k * s.heads * s.head_dim * (context + k)


def block_bytes(s: Shape, dtype: str, k: int = 1, context: int = 0) -> float:
    """Bytes one block reads over ``k`` new tokens with ``context`` cached (weights + keys/values)."""
    b = DTYPE_BYTES[dtype]
    return b * (s.block_params + 2 * s.kv_heads * s.head_dim * (context + k))


def head_flops(s: Shape, k: int = 1) -> float:
    return 2.0 * k * s.hidden * s.vocab


def head_bytes(s: Shape, dtype: str) -> float:
    return float(DTYPE_BYTES[dtype] * s.head_params)


def cost_figures(s: Shape, dtype: str, context: int) -> tuple[dict[str, float], dict[str, float]]:
    """(flops, bytes) of one block (k = 1 at ``context``) and of the head (one row), for a profile."""
    return ({"block": block_flops(s, 1, context), "head": head_flops(s, 1)},
            {"block": block_bytes(s, dtype, 1, context), "head": head_bytes(s, dtype)})


def roofline_ms(flops: float, nbytes: float, acc: Accelerator, dtype: str) -> float:
    """max(FLOPs / peak, bytes / bandwidth) in ms."""
    return 1e3 * max(flops / acc.peak_flops[dtype], nbytes / acc.bandwidth)


def roofline_profile(model: str, config: Mapping[str, Any], acc: Accelerator, dtype: str,
                     contexts: tuple[int, ...] = (128, 512), topk: int = 16):
    """An estimated :class:`~ee_bench.costs.profile.CostProfile` (source ``estimated-roofline:<device>``).

    Each figure is :func:`roofline_ms` of its FLOPs and bytes: blocks at k = 1, 2, 4, 8 and each context,
    prefill blocks over each context, heads over k rows, checks (``full``: a head row plus the softmax
    over V; ``topk:K``: K head rows' weights; ``state``: three H-vectors), KV fills per (token, layer)
    (``copy``: read and write 2·n_kv·D values; ``recompute``: the k/v projections).

    Raises:
        EEBenchError: for a dtype without a peak figure, or a config without the sizes (:func:`shape_of`).
    """
    if dtype not in acc.peak_flops:
        raise EEBenchError(f"no peak FLOP/s for dtype {dtype!r} on {acc.name}; use one of {', '.join(acc.peak_flops)}.")
    s, b = shape_of(config), DTYPE_BYTES[dtype]
    r = lambda f, n: roofline_ms(f, n, acc, dtype)  # noqa: E731
    kvd = s.kv_heads * s.head_dim
    blocks = {c: {k: r(block_flops(s, k, c), block_bytes(s, dtype, k, c)) for k in TOKEN_COUNTS} for c in contexts}
    prefill = {c: r(block_flops(s, c, 0), block_bytes(s, dtype, c, 0)) for c in contexts}
    heads = {k: r(head_flops(s, k), head_bytes(s, dtype)) for k in TOKEN_COUNTS}
    checks = {"full": r(head_flops(s, 1) + 5 * s.vocab, head_bytes(s, dtype) + 4 * s.vocab),
              f"topk:{topk}": r(2 * s.hidden * topk, b * s.hidden * (topk + 1)),
              "state": r(6 * s.hidden, 3 * b * s.hidden)}
    kv = {"copy": r(0, 2 * 2 * kvd * b), "recompute": r(4 * s.hidden * kvd, b * (2 * s.hidden * kvd + 2 * kvd))}
    flops, nbytes = cost_figures(s, dtype, contexts[0])
    return CostProfile(model=model, device=acc.name, dtype=dtype, threads=1, source=f"estimated-roofline:{acc.name}",
                       n_layers=s.n_layers, block_ms=blocks, prefill_block_ms=prefill, head_ms=heads, check_ms=checks,
                       kv_ms=kv, flops=flops, bytes=nbytes, versions={}, architecture=architecture_of(config),
                       notes=f"roofline estimate: max(FLOPs / peak, bytes / bandwidth); {acc.source}")
