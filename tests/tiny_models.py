"""Every tiny model, tokenizer and checkpoint the tests use, built offline from configs (no download).

One module, one parameter limit (:data:`MAX_TINY_PARAMS`): each builder checks it with :func:`assert_tiny`.

- Decoders in memory: :func:`build_tiny_llama` / :func:`build_tiny_gpt2` (word-level tokenizer, weights
  widened so top-1 ties do not occur), :func:`tiny_llama` (byte-level tokenizer, for early-exit decoding),
  :func:`tiny_llama_mc` (byte-level BPE with merges, for multiple choice), :func:`tiny_gemma3_text`,
  :func:`tiny_gemma3_bytes` (byte-level, for early-exit decoding); gates :class:`NeverGate`, :class:`AlwaysGate`.
- Checkpoints on disk: :func:`save_tiny_llama` (+ :func:`write_tiny_task`), :func:`write_tiny_llama_gguf`.
- Encoder-decoders: :func:`build_tiny_seq2seq` (marian, fsmt, t5, bart, mbart, m2m_100), :func:`save_tiny_marian`.
- Encoders: :func:`tiny_encoder` (bert, roberta, electra, mpnet, distilbert) with :func:`encoder_tokenizer`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ee_bench.exits.gates import Gate, GateObservation

MAX_TINY_PARAMS = 200_000


def assert_tiny(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``; raises if it exceeds :data:`MAX_TINY_PARAMS`."""
    n = sum(p.numel() for p in model.parameters())
    if n >= MAX_TINY_PARAMS:
        raise AssertionError(f"tiny test model has {n} parameters (limit {MAX_TINY_PARAMS})")
    return n



# ---------------------------------------------------------------- decoders, word-level tokenizer
DECODER_WORDS = [f"w{i}" for i in range(93)]  # + <unk>, <s>, </s> = a vocabulary of 96


def word_tokenizer():
    """A whitespace word-level tokenizer over :data:`DECODER_WORDS`; ``</s>`` (id 2) is EOS and padding."""
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(DECODER_WORDS)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="</s>")


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


def tiny_variant(model_type: str):
    """:func:`build_tiny_llama`'s sizes under another pre-norm architecture (qwen2, mistral), wrapped; seed 0."""
    from transformers import AutoConfig, AutoModelForCausalLM

    dims = {k: getattr(build_tiny_llama().config, k) for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **dims, tie_word_embeddings=False)).eval()
    assert_tiny(model)
    return wrap(model, f"tiny-{model_type}")


# ---------------------------------------------------------------- decoders, byte-level tokenizer
N_LAYERS = 4


def byte_tokenizer():
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


def tiny_llama(seed: int = 0, attn: str = "sdpa", dtype=torch.float32) -> "HFCausalLM":  # noqa: F821
    """4 blocks, hidden 32, 4 heads (2 key/value heads), vocab 257; about 60k parameters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=256, pad_token_id=256, bos_token_id=None, tie_word_embeddings=False)
    cfg._attn_implementation = attn
    torch.manual_seed(seed)
    return _byte_lm(LlamaForCausalLM(cfg).to(dtype), "tiny-llama")


def tiny_gemma3_bytes(attn: str = "sdpa", seed: int = 0) -> "HFCausalLM":  # noqa: F821
    """:data:`GEMMA3_TEXT` (3 blocks: local, local, global; sliding window 4) over the byte-level tokenizer
    (vocab 257), for early-exit decoding."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(**{**GEMMA3_TEXT, "vocab_size": 257}, eos_token_id=256, pad_token_id=256,
                           bos_token_id=None, max_position_embeddings=256)
    cfg._attn_implementation = attn
    torch.manual_seed(seed)
    return _byte_lm(AutoModelForCausalLM.from_config(cfg).eval(), "tiny-gemma3")


def _byte_lm(model, name: str) -> "HFCausalLM":  # noqa: F821
    """Sharpen a byte-vocabulary causal LM (2-D weights ~ N(0, 0.3²), so greedy has no near-ties; the 0.02-std
    init is too flat), set <eos> = 256 as its stop and padding token and wrap it."""
    from ee_bench.models.hf_causal import HFCausalLM

    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    assert_tiny(model)
    model.generation_config.eos_token_id = 256
    model.generation_config.pad_token_id = 256
    return HFCausalLM(model, byte_tokenizer(), name=name)


