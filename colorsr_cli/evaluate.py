"""`colorsr eval`: the project's evaluation protocol (shared/data README) on a folder of
real colour photos, for our pipeline and the baselines, through the same Restorer as restore.

truth = shorter side resized to 256 (area filter; bicubic if it must grow), centre crop 256x256;
input = truth area-downsampled to 64x64, reduced to its luminance (L of Lab, a = b = 0).
"""

from __future__ import annotations

import csv
import io as _io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from colorsr_cli.color import lab_to_rgb, rgb_to_lab
from colorsr_cli.errors import ColorsrError
from colorsr_cli.io import ImageJob, atomic_write, read_image, write_image_atomic
from colorsr_cli.metrics import METRICS, colorfulness, niqe
from colorsr_cli.pipeline import Restorer, resize, to_tensor
from colorsr_cli.resample import imresize

TRUTH_SIZE, INPUT_SIZE = 256, 64
METRIC_GROUPS = {
    "ssim": ("ssim", "ssim_y"),
    "psnr": ("psnr", "psnr_y"),
    "colorfulness": ("colorfulness",),
    "delta_e": ("ab_error", "delta_e2000"),
    # Colour placement (metrics.hue_hit, Zhang et al. 2016's AuC): the right hue, visibly, in
    # the right place; a cautious gray guess scores 0 on the hits (and 1 on left_gray).
    "placement": ("hue_hit", "green_hit", "red_hit", "left_gray", "auc", "auc_rebalanced"),
    "niqe": ("niqe",),
}
# Metrics where smaller is better (for the contact sheet's best/worst and the table).
LOWER_IS_BETTER = {"ab_error", "delta_e2000", "niqe", "left_gray"}


