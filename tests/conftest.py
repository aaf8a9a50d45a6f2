"""Shared fixtures: tiny random decoders (Llama and GPT-2) with an offline word-level tokenizer.

The models are built from configs in memory (no download), with fixed seeds, and checked to be
tiny (< 1M parameters). Their weights are drawn wider than the default 0.02-std init so that the
logits are peaked and top-1 ties (which float rounding could break either way) do not occur.
"""

from __future__ import annotations

import pytest
import torch

MAX_TINY_PARAMS = 1_000_000
WORDS = [f"w{i}" for i in range(93)]  # + <unk>, <s>, </s> = a vocabulary of 96


def word_tokenizer():
    """A whitespace word-level tokenizer over :data:`WORDS`; ``</s>`` (id 2) is EOS and padding."""
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="</s>")


def assert_tiny(model: torch.nn.Module) -> int:
    n = sum(p.numel() for p in model.parameters())
    assert n < MAX_TINY_PARAMS, f"tiny test model has {n} parameters"
    return n


def _sharpen(model: torch.nn.Module, std: float = 0.3) -> None:
    """Wide random matrices; norm gains in [0.5, 1.5] and small biases, so no norm is idempotent."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, std)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
            else:
                p.uniform_(0.5, 1.5)


def build_tiny_llama(seed: int = 0):
    """LlamaForCausalLM: 4 blocks, hidden 32, 4 heads (2 KV heads), vocab 96; about 40k parameters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).float().eval()
    _sharpen(model)
    assert_tiny(model)
    return model


def build_tiny_gpt2(seed: int = 0):
    """GPT2LMHeadModel: 3 blocks, hidden 32, 4 heads, vocab 96 (tied head); about 45k parameters."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=96, n_positions=128, n_embd=32, n_layer=3, n_head=4,
                     bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).float().eval()
    _sharpen(model)
    assert_tiny(model)
    return model


def wrap(model, name: str):
    from ee_bench.models.hf_causal import HFCausalLM

    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 2
    return HFCausalLM(model, word_tokenizer(), name=name)


@pytest.fixture(scope="module")
def tiny_llama_lm():
    """:class:`HFCausalLM` around :func:`build_tiny_llama`."""
    return wrap(build_tiny_llama(), "tiny-llama")


@pytest.fixture(scope="module")
def tiny_gpt2_lm():
    """:class:`HFCausalLM` around :func:`build_tiny_gpt2`."""
    return wrap(build_tiny_gpt2(), "tiny-gpt2")


@pytest.fixture(params=["llama", "gpt2"])
def tiny_lm(request, tiny_llama_lm, tiny_gpt2_lm):
    """Each tiny decoder in turn."""
    return {"llama": tiny_llama_lm, "gpt2": tiny_gpt2_lm}[request.param]
