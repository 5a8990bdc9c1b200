"""Restoring a film: frames go through Restorer.restore as photos do, a reader thread decodes
ahead and a writer thread encodes behind (stream.py's bounded queues: memory stays flat whatever
the length), and the colour is smoothed over time through the restore's chroma hook.

Temporal smoothing is the one documented exception to "no state between inputs": a colouriser
that sees each frame alone picks slightly different colours for the same wall in every frame,
which shows as chroma flicker. A ChromaSmoother owned by one video run keeps an exponential
moving average of the ab channels (Lab) and starts afresh at scene cuts, detected as a large
mean luminance change between consecutive frames. The luminance of every frame is its own, so
no detail is blurred over time; only colour is. Being per pixel and not motion-compensated,
it lets colour trail moving objects slightly (about strength / (1 - strength) frames).

Encoding goes through an ffmpeg executable when one is found (H.264, audio kept, trimmed with
--start/--end), else through OpenCV (mp4v, no audio; the result says so). The output is written
under a hidden temp name in its folder and renamed at the end; on any error or Ctrl-C the temp
file is deleted and ffmpeg is killed, so a finished output is never a partial film. (io's
atomic_write hands out a file object; here ffmpeg must write the file itself because the MP4
muxer needs to seek, so this module keeps its own temp name.) Nothing here prints."""

from __future__ import annotations

import math
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from colorsr_cli.color import rgb_to_lab
from colorsr_cli.errors import VideoError
from colorsr_cli.pipeline import Restorer
from colorsr_cli.stream import END, ReadAhead, WriteBehind

FrameCallback = Callable[[int, int | None], None]
_NO_FFMPEG = ("no ffmpeg executable found (install ffmpeg, or `pip install 'colorsr[video]'`): "
              "encoded with OpenCV (mp4v, --codec/--crf ignored) and any audio track was dropped")


@dataclass(frozen=True)
class VideoOptions:
    start: float = 0.0  # seconds into the input where the output begins
    end: float | None = None  # seconds into the input where it ends (None: the end of the film)
    codec: str = "libx264"  # ffmpeg video encoder
    crf: int = 18  # constant rate factor (x264/x265: 0 lossless .. 51 worst; 18 looks lossless)
    temporal_smoothing: float = 0.6  # weight of the past chroma in the moving average, 0 = off
    scene_cut: float = 12.0  # mean |L change| (L in [0, 100]) between frames that starts a new shot
    overwrite: bool = False


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    width: int  # decoded frame size, pixels
    height: int
    frame_count: int | None  # as the container announces it (may be approximate)
    has_audio: bool | None  # None: unknown (no ffmpeg to look)


@dataclass(frozen=True)
class VideoJob:
    """A film checked before any model is loaded (prepare_video): its output can be written,
    it decodes, the span holds frames, the encoder exists."""

    source: Path
    output: Path
    options: VideoOptions
    info: VideoInfo
    ffmpeg: str | None  # the executable that encodes (None: OpenCV's writer, no audio)
    first: int  # first frame restored
    stop: int | None  # frame after the last one restored (None: to the end)


@dataclass
class VideoResult:
    source: Path
    output: Path
    frames: int
    fps: float
    size: tuple[int, int]  # output (width, height), pixels
    seconds: float  # wall-clock time of the whole run
    audio_kept: bool
    notes: list[str] = field(default_factory=list)
    # Mean |ab change| between consecutive colourised frames as sent to SR (input resolution,
    # ab units); None when nothing was colourised.
    flicker: float | None = None
    scene_cuts: int = 0


# ------------------------------------------------------------------ temporal colour


class ChromaSmoother:
    """Exponential moving average of a film's chroma: ab_t = s * ab_(t-1) + (1 - s) * ab_new,
    restarted when the mean |L_t - L_(t-1)| exceeds cut_threshold (a new shot must not inherit
    the previous shot's colours). State of one video run; create a new one per film."""

    def __init__(self, strength: float = 0.6, cut_threshold: float = 12.0):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"temporal smoothing must be in [0, 1], got {strength}")
        self.strength = strength
        self.cut_threshold = cut_threshold
        self.cuts = 0
        self._L: torch.Tensor | None = None
        self._ab: torch.Tensor | None = None

    def smooth(self, lab: torch.Tensor) -> torch.Tensor:
        """Lab (3, H, W), L in [0, 100] -> Lab with the same L and time-smoothed ab."""
        L, ab = lab[:1], lab[1:]
        if self._ab is None or self._is_cut(L):
            self.cuts += self._ab is not None
            self._ab = ab
        else:
            self._ab = torch.lerp(ab, self._ab, self.strength)
        self._L = L
        return torch.cat((L, self._ab))

    def _is_cut(self, L: torch.Tensor) -> bool:
        if self._L.shape != L.shape:
            return True
        return (L - self._L).abs().mean().item() > self.cut_threshold


