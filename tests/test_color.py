import numpy as np
import pytest
import torch
from skimage import color as skcolor
from skimage import data

from colorsr_cli.color import lab_to_rgb, rgb_to_lab
from tests.oplog import OpLog


def _to_chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).double()


def _to_hwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(1, 2, 0)


# Lab units. Measured: at most 1.8e-4 from scikit-image 0.26 (random colours in float64, the
# images in float32); the bound is about 5x that. A white point off in its 5th digit is 5e-3 off.
_LAB_TOL = 1e-3


def test_rgb_to_lab_matches_skimage_on_random_colours():
    rng = np.random.default_rng(0)
    rgb = rng.random((32, 32, 3))
    ours = _to_hwc(rgb_to_lab(_to_chw(rgb)))
    ref = skcolor.rgb2lab(rgb)
    assert np.abs(ours - ref).max() <= _LAB_TOL


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_rgb_to_lab_matches_skimage_on_real_images(name):
    img = getattr(data, name)()[::4, ::4] / 255.0
    ours = _to_hwc(rgb_to_lab(_to_chw(img).float()).double())
    ref = skcolor.rgb2lab(img)
    assert np.abs(ours - ref).max() <= _LAB_TOL


def test_lab_to_rgb_matches_skimage():
    rng = np.random.default_rng(1)
    rgb = rng.random((16, 16, 3))
    lab = skcolor.rgb2lab(rgb)
    ours = _to_hwc(lab_to_rgb(_to_chw(lab)))
    assert np.abs(ours - skcolor.lab2rgb(lab)).max() <= 1e-5  # measured 6.5e-7 in float64


def test_round_trip_within_one_level_float32():
    rng = np.random.default_rng(2)
    rgb = torch.from_numpy(rng.random((2, 3, 40, 40))).float()
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert (back - rgb).abs().max().item() <= 1 / 255


def test_batched_and_differentiable():
    rgb = torch.rand(4, 3, 8, 8, requires_grad=True)
    lab = rgb_to_lab(rgb)
    assert lab.shape == (4, 3, 8, 8)
    lab_to_rgb(lab, clip=False).sum().backward()
    assert torch.isfinite(rgb.grad).all()


def test_known_values():
    white = rgb_to_lab(torch.ones(3, 1, 1, dtype=torch.float64)).flatten()
    black = rgb_to_lab(torch.zeros(3, 1, 1, dtype=torch.float64)).flatten()
    assert torch.allclose(white, torch.tensor([100.0, 0.0, 0.0], dtype=torch.float64), atol=0.01)
    assert torch.allclose(black, torch.zeros(3, dtype=torch.float64), atol=1e-6)


def test_conversions_build_no_constants_per_call():
    """The matrices and white point are made once per device and dtype: no tensor built from
    Python numbers (a host-to-device copy on a GPU) and no 3x3 inverse (a solver call and a
    synchronisation on a GPU) in a conversion after the first."""
    rgb = torch.rand(2, 3, 8, 8)
    lab_to_rgb(rgb_to_lab(rgb))
    with OpLog() as log:
        back = lab_to_rgb(rgb_to_lab(rgb))
    assert not [op for op in log.ops if "lift_fresh" in op or "inv" in op or op.startswith("_to_copy")]
    assert (back - rgb).abs().max().item() <= 1e-4


def test_constants_made_under_inference_mode_still_serve_autograd():
    with torch.inference_mode():
        lab_to_rgb(rgb_to_lab(torch.rand(1, 3, 4, 4, dtype=torch.float64)))
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    lab_to_rgb(rgb_to_lab(x), clip=False).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
