from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from colorsr_cli.color import rgb_to_lab
from colorsr_cli.pipeline import RestoreOptions, Restorer, working_input
from colorsr_cli.weightfile import load_weight_file
from tests.oplog import OpLog


@pytest.fixture
def models(tiny_weights):
    return load_weight_file(tiny_weights[0])[0], load_weight_file(tiny_weights[1])[0]


def test_64x64_gives_256x256(models):
    restorer = Restorer(*models, RestoreOptions())
    out = restorer.restore([torch.rand(3, 64, 64)])[0]
    assert out.shape == (3, 256, 256)
    assert 0 <= out.min() and out.max() <= 1


def test_native_size_equals_unbatched_manual_pipeline(models):
    """For a 64x64 input the pipeline is exactly: L -> G -> Lab -> RGB -> SR."""
    color, sr = models
    img = torch.rand(3, 64, 64)
    out = Restorer(color, sr, RestoreOptions(tile=0)).restore([img])[0]
    with torch.inference_mode():
        L = rgb_to_lab(img)[:1]
        ab = color((L / 50 - 1)[None])[0] * 110
        from colorsr_cli.color import lab_to_rgb

        ref = sr(lab_to_rgb(torch.cat((L, ab)))[None])[0]
    assert (out - ref).abs().max() < 1e-5


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_scale_and_odd_sizes(models, scale):
    restorer = Restorer(*models, RestoreOptions(scale=scale, tile=32, tile_pad=8))
    outs = restorer.restore([torch.rand(3, 1, 1), torch.rand(3, 3, 100), torch.rand(3, 37, 53)])
    assert [tuple(o.shape[1:]) for o in outs] == [(scale, scale), (3 * scale, 100 * scale),
                                                   (37 * scale, 53 * scale)]


def test_colour_keeps_input_luminance_at_full_resolution(models):
    """Colour-only at scale 1: the output's L is the input's own L (chroma comes from the
    low-resolution working image), up to gamut clipping."""
    img = torch.rand(1, 100, 160).expand(3, -1, -1) * 0.6 + 0.2
    restorer = Restorer(models[0], None, RestoreOptions(mode="color-only", scale=1, color_size=32))
    out = restorer.restore([img])[0]
    diff = (rgb_to_lab(out)[0] - rgb_to_lab(img)[0]).abs()
    assert diff.mean() < 1.0


def test_batching_does_not_change_results(models):
    imgs = [torch.rand(3, 64, 64) for _ in range(5)]
    one = Restorer(*models, RestoreOptions(batch_size=1)).restore(imgs)
    many = Restorer(*models, RestoreOptions(batch_size=8)).restore(imgs)
    for a, b in zip(one, many):
        assert (a - b).abs().max() < 1e-5


def test_mixed_shapes_in_one_call_match_one_at_a_time(models):
    """Equal-shaped images are colourised as one batch; a call mixing shapes gives each image
    what it would get alone."""
    imgs = [torch.rand(3, 64, 64), torch.rand(3, 48, 80), torch.rand(3, 64, 64), torch.rand(3, 7, 5)]
    restorer = Restorer(*models, RestoreOptions(batch_size=8))
    together = restorer.restore(imgs)
    for img, out in zip(imgs, together):
        assert (restorer.restore([img])[0] - out).abs().max() < 1e-5


def test_colour_conversions_run_once_per_shape_not_per_image(models):
    """rgb_to_lab and lab_to_rgb are each one batched call for equal-shaped images: eight
    images cost as many pow operations (the gamma and cube-root steps) as one."""
    restorer = Restorer(models[0], None, RestoreOptions(mode="color-only", batch_size=16))
    counts = []
    for n in (1, 8):
        with OpLog() as log:
            restorer.restore([torch.rand(3, 64, 64) for _ in range(n)])
        counts.append(log.count("pow"))
    assert counts[0] > 0 and counts[0] == counts[1]


def test_grouped_device_to_host_path_keeps_order_and_values(models):
    """From a GPU, outputs are resized and copied one shape group at a time (Restorer._to_host);
    run here on CPU tensors, that path must give each image what the per-image path gives."""
    restorer = Restorer(*models, RestoreOptions(scale=4))
    rgbs = [torch.rand(3, 256, 256), torch.rand(3, 100, 60), torch.rand(3, 256, 256), torch.rand(3, 64, 64)]
    in_hws = [(64, 64), (25, 15), (64, 64), (32, 32)]  # the last one is resized down
    per_image = restorer._to_host(rgbs, in_hws)
    restorer.device = SimpleNamespace(type="gpu")  # any non-CPU device takes the grouped path
    grouped = restorer._to_host(rgbs, in_hws)
    assert [tuple(o.shape) for o in grouped] == [(3, 256, 256), (3, 100, 60), (3, 256, 256), (3, 128, 128)]
    assert all(torch.equal(a, b) for a, b in zip(per_image, grouped))


