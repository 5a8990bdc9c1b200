"""`colorsr doctor`: what this installation has, and what to do about each problem.
Returns checks; the CLI prints them."""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    advice: str = ""


def find_ffmpeg() -> str | None:
    """A system ffmpeg, else the one imageio-ffmpeg ships (pip install 'colorsr[video]')."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def _versions() -> Check:
    import cv2
    import numpy
    import PIL

    return Check("versions", True, f"Python {platform.python_version()}, torch {torch.__version__}, "
                 f"OpenCV {cv2.__version__}, NumPy {numpy.__version__}, Pillow {PIL.__version__}")


def _devices() -> list[Check]:
    checks = [Check("cpu", True, f"{torch.get_num_threads()} torch threads")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            checks.append(Check(f"cuda:{i}", True, f"{p.name}, {p.total_memory / 2**30:.1f} GiB"))
    else:
        advice = ("torch is a CPU build: install a CUDA build of torch to use an NVIDIA GPU"
                  if torch.version.cuda is None else "no CUDA device visible (driver? CUDA_VISIBLE_DEVICES?)")
        checks.append(Check("cuda", False, "not available", advice))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        checks.append(Check("mps", True, "Apple GPU available"))
    return checks


def _precision() -> Check:
    """Which compute precision `--precision auto` picks on each device here (bf16 only where
    the hardware computes it natively)."""
    from colorsr_cli.pipeline import default_options

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    chosen = {name: default_options(torch.device(name))["precision"] for name in devices}
    detail = ", ".join(f"{name}: {'bf16 used' if p == 'bf16' else 'fp32 (bf16 not native here)'}"
                       for name, p in chosen.items())
    return Check("precision", True, detail)


def _ffmpeg() -> Check:
    exe = find_ffmpeg()
    if exe:
        return Check("ffmpeg", True, f"{exe}: videos keep their audio")
    return Check("ffmpeg", False, "not found: `colorsr video` drops audio",
                 "install ffmpeg, or: pip install 'colorsr[video]' (ships an ffmpeg binary)")


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _weights() -> list[Check]:
    from colorsr_cli.errors import ColorsrError
    from colorsr_cli.weights import cache_dir, is_present, load_manifest, verify

    folder = cache_dir()
    checks = [Check("cache", True, f"{folder} ({_folder_size(folder) / 1e6:.1f} MB)")]
    try:
        entries = load_manifest()
    except ColorsrError as exc:
        return checks + [Check("manifest", False, str(exc), "reinstall colorsr")]
    for entry in entries.values():
        role = f"{entry.task}{' (default)' if entry.default else ''}"
        if not is_present(entry):
            # A missing bundled file is a broken install; a downloadable one comes on first use.
            fix = f"colorsr weights download {entry.name}" if not entry.bundled else "reinstall colorsr"
            checks.append(Check(f"weights {entry.name}", not entry.bundled,
                                f"{role}: not here yet (fetched and verified on first use)", fix))
            continue
        ok, message = verify(entry)
        checks.append(Check(f"weights {entry.name}", ok, f"{role}: {message}",
                            "" if ok else f"delete it and run: colorsr weights download {entry.name}"))
    return checks


def run_checks() -> list[Check]:
    return [_versions(), *_devices(), _precision(), _ffmpeg(), *_weights()]
