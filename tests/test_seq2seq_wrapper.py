"""Encoder-decoder per-decoder-layer decoding is exact (tiny random Marian, FSMT, T5, BART, mBART, M2M100).

- Unembed of the last decoder block's output equals ``model(...).logits`` bit for bit, for every
  architecture (final decoder norm where one exists, T5's d_model**-0.5 scale, final_logits_bias);
- dropping the final decoder norm / the bias / the T5 scale would change the logits (the table is
  not vacuous);
- ``analyse_outputs``: row L−1 equals the statistics of the model's own logits; row ℓ those of
  Unembed(h^ℓ);
- ``generate`` equals ``model.generate(num_beams=1, do_sample=False)`` token for token; batch size 1
  and N give the same oracle layers;
- the card's forced target-language token and T5 prefix reach the model;
- an unknown encoder-decoder architecture is refused with the supported list.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tiny_models import (
    D_LAYERS,
    build_tiny_seq2seq,
    wrap_seq2seq,
)
from tiny_models import (
    SEQ2SEQ_ARCHS as ARCHS,
)
from tiny_models import (
    seq2seq_sources as sources,
)

from ee_bench.errors import EEBenchError, ModelStructureError
from ee_bench.models.seq2seq_arch import SEQ2SEQ_ARCHS, locate_seq2seq_parts
from ee_bench.models.unembed import reduce_logits

PROB_ATOL, ENT_ATOL = 1e-6, 1e-5


def _capture_all(w, ids, mask, dec):
    """model(...).logits and every decoder block's (B, T, H) output, batch-first."""
    hs: dict[int, torch.Tensor] = {}
    handles = [blk.register_forward_hook(lambda m, a, out, i=i: hs.__setitem__(i, out[0] if isinstance(out, tuple) else out))
               for i, blk in enumerate(w.layers)]
    try:
        with torch.no_grad():
            logits = w.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    tm = w.parts.arch.time_major
    return logits, [hs[i].transpose(0, 1) if tm else hs[i] for i in range(len(w.layers))]


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request):
    return wrap_seq2seq(build_tiny_seq2seq(request.param), name=request.param)


def test_last_decoder_layer_reproduces_model_logits_exactly(tiny):
    src = sources(2)
    ids, mask = tiny.pad_sources(src)
    dec = torch.tensor([[1, 5, 9, 14, 3], [1, 40, 41, 7, 8]])
    logits, hs = _capture_all(tiny, ids, mask, dec)
    assert len(hs) == D_LAYERS == tiny.n_layers
    with torch.no_grad():
        assert torch.equal(tiny.unembed(hs[-1]), logits)


def test_each_part_of_the_unembedding_matters(tiny):
    """Leaving out what the table adds (norm, scale, bias) changes the last layer's logits."""
    arch = tiny.parts.arch
    ids, mask = tiny.pad_sources(sources(1))
    logits, hs = _capture_all(tiny, ids, mask, torch.tensor([[1, 5, 9]]))
    head = tiny.parts.head
    with torch.no_grad():
        if arch.final_norm or arch.t5_scale:
            assert not torch.allclose(head(hs[-1]), logits, atol=1e-3)
        if arch.logits_bias:
            assert not torch.allclose(head.head(tiny.parts.final_norm(hs[-1])), logits, atol=1e-3)
    expected = {"marian": (None, True, False), "bart": (None, True, False), "fsmt": (None, False, False),
                "mbart": ("model.decoder.layer_norm", True, False), "m2m_100": ("model.decoder.layer_norm", False, False),
                "t5": ("decoder.final_layer_norm", False, True)}[tiny.model.config.model_type]
    assert (arch.final_norm, arch.logits_bias, arch.t5_scale) == expected


def test_analyse_outputs_rows_match_model_and_unembed(tiny):
    src = sources(3)
    outs = [o for o, _ in tiny.generate(src, (), 5)]
    res = tiny.analyse_outputs(src, outs)
    ids, mask = tiny.pad_sources(src)
    for b, (o, an) in enumerate(zip(outs, res)):
        assert an.stats.top1.shape == (D_LAYERS, len(o))
        dec = torch.tensor([[1] + o[:-1]])
        logits, hs = _capture_all(tiny, ids[b : b + 1, : int(mask[b].sum())], mask[b : b + 1, : int(mask[b].sum())], dec)
        ref_last = reduce_logits(logits[0])
        assert torch.equal(an.stats.top1[-1], ref_last[0])
        assert torch.equal(an.stats.top1[-1], torch.tensor(o))  # greedy: the output is the final top-1
        for layer in range(D_LAYERS - 1):
            with torch.no_grad():
                ref = reduce_logits(tiny.unembed(hs[layer][0]))
            assert torch.equal(an.stats.top1[layer], ref[0])
            assert torch.allclose(an.stats.top1_prob[layer], ref[1], atol=PROB_ATOL)
            assert torch.allclose(an.stats.entropy[layer], ref[2], atol=ENT_ATOL)


def test_generate_equals_hf_greedy_generate(tiny):
    src = sources(3)
    ids, mask = tiny.pad_sources(src)
    with torch.no_grad():
        ref = tiny.model.generate(input_ids=ids, attention_mask=mask, num_beams=1, do_sample=False, max_new_tokens=7,
                                  min_length=0, max_length=None)
    got = tiny.generate(src, (), 7)
    for row, (ids_b, _text) in zip(ref.tolist(), got):
        assert row[0] == 1  # decoder_start_token_id
        gen = row[1:]
        expected = gen[: gen.index(2) + 1] if 2 in gen else gen
        assert ids_b == expected


