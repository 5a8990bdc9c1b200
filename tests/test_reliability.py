"""Nothing lost, nothing trusted blindly: bad inputs, Ctrl-C, a full disk and hostile weight
files through the whole `colorsr restore`, and every Pillow mode fuzzed through the pipeline.

The loader's own bad-input tests live in tests/test_io.py; its builders are reused here and
these tests check what the user sees end to end: one line per failure, the other files
finished, nothing written outside --out. What the tool prints for each case is listed in
docs/reliability.md.
"""

import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from colorsr_cli import batch
from colorsr_cli import io as colorsr_io
from colorsr_cli.batch import OutputPlan, _resize_alpha, restore_files
from colorsr_cli.cli import app
from colorsr_cli.io import ImageJob, find_images, read_image, write_image_atomic
from colorsr_cli.pipeline import RestoreOptions, Restorer, to_image, to_tensor
from colorsr_cli.weightfile import load_weight_file
from tests.conftest import photo_like
from tests.test_io import (
    _TIFF_MISSING_DIMENSIONS,
    IS_ROOT,
    _encoded,
    _noise,
    _png_with_declared_size,
    _save,
    _time_limit,
)
from tests.test_models import _Exploit

runner = CliRunner()


def _restore(args: list[str], tiny_weights) -> object:
    return runner.invoke(app, ["restore", *args, "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1])])


def _failed_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("failed")]


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry below root: (kind, size, mtime). A folder's mtime changes when a file is
    created or deleted in it, so temp files that came and went are caught too."""
    entries = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            info = os.lstat(os.path.join(folder, name))
            entries[os.path.join(folder, name)] = (info.st_mode >> 12, info.st_size, info.st_mtime_ns)
    return entries


def _digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


# --------------------------------------------------------------------------- bad-input corpus


def _write_bad_inputs(root: Path) -> dict[str, str]:
    """The bad inputs; returns file name -> a fragment of the reason the CLI must print."""
    jpeg, png = _encoded(_noise(64, 64), "JPEG"), _encoded(_noise(64, 64), "PNG")
    (root / "bad-empty.jpg").touch()
    (root / "bad-cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "bad-cut.png").write_bytes(png[: len(png) // 2])
    (root / "bad-letter.jpg").write_text("Dear grandma,\nhere are the photos.\n")
    (root / "bad-garbage.png").write_bytes(png[:16] + bytes(range(256)))
    (root / "bad-bomb.png").write_bytes(_png_with_declared_size(100_000, 100_000))
    (root / "bad-no-pixels.png").write_bytes(_png_with_declared_size(0, 7))
    (root / "bad-no-size.tif").write_bytes(_TIFF_MISSING_DIMENSIONS)
    (root / "bad-link.png").symlink_to(root / "missing.png")
    (root / "bad-loop").symlink_to(".", target_is_directory=True)
    os.mkfifo(root / "bad-pipe.jpg")
    (root / os.fsdecode(b"bad-\xff.jpg")).write_bytes(jpeg[:100])  # a name that is not UTF-8
    _save(root / "bad-wide.webp", _noise(1, 4096))  # decodes, but 4x is too wide for WebP
    reasons = {
        "bad-empty.jpg": "cannot decode image: empty file (0 bytes)",
        "bad-cut.jpg": "truncated",
        "bad-cut.png": "truncated",
        "bad-letter.jpg": "cannot decode image: not a JPEG, PNG, BMP, TIFF, WebP or GIF file",
        "bad-garbage.png": "cannot decode image",
        "bad-bomb.png": "too large: 100000x100000 = 10,000,000,000 pixels > limit 100,000,000 (--max-pixels)",
        "bad-no-pixels.png": "cannot decode image",
        "bad-no-size.tif": "cannot decode image",
        "bad-link.png": "cannot read: No such file or directory",
        "bad-loop": "symlink loop or repeated folder",
        "bad-pipe.jpg": "not a regular file",
        os.fsdecode(b"bad-\xff.jpg"): "cannot decode image",
        "bad-wide.webp": "cannot write: 16384x4 exceeds the WEBP limit of 16383 pixels per side (use .png)",
    }
    if not IS_ROOT:  # root reads it anyway
        (root / "bad-locked.png").write_bytes(png)
        (root / "bad-locked.png").chmod(0)
        reasons["bad-locked.png"] = "cannot read: Permission denied"
    return reasons


def _write_odd_valid_inputs(root: Path) -> dict[bytes, tuple[bytes, tuple[int, int], str]]:
    """Valid but unusual inputs; returns file name -> (output name, upright input (w, h), output mode)."""
    Image.fromarray(np.linspace(0, 65535, 120, dtype=np.uint16).reshape(10, 12)).save(root / "ok-16bit.png")
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(root / "ok-cmyk.jpg")
    palette = Image.new("P", (9, 7))
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (3, 0, 9, 7))
    palette.save(root / "ok-palette.png", transparency=0)
    _save(root / "ok-la.png", np.random.default_rng(1).integers(0, 256, (6, 5, 2), dtype=np.uint8))
    _save(root / "ok-rgba.png", np.random.default_rng(2).integers(0, 256, (5, 6, 4), dtype=np.uint8))
    frames = [Image.new("RGB", (6, 4), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(root / "ok-anim.gif", save_all=True, append_images=frames[1:], duration=100)
    pages = [Image.new("L", (5, 3), value) for value in (10, 200, 90)]
    pages[0].save(root / "ok-pages.tif", save_all=True, append_images=pages[1:])
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored 40 wide x 20 high, shown 20 wide x 40 high
    _save(root / "ok-sideways.jpg", photo_like(20, 40, 3), exif=exif.tobytes(), quality=90)
    _save(root / "ok-1x1.png", _noise(1, 1))
    _save(root / "ok-3x1000.png", photo_like(1000, 3, 4, gray=True))
    _save(Path(os.fsdecode(os.fsencode(root) + b"/ok-caf\xe9.png")), photo_like(8, 8, 5))
    _save(root / "ok with spaces.png", photo_like(8, 10, 6))
    return {
        b"ok-16bit.png": (b"ok-16bit.png", (12, 10), "RGB"),
        b"ok-cmyk.jpg": (b"ok-cmyk.jpg", (16, 12), "RGB"),
        b"ok-palette.png": (b"ok-palette.png", (9, 7), "RGBA"),
        b"ok-la.png": (b"ok-la.png", (5, 6), "RGBA"),
        b"ok-rgba.png": (b"ok-rgba.png", (6, 5), "RGBA"),
        b"ok-anim.gif": (b"ok-anim.png", (6, 4), "RGB"),
        b"ok-pages.tif": (b"ok-pages.png", (5, 3), "RGB"),
        b"ok-sideways.jpg": (b"ok-sideways.jpg", (20, 40), "RGB"),
        b"ok-1x1.png": (b"ok-1x1.png", (1, 1), "RGB"),
        b"ok-3x1000.png": (b"ok-3x1000.png", (3, 1000), "RGB"),
        b"ok-caf\xe9.png": (b"ok-caf\xe9.png", (8, 8), "RGB"),
        b"ok with spaces.png": (b"ok with spaces.png", (10, 8), "RGB"),
    }


def test_bad_input_corpus_through_restore(tiny_weights, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    reasons = _write_bad_inputs(corpus)
    valid = _write_odd_valid_inputs(corpus)
    monkeypatch.chdir(tmp_path)
    weights = tiny_weights[0].parent
    before, inputs_before = (_snapshot(corpus), _snapshot(weights)), _digests(corpus)

    result = _restore(["corpus", "--out", "out", "--json"], tiny_weights)

    assert result.exit_code == 1, result.output
    failed = _failed_lines(result.stderr)
    for name, reason in reasons.items():
        shown = name.encode("ascii", "backslashreplace").decode()  # as stderr writes undecodable bytes
        lines = [line for line in failed if f"/{shown}:" in line]
        assert len(lines) == 1, (name, failed)
        assert reason in lines[0], (name, lines[0])
    assert len(failed) == len(reasons), failed
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"]) == (len(valid), len(reasons))
    assert sorted(os.listdir(b"out")) == sorted(out for out, _, _ in valid.values())
    for out_name, (width, height), mode in valid.values():
        with Image.open(os.path.join(b"out", out_name)) as img:
            assert (img.size, img.mode) == ((4 * width, 4 * height), mode), out_name
    assert sorted(os.listdir(tmp_path)) == ["corpus", "out"]
    assert (_snapshot(corpus), _snapshot(weights)) == before, "nothing may be written outside --out"
    assert _digests(corpus) == inputs_before, "inputs must never be modified"


def test_output_folder_under_a_file_fails_each_file_clearly(tiny_weights, tmp_path):
    for k in range(3):
        _save(tmp_path / "in" / f"p{k}.png", photo_like(8, 8, k, gray=True))
    (tmp_path / "blocker").write_text("a file, not a folder")
    result = _restore([str(tmp_path / "in"), "--out", str(tmp_path / "blocker" / "out")], tiny_weights)
    assert result.exit_code == 1
    failed = _failed_lines(result.stderr)
    assert len(failed) == 3
    for k, line in enumerate(sorted(failed)):
        assert f"blocker/out/p{k}.png: cannot create folder" in line and "Not a directory" in line
    assert (tmp_path / "blocker").read_text() == "a file, not a folder"


# --------------------------------------------------------------------------- Ctrl-C and resume


def _outputs(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_leaves_only_complete_outputs_and_a_rerun_finishes(tiny_weights, tmp_path, signum):
    """Ctrl-C, and SIGTERM (`kill`, a job scheduler's time limit) the same way."""
    source, out = tmp_path / "in", tmp_path / "out"
    for k in range(40):
        _save(source / f"img{k:02d}.png", photo_like(96, 96, k, gray=True))
    # The real CLI in a child process, each batch held 50 ms, and every batch after the third
    # held until the signal has been sent (the file `go` is made just after it): with tiny
    # networks a run is otherwise over (or its writes bunched at the end on a busy machine)
    # before the signal lands. A process started in the background (`cmd &`, nohup) inherits
    # SIGINT ignored; the child takes Python's own handler back, as at a terminal.
    go = tmp_path / "go"
    slowed = textwrap.dedent("""
        import os, signal, sys, time
        from pathlib import Path
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from colorsr_cli import pipeline
        from colorsr_cli.cli import main
        real, calls, go = pipeline.Restorer.restore, [], Path(os.environ["COLORSR_TEST_GO"])
        def held(self, *args):
            calls.append(1)
            time.sleep(0.05)
            while len(calls) > 3 and not go.exists():
                time.sleep(0.01)
            return real(self, *args)
        pipeline.Restorer.restore = held
        main()
    """)
    command = [sys.executable, "-c", slowed, "restore", str(source), "--out", str(out),
               "--batch-size", "1", "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1])]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLORSR_TEST_GO": str(go)})
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir())):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.01)
        proc.send_signal(signum)
        go.touch()
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    finished = _outputs(out)
    assert 0 < len(finished) < 40, "the run must have been stopped part way"
    assert not [name for name in finished if name.startswith(".") or name.endswith(".tmp")]
    for name in finished:
        with Image.open(out / name) as img:
            img.load()  # fully decodes: not truncated
            assert img.size == (384, 384)

    rerun = _restore([str(source), "--out", str(out), "--json", "--quiet"], tiny_weights)
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)
    assert (summary["skipped"], summary["done"]) == (len(finished), 40 - len(finished))
    after = _outputs(out)
    assert len(after) == 40
    assert {name: after[name] for name in finished} == finished, "finished outputs must not be redone"


