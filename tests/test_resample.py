"""MATLAB-style bicubic imresize: hand-computed kernels, exactness properties, and PIL's
antialiased bicubic (the same kernel, a = -0.5, stretched when shrinking) in the interior."""

import numpy as np
import pytest
import torch
from PIL import Image

from colorsr_cli.evaluate import sr_literature_pair
from colorsr_cli.resample import cubic, imresize, resize_matrix

# MATLAB's x1/2 antialiased bicubic taps, by hand: 0.5 * cubic(d / 2) at d = 0.5, 1.5, 2.5, 3.5
# with cubic(t) = 1.5|t|^3 - 2.5|t|^2 + 1 (|t| <= 1), -0.5|t|^3 + 2.5|t|^2 - 4|t| + 2 (1 < |t| < 2):
# cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625, cubic(1.25) = -0.0703125, cubic(1.75) = -0.0234375
HALF_TAPS = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125,
                      -0.0234375]) / 2


def test_cubic_kernel_values():
    t = torch.tensor([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5], dtype=torch.float64)
    expected = [1, 0.8671875, 0.2265625, 0, -0.0703125, -0.0234375, 0, 0]
    assert torch.allclose(cubic(t), torch.tensor(expected, dtype=torch.float64))


def test_halving_uses_matlab_antialiased_taps():
    m = resize_matrix(32, 16, 0.5)
    # output pixel 8 (1-based) is centred at input 15.5: taps on input pixels 12..19
    assert np.allclose(m[7, 11:19].numpy(), HALF_TAPS)
    assert m[7].abs().sum() == pytest.approx(np.abs(HALF_TAPS).sum())


def test_quartering_stretches_the_kernel_to_16_taps():
    m = resize_matrix(64, 16, 0.25)
    d = np.arange(-7.5, 8)  # distances from the output centre to the 16 inputs it reads
    row = m[7].numpy()
    assert np.count_nonzero(row) == 16
    hand = 0.25 * np.array([cubic(torch.tensor(abs(x) / 4)).item() for x in d])
    assert np.allclose(row[row != 0], hand / hand.sum())


def test_borders_mirror_and_rows_sum_to_one():
    m = resize_matrix(10, 3, 0.25)
    assert torch.allclose(m.sum(1), torch.ones(3, dtype=torch.float64))
    x = torch.rand(2, 3, 20, 12)
    assert torch.allclose(imresize(torch.full_like(x, 0.3), 0.25), torch.full((2, 3, 5, 3), 0.3))
    # mirroring with the border pixel repeated: output is the same as resizing the padded signal
    sig = torch.rand(1, 1, 1, 16, dtype=torch.float64)
    padded = torch.cat([sig.flip(-1)[..., 8:], sig, sig.flip(-1)[..., :8]], -1)
    assert torch.allclose(imresize(sig, 0.25), imresize(padded, 0.25)[..., 2:6])


def test_linear_ramps_are_reproduced():
    """Keys' cubic reproduces linear signals exactly, in the interior, at the pixel-centre map."""
    ramp = torch.arange(64, dtype=torch.float64).expand(1, 64, 64) * 0.01
    small = imresize(ramp, 0.25)[0, 4, 3:-3]
    centres = (torch.arange(3, 13, dtype=torch.float64) + 0.5) * 4 - 0.5
    assert torch.allclose(small, centres * 0.01)
    big = imresize(ramp, 4)[0, 0, 16:-16]
    assert torch.allclose(big, ((torch.arange(16, 240, dtype=torch.float64) + 0.5) / 4 - 0.5) * 0.01)


@pytest.mark.parametrize("scale", [0.25, 0.5])
def test_interior_matches_pil_bicubic(scale):
    rng = np.random.default_rng(0)
    img = rng.random((48, 40)).astype(np.float32)
    size = (int(40 * scale), int(48 * scale))
    pil = np.asarray(Image.fromarray(img, "F").resize(size, Image.BICUBIC))
    ours = imresize(torch.from_numpy(img), scale).numpy()
    m = 3  # output pixels whose kernel (2 / scale input pixels each way) crosses the border:
    # PIL clips it there instead of mirroring
    inner = (slice(m, -m), slice(m, -m))
    assert ours.shape == pil.shape
    assert np.abs(ours[inner] - pil[inner]).max() < 1e-5
    assert np.abs(ours - pil).max() > 1e-4  # the borders do differ: the mirror is exercised


def test_literature_pair_antialiases():
    """A pixel-wide checkerboard is beyond the x1/4 grid's Nyquist: MATLAB's antialiased
    reduction averages it to gray; a plain bicubic (OpenCV INTER_CUBIC) samples it."""
    board = (np.indices((32, 32)).sum(0) % 2).astype(np.float32)
    rgb = np.repeat(board[..., None], 3, axis=2)
    _, low = sr_literature_pair(rgb)
    assert low.shape == (3, 8, 8) and (low - 0.5).abs().max() < 0.02
