"""Finding, reading and writing images: the one loader and the one atomic writer of colorsr.

Arrays handed to the rest of the library are float32, sRGB, values in [0, 1]:
rgb is (H, W, 3), alpha is (H, W). Every failure is raised as ImageReadError or
ImageWriteError with one line that names the file and the reason; nothing here prints.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob
import os
import stat
import struct
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from colorsr_cli.errors import ImageReadError, ImageWriteError

IMAGE_EXTS: tuple[str, ...] = ("bmp", "gif", "jpeg", "jpg", "png", "tif", "tiff", "webp")
OUTPUT_EXTS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp")

# Pillow may only try the decoders of the formats we advertise: less attack surface.
_PILLOW_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "TIFF", "WEBP")
# What Pillow raises on corrupt input: struct.error and EOFError come from short headers,
# TypeError from TIFFs missing required tags (found by fuzzing, see tests/test_io.py).
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, TypeError, struct.error, MemoryError,
    Image.DecompressionBombError,
)
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La"}) | _HIGH_DEPTH_MODES
_PLAIN_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}
_GRAY_TOLERANCE = 1.0 / 255.0 + 1e-6
# PNG zlib level: 1 writes a 5.2 MP upscaled photo in 0.58 s (4.5 MB), 3 in 1.04 s (4.2 MB),
# Pillow's default 6 in 2.59 s (3.7 MB); measured with Pillow 13 on one CPU core.
PNG_LEVEL = 1
# EXIF kept from an input: the main IFD's description, camera, date and rights tags, the Exif
# sub-IFD (date taken, exposure...) without the tags the new pixels invalidate, and the GPS IFD.
_EXIF_MAIN_TAGS = (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)  # description .. copyright
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_EXIF_DROPPED = frozenset({0xA002, 0xA003, 0x927C})  # pixel width/height, maker note (offsets)
_ORIENTATION, _SOFTWARE = 0x0112, 0x0131
_pillow_limit_lock = threading.Lock()


# --------------------------------------------------------------------------- finding inputs


@dataclass(frozen=True)
class ImageJob:
    """One input image: where it is, and where it sits below the input root it was found under."""

    source: Path
    relative: Path  # mirrors the tree under --out; just the file name for a file argument


def find_images(
    inputs: Sequence[str], exts: Iterable[str] = IMAGE_EXTS
) -> tuple[list[ImageJob], list[tuple[Path, str]]]:
    """Expand files, folders (recursively) and glob patterns into image jobs.

    Returns (jobs, problems); problems are (path, reason) for missing paths, unreadable
    folders, symlink loops and explicitly named files of an unsupported type. Folders are
    walked in sorted order, hidden names (including our own temp files) are skipped, and each
    file and folder is visited once however many links lead to it.
    """
    scan = _Scan(frozenset(e.lower().lstrip(".") for e in exts))
    for arg in inputs:
        scan.add_argument(arg)
    return scan.jobs, scan.problems


@dataclass
class _Scan:
    """Accumulates jobs and problems over all arguments, remembering what was visited."""

    exts: frozenset[str]
    jobs: list[ImageJob] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    files_seen: set[tuple[int, int]] = field(default_factory=set)
    image_files_seen: int = 0  # files with an image extension, duplicates included

    def add_argument(self, arg: str) -> None:
        path = Path(arg)
        if os.path.isdir(path):
            self.walk(path, root=path)
        elif os.path.lexists(path):
            self.add_file(path, Path(path.name), explicit=True)
        elif _is_pattern(arg):
            self.add_pattern(arg)
        else:
            self.problems.append((path, "no such file or directory"))

    def add_pattern(self, pattern: str) -> None:
        root, rest = _split_pattern(pattern)
        seen_before = self.image_files_seen
        if "**" in rest:  # glob follows symlinked folders without a loop check: walk ourselves
            self.walk(root, root, match=rest)
        else:
            for match in map(Path, sorted(glob.glob(pattern))):
                if match.is_dir():
                    self.walk(match, root)
                else:
                    self.add_file(match, Path(os.path.relpath(match, root)), explicit=False)
        if self.image_files_seen == seen_before:
            self.problems.append((Path(pattern), "no images match this pattern"))

    def walk(self, top: Path, root: Path, match: tuple[str, ...] | None = None) -> None:
        """Add the images below top (relative to root); match: pattern parts to filter with."""
        seen: dict[tuple[int, int], Path] = {}  # (st_dev, st_ino) of folders: stops link loops
        if not self.first_visit(top, seen):
            return
        for folder, dirnames, filenames in os.walk(top, onerror=self.folder_error, followlinks=True):
            dirnames[:] = [
                d for d in sorted(dirnames)
                if not d.startswith(".") and self.first_visit(Path(folder, d), seen)
            ]
            for name in sorted(n for n in filenames if not n.startswith(".")):
                relative = Path(os.path.relpath(os.path.join(folder, name), root))
                if match is None or _matches(relative.parts, match):
                    self.add_file(Path(folder, name), relative, explicit=False)

    def first_visit(self, folder: Path, seen: dict[tuple[int, int], Path]) -> bool:
        try:
            info = os.stat(folder)
        except OSError as err:
            self.problems.append((folder, f"cannot read folder: {_os_reason(err)}"))
            return False
        key = (info.st_dev, info.st_ino)
        if key in seen:
            self.problems.append((folder, f"symlink loop or repeated folder: same as {seen[key]}"))
            return False
        seen[key] = folder
        return True

    def folder_error(self, err: OSError) -> None:
        self.problems.append((Path(err.filename), f"cannot read folder: {_os_reason(err)}"))

    def add_file(self, path: Path, relative: Path, explicit: bool) -> None:
        ext = path.suffix.lower().lstrip(".")
        if ext not in self.exts:
            if explicit:
                kind = f"'{path.suffix}'" if path.suffix else "(no extension)"
                supported = ", ".join(sorted(self.exts))
                self.problems.append((path, f"unsupported file type {kind} ({supported})"))
            return
        self.image_files_seen += 1
        try:
            info = os.stat(path)
        except OSError as err:
            self.problems.append((path, f"cannot read: {_os_reason(err)}"))
            return
        if not stat.S_ISREG(info.st_mode):
            self.problems.append((path, "not a regular file"))
        elif (info.st_dev, info.st_ino) not in self.files_seen:
            self.files_seen.add((info.st_dev, info.st_ino))
            self.jobs.append(ImageJob(path, relative))


def _is_pattern(text: str) -> bool:
    return any(char in text for char in "*?[")


def _split_pattern(pattern: str) -> tuple[Path, tuple[str, ...]]:
    """Split 'photos/**/*.jpg' into the literal root folder Path('photos') and ('**', '*.jpg')."""
    parts = Path(pattern).parts
    literal = 0
    while literal < len(parts) - 1 and not _is_pattern(parts[literal]):
        literal += 1
    return Path(*parts[:literal]) if literal else Path("."), parts[literal:]


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """glob semantics on path parts: '**' spans any number of folders, and a file also
    matches when one of its folders does (glob would have returned that folder)."""
    return any(_matches_exactly(parts[:end], pattern) for end in range(1, len(parts) + 1))


def _matches_exactly(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches_exactly(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatch(parts[0], pattern[0])
        and _matches_exactly(parts[1:], pattern[1:])
    )


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ImageMetadata:
    """What an output keeps of its input besides pixels.

    exif_main / exif_ifd / gps: EXIF tags (tag -> value) of the main, Exif and GPS IFDs; the
    orientation is not among them (the pixels are upright, outputs say 1). icc_profile: the
    input's profile bytes (pixel values are kept as they were encoded). dpi: (x, y) dots per
    inch, or None. software: written as the Software tag (and a PNG text chunk), which marks
    an output as this tool's (see made_by_colorsr)."""

    exif_main: dict = field(default_factory=dict)
    exif_ifd: dict = field(default_factory=dict)
    gps: dict = field(default_factory=dict)
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    software: str | None = None

    def for_output(self, scale: float, software: str) -> ImageMetadata:
        """The metadata of an output `scale` times the input's size: the same print size (dpi
        times scale), marked as made by `software`."""
        dpi = None if self.dpi is None else (self.dpi[0] * scale, self.dpi[1] * scale)
        return replace(self, dpi=dpi, software=software)


