import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from colorsr_cli.export import export_run
from colorsr_cli.models import ColorizerConfig, ColorizerUNet, PatchDiscriminator, SRConfig, SRGenerator
from colorsr_cli.models.colorizer import PatchDiscriminatorConfig
from colorsr_cli.models.srgan import SRDiscriminator, SRDiscriminatorConfig
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.train.color import pix2pix_step, train_color
from colorsr_cli.train.losses import ChromaLoss, Perceptual
from colorsr_cli.train.recipes import ColorRecipe, SRRecipe
from colorsr_cli.train.sr import pixel_step, srgan_step, train_sr
from colorsr_cli.weightfile import load_weight_file

from .conftest import load_tool, photo_like


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for k in range(24):
        Image.fromarray(photo_like(64, 64, k)).save(root / f"tiny{k:02d}.jpg", quality=95)
    for k in range(6):
        Image.fromarray(photo_like(80, 96, 100 + k)).save(root / f"big{k}.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return root


def _batch(n=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear")


def test_pix2pix_losses_finite_and_decrease_on_fixed_batch():
    torch.manual_seed(0)
    G, D = ColorizerUNet(ColorizerConfig(width=8)), PatchDiscriminator(PatchDiscriminatorConfig(width=8))
    opt_g = torch.optim.Adam(G.parameters(), 2e-4 * 5, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    rgb = _batch()
    history = [pix2pix_step(G, D, opt_g, opt_d, rgb, 100.0, amp=False) for _ in range(40)]
    assert all(np.isfinite(list(h.values())).all() for h in history)
    assert np.mean([h["l1"] for h in history[-5:]]) < 0.7 * np.mean([h["l1"] for h in history[:5]])


def test_srgan_losses_finite_and_decrease_on_fixed_batch():
    torch.manual_seed(0)
    G = SRGenerator(SRConfig(channels=8, blocks=1))
    D = SRDiscriminator(SRDiscriminatorConfig(width=8, fc=32))
    opt_g = torch.optim.Adam(G.parameters(), 1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    hr = _batch(4, 32)
    lr = torch.nn.functional.interpolate(hr, scale_factor=0.25, mode="area")
    warm = [pixel_step(G, opt_g, lr, hr, amp=False)["pixel"] for _ in range(30)]
    assert warm[-1] < 0.7 * warm[0]
    recipe = SRRecipe(data="", out="", perceptual="features", pixel_weight=1.0)
    perceptual = Perceptual("features", D, "")
    gan = [srgan_step(G, D, opt_g, opt_d, perceptual, lr, hr, recipe, amp=False) for _ in range(20)]
    assert all(np.isfinite(list(h.values())).all() for h in gan)
    # Measured: pixel 0.085 -> 0.071, loss_g 0.37 -> 0.28, loss_d 1.43 -> 0.19 over the 20 steps;
    # with G not updated pixel stays at 0.085 and loss_g rises to 0.43.
    assert gan[-1]["pixel"] < 0.9 * gan[0]["pixel"]
    assert np.mean([h["loss_g"] for h in gan[-5:]]) < 0.9 * np.mean([h["loss_g"] for h in gan[:5]])
    assert gan[-1]["loss_d"] < 0.5 * gan[0]["loss_d"]


def _states_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_color_resume_continues_the_same_schedule(data_dir, tmp_path):
    common = dict(data=str(data_dir), width=8, disc_width=8, batch_size=4, val_every=3,
                  checkpoint_every=2, log_every=1, device="cpu", threads=1)
    train_color(ColorRecipe(out=str(tmp_path / "a"), max_steps=7, **common))
    train_color(ColorRecipe(out=str(tmp_path / "b"), max_steps=4, **common))
    train_color(ColorRecipe(out=str(tmp_path / "b"), max_steps=7, **common), resume=True)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 7
    assert _states_equal(a["G"], b["G"]) and _states_equal(a["D"], b["D"])
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_l1" in r for r in records) and all(np.isfinite(r.get("loss_g", 0)) for r in records)
    assert list((tmp_path / "a" / "samples").glob("*.png"))


def test_sr_training_with_warmup_resume_and_export(data_dir, tmp_path):
    """Resuming gives the uninterrupted run's generator, and exporting the training checkpoint
    gives a weight file of the recipe's architecture (non-default kernels and skip, so a key
    the exporter drops shows) with that generator's outputs."""
    arch = dict(channels=8, blocks=1, head_kernel=3, tail_kernel=5, global_skip=True)
    common = dict(data=str(data_dir), hr_size=32, disc_width=8, batch_size=2,
                  pretrain_steps=3, perceptual="features", pixel_weight=1.0, val_every=2,
                  checkpoint_every=2, log_every=1, device="cpu", threads=1, **arch)
    train_sr(SRRecipe(out=str(tmp_path / "a"), max_steps=6, **common))
    train_sr(SRRecipe(out=str(tmp_path / "b"), max_steps=2, **common))
    train_sr(SRRecipe(out=str(tmp_path / "b"), max_steps=6, **common), resume=True)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert _states_equal(a["G"], b["G"])
    assert (tmp_path / "a" / "best.pt").exists()

    entry = export_run(tmp_path / "a", tmp_path / "sr.pt", "test-sr", half=False,
                       checkpoint=tmp_path / "a" / "last.pt")
    assert entry["task"] == "sr" and entry["arch"] == "srgan_generator"
    exported, meta = load_weight_file(tmp_path / "sr.pt")
    assert meta["step"] == 6 and meta["weights"] == "G"
    trained = SRGenerator(SRConfig(**arch)).eval()
    trained.load_state_dict(a["G"])
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        assert torch.equal(exported.eval()(x), trained(x))


def test_export_loads_back_with_identical_outputs(data_dir, tmp_path):
    run = tmp_path / "run"
    train_color(ColorRecipe(data=str(data_dir), out=str(run), width=8, disc_width=8, batch_size=4,
                            max_steps=2, device="cpu", threads=1))
    entry = export_run(run, tmp_path / "c.pt", "test-color", half=False)
    assert entry["task"] == "color" and len(entry["sha256"]) == 64
    assert entry["size"] == (tmp_path / "c.pt").stat().st_size
    best, _ = load_weight_file(run / "best.pt")
    exported, _ = load_weight_file(tmp_path / "c.pt")
    img = [torch.rand(3, 64, 64)]
    opts = RestoreOptions(mode="color-only", scale=1)
    same = Restorer(best, None, opts).restore(img)[0], Restorer(exported, None, opts).restore(img)[0]
    assert torch.equal(*same)
    export_run(run, tmp_path / "h.pt", "half", half=True)
    half, _ = load_weight_file(tmp_path / "h.pt")
    assert (tmp_path / "h.pt").stat().st_size < 0.6 * entry["size"]
    diff = Restorer(half, None, opts).restore(img)[0] - Restorer(best, None, opts).restore(img)[0]
    assert diff.abs().max() < 0.02


def test_empty_data_folder_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from colorsr_cli.cli import app

    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["train", "color", "--data", str(tmp_path / "empty"), "--out",
                                 str(tmp_path / "run"), "--max-steps", "1"])
    assert r.exit_code == 2 and "no usable images" in r.stderr


@pytest.mark.slow
def test_ddp_two_gloo_processes(data_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "colorsr_cli", "train", "color", "--data", str(data_dir), "--out", str(tmp_path / "ddp"),
           "--width", "8", "--batch-size", "4", "--max-steps", "3", "--device", "cpu", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert ckpt["step"] == 3


def test_vgg_perceptual_loads_torchvision_layout(tmp_path):
    """The 'vgg' perceptual loss takes torchvision's vgg19 state dict (features.* + classifier.*)."""
    from colorsr_cli.models import VGG19Features

    reference = VGG19Features()
    state = {k: torch.randn_like(v) * 0.02 for k, v in reference.state_dict().items()
             if k.startswith("features.")}
    state["classifier.0.weight"] = torch.randn(4, 4)  # ignored, as torchvision's classifier is
    torch.save(state, tmp_path / "vgg19.pth")
    critic = SRDiscriminator(SRDiscriminatorConfig(width=8, fc=16))
    loss_fn = Perceptual("vgg", critic, str(tmp_path / "vgg19.pth"))
    assert torch.equal(loss_fn.vgg.features[0].weight, state["features.0.weight"])
    fake = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss = loss_fn(fake, torch.rand(1, 3, 32, 32))
    loss.backward()
    assert torch.isfinite(loss) and fake.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss_fn.vgg.parameters())


def test_export_any_checkpoint(data_dir, tmp_path):
    from colorsr_cli.export import export_run

    run = tmp_path / "run"
    train_sr(SRRecipe(data=str(data_dir), out=str(run), hr_size=32, channels=8, blocks=1, disc_width=8,
                      batch_size=2, max_steps=2, global_skip=True, perceptual="features", device="cpu",
                      threads=1))
    entry = export_run(run, tmp_path / "s.pt", "s", half=False, checkpoint=run / "last.pt")
    model, meta = load_weight_file(tmp_path / "s.pt")
    assert entry["config"]["global_skip"] is True and meta["step"] == 2
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ckpt["G"].items())
    # a copy of best.pt (a weight file, not a checkpoint) is accepted too
    shutil.copy(run / "best.pt", tmp_path / "best_copy.pt")
    export_run(run, tmp_path / "b.pt", "b", half=False, checkpoint=tmp_path / "best_copy.pt")
    best, _ = load_weight_file(run / "best.pt")
    again, _ = load_weight_file(tmp_path / "b.pt")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in best.state_dict().items())


def test_export_with_chroma_gain_is_carried_by_the_file(tiny_weights, tmp_path):
    from colorsr_cli.export import with_chroma_gain
    from colorsr_cli.weightfile import save_weight_file

    model, _ = load_weight_file(tiny_weights[0])
    gained = with_chroma_gain(model, 0.5)
    save_weight_file(gained, tmp_path / "g.pt")
    loaded, _ = load_weight_file(tmp_path / "g.pt")
    assert loaded.config.chroma_gain == 0.5
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x) * 0.5, atol=1e-6)


