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


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX; Arm BF16). Only then is
    bf16 faster than fp32 on CPU (measured 1.7x for the SR stage on an AVX512-BF16 EPYC,
    docs/performance.md); elsewhere oneDNN emulates it and it is slower."""
    from pathlib import Path

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: no cheap, reliable probe; fp32 is the safe choice
            return False
    for line in cpuinfo.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """fp16 / bf16 compute is used on accelerators; on CPU fp16 is refused (slow and lossy)."""
    if name not in PRECISIONS:
        raise ColorsrError(f"unknown precision {name!r} (use {', '.join(PRECISIONS)})")
    dtype = PRECISIONS[name]
    if device.type == "cpu" and dtype is torch.float16:
        raise ColorsrError("--precision fp16 needs a GPU; on CPU use fp32 or bf16")
    return dtype


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of returning it to the OS at once (glibc only;
    a no-op elsewhere, and with COLORSR_NO_MALLOC_TUNING=1). Returns whether it was applied.

    Why: glibc serves every allocation above its mmap threshold (at most 32 MB by default) with
    fresh pages from the kernel and unmaps them on free, so each large feature map of an SR
    forward pass page-faults its way in again: measured on a 2-core x86 CPU, copying a
    128x320x320 fp32 map took 13.4 ms with the default and 2.2 ms with a raised threshold, and
    the SR stage ran ~1.4x faster (docs/performance.md). The cost: the process keeps up to
    1 GiB of freed memory for reuse until it exits. The same as what MALLOC_MMAP_THRESHOLD_ /
    MALLOC_TRIM_THRESHOLD_ do from the environment, or as linking jemalloc/tcmalloc, which
    PyTorch's CPU tuning guide recommends."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("COLORSR_NO_MALLOC_TUNING") == "1":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    _ALLOCATOR_TUNED = ok
    return ok