@dataclass
class DecodedImage:
    """A decoded, upright (EXIF orientation applied) image.

    rgb: float32 (H, W, 3), sRGB in [0, 1]; grayscale sources are replicated to 3 channels.
    alpha: float32 (H, W) in [0, 1] (1 = opaque), or None when the source has no transparency.
    was_gray: the source was a grayscale mode, or its three channels agree within 1/255.
    notes: things the user should know, e.g. "animated GIF: first of 12 frames used".
    metadata: EXIF, ICC profile and dpi to carry into an output.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    was_gray: bool
    notes: list[str] = field(default_factory=list)
    metadata: ImageMetadata = field(default_factory=ImageMetadata)


def read_image(path: Path, max_pixels: int = 100_000_000) -> DecodedImage:
    """Decode one image file with Pillow (first frame only) into float32 arrays in [0, 1].

    The pixel count declared by the header is checked against max_pixels before any pixel
    is decoded. Truncated files are errors, never padded. 16-bit grayscale keeps its depth
    (value / 65535); 16-bit RGB PNGs arrive as 8-bit (Pillow's limit). Colour profiles
    (ICC) are not applied: pixel values are taken as they are, and the profile is carried in
    the metadata for the output.
    """
    path = Path(path)
    try:  # catch_warnings is process-wide: fine for the one reading thread we have
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pixels, mode, notes, metadata = _decode_first_frame(path, max_pixels)
    except _DECODE_ERRORS as err:
        raise ImageReadError(f"{path}: {_read_reason(err)}") from err
    # Pillow reports oddities (corrupt EXIF...) as warnings; the library never prints them.
    notes += list(dict.fromkeys(f"decoder warning: {str(w.message).strip()}" for w in caught))
    rgb, alpha, scale_notes = _unit_arrays(pixels, mode)
    was_gray = mode in _GRAY_MODES or _channels_equal(rgb)
    return DecodedImage(rgb, alpha, was_gray, notes + scale_notes, metadata)


def _decode_first_frame(path: Path, max_pixels: int
                        ) -> tuple[np.ndarray, str, list[str], ImageMetadata]:
    """Pillow part of read_image: (raw pixels of a normalised mode, that mode, notes, metadata)."""
    _check_regular_nonempty(path)
    with _open_without_pillow_limit(path) as img:
        _check_pixel_count(path, img.size, max_pixels)
        notes = _frame_notes(img)
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        metadata = _metadata_of(img)
        if img.mode == "CMYK":
            notes.append("CMYK image: converted to RGB without colour management")
        upright = _normalise_mode(img)
        return np.asarray(upright), upright.mode, notes, metadata


def _metadata_of(img: Image.Image) -> ImageMetadata:
    """The metadata an output keeps (ImageMetadata) of an opened, upright image."""
    exif = img.getexif()
    main = {tag: exif[tag] for tag in _EXIF_MAIN_TAGS if tag in exif and tag != _SOFTWARE}
    sub = {tag: value for tag, value in exif.get_ifd(_EXIF_IFD).items() if tag not in _EXIF_DROPPED}
    dpi = img.info.get("dpi")
    return ImageMetadata(main, sub, dict(exif.get_ifd(_GPS_IFD)), img.info.get("icc_profile") or None,
                         (float(dpi[0]), float(dpi[1])) if dpi and min(dpi) > 0 else None)


def made_by_colorsr(path: Path) -> bool:
    """Whether an image file carries this tool's output marker (a Software tag or PNG text chunk
    starting with 'colorsr'). Reads the header only; an unreadable file is not ours."""
    try:
        with _open_without_pillow_limit(Path(path)) as img:
            tags = (str(img.info.get("Software", "")), str(img.getexif().get(_SOFTWARE, "")))
    except _DECODE_ERRORS:
        return False
    return any(tag.startswith("colorsr") for tag in tags)


def _check_regular_nonempty(path: Path) -> None:
    """Refuse folders, FIFOs (reading one would block) and zero-byte files up front."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(f"{path}: cannot decode image: not a regular file")
    if info.st_size == 0:
        raise ImageReadError(f"{path}: cannot decode image: empty file (0 bytes)")


