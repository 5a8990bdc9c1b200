"""The recipes' loss terms: the adversarial update both GANs make (the discriminator's, then
the generator's), the colouriser's chroma terms (pix2pix's L1 or the ab distance, the class-rebalanced
cross-entropy of a bins head, the image-level class loss), and SRGAN's perceptual term."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from colorsr_cli.chroma_bins import nearest_bin, rebalanced_cross_entropy, soft_encode
from colorsr_cli.color import AB_SCALE, denormalize_ab
from colorsr_cli.models import SRDiscriminator
from colorsr_cli.train.distributed import unwrap


def critic_backward(D: torch.nn.Module, x: torch.Tensor, target: float, loss_fn: Callable,
                    amp: bool, first: bool) -> torch.Tensor:
    """loss_fn(D(x), target) back-propagated into D at once; returns the (detached) loss.

    Real and fake batches go through D in separate passes, as in pix2pix and SRGAN: with
    BatchNorm, a mixed batch would let D judge images by batch statistics that the
    generator's own (fake-only) pass never has. Under DDP the first of the two calls skips
    the gradient all-reduce (no_sync) and the second reduces both."""
    sync = D.no_sync() if first and hasattr(D, "no_sync") else contextlib.nullcontext()
    with sync, torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
        out = D(x).float()
        loss = loss_fn(out, torch.full_like(out, target))
        loss.backward()
    return loss.detach()


def adversarial_update(D: torch.nn.Module, opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer,
                       real: torch.Tensor, fake: torch.Tensor, criterion: Callable, amp: bool,
                       generator_loss: Callable[[torch.Tensor], tuple[torch.Tensor, dict]]
                       ) -> dict[str, torch.Tensor]:
    """One discriminator update (criterion of D(real) against 1 and of D(fake) against 0), then
    one generator update on generator_loss(adv), where adv = criterion(D(fake), 1) with D's
    weights frozen and generator_loss(adv) -> (the generator's loss, its terms to log). Returns
    loss_d, loss_g, adv and those terms, detached."""
    opt_d.zero_grad(set_to_none=True)
    loss_d = (critic_backward(D, real, 1.0, criterion, amp, first=True)
              + critic_backward(D, fake.detach(), 0.0, criterion, amp, first=False))
    opt_d.step()

    critic = unwrap(D)
    critic.requires_grad_(False)
    with torch.autocast(fake.device.type, torch.bfloat16, enabled=amp):
        score = critic(fake).float()
        adv = criterion(score, torch.ones_like(score))
    loss_g, logs = generator_loss(adv)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    critic.requires_grad_(True)
    return {"loss_d": loss_d, "loss_g": loss_g.detach(), "adv": adv.detach()} | logs


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


def mode_seeking(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None,
                 scale: float = 15.0 / AB_SCALE) -> torch.Tensor:
    """Welsch's loss of the ab distance d, scale * (1 - exp(-d^2 / (2 scale^2))) (scale in
    normalised units; 15 ab units by default), weighted per pixel like the others.

    L1 is least at the per-channel median of the colours a gray patch could have: a blend
    (khaki between green and orange foliage, a hue neither has), or whatever the warm colours
    together outweigh. This loss is quadratic for errors well under `scale` and stops pulling for
    errors far beyond it, so it is least near the most likely colour (the mode, as mean shift
    finds it) instead. Meant for fine-tuning a model whose guesses are already near one of the
    modes: from far away it barely pulls at all."""
    d2 = (fake - real).square().sum(1)
    loss = scale * (1 - torch.exp(-d2 / (2 * scale * scale)))
    return loss.mean() if weight is None else (loss * weight).mean()


# ColorRecipe.pixel_loss -> (loss function (fake, real, pixel weight or None) -> scalar, the name
# it is logged under; "l1" keeps pix2pix's metric name). "mode" also takes ChromaLoss.mode_scale.
PIXEL_LOSSES = {"l1": (weighted_l1, "l1"), "euclidean": (ab_distance, "ab_dist"),
                "mode": (mode_seeking, "mode")}


@dataclass
class ChromaLoss:
    """The colouriser's non-adversarial terms: `weight` x the pixel loss (l1, euclidean or mode on the
    normalised ab, or "bins": the class-rebalanced cross-entropy over quantised ab, with `bins`
    (Q, 2) centres in Lab units and per-bin `bin_weights` (Q,)), plus `class_weight` x the
    cross-entropy of the image-level classifier on labelled photos (label -1: none)."""

    weight: float = 100.0
    pixel_loss: str = "l1"
    class_weight: float = 0.0
    bins: torch.Tensor | None = None
    bin_weights: torch.Tensor | None = None
    mode_scale: float = 15.0  # ab units, for pixel_loss "mode"

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
            extra = {"scale": self.mode_scale / AB_SCALE} if self.pixel_loss == "mode" else {}
            term = loss_fn(out["ab"].float(), ab, weight, **extra)
            logs = {name: term.detach()}
        total = self.weight * term
        if self.class_weight and labels is not None and bool((labels >= 0).any()):
            cls = F.cross_entropy(out["classes"].float(), labels, ignore_index=-1)
            total = total + self.class_weight * cls
            logs["cls"] = cls.detach()
        return total, logs


PERCEPTUAL = ("vgg", "features")


class Perceptual(torch.nn.Module):
    """SRGAN's perceptual term: 'vgg' = MSE of VGG19 relu5_4 features (Ledig et al.; the
    ImageNet weights come through the weights manager, or from a file), or 'features' = L1
    between the discriminator's intermediate features of real and generated images (feature
    matching, Salimans et al. 2016; needs no downloaded network)."""

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