class FlickerMeter:
    """Running mean over consecutive frames of the mean |ab_t - ab_(t-1)|, in ab units."""

    def __init__(self) -> None:
        self._prev: torch.Tensor | None = None
        self._total = 0.0
        self._pairs = 0

    def add(self, ab: torch.Tensor) -> None:
        """ab (2, H, W) of the next frame."""
        if self._prev is not None and self._prev.shape == ab.shape:
            self._total += (ab - self._prev).abs().mean().item()
            self._pairs += 1
        self._prev = ab

    @property
    def value(self) -> float | None:
        return self._total / self._pairs if self._pairs else None


def flicker(frames: Iterable[torch.Tensor]) -> float:
    """Chroma flicker of a clip: mean |ab change| between consecutive RGB (3, H, W) frames in
    [0, 1], in ab units (0 for a clip of fewer than two frames)."""
    meter = FlickerMeter()
    for rgb in frames:
        meter.add(rgb_to_lab(rgb.float())[1:])
    return meter.value or 0.0


# ------------------------------------------------------------------ paths and probing


def find_ffmpeg() -> str | None:
    """An ffmpeg executable: the one on PATH, else imageio-ffmpeg's bundled one, else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # the package is there but its binary is not (unsupported platform)
        return None


def video_output_path(source: Path, out: str | Path | None) -> Path:
    """--out, or `<stem>_colorsr.mp4` inside --out when it is a folder (an existing one, or a
    name ending in a path separator, to be created), or next to the input."""
    name = f"{Path(source).stem}_colorsr.mp4"
    if out is None:
        return Path(source).with_name(name)
    folder = str(out).endswith(("/", os.sep)) or Path(out).is_dir()
    return Path(out) / name if folder else Path(out)


def make_output_folder(output: Path) -> None:
    """Create the folder an output video goes into, or say why it cannot be."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VideoError(f"{output}: cannot create folder {output.parent}: {exc.strerror or exc}") from exc


def check_output(source: Path, output: Path, overwrite: bool) -> None:
    """Refuse an output that would replace the input, lacks a container extension, or exists
    (unless overwrite): a finished film is never replaced by accident."""
    if not output.suffix:
        raise VideoError(f"{output}: give the output a container extension, e.g. .mp4")
    if output.exists() and source.exists() and os.path.samefile(output, source):
        raise VideoError(f"{output}: output would overwrite the input")
    if output.exists() and not overwrite:
        raise VideoError(f"{output}: output exists (use --overwrite to replace it)")


def prepare_video(source: Path, output: Path, options: VideoOptions = VideoOptions()) -> VideoJob:
    """Check a film and its output once, before any frame is restored: the output may be
    written (check_output; its folder is created), the film decodes (one probe), --start/--end
    hold frames, --codec is an encoder of the ffmpeg found. Raises VideoError."""
    source, output = Path(source), Path(output)
    check_output(source, output, options.overwrite)
    make_output_folder(output)
    ffmpeg = find_ffmpeg()
    info = probe_video(source, ffmpeg)
    first, stop = frame_span(info, options.start, options.end)
    if ffmpeg:
        _check_encoder(ffmpeg, options.codec)
    return VideoJob(source, output, options, info, ffmpeg, first, stop)


def probe_video(path: Path, ffmpeg: str | None) -> VideoInfo:
    """Frame rate, decoded frame size, announced frame count and audio presence; VideoError
    naming the file when it cannot be decoded. The first frame is decoded to be sure."""
    path = Path(path)
    _check_input_file(path)
    has_audio = _has_audio_stream(ffmpeg, path) if ffmpeg else None
    cap = _open_capture(path)
    try:
        ok, frame = cap.read()
        fps, count = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        cap.release()
    if not ok:
        raise VideoError(f"{path}: cannot decode video: no frame could be decoded")
    if not (math.isfinite(fps) and fps > 0):
        raise VideoError(f"{path}: cannot decode video: unknown frame rate")
    frames = int(count) if math.isfinite(count) and count > 0 else None
    return VideoInfo(fps, frame.shape[1], frame.shape[0], frames, has_audio)


