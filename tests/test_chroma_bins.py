import numpy as np
import pytest
import torch
from skimage import color as skcolor

from colorsr_cli.chroma_bins import (
    annealed_mean,
    bin_histogram,
    gamut_bins,
    nearest_bin,
    rebalance_weights,
    rebalanced_cross_entropy,
    shipped_prior,
    smooth_prior,
    soft_encode,
)


def test_gamut_bins_are_the_in_gamut_cells_of_a_10_unit_grid():
    bins = gamut_bins()
    assert bins.shape == (262, 2)
    assert torch.all(torch.remainder(bins, 10) == 0)
    # Extremes of the sRGB gamut in Lab: green reaches a = -86, magenta a = +98, blue b = -108,
    # yellow b = +94 (scikit-image's conversion of the primaries and secondaries).
    corners = skcolor.rgb2lab(np.array([[[0, 1, 0], [1, 0, 1], [0, 0, 1], [1, 1, 0]]], float))[0]
    assert bins[:, 0].min() == 10 * round(corners[0, 1] / 10) == -90
    assert bins[:, 0].max() == 10 * round(corners[1, 1] / 10) == 100
    assert bins[:, 1].min() == 10 * round(corners[2, 2] / 10) == -110
    assert bins[:, 1].max() == 10 * round(corners[3, 2] / 10) == 90
    # Gray is a bin; a saturated green-blue corner that no sRGB colour reaches is not.
    assert (bins == torch.tensor([0.0, 0.0])).all(1).any()
    assert not (bins == torch.tensor([-90.0, -110.0])).all(1).any()


def _brute_soft_encode(ab, bins, k=5, sigma=5.0):
    d = torch.cdist(ab.permute(0, 2, 3, 1).reshape(-1, 2), bins)
    near, idx = d.topk(k, largest=False)
    w = torch.softmax(-near**2 / (2 * sigma**2), 1)
    n, _, h, wd = ab.shape
    return torch.zeros(d.shape).scatter_(1, idx, w).view(n, h, wd, -1).permute(0, 3, 1, 2)


def test_soft_encode_matches_brute_force_on_real_colours():
    rgb = np.random.default_rng(0).random((8, 8, 3))
    ab = torch.from_numpy(skcolor.rgb2lab(rgb)[..., 1:]).float().permute(2, 0, 1)[None]
    got = soft_encode(ab)
    assert got.shape == (1, 262, 8, 8)
    assert torch.allclose(got.sum(1), torch.ones(1, 8, 8), atol=1e-6)
    assert (got - _brute_soft_encode(ab, gamut_bins())).abs().max() < 1e-5


def test_soft_encode_of_a_bin_centre_and_of_colours_outside_the_gamut():
    ab = torch.tensor([20.0, -30.0]).view(1, 2, 1, 1)
    target = soft_encode(ab)[0, :, 0, 0]
    centre = nearest_bin(ab).item()
    # Own bin weight 1, four neighbours at distance 10: exp(-100/50) each (hand-computed).
    e = np.exp(-2.0)
    assert target[centre].item() == pytest.approx(1 / (1 + 4 * e), rel=1e-5)
    assert (target > 0).sum() == 5
    far = soft_encode(torch.tensor([-300.0, 250.0]).view(1, 2, 1, 1))
    assert torch.isfinite(far).all() and far.sum().item() == pytest.approx(1.0)


def test_nearest_bin_and_histogram():
    ab = torch.tensor([[[[0.4, 14.0]], [[-4.9, 26.0]]]])  # (a, b) = (0.4, -4.9) and (14, 26)
    bins = gamut_bins()
    idx = nearest_bin(ab)[0, 0]
    assert bins[idx[0]].tolist() == [0.0, -0.0] or bins[idx[0]].tolist() == [0.0, 0.0]
    assert bins[idx[1]].tolist() == [10.0, 30.0]
    hist = bin_histogram(ab)
    assert hist.sum() == 2 and hist[idx[0]] == 1 and hist[idx[1]] == 1


def test_rebalance_weights_have_unit_mean_under_the_prior_and_favour_rare_colours():
    prior = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    w = rebalance_weights(prior, mix=0.5)
    raw = 1 / (0.5 * prior + 0.5 / 3)  # hand-computed: 1/(0.35+1/6), 1/(0.1+1/6), 1/(0.05+1/6)
    assert torch.allclose(w.double(), raw / (prior * raw).sum(), atol=1e-6)
    assert (prior * w).sum().item() == pytest.approx(1.0, abs=1e-6)
    assert w[2] > w[1] > w[0]
    assert torch.allclose(rebalance_weights(prior, mix=1.0), torch.ones(3))


def test_smooth_prior_spreads_a_spike_to_its_neighbours():
    bins = gamut_bins()
    counts = torch.zeros(len(bins))
    centre = nearest_bin(torch.zeros(1, 2, 1, 1)).item()
    counts[centre] = 100
    p = smooth_prior(counts, bins, sigma=5.0)
    assert p.sum().item() == pytest.approx(1.0)
    neighbour = nearest_bin(torch.tensor([10.0, 0.0]).view(1, 2, 1, 1)).item()
    assert (p[neighbour] / p[centre]).item() == pytest.approx(np.exp(-2.0), rel=1e-6)


def test_annealed_mean_interpolates_between_mean_and_mode():
    bins = torch.tensor([[0.0, 0.0], [60.0, 0.0]])
    logits = torch.log(torch.tensor([0.6, 0.4])).view(1, 2, 1, 1)
    mean = annealed_mean(logits, bins, temperature=1.0)[0, :, 0, 0]
    assert mean.tolist() == pytest.approx([24.0, 0.0], abs=1e-4)  # 0.4 * 60
    sharp = annealed_mean(logits, bins, temperature=0.5)[0, 0, 0, 0].item()
    assert sharp == pytest.approx(60 * 0.16 / (0.36 + 0.16), abs=1e-3)  # p**2 renormalised
    assert annealed_mean(logits, bins, temperature=0.01)[0, 0, 0, 0].item() < 1e-3  # the mode


def test_rebalanced_cross_entropy_hand_computed():
    logits = torch.log(torch.tensor([0.5, 0.25, 0.25])).view(1, 3, 1, 1).repeat(1, 1, 1, 2)
    target = torch.zeros(1, 3, 1, 2)
    target[0, 0, 0, 0] = 1.0
    target[0, 2, 0, 1] = 1.0
    weight = torch.tensor([[[1.0, 3.0]]])
    got = rebalanced_cross_entropy(logits, target, weight).item()
    assert got == pytest.approx((np.log(2) + 3 * np.log(4)) / 2, rel=1e-6)


def test_shipped_prior_is_a_distribution_over_the_bins():
    p = shipped_prior()
    assert p.shape == (262,) and p.sum().item() == pytest.approx(1.0, abs=1e-5)
    gray = nearest_bin(torch.zeros(1, 2, 1, 1)).item()
    assert p.argmax().item() == gray  # photos are mostly dull
