"""Shared fixtures: tiny models saved as weight files, small generated images, and the tools/
scripts as modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorsr_cli.models import build_model
from colorsr_cli.weightfile import save_weight_file


def _randomise_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Trained-like BatchNorm statistics, so eval-mode outputs are not trivially flat."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> tuple[Path, Path]:
    """(colouriser, SR) weight files of tiny random networks."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    color = _randomise_batchnorm(build_model("colorizer_unet", {"width": 8}))
    sr = _randomise_batchnorm(build_model("srgan_generator", {"channels": 8, "blocks": 2}))
    save_weight_file(color, folder / "color.pt")
    save_weight_file(sr, folder / "sr.pt")
    return folder / "color.pt", folder / "sr.pt"


@pytest.fixture(scope="session")
def bicubic_sr_weights(tmp_path_factory) -> Path:
    """An SR weight file whose network outputs exactly its bicubic skip (detail branch zeroed):
    what comes out is the input's own colour, upscaled."""
    sr = build_model("srgan_generator", {"channels": 8, "blocks": 1, "global_skip": True})
    torch.nn.init.zeros_(sr.tail.weight)
    torch.nn.init.zeros_(sr.tail.bias)
    path = tmp_path_factory.mktemp("weights") / "bicubic_sr.pt"
    save_weight_file(sr, path)
    return path


def photo_like(h: int, w: int, seed: int = 0, gray: bool = False) -> np.ndarray:
    """A smooth random image (uint8, (h, w, 3) or (h, w)) that compresses like a photo."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(2, h // 8), max(2, w // 8), 3))
    img = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    return img.mean(axis=2).astype(np.uint8) if gray else img


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """A folder tree of small images: gray 64x64, colour 320x240 in a subfolder, RGBA png."""
    root = tmp_path / "album"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(photo_like(64, 64, 1, gray=True)).save(root / "gray64.png")
    Image.fromarray(photo_like(240, 320, 2)).save(root / "sub" / "colour.jpg", quality=92)
    rgba = np.dstack([photo_like(40, 48, 3), np.linspace(0, 255, 40 * 48).reshape(40, 48).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    return root


def toned_like(h: int, w: int, a: float, b: float, seed: int = 0) -> np.ndarray:
    """A gray photo printed with one tint (uint8 (h, w, 3)): Lab chroma (a, b) scaled by a
    mid-tone bump, as sepia (a, b > 0) or cyanotype (a, b < 0) toning leaves it."""
    from skimage import color as skcolor

    L = photo_like(h, w, seed, gray=True).astype(np.float64) / 255 * 100
    bump = 4 * (L / 100) * (1 - L / 100)
    lab = np.stack((L, bump * a, bump * b), axis=2)
    return np.round(np.clip(skcolor.lab2rgb(lab), 0, 1) * 255).astype(np.uint8)


def jpeg_round_trip(img: np.ndarray, quality: int = 75) -> np.ndarray:
    import io

    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def load_tool(name: str):
    """The script tools/NAME.py of the repository, imported as a module."""
    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