def test_no_state_leaks_between_inputs(models):
    restorer = Restorer(*models, RestoreOptions())
    a, b = torch.rand(3, 64, 64), torch.rand(3, 64, 64)
    first = restorer.restore([a])[0]
    restorer.restore([b])
    assert torch.equal(restorer.restore([a])[0], first)


@pytest.fixture
def bicubic_sr(bicubic_sr_weights):
    return load_weight_file(bicubic_sr_weights)[0]


def _chroma_error(out: torch.Tensor, img: torch.Tensor) -> float:
    """Mean |ab| difference (Lab units) between an output and its input, at the input's size."""
    small = torch.nn.functional.interpolate(out[None], size=img.shape[-2:], mode="area")[0]
    return float((rgb_to_lab(small)[1:] - rgb_to_lab(img)[1:]).abs().mean())


def test_sr_only_keeps_colour(bicubic_sr):
    img = torch.full((3, 32, 32), 0.15)
    img[0] = 0.9  # saturated red
    out = Restorer(None, bicubic_sr, RestoreOptions(mode="sr-only")).restore([img])[0]
    assert out.shape == (3, 128, 128)
    assert _chroma_error(out, img) < 0.5  # measured 0.0; a colourised or gray output is off by > 20


def test_keep_colour_only_upscales_colour_photos_and_colourises_the_rest(models, bicubic_sr):
    """keep_colour (the CLI's --colorize auto): a colour photo keeps its colour; gray and sepia
    inputs are colourised; without it every input is colourised."""
    from tests.conftest import photo_like, toned_like

    def chw(a):
        return torch.from_numpy(a.transpose(2, 0, 1).copy()).float() / 255

    colour = chw(photo_like(48, 64, 1))
    gray = chw(np.repeat(photo_like(48, 64, 2, gray=True)[..., None], 3, 2))
    sepia = chw(toned_like(48, 64, 8, 22, seed=3))
    auto = Restorer(models[0], bicubic_sr, RestoreOptions(keep_colour=True, tile=0))
    assert [auto.colourises(x) for x in (colour, gray, sepia)] == [False, True, True]
    outs = auto.restore([colour, gray, sepia])
    assert _chroma_error(outs[0], colour) < 0.5
    assert _chroma_error(outs[1], gray) > 2 and _chroma_error(outs[2], sepia) > 2
    always = Restorer(models[0], bicubic_sr, RestoreOptions(tile=0))
    assert always.colourises(colour) and _chroma_error(always.restore([colour])[0], colour) > 2


def test_scale_1_runs_no_sr_and_scale_2_blends_at_the_output_size(models, monkeypatch):
    """--scale 1 loads and runs no SR network; --scale 2 runs it on the whole input (reducing the
    input first lost 4 dB, see super_resolve) and reduces each tile's x4 output before blending,
    so the canvas is made at x2: the result is the x4 result reduced 2x, up to the blending."""
    from colorsr_cli import pipeline

    assert Restorer(*models, RestoreOptions(scale=1)).sr is None
    made, real = [], pipeline.TileCanvas
    monkeypatch.setattr(pipeline, "TileCanvas", lambda *a, **k: made.append(a[4]) or real(*a, **k))
    img = torch.rand(3, 64, 80)
    outs = {scale: Restorer(*models, RestoreOptions(scale=scale, tile=32, tile_pad=8)).restore([img])[0]
            for scale in (2, 4)}
    assert made == [2, 4] and outs[2].shape == (3, 128, 160)
    reduced = torch.nn.functional.avg_pool2d(outs[4][None], 2)[0]
    assert (outs[2] - reduced).abs().max() < 2 / 255
    whole = {scale: Restorer(*models, RestoreOptions(scale=scale, tile=0)).restore([img])[0]
             for scale in (2, 4)}
    assert torch.allclose(whole[2], torch.nn.functional.avg_pool2d(whole[4][None], 2)[0], atol=1e-6)


def test_working_input_pads_to_multiple():
    x, valid = working_input(torch.rand(1, 300, 200) * 100, 128, 8)
    assert valid == (128, 85) and x.shape == (1, 128, 88)
    x, valid = working_input(torch.rand(1, 5, 3) * 100, 128, 8)
    assert valid == (5, 3) and x.shape == (1, 8, 8)


def test_modes_need_their_models(models):
    with pytest.raises(ValueError):
        Restorer(None, models[1], RestoreOptions(mode="full"))
    with pytest.raises(ValueError):
        Restorer(models[0], None, RestoreOptions(mode="sr-only"))