def _restorer(tiny_weights, batch_size: int = 1) -> Restorer:
    color, sr = (load_weight_file(path)[0] for path in tiny_weights)
    return Restorer(color, sr, RestoreOptions(tile=32, tile_pad=4, batch_size=batch_size))


def _gray_jobs(folder: Path, count: int) -> list[ImageJob]:
    for k in range(count):
        _save(folder / f"p{k:02d}.png", photo_like(16, 16, k, gray=True))
    return find_images([str(folder)])[0]


def test_interrupted_library_run_stops_its_threads_and_leaves_complete_files(tiny_weights, tmp_path,
                                                                             monkeypatch):
    restorer, out = _restorer(tiny_weights), tmp_path / "out"
    real_restore, calls = restorer.restore, []

    def ctrl_c_on_the_fourth_batch(images, *flags):
        calls.append(len(images))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_restore(images, *flags)

    monkeypatch.setattr(restorer, "restore", ctrl_c_on_the_fourth_batch)
    reported_on = set()
    with pytest.raises(KeyboardInterrupt):
        restore_files(_gray_jobs(tmp_path / "in", 20), restorer, OutputPlan(out),
                      lambda result: reported_on.add(threading.current_thread()))
    assert reported_on <= {threading.current_thread()}, "results are reported on the caller's thread"
    deadline = time.monotonic() + 5
    while any(t.name.startswith("colorsr-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a reader or writer thread outlived the run"
        time.sleep(0.01)
    written = sorted(os.listdir(out)) if out.exists() else []
    assert set(written) <= {"p00.png", "p01.png", "p02.png"}  # restored before the interrupt
    for name in written:
        with Image.open(out / name) as img:
            img.load()


# Run in a child process: Ctrl-C while restore_files restores its second batch, then Ctrl-C again
# while it waits for the writer, which is then still saving the first image (made slow).
_DOUBLE_CTRL_C = """
import signal, sys, threading, time
from pathlib import Path
from colorsr_cli import io
from colorsr_cli.batch import OutputPlan, restore_files
from colorsr_cli.io import find_images
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.weightfile import load_weight_file

source, out, color, sr = map(Path, sys.argv[1:])
writing = threading.Event()

def slow_save(path, img, fmt, options):
    with io.atomic_write(path) as file:
        writing.set()
        img.save(file, format=fmt)
        time.sleep(1.0)

def second_ctrl_c(signum, frame):
    raise KeyboardInterrupt

io._save_via_temp = slow_save
signal.signal(signal.SIGALRM, second_ctrl_c)
restorer = Restorer(load_weight_file(color)[0], load_weight_file(sr)[0], RestoreOptions(batch_size=1))
first_batch = restorer.restore

calls = []

def restore(images, *flags):
    calls.append(1)
    if len(calls) == 1:
        return first_batch(images, *flags)
    writing.wait()  # the second batch: Ctrl-C once the first file is being written
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    raise KeyboardInterrupt

restorer.restore = restore
restore_files(find_images([str(source)])[0], restorer, OutputPlan(out), lambda result: None)
"""


def test_second_ctrl_c_while_a_file_is_written_still_completes_that_file(tiny_weights, tmp_path):
    _gray_jobs(tmp_path / "in", 3)
    out = tmp_path / "out"
    child = subprocess.run([sys.executable, "-c", _DOUBLE_CTRL_C, str(tmp_path / "in"), str(out),
                            *map(str, tiny_weights)], capture_output=True, text=True, timeout=120)
    assert "KeyboardInterrupt" in child.stderr, child.stderr
    assert os.listdir(out) == ["p00.png"], "the file being written is finished, nothing else is left"
    with Image.open(out / "p00.png") as img:
        img.load()


def test_an_unexpected_write_error_fails_that_file_and_the_run_goes_on(tiny_weights, tmp_path, monkeypatch):
    real_write = batch.write_image_atomic

    def encoder_bug_on_p03(path, rgb, alpha=None, **options):
        if path.name == "p03.png":
            raise RuntimeError("encoder bug")
        real_write(path, rgb, alpha, **options)

    monkeypatch.setattr(batch, "write_image_atomic", encoder_bug_on_p03)
    with _time_limit(60):  # more files than the queues hold: a dead writer thread would hang here
        results = restore_files(_gray_jobs(tmp_path / "in", 12), _restorer(tiny_weights),
                                OutputPlan(tmp_path / "out"), lambda result: None)
    failed = [r for r in results if r.status == "failed"]
    assert [r.source.name for r in failed] == ["p03.png"]
    assert failed[0].reason.endswith("p03.png: unexpected error while writing: RuntimeError('encoder bug')")
    assert sum(r.status == "done" for r in results) == 11


# --------------------------------------------------------------------------- disk full


def test_disk_full_fails_that_file_clearly_and_the_run_goes_on(tiny_weights, tmp_path, monkeypatch):
    for name in "abc":
        _save(tmp_path / "in" / f"{name}.png", photo_like(8, 8, ord(name), gray=True))
    real_fsync = os.fsync

    def disk_full_for_b(fd: int) -> None:  # the temp file already holds a partial image
        if "/.b.png." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(colorsr_io.os, "fsync", disk_full_for_b)
    out = tmp_path / "out"
    result = _restore([str(tmp_path / "in"), "--out", str(out), "--json"], tiny_weights)
    assert result.exit_code == 1
    assert _failed_lines(result.stderr) == [f"failed {out / 'b.png'}: cannot write: No space left on device"]
    assert json.loads(result.stdout)["done"] == 2
    assert sorted(os.listdir(out)) == ["a.png", "c.png"]  # no truncated b.png, no temp file


# --------------------------------------------------------------------------- weights


def test_malicious_weight_file_is_refused_before_it_runs(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "colorsr-weights/1", "payload": _Exploit()}, tmp_path / "evil.pt")
    _save(tmp_path / "in.png", _noise(4, 4))
    result = runner.invoke(app, ["restore", "in.png", "-w", "evil.pt", "-w", str(tiny_weights[1])])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: evil.pt: refused to load: not a plain weights file, it holds "
                                     "pickled Python objects (exec) that could run code")
    assert not (tmp_path / "PWNED").exists(), "the pickled payload ran"
    assert not (tmp_path / "in_colorsr.png").exists()


