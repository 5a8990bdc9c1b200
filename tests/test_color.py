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


def _unit_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float() / 255


def test_toned_and_gray_scans_are_not_colour_photos():
    """Sepia and cyan toning is a gray picture with one tint: it is colourised like any old photo."""
    from colorsr_cli.color import is_colour_photo
    from tests.conftest import jpeg_round_trip, photo_like, toned_like

    gray = np.repeat(photo_like(200, 300, 1, gray=True)[..., None], 3, axis=2)
    for name, img in {"gray": gray, "gray JPEG": jpeg_round_trip(gray, 50),
                      "sepia": jpeg_round_trip(toned_like(200, 300, 8, 22, seed=2)),
                      "strong sepia": toned_like(200, 300, 15, 35, seed=3),
                      "cyan": jpeg_round_trip(toned_like(200, 300, -20, -12, seed=4))}.items():
        assert not is_colour_photo(_unit_chw(img)), name


def test_colour_photos_are_detected_even_with_one_dominant_hue():
    """A mostly gray scene with a few bright caps, and an orange cat on a dull background (most of
    its chroma along one hue, as a tint would be) are colour photos."""
    from colorsr_cli.color import is_colour_photo
    from tests.conftest import jpeg_round_trip, photo_like

    caps = np.repeat(photo_like(200, 300, 1, gray=True)[..., None], 3, axis=2)
    for (y, x), rgb in zip([(50, 50), (100, 150), (20, 200), (140, 30)],
                           [(250, 220, 20), (240, 120, 20), (30, 200, 60), (250, 120, 200)]):
        caps[y:y + 30, x:x + 40] = rgb
    for name, img in {"caps": caps, "photo": jpeg_round_trip(photo_like(200, 300, 5)),
                      "cat": data.chelsea()}.items():
        assert is_colour_photo(_unit_chw(img)), name
