"""`colorsr train color`: the pix2pix recipe (Isola et al. 2017) for Lab colourisation.

Generator: U-Net, L -> ab. Discriminator: patches of concat(L, ab). D loss = MSE(D(real), 1) +
MSE(D(fake), 0); G loss = MSE(D(fake), 1) + 100 * L1(ab_fake, ab_real). Adam 2e-4, (0.5, 0.999),
batch 16. Validation L1 after every epoch (or every --val-every steps); the best generator by
validation L1 is kept as best.pt. The options are ColorRecipe's (train/recipes.py); the run
itself is the shared skeleton (train/loop.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from colorsr_cli.chroma_bins import bin_histogram, gamut_bins, rebalance_weights, smooth_prior
from colorsr_cli.color import lab_to_rgb, normalize_ab, normalize_l, rgb_to_lab
from colorsr_cli.evaluate import protocol_resize
from colorsr_cli.models import (
    ColorizerConfig,
    ColorizerMobileNet,
    ColorizerUNet,
    MobileColorizerConfig,
    PatchDiscriminator,
)
from colorsr_cli.models.colorizer import PatchDiscriminatorConfig
from colorsr_cli.train.data import (
    PhotoFolder,
    TrainingData,
    area_resize,
    random_flip,
    to_chw,
    training_data,
)
from colorsr_cli.train.distributed import unwrap
from colorsr_cli.train.loop import GAN, Run, train
from colorsr_cli.train.losses import ChromaLoss, adversarial_update
from colorsr_cli.train.recipes import ColorRecipe
from colorsr_cli.train.runlog import Reporter, RunLog

# Training views the averaged generator's BatchNorm statistics are measured on (refresh_statistics)
NORM_VIEWS = 512


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
    return train(Pix2Pix, recipe, resume, reporter)


class Pix2Pix:
    """The colour recipe's part of a run (the Trainer of train/loop.py)."""

    keeps_warmup_best = False

    def __init__(self, recipe: ColorRecipe, run: Run):
        self.recipe, self.run = recipe, run
        hue = recipe.select_by == "hue_hit"
        self.score_name = "neg_hue_hit" if hue else "val_l1"
        self.score_label = "validation -hue hit" if hue else "validation L1"
        self.val_view = {"native_resample": True} if recipe.native_resample > 0 else {}
        self.best_meta = {"ema": recipe.ema}
        self.d_lr = recipe.disc_lr or recipe.lr

    def load_data(self) -> TrainingData:
        r, reporter = self.recipe, self.run.reporter
        self.photos = PhotoFolder(Path(r.data), reporter)
        if r.cache_photos:
            held = self.photos.preload()
            reporter.on_event(f"{len(self.photos)} photos decoded into memory ({held / 2**20:.0f} MiB)")
        val_photos = PhotoFolder(Path(r.val), reporter) if r.val else None
        return training_data(self.photos, val_photos, r.val_fraction, r.holdout_seed, 1000, reporter,
                             r.holdout_min_side)

    def build(self, data: TrainingData, total_steps: int, resume: bool) -> GAN:
        r, run = self.recipe, self.run
        self.total = total_steps
        self.labels, class_names = photo_labels(self.photos, Path(r.data), r.class_folders)
        if r.class_folders:
            run.reporter.on_event(f"{len(class_names)} classes under {r.class_folders}: "
                                  f"{sum(1 for i in data.train_idx if self.labels[i] >= 0)} labelled "
                                  f"training photos")
        self.labelled = bool(class_names)
        bins = gamut_bins() if r.head == "bins" else None
        G = self._generator(bins, len(class_names), resume)
        self.loss = self._chroma_loss(data, bins is not None, r.class_weight if class_names else 0.0)
        if r.init_weights and not resume:
            fresh = init_generator(G, Path(r.init_weights))
            run.reporter.on_event(f"generator initialised from {r.init_weights}" + (
                f" (new: {', '.join(sorted({k.split('.')[0] for k in fresh}))})" if fresh else ""))
        if bins is not None:
            G.ab_bins.copy_(bins)  # after --init, which leaves the buffer alone
        G = G.to(run.device)
        D = PatchDiscriminator(PatchDiscriminatorConfig(r.disc_width, r.disc_layers,
                                                        r.disc_sigmoid)).to(run.device)
        self.val_batch = torch.stack([center_sample(data.val_photos.load(i), r.size, r.native_resample > 0)
                                      for i in data.val_idx])
        self.norm_inputs = self._norm_inputs(data) if r.ema > 0 else None
        self.norms_step: int | None = None
        trained = [p for p in G.parameters() if p.requires_grad]  # not a frozen encoder
        return GAN(G, D, torch.optim.Adam(trained, r.lr, betas=(r.beta1, r.beta2)),
                   torch.optim.Adam(D.parameters(), self.d_lr, betas=(r.beta1, r.beta2)),
                   copy.deepcopy(G).requires_grad_(False) if r.ema > 0 else None)

    def _generator(self, bins: torch.Tensor | None, classes: int, resume: bool) -> torch.nn.Module:
        """The recipe's generator: the U-Net, or the decoder on an ImageNet-trained MobileNetV2
        (its weights loaded here on a fresh run, frozen unless --train-encoder)."""
        r = self.recipe
        if r.encoder == "unet":
            return ColorizerUNet(ColorizerConfig(
                r.width, r.depth, head=r.head, bins=0 if bins is None else len(bins),
                temperature=r.temperature, head_stride=r.head_stride if bins is not None else 1,
                global_features=r.global_features, classes=classes))
        G = ColorizerMobileNet(MobileColorizerConfig(r.width, global_features=r.global_features,
                                                     classes=classes))
        if not resume:
            G.encoder.load_state_dict(load_encoder(Path(r.encoder_weights)).state_dict())
        G.encoder.requires_grad_(r.train_encoder)
        return G

    def _chroma_loss(self, data: TrainingData, bins: bool, class_weight: float) -> ChromaLoss:
        """The generator's non-adversarial terms; with class rebalancing (a bins head, or
        --rebalance-mix below 1) weighted by the colour prior of the training photos, which
        is written to prior.json."""
        r = self.recipe
        mix = r.rebalance_mix if r.rebalance_mix is not None else (0.5 if bins else 1.0)
        if not bins and mix >= 1:
            return ChromaLoss(r.l1_weight, r.pixel_loss, class_weight, mode_scale=r.mode_scale)
        cells = gamut_bins()
        counts = training_colour_counts(self.photos, data.train_idx, r.size, cells, r.seed)
        weights = rebalance_weights(smooth_prior(counts, cells), mix).to(self.run.device)
        self.run.log.write_json("prior.json", {"counts": [int(c) for c in counts]})
        if bins:
            return ChromaLoss(r.ce_weight, "bins", class_weight, cells.to(self.run.device), weights)
        return ChromaLoss(r.l1_weight, r.pixel_loss, class_weight, bin_weights=weights,
                          mode_scale=r.mode_scale)

    def sample(self, index: int, rng: np.random.Generator):
        rgb = photo_to_sample(self.photos.load(index), self.recipe.size, rng, self.recipe.native_resample)
        return (rgb, self.labels[index]) if self.labelled else rgb

    def step(self, gan: GAN, batch, step: int) -> dict[str, torch.Tensor]:
        r, device = self.recipe, self.run.device
        rgb, label = batch if self.labelled else (batch, None)
        decay = scheduled_lr(r, step, self.total) / r.lr
        for opt, base in ((gan.opt_g, r.lr), (gan.opt_d, self.d_lr)):
            for group in opt.param_groups:
                group["lr"] = base * decay
        rgb = rgb.to(device, non_blocking=True)
        label = None if label is None else label.to(device, non_blocking=True)
        if step < r.pretrain_steps:
            losses = pixel_only_step(gan.G, gan.opt_g, rgb, self.run.amp, self.loss, label)
        else:
            losses = pix2pix_step(gan.G, gan.D, gan.opt_g, gan.opt_d, rgb, self.loss, self.run.amp,
                                  r.adv_weight, label)
        if gan.G_ema is not None:
            update_ema(gan.G_ema, unwrap(gan.G), r.ema)
        return losses

    def _norm_inputs(self, data: TrainingData) -> torch.Tensor:
        """Luminance of NORM_VIEWS fixed training views (a seeded draw, augmented as in
        training): what the averaged generator's BatchNorm statistics are measured on."""
        r = self.recipe
        rng = np.random.default_rng(r.seed + 1)
        chosen = rng.choice(np.asarray(data.train_idx), min(NORM_VIEWS, len(data.train_idx)), replace=False)
        views = torch.stack([photo_to_sample(self.photos.load(int(i)), r.size, rng, r.native_resample)
                             for i in chosen])
        return split_lab(views)[0]

    def refresh_statistics(self, gan: GAN, step: int) -> None:
        """With --ema: measure the averaged generator's BatchNorm statistics anew on the
        fixed training views (once per step, so a validation and its checkpoint share it)."""
        if gan.G_ema is not None and self.norms_step != step:
            recompute_batch_norm(gan.G_ema, self.norm_inputs, self.recipe.batch_size, self.run.device)
            self.norms_step = step

    def validate(self, gan: GAN, step: int) -> float:
        return validate(gan.judged(), self.val_batch, self.run.device, self.recipe.batch_size * 4,
                        self.run.log, step, self.recipe.select_by)