# --------------------------------------------------------------------------- fuzz: every mode


# What Pillow can save each mode as (its own encoders decide; e.g. only TIFF holds F).
_FORMATS_BY_MODE = {
    "1": ["png", "jpg", "tiff", "webp", "gif", "bmp"],
    "L": ["png", "jpg", "tiff", "webp", "gif", "bmp"],
    "LA": ["png", "tiff", "webp", "gif"],
    "P": ["png", "tiff", "webp", "gif", "bmp"],
    "RGB": ["png", "jpg", "tiff", "webp", "gif", "bmp"],
    "RGBA": ["png", "tiff", "webp", "gif", "bmp"],
    "CMYK": ["jpg", "tiff", "webp"],
    "I;16": ["png", "tiff", "webp", "gif"],
    "I": ["tiff", "webp", "gif"],
    "F": ["tiff", "webp", "gif"],
}


@st.composite
def _images(draw) -> tuple[Image.Image, str]:
    """A random image of any mode and 1..40 px per side, with a format that can hold it."""
    mode = draw(st.sampled_from(sorted(_FORMATS_BY_MODE)))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode in ("I", "F"):  # any range, including negative and huge values
        low, span = draw(st.sampled_from([(0.0, 1.0), (0.0, 65535.0), (-1e6, 2e6), (5.0, 0.0)]))
        values = low + span * rng.random((height, width))
        if mode == "F" and draw(st.booleans()):
            special = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            values[rng.integers(height), rng.integers(width)] = special
        image = Image.fromarray(values.astype(np.int32 if mode == "I" else np.float32), mode)
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        image = Image.frombytes(mode, (width, height), rng.bytes(width * height * bands))
        if mode == "P" and draw(st.booleans()):
            image.info["transparency"] = int(rng.integers(0, 256))
    return image, draw(st.sampled_from(_FORMATS_BY_MODE[mode]))


