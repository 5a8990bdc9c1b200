"""Convert the ImageNet-initialised MobileNetV2 shipped inside the nsfwjs npm package into a
colorsr weight file of MobileNetV2Features (the encoder of `colorsr train color --encoder`).

    npm pack nsfwjs && tar xzf nsfwjs-*.tgz      # -> package/
    python tools/mobilenet_from_nsfwjs.py package mobilenet_v2.pt

Provenance: nsfwjs (MIT, Infinite Red) ships a Keras MobileNetV2 (alpha 1.0, 224 px) as a
tfjs layers model with uint8-quantised weights (value = min + scale * q). Its blocks 0-10 are
marked non-trainable in the model file, i.e. they are the ImageNet weights of the Keras
application; blocks 11-16 were fine-tuned for nsfwjs' own classification. The classifier
layers (Conv_1 and the dense head) are not converted."""

from __future__ import annotations

import argparse
import base64
import json
import re
from pathlib import Path

import numpy as np
import torch

from colorsr_cli.models.mobilenet import MobileNetV2Config, MobileNetV2Features
from colorsr_cli.weightfile import save_weight_file

_WEIGHT = re.compile(r'\{name:"([^"]+)",shape:\[([\d,]*)\],dtype:"float32",'
                     r'quantization:\{min:([-+.\deE]+),scale:([-+.\deE]+),dtype:"uint8"\}\}')
_STRING = re.compile(r'"([A-Za-z0-9+/=]{4096,})"')


def read_tfjs(model_dir: Path) -> dict[str, np.ndarray]:
    """Keras weight name -> dequantised float32 array, from model.min.js and its shards."""
    manifest = [(name, tuple(int(s) for s in shape.split(",") if s), float(lo), float(scale))
                for name, shape, lo, scale in _WEIGHT.findall((model_dir / "model.min.js").read_text())]
    if not manifest:
        raise SystemExit(f"{model_dir}/model.min.js: no uint8-quantised weights manifest found")
    shards = sorted(model_dir.glob("group1-shard*of*.min.js"))
    data = b"".join(base64.b64decode(_STRING.search(p.read_text()).group(1)) for p in shards)
    out, offset = {}, 0
    for name, shape, lo, scale in manifest:
        n = int(np.prod(shape))
        q = np.frombuffer(data, np.uint8, n, offset).astype(np.float32)
        out[name] = (lo + scale * q).reshape(shape)
        offset += n
    if offset != len(data):
        raise SystemExit(f"{model_dir}: manifest covers {offset} bytes of {len(data)}")
    return out


def keras_prefix(block: int) -> str:
    return "expanded_conv_" if block == 0 else f"block_{block}_"


def state_dict_from_keras(keras: dict[str, np.ndarray],
                          model: MobileNetV2Features) -> dict[str, torch.Tensor]:
    """Our parameter names -> tensors, Keras layouts transposed (conv HWIO -> OIHW, depthwise
    HWC1 -> C1HW)."""
    pairs = {"stem": ("Conv1", "bn_Conv1")}
    for i, block in enumerate(model.blocks):
        p = keras_prefix(i)
        if block.expand is not None:
            pairs[f"blocks.{i}.expand"] = (p + "expand", p + "expand_BN")
        pairs[f"blocks.{i}.depthwise"] = (p + "depthwise", p + "depthwise_BN")
        pairs[f"blocks.{i}.project"] = (p + "project", p + "project_BN")
    sd = {}
    for ours, (conv, bn) in pairs.items():
        if f"{conv}/depthwise_kernel" in keras:
            kernel = keras[f"{conv}/depthwise_kernel"].transpose(2, 3, 0, 1)
        else:
            kernel = keras[f"{conv}/kernel"].transpose(3, 2, 0, 1)
        sd[f"{ours}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(kernel))
        for theirs, name in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                             ("moving_variance", "running_var")):
            sd[f"{ours}.bn.{name}"] = torch.from_numpy(keras[f"{bn}/{theirs}"].copy())
    return sd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="the unpacked nsfwjs package folder")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    keras = read_tfjs(args.package / "dist" / "models" / "mobilenet_v2")
    model = MobileNetV2Features(MobileNetV2Config())
    sd = state_dict_from_keras(keras, model)
    missing = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")} - set(sd)
    if missing:
        raise SystemExit(f"not converted: {sorted(missing)[:5]}")
    model.load_state_dict(sd, strict=False)
    version = json.loads((args.package / "package.json").read_text()).get("version", "?")
    save_weight_file(model, args.output, {
        "source": f"nsfwjs {version} (MIT), dist/models/mobilenet_v2",
        "note": "blocks 0-10: Keras ImageNet weights; 11-16: fine-tuned by nsfwjs"})
    print(f"{args.output}: MobileNetV2Features, {sum(p.numel() for p in model.parameters()):,} parameters")


if __name__ == "__main__":
    main()
