"""`colorsr train sr`: the SRGAN recipe (Ledig et al. 2017).

HR crops (--hr-size, default 256) of photos, LR = area downsample x1/4. An optional pixel-loss
warm-up (SRResNet, --pretrain-steps) comes first, since a GAN from scratch is unstable; its best
model is kept as best_warmup.pt. Then G loss = perceptual + 1e-3 * adversarial (+ --pixel-weight
* L1), D loss = BCE(real, 1) + BCE(fake, 0); Adam 2e-4 (0.5, 0.999). The perceptual term is
losses.Perceptual. The options are SRRecipe's (train/recipes.py); the run itself is the shared
skeleton (train/loop.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from colorsr_cli.errors import DataError
from colorsr_cli.evaluate import bicubic_reduce
from colorsr_cli.models import SRConfig, SRDiscriminator, SRDiscriminatorConfig, SRGenerator
from colorsr_cli.train.data import PhotoFolder, TrainingData, area_resize, to_chw, training_data
from colorsr_cli.train.distributed import unwrap
from colorsr_cli.train.loop import GAN, Run, train
from colorsr_cli.train.losses import Perceptual, adversarial_update
from colorsr_cli.train.recipes import SRRecipe
from colorsr_cli.train.runlog import Reporter, RunLog


def hr_lr_pair(img: np.ndarray, hr: int, scale: int, rng: np.random.Generator | None,
               kernel: str = "area") -> tuple[torch.Tensor, torch.Tensor]:
    """A random (or, without rng, centre) hr x hr crop with random flip/rotation, and its LR made
    with `kernel` (see SRRecipe.lr_kernel; "mixed" needs rng): ((3, hr/scale, hr/scale), (3, hr, hr))."""
    crop, _ = same_view(img, None, hr, 1, rng)
    if kernel == "mixed":
        kernel = "bicubic" if rng.random() < 0.5 else "area"
    return to_chw(downsample(crop, scale, kernel)), to_chw(crop)


def same_view(x: np.ndarray, y: np.ndarray | None, size: int, scale: int, rng: np.random.Generator | None
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """A random (or, without rng, centre) size x size crop of x and the matching crop of y, which
    is `scale` times x's size, flipped and rotated alike (contiguous arrays; y may be None)."""
    h, w = x.shape[:2]
    if rng is None:
        i, j = (h - size) // 2, (w - size) // 2
    else:
        i, j = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    x = x[i:i + size, j:j + size]
    if y is not None:
        y = y[i * scale:(i + size) * scale, j * scale:(j + size) * scale]
    if rng is not None:
        flip = rng.random() < 0.5
        turns = int(rng.integers(0, 4))
        x = np.rot90(x[:, ::-1] if flip else x, turns)
        if y is not None:
            y = np.rot90(y[:, ::-1] if flip else y, turns)
    return np.ascontiguousarray(x), None if y is None else np.ascontiguousarray(y)


