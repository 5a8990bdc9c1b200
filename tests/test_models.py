import pickle
import sys

import pytest
import torch
import torch.nn.functional as F

from colorsr_cli.errors import WeightsError
from colorsr_cli.models import ARCHITECTURES, SRConfig, SRGenerator, build_model
from colorsr_cli.weightfile import load_weight_file, save_weight_file


@pytest.mark.parametrize("arch,config,shape,expect", [
    ("colorizer_unet", {"width": 8}, (2, 1, 64, 64), (2, 2, 64, 64)),
    ("colorizer_unet", {"width": 8, "depth": 2}, (1, 1, 32, 48), (1, 2, 32, 48)),
    ("colorizer_ensemble", {"members": [{"width": 8}, {"width": 4, "depth": 2}]}, (1, 1, 32, 48),
     (1, 2, 32, 48)),
    ("patch_discriminator", {"width": 8}, (2, 3, 64, 64), (2, 1, 8, 8)),
    ("srgan_generator", {"channels": 8, "blocks": 2}, (2, 3, 16, 12), (2, 3, 64, 48)),
    ("srgan_generator", {"channels": 8, "blocks": 1, "scale": 2}, (1, 3, 10, 10), (1, 3, 20, 20)),
    ("srgan_discriminator", {"width": 8, "fc": 16}, (2, 3, 96, 96), (2, 1)),
])
def test_shapes(arch, config, shape, expect):
    model = build_model(arch, config).eval()
    with torch.no_grad():
        assert model(torch.rand(shape)).shape == expect


def test_generators_output_their_ranges():
    with torch.no_grad():
        ab = build_model("colorizer_unet", {"width": 8})(torch.rand(1, 1, 32, 32) * 2 - 1)
        rgb = build_model("srgan_generator", {"channels": 8, "blocks": 1})(torch.rand(1, 3, 8, 8))
    assert ab.abs().max() <= 1 and 0 <= rgb.min() and rgb.max() <= 1


def test_global_skip_adds_detail_to_bicubic():
    model = build_model("srgan_generator", {"channels": 8, "blocks": 1, "global_skip": True}).eval()
    torch.nn.init.zeros_(model.tail.weight)
    torch.nn.init.zeros_(model.tail.bias)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        ref = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
        assert torch.allclose(model(x), ref, atol=1e-6)


def test_weight_file_carries_its_architecture(tmp_path):
    model = build_model("srgan_generator", {"channels": 8, "blocks": 3, "tail_kernel": 3})
    save_weight_file(model, tmp_path / "m.pt", meta={"note": "x"})
    loaded, meta = load_weight_file(tmp_path / "m.pt")
    assert loaded.config == model.config and meta == {"note": "x"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


class _Exploit:
    def __reduce__(self):
        return (exec, ("open('PWNED','w').write('x')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notes the crafted pickle's protocol
def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "colorsr-weights/1", "payload": _Exploit()}, path)
    with pytest.raises(WeightsError, match="refused"):
        load_weight_file(path)
    assert not (tmp_path / "PWNED").exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(WeightsError):
        load_weight_file(raw)
    assert not (tmp_path / "PWNED").exists()


def test_wrong_format_and_mismatched_weights(tmp_path):
    torch.save({"format": "other"}, tmp_path / "a.pt")
    with pytest.raises(WeightsError, match="not a colorsr weight file"):
        load_weight_file(tmp_path / "a.pt")
    model = build_model("srgan_generator", {"channels": 8, "blocks": 1})
    save_weight_file(model, tmp_path / "b.pt")
    blob = torch.load(tmp_path / "b.pt", weights_only=True)
    blob["config"]["channels"] = 16
    torch.save(blob, tmp_path / "b.pt")
    with pytest.raises(WeightsError, match="do not match"):
        load_weight_file(tmp_path / "b.pt")


# The smallest config of every registered architecture: registering one without adding it here
# fails test_registry_is_complete.
_TINY_CONFIGS = {
    "colorizer_unet": {"width": 8},
    "colorizer_ensemble": {"members": [{"width": 8}, {"width": 4}]},
    "patch_discriminator": {"width": 8},
    "srgan_generator": {"channels": 8, "blocks": 1},
    "srgan_discriminator": {"width": 8, "fc": 16},
    "rrdbnet": {"features": 8, "blocks": 1, "growth": 4},
    "vgg19_features": {},
    "colorizer_mobilenet": {"width": 8},
    "mobilenet_v2_features": {},
}


def test_registry_is_complete():
    """Every architecture a manifest entry names is registered with the entry's task and builds
    from the entry's config; every registered architecture maps back to its own name, so a
    weight file saved from it names the architecture it loads as."""
    from colorsr_cli.models import arch_name_of
    from colorsr_cli.weights import load_manifest

    for entry in load_manifest().values():
        assert entry.arch in ARCHITECTURES, entry.name
        assert ARCHITECTURES[entry.arch].task == entry.task, entry.name
        assert arch_name_of(build_model(entry.arch, entry.config)) == entry.arch
    assert set(_TINY_CONFIGS) == set(ARCHITECTURES)
    for name, config in _TINY_CONFIGS.items():
        assert arch_name_of(build_model(name, config)) == name


@pytest.mark.parametrize("arch,config,shape", [
    ("colorizer_unet", {"width": 8}, (2, 1, 32, 32)),
    ("colorizer_ensemble", {"members": [{"width": 8}, {"width": 4}]}, (2, 1, 32, 32)),
    ("srgan_generator", {"channels": 8, "blocks": 2}, (2, 3, 12, 12)),
])
def test_fused_batchnorm_gives_the_same_outputs(arch, config, shape):
    import copy

    from colorsr_cli.models.blocks import fuse_batchnorm

    from .conftest import _randomise_batchnorm

    model = _randomise_batchnorm(build_model(arch, config)).eval()
    fused = fuse_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(shape)
    with torch.no_grad():
        assert torch.allclose(model(x), fused(x), atol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3, 5, 7, 9])
