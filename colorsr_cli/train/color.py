"""`colorsr train color`: the pix2pix recipe (Isola et al. 2017) for Lab colourisation.

Generator: U-Net, L -> ab. Discriminator: patches of concat(L, ab). D loss = MSE(D(real), 1) +
MSE(D(fake), 0); G loss = MSE(D(fake), 1) + 100 * L1(ab_fake, ab_real). Adam 2e-4, (0.5, 0.999),
batch 16. Validation L1 after every epoch (or every --val-every steps); the best generator by
validation L1 is kept as best.pt (an inference weight file); last.pt holds everything needed to
resume on exactly the same schedule."""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from colorsr_cli.chroma_bins import (
    bin_histogram,
    gamut_bins,
    nearest_bin,
    rebalance_weights,
    rebalanced_cross_entropy,
    smooth_prior,
    soft_encode,
)
from colorsr_cli.color import denormalize_ab, lab_to_rgb, normalize_ab, normalize_l, rgb_to_lab
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
    keep_holdout,
    make_grid,
    planned_steps,
    random_flip,
    resume_training_state,
    run_loop,
    seed_everything,
    setup_distributed,
    split_photos,
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
    # The pixel term that l1_weight scales: "l1" (pix2pix: mean |da| and |db| of the normalised
    # ab) or "euclidean" (mean distance sqrt(da^2 + db^2) in the ab plane: the ab error that
    # evaluation reports). Validation, and so best.pt, stays L1 either way.
    pixel_loss: str = "l1"
    width: int = 32
    depth: int = 3
    disc_width: int = 64
    disc_layers: int = 3
    # pix2pix-style D here ends in a sigmoid trained with MSE; once D wins, that saturates and the
    # generator's adversarial gradient vanishes. False = least-squares GAN (Mao et al. 2017):
    # the same MSE on D's raw score, whose gradient does not vanish.
    disc_sigmoid: bool = True
    adv_weight: float = 1.0  # weight of the adversarial term (pix2pix: 1)
    # Pixel-loss-only steps before the adversarial phase (as DeOldify's "NoGAN"): the
    # GAN then starts from a generator that already predicts plausible colours.
    pretrain_steps: int = 0
    # Exponential moving average of the generator's weights (0 = off). GAN generators oscillate
    # from step to step; the average is what is validated and exported (Karras et al. 2018).
    ema: float = 0.0
    # Fraction of the run after which the learning rate decays linearly to zero, as pix2pix's
    # own schedule (n_epochs + n_epochs_decay); 1.0 = constant.
    lr_decay_start: float = 1.0
    # Fraction of the photos already at the training size (Tiny-ImageNet's 64x64 JPEGs) that are
    # shown as the evaluation protocol shows a small photo: enlarged x4 (bicubic) and reduced
    # back (area), i.e. softened as a photo reduced from a larger scan is. 0 = as stored. When
    # above 0, validation shows every such photo that way too.
    native_resample: float = 0.0
    # Start the generator from an inference weight file of the same width and
    # depth (a bundled model, or an export of an earlier run) instead of random weights: a
    # fine-tune, or a longer run on faster hardware that builds on a finished one. The
    # discriminator starts fresh.
    init_weights: str | None = None
    # Decode every photo once and keep it in memory (PhotoFolder.preload): for small photos on
    # hardware whose CPUs cannot decode as fast as the GPU trains.
    cache_photos: bool = False
    # The generator's head: "regression" (pix2pix: ab through a tanh, the pixel loss above) or
    # "bins" (Zhang et al. 2016: a distribution over quantised ab trained with a class-rebalanced
    # cross-entropy, weighted by ce_weight instead of l1_weight; decoded by the annealed mean).
    head: str = "regression"
    ce_weight: float = 1.0
    temperature: float = 0.38  # annealed-mean temperature of a bins head
    head_stride: int = 2  # a bins head predicts at 1/head_stride resolution (ColorizerConfig)
    # Class rebalancing (Zhang et al. 2016): each pixel's loss weighted by the inverse of its
    # colour's prior among the training photos, mixed with this share of uniform; 1 = none.
    # Applies to either head: a regression head then stops trading rare colours for brown.
    # None: 0.5 for a bins head (the paper's), 1 for regression (pix2pix's plain loss).
    rebalance_mix: float | None = None
    # Image-level features fused into the decoder (Iizuka et al. 2016), and an auxiliary
    # classifier on them trained on the labelled photos: those under data/class_folders/<label>/
    # (e.g. Tiny-ImageNet's class folders); other photos carry no label and no class loss.
    global_features: bool = False
    class_folders: str | None = None
    class_weight: float = 0.1
    disc_lr: float | None = None  # the discriminator's learning rate (default: lr)
    # Hold out only photos whose shorter side is at least this (0 = any): validation then looks
    # like what users restore (larger photos reduced to 64x64), not native 64x64 thumbnails.
    holdout_min_side: int = 0
    # What picks best.pt: "l1" (lowest validation L1) or "hue_hit" (highest share of the
    # hold-out's colourful pixels given the right hue: metrics.hue_hit).
    select_by: str = "l1"
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
    if recipe.head not in ("regression", "bins"):
        raise ValueError(f"unknown head {recipe.head!r} (regression or bins)")
    if recipe.rebalance_mix is not None and not 0 <= recipe.rebalance_mix <= 1:
        raise ValueError(f"--rebalance-mix must be between 0 and 1, got {recipe.rebalance_mix}")
    if recipe.select_by not in ("l1", "hue_hit"):
        raise ValueError(f"unknown --select-by {recipe.select_by!r} (l1 or hue_hit)")
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
        train_idx, val_idx = split_photos(photos, recipe.val_fraction, recipe.holdout_seed,
                                          recipe.holdout_min_side, reporter)
    reporter.on_event(split_summary(recipe.data, len(photos), len(train_idx), len(val_idx), recipe.val))
    labels, class_names = photo_labels(photos, Path(recipe.data), recipe.class_folders)
    if recipe.class_folders:
        reporter.on_event(f"{len(class_names)} classes under {recipe.class_folders}: "
                          f"{sum(1 for i in train_idx if labels[i] >= 0)} labelled training photos")
    steps_per_epoch = len(train_idx) // (recipe.batch_size * ddp.world)
    if steps_per_epoch == 0:
        raise ValueError(f"{recipe.data}: {len(train_idx)} training images are fewer than one "
                         f"batch ({recipe.batch_size} x {ddp.world} processes)")
    total = planned_steps(recipe.epochs, steps_per_epoch, recipe.max_steps, reporter)

    bins = gamut_bins() if recipe.head == "bins" else None
    G = ColorizerUNet(ColorizerConfig(
        recipe.width, recipe.depth, head=recipe.head, bins=0 if bins is None else len(bins),
        temperature=recipe.temperature, head_stride=recipe.head_stride if bins is not None else 1,
        global_features=recipe.global_features,
        classes=len(class_names)))
    loss = ChromaLoss(recipe.l1_weight, recipe.pixel_loss, recipe.class_weight if class_names else 0.0)
    mix = recipe.rebalance_mix if recipe.rebalance_mix is not None else (0.5 if bins is not None else 1.0)
    if bins is not None or mix < 1:
        cells = gamut_bins()
        counts = training_colour_counts(photos, train_idx, recipe.size, cells, recipe.seed)
        weights = rebalance_weights(smooth_prior(counts, cells), mix).to(device)
        loss = (ChromaLoss(recipe.ce_weight, "bins", loss.class_weight, cells.to(device), weights)
                if bins is not None else replace(loss, bin_weights=weights))
        run.write_json("prior.json", {"counts": [int(c) for c in counts]})
    if recipe.init_weights and not resume:
        fresh = init_generator(G, Path(recipe.init_weights))
        reporter.on_event(f"generator initialised from {recipe.init_weights}" + (
            f" (new: {', '.join(sorted({k.split('.')[0] for k in fresh}))})" if fresh else ""))
    if bins is not None:
        G.ab_bins.copy_(bins)  # after --init, which leaves the buffer alone
    G = G.to(device)
    D = PatchDiscriminator(PatchDiscriminatorConfig(recipe.disc_width, recipe.disc_layers,
                                                    recipe.disc_sigmoid)).to(device)
    opt_g = torch.optim.Adam(G.parameters(), recipe.lr, betas=(recipe.beta1, recipe.beta2))
    d_lr = recipe.disc_lr or recipe.lr
    opt_d = torch.optim.Adam(D.parameters(), d_lr, betas=(recipe.beta1, recipe.beta2))
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

    def sample(i: int, rng: np.random.Generator):
        rgb = photo_to_sample(photos.load(i), recipe.size, rng, recipe.native_resample)
        return (rgb, labels[i]) if class_names else rgb

    def step_fn(batch, step: int) -> dict[str, torch.Tensor]:
        rgb, label = batch if class_names else (batch, None)
        decay = scheduled_lr(recipe, step, total) / recipe.lr
        for opt, base in ((opt_g, recipe.lr), (opt_d, d_lr)):
            for group in opt.param_groups:
                group["lr"] = base * decay
        rgb = rgb.to(device, non_blocking=True)
        label = None if label is None else label.to(device, non_blocking=True)
        if step < recipe.pretrain_steps:
            losses = pixel_only_step(G, opt_g, rgb, amp, loss, label)
        else:
            losses = pix2pix_step(G, D, opt_g, opt_d, rgb, loss, amp, recipe.adv_weight, label)
        if G_ema is not None:
            update_ema(G_ema, unwrap(G), recipe.ema)
        return losses

    judged = G_ema if G_ema is not None else G  # the generator that is validated and kept

    def save_best(step: int, val: float) -> None:
        save_weight_file(unwrap(judged), Path(recipe.out) / "best.pt",
                         meta={"recipe": "pix2pix", "step": step, "val_l1": val,
                               "ema": recipe.ema})

    def state() -> dict:
        # The generator's architecture and config travel with it, so any checkpoint exports.
        parts = {"G": unwrap(G).state_dict(), "D": unwrap(D).state_dict(),
                 "G_arch": "colorizer_unet", "G_config": dataclasses.asdict(unwrap(G).config),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "val_view": val_view}
        return parts | ({"G_ema": G_ema.state_dict()} if G_ema is not None else {})

    schedule = Schedule(Path(recipe.out), recipe.seed, recipe.batch_size, total, steps_per_epoch,
                        recipe.val_every or steps_per_epoch, recipe.checkpoint_every,
                        recipe.log_every, recipe.workers, pin_memory=device.type == "cuda",
                        **({"score_name": "neg_hue_hit", "score_label": "validation -hue hit"}
                           if recipe.select_by == "hue_hit" else {}))
    run_loop(schedule, ddp, run, reporter, train_idx, sample, step_fn,
             lambda step: validate(judged, val_batch, device, recipe.batch_size * 4, run, step,
                                   recipe.select_by),
             save_best, state, step, best_val)
    return Path(recipe.out)