def init_generator(G: torch.nn.Module, path: Path) -> list[str]:
    """Load a colouriser weight file's weights into G, a colouriser of the same architecture
    (U-Net: same width and depth; MobileNetV2 colouriser: same decoder width). The head and the
    image-level layers may differ (a regression model can start a bins model): parameters G has
    and the file lacks, or holds in another shape, keep their fresh values and are returned by
    name. The file's chroma gain, an inference setting, is not carried over."""
    from colorsr_cli.errors import WeightsError
    from colorsr_cli.models import arch_name_of, config_dict
    from colorsr_cli.weightfile import load_weight_file

    model, _ = load_weight_file(path)
    if type(model) is not type(G):
        raise WeightsError(f"{path}: not a single colouriser like the recipe's {arch_name_of(G)} "
                           f"(architecture {arch_name_of(model)}); --init takes one such model, "
                           f"not an ensemble or another design")
    theirs, ours = config_dict(model), config_dict(G)
    shape = {k: (theirs[k], ours[k]) for k in ("width", "depth", "batch_norm")
             if k in ours and theirs[k] != ours[k]}
    if shape:
        raise WeightsError(f"{path}: a colouriser of " + ", ".join(
            f"{k} {a}" for k, (a, _) in shape.items()) + ", the recipe asks for " + ", ".join(
            f"{k} {b}" for k, (_, b) in shape.items()))
    source, target = model.state_dict(), G.state_dict()
    fresh = [k for k, v in target.items() if k not in source or source[k].shape != v.shape
             or k == "ab_bins"]
    G.load_state_dict({k: v for k, v in source.items() if k in target and k not in fresh}, strict=False)
    return fresh