def _open_without_pillow_limit(path: Path) -> Image.Image:
    """Image.open (header only) with Pillow's own decompression-bomb limit off.

    Our max_pixels check replaces it: Pillow's would warn (print) above 89 Mpx and refuse
    above 179 Mpx whatever --max-pixels says. The switch is global, hence the lock, and it
    is held only while the header is parsed.
    """
    with _pillow_limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path, formats=_PILLOW_FORMATS)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixel_count(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    pixels = width * height
    if pixels == 0:
        raise ImageReadError(f"{path}: cannot decode image: empty image ({width}x{height})")
    if pixels > max_pixels:
        raise ImageReadError(
            f"{path}: too large: {width}x{height} = {pixels:,} pixels "
            f"> limit {max_pixels:,} (--max-pixels)"
        )


def _frame_notes(img: Image.Image) -> list[str]:
    """A note when only the first of several frames/pages will be used."""
    frames = getattr(img, "n_frames", 1)
    if frames <= 1:
        return []
    img.seek(0)
    if img.format == "GIF":
        return [f"animated GIF: first of {frames} frames used"]
    if img.format == "TIFF":
        return [f"multi-page TIFF: first of {frames} pages used"]
    return [f"{img.format} with {frames} frames: first frame used"]


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to one of L, LA, RGB, RGBA or a one-channel 16/32-bit mode."""
    if img.mode in _HIGH_DEPTH_MODES:
        return img
    if img.mode in _PLAIN_MODES and "transparency" not in img.info:
        return img
    has_alpha = "transparency" in img.info or img.mode.endswith(("A", "a"))
    gray = img.mode in ("1", "L", "LA", "La")
    if has_alpha:
        return img.convert("LA" if gray else "RGBA")
    return img.convert("L" if gray else "RGB")


def _unit_arrays(
    pixels: np.ndarray, mode: str
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Pixels of a normalised mode -> (rgb float32 (H, W, 3), alpha (H, W) or None, notes)."""
    if mode in _HIGH_DEPTH_MODES:
        gray, notes = _high_depth_to_unit(pixels, mode)
        return np.repeat(gray[..., None], 3, axis=2), None, notes
    values = pixels.astype(np.float32) / 255.0
    if values.ndim == 2:
        values = values[..., None]
    colour, alpha = (values[..., :-1], values[..., -1]) if mode in ("LA", "RGBA") else (values, None)
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    alpha = None if alpha is None else np.ascontiguousarray(alpha)
    return np.ascontiguousarray(colour), alpha, []


def _high_depth_to_unit(pixels: np.ndarray, mode: str) -> tuple[np.ndarray, list[str]]:
    """16-bit ints -> value / 65535; floats already in [0, 1] kept; other ranges stretched."""
    values = np.nan_to_num(pixels.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= 65535):
        return values / 65535.0, []
    if mode == "F" and low >= 0 and high <= 1:
        return values, []
    note = f"{mode} image: values {low:g}..{high:g} stretched to [0, 1]"
    span = high - low if high > low else 1.0
    return (values - low) / span, [note]


def _channels_equal(rgb: np.ndarray) -> bool:
    """Whether every pixel's three channels agree within _GRAY_TOLERANCE (a gray photo saved as
    RGB). Pairwise channel differences, the first of which ends the test for almost any colour
    photo: a reduction over the length-3 channel axis costs about 60x more (249 us against 4 us
    on a 64x64 colour image), half of read_image's time for a small JPEG, which matters to the
    colour trainer's data loading on a GPU."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return all(float(np.abs(x - y).max()) <= _GRAY_TOLERANCE for x, y in ((r, g), (r, b), (g, b)))


def _read_reason(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "cannot decode image: not a JPEG, PNG, BMP, TIFF, WebP or GIF file"
    if isinstance(err, OSError) and err.errno is not None:
        return f"cannot read: {_os_reason(err)}"
    return f"cannot decode image: {err or type(err).__name__}"


def _os_reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


# --------------------------------------------------------------------------- writing


def write_image_atomic(
    path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None, quality: int = 95,
    metadata: ImageMetadata | None = None, png_level: int = PNG_LEVEL,
) -> None:
    """Write rgb (H, W, 3) and optional alpha (H, W), float in [0, 1] or uint8, atomically.

    The format follows the suffix (.png, .jpg/.jpeg, .webp). Alpha is kept for PNG and WebP
    (RGBA) and dropped for JPEG, which has none (no compositing). JPEG is written with 4:4:4
    chroma so the colourisation keeps full resolution; PNG at zlib level png_level (0-9).
    metadata: EXIF (orientation 1), ICC profile and dpi to write, where the format has them
    (WebP has no dpi). The image goes to a hidden temp file
    in the same folder, is fsynced, then renamed over path: readers never see a partial file,
    and the temp file is removed on any error, Ctrl-C included.
    """
    path = Path(path)
    fmt = _write_format(path)
    img = _to_pillow(rgb, None if fmt == "JPEG" else alpha)
    limit = _MAX_SIDE.get(fmt)
    if limit is not None and max(img.size) > limit:
        raise ImageWriteError(
            f"{path}: cannot write: {img.width}x{img.height} exceeds the {fmt} limit of "
            f"{limit} pixels per side (use .png)"
        )
    _make_parent(path)
    options = _save_options(fmt, quality, png_level) | _metadata_options(fmt, metadata)
    try:
        _save_via_temp(path, img, fmt, options)
    except (OSError, ValueError) as err:
        reason = _os_reason(err) if isinstance(err, OSError) else str(err)
        raise ImageWriteError(f"{path}: cannot write: {reason}") from err


def _write_format(path: Path) -> str:
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageWriteError(
            f"{path}: cannot write: unsupported extension '{path.suffix}' "
            "(use .png, .jpg, .jpeg or .webp)"
        )
    return fmt


def _to_pillow(rgb: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """rgb (H, W, 3) and alpha (H, W), float in [0, 1] or uint8 -> an RGB or RGBA image."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got shape {rgb.shape}")
    channels = [_to_uint8(rgb)]
    if alpha is not None:
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha must be (H, W) = {rgb.shape[:2]}, got shape {alpha.shape}")
        channels.append(_to_uint8(alpha)[..., None])
    # Without alpha, no concatenation: for a large output it would be one more full copy.
    pixels = channels[0] if len(channels) == 1 else np.concatenate(channels, axis=2)
    return Image.fromarray(np.ascontiguousarray(pixels))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.uint8:
        return values
    unit = np.clip(np.nan_to_num(values.astype(np.float32)), 0.0, 1.0)
    return np.round(unit * 255.0).astype(np.uint8)


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise ImageWriteError(f"{path}: cannot write: {path.parent} is not a folder") from err
    except OSError as err:
        reason = _os_reason(err)
        raise ImageWriteError(f"{path}: cannot create folder {path.parent}: {reason}") from err


