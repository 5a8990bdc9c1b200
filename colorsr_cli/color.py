"""sRGB <-> CIE Lab (D65, 2 degree observer) as pure, batched, differentiable torch functions.

Shapes: images are (..., 3, H, W) tensors. RGB is gamma-encoded sRGB in [0, 1];
L is in [0, 100], a and b in about [-110, 110].
"""

from __future__ import annotations

import functools

import torch

# sRGB (linear) -> XYZ, D65 white point (IEC 61966-2-1).
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
# The same constants scikit-image uses; the two agree to 2e-4 in Lab (tests/test_color.py).
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_EPS = 216.0 / 24389.0  # (6/29)^3
_KAPPA = 24389.0 / 27.0

# Normalisation used by the networks: L/50 - 1 in [-1, 1], ab/110 in about [-1, 1].
AB_SCALE = 110.0


# XYZ -> linear sRGB, inverted once in float64 (inverting per call cost a solver call and, on
# CUDA, a host-device synchronisation per image).
_XYZ_TO_RGB = tuple(map(tuple, torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)).tolist()))


def _matrix(rows: tuple, like: torch.Tensor) -> torch.Tensor:
    return _constant(rows, like.dtype, like.device)


@functools.lru_cache(maxsize=64)
def _constant(rows: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The constant tensor `rows` on a device, made once: building it per call meant a
    host-to-device copy per conversion on a GPU. Made outside inference mode so that it can
    also take part in autograd (training); never modified in place."""
    with torch.inference_mode(False):
        return torch.tensor(rows, dtype=dtype, device=device)


def _apply_3x3(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Multiply every pixel's 3-vector of x (..., 3, H, W) by matrix m (3, 3)."""
    return torch.einsum("ij,...jhw->...ihw", m, x)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    return torch.where(rgb > 0.04045, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def linear_to_srgb(lin: torch.Tensor) -> torch.Tensor:
    safe = lin.clamp(min=0.0031308)
    return torch.where(lin > 0.0031308, 1.055 * safe ** (1 / 2.4) - 0.055, lin * 12.92)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (..., 3, H, W) in [0, 1] -> Lab (..., 3, H, W), L in [0, 100]."""
    xyz = _apply_3x3(_matrix(_RGB_TO_XYZ, rgb), srgb_to_linear(rgb))
    white = _constant(_WHITE_D65, rgb.dtype, rgb.device).view(3, 1, 1)
    t = xyz / white
    f = torch.where(t > _EPS, t.clamp(min=_EPS) ** (1 / 3), (_KAPPA * t + 16) / 116)
    fx, fy, fz = f.unbind(-3)
    lab = torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim=-3)
    return lab


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Lab (..., 3, H, W) -> sRGB (..., 3, H, W); clipped to [0, 1] unless clip=False."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    f = torch.stack((fy + a / 500, fy, fy - b / 200), dim=-3)
    t = torch.where(f > 6 / 29, f**3, (116 * f - 16) / _KAPPA)
    white = _constant(_WHITE_D65, lab.dtype, lab.device).view(3, 1, 1)
    xyz = t * white
    lin = _apply_3x3(_matrix(_XYZ_TO_RGB, lab), xyz)
    rgb = linear_to_srgb(lin)
    return rgb.clamp(0, 1) if clip else rgb


def rgb_to_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (..., 3, H, W) -> L (..., 1, H, W) in [0, 100]; the 'old photo' view of a colour image."""
    return rgb_to_lab(rgb)[..., :1, :, :]


def normalize_l(L: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> network input in [-1, 1]."""
    return L / 50.0 - 1.0


def denormalize_l(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) * 50.0


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    return ab / AB_SCALE


def denormalize_ab(x: torch.Tensor) -> torch.Tensor:
    return x * AB_SCALE


# A photo whose chroma, once a single tint is taken out, exceeds COLOUR_CHROMA Lab units on more
# than COLOUR_AREA of its pixels is a colour photo. Measured: sepia- and cyan-toned scans (JPEG
# q75) and gray JPEGs have at most 0.2 % of pixels above 6 units; colour photos from 4.4 % (a
# retina image, mostly one orange-red) and 7.4 % (scikit-image's orange cat) to 95 %.
COLOUR_CHROMA = 6.0
COLOUR_AREA = 0.02


def chroma_beyond_tint(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (3, H, W) in [0, 1] -> (H, W) chroma in Lab units that a single tint cannot explain.

    A toned print (sepia, cyan, selenium) is a gray picture whose chroma points one way: every
    pixel's (a, b) is t * d for one hue direction d and a strength t >= 0 that may vary with the
    tone. The residual |ab - max(ab . d, 0) d|, d the mean hue, is about zero for such a print (and
    for a gray one) and large wherever a real colour photo has a hue other than the average one."""
    ab = rgb_to_lab(rgb.float())[1:].flatten(1)
    mean = ab.mean(1, keepdim=True)
    norm = mean.norm()
    if norm < 1e-6:
        return ab.norm(dim=0).view(rgb.shape[-2:])
    d = mean / norm
    along = (ab * d).sum(0, keepdim=True).clamp(min=0)
    return (ab - along * d).norm(dim=0).view(rgb.shape[-2:])


def is_colour_photo(rgb: torch.Tensor, max_side: int = 256) -> bool:
    """Whether an sRGB (3, H, W) image in [0, 1] is a colour photo (True) or a gray or toned one
    (False), judged on an area-reduced copy of at most max_side pixels on its long side."""
    h, w = rgb.shape[-2:]
    f = min(1.0, max_side / max(h, w))
    if f < 1.0:
        size = (max(1, round(h * f)), max(1, round(w * f)))
        rgb = torch.nn.functional.interpolate(rgb[None].float(), size=size, mode="area")[0]
    return float((chroma_beyond_tint(rgb) > COLOUR_CHROMA).float().mean()) > COLOUR_AREA
