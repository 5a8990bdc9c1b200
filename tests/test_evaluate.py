import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from colorsr_cli.cli import app
from colorsr_cli.color import rgb_to_lab
from colorsr_cli.evaluate import bicubic_x4, protocol_pair

from .conftest import photo_like


def test_protocol_pair_sizes_and_gray_input():
    rgb = photo_like(300, 451, 3).astype(np.float32) / 255
    truth, gray = protocol_pair(rgb)
    assert truth.shape == (3, 256, 256) and gray.shape == (3, 64, 64)
    ab = rgb_to_lab(gray)[1:]
    assert ab.abs().max() < 0.5  # luminance only
    # The input's lightness is the truth's, area-downsampled.
    small = torch.nn.functional.interpolate(truth[None], size=(64, 64), mode="area")[0]
    assert (rgb_to_lab(gray)[0] - rgb_to_lab(small)[0]).abs().max() < 0.5


def test_protocol_pair_centre_crop_of_shorter_side():
    rgb = np.zeros((512, 1024, 3), np.float32)
    rgb[:, 384:640] = 1.0  # a white band exactly in the centre 256 of the shorter-side-512 image
    truth, _ = protocol_pair(rgb)
    assert truth[:, :, 64:192].min() > 0.99 and truth[:, :, :60].max() < 0.01


def test_bicubic_baseline_is_bicubic():
    img = torch.rand(3, 64, 64)
    out = bicubic_x4([img])[0]
    ref = torch.nn.functional.interpolate(img[None], scale_factor=4, mode="bicubic").clamp(0, 1)[0]
    assert torch.allclose(out, ref)


