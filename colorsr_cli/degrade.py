"""What happens to an old photo on its way to a small scan, as one seeded function: blur, area
reduction x1/scale, gaussian noise, JPEG. Used to make low-resolution test inputs from real
photos whose full-resolution truth is known (tools/degrade_photos.py), in the spirit of the
first-order degradations Real-ESRGAN trains on (Wang et al. 2021)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Degradation:
    """One draw of the degradation's strengths (blur sigma in input pixels, noise sigma in
    0..255 levels, JPEG quality 1..100)."""

    blur_sigma: float
    noise_sigma: float
    jpeg_quality: int

    def as_dict(self) -> dict:
        return asdict(self)


def draw_degradation(rng: np.random.Generator) -> Degradation:
    """Strengths drawn uniformly: blur sigma 0.4-2.0, noise sigma 1-10, JPEG quality 40-90."""
    return Degradation(float(rng.uniform(0.4, 2.0)), float(rng.uniform(1, 10)), int(rng.integers(40, 91)))


def degrade(rgb: np.ndarray, how: Degradation, rng: np.random.Generator, scale: int = 4) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1], H and W multiples of scale -> (H/scale, W/scale, 3) uint8:
    gaussian blur, area reduction, gaussian noise (its own draw from rng), JPEG round trip."""
    h, w = rgb.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"image sides must be multiples of {scale}, got {h}x{w}")
    x = cv2.GaussianBlur(rgb, (0, 0), how.blur_sigma, borderType=cv2.BORDER_REFLECT)
    x = cv2.resize(x, (w // scale, h // scale), interpolation=cv2.INTER_AREA)
    x = x * 255 + rng.normal(0, how.noise_sigma, x.shape)
    return jpeg_round_trip(np.clip(np.round(x), 0, 255).astype(np.uint8), how.jpeg_quality)


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 -> the same image encoded as JPEG at quality and decoded again."""
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def _blur(x: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Gaussian blur, isotropic or (half the time) anisotropic and rotated, sigma in [lo, hi]."""
    sx = float(rng.uniform(lo, hi))
    if rng.random() < 0.5:
        return cv2.GaussianBlur(x, (0, 0), sx, borderType=cv2.BORDER_REFLECT)
    sy, theta = float(rng.uniform(lo, hi)), float(rng.uniform(0, np.pi))
    r = int(np.ceil(3 * max(sx, sy)))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
    u = np.cos(theta) * xx + np.sin(theta) * yy
    v = -np.sin(theta) * xx + np.cos(theta) * yy
    kernel = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return cv2.filter2D(x, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


_INTERPOLATIONS = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def _resize(x: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    return cv2.resize(x, size, interpolation=_INTERPOLATIONS[int(rng.integers(0, 3))])


def _noise(x: np.ndarray, rng: np.random.Generator, sigma_hi: float) -> np.ndarray:
    """Gaussian noise (sigma 1..sigma_hi levels, gray in 40 % of draws) or Poisson noise (shot
    noise of a scale that gives a similar strength), on 0..1 values."""
    if rng.random() < 0.6:
        sigma = float(rng.uniform(1, sigma_hi)) / 255
        shape = x.shape[:2] + (1,) if rng.random() < 0.4 else x.shape
        return x + rng.normal(0, sigma, shape).astype(np.float32)
    peak = 10 ** float(rng.uniform(1.5, 3.0))  # photons at white: fewer is noisier
    return (rng.poisson(np.clip(x, 0, 1) * peak) / peak).astype(np.float32)


def _jpeg(x: np.ndarray, rng: np.random.Generator, lo: int, hi: int) -> np.ndarray:
    small = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    return jpeg_round_trip(small, int(rng.integers(lo, hi + 1))).astype(np.float32) / 255


def degrade_real(rgb: np.ndarray, rng: np.random.Generator, scale: int = 4) -> np.ndarray:
    """A second-order degradation for training (after Real-ESRGAN, Wang et al. 2021): (H, W, 3)
    float32 in [0, 1], sides multiples of scale -> (H/scale, W/scale, 3) uint8. Twice: blur,
    resize (area, bilinear or bicubic, to a random intermediate size, then to the final one),
    gaussian or Poisson noise, JPEG; the second round is skipped one time in five, and one draw
    in two is the first-order `degrade` of the measurement inputs instead."""
    h, w = rgb.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"image sides must be multiples of {scale}, got {h}x{w}")
    if rng.random() < 0.5:
        return degrade(rgb, draw_degradation(rng), rng, scale)
    x = _blur(rgb, rng, 0.2, 2.5)
    f = float(rng.uniform(1.0 / scale, 1.0)) if rng.random() < 0.8 else 1.0
    x = _resize(x, (max(1, round(w * f)), max(1, round(h * f))), rng)
    x = _jpeg(_noise(x, rng, 20), rng, 30, 95)
    if rng.random() < 0.8:
        x = _blur(x, rng, 0.2, 1.2)
        x = _noise(x, rng, 12)
        x = _resize(np.clip(x, 0, 1), (w // scale, h // scale), rng)
        x = _jpeg(x, rng, 30, 95)
    else:
        x = _resize(x, (w // scale, h // scale), rng)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
