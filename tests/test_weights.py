"""Manifest, cache and download tests against a local HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import platformdirs
import pytest
import torch

from colorsr_cli import weights
from colorsr_cli.errors import DownloadError, WeightsError
from colorsr_cli.models import SRGenerator, build_model
from colorsr_cli.weightfile import save_weight_file

PAYLOAD = bytes(range(256)) * 800  # 200 KiB, several chunks on the wire
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Route:
    """How the fake server answers one path."""

    body: bytes = b""
    status: int = 200
    cut_after: int | None = None  # first request only: send this many body bytes, then hang up
    failures: int = 0  # answer 503 this many times before serving
    honour_range: bool = True


class FakeServer:
    """Threaded http.server with Range support and scripted failures; logs (path, Range)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.01}, daemon=True)

    def serve(self, path: str, **route) -> str:
        self.routes[path] = Route(**route)
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"


def _handler_for(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            server.requests.append((self.path, range_header))
            route = server.routes.get(self.path)
            if route is None or route.status != 200:
                return self.send_error(route.status if route else 404)
            if route.failures:
                route.failures -= 1
                return self.send_error(503)
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            start = int(match.group(1)) if match and route.honour_range else 0
            if start >= len(route.body) > 0:
                return self.send_error(416)
            self._send_body(route, start)

        def _send_body(self, route: Route, start: int) -> None:
            body = route.body[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range",
                                 f"bytes {start}-{len(route.body) - 1}/{len(route.body)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if route.cut_after is not None:
                body, route.cut_after = body[:route.cut_after], None
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def server():
    srv = FakeServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("COLORSR_CACHE", str(folder))
    return folder


def entry_dict(**overrides) -> dict:
    base = {"name": "tiny", "task": "sr", "arch": "srgan_generator", "sha256": PAYLOAD_SHA,
            "size": len(PAYLOAD), "filename": "tiny.pt", "urls": ["http://127.0.0.1:9/tiny.pt"]}
    return {**base, **overrides}


def write_manifest(tmp_path: Path, *models: dict) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"version": 1, "models": list(models)}))
    return path


def make_entry(**overrides) -> weights.ManifestEntry:
    return weights.ManifestEntry(**{"config": {}, **entry_dict(**overrides)})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- manifest -------------------------------------------------------------------------------

def test_packaged_manifest_has_vgg19_as_perceptual_default():
    entry = weights.default_entry("perceptual")
    assert entry.name == "vgg19-imagenet" and not entry.bundled
    # torchvision names files <model>-<first 8 hex of sha256>.pth
    assert entry.sha256.startswith(entry.filename.removesuffix(".pth").split("-")[-1])
    assert entry.size == 574673361


def test_manifest_loads_several_entries(tmp_path):
    path = write_manifest(tmp_path, entry_dict(default=True),
                          entry_dict(name="other", filename="other.pt", task="color"))
    manifest = weights.load_manifest(path)
    assert set(manifest) == {"tiny", "other"}
    assert weights.default_entry("sr", manifest).name == "tiny"
    with pytest.raises(WeightsError, match="no default"):
        weights.default_entry("color", manifest)


@pytest.mark.parametrize("field", ["name", "filename"])
@pytest.mark.parametrize("value", ["../../x", "a/b", "a\\b", "x..y", ".hidden", ""])
def test_manifest_rejects_names_that_could_escape_the_cache(tmp_path, field, value):
    with pytest.raises(WeightsError, match="unsafe"):
        weights.load_manifest(write_manifest(tmp_path, entry_dict(**{field: value})))


@pytest.mark.parametrize("models, message", [
    ([entry_dict(sha256="dcbb9e9d")], "sha256"),
    ([entry_dict(sha256=None)], "sha256"),
    ([entry_dict(task="upscale")], "task"),
    ([entry_dict(sha265=PAYLOAD_SHA)], "unknown keys"),
    ([entry_dict(urls=[])], "no URL"),
    ([entry_dict(urls=["file:///etc/passwd"])], "http"),
    ([entry_dict(), entry_dict()], "duplicate"),
    ([entry_dict(urls=[], importer="x", upstream={"url": "https://h/a.pth", "sha256": "0" * 64})],
     "upstream must be an object with keys url, sha256, size"),
    ([entry_dict(urls=[], importer="x", upstream={"url": "https://h/..", "sha256": "0" * 64, "size": 1})],
     "unsafe upstream file name"),
    ([entry_dict(default=True), entry_dict(name="b", filename="b.pt", default=True)],
     "two defaults"),
])
def test_manifest_rejects_bad_entries(tmp_path, models, message):
    with pytest.raises(WeightsError, match=message):
        weights.load_manifest(write_manifest(tmp_path, *models))


