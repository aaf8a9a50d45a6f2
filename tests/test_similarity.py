"""Layer-similarity measures on hand-built distributions and vectors (paper §5.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_kl

from ee_bench.layer_similarity import (
    cosine_similarity,
    format_table,
    js_divergence,
    kl_divergence,
    layer_similarity,
    pearson_correlation,
    plot_profiles,
)


def T(x):
    return torch.tensor(x, dtype=torch.float64)

KL_CASES = [  # p, q, KL(p || q) in nats worked out by hand
    ([0.5, 0.5], [0.5, 0.5], 0.0),
    ([0.5, 0.5], [0.25, 0.75], 0.5 * math.log(4 / 3)),  # ½ln2 + ½ln(2/3)
    ([1.0, 0.0], [0.5, 0.5], math.log(2)),  # the p = 0 term counts 0
    ([0.2, 0.3, 0.5], [0.5, 0.3, 0.2], 0.3 * math.log(0.5 / 0.2)),  # 0.2ln0.4 + 0.5ln2.5 = 0.3ln2.5
]


@pytest.mark.parametrize("p,q,expected", KL_CASES)
def test_kl_by_hand_and_scipy(p, q, expected):
    assert float(kl_divergence(T(p), T(q))) == pytest.approx(expected, abs=1e-12)
    assert float(kl_divergence(T(p), T(q))) == pytest.approx(float(scipy_kl(p, q)), abs=1e-12)


@pytest.mark.parametrize("p,q,expected", [
    ([1.0, 0.0], [0.0, 1.0], math.log(2)),  # disjoint supports: the maximum, ln 2
    ([0.5, 0.5], [0.5, 0.5], 0.0),
    ([1.0, 0.0], [0.5, 0.5], 0.5 * math.log(4 / 3) + 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2))),
])
def test_js_by_hand_and_symmetry(p, q, expected):
    # m = (0.75, 0.25) in the third case: ½KL(p‖m) = ½ln(4/3); ½KL(q‖m) = ½(½ln(0.5/0.75) + ½ln(0.5/0.25))
    assert float(js_divergence(T(p), T(q))) == pytest.approx(expected, abs=1e-12)
    assert float(js_divergence(T(q), T(p))) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("a,b,cos,r", [
    ([1.0, 0.0], [0.0, 1.0], 0.0, -1.0),
    ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], 1.0, 1.0),
    ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], 10 / 14, -1.0),  # 3+4+3 over 14
    ([1.0, 1.0, 0.0], [1.0, 0.0, 1.0], 0.5, -0.5),  # centred: (⅓,⅓,−⅔)·(⅓,−⅔,⅓) = −⅓; norms² = ⅔
])
def test_cosine_and_pearson_by_hand(a, b, cos, r):
    assert float(cosine_similarity(T(a), T(b))) == pytest.approx(cos, abs=1e-12)
    assert float(pearson_correlation(T(a), T(b))) == pytest.approx(r, abs=1e-12)


def test_pearson_matches_numpy():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 32, generator=g), torch.randn(5, 32, generator=g)
    got = pearson_correlation(a, b)
    ref = [np.corrcoef(x.numpy(), y.numpy())[0, 1] for x, y in zip(a, b)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-6)


def _profile(name="m"):
    # L = 3 layers, N = 2 examples, C = 2 classes
    probs = T([[[0.5, 0.5], [0.25, 0.75]],
               [[0.5, 0.5], [0.5, 0.5]],
               [[1.0, 0.0], [0.5, 0.5]]])
    hidden = T([[[1.0, 0.0], [1.0, 2.0]],
                [[0.0, 1.0], [2.0, 4.0]],
                [[1.0, 0.0], [1.0, 2.0]]])
    return layer_similarity(probs, hidden, name)


def test_layer_similarity_profile_by_hand():
    p = _profile()
    assert (p.n_layers, p.n_examples) == (3, 2)
    assert p.mean_confidence == pytest.approx([(0.5 + 0.75) / 2, 0.5, (1.0 + 0.5) / 2])
    # to last: example 0 compares with (1, 0), example 1 with (0.5, 0.5)
    assert p.kl_to_last[0] == pytest.approx((math.log(2) + 0.5 * math.log(4 / 3)) / 2)  # KL(last ‖ layer 0)
    assert p.kl_to_last[1] == pytest.approx(math.log(2) / 2)
    assert p.kl_to_last[2] == 0.0 and p.js_to_last[2] == 0.0
    assert p.cosine_to_last == pytest.approx([1.0, 0.5, 1.0])  # ex 0: 1, 0, 1; ex 1: 1, 1, 1
    # consecutive: layer 1 vs 2 of example 0 is KL((1,0) ‖ (0.5,0.5)) = ln 2; example 1 is 0
    assert p.kl_next[1] == pytest.approx(math.log(2) / 2)
    assert p.kl_next[0] == pytest.approx(0.5 * math.log(4 / 3) / 2)  # KL((0.5,0.5) ‖ (0.25,0.75)) for ex 1
    assert p.kl_next[2] is None and p.cosine_next[2] is None
    assert p.cosine_next[0] == pytest.approx(0.5)  # ex 0 orthogonal (0), ex 1 parallel (1)


def test_layer_similarity_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same L, N"):
        layer_similarity(torch.zeros(3, 2, 2), torch.zeros(3, 4, 5))


def test_table_and_plot(tmp_path):
    a, b = _profile("final"), _profile("joint")
    text = format_table([a, b])
    assert "final (N=2) → joint (N=2)" in text
    assert "0.625 → 0.625" in text  # mean confidence of layer 0
    png = plot_profiles([a, b], str(tmp_path / "s.png"))
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
