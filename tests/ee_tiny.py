"""A tiny random Llama with a byte-level tokenizer, built offline, for the early-exit tests."""

from __future__ import annotations

import torch

from ee_bench.models.hf_causal import HFCausalLM

N_LAYERS = 4


def tiny_tokenizer():
    """Byte-level BPE with no merges: 256 byte tokens + <eos> (id 256)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["<eos>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


def tiny_llama(seed: int = 0, attn: str = "sdpa", dtype=torch.float32) -> HFCausalLM:
    """4 blocks, hidden 32, 4 heads (2 key/value heads), vocab 257; about 60k parameters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=256, pad_token_id=256, bos_token_id=None, tie_word_embeddings=False)
    cfg._attn_implementation = attn
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(dtype)
    with torch.no_grad():  # sharper logits than the 0.02-std init, so greedy has no near-ties
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > 200_000:
        raise RuntimeError(f"tiny model is not tiny: {n_params} parameters")
    model.generation_config.eos_token_id = 256
    model.generation_config.pad_token_id = 256
    return HFCausalLM(model, tiny_tokenizer(), name="tiny-llama")


PROMPTS = ["Die Ware hat", "unter 20 Euro gekostet, sagte er.", "ja"]


def prompt_ids(model: HFCausalLM) -> list[list[int]]:
    return [model.encode_prompt(p) for p in PROMPTS]
