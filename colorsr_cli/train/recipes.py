"""The settings of the two training recipes: a frozen dataclass each, saved as a run's
recipe.json. Every field carries its help text (and, where it is not --field-name, its
command-line flag), so `colorsr train color|sr` makes its options from these classes."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from colorsr_cli.errors import RecipeError


def setting(default: Any, help: str, flag: str | None = None, path: bool = False,
            choices: tuple | None = None, bounds: tuple[float, float] | None = None) -> Any:
    """A recipe field: its default (MISSING: required), its help text, its command-line flag
    when that is not --field-name ("--name", or "--on/--off" for a switch), whether the command
    line takes it as a path (the recipe stores it as a string), and the values it may take: one
    of `choices`, or a number within `bounds` (inclusive; None passes)."""
    return field(default=default, metadata={"help": help, "flag": flag, "path": path,
                                            "choices": choices, "bounds": bounds})


@dataclass(frozen=True)
class TrainingRecipe:
    """What every run has: its photos and folder, its length and optimiser, when it logs,
    validates and saves, and where it computes."""

    name: ClassVar[str]  # the recipe's name, stored in its best.pt

    data: str = setting(MISSING, "Folder of training photos (searched recursively).", path=True)
    out: str = setting(MISSING, "Run folder.", path=True)
    val: str | None = setting(None, "Validation folder (default: hold out --val-fraction of --data).",
                              path=True)
    epochs: int = setting(30, "Passes over the training photos.")
    max_steps: int | None = setting(None, "End the run at this step if the epochs have not.")
    batch_size: int = setting(16, "Photos per step (per process under torchrun).")
    lr: float = setting(2e-4, "Adam learning rate; given with --resume, it replaces the run's.")
    beta1: float = setting(0.5, "Adam beta1.")
    beta2: float = setting(0.999, "Adam beta2.")
    pretrain_steps: int = setting(0, "Pixel-loss-only steps before the adversarial phase.")
    val_every: int | None = setting(None, "Steps between validations (default: each epoch).")
    checkpoint_every: int = setting(500, "Steps between last.pt saves (a fast GPU wants fewer, "
                                    "larger intervals).")
    log_every: int = setting(20, "Steps between metrics.jsonl lines.")
    seed: int = setting(0, "Seed of the initial weights, the photo order and the augmentation.")
    # Apart from --seed: runs that differ only in --seed validate on the same photos, and a
    # fine-tune (--init) with another seed does not validate on photos its start trained on.
    holdout_seed: int = setting(0, "Seed of the photos held out for validation when there is no "
                                "--val; apart from --seed, so runs that differ in --seed (or a "
                                "fine-tune of one) validate on the same photos. --resume keeps "
                                "the run's.")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps.")
    amp: bool = setting(True, "bf16 mixed precision (CUDA, and CPUs with native bf16).",
                        flag="--amp/--no-amp")
    workers: int = setting(0, "Data-loading processes.")
    threads: int | None = setting(None, "CPU threads for torch.")

    def __post_init__(self) -> None:
        for f in fields(self):
            value, choices, bounds = getattr(self, f.name), f.metadata["choices"], f.metadata["bounds"]
            words = f.name.replace("_", " ")
            if choices and value not in choices:
                named = ", ".join(map(str, choices))
                raise RecipeError(f.name, f"unknown {words} {value!r} (one of {named})")
            if bounds and value is not None and not bounds[0] <= value <= bounds[1]:
                raise RecipeError(f.name, f"{words} must be between {bounds[0]:g} and {bounds[1]:g}, "
                                          f"got {value:g}")


@dataclass(frozen=True)
class ColorRecipe(TrainingRecipe):
    """pix2pix (Isola et al. 2017) for Lab colourisation, with optional stabilisers."""

    name: ClassVar[str] = "pix2pix"

    size: int = setting(64, "Training resolution.")
    width: int = setting(32, "U-Net width of the first level.")
    depth: int = setting(3, "U-Net downsamplings.")
    l1_weight: float = setting(100.0, "Weight of the pixel loss next to the GAN loss.")
    # l1 is pix2pix's mean |da| and |db| of the normalised ab; euclidean the mean distance
    # sqrt(da^2 + db^2), the ab error evaluation reports. Validation, and so best.pt, stays L1.
    # mode: Welsch's loss of that distance, least near the most likely colour rather than the
    # median of the possible ones (khaki between green and orange foliage); for fine-tuning.
    pixel_loss: str = setting("l1", "The term --l1-weight scales: l1 (pix2pix's), euclidean "
                              "(distance in the ab plane, the ab error metric) or mode (a robust "
                              "form of it that picks the likeliest colour over a blend).",
                              choices=("l1", "euclidean", "mode"))
    mode_scale: float = setting(15.0, "--pixel-loss mode: errors well beyond this many ab units "
                                "stop pulling the guess.", bounds=(1, 100))
    # An encoder trained on ImageNet already tells foliage from sky; the U-Net's own encoder
    # learns that from the training photos alone.
    encoder: str = setting("unet", "unet (the U-Net's own encoder, trained from scratch) or "
                           "mobilenet_v2 (an ImageNet-trained MobileNetV2, --encoder-weights; "
                           "--width is then the decoder's).", choices=("unet", "mobilenet_v2"))
    encoder_weights: str | None = setting(None, "MobileNetV2 weight file for --encoder mobilenet_v2 "
                                          "(docs/training.md: how to make it).", path=True)
    train_encoder: bool = setting(False, "Update the encoder's weights too (its batch norm keeps "
                                  "its statistics).", flag="--train-encoder/--freeze-encoder")
    disc_width: int = setting(64, "Discriminator width.")
    disc_layers: int = setting(3, "Discriminator downsampling layers.")
    # A sigmoid discriminator trained with MSE saturates once it wins and the generator's
    # adversarial gradient vanishes; a least-squares GAN (Mao et al. 2017) uses the raw score.
    disc_sigmoid: bool = setting(True, "Sigmoid discriminator trained with MSE, or least-squares "
                                 "GAN (raw score, no saturation).", flag="--disc-sigmoid/--lsgan")
    disc_lr: float | None = setting(None, "Discriminator lr (default --lr).")
    adv_weight: float = setting(1.0, "Weight of the adversarial term.")
    # GAN generators oscillate from step to step; the average is what is validated and
    # exported (Karras et al. 2018).
    ema: float = setting(0.0, "EMA decay of the generator's weights (e.g. 0.999); the average is "
                         "validated and exported. 0 = off.")
    lr_decay_start: float = setting(1.0, "Fraction of the run after which the lr decays linearly "
                                    "to 0 (pix2pix: 0.5). 1 = constant.")
    # A photo reduced from a larger scan is softer than a small JPEG stored at that size: this
    # shows Tiny-ImageNet's 64x64 JPEGs as the evaluation protocol shows a small photo, and
    # validation then shows every such photo that way too.
    native_resample: float = setting(0.0, "Fraction (0 to 1) of photos already at the training "
                                     "size shown softened, as the evaluation protocol shows small "
                                     "photos: enlarged x4 (bicubic), reduced back (area).",
                                     bounds=(0, 1))
    init_weights: str | None = setting(None, "Start the generator from this colouriser weight file "
                                       "(same --width and --depth), e.g. a bundled model's file: a "
                                       "fine-tune. The discriminator starts fresh.",
                                       flag="--init", path=True)
    cache_photos: bool = setting(False, "Decode every photo once and keep it in memory (3 bytes a "
                                 "pixel): small photos on a GPU.", flag="--cache/--no-cache")
    # regression: pix2pix's ab through a tanh, trained with the pixel loss. bins: Zhang et al.
    # 2016, a distribution over quantised ab trained with a class-rebalanced cross-entropy
    # (weighted by ce_weight instead of l1_weight), decoded by the annealed mean.
    head: str = setting("regression", "regression (ab through a tanh) or bins (a distribution over "
                        "quantised ab, rebalanced: livelier colour).",
                        choices=("regression", "bins"))
    ce_weight: float = setting(1.0, "Weight of a bins head's cross-entropy.")
    temperature: float = setting(0.38, "Annealed-mean temperature (bins).")
    head_stride: int = setting(2, "A bins head predicts at 1/this of the resolution.")
    # Class rebalancing (Zhang et al. 2016): a regression head too then stops trading rare
    # colours for brown. None: the paper's 0.5 for a bins head, pix2pix's plain loss otherwise.
    rebalance_mix: float | None = setting(None, "Class rebalancing: loss weights from the inverse "
                                          "colour prior mixed with this share of uniform (1 = none; "
                                          "default 0.5 with --head bins, 1 otherwise).",
                                          bounds=(0, 1))
    # Iizuka et al. 2016; the classifier trains on the photos under data/class_folders/<label>/
    # (e.g. Tiny-ImageNet's class folders); other photos carry no label and no class loss.
    global_features: bool = setting(False, "Fuse image-level features into the decoder.")
    class_folders: str | None = setting(None, "Subfolder of --data whose folders are class labels: "
                                        "trains an auxiliary classifier on the image-level "
                                        "features.")
    class_weight: float = setting(0.1, "Weight of the class loss.")
    select_by: str = setting("l1", "What picks best.pt: l1 or hue_hit (the share of the hold-out's "
                             "colourful pixels given the right hue).",
                             choices=("l1", "hue_hit"))
    val_fraction: float = setting(0.02, "Share of the (eligible) photos held out when there is "
                                  "no --val.")
    # Hold out only larger photos, so validation looks like what users restore (larger photos
    # reduced to the training size), not native 64x64 thumbnails.
    holdout_min_side: int = setting(0, "Hold out only photos with a shorter side of at least this "
                                    "many px (0 = any).", flag="--holdout-side")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder == "mobilenet_v2":
            if not self.encoder_weights:
                raise RecipeError("encoder_weights", "--encoder mobilenet_v2 needs --encoder-weights "
                                  "(tools/mobilenet_from_nsfwjs.py makes the file)")
            if self.head != "regression":
                raise RecipeError("head", "--encoder mobilenet_v2 has a regression head only")


@dataclass(frozen=True)
class SRRecipe(TrainingRecipe):
    """SRGAN (Ledig et al. 2017): a pixel-loss warm-up (SRResNet), then GAN steps."""

    name: ClassVar[str] = "srgan"

    hr_size: int = setting(256, "HR crop size (LR = hr-size / scale); smaller photos are skipped.")
    scale: int = setting(4, "Upscaling factor.", choices=(2, 4, 8))
    # How the LR input is made from the HR crop: area is the evaluation protocol's and an old
    # photo's reduction; bicubic the SR papers' protocol (OpenCV bicubic, no antialiasing).
    lr_kernel: str = setting("area", "How LR inputs are made from HR crops: area (the evaluation "
                             "protocol's), bicubic (the SR papers'), or mixed (each sample one or "
                             "the other; validation alternates them).",
                             choices=("area", "bicubic", "mixed"))
    # E.g. a teacher's outputs on degraded photos (tools/teacher_pairs.py): training on them
    # distills the teacher; no LR is made (lr_kernel unused).
    pairs: bool = setting(False, "--data (and --val) hold lr/ and target/ images: train to map each "
                          "input to its target (distillation).")
    init: str | None = setting(None, "Start from these SR weights (a manifest name or a file; the "
                               "same design, or the same with fewer --blocks: the extra blocks "
                               "start as identities).")
    channels: int = setting(64, "Generator channels.")
    blocks: int = setting(16, "Generator residual blocks.")
    head_kernel: int = setting(9, "Generator's first convolution kernel.")
    tail_kernel: int = setting(9, "Generator's last convolution kernel.")
    global_skip: bool = setting(False, "Predict detail on top of a bicubic upscale (converges far "
                                "faster).", flag="--global-skip/--no-global-skip")
    upsampler: str = setting("stages", "stages (SRGAN's) or lowres (ESPCN-style tail on the input "
                             "grid: the fast model).", choices=("stages", "lowres"))
    disc_width: int = setting(64, "Discriminator width.")
    adv_weight: float = setting(1e-3, "Weight of the adversarial term.")
    perceptual: str = setting("vgg", "vgg (needs the VGG19 download) or features (discriminator "
                              "feature matching).", choices=("vgg", "features"))
    perceptual_weight: float = setting(1.0, "Weight of the perceptual term.")
    pixel_weight: float = setting(0.0, "Weight of an L1 term in the GAN phase.")
    vgg_weights: str = setting("vgg19-imagenet", "The VGG19 of --perceptual vgg: a manifest name "
                               "or a torchvision state dict file.")
    val_fraction: float = setting(0.05, "Share of the photos held out when there is no --val.")
