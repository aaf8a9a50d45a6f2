"""Encoder classification tasks (GLUE): per-layer predictions of every example (paper §5, Table 4).

Each document's text fields (the task's ``encoder_fields``: one, or two for sentence pairs) are fed to
an :class:`~ee_bench.models.hf_encoder.HFEncoderClassifier`; every layer's ``[CLS]`` state goes
through the model's own pooler and classifier. One :class:`~ee_bench.types.DocRecord` per document,
with N = 1 column of (L, 1) statistics, so the decoder oracle/gate/scoring code applies unchanged.
Nothing exits early here (see :mod:`ee_bench.decoding.encoder_exit` for the real early-exit loop).
"""

from __future__ import annotations

from typing import Any

from ee_bench.errors import ConfigError, EEBenchError
from ee_bench.tasks.spec import TaskSpec
from ee_bench.tasks.templates import render
from ee_bench.types import DocRecord


def doc_texts(spec: TaskSpec, doc: dict[str, Any]) -> tuple[str, ...]:
    """The text fields of one document, in ``encoder_fields`` order.

    Raises:
        EEBenchError: if the task has no ``encoder_fields`` or the document lacks one.
    """
    if not spec.encoder_fields:
        raise EEBenchError(
            f"Task {spec.task} has no 'encoder_fields', so an encoder classifier cannot read it. "
            f"Add e.g. `encoder_fields: [sentence]` (or two fields for pairs) to {spec.source_file}."
        )
    missing = [f for f in spec.encoder_fields if f not in doc]
    if missing:
        raise EEBenchError(f"Task {spec.task}: a document lacks the encoder field(s) {missing} "
                           f"(it has {sorted(doc)}); fix 'encoder_fields' in {spec.source_file}.")
    return tuple(str(doc[f]) for f in spec.encoder_fields)


def gold_label(spec: TaskSpec, doc: dict[str, Any]) -> int:
    """Gold label index: ``doc_to_target`` rendered (an index, or one of the ``doc_to_choice`` words),
    else the document's ``label`` field.

    Raises:
        ConfigError: if the target is neither an index nor a label word.
    """
    if spec.doc_to_target is None:
        if "label" not in doc:
            raise ConfigError(spec.source_file, ["give 'doc_to_target' (the gold label index); documents have no 'label'"])
        return int(doc["label"])
    target = render(spec.doc_to_target, doc, source=spec.source_file).strip()
    if target.lstrip("-").isdigit():
        return int(target)
    if spec.doc_to_choice and target in spec.doc_to_choice:
        return spec.doc_to_choice.index(target)
    raise ConfigError(spec.source_file, [f"doc_to_target gave {target!r}, neither a label index nor one of "
                                         f"doc_to_choice {spec.doc_to_choice}"])


def run_classification(model, spec: TaskSpec, docs: list[dict[str, Any]], doc_ids: list[int] | None = None, *,
                       batch_size: int = 16, keep_hidden: bool = False, progress=None) -> list[DocRecord]:
    """Per-layer classification of every document.

    Args:
        model: an :class:`~ee_bench.models.hf_encoder.HFEncoderClassifier`.
        spec: the task (needs ``encoder_fields``); docs: its documents.
        doc_ids: their indices in the split (default 0..N−1).
        batch_size: documents per forward pass (right padding; results do not depend on it).
        keep_hidden: keep the (L, 1, H) ``[CLS]`` states, for gates that read hidden states.
        progress: a tqdm bar advanced once per document, or None.

    Returns:
        One :class:`DocRecord` per document: ``prediction`` is the final layer's label index,
        ``references`` is ``[gold label index]``, ``stats`` is (L, 1).

    Raises:
        EEBenchError: if the task has no ``encoder_fields``, or the model's number of labels does not
            match the task's ``doc_to_choice``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    doc_ids = list(range(len(docs))) if doc_ids is None else doc_ids
    choices = spec.doc_to_choice
    if choices and len(choices) != model.n_labels:
        raise EEBenchError(
            f"Model {model.name} has {model.n_labels} labels but task {spec.task} has {len(choices)} "
            f"({choices}); use a checkpoint fine-tuned on this task."
        )
    texts = [doc_texts(spec, d) for d in docs]
    pad = model.tokenizer.pad_token_id
    records: list[DocRecord] = []
    for start in range(0, len(docs), batch_size):
        chunk = range(start, min(start + batch_size, len(docs)))
        batch = model.encode([texts[i] for i in chunk])
        an = model.layer_logits(batch, keep_hidden=keep_hidden)
        probs = an.logits[-1].softmax(-1)  # (B, C)
        for j, i in enumerate(chunk):
            ids = [t for t, m in zip(batch.input_ids[j].tolist(), batch.attention_mask[j].tolist()) if m and t != pad]
            pred = int(an.stats.top1[-1, j])
            records.append(DocRecord(
                doc_id=doc_ids[i], prompt=model.tokenizer.decode(ids), prompt_token_ids=ids,
                output_text=choices[pred] if choices else str(pred), output_token_ids=[pred],
                prediction=pred, references=[gold_label(spec, docs[i])], stats=an.stats.select(slice(j, j + 1)),
                hidden=None if an.hidden is None else an.hidden[:, j : j + 1],
                embeddings=None if an.embeddings is None else an.embeddings[j : j + 1],
                extra={"final_probs": [round(float(p), 6) for p in probs[j]]},
            ))
        if progress is not None:
            progress.update(len(chunk))
    return records
