"""The shared per-layer readout (ee_bench/models/capture.py), on toy blocks whose outputs are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ee_bench.models.capture import (
    LayerAnalysis,
    assemble_analysis,
    capture_block_outputs,
    empty_analyses,
    split_analysis,
)
from ee_bench.types import LayerStats


class AddConst(nn.Module):
    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, hidden_states):
        return hidden_states + self.c


def toy_reduce(h):  # (N, H) → (argmax, max, sum): easy to work out by hand
    return h.argmax(-1), h.max(-1).values, h.sum(-1)


def run_blocks(layers, x):
    for blk in layers:
        x = blk(x)
    return x


@pytest.mark.parametrize("time_major", [False, True])
def test_hooks_reduce_blocks_before_the_last_and_keep_hidden_states(time_major):
    layers = nn.ModuleList([AddConst(1.0), AddConst(2.0), AddConst(3.0)])  # outputs x+1, x+3, x+6
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # (B, T, H)
    rows, cols = torch.tensor([0, 1]), torch.tensor([2, 0])
    # picked rows of x: x[0, 2] = [8, 9, 10, 11], x[1, 0] = [12, 13, 14, 15]
    with capture_block_outputs(layers, (rows, cols), True, toy_reduce, time_major=time_major) as store:
        run_blocks(layers, x.transpose(0, 1) if time_major else x)
    assert sorted(store["stats"]) == [0, 1]  # block L−1 is left to the model's own logits
    top1, mx, total = store["stats"][1]  # block 1 output = x + 3
    assert top1.tolist() == [3, 3]
    assert mx.tolist() == [14.0, 18.0]
    assert total.tolist() == [8 + 9 + 10 + 11 + 12.0, 12 + 13 + 14 + 15 + 12.0]
    assert store["hidden"][2].tolist() == [[14.0, 15.0, 16.0, 17.0], [18.0, 19.0, 20.0, 21.0]]  # x + 6
    assert store["embeddings"].tolist() == [[8.0, 9.0, 10.0, 11.0], [12.0, 13.0, 14.0, 15.0]]
    assert all(not blk._forward_hooks and not blk._forward_pre_hooks for blk in layers)  # removed on exit


def test_hooks_are_removed_after_an_error():
    layers = nn.ModuleList([AddConst(1.0), AddConst(2.0)])
    with pytest.raises(RuntimeError, match="boom"):
        with capture_block_outputs(layers, (torch.tensor([0]), torch.tensor([0])), False, toy_reduce):
            raise RuntimeError("boom")
    assert all(not blk._forward_hooks and not blk._forward_pre_hooks for blk in layers)


def test_assemble_then_split_per_document():
    # L = 2 layers, N = 3 positions: layer 0 from the hooks, layer 1 (the last) from the logits
    store = {"stats": {0: (torch.tensor([5, 6, 7]), torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 2.0, 3.0]))},
             "hidden": {}, "embeddings": None}
    final = (torch.tensor([8, 9, 10]), torch.tensor([0.4, 0.5, 0.6]), torch.tensor([4.0, 5.0, 6.0]))
    an = assemble_analysis(store, final, n_layers=2)
    assert an.stats.top1.tolist() == [[5, 6, 7], [8, 9, 10]]
    assert an.hidden is None and an.embeddings is None
    first, second = split_analysis(an, [1, 2])
    assert first.stats.top1.tolist() == [[5], [8]]
    assert second.stats.top1.tolist() == [[6, 7], [9, 10]]
    assert second.stats.entropy.tolist() == [[2.0, 3.0], [5.0, 6.0]]


def test_split_refuses_sizes_that_do_not_add_up():
    stats = LayerStats(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="add up to 2, but 3 positions"):
        split_analysis(LayerAnalysis(stats), [1, 1])


def test_empty_analyses_have_no_position():
    out = empty_analyses(n_layers=4, count=2)
    assert len(out) == 2
    assert [tuple(a.stats.top1.shape) for a in out] == [(4, 0), (4, 0)]