class PairFolder:
    """Matching inputs and targets: ROOT/lr/NAME and ROOT/target/NAME, the target `scale` times
    the input's size. load(i) -> (input, target), RGB float32 in [0, 1]."""

    def __init__(self, root: Path, reporter: Reporter, scale: int, min_side: int):
        self.inputs = PhotoFolder(root / "lr", reporter)
        self.targets = PhotoFolder(root / "target", reporter)
        names = [p.relative_to(root / "lr") for p in self.inputs.paths]
        if names != [p.relative_to(root / "target") for p in self.targets.paths]:
            raise DataError(f"{root}: lr/ and target/ do not hold the same file names")
        self.scale, self.min_side = scale, min_side

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
    x, y = same_view(x, y, hr // scale, scale, rng)
    return to_chw(x), to_chw(y)


def downsample(img: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """(H, W, 3) float32 reduced 1/scale: "area", or "bicubic" (OpenCV, not antialiased: a plain
    resize, see evaluate.bicubic_reduce)."""
    if kernel == "area":
        return area_resize(img, (img.shape[0] // scale, img.shape[1] // scale))
    if kernel == "bicubic":
        return bicubic_reduce(img, scale)
    raise ValueError(f"unknown LR kernel {kernel!r} (area, bicubic or mixed)")


def train_sr(recipe: SRRecipe, resume: bool = False, reporter: Reporter | None = None) -> Path:
    """Run (or resume) the recipe; returns the run folder. best.pt there is the trained model."""
    return train(SRGAN, recipe, resume, reporter)


# The largest validation view of a pair (target pixels a side): tools/teacher_pairs.py's size;
# 200 held-out pairs of it are 160 MB of float targets.
VAL_PAIR_SIDE = 256


class SRGAN:
    """The SR recipe's part of a run (the Trainer of train/loop.py)."""

    keeps_warmup_best = True
    score_name, score_label = "val_l1", "validation L1"

    def __init__(self, recipe: SRRecipe, run: Run):
        self.recipe, self.run = recipe, run
        self.val_view = {"lr_kernel": recipe.lr_kernel} if recipe.lr_kernel != "area" else {}
        self.best_meta = {"perceptual": recipe.perceptual}

    def _folder(self, root: str) -> PairFolder | PhotoFolder:
        r = self.recipe
        if r.pairs:
            return PairFolder(Path(root), self.run.reporter, r.scale, r.hr_size // r.scale)
        return PhotoFolder(Path(root), self.run.reporter, min_side=r.hr_size)

    def load_data(self) -> TrainingData:
        r = self.recipe
        self.photos = self._folder(r.data)
        return training_data(self.photos, self._folder(r.val) if r.val else None, r.val_fraction,
                             r.holdout_seed, 200, self.run.reporter)

    def build(self, data: TrainingData, total_steps: int, resume: bool) -> GAN:
        r, device = self.recipe, self.run.device
        G = SRGenerator(SRConfig(r.channels, r.blocks, r.head_kernel, r.tail_kernel, r.scale,
                                 r.global_skip, r.upsampler)).to(device)
        if r.init and not resume:
            load_initial_weights(G, r.init)
        D = SRDiscriminator(SRDiscriminatorConfig(r.disc_width)).to(device)
        self.perceptual = Perceptual(r.perceptual, D, r.vgg_weights).to(device)
        if r.pairs:
            views = [data.val_photos.load(i) for i in data.val_idx]
            # Whole pairs (their largest common centre crop, at most VAL_PAIR_SIDE), whatever
            # --hr-size: validation stays comparable when a resumed run changes its crop size.
            side = min(VAL_PAIR_SIDE, *(min(target.shape[:2]) for _, target in views)) // r.scale * r.scale
            pairs = [paired_crop(lr, target, side, r.scale, None) for lr, target in views]
        else:
            kernels = ("area", "bicubic") if r.lr_kernel == "mixed" else (r.lr_kernel,)
            pairs = [hr_lr_pair(data.val_photos.load(i), r.hr_size, r.scale, None, kernels[k % len(kernels)])
                     for k, i in enumerate(data.val_idx)]
        self.val_lr, self.val_hr = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        return GAN(G, D, torch.optim.Adam(G.parameters(), r.lr, betas=(r.beta1, r.beta2)),
                   torch.optim.Adam(D.parameters(), r.lr, betas=(r.beta1, r.beta2)))

    def sample(self, index: int, rng: np.random.Generator):
        r = self.recipe
        if r.pairs:
            return paired_crop(*self.photos.load(index), r.hr_size, r.scale, rng)
        return hr_lr_pair(self.photos.load(index), r.hr_size, r.scale, rng, r.lr_kernel)

    def step(self, gan: GAN, batch, step: int) -> dict[str, torch.Tensor]:
        lr, hr = (t.to(self.run.device, non_blocking=True) for t in batch)
        if step < self.recipe.pretrain_steps:
            return pixel_step(gan.G, gan.opt_g, lr, hr, self.run.amp)
        return srgan_step(gan.G, gan.D, gan.opt_g, gan.opt_d, self.perceptual, lr, hr, self.recipe,
                          self.run.amp)

    def validate(self, gan: GAN, step: int) -> float:
        return validate(gan.G, self.val_lr, self.val_hr, self.run.device, self.run.log, step)

    def refresh_statistics(self, gan: GAN, step: int) -> None:
        """Nothing to do: the SR generator is judged as trained (no moving average)."""


def load_initial_weights(G: SRGenerator, name_or_path: str) -> None:
    """G's weights from a manifest name or weight file of the same design (--init); from a
    shallower generator of that design, G is deepened from it (SRGenerator.deepen_from)."""
    from colorsr_cli.weights import load_model

    model, _ = load_model(name_or_path, "sr")
    if isinstance(model, SRGenerator) and model.config.blocks < G.config.blocks:
        try:
            G.deepen_from(model)
        except ValueError as exc:
            raise ValueError(f"--init {name_or_path}: {exc}") from None
        return
    try:
        G.load_state_dict(model.state_dict())
    except RuntimeError as exc:
        raise ValueError(f"--init {name_or_path}: not the recipe's network design "
                         f"({str(exc).splitlines()[0]})") from None


def pixel_step(G, opt_g, lr: torch.Tensor, hr: torch.Tensor, amp: bool) -> dict[str, torch.Tensor]:
    """One generator update on the L1 of G(lr) and hr alone (the SRResNet warm-up); returns the
    loss (a detached tensor: see loop.train)."""
    with torch.autocast(lr.device.type, torch.bfloat16, enabled=amp):
        loss = F.l1_loss(G(lr).float(), hr)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return {"pixel": loss.detach(), "loss_g": loss.detach()}


def srgan_step(G, D, opt_g, opt_d, perceptual: Perceptual, lr: torch.Tensor, hr: torch.Tensor,
               recipe: SRRecipe, amp: bool) -> dict[str, torch.Tensor]:
    """One D update then one G update; returns the losses (detached tensors)."""
    with torch.autocast(lr.device.type, torch.bfloat16, enabled=amp):
        fake = G(lr)

    def generator_loss(adv: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.autocast(lr.device.type, torch.bfloat16, enabled=amp):
            perc = perceptual(fake, hr).float()
            pixel = F.l1_loss(fake.float(), hr)
            loss_g = recipe.perceptual_weight * perc + recipe.adv_weight * adv + recipe.pixel_weight * pixel
        return loss_g, {"perceptual": perc.detach(), "pixel": pixel.detach()}

    bce = F.binary_cross_entropy_with_logits
    return adversarial_update(D, opt_d, opt_g, hr, fake, bce, amp, generator_loss)


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
    if first is not None:
        up, sr, hr = first
        run.write_samples(step, [[up[k], sr[k], hr[k]] for k in range(sr.shape[0])])
    return total / len(val_hr)
