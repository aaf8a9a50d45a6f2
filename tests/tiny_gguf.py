"""A tiny Llama-architecture GGUF file written with the ``gguf`` package, for offline tests.

Byte-level BPE tokenizer (the 256 byte symbols, four merges spelling "hello", three special
tokens, padding to 288 entries), a ChatML chat template, and Q8_0-quantised matrices (so loading it
really dequantises), F32 norms. About 28k parameters.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
from tokenizers.pre_tokenizers import ByteLevel

SPECIAL = ("<|endoftext|>", "<|im_end|>", "<|im_start|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_tiny_llama_gguf(path: Path, hidden: int = 32, inter: int = 64, layers: int = 2, heads: int = 2,
                          kv_heads: int = 1, vocab: int = 288, seed: int = 0) -> Path:
    """Write the tiny model to ``path`` and return it. Matrix sizes must be multiples of 32 (Q8_0 blocks)."""
    rng = np.random.default_rng(seed)
    tokens = sorted(ByteLevel.alphabet()) + ["he", "ll", "hell", "hello", *SPECIAL]
    tokens += [f"<extra_{i}>" for i in range(vocab - len(tokens))]
    types = [3 if t in SPECIAL else 1 for t in tokens]  # 3 = control token
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hidden // heads)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["h e", "l l", "he ll", "hell o"])
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_chat_template(CHAT_TEMPLATE)

    def q8(name: str, shape: tuple[int, int]) -> None:
        x = (rng.standard_normal(shape) * 0.2).astype(np.float32)
        q8_0 = gguf.GGMLQuantizationType.Q8_0
        w.add_tensor(name, gguf.quants.quantize(x, q8_0), raw_dtype=q8_0)

    def norm(name: str) -> None:
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))

    head_dim = hidden // heads
    q8("token_embd.weight", (vocab, hidden))
    for i in range(layers):
        norm(f"blk.{i}.attn_norm.weight")
        q8(f"blk.{i}.attn_q.weight", (heads * head_dim, hidden))
        q8(f"blk.{i}.attn_k.weight", (kv_heads * head_dim, hidden))
        q8(f"blk.{i}.attn_v.weight", (kv_heads * head_dim, hidden))
        q8(f"blk.{i}.attn_output.weight", (hidden, heads * head_dim))
        norm(f"blk.{i}.ffn_norm.weight")
        q8(f"blk.{i}.ffn_gate.weight", (inter, hidden))
        q8(f"blk.{i}.ffn_up.weight", (inter, hidden))
        q8(f"blk.{i}.ffn_down.weight", (hidden, inter))
    norm("output_norm.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
