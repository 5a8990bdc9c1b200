"""MobileNetV2 encoder, its conversion from a tfjs (nsfwjs) model, and the colouriser built on it."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorsr_cli.errors import RecipeError
from colorsr_cli.models import ColorizerMobileNet, MobileColorizerConfig, MobileNetV2Features
from colorsr_cli.models.colorizer import _gray_srgb
from colorsr_cli.models.mobilenet import TAP_CHANNELS
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.train.color import train_color
from colorsr_cli.train.recipes import ColorRecipe
from colorsr_cli.weightfile import load_weight_file, save_weight_file

from .conftest import load_tool, photo_like


def test_features_have_the_documented_strides_and_channels():
    feats = MobileNetV2Features().eval()(torch.zeros(2, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, 64 // s, 96 // s) for c, s in zip(TAP_CHANNELS, (2, 4, 8, 16, 32))]


def test_stride_two_convolution_pads_bottom_and_right_as_keras_does():
    """Keras' MobileNetV2 zero-pads (0, 1) before a valid stride-2 3x3 convolution: the output
    pixel (0, 0) sees input rows/columns 0..2 (no padding on top/left)."""
    net = MobileNetV2Features().eval()
    conv = net.stem.conv
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left tap of each window
    x = torch.arange(36.0).reshape(1, 1, 6, 6).expand(1, 3, 6, 6).contiguous()
    raw = conv(torch.nn.functional.pad(x, (0, 1, 0, 1)))
    assert raw[0, 0, 0].tolist() == [0.0, 2.0, 4.0]  # windows start at columns 0, 2, 4
    net.stem.bn.eval()
    assert net.stem(x).shape == (1, 32, 3, 3)


def _write_tfjs(folder: Path, weights: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """A minimal tfjs layers model as nsfwjs packs it (JS-wrapped manifest and base64 shard),
    uint8-quantised; returns name -> (min, scale)."""
    folder.mkdir(parents=True)
    entries, blobs, quant = [], [], {}
    for name, value in weights.items():
        lo, hi = float(value.min()), float(value.max())
        scale = (hi - lo) / 255 or 1.0
        q = np.round((value - lo) / scale).astype(np.uint8)
        quant[name] = (lo, scale)
        shape = ",".join(str(s) for s in value.shape)
        entries.append(f'{{name:"{name}",shape:[{shape}],dtype:"float32",'
                       f'quantization:{{min:{lo!r},scale:{scale!r},dtype:"uint8"}}}}')
        blobs.append(q.tobytes())
    (folder / "model.min.js").write_text(
        "!function(e){}({1:[function(e,a,n){a.exports={modelTopology:{},weightsManifest:[{paths:"
        '["group1-shard1of1"],weights:[' + ",".join(entries) + "]}]}},{}]},{},[1])")
    data = base64.b64encode(b"".join(blobs)).decode()
    (folder / "group1-shard1of1.min.js").write_text(
        '!function(e){}(function(){return function(a,n,i){a.exports="' + data + '"}});')
    return quant


def test_tfjs_weights_are_dequantised_and_transposed(tmp_path):
    tool = load_tool("mobilenet_from_nsfwjs")
    rng = np.random.default_rng(0)
    net = MobileNetV2Features()
    keras = {}
    for ours, conv, bn in [("stem", "Conv1", "bn_Conv1")] + [
            (f"blocks.{i}.{part}", f"{tool.keras_prefix(i)}{part}", f"{tool.keras_prefix(i)}{part}_BN")
            for i, block in enumerate(net.blocks) for part in ("expand", "depthwise", "project")
            if getattr(block, part) is not None]:
        w = net.get_submodule(ours).conv.weight
        if "depthwise" in conv:
            keras[f"{conv}/depthwise_kernel"] = rng.normal(size=(3, 3, w.shape[0], 1)).astype(np.float32)
        else:
            keras[f"{conv}/kernel"] = rng.normal(size=(w.shape[2], w.shape[3], w.shape[1], w.shape[0])
                                                 ).astype(np.float32)
        for k in ("gamma", "beta", "moving_mean", "moving_variance"):
            keras[f"{bn}/{k}"] = rng.uniform(0.5, 1.5, size=w.shape[0]).astype(np.float32)
    # nsfwjs orders its manifest by name; the reader must follow the manifest, not assume a layout.
    keras = dict(sorted(keras.items()))
    quant = _write_tfjs(tmp_path / "m", keras)
    read = tool.read_tfjs(tmp_path / "m")
    lo, scale = quant["Conv1/kernel"]
    assert np.allclose(read["Conv1/kernel"], keras["Conv1/kernel"], atol=scale / 2 + 1e-6)
    sd = tool.state_dict_from_keras(read, net)
    kernel = read["block_3_expand/kernel"]  # (1, 1, in, out) -> (out, in, 1, 1)
    assert torch.equal(sd["blocks.3.expand.conv.weight"][5, 7], torch.from_numpy(kernel[:, :, 7, 5]))
    dw = read["block_3_depthwise/depthwise_kernel"]  # (3, 3, C, 1) -> (C, 1, 3, 3)
    assert torch.equal(sd["blocks.3.depthwise.conv.weight"][9, 0], torch.from_numpy(dw[:, :, 9, 0]))
    assert torch.equal(sd["blocks.3.depthwise.bn.running_var"],
                       torch.from_numpy(read["block_3_depthwise_BN/moving_variance"]))
    net.load_state_dict(sd, strict=False)  # every parameter and statistic has a source


def test_gray_of_lightness_matches_an_independent_lab_conversion():
    from skimage.color import lab2rgb

    L = torch.tensor([0.0, 20.0, 50.0, 75.0, 100.0])
    ref = lab2rgb(np.stack([L.numpy(), np.zeros(5), np.zeros(5)], -1)[None])[0, :, 0]
    got = _gray_srgb((L / 50 - 1).view(1, 1, 1, 5))[0, 0, 0]
    assert np.allclose(got.numpy(), ref, atol=1e-4)


def test_mobile_colouriser_keeps_its_encoder_statistics_and_shapes():
    G = ColorizerMobileNet(MobileColorizerConfig(8, global_features=True, classes=3))
    G.train()
    assert not G.encoder.training and G.merge[0].training
    out = G(torch.rand(2, 1, 48, 64) * 2 - 1, details=True)
    assert out["ab"].shape == (2, 2, 48, 64) and out["ab"].abs().max() <= 1
    assert out["classes"].shape == (2, 3)
    before = G.encoder.stem.bn.running_mean.clone()
    G(torch.rand(2, 1, 32, 32))
    assert torch.equal(G.encoder.stem.bn.running_mean, before)


def test_recipe_needs_encoder_weights_and_a_regression_head(tmp_path):
    with pytest.raises(RecipeError, match="--encoder-weights"):
        ColorRecipe(data="d", out="o", encoder="mobilenet_v2")
    with pytest.raises(RecipeError, match="regression"):
        ColorRecipe(data="d", out="o", encoder="mobilenet_v2", encoder_weights="e.pt", head="bins")


def test_mobilenet_recipe_keeps_the_encoder_frozen_and_restores(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for k in range(20):
        Image.fromarray(photo_like(64, 64, k)).save(data / f"p{k}.png")
    encoder = MobileNetV2Features()
    with torch.no_grad():
        for p in encoder.parameters():
            p.normal_(0, 0.1)
    save_weight_file(encoder.eval(), tmp_path / "enc.pt")
    recipe = ColorRecipe(data=str(data), out=str(tmp_path / "run"), encoder="mobilenet_v2",
                         encoder_weights=str(tmp_path / "enc.pt"), width=8, batch_size=4, max_steps=4,
                         pretrain_steps=2, disc_width=8, val_every=2, log_every=1, device="cpu",
                         threads=1, val_fraction=0.2, lr=1e-2)
    run = train_color(recipe)
    model, _ = load_weight_file(run / "best.pt")
    assert isinstance(model, ColorizerMobileNet)
    for name, value in encoder.state_dict().items():  # frozen: exactly the file's weights
        assert torch.equal(model.encoder.state_dict()[name], value), name
    assert json.loads((run / "recipe.json").read_text())["encoder"] == "mobilenet_v2"
    restored = Restorer(model, None, RestoreOptions(mode="color-only", tile=0), torch.device("cpu"))
    out = restored.restore([torch.rand(1, 40, 56)])
    assert out[0].shape == (3, 160, 224) and torch.isfinite(out[0]).all()


def test_init_starts_a_mobile_colouriser_from_one_of_its_kind(tmp_path):
    from colorsr_cli.errors import WeightsError
    from colorsr_cli.models import ColorizerConfig, ColorizerUNet
    from colorsr_cli.train.color import init_generator

    torch.manual_seed(0)
    source = ColorizerMobileNet(MobileColorizerConfig(8))
    save_weight_file(source, tmp_path / "m.pt")
    target = ColorizerMobileNet(MobileColorizerConfig(8, global_features=True))
    fresh = init_generator(target, tmp_path / "m.pt")
    assert fresh and all(k.split(".")[0] in ("global_mlp", "fuse") for k in fresh)
    assert torch.equal(target.head.weight, source.head.weight)
    with pytest.raises(WeightsError, match="width 8, the recipe asks for width 16"):
        init_generator(ColorizerMobileNet(MobileColorizerConfig(16)), tmp_path / "m.pt")
    with pytest.raises(WeightsError, match="not a single colouriser like the recipe's colorizer_unet"):
        init_generator(ColorizerUNet(ColorizerConfig(8)), tmp_path / "m.pt")


def test_encoder_options_reach_the_recipe(monkeypatch):
    from typer.testing import CliRunner

    import colorsr_cli.train.color
    from colorsr_cli.cli import app

    got = []
    monkeypatch.setattr(colorsr_cli.train.color, "train_color",
                        lambda recipe, resume, reporter: got.append(recipe) or Path("run"))
    result = CliRunner().invoke(app, ["train", "color", "--data", "d", "--out", "o", "--encoder",
                                      "mobilenet_v2", "--encoder-weights", "e.pt", "--train-encoder"])
    assert result.exit_code == 0, result.output
    [recipe] = got
    assert (recipe.encoder, recipe.encoder_weights, recipe.train_encoder) == ("mobilenet_v2", "e.pt", True)
