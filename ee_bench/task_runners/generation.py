"""Generation tasks: greedy decoding from the final layer, then one teacher-forced pass that decodes
every layer at every generated token (paper §4; nothing exits early in this pass)."""

from __future__ import annotations

import logging
from typing import Any

from ee_bench.tasks.spec import TaskSpec
from ee_bench.tasks.templates import render
from ee_bench.tasks.truncation import apply_truncation
from ee_bench.types import DocRecord

logger = logging.getLogger(__name__)


def build_prompts(model, spec: TaskSpec, docs: list[dict[str, Any]]) -> list[tuple[str, list[int]]]:
    """Render ``doc_to_text`` (after the task's truncation rule, if any) and encode it for ``model``.

    Returns:
        One (prompt text as fed to the model, its token ids) per document.
    """
    out = []
    for doc in docs:
        if spec.truncation:
            doc = apply_truncation(spec, doc, model.tokenizer)
        text = render(spec.doc_to_text, doc, source=spec.source_file)
        ids = model.encode_prompt(text)
        out.append((model.tokenizer.decode(ids), ids))
    return out


def references_of(spec: TaskSpec, doc: dict[str, Any]) -> list[str]:
    """All references of a document: ``doc["refs"]`` where the loader provides several, else the
    rendered ``doc_to_target``."""
    if isinstance(doc.get("refs"), list) and doc["refs"]:
        return [str(r) for r in doc["refs"]]
    return [render(spec.doc_to_target, doc, source=spec.source_file)]


def run_generation(model, spec: TaskSpec, docs: list[dict[str, Any]], doc_ids: list[int], *,
                   batch_size: int = 1, keep_hidden: bool = False, progress=None) -> list[DocRecord]:
    """Generate and analyse a generation task.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM`.
        spec: the task; docs: its documents; doc_ids: their indices in the split.
        batch_size: documents per batch (left padding); the oracle layers do not depend on it.
        keep_hidden: keep per-layer hidden states (for gates that read them).
        progress: a tqdm bar advanced once per document, or None.

    Returns:
        One :class:`DocRecord` per document, in order.
    """
    return generate_and_analyse(model, spec, docs, doc_ids, build_prompts(model, spec, docs),
                                batch_size=batch_size, keep_hidden=keep_hidden, progress=progress)


def generate_and_analyse(model, spec: TaskSpec, docs: list[dict[str, Any]], doc_ids: list[int],
                         inputs: list[tuple[str, list[int]]], *, batch_size: int = 1, keep_hidden: bool = False,
                         progress=None, extra: dict[str, Any] | None = None) -> list[DocRecord]:
    """The batch loop both generation runners share: greedy generation from the last layer, then one
    teacher-forced pass that decodes every layer at every generated token (``model.analyse_outputs``).

    Args:
        model: a causal or an encoder-decoder wrapper (``generate`` and ``analyse_outputs``).
        spec: the task; docs: its documents; doc_ids: their indices in the split.
        inputs: one (input text, its token ids) per document: the prompt, or the encoder's source.
        batch_size: documents per batch. keep_hidden: keep per-layer hidden states.
        progress: a tqdm bar advanced once per document, or None.
        extra: stored in every record's ``extra`` (e.g. an encoder-decoder's decoder prefix).

    Returns:
        One :class:`DocRecord` per document, in order; stats are (L, output tokens).
    """
    records: list[DocRecord] = []
    for start in range(0, len(docs), batch_size):
        chunk = range(start, min(start + batch_size, len(docs)))
        ids = [inputs[i][1] for i in chunk]
        outputs = model.generate(ids, spec.until, spec.max_gen_toks)
        analyses = model.analyse_outputs(ids, [o[0] for o in outputs], keep_hidden=keep_hidden)
        for i, (out_ids, text), an in zip(chunk, outputs, analyses):
            records.append(DocRecord(
                doc_id=doc_ids[i], prompt=inputs[i][0], prompt_token_ids=inputs[i][1],
                output_text=text, output_token_ids=out_ids, prediction=text,
                references=references_of(spec, docs[i]), stats=an.stats,
                hidden=an.hidden, embeddings=an.embeddings, extra=dict(extra) if extra else None,
            ))
        if progress is not None:
            progress.update(len(chunk))
    return records
