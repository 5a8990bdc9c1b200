import json
import os
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.color import rgb2lab
from typer.testing import CliRunner

from colorsr_cli import video
from colorsr_cli.cli import app
from colorsr_cli.errors import VideoError
from colorsr_cli.models import ModelDescriptor
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.video import ChromaSmoother, VideoOptions, flicker, frames_per_batch, prepare_video
from colorsr_cli.video import restore_video as restore_film
from colorsr_cli.weightfile import load_weight_file

from .conftest import photo_like

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
runner = CliRunner()
FPS, FRAMES, W, H = 12, 24, 64, 48


def write_clip(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    """RGB uint8 (H, W, 3) frames -> an mp4v file, as a camera or an old transfer would give."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def panning_frames(n: int = FRAMES, h: int = H, w: int = W) -> list[np.ndarray]:
    wide = photo_like(h, w + n, seed=5)
    return [np.ascontiguousarray(wide[:, k:k + w]) for k in range(n)]


def with_sine_audio(clip: Path, out: Path, seconds: float) -> Path:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip), "-f", "lavfi",
                    "-i", f"sine=frequency=440:duration={seconds}", "-map", "0:v", "-map", "1:a",
                    "-c:v", "copy", "-c:a", "aac", str(out)], check=True)
    return out


def read_clip(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def ffmpeg_listing(path: Path) -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def duration_seconds(path: Path) -> float:
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", ffmpeg_listing(path)).groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def as_tensors(frames: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in frames]


@pytest.fixture
def restorer(tiny_weights):
    def make(**options) -> Restorer:
        color, sr = load_weight_file(tiny_weights[0])[0], load_weight_file(tiny_weights[1])[0]
        return Restorer(color, sr, RestoreOptions(**{"batch_size": 8, **options}))
    return make


@pytest.fixture
def clip_with_audio(tmp_path) -> Path:
    silent = write_clip(tmp_path / "silent.mp4", panning_frames())
    return with_sine_audio(silent, tmp_path / "film.mp4", FRAMES / FPS)


def restore_video(source: Path, output: Path, restorer: Restorer, options: VideoOptions = VideoOptions(),
                  on_frames=None) -> video.VideoResult:
    return restore_film(prepare_video(source, output, options), restorer, on_frames)


def _video_cli(args: list[str], tiny_weights) -> object:
    return runner.invoke(app, ["video", *args, "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1])])


def test_cli_keeps_frame_count_fps_size_and_audio(clip_with_audio, tiny_weights, tmp_path):
    result = _video_cli([str(clip_with_audio), "--out", str(tmp_path / "out.mp4"), "--scale", "2",
                         "--batch-size", "5", "--json"], tiny_weights)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    frames, fps = read_clip(tmp_path / "out.mp4")
    assert len(frames) == summary["frames"] == FRAMES
    assert fps == pytest.approx(FPS, abs=0.01) and summary["fps"] == pytest.approx(FPS)
    assert frames[0].shape == (2 * H, 2 * W, 3) and summary["size"] == [2 * W, 2 * H]
    assert summary["audio_kept"] is True and "Audio:" in ffmpeg_listing(tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.mp4", "out.mp4", "silent.mp4"]


def test_start_and_end_trim_frames_and_audio(clip_with_audio, restorer, tmp_path):
    out = tmp_path / "part.mp4"
    result = restore_video(clip_with_audio, out, restorer(mode="color-only", scale=1),
                           VideoOptions(start=0.5, end=1.5))
    frames, _ = read_clip(out)
    assert result.frames == len(frames) == 12 and frames[0].shape == (H, W, 3)
    assert result.audio_kept and "Audio:" in ffmpeg_listing(out)
    assert duration_seconds(out) == pytest.approx(1.0, abs=0.1)


def test_silent_input_gives_silent_output(tmp_path, restorer):
    clip = write_clip(tmp_path / "silent.mp4", panning_frames(10))
    result = restore_video(clip, tmp_path / "out.mp4", restorer(scale=1))
    assert result.frames == 10 and not result.audio_kept and result.notes == []
    assert "Audio:" not in ffmpeg_listing(tmp_path / "out.mp4")


def test_without_ffmpeg_opencv_writes_the_video_and_says_audio_was_dropped(clip_with_audio, restorer,
                                                                          tmp_path, monkeypatch):
    monkeypatch.setattr(video, "find_ffmpeg", lambda: None)
    out = tmp_path / "out.mp4"
    result = restore_video(clip_with_audio, out, restorer(mode="color-only", scale=2))
    frames, fps = read_clip(out)
    assert len(frames) == result.frames == FRAMES and fps == pytest.approx(FPS, abs=0.01)
    assert frames[0].shape == (2 * H, 2 * W, 3)
    assert not result.audio_kept and "Audio:" not in ffmpeg_listing(out)
    assert any("audio" in note and "ffmpeg" in note for note in result.notes)


@pytest.mark.parametrize("with_ffmpeg, shape, note", [(True, (47, 63, 3), "yuv444p"),
                                                    (False, (46, 62, 3), "cropped to 62x46")])
def test_odd_size_is_kept_by_ffmpeg_and_cropped_by_opencv(tmp_path, restorer, monkeypatch,
                                                          with_ffmpeg, shape, note):
    clip = tmp_path / "odd.mkv"  # lossless FFV1: mp4v would round the size down to even
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", "63x47", "-r", str(FPS), "-i", "-", "-c:v", "ffv1", str(clip)],
                   input=b"".join(f.tobytes() for f in panning_frames(6, 47, 63)), check=True)
    if not with_ffmpeg:
        monkeypatch.setattr(video, "find_ffmpeg", lambda: None)
    result = restore_video(clip, tmp_path / "out.mp4", restorer(scale=1, mode="color-only"))
    frames, _ = read_clip(tmp_path / "out.mp4")
    assert len(frames) == 6 and frames[0].shape == shape and result.size == shape[1::-1]
    assert any(note in n for n in result.notes), result.notes


def test_chroma_smoother_is_an_ema_restarted_at_scene_cuts():
    """Hand-computed: s = 0.6 keeps 60% of the past ab; a jump in L starts a new shot."""
    smoother = ChromaSmoother(strength=0.6, cut_threshold=12.0)

    def lab(L: float, a: float, b: float) -> torch.Tensor:
        return torch.tensor([L, a, b], dtype=torch.float32).view(3, 1, 1).expand(3, 2, 2)

    assert smoother.smooth(lab(50, 10, -20))[:, 0, 0].tolist() == pytest.approx([50, 10, -20])
    assert smoother.smooth(lab(52, 20, 0))[:, 0, 0].tolist() == pytest.approx([52, 14, -12])
    assert smoother.smooth(lab(80, -30, 40))[:, 0, 0].tolist() == pytest.approx([80, -30, 40])
    assert smoother.cuts == 1
    assert ChromaSmoother(0.0).smooth(lab(50, 10, -20)).equal(lab(50, 10, -20))


def test_flicker_is_the_mean_absolute_ab_change_between_frames():
    """Reference: scikit-image's Lab on the same 8-bit frames."""
    rng = np.random.default_rng(0)
    frames = [(rng.random((8, 9, 3)) * 255).round().astype(np.uint8) for _ in range(4)]
    ab = [rgb2lab(f / 255.0)[..., 1:] for f in frames]
    expected = np.mean([np.abs(b - a).mean() for a, b in zip(ab, ab[1:])])
    assert flicker(as_tensors(frames)) == pytest.approx(expected, rel=1e-3)
    assert flicker(as_tensors(frames[:1])) == 0.0


class TwitchyColorizer(torch.nn.Module):
    """Stands in for a colouriser that changes its mind with every bit of film grain: ab swings
    with the input's normalised L (N, 1, H, W) -> ab (N, 2, H, W). (A tiny random network barely
    reacts to noise, so its output flicker would be lost in 8-bit rounding.)"""

    descriptor = ModelDescriptor(task="color")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.2 * torch.cat((torch.sin(30 * x), torch.cos(30 * x)), 1)


def test_temporal_smoothing_lowers_flicker_on_a_static_noisy_clip(tmp_path):
    rng = np.random.default_rng(1)
    still = photo_like(H, W, seed=2, gray=True).astype(float)
    noisy = [np.clip(still + rng.normal(0, 6, still.shape), 0, 255).astype(np.uint8) for _ in range(FRAMES)]
    clip = write_clip(tmp_path / "static.mp4", [np.repeat(gray[..., None], 3, axis=2) for gray in noisy])
    restorer = Restorer(TwitchyColorizer(), None, RestoreOptions(mode="color-only", scale=1))
    measured = {}
    for strength in (0.0, 0.6):
        out = tmp_path / f"smooth{strength}.mp4"
        result = restore_video(clip, out, restorer, VideoOptions(temporal_smoothing=strength))
        measured[strength] = flicker(as_tensors(read_clip(out)[0])), result.flicker
        assert result.scene_cuts == 0
    (raw_out, raw_pre), (smooth_out, smooth_pre) = measured[0.0], measured[0.6]
    assert smooth_out < 0.7 * raw_out and smooth_pre < 0.7 * raw_pre, measured


@pytest.mark.parametrize("content", [None, b"\x00junk" * 900])
def test_missing_or_corrupt_file_is_one_clear_error(tmp_path, tiny_weights, content):
    source = tmp_path / "film.mp4"
    if content is not None:
        source.write_bytes(content)
    result = _video_cli([str(source)], tiny_weights)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "film.mp4" in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["film.mp4"])


