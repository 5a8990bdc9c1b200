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


@pytest.mark.parametrize("h,w,tile,pad,multiple",
                         [(61, 61, 20, 16, 1), (90, 40, 24, 20, 1), (61, 50, 20, 16, 2)])
def test_wide_context_gives_no_window_twice_and_still_covers(h, w, tile, pad, multiple):
    wins = split_into_tiles(h, w, tile, pad, multiple)
    assert len(set(wins)) == len(wins)
    img = torch.rand(1, h, w)
    canvas = TileCanvas(1, h, w, pad, 1)
    for win in wins:
        canvas.add(win, img[:, win.y0:win.y1, win.x0:win.x1])
    assert torch.allclose(canvas.result(), img, atol=1e-6)


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


@pytest.mark.parametrize("h,w,tile,pad,scale", [(50, 77, 20, 6, 2), (240, 320, 64, 16, 4), (70, 33, 32, 8, 1),
                                                (9, 9, 64, 4, 4)])
def test_uint8_canvas_is_the_float_result_rounded_and_keeps_only_a_band_in_float(h, w, tile, pad, scale):
    """The banded uint8 canvas gives round(255 x the float canvas) at every pixel, while its
    float part never exceeds about one row of windows."""
    g = torch.Generator().manual_seed(1)
    wins = split_into_tiles(h, w, tile, pad)
    outputs = [torch.rand(3, win.shape[0] * scale, win.shape[1] * scale, generator=g) for win in wins]
    full, banded = TileCanvas(3, h, w, pad, scale), TileCanvas(3, h, w, pad, scale, dtype=torch.uint8)
    band_rows = []
    for win, out in zip(wins, outputs):
        full.add(win, out)
        banded.add(win, out)
        band_rows.append(banded.sum.shape[1])
    result = banded.result()
    assert result.dtype == torch.uint8 and result.shape == (3, h * scale, w * scale)
    expected = (full.result().clamp(0, 1) * 255).round().to(torch.uint8)
    assert (result.int() - expected.int()).abs().max() <= 1  # float summation order: rarely off by 1
    assert (result == expected).float().mean() > 0.999
    assert max(band_rows) <= (min(tile, h) + 2 * pad) * scale


def test_uint8_canvas_refuses_windows_out_of_order():
    wins = split_into_tiles(64, 64, 16, 4)
    canvas = TileCanvas(1, 64, 64, 4, 1, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="uncovered"):  # rows above the last window never filled
        for win in reversed(wins):
            canvas.add(win, torch.ones(1, *win.shape))


@pytest.mark.parametrize("h,w,tile,pad,multiple", [(61, 75, 20, 16, 2), (70, 33, 32, 7, 4), (9, 9, 64, 4, 2),
                                                   (101, 57, 30, 5, 4)])
def test_pixel_unshuffle_windows_start_on_the_multiple_pad_to_one_size_and_cover(h, w, tile, pad, multiple):
    wins = split_into_tiles(h, w, tile, pad, multiple)
    assert all(win.y0 % multiple == 0 and win.x0 % multiple == 0 for win in wins)
    assert all((win.y1 - win.y0) % multiple == 0 or win.y1 == h for win in wins)
    assert all((win.x1 - win.x0) % multiple == 0 or win.x1 == w for win in wins)
    assert len({tuple(-(-s // multiple) * multiple for s in win.shape) for win in wins}) == 1
    canvas = TileCanvas(1, h, w, pad, 1)
    for win in wins:
        canvas.add(win, torch.ones(1, *win.shape))
    assert torch.allclose(canvas.result(), torch.ones(1, h, w))


@torch.inference_mode()
def test_tiled_x2_pixel_unshuffle_model_matches_the_whole_image_pass():
    """An RRDBNet x2 unshuffles its input by 2: a tile starting on an odd row saw another pixel
    grid than the whole-image pass (0.004 off whatever the overlap); aligned, 1.2e-6."""
    from colorsr_cli.models.rrdbnet import RRDBConfig, RRDBNet
    from colorsr_cli.pipeline import RestoreOptions, Restorer

    torch.manual_seed(0)
    model = RRDBNet(RRDBConfig(features=8, blocks=1, growth=4, scale=2)).eval()
    img = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 61, 75), 3, 1, 1)[0]
    whole = Restorer(None, model, RestoreOptions(mode="sr-only", tile=0, scale=2)).restore([img])[0]
    tiled = Restorer(None, model, RestoreOptions(mode="sr-only", tile=20, tile_pad=16, scale=2,
                                                 batch_size=4)).restore([img])[0]
    assert whole.shape == tiled.shape == (3, 122, 150)
    assert (whole - tiled).abs().max().item() <= 1e-4