def frame_span(info: VideoInfo, start: float, end: float | None) -> tuple[int, int | None]:
    """--start/--end seconds -> (first frame, stop frame (exclusive) or None = to the end)."""
    if start < 0:
        raise VideoError(f"--start must be >= 0 seconds, got {start:g}")
    first = round(start * info.fps)
    stop = None if end is None else round(end * info.fps)
    if info.frame_count is not None and first >= info.frame_count:
        duration = info.frame_count / info.fps
        raise VideoError(f"--start {start:g}s is past the end of the video ({duration:.2f}s)")
    if stop is not None and stop <= first:
        raise VideoError(f"no frames between --start {start:g}s and --end {end:g}s")
    return first, stop


def _check_input_file(path: Path) -> None:
    try:
        info = path.stat()
    except OSError as err:
        raise VideoError(f"{path}: cannot read: {err.strerror or err}") from err
    if not path.is_file():
        raise VideoError(f"{path}: cannot decode video: not a regular file")
    if info.st_size == 0:
        raise VideoError(f"{path}: cannot decode video: empty file (0 bytes)")


def _has_audio_stream(ffmpeg: str, path: Path) -> bool:
    """Read ffmpeg's stream listing (`ffmpeg -i`); a file it cannot open is a VideoError with
    ffmpeg's reason (OpenCV would only print warnings to the terminal)."""
    run = _ask_ffmpeg(ffmpeg, ["-i", str(path.absolute())], path)
    streams = [line for line in run.stderr.splitlines() if line.lstrip().startswith("Stream #")]
    if not any("Video:" in line for line in streams):
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        reason = lines[-1].rsplit(": ", 1)[-1] if not streams and lines else "no video stream"
        raise VideoError(f"{path}: cannot decode video: {reason}")
    return any("Audio:" in line for line in streams)


def _ask_ffmpeg(ffmpeg: str, args: list[str], about: Path | str) -> subprocess.CompletedProcess:
    """A short informational ffmpeg run (no output file), its text captured."""
    try:
        return subprocess.run([ffmpeg, "-hide_banner", "-nostdin", *args], capture_output=True, text=True,
                              errors="replace", timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise VideoError(f"{about}: cannot run {ffmpeg}: {err}") from err


def _open_capture(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise VideoError(f"{path}: cannot decode video: not a video OpenCV can read")
    return cap


# ------------------------------------------------------------------ encoders


class _FfmpegEncoder:
    """RGB24 frames piped to ffmpeg's stdin; the source's audio, cut to the same time span with
    input seeking, is re-encoded to AAC. No -shortest: with frames arriving slowly through a pipe,
    ffmpeg's -shortest leaves audio running past the last frame by a varying amount, while the cut
    keeps the input's own audio/video alignment."""

    def __init__(self, ffmpeg: str, temp: Path, target: Path, size: tuple[int, int], fps: float,
                 audio: tuple[Path, float, float | None] | None, options: VideoOptions):
        """Writes to temp; target is the output's final name, for messages. The codec was
        checked by prepare_video."""
        self.target, self.size = target, size
        even = size[0] % 2 == size[1] % 2 == 0
        self.notes = [] if even else [f"odd frame size {size[0]}x{size[1]}: encoded as yuv444p "
                                      "(some players need even sizes for yuv420p)"]
        self._log = tempfile.TemporaryFile()
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}",
               "-r", str(Fraction(fps).limit_denominator(1001)), "-i", "-"]
        if audio:
            source, start, duration = audio
            cmd += ["-ss", f"{start:.6f}", *(["-t", f"{duration:.6f}"] if duration else []),
                    "-i", str(source.absolute())]
        cmd += ["-map", "0:v:0", "-c:v", options.codec, "-crf", str(options.crf),
                "-pix_fmt", "yuv420p" if even else "yuv444p"]
        if audio:
            cmd += ["-map", "1:a", "-c:a", "aac"]
        # Own session: a Ctrl-C in the terminal reaches only us; we decide to kill ffmpeg.
        self._proc = subprocess.Popen([*cmd, str(temp.absolute())], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._log,
                                      start_new_session=True)

    def write(self, frame: np.ndarray) -> None:
        """frame: uint8 (H, W, 3) RGB, C-contiguous."""
        try:
            self._proc.stdin.write(frame.data)
        except (BrokenPipeError, OSError):
            self._proc.wait()
            raise VideoError(f"{self.target}: ffmpeg stopped: {self._reason()}") from None

    def close(self) -> None:
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        if self._proc.wait() != 0:
            raise VideoError(f"{self.target}: ffmpeg failed: {self._reason()}")
        self._log.close()

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._log.close()

    def _reason(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self._proc.returncode}"


