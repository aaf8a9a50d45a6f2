"""The translator cards name the real hub checkpoints and their input format; the seq2seq block is
validated; ``ee-bench ls models`` lists them and a checkpoint folder of an encoder-decoder model is
loaded with the seq2seq wrapper. Nothing is downloaded."""

from __future__ import annotations

import json

import pytest

from ee_bench.errors import ConfigError
from ee_bench.models.cards import parse_card, resolve_card

# card -> (hub id, seq2seq block)
TRANSLATOR_CARDS = {
    "opus-mt-en-de": ("Helsinki-NLP/opus-mt-en-de", None),
    "opus-mt-de-en": ("Helsinki-NLP/opus-mt-de-en", None),
    "wmt19-en-de": ("facebook/wmt19-en-de", None),
    "wmt19-de-en": ("facebook/wmt19-de-en", None),
    "t5-small": ("google-t5/t5-small", {"prefix": "translate {{src_lang_name}} to {{tgt_lang_name}}: "}),
    "t5-base": ("google-t5/t5-base", {"prefix": "translate {{src_lang_name}} to {{tgt_lang_name}}: "}),
    "nllb-200-distilled-600m": ("facebook/nllb-200-distilled-600M", None),
}


@pytest.mark.parametrize("name", sorted(TRANSLATOR_CARDS))
def test_translator_cards(name):
    hub_id, block = TRANSLATOR_CARDS[name]
    card = resolve_card(name)
    assert (card.model, card.pretrained, card.chat_template) == ("hf-seq2seq", hub_id, False)
    if name.startswith("nllb"):
        codes = card.seq2seq["lang_codes"]
        assert (codes["en"], codes["de"]) == ("eng_Latn", "deu_Latn")  # NLLB's FLORES-200 codes
    else:
        assert card.seq2seq == block


def test_t5_prefix_renders_the_training_prefix():
    from ee_bench.tasks.templates import render

    prefix = resolve_card("t5-small").seq2seq["prefix"]
    assert render(prefix, {"src_lang_name": "English", "tgt_lang_name": "German"}) == "translate English to German: "


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("x", "'seq2seq' must be a mapping (keys: prefix, lang_codes)"),
        ({"prefx": "a"}, "unknown seq2seq key 'prefx' (allowed: lang_codes, prefix)"),
        ({"prefix": 3}, "'seq2seq.prefix' must be a template string"),
        ({"lang_codes": {"en": ""}}, "'seq2seq.lang_codes' must map language codes to model tokens"),
    ],
)
def test_seq2seq_block_problems(block, problem):
    with pytest.raises(ConfigError) as err:
        parse_card({"name": "x", "model": "hf-seq2seq", "pretrained": "p", "seq2seq": block}, "x.yaml")
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(problem)


def test_ls_models_lists_translators(capsys):
    from ee_bench.cli import main

    assert main(["ls", "models"]) == 0
    out = capsys.readouterr().out
    for name in TRANSLATOR_CARDS:
        assert name in out


def test_encoder_decoder_folder_gets_the_seq2seq_wrapper(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "marian", "is_encoder_decoder": True}))
    assert resolve_card(str(tmp_path)).model == "hf-seq2seq"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert resolve_card(str(tmp_path)).model == "hf-causal"
