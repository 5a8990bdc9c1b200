"""The memory estimate of a restore and the tiling it picks under a budget; the budget's sources
(COLORSR_MEMORY, available memory, the cap); an allocation failure under a real memory limit."""

import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from colorsr_cli import memory
from colorsr_cli.errors import ColorsrError
from colorsr_cli.memory import RestorePlan, fit_tiling, parse_bytes, restore_peak_bytes
from colorsr_cli.models import build_model
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.tiling import split_into_tiles
from colorsr_cli.weightfile import load_weight_file
from tests.conftest import photo_like

MiB = 1 << 20
# The shipped default models' per-pixel forward peaks (their descriptors), batches not capped in pixels.
PLAN = RestorePlan(scale=4, sr_bytes=2112, color_bytes=784)


@pytest.mark.parametrize("plan", [PLAN, RestorePlan(scale=2, sr_bytes=2112),
                                  RestorePlan(scale=1, color_bytes=784),
                                  RestorePlan(scale=4, sr_bytes=8064, edge_pad=10, multiple=1)])
def test_estimate_grows_with_the_image(plan):
    sizes = [(64, 64), (480, 640), (1000, 1000), (2400, 3600), (4000, 6000), (4000, 6001), (8000, 6000)]
    estimates = [restore_peak_bytes(h, w, plan, 512, 1) for h, w in sizes]
    assert all(a < b for a, b in zip(estimates, estimates[1:])), estimates


def test_estimate_grows_with_scale_tile_and_batch():
    h, w = 2400, 3600
    by_scale = [restore_peak_bytes(h, w, RestorePlan(scale=s, sr_bytes=2112), 512, 1) for s in (2, 4)]
    assert by_scale[0] < by_scale[1]
    # The peak is the largest stage's: below some tile size the encoder's copies dominate, so
    # the estimate stops falling there but never rises as tiles or batches shrink.
    by_tile = [restore_peak_bytes(h, w, PLAN, t, 1) for t in (64, 128, 256, 512, 1024)]
    assert all(a <= b for a, b in zip(by_tile, by_tile[1:])) and by_tile[-2] < by_tile[-1], by_tile
    by_batch = [restore_peak_bytes(h, w, PLAN, 256, b) for b in (1, 2, 4, 8, 16)]
    assert all(a <= b for a, b in zip(by_batch, by_batch[1:])) and by_batch[-2] < by_batch[-1], by_batch
    # A heavier network per pixel (Real-ESRGAN's descriptor against the default's) costs more.
    assert restore_peak_bytes(h, w, replace(PLAN, sr_bytes=8064), 512, 1) > by_tile[3]


def test_estimate_counts_the_canvas_and_the_tiles_in_flight():
    """Hand-computed lower bounds: the output canvas (3 bytes a pixel) next to the input, and one
    batch of 16 tiles' network peaks."""
    h, w = 2400, 3600
    canvas = 3 * h * w * 16 + 12 * h * w
    assert restore_peak_bytes(h, w, PLAN, 512, 1) > canvas
    tiles = 16 * (256 + 32) ** 2 * 2112
    assert restore_peak_bytes(h, w, PLAN, 256, 16) > canvas + tiles


def test_a_small_image_keeps_the_default_tiling_and_a_large_one_fits_the_budget():
    assert fit_tiling(480, 640, PLAN, 512, 16, 2 << 30) == (512, 16)
    assert fit_tiling(2400, 3600, PLAN, 512, 16, 0) == (512, 16)  # no budget: as given
    full = restore_peak_bytes(2400, 3600, PLAN, 512, 16)
    tile, batch = fit_tiling(2400, 3600, PLAN, 512, 16, full - 1)
    assert (tile, batch) != (512, 16)
    assert restore_peak_bytes(2400, 3600, PLAN, tile, batch) <= full - 1
    # The batch is lowered before the tile, and as little as needed.
    assert tile == 512 and restore_peak_bytes(2400, 3600, PLAN, 512, batch * 2) > full - 1
    # A budget under every estimate with tile 512 lowers the tile too.
    tight = restore_peak_bytes(2400, 3600, PLAN, 512, 1) - 1
    tile, batch = fit_tiling(2400, 3600, PLAN, 512, 16, tight)
    assert tile < 512 and restore_peak_bytes(2400, 3600, PLAN, tile, batch) <= tight
    # Nothing fits: the least memory this restore can take.
    assert fit_tiling(2400, 3600, PLAN, 512, 16, 1) == (memory.MIN_TILE, 1)


