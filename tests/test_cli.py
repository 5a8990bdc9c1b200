import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from colorsr_cli.cli import app

runner = CliRunner()


def _digest(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _restore(args, tiny_weights):
    return runner.invoke(app, ["restore", *args, "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1]),
                               "--quiet"])


def test_restore_folder_mirrors_tree_and_scales_4x(tiny_weights, photo_folder, tmp_path):
    before = _digest(photo_folder)
    result = _restore([str(photo_folder), "--out", str(tmp_path / "out")], tiny_weights)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "gray64.png").size == (256, 256)
    colour = Image.open(tmp_path / "out" / "sub" / "colour.jpg")
    assert colour.size == (1280, 960) and colour.format == "JPEG"
    alpha = Image.open(tmp_path / "out" / "alpha.png")
    assert alpha.mode == "RGBA" and alpha.size == (192, 160)
    src_alpha = np.asarray(Image.open(photo_folder / "alpha.png"))[..., 3].astype(float)
    out_alpha = np.asarray(alpha.resize((48, 40), Image.BOX))[..., 3].astype(float)
    assert np.abs(out_alpha - src_alpha).mean() < 3
    assert _digest(photo_folder) == before, "inputs must never be modified"
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_rerun_skips_and_overwrite_redoes(tiny_weights, photo_folder, tmp_path):
    out = tmp_path / "out"
    assert _restore([str(photo_folder), "-o", str(out)], tiny_weights).exit_code == 0
    second = _restore([str(photo_folder), "-o", str(out), "--json"], tiny_weights)
    summary = json.loads(second.stdout)
    assert summary["done"] == 0 and summary["skipped"] == 3
    third = _restore([str(photo_folder), "-o", str(out), "--json", "--overwrite"], tiny_weights)
    assert json.loads(third.stdout)["done"] == 3


def test_bad_file_is_reported_and_the_rest_goes_on(tiny_weights, photo_folder, tmp_path):
    (photo_folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    result = _restore([str(photo_folder), "-o", str(tmp_path / "out"), "--json"], tiny_weights)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["done"] == 3 and summary["failed"] == 1
    assert "broken.jpg" in summary["failures"][0]["file"]
    failed_lines = [line for line in result.stderr.splitlines() if line.startswith("failed")]
    assert len(failed_lines) == 1 and "broken.jpg" in failed_lines[0]


def test_modes_ext_suffix_and_scale(tiny_weights, photo_folder, tmp_path):
    img = str(photo_folder / "gray64.png")
    r = _restore([img, "-o", str(tmp_path / "c"), "--color-only", "--scale", "1", "--ext", "webp"],
                 tiny_weights)
    assert r.exit_code == 0, r.output
    out = Image.open(tmp_path / "c" / "gray64.webp")
    assert out.size == (64, 64) and out.format == "WEBP"
    r = _restore([str(photo_folder / "sub" / "colour.jpg"), "-o", str(tmp_path / "s"), "--sr-only",
                  "--scale", "2", "--suffix", "_x2"], tiny_weights)
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "s" / "colour_x2.jpg").size == (640, 480)


def test_output_that_would_overwrite_input_is_refused(tiny_weights, photo_folder):
    before = _digest(photo_folder)
    r = _restore([str(photo_folder / "gray64.png"), "--suffix", ""], tiny_weights)
    assert r.exit_code == 1
    assert "overwrite" in r.stderr
    assert _digest(photo_folder) == before


def test_default_suffix_writes_next_to_input(tiny_weights, photo_folder):
    r = _restore([str(photo_folder / "gray64.png")], tiny_weights)
    assert r.exit_code == 0, r.output
    assert (photo_folder / "gray64_colorsr.png").exists()


