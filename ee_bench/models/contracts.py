"""The model contracts: what every model family's wrapper must provide to the loops.

One abstract base class per family; each declares every member the task runners, the exit loops,
the early-exit decoding loop and the lm-eval bridge use, so a plug-in model author subclasses the
contract (or one of the shipped wrappers) and registers it (:data:`~ee_bench.models.base.MODELS`,
entry-point group ``ee_bench.models``) without editing ee-bench. ``kind`` picks the task runner
(:data:`~ee_bench.task_runners.TASK_RUNNERS`, keyed ``"<kind>/<output_type>"``).

- :class:`ExitModel`: common to every family (name, layers, device, loading, description).
- :class:`CausalExitModel` (``kind = "causal"``): decoder-only LMs; shipped wrapper
  :class:`~ee_bench.models.hf_causal.HFCausalLM`.
- :class:`EncoderExitModel` (``kind = "encoder"``): encoder classifiers; shipped wrapper
  :class:`~ee_bench.models.hf_encoder.HFEncoderClassifier`.
- :class:`Seq2SeqExitModel` (``kind = "seq2seq"``): encoder-decoder translators, decoded at every
  decoder layer; shipped wrapper :class:`~ee_bench.models.hf_seq2seq.HFSeq2SeqLM`, task runner
  ``"seq2seq/generate_until"``, early-exit loop :mod:`ee_bench.decoding.seq2seq_exit` (chosen by
  :func:`ee_bench.decoding.decoders.decoder_for`).

Layers are 0-based; L = ``n_layers`` exits, one per block; row L−1 is the model's own output.
Shape notation: B = batch, T = positions, N = selected positions, H = hidden size, C = classes.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor


class ExitModel(ABC):
    """Contract common to every model wrapper.

    Attributes:
        kind: the family (``"causal"``, ``"encoder"``, …), declared by each contract.
        name: the card or checkpoint name used in results.
        n_layers: L, the number of exits (one per block); layers are 0-based.
        device: where the model runs.
        model: the underlying ``torch.nn.Module`` (timed full forward, configuration).
        tokenizer: its tokenizer (``decode``, ``pad_token_id``).
    """

    kind: ClassVar[str]
    name: str
    n_layers: int
    device: torch.device
    model: Any
    tokenizer: Any

    @classmethod
    @abstractmethod
    def from_card(cls, card: Any, device: str | None = None, dtype: str | None = None) -> ExitModel:
        """Load the checkpoint a :class:`~ee_bench.models.cards.ModelCard` names.

        Raises:
            EEBenchError: if the checkpoint cannot be found, or its layers cannot be reached.
        """

    def describe(self) -> dict[str, Any]:
        """Facts recorded in results (architecture, layers, dtype, device)."""
        return {"name": self.name, "n_layers": self.n_layers, "device": str(self.device)}


class CausalExitModel(ExitModel):
    """Contract of a decoder-only LM decoded at every layer through its own final norm and head.

    Attributes:
        eos_token_ids: ids that end generation (EOS and the card's stop tokens).
        unembed: :class:`~ee_bench.models.unembed.Unembed`, ``head(final_norm(h))`` for any block output.
        parts: :class:`~ee_bench.models.arch.DecoderParts` (blocks, final norm, head, embeddings),
            located through the causal family's one table :data:`~ee_bench.models.arch.DECODER_ARCHS`;
            the early-exit loop (:class:`~ee_bench.decoding.blocks.BlockExecutor`) runs these blocks.
    """

    kind: ClassVar[str] = "causal"
    eos_token_ids: tuple[int, ...]
    unembed: Any
    parts: Any

    @abstractmethod
    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a prompt (through the chat template when the card asks for it)."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Text of token ids, special tokens skipped."""

    @abstractmethod
    def left_pad(self, rows: list[list[int]]) -> tuple[Tensor, Tensor]:
        """(B, W) int64 ids and (B, W) 0/1 attention mask, rows left-padded, on ``device``."""

    @abstractmethod
    def truncate_output(self, ids: list[int], until: tuple[str, ...]) -> tuple[list[int], str]:
        """Cut generated ids after the first EOS or the token completing a stop string:
        (kept ids including that token, text with the stop string removed)."""

    @abstractmethod
    def generate(self, prompts: list[list[int]], until: tuple[str, ...], max_gen_toks: int) -> list[tuple[list[int], str]]:
        """Greedy decoding from the final layer: B (output ids, output text), as :meth:`truncate_output`."""

    @abstractmethod
    def capture_blocks(self, select: tuple[Tensor, Tensor], keep_hidden: bool) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """Context manager whose forward hooks reduce each block's output at the (N,) selected
        (row, position) pairs: yields a dict with ``stats[ℓ]`` (ℓ < L−1) and, with ``keep_hidden``,
        ``hidden[ℓ]`` (N, H) and ``embeddings`` (N, H). Hooks are removed on exit."""

    @abstractmethod
    def captured_layers(self, store: dict[str, Any], final: tuple[Tensor, Tensor, Tensor]) -> Any:
        """The :class:`~ee_bench.models.capture.LayerAnalysis` of a :meth:`capture_blocks` store plus
        the final layer's (top1, top1_prob, entropy) from the model's own logits."""

    @abstractmethod
    def analyse_outputs(self, prompts: list[list[int]], outputs: list[list[int]], keep_hidden: bool = False) -> list[Any]:
        """Teacher-forced per-layer statistics of every output token: B analyses with (L, N_b) stats."""


class EncoderExitModel(ExitModel):
    """Contract of an encoder classifier decoded at every layer through its own pooler and classifier.

    Two ways through the layers: :meth:`layer_logits` (one forward, the analysis pass) and
    :meth:`embed` / :meth:`layer_context` / :meth:`run_layer` / :meth:`head_logits` (one block at a
    time, for the real early-exit loop :func:`~ee_bench.decoding.encoder_exit.early_exit_classify`).

    Attributes:
        n_labels: C, the number of classes.
    """

    kind: ClassVar[str] = "encoder"
    n_labels: int

    @abstractmethod
    def encode(self, texts: list[tuple[str, ...]]) -> Any:
        """Tokenise B examples (one or two text fields each) into an ``EncoderBatch``."""

    @abstractmethod
    def layer_logits(self, batch: Any, keep_hidden: bool = False) -> Any:
        """Per-layer class logits (L, B, C), their (L, B) statistics and optionally hidden states."""

    @abstractmethod
    def embed(self, batch: Any) -> Tensor:
        """(B, T, H) inputs of block 0."""

    @abstractmethod
    def layer_context(self, hidden: Tensor, attention_mask: Tensor) -> tuple:
        """Whatever every block needs besides the hidden states (mask, positions) for this batch."""

    @abstractmethod
    def run_layer(self, layer: int, hidden: Tensor, context: tuple) -> Tensor:
        """(B, T, H) → (B, T, H) through block ``layer``."""

    @abstractmethod
    def head_logits(self, cls: Tensor) -> Tensor:
        """(B, H) first-token states → (B, C) class logits through the model's pooler and classifier."""


class Seq2SeqExitModel(ExitModel):
    """Contract for an encoder-decoder wrapper with per-decoder-layer decoding.

    Attributes:
        kind: ``"seq2seq"``. n_layers: L decoder blocks (the encoder always runs in full, once per batch).
        eos_token_ids: ids that end generation.
        decoder_prefix: the ids every decoder input starts with (``decoder_start_token_id``, then the
            forced target-language token where the card names one); set by :meth:`set_languages`.
        layers: the L decoder blocks (``nn.ModuleList``).
        unembed: :class:`~ee_bench.models.unembed.Unembed` over what follows the last decoder block
            (final decoder norm, T5's scale, head with ``final_logits_bias``).
        parts: :class:`~ee_bench.models.seq2seq_arch.Seq2SeqParts`, located through the seq2seq
            family's one table :data:`~ee_bench.models.seq2seq_arch.SEQ2SEQ_ARCHS` (its flags say
            whether the early-exit loop can run the blocks one at a time).
    """

    kind: ClassVar[str] = "seq2seq"
    eos_token_ids: tuple[int, ...]
    decoder_prefix: tuple[int, ...]
    layers: Any
    unembed: Any
    parts: Any

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
        :class:`~ee_bench.models.capture.LayerAnalysis` with (L, N_b) stats."""

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