def _check_encoder(ffmpeg: str, codec: str) -> None:
    """Refuse an unknown --codec before any frame is restored (ffmpeg would only say so once
    the first frames arrive)."""
    run = _ask_ffmpeg(ffmpeg, ["-h", f"encoder={codec}"], f"--codec {codec}")
    if not run.stdout.startswith("Encoder "):
        raise VideoError(f"--codec {codec}: not an encoder of {ffmpeg} (try libx264 or libx265)")


class _OpenCVEncoder:
    """The fallback without ffmpeg: OpenCV's own MPEG-4 Part 2 writer, video only. mp4v needs
    even sizes, so an odd row or column is cropped (said in the notes) rather than left to
    OpenCV to handle silently."""

    def __init__(self, temp: Path, target: Path, size: tuple[int, int], fps: float):
        self.target, self.size = target, (size[0] - size[0] % 2, size[1] - size[1] % 2)
        self.notes = [_NO_FFMPEG]
        if self.size != size:
            self.notes.append(f"odd frame size {size[0]}x{size[1]}: cropped to {self.size[0]}x{self.size[1]} "
                              "for OpenCV's mp4v writer")
        self._writer = cv2.VideoWriter(str(temp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"),
                                       fps, self.size)
        if not self._writer.isOpened():
            raise VideoError(f"{target}: OpenCV cannot write this video (try a .mp4 output)")

    def write(self, frame: np.ndarray) -> None:
        """frame: uint8 (H, W, 3) RGB."""
        w, h = self.size
        self._writer.write(cv2.cvtColor(frame[:h, :w], cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()

    abort = close


_Encoder = _FfmpegEncoder | _OpenCVEncoder  # write(frame), close(), abort(), target, size, notes


# ------------------------------------------------------------------ the run


def restore_video(film: VideoJob, restorer: Restorer, on_frames: FrameCallback | None = None) -> VideoResult:
    """Restore every frame of a prepared film (prepare_video) between its options' start and end
    into its output (scale x the input size, the input's frame rate, audio kept when ffmpeg is
    available). Frames go through the restorer in batches (frames_per_batch). on_frames(done,
    total) is called from this thread after each batch; total is the container's estimate (None
    if unknown). Raises VideoError; on any error or interrupt no output is left behind."""
    started = time.perf_counter()
    info, output, options = film.info, film.output, film.options
    size = (info.width * restorer.options.scale, info.height * restorer.options.scale)
    temp = output.with_name(f".{output.name}.{secrets.token_hex(4)}.tmp{output.suffix}")
    encoder = None
    try:
        if film.ffmpeg:
            span = None if film.stop is None else (film.stop - film.first) / info.fps
            audio = (film.source, film.first / info.fps, span) if info.has_audio else None
            encoder = _FfmpegEncoder(film.ffmpeg, temp, output, size, info.fps, audio, options)
        else:
            encoder = _OpenCVEncoder(temp, output, size, info.fps)
        run = _Run(film.source, restorer, ChromaSmoother(options.temporal_smoothing, options.scene_cut))
        frames = run.process(film.first, film.stop, _estimate_total(info, film.first, film.stop), encoder,
                             on_frames, frames_per_batch(restorer.options, info.width, info.height))
        encoder.close()
        _fsync(temp)
        os.replace(temp, output)
    except BaseException:
        if encoder is not None:
            encoder.abort()
        temp.unlink(missing_ok=True)
        raise
    notes = encoder.notes
    if info.frame_count is not None and film.stop is None and frames != info.frame_count - film.first:
        notes.append(f"decoded {frames} frames; the container announced {info.frame_count - film.first}")
    return VideoResult(film.source, output, frames, info.fps, encoder.size, time.perf_counter() - started,
                       bool(info.has_audio and film.ffmpeg), notes, run.meter.value, run.smoother.cuts)


def frames_per_batch(options, width: int, height: int) -> int:
    """Frames decoded and restored together: options.batch_size, and where the device caps the
    input pixels per pass (options.batch_pixels, CPU) no more frames than fit in that cap, at
    least one. Frames go through the network together, so a batch of large frames would
    outgrow the caches (and, at 4x, memory: one 1080p frame restores to 398 MB of float32)."""
    return options.per_pass(height, width)


def _estimate_total(info: VideoInfo, first: int, stop: int | None) -> int | None:
    ends = [n for n in (info.frame_count, stop) if n is not None]
    return max(0, min(ends) - first) if ends else None


def _fsync(path: Path) -> None:
    """Flush the encoded file to disk before the rename makes it the finished output."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Run:
    """One film through the restorer: owns the chroma state and the decode/encode threads."""

    def __init__(self, source: Path, restorer: Restorer, smoother: ChromaSmoother):
        self.source = source
        self.restorer = restorer
        self.smoother = smoother
        self.meter = FlickerMeter()

    def process(self, first: int, stop: int | None, total: int | None, encoder: _Encoder,
                on_frames: FrameCallback | None, batch_size: int) -> int:
        """Decode, restore and encode frames [first, stop), batch_size at a time; returns how
        many were written."""
        decoded = ReadAhead(_read_frames(self.source, first, stop, batch_size), 2, "colorsr-video-reader")
        writer = WriteBehind(_FrameWriter(encoder), 2 * batch_size, "colorsr-video-writer")
        done = 0
        try:
            while (batch := self._next(decoded, first + done)) is not END:
                for frame in self._restore(batch, first + done):
                    writer.put(frame)
                done += len(batch)
                if on_frames:
                    on_frames(done, total if total is None else max(total, done))
            writer.finish()
        except BaseException:
            writer.abort()  # what is queued is dropped: the partial film is deleted anyway
            raise
        finally:
            decoded.stop(wait=True)
        if done == 0:
            raise VideoError(f"{self.source}: no frames decoded between --start and --end")
        return done

    def _next(self, decoded: ReadAhead, index: int):
        try:
            return decoded.get()
        except Exception as exc:
            raise VideoError(f"{self.source}: cannot decode frame {index}: {exc}") from exc

    def _restore(self, batch: list[torch.Tensor], index: int) -> list[np.ndarray]:
        """uint8 RGB (3, H, W) frames -> uint8 (scale*H, scale*W, 3) RGB frames: the photo path
        (Restorer.restore), with this film's temporal smoothing on the chroma."""
        try:
            restored = self.restorer.restore(batch, chroma=self._smooth)
        except (RuntimeError, ValueError) as exc:
            raise VideoError(f"{self.source}: restore failed at frame {index}: "
                             f"{str(exc).splitlines()[0]}") from exc
        return [to_frames(rgb) for rgb in restored]

    def _smooth(self, lab: torch.Tensor) -> torch.Tensor:
        lab = self.smoother.smooth(lab)
        self.meter.add(lab[1:])
        return lab


def to_frames(rgb: torch.Tensor) -> np.ndarray:
    """(3, H, W), float in [0, 1] or uint8, on any device -> uint8 (H, W, 3) RGB, C-contiguous,
    on the CPU; or a batch (N, 3, H, W) -> (N, H, W, 3), whose items are C-contiguous frames too."""
    channels_last = (*range(rgb.dim() - 3), -2, -1, -3)
    frames = rgb if rgb.dtype == torch.uint8 else (rgb * 255).round_().clamp_(0, 255).to(torch.uint8)
    return frames.permute(channels_last).contiguous().cpu().numpy()


def _read_frames(source: Path, first: int, stop: int | None, batch_size: int) -> Iterator[list[torch.Tensor]]:
    """Batches of uint8 RGB (3, H, W) frames [first, stop). Frames before `first` are skipped
    with grab() (decoded, not converted): exact where container seeking may land on a keyframe."""
    cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG)
    try:
        index = 0
        while index < first and cap.grab():
            index += 1
        batch: list[torch.Tensor] = []
        while stop is None or index < stop:
            ok, bgr = cap.read()
            if not ok:
                break
            index += 1
            batch.append(_to_tensor(bgr))
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        cap.release()


def _to_tensor(bgr: np.ndarray) -> torch.Tensor:
    """OpenCV's (H, W, 3) BGR -> RGB uint8 (3, H, W): a quarter of float's memory in the queue
    and of its host-to-device copy."""
    return torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)


class _FrameWriter:
    """Hands frames to the encoder (on the writer thread), refusing a change of frame size."""

    def __init__(self, encoder: _Encoder):
        self.encoder = encoder
        self.shape: tuple[int, ...] | None = None

    def __call__(self, frame: np.ndarray) -> None:
        self.shape = self.shape or frame.shape
        if frame.shape != self.shape:
            raise VideoError(f"{self.encoder.target}: frame size changed mid-film ({self.shape[1]}x"
                             f"{self.shape[0]} -> {frame.shape[1]}x{frame.shape[0]})")
        self.encoder.write(frame)
