"""`colorsr train sr`: the SRGAN recipe (Ledig et al. 2017).

HR crops (--hr-size, default 256) of photos, LR = area downsample x1/4. An optional pixel-loss
warm-up (SRResNet, --pretrain-steps) comes first, since a GAN from scratch is unstable. Then
G loss = perceptual + 1e-3 * adversarial (+ --pixel-weight * L1), D loss = BCE(real, 1) +
BCE(fake, 0); Adam 2e-4 (0.5, 0.999). Perceptual loss: 'vgg' = MSE of VGG19 relu5_4 features
(SRGAN's choice; the ImageNet weights come through the weights manager), or 'features' =
L1 between the discriminator's intermediate features of real and generated images (feature
matching, Salimans et al. 2016; needs no downloaded network)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from colorsr_cli.devices import resolve_device
from colorsr_cli.errors import DataError
from colorsr_cli.evaluate import bicubic_reduce
from colorsr_cli.io import write_image_atomic
from colorsr_cli.models import SRConfig, SRDiscriminator, SRDiscriminatorConfig, SRGenerator
from colorsr_cli.train.common import (
    PhotoFolder,
    Reporter,
    RunLog,
    Schedule,
    area_resize,
    critic_backward,
    generator_pixel_step,
    keep_holdout,
    make_grid,
    planned_steps,
    resume_training_state,
    run_loop,
    seed_everything,
    setup_distributed,
    split_holdout,
    split_summary,
    to_chw,
    unwrap,
    use_mixed_precision,
)
from colorsr_cli.weightfile import save_weight_file

PERCEPTUAL = ("vgg", "features")
LR_KERNELS = ("area", "bicubic", "mixed")


@dataclass(frozen=True)
class SRRecipe:
    data: str
    out: str
    val: str | None = None
    hr_size: int = 256
    scale: int = 4
    epochs: int = 30
    max_steps: int | None = None
    pretrain_steps: int = 0  # pixel-loss (SRResNet) warm-up before the adversarial phase
    batch_size: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    adv_weight: float = 1e-3
    perceptual: str = "vgg"
    perceptual_weight: float = 1.0
    pixel_weight: float = 0.0
    channels: int = 64
    blocks: int = 16
    head_kernel: int = 9
    tail_kernel: int = 9
    global_skip: bool = False
    upsampler: str = "stages"  # or "lowres" (ESPCN-style tail: the fast model)
    # How the LR input is made from the HR crop: "area" (the evaluation protocol's and an old
    # photo's reduction), "bicubic" (the SR papers' protocol: OpenCV bicubic, no antialiasing),
    # or "mixed" (each sample one or the other at random; validation alternates them).
    lr_kernel: str = "area"
    # data (and val) hold lr/ and target/ folders of matching images, e.g. a teacher's outputs
    # on degraded photos (tools/teacher_pairs.py): the input is taken from lr/, the target from
    # target/, and no LR is made (lr_kernel unused). Training on them distills the teacher.
    pairs: bool = False
    init: str | None = None  # start G from these weights (a manifest name or file; same design)
    disc_width: int = 64
    vgg_weights: str = "vgg19-imagenet"
    val_fraction: float = 0.05
    val_every: int | None = None
    checkpoint_every: int = 500
    log_every: int = 20
    seed: int = 0
    # The seed of the hold-out split (runs without --val), apart from --seed: runs that differ only
    # in --seed validate on the same photos, as the colour trainer's (ColorRecipe.holdout_seed).
    # A resumed run keeps its own.
    holdout_seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    threads: int | None = None


def hr_lr_pair(img: np.ndarray, hr: int, scale: int, rng: np.random.Generator | None,
               kernel: str = "area") -> tuple[torch.Tensor, torch.Tensor]:
    """A random (or, without rng, centre) hr x hr crop with random flip/rotation, and its LR made
    with `kernel` (see SRRecipe.lr_kernel; "mixed" needs rng): ((3, hr/scale, hr/scale), (3, hr, hr))."""
    h, w = img.shape[:2]
    if rng is None:
        y, x = (h - hr) // 2, (w - hr) // 2
    else:
        y, x = int(rng.integers(0, h - hr + 1)), int(rng.integers(0, w - hr + 1))
    crop = img[y:y + hr, x:x + hr]
    if rng is not None:
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.rot90(crop, int(rng.integers(0, 4)))
    crop = np.ascontiguousarray(crop)
    if kernel == "mixed":
        kernel = "bicubic" if rng.random() < 0.5 else "area"
    return to_chw(downsample(crop, scale, kernel)), to_chw(crop)


class PairFolder:
    """Matching inputs and targets: ROOT/lr/NAME and ROOT/target/NAME, the target `scale` times
    the input's size. load(i) -> (input, target), RGB float32 in [0, 1]."""

    def __init__(self, root: Path, reporter: Reporter, scale: int, min_side: int):
        self.inputs = PhotoFolder(root / "lr", reporter)
        self.targets = PhotoFolder(root / "target", reporter)
        names = [p.relative_to(root / "lr") for p in self.inputs.paths]
        if names != [p.relative_to(root / "target") for p in self.targets.paths]:
            raise DataError(f"{root}: lr/ and target/ do not hold the same file names")
        self.root, self.scale, self.min_side = root, scale, min_side

    def __len__(self) -> int:
        return len(self.inputs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.inputs.load(index), self.targets.load(index)
        paired = y.shape == (x.shape[0] * self.scale, x.shape[1] * self.scale, 3)
        if not paired or min(x.shape[:2]) < self.min_side:
            raise DataError(f"{self.inputs.paths[index]}: input {x.shape[1]}x{x.shape[0]} and target "
                            f"{y.shape[1]}x{y.shape[0]} are not a x{self.scale} pair of at least "
                            f"{self.min_side} px")
        return x, y


def paired_crop(x: np.ndarray, y: np.ndarray, hr: int, scale: int, rng: np.random.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same view of an input and its x`scale` target: a random (or, without rng, centre)
    hr/scale crop of x and the matching hr crop of y, flipped and rotated alike."""
    size = hr // scale
    h, w = x.shape[:2]
    if rng is None:
        i, j = (h - size) // 2, (w - size) // 2
    else:
        i, j = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    x, y = x[i:i + size, j:j + size], y[i * scale:(i + size) * scale, j * scale:(j + size) * scale]
    if rng is not None:
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        turns = int(rng.integers(0, 4))
        x, y = np.rot90(x, turns), np.rot90(y, turns)
    return to_chw(np.ascontiguousarray(x)), to_chw(np.ascontiguousarray(y))


def downsample(img: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """(H, W, 3) float32 reduced 1/scale: "area", or "bicubic" (OpenCV, not antialiased: a plain
    resize, see evaluate.bicubic_reduce)."""
    if kernel == "area":
        return area_resize(img, (img.shape[0] // scale, img.shape[1] // scale))
    if kernel == "bicubic":
        return bicubic_reduce(img, scale)
    raise ValueError(f"unknown LR kernel {kernel!r} (area, bicubic or mixed)")


class Perceptual(torch.nn.Module):
    """The perceptual term of the generator loss (see module docstring)."""

    def __init__(self, kind: str, critic: SRDiscriminator, vgg_weights: str):
        super().__init__()
        if kind not in PERCEPTUAL:
            raise ValueError(f"perceptual must be one of {PERCEPTUAL}, got {kind!r}")
        self.kind, self.critic = kind, critic
        if kind == "vgg":
            from colorsr_cli.models import VGG19Features
            from colorsr_cli.weightfile import safe_torch_load
            from colorsr_cli.weights import fetch, load_manifest

            entries = load_manifest()
            path = fetch(entries[vgg_weights]) if vgg_weights in entries else Path(vgg_weights)
            self.vgg = VGG19Features()
            self.vgg.load_torchvision_state(safe_torch_load(path))
            self.vgg.eval()

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.kind == "vgg":
            # Ledig et al. rescale VGG activations by 1/12.75 so the loss is of order 1.
            return F.mse_loss(self.vgg(fake) / 12.75, self.vgg(real).detach() / 12.75)
        fake_maps = self.critic.feature_maps(fake)
        with torch.no_grad():
            real_maps = self.critic.feature_maps(real)
        return sum(F.l1_loss(a, b) for a, b in zip(fake_maps, real_maps)) / len(fake_maps)


def train_sr(recipe: SRRecipe, resume: bool = False, reporter: Reporter | None = None) -> Path:
    """Run (or resume) the recipe; returns the run folder. best.pt there is the trained model."""
    if recipe.lr_kernel not in LR_KERNELS:
        raise ValueError(f"unknown LR kernel {recipe.lr_kernel!r} (one of {', '.join(LR_KERNELS)})")
    reporter = reporter or Reporter()
    device = resolve_device(recipe.device, int(os.environ.get("LOCAL_RANK", 0)))
    ddp = setup_distributed(device)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    if resume:
        recipe = keep_holdout(recipe, Path(recipe.out))
    run = RunLog(Path(recipe.out), enabled=ddp.main)
    seed_everything(recipe.seed)

    if recipe.pairs:
        def folder(root: str):
            return PairFolder(Path(root), reporter, recipe.scale, recipe.hr_size // recipe.scale)
    else:
        def folder(root: str):
            return PhotoFolder(Path(root), reporter, min_side=recipe.hr_size)
    photos = folder(recipe.data)
    if recipe.val:
        val_photos = folder(recipe.val)
        train_idx, val_idx = list(range(len(photos))), list(range(min(len(val_photos), 200)))
    else:
        val_photos = photos
        train_idx, val_idx = split_holdout(len(photos), recipe.val_fraction, recipe.holdout_seed, hi=200)
    reporter.on_event(split_summary(recipe.data, len(photos), len(train_idx), len(val_idx), recipe.val))
    steps_per_epoch = len(train_idx) // (recipe.batch_size * ddp.world)
    if steps_per_epoch == 0:
        raise ValueError(f"{recipe.data}: {len(train_idx)} usable training images are fewer than "
                         f"one batch ({recipe.batch_size} x {ddp.world} processes)")
    total = planned_steps(recipe.epochs, steps_per_epoch, recipe.max_steps, reporter)

    G = SRGenerator(SRConfig(recipe.channels, recipe.blocks, recipe.head_kernel,
                             recipe.tail_kernel, recipe.scale, recipe.global_skip,
                             recipe.upsampler)).to(device)
    if recipe.init and not resume:
        load_initial_weights(G, recipe.init)
    D = SRDiscriminator(SRDiscriminatorConfig(recipe.disc_width)).to(device)
    perceptual = Perceptual(recipe.perceptual, D, recipe.vgg_weights).to(device)
    opt_g = torch.optim.Adam(G.parameters(), recipe.lr, betas=(recipe.beta1, recipe.beta2))
    opt_d = torch.optim.Adam(D.parameters(), recipe.lr, betas=(recipe.beta1, recipe.beta2))
    val_view = {"lr_kernel": recipe.lr_kernel} if recipe.lr_kernel != "area" else {}
    step, best_val = 0, float("inf")
    if resume:
        step, best_val = resume_training_state(Path(recipe.out) / "last.pt", recipe.lr, val_view,
                                               reporter, G=G, D=D, opt_g=opt_g, opt_d=opt_d)
        changed = run.record_resume(recipe, step)
        reporter.on_event(f"resumed from step {step}" + (
            f" with changed options: {', '.join(sorted(changed))}" if changed else ""))
    else:
        run.write_recipe(recipe)
    if ddp.world > 1:
        G, D = DDP(G), DDP(D)
    amp = use_mixed_precision(device, recipe.amp)
    kernels = ("area", "bicubic") if recipe.lr_kernel == "mixed" else (recipe.lr_kernel,)
    if recipe.pairs:
        pairs = [paired_crop(*val_photos.load(i), recipe.hr_size, recipe.scale, None) for i in val_idx]
    else:
        pairs = [hr_lr_pair(val_photos.load(i), recipe.hr_size, recipe.scale, None, kernels[k % len(kernels)])
                 for k, i in enumerate(val_idx)]
    val_lr, val_hr = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def sample(i: int, rng: np.random.Generator):
        if recipe.pairs:
            return paired_crop(*photos.load(i), recipe.hr_size, recipe.scale, rng)
        return hr_lr_pair(photos.load(i), recipe.hr_size, recipe.scale, rng, recipe.lr_kernel)

    def step_fn(batch, step: int) -> dict[str, torch.Tensor]:
        lr, hr = (t.to(device, non_blocking=True) for t in batch)
        if step < recipe.pretrain_steps:
            return pixel_step(G, opt_g, lr, hr, amp)
        return srgan_step(G, D, opt_g, opt_d, perceptual, lr, hr, recipe, amp)

    def save_best(step: int, val: float) -> None:
        save_weight_file(unwrap(G), Path(recipe.out) / "best.pt",
                         meta={"recipe": "srgan", "step": step, "val_l1": val,
                               "perceptual": recipe.perceptual})

    def state() -> dict:
        return {"G": unwrap(G).state_dict(), "D": unwrap(D).state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "val_view": val_view}

    schedule = Schedule(Path(recipe.out), recipe.seed, recipe.batch_size, total, steps_per_epoch,
                        recipe.val_every or steps_per_epoch, recipe.checkpoint_every,
                        recipe.log_every, recipe.workers, pin_memory=device.type == "cuda")
    validate_fn = lambda s: validate(G, val_lr, val_hr, device, run, s)  # noqa: E731
    if step < recipe.pretrain_steps:
        warm = Schedule(**{**schedule.__dict__, "total_steps": min(recipe.pretrain_steps, total)})
        run_loop(warm, ddp, run, reporter, train_idx, sample, step_fn, validate_fn, save_best,
                 state, step, best_val)
        step = warm.total_steps
        best = Path(recipe.out) / "best.pt"
        if ddp.main and best.exists():
            # Keep the warm-up (SRResNet) model: it is the pixel-fidelity choice next to the GAN's.
            shutil.copyfile(best, best.with_name("best_warmup.pt"))
    if step <= recipe.pretrain_steps:
        # The adversarial phase trades pixel fidelity for texture: its best checkpoint is chosen
        # among adversarial-phase checkpoints only, so the warm-up model never wins by default.
        best_val = float("inf")
    if step < total:
        run_loop(schedule, ddp, run, reporter, train_idx, sample, step_fn, validate_fn,
                 save_best, state, step, best_val)
    return Path(recipe.out)


def load_initial_weights(G: SRGenerator, name_or_path: str) -> None:
    """G's weights from a manifest name or weight file of the same design (--init)."""
    from colorsr_cli.weights import load_model

    model, _ = load_model(name_or_path, "sr")
    try:
        G.load_state_dict(model.state_dict())
    except RuntimeError as exc:
        raise ValueError(f"--init {name_or_path}: not the recipe's network design "
                         f"({str(exc).splitlines()[0]})") from None


def pixel_step(G, opt_g, lr: torch.Tensor, hr: torch.Tensor, amp: bool) -> dict[str, torch.Tensor]:
    loss = generator_pixel_step(G, opt_g, lr, hr, amp)
    return {"pixel": loss, "loss_g": loss}


def srgan_step(G, D, opt_g, opt_d, perceptual: Perceptual, lr: torch.Tensor, hr: torch.Tensor,
               recipe: SRRecipe, amp: bool) -> dict[str, torch.Tensor]:
    """One D update then one G update; returns the losses (detached tensors)."""
    with torch.autocast(lr.device.type, torch.bfloat16, enabled=amp):
        fake = G(lr)
    # Separate real and fake passes through D (see common.critic_backward).
    opt_d.zero_grad(set_to_none=True)
    bce = F.binary_cross_entropy_with_logits
    loss_d = (critic_backward(D, hr, 1.0, bce, amp, first=True)
              + critic_backward(D, fake.detach(), 0.0, bce, amp, first=False))
    opt_d.step()

    critic = unwrap(D)
    critic.requires_grad_(False)
    with torch.autocast(lr.device.type, torch.bfloat16, enabled=amp):
        gen_logit = critic(fake).float()
        adv = F.binary_cross_entropy_with_logits(gen_logit, torch.ones_like(gen_logit))
        perc = perceptual(fake, hr).float()
        pixel = F.l1_loss(fake.float(), hr)
        loss_g = recipe.perceptual_weight * perc + recipe.adv_weight * adv + recipe.pixel_weight * pixel
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    critic.requires_grad_(True)
    return {"loss_d": loss_d, "loss_g": loss_g.detach(), "adv": adv.detach(),
            "perceptual": perc.detach(), "pixel": pixel.detach()}


@torch.inference_mode()
def validate(G, val_lr: torch.Tensor, val_hr: torch.Tensor, device: torch.device, run: RunLog,
             step: int, chunk: int = 16) -> float:
    """Mean L1 of SR output vs HR on the validation crops; writes a sample grid PNG
    (bicubic | SR | truth)."""
    gen = unwrap(G)
    gen.eval()
    total, first = 0.0, None
    for lr, hr in zip(val_lr.split(chunk), val_hr.split(chunk)):
        sr = gen(lr.to(device)).float().cpu()
        total += F.l1_loss(sr, hr, reduction="sum").item() / hr[0].numel()
        if first is None:
            up = F.interpolate(lr, scale_factor=gen.config.scale, mode="bicubic").clamp(0, 1)
            first = (up[:4], sr[:4], hr[:4])
    gen.train()
    if run.enabled and first is not None:
        up, sr, hr = first
        grid = make_grid([[up[k], sr[k], hr[k]] for k in range(sr.shape[0])])
        write_image_atomic(run.folder / "samples" / f"step{step:07d}.png", grid)
    return total / len(val_hr)