def test_bf16_on_cpu_is_close_to_fp32(models):
    img = torch.rand(3, 64, 64)
    ref = Restorer(*models, RestoreOptions()).restore([img])[0]
    low = Restorer(*models, RestoreOptions(dtype=torch.bfloat16)).restore([img])[0]
    assert (ref - low).abs().mean() < 0.03


def test_saturation_scales_the_predicted_chroma(models):
    img = torch.rand(1, 64, 64).expand(3, -1, -1).clone()
    def colour(gain: float) -> torch.Tensor:
        opts = RestoreOptions(mode="color-only", scale=1, saturation=gain)
        return Restorer(models[0], None, opts).restore([img])[0]

    base, half, none = colour(1.0), colour(0.5), colour(0.0)
    ab_base, ab_half = rgb_to_lab(base)[1:], rgb_to_lab(half)[1:]
    inside = (base > 0.02).all(0) & (base < 0.98).all(0)  # away from gamut clipping
    assert torch.allclose(ab_half[:, inside], ab_base[:, inside] * 0.5, atol=0.3)
    assert rgb_to_lab(none)[1:].abs().max() < 0.5


def test_device_defaults_and_overrides(monkeypatch):
    """The CPU defaults are the measured ones (docs/performance.md), and "auto" precision is
    bf16 exactly where the CPU computes it natively, whatever this machine has."""
    from colorsr_cli import devices
    from colorsr_cli.cli.common import Precision, device_options
    from colorsr_cli.devices import cpu_has_native_bf16
    from colorsr_cli.pipeline import default_options

    cpu = torch.device("cpu")
    monkeypatch.setenv("COLORSR_MEMORY", "2G")
    budget = {"memory_budget": 2 << 30, "tile_fixed": False, "batch_fixed": False}
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda native=native: native)
        assert device_options(cpu, None, None, Precision.auto) == {
            "tile": 512, "batch_size": 16, "batch_pixels": 512 * 512, "dtype": dtype, **budget}
    assert device_options(cpu, None, None, Precision.fp32)["dtype"] == torch.float32
    x86 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 fma\n"
    assert cpu_has_native_bf16(x86) and not cpu_has_native_bf16(x86.replace(" avx512_bf16", ""))
    assert cpu_has_native_bf16("Features\t: fp asimd bf16 i8mm\n")
    assert device_options(cpu, 64, 2, Precision.bf16) == {"tile": 64, "batch_size": 2, "batch_pixels": 0,
                                                          "dtype": torch.bfloat16, "memory_budget": 2 << 30,
                                                          "tile_fixed": True, "batch_fixed": True}
    if not torch.cuda.is_available():  # without a GPU that has bf16, "auto" never picks it
        assert default_options(torch.device("cuda"))["precision"] == "fp32"


def test_restorer_runs_the_fast_inference_form(tiny_weights):
    """The Restorer's private models are the folded, channels-last forms, and they give the
    caller's models' outputs."""
    from colorsr_cli.weightfile import load_weight_file

    color, _ = load_weight_file(tiny_weights[0])
    sr, _ = load_weight_file(tiny_weights[1])
    restorer = Restorer(color, sr, RestoreOptions(mode="sr-only", tile=0))
    assert isinstance(restorer.sr.tail, torch.nn.Identity)
    x = torch.rand(3, 20, 24)
    with torch.no_grad():
        direct = sr.eval()(x[None])[0]
    assert torch.allclose(restorer.restore([x])[0], direct.clamp(0, 1), atol=1e-5)


