import math

import numpy as np
import pytest
import torch
from skimage import color as skcolor
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorsr_cli.metrics import (
    METRICS,
    ab_error,
    ciede2000,
    colorfulness,
    delta_e2000,
    psnr,
    ssim,
    ssim_seed_protocol,
)

# Sharma, Wu & Dalal, "The CIEDE2000 Color-Difference Formula: Implementation Notes,
# Supplementary Test Data, and Mathematical Observations", Color Res. Appl. 30(1), 2005, Table 1
# (http://www2.ece.rochester.edu/~gsharma/ciede2000/), as redistributed in scikit-image's
# skimage/color/tests/ciede2000_test_data.txt. Columns: L1 a1 b1 L2 a2 b2 dE00.
# Pairs 7-16 exercise the hue edge cases (neutral colour, hues 180 degrees apart).
SHARMA_PAIRS = """
    50.0000   2.6772 -79.7751  50.0000   0.0000 -82.7485   2.0425
    50.0000   3.1571 -77.2803  50.0000   0.0000 -82.7485   2.8615
    50.0000   2.8361 -74.0200  50.0000   0.0000 -82.7485   3.4412
    50.0000  -1.3802 -84.2814  50.0000   0.0000 -82.7485   1.0000
    50.0000  -1.1848 -84.8006  50.0000   0.0000 -82.7485   1.0000
    50.0000  -0.9009 -85.5211  50.0000   0.0000 -82.7485   1.0000
    50.0000   0.0000   0.0000  50.0000  -1.0000   2.0000   2.3669
    50.0000  -1.0000   2.0000  50.0000   0.0000   0.0000   2.3669
    50.0000   2.4900  -0.0010  50.0000  -2.4900   0.0009   7.1792
    50.0000   2.4900  -0.0010  50.0000  -2.4900   0.0010   7.1792
    50.0000   2.4900  -0.0010  50.0000  -2.4900   0.0011   7.2195
    50.0000   2.4900  -0.0010  50.0000  -2.4900   0.0012   7.2195
    50.0000  -0.0010   2.4900  50.0000   0.0009  -2.4900   4.8045
    50.0000  -0.0010   2.4900  50.0000   0.0010  -2.4900   4.8045
    50.0000  -0.0010   2.4900  50.0000   0.0011  -2.4900   4.7461
    50.0000   2.5000   0.0000  50.0000   0.0000  -2.5000   4.3065
    50.0000   2.5000   0.0000  73.0000  25.0000 -18.0000  27.1492
    50.0000   2.5000   0.0000  61.0000  -5.0000  29.0000  22.8977
    50.0000   2.5000   0.0000  56.0000 -27.0000  -3.0000  31.9030
    50.0000   2.5000   0.0000  58.0000  24.0000  15.0000  19.4535
    50.0000   2.5000   0.0000  50.0000   3.1736   0.5854   1.0000
    50.0000   2.5000   0.0000  50.0000   3.2972   0.0000   1.0000
    50.0000   2.5000   0.0000  50.0000   1.8634   0.5757   1.0000
    50.0000   2.5000   0.0000  50.0000   3.2592   0.3350   1.0000
    60.2574 -34.0099  36.2677  60.4626 -34.1751  39.4387   1.2644
    63.0109 -31.0961  -5.8663  62.8187 -29.7946  -4.0864   1.2630
    61.2901   3.7196  -5.3901  61.4292   2.2480  -4.9620   1.8731
    35.0831 -44.1164   3.7933  35.0232 -40.0716   1.5901   1.8645
    22.7233  20.0904 -46.6940  23.0331  14.9730 -42.5619   2.0373
    36.4612  47.8580  18.3852  36.2715  50.5065  21.2231   1.4146
    90.8027  -2.0831   1.4410  91.1528  -1.6435   0.0447   1.4441
    90.9257  -0.5406  -0.9208  88.6381  -0.8985  -0.7239   1.5381
     6.7747  -0.2908  -2.4247   5.8714  -0.0985  -2.2286   0.6377
     2.0776   0.0795  -1.1350   0.9033  -0.0636  -0.5514   0.9082
"""


# skimage's Lab uses the rounded slope 7.787 for dark colours where color.py uses 841/108, so
# Lab-based metrics differ from it by ~1e-5 on photos; the tolerance allows for that, not more.
LAB_ATOL = 1e-4