def test_cache_dir_honours_colorsr_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("COLORSR_CACHE", str(tmp_path))
    assert weights.cache_dir() == tmp_path
    assert weights.entry_path(make_entry()) == tmp_path / "weights" / "tiny.pt"
    monkeypatch.delenv("COLORSR_CACHE")
    assert weights.cache_dir() == Path(platformdirs.user_cache_dir("colorsr"))


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(PAYLOAD * 7)  # > one read chunk
    assert weights.sha256_file(path) == hashlib.sha256(PAYLOAD * 7).hexdigest()


# --- download_verified ----------------------------------------------------------------------

def test_download_writes_file_and_reports_progress(server, tmp_path):
    calls = []
    dest = tmp_path / "w.pt"
    weights.download_verified(server.serve("/w.pt", body=PAYLOAD), dest, PAYLOAD_SHA,
                              len(PAYLOAD), progress=lambda d, t: calls.append((d, t)))
    assert dest.read_bytes() == PAYLOAD
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert os.listdir(tmp_path) == ["w.pt"]


def test_download_404_fails_at_once(server, tmp_path):
    url = server.serve("/gone.pt", status=404)
    with pytest.raises(DownloadError, match="HTTP 404"):
        weights.download_verified(url, tmp_path / "w.pt", PAYLOAD_SHA, len(PAYLOAD), backoff=0)
    assert len(server.requests) == 1
    assert os.listdir(tmp_path) == []


def test_download_resumes_with_range_after_cut_connection(server, tmp_path):
    url = server.serve("/w.pt", body=PAYLOAD, cut_after=150_000)
    dest = tmp_path / "w.pt"
    weights.download_verified(url, dest, PAYLOAD_SHA, len(PAYLOAD), backoff=0)
    assert dest.read_bytes() == PAYLOAD
    (_, first), (_, second) = server.requests
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", second).group(1))
    assert first is None and 0 < resumed_at <= 150_000  # the chunk in flight may be lost


def test_download_starts_over_when_server_ignores_range(server, tmp_path):
    url = server.serve("/w.pt", body=PAYLOAD, honour_range=False)
    dest = tmp_path / "w.pt"
    dest.with_name("w.pt.part").write_bytes(b"stale bytes from another file")
    weights.download_verified(url, dest, PAYLOAD_SHA, len(PAYLOAD), backoff=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0][1] is not None  # it did ask to resume


def test_download_retries_server_errors(server, tmp_path):
    url = server.serve("/w.pt", body=PAYLOAD, failures=2)
    weights.download_verified(url, tmp_path / "w.pt", PAYLOAD_SHA, len(PAYLOAD), backoff=0)
    assert len(server.requests) == 3
    with pytest.raises(DownloadError, match="after 2 attempts: HTTP 503"):
        weights.download_verified(server.serve("/bad.pt", body=PAYLOAD, failures=5),
                                  tmp_path / "b.pt", PAYLOAD_SHA, len(PAYLOAD), retries=1,
                                  backoff=0)


def test_download_wrong_bytes_leave_nothing_in_cache(server, tmp_path):
    wrong = bytes(reversed(PAYLOAD))  # same size, so the sha256 check is what catches it
    url = server.serve("/w.pt", body=wrong)
    with pytest.raises(DownloadError, match=f"sha256 mismatch.*expected {PAYLOAD_SHA} got "
                                            f"{hashlib.sha256(wrong).hexdigest()}"):
        weights.download_verified(url, tmp_path / "w.pt", PAYLOAD_SHA, len(PAYLOAD))
    assert os.listdir(tmp_path) == []


def test_download_refused_connection_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/w.pt"
    with pytest.raises(DownloadError) as info:
        weights.download_verified(url, tmp_path / "w.pt", PAYLOAD_SHA, len(PAYLOAD), retries=1,
                                  backoff=0.01, timeout=5)
    assert str(info.value) == f"{url}: download failed after 2 attempts: connection refused"
    assert os.listdir(tmp_path) == []