class NeverGate(Gate):
    """Reads the head statistics at every check and never fires."""

    needs_head = True
    default_threshold = 0.5
    grid = (0.5,)

    def fires(self, obs: GateObservation, threshold: float) -> torch.Tensor:
        return torch.zeros_like(obs.top1, dtype=torch.bool)


class AlwaysGate(Gate):
    """Fires at the first allowed check; ``needs_head`` chosen per instance."""

    default_threshold = 0.5
    grid = (0.5,)

    def __init__(self, needs_head: bool = True):
        self.needs_head = needs_head
        self.needs_hidden = not needs_head

    def fires(self, obs: GateObservation, threshold: float) -> torch.Tensor:
        n = obs.top1.shape[0] if obs.top1 is not None else obs.hidden.shape[0]
        return torch.ones(n, dtype=torch.bool)


PROMPTS = ["Die Ware hat", "unter 20 Euro gekostet, sagte er.", "ja"]


def prompt_ids(model) -> list[list[int]]:
    """:data:`PROMPTS` encoded by ``model``'s prompt encoder."""
    return [model.encode_prompt(p) for p in PROMPTS]


# Byte-level BPE plus merges that glue a leading space to some initials ("Ġn", "Ġp", "Ġy"), so label
# words after a space start with distinct tokens, as in real tokenizers.
MC_MERGES = [("Ġ", "n"), ("Ġ", "p"), ("Ġ", "y")]


def tokenizer_with_merges():
    """Byte-level BPE with :data:`MC_MERGES` and ``<eos>`` (EOS and padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for a, b in MC_MERGES:
        vocab[a + b] = len(vocab)
    vocab["<eos>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=MC_MERGES))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


def tiny_llama_mc(seed: int = 0):
    """:func:`tiny_llama`'s shape with :func:`tokenizer_with_merges` (for multiple choice); 512 positions."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ee_bench.models.hf_causal import HFCausalLM

    tok = tokenizer_with_merges()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id, bos_token_id=None,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    assert_tiny(m)
    return HFCausalLM(m, tok, name="tiny-llama-mc")


GEMMA3_TEXT = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=16, sliding_window=4,
                   layer_types=["sliding_attention", "sliding_attention", "full_attention"])


def tiny_gemma3_text():
    """Gemma3ForCausalLM (text only), 3 blocks, sliding window 4 (the caller seeds the init)."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    model = AutoModelForCausalLM.from_config(Gemma3TextConfig(**GEMMA3_TEXT))
    assert_tiny(model)
    return model


def tiny_gemma3_multimodal():
    """Gemma3ForConditionalGeneration with a 1-block vision tower around :data:`GEMMA3_TEXT`."""
    from transformers import AutoModelForCausalLM, Gemma3Config

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14)
    model = AutoModelForCausalLM.from_config(Gemma3Config(text_config=GEMMA3_TEXT, vision_config=vision, mm_tokens_per_image=4))
    assert_tiny(model)
    return model


# ---------------------------------------------------------------- checkpoints on disk
CKPT_WORDS = [f"w{i}" for i in range(60)]


# A minimal generation task in ee-bench's strict YAML schema; fill in {name} and {metric}.
TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs: {{data_files: {{test: docs.jsonl}}}}
test_split: test
doc_to_text: "{{{{src}}}}"
doc_to_target: "{{{{ref}}}}"
generation_kwargs: {{until: ["\\n"], max_gen_toks: 4}}
metric_list: [{{metric: {metric}}}]
metadata: {{version: 1}}
"""


def save_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """Write a ~50k-parameter LlamaForCausalLM + tokenizer to ``folder``; returns it."""
    import tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(CKPT_WORDS)}}
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    assert_tiny(model)
    model.save_pretrained(folder)
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>")
    fast.save_pretrained(folder)
    return folder


