"""Tests for colorsr_cli.io: every bad input is generated here, in tmp_path (no binaries committed).

References are independent of the code under test: OpenCV writes and reads the files whose
pixel values are checked, and expected values are computed by hand.
"""

import contextlib
import errno
import io
import os
import signal
import stat
import struct
import time
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from colorsr_cli.errors import ImageReadError, ImageWriteError
from colorsr_cli.io import (
    DecodedImage,
    ImageJob,
    find_images,
    output_path_for,
    read_image,
    write_image_atomic,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --------------------------------------------------------------------------- helpers


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def _encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Fail instead of hanging when a directory walk never ends."""

    def _expired(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _sources(jobs: list[ImageJob]) -> list[str]:
    return [str(job.relative) for job in jobs]


# --------------------------------------------------------------------------- find_images


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    pixel = np.zeros((2, 2, 3), np.uint8)
    for name in ["b.png", "a.jpg", "sub/c.PNG", "my photos/e e.webp", ".hidden.png",
                 ".a.png.x1y2z3.tmp", ".hiddendir/d.png"]:
        _save(root / name, pixel, format="PNG")
    (root / "sub" / "notes.txt").write_text("not an image")
    return root


def test_folder_is_walked_sorted_recursively_skipping_hidden(tree: Path):
    jobs, problems = find_images([str(tree)])
    assert _sources(jobs) == ["a.jpg", "b.png", "my photos/e e.webp", "sub/c.PNG"]
    assert all(job.source == tree / job.relative for job in jobs)
    assert problems == []


def test_walk_is_deterministic(tree: Path):
    assert find_images([str(tree)]) == find_images([str(tree)])


def test_file_argument_uses_its_name_and_is_listed_once(tree: Path):
    jobs, problems = find_images([str(tree / "sub" / "c.PNG"), str(tree)])
    assert jobs[0] == ImageJob(tree / "sub" / "c.PNG", Path("c.PNG"))
    assert _sources(jobs).count("sub/c.PNG") == 0 and len(jobs) == 4
    assert problems == []


def test_missing_path_and_unsupported_file_are_problems(tree: Path):
    missing, text = tree / "nope.jpg", tree / "sub" / "notes.txt"
    jobs, problems = find_images([str(missing), str(text)])
    assert jobs == []
    assert problems[0] == (missing, "no such file or directory")
    assert problems[1][0] == text and "unsupported file type '.txt'" in problems[1][1]


def test_glob_patterns_mirror_below_their_literal_root(tree: Path):
    jobs, problems = find_images([f"{tree}/*.png", f"{tree}/**/*.webp", f"{tree}/s*"])
    assert _sources(jobs) == ["b.png", "my photos/e e.webp", "sub/c.PNG"]
    assert problems == []


def test_glob_without_matches_is_a_problem(tree: Path):
    jobs, problems = find_images([f"{tree}/*.gif", f"{tree}/**/*.tif"])
    assert jobs == []
    assert [reason for _, reason in problems] == ["no images match this pattern"] * 2


def test_symlink_loops_terminate_and_list_each_file_once(tree: Path):
    (tree / "sub" / "up").symlink_to(tree, target_is_directory=True)
    (tree / "sub" / "self").symlink_to(".", target_is_directory=True)
    with _time_limit(20):
        walked, walk_problems = find_images([str(tree)])
        globbed, glob_problems = find_images([f"{tree}/**/*.png", f"{tree}/**/*.webp"])
    assert _sources(walked) == ["a.jpg", "b.png", "my photos/e e.webp", "sub/c.PNG"]
    assert _sources(globbed) == ["b.png", "my photos/e e.webp"]
    looped = {path.name for path, reason in walk_problems if "symlink loop" in reason}
    assert looped == {"up", "self"}
    assert all("symlink loop" in reason for _, reason in glob_problems)


def test_unreadable_folder(tree: Path):
    locked = tree / "sub"
    locked.chmod(0)
    try:
        jobs, problems = find_images([str(tree)])
    finally:
        locked.chmod(0o755)
    if IS_ROOT:  # root bypasses permissions: the folder is simply read
        assert "sub/c.PNG" in _sources(jobs) and problems == []
    else:
        assert "sub/c.PNG" not in _sources(jobs)
        assert problems == [(locked, "cannot read folder: Permission denied")]


def test_broken_link_and_fifo_with_image_names_are_problems(tmp_path: Path):
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    os.mkfifo(tmp_path / "pipe.jpg")
    jobs, problems = find_images([str(tmp_path)])
    assert jobs == []
    assert sorted(path.name for path, _ in problems) == ["gone.png", "pipe.jpg"]


def test_non_utf8_and_spaces_in_names_survive_find_read_and_write(tmp_path: Path):
    raw_name = b"caf\xe9 old photo.png"  # Latin-1 byte: not valid UTF-8
    source = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), raw_name)))
    _save(source, _noise(4, 5))
    jobs, problems = find_images([str(tmp_path)])
    assert problems == [] and len(jobs) == 1
    assert os.fsencode(jobs[0].source) == os.fsencode(tmp_path) + b"/" + raw_name
    image = read_image(jobs[0].source)
    target = output_path_for(jobs[0], tmp_path / "out dir", "_colorsr", None)
    write_image_atomic(target, image.rgb)
    assert os.fsencode(target.name) == b"caf\xe9 old photo_colorsr.png"
    np.testing.assert_array_equal(read_image(target).rgb, image.rgb)


# --------------------------------------------------------------------------- read_image: bad input


def test_zero_byte_file_is_refused(tmp_path: Path):
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageReadError, match=r"empty.jpg: cannot decode image: empty file"):
        read_image(path)


@pytest.mark.parametrize("fmt, name", [("JPEG", "cut.jpg"), ("PNG", "cut.png")])
def test_truncated_files_are_refused_not_padded(tmp_path: Path, fmt: str, name: str):
    data = _encoded(_noise(64, 64), fmt)
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"{name}: cannot decode image: .*truncated"):
        read_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_text_file_named_jpg_is_refused(tmp_path: Path):
    path = tmp_path / "letter.jpg"
    path.write_text("Dear grandma,\nhere are the photos.\n")
    with pytest.raises(ImageReadError, match="letter.jpg: cannot decode image: not a JPEG"):
        read_image(path)


def test_missing_file_and_folder_are_read_errors(tmp_path: Path):
    with pytest.raises(ImageReadError, match="cannot read: No such file or directory"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image(tmp_path)


def _png_with_declared_size(width: int, height: int) -> bytes:
    data = bytearray(_encoded(np.zeros((1, 1, 3), np.uint8), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_huge_declared_size_is_refused_before_decoding(tmp_path: Path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_declared_size(100_000, 100_000))
    start = time.perf_counter()
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert time.perf_counter() - start < 1.0
    message = str(caught.value)
    assert "bomb.png: too large: 100000x100000" in message and "(--max-pixels)" in message
    assert "\n" not in message


def test_max_pixels_is_ours_not_pillows(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow would refuse > 20 pixels
    path = _save(tmp_path / "ok.png", _noise(8, 8))
    assert read_image(path).rgb.shape == (8, 8, 3)
    assert Image.MAX_IMAGE_PIXELS == 10
    with pytest.raises(ImageReadError, match=r"8x8 = 64 pixels > limit 63"):
        read_image(path, max_pixels=63)


# --------------------------------------------------------------------------- read_image: modes


@pytest.mark.parametrize("name", ["deep.png", "deep.tif"])
def test_16_bit_gray_keeps_its_depth(tmp_path: Path, name: str):
    values = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / name
    assert cv2.imwrite(str(path), values)
    image = read_image(path)
    assert image.rgb.dtype == np.float32 and image.rgb.shape == (1, 4, 3)
    expected = np.array([0, 1000, 32768, 65535]) / 65535.0
    for channel in range(3):
        np.testing.assert_allclose(image.rgb[0, :, channel], expected, atol=1e-7)
    assert image.was_gray and image.alpha is None


def test_float_tiff_in_unit_range_is_kept(tmp_path: Path):
    values = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    image = read_image(path)
    np.testing.assert_allclose(image.rgb[0, :, 1], values[0])
    assert image.was_gray and image.notes == []


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)
    image = read_image(path)
    # R = (1 - C)(1 - K), G = (1 - M)(1 - K), B = (1 - Y)(1 - K): pure red
    np.testing.assert_allclose(image.rgb[8, 8], [1.0, 0.0, 0.0], atol=0.03)
    assert not image.was_gray and any("CMYK" in note for note in image.notes)


def test_palette_png_transparency_becomes_alpha(tmp_path: Path):
    path = tmp_path / "palette.png"
    img = Image.new("P", (4, 2))
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (2, 0, 4, 2))
    img.save(path, transparency=0)
    image = read_image(path)
    assert image.alpha is not None
    np.testing.assert_array_equal(image.alpha, [[0, 0, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_allclose(image.rgb[0, 3], [1, 0, 0])


@pytest.mark.parametrize("channels", [2, 4])
def test_la_and_rgba_keep_alpha(tmp_path: Path, channels: int):
    pixels = np.random.default_rng(channels).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    path = tmp_path / "alpha.png"
    Image.fromarray(pixels).save(path)
    image = read_image(path)
    np.testing.assert_allclose(image.alpha, pixels[..., -1] / 255.0, atol=1e-6)
    expected = pixels[..., :1] if channels == 2 else pixels[..., :3]
    np.testing.assert_allclose(image.rgb, np.broadcast_to(expected, (5, 7, 3)) / 255.0, atol=1e-6)
    assert image.was_gray == (channels == 2)


def test_animated_gif_uses_first_frame_with_a_note(tmp_path: Path):
    path = tmp_path / "anim.gif"
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (6, 4), colour) for colour in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = read_image(path)
    np.testing.assert_allclose(image.rgb[2, 3], [1, 0, 0])
    assert image.notes == ["animated GIF: first of 3 frames used"]


def test_multipage_tiff_uses_first_page_with_a_note(tmp_path: Path):
    path = tmp_path / "scan.tif"
    pages = [Image.new("L", (5, 3), value) for value in (10, 200, 90)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    image = read_image(path)
    np.testing.assert_allclose(image.rgb, np.full((3, 5, 3), 10 / 255.0), atol=1e-6)
    assert image.notes == ["multi-page TIFF: first of 3 pages used"]


def test_exif_orientation_6_is_applied(tmp_path: Path):
    upright = np.zeros((40, 20, 3), np.uint8)
    upright[..., 2] = 255  # blue
    upright[:8, :8] = (255, 0, 0)  # red mark in the top-left corner
    stored = np.ascontiguousarray(np.rot90(upright))  # what a camera held sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = _save(tmp_path / "sideways.jpg", stored, exif=exif.tobytes(), quality=95)
    image = read_image(path)
    assert image.rgb.shape == (40, 20, 3)
    np.testing.assert_allclose(image.rgb[3, 3], [1, 0, 0], atol=0.1)
    for y, x in [(3, 16), (36, 3), (36, 16)]:
        np.testing.assert_allclose(image.rgb[y, x], [0, 0, 1], atol=0.1)


@pytest.mark.filterwarnings("error")  # the library must not let Pillow warnings out
def test_decoder_warnings_become_notes(tmp_path: Path):
    exif = Image.Exif()
    exif[0x010F] = "Camera maker " * 10
    path = tmp_path / "bad_exif.jpg"
    Image.new("RGB", (4, 4)).save(path, exif=exif.tobytes()[:30])  # EXIF cut short
    image = read_image(path)
    assert image.rgb.shape == (4, 4, 3)
    assert any(note.startswith("decoder warning: Corrupt EXIF") for note in image.notes)


@pytest.mark.parametrize("height, width", [(1, 1), (1000, 3), (3, 1000)])
def test_tiny_and_thin_images(tmp_path: Path, height: int, width: int):
    pixels = _noise(height, width)
    image = read_image(_save(tmp_path / "thin.png", pixels))
    np.testing.assert_allclose(image.rgb, pixels / 255.0, atol=1e-6)
    assert image.alpha is None


def test_was_gray_detects_equal_channels_within_one_level(tmp_path: Path):
    gray = np.repeat(_noise(6, 6)[..., :1], 3, axis=2)
    nearly = gray.copy()
    nearly[..., 1] = np.clip(nearly[..., 1].astype(int) + 1, 0, 255)
    coloured = gray.copy()
    coloured[0, 0] = (0, 0, 255)
    assert read_image(_save(tmp_path / "g.png", gray)).was_gray
    assert read_image(_save(tmp_path / "n.png", nearly)).was_gray
    assert not read_image(_save(tmp_path / "c.png", coloured)).was_gray


# --------------------------------------------------------------------------- read_image: fuzz

_MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"RIFF", b""]
_VALID = [
    _encoded(_noise(6, 5), "PNG"), _encoded(_noise(6, 5), "JPEG"), _encoded(_noise(6, 5), "GIF"),
    _encoded(_noise(6, 5), "BMP"), _encoded(_noise(6, 5), "TIFF"), _encoded(_noise(6, 5), "WEBP"),
]


@st.composite
def _mangled_files(draw) -> bytes:
    """Random bytes behind a known magic prefix, or a valid file with bytes changed or cut."""
    if draw(st.booleans()):
        return draw(st.sampled_from(_MAGIC)) + draw(st.binary(max_size=600))
    data = bytearray(draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(1, len(data)))])


# A TIFF whose second page lacks its size tags: Pillow raises TypeError (found by this test).
_TIFF_MISSING_DIMENSIONS = bytes.fromhex(
    "49492a00080000000a00000104000100000005000000010104000100000006000000020103000300"
    "00008600000003010300010000000100000006010300010000000200000011010400010000008c00"
    "000015010300010000000300000016010400010000000600000017010400010000005a0000001c01"
    "0300010000000100000001000000080008000800"
)


@example(data=_TIFF_MISSING_DIMENSIONS, suffix=".tif")
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_mangled_files(), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif"]))
def test_any_bytes_decode_or_raise_image_read_error(tmp_path: Path, data: bytes, suffix: str):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the library must not let Pillow warnings out
            image = read_image(path, max_pixels=1_000_000)
    except ImageReadError as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
        return
    assert isinstance(image, DecodedImage)
    assert image.rgb.dtype == np.float32 and image.rgb.ndim == 3 and image.rgb.shape[2] == 3
    assert np.isfinite(image.rgb).all() and image.rgb.min() >= 0 and image.rgb.max() <= 1
    assert image.alpha is None or image.alpha.shape == image.rgb.shape[:2]


# --------------------------------------------------------------------------- write_image_atomic


def _gradient(h: int = 24, w: int = 32) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([x / (w - 1), y / (h - 1), 1 - x / (w - 1)], axis=2)
    return rgb, (x + y) / (h + w - 2)


def _expected_uint8(values: np.ndarray) -> np.ndarray:
    return np.round(values * 255).astype(np.uint8)


@pytest.mark.parametrize("suffix, exact", [(".png", True), (".webp", False), (".jpg", False)])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_round_trip(tmp_path: Path, suffix: str, exact: bool, with_alpha: bool):
    rgb, alpha = _gradient()
    path = tmp_path / "deep" / "er" / f"out{suffix}"  # parents are created
    write_image_atomic(path, rgb, alpha if with_alpha else None)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    keeps_alpha = with_alpha and suffix != ".jpg"  # JPEG has no alpha: it is dropped
    assert back.shape == (24, 32, 4 if keeps_alpha else 3)
    got_rgb = back[..., 2::-1].astype(int)
    error = np.abs(got_rgb - _expected_uint8(rgb))
    assert error.max() == 0 if exact else (error.mean() < 2 and error.max() < 16)
    if keeps_alpha:
        np.testing.assert_array_equal(back[..., 3], _expected_uint8(alpha))
    assert os.listdir(path.parent) == [path.name]


def test_uint8_input_and_file_mode(tmp_path: Path):
    pixels = _noise(3, 4)
    path = tmp_path / "u8.png"
    write_image_atomic(path, pixels)
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], pixels)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_unsupported_extension_and_oversized_webp(tmp_path: Path):
    with pytest.raises(ImageWriteError, match=r"out.tif: cannot write: unsupported extension"):
        write_image_atomic(tmp_path / "out.tif", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ImageWriteError, match="exceeds the WEBP limit of 16383"):
        write_image_atomic(tmp_path / "wide.webp", np.zeros((1, 16384, 3), np.uint8))
    assert os.listdir(tmp_path) == []


def test_parent_that_is_a_file_is_a_write_error(tmp_path: Path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ImageWriteError, match="out.png: cannot write: .*blocker is not a folder"):
        write_image_atomic(blocker / "out.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ImageWriteError, match="cannot create folder .*Not a directory"):
        write_image_atomic(blocker / "sub" / "out.png", np.zeros((2, 2, 3), np.float32))


@pytest.mark.skipif(IS_ROOT, reason="root ignores folder permissions; covered by the test above")
def test_read_only_folder_is_a_write_error(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ImageWriteError, match="ro/out.png: cannot write: Permission denied"):
            write_image_atomic(folder / "out.png", np.zeros((2, 2, 3), np.float32))
    finally:
        folder.chmod(0o755)


def _previous_output(tmp_path: Path) -> Path:
    path = tmp_path / "result.png"
    path.write_bytes(b"previous run")
    return path


def test_disk_full_during_save_leaves_no_temp_and_keeps_old_file(tmp_path: Path, monkeypatch):
    path = _previous_output(tmp_path)

    def fill_disk(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", fill_disk)
    with pytest.raises(ImageWriteError, match=r"result.png: cannot write: No space left on device"):
        write_image_atomic(path, np.zeros((2, 2, 3), np.float32))
    assert os.listdir(tmp_path) == ["result.png"]
    assert path.read_bytes() == b"previous run"


def test_failed_rename_leaves_no_temp(tmp_path: Path, monkeypatch):
    path = _previous_output(tmp_path)

    def read_only_fs(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "replace", read_only_fs)
    with pytest.raises(ImageWriteError, match="cannot write: Read-only file system"):
        write_image_atomic(path, np.zeros((2, 2, 3), np.float32))
    assert os.listdir(tmp_path) == ["result.png"]


def test_ctrl_c_during_save_leaves_no_temp(tmp_path: Path, monkeypatch):
    def interrupted(self, fp, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image_atomic(tmp_path / "out.jpg", np.zeros((2, 2, 3), np.float32))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- output_path_for


def test_output_mirrors_the_tree_under_out_dir(tmp_path: Path):
    job = ImageJob(tmp_path / "in" / "2019" / "beach.jpg", Path("2019/beach.jpg"))
    out = tmp_path / "out"
    assert output_path_for(job, out, "_colorsr", None) == out / "2019" / "beach_colorsr.jpg"
    assert output_path_for(job, out, "_x", "webp") == out / "2019" / "beach_x.webp"
    assert output_path_for(job, out, "", ".PNG") == out / "2019" / "beach.png"
    assert output_path_for(job, None, "_colorsr", "png") == job.source.parent / "beach_colorsr.png"


@pytest.mark.parametrize("name, expected", [("a.tif", "a_c.png"), ("a.gif", "a_c.png"),
                                            ("a.JPG", "a_c.JPG"), ("a.webp", "a_c.webp")])
def test_default_extension_follows_a_writable_source(tmp_path: Path, name: str, expected: str):
    job = ImageJob(tmp_path / name, Path(name))
    assert output_path_for(job, None, "_c", None).name == expected


def test_bad_extension_is_a_value_error(tmp_path: Path):
    with pytest.raises(ValueError, match="output extension"):
        output_path_for(ImageJob(tmp_path / "a.png", Path("a.png")), None, "_c", "tiff")


def test_overwriting_the_input_is_refused(tmp_path: Path):
    source = _save(tmp_path / "in" / "sub" / "a.png", _noise(2, 2))
    job = ImageJob(source, Path("sub/a.png"))
    (tmp_path / "alias").symlink_to(tmp_path / "in", target_is_directory=True)
    for out_dir, ext in [(None, None), (None, "png"), (tmp_path / "in", None),
                         (tmp_path / "alias", "png"), (tmp_path / "in" / "sub" / "..", None)]:
        with pytest.raises(ImageWriteError, match="output would overwrite the input"):
            output_path_for(job, out_dir, "", ext)
    assert output_path_for(job, None, "", "jpg") == source.with_suffix(".jpg")


# --------------------------------------------------------------------------- metadata


def _tagged_exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E], exif[0x010F], exif[0x0110] = "Grandma, 1952", "Zeiss", "Ikonta"
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = "1952:06:01 12:00:00"
    return exif


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("source", ["in.jpg", "in.png", "in.webp", "in.tif"])
@pytest.mark.parametrize("target", ["out.jpg", "out.png", "out.webp"])
def test_exif_icc_and_dpi_survive_a_restore_read_back(tmp_path: Path, source: str, target: str):
    """Date taken, description and camera are kept, the orientation (applied to the pixels) is
    reset to 1, the ICC profile is kept, the dpi is scaled with the image (WebP has none)."""
    icc = _srgb_icc()
    options = {"exif": _tagged_exif(6).tobytes(), "icc_profile": icc}
    if not source.endswith(".webp"):
        options["dpi"] = (600, 600)
    path = _save(tmp_path / source, _noise(20, 30), **options)
    decoded = read_image(path)
    assert decoded.rgb.shape == (30, 20, 3)  # orientation 6 applied
    rgb = np.repeat(np.repeat(decoded.rgb, 4, axis=0), 4, axis=1)
    write_image_atomic(tmp_path / target, rgb, metadata=decoded.metadata.for_output(4, "colorsr test"))
    with Image.open(tmp_path / target) as out:
        tags = out.getexif()
        assert (tags[0x010E], tags[0x010F], tags[0x0110]) == ("Grandma, 1952", "Zeiss", "Ikonta")
        assert tags[0x0112] == 1 and tags[0x0131] == "colorsr test"
        assert tags.get_ifd(0x8769)[0x9003] == "1952:06:01 12:00:00"
        assert out.info.get("icc_profile") == icc
        if source.endswith(".webp") or target.endswith(".webp"):  # Pillow may report JPEG's 72
            assert out.info.get("dpi", (72, 72)) == pytest.approx((72, 72))
        else:  # PNG stores dots per metre: 2400 dpi reads back as 2399.995
            assert out.info["dpi"] == pytest.approx((2400, 2400), rel=1e-5)


def test_an_image_without_metadata_gets_only_the_marker(tmp_path: Path):
    from colorsr_cli.io import made_by_colorsr

    decoded = read_image(_save(tmp_path / "plain.png", _noise(8, 8)))
    assert decoded.metadata.icc_profile is None and decoded.metadata.dpi is None
    assert not made_by_colorsr(tmp_path / "plain.png")
    write_image_atomic(tmp_path / "out.png", decoded.rgb,
                       metadata=decoded.metadata.for_output(1, "colorsr 9"))
    assert made_by_colorsr(tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as out:
        assert out.info["Software"] == "colorsr 9" and "icc_profile" not in out.info


def test_unwritable_output_folder_is_found_by_a_probe(tmp_path: Path, monkeypatch):
    from colorsr_cli import io as colorsr_io
    from colorsr_cli.io import output_folder_problem

    assert output_folder_problem(tmp_path / "new" / "sub") is None
    assert (tmp_path / "new" / "sub").is_dir() and not os.listdir(tmp_path / "new" / "sub")
    (tmp_path / "file").write_text("x")
    assert output_folder_problem(tmp_path / "file") == f"cannot write: {tmp_path / 'file'} is not a folder"

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(colorsr_io.tempfile, "mkstemp", read_only)
    assert output_folder_problem(tmp_path / "new") == "cannot write: Permission denied"