def test_fold_subpixel_tail_is_the_same_function(kernel):
    from colorsr_cli.models.blocks import PixelShuffleUp, fold_subpixel_tail

    torch.manual_seed(kernel)
    up, tail = PixelShuffleUp(6), torch.nn.Conv2d(6, 3, kernel, 1, kernel // 2)
    with torch.no_grad():
        up.act.weight.uniform_(-0.5, 0.5)  # distinct per-channel slopes: the PReLU move is exercised
    x = torch.randn(2, 6, 9, 7)
    folded = fold_subpixel_tail(up, tail)
    with torch.no_grad():
        assert torch.allclose(folded(x), tail(up(x)), atol=1e-5)
    assert folded.tail.kernel_size[0] == 2 * ((kernel // 2 + 1) // 2) + 1


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_inference_form_of_the_sr_generator_matches(scale):
    import copy

    from colorsr_cli.models.blocks import fuse_batchnorm
    from colorsr_cli.models.srgan import fold_tail_for_inference

    torch.manual_seed(scale)
    model = SRGenerator(SRConfig(channels=8, blocks=2, scale=scale, global_skip=True)).eval()
    for m in model.modules():  # non-trivial BN statistics, so the BN fold is exercised too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    fast = fold_tail_for_inference(fuse_batchnorm(copy.deepcopy(model)))
    fast = fast.to(memory_format=torch.channels_last)
    assert isinstance(fast.tail, torch.nn.Identity)
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        assert torch.allclose(fast(x.contiguous(memory_format=torch.channels_last)), model(x), atol=1e-5)


def test_lowres_upsampler_shapes_and_cost():
    from torch.utils.flop_counter import FlopCounterMode

    fast = SRGenerator(SRConfig(channels=32, blocks=6, head_kernel=3, tail_kernel=3, global_skip=True,
                                upsampler="lowres")).eval()
    default = SRGenerator(SRConfig(channels=32, blocks=8, global_skip=True)).eval()
    x = torch.rand(1, 3, 16, 24)
    flops = []
    for model in (fast, default):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            assert model(x).shape == (1, 3, 64, 96)
        flops.append(counter.get_total_flops())
    assert flops[0] < flops[1] / 3
    with pytest.raises(ValueError, match="upsampler"):
        SRGenerator(SRConfig(upsampler="nearest"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning is Linux-only")
def test_cpu_allocator_tuning_is_idempotent(monkeypatch):
    """glibc's thresholds are set once per process (a stand-in libc counts the calls), and not at
    all with COLORSR_NO_MALLOC_TUNING=1."""
    import ctypes

    from colorsr_cli import devices

    calls = []

    class CountingLibc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: CountingLibc())
    monkeypatch.setattr(devices, "_ALLOCATOR_TUNED", False)
    assert devices.tune_cpu_allocator() is True and devices.tune_cpu_allocator() is True
    assert calls == [(-3, 1 << 30), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    monkeypatch.setattr(devices, "_ALLOCATOR_TUNED", False)
    monkeypatch.setenv("COLORSR_NO_MALLOC_TUNING", "1")
    assert devices.tune_cpu_allocator() is False and len(calls) == 2


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (17, 9), (64, 64)])
def test_bicubic_upscale_equals_torch_bicubic(scale, size):
    from colorsr_cli.models.blocks import bicubic_upscale

    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(scale))
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    out = bicubic_upscale(x, scale)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out - ref).abs().max() < 2e-6
    with torch.autocast("cpu", torch.bfloat16):  # the base image ignores autocast
        assert (bicubic_upscale(x, scale) - ref).abs().max() < 2e-6
    cl = x.contiguous(memory_format=torch.channels_last)
    assert (bicubic_upscale(cl, scale) - ref).abs().max() < 2e-6


def test_bicubic_upscale_passes_gradients():
    """Also after the first call ran under inference mode (a restore before training in one
    process): the cached kernel is a normal tensor."""
    from colorsr_cli.models.blocks import _bicubic_phase_kernel, bicubic_upscale

    _bicubic_phase_kernel.cache_clear()
    with torch.inference_mode():
        bicubic_upscale(torch.rand(1, 3, 4, 4), 4)
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    bicubic_upscale(x, 4).sum().backward()
    y = x.detach().clone().requires_grad_(True)
    F.interpolate(y, scale_factor=4, mode="bicubic", align_corners=False).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-5)