def test_resume_with_a_new_learning_rate_uses_it(data_dir, tmp_path):
    common = dict(data=str(data_dir), out=str(tmp_path / "r"), width=8, disc_width=8, batch_size=4,
                  device="cpu", threads=1)
    train_color(ColorRecipe(max_steps=2, **common))
    train_color(ColorRecipe(max_steps=3, lr=1e-5, **common), resume=True)
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert ckpt["step"] == 3
    assert all(g["lr"] == 1e-5 for g in ckpt["opt_g"]["param_groups"] + ckpt["opt_d"]["param_groups"])
    # recipe.json keeps the first options; the resumed ones are recorded beside it
    run = tmp_path / "r"
    assert json.loads((run / "recipe.json").read_text())["lr"] == 2e-4
    resumed = json.loads((run / "recipe.resume-step0000002.json").read_text())
    assert (resumed["lr"], resumed["max_steps"]) == (1e-5, 3)
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    changed = [e["changed"] for e in events if e.get("event") == "resumed"]
    assert changed == [{"lr": [2e-4, 1e-5], "max_steps": [2, 3]}]


def test_color_pretrain_ema_and_lr_decay_resume_bit_for_bit(data_dir, tmp_path):
    common = dict(data=str(data_dir), width=8, disc_width=8, batch_size=4, val_every=3,
                  checkpoint_every=2, log_every=1, device="cpu", threads=1, pretrain_steps=3,
                  ema=0.9, lr_decay_start=0.5, disc_sigmoid=False)
    from colorsr_cli.train.runlog import Reporter

    def kill_at_5(step, total, metrics):
        if step == 5:
            raise KeyboardInterrupt  # as Ctrl-C: the last checkpoint is step 4's

    train_color(ColorRecipe(out=str(tmp_path / "a"), max_steps=8, **common))
    with pytest.raises(KeyboardInterrupt):
        train_color(ColorRecipe(out=str(tmp_path / "b"), max_steps=8, **common), reporter=Reporter(kill_at_5))
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["step"] == 4
    train_color(ColorRecipe(out=str(tmp_path / "b"), max_steps=8, **common), resume=True)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8
    for key in ("G", "D", "G_ema"):
        assert _states_equal(a[key], b[key]), key
    # The average differs from the live generator, and the export takes the average.
    assert not _states_equal(a["G"], a["G_ema"])
    entry = export_run(tmp_path / "a", tmp_path / "e.pt", "e", half=False,
                       checkpoint=tmp_path / "a" / "last.pt")
    model, meta = load_weight_file(tmp_path / "e.pt")
    assert meta["weights"] == "G_ema" and entry["task"] == "color"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in a["G_ema"].items())
    # The learning rate reached the last step of the linear decay: lr * 1 / 4 (steps 4..7 decay).
    assert all(abs(g["lr"] - 2e-4 / 4) < 1e-12 for g in a["opt_g"]["param_groups"])


