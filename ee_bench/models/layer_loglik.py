"""Log-likelihood of a continuation at every exit layer (lm-eval's ``loglikelihood``, layer by layer).

lm-eval scores a (context, continuation) request by the summed log-probability of the continuation's
tokens, teacher-forced after the context, and says whether greedy decoding would have produced exactly
those tokens (``is_greedy``). Here the same two numbers are read at every exit layer ℓ: each block
output at the positions that predict the continuation goes through the model's own final norm and
head (:class:`~ee_bench.models.unembed.Unembed`, paper §3.1), log-softmax over the vocabulary, and the
continuation token's entry is summed; ``is_greedy`` is whether every position's argmax is that token.
Row L−1 is read from the model's own logits, so it is lm-eval's ``hf`` score (up to float rounding).

Shape notation: L = layers, R = requests, N = continuation tokens of all requests together, V = vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ee_bench.models.capture import capture_block_outputs


@dataclass(frozen=True)
class LayerLoglik:
    """One request's continuation, scored at every exit layer.

    Attributes:
        loglik: (L,) summed log-probabilities of the continuation tokens (nats), layer 0 … L−1.
        is_greedy: (L,) whether each layer's argmax equals the continuation token at every position.
    """

    loglik: list[float]
    is_greedy: list[bool]


def _token_scores(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(N, V) logits, (N,) targets → (N,) float32 log-probabilities of the targets, (N,) bool argmax == target."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets.view(-1, 1)).squeeze(-1), logp.argmax(-1) == targets


@torch.no_grad()
def layer_logliks(model, requests: list[tuple[list[int], list[int]]]) -> list[LayerLoglik]:
    """Score R (context ids, continuation ids) requests at every exit layer, in one forward pass.

    The input row of a request is ``(context + continuation)[:-1]``, left-padded, with position ids that
    follow the mask (a padded row scores as when run alone); continuation token j is predicted at the
    position of token ``len(context) − 1 + j``.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM` (``parts.layers``, ``unembed``, ``left_pad``).
        requests: R pairs; each context has at least one token, each continuation at least one.

    Returns:
        R :class:`LayerLoglik`, (L,) each.

    Raises:
        ValueError: for an empty context or continuation.

    Source: lm-eval-harness ``HFLM._loglikelihood_tokens`` (sum of log-softmax entries, ``is_greedy``),
    applied to every layer through the model's own final norm and head (paper §3.1).
    """
    if not requests:
        return []
    for i, (ctx, cont) in enumerate(requests):
        if not ctx or not cont:
            raise ValueError(f"request {i}: context and continuation need at least one token each")
    ids, mask = model.left_pad([(ctx + cont)[:-1] for ctx, cont in requests])  # (R, W)
    width = ids.shape[1]
    rows, cols, targets, owner = [], [], [], []
    for r, (_, cont) in enumerate(requests):
        rows += [r] * len(cont)
        cols += list(range(width - len(cont), width))
        targets += cont
        owner += [r] * len(cont)
    dev = model.device
    rows_t, cols_t = torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)
    targets_t = torch.tensor(targets, device=dev)  # (N,)
    step = max(1, model.unembed.tile_elems // max(1, model.unembed.head.weight.shape[0]))

    def reduce(hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # (N, H) -> (N,), (N,), unused (N,)
        parts = [_token_scores(model.unembed(hidden[i : i + step]), targets_t[i : i + step])
                 for i in range(0, hidden.shape[0], step)]
        lp, greedy = (torch.cat(x) for x in zip(*parts))
        return lp, greedy, torch.zeros_like(lp)

    keep = int(width - min(cols))
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    with capture_block_outputs(model.parts.layers, (rows_t, cols_t), False, reduce) as store:
        out = model.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False,
                          logits_to_keep=keep)
    final = _token_scores(out.logits[rows_t, cols_t - (width - keep)], targets_t)
    per_layer = [store["stats"][i][:2] for i in range(model.n_layers - 1)] + [final]
    lp = torch.stack([p[0] for p in per_layer]).cpu()  # (L, N)
    greedy = torch.stack([p[1] for p in per_layer]).cpu()  # (L, N)
    owner_t = torch.tensor(owner)
    results = []
    for r in range(len(requests)):
        sel = owner_t == r
        results.append(LayerLoglik(lp[:, sel].sum(-1).tolist(), greedy[:, sel].all(-1).tolist()))
    return results
