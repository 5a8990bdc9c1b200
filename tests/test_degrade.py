"""The scan-like degradation: each step does its part, and a seed reproduces it."""

import cv2
import numpy as np
import pytest

from colorsr_cli.degrade import Degradation, degrade, degrade_real, draw_degradation

from .conftest import photo_like


def _blockiness(img: np.ndarray) -> float:
    """Mean jump across 8x8 block borders relative to the mean jump inside the blocks."""
    d = np.abs(np.diff(img.astype(float).mean(2), axis=1))
    border = d[:, 7::8].mean()
    inside = np.delete(d, np.s_[7::8], axis=1).mean()
    return border / inside


def test_each_step_shows_and_seeds_reproduce():
    rgb = photo_like(128, 96, 3).astype(np.float32) / 255
    clean = Degradation(blur_sigma=0.01, noise_sigma=0.0, jpeg_quality=100)
    out = degrade(rgb, clean, np.random.default_rng(0))
    area = cv2.resize(rgb, (24, 32), interpolation=cv2.INTER_AREA) * 255
    assert out.shape == (32, 24, 3) and out.dtype == np.uint8
    luma = np.array([0.299, 0.587, 0.114])  # JPEG keeps luma at q100; it halves the chroma grid
    assert np.abs((out - area) @ luma).mean() < 1.0  # area x1/4, nothing else
    blurred = degrade(rgb, Degradation(4.0, 0.0, 100), np.random.default_rng(0))
    assert np.abs(np.diff(blurred.astype(float), axis=1)).mean() < 0.8 * np.abs(np.diff(out.astype(float),
                                                                                       axis=1)).mean()
    noisy = degrade(rgb, Degradation(0.01, 8.0, 100), np.random.default_rng(0)).astype(float)
    # luma of independent noise of sigma 8 per channel: 8 * |luma| = 5.35
    assert 4.8 < ((noisy - out) @ luma).std() < 6
    jpeg = degrade(rgb, Degradation(0.01, 0.0, 10), np.random.default_rng(0))
    assert _blockiness(jpeg) > 1.3 * _blockiness(out)
    a, b = (degrade(rgb, draw_degradation(r), r) for r in (np.random.default_rng(5),
                                                           np.random.default_rng(5)))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="multiples of 4"):
        degrade(rgb[:127], clean, np.random.default_rng(0))


def test_training_degradation_varies_degrades_and_reproduces():
    """degrade_real: the quarter size in uint8, always further from the clean area reduction
    than rounding (blur, noise or JPEG happened), strengths that vary from draw to draw, and
    a seed that reproduces a draw."""
    rgb = photo_like(128, 96, 3).astype(np.float32) / 255
    area = cv2.resize(rgb, (24, 32), interpolation=cv2.INTER_AREA) * 255
    errors = []
    for seed in range(24):
        out = degrade_real(rgb, np.random.default_rng(seed))
        assert out.shape == (32, 24, 3) and out.dtype == np.uint8
        errors.append(np.abs(out - area).mean())
    assert min(errors) > 0.5 and max(errors) > 3 * min(errors)
    a, b = (degrade_real(rgb, np.random.default_rng(7)) for _ in range(2))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="multiples of 4"):
        degrade_real(rgb[:126], np.random.default_rng(0))