def init_generator(G: ColorizerUNet, path: Path) -> list[str]:
    """Load a colouriser weight file's weights into G. The U-Net's width and depth must match;
    the head and the image-level layers may differ (a regression model can start a bins model):
    parameters G has and the file lacks, or holds in another shape, keep their fresh values and
    are returned by name. The file's chroma gain, an inference setting, is not carried over."""
    from colorsr_cli.errors import WeightsError
    from colorsr_cli.models import arch_name_of, config_dict
    from colorsr_cli.weightfile import load_weight_file

    model, _ = load_weight_file(path)
    if not isinstance(model, ColorizerUNet):
        raise WeightsError(f"{path}: not a single colouriser (architecture {arch_name_of(model)}); "
                           f"--init takes one U-Net, not an ensemble or another model")
    theirs, ours = config_dict(model), config_dict(G)
    shape = {k: (theirs[k], ours[k]) for k in ("width", "depth", "batch_norm") if theirs[k] != ours[k]}
    if shape:
        raise WeightsError(f"{path}: a colouriser of " + ", ".join(
            f"{k} {a}" for k, (a, _) in shape.items()) + ", the recipe asks for " + ", ".join(
            f"{k} {b}" for k, (_, b) in shape.items()))
    source, target = model.state_dict(), G.state_dict()
    fresh = [k for k, v in target.items() if k not in source or source[k].shape != v.shape
             or k == "ab_bins"]
    G.load_state_dict({k: v for k, v in source.items() if k in target and k not in fresh}, strict=False)
    return fresh


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