def test_pretrain_phase_leaves_the_discriminator_alone(data_dir, tmp_path):
    run = tmp_path / "p"
    train_color(ColorRecipe(data=str(data_dir), out=str(run), width=8, disc_width=8, batch_size=4,
                            max_steps=2, pretrain_steps=2, device="cpu", threads=1))
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["opt_d"]["state"] == {}  # D's optimizer never stepped
    assert ckpt["opt_g"]["state"]  # G's did


def test_scheduled_lr_and_ema_update():
    from colorsr_cli.train.color import scheduled_lr, update_ema

    recipe = ColorRecipe(data="", out="", lr=1.0, lr_decay_start=0.5)
    assert [scheduled_lr(recipe, s, 10) for s in (0, 4, 5, 6, 9)] == [1.0, 1.0, 1.0, 0.8, 0.2]
    assert scheduled_lr(ColorRecipe(data="", out="", lr=1.0), 9, 10) == 1.0
    avg, live = torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    with torch.no_grad():
        avg.weight.fill_(1.0)
        live.weight.fill_(3.0)
        live.running_mean.fill_(7.0)
    update_ema(avg, live, 0.75)
    assert torch.allclose(avg.weight, torch.full((2,), 1.5))  # 0.75 * 1 + 0.25 * 3
    assert torch.equal(avg.running_mean, live.running_mean)  # buffers are copied


def test_recompute_batch_norm_measures_the_inputs_and_spares_frozen_layers():
    from colorsr_cli.train.color import recompute_batch_norm

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.frozen, self.norm = torch.nn.BatchNorm2d(1), torch.nn.BatchNorm2d(1)

        def train(self, mode=True):
            super().train(mode)
            self.frozen.eval()  # as a frozen encoder keeps its statistics
            return self

        def forward(self, x):
            return self.norm(x + self.frozen(x) * 0)

    net = Net().eval()
    with torch.no_grad():
        net.frozen.running_mean.fill_(5.0)
        net.norm.running_mean.fill_(9.0)
    # two batches of 2: means 1 and 3 -> 2; per-batch unbiased variances averaged
    x = torch.tensor([0.0, 2.0, 2.0, 4.0]).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    recompute_batch_norm(net, x, 2, torch.device("cpu"))
    assert torch.allclose(net.norm.running_mean, torch.tensor([2.0]))
    expected_var = (x[:2].var(unbiased=True) + x[2:].var(unbiased=True)) / 2
    assert torch.allclose(net.norm.running_var, expected_var.view(1))
    assert net.frozen.running_mean.item() == 5.0  # left alone
    assert net.norm.momentum == 0.1 and not net.training  # settings and mode restored


def test_color_ema_keeps_its_own_batch_norm_statistics(data_dir, tmp_path):
    """The averaged generator's BatchNorm statistics are measured on its own weights: after a
    run they differ from the live generator's (a copy of those would describe other weights)."""
    run = tmp_path / "e"
    train_color(ColorRecipe(data=str(data_dir), out=str(run), width=8, disc_width=8, batch_size=4,
                            max_steps=4, val_every=4, ema=0.5, lr=1e-2, device="cpu", threads=1))
    ckpt = torch.load(run / "last.pt", weights_only=True)
    means = [k for k in ckpt["G"] if k.endswith("running_mean")]
    assert means
    assert any(not torch.allclose(ckpt["G"][k], ckpt["G_ema"][k]) for k in means)
    best, _ = load_weight_file(run / "best.pt")  # validated after the same refresh
    assert all(torch.equal(best.state_dict()[k], ckpt["G_ema"][k]) for k in means)


def test_mixed_precision_only_where_bf16_is_native(monkeypatch):
    from colorsr_cli import devices
    from colorsr_cli.train.distributed import use_mixed_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_mixed_precision(cuda, True) and not use_mixed_precision(cuda, False)
    assert not use_mixed_precision(torch.device("mps"), True)
    for native in (True, False):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda native=native: native)
        assert use_mixed_precision(cpu, True) is native
        assert not use_mixed_precision(cpu, False)