def _ffmpeg_children() -> list[int]:
    """Processes of ours whose name says ffmpeg (Linux /proc), to check none is left running."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "ffmpeg" in text.split(")")[0] and int(text.rsplit(")", 1)[1].split()[1]) == os.getpid():
            found.append(int(text.split()[0]))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_interrupt_mid_run_leaves_no_output_no_temp_and_no_ffmpeg(clip_with_audio, restorer, tmp_path):
    def ctrl_c(done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore_video(clip_with_audio, tmp_path / "out.mp4", restorer(batch_size=4), on_frames=ctrl_c)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.mp4", "silent.mp4"]
    assert _ffmpeg_children() == []


def test_model_failure_mid_run_is_a_video_error_and_leaves_nothing(clip_with_audio, restorer, tmp_path):
    restorer = restorer(batch_size=4)
    calls = []

    def failing_sr(rgbs):
        calls.append(len(rgbs))
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory (simulated)\ndetails")
        return Restorer.super_resolve(restorer, rgbs)

    restorer.super_resolve = failing_sr
    with pytest.raises(VideoError, match=r"film.mp4: restore failed at frame 8: CUDA out of memory"):
        restore_video(clip_with_audio, tmp_path / "out.mp4", restorer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.mp4", "silent.mp4"]


def test_unknown_codec_is_refused_before_any_frame(clip_with_audio, restorer, tmp_path):
    with pytest.raises(VideoError, match="--codec nope"):
        restore_video(clip_with_audio, tmp_path / "out.mp4", restorer(), VideoOptions(codec="nope"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.mp4", "silent.mp4"]


def test_existing_output_is_refused_unless_overwrite(tmp_path, tiny_weights):
    clip = write_clip(tmp_path / "film.mp4", panning_frames(6))
    default_out = tmp_path / "film_colorsr.mp4"
    assert _video_cli([str(clip), "--scale", "1"], tiny_weights).exit_code == 0
    before = default_out.read_bytes()
    refused = _video_cli([str(clip), "--scale", "1"], tiny_weights)
    assert refused.exit_code == 1 and "--overwrite" in refused.stderr
    assert default_out.read_bytes() == before
    replaced = _video_cli([str(clip), "--scale", "2", "--overwrite", "--json"], tiny_weights)
    assert replaced.exit_code == 0 and json.loads(replaced.stdout)["size"] == [2 * 64, 2 * 48]
    assert read_clip(default_out)[0][0].shape == (96, 128, 3)


def test_frames_per_batch_follows_the_pixel_cap():
    capped = RestoreOptions(batch_size=16, batch_pixels=512 * 512)
    assert frames_per_batch(capped, 64, 64) == 16
    assert frames_per_batch(capped, 320, 240) == 3
    assert frames_per_batch(capped, 1920, 1080) == 1  # never zero
    assert frames_per_batch(RestoreOptions(batch_size=16, batch_pixels=0), 1920, 1080) == 16
    assert frames_per_batch(RestoreOptions(batch_size=0), 64, 64) == 1


def test_video_cli_batch_default_is_per_device(tmp_path, tiny_weights, monkeypatch):
    """`colorsr video` on CPU restores 320x240 frames 3 at a time by default (16 frames, capped
    at 512x512 input pixels per pass); an explicit --batch-size is taken as given, uncapped."""
    clip = write_clip(tmp_path / "film.mp4", [photo_like(240, 320, k) for k in range(4)])
    batches = []
    restore = video._Run._restore
    monkeypatch.setattr(video._Run, "_restore", lambda run, batch, index: batches.append(len(batch))
                        or restore(run, batch, index))
    args = [str(clip), "--color-only", "--scale", "1", "--device", "cpu"]
    assert _video_cli(args, tiny_weights).exit_code == 0
    assert batches == [3, 1]
    batches.clear()
    assert _video_cli([*args, "-b", "4", "--overwrite"], tiny_weights).exit_code == 0
    assert batches == [4]


def test_frames_are_restored_as_photos_when_smoothing_is_off(restorer, tmp_path, monkeypatch):
    """A film's frames take the photo path (Restorer.restore): with temporal smoothing off, each
    frame handed to the encoder is the restored photo of the decoded frame, to the bit."""
    clip = write_clip(tmp_path / "film.mp4", panning_frames(5))
    sent = []
    monkeypatch.setattr(video._FfmpegEncoder, "write", lambda encoder, frame: sent.append(frame.copy()))
    r = restorer(scale=2, batch_size=2, uint8_output=True)
    restore_video(clip, tmp_path / "out.mp4", r, VideoOptions(temporal_smoothing=0.0))
    decoded, _ = read_clip(clip)
    photos = r.restore([torch.from_numpy(f).permute(2, 0, 1) for f in decoded])
    assert len(sent) == len(photos) == 5
    assert all(np.array_equal(frame, photo.permute(1, 2, 0).numpy()) for frame, photo in zip(sent, photos))


def test_the_cli_probes_the_film_once(clip_with_audio, tiny_weights, tmp_path, monkeypatch):
    """The pre-flight before the models load is the run's own: one ffmpeg listing of the
    streams and one OpenCV open to probe the film (the reader's open is the second)."""
    calls = {"ffmpeg": 0, "opencv": 0}

    def counted(name, fn):
        def call(*args):
            calls[name] += 1
            return fn(*args)
        return call

    monkeypatch.setattr(video, "_has_audio_stream", counted("ffmpeg", video._has_audio_stream))
    monkeypatch.setattr(video, "_open_capture", counted("opencv", video._open_capture))
    result = _video_cli([str(clip_with_audio), "--scale", "1", "--out", str(tmp_path / "out.mp4")],
                        tiny_weights)
    assert result.exit_code == 0, result.output
    assert calls == {"ffmpeg": 1, "opencv": 1}


def test_video_color_only_does_not_upscale(tmp_path, tiny_weights):
    """--color-only is --scale 1, as for restore: the output has the input's size."""
    clip = write_clip(tmp_path / "film.mp4", panning_frames(4))
    result = _video_cli([str(clip), "--color-only", "--json"], tiny_weights)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["size"] == [W, H]
    assert read_clip(tmp_path / "film_colorsr.mp4")[0][0].shape == (H, W, 3)
    refused = _video_cli([str(clip), "--color-only", "--scale", "4", "--overwrite"], tiny_weights)
    assert refused.exit_code == 2 and "--color-only is --scale 1" in refused.stderr


def test_out_naming_a_new_folder_creates_it(tmp_path, tiny_weights):
    """`--out outdir/` (a trailing slash) is a folder even before it exists: created, and the
    film goes inside it under its default name."""
    clip = write_clip(tmp_path / "film.mp4", panning_frames(4))
    result = _video_cli([str(clip), "--scale", "1", "--out", f"{tmp_path / 'new' / 'deeper'}/"], tiny_weights)
    assert result.exit_code == 0, result.output
    assert read_clip(tmp_path / "new" / "deeper" / "film_colorsr.mp4")[0][0].shape == (48, 64, 3)
