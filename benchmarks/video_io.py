"""Video decode/encode throughput of the ways colorsr could read and write films (plain script,
not a test): OpenCV + an ffmpeg pipe (what colorsr uses), imageio-ffmpeg's read_frames /
write_frames, and PyAV (when installed). Also prints what each tells about a film: frame
timestamps, the rotation flag of a phone video, the audio track.

    python benchmarks/video_io.py [--size 1280x720] [--seconds 10]

The test film is made with the ffmpeg that imageio-ffmpeg ships: a moving test pattern at 25 fps,
a 440 Hz tone, and a 90-degree rotation flag, as a phone would write."""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FPS = 25


def make_film(path: Path, size: str, seconds: float) -> None:
    plain = path.with_name("plain.mp4")
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FPS}:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                    "-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p", "-c:a", "aac", str(plain)],
                   check=True)
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-display_rotation", "90",
                    "-i", str(plain), "-c", "copy", str(path)], check=True)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


# ------------------------------------------------------------------ decoders: film -> RGB frames


def decode_opencv(path: Path) -> dict:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames, stamps = 0, []
    shape = None
    while (got := cap.read())[0]:
        rgb = cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB)
        shape = rgb.shape
        stamps.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
        frames += 1
    rotation = cap.get(cv2.CAP_PROP_ORIENTATION_META)
    cap.release()
    return {"frames": frames, "shape": shape, "timestamps": stamps[:3],
            "rotation": f"{rotation:g} (frames auto-rotated)", "audio": "not seen"}


def decode_imageio(path: Path) -> dict:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = 0
    for raw in reader:
        np.frombuffer(raw, np.uint8).reshape(h, w, 3)
        frames += 1
    return {"frames": frames, "shape": (h, w, 3), "timestamps": "none (fps only)",
            "rotation": f"{meta.get('rotate', 0)} (frames auto-rotated)",
            "audio": "flag only" if meta.get("audio_codec") else "not seen"}


def decode_pyav(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, stamps, shape = 0, [], None
        rotation = None
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            shape = rgb.shape
            stamps.append(float(frame.time))
            rotation = getattr(frame, "rotation", None)
            frames += 1
        audio = [f"{a.codec_context.name} {a.rate} Hz" for a in container.streams.audio]
    return {"frames": frames, "shape": shape, "timestamps": stamps[:3],
            "rotation": f"{rotation} (frames not rotated)", "audio": ", ".join(audio) or "none"}


# ------------------------------------------------------------------ encoders: RGB frames -> H.264 + audio


def encode_pipe(frames: list[np.ndarray], out: Path, audio: Path) -> None:
    h, w = frames[0].shape[:2]
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-", "-i", str(audio), "-map", "0:v:0", "-map", "1:a",
           "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for frame in frames:
        proc.stdin.write(frame.data)
    proc.stdin.close()
    assert proc.wait() == 0


def encode_imageio(frames: list[np.ndarray], out: Path, audio: Path) -> None:
    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(out), (w, h), fps=FPS, codec="libx264",
                                         output_params=["-crf", "18"], audio_path=str(audio),
                                         audio_codec="aac", macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(frame)
    writer.close()


def encode_pyav(frames: list[np.ndarray], out: Path, audio: Path) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(out), "w") as container, av.open(str(audio)) as source:
        video = container.add_stream("libx264", rate=Fraction(FPS))
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": "18"}
        sound_in = source.streams.audio[0]
        sound = container.add_stream("aac", rate=sound_in.rate)
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode())
        for chunk in source.decode(sound_in):
            chunk.pts = None
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    try:
        import av  # noqa: F401
        have_av = True
    except ImportError:
        have_av = False
    decoders = {"OpenCV": decode_opencv, "imageio-ffmpeg": decode_imageio}
    encoders = {"ffmpeg pipe": encode_pipe, "imageio-ffmpeg": encode_imageio}
    if have_av:
        decoders["PyAV"], encoders["PyAV"] = decode_pyav, encode_pyav
    with tempfile.TemporaryDirectory() as tmp:
        film = Path(tmp) / "film.mp4"
        make_film(film, args.size, args.seconds)
        print(f"film: {args.size}, {args.seconds:g} s at {FPS} fps, AAC tone, rotation flag 90")
        print("| decoder | frames/s | frames | frame shape | first timestamps (s) | rotation | audio |")
        print("|---|---|---|---|---|---|---|")
        for name, decode in decoders.items():
            seconds, seen = timed(lambda d=decode: d(film))
            print(f"| {name} | {seen['frames'] / seconds:.0f} | {seen['frames']} | {seen['shape']} | "
                  f"{seen['timestamps']} | {seen['rotation']} | {seen['audio']} |")
        w, h = (int(v) for v in args.size.split("x"))
        rng = np.random.default_rng(0)
        base = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        frames = [np.ascontiguousarray(np.roll(base, 4 * k, axis=1)) for k in range(int(args.seconds * FPS))]
        print("\n| encoder (libx264 crf 18 + AAC) | frames/s |")
        print("|---|---|")
        for name, encode in encoders.items():
            out = Path(tmp) / f"out-{name.replace(' ', '-')}.mp4"
            seconds, _ = timed(lambda e=encode, o=out: e(frames, o, film))
            print(f"| {name} | {len(frames) / seconds:.0f} |")


if __name__ == "__main__":
    main()
