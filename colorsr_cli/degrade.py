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
    small = np.clip(np.round(x), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, how.jpeg_quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
