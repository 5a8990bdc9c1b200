"""Draw docs/pipeline.png from real intermediate images of the shipped pipeline:
input -> colourised at working size -> full-resolution colour -> tile grid -> 4x output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from colorsr_cli.color import denormalize_ab, lab_to_rgb, rgb_to_lab
from colorsr_cli.io import read_image
from colorsr_cli.pipeline import RestoreOptions, Restorer, resize, to_tensor, working_input
from colorsr_cli.tiling import split_into_tiles
from colorsr_cli.weights import load_model

HERE = Path(__file__).parent
PANEL = 256


def panel(t: torch.Tensor, label: str) -> Image.Image:
    img = Image.fromarray((t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    f = PANEL / max(img.size)
    img = img.resize((round(img.width * f), round(img.height * f)), Image.LANCZOS)
    canvas = Image.new("RGB", (PANEL, img.height + 22), "white")
    canvas.paste(img, ((PANEL - img.width) // 2, 0))
    ImageDraw.Draw(canvas).text((4, img.height + 5), label, fill="black")
    return canvas


@torch.inference_mode()
def main(sample: Path = HERE / "samples" / "chelsea.png") -> None:
    color, _ = load_model(None, "color")
    sr, _ = load_model(None, "sr")
    options = RestoreOptions()
    restorer = Restorer(color, sr, options)
    rgb = to_tensor(read_image(sample).rgb)
    L = rgb_to_lab(rgb)[:1]
    small, valid = working_input(L, options.color_size, restorer.colorizer.multiple)
    ab = restorer.colorizer(small[None])[0][:, :valid[0], :valid[1]]
    small_rgb = lab_to_rgb(torch.cat(((small[:, :valid[0], :valid[1]] + 1) * 50, denormalize_ab(ab))))
    full = restorer.colorize([rgb])[0]
    tiles = Image.fromarray((full.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    draw = ImageDraw.Draw(tiles)
    for win in split_into_tiles(*full.shape[-2:], options.tile, options.tile_pad):
        draw.rectangle((win.x0, win.y0, win.x1 - 1, win.y1 - 1), outline=(255, 255, 0))
    out = restorer.restore([rgb])[0]
    panels = [panel(rgb, f"input {rgb.shape[2]}x{rgb.shape[1]} gray"),
              panel(resize(small_rgb, tuple(small_rgb.shape[-2:]), "nearest"),
                    f"colourised at {valid[1]}x{valid[0]}"),
              panel(full, "chroma + own full-res L"),
              panel(torch.from_numpy(np.array(tiles)).permute(2, 0, 1) / 255, "SR tiles (overlapping)"),
              panel(out, f"output {out.shape[2]}x{out.shape[1]}")]
    figure = Image.new("RGB", (PANEL * len(panels), max(p.height for p in panels)), "white")
    for k, p in enumerate(panels):
        figure.paste(p, (k * PANEL, 0))
    figure.save(HERE / "pipeline.png", optimize=True)


if __name__ == "__main__":
    main()
