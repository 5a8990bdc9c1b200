"""Where weights come from: a manifest (data, not code) names every published file with its
size, sha256 and URLs; files are fetched into a per-user cache by resumable downloads and
checked before they are used, so a truncated or tampered file is never loaded.

Library code: nothing here prints. Downloads report progress through an optional callback
`progress(done_bytes, total_bytes_or_None)`, and failures raise WeightsError / DownloadError."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import requests
from torch import nn

from colorsr_cli.errors import DownloadError, WeightsError
from colorsr_cli.models import ARCHITECTURES, arch_name_of
from colorsr_cli.weightfile import load_weight_file

Progress = Callable[[int, int | None], None]
Manifest = dict[str, "ManifestEntry"]

MANIFEST_PATH = Path(__file__).parent / "weights_manifest.json"
BUNDLED_DIR = Path(__file__).parent / "weights"
TASKS = ("color", "sr", "perceptual")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20  # hashing reads
_NET_CHUNK = 1 << 16  # a cut loses the chunk in flight, so keep it small
_REQUIRED_KEYS = {"name", "task", "arch", "sha256", "size", "filename"}
_OPTIONAL_KEYS = {"config", "urls", "bundled", "default", "description", "licence", "importer", "upstream"}
_UPSTREAM_KEYS = {"url", "sha256", "size"}


@dataclass(frozen=True)
class ManifestEntry:
    """One published weight file. Validated on construction because its name and filename
    become paths under the cache folder and its sha256 is the only thing we trust."""

    name: str
    task: str
    arch: str
    config: dict[str, Any]
    sha256: str
    size: int
    urls: list[str]
    filename: str
    bundled: bool = False
    default: bool = False
    description: str = ""
    licence: str = ""
    # Made on this machine instead of downloaded: the ncnn_import.IMPORTERS function that
    # converts an installed package's model into this entry's file (checked by its sha256).
    importer: str = ""
    # The original publisher's file ({"url", "sha256", "size"}), a weight file of another
    # project's layout that loads as it is (weightfile adopts it): the route without the importer.
    upstream: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_safe_name("name", self.name, self.name)
        _check_safe_name("filename", self.filename, self.name)
        where = f"manifest entry {self.name!r}"
        if self.task not in TASKS:
            raise WeightsError(f"{where}: task must be one of {', '.join(TASKS)}, "
                               f"got {self.task!r}")
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise WeightsError(f"{where}: sha256 must be 64 lowercase hex digits")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise WeightsError(f"{where}: size must be a byte count, got {self.size!r}")
        if not isinstance(self.config, dict) or not isinstance(self.arch, str):
            raise WeightsError(f"{where}: arch must be a string and config an object")
        _check_urls(self.urls, self.bundled or bool(self.importer), where)
        if self.upstream is not None:
            _check_upstream(self.upstream, where)


def _check_upstream(upstream: Any, where: str) -> None:
    if not isinstance(upstream, dict) or set(upstream) != _UPSTREAM_KEYS:
        raise WeightsError(f"{where}: upstream must be an object with keys url, sha256, size")
    _check_urls([upstream["url"]], False, where)
    if not isinstance(upstream["sha256"], str) or not _SHA256.fullmatch(upstream["sha256"]):
        raise WeightsError(f"{where}: upstream sha256 must be 64 lowercase hex digits")
    if not isinstance(upstream["size"], int) or isinstance(upstream["size"], bool):
        raise WeightsError(f"{where}: upstream size must be a byte count")
    _check_safe_name("upstream file name", upstream_path_name(upstream["url"]), where)


def upstream_path_name(url: str) -> str:
    """The file name an upstream file is cached under: the last part of its URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def _check_safe_name(label: str, value: Any, entry: Any) -> None:
    """Names become file names in the cache: refuse anything that could leave that folder."""
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or ".." in value:
        raise WeightsError(f"manifest entry {entry!r}: unsafe {label} {value!r} "
                           f"(letters, digits, '.', '_', '-' only; no '..' or path separators)")


def _check_urls(urls: Any, bundled: bool, where: str) -> None:
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise WeightsError(f"{where}: urls must be a list of strings")
    if not all(u.startswith(("https://", "http://")) for u in urls):
        raise WeightsError(f"{where}: urls must be http(s)")
    if not bundled and not urls:
        raise WeightsError(f"{where}: not bundled, not imported and has no URL to download it from")