def test_native_resample_shows_small_photos_as_the_evaluation_protocol_does():
    from colorsr_cli.evaluate import protocol_pair
    from colorsr_cli.train.color import center_sample, photo_to_sample, resample_via_enlargement

    photo = np.random.default_rng(7).random((64, 64, 3), dtype=np.float32)  # fine detail
    truth, _ = protocol_pair(photo)
    protocol_view = torch.nn.functional.interpolate(truth[None], size=(64, 64), mode="area")[0]
    softened = resample_via_enlargement(photo)
    assert np.abs(softened - protocol_view.permute(1, 2, 0).numpy()).max() < 1e-5
    assert np.abs(softened - photo).mean() > 0.05  # it softens a photo with detail
    assert torch.equal(center_sample(photo, 64, soften=True), torch.from_numpy(
        softened.transpose(2, 0, 1).copy()))
    assert torch.equal(center_sample(photo, 64), torch.from_numpy(photo.transpose(2, 0, 1).copy()))

    def view(img, p, seed=3):
        return photo_to_sample(img, 64, np.random.default_rng(seed), p)

    # Off (the default) draws nothing extra, so older runs resume on the same random stream.
    assert torch.equal(view(photo, 0.0), photo_to_sample(photo, 64, np.random.default_rng(3)))
    on = view(photo, 1.0)
    assert any(torch.allclose(on, torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1))))
               for v in (softened, softened[:, ::-1]))
    # A larger photo is area-reduced already and is never resampled again.
    big = photo_like(96, 128, 8).astype(np.float32) / 255
    assert torch.equal(view(big, 1.0), view(big, 0.0))


def test_resume_with_a_new_validation_view_drops_the_old_best(data_dir, tmp_path):
    from colorsr_cli.train.runlog import Reporter

    common = dict(data=str(data_dir), out=str(tmp_path / "r"), width=8, disc_width=8, batch_size=4,
                  device="cpu", threads=1, val_every=2)
    train_color(ColorRecipe(max_steps=2, **common))
    assert torch.load(tmp_path / "r" / "last.pt", weights_only=True)["best_val"] < float("inf")
    events = []
    train_color(ColorRecipe(max_steps=3, native_resample=1.0, **common), resume=True,
                reporter=Reporter(on_event=events.append))
    assert any("not comparable" in e for e in events)
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert ckpt["val_view"] == {"native_resample": True}
    log = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    vals = [e for e in log if "val_l1" in e]
    assert vals[-1]["step"] == 3 and ckpt["best_val"] == vals[-1]["val_l1"]  # whether or not lower
    # Resuming again with the same view keeps the best; the option is recorded as changed once
    # against recipe.json, where a run started before the option existed counts as its default.
    events.clear()
    train_color(ColorRecipe(max_steps=4, native_resample=1.0, **common), resume=True,
                reporter=Reporter(on_event=events.append))
    assert not any("not comparable" in e for e in events)
    recipe = json.loads((tmp_path / "r" / "recipe.json").read_text())
    del recipe["native_resample"]
    (tmp_path / "r" / "recipe.json").write_text(json.dumps(recipe))
    train_color(ColorRecipe(max_steps=5, **common), resume=True)
    log = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [e["changed"] for e in log if e.get("event") == "resumed"][-1] == {"max_steps": [2, 5]}