def test_a_tile_or_batch_the_user_chose_is_kept():
    assert fit_tiling(2400, 3600, PLAN, 512, 16, 1, tile_fixed=True) == (512, 1)
    assert fit_tiling(2400, 3600, PLAN, 512, 16, 1, batch_fixed=True) == (memory.MIN_TILE, 16)
    assert fit_tiling(2400, 3600, PLAN, 384, 6, 1, tile_fixed=True, batch_fixed=True) == (384, 6)


@pytest.fixture
def sr_model(tiny_weights):
    return load_weight_file(tiny_weights[1])[0]


def _tile_shapes(restorer: Restorer, image: torch.Tensor) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    shapes = []
    restorer.sr.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    return shapes, restorer.restore([image])[0]


def test_restorer_restores_a_large_image_with_the_fitted_tiling(sr_model):
    """Under a budget the estimate of the default tiling exceeds, the network sees smaller tiles
    in smaller batches, and the result is the one that tiling gives when asked for directly."""
    image = torch.rand(3, 300, 400)
    base = RestoreOptions(mode="sr-only", tile=256, tile_pad=8, batch_size=8)
    plan = Restorer(None, sr_model, base).memory_plan
    budget = restore_peak_bytes(300, 400, plan, 256, 1) - 1  # tile 256 does not fit, even alone
    fitted = Restorer(None, sr_model, replace(base, memory_budget=budget))
    tile, batch = fitted.tiling_for(300, 400)
    assert tile < 256 and restore_peak_bytes(300, 400, plan, tile, batch) <= budget
    shapes, out = _tile_shapes(fitted, image)
    assert {s[-2:] for s in shapes} == {split_into_tiles(300, 400, tile, 8)[0].shape}
    assert max(s[0] for s in shapes) <= batch
    direct = Restorer(None, sr_model, RestoreOptions(mode="sr-only", tile=tile, tile_pad=8, batch_size=batch))
    assert torch.equal(out, direct.restore([image])[0])
    # The same budget with the tile and batch fixed by the user: the given tiling, unchanged.
    fixed = replace(base, memory_budget=budget, tile_fixed=True, batch_fixed=True)
    shapes, out = _tile_shapes(Restorer(None, sr_model, fixed), image)
    assert {s[-2:] for s in shapes} == {split_into_tiles(300, 400, 256, 8)[0].shape}
    assert max(s[0] for s in shapes) == 4  # all of the image's 2 x 2 tiles in one pass
    assert torch.equal(out, Restorer(None, sr_model, base).restore([image])[0])


def test_descriptors_declare_their_forward_peak():
    """Each SR/colour network declares a per-pixel forward peak that grows with its width and,
    for SR, with its scale; the shipped defaults' figures are the ones the estimate was made for."""
    def per_pixel(arch, **config):
        return build_model(arch, config).descriptor.forward_bytes_per_pixel

    assert per_pixel("srgan_generator", channels=64, blocks=6, upsampler="lowres", global_skip=True) == 2112
    assert per_pixel("srgan_generator", channels=32, upsampler="lowres") < 2112
    assert per_pixel("srgan_generator", channels=64, scale=2, upsampler="lowres") < 2112
    assert per_pixel("rrdbnet", blocks=1) == 8064
    assert per_pixel("rrdbnet", blocks=1, scale=2) < 8064
    assert 0 < per_pixel("colorizer_unet", width=8) < per_pixel("colorizer_unet", width=32)
    # Above the measured peaks (1,359 and 1,608 bytes a pixel).
    assert per_pixel("colorizer_mobilenet", width=32) == 1872
    assert per_pixel("colorizer_mobilenet", width=64) > 1608