def load_manifest(path: Path | None = None) -> Manifest:
    """Read and validate a manifest (default: the one shipped in the package), keyed by name."""
    path = Path(path) if path is not None else MANIFEST_PATH
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read weights manifest: {exc}") from None
    if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("models"),
                                                                               list):
        raise WeightsError(f"{path}: expected {{\"version\": 1, \"models\": [...]}}")
    return _index_entries([_parse_entry(item) for item in raw["models"]], path)


def _parse_entry(item: Any) -> ManifestEntry:
    """Reject unknown keys so a typo ("sha265") fails loudly instead of being ignored."""
    if not isinstance(item, dict):
        raise WeightsError(f"manifest entry must be an object, got {item!r}")
    name = item.get("name")
    unknown = set(item) - _REQUIRED_KEYS - _OPTIONAL_KEYS
    missing = _REQUIRED_KEYS - set(item)
    if unknown or missing:
        raise WeightsError(f"manifest entry {name!r}: unknown keys {sorted(unknown)}, "
                           f"missing keys {sorted(missing)}")
    for flag in ("bundled", "default"):
        if not isinstance(item.get(flag, False), bool):
            raise WeightsError(f"manifest entry {name!r}: {flag} must be true or false")
    return ManifestEntry(**{"config": {}, "urls": [], **item})


def _index_entries(entries: list[ManifestEntry], path: Path) -> Manifest:
    """Names must be unique and each task may have at most one default."""
    by_name: Manifest = {}
    defaults: dict[str, str] = {}
    for entry in entries:
        if entry.name in by_name:
            raise WeightsError(f"{path}: duplicate manifest entry {entry.name!r}")
        if entry.default and entry.task in defaults:
            raise WeightsError(f"{path}: two defaults for task {entry.task!r}: "
                               f"{defaults[entry.task]!r} and {entry.name!r}")
        if entry.default:
            defaults[entry.task] = entry.name
        by_name[entry.name] = entry
    return by_name


def default_entry(task: str, manifest: Manifest | None = None) -> ManifestEntry:
    """The weights used when the user names none for `task`."""
    entries = manifest if manifest is not None else load_manifest()
    for entry in entries.values():
        if entry.task == task and entry.default:
            return entry
    raise WeightsError(f"no default weights for task {task!r} in the manifest")


def cache_dir() -> Path:
    """COLORSR_CACHE if set (tests, shared machines), else the platform's user cache folder."""
    override = os.environ.get("COLORSR_CACHE")
    return Path(override) if override else Path(platformdirs.user_cache_dir("colorsr"))


def entry_path(entry: ManifestEntry) -> Path:
    """Where the entry's file is, or will be once downloaded."""
    folder = BUNDLED_DIR if entry.bundled else cache_dir() / "weights"
    return folder / entry.filename


def is_present(entry: ManifestEntry) -> bool:
    """True when the file exists (not necessarily verified; see verify)."""
    return entry_path(entry).is_file()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a large checkpoint never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _digest_once(path: Path) -> str:
    """sha256_file memoised per process on (path, mtime, size): re-hashing hundreds of MB on
    every load would dominate start-up, and rewriting the file changes the key."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def _mismatch(entry: ManifestEntry, path: Path, digest_of: Callable[[Path], str]) -> str | None:
    """Why path is not the entry's file, or None if it is. Size first: it is free."""
    got_size = path.stat().st_size
    if got_size != entry.size:
        return f"size mismatch: expected {entry.size} bytes, got {got_size}"
    digest = digest_of(path)
    if digest != entry.sha256:
        return f"sha256 mismatch: expected {entry.sha256} got {digest}"
    return None


def verify(entry: ManifestEntry) -> tuple[bool, str]:
    """(ok, message) for `colorsr weights verify`; always re-hashes, never downloads."""
    path = entry_path(entry)
    if not path.is_file():
        where = "missing from the package" if entry.bundled else "not downloaded"
        return False, f"{where}: {path}"
    problem = _mismatch(entry, path, sha256_file)
    return (False, f"{problem}: {path}") if problem else (True, f"ok: {path}")


def fetch(entry: ManifestEntry, progress: Progress | None = None) -> Path:
    """Path to the entry's verified file: the packaged copy, the cached copy, or a fresh
    download. A cached file that fails verification is deleted and downloaded again."""
    path = entry_path(entry)
    if entry.bundled:
        return _checked_bundled(entry, path)
    if path.is_file():
        if _mismatch(entry, path, _digest_once) is None:
            return path
        path.unlink()
    if entry.importer:
        return _imported(entry, path, progress)
    return _download_entry(entry, path, progress)