def test_sr_lr_kernels():
    from colorsr_cli.train.sr import downsample, hr_lr_pair

    img = np.random.default_rng(5).random((40, 48, 3), dtype=np.float32)
    plain = np.clip(cv2.resize(img, (12, 10), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.allclose(downsample(img, 4, "bicubic"), plain, atol=1e-6)
    area = downsample(img, 4, "area")
    assert np.allclose(area, img.reshape(10, 4, 12, 4, 3).mean((1, 3)), atol=1e-6)
    assert np.abs(area - downsample(img, 4, "bicubic")).mean() > 0.01
    with pytest.raises(ValueError, match="LR kernel"):
        downsample(img, 4, "nearest")
    # The default keeps the random stream (older runs resume identically); "mixed" uses both.
    lr_default, hr_default = hr_lr_pair(img, 32, 4, np.random.default_rng(1))
    lr_area, hr_area = hr_lr_pair(img, 32, 4, np.random.default_rng(1), "area")
    assert torch.equal(lr_default, lr_area) and torch.equal(hr_default, hr_area)
    kinds = set()
    for seed in range(12):
        lr, hr = hr_lr_pair(img, 32, 4, np.random.default_rng(seed), "mixed")
        crop = hr.permute(1, 2, 0).numpy()
        for kind in ("area", "bicubic"):
            if torch.allclose(lr, torch.from_numpy(downsample(crop, 4, kind).transpose(2, 0, 1).copy())):
                kinds.add(kind)
    assert kinds == {"area", "bicubic"}


def test_sr_training_with_an_unknown_lr_kernel_is_a_clear_error(data_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown lr kernel 'box'"):
        train_sr(SRRecipe(data=str(data_dir), out=str(tmp_path / "s"), hr_size=32, lr_kernel="box",
                          device="cpu", max_steps=1))


def test_planned_steps_says_when_the_epochs_end_the_run_first():
    from colorsr_cli.train.runlog import Reporter
    from colorsr_cli.train.schedule import planned_steps

    events = []
    reporter = Reporter(on_event=events.append)
    assert planned_steps(3, 10, None, reporter) == 30 and not events
    assert planned_steps(3, 10, 25, reporter) == 25 and not events
    assert planned_steps(3, 10, 40, reporter) == 30
    assert events == ["note: 3 epochs of 10 steps end the run at step 30, before --max-steps 40 "
                      "(raise --epochs to reach it)"]


def test_euclidean_pixel_loss_is_the_ab_error_and_trains(data_dir, tmp_path):
    """--pixel-loss euclidean: the loss is the evaluation's ab error (per-pixel distance in the
    ab plane) of the normalised maps, it is logged as ab_dist, it falls on a fixed batch, and a
    run with it trains through both phases."""
    from colorsr_cli.metrics import ab_error
    from colorsr_cli.train.color import merge_lab
    from colorsr_cli.train.losses import ab_distance
    from colorsr_cli.train.runlog import Reporter

    g = torch.Generator().manual_seed(0)
    L = torch.rand(2, 1, 8, 8, generator=g) * 0.6 - 0.3
    a, b = ((torch.rand(2, 2, 8, 8, generator=g) - 0.5) * 0.3 for _ in range(2))
    assert ab_distance(a, b).item() == pytest.approx(
        torch.linalg.vector_norm(a - b, dim=1).mean().item(), rel=1e-4)
    # In Lab units (x110), for colours inside the sRGB gamut, it is the metric's ab error.
    rgb_a, rgb_b = merge_lab(L, a), merge_lab(L, b)
    assert 0 < rgb_a.min() and rgb_a.max() < 1 and 0 < rgb_b.min() and rgb_b.max() < 1
    assert ab_distance(a, b).item() * 110 == pytest.approx(ab_error(rgb_a, rgb_b).mean().item(), rel=1e-3)

    torch.manual_seed(0)
    G, D = ColorizerUNet(ColorizerConfig(width=8)), PatchDiscriminator(PatchDiscriminatorConfig(width=8))
    opt_g = torch.optim.Adam(G.parameters(), 1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    rgb = _batch()
    loss = ChromaLoss(100.0, "euclidean")
    history = [pix2pix_step(G, D, opt_g, opt_d, rgb, loss, False, 1.0) for _ in range(40)]
    assert all("ab_dist" in h and "l1" not in h for h in history)
    assert np.mean([h["ab_dist"] for h in history[-5:]]) < 0.7 * np.mean([h["ab_dist"] for h in history[:5]])

    logged = []
    common = dict(data=str(data_dir), width=8, disc_width=8, batch_size=4, log_every=1, device="cpu",
                  threads=1, pretrain_steps=3, disc_sigmoid=False, pixel_loss="euclidean")
    train_color(ColorRecipe(out=str(tmp_path / "run"), max_steps=6, **common),
                reporter=Reporter(lambda step, total, metrics: logged.append(metrics)))
    assert len(logged) == 6 and all(np.isfinite(m["ab_dist"]) for m in logged)
    assert "adv" not in logged[0] and "adv" in logged[-1]  # pixel-loss-only pre-training, then the GAN
    with pytest.raises(ValueError, match="unknown pixel loss 'l2'"):
        train_color(ColorRecipe(out=str(tmp_path / "bad"), max_steps=2, **(common | {"pixel_loss": "l2"})))


def test_mode_pixel_loss_is_welsch_and_picks_the_likelier_colour_where_l1_blends(data_dir, tmp_path):
    """--pixel-loss mode: Welsch's loss of the ab distance (hand-computed values, pixel weights),
    whose best single guess for a patch that is green 40 % of the time, orange 35 % and red 25 %
    is the green, where L1's (the per-channel median) is orange; the recipe carries
    --mode-scale into the loss, and a run with it trains."""
    from colorsr_cli.train.losses import mode_seeking
    from colorsr_cli.train.runlog import Reporter

    fake = torch.zeros(1, 2, 1, 2)
    real = torch.tensor([[[[0.3, 0.0]], [[0.4, 0.1]]]])  # distances 0.5 and 0.1
    s = 0.2
    expected = [s * (1 - np.exp(-d * d / (2 * s * s))) for d in (0.5, 0.1)]
    assert mode_seeking(fake, real, scale=s).item() == pytest.approx(np.mean(expected), rel=1e-5)
    weight = torch.tensor([[[2.0, 0.5]]])
    assert mode_seeking(fake, real, weight, scale=s).item() == pytest.approx(
        (2 * expected[0] + 0.5 * expected[1]) / 2, rel=1e-5)

    # Normalised ab of foliage green (-20, 30) 40 % of the time, orange-brown (20, 30) 35 % and
    # a purple-red (35, -5) 25 %: warm colours outweigh the green together, not one by one.
    green, orange, red = (torch.tensor(c) / 110 for c in ([-20.0, 30.0], [20.0, 30.0], [35.0, -5.0]))
    targets = torch.stack([green] * 8 + [orange] * 7 + [red] * 5)[:, :, None, None]

    def best_guess(loss_fn):
        guess = torch.zeros(1, 2, 1, 1, requires_grad=True)
        with torch.no_grad():
            guess += torch.tensor([0.0, 30.0]).view(1, 2, 1, 1) / 110  # halfway
        opt = torch.optim.Adam([guess], lr=2e-3)
        for _ in range(1500):
            opt.zero_grad()
            loss_fn(guess.expand_as(targets), targets).backward()
            opt.step()
        return guess.detach().flatten() * 110

    assert best_guess(lambda f, r: mode_seeking(f, r, scale=15 / 110)).tolist() == pytest.approx(
        [-20, 30], abs=2)  # the likeliest colour
    assert best_guess(lambda f, r: (f - r).abs().mean()).tolist() == pytest.approx(
        [20, 30], abs=2)  # L1's per-channel median: orange

    loss = ChromaLoss(100.0, "mode", mode_scale=5.0)
    out = {"ab": torch.zeros(1, 2, 1, 2)}
    total, logs = loss(out, real, None)
    assert "mode" in logs
    assert total.item() == pytest.approx(100 * mode_seeking(out["ab"], real, scale=5 / 110).item())

    logged = []
    common = dict(data=str(data_dir), width=8, disc_width=8, batch_size=4, log_every=1, device="cpu",
                  threads=1, pretrain_steps=3, pixel_loss="mode", mode_scale=20.0)
    train_color(ColorRecipe(out=str(tmp_path / "run"), max_steps=4, **common),
                reporter=Reporter(lambda step, total, metrics: logged.append(metrics)))
    assert len(logged) == 4 and all(np.isfinite(m["mode"]) for m in logged)


def test_cached_photos_train_exactly_as_decoded_ones(data_dir, tmp_path):
    """--cache decodes each photo once into memory: the same pixels as a fresh decode (8-bit
    photos held as uint8, anything else as float32), a bad file skipped with a warning, and a
    run (with data-loading processes sharing the cache) identical to one without it."""
    from colorsr_cli.train.data import PhotoFolder
    from colorsr_cli.train.runlog import Reporter

    deep = tmp_path / "deep"
    deep.mkdir()
    Image.fromarray((np.arange(48 * 40).reshape(48, 40) * 7 % 65536).astype(np.uint16)).save(deep / "g16.png")
    shutil.copy(data_dir / "tiny00.jpg", deep)
    (deep / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    events = []
    photos = PhotoFolder(deep, Reporter(on_event=events.append))
    fresh = {p.name: photos.load(i) for i, p in enumerate(photos.paths) if p.name != "bad.jpg"}
    held = photos.preload(threads=2)
    assert any("bad.jpg" in e for e in events)
    by_name = {p.name: i for i, p in enumerate(photos.paths)}
    assert photos._cache[by_name["tiny00.jpg"]].dtype == np.uint8
    assert photos._cache[by_name["g16.png"]].dtype == np.float32  # 16-bit: kept exact
    assert held == 64 * 64 * 3 + 48 * 40 * 3 * 4
    for name, img in fresh.items():
        assert np.array_equal(photos.load(by_name[name]), img)
    assert photos.load(by_name["bad.jpg"]).shape[:2] in {(64, 64), (48, 40)}  # the next readable one

    common = dict(data=str(data_dir), width=8, disc_width=8, batch_size=4, max_steps=3, log_every=1,
                  device="cpu", threads=1, workers=2)
    train_color(ColorRecipe(out=str(tmp_path / "plain"), **common))
    train_color(ColorRecipe(out=str(tmp_path / "cached"), cache_photos=True, **common))
    a = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cached" / "last.pt", weights_only=True)
    assert _states_equal(a["G"], b["G"]) and _states_equal(a["D"], b["D"])


def test_init_starts_the_generator_from_a_weight_file(data_dir, tmp_path):
    """--init: the generator starts from an exported colouriser of the same architecture (its
    chroma gain not carried over); a file of another width is a clear error naming both."""
    from colorsr_cli.errors import WeightsError
    from colorsr_cli.export import with_chroma_gain
    from colorsr_cli.train.color import init_generator
    from colorsr_cli.weightfile import save_weight_file

    torch.manual_seed(3)
    source = with_chroma_gain(ColorizerUNet(ColorizerConfig(width=8)), 0.9)
    save_weight_file(source, tmp_path / "init.pt")
    target = ColorizerUNet(ColorizerConfig(width=8))
    init_generator(target, tmp_path / "init.pt")
    assert _states_equal(target.state_dict(), source.state_dict()) and target.config.chroma_gain == 1.0
    with pytest.raises(WeightsError, match="width 8, the recipe asks for width 16"):
        init_generator(ColorizerUNet(ColorizerConfig(width=16)), tmp_path / "init.pt")
    from colorsr_cli.models import build_model
    save_weight_file(build_model("colorizer_ensemble", {"members": [{"width": 8}] * 2}), tmp_path / "e.pt")
    with pytest.raises(WeightsError, match="not a single colouriser.*colorizer_ensemble"):
        init_generator(ColorizerUNet(ColorizerConfig(width=8)), tmp_path / "e.pt")

    # A run that starts from it: its pre-training's first validation is that of the file's model
    # (step 0 -> 1 changes little), far better than a random start's.
    common = dict(data=str(data_dir), width=8, disc_width=8, batch_size=4, max_steps=1, val_every=1,
                  device="cpu", threads=1, pretrain_steps=1, lr=1e-6)
    train_color(ColorRecipe(out=str(tmp_path / "first"), max_steps=30, pretrain_steps=30, val_every=30,
                            **{k: v for k, v in common.items() if k not in ("max_steps", "pretrain_steps",
                                                                          "val_every", "lr")}))
    export_run(tmp_path / "first", tmp_path / "first.pt", "first", half=False)
    val = {}
    for name, init in (("random", None), ("init", str(tmp_path / "first.pt"))):
        train_color(ColorRecipe(out=str(tmp_path / name), init_weights=init, **common))
        records = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        val[name] = next(r["val_l1"] for r in records if "val_l1" in r)
    first = json.loads((tmp_path / "first" / "metrics.jsonl").read_text().splitlines()[-1])
    assert val["init"] == pytest.approx(first["val_l1"], rel=0.02) and val["init"] < 0.9 * val["random"]


def test_holdout_split_does_not_follow_the_training_seed(data_dir, tmp_path, monkeypatch):
    import colorsr_cli.train.data as data_module
    from colorsr_cli.train.data import split_holdout

    seen, held = [], []

    def spy(n, fraction, seed, **kw):
        seen.append(seed)
        train, val = split_holdout(n, fraction, seed, **kw)
        held.append(val)
        return train, val

    monkeypatch.setattr(data_module, "split_holdout", spy)
    common = dict(data=str(data_dir), width=8, disc_width=8, batch_size=4, device="cpu", threads=1)
    # Runs that differ in --seed hold out the same photos (a fine-tune with another seed must not
    # validate on photos its starting point trained on); --holdout-seed picks another split.
    train_color(ColorRecipe(out=str(tmp_path / "a"), max_steps=1, seed=0, **common))
    train_color(ColorRecipe(out=str(tmp_path / "b"), max_steps=1, seed=7, **common))
    train_color(ColorRecipe(out=str(tmp_path / "c"), max_steps=1, seed=7, holdout_seed=2, **common))
    assert seen == [0, 0, 2]
    assert held[0] == held[1] != held[2]  # and the photos held out do differ between the seeds
    # Resumed without its --holdout-seed, a run keeps the split its recipe.json records.
    seen.clear()
    train_color(ColorRecipe(out=str(tmp_path / "c"), max_steps=2, seed=7, **common), resume=True)
    assert seen == [2]
    log = [json.loads(line) for line in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert [e["changed"] for e in log if e.get("event") == "resumed"][-1] == {"max_steps": [1, 2]}


def test_bins_head_predicts_a_distribution_and_travels_in_its_weight_file(tmp_path):
    """A bins head (Zhang et al. 2016) predicts logits over the gamut bins at 1/head_stride of
    the input, decoded by the annealed mean into ab within the gamut's range; the bin centres
    travel in the weight file, so the loaded model gives the same colours."""
    from colorsr_cli.chroma_bins import annealed_mean, gamut_bins
    from colorsr_cli.weightfile import save_weight_file

    torch.manual_seed(0)
    bins = gamut_bins()
    G = ColorizerUNet(ColorizerConfig(width=8, depth=3, head="bins", bins=len(bins), head_stride=2,
                                      global_features=True, classes=5))
    G.ab_bins.copy_(bins)
    G.eval()
    L = torch.rand(2, 1, 32, 32) * 2 - 1
    out = G(L, details=True)
    assert out["logits"].shape == (2, len(bins), 16, 16) and out["classes"].shape == (2, 5)
    coarse = annealed_mean(out["logits"], bins, 0.38) / 110
    assert torch.allclose(out["ab"], torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear"))
    assert out["ab"].abs().max() <= 1.0
    save_weight_file(G, tmp_path / "bins.pt")
    loaded, _ = load_weight_file(tmp_path / "bins.pt")
    assert loaded.config.head == "bins" and torch.equal(loaded.ab_bins, bins)
    assert torch.allclose(loaded.eval()(L), G(L), atol=1e-6)
    with pytest.raises(ValueError, match="head_stride"):
        ColorizerConfig(depth=3, head="bins", bins=4, head_stride=16)


def test_bins_recipe_trains_with_classes_and_a_holdout_of_larger_photos(data_dir, tmp_path):
    """--head bins with --class-folders: the rebalanced cross-entropy and the class loss are
    logged and finite, then the GAN phase; the hold-out takes only the larger photos; best.pt is
    chosen by hue hit and restores like any colouriser."""
    from colorsr_cli.chroma_bins import gamut_bins
    from colorsr_cli.train.runlog import Reporter

    data = tmp_path / "data"
    for label in ("cat", "dog"):
        (data / "labelled").mkdir(parents=True, exist_ok=True)
        for k in range(6):
            shutil.copy(data_dir / f"tiny{k + (6 if label == 'dog' else 0):02d}.jpg",
                        data / "labelled" / f"{label}_{k}.jpg")
    for k in range(36):
        Image.fromarray(photo_like(72, 80, 300 + k)).save(data / f"big{k}.png")
    logged, events = [], []
    recipe = ColorRecipe(data=str(data), out=str(tmp_path / "run"), width=8, depth=3, disc_width=8,
                         batch_size=4, max_steps=6, pretrain_steps=3, log_every=1, val_every=3,
                         device="cpu", threads=1, head="bins", class_folders="labelled",
                         holdout_min_side=70, val_fraction=0.25, select_by="hue_hit")
    train_color(recipe, reporter=Reporter(lambda s, t, m: logged.append(m), events.append))
    assert all(np.isfinite(m["ce"]) and np.isfinite(m["l1"]) for m in logged)
    assert any("cls" in m for m in logged)
    assert "adv" not in logged[0] and "adv" in logged[-1]
    assert any("2 classes under labelled" in e for e in events)
    assert any("48 photos found" in e and "16 held out" in e for e in events)  # only the 36 larger ones
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if "hue_hit" in r]
    assert len(scored) == 2 and all(0 <= r["hue_hit"] <= 1 and 0 <= r["left_gray"] <= 1 for r in scored)
    model, meta = load_weight_file(tmp_path / "run" / "best.pt")
    assert model.config.head == "bins" and torch.equal(model.ab_bins, gamut_bins())
    restored = Restorer(model, None, RestoreOptions(mode="color-only", tile=0), torch.device("cpu"))
    out = restored.restore([torch.rand(1, 64, 64)])
    assert out[0].shape == (3, 256, 256) and torch.isfinite(out[0]).all()  # color-only: bicubic x4


def test_init_of_a_bins_model_from_a_regression_file_keeps_the_trunk(tmp_path):
    from colorsr_cli.train.color import init_generator
    from colorsr_cli.weightfile import save_weight_file

    torch.manual_seed(1)
    source = ColorizerUNet(ColorizerConfig(width=8))
    save_weight_file(source, tmp_path / "reg.pt")
    target = ColorizerUNet(ColorizerConfig(width=8, head="bins", bins=262, head_stride=2, classes=3))
    fresh = init_generator(target, tmp_path / "reg.pt")
    assert {k.split(".")[0] for k in fresh} == {"head", "ab_bins", "classifier"}
    assert torch.equal(target.down[0][0][0].weight, source.down[0][0][0].weight)


def test_rebalanced_regression_weights_each_pixel_by_its_colour():
    """--rebalance-mix with the regression head: the L1 of each pixel is weighted by the
    rebalancing weight of its truth colour's bin (hand-computed on two pixels)."""
    from colorsr_cli.chroma_bins import gamut_bins, nearest_bin
    from colorsr_cli.train.losses import weighted_l1

    real = torch.tensor([0.0, 0.5, 0.0, -0.2]).view(1, 2, 1, 2)  # normalised ab: gray, (55, -22)
    fake = torch.zeros(1, 2, 1, 2)
    weights = torch.ones(len(gamut_bins()))
    colourful = nearest_bin(real * 110)[0, 0, 1]
    weights[colourful] = 3.0
    total, logs = ChromaLoss(1.0, "l1", bin_weights=weights)({"ab": fake}, real, None)
    # pixel 1: |0| + |0| -> 0 (weight 1); pixel 2: (0.5 + 0.2) / 2 = 0.35, weight 3; mean of 2.
    assert total.item() == pytest.approx(3 * 0.35 / 2)
    assert weighted_l1(fake, real).item() == pytest.approx(0.35 / 2)
    plain, _ = ChromaLoss(1.0, "l1")({"ab": fake}, real, None)
    assert plain.item() == pytest.approx(0.35 / 2)


def test_both_trainers_say_how_many_photos_they_found_and_held_out(data_dir, tmp_path):
    import re

    from colorsr_cli.train.runlog import Reporter

    events = []
    reporter = Reporter(on_event=events.append)
    train_color(ColorRecipe(data=str(data_dir), out=str(tmp_path / "c"), max_steps=1, width=8, disc_width=8,
                            batch_size=4, device="cpu", threads=1), reporter=reporter)
    train_sr(SRRecipe(data=str(data_dir), out=str(tmp_path / "s"), max_steps=1, hr_size=32, channels=8,
                      blocks=1, disc_width=8, batch_size=2, perceptual="features", device="cpu", threads=1),
             reporter=reporter)
    found = [re.search(r"(\d+) photos found in .*: (\d+) for training, (\d+) held out for validation", e)
             for e in events]
    counts = [tuple(map(int, m.groups())) for m in found if m]
    assert len(counts) == 2, events
    assert all(n == train + val and val >= 1 for n, train, val in counts)
    assert counts[0][0] == 31  # 24 + 6 photos and the corrupt file (skipped when decoded)


def test_paired_crop_takes_the_same_view_of_input_and_target():
    """The target crop is the x4 view of the input crop, flipped and rotated alike: with a target
    that is the input's nearest-neighbour x4 enlargement, every crop pair keeps that relation."""
    from colorsr_cli.train.sr import paired_crop

    rng = np.random.default_rng(0)
    x = rng.random((20, 24, 3), dtype=np.float32)
    y = x.repeat(4, axis=0).repeat(4, axis=1)
    for _ in range(12):
        lo, hi = paired_crop(x, y, 32, 4, rng)
        assert lo.shape == (3, 8, 8) and hi.shape == (3, 32, 32)
        assert torch.equal(hi, lo.repeat_interleave(4, 1).repeat_interleave(4, 2))
    lo, hi = paired_crop(x, y, 32, 4, None)
    assert torch.equal(lo, torch.from_numpy(x[6:14, 8:16]).permute(2, 0, 1))


def test_sr_training_on_pairs_learns_the_targets_and_checks_them(tmp_path):
    """--pairs trains G to map lr/ to target/ (here a fixed mapping: the input's nearest-neighbour
    x4 enlargement, which plain SR data would never ask for); lr/ and target/ must match."""
    root = tmp_path / "pairs"
    (root / "lr").mkdir(parents=True)
    (root / "target").mkdir()
    rng = np.random.default_rng(0)
    for k in range(12):
        x = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(x).save(root / "lr" / f"{k:02d}.png")
        Image.fromarray(x.repeat(4, 0).repeat(4, 1)).save(root / "target" / f"{k:02d}.png")
    common = dict(data=str(root), pairs=True, hr_size=32, channels=8, blocks=1, head_kernel=3,
                  tail_kernel=3, global_skip=True, upsampler="lowres", disc_width=8, batch_size=4,
                  lr=2e-3, perceptual="features", val_every=60, log_every=20, device="cpu",
                  threads=1, val_fraction=0.25)
    run = train_sr(SRRecipe(out=str(tmp_path / "run"), max_steps=60, pretrain_steps=60, **common))
    G, meta = load_weight_file(run / "best.pt")
    lr = torch.from_numpy(rng.random((16, 16, 3), dtype=np.float32)).permute(2, 0, 1)[None]
    target = lr.repeat_interleave(4, 2).repeat_interleave(4, 3)
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
    with torch.no_grad():
        out = G.eval()(lr)
    assert (out - target).abs().mean() < 0.7 * (bicubic - target).abs().mean()

    # Validation sees whole pairs whatever --hr-size: the same start scores the same.
    first_val = {}
    for hr_size in (32, 48):
        quick = dict(common, hr_size=hr_size, val_every=1, lr=1e-12)
        done = train_sr(SRRecipe(out=str(tmp_path / f"hr{hr_size}"), max_steps=1, pretrain_steps=1, **quick))
        records = [json.loads(x) for x in (done / "metrics.jsonl").read_text().splitlines()]
        first_val[hr_size] = next(r["val_l1"] for r in records if "val_l1" in r)
    assert first_val[32] == pytest.approx(first_val[48], rel=1e-5)

    (root / "target" / "03.png").unlink()
    with pytest.raises(Exception, match="same file names"):
        train_sr(SRRecipe(out=str(tmp_path / "bad"), max_steps=1, **common))


def test_the_recipes_offer_exactly_the_losses_the_trainers_have():
    """--pixel-loss and --perceptual are checked by the recipe (at once, before a run folder is
    made) against the choices it declares; those must be the losses that exist."""
    from dataclasses import fields

    from colorsr_cli.train.losses import PERCEPTUAL, PIXEL_LOSSES

    choices = {f.name: f.metadata["choices"] for f in fields(ColorRecipe) + fields(SRRecipe)}
    assert set(choices["pixel_loss"]) == set(PIXEL_LOSSES)
    assert set(choices["perceptual"]) == set(PERCEPTUAL)


def test_scene_split_holds_out_the_trainers_own_split_of_the_chosen_collections(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    from colorsr_cli.train.data import PhotoFolder, split_photos
    from colorsr_cli.train.runlog import Reporter

    data = tmp_path / "train"
    for folder, count in (("tinyimagenet", 40), ("bsds500", 30), ("sun80", 30)):
        (data / folder).mkdir(parents=True)
        for k in range(count):
            Image.fromarray(photo_like(16, 16, k)).save(data / folder / f"{k:03d}.png")
    module = load_tool("scene_split")
    monkeypatch.setattr(sys, "argv", ["scene_split", str(data), str(tmp_path / "out"),
                                      "--val-fraction", "0.1"])
    module.main()
    photos = PhotoFolder(data, Reporter())
    held = {Path(photos.paths[i]).relative_to(data) for i in split_photos(photos, 0.1, 0)[1]}
    found = {part: {p.relative_to(tmp_path / "out" / part) for p in (tmp_path / "out" / part).rglob("*.png")}
             for part in ("train", "val")}
    assert found["val"] == {p for p in held if p.parts[0] != "tinyimagenet"} and found["val"]
    assert len(found["train"]) + len(found["val"]) == 60 and not found["train"] & found["val"]
    assert all((tmp_path / "out" / "train" / p).is_symlink() for p in found["train"])
