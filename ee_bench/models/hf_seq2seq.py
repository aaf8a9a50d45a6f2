"""Hugging Face encoder-decoder translators with per-decoder-layer decoding (paper §3.1, Table 3).

The encoder runs once per batch. Each decoder block's output ``h^ℓ`` is decoded by exactly what the
model applies after its last decoder block — the final decoder norm where one exists, T5's
``d_model ** -0.5`` scale, the model's own head and ``final_logits_bias`` — located through
:mod:`ee_bench.models.seq2seq_arch`. Forward hooks on the decoder blocks reduce each layer to
(top-1, probability, entropy) as the pass goes (:class:`~ee_bench.models.unembed.Unembed`), so no
(L × T × V) tensor is ever built; row L−1 comes from the model's own logits, so it reproduces
``model(...).logits`` exactly.

Input format (not a chat template, not the Table 8 instruction): the task's ``seq2seq_source``
template gives the source text; the card's ``seq2seq.prefix`` (T5's ``translate English to German: ``)
is prepended; the card's ``seq2seq.lang_codes`` (NLLB: ``en: eng_Latn``) set the tokenizer's source
language and the target-language token forced after ``decoder_start_token_id``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from torch import Tensor

from ee_bench.errors import EEBenchError
from ee_bench.models.base import load_checkpoint
from ee_bench.models.capture import (
    LayerAnalysis,
    assemble_analysis,
    capture_block_outputs,
    empty_analyses,
    reduce_selected_logits,
    split_analysis,
)
from ee_bench.models.contracts import Seq2SeqExitModel
from ee_bench.models.hf_causal import truncate_output, until_criteria
from ee_bench.models.seq2seq_arch import (
    Seq2SeqParts,
    locate_seq2seq_parts,
    require_blockwise,
)
from ee_bench.models.unembed import Unembed
from ee_bench.tasks.templates import render

logger = logging.getLogger(__name__)


class _StopForward(Exception):
    """Raised by a pre-hook on decoder block 0 once its input is captured."""


class HFSeq2SeqLM(Seq2SeqExitModel):
    """A ``transformers`` encoder-decoder LM (Marian, FSMT, T5, BART, mBART, M2M100/NLLB).

    Args:
        model: a loaded ``*ForConditionalGeneration`` (``AutoModelForSeq2SeqLM``).
        tokenizer: its tokenizer.
        name: name recorded in results.
        prefix: Jinja template prepended to every source (rendered with the document), or "".
        lang_codes: ISO language code → the model's language token (NLLB ``eng_Latn``), or empty.

    Raises:
        ModelStructureError: if the decoder blocks / final norm / head cannot be located.
        EEBenchError: if the model has no ``decoder_start_token_id``.
    """

    def __init__(self, model, tokenizer, name: str, prefix: str = "", lang_codes: dict[str, str] | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.prefix = prefix
        self.lang_codes = dict(lang_codes or {})
        self.parts: Seq2SeqParts = locate_seq2seq_parts(model)
        self.layers = self.parts.layers
        self.n_layers = len(self.layers)
        self.device = next(model.parameters()).device
        self.unembed = Unembed(self.parts.final_norm, self.parts.head)
        cfg, gen = model.config, model.generation_config
        start = gen.decoder_start_token_id if gen.decoder_start_token_id is not None else cfg.decoder_start_token_id
        if start is None:
            raise EEBenchError(f"{name} has no decoder_start_token_id in its config or generation config; "
                               f"set it in the checkpoint's config.json.")
        self.decoder_start_token_id = int(start)
        self.decoder_prefix: tuple[int, ...] = (self.decoder_start_token_id,)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = set()
        for source in (gen.eos_token_id, tokenizer.eos_token_id):
            if source is not None:
                eos.update(source if isinstance(source, list) else [source])
        self.eos_token_ids: tuple[int, ...] = tuple(sorted(eos))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_card(cls, card, device: str | None = None, dtype: str | None = None) -> HFSeq2SeqLM:
        """Load the card's checkpoint with ``AutoModelForSeq2SeqLM`` (hub id or local folder).

        Raises:
            EEBenchError: if the checkpoint cannot be found or loaded (the hub may be unreachable).
        """
        from transformers import AutoModelForSeq2SeqLM  # deferred: transformers' Auto classes import slowly

        cfg = card.seq2seq or {}
        model, tokenizer, _ = load_checkpoint(card, AutoModelForSeq2SeqLM, device, dtype, dict(card.model_args),
                                              " Marian, T5 and NLLB tokenizers need sentencepiece.")
        return cls(model, tokenizer, card.name, prefix=cfg.get("prefix", ""), lang_codes=cfg.get("lang_codes"))

    def describe(self) -> dict[str, Any]:
        cfg = self.model.config
        return {
            "name": self.name, "kind": self.kind, "model_type": cfg.model_type, "n_layers": self.n_layers,
            "n_encoder_layers": getattr(cfg, "encoder_layers", getattr(cfg, "num_layers", None)),
            "hidden_size": cfg.d_model, "vocab_size": getattr(self.unembed.head, "out_features", None),
            "dtype": str(self.model.dtype), "device": str(self.device), "prefix": self.prefix,
            "decoder_prefix": list(self.decoder_prefix), "eos_token_ids": list(self.eos_token_ids),
        }

    # ------------------------------------------------------------------ inputs
    def _code(self, lang: str | None, role: str) -> str:
        if lang not in self.lang_codes:
            raise EEBenchError(
                f"{self.name} maps languages to model codes ({', '.join(sorted(self.lang_codes))}), but the "
                f"task's {role} language is {lang!r}. Add it to the card's seq2seq.lang_codes, or pick a task "
                f"in a mapped pair."
            )
        return self.lang_codes[lang]

    def set_languages(self, src_lang: str | None, tgt_lang: str | None) -> None:
        """Source language of the tokenizer and the forced target-language token (cards with
        ``lang_codes``); a no-op otherwise (one checkpoint per direction: Marian, FSMT).

        Raises:
            EEBenchError: if a language is not in the card's ``lang_codes``, the tokenizer has no
                ``src_lang`` (NLLB / M2M100 tokenizers have it), or the target code is not a token
                of the vocabulary.
        """
        self.decoder_prefix = (self.decoder_start_token_id,)
        if not self.lang_codes:
            return
        src, tgt = self._code(src_lang, "source"), self._code(tgt_lang, "target")
        if not hasattr(self.tokenizer, "src_lang"):
            raise EEBenchError(
                f"{self.name}'s card maps languages to codes (seq2seq.lang_codes), but its tokenizer "
                f"({type(self.tokenizer).__name__}) has no src_lang to set; use the checkpoint's NLLB/M2M100 "
                f"tokenizer, or drop lang_codes from the card."
            )
        self.tokenizer.src_lang = src
        tid = self.tokenizer.convert_tokens_to_ids(tgt)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise EEBenchError(f"target language code {tgt!r} is not in {self.name}'s vocabulary; fix the card's seq2seq.lang_codes.")
        self.decoder_prefix = (self.decoder_start_token_id, int(tid))

    def source_text(self, source: str, doc: dict[str, Any]) -> str:
        return (render(self.prefix, doc, source=f"model card {self.name} seq2seq.prefix") if self.prefix else "") + source

    def encode_source(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def truncate_output(self, ids: list[int], until: tuple[str, ...]) -> tuple[list[int], str]:
        return truncate_output(ids, until, self.eos_token_ids, self.decode)

    def pad_sources(self, sources: list[list[int]]) -> tuple[Tensor, Tensor]:
        return _right_pad(sources, self.tokenizer.pad_token_id, self.device)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, sources: list[list[int]], until: tuple[str, ...], max_gen_toks: int) -> list[tuple[list[int], str]]:
        """Greedy decoding from the last decoder layer (``model.generate``, ``num_beams=1``).

        Every output token is the last layer's top-1 (paper §4, top-1 decoding), as the oracle
        assumes: the checkpoint's own generation settings that would change that — beams,
        ``bad_words_ids`` (Marian bans its pad token), ``no_repeat_ngram_size``,
        ``repetition_penalty``, forced BOS/EOS, minimum lengths — are switched off; the forced
        target-language token of NLLB is part of :attr:`decoder_prefix` instead.

        Args:
            sources: B encoder input id lists. until: stop strings. max_gen_toks: token budget.

        Returns:
            B (output token ids — after :attr:`decoder_prefix` —, output text) pairs, truncated by
            :meth:`truncate_output`.
        """
        from transformers import StoppingCriteriaList

        ids, mask = self.pad_sources(sources)
        prefix = torch.tensor([list(self.decoder_prefix)] * len(sources), device=self.device)
        width = prefix.shape[1]
        criteria = StoppingCriteriaList([until_criteria(width, until, self.decode)] if until else [])
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, decoder_input_ids=prefix, do_sample=False, num_beams=1,
            max_new_tokens=max_gen_toks, eos_token_id=list(self.eos_token_ids),
            pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=criteria, forced_bos_token_id=None,
            forced_eos_token_id=None, top_p=None, top_k=None, temperature=None, no_repeat_ngram_size=None,
            repetition_penalty=None, bad_words_ids=None, min_length=None, min_new_tokens=None, length_penalty=None,
        )
        return [self.truncate_output(row, until) for row in out[:, width:].tolist()]

    # ------------------------------------------------------------------ per-layer analysis
    def capture_blocks(self, select: tuple[Tensor, Tensor], keep_hidden: bool) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """Forward hooks that reduce each decoder block's output at the selected positions
        (:func:`~ee_bench.models.capture.capture_block_outputs`; FSMT's blocks are time-major).

        Args:
            select: (batch index (N,), decoder position index (N,)).
            keep_hidden: also keep the (N, H) block outputs and block-0 inputs.

        Returns:
            A context manager yielding the dict filled during the forward pass: ``stats[ℓ]`` for
            ℓ < L−1, ``hidden[ℓ]`` and ``embeddings`` when ``keep_hidden``.
        """
        return capture_block_outputs(self.layers, select, keep_hidden, self.unembed.reduce,
                                     time_major=self.parts.arch.time_major)

    @torch.no_grad()
    def analyse_outputs(self, sources: list[list[int]], outputs: list[list[int]], keep_hidden: bool = False) -> list[LayerAnalysis]:
        """Per-decoder-layer statistics of every generated token, teacher-forced in one forward pass.

        Token i of output b is predicted at decoder position ``len(decoder_prefix) + i − 1`` of
        ``decoder_prefix + output_b`` (right-padded; padding sits after every predicted position, so
        the causal self-attention never sees it).

        Returns:
            B :class:`LayerAnalysis`; analysis b has (L, len(outputs[b])) stats on the CPU, row L−1
            reduced from the model's own logits.
        """
        P = len(self.decoder_prefix)
        sizes = [len(o) for o in outputs]
        if not any(sizes):
            return empty_analyses(self.n_layers, len(outputs))
        ids, mask = self.pad_sources(sources)
        dec, _ = _right_pad([list(self.decoder_prefix) + o[:-1] for o in outputs], self.tokenizer.pad_token_id, self.device)
        b_idx = torch.tensor([b for b, n in enumerate(sizes) for _ in range(n)], device=self.device)
        t_idx = torch.tensor([P - 1 + i for n in sizes for i in range(n)], device=self.device)
        with self.capture_blocks((b_idx, t_idx), keep_hidden) as store:
            logits = self.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, use_cache=False).logits
        final = reduce_selected_logits(logits, b_idx, t_idx, self.unembed.tile_elems)
        del logits
        return split_analysis(assemble_analysis(store, final, self.n_layers), sizes)

    # ------------------------------------------------------------------ pieces for block-by-block decoding
    @torch.no_grad()
    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Encoder states of a batch, (B, S) → (B, S, H); the encoder runs in full, once."""
        return self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    @torch.no_grad()
    def embed_decoder(self, ids: Tensor) -> Tensor:
        """Decoder block-0 inputs of every position of (B, T) decoder ids → (B, T, H).

        Runs the model's own decoder forward up to block 0 and stops there (a pre-hook captures the
        block's input and aborts), so the token embedding, its scale, the positional embedding and
        any embedding norm are exactly the model's. Positions are 0 … T−1 (no decoder padding).
        FSMT's decoder needs encoder states to be called at all: a (B, 1, H) zero tensor stands in,
        unused before block 0; its block inputs are time-major and come back batch-first.
        """
        require_blockwise(self.model.config.model_type, self.name)
        captured: dict[str, Tensor] = {}

        def grab(_module, args, kwargs):
            captured["h"] = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
            raise _StopForward

        handle = self.layers[0].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            if self.parts.arch.time_major:
                stand_in = torch.zeros(ids.shape[0], 1, self.model.config.d_model, dtype=self.model.dtype, device=ids.device)
                self.model.get_decoder()(ids, stand_in, None, None, None, use_cache=False)
            else:
                self.model.get_decoder()(input_ids=ids, use_cache=False)
        except _StopForward:
            pass
        finally:
            handle.remove()
        h = captured["h"]
        return h.transpose(0, 1) if self.parts.arch.time_major else h



def _right_pad(rows: list[list[int]], pad: int, device) -> tuple[Tensor, Tensor]:
    """(B, W) right-padded ids and 0/1 mask."""
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)
