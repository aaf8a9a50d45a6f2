"""The encoder-decoder (seq2seq) model contract: every member the seq2seq runner and the seq2seq
early-exit loop use (STYLE §9: each model family implements a declared contract, nothing private is
called from outside).

Layers are the L decoder blocks, 0-based; the encoder always runs in full, once per batch.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from torch import Tensor, nn

from ee_bench.models.base import ExitModel


class Seq2SeqExitModel(ExitModel):
    """Contract for an encoder-decoder wrapper with per-decoder-layer decoding.

    Attributes:
        kind: ``"seq2seq"`` (selects the runner, :mod:`ee_bench.runners`).
        n_layers: L decoder blocks. device, name: as :class:`ExitModel`.
        tokenizer: the model's tokenizer (the runner reads ``decode`` through :meth:`decode`).
        eos_token_ids: ids that end generation.
        decoder_prefix: the ids every decoder input starts with (``decoder_start_token_id``, then the
            forced target-language token where the card names one); set by :meth:`set_languages`.
        layers: the L decoder blocks (``nn.ModuleList``).
        unembed: :class:`~ee_bench.models.unembed.Unembed` over the final decoder norm and head.
    """

    kind = "seq2seq"
    tokenizer: Any
    eos_token_ids: tuple[int, ...]
    decoder_prefix: tuple[int, ...]
    layers: nn.ModuleList
    unembed: nn.Module

    @abstractmethod
    def set_languages(self, src_lang: str | None, tgt_lang: str | None) -> None:
        """Select the language pair of the documents that follow (source language code of the
        tokenizer, forced target-language BOS in :attr:`decoder_prefix`).

        Raises:
            EEBenchError: if the card maps languages to codes and a language is not mapped.
        """

    @abstractmethod
    def source_text(self, source: str, doc: dict[str, Any]) -> str:
        """The text the encoder reads for one document: the card's prefix (e.g. T5's
        ``translate English to German: ``) rendered with ``doc``, then ``source``."""

    @abstractmethod
    def encode_source(self, text: str) -> list[int]:
        """Encoder input ids of a source text (with the tokenizer's special tokens)."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Text of token ids, special tokens skipped."""

    @abstractmethod
    def truncate_output(self, ids: list[int], until: tuple[str, ...]) -> tuple[list[int], str]:
        """Cut generated ids after EOS or a stop string (as the causal wrapper does)."""

    @abstractmethod
    def generate(self, sources: list[list[int]], until: tuple[str, ...], max_gen_toks: int) -> list[tuple[list[int], str]]:
        """Greedy decoding from the last decoder layer; B (output ids, output text) pairs."""

    @abstractmethod
    def analyse_outputs(self, sources: list[list[int]], outputs: list[list[int]], keep_hidden: bool = False) -> list:
        """Teacher-forced per-decoder-layer statistics of every output token; B
        :class:`~ee_bench.models.hf_causal.LayerAnalysis` with (L, N_b) stats."""

    @abstractmethod
    def pad_sources(self, sources: list[list[int]]) -> tuple[Tensor, Tensor]:
        """(B, S) right-padded encoder ids and their 0/1 attention mask, on :attr:`device`."""

    @abstractmethod
    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Run the encoder once: (B, S) ids → (B, S, H) encoder states."""

    @abstractmethod
    def embed_decoder(self, ids: Tensor) -> Tensor:
        """Decoder block-0 inputs (token embedding, scale, positions, embedding norm — whatever the
        model applies before its first block) of every position of (B, T) decoder ids → (B, T, H)."""

    @abstractmethod
    def early_exit_decoder(self):
        """A decoder with the ``EarlyExitDecoder.decode`` signature for this model
        (:class:`~ee_bench.decoding.seq2seq_exit.Seq2SeqEarlyExitDecoder`).

        Raises:
            ModelStructureError: for an architecture whose blocks cannot be run one at a time.
        """