def _to_nchw(*images: np.ndarray) -> torch.Tensor:
    """HWC float arrays -> one (N, 3, H, W) float64 batch."""
    return torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in images]))


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an HWC image in [0, 1], scaled to [16, 235] / 255."""
    return (16 + rgb @ np.array([65.481, 128.553, 24.966])) / 255


def _sk_ssim(a: np.ndarray, b: np.ndarray, channel_axis: int | None = -1) -> float:
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=channel_axis,
    )


def _photo_pairs(size: int = 96) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Crops of skimage sample photos and degraded copies (noise, shifted colours, random)."""
    rng = np.random.default_rng(0)
    photos = [getattr(data, n)()[:size, :size] / 255.0 for n in ("astronaut", "coffee", "chelsea")]
    photos.append(rng.random((size, size, 3)))
    noisy = [np.clip(p + rng.normal(0, 0.08, p.shape), 0, 1) for p in photos[:2]]
    tinted = [np.clip(photos[2] * [1.1, 0.9, 0.7], 0, 1), rng.random((size, size, 3))]
    return photos, noisy + tinted


def test_ssim_rgb_matches_skimage():
    x, y = _photo_pairs()
    ours = ssim(_to_nchw(*x), _to_nchw(*y))
    ref = [_sk_ssim(a, b) for a, b in zip(x, y)]
    assert ours.dtype == torch.float64 and ours.shape == (4,)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4)


def test_ssim_y_matches_skimage_on_bt601_luma():
    x, y = _photo_pairs()
    ours = ssim(_to_nchw(*x), _to_nchw(*y), channel="y")
    ref = [_sk_ssim(_luma(a), _luma(b), channel_axis=None) for a, b in zip(x, y)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4)


def test_ssim_non_square_float32_and_identity():
    rng = np.random.default_rng(1)
    a, b = rng.random((23, 41, 3)), rng.random((23, 41, 3))
    ours = ssim(_to_nchw(a).float(), _to_nchw(b).float())
    assert ours.dtype == torch.float64
    assert abs(ours.item() - _sk_ssim(a, b)) <= 1e-4
    assert ssim(_to_nchw(a), _to_nchw(a)).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_seed_protocol_is_ssim_of_64px_block_means():
    rng = np.random.default_rng(2)
    x = data.astronaut()[:256, :192] / 255.0
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)

    def area_64(im: np.ndarray) -> np.ndarray:
        h, w = im.shape[0] // 64, im.shape[1] // 64
        return im.reshape(64, h, 64, w, 3).mean(axis=(1, 3))

    ours = ssim_seed_protocol(_to_nchw(x), _to_nchw(y)).item()
    assert ours == pytest.approx(_sk_ssim(area_64(x), area_64(y)), abs=1e-4)


@pytest.mark.parametrize("border", [0, 4])
def test_psnr_matches_skimage(border):
    x, y = _photo_pairs()
    crop = (slice(border, x[0].shape[0] - border), slice(border, x[0].shape[1] - border))
    rgb = psnr(_to_nchw(*x), _to_nchw(*y), border=border)
    luma = psnr(_to_nchw(*x), _to_nchw(*y), channel="y", border=border)
    ref_rgb = [peak_signal_noise_ratio(a[crop], b[crop], data_range=1.0) for a, b in zip(x, y)]
    ref_y = [
        peak_signal_noise_ratio(_luma(a)[crop], _luma(b)[crop], data_range=1.0)
        for a, b in zip(x, y)
    ]
    np.testing.assert_allclose(rgb.numpy(), ref_rgb, rtol=1e-10)
    np.testing.assert_allclose(luma.numpy(), ref_y, rtol=1e-10)


def test_psnr_identical_images_is_inf():
    x = torch.rand(2, 3, 8, 8)
    assert torch.isinf(psnr(x, x)).all()


def test_colorfulness_worked_example_and_gray():
    # Pixels (255, 0, 0) and (0, 0, 0): rg = (255, 0), yb = (127.5, 0).
    # mean_rg = 127.5, mean_yb = 63.75; population std_rg = 127.5, std_yb = 63.75.
    # Both roots are sqrt(127.5^2 + 63.75^2) = 63.75 sqrt(5), so
    # M = 1.3 * 63.75 * sqrt(5) = 82.875 sqrt(5) = 185.3141...
    red_black = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])
    # Gray pixels: rg = yb = 0 everywhere, so M = 0.
    gray = torch.full((1, 3, 1, 2), 0.4)
    ours = colorfulness(torch.cat([red_black, gray]))
    assert ours.dtype == torch.float64
    assert ours[0].item() == pytest.approx(82.875 * math.sqrt(5), abs=1e-9)
    assert ours[1].item() == pytest.approx(0.0, abs=1e-9)


def test_colorfulness_four_pixel_example():
    # Pixels (0,0,0), (255,255,255), (255,0,255), (0,255,0) in 0..255:
    # rg = (0, 0, 255, -255) -> mean 0, population var 255^2 / 2;
    # yb = (0, 0, -127.5, 127.5) -> mean 0, population var 127.5^2 / 2.
    # M = sqrt((255^2 + 127.5^2) / 2) + 0 = 127.5 sqrt(5 / 2) = 201.5952...
    r = [0.0, 1.0, 1.0, 0.0]
    g = [0.0, 1.0, 0.0, 1.0]
    b = [0.0, 1.0, 1.0, 0.0]
    image = torch.tensor([r, g, b]).view(1, 3, 2, 2)
    assert colorfulness(image).item() == pytest.approx(127.5 * math.sqrt(2.5), abs=1e-9)