def write_tiny_task(folder: Path, name: str = "tiny_copy", n_docs: int = 5, max_gen_toks: int = 6) -> Path:
    """A generation task over team-written word sequences, scored with chrF; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.jsonl").open("w") as fh:
        for i in range(n_docs):
            words = " ".join(CKPT_WORDS[(7 * i + k) % len(CKPT_WORDS)] for k in range(3 + i % 4))
            fh.write(json.dumps({"src": words, "ref": words}) + "\n")
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {name}.jsonl}}}}\n"
        "test_split: test\n"
        'doc_to_text: "{{src}} w0"\n'
        'doc_to_target: "{{ref}}"\n'
        f'generation_kwargs: {{until: ["w59"], max_gen_toks: {max_gen_toks}}}\n'
        "metric_list: [{metric: chrf}]\n"
        "metadata: {version: 1}\n",
        encoding="utf-8",
    )
    return folder


# ---------------------------------------------------------------- a GGUF file (tiny Llama, Q8_0)
SPECIAL = ("<|endoftext|>", "<|im_end|>", "<|im_start|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_tiny_llama_gguf(path: Path, hidden: int = 32, inter: int = 64, layers: int = 2, heads: int = 2,
                          kv_heads: int = 1, vocab: int = 288, seed: int = 0) -> Path:
    """Write the tiny model to ``path`` and return it. Matrix sizes must be multiples of 32 (Q8_0 blocks)."""
    import gguf
    import numpy as np
    from tokenizers.pre_tokenizers import ByteLevel

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


# ---------------------------------------------------------------- encoder-decoder translators
# Marian, FSMT, T5, BART, mBART, M2M100: :func:`word_tokenizer` (vocabulary 96: <unk> 0, <s> 1, </s> 2 = EOS and
# padding), 2 encoder and 3 decoder blocks of width 32, fixed seeds, :func:`_sharpen`'s wide weights;
# ``decoder_start_token_id`` is <s> (1) for every architecture.
SEQ2SEQ_VOCAB = 96
D_LAYERS = 3
SEQ2SEQ_ARCHS = ("marian", "fsmt", "t5", "bart", "mbart", "m2m_100")
_SEQ2SEQ_IDS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2, decoder_start_token_id=1)
_SEQ2SEQ_SIZES = dict(vocab_size=SEQ2SEQ_VOCAB, d_model=32, encoder_layers=2, decoder_layers=D_LAYERS, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                   dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def seq2seq_config(arch: str):
    import transformers as tf

    if arch == "marian":
        return tf.MarianConfig(**_SEQ2SEQ_SIZES, **_SEQ2SEQ_IDS, decoder_vocab_size=SEQ2SEQ_VOCAB, scale_embedding=True)
    if arch == "bart":
        return tf.BartConfig(**_SEQ2SEQ_SIZES, **_SEQ2SEQ_IDS, forced_bos_token_id=None, forced_eos_token_id=None)
    if arch == "mbart":
        return tf.MBartConfig(**_SEQ2SEQ_SIZES, **_SEQ2SEQ_IDS, forced_eos_token_id=None)
    if arch == "m2m_100":
        return tf.M2M100Config(**_SEQ2SEQ_SIZES, **_SEQ2SEQ_IDS, scale_embedding=True)
    if arch == "fsmt":
        return tf.FSMTConfig(langs=["de", "en"], src_vocab_size=SEQ2SEQ_VOCAB, tgt_vocab_size=SEQ2SEQ_VOCAB, d_model=32,
                             encoder_layers=2, decoder_layers=D_LAYERS, encoder_attention_heads=4,
                             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                             max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
                             activation_dropout=0.0, tie_word_embeddings=False, **_SEQ2SEQ_IDS)
    if arch == "t5":
        return tf.T5Config(vocab_size=SEQ2SEQ_VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=D_LAYERS,  # num_decoder_layers != num_layers breaks T5 generate (cache sized by num_layers)
                           num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0, tie_word_embeddings=True,
                           **_SEQ2SEQ_IDS)
    raise ValueError(arch)


def build_tiny_seq2seq(arch: str, seed: int = 0):
    """A tiny ``*ForConditionalGeneration`` of architecture ``arch`` (see :data:`SEQ2SEQ_ARCHS`), float32, eval."""
    from transformers import AutoModelForSeq2SeqLM

    cfg = seq2seq_config(arch)
    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(cfg).float().eval()
    _sharpen(model)
    if hasattr(model, "final_logits_bias"):  # a non-zero bias, so forgetting it would show
        model.final_logits_bias.normal_(0.0, 0.5)
    for key, value in _SEQ2SEQ_IDS.items():
        setattr(model.generation_config, key, value)
    model.generation_config.forced_bos_token_id = model.generation_config.forced_eos_token_id = None
    assert_tiny(model)
    return model


def wrap_seq2seq(model, name: str = "tiny", **kwargs):
    from ee_bench.models.hf_seq2seq import HFSeq2SeqLM

    return HFSeq2SeqLM(model, word_tokenizer(), name=name, **kwargs)


def seq2seq_sources(n: int = 3) -> list[list[int]]:
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


# ---------------------------------------------------------------- a COMET-22 checkpoint
def save_tiny_comet(folder: Path):
    """Write a ~7k-parameter COMET RegressionMetric checkpoint to ``folder`` (``checkpoints/model.ckpt`` +
    ``hparams.yaml``, a tiny XLM-R encoder and Unigram tokenizer under ``encoder/``); returns the model. Needs
    ``unbabel-comet`` (``.venv-comet``)."""
    import pytorch_lightning as pl
    import tokenizers
    import torch
    import yaml
    from comet.models import RegressionMetric
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast

    enc = folder / "encoder"
    enc.mkdir(parents=True)
    words = ["▁" + w for w in "die das der ware hat unter euro gekostet the goods cost less than w0 w1 w2".split()]
    vocab = ([(t, 0.0) for t in ("<s>", "<pad>", "</s>", "<unk>")] + [(w, -1.0) for w in words]
             + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyzäöüß▁0123456789.,"] + [("<mask>", 0.0)])
    tok = tokenizers.Tokenizer(tokenizers.models.Unigram(vocab, unk_id=3))
    tok.normalizer = tokenizers.normalizers.Lowercase()
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace()
    tok.decoder = tokenizers.decoders.Metaspace()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                            unk_token="<unk>", pad_token="<pad>", mask_token="<mask>").save_pretrained(enc)
    XLMRobertaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=128, pad_token_id=1, bos_token_id=0,
                     eos_token_id=2).save_pretrained(enc)
    torch.manual_seed(0)
    model = RegressionMetric(pretrained_model=str(enc), hidden_sizes=[8], load_pretrained_weights=False,
                             layer_transformation="softmax")
    assert_tiny(model)
    (folder / "checkpoints").mkdir()
    hparams = dict(model.hparams)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams, "epoch": 0, "global_step": 0,
                "pytorch-lightning_version": pl.__version__}, folder / "checkpoints" / "model.ckpt")
    (folder / "hparams.yaml").write_text(yaml.safe_dump(hparams), encoding="utf-8")
    return model


# ---------------------------------------------------------------- encoders
ENCODER_WORDS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "film", "was", "very", "a", "plot"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

_COMMON = dict(vocab_size=len(SPECIALS) + len(ENCODER_WORDS), hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
               intermediate_size=32, max_position_embeddings=64, num_labels=2, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)


def encoder_config(kind: str, n_layers: int = 3, **overrides):
    """A tiny config of ``kind`` (bert, roberta, electra, mpnet, distilbert)."""
    import transformers as tf

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


def tiny_encoder(kind: str, n_layers: int = 3, seed: int = 0, **overrides):
    """AutoModelForSequenceClassification from :func:`encoder_config`, seeded, in eval mode."""
    import transformers as tf

    torch.manual_seed(seed)
    model = tf.AutoModelForSequenceClassification.from_config(encoder_config(kind, n_layers, **overrides)).eval()
    assert_tiny(model)
    return model


def encoder_tokenizer():
    """Word-level fast tokenizer: ``[CLS] a [SEP] (b [SEP])``, padding with [PAD] = id 0."""
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(SPECIALS + ENCODER_WORDS)}
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
    pos, neg, filler = ENCODER_WORDS[:4], ENCODER_WORDS[4:8], ENCODER_WORDS[8:]
    rows = []
    for i in range(n):
        label = i % 2
        words = pos if label else neg
        k = int(torch.randint(3, 7, (1,), generator=g))
        toks = [filler[int(torch.randint(len(filler), (1,), generator=g))] if j % 2 else
                words[int(torch.randint(len(words), (1,), generator=g))] for j in range(k)]
        rows.append({"sentence": " ".join(toks), "label": label})
    return rows