def test_glob_and_missing_path(tiny_weights, photo_folder, tmp_path):
    r = _restore([str(photo_folder / "*.png"), str(tmp_path / "nope.png"), "-o", str(tmp_path / "g"),
                  "--json"], tiny_weights)
    summary = json.loads(r.stdout)
    assert summary["done"] == 2 and summary["failed"] == 1 and r.exit_code == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda_is_a_clear_error(tiny_weights, photo_folder):
    r = _restore([str(photo_folder), "--device", "cuda"], tiny_weights)
    assert r.exit_code == 2
    assert "CUDA is not available" in r.stderr


def test_unknown_weights_name(photo_folder):
    r = runner.invoke(app, ["restore", str(photo_folder), "-w", "no-such-model"])
    assert r.exit_code == 2 and "unknown weights" in r.stderr


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "colorsr_cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "restore" in r.stdout


def test_weights_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORSR_CACHE", str(tmp_path))
    r = runner.invoke(app, ["weights", "list", "--json"])
    assert r.exit_code == 0
    names = {e["name"] for e in json.loads(r.stdout)}
    assert "vgg19-imagenet" in names
    r = runner.invoke(app, ["weights", "path"])
    assert r.stdout.strip() == str(tmp_path)


def test_cli_reference_is_in_sync():
    """docs/cli.md is generated from the Typer app; regenerate it with
    `python -m typer colorsr_cli.cli utils docs --name colorsr --output docs/cli.md`."""
    from pathlib import Path

    cmd = [sys.executable, "-m", "typer", "colorsr_cli.cli", "utils", "docs", "--name", "colorsr"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    committed = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    assert r.stdout.strip() == committed.strip(), "docs/cli.md is stale: regenerate it (see docstring)"


def test_doctor_reports_the_key_lines():
    r = runner.invoke(app, ["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(r.stdout)}
    assert {"versions", "cpu", "ffmpeg", "cache"} <= set(checks)
    assert "torch" in checks["versions"]["detail"]
    assert any(name.startswith("weights ") for name in checks)
    assert r.exit_code == 0  # the bundled weights verify


def test_every_command_help_has_an_example():
    import typer.main

    def leaves(cmd, path):
        if hasattr(cmd, "commands"):  # a command group
            for name, sub in cmd.commands.items():
                yield from leaves(sub, [*path, name])
        else:
            yield path, cmd

    found = list(leaves(typer.main.get_command(app), []))
    assert len(found) >= 11
    for path, cmd in found:
        assert "Example:" in (cmd.help or ""), f"colorsr {' '.join(path)} --help has no example"


def test_no_help_text_is_eaten_as_rich_markup():
    """`--help` renders help strings as rich markup: an unescaped "[word ...]" is taken for a
    style tag and silently dropped (it once turned "Steps [default: each epoch]." into
    "Steps ."). Every option's and argument's help is checked, and a rendered --help too."""
    import re

    import typer.main

    def params(cmd, path):
        for p in cmd.params:
            yield path, p
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from params(sub, [*path, name])

    tag = re.compile(r"(?<!\\)\[[a-z#/@][^\[\]]*\]")
    for path, p in params(typer.main.get_command(app), []):
        text = getattr(p, "help", None) or ""
        assert not tag.search(text), f"colorsr {' '.join(path)} {p.name}: {text!r}"
    out = runner.invoke(app, ["train", "color", "--help"], terminal_width=200).output
    flat = " ".join(re.sub("[\u2500-\u257f]", " ", out).split())  # box drawing off, unwrapped
    assert "Steps between validations (default: each epoch)." in flat


def test_ensemble_command_writes_a_colouriser_that_restores(tiny_weights, photo_folder, tmp_path):
    """`colorsr ensemble A B --out E`: E averages A's and B's chroma (A's own gain dropped, the
    given one applied), goes into a manifest, and restores; one member, or an SR file, is a
    clear error."""
    from colorsr_cli.export import with_chroma_gain
    from colorsr_cli.models import build_model
    from colorsr_cli.weightfile import load_weight_file, save_weight_file

    torch.manual_seed(1)
    a, _ = load_weight_file(tiny_weights[0])
    save_weight_file(with_chroma_gain(a, 0.9), tmp_path / "a.pt")
    b = build_model("colorizer_unet", {"width": 4, "depth": 2}).eval()
    save_weight_file(b, tmp_path / "b.pt")
    manifest = tmp_path / "weights_manifest.json"
    manifest.write_text(json.dumps({"version": 1, "models": []}))
    (tmp_path / "weights").mkdir()
    result = runner.invoke(app, ["ensemble", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out",
                                 str(tmp_path / "weights" / "e.pt"), "--chroma-gain", "0.7", "--full",
                                 "--into-manifest", str(manifest), "--name", "ens"])
    assert result.exit_code == 0, result.output
    entry = json.loads(manifest.read_text())["models"][0]
    assert entry["arch"] == "colorizer_ensemble" and entry["config"]["chroma_gain"] == 0.7
    assert len(entry["config"]["members"]) == 2 and entry["bundled"]
    e, meta = load_weight_file(tmp_path / "weights" / "e.pt")
    assert [m["chroma_gain"] for m in meta["members"]] == [0.9, 1.0]
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(e(x), (a(x) + b(x)) / 2 * 0.7, atol=1e-6)

    out = tmp_path / "out"
    result = runner.invoke(app, ["restore", str(photo_folder), "-o", str(out), "-w",
                                 str(tmp_path / "weights" / "e.pt"), "-w", str(tiny_weights[1]), "--quiet"])
    assert result.exit_code == 0, result.output
    assert list(out.rglob("*.png"))

    one = runner.invoke(app, ["ensemble", str(tmp_path / "a.pt"), "--out", str(tmp_path / "x.pt")])
    assert one.exit_code != 0 and "at least two" in one.output
    sr = runner.invoke(app, ["ensemble", str(tmp_path / "a.pt"), str(tiny_weights[1]), "--out",
                             str(tmp_path / "x.pt")])
    assert sr.exit_code != 0 and "not a single colouriser" in sr.output and "sr.pt" in sr.output
    assert not (tmp_path / "x.pt").exists()


def _chroma_gap(output_path, input_img: np.ndarray) -> float:
    """Mean |ab| difference (Lab units) between an output, brought to the input's size, and the input."""
    from skimage import color as skcolor

    out = np.asarray(Image.open(output_path).convert("RGB").resize(input_img.shape[1::-1], Image.BOX))
    return float(np.abs(skcolor.rgb2lab(out)[..., 1:] - skcolor.rgb2lab(input_img)[..., 1:]).mean())


@pytest.fixture
def mixed_album(tmp_path):
    """A colour photo, a gray one and a sepia-toned scan."""
    from tests.conftest import photo_like, toned_like

    root = tmp_path / "album"
    root.mkdir()
    images = {"colour.png": photo_like(48, 64, 1), "sepia.png": toned_like(48, 64, 8, 22, seed=2),
              "gray.png": np.repeat(photo_like(48, 64, 3, gray=True)[..., None], 3, axis=2)}
    for name, img in images.items():
        Image.fromarray(img).save(root / name)
    return root, images


def test_colour_photos_keep_their_colour_by_default_and_a_line_says_so(tiny_weights, bicubic_sr_weights,
                                                                       mixed_album, tmp_path):
    root, images = mixed_album
    runs = {}
    for colorize in ("auto", "always", "never"):
        out = tmp_path / colorize
        args = [] if colorize == "auto" else ["--colorize", colorize]
        r = runner.invoke(app, ["restore", str(root), "-o", str(out), "-w", str(tiny_weights[0]),
                                "-w", str(bicubic_sr_weights), *args])
        assert r.exit_code == 0, r.output
        runs[colorize] = r.stderr
        gaps = {name: _chroma_gap(out / name, img) for name, img in images.items()}
        kept = {name for name, gap in gaps.items() if gap < 1.0}  # measured 0.1-0.2 when kept
        assert all(gap < 1.0 or gap > 2.0 for gap in gaps.values()), gaps
        assert kept == {"auto": {"colour.png"}, "always": set(), "never": set(images)}[colorize], gaps
    assert "1 colour photo kept its colour" in " ".join(runs["auto"].split())
    assert "kept" not in runs["always"]


def test_sr_only_is_colorize_never_and_color_only_is_scale_1(tiny_weights, bicubic_sr_weights, mixed_album,
                                                             tmp_path):
    root, images = mixed_album
    args = ["-w", str(tiny_weights[0]), "-w", str(bicubic_sr_weights), "--quiet"]
    r = runner.invoke(app, ["restore", str(root / "gray.png"), "-o", str(tmp_path / "s"), "--sr-only", *args])
    assert r.exit_code == 0 and _chroma_gap(tmp_path / "s" / "gray.png", images["gray.png"]) < 1.0
    r = runner.invoke(app, ["restore", str(root / "gray.png"), "-o", str(tmp_path / "c"), "--color-only",
                            *args])
    assert r.exit_code == 0 and Image.open(tmp_path / "c" / "gray.png").size == (64, 48)
    for bad in (["--color-only", "--scale", "2"], ["--sr-only", "--colorize", "always"],
                ["--colorize", "never", "--scale", "1"]):
        r = runner.invoke(app, ["restore", str(root), *bad, *args])
        assert r.exit_code == 2, bad


def test_rerun_in_place_skips_its_own_outputs_without_loading_a_model(tiny_weights, photo_folder,
                                                                      monkeypatch):
    first = _restore([str(photo_folder)], tiny_weights)
    assert first.exit_code == 0, first.output
    (photo_folder / "renamed.png").write_bytes((photo_folder / "gray64_colorsr.png").read_bytes())
    monkeypatch.setattr("colorsr_cli.cli.common.load_models",
                        lambda *a, **k: pytest.fail("a model was loaded"))
    before = _digest(photo_folder)
    again = runner.invoke(app, ["restore", str(photo_folder), "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["done"], summary["failed"], summary["own_outputs_skipped"]) == (0, 0, 4)
    flat = " ".join(again.stderr.split())
    assert "skipped 4 of colorsr's own outputs" in flat and "nothing to do: 3 outputs already exist" in flat
    assert _digest(photo_folder) == before  # no x_colorsr_colorsr.png, nothing rewritten


def test_unwritable_output_folder_fails_before_any_model_is_loaded(photo_folder, tmp_path, monkeypatch):
    (tmp_path / "blocker").write_text("a file")
    monkeypatch.setattr("colorsr_cli.cli.common.load_models",
                        lambda *a, **k: pytest.fail("a model was loaded"))
    r = runner.invoke(app, ["restore", str(photo_folder), "-o", str(tmp_path / "blocker" / "out")])
    assert r.exit_code == 1
    assert sum(line.startswith("failed") and "cannot create folder" in line
               for line in r.stderr.splitlines()) == 3


def test_outputs_keep_metadata_and_carry_the_colorsr_marker(tiny_weights, tmp_path):
    from colorsr_cli.io import made_by_colorsr
    from tests.conftest import photo_like

    exif = Image.Exif()
    exif[0x010E], exif[0x0110] = "Wedding, 1952", "Rolleiflex"
    exif.get_ifd(0x8769)[0x9003] = "1952:06:01 11:00:00"
    (tmp_path / "in").mkdir()
    Image.fromarray(photo_like(32, 40, 1, gray=True)).save(tmp_path / "in" / "w.jpg", exif=exif.tobytes(),
                                                          dpi=(600, 600))
    assert not made_by_colorsr(tmp_path / "in" / "w.jpg")
    r = _restore([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--scale", "2"], tiny_weights)
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "out" / "w.jpg") as out:
        tags = out.getexif()
        assert (tags[0x010E], tags[0x0110], tags[0x0112]) == ("Wedding, 1952", "Rolleiflex", 1)
        assert tags.get_ifd(0x8769)[0x9003] == "1952:06:01 11:00:00"
        assert out.info["dpi"] == pytest.approx((1200, 1200))
    assert made_by_colorsr(tmp_path / "out" / "w.jpg")


def _png_zlib_level(path) -> int:
    """The FLEVEL field of a PNG's zlib stream: 0 for zlib level 1, 1 for 2-5, 2 for 6, 3 for 7-9."""
    data = path.read_bytes()
    idat = data.index(b"IDAT") + 4
    return data[idat + 1] >> 6


def test_png_is_written_fast_by_default_and_png_level_changes_it(tiny_weights, photo_folder, tmp_path):
    img = str(photo_folder / "gray64.png")
    assert _restore([img, "-o", str(tmp_path / "a")], tiny_weights).exit_code == 0
    assert _restore([img, "-o", str(tmp_path / "b"), "--png-level", "9"], tiny_weights).exit_code == 0
    assert _png_zlib_level(tmp_path / "a" / "gray64.png") == 0
    assert _png_zlib_level(tmp_path / "b" / "gray64.png") == 3


def test_weights_verify_prints_one_unwrapped_line_per_file_and_list_is_sorted():
    r = runner.invoke(app, ["weights", "verify"], terminal_width=40)  # paths are longer than 40
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines and all(len(line.split(" ")) == 3 and line.split(" ")[0] == "ok" for line in lines), lines
    assert all(line.split(" ")[2].endswith(".pt") for line in lines)
    listed = [e["name"] for e in json.loads(runner.invoke(app, ["weights", "list", "--json"]).stdout)]
    assert listed == sorted(listed) and len(listed) > 3


def test_doctor_says_which_precision_is_used():
    from colorsr_cli.devices import cpu_has_native_bf16

    checks = {c["name"]: c for c in json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)}
    expected = "cpu: bf16 used" if cpu_has_native_bf16() else "cpu: fp32 (bf16 not native here)"
    assert checks["precision"]["detail"].startswith(expected)


def test_help_at_80_columns_cuts_no_option_name():
    import typer.main

    def leaves(cmd, path):
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from leaves(sub, [*path, name])
        if not hasattr(cmd, "commands"):
            yield path

    for path in leaves(typer.main.get_command(app), []):
        text = runner.invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"}).output
        assert max(map(len, text.splitlines())) <= 80, path
        assert "…" not in text, f"colorsr {' '.join(path)} --help cuts something at 80 columns"


def test_training_progress_keeps_steps_and_times_at_80_columns():
    from rich.console import Console

    from colorsr_cli.cli.train import training_progress

    screen = Console(width=80, record=True, force_terminal=True)
    progress = training_progress(screen)
    task = progress.add_task("train", total=30000,
                             metrics="loss_g 12.3  loss_d 0.512  l1 0.0734  val_l1 0.0812  lr 0.0002")
    progress.update(task, completed=4000)
    screen.print(progress.get_renderable())
    text = screen.export_text(styles=False)
    assert "4000/30000" in text and "0:00:00" in text and "lr 0.0002" in text and "…" not in text


def test_every_model_choice_names_an_sr_entry_of_the_manifest():
    """--model NAME stands for a manifest entry that does SR; the bundled ones are in the wheel,
    so `--model faithful` (the default), `--model clean` and `--model fast` work offline."""
    from colorsr_cli.cli.common import SR_MODELS, ModelChoice
    from colorsr_cli.weights import default_entry, is_present, load_manifest

    entries = load_manifest()
    assert {c.value for c in ModelChoice} == set(SR_MODELS)
    for choice, name in SR_MODELS.items():
        if name is None:
            continue
        assert entries[name].task == "sr", choice
        if entries[name].bundled:
            assert is_present(entries[name]), choice
    assert SR_MODELS["faithful"] == default_entry("sr", entries).name == "colorsr-sr-v2"
    assert entries[SR_MODELS["clean"]].bundled
