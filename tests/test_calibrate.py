"""colorsr calibrate: settings scored on held-out photos, the recommendation within the range."""

import torch
from PIL import Image
from typer.testing import CliRunner

from colorsr_cli.calibrate import calibrate
from colorsr_cli.cli import app
from colorsr_cli.color import lab_to_rgb, rgb_to_lab
from colorsr_cli.train.color import ColorRecipe, train_color

from .conftest import photo_like


class _Oracle(torch.nn.Module):
    """A 'colouriser' that returns the truth's own chroma (as the network's normalised output)."""

    class config:  # noqa: N801 - stands in for a config dataclass
        chroma_gain = 1.0

    def __init__(self, truth):
        super().__init__()
        self.ab = rgb_to_lab(truth)[:, 1:] / 110

    def forward(self, L):
        return self.ab


def test_the_truths_own_chroma_is_recommended_at_gain_1():
    truth = torch.stack([torch.from_numpy(photo_like(64, 64, k).copy()).permute(2, 0, 1).float() / 255
                         for k in range(6)])
    gray = lab_to_rgb(torch.cat((rgb_to_lab(truth)[:, :1], torch.zeros_like(truth[:, :2])), 1))
    result = calibrate(_Oracle(truth), gray, truth, gains=(1.6, 1.0, 0.5), colourfulness_range=(0.8, 1.05))
    by_gain = {s.gain: s for s in result.settings}
    assert set(by_gain) == {1.6, 1.0, 0.5} and result.photos == 6
    assert abs(by_gain[1.0].colourfulness_ratio - 1) < 0.02 and by_gain[1.0].hue_hit > 0.99
    faded = calibrate(_Oracle(truth), gray, truth, gains=(0.05,)).settings[0]
    assert by_gain[1.0].left_gray == 0 and faded.left_gray > 0.9 and faded.hue_hit < 0.1
    assert by_gain[1.6].colourfulness_ratio > 1.3 and by_gain[0.5].colourfulness_ratio < 0.6
    assert result.recommended == by_gain[1.0]  # the only one in 0.8-1.05x
    assert calibrate(_Oracle(truth), gray, truth, gains=(1.6, 0.5)).recommended is None


def test_calibrate_command_reads_the_runs_holdout(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for k in range(24):
        Image.fromarray(photo_like(64, 64, k)).save(data / f"p{k:02d}.png")
    run = tmp_path / "run"
    train_color(ColorRecipe(data=str(data), out=str(run), width=8, disc_width=8, batch_size=4,
                            max_steps=2, device="cpu", threads=1))
    r = CliRunner().invoke(app, ["calibrate", str(run), "--gain", "1.0", "--gain", "2.0"])
    assert r.exit_code == 0, r.output
    assert "held-out photos" in r.output and ("recommended" in r.output or "no setting" in r.output)
    assert "2.00" in r.output and "1.00" in r.output
    assert "temp" not in r.output  # a regression head has no temperature to show
