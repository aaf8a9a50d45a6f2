"""Oracle exit layers and their summaries on hand-built top-1 tables (paper §4; docs/definitions.md).

Layers are 0-based; L−1 is the final layer. first-match m_t = min{ℓ : top1_ℓ = top1_{L−1}};
saturation s_t = min{ℓ : top1_ℓ' = top1_{L−1} for all ℓ' ≥ ℓ}.
"""

from __future__ import annotations

import pytest
import torch

from ee_bench.exits.oracle import PERC_AT_K, first_match_layer, saturation_layer, summarize_layers

# Columns are tokens, rows layers 0..3 (L = 4); the final row is the model's prediction.
TOP1 = torch.tensor([
    # t0 t1 t2 t3 t4 t5
    [7, 1, 3, 1, 5, 9],
    [7, 2, 1, 2, 5, 9],
    [7, 3, 3, 1, 6, 4],
    [7, 3, 3, 3, 5, 4],
])
# t0: right at every layer                       -> first match 0, saturation 0
# t1: right from layer 2 on                      -> 2, 2
# t2: right at 0, wrong at 1, right from 2       -> 0, 2
# t3: right only at the final layer              -> 3, 3
# t4: right at 0-1, wrong at 2, right at 3       -> 0, 3
# t5: wrong at 0-1 (9), right from 2             -> 2, 2
FIRST_MATCH = [0, 2, 0, 3, 0, 2]
SATURATION = [0, 2, 2, 3, 3, 2]


def test_first_match_layer_hand_table():
    assert first_match_layer(TOP1).tolist() == FIRST_MATCH


def test_saturation_layer_hand_table():
    assert saturation_layer(TOP1).tolist() == SATURATION


def test_first_match_never_after_saturation():
    assert bool((first_match_layer(TOP1) <= saturation_layer(TOP1)).all())


def test_single_layer_model_exits_at_zero():
    top1 = torch.tensor([[4, 8, 15]])  # L = 1
    assert first_match_layer(top1).tolist() == [0, 0, 0]
    assert saturation_layer(top1).tolist() == [0, 0, 0]


def test_oracle_dtype_and_empty():
    assert first_match_layer(TOP1).dtype == torch.int64
    empty = torch.zeros(5, 0, dtype=torch.int64)
    assert first_match_layer(empty).shape == (0,)
    assert saturation_layer(empty).shape == (0,)


def test_summary_of_the_hand_table():
    s = summarize_layers(first_match_layer(TOP1), n_layers=4)
    # layers 0,2,0,3,0,2: mean 7/6; 5 of 6 tokens exit before layer 3.
    assert s.avg == pytest.approx(7 / 6)
    assert s.perc == pytest.approx(100 * 5 / 6)
    assert s.n_tokens == 6 and s.n_layers == 4
    # perc@k counts layers ≤ L−1−k = 3−k; for k ≥ 5 that is negative: no token.
    assert s.perc_at == {k: 0.0 for k in PERC_AT_K}


def test_summary_perc_at_k_on_a_30_layer_model():
    layers = torch.tensor([0, 10, 14, 15, 20, 24, 25, 29])  # L = 30, last = 29
    s = summarize_layers(layers, n_layers=30)
    assert s.avg == pytest.approx(137 / 8)  # 0+10+14+15+20+24+25+29 = 137
    assert s.perc == pytest.approx(100 * 7 / 8)  # all but 29
    assert s.perc_at[5] == pytest.approx(100 * 6 / 8)  # ≤ 24: 0 10 14 15 20 24
    assert s.perc_at[10] == pytest.approx(100 * 4 / 8)  # ≤ 19: 0 10 14 15
    assert s.perc_at[15] == pytest.approx(100 * 3 / 8)  # ≤ 14: 0 10 14
    assert s.perc_at[20] == pytest.approx(100 * 1 / 8)  # ≤ 9: 0
    d = s.to_dict()
    assert d["perc@10"] == pytest.approx(50.0) and d["avg"] == pytest.approx(17.125)
    assert set(d) == {"avg", "perc", "n_tokens", "n_layers", "perc@5", "perc@10", "perc@15", "perc@20"}


def test_summary_all_final_layer():
    s = summarize_layers(torch.tensor([3, 3, 3]), n_layers=4)
    assert (s.avg, s.perc) == (3.0, 0.0)


@pytest.mark.parametrize("layers", [torch.tensor([], dtype=torch.int64), torch.tensor([0, 4]), torch.tensor([-1, 2])])
def test_summary_rejects_empty_and_out_of_range(layers):
    with pytest.raises(ValueError):
        summarize_layers(layers, n_layers=4)