def ab_distance(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Euclidean distance between (N, 2, H, W) ab maps, per pixel in the ab plane (the
    evaluation's ab error, in normalised units); weight (N, H, W) weights each pixel. The tiny
    epsilon keeps the gradient finite where the two agree exactly."""
    dist = torch.sqrt((fake - real).square().sum(1) + 1e-8)
    return dist.mean() if weight is None else (dist * weight).mean()


def weighted_l1(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |fake - real| over (N, 2, H, W) ab maps; weight (N, H, W) weights each pixel."""
    if weight is None:
        return F.l1_loss(fake, real)
    return ((fake - real).abs().mean(1) * weight).mean()


# recipe.pixel_loss -> (loss function (fake, real, pixel weight or None) -> scalar, the name it
# is logged under; "l1" keeps pix2pix's metric name).
PIXEL_LOSSES = {"l1": (weighted_l1, "l1"), "euclidean": (ab_distance, "ab_dist")}


@dataclass
class ChromaLoss:
    """The generator's non-adversarial terms: `weight` x the pixel loss (l1 or euclidean on the
    normalised ab, or "bins": the class-rebalanced cross-entropy over quantised ab, with `bins`
    (Q, 2) centres in Lab units and per-bin `bin_weights` (Q,)), plus `class_weight` x the
    cross-entropy of the image-level classifier on labelled photos (label -1: none)."""

    weight: float = 100.0
    pixel_loss: str = "l1"
    class_weight: float = 0.0
    bins: torch.Tensor | None = None
    bin_weights: torch.Tensor | None = None

    def __call__(self, out: dict[str, torch.Tensor], ab: torch.Tensor,
                 labels: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.pixel_loss == "bins":
            truth = denormalize_ab(ab.float())
            if truth.shape[-2:] != out["logits"].shape[-2:]:
                truth = F.interpolate(truth, size=out["logits"].shape[-2:], mode="area")
            pixel_weight = self.bin_weights[nearest_bin(truth)]
            term = rebalanced_cross_entropy(out["logits"], soft_encode(truth), pixel_weight)
            logs = {"ce": term.detach(), "l1": F.l1_loss(out["ab"].detach().float(), ab)}
        else:  # a regression loss, class-rebalanced per pixel when bin_weights are given
            weight = (None if self.bin_weights is None
                      else self.bin_weights[nearest_bin(denormalize_ab(ab.float()))])
            loss_fn, name = PIXEL_LOSSES[self.pixel_loss]
            term = loss_fn(out["ab"].float(), ab, weight)
            logs = {name: term.detach()}
        total = self.weight * term
        if self.class_weight and labels is not None and bool((labels >= 0).any()):
            cls = F.cross_entropy(out["classes"].float(), labels, ignore_index=-1)
            total = total + self.class_weight * cls
            logs["cls"] = cls.detach()
        return total, logs


def pixel_only_step(G, opt_g, rgb: torch.Tensor, amp: bool, loss: ChromaLoss,
                    labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One generator update on the non-adversarial terms alone (the pre-training phase)."""
    with torch.autocast(rgb.device.type, torch.bfloat16, enabled=amp):
        L, ab = split_lab(rgb.float())
        out = G(L, details=True)
    total, logs = loss(out, ab, labels)
    opt_g.zero_grad(set_to_none=True)
    total.backward()
    opt_g.step()
    return logs


def pix2pix_step(G, D, opt_g, opt_d, rgb: torch.Tensor, loss: ChromaLoss | float, amp: bool,
                 adv_weight: float = 1.0, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One D update then one G update on an RGB batch; returns the losses (detached tensors).
    loss: the generator's other terms (a number w = pix2pix's w x L1)."""
    loss = loss if isinstance(loss, ChromaLoss) else ChromaLoss(float(loss))
    with torch.autocast(rgb.device.type, torch.bfloat16, enabled=amp):
        L, ab = split_lab(rgb.float())
        out = G(L, details=True)
        fake_ab = out["ab"]
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
    other, logs = loss(out, ab, labels)
    loss_g = adv_weight * adv + other
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    critic.requires_grad_(True)
    return {"loss_d": loss_d, "loss_g": loss_g.detach(), "adv": adv.detach()} | logs


def photo_labels(photos: PhotoFolder, root: Path, class_folders: str | None) -> tuple[list[int], list[str]]:
    """Per photo, the index of its class, or -1; and the sorted class names. Photos under
    root/class_folders are labelled by their first folder there, or, lying directly in it, by
    the file name before its last underscore (Tiny-ImageNet's WNID_N.jpg). No class_folders:
    all -1, no names."""
    if not class_folders:
        return [-1] * len(photos), []
    base = (root / class_folders).resolve()
    found = []
    for path in photos.paths:
        full = Path(path).resolve()
        parts = full.relative_to(base).parts if full.is_relative_to(base) else ()
        if len(parts) > 1:
            found.append(parts[0])
        elif parts and "_" in full.stem:
            found.append(full.stem.rsplit("_", 1)[0])
        else:
            found.append(None)
    names = sorted({n for n in found if n is not None})
    if not names:
        raise ValueError(f"{base}: no labelled photos (expected {base}/LABEL/photo.jpg or "
                         f"{base}/LABEL_N.jpg)")
    index = {n: k for k, n in enumerate(names)}
    return [index[n] if n is not None else -1 for n in found], names


def training_colour_counts(photos: PhotoFolder, train_idx: list[int], size: int, bins: torch.Tensor,
                           seed: int, limit: int = 2000) -> torch.Tensor:
    """(Q,) pixel counts per ab bin over the centre views of up to `limit` training photos
    (a random, seeded subset): the prior behind the rebalanced loss."""
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(train_idx)[:limit]
    counts = torch.zeros(len(bins), dtype=torch.float64)
    for start in range(0, len(chosen), 256):
        batch = torch.stack([center_sample(photos.load(int(i)), size) for i in chosen[start:start + 256]])
        counts += bin_histogram(rgb_to_lab(batch)[:, 1:])
    return counts


@torch.inference_mode()
def validate(G, val_rgb: torch.Tensor, device: torch.device, chunk: int, run: RunLog,
             step: int, select_by: str = "l1") -> float:
    """Validation L1 of normalised ab and the colour-placement measures (hue, green and red hit,
    colourfulness ratio) on the validation views, logged; writes a sample grid PNG. Returns the
    score best.pt is chosen by (lower is better): the L1, or minus the hue hit."""
    gen = unwrap(G)
    gen.eval()
    total, outputs, preds = 0.0, [], []
    for part in val_rgb.split(chunk):
        L, ab = split_lab(part.to(device))
        fake = gen(L).float()
        total += F.l1_loss(fake, ab, reduction="sum").item() / (2 * L[0].numel())
        preds.append(merge_lab(L, fake).cpu())
        if not outputs:
            outputs = [preds[-1][:8], merge_lab(L[:8], torch.zeros_like(fake[:8])).cpu(), part[:8]]
    gen.train()
    pred = torch.cat(preds)
    truth = val_rgb.float()
    scores = {"val_l1": total / len(val_rgb)} | colour_placement(pred, truth)
    run.log({"step": step} | {k: round(v, 5) for k, v in scores.items()})
    if run.enabled and outputs:
        out, gray, truth8 = outputs
        grid = make_grid([[gray[k], out[k], truth8[k]] for k in range(out.shape[0])])
        write_image_atomic(run.folder / "samples" / f"step{step:07d}.png", grid)
    return -scores["hue_hit"] if select_by == "hue_hit" else scores["val_l1"]


def colour_placement(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Hue / green / red hit (pixel-pooled over the photos) and the colourfulness ratio of
    predictions to truths, (N, 3, H, W) sRGB in [0, 1]."""
    from colorsr_cli.metrics import HUE_RANGES, colorfulness, hue_hit

    pooled = {"hue_hit": hue_hit(_pool(pred), _pool(truth))}
    for name, hues in HUE_RANGES.items():
        pooled[f"{name}_hit"] = hue_hit(_pool(pred), _pool(truth), hues)
    out = {k: float(v[0]) for k, v in pooled.items()}
    out["colourfulness_ratio"] = float(colorfulness(pred).mean() / colorfulness(truth).mean().clamp(min=1e-9))
    return out


def _pool(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (1, 3, 1, N*H*W): all pixels as one image, for pixel-pooled measures."""
    return images.permute(1, 0, 2, 3).reshape(3, -1)[None, :, None, :]
