"""Layer similarity of a causal LM (paper §5.1, Fig. 3 and 4, for decoders).

The same measures as :mod:`ee_bench.layer_similarity` (mean confidence, KL/JS to the last and to
the next layer, cosine and Pearson of the hidden states), over next-token distributions: for every
response token of N documents, each layer ℓ's distribution ``p_ℓ = softmax(head(final_norm(h^ℓ)))``
over the V-token vocabulary (the model's own final norm and head, :class:`~ee_bench.models.unembed.Unembed`)
and the block output ``h^ℓ`` at the position that predicts the token. The tokens are the documents'
first references teacher-forced after their evaluation prompts, so every model is measured on the
same tokens.

Memory: the (L, rows, V) distributions exist for a few rows at a time (``max_elems`` entries); the
per-chunk means of :func:`~ee_bench.layer_similarity.layer_similarity` are combined into the
mean over all N tokens, weighted by the chunk sizes.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch

from ee_bench.layer_similarity import LayerSimilarity, layer_similarity
from ee_bench.task_runners.generation import build_prompts, references_of

MAX_ELEMS = 1 << 21
"""Distribution entries (layers × rows × vocabulary) held at once: 8 MiB of float32."""


def combine(parts: list[tuple[int, LayerSimilarity]], name: str) -> LayerSimilarity:
    """Mean of per-chunk profiles weighted by their token counts (``None`` entries stay ``None``).

    Raises:
        ValueError: if ``parts`` is empty.
    """
    if not parts:
        raise ValueError("no tokens to profile")
    total = sum(n for n, _ in parts)
    out: dict[str, Any] = {"name": name, "n_examples": total, "n_layers": parts[0][1].n_layers}
    for f in fields(LayerSimilarity):
        if f.name in out:
            continue
        cols = zip(*(getattr(p, f.name) for _, p in parts))
        out[f.name] = [None if col[0] is None else sum(n * v for (n, _), v in zip(parts, col)) / total for col in cols]
    return LayerSimilarity(**out)


@torch.no_grad()
def profile_decoder(model, prompts: list[list[int]], responses: list[list[int]], name: str | None = None,
                    max_elems: int = MAX_ELEMS) -> LayerSimilarity:
    """Similarity profile of an :class:`~ee_bench.models.hf_causal.HFCausalLM` on teacher-forced responses.

    Shape notation: L = layers, N = response tokens, V = vocabulary, H = hidden size.

    Args:
        model: the causal-LM wrapper. prompts: token ids per document. responses: the token ids to
            teacher-force after each prompt (every one is a measured position).
        name: label for tables and plots. max_elems: L × rows × V entries per chunk.

    Returns:
        A :class:`LayerSimilarity` whose ``n_examples`` is N (tokens); divergences in nats.

    Raises:
        ValueError: if there is no response token.
    """
    parts: list[tuple[int, LayerSimilarity]] = []
    dtype = next(model.model.parameters()).dtype
    for prompt, resp in zip(prompts, responses):
        if not resp:
            continue
        an = model.analyse_outputs([prompt], [resp], keep_hidden=True)[0]
        hidden = an.hidden  # (L, n, H) float32
        L, n, _ = hidden.shape
        vocab = model.unembed.head.weight.shape[0]
        rows = max(1, max_elems // (L * vocab))
        for r in range(0, n, rows):
            h = hidden[:, r : r + rows]  # (L, r, H)
            logits = model.unembed(h.to(model.device, dtype)).float()  # (L, r, V)
            parts.append((h.shape[1], layer_similarity(logits.softmax(-1).cpu(), h, name or model.name)))
    return combine(parts, name or model.name)


def profile_decoder_on_task(model, spec, docs: list[dict[str, Any]], name: str | None = None) -> LayerSimilarity:
    """:func:`profile_decoder` on a generation task's documents: the evaluation prompt
    (:func:`~ee_bench.task_runners.generation.build_prompts`) and the first reference's tokens."""
    prompts = [ids for _, ids in build_prompts(model, spec, docs)]
    responses = [model.tokenizer(references_of(spec, d)[0], add_special_tokens=False)["input_ids"] for d in docs]
    return profile_decoder(model, prompts, responses, name)