def test_eval_end_to_end_writes_report(tiny_weights, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(5):
        Image.fromarray(photo_like(200 + 10 * k, 300, k)).save(photos / f"p{k}.jpg", quality=95)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    r = CliRunner().invoke(app, ["eval", str(photos), "--out", str(tmp_path / "rep"), "--json",
                                 "--protocol", "ssim64", "-w", str(tiny_weights[0]),
                                 "-w", str(tiny_weights[1])])
    assert r.exit_code == 1, r.output  # the broken file is reported
    summary = json.loads(r.stdout)
    assert summary["n_images"] == 5 and len(summary["failures"]) == 1
    assert set(summary["methods"]) == {"gray+bicubic", "colorize+bicubic", "sr(gray)", "full"}
    assert {"ssim", "ssim_y", "psnr", "psnr_y", "colorfulness", "ab_error", "delta_e2000",
            "ssim_seed"} <= set(summary["methods"]["full"])
    assert summary["methods"]["gray+bicubic"]["colorfulness"] < 1.0
    rows = (tmp_path / "rep" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 * 4
    sheet = np.asarray(Image.open(tmp_path / "rep" / "contact_sheet.png").convert("RGB"))
    band = 14  # a text band above the column names and above each of the 3 rows
    assert sheet.shape == (256 * 3 + 4 * band, 256 * 6, 3)
    for top in (0, band, 2 * band + 256, 3 * band + 512):  # the bands hold dark text on white
        text = sheet[top:top + band]
        assert (text == 255).mean() > 0.8 and (text < 100).any()


def test_protocol_seed_is_a_deprecated_alias_of_ssim64(tiny_weights, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo_like(96, 96, 4)).save(photos / "a.png")
    runs = {}
    for name in ("ssim64", "seed"):
        r = CliRunner().invoke(app, ["eval", str(photos), "--ssim", "--protocol", name, "--json",
                                     "--out", str(tmp_path / name), "-w", str(tiny_weights[0]),
                                     "-w", str(tiny_weights[1])])
        assert r.exit_code == 0, r.output
        runs[name] = (json.loads(r.stdout), r.stderr)
    assert runs["seed"][0] == runs["ssim64"][0] and "ssim_seed" in runs["seed"][0]["metrics"]
    assert "deprecated" in runs["seed"][1] and "deprecated" not in runs["ssim64"][1]


def test_eval_has_no_lpips_option(tmp_path):
    """LPIPS is not computed (its network is not in the weights manifest), so there is no flag
    that would silently report nothing."""
    r = CliRunner().invoke(app, ["eval", str(tmp_path), "--lpips"])
    assert r.exit_code == 2 and "No such option" in r.stderr


def test_eval_selected_metrics_and_compare(tiny_weights, tmp_path):
    """--compare-weights scores a second weight set: its row is what `eval -w` of that set gives,
    not the first set's."""
    from colorsr_cli.models import build_model
    from colorsr_cli.weightfile import save_weight_file

    torch.manual_seed(1)
    other_sr = tmp_path / "other_sr.pt"
    save_weight_file(build_model("srgan_generator", {"channels": 8, "blocks": 2}), other_sr)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo_like(256, 256, 9)).save(photos / "a.png")

    def run(*weights: str) -> dict:
        r = CliRunner().invoke(app, ["eval", str(photos), "--psnr", "--out", str(tmp_path / "rep"), "--json",
                                     "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1]), *weights])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    summary = run("--compare-weights", str(tiny_weights[0]), "--compare-weights", str(other_sr))
    assert summary["metrics"] == ["psnr", "psnr_y"]
    full, comp = summary["methods"]["full"], summary["methods"]["full (compare)"]
    alone = run("-w", str(other_sr))["methods"]["full"]  # the later -w replaces the SR model
    assert comp["psnr"] == pytest.approx(alone["psnr"], abs=1e-9)
    assert full["psnr"] != pytest.approx(comp["psnr"], abs=1e-6)  # measured 2.8e-3 apart


def test_eval_placement_splits_the_misses_into_gray_and_wrong_hue(tiny_weights, tmp_path):
    """--placement reports hue / green / red hit and left_gray: the gray baseline leaves every
    colourful pixel gray (hit 0, left_gray 1); no method's hits and gray share exceed 1."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo_like(256, 256, 3)).save(photos / "a.png")
    r = CliRunner().invoke(app, ["eval", str(photos), "--placement", "--out", str(tmp_path / "rep"),
                                 "--json", "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1])])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["metrics"][:4] == ["hue_hit", "green_hit", "red_hit", "left_gray"]
    gray = summary["methods"]["gray+bicubic"]
    assert gray["hue_hit"] == 0 and gray["left_gray"] == 1
    for values in summary["methods"].values():
        assert 0 <= values["hue_hit"] + values["left_gray"] <= 1 + 1e-9


def _bicubic_psnr_y(folder) -> float:
    """The SR papers' bicubic baseline computed independently: crop to a multiple of 4, PIL's
    bicubic (a = -0.5, support widened when shrinking: MATLAB imresize's antialiased kernel) x1/4
    and x4 per channel in float, Y by scikit-image, 4 px border cropped, PSNR by scikit-image
    (data range 255); the mean over the folder's photos."""
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio

    def pil_resize(img, size):
        planes = [np.asarray(Image.fromarray(img[..., c], mode="F").resize(size, Image.BICUBIC))
                  for c in range(3)]
        return np.clip(np.stack(planes, -1), 0, 1)

    scores = []
    for path in sorted(folder.iterdir()):
        rgb = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
        h, w = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
        truth = np.ascontiguousarray(rgb[:h, :w])
        up = pil_resize(pil_resize(truth, (w // 4, h // 4)), (w, h))
        y_truth, y_up = (rgb2ycbcr(img.astype(np.float64))[4:-4, 4:-4, 0] for img in (truth, up))
        scores.append(peak_signal_noise_ratio(y_truth, y_up, data_range=255))
    return float(np.mean(scores))


def test_sr_literature_protocol(tiny_weights, tmp_path):
    from colorsr_cli.evaluate import sr_literature_pair

    truth, low = sr_literature_pair(photo_like(50, 43, 1).astype(np.float32) / 255)
    assert truth.shape == (3, 48, 40) and low.shape == (3, 12, 10)
    photos = tmp_path / "set"
    photos.mkdir()
    for k in range(2):  # large enough that the kernels' edge handling hardly counts
        Image.fromarray(photo_like(240, 280, k)).save(photos / f"{k}.png")
    r = CliRunner().invoke(app, ["eval", str(photos), "--protocol", "sr-literature", "--json",
                                 "--out", str(tmp_path / "rep"), "-w", str(tiny_weights[1])])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert set(summary["methods"]) == {"bicubic", "sr"} and summary["metrics"] == ["psnr_y", "ssim_y"]
    expected = _bicubic_psnr_y(photos)
    # Measured 0.022 dB apart (PIL renormalises its kernel at the edges, MATLAB mirrors the
    # image); without antialiasing the reduction differs by far more.
    assert summary["methods"]["bicubic"]["psnr_y"] == pytest.approx(expected, abs=0.05)
    assert summary["protocol"].startswith("SR literature") and summary["truth"]["colorfulness"] is None
    on_disk = (tmp_path / "rep" / "summary.json").read_text()
    json.loads(on_disk, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))


def test_eval_means_per_top_level_folder(tiny_weights, tmp_path):
    photos = tmp_path / "photos"
    for folder, count in (("kodak", 2), ("bsds", 3)):
        (photos / folder / "deeper").mkdir(parents=True)
        for k in range(count):
            Image.fromarray(photo_like(96, 128, k + 7 * count)).save(photos / folder / "deeper" / f"p{k}.png")
    r = CliRunner().invoke(app, ["eval", str(photos), "--out", str(tmp_path / "rep"), "--psnr",
                                 "--colorfulness", "--by-folder", "-w", str(tiny_weights[0]),
                                 "-w", str(tiny_weights[1])], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "kodak: 2 photos" in r.stdout and "bsds: 3 photos" in r.stdout
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    parts = summary["by_folder"]
    assert {k: v["n_images"] for k, v in parts.items()} == {"bsds": 3, "kodak": 2}
    for metric in ("psnr", "colorfulness"):
        overall = summary["methods"]["full"][metric]
        weighted = sum(v["n_images"] * v["methods"]["full"][metric] for v in parts.values()) / 5
        assert weighted == pytest.approx(overall)
    truth = sum(v["n_images"] * v["truth"]["colorfulness"] for v in parts.values()) / 5
    assert truth == pytest.approx(summary["truth"]["colorfulness"])


def test_eval_of_one_folder_has_no_breakdown(tiny_weights, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(2):
        Image.fromarray(photo_like(96, 96, k)).save(photos / f"p{k}.png")
    r = CliRunner().invoke(app, ["eval", str(photos), "--out", str(tmp_path / "rep"), "--psnr", "--json",
                                 "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1])])
    assert r.exit_code == 0, r.output
    assert "by_folder" not in json.loads(r.stdout)


def test_eval_niqe_scores_outputs_and_the_truth(tiny_weights, tmp_path):
    from colorsr_cli.metrics import niqe

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo_like(256, 256, 9)).save(photos / "a.png")
    common = ["--out", str(tmp_path / "rep"), "--json", "-w", str(tiny_weights[0]),
              "-w", str(tiny_weights[1])]
    r = CliRunner().invoke(app, ["eval", str(photos), "--psnr", "--niqe", *common])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["metrics"] == ["psnr", "psnr_y", "niqe"]
    truth = torch.from_numpy(photo_like(256, 256, 9).transpose(2, 0, 1).copy()).float()[None] / 255
    assert summary["truth"]["niqe"] == pytest.approx(niqe(truth).item(), rel=1e-6)
    assert summary["methods"]["gray+bicubic"]["niqe"] != summary["methods"]["full"]["niqe"]
    plain = json.loads(CliRunner().invoke(app, ["eval", str(photos), "--psnr", *common]).stdout)
    assert "niqe" not in plain["metrics"] and "niqe" not in plain["truth"]  # opt-in only
    lit = CliRunner().invoke(app, ["eval", str(photos), "--protocol", "sr-literature", "--niqe", *common])
    assert lit.exit_code == 0, lit.output
    assert json.loads(lit.stdout)["metrics"] == ["psnr_y", "ssim_y", "niqe"]
