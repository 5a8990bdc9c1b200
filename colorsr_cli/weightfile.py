"""The inference weight file: one torch file holding a plain dict

    {"format": "colorsr-weights/1", "arch": str, "config": dict, "meta": dict,
     "state_dict": {name: tensor}}

so a file carries its own architecture. Loading never unpickles objects: torch.load with
weights_only=True accepts only tensors and plain containers, and anything else is refused.

Weight files published by other projects load too when a registered architecture adopts
them (models.Architecture.adopt): a plain state dict, or BasicSR's {"params_ema": ...} /
{"params": ...} (the EMA weights first, as Real-ESRGAN's own inference does)."""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from colorsr_cli.errors import WeightsError
from colorsr_cli.io import atomic_write
from colorsr_cli.models import ARCHITECTURES, arch_name_of, build_model, config_dict

FORMAT = "colorsr-weights/1"
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through the project's one atomic writer (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(obj, f)


def save_weight_file(model: nn.Module, path: Path, meta: dict[str, Any] | None = None,
                     half: bool = False) -> None:
    """Write model's inference weights; half=True stores floating tensors as fp16."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    atomic_torch_save({"format": FORMAT, "arch": arch_name_of(model), "config": config_dict(model),
                       "meta": dict(meta or {}), "state_dict": state}, path)


def safe_torch_load(path: Path) -> Any:
    """torch.load restricted to tensors and plain containers (never runs pickled code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message is a paragraph that explains how to load the file anyway: keep only
        # the name of the object that was refused.
        found = _REFUSED_GLOBAL.search(str(exc))
        what = f"pickled Python objects ({found.group(1)})" if found else "pickled Python objects"
        raise WeightsError(f"{path}: refused to load: not a plain weights file, it holds {what} "
                           f"that could run code") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read weights: {str(exc).splitlines()[0]}") from None


def load_weight_file(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model a weight file describes, load its weights (as fp32), return (model, meta).
    The model is in eval mode."""
    return model_from_weight_blob(safe_torch_load(path), path)


def model_from_weight_blob(blob: Any, path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """load_weight_file for a file already read (safe_torch_load); path names it in errors."""
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        arch, config, state = blob.get("arch"), blob.get("config"), blob.get("state_dict")
        meta = dict(blob.get("meta") or {})
        if arch not in ARCHITECTURES:
            raise WeightsError(f"{path}: unknown architecture {arch!r}")
    else:
        arch, config, state = _adopt_published(blob, path)
        meta = {"source": "published state dict"}
    try:
        model = build_model(arch, config)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (TypeError, KeyError, RuntimeError, AttributeError) as exc:
        raise WeightsError(f"{path}: weights do not match architecture {arch}: "
                           f"{_first_reason(exc)}") from None
    return model.eval(), meta


def _first_reason(exc: Exception) -> str:
    """One line of torch's load_state_dict report (its first line only names the class)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    return (lines or [type(exc).__name__])[0][:300]


def _adopt_published(blob: Any, path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(arch, config, state dict) of another project's weight file, or one line saying why not."""
    state = blob
    for key in ("params_ema", "params"):
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            state = blob[key]
            break
    if not (isinstance(state, dict) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise WeightsError(f"{path}: not a colorsr weight file (format {FORMAT}) nor a state dict "
                           f"of a known architecture")
    for arch, entry in ARCHITECTURES.items():
        adopted = entry.adopt(state) if entry.adopt else None
        if adopted is not None:
            return arch, dataclasses.asdict(adopted[0]), adopted[1]
    raise WeightsError(f"{path}: a state dict of no known architecture (known published layouts: "
                       f"{', '.join(a for a, e in ARCHITECTURES.items() if e.adopt)})")