@pytest.fixture(scope="module")
def restorer(tiny_weights) -> Restorer:
    return _restorer(tiny_weights, batch_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_images())
def test_any_mode_size_and_format_goes_through_the_pipeline(case, restorer, tmp_path):
    """Every file here is valid, so even a ColorsrError would be a bug: any exception fails."""
    image, fmt = case
    path = tmp_path / f"fuzz.{fmt}"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if fmt == "jpg" else fmt)
    path.write_bytes(buffer.getvalue())
    decoded = read_image(path)
    height, width = decoded.rgb.shape[:2]
    assert (height, width) == (image.height, image.width)
    assert np.isfinite(decoded.rgb).all() and 0 <= decoded.rgb.min() <= decoded.rgb.max() <= 1
    output = restorer.restore([to_tensor(decoded.rgb)])[0]
    assert output.shape == (3, 4 * height, 4 * width)
    assert torch.isfinite(output).all() and output.min() >= 0 and output.max() <= 1
    alpha = _resize_alpha(decoded.alpha, output.shape[-2:])
    assert alpha is None or (alpha.shape == (4 * height, 4 * width) and 0 <= alpha.min() <= alpha.max() <= 1)
    write_image_atomic(tmp_path / "out.png", to_image(output), alpha)
    with Image.open(tmp_path / "out.png") as written:
        assert written.size == (4 * width, 4 * height)
        assert written.mode == ("RGB" if alpha is None else "RGBA")


