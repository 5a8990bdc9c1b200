"""RRDBNet (ESRGAN / Real-ESRGAN): the forward pass against a functional re-statement of the
published network, loading published `.pth` layouts, and running through the pipeline."""

import pytest
import torch
import torch.nn.functional as F

from colorsr_cli.errors import WeightsError
from colorsr_cli.models import build_model
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.weightfile import load_weight_file

TINY = {"features": 8, "blocks": 2, "growth": 4}


def tiny_rrdbnet(seed: int = 0, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("rrdbnet", {**TINY, **config}).eval()
    with torch.no_grad():  # larger weights than the default init, so every branch shows
        for p in model.parameters():
            p.mul_(3)
    return model


def reference_forward(sd: dict, x: torch.Tensor, blocks: int) -> torch.Tensor:
    """BasicSR's RRDBNet x4 written out with F.conv2d on the state dict (independent of the module)."""
    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    def rdb(prefix, t):
        x1 = lrelu(conv(f"{prefix}.conv1", t))
        x2 = lrelu(conv(f"{prefix}.conv2", torch.cat((t, x1), 1)))
        x3 = lrelu(conv(f"{prefix}.conv3", torch.cat((t, x1, x2), 1)))
        x4 = lrelu(conv(f"{prefix}.conv4", torch.cat((t, x1, x2, x3), 1)))
        return conv(f"{prefix}.conv5", torch.cat((t, x1, x2, x3, x4), 1)) * 0.2 + t

    feat = conv("conv_first", x)
    body = feat
    for n in range(blocks):
        body = rdb(f"body.{n}.rdb3", rdb(f"body.{n}.rdb2", rdb(f"body.{n}.rdb1", body))) * 0.2 + body
    feat = feat + conv("conv_body", body)
    feat = lrelu(conv("conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = lrelu(conv("conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))


def test_forward_matches_the_published_network_and_key_names():
    model = tiny_rrdbnet()
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        ref = reference_forward(model.state_dict(), x, TINY["blocks"]).clamp(0, 1)
        out = model(x)
    assert out.shape == (2, 3, 36, 44)
    assert 0.05 < out.std() and torch.allclose(out, ref, atol=1e-6)
    assert {"conv_first.weight", "body.1.rdb3.conv5.bias", "conv_body.weight", "conv_up1.weight",
            "conv_up2.weight", "conv_hr.weight", "conv_last.bias"} <= set(model.state_dict())


def test_full_size_config_is_real_esrgan_x4plus():
    assert sum(p.numel() for p in build_model("rrdbnet").parameters()) == 16_697_987


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_published_pth_layouts_load(tmp_path):
    ema, plain = tiny_rrdbnet(0), tiny_rrdbnet(1)
    # BasicSR training output: both sets, the EMA weights are the ones to use
    torch.save({"params": plain.state_dict(), "params_ema": ema.state_dict()}, tmp_path / "basicsr.pth")
    torch.save({"params": plain.state_dict()}, tmp_path / "params.pth")
    torch.save(plain.state_dict(), tmp_path / "plain.pth")
    old_names = {k.replace("conv_body", "trunk_conv").replace("body.", "RRDB_trunk.").replace(".rdb", ".RDB")
                 .replace("conv_up", "upconv").replace("conv_hr", "HRconv"): v
                 for k, v in plain.state_dict().items()}
    torch.save(old_names, tmp_path / "esrgan.pth")
    assert _same_weights(load_weight_file(tmp_path / "basicsr.pth")[0], ema)
    for name in ("params.pth", "plain.pth", "esrgan.pth"):
        loaded = load_weight_file(tmp_path / name)[0]
        assert loaded.config == plain.config and _same_weights(loaded, plain), name


def test_published_x2_layout_is_recognised(tmp_path):
    model = tiny_rrdbnet(scale=2)
    torch.save({"params_ema": model.state_dict()}, tmp_path / "x2.pth")
    loaded = load_weight_file(tmp_path / "x2.pth")[0]
    assert loaded.config.scale == 2 and loaded.descriptor.input_multiple == 2


@pytest.mark.parametrize("blob,message", [
    ({"params_ema": {"conv_first.weight": torch.zeros(8, 3, 3, 3)}}, "no known architecture"),
    ({"weights": [1, 2, 3]}, "nor a state dict"),
    ("text", "nor a state dict"),
])
def test_unknown_files_get_one_line(tmp_path, blob, message):
    torch.save(blob, tmp_path / "w.pth")
    with pytest.raises(WeightsError, match=message) as info:
        load_weight_file(tmp_path / "w.pth")
    assert "\n" not in str(info.value)


def test_wrong_shapes_are_refused_in_one_line(tmp_path):
    sd = tiny_rrdbnet().state_dict()
    sd["body.0.rdb2.conv3.weight"] = torch.zeros(4, 7, 3, 3)
    torch.save({"params_ema": sd}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="do not match architecture rrdbnet") as info:
        load_weight_file(tmp_path / "bad.pth")
    assert "\n" not in str(info.value)


def test_pipeline_reflect_pads_the_image_and_tiles_like_one_pass():
    model = tiny_rrdbnet()
    img = torch.rand(3, 30, 26)
    with torch.no_grad():
        padded = F.pad(img[None], (10, 10, 10, 10), mode="reflect")
        expected = model(padded)[0, :, 40:-40, 40:-40]
    whole = Restorer(None, model, RestoreOptions(mode="sr-only", tile=0)).restore([img])[0]
    tiled = Restorer(None, model, RestoreOptions(mode="sr-only", tile=16, tile_pad=8)).restore([img])[0]
    assert whole.shape == (3, 120, 104)
    assert torch.allclose(whole, expected, atol=1e-5)
    assert (tiled - expected).abs().mean() < 2e-3  # seams blended; measured 6e-4


def test_pipeline_pads_inputs_to_the_models_multiple():
    model = tiny_rrdbnet(scale=2)
    img = torch.rand(3, 13, 11)  # odd sides: pixel-unshuffle needs even ones
    out = Restorer(None, model, RestoreOptions(mode="sr-only", scale=2, tile=8, tile_pad=4)).restore([img])[0]
    assert out.shape == (3, 26, 22)