def import_entry(entry: ManifestEntry) -> Path:
    """Make an imported entry's file with its importer (into the cache, atomically) and verify
    its sha256; a file that does not match is deleted. Returns its path."""
    from colorsr_cli.ncnn_import import IMPORTERS

    if entry.importer not in IMPORTERS:
        raise WeightsError(f"weights {entry.name!r}: unknown importer {entry.importer!r}")
    path = entry_path(entry)
    IMPORTERS[entry.importer](path)
    problem = _mismatch(entry, path, sha256_file)
    if problem:
        path.unlink()
        raise WeightsError(f"weights {entry.name!r} converted from {entry.importer} do not match the "
                           f"manifest ({problem}): another version of that package?")
    return path


def _imported(entry: ManifestEntry, path: Path, progress: Progress | None) -> Path:
    """Convert from the installed package; without it, the upstream file (cached or downloaded,
    verified by its own sha256), which loads as a published state dict."""
    from colorsr_cli.ncnn_import import ImporterUnavailable

    try:
        return import_entry(entry)
    except ImporterUnavailable as exc:
        if entry.upstream is None:
            raise WeightsError(f"weights {entry.name!r}: {exc}") from None
        up = entry.upstream
        dest = cache_dir() / "weights" / upstream_path_name(up["url"])
        if dest.is_file() and dest.stat().st_size == up["size"] and _digest_once(dest) == up["sha256"]:
            return dest
        try:
            return download_verified(up["url"], dest, up["sha256"], up["size"], progress)
        except DownloadError as down:
            raise DownloadError(f"weights {entry.name!r}: {exc}, and the download failed: {down}") from None


def _checked_bundled(entry: ManifestEntry, path: Path) -> Path:
    if not path.is_file():
        raise WeightsError(f"bundled weights {entry.name!r} missing at {path}; reinstall colorsr")
    problem = _mismatch(entry, path, _digest_once)
    if problem:
        raise WeightsError(f"bundled weights {entry.name!r} are damaged ({problem}); "
                           f"reinstall colorsr")
    return path


def _download_entry(entry: ManifestEntry, path: Path, progress: Progress | None) -> Path:
    """Try each mirror in order; report every failure if none works."""
    failures = []
    for url in entry.urls:
        try:
            return download_verified(url, path, entry.sha256, entry.size, progress)
        except DownloadError as exc:
            failures.append(str(exc))
    raise DownloadError(f"could not download weights {entry.name!r}; tried: "
                        + "; ".join(failures))


class _Transient(Exception):
    """A failure worth retrying (network trouble, cut connection, 5xx); carries a short reason."""


def download_verified(url: str, dest: Path, sha256: str, size: int | None,
                      progress: Progress | None = None, retries: int = 3, timeout: float = 30,
                      backoff: float = 0.5) -> Path:
    """Download url to dest through dest.part, resuming after cuts, retrying transient failures
    `retries` times with exponential backoff; dest appears only once size and sha256 match."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _download_to_part(url, part, size, progress, timeout)
            break
        except _Transient as exc:
            if attempt == retries:
                raise DownloadError(f"{url}: download failed after {attempt + 1} attempts: "
                                    f"{exc}") from exc
            time.sleep(backoff * 2 ** attempt)
    _verify_part(url, part, sha256, size)
    os.replace(part, dest)
    return dest


def _download_to_part(url: str, part: Path, size: int | None, progress: Progress | None,
                      timeout: float) -> None:
    """One attempt: continue `part` from its current length (or start over)."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:  # cannot be a prefix of the right file
        part.unlink()
        offset = 0
    if size is not None and offset == size:  # complete from an earlier attempt
        return
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as resp:
            offset = _write_offset(resp, url, part, offset)
            total = size if size is not None else _announced_total(resp, offset)
            _stream_body(resp, part, offset, total, progress)
    except (requests.ConnectionError, requests.Timeout,
            requests.exceptions.ChunkedEncodingError) as exc:
        raise _Transient(_short_reason(exc)) from exc
    got = part.stat().st_size
    if total is not None and got < total:
        raise _Transient(f"connection closed after {got} of {total} bytes")


