"""The restore pipeline on tensors: gray (or the luminance of a colour photo) -> colourise ->
RGB -> super-resolve x4 over overlapping, batched tiles.

With keep_colour, an input detected as a colour photo (color.is_colour_photo; a toned print
counts as gray) skips the colouriser and is only upscaled. Output scale 4 is the SR model's own;
at scale 2 each tile's x4 output is reduced to x2 before it is blended (canvas, blending and
encoding at the output size), scale 1 runs no SR.

Colour is decided with global context: the colouriser runs on the whole picture at a working
resolution (at most `color_size` on the long side; a 64x64 input is colourised at its native
size, the 64x64 -> 256x256 pipeline the models were trained for), its chroma is upsampled and
recombined with the input's own full-resolution luminance, as photo colourisers do. Only then is
the RGB image tiled for super-resolution. A Restorer keeps no state between inputs; a caller that
needs state across inputs (video's temporal smoothing of the chroma) passes a chroma hook to
restore, and the state lives in the hook."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from colorsr_cli.color import denormalize_ab, is_colour_photo, lab_to_rgb, normalize_l, rgb_to_lab
from colorsr_cli.memory import RestorePlan, fit_tiling, per_pass
from colorsr_cli.models.blocks import fuse_batchnorm
from colorsr_cli.tiling import TileCanvas, split_into_tiles

Mode = Literal["full", "color-only", "sr-only"]
# Called on each colourised image's Lab (3, H, W) (L in [0, 100], ab in about [-110, 110], after
# the saturation gain) before it becomes RGB; returns the Lab to use. Video's temporal smoothing.
ChromaHook = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RestoreOptions:
    mode: Mode = "full"
    scale: int = 4  # output size relative to the input: 1 (no SR), 2 (SR tiles reduced 2x) or 4
    keep_colour: bool = False  # colour photos (color.is_colour_photo) are not colourised, only upscaled
    # uint8 outputs in [0, 255], tiles assembled straight into a uint8 canvas: a quarter of the
    # memory of float32 outputs (the restore command's choice; a 4x output of a 24 MP scan is
    # 1.2 GB as uint8, 4.6 GB as float32).
    uint8_output: bool = False
    tile: int = 128  # SR tile size in input pixels (0 = no tiling)
    tile_pad: int = 16  # overlap context on each side of a tile, input pixels
    batch_size: int = 16  # tiles / images per forward pass
    batch_pixels: int = 0  # and at most this many input pixels per pass (0 = no limit)
    # Bytes restoring one image should stay within (memory.restore_peak_bytes): for a large image
    # the SR tile and the per-pass batch are lowered until the estimate fits (0 = no limit); a
    # tile or batch the user chose (tile_fixed, batch_fixed) is kept as it is.
    memory_budget: int = 0
    tile_fixed: bool = False
    batch_fixed: bool = False
    color_size: int = 128  # long side of the colouriser's working resolution
    saturation: float = 1.0  # gain on the predicted chroma (a, b): < 1 tones colours down
    dtype: torch.dtype = torch.float32  # compute precision (bf16/fp16 via autocast)

    def per_pass(self, height: int, width: int) -> int:
        """How many height x width inputs go through a network together: batch_size, capped at
        batch_pixels input pixels where set, at least one."""
        return per_pass(self.batch_size, self.batch_pixels, height * width)


# Per-device defaults for the commands (RestoreOptions' own defaults are the portable ones).
# Chosen by measurement (benchmarks/bench.py, docs/performance.md): on CPU, large tiles keep the
# overlap overhead low (a 640x480 input costs 1.08x one whole-image pass with tile 512, 1.6x with
# tile 128) but big tiles must go one per pass (stacking 4 tiles of 384 costs 1.2x more than one
# at a time: the feature maps outgrow the caches), while small photos still batch 16 at a time;
# bf16 where the CPU has it natively (1.7x). On CUDA, bf16 and batches of 16 tiles.
DEVICE_DEFAULTS: dict[str, dict] = {
    "cpu": {"tile": 512, "batch_size": 16, "batch_pixels": 512 * 512, "precision": "bf16"},
    "cuda": {"tile": 256, "batch_size": 16, "batch_pixels": 0, "precision": "bf16"},
    "mps": {"tile": 256, "batch_size": 8, "batch_pixels": 0, "precision": "fp32"},
}


def default_options(device: torch.device) -> dict:
    """tile, batch_size and precision name for a device (see DEVICE_DEFAULTS). bf16 only where
    the hardware has it: GPUs from Ampere on, CPUs with AVX512-BF16/AMX/Arm BF16; else fp32."""
    from colorsr_cli.devices import cpu_has_native_bf16

    kind = torch.device(device).type
    chosen = dict(DEVICE_DEFAULTS.get(kind, DEVICE_DEFAULTS["cpu"]))
    if chosen["precision"] == "bf16":
        native = (cpu_has_native_bf16() if kind == "cpu"
                  else torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if not native:
            chosen["precision"] = "fp32"
    return chosen


class Restorer:
    """Holds the two models and the options; `restore` maps a list of images to outputs.
    In 'full' and 'color-only' modes a colour input is treated as an old photo (only its
    luminance is used) unless options.keep_colour; 'sr-only' keeps every input's colour and
    only upscales it. No SR model runs at scale 1 or in 'color-only' mode."""

    def __init__(self, colorizer: nn.Module | None, sr: nn.Module | None,
                 options: RestoreOptions = RestoreOptions(), device: torch.device | str = "cpu"):
        if options.scale not in (1, 2, 4):
            raise ValueError(f"scale must be 1, 2 or 4, got {options.scale}")
        needs_color = options.mode in ("full", "color-only")
        needs_sr = options.mode in ("full", "sr-only") and options.scale > 1
        if needs_color and colorizer is None:
            raise ValueError(f"mode {options.mode} needs a colouriser")
        if needs_sr and sr is None:
            raise ValueError(f"mode {options.mode} needs a super-resolution model")
        self.device = torch.device(device)
        self.options = options
        self.colorizer = inference_copy(colorizer, self.device) if needs_color else None
        self.sr = inference_copy(sr, self.device) if needs_sr else None
        # What each network declares about itself (models.ModelDescriptor): the pipeline
        # pads, tiles and scales by these, never by the model's type.
        self.sr_scale = sr.descriptor.scale if needs_sr else 1
        self.sr_multiple = sr.descriptor.input_multiple if needs_sr else 1
        self.sr_edge_pad = sr.descriptor.edge_pad if needs_sr else 0
        self.memory_plan = RestorePlan(
            scale=options.scale, sr_scale=self.sr_scale, tile_pad=options.tile_pad,
            sr_bytes=sr.descriptor.forward_bytes_per_pixel if needs_sr else 0,
            color_bytes=colorizer.descriptor.forward_bytes_per_pixel if needs_color else 0,
            color_pixels=options.color_size**2, edge_pad=self.sr_edge_pad, multiple=self.sr_multiple,
            batch_pixels=options.batch_pixels)

    def tiling_for(self, height: int, width: int) -> tuple[int, int]:
        """(SR tile, tiles per pass at most) for a height x width input: the options' own, or
        with a memory budget the largest that keep the estimate within it (memory.fit_tiling)."""
        opts = self.options
        return fit_tiling(height, width, self.memory_plan, opts.tile, opts.batch_size, opts.memory_budget,
                          opts.tile_fixed, opts.batch_fixed)

    def _autocast(self):
        if self.options.dtype is torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, self.options.dtype)

    def colourises(self, image: torch.Tensor) -> bool:
        """Whether restore colourises this RGB (3, H, W) input; False when it keeps its own colour
        (mode 'sr-only', or keep_colour and the input is a colour photo)."""
        if self.colorizer is None:
            return False
        if not self.options.keep_colour:
            return True
        return not is_colour_photo(as_unit_float(image))

    @torch.inference_mode()
    def restore(self, images: list[torch.Tensor], colourise: Sequence[bool] | None = None,
                chroma: ChromaHook | None = None) -> list[torch.Tensor]:
        """Each RGB (3, H, W) input, float in [0, 1] or uint8 -> (3, scale*H, scale*W) output on the
        CPU, float in [0, 1] (uint8 with options.uint8_output). colourise: per input, whether to
        colourise it (default: self.colourises(input)); chroma: see ChromaHook, called in input
        order among inputs of one shape (a film's frames)."""
        flags = [self.colourises(img) for img in images] if colourise is None else list(colourise)
        rgbs = self._to_device(images)
        chosen = [k for k, flag in enumerate(flags) if flag]
        if self.colorizer is not None and chosen:
            for k, rgb in zip(chosen, self.colorize([rgbs[k] for k in chosen], chroma)):
                rgbs[k] = rgb
        if self.sr is not None:
            rgbs = self.super_resolve(rgbs)
        return self._to_host(rgbs, [tuple(img.shape[-2:]) for img in images])

    def _to_device(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Host -> device, float32 in [0, 1] (uint8 inputs travel as uint8 and are scaled on the
        device: a quarter of the bytes). To a GPU: equal-shaped images as one pinned batch copied
        without blocking (one copy per shape instead of one per image; the kernels already
        queued run meanwhile)."""
        if self.device.type != "cuda" or any(img.device.type != "cpu" for img in images):
            return [as_unit_float(img.to(self.device)) for img in images]
        out: list[torch.Tensor | None] = [None] * len(images)
        for idx in same_shape_groups(images, key=lambda k: (tuple(images[k].shape), images[k].dtype)):
            # Stacked straight into page-locked memory: one host copy, not a stack and a pin.
            first = images[idx[0]]
            dtype = torch.uint8 if first.dtype == torch.uint8 else torch.float32
            batch = torch.empty((len(idx), *first.shape), dtype=dtype, pin_memory=True)
            torch.stack([images[k].to(dtype) for k in idx], out=batch)
            for k, x in zip(idx, as_unit_float(batch.to(self.device, non_blocking=True)).unbind(0)):
                out[k] = x
        return out  # type: ignore[return-value]

    def _to_host(self, rgbs: list[torch.Tensor], in_hws: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Outputs at options.scale times their input sizes, on the CPU. From a GPU, equal-shaped
        outputs are resized and copied as one batch: one copy (and one wait) per shape, not per
        image."""
        if self.device.type == "cpu":
            return [self.to_output_size(rgb, hw) for rgb, hw in zip(rgbs, in_hws)]
        out: list[torch.Tensor | None] = [None] * len(rgbs)
        for idx in same_shape_groups(rgbs, key=lambda k: (tuple(rgbs[k].shape), in_hws[k])):
            batch = self.to_output_size(stacked(rgbs, idx), in_hws[idx[0]]).cpu()
            for k, y in zip(idx, batch.unbind(0)):
                out[k] = y
        return out  # type: ignore[return-value]

    def to_output_size(self, rgb: torch.Tensor, in_hw: tuple[int, int]) -> torch.Tensor:
        """Resize a stage output, (3, H, W) or a batch of them, float in [0, 1] or uint8, to
        options.scale times the input size (area down, bicubic up); uint8 out with
        options.uint8_output, else float in [0, 1]."""
        target = (in_hw[0] * self.options.scale, in_hw[1] * self.options.scale)
        if tuple(rgb.shape[-2:]) != target:
            unit = rgb.float() / 255 if rgb.dtype == torch.uint8 else rgb
            rgb = resize(unit, target, "area" if rgb.shape[-1] > target[1] else "bicubic")
        if self.options.uint8_output:
            return to_uint8(rgb)
        return rgb.float() / 255 if rgb.dtype == torch.uint8 else rgb.clamp(0, 1)

    def colorize(self, rgbs: list[torch.Tensor], chroma: ChromaHook | None = None) -> list[torch.Tensor]:
        """Colourise at the working resolution; keep each image's own full-resolution L.
        Equal-shaped images are converted, resized and recombined as one batch (the colour
        conversions are many small operations: per image they were launch-bound on a GPU).
        The full-resolution conversions go a band of rows at a time (by_rows): their
        temporaries are a few copies of a band, not of the image. chroma: see ChromaHook."""
        out: list[torch.Tensor | None] = [None] * len(rgbs)
        gain = self.options.saturation
        for idx in same_shape_groups(rgbs):
            L = by_rows(lambda rgb: rgb_to_lab(rgb)[:, :1], stacked(rgbs, idx), 1)
            work, crop = working_input(L, self.options.color_size,
                                       self.colorizer.descriptor.input_multiple)
            bs = self.options.per_pass(*work.shape[-2:])
            ab = torch.cat([self._forward(self.colorizer, part) for part in work.split(bs)])
            ab = ab[..., :crop[0], :crop[1]]
            if ab.shape[-2:] != L.shape[-2:]:
                ab = resize(ab, tuple(L.shape[-2:]), "bilinear")
            if chroma is None:
                restored = by_rows(lambda Lab: lab_to_rgb(with_chroma_gain(Lab, gain)),
                                   torch.cat((L, ab), 1), 3)
            else:
                lab = with_chroma_gain(torch.cat((L, ab), 1), gain)
                restored = by_rows(lab_to_rgb, torch.stack([chroma(one) for one in lab.unbind(0)]), 3)
            del L, ab
            for k, rgb in zip(idx, restored.unbind(0)):
                out[k] = rgb
        return out  # type: ignore[return-value]

    def super_resolve(self, rgbs: list[torch.Tensor]) -> list[torch.Tensor]:
        """x sr_scale every image, all images' tiles batched together; below the model's own
        scale, each tile's output is reduced (area) to options.scale before it is blended, so the
        canvas, the blending and the encoding are at the output size. Each tile's output goes
        into its image's canvas as soon as its batch is done (uint8 with options.uint8_output).
        A model that declares an edge_pad sees each image reflect-padded by it (the padding is
        cropped from the result).

        Reducing the input instead (the model on a quarter of the pixels at scale 2) was measured
        and rejected: 28.2 dB against 32.6 dB for this route and 31.1 dB for bicubic 2x
        (benchmarks/scale2_quality.py)."""
        p, s = self.sr_edge_pad, min(self.sr_scale, self.options.scale)
        if p:
            padded = self._super_resolve([edge_padded(rgb, p) for rgb in rgbs])
            return [out[:, p * s:out.shape[-2] - p * s, p * s:out.shape[-1] - p * s] for out in padded]
        return self._super_resolve(rgbs)

    def _super_resolve(self, rgbs: list[torch.Tensor]) -> list[torch.Tensor]:
        opts = self.options
        s = min(self.sr_scale, opts.scale)
        reduce = self.sr_scale // s  # the model's output pixels per output pixel, each way
        dtype = torch.uint8 if opts.uint8_output else torch.float32
        canvases: list[TileCanvas | None] = []
        jobs, batch_cap = [], opts.batch_size
        for k, rgb in enumerate(rgbs):
            h, w = rgb.shape[-2:]
            pad = 2 * self.sr_edge_pad  # the estimate counts the edge padding itself
            tile, batch_size = self.tiling_for(h - pad, w - pad)
            batch_cap = min(batch_cap, batch_size)
            windows = split_into_tiles(h, w, tile, opts.tile_pad, self.sr_multiple)
            # One window over the whole image (the common case for photos up to the tile
            # size): its output is the result, with no canvas to fill, weigh and divide.
            whole = len(windows) == 1 and windows[0].shape == (h, w)
            canvases.append(None if whole else TileCanvas(3, h, w, opts.tile_pad, s, self.device, dtype))
            jobs += [(k, win) for win in windows]
        crops = [rgbs[k][:, win.y0:win.y1, win.x0:win.x1] for k, win in jobs]
        results: list[torch.Tensor | None] = [None] * len(rgbs)
        inputs = [padded_to_multiple(c, self.sr_multiple) for c in crops]
        for j, out in self._batched(self.sr, inputs, batch_cap):
            k, win = jobs[j]
            out = out[:, :crops[j].shape[-2] * self.sr_scale, :crops[j].shape[-1] * self.sr_scale]
            if reduce > 1:
                out = F.avg_pool2d(out[None], reduce)[0]
            canvas = canvases[k]
            if canvas is None:
                results[k] = to_uint8(out) if opts.uint8_output else out.float()
            else:
                canvas.add(win, out)
        return [r if c is None else c.result() for r, c in zip(results, canvases)]  # type: ignore[misc]

    def _batched(self, model: nn.Module, inputs: list[torch.Tensor], batch_size: int
                 ) -> Iterator[tuple[int, torch.Tensor]]:
        """Run model over inputs, stacking equal-shaped ones into batches of options.per_pass
        (at most batch_size); yields (index into inputs, output) as each batch is done, in input
        order within a shape (so one image's tiles come in split_into_tiles' order), and holds no
        finished output."""
        for idx in same_shape_groups(inputs):
            bs = min(batch_size, self.options.per_pass(*inputs[idx[0]].shape[-2:]))
            for start in range(0, len(idx), bs):
                chunk = idx[start:start + bs]
                yield from zip(chunk, self._forward(model, torch.stack([inputs[k] for k in chunk])))

    def _forward(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """One pass of model over a stacked batch: channels-last, under the precision's autocast,
        float32 out."""
        with self._autocast():
            return model(batch.contiguous(memory_format=torch.channels_last)).float()


def inference_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A private eval-mode copy made for speed (the caller's model is left untouched), with the
    same outputs to float rounding: BatchNorm folded into the convolutions, an SR model's last
    upsampling stage and tail conv moved to the low-resolution grid (fold_tail_for_inference),
    and channels-last memory layout, which oneDNN and cuDNN run faster (measured 1.2-1.5x on
    the SR stage on CPU; docs/performance.md). The model's own descriptor says how to make its
    inference form."""
    model = fuse_batchnorm(copy.deepcopy(model).eval())
    model = model.descriptor.inference_form(model)
    return model.to(device, memory_format=torch.channels_last)


def edge_padded(rgb: torch.Tensor, pad: int) -> torch.Tensor:
    """(3, H, W) -> (3, H + 2 pad, W + 2 pad), mirrored at the borders (reflect); replicated
    where the image is too small to mirror."""
    mode = "reflect" if min(rgb.shape[-2:]) > pad else "replicate"
    return F.pad(rgb[None], (pad, pad, pad, pad), mode=mode)[0]


def padded_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(C, H, W) replicate-padded at the bottom and right to multiples of `multiple`."""
    ph, pw = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    return F.pad(x[None], (0, pw, 0, ph), mode="replicate")[0] if ph or pw else x


def with_chroma_gain(L_ab: torch.Tensor, gain: float) -> torch.Tensor:
    """(N, 3, H, W) of L in [0, 100] and the colouriser's normalised ab -> Lab with ab x gain."""
    return torch.cat((L_ab[:, :1], denormalize_ab(L_ab[:, 1:]) * gain), 1)


def by_rows(pixelwise, x: torch.Tensor, channels: int, pixels: int = 1 << 20) -> torch.Tensor:
    """pixelwise(x) for a per-pixel function of a (N, C, H, W) batch, computed on bands of rows of
    about `pixels` pixels into one (N, channels, H, W) output, so that its temporaries are a few
    copies of a band instead of the whole batch (a 24 MP scan's Lab conversion: 0.3 GB a copy)."""
    n, _, h, w = x.shape
    rows = max(1, pixels // max(1, n * w))
    if rows >= h:
        return pixelwise(x)
    out = torch.empty((n, channels, h, w), dtype=x.dtype, device=x.device)
    for top in range(0, h, rows):
        out[:, :, top:top + rows] = pixelwise(x[:, :, top:top + rows])
    return out


def same_shape_groups(tensors: list[torch.Tensor], key=None) -> list[list[int]]:
    """Indices of `tensors` grouped by shape (or by key(index)), in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for k, t in enumerate(tensors):
        groups.setdefault(key(k) if key else tuple(t.shape), []).append(k)
    return list(groups.values())


def stacked(tensors: list[torch.Tensor], idx: list[int]) -> torch.Tensor:
    """tensors[idx] as one (N, ...) batch; a lone tensor as a view, with no copy."""
    return tensors[idx[0]][None] if len(idx) == 1 else torch.stack([tensors[k] for k in idx])


def working_input(L: torch.Tensor, color_size: int, multiple: int
                  ) -> tuple[torch.Tensor, tuple[int, int]]:
    """L (1, H, W) or (N, 1, H, W) in [0, 100] -> (normalised L padded to a multiple, (h, w) valid
    size): downscaled (area) so the long side is at most color_size, never upscaled."""
    h, w = L.shape[-2:]
    f = min(1.0, color_size / max(h, w))
    size = (max(1, round(h * f)), max(1, round(w * f)))
    x = normalize_l(resize(L, size, "area") if size != (h, w) else L)
    ph, pw = -size[0] % multiple, -size[1] % multiple
    if ph or pw:
        x = x[None] if x.dim() == 3 else x
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = x[0] if L.dim() == 3 else x
    return x, size


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(C, H, W) -> (C, size[0], size[1]), or a batch (N, C, H, W) -> (N, C, size[0], size[1])."""
    kwargs = {} if mode in ("area", "nearest") else {"align_corners": False}
    if mode == "bicubic":
        kwargs["antialias"] = False
    if x.dim() == 4:
        return F.interpolate(x, size=size, mode=mode, **kwargs)
    return F.interpolate(x[None], size=size, mode=mode, **kwargs)[0]


def as_unit_float(img: torch.Tensor) -> torch.Tensor:
    """float32 in [0, 1]: uint8 scaled by 1/255, float converted."""
    return img.float() / 255 if img.dtype == torch.uint8 else img.float()


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float32 [0, 1] -> (3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


def to_image(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) float32 [0, 1]; uint8 (3, H, W) -> uint8 (H, W, 3)."""
    if t.dtype == torch.uint8:
        return t.permute(1, 2, 0).contiguous().numpy()
    return t.clamp(0, 1).permute(1, 2, 0).contiguous().numpy()


def to_uint8(t: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> uint8 in [0, 255], rounded as images are written (io: round(clip * 255));
    uint8 is returned as it is."""
    if t.dtype == torch.uint8:
        return t
    return t.float().clamp(0, 1).mul_(255).round_().to(torch.uint8)