def test_parse_bytes():
    assert parse_bytes("6G") == 6 << 30
    assert parse_bytes("6GiB") == parse_bytes("6gb") == 6 << 30
    assert parse_bytes("1500M") == 1500 * MiB
    assert parse_bytes("0.5g") == 512 * MiB
    assert parse_bytes("123456") == 123456
    with pytest.raises(ColorsrError, match="COLORSR_MEMORY"):
        parse_bytes("lots")


def test_default_budget_from_the_environment_or_the_available_memory(monkeypatch):
    monkeypatch.setenv("COLORSR_MEMORY", "3G")
    assert memory.default_budget("cpu") == 3 << 30
    monkeypatch.delenv("COLORSR_MEMORY")
    if sys.platform.startswith("linux"):
        assert 0 < memory.available_memory() < 1 << 50
    monkeypatch.setattr(memory, "available_memory", lambda: 4 << 30)
    assert memory.default_budget("cpu") == int(0.75 * (4 << 30))
    monkeypatch.setattr(memory, "available_memory", lambda: 512 << 30)
    assert memory.default_budget("cpu") == memory.DEFAULT_CAP
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    assert memory.default_budget("cpu") == memory.DEFAULT_CAP


def test_restore_command_passes_the_budget_and_the_users_choices(tiny_weights, tmp_path, monkeypatch):
    """`colorsr restore` plans with COLORSR_MEMORY, and an explicit --tile / --batch-size is
    marked as the user's, so the budget keeps it."""
    from typer.testing import CliRunner

    from colorsr_cli.cli import app

    seen = []
    real = Restorer.restore

    def spy(self, images, *args):
        seen.append(self.options)
        return real(self, images, *args)

    monkeypatch.setattr(Restorer, "restore", spy)
    monkeypatch.setenv("COLORSR_MEMORY", "300M")
    Image.fromarray(photo_like(40, 48, 1, gray=True)).save(tmp_path / "a.png")
    weights = ["-w", str(tiny_weights[0]), "-w", str(tiny_weights[1])]
    for extra in ([], ["--tile", "32"], ["--batch-size", "2"]):
        result = CliRunner().invoke(app, ["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"),
                                          "--overwrite", *weights, *extra])
        assert result.exit_code == 0, result.output
    assert [o.memory_budget for o in seen] == [300 * MiB] * 3
    assert [(o.tile_fixed, o.batch_fixed) for o in seen] == [(False, False), (True, False), (False, True)]


_UNDER_A_LIMIT = textwrap.dedent("""
    import resource, sys, torch
    from colorsr_cli.cli import main
    torch.ones(256, 256) @ torch.ones(256, 256)  # start torch's threads before the limit
    vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]), resource.RLIM_INFINITY))
    sys.argv = ["colorsr", *sys.argv[2:]]
    main()
""")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
def test_out_of_memory_under_a_real_limit_is_one_line_naming_the_file(tiny_weights, tmp_path):
    """The CLI in a subprocess whose address space is capped 1.1 GB above what it holds after
    start-up: a 6000x4000 scan decodes (0.65 GB at its peak, plus the reader thread's arena)
    but its 24000x16000 canvas (1.15 GB, next to the decoded image) cannot be
    allocated. The run says so in one line naming the file and the options that need less, and
    restores the small photo next to it."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.tile(photo_like(400, 600, 1, gray=True), (10, 10))).save(folder / "big.png",
                                                                                  compress_level=1)
    Image.fromarray(photo_like(16, 16, 2, gray=True)).save(folder / "small.png")
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "COLUMNS": "300"}
    run = subprocess.run([sys.executable, "-c", _UNDER_A_LIMIT, str(1100 * MiB), "restore", str(folder),
                          "-o", str(tmp_path / "out"), "--colorize", "never", "--tile", "128",
                          "-w", str(tiny_weights[1])],
                         capture_output=True, text=True, env=env, timeout=600)
    failed = [line for line in run.stderr.splitlines() if line.startswith("failed")]
    assert failed == [f"failed {folder / 'big.png'}: out of memory restoring 6000x4000 at scale 4 "
                      "(try --tile 64 or --scale 2)"], run.stderr
    assert run.returncode == 1
    assert os.listdir(tmp_path / "out") == ["small.png"]
