"""`colorsr train color`: the seed's pix2pix recipe (report section 3.1.2-3.1.3).

Generator: U-Net, L -> ab. Discriminator: patches of concat(L, ab). D loss = MSE(D(real), 1) +
MSE(D(fake), 0); G loss = MSE(D(fake), 1) + 100 * L1(ab_fake, ab_real). Adam 2e-4, (0.5, 0.999),
batch 16. Validation L1 after every epoch (or every --val-every steps); the best generator by
validation L1 is kept as best.pt (an inference weight file); last.pt holds everything needed to
resume on exactly the same schedule."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from colorsr_cli.color import lab_to_rgb, normalize_ab, normalize_l, rgb_to_lab
from colorsr_cli.devices import resolve_device
from colorsr_cli.evaluate import protocol_resize
from colorsr_cli.io import write_image_atomic
from colorsr_cli.models import ColorizerConfig, ColorizerUNet, PatchDiscriminator
from colorsr_cli.models.colorizer import PatchDiscriminatorConfig
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
    random_flip,
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


@dataclass(frozen=True)
class ColorRecipe:
    data: str
    out: str
    val: str | None = None
    size: int = 64  # training resolution (the colouriser's native 64x64)
    epochs: int = 30
    max_steps: int | None = None
    batch_size: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    l1_weight: float = 100.0
    # The pixel term that l1_weight scales: "l1" (the seed: mean |da| and |db| of the normalised
    # ab) or "euclidean" (mean distance sqrt(da^2 + db^2) in the ab plane: the ab error that
    # evaluation reports). Validation, and so best.pt, stays L1 either way.
    pixel_loss: str = "l1"
    width: int = 32
    depth: int = 3
    disc_width: int = 64
    disc_layers: int = 3
    # The seed's D ends in a sigmoid trained with MSE; once D wins, that saturates and the
    # generator's adversarial gradient vanishes. False = least-squares GAN (Mao et al. 2017):
    # the same MSE on D's raw score, whose gradient does not vanish.
    disc_sigmoid: bool = True
    adv_weight: float = 1.0  # weight of the adversarial term (the seed: 1)
    # Beyond the seed. Pixel-loss-only steps before the adversarial phase (as DeOldify's "NoGAN"): the
    # GAN then starts from a generator that already predicts plausible colours.
    pretrain_steps: int = 0
    # Exponential moving average of the generator's weights (0 = off). GAN generators oscillate
    # from step to step; the average is what is validated and exported (Karras et al. 2018).
    ema: float = 0.0
    # Fraction of the run after which the learning rate decays linearly to zero, as pix2pix's
    # own schedule (n_epochs + n_epochs_decay); 1.0 = constant, the seed's choice.
    lr_decay_start: float = 1.0
    # Fraction of the photos already at the training size (Tiny-ImageNet's 64x64 JPEGs) that are
    # shown as the evaluation protocol shows a small photo: enlarged x4 (bicubic) and reduced
    # back (area), i.e. softened as a photo reduced from a larger scan is. 0 = as stored. When
    # above 0, validation shows every such photo that way too.
    native_resample: float = 0.0
    # Beyond the seed. Start the generator from an inference weight file of the same width and
    # depth (a bundled model, or an export of an earlier run) instead of random weights: a
    # fine-tune, or a longer run on faster hardware that builds on a finished one. The
    # discriminator starts fresh.
    init_weights: str | None = None
    # Decode every photo once and keep it in memory (PhotoFolder.preload): for small photos on
    # hardware whose CPUs cannot decode as fast as the GPU trains.
    cache_photos: bool = False
    val_fraction: float = 0.02
    val_every: int | None = None  # steps; None = once per epoch
    checkpoint_every: int = 500
    log_every: int = 20
    seed: int = 0
    # The seed of the hold-out split (runs without --val), apart from --seed: runs that differ only
    # in --seed validate on the same photos, and a fine-tune (--init) with another seed does not
    # validate on photos its starting point trained on. A resumed run keeps its own.
    holdout_seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA, and on CPUs with native bf16
    workers: int = 0
    threads: int | None = None


def photo_to_sample(img: np.ndarray, size: int, rng: np.random.Generator,
                    native_resample: float = 0.0) -> torch.Tensor:
    """A random square view of a photo, area-resized to size x size, randomly flipped; a view
    that needed no resizing is, with probability native_resample, softened by
    resample_via_enlargement."""
    h, w = img.shape[:2]
    side = min(h, w)
    if side > size:
        side = int(rng.integers(max(size, int(side * 0.6)), side + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = img[y:y + side, x:x + side]
    if crop.shape[:2] != (size, size):
        crop = area_resize(crop, (size, size))
    elif native_resample > 0 and rng.random() < native_resample:
        crop = resample_via_enlargement(crop)
    return to_chw(random_flip(crop, rng))


def center_sample(img: np.ndarray, size: int, soften: bool = False) -> torch.Tensor:
    """The evaluation view: centre square, area-resized (deterministic, for validation); a photo
    already at size x size is passed through resample_via_enlargement when soften (the
    validation view of a run trained with --native-resample)."""
    h, w = img.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    crop = img[y:y + side, x:x + side]
    if side != size:
        return to_chw(area_resize(crop, (size, size)))
    return to_chw(resample_via_enlargement(crop) if soften else crop)


def resample_via_enlargement(img: np.ndarray, factor: int = 4) -> np.ndarray:
    """(H, W, 3) float32 -> the same size after a bicubic x factor enlargement, clipped to
    [0, 1], and an area reduction back: what the evaluation protocol does to a photo smaller
    than its 256x256 truth (evaluate.protocol_pair), and about how a photo reduced from a larger
    original looks (softer than a small JPEG stored at that size)."""
    h, w = img.shape[:2]
    return area_resize(protocol_resize(img, (w * factor, h * factor)), (h, w))


def split_lab(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB batch (N, 3, H, W) -> network-normalised (L (N,1,H,W), ab (N,2,H,W))."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[:, :1]), normalize_ab(lab[:, 1:])


def merge_lab(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Normalised L and ab -> RGB (N, 3, H, W) in [0, 1]."""
    return lab_to_rgb(torch.cat(((L + 1) * 50, ab * 110), dim=1))


