import pytest
import torch

from colorsr_cli.models import SRConfig, SRGenerator
from colorsr_cli.tiling import TileCanvas, split_into_tiles


@pytest.mark.parametrize("h,w,tile,pad", [(240, 320, 64, 16), (70, 33, 32, 8), (64, 64, 64, 8),
                                          (5, 200, 16, 4), (1, 1, 8, 2)])
def test_windows_have_equal_size_and_cover_the_image(h, w, tile, pad):
    wins = split_into_tiles(h, w, tile, pad)
    assert len({win.shape for win in wins}) == 1
    canvas = TileCanvas(1, h, w, pad, 1)
    for win in wins:
        canvas.add(win, torch.ones(1, *win.shape))
    assert torch.allclose(canvas.result(), torch.ones(1, h, w))


def test_identity_model_reassembles_exactly():
    img = torch.rand(3, 50, 77)
    canvas = TileCanvas(3, 50, 77, 6, 2)
    for win in split_into_tiles(50, 77, 20, 6):
        tile = img[:, win.y0:win.y1, win.x0:win.x1]
        canvas.add(win, torch.nn.functional.interpolate(tile[None], scale_factor=2)[0])
    ref = torch.nn.functional.interpolate(img[None], scale_factor=2)[0]
    assert torch.allclose(canvas.result(), ref, atol=1e-6)


@torch.inference_mode()
def test_tiled_sr_matches_single_pass_on_320x240():
    """Tiles with a 16 px overlap give the single pass's output: measured at most 1.1e-5 (fp32
    rounding; seeds 0-2), bounded at 1e-4. An 8 px overlap is 5e-4 off, a 4 px one 2.7e-3 (both
    within the 2/255 a user could see, so that bound would not notice a shrunk overlap)."""
    torch.manual_seed(0)
    model = SRGenerator(SRConfig(channels=16, blocks=4)).eval()
    # Give BatchNorm non-trivial statistics, as a trained model has.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    img = torch.rand(1, 3, 240, 320)
    img = torch.nn.functional.avg_pool2d(img, 3, 1, 1)  # photo-like local correlation
    whole = model(img)[0]
    canvas = TileCanvas(3, 240, 320, pad=16, scale=4)
    wins = split_into_tiles(240, 320, tile=64, pad=16)
    batch = torch.stack([img[0, :, w.y0:w.y1, w.x0:w.x1] for w in wins])
    for win, out in zip(wins, model(batch)):
        canvas.add(win, out)
    diff = (canvas.result() - whole).abs().max().item()
    assert diff <= 1e-4, diff
