"""Lossless self-speculative decoding: draft with the first blocks, verify with the rest (``--kv speculative``).

The early layers of the model itself are the draft model (LayerSkip's self-speculation; Draft & Verify):

1. **draft**: up to d tokens are generated one at a time by blocks 0 … E only, each read out through the
   model's own final norm and head (``argmax head(final_norm(h^E))``); blocks 0 … E write their keys
   and values into the cache as they would at full depth;
2. **verify**: blocks E+1 … L−1 run once over the d drafted positions together (d query slots), starting
   from the drafts' h^E, so blocks ≤ E are never recomputed; this gives the full model's greedy token at
   each of those positions;
3. **accept** the longest prefix of drafts equal to the verified tokens, then the first verified token
   that differs (the correction); the cache columns of rejected drafts are overwritten by the next round
   (the causal mask never lets a query see a column beyond its own).

Every emitted token is the full model's greedy token, so the output equals full-depth greedy decoding up
to floating-point differences between one query slot and d query slots in the verify pass (tested
token-identical on tiny models; a divergence would show as ``token_agreement`` < 1 in the speed-up
report). Rows are decoded one after the other (acceptance differs per row).

Cost per round: d × (E+1) blocks for the draft, d × (L−1−E) blocks for the verification (d slots in one
call: on an accelerator almost the price of one), and 2d head projections. Nothing is saved when drafts
are rejected: the speed-up comes from verifying several tokens per call, so it needs acceptance.

Shape notation: P = prompt length, d = draft length, H = hidden size, L = blocks, E = draft layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ee_bench.decoding.kv_store import SlotIndex
from ee_bench.decoding.timing import SectionTimer


@dataclass(frozen=True)
class DraftRound:
    """One draft-and-verify round of one row.

    Attributes:
        drafted: the d draft tokens. verified: the full model's greedy token at each drafted position.
        accepted: length of the longest prefix where drafted == verified (0 … d).
    """

    drafted: tuple[int, ...]
    verified: tuple[int, ...]
    accepted: int

    @property
    def emitted(self) -> tuple[int, ...]:
        """The accepted drafts, then the correction if a draft was rejected."""
        if self.accepted == len(self.drafted):
            return self.drafted
        return self.drafted[: self.accepted] + (self.verified[self.accepted],)


def accepted_prefix(drafted: Sequence[int], verified: Sequence[int]) -> int:
    """Length of the longest common prefix of ``drafted`` and ``verified`` (the accepted drafts).

    Raises:
        ValueError: if the two lists differ in length.
    """
    if len(drafted) != len(verified):
        raise ValueError(f"drafted ({len(drafted)}) and verified ({len(verified)}) tokens differ in number")
    k = 0
    while k < len(drafted) and drafted[k] == verified[k]:
        k += 1
    return k


class SelfSpeculativeDecoder:
    """Draft with blocks 0 … ``draft_layer``, verify with the remaining blocks (see the module docstring).

    Args:
        runner: the :class:`~ee_bench.decoding.blocks.BlockRunner` of the model (blocks, cache, rotary).
        model: the causal wrapper (its ``eos_token_ids``, ``decode``, ``truncate_output``).
        draft_layer: E, 0-based, in 0 … L−2.
        draft_len: d ≥ 1, tokens drafted per round.

    Raises:
        ValueError: for a draft layer outside 0 … L−2 or a draft length < 1.
    """

    def __init__(self, runner, model, draft_layer: int, draft_len: int):
        L = runner.n_layers
        if not 0 <= draft_layer < L - 1:
            raise ValueError(f"draft layer {draft_layer} is outside 0..{L - 2} (the draft must stop before the last block)")
        if draft_len < 1:
            raise ValueError(f"draft length must be >= 1, got {draft_len}")
        self.runner, self.model = runner, model
        self.E, self.d, self.L = draft_layer, draft_len, L

    def _run(self, layers: range, hidden: Tensor, cols: list[int], store, key_real: Tensor) -> Tensor:
        """Blocks ``layers`` over one row's (1, q, H) inputs at cache columns ``cols``; returns (1, q, H)."""
        runner = self.runner
        c = torch.tensor([cols], device=hidden.device)  # (1, q)
        index = SlotIndex(torch.zeros(1, dtype=torch.long, device=hidden.device), c, torch.ones_like(c, dtype=torch.bool),
                          cols[-1] + 1, True)
        mask, rope = runner.mask(index, key_real), runner.rope(c)
        for layer in layers:
            hidden = runner.run_layer(layer, hidden, index, store, mask, rope)
        return hidden

    def decode_row(self, prompt: Sequence[int], until: tuple[str, ...], max_gen_toks: int, timer: SectionTimer,
                   finished) -> tuple[list[int], list[int], list[DraftRound], dict[str, int]]:
        """Decode one prompt.

        Args:
            prompt: token ids (P ≥ 1). until, max_gen_toks: stop strings and token budget.
            timer: where block time ("layers") and head time ("emit") are accounted.
            finished: callable(list of ids) → bool, the stop rule shared with the early-exit loop.

        Returns:
            (generated ids, exit layer per id — E for an accepted draft, L−1 for the prompt pass's token
            and for corrections —, the rounds, work counts {token_layers, head_rows, prompt_positions}).
        """
        runner, E, L = self.runner, self.E, self.L
        P = len(prompt)
        store = runner.new_store(1, P + max_gen_toks + self.d)
        key_real = torch.ones(store.written.shape[1:], dtype=torch.bool, device=store.written.device)  # (1, T_max)
        ids = torch.tensor([list(prompt)], device=store.written.device)
        counts = {"token_layers": L, "head_rows": 1, "prompt_positions": P}
        with timer.section("layers"):
            h = self._run(range(L), runner.embed(ids), list(range(P)), store, key_real)  # (1, P, H)
        with timer.section("emit"):
            gen = [int(runner.unembed(h[:, -1]).argmax(dim=-1))]
        exits, rounds = [L - 1], []
        col = P  # cache column of gen[-1], not yet fed to the model
        while not finished(gen, until, max_gen_toks):
            d = min(self.d, max_gen_toks - len(gen))
            drafted, states = [], []
            tok = gen[-1]
            for i in range(d):  # draft: blocks 0..E, one position at a time
                with timer.section("layers"):
                    x = self._run(range(E + 1), runner.embed(torch.tensor([[tok]], device=ids.device)), [col + i],
                                  store, key_real)  # (1, 1, H)
                with timer.section("emit"):
                    tok = int(runner.unembed(x[:, -1]).argmax(dim=-1))
                drafted.append(tok)
                states.append(x)
            with timer.section("layers"):  # verify: blocks E+1..L-1 over the d drafted positions at once
                y = self._run(range(E + 1, L), torch.cat(states, dim=1), list(range(col, col + d)), store, key_real)
            with timer.section("emit"):
                verified = runner.unembed(y[0]).argmax(dim=-1).tolist()  # (d,)
            rnd = DraftRound(tuple(drafted), tuple(verified), accepted_prefix(drafted, verified))
            rounds.append(rnd)
            counts["token_layers"] += d * L
            counts["head_rows"] += 2 * d
            for i, t in enumerate(rnd.emitted):
                gen.append(t)
                exits.append(E if i < rnd.accepted else L - 1)
                col += 1
                if finished(gen, until, max_gen_toks):
                    break
        return gen, exits, rounds, counts