def test_ensemble_averages_its_members_and_round_trips(tmp_path):
    """A colouriser ensemble's output is the mean of its members' times its chroma gain; its
    weight file carries the members' configs; members with a chroma gain of their own, or none
    at all, are refused."""
    torch.manual_seed(0)
    config = {"members": [{"width": 8}, {"width": 4, "depth": 2}], "chroma_gain": 0.8}
    model = build_model("colorizer_ensemble", config).eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        expect = (model.members[0](x) + model.members[1](x)) / 2 * 0.8
        assert torch.allclose(model(x), expect, atol=1e-6)
    assert model.multiple == 8
    save_weight_file(model, tmp_path / "e.pt")
    loaded, _ = load_weight_file(tmp_path / "e.pt")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="at least one member"):
        build_model("colorizer_ensemble", {"members": []})
    with pytest.raises(ValueError, match="no chroma gain of their own"):
        build_model("colorizer_ensemble", {"members": [{"width": 8, "chroma_gain": 0.9}]})


def test_a_new_network_is_one_module_and_one_registry_entry(monkeypatch, tmp_path):
    """A network written here (an x2 pixel-shuffle SR model with its config and descriptor) and
    one registry entry are all the weight files, the CLI's loader and the pipeline need: it
    saves, loads by path as an SR model, and restores through tiles of any size."""
    from dataclasses import dataclass

    import torch.nn.functional as F

    from colorsr_cli.models import Architecture, ModelDescriptor
    from colorsr_cli.pipeline import RestoreOptions, Restorer
    from colorsr_cli.weightfile import save_weight_file
    from colorsr_cli.weights import load_model

    @dataclass(frozen=True)
    class TinyConfig:
        width: int = 4

    class TinySR(torch.nn.Module):
        def __init__(self, config: TinyConfig = TinyConfig()):
            super().__init__()
            self.config = config
            self.conv = torch.nn.Conv2d(3, 3 * 4, 3, padding=1)

        @property
        def descriptor(self) -> ModelDescriptor:
            return ModelDescriptor(task="sr", scale=2, forward_bytes_per_pixel=64)

        def forward(self, x):
            return F.pixel_shuffle(self.conv(x), 2) + F.interpolate(x, scale_factor=2, mode="nearest")

    monkeypatch.setitem(ARCHITECTURES, "tiny_sr", Architecture(TinySR, TinyConfig, "sr"))
    torch.manual_seed(0)
    net = TinySR().eval()
    save_weight_file(net, tmp_path / "tiny.pt")
    loaded, _ = load_model(tmp_path / "tiny.pt", "sr")
    x = torch.rand(3, 36, 50)
    whole = Restorer(None, loaded, RestoreOptions(mode="sr-only", scale=2, tile=0)).restore([x])[0]
    tiled = Restorer(None, loaded, RestoreOptions(mode="sr-only", scale=2, tile=16)).restore([x])[0]
    assert whole.shape == (3, 72, 100)
    with torch.no_grad():
        expected = net(x[None])[0].clamp(0, 1)
    assert (whole - expected).abs().max() < 1e-5 and (tiled - whole).abs().max() < 1e-5


def test_a_deeper_generator_starts_as_the_shallower_one_and_then_trains_its_new_blocks(tmp_path):
    """deepen_from / train sr --init with more --blocks: the deeper network computes exactly what
    the shallower one does (train and eval mode), its new blocks receive gradient, and a design
    that differs in anything but depth is refused."""
    from dataclasses import replace

    from colorsr_cli.train.sr import load_initial_weights

    torch.manual_seed(0)
    config = SRConfig(channels=8, blocks=2, head_kernel=3, tail_kernel=3, global_skip=True,
                      upsampler="lowres")
    small = SRGenerator(config)
    for p in small.parameters():  # the zero-initialised tail would hide a wrong body
        torch.nn.init.normal_(p, std=0.1)
    save_weight_file(small, tmp_path / "small.pt")
    deep = SRGenerator(replace(config, blocks=5))
    load_initial_weights(deep, str(tmp_path / "small.pt"))
    x = torch.rand(4, 3, 12, 12)
    for mode in (True, False):
        small.train(mode), deep.train(mode)
        with torch.no_grad():
            assert torch.equal(small(x), deep(x))
    deep.train()
    (deep(x) - torch.rand(4, 3, 48, 48)).abs().mean().backward()
    assert deep.body[4].body[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="only the block count may differ"):
        load_initial_weights(SRGenerator(replace(config, blocks=5, channels=16)), str(tmp_path / "small.pt"))
