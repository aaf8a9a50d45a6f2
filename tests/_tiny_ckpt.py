"""A tiny random Llama checkpoint with an offline word-level tokenizer, saved to a folder, for
end-to-end CLI tests (the real embedded model is too slow for them)."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = [f"w{i}" for i in range(60)]


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
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > 100_000:
        raise RuntimeError(f"tiny model is not tiny: {n_params} parameters")
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
            words = " ".join(WORDS[(7 * i + k) % len(WORDS)] for k in range(3 + i % 4))
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
