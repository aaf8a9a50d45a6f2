"""Tiny random encoder-decoder translators (Marian, FSMT, T5, BART, mBART, M2M100) built from configs.

All share the offline word-level tokenizer of tests/conftest.py (vocabulary 96: ``<unk>`` 0, ``<s>``
1, ``</s>`` 2 = EOS and padding), 2 encoder and 3 decoder blocks of width 32, fixed seeds, and the
wide weights of ``conftest._sharpen`` (peaked logits, no top-1 ties); each is checked to be tiny.
``decoder_start_token_id`` is ``<s>`` (1) for every architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.conftest import WORDS, _sharpen, assert_tiny, word_tokenizer

VOCAB = 96
D_LAYERS = 3
ARCHS = ("marian", "fsmt", "t5", "bart", "mbart", "m2m_100")
_COMMON = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2, decoder_start_token_id=1)
_BART_SIZES = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=D_LAYERS, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                   dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def _config(arch: str):
    import transformers as tf

    if arch == "marian":
        return tf.MarianConfig(**_BART_SIZES, **_COMMON, decoder_vocab_size=VOCAB, scale_embedding=True)
    if arch == "bart":
        return tf.BartConfig(**_BART_SIZES, **_COMMON, forced_bos_token_id=None, forced_eos_token_id=None)
    if arch == "mbart":
        return tf.MBartConfig(**_BART_SIZES, **_COMMON, forced_eos_token_id=None)
    if arch == "m2m_100":
        return tf.M2M100Config(**_BART_SIZES, **_COMMON, scale_embedding=True)
    if arch == "fsmt":
        return tf.FSMTConfig(langs=["de", "en"], src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=32,
                             encoder_layers=2, decoder_layers=D_LAYERS, encoder_attention_heads=4,
                             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                             max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
                             activation_dropout=0.0, tie_word_embeddings=False, **_COMMON)
    if arch == "t5":
        return tf.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=D_LAYERS,  # num_decoder_layers != num_layers breaks T5 generate (cache sized by num_layers)
                           
                           num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0, tie_word_embeddings=True,
                           **_COMMON)
    raise ValueError(arch)


def build_tiny_seq2seq(arch: str, seed: int = 0):
    """A tiny ``*ForConditionalGeneration`` of architecture ``arch`` (see :data:`ARCHS`), float32, eval."""
    from transformers import AutoModelForSeq2SeqLM

    cfg = _config(arch)
    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(cfg).float().eval()
    _sharpen(model)
    if hasattr(model, "final_logits_bias"):  # a non-zero bias, so forgetting it would show
        model.final_logits_bias.normal_(0.0, 0.5)
    for key, value in _COMMON.items():
        setattr(model.generation_config, key, value)
    model.generation_config.forced_bos_token_id = model.generation_config.forced_eos_token_id = None
    assert_tiny(model)
    return model


def wrap_seq2seq(model, name: str = "tiny", **kwargs):
    from ee_bench.models.hf_seq2seq import HFSeq2SeqLM

    return HFSeq2SeqLM(model, word_tokenizer(), name=name, **kwargs)


def sources(n: int = 3) -> list[list[int]]:
    """n word-id sources of different lengths, ending in EOS (2)."""
    return [[3 + (5 * b + 7 * k) % 90 for k in range(4 + 2 * b)] + [2] for b in range(n)]


def save_tiny_marian(folder: Path, seed: int = 0) -> Path:
    """Save a tiny MarianMTModel + the word-level tokenizer to ``folder`` (a ``--model PATH`` checkpoint)."""
    model = build_tiny_seq2seq("marian", seed)
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["is_encoder_decoder"] is True
    return folder


__all__ = ["ARCHS", "D_LAYERS", "WORDS", "build_tiny_seq2seq", "save_tiny_marian", "sources", "wrap_seq2seq"]