def test_each_output_is_written_while_the_next_images_are_restored(tiny_weights, tmp_path, monkeypatch):
    """Images larger than a tile go one per batch (their tiles batch together), and each is
    written and reported before the run ends: the first output exists while later images are
    still being restored."""
    restorer = _restorer(tiny_weights, batch_size=16)  # tile 32: 48x48 images need 4 tiles
    for k in range(6):
        _save(tmp_path / "in" / f"p{k}.png", photo_like(48, 48, k, gray=True))
    real_restore, calls, reported = restorer.restore, [], []

    def restore(images, *flags):
        calls.append(len(images))
        if len(calls) == 4:  # by now the first output must be on disk and reported
            deadline = time.monotonic() + 10
            while not (tmp_path / "out" / "p0.png").exists():
                assert time.monotonic() < deadline, "the first output was held back"
                time.sleep(0.01)
        return real_restore(images, *flags)

    monkeypatch.setattr(restorer, "restore", restore)
    restore_files(find_images([str(tmp_path / "in")])[0], restorer, OutputPlan(tmp_path / "out"),
                  lambda result: reported.append((len(calls), result.source.name)))
    assert calls == [1] * 6
    assert reported[0][0] < 6, "results were reported only at the end"
    assert sorted(name for _, name in reported) == [f"p{k}.png" for k in range(6)]


