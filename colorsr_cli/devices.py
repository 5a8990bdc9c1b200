"""The one device chooser: turns --device / --precision into torch objects."""

from __future__ import annotations

import torch

from colorsr_cli.errors import ColorsrError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:local_rank, else mps, else cpu. Explicit devices are checked, so asking for
    CUDA on a machine without it is a clear error rather than a stack trace."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ColorsrError(f"unknown device {spec!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ColorsrError(f"--device {spec}: CUDA is not available here (torch "
                               f"{torch.__version__}, built with CUDA {torch.version.cuda}); "
                               "use --device cpu or install a CUDA build of torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ColorsrError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise ColorsrError(f"--device {spec}: MPS is not available here")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """fp16 / bf16 compute is used on accelerators; on CPU fp16 is refused (slow and lossy)."""
    if name not in PRECISIONS:
        raise ColorsrError(f"unknown precision {name!r} (use {', '.join(PRECISIONS)})")
    dtype = PRECISIONS[name]
    if device.type == "cpu" and dtype is torch.float16:
        raise ColorsrError("--precision fp16 needs a GPU; on CPU use fp32 or bf16")
    return dtype