def test_ab_error_matches_skimage_lab():
    x, y = _photo_pairs(48)
    ours = ab_error(_to_nchw(*x), _to_nchw(*y))
    ref = [
        np.linalg.norm(skcolor.rgb2lab(a)[..., 1:] - skcolor.rgb2lab(b)[..., 1:], axis=-1).mean()
        for a, b in zip(x, y)
    ]
    np.testing.assert_allclose(ours.numpy(), ref, atol=LAB_ATOL)
    assert ab_error(_to_nchw(x[0]), _to_nchw(x[0])).item() == 0.0


def test_ciede2000_matches_sharma_table():
    table = torch.tensor(np.loadtxt(SHARMA_PAIRS.strip().splitlines()))
    assert table.shape == (34, 7)
    lab1, lab2, expected = table[:, :3], table[:, 3:6], table[:, 6]
    forward = ciede2000(lab1, lab2, channel_dim=-1)
    backward = ciede2000(lab2, lab1, channel_dim=-1)
    torch.testing.assert_close(forward, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(backward, expected, atol=1e-4, rtol=0)


def test_ciede2000_matches_skimage_on_random_lab():
    rng = np.random.default_rng(3)
    lab1 = rng.uniform([0, -110, -110], [100, 110, 110], (2000, 3))
    lab2 = rng.uniform([0, -110, -110], [100, 110, 110], (2000, 3))
    lab1[:20, 1:] = 0  # neutral colours take the hue edge-case branches
    ours = ciede2000(torch.from_numpy(lab1.T), torch.from_numpy(lab2.T), channel_dim=0)
    np.testing.assert_allclose(ours.numpy(), skcolor.deltaE_ciede2000(lab1, lab2), atol=1e-9)
    weighted = ciede2000(torch.from_numpy(lab1), torch.from_numpy(lab2), -1, kl=2, kc=1.5, kh=0.5)
    ref = skcolor.deltaE_ciede2000(lab1, lab2, kL=2, kC=1.5, kH=0.5)
    np.testing.assert_allclose(weighted.numpy(), ref, atol=1e-9)


def test_delta_e2000_matches_skimage():
    x, y = _photo_pairs(48)
    ours = delta_e2000(_to_nchw(*x), _to_nchw(*y))
    ref = [
        skcolor.deltaE_ciede2000(skcolor.rgb2lab(a), skcolor.rgb2lab(b)).mean()
        for a, b in zip(x, y)
    ]
    np.testing.assert_allclose(ours.numpy(), ref, atol=LAB_ATOL)


def test_metrics_registry_returns_one_float64_per_image():
    expected = {
        "ssim",
        "ssim_y",
        "psnr",
        "psnr_y",
        "ab_error",
        "delta_e2000",
        "colorfulness",
        "ssim_seed",
        "hue_hit",
        "green_hit",
        "red_hit",
        "left_gray",
        "auc",
        "auc_rebalanced",
        "niqe",
    }
    assert set(METRICS) == expected
    x, y = torch.rand(2, 3, 192, 192), torch.rand(2, 3, 192, 192)  # NIQE's smallest size
    for name, metric in METRICS.items():
        values = metric(x, y)
        assert values.shape == (2,) and values.dtype == torch.float64, name
        assert torch.isfinite(values).all(), name
    assert torch.equal(METRICS["colorfulness"](x, y), colorfulness(x))
    assert torch.equal(METRICS["ssim_y"](x, y), ssim(x, y, channel="y"))


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(ValueError):
        psnr(torch.rand(3, 16, 16), torch.rand(3, 16, 16))


def _lab_image(lab_pixels):
    """A (1, 3, 1, K) sRGB tensor of K pixels given as (L, chroma, hue degrees), through
    scikit-image's Lab conversion (an independent reference)."""
    lab = np.array([[(L, c * math.cos(math.radians(h)), c * math.sin(math.radians(h)))
                     for L, c, h in lab_pixels]], float)
    rgb = skcolor.lab2rgb(lab)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float()


def test_hue_hit_hand_computed():
    from colorsr_cli.metrics import HUE_RANGES, hue_hit

    truth = _lab_image([(60, 40, 30), (60, 40, 140), (60, 40, 250), (60, 5, 10)])
    pred = _lab_image([(60, 30, 50), (60, 40, 185), (60, 5, 250), (60, 40, 10)])
    # Scored: the three truth pixels of chroma 40. Pixel 1: 20 degrees off, chroma 30: a hit.
    # Pixel 2: 45 degrees off: a miss. Pixel 3: right hue but chroma 5 < 7.5: a miss.
    assert hue_hit(pred, truth).item() == pytest.approx(1 / 3)
    assert hue_hit(pred, truth, HUE_RANGES["green"]).item() == 0.0  # pixel 2 (hue 140) only
    assert hue_hit(pred, truth, HUE_RANGES["red"]).item() == 1.0  # pixel 1 (hue 30) only
    assert hue_hit(truth, truth).item() == 1.0
    gray = truth.mean(1, keepdim=True).expand_as(truth)
    assert hue_hit(gray, truth).item() == 0.0
    # A red range that wraps through 0 degrees: hue -10 (= 350) is red.
    assert hue_hit(_lab_image([(50, 40, -10)]), _lab_image([(50, 40, -10)]),
                   HUE_RANGES["red"]).item() == 1.0
    assert math.isnan(hue_hit(gray, gray).item())  # nothing colourful to score


def test_left_gray_splits_the_misses_hand_computed():
    from colorsr_cli.metrics import hue_hit, left_gray

    truth = _lab_image([(60, 40, 30), (60, 40, 140), (60, 40, 250), (60, 5, 10), (60, 20, 90)])
    pred = _lab_image([(60, 30, 50), (60, 40, 185), (60, 5, 250), (60, 2, 10), (60, 7, 90)])
    # Scored: the four truth pixels of chroma >= 15 (not pixel 4, chroma 5). Pixel 3 (chroma 5)
    # and pixel 5 (chroma 7 < 7.5) are left gray; pixel 2 has a wrong hue; pixel 1 is a hit.
    assert left_gray(pred, truth).item() == pytest.approx(2 / 4)
    assert hue_hit(pred, truth).item() == pytest.approx(1 / 4)
    gray = truth.mean(1, keepdim=True).expand_as(truth)
    assert left_gray(gray, truth).item() == 1.0 and left_gray(truth, truth).item() == 0.0
    assert math.isnan(left_gray(gray, gray).item())


def test_ab_accuracy_auc_hand_computed():
    from colorsr_cli.metrics import ab_accuracy_auc

    truth = _lab_image([(60, 40.5, 100), (60, 20.5, 300)])
    gray = _lab_image([(60, 0, 0), (60, 0, 0)])
    # Distances 40.5 and 20.5: pixel 1 is within t for t = 41..150 (110 of 151 thresholds),
    # pixel 2 for t = 21..150 (130 of 151).
    got = ab_accuracy_auc(gray, truth).item()
    assert got == pytest.approx((110 + 130) / 2 / 151, abs=2e-3)
    assert ab_accuracy_auc(truth, truth).item() == pytest.approx(1.0)
    weighted = ab_accuracy_auc(gray, truth, torch.tensor([[[3.0, 1.0]]])).item()
    assert weighted == pytest.approx((3 * 110 + 130) / 4 / 151, abs=2e-3)


def test_rebalanced_auc_weights_pixels_by_inverse_prior():
    from colorsr_cli.chroma_bins import gamut_bins, nearest_bin
    from colorsr_cli.metrics import rebalanced_auc

    truth = _lab_image([(60, 40.5, 100), (60, 20.5, 300)])
    gray = _lab_image([(60, 0, 0), (60, 0, 0)])
    ab = torch.from_numpy(skcolor.rgb2lab(truth[0].permute(1, 2, 0).double().numpy())[..., 1:])
    idx = nearest_bin(ab.permute(2, 0, 1)[None].float())[0, 0]
    prior = torch.full((len(gamut_bins()),), 1e-3)
    prior[idx[0]], prior[idx[1]] = 0.1, 0.4  # pixel 1's colour 4x rarer: weight 4 vs 1
    got = rebalanced_auc(gray, truth, prior).item()
    assert got == pytest.approx((4 * 110 + 130) / 5 / 151, abs=2e-3)


def test_niqe_of_set_pools_patches_and_ranks_blur_worse():
    """One image's set NIQE is its NIQE; over a set of small photos (4 patches each) the pooled
    fit ranks blurred copies as less natural than the photos themselves."""
    from skimage import data

    from colorsr_cli.metrics import niqe, niqe_of_set

    photo = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).double() / 255
    one = photo[None, :, :288, :288]
    assert niqe_of_set(one).item() == pytest.approx(niqe(one).item())
    crops = torch.stack([photo[:, y:y + 192, x:x + 192] for y in (0, 160, 320) for x in (0, 160, 320)])
    blurred = torch.nn.functional.avg_pool2d(crops, 5, 1, 2, count_include_pad=False)
    assert niqe_of_set(blurred) > niqe_of_set(crops) + 1