def test_ctrl_c_still_writes_every_image_restored_before_it(tiny_weights, tmp_path, monkeypatch):
    """A slow encoder lags behind: when Ctrl-C comes during the fourth image, none of the three
    restored ones is written yet; they are written all the same."""
    restorer, out = _restorer(tiny_weights), tmp_path / "out"
    real_restore, real_write, calls = restorer.restore, batch.write_image_atomic, []
    interrupted = threading.Event()

    def ctrl_c_on_the_fourth(images, *flags):
        calls.append(1)
        if len(calls) == 4:
            interrupted.set()
            raise KeyboardInterrupt
        return real_restore(images, *flags)

    def slow_write(*args, **kwargs):
        interrupted.wait(10)
        real_write(*args, **kwargs)

    monkeypatch.setattr(restorer, "restore", ctrl_c_on_the_fourth)
    monkeypatch.setattr(batch, "write_image_atomic", slow_write)
    with pytest.raises(KeyboardInterrupt):
        restore_files(_gray_jobs(tmp_path / "in", 8), restorer, OutputPlan(out), lambda result: None)
    assert sorted(os.listdir(out)) == ["p00.png", "p01.png", "p02.png"]


def test_out_of_memory_is_one_line_naming_the_file_and_the_options_that_help(tiny_weights, tmp_path,
                                                                             monkeypatch):
    """Under a (forced, small) memory limit the big scan fails with one line that names it and
    says which options need less; the small photo is restored and the run goes on."""
    from colorsr_cli import tiling

    real_init = tiling.TileCanvas.__init__

    def limited(self, channels, height, width, pad, scale, *args, **kwargs):
        wanted = channels * height * width * scale * scale
        if wanted > 100_000:
            raise RuntimeError(f"[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                               f"allocate memory: you tried to allocate {wanted} bytes. Error code 12")
        real_init(self, channels, height, width, pad, scale, *args, **kwargs)

    monkeypatch.setattr(tiling.TileCanvas, "__init__", limited)
    _save(tmp_path / "in" / "big.png", photo_like(96, 128, 1, gray=True))
    _save(tmp_path / "in" / "small.png", photo_like(16, 16, 2, gray=True))
    result = runner.invoke(app, ["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--tile", "32",
                                 "-w", str(tiny_weights[0]), "-w", str(tiny_weights[1])])
    assert result.exit_code == 1
    failed = _failed_lines(result.stderr)
    assert failed == [f"failed {tmp_path / 'in' / 'big.png'}: out of memory restoring 128x96 at scale 4 "
                      "(try --tile 16 or --scale 2)"]
    assert os.listdir(tmp_path / "out") == ["small.png"]