def output_folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into folder (created if missing), or None when they can:
    checked by creating and removing a hidden probe file, so that a read-only or full output
    folder is found before any image is computed for it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"cannot write: {folder} is not a folder"
    except OSError as err:
        return f"cannot create folder {folder}: {_os_reason(err)}"
    try:
        fd, probe = tempfile.mkstemp(prefix=".colorsr-probe.", suffix=".tmp", dir=folder)
    except OSError as err:
        return f"cannot write: {_os_reason(err)}"
    os.close(fd)
    os.unlink(probe)
    return None


def _save_via_temp(path: Path, img: Image.Image, fmt: str, options: dict) -> None:
    with atomic_write(path) as file:
        img.save(file, format=fmt, **options)


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """The one atomic writer: yields a binary file that is a hidden temp file in path's folder;
    on success it is fsynced and renamed over path, on any error (Ctrl-C included) deleted,
    so readers never see a partial file."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, _new_file_mode())  # mkstemp makes 0600; give what open() would
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _save_options(fmt: str, quality: int, png_level: int) -> dict[str, int | bool]:
    if fmt == "PNG":
        return {"compress_level": png_level}
    if fmt == "JPEG":
        return {"quality": quality, "subsampling": 0}  # 0 = 4:4:4
    return {"quality": quality, "exact": True}  # keep colour under transparent pixels


def _metadata_options(fmt: str, metadata: ImageMetadata | None) -> dict:
    """Pillow save() arguments that write metadata in format fmt."""
    if metadata is None:
        return {}
    exif = Image.Exif()
    exif.update(metadata.exif_main)
    exif[_ORIENTATION] = 1
    if metadata.software:
        exif[_SOFTWARE] = metadata.software
    for ifd, tags in ((_EXIF_IFD, metadata.exif_ifd), (_GPS_IFD, metadata.gps)):
        if tags:
            exif.get_ifd(ifd).update(tags)
    options: dict = {"exif": exif.tobytes()}
    if metadata.icc_profile:
        options["icc_profile"] = metadata.icc_profile
    if metadata.dpi and fmt != "WEBP":
        options["dpi"] = metadata.dpi
    if fmt == "PNG" and metadata.software:
        text = PngImagePlugin.PngInfo()
        text.add_text("Software", metadata.software)
        options["pnginfo"] = text
    return options


def _new_file_mode() -> int:
    """0o666 minus the process umask (which can only be read by setting it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


# --------------------------------------------------------------------------- output naming


def output_path_for(job: ImageJob, out_dir: Path | None, suffix: str, ext: str | None) -> Path:
    """Where the result for job goes: next to the source (out_dir None) or mirrored under out_dir.

    The name is the source stem + suffix (e.g. "_colorsr") + extension: ext (png, jpg, jpeg,
    webp) or, when None, the source's own if writable (png/jpg/jpeg/webp) else .png.
    Raises ImageWriteError when the result would overwrite the input itself.
    """
    folder = job.source.parent if out_dir is None else Path(out_dir) / job.relative.parent
    out = folder / f"{job.source.stem}{suffix}{_output_suffix(job.source, ext)}"
    if _same_file(out, job.source):
        raise ImageWriteError(f"{out}: output would overwrite the input {job.source}")
    return out


def _output_suffix(source: Path, ext: str | None) -> str:
    if ext is None:
        return source.suffix if source.suffix.lower() in _WRITE_FORMATS else ".png"
    clean = ext.lower().lstrip(".")
    if clean not in OUTPUT_EXTS:
        raise ValueError(f"output extension must be one of {', '.join(OUTPUT_EXTS)}, got {ext!r}")
    return "." + clean


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise ImageWriteError(f"{a}: cannot check output path: {_os_reason(err)}") from err
        return a.resolve() == b.resolve()
