import pickle

import pytest
import torch
import torch.nn.functional as F

from colorsr_cli.errors import WeightsError
from colorsr_cli.models import ARCHITECTURES, build_model
from colorsr_cli.weightfile import load_weight_file, save_weight_file


@pytest.mark.parametrize("arch,config,shape,expect", [
    ("colorizer_unet", {"width": 8}, (2, 1, 64, 64), (2, 2, 64, 64)),
    ("colorizer_unet", {"width": 8, "depth": 2}, (1, 1, 32, 48), (1, 2, 32, 48)),
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


def test_registry_is_complete():
    assert {a.task for a in ARCHITECTURES.values()} == {"color", "sr", "critic", "perceptual"}


@pytest.mark.parametrize("arch,config,shape", [
    ("colorizer_unet", {"width": 8}, (2, 1, 32, 32)),
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