def protocol_pair(rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A colour photo (H, W, 3) float32 -> (truth (3, 256, 256), gray input (3, 64, 64))."""
    h, w = rgb.shape[:2]
    f = TRUTH_SIZE / min(h, w)
    size = (max(TRUTH_SIZE, round(w * f)), max(TRUTH_SIZE, round(h * f)))
    scaled = protocol_resize(rgb, size)
    y, x = (size[1] - TRUTH_SIZE) // 2, (size[0] - TRUTH_SIZE) // 2
    truth = to_tensor(scaled[y:y + TRUTH_SIZE, x:x + TRUTH_SIZE])
    small = resize(truth, (INPUT_SIZE, INPUT_SIZE), "area")
    return truth, gray_of(small)


def protocol_resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 -> size=(width, height) with the protocol's filter: area to shrink,
    bicubic to grow (clipped to [0, 1], bicubic overshoots)."""
    interp = cv2.INTER_AREA if size[0] < rgb.shape[1] else cv2.INTER_CUBIC
    return np.clip(cv2.resize(rgb, size, interpolation=interp), 0, 1)


def bicubic_reduce(rgb: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) float32 reduced 1/scale by OpenCV bicubic without antialiasing, clipped to
    [0, 1]: a plain resize, as web thumbnails are made (it aliases); the trainer's "bicubic"
    LR kernel. Not the SR papers' reduction: see literature_reduce."""
    h, w = rgb.shape[0] // scale, rgb.shape[1] // scale
    return np.clip(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def literature_reduce(rgb: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) float32, H and W multiples of scale, reduced 1/scale as the SR papers do:
    MATLAB's antialiased bicubic imresize (resample.imresize), clipped to [0, 1]."""
    planes = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    small = imresize(planes, 1 / scale).clamp(0, 1)
    return np.ascontiguousarray(small.numpy().transpose(1, 2, 0))


def gray_of(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> the same image with its chroma removed (a = b = 0), as RGB."""
    lab = rgb_to_lab(rgb)
    return lab_to_rgb(torch.cat((lab[..., :1, :, :], torch.zeros_like(lab[..., 1:, :, :])), -3))


Method = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def bicubic_x4(images: list[torch.Tensor]) -> list[torch.Tensor]:
    return [resize(img, (TRUTH_SIZE, TRUTH_SIZE), "bicubic").clamp(0, 1) for img in images]


def build_methods(full: Restorer, color_only: Restorer, sr_only: Restorer,
                  compare: Restorer | None = None) -> dict[str, Method]:
    """The baselines and ours, in table order."""
    methods: dict[str, Method] = {
        "gray+bicubic": bicubic_x4,
        "colorize+bicubic": color_only.restore,
        "sr(gray)": sr_only.restore,
        "full": full.restore,
    }
    if compare is not None:
        methods["full (compare)"] = compare.restore
    return methods


@dataclass
class EvalReport:
    metrics: list[str]
    protocol: str = "truth = 256x256 centre crop (area), input = 64x64 area-downsampled luminance"
    rows: list[dict] = field(default_factory=list)  # one per image x method
    truth_colorfulness: list[float] = field(default_factory=list)
    truth_niqe: list[float] = field(default_factory=list)  # filled when "niqe" is measured
    images: list[str] = field(default_factory=list)  # scored photos, in truth_colorfulness's order
    failures: list[tuple[str, str]] = field(default_factory=list)
    sheet_rows: list[tuple[float, str, list[torch.Tensor]]] = field(default_factory=list)

    def summary(self) -> dict:
        """Means over all photos; with photos in two or more top-level folders (the data's
        subsets: Kodak, BSDS500, ...) also the same means per folder, under "by_folder"."""
        out = {"protocol": self.protocol} | self._means(self.rows, self.truth_colorfulness, self.truth_niqe)
        folders = {folder_of(image) for image in self.images}
        if len(folders) > 1:
            out["by_folder"] = {
                folder: self._means([r for r in self.rows if folder_of(r["image"]) == folder],
                                    [c for i, c in zip(self.images, self.truth_colorfulness)
                                     if folder_of(i) == folder],
                                    [q for i, q in zip(self.images, self.truth_niqe)
                                     if folder_of(i) == folder])
                for folder in sorted(folders)}
        return out | {"failures": [{"file": f, "reason": r} for f, r in self.failures]}

    def _means(self, rows: list[dict], truth_colorfulness: list[float], truth_niqe: list[float]) -> dict:
        names = list(dict.fromkeys(r["method"] for r in rows))
        # nanmean: a hue hit is undefined (NaN) for a photo with no colourful pixel.
        methods = {n: {m: _nanmean([r[m] for r in rows if r["method"] == n]) for m in self.metrics}
                   for n in names}
        scored = [c for c in truth_colorfulness if c == c]  # NaN: not measured for that photo
        if "colorfulness" in self.metrics and scored:
            truth_of = dict(zip(self.images, self.truth_colorfulness))
            for n, values in methods.items():
                mine = [(r["colorfulness"], truth_of.get(r["image"], float("nan")))
                        for r in rows if r["method"] == n]
                values["colorfulness_ratio"] = values["colorfulness"] / float(np.mean(scored))
                values["colorfulness_gap"] = _nanmean([abs(c - t) for c, t in mine])
        truth = {"colorfulness": float(np.mean(scored)) if scored else None}  # None: JSON has no NaN
        if truth_niqe:
            truth["niqe"] = float(np.mean(truth_niqe))
        return {"n_images": len(truth_colorfulness), "metrics": self.metrics, "methods": methods,
                "truth": truth}


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if v == v]
    return float(np.mean(kept)) if kept else float("nan")


def folder_of(relative: str) -> str:
    """The top-level folder of a photo's path relative to its input root ("." if none)."""
    parts = Path(relative).parts
    return parts[0] if len(parts) > 1 else "."


def evaluate(jobs: list[ImageJob], methods: dict[str, Method], metrics: list[str], batch_size: int = 32,
             on_image: Callable[[int], None] | None = None, max_pixels: int = 100_000_000) -> EvalReport:
    """Run every method on every photo's protocol input and score it against the truth."""
    report = EvalReport(metrics)
    for start in range(0, len(jobs), batch_size):
        chunk, truths, inputs = [], [], []
        for job in jobs[start:start + batch_size]:
            try:
                truth, gray = protocol_pair(read_image(job.source, max_pixels).rgb)
            except ColorsrError as exc:
                report.failures.append((str(job.source), str(exc)))
                continue
            chunk.append(job)
            truths.append(truth)
            inputs.append(gray)
        if chunk:
            _score_chunk(report, chunk, torch.stack(truths), inputs, methods, metrics)
        if on_image:
            on_image(min(start + batch_size, len(jobs)))
    return report


def _score_chunk(report: EvalReport, chunk: list[ImageJob], truth: torch.Tensor,
                 inputs: list[torch.Tensor], methods: dict[str, Method], metrics: list[str]) -> None:
    outputs = {name: torch.stack(method(inputs)).float().clamp(0, 1) for name, method in methods.items()}
    report.truth_colorfulness += colorfulness(truth).tolist()
    if "niqe" in metrics:
        report.truth_niqe += niqe(truth).tolist()
    report.images += [str(job.relative) for job in chunk]
    for name, out in outputs.items():
        scores = {m: METRICS[m](out, truth).tolist() for m in metrics}
        for k, job in enumerate(chunk):
            report.rows.append({"image": str(job.relative), "method": name}
                               | {m: scores[m][k] for m in metrics})
    ranking = METRICS["ssim"](outputs["full"], truth).tolist()
    for k, score in enumerate(ranking):
        # clone: a view would keep the whole batch of every method alive for the contact sheet
        cells = [bicubic_nearest(inputs[k])] + [outputs[n][k].clone() for n in methods] + [truth[k].clone()]
        report.sheet_rows.append((score, str(chunk[k].relative), cells))
    _keep_extremes(report)


def bicubic_nearest(img: torch.Tensor) -> torch.Tensor:
    """The 64x64 input shown at 256x256 with visible pixels (nearest neighbour)."""
    return resize(img, (TRUTH_SIZE, TRUTH_SIZE), "nearest")


def _keep_extremes(report: EvalReport, keep: int = 3) -> None:
    """Keep memory flat: only the best, median and worst candidates for the contact sheet."""
    rows = sorted(report.sheet_rows, key=lambda r: r[0])
    if len(rows) > 4 * keep:
        mid = len(rows) // 2
        rows = rows[:keep] + rows[mid - keep // 2: mid - keep // 2 + keep] + rows[-keep:]
    report.sheet_rows = rows


def write_report(report: EvalReport, folder: Path, method_names: list[str]) -> dict[str, Path]:
    """metrics.csv, summary.json and contact_sheet.png (best / median / worst by full SSIM)."""
    folder.mkdir(parents=True, exist_ok=True)
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["image", "method", *report.metrics])
    writer.writeheader()
    writer.writerows(report.rows)
    paths = {"csv": folder / "metrics.csv", "summary": folder / "summary.json",
             "sheet": folder / "contact_sheet.png"}
    _write_text_atomic(paths["csv"], buf.getvalue())
    summary = report.summary() | {"columns": ["input", *method_names, "truth"]}
    _write_text_atomic(paths["summary"], json.dumps(summary, indent=2))
    rows = sorted(report.sheet_rows, key=lambda r: -r[0])
    if rows:
        picks = [rows[0], rows[len(rows) // 2], rows[-1]] if len(rows) >= 3 else rows
        names = ["best", "median", "worst"] if len(rows) >= 3 else ["photo"] * len(rows)
        labels = [f"{n}: {image} (SSIM {score:.3f})" for n, (score, image, _) in zip(names, picks)]
        sheet = labelled_sheet([cells for _, _, cells in picks], summary["columns"], labels)
        write_image_atomic(paths["sheet"], sheet)
    return paths


def labelled_sheet(rows: list[list[torch.Tensor]], columns: list[str], row_labels: list[str]
                   ) -> np.ndarray:
    """Rows of equal-height (3, H, W) images in [0, 1] -> an (H', W', 3) uint8 sheet with each
    column's name above it and each row's label above the row."""
    from PIL import Image, ImageDraw

    band = 14  # pixels of text above the header and above each row
    widths = [cell.shape[-1] for cell in rows[0]]
    width = sum(widths)
    height = band + sum(band + row[0].shape[-2] for row in rows)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for name, w in zip(columns, widths):
        draw.text((x + 2, 1), name, fill="black")
        x += w
    y = band
    for label, row in zip(row_labels, rows):
        draw.text((2, y + 1), label, fill="black")
        y += band
        strip = torch.cat(row, dim=2).permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
        sheet.paste(Image.fromarray(strip), (0, y))
        y += row[0].shape[-2]
    return np.asarray(sheet)


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text.encode())


def sr_literature_pair(rgb: np.ndarray, scale: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """The SR papers' protocol (data README): crop to a multiple of `scale`, LR = MATLAB bicubic
    imresize x1/scale of that crop. Returns (truth (3, H, W), LR (3, H/scale, W/scale))."""
    h, w = (rgb.shape[0] // scale) * scale, (rgb.shape[1] // scale) * scale
    crop = np.ascontiguousarray(rgb[:h, :w])
    return to_tensor(crop), to_tensor(literature_reduce(crop, scale))


def evaluate_sr_literature(jobs: list[ImageJob], sr_only: Restorer, border: int = 4,
                           max_pixels: int = 100_000_000, with_niqe: bool = False) -> EvalReport:
    """PSNR and SSIM on the Y channel (BT.601) after cropping `border` pixels, for bicubic and
    for our SR model, image by image (sizes differ, so no batching across images); with_niqe
    also NIQE of the same crops and of the truth."""
    from colorsr_cli.metrics import psnr, ssim

    metrics = ["psnr_y", "ssim_y"] + ["niqe"] * with_niqe
    report = EvalReport(metrics, protocol=f"SR literature: crop to a multiple of 4, "
                        f"input = MATLAB bicubic imresize x1/4 (antialiased), x4 output (bicubic: the "
                        f"same imresize x4); Y (BT.601) after cropping {border} px per border")
    for job in jobs:
        try:
            truth, low = sr_literature_pair(read_image(job.source, max_pixels).rgb)
        except ColorsrError as exc:
            report.failures.append((str(job.source), str(exc)))
            continue
        outputs = {"bicubic": imresize(low, 4).clamp(0, 1),
                   "sr": sr_only.restore([low])[0]}
        crop = (slice(None), slice(border, -border), slice(border, -border))
        y = truth[crop][None].double()
        for name, out in outputs.items():
            x = out[crop][None].double()
            report.rows.append({"image": str(job.relative), "method": name,
                                "psnr_y": psnr(x, y, "y").item(), "ssim_y": ssim(x, y, "y").item()}
                               | ({"niqe": niqe(x).item()} if with_niqe else {}))
        if with_niqe:
            report.truth_niqe.append(niqe(y).item())
        report.truth_colorfulness.append(float("nan"))
        report.images.append(str(job.relative))
    return report