def _write_offset(resp: requests.Response, url: str, part: Path, offset: int) -> int:
    """Where the body goes in part: after what is on disk for a 206 that continues it, at 0 for
    a 200 (the server ignored Range). Raises for anything else."""
    code = resp.status_code
    if code == 206 and offset and _range_start(resp) == offset:
        return offset
    if code == 200:
        return 0
    if code in (206, 416):  # the server's idea of the range disagrees with ours: start over
        part.unlink(missing_ok=True)
        raise _Transient(f"server answered HTTP {code} to a resume from byte {offset}")
    if code >= 500 or code == 429:
        raise _Transient(f"HTTP {code} {resp.reason}")
    raise DownloadError(f"{url}: HTTP {code} {resp.reason or ''}".rstrip())


def _range_start(resp: requests.Response) -> int | None:
    """First byte of a 206 body, from 'Content-Range: bytes START-END/TOTAL'."""
    match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _announced_total(resp: requests.Response, offset: int) -> int | None:
    length = resp.headers.get("Content-Length", "")
    return offset + int(length) if length.isdigit() else None


def _stream_body(resp: requests.Response, part: Path, offset: int, total: int | None,
                 progress: Progress | None) -> None:
    """Append the body to part chunk by chunk, so a cut keeps what arrived for the resume."""
    done = offset
    with open(part, "ab" if offset else "wb") as f:
        if progress:
            progress(done, total)
        for chunk in resp.iter_content(chunk_size=_NET_CHUNK):
            f.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
        f.flush()
        os.fsync(f.fileno())


def _short_reason(exc: Exception) -> str:
    """requests' messages are paragraphs; the CLI shows one line."""
    text = str(exc)
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "connection refused"
    if "NameResolutionError" in text or "Name or service not known" in text:
        return "host name not found"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection closed mid-transfer"
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def _verify_part(url: str, part: Path, sha256: str, size: int | None) -> None:
    """Delete part on any mismatch so a bad file never stays in the cache."""
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        part.unlink()
        raise DownloadError(f"{url}: size mismatch: expected {size} bytes, got {got_size}")
    digest = sha256_file(part)
    if digest != sha256:
        part.unlink()
        raise DownloadError(f"{url}: sha256 mismatch: expected {sha256} got {digest}")


def resolve_weights(name_or_path: str | Path | None, task: str, manifest: Manifest | None = None,
                    progress: Progress | None = None) -> Path:
    """Turn what the user typed into a local, verified file: None -> the task's default, an
    existing path -> itself (loaded with weights_only later), a manifest name -> fetch."""
    if name_or_path is not None and Path(name_or_path).expanduser().is_file():
        return Path(name_or_path).expanduser()
    entries = manifest if manifest is not None else load_manifest()
    if name_or_path is None:
        return fetch(default_entry(task, entries), progress)
    entry = entries.get(str(name_or_path))
    if entry is None:
        known = ", ".join(sorted(entries)) or "none"
        raise WeightsError(f"unknown weights {str(name_or_path)!r}: not a file and not in the "
                           f"manifest (known: {known})")
    if entry.task != task:
        raise WeightsError(f"weights {entry.name!r} are for task {entry.task!r}, not {task!r}")
    return fetch(entry, progress)


def load_model(name_or_path: str | Path | None, task: str, manifest: Manifest | None = None,
               progress: Progress | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Resolve, load (weights_only) and check the network really does `task`, so an SR file
    passed as a colouriser fails here with a clear message rather than deep in the pipeline."""
    path = resolve_weights(name_or_path, task, manifest, progress)
    model, meta = load_weight_file(path)
    arch = arch_name_of(model)
    if ARCHITECTURES[arch].task != task:
        raise WeightsError(f"{path}: holds a {ARCHITECTURES[arch].task!r} model ({arch}), "
                           f"not a {task!r} model")
    return model, meta


def task_of(name_or_path: str | Path, manifest: Manifest | None = None) -> str:
    """The task ('color', 'sr', ...) of a manifest name or a weight file, read from the file's
    own architecture record, so `--weights X` knows which model X replaces."""
    if Path(name_or_path).expanduser().is_file():
        model, _ = load_weight_file(Path(name_or_path).expanduser())
        return ARCHITECTURES[arch_name_of(model)].task
    entries = manifest if manifest is not None else load_manifest()
    if str(name_or_path) not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise WeightsError(f"unknown weights {str(name_or_path)!r}: not a file and not in the "
                           f"manifest (known: {known})")
    return entries[str(name_or_path)].task
