"""Multiple-choice tasks on decoder models (GLUE under a causal LM), scored lm-eval's way.

Each document's prompt is ``doc_to_text``; each choice's continuation is a space followed by the
label word (lm-eval's default target delimiter), scored by its log-likelihood; the prediction is the
best choice's index and the reference is the gold label index (``doc_to_target``). The per-layer
statistics are those of the label-restricted distribution (:func:`ee_bench.models.choice.score_choices`).
"""

from __future__ import annotations

import logging
from typing import Any

from ee_bench.errors import ConfigError
from ee_bench.layer_metrics import LAYER_LOGLIK_KEY
from ee_bench.models.choice import continuation_ids, score_choices
from ee_bench.models.layer_loglik import layer_logliks
from ee_bench.task_runners.generation import build_prompts
from ee_bench.tasks.spec import TaskSpec
from ee_bench.tasks.templates import render
from ee_bench.types import DocRecord

logger = logging.getLogger(__name__)

TARGET_DELIMITER = " "


def gold_label(spec: TaskSpec, doc: dict[str, Any]) -> int:
    """The gold label index rendered from ``doc_to_target``.

    Raises:
        ConfigError: if it is not an integer in [0, C) (e.g. a hub test split with label −1).
    """
    text = render(spec.doc_to_target or "", doc, source=spec.source_file).strip()
    n = len(spec.doc_to_choice or [])
    try:
        label = int(text)
    except ValueError:
        label = -1
    if not 0 <= label < n:
        raise ConfigError(spec.source_file, [f"doc_to_target gave {text!r}, not a label index in [0, {n}); "
                                             f"multiple-choice tasks need gold labels (use a labelled split)"])
    return label


def choice_rows(per_choice, final: list[float]) -> list[list[float]]:
    """(L, C) log-likelihoods (nats) from C :class:`~ee_bench.models.layer_loglik.LayerLoglik`, row L−1
    replaced by the reported final-layer ``final`` (C,) (equal up to float rounding; the curve then ends
    exactly at the reported prediction)."""
    rows = [list(r) for r in zip(*(c.loglik for c in per_choice))]
    rows[-1] = list(final)
    return rows


def run_multiple_choice(model, spec: TaskSpec, docs: list[dict[str, Any]], doc_ids: list[int] | None = None, *,
                        batch_size: int = 1, keep_hidden: bool = False, progress=None) -> list[DocRecord]:
    """Score a multiple-choice task with a causal LM.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM`.
        spec: the task (``output_type: multiple_choice``); docs: its documents; doc_ids: their indices
            in the split (default 0..N−1).
        batch_size: documents per forward pass (each brings C rows); results do not depend on it.
        keep_hidden: keep the (L, 1, H) block outputs for gates that read hidden states.
        progress: a tqdm bar advanced once per document, or None.

    Returns:
        One :class:`DocRecord` per document: ``prediction`` = predicted label index,
        ``references`` = [gold label index], ``stats`` (L, 1) over the label-restricted distribution,
        ``output_token_ids`` = [first token of the chosen label word], ``extra`` = per-choice
        log-likelihoods (nats), the label words and ``loglik_by_layer``: (L, C) log-likelihoods at
        each exit layer (:func:`~ee_bench.models.layer_loglik.layer_logliks`), whose row L−1 is the
        reported ``loglik``.

    Raises:
        ConfigError: if the task is not multiple choice or a document has no valid gold label.
    """
    if spec.output_type != "multiple_choice" or not spec.doc_to_choice:
        raise ConfigError(spec.source_file, [f"task {spec.task} is {spec.output_type}, not multiple_choice"])
    doc_ids = list(range(len(docs))) if doc_ids is None else list(doc_ids)
    choices = [TARGET_DELIMITER + c for c in spec.doc_to_choice]
    cont_ids = [continuation_ids(model.tokenizer, c) for c in choices]
    first_ids = [c[0] for c in cont_ids]
    prompts = build_prompts(model, spec, docs)
    golds = [gold_label(spec, d) for d in docs]
    records: list[DocRecord] = []
    for start in range(0, len(docs), batch_size):
        chunk = range(start, min(start + batch_size, len(docs)))
        scores = score_choices(model, [prompts[i][1] for i in chunk], choices, keep_hidden=keep_hidden)
        by_layer = layer_logliks(model, [(prompts[i][1], c) for i in chunk for c in cont_ids])
        for j, (i, sc) in enumerate(zip(chunk, scores)):
            records.append(DocRecord(
                doc_id=doc_ids[i], prompt=prompts[i][0], prompt_token_ids=prompts[i][1],
                output_text=spec.doc_to_choice[sc.pred_index], output_token_ids=[first_ids[sc.pred_index]],
                prediction=sc.pred_index, references=[golds[i]], stats=sc.stats,
                hidden=sc.hidden, embeddings=sc.embeddings,
                extra={"loglik": sc.loglik, "choices": list(spec.doc_to_choice),
                       LAYER_LOGLIK_KEY: choice_rows(by_layer[j * len(choices) : (j + 1) * len(choices)], sc.loglik)},
            ))
        if progress is not None:
            progress.update(len(chunk))
    return records