def load_encoder(path: Path) -> torch.nn.Module:
    """A MobileNetV2Features weight file (tools/mobilenet_from_nsfwjs.py)."""
    from colorsr_cli.errors import WeightsError
    from colorsr_cli.models import MobileNetV2Features, arch_name_of
    from colorsr_cli.weightfile import load_weight_file

    model, _ = load_weight_file(path)
    if not isinstance(model, MobileNetV2Features):
        raise WeightsError(f"{path}: not a MobileNetV2 encoder (architecture {arch_name_of(model)})")
    return model


def scheduled_lr(recipe: ColorRecipe, step: int, total: int) -> float:
    """The recipe's lr, decayed linearly to zero over the steps after lr_decay_start * total."""
    start = int(recipe.lr_decay_start * total)
    if step < start or total <= start:
        return recipe.lr
    return recipe.lr * (total - step) / (total - start)


@torch.no_grad()
def update_ema(avg: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """avg <- decay * avg + (1 - decay) * model for parameters; buffers (BatchNorm running
    statistics) are copied, since averaging them would describe no real network. The copies
    belong to the live weights, not the averaged ones: recompute_batch_norm measures the
    average's own before it is validated or saved."""
    torch._foreach_lerp_(list(avg.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
    for a, b in zip(avg.buffers(), model.buffers()):
        a.copy_(b)


@torch.no_grad()
def recompute_batch_norm(model: torch.nn.Module, inputs: torch.Tensor, chunk: int,
                         device: torch.device) -> None:
    """Replace the running statistics of model's BatchNorm layers by their average over inputs,
    fed in batches of chunk in training mode (as SWA's update_bn). Layers the model keeps in
    eval mode when trained (a frozen encoder's ImageNet statistics) are left alone."""
    was_training = model.training
    model.train()
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    if norms:
        for part in inputs.split(chunk):
            model(part.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)


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

    def generator_loss(adv: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        other, logs = loss(out, ab, labels)
        return adv_weight * adv + other, logs

    return adversarial_update(D, opt_d, opt_g, real, fake, F.mse_loss, amp, generator_loss)


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
    if outputs:
        out, gray, truth8 = outputs
        run.write_samples(step, [[gray[k], out[k], truth8[k]] for k in range(out.shape[0])])
    return -scores["hue_hit"] if select_by == "hue_hit" else scores["val_l1"]


def colour_placement(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Hue / green / red hit and the share of colourful truth left gray (pixel-pooled over the
    photos), and the colourfulness ratio of predictions to truths, (N, 3, H, W) sRGB in [0, 1]."""
    from colorsr_cli.metrics import HUE_RANGES, colorfulness, hue_hit, left_gray

    x, y = _pool(pred), _pool(truth)
    pooled = {"hue_hit": hue_hit(x, y)}
    for name, hues in HUE_RANGES.items():
        pooled[f"{name}_hit"] = hue_hit(x, y, hues)
    pooled["left_gray"] = left_gray(x, y)
    out = {k: float(v[0]) for k, v in pooled.items()}
    out["colourfulness_ratio"] = float(colorfulness(pred).mean() / colorfulness(truth).mean().clamp(min=1e-9))
    return out


def _pool(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (1, 3, 1, N*H*W): all pixels as one image, for pixel-pooled measures."""
    return images.permute(1, 0, 2, 3).reshape(3, -1)[None, :, None, :]
