"""Tiny random encoder classifiers and a word-level tokenizer, built offline from configs (shared by the
encoder, joint-training and similarity tests)."""

from __future__ import annotations

import torch
import transformers as tf

WORDS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "film", "was", "very", "a", "plot"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_PARAMS = 200_000

_COMMON = dict(vocab_size=len(SPECIALS) + len(WORDS), hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
               intermediate_size=32, max_position_embeddings=64, num_labels=2, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)


def tiny_config(kind: str, n_layers: int = 3, **overrides):
    """A tiny config of ``kind`` (bert, roberta, electra, mpnet, distilbert)."""
    common = {**_COMMON, "num_hidden_layers": n_layers, **overrides}
    if kind == "bert":
        return tf.BertConfig(**common, pad_token_id=0)
    if kind == "roberta":
        return tf.RobertaConfig(**common, pad_token_id=0)
    if kind == "electra":
        return tf.ElectraConfig(**common, embedding_size=8, pad_token_id=0)
    if kind == "mpnet":
        return tf.MPNetConfig(**common, pad_token_id=0)
    if kind == "distilbert":
        return tf.DistilBertConfig(vocab_size=common["vocab_size"], dim=16, n_layers=n_layers, n_heads=2, hidden_dim=32,
                                   max_position_embeddings=64, num_labels=2, dropout=0.0, attention_dropout=0.0,
                                   seq_classif_dropout=0.0, pad_token_id=0)
    raise ValueError(kind)


def tiny_model(kind: str, n_layers: int = 3, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = tf.AutoModelForSequenceClassification.from_config(tiny_config(kind, n_layers, **overrides)).eval()
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMS:
        raise AssertionError(f"fixture is not tiny: {n} parameters")
    return model


def tiny_tokenizer():
    """Word-level fast tokenizer: ``[CLS] a [SEP] (b [SEP])``, padding with [PAD] = id 0."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                      sep_token="[SEP]", mask_token="[MASK]", model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def toy_rows(n: int, seed: int = 0) -> list[dict]:
    """A separable sentiment toy set: label 1 sentences use good/great/fine/nice, label 0 bad/awful/poor/sad."""
    g = torch.Generator().manual_seed(seed)
    pos, neg, filler = WORDS[:4], WORDS[4:8], WORDS[8:]
    rows = []
    for i in range(n):
        label = i % 2
        words = pos if label else neg
        k = int(torch.randint(3, 7, (1,), generator=g))
        toks = [filler[int(torch.randint(len(filler), (1,), generator=g))] if j % 2 else
                words[int(torch.randint(len(words), (1,), generator=g))] for j in range(k)]
        rows.append({"sentence": " ".join(toks), "label": label})
    return rows
