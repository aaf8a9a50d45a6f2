"""Multiple-choice scoring for decoder models, lm-eval style, with a label-restricted head per layer.

The final prediction is lm-eval-harness's ``loglikelihood`` choice: the summed log-probability of
each continuation's tokens after the prompt (final layer, teacher-forced), argmax over choices.

Layer-wise (paper §4 applied to classification), each layer ℓ is decoded at the last prompt position
with the model's own final norm and **only the head rows of the choices' first tokens**:
``z_ℓ = head[first_ids](final_norm(h^ℓ))`` (C logits), and the softmax over those C logits is the
label-restricted distribution whose argmax (a choice index), probability and entropy (nats) fill
:class:`~ee_bench.types.LayerStats`. Row L−1 takes the same C entries of the model's own logits, so it
reproduces the model's output. For single-token label words (all GLUE label words in the common
tokenizers) the final-layer restricted argmax equals the log-likelihood prediction; for multi-token
words the layer-wise view covers their first token only.

Shape notation: B = documents in a batch, C = choices, L = layers, H = hidden size, V = vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ee_bench.errors import EEBenchError
from ee_bench.models.unembed import reduce_logits, softcap
from ee_bench.types import LayerStats

# Continuations are tokenised after this anchor and the anchor's tokens removed, so a word gets the
# ids it has in running text (" yes" → "Ġyes" / "▁yes"), not a sentence-initial form.
_ANCHOR = "\n"


@dataclass(frozen=True)
class ChoiceScore:
    """The multiple-choice result of one document.

    Attributes:
        pred_index: argmax of ``loglik`` (the predicted choice index).
        stats: (L, 1) statistics of the label-restricted distribution at the last prompt position;
            ``top1`` holds choice indices, ``entropy`` is in nats over the C choices.
        loglik: C summed log-probabilities (nats) of each continuation's tokens, final layer.
        hidden: (L, 1, H) float32 block outputs at that position, when requested.
        embeddings: (1, H) float32 block-0 input there, when requested.
    """

    pred_index: int
    stats: LayerStats
    loglik: list[float]
    hidden: Tensor | None = None
    embeddings: Tensor | None = None


def continuation_ids(tokenizer, continuation: str) -> list[int]:
    """Token ids of a continuation as it is tokenised in running text (after a newline).

    Raises:
        EEBenchError: if the continuation has no tokens.
    """
    base = tokenizer(_ANCHOR, add_special_tokens=False)["input_ids"]
    full = tokenizer(_ANCHOR + continuation, add_special_tokens=False)["input_ids"]
    ids = full[len(base):] if full[: len(base)] == base else tokenizer(continuation, add_special_tokens=False)["input_ids"]
    if not ids:
        raise EEBenchError(f"the label word {continuation!r} has no tokens; fix the task's doc_to_choice")
    return list(ids)


def _restricted_head(model, hidden: Tensor, first_ids: Tensor) -> Tensor:
    """(N, H) block outputs → (N, C) logits through the final norm and the head rows ``first_ids``."""
    head = model.parts.head
    x = model.parts.final_norm(hidden.to(head.weight.dtype))
    bias = head.bias[first_ids] if getattr(head, "bias", None) is not None else None
    return softcap(torch.nn.functional.linear(x, head.weight[first_ids], bias), model.unembed.softcap)


@torch.no_grad()
def score_choices(model, prompts: list[list[int]], choices: list[str], keep_hidden: bool = False) -> list[ChoiceScore]:
    """Score the same C continuations after each of B prompts, in one forward pass.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM` (uses ``capture_blocks``,
            ``parts.final_norm`` and ``parts.head``).
        prompts: B prompt token-id lists.
        choices: C continuation strings, exactly as appended to the prompt (include the leading
            space, e.g. ``" yes"``).
        keep_hidden: also return the (L, 1, H) block outputs at the last prompt position.

    Returns:
        B :class:`ChoiceScore`: ``pred_index``, ``stats`` (L, 1) and ``loglik`` (C) per prompt.

    Raises:
        EEBenchError: if fewer than two choices are given, or two choices share their first token
            (the restricted distribution could not tell them apart).

    Source: lm-eval-harness ``loglikelihood`` for the prediction; paper §3.1 (the model's own head
    at every layer) for the restricted per-layer distribution.
    """
    if len(choices) < 2:
        raise EEBenchError(f"multiple choice needs at least two choices, got {choices!r}")
    cont = [continuation_ids(model.tokenizer, c) for c in choices]
    firsts = [c[0] for c in cont]
    if len(set(firsts)) != len(firsts):
        raise EEBenchError(f"label words {choices!r} share a first token ({firsts}); the label-restricted head needs "
                           f"distinct first tokens: choose other label words in doc_to_choice")
    B, C = len(prompts), len(choices)
    rows = [p + c for p in prompts for c in cont]  # B*C rows, row b*C + c
    ids, mask = model.left_pad(rows)  # (B*C, W)
    width = ids.shape[1]
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)  # positions as if unpadded
    keep = max(len(c) for c in cont) + 1  # logits only for the last `keep` positions
    # Hidden states at the last prompt token, read from each document's first row (causal: identical
    # across that document's C rows).
    sel_rows = torch.arange(B, device=model.device) * C
    sel_cols = torch.tensor([width - len(cont[0]) - 1] * B, device=model.device)
    with model.capture_blocks((sel_rows, sel_cols), keep_hidden=True) as store:
        out = model.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False,
                          logits_to_keep=keep)
    logp = torch.log_softmax(out.logits.float(), dim=-1)  # (B*C, keep, V)
    offset = width - keep
    loglik = torch.zeros(B, C)
    for r in range(B * C):
        c_ids = cont[r % C]
        start = width - len(c_ids) - 1 - offset  # position predicting the continuation's first token
        pos = torch.arange(start, start + len(c_ids), device=logp.device)
        loglik[r // C, r % C] = logp[r, pos, torch.tensor(c_ids, device=logp.device)].sum().item()
    first_ids = torch.tensor(firsts, device=model.device)
    hidden = torch.stack([store["hidden"][i] for i in range(model.n_layers)])  # (L, B, H)
    z = [_restricted_head(model, hidden[i], first_ids) for i in range(model.n_layers - 1)]  # (L-1) × (B, C)
    final_pos = width - len(cont[0]) - 1 - offset
    z.append(out.logits[sel_rows, final_pos][:, first_ids])  # (B, C): the model's own logits
    all_stats = LayerStats.stack([reduce_logits(zl) for zl in z])  # (L, B), softmax over the C choices
    results = []
    for b in range(B):
        stats = all_stats.select(slice(b, b + 1))  # (L, 1)
        results.append(ChoiceScore(
            pred_index=int(loglik[b].argmax()), stats=stats, loglik=loglik[b].tolist(),
            hidden=hidden[:, b : b + 1].cpu() if keep_hidden else None,
            embeddings=store["embeddings"][b : b + 1].cpu() if keep_hidden else None,
        ))
    return results
