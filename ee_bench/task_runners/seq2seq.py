"""Generation tasks on encoder-decoder translators: greedy decoding from the last decoder layer, then
one teacher-forced pass that decodes every decoder layer at every generated token (paper §4, Table 3;
nothing exits early in this pass).

The same :class:`~ee_bench.types.DocRecord` as the causal runner
(:func:`ee_bench.task_runners.generation.run_generation`), so the oracle, the gate sweep, the samples file
and the leaderboard row come from the same code. ``prompt`` / ``prompt_token_ids`` are the encoder's
input: the task's ``seq2seq_source`` rendered, after the card's prefix (T5), in the model's tokenizer.
"""

from __future__ import annotations

import logging
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.task_runners.generation import generate_and_analyse
from ee_bench.tasks.loaders import target_language
from ee_bench.tasks.spec import TaskSpec
from ee_bench.tasks.templates import render
from ee_bench.tasks.truncation import apply_truncation
from ee_bench.types import DocRecord

logger = logging.getLogger(__name__)


def task_languages(spec: TaskSpec, docs: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(source, target) ISO codes of a task: the documents' ``src_lang``, else the first half of a
    ``dataset_name`` such as ``de-en``; the target from :func:`~ee_bench.tasks.loaders.target_language`.

    Raises:
        EEBenchError: if the documents mix several language pairs (one decoder prefix per task).
    """
    pairs = {(d.get("src_lang"), d.get("tgt_lang")) for d in docs if d.get("src_lang") or d.get("tgt_lang")}
    if len(pairs) > 1:
        raise EEBenchError(f"Task {spec.task} mixes language pairs {sorted(map(str, pairs))}; a seq2seq run needs one "
                           f"pair per task. Split it into one task per pair.")
    pair = spec.dataset_name or ""
    src = docs[0].get("src_lang") if docs and docs[0].get("src_lang") else (pair.split("-")[0] if "-" in pair else None)
    return src, target_language(spec, docs)


def build_sources(model, spec: TaskSpec, docs: list[dict[str, Any]]) -> list[tuple[str, list[int]]]:
    """Render each document's encoder input and encode it; also selects the task's language pair
    (:meth:`~ee_bench.models.contracts.Seq2SeqExitModel.set_languages`).

    Returns:
        One (encoder input text, its token ids) per document.

    Raises:
        EEBenchError: if the task has no ``seq2seq_source`` (the fix is named), or a language is not
            mapped by the card.
    """
    if spec.seq2seq_source is None:
        raise EEBenchError(
            f"Task {spec.task} does not say how an encoder-decoder model gets its input: add "
            f"seq2seq_source: \"{{{{src}}}}\" (a Jinja template of the source text) to {spec.source_file}, or run a "
            f"causal model on it."
        )
    model.set_languages(*task_languages(spec, docs))
    out = []
    for doc in docs:
        if spec.truncation:
            doc = apply_truncation(spec, doc, model.tokenizer)
        text = model.source_text(render(spec.seq2seq_source, doc, source=spec.source_file), doc)
        out.append((text, model.encode_source(text)))
    return out


def run_seq2seq_generation(model, spec: TaskSpec, docs: list[dict[str, Any]], doc_ids: list[int], *,
                           batch_size: int = 1, keep_hidden: bool = False, progress=None) -> list[DocRecord]:
    """Generate and analyse a generation task with an encoder-decoder model.

    Args:
        model: a :class:`~ee_bench.models.contracts.Seq2SeqExitModel`.
        spec: the task; docs: its documents; doc_ids: their indices in the split.
        batch_size: documents per batch (right-padded sources); the oracle layers do not depend on it.
        keep_hidden: keep per-layer decoder hidden states (for gates that read them).
        progress: a tqdm bar advanced once per document, or None.

    Returns:
        One :class:`DocRecord` per document, in order; stats are (L decoder layers, output tokens).
    """
    sources = build_sources(model, spec, docs)
    return generate_and_analyse(model, spec, docs, doc_ids, sources, batch_size=batch_size, keep_hidden=keep_hidden,
                                progress=progress, extra={"decoder_prefix_ids": list(model.decoder_prefix)})