# --- fetch / verify ---------------------------------------------------------------------------

def test_fetch_downloads_once_then_uses_cache(server, cache):
    entry = make_entry(urls=[server.serve("/tiny.pt", body=PAYLOAD)])
    assert not weights.is_present(entry)
    path = weights.fetch(entry)
    assert path == cache / "weights" / "tiny.pt" and path.read_bytes() == PAYLOAD
    assert weights.fetch(entry) == path
    assert len(server.requests) == 1
    assert weights.verify(entry) == (True, f"ok: {path}")


def test_fetch_tries_mirrors_in_order_and_lists_failures(server, cache):
    gone, good = server.serve("/gone.pt", status=404), server.serve("/tiny.pt", body=PAYLOAD)
    assert weights.fetch(make_entry(urls=[gone, good])).read_bytes() == PAYLOAD
    with pytest.raises(DownloadError) as info:
        weights.fetch(make_entry(name="b", filename="b.pt", urls=[gone, gone + "?again"]))
    assert "tried:" in str(info.value) and str(info.value).count("HTTP 404") == 2


def test_fetch_replaces_a_corrupt_cached_file(server, cache):
    entry = make_entry(urls=[server.serve("/tiny.pt", body=PAYLOAD)])
    (cache / "weights").mkdir(parents=True)
    weights.entry_path(entry).write_bytes(b"x" * len(PAYLOAD))
    ok, message = weights.verify(entry)
    assert not ok and "sha256 mismatch" in message
    assert weights.fetch(entry).read_bytes() == PAYLOAD


def test_verify_reports_a_missing_file(cache):
    ok, message = weights.verify(make_entry())
    assert not ok and message.startswith("not downloaded")


def test_bundled_entry_is_checked_and_tampering_detected(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path)
    entry = make_entry(bundled=True, urls=[])
    with pytest.raises(WeightsError, match="missing"):
        weights.fetch(entry)
    path = tmp_path / "tiny.pt"
    path.write_bytes(PAYLOAD)
    assert weights.fetch(entry) == path
    path.write_bytes(bytes(reversed(PAYLOAD)))
    os.utime(path, ns=(1, 1))  # a rewrite within the mtime granularity must still be noticed
    with pytest.raises(WeightsError, match="damaged"):
        weights.fetch(entry)


# --- resolve_weights / load_model -------------------------------------------------------------

@pytest.fixture
def tiny_weights(tmp_path) -> Path:
    path = tmp_path / "tiny_sr.pt"
    torch.manual_seed(0)
    save_weight_file(build_model("srgan_generator", {"channels": 8, "blocks": 1}), path)
    return path


def test_resolve_weights_path_name_default_unknown_and_wrong_task(server, cache, tmp_path):
    user_file = tmp_path / "mine.pt"
    user_file.write_bytes(b"anything")
    manifest = {"tiny": make_entry(default=True, urls=[server.serve("/tiny.pt", body=PAYLOAD)])}
    assert weights.resolve_weights(str(user_file), "sr", manifest) == user_file
    assert weights.resolve_weights("tiny", "sr", manifest) == cache / "weights" / "tiny.pt"
    assert weights.resolve_weights(None, "sr", manifest) == cache / "weights" / "tiny.pt"
    with pytest.raises(WeightsError, match=r"unknown weights 'nope': .*\(known: tiny\)"):
        weights.resolve_weights("nope", "sr", manifest)
    with pytest.raises(WeightsError, match="for task 'sr', not 'color'"):
        weights.resolve_weights("tiny", "color", manifest)


def test_load_model_round_trip_from_path_and_from_manifest(server, cache, tiny_weights):
    model, _ = weights.load_model(str(tiny_weights), "sr")
    assert isinstance(model, SRGenerator) and model.config.channels == 8
    blob = tiny_weights.read_bytes()
    entry = make_entry(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob),
                       urls=[server.serve("/tiny.pt", body=blob)])
    fetched, _ = weights.load_model("tiny", "sr", {"tiny": entry})
    for a, b in zip(model.state_dict().values(), fetched.state_dict().values()):
        assert torch.equal(a, b)


def test_load_model_refuses_a_model_for_another_task(tiny_weights):
    with pytest.raises(WeightsError, match="holds a 'sr' model"):
        weights.load_model(str(tiny_weights), "color")
