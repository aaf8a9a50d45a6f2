"""Where each encoder classifier keeps its embeddings, layers, pooler and classification head.

One table keyed by ``config.model_type`` (no ``isinstance`` ladder); paths are dotted attribute
paths from the ``*ForSequenceClassification`` object. MiniLM checkpoints are ``bert``.

The per-layer prediction (paper §5) is ``head(h^ℓ[CLS])``, where ``head`` is exactly what the model
applies to its last layer's first token:

- ``pooler_linear`` (BERT, MiniLM): ``classifier(dropout(pooler(h)))``, the pooler being
  ``tanh(dense(h[CLS]))``;
- ``cls_module`` (RoBERTa, ELECTRA, MPNet): the model's classification-head module, which itself
  takes the ``<s>`` token of its input (dropout, dense, tanh/gelu, dropout, out_proj);
- ``pre_classifier_relu`` (DistilBERT): ``classifier(dropout(relu(pre_classifier(h[CLS]))))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ee_bench.errors import ModelStructureError
from ee_bench.models.arch import add_to_table, get_path, locate_parts


@dataclass(frozen=True)
class EncoderArch:
    """Dotted paths to the parts of a ``*ForSequenceClassification`` encoder.

    Attributes:
        embeddings: the embedding module (token + position (+ segment) embeddings and norm).
        layers: the ``nn.ModuleList`` of encoder blocks.
        head: head kind, a key of :data:`HEADS`.
        pooler: the pooler module, for heads that use one.
        token_types: whether the embeddings take ``token_type_ids``.
        embed_project: a projection applied after the embeddings (ELECTRA, when
            ``embedding_size != hidden_size``), looked up only if present.
        position_bias: a module whose ``compute_position_bias(h)`` gives the relative-position bias
            every block receives as a third argument (MPNet).
    """

    embeddings: str
    layers: str
    head: str
    pooler: str | None = None
    token_types: bool = True
    embed_project: str | None = None
    position_bias: str | None = None


ENCODER_ARCHS: dict[str, EncoderArch] = {
    "bert": EncoderArch("bert.embeddings", "bert.encoder.layer", "pooler_linear", pooler="bert.pooler"),
    "roberta": EncoderArch("roberta.embeddings", "roberta.encoder.layer", "cls_module"),
    "distilbert": EncoderArch("distilbert.embeddings", "distilbert.transformer.layer", "pre_classifier_relu",
                              token_types=False),
    "electra": EncoderArch("electra.embeddings", "electra.encoder.layer", "cls_module",
                           embed_project="electra.embeddings_project"),
    "mpnet": EncoderArch("mpnet.embeddings", "mpnet.encoder.layer", "cls_module", token_types=False,
                         position_bias="mpnet.encoder"),
}


def _pooler_linear(model: nn.Module, pooler: nn.Module | None, cls: Tensor) -> Tensor:
    return model.classifier(model.dropout(pooler(cls.unsqueeze(1))))  # pooler reads [:, 0]


def _cls_module(model: nn.Module, pooler: nn.Module | None, cls: Tensor) -> Tensor:
    return model.classifier(cls.unsqueeze(1))  # the head reads features[:, 0, :]


def _pre_classifier_relu(model: nn.Module, pooler: nn.Module | None, cls: Tensor) -> Tensor:
    return model.classifier(model.dropout(torch.relu(model.pre_classifier(cls))))


# head kind -> f(model, pooler, cls (B, H)) -> logits (B, C)
HEADS: dict[str, Callable[[nn.Module, nn.Module | None, Tensor], Tensor]] = {
    "pooler_linear": _pooler_linear,
    "cls_module": _cls_module,
    "pre_classifier_relu": _pre_classifier_relu,
}


@dataclass(frozen=True)
class EncoderParts:
    """The located modules of one loaded encoder classifier (see :func:`locate_encoder_parts`)."""

    model: nn.Module
    arch: EncoderArch
    embeddings: nn.Module
    layers: nn.ModuleList
    pooler: nn.Module | None
    embed_project: nn.Module | None
    position_bias: nn.Module | None

    def head(self, cls: Tensor) -> Tensor:
        """Class logits of first-token states: (B, H) → (B, C), as the model computes its own."""
        return HEADS[self.arch.head](self.model, self.pooler, cls)


def register_encoder_arch(model_type: str, arch: EncoderArch) -> None:
    """Teach ee-bench where a new encoder architecture keeps its parts (for plug-in model packages);
    ``arch.head`` must be a key of :data:`HEADS`.

    Raises:
        ValueError: if ``model_type`` is already in the table or the head kind is unknown.
    """
    if arch.head not in HEADS:
        raise ValueError(f"unknown head kind {arch.head!r}; use one of {sorted(HEADS)}")
    add_to_table(ENCODER_ARCHS, "ENCODER_ARCHS", model_type, arch)


def supported_encoders() -> list[str]:
    return sorted(ENCODER_ARCHS)


def locate_encoder_parts(model: nn.Module) -> EncoderParts:
    """Find embeddings, blocks, pooler and head of a ``*ForSequenceClassification`` model.

    Raises:
        ModelStructureError: for an unknown ``model_type`` or a model missing a listed part; the
            message lists the supported types.
    """
    model_type, arch, parts = locate_parts(
        model, ENCODER_ARCHS, lambda a: {"embeddings": a.embeddings, "layers": a.layers, "pooler": a.pooler,
                                         "classifier": "classifier", "bias": a.position_bias},
        unknown="layers and classifier of encoder model_type {model_type} (MiniLM checkpoints are bert). A "
                "plug-in adds one with ee_bench.models.encoder_arch.register_encoder_arch.",
        layout="is it a *ForSequenceClassification model? ", supported=", ".join(supported_encoders()))
    embeddings, layers, pooler, bias = parts["embeddings"], parts["layers"], parts["pooler"], parts["bias"]
    if arch.pooler and pooler is None:
        raise ModelStructureError(f"model_type {model_type!r} was built without its pooler ({arch.pooler} is None); "
                                  f"load it as *ForSequenceClassification so the pooler is created")
    project = None
    if arch.embed_project:
        try:
            project = get_path(model, arch.embed_project)
        except AttributeError:
            project = None  # ELECTRA without a projection (embedding_size == hidden_size)
    return EncoderParts(model, arch, embeddings, layers, pooler, project, bias)
