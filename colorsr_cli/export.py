"""Turn a training run into a shippable weight file and its manifest entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from colorsr_cli.errors import WeightsError
from colorsr_cli.models import (
    ARCHITECTURES,
    ColorizerEnsemble,
    ColorizerEnsembleConfig,
    ColorizerUNet,
    arch_name_of,
    build_model,
    config_dict,
)
from colorsr_cli.models.colorizer import MEMBER_DESIGNS
from colorsr_cli.weightfile import load_weight_file, model_from_weight_blob, safe_torch_load, save_weight_file
from colorsr_cli.weights import sha256_file


def generator_from_checkpoint(run_dir: Path, checkpoint: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The generator held in a training checkpoint (last.pt or a copy of it), built from the
    architecture and config it records. GAN runs are often best judged by eval metrics rather than validation
    L1 (which favours the dullest colours), so any checkpoint can be exported, not only best.pt."""
    state = safe_torch_load(checkpoint)
    if "arch" in state and "state_dict" in state:  # a weight file (best.pt or a copy of one)
        model, meta = model_from_weight_blob(state, checkpoint)
        return model, {"step": int(meta.get("step", -1)), "checkpoint": Path(checkpoint).name,
                       "weights": "weight file"}
    if "G_arch" not in state:
        raise WeightsError(f"{checkpoint}: a training checkpoint without its generator's architecture "
                           "(G_arch), not one colorsr train wrote")
    model = build_model(state["G_arch"], dict(state["G_config"]))
    key = "G_ema" if "G_ema" in state else "G"  # a run with --ema exports its averaged generator
    model.load_state_dict(state[key])
    return model.eval(), {"step": int(state["step"]), "checkpoint": Path(checkpoint).name,
                          "weights": key}


def with_chroma_gain(model: nn.Module, gain: float) -> nn.Module:
    """The same colouriser with its config's chroma gain set (weights unchanged)."""
    arch = arch_name_of(model)
    if ARCHITECTURES[arch].task != "color":
        raise WeightsError(f"--chroma-gain applies to colourisers, not to {arch}")
    rebuilt = build_model(arch, config_dict(model) | {"chroma_gain": float(gain)})
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt.eval()


def export_run(run_dir: Path, dest: Path, name: str, half: bool = True,
               checkpoint: Path | None = None, chroma_gain: float | None = None) -> dict[str, Any]:
    """Write the run's generator (best.pt, or the given training checkpoint) to dest (fp16
    storage if half) and return its manifest entry (name, task, arch, config, sha256, size,
    filename)."""
    if checkpoint is not None:
        model, meta = generator_from_checkpoint(run_dir, checkpoint)
    else:
        best = Path(run_dir) / "best.pt"
        if not best.exists():
            raise WeightsError(f"{best}: no best.pt in this run folder (has it validated yet?)")
        model, meta = load_weight_file(best)
    return _write(model, meta | {"exported_from": str(run_dir)}, dest, name, half, chroma_gain)


def export_ensemble(members: list[Path], dest: Path, name: str, half: bool = True,
                    chroma_gain: float | None = None) -> dict[str, Any]:
    """Write one colouriser that averages the chroma of the colouriser weight files `members`
    (their own chroma gains are dropped; chroma_gain, default 1, applies to the average) and
    return its manifest entry, as export_run."""
    if len(members) < 2:
        raise WeightsError("an ensemble needs at least two colouriser weight files")
    nets, metas = [], []
    for path in members:
        model, meta = load_weight_file(path)
        if arch_name_of(model) not in MEMBER_DESIGNS:
            raise WeightsError(f"{path}: not a single colouriser (architecture {arch_name_of(model)})")
        nets.append(with_chroma_gain(model, 1.0))
        metas.append({"file": Path(path).name, "chroma_gain": model.config.chroma_gain} | meta)
    ensemble = ColorizerEnsemble(ColorizerEnsembleConfig(tuple(
        config_dict(n) | ({} if isinstance(n, ColorizerUNet) else {"arch": arch_name_of(n)}) for n in nets)))
    for slot, net in zip(ensemble.members, nets):
        slot.load_state_dict(net.state_dict())
    return _write(ensemble.eval(), {"members": metas}, dest, name, half, chroma_gain)


def _write(model: nn.Module, meta: dict[str, Any], dest: Path, name: str, half: bool,
           chroma_gain: float | None) -> dict[str, Any]:
    """Save model (with chroma_gain if given) as a weight file; its manifest entry."""
    if chroma_gain is not None:
        model = with_chroma_gain(model, chroma_gain)
    save_weight_file(model, dest, meta=meta, half=half)
    arch = arch_name_of(model)
    return {"name": name, "task": ARCHITECTURES[arch].task, "arch": arch, "config": config_dict(model),
            "sha256": sha256_file(dest), "size": dest.stat().st_size, "urls": [],
            "filename": dest.name}


def add_to_manifest(entry: dict[str, Any], manifest_path: Path, bundled: bool, default: bool,
                    description: str = "", licence: str = "") -> None:
    """Insert (or replace, by name) an entry in a weights manifest; with default=True it becomes
    the only default of its task. The result is validated by loading it before it is kept."""
    from colorsr_cli.io import atomic_write
    from colorsr_cli.weights import load_manifest

    doc = json.loads(manifest_path.read_text())
    item = entry | {"bundled": bundled, "default": default, "description": description, "licence": licence}
    models = [m for m in doc["models"] if m["name"] != entry["name"]]
    if default:
        for m in models:
            if m["task"] == entry["task"]:
                m["default"] = False
    doc["models"] = models + [item]
    text = json.dumps(doc, indent=2) + "\n"
    with atomic_write(manifest_path.with_name(manifest_path.name + ".check")) as f:
        f.write(text.encode())
    try:
        load_manifest(manifest_path.with_name(manifest_path.name + ".check"))
        manifest_path.with_name(manifest_path.name + ".check").replace(manifest_path)
    finally:
        manifest_path.with_name(manifest_path.name + ".check").unlink(missing_ok=True)