def test_forced_language_token_and_prefix():
    w = wrap_seq2seq(build_tiny_seq2seq("m2m_100"), lang_codes={"de": "w10", "en": "w11"},
                     prefix="translate {{src_lang_name}} to {{tgt_lang_name}}: ")
    with pytest.raises(EEBenchError, match="no src_lang"):
        w.set_languages("de", "en")
    w.tokenizer.src_lang = None  # what an NLLB tokenizer has
    w.set_languages("de", "en")
    assert w.tokenizer.src_lang == "w10"
    assert w.decoder_prefix == (1, 14)  # w11 is id 3 + 11
    assert w.source_text("w5 w6", {"src_lang_name": "German", "tgt_lang_name": "English"}) == \
        "translate German to English: w5 w6"
    src = sources(2)
    ids, mask = w.pad_sources(src)
    with torch.no_grad():
        ref = w.model.generate(input_ids=ids, attention_mask=mask, num_beams=1, do_sample=False, max_new_tokens=5,
                               forced_bos_token_id=14)
    for row, (got, _) in zip(ref.tolist(), w.generate(src, (), 4)):
        assert row[:2] == [1, 14]
        gen = row[2:]
        assert got == (gen[: gen.index(2) + 1] if 2 in gen else gen)
    with pytest.raises(EEBenchError, match="lang_codes"):
        w.set_languages("fr", "en")


def test_unknown_architecture_is_refused():
    fake = SimpleNamespace(config=SimpleNamespace(model_type="pegasus_x"))
    with pytest.raises(ModelStructureError) as err:
        locate_seq2seq_parts(fake)
    for name in SEQ2SEQ_ARCHS:
        assert name in str(err.value)


def test_wrapper_follows_the_seq2seq_contract():
    from ee_bench.models.contracts import ExitModel, Seq2SeqExitModel
    from ee_bench.models.hf_seq2seq import HFSeq2SeqLM

    assert issubclass(HFSeq2SeqLM, Seq2SeqExitModel) and HFSeq2SeqLM.kind == "seq2seq"

    class Incomplete(Seq2SeqExitModel):  # a plug-in that forgot most of the contract
        @classmethod
        def from_card(cls, card, device=None, dtype=None) -> ExitModel:
            return cls()

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_keep_hidden_rows_decode_to_the_statistics():
    w = wrap_seq2seq(build_tiny_seq2seq("marian"))
    src = sources(2)
    outs = [o for o, _ in w.generate(src, (), 4)]
    for an, o in zip(w.analyse_outputs(src, outs, keep_hidden=True), outs):
        assert an.hidden.shape == (D_LAYERS, len(o), 32) and an.embeddings.shape == (len(o), 32)
        with torch.no_grad():
            for layer in range(D_LAYERS):
                assert torch.equal(w.unembed(an.hidden[layer]).argmax(-1), an.stats.top1[layer])


def test_generation_settings_of_the_checkpoint_do_not_change_greedy_top1():
    """A checkpoint's processors (Marian bans its pad token; beams; repetition rules) are off: each
    output token is the last layer's top-1, which is what the oracle compares against."""
    w = wrap_seq2seq(build_tiny_seq2seq("marian"))
    src = sources(2)
    plain = w.generate(src, (), 5)
    first = plain[0][0][0]
    gc = w.model.generation_config
    gc.bad_words_ids, gc.no_repeat_ngram_size, gc.repetition_penalty, gc.num_beams = [[first]], 2, 5.0, 4
    assert w.generate(src, (), 5) == plain
    for an, (o, _) in zip(w.analyse_outputs(src, [o for o, _ in plain]), plain):
        assert an.stats.top1[-1].tolist() == o


def test_seq2seq_table_accepts_plugins_and_refuses_duplicates():
    from ee_bench.models.seq2seq_arch import (
        Seq2SeqArch,
        blockwise_seq2seq_types,
        register_seq2seq_arch,
    )

    assert blockwise_seq2seq_types() == ["marian", "bart", "mbart", "m2m_100", "fsmt", "t5"]
    with pytest.raises(ValueError, match="already in SEQ2SEQ_ARCHS"):
        register_seq2seq_arch("marian", SEQ2SEQ_ARCHS["marian"])
    register_seq2seq_arch("test_s2s", Seq2SeqArch("model.decoder.layers", None, "lm_head", logits_bias=False))
    try:
        assert "test_s2s" in SEQ2SEQ_ARCHS and "test_s2s" not in blockwise_seq2seq_types()
    finally:
        SEQ2SEQ_ARCHS.pop("test_s2s")


def test_batch_size_does_not_change_the_oracle(tiny):
    """Padded sources and right-padded decoder inputs: a batch gives each row's own statistics."""
    from ee_bench.exits.oracle import first_match_layer, saturation_layer

    src = sources(3)
    outs = [o for o, _ in tiny.generate(src, (), 5)]
    assert [tiny.generate([s], (), 5)[0][0] for s in src] == outs
    batched = tiny.analyse_outputs(src, outs)
    for s, o, an in zip(src, outs, batched):
        (alone,) = tiny.analyse_outputs([s], [o])
        assert torch.equal(first_match_layer(an.stats.top1), first_match_layer(alone.stats.top1))
        assert torch.equal(saturation_layer(an.stats.top1), saturation_layer(alone.stats.top1))
        assert torch.allclose(an.stats.top1_prob, alone.stats.top1_prob, atol=1e-5)