def train_color(recipe: ColorRecipe, resume: bool = False, reporter: Reporter | None = None) -> Path:
    """Run (or resume) the recipe; returns the run folder. best.pt there is the trained model."""
    reporter = reporter or Reporter()
    if recipe.pixel_loss not in PIXEL_LOSSES:
        raise ValueError(f"unknown pixel loss {recipe.pixel_loss!r} (one of {', '.join(PIXEL_LOSSES)})")
    device = resolve_device(recipe.device, int(os.environ.get("LOCAL_RANK", 0)))
    ddp = setup_distributed(device)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    if resume:
        recipe = keep_holdout(recipe, Path(recipe.out))
    run = RunLog(Path(recipe.out), enabled=ddp.main)
    seed_everything(recipe.seed)

    photos = PhotoFolder(Path(recipe.data), reporter)
    if recipe.cache_photos:
        held = photos.preload()
        reporter.on_event(f"{len(photos)} photos decoded into memory ({held / 2**20:.0f} MiB)")
    if recipe.val:
        val_photos, train_idx = PhotoFolder(Path(recipe.val), reporter), list(range(len(photos)))
        val_idx = list(range(min(len(val_photos), 1000)))
    else:
        val_photos = photos
        train_idx, val_idx = split_holdout(len(photos), recipe.val_fraction, recipe.holdout_seed)
    reporter.on_event(split_summary(recipe.data, len(photos), len(train_idx), len(val_idx), recipe.val))
    steps_per_epoch = len(train_idx) // (recipe.batch_size * ddp.world)
    if steps_per_epoch == 0:
        raise ValueError(f"{recipe.data}: {len(train_idx)} training images are fewer than one "
                         f"batch ({recipe.batch_size} x {ddp.world} processes)")
    total = planned_steps(recipe.epochs, steps_per_epoch, recipe.max_steps, reporter)

    G = ColorizerUNet(ColorizerConfig(recipe.width, recipe.depth))
    if recipe.init_weights and not resume:
        init_generator(G, Path(recipe.init_weights))
        reporter.on_event(f"generator initialised from {recipe.init_weights}")
    G = G.to(device)
    D = PatchDiscriminator(PatchDiscriminatorConfig(recipe.disc_width, recipe.disc_layers,
                                                    recipe.disc_sigmoid)).to(device)
    opt_g = torch.optim.Adam(G.parameters(), recipe.lr, betas=(recipe.beta1, recipe.beta2))
    opt_d = torch.optim.Adam(D.parameters(), recipe.lr, betas=(recipe.beta1, recipe.beta2))
    G_ema = copy.deepcopy(G).requires_grad_(False) if recipe.ema > 0 else None
    step, best_val = 0, float("inf")
    val_view = {"native_resample": True} if recipe.native_resample > 0 else {}
    if resume:
        parts = {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d}
        if G_ema is not None:
            parts["G_ema"] = G_ema
        step, best_val = resume_training_state(Path(recipe.out) / "last.pt", recipe.lr, val_view,
                                               reporter, **parts)
        changed = run.record_resume(recipe, step)
        reporter.on_event(f"resumed from step {step}" + (
            f" with changed options: {', '.join(sorted(changed))}" if changed else ""))
    else:
        run.write_recipe(recipe)
    if ddp.world > 1:
        G, D = DDP(G), DDP(D)
    amp = use_mixed_precision(device, recipe.amp)
    val_batch = torch.stack([center_sample(val_photos.load(i), recipe.size, recipe.native_resample > 0)
                             for i in val_idx])

    def sample(i: int, rng: np.random.Generator) -> torch.Tensor:
        return photo_to_sample(photos.load(i), recipe.size, rng, recipe.native_resample)

    def step_fn(rgb: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        lr = scheduled_lr(recipe, step, total)
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        rgb = rgb.to(device, non_blocking=True)
        if step < recipe.pretrain_steps:
            losses = pixel_only_step(G, opt_g, rgb, amp, recipe.pixel_loss)
        else:
            losses = pix2pix_step(G, D, opt_g, opt_d, rgb, recipe.l1_weight, amp, recipe.adv_weight,
                                  recipe.pixel_loss)
        if G_ema is not None:
            update_ema(G_ema, unwrap(G), recipe.ema)
        return losses

    judged = G_ema if G_ema is not None else G  # the generator that is validated and kept

    def save_best(step: int, val: float) -> None:
        save_weight_file(unwrap(judged), Path(recipe.out) / "best.pt",
                         meta={"recipe": "pix2pix", "step": step, "val_l1": val,
                               "ema": recipe.ema})

    def state() -> dict:
        parts = {"G": unwrap(G).state_dict(), "D": unwrap(D).state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "val_view": val_view}
        return parts | ({"G_ema": G_ema.state_dict()} if G_ema is not None else {})

    schedule = Schedule(Path(recipe.out), recipe.seed, recipe.batch_size, total, steps_per_epoch,
                        recipe.val_every or steps_per_epoch, recipe.checkpoint_every,
                        recipe.log_every, recipe.workers, pin_memory=device.type == "cuda")
    run_loop(schedule, ddp, run, reporter, train_idx, sample, step_fn,
             lambda step: validate(judged, val_batch, device, recipe.batch_size * 4, run, step),
             save_best, state, step, best_val)
    return Path(recipe.out)


def init_generator(G: ColorizerUNet, path: Path) -> None:
    """Load a colouriser weight file's weights into G, whose architecture (width, depth...) must
    match (the file's chroma gain, an inference setting, is not carried over)."""
    from colorsr_cli.errors import WeightsError
    from colorsr_cli.models import arch_name_of, config_dict
    from colorsr_cli.weightfile import load_weight_file

    model, _ = load_weight_file(path)
    if not isinstance(model, ColorizerUNet):
        raise WeightsError(f"{path}: not a single colouriser (architecture {arch_name_of(model)}); "
                           f"--init takes one U-Net, not an ensemble or another model")
    theirs, ours = config_dict(model), config_dict(G)
    shape = {k: (theirs[k], ours[k]) for k in ours if k != "chroma_gain" and theirs[k] != ours[k]}
    if shape:
        raise WeightsError(f"{path}: a colouriser of " + ", ".join(
            f"{k} {a}" for k, (a, _) in shape.items()) + ", the recipe asks for " + ", ".join(
            f"{k} {b}" for k, (_, b) in shape.items()))
    G.load_state_dict(model.state_dict())


def scheduled_lr(recipe: ColorRecipe, step: int, total: int) -> float:
    """The recipe's lr, decayed linearly to zero over the steps after lr_decay_start * total."""
    start = int(recipe.lr_decay_start * total)
    if step < start or total <= start:
        return recipe.lr
    return recipe.lr * (total - step) / (total - start)


@torch.no_grad()
def update_ema(avg: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """avg <- decay * avg + (1 - decay) * model for parameters; buffers (BatchNorm running
    statistics) are copied, since averaging them would describe no real network."""
    torch._foreach_lerp_(list(avg.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
    for a, b in zip(avg.buffers(), model.buffers()):
        a.copy_(b)


def ab_distance(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance between (N, 2, H, W) ab maps, per pixel in the ab plane (the
    evaluation's ab error, in normalised units); the tiny epsilon keeps the gradient finite
    where the two agree exactly."""
    return torch.sqrt((fake - real).square().sum(1) + 1e-8).mean()


# recipe.pixel_loss -> (loss function (fake, real) -> scalar, the name it is logged under; "l1"
# keeps the seed's metric name).
PIXEL_LOSSES = {"l1": (F.l1_loss, "l1"), "euclidean": (ab_distance, "ab_dist")}


def pixel_only_step(G, opt_g, rgb: torch.Tensor, amp: bool,
                    pixel_loss: str = "l1") -> dict[str, torch.Tensor]:
    """One pixel-loss-only generator update (the pre-training phase)."""
    with torch.autocast(rgb.device.type, torch.bfloat16, enabled=amp):
        L, ab = split_lab(rgb.float())
    loss_fn, name = PIXEL_LOSSES[pixel_loss]
    return {name: generator_pixel_step(G, opt_g, L, ab, amp, loss_fn)}


def pix2pix_step(G, D, opt_g, opt_d, rgb: torch.Tensor, l1_weight: float, amp: bool,
                 adv_weight: float = 1.0, pixel_loss: str = "l1") -> dict[str, torch.Tensor]:
    """One D update then one G update on an RGB batch; returns the losses (detached tensors)."""
    with torch.autocast(rgb.device.type, torch.bfloat16, enabled=amp):
        L, ab = split_lab(rgb.float())
        fake_ab = G(L)
        real, fake = torch.cat((L, ab), 1), torch.cat((L, fake_ab), 1)
    # Real and fake batches go through D separately (see common.critic_backward).
    opt_d.zero_grad(set_to_none=True)
    loss_d = (critic_backward(D, real, 1.0, F.mse_loss, amp, first=True)
              + critic_backward(D, fake.detach(), 0.0, F.mse_loss, amp, first=False))
    opt_d.step()

    critic = unwrap(D)
    critic.requires_grad_(False)
    with torch.autocast(rgb.device.type, torch.bfloat16, enabled=amp):
        p_gen = critic(fake).float()
        adv = F.mse_loss(p_gen, torch.ones_like(p_gen))
        loss_fn, name = PIXEL_LOSSES[pixel_loss]
        pixel = loss_fn(fake_ab.float(), ab)
        loss_g = adv_weight * adv + l1_weight * pixel
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    critic.requires_grad_(True)
    return {"loss_d": loss_d, "loss_g": loss_g.detach(), "adv": adv.detach(), name: pixel.detach()}


@torch.inference_mode()
def validate(G, val_rgb: torch.Tensor, device: torch.device, chunk: int, run: RunLog,
             step: int) -> float:
    """Mean L1 of normalised ab on the validation views; writes a sample grid PNG."""
    gen = unwrap(G)
    gen.eval()
    total, outputs = 0.0, []
    for part in val_rgb.split(chunk):
        L, ab = split_lab(part.to(device))
        fake = gen(L)
        total += F.l1_loss(fake.float(), ab, reduction="sum").item() / (2 * L[0].numel())
        if not outputs:
            outputs = [merge_lab(L[:8], fake[:8].float()).cpu(),
                       merge_lab(L[:8], torch.zeros_like(fake[:8])).cpu(), part[:8]]
    gen.train()
    if run.enabled and outputs:
        out, gray, truth = outputs
        grid = make_grid([[gray[k], out[k], truth[k]] for k in range(out.shape[0])])
        write_image_atomic(run.folder / "samples" / f"step{step:07d}.png", grid)
    return total / len(val_rgb)