def test_batch_pixels_caps_the_batch_not_the_result(tiny_weights):
    from colorsr_cli.weightfile import load_weight_file

    sr, _ = load_weight_file(tiny_weights[1])
    calls = []
    imgs = [torch.rand(3, 16, 16) for _ in range(5)] + [torch.rand(3, 40, 40)]
    outs = {}
    for pixels in (0, 2 * 16 * 16):
        opts = RestoreOptions(mode="sr-only", tile=0, batch_size=16, batch_pixels=pixels)
        restorer = Restorer(None, sr, opts)
        restorer.sr.register_forward_hook(lambda m, args, out, p=pixels: calls.append((p, args[0].shape[0])))
        outs[pixels] = restorer.restore(imgs)
    assert sorted(n for p, n in calls if p == 0) == [1, 5]
    assert sorted(n for p, n in calls if p) == [1, 1, 2, 2]  # 40x40 alone; 16x16 two at a time
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(outs[0], outs[2 * 16 * 16]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_restore_matches_cpu(tiny_weights):
    from colorsr_cli.weightfile import load_weight_file

    color, _ = load_weight_file(tiny_weights[0])
    sr, _ = load_weight_file(tiny_weights[1])
    x = torch.rand(3, 40, 56)
    cpu = Restorer(color, sr, RestoreOptions(tile=32, tile_pad=8)).restore([x])[0]
    gpu = Restorer(color, sr, RestoreOptions(tile=32, tile_pad=8), "cuda").restore([x])[0]
    assert gpu.device.type == "cpu" and torch.allclose(cpu, gpu, atol=2e-3)


def test_single_tile_images_skip_the_canvas(tiny_weights, monkeypatch):
    """An image within one tile goes straight through (no canvas), and gives the same output
    as the tiled path."""
    from colorsr_cli import pipeline
    from colorsr_cli.weightfile import load_weight_file

    sr, _ = load_weight_file(tiny_weights[1])
    made = []
    real = pipeline.TileCanvas
    monkeypatch.setattr(pipeline, "TileCanvas", lambda *a, **k: made.append(a) or real(*a, **k))
    x = torch.rand(3, 24, 20)
    whole = Restorer(None, sr, RestoreOptions(mode="sr-only", tile=64)).restore([x])[0]
    assert made == []
    # tile 16 with pad 4: two windows each way (with pad 8 both would span the whole image).
    tiled = Restorer(None, sr, RestoreOptions(mode="sr-only", tile=16, tile_pad=4)).restore([x])[0]
    assert len(made) == 1 and torch.allclose(whole, tiled, atol=2 / 255)


def test_uint8_output_is_the_float_output_rounded(models):
    """uint8_output (the restore command's) assembles tiles into a uint8 canvas: the same
    pixels as the float path, rounded, at every scale."""
    imgs = [torch.rand(3, 45, 70), torch.rand(3, 20, 24)]  # tiled, and one window
    for scale in (1, 2, 4):
        opts = RestoreOptions(scale=scale, tile=24, tile_pad=6)
        floats = Restorer(*models, opts).restore(imgs)
        uint8s = Restorer(*models, replace(opts, uint8_output=True)).restore(imgs)
        for f, u in zip(floats, uint8s):
            assert u.dtype == torch.uint8 and u.shape == f.shape
            assert (u.int() - (f * 255).round().int()).abs().max() <= 1


def test_colour_conversions_by_bands_of_rows_equal_the_whole_image():
    """by_rows (used at full resolution) computes a per-pixel function band by band: the same
    values as one call on the whole batch, to float rounding (measured at most 7.6e-6 in L,
    6e-8 in RGB: vectorised loops round differently on other lengths)."""
    from colorsr_cli.color import lab_to_rgb
    from colorsr_cli.pipeline import by_rows

    x = torch.rand(2, 3, 37, 23)
    for pixels in (1, 100, 2 * 23 * 5, 10**6):
        L = by_rows(lambda t: rgb_to_lab(t)[:, :1], x, 1, pixels)
        assert L.shape == (2, 1, 37, 23) and (L - rgb_to_lab(x)[:, :1]).abs().max() < 1e-4
        lab = rgb_to_lab(x)
        assert (by_rows(lab_to_rgb, lab, 3, pixels) - lab_to_rgb(lab)).abs().max() < 1e-6


def test_chroma_hook_sees_each_colourised_lab_in_order_and_its_answer_is_used(models):
    """The hook gets each colourised image's Lab (L = the input's own, in [0, 100]) in input
    order; returning it unchanged changes nothing, zeroing ab makes the output gray."""
    restorer = Restorer(models[0], None, RestoreOptions(mode="color-only", scale=1))
    images = [torch.rand(3, 24, 32) for _ in range(3)]
    seen = []
    same = restorer.restore(images, chroma=lambda lab: seen.append(lab.clone()) or lab)
    assert all(torch.equal(a, b) for a, b in zip(same, restorer.restore(images)))
    assert len(seen) == 3 and all(torch.equal(lab[0], rgb_to_lab(img)[0]) for lab, img in zip(seen, images))
    gray = restorer.restore(images, chroma=lambda lab: torch.cat((lab[:1], torch.zeros_like(lab[1:]))))
    spread = max((out.max(0).values - out.min(0).values).max().item() for out in gray)
    assert spread < 2e-4, spread  # measured 4e-5: float rounding in lab_to_rgb (5x margin)


def test_uint8_images_restore_as_their_float_form(models):
    """A film's uint8 frames restore exactly as the same pixels given as floats in [0, 1]."""
    restorer = Restorer(*models, RestoreOptions(tile=32, tile_pad=8))
    frames = [(torch.rand(3, 24, 32) * 255).round().to(torch.uint8) for _ in range(2)]
    as_uint8 = restorer.restore(frames)
    as_float = restorer.restore([f.float() / 255 for f in frames])
    assert all(torch.equal(a, b) for a, b in zip(as_uint8, as_float))
