"""The similarity index under production conditions: fresh processes, import order, old folders,
repeated queries, paths that do not leak the server's layout, threads, and service shutdown."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import visor
from visor.errors import ConfigError
from visor.retrieval import Embedder, IndexOutdated, VectorIndex, build_index, clear_search_cache

REPO = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT = 300


@pytest.fixture(scope="module")
def embedder(classifier):
    return Embedder(classifier)


@pytest.fixture
def photos(shared_data, tmp_path) -> Path:
    """Eight imagenette-dev images copied to ``tmp_path/photos/{tench,dog}/`` (four of each)."""
    root = shared_data("imagenette-dev") / "val"
    out = tmp_path / "photos"
    for name, synset in (("tench", "n01440764"), ("dog", "n02102040")):
        (out / name).mkdir(parents=True)
        for f in sorted((root / synset).glob("*.JPEG"))[:4]:
            shutil.copy(f, out / name / f.name)
    return out


def _run(*args: str, timeout: float = SUBPROCESS_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1"})


# --------------------------------------------------------------------------- 1. the index library


_USE_INDEX = ("import sys; from visor.retrieval import VectorIndex; "
              "VectorIndex.create(sys.argv[1], model='m', model_sha256='0' * 64, dim=4).close()")


@pytest.mark.parametrize("code", [
    "import visor.retrieval; import onnxruntime",
    "import onnxruntime; import visor.retrieval",
    f"{_USE_INDEX}; import onnxruntime",  # the index library loaded first (usearch 2.26: SIGSEGV, exit -11)
    f"import onnxruntime; {_USE_INDEX}",
], ids=["package-first", "onnxruntime-first", "index-first", "onnxruntime-then-index"])
def test_import_order_does_not_matter(code, tmp_path):
    r = _run("-c", code, str(tmp_path / "idx"))
    assert r.returncode == 0, r.stderr[-2000:]


def test_cli_build_then_search_in_fresh_processes(photos, tmp_path, visor_cache):
    out = tmp_path / "idx"
    r = _run("-m", "visor", "index", "build", str(photos), "--out", str(out), "--labels", "parent")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "8 images" in r.stdout
    query = sorted((photos / "dog").glob("*.JPEG"))[2]
    r = _run("-m", "visor", "search", str(out), str(query), "-k", "3", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    body = json.loads(r.stdout)
    top = body["hits"][0]
    assert top["path"] == f"dog/{query.name}" and top["label"] == "dog"  # relative to the folder indexed
    assert top["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert body["root"] == str(photos.resolve())
    # and through the library, in a fresh process: visor.search(path, image)
    r = _run("-c", "import sys, visor; print(visor.search(sys.argv[1], sys.argv[2], 1)[0].path)", str(out), str(query))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == f"dog/{query.name}"


def test_index_files_are_written_atomically_with_public_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with VectorIndex.create(tmp_path / "idx", model="m", model_sha256="0" * 64, dim=4) as index:
            index.add(np.eye(4, dtype=np.float32), ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    finally:
        os.umask(umask)
    for name in ("index.json", "vectors.faiss"):
        assert stat.S_IMODE((tmp_path / "idx" / name).stat().st_mode) == 0o644, name
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["index.json", "meta.sqlite", "vectors.faiss"]


def test_the_cached_embedding_graph_is_readable_by_the_cache_folders_readers(classifier, tmp_path):
    from visor.retrieval.embed import embedding_onnx

    umask = os.umask(0o022)
    try:
        path = embedding_onnx(classifier.session.path, cache=tmp_path)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # old code: 0o600 (tempfile.mkstemp)
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temporary file left behind


def _old_usearch_folder(folder: Path) -> Path:
    """An index folder as visor 0.x wrote it with usearch (format 1)."""
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({
        "model": "efficientnet_lite0", "model_sha256": "0" * 64, "dim": 1280, "metric": "cos", "count": 3,
        "next_key": 3, "exact_limit": 50000, "expansion_search": 128, "recall_at_10": None,
        "created": "2025-01-01T00:00:00+00:00", "updated": "2025-01-01T00:00:00+00:00", "version": 1}))
    (folder / "vectors.usearch").write_bytes(b"usearch" + bytes(200))
    db = sqlite3.connect(folder / "meta.sqlite")
    db.execute("CREATE TABLE items (key INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, label TEXT, sha256 TEXT, "
               "added TEXT NOT NULL)")
    db.commit()
    db.close()
    return folder


def test_an_old_usearch_index_is_a_typed_error(tmp_path, capsys):
    from visor.cli.main import main

    folder = _old_usearch_folder(tmp_path / "old")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(IndexOutdated, match=r"built by an older visor; rebuild it with `visor index build`") as e:
        VectorIndex.open(folder)
    assert isinstance(e.value, ConfigError) and e.value.http_status == 400 and e.value.code == "index_outdated"
    with pytest.raises(IndexOutdated):
        visor.search(folder, REPO / "assets" / "bus.jpg")
    assert main(["search", str(folder), str(REPO / "assets" / "bus.jpg")]) == 2
    err = capsys.readouterr().err.strip()
    assert "built by an older visor" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing touched


def test_a_corrupt_vectors_file_is_a_typed_error(tmp_path):
    from visor.errors import InvalidInput

    with VectorIndex.create(tmp_path / "idx", model="m", model_sha256="0" * 64, dim=4):
        pass
    (tmp_path / "idx" / "vectors.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(InvalidInput, match="not a readable faiss index"):
        VectorIndex.open(tmp_path / "idx")


# --------------------------------------------------------------------------- 2. repeated queries


def test_visor_search_by_path_loads_the_index_and_model_once(photos, tmp_path, embedder, monkeypatch):
    embed_module = importlib.import_module("visor.retrieval.embed")  # visor.retrieval.embed the attribute is a function
    index_module = importlib.import_module("visor.retrieval.index")

    index, _ = build_index(sorted(photos.rglob("*.JPEG")), tmp_path / "idx", embedder=embedder)
    index.close()
    clear_search_cache()
    opened, loaded = [], []
    real_open, real_init = VectorIndex.open.__func__, embed_module.Embedder.__init__
    monkeypatch.setattr(VectorIndex, "open", classmethod(lambda cls, *a, **kw: opened.append(a) or
                                                         real_open(cls, *a, **kw)))
    monkeypatch.setattr(embed_module.Embedder, "__init__", lambda self, *a, **kw: loaded.append(a) or
                        real_init(self, embedder.classifier))
    queries = sorted(photos.rglob("*.JPEG"))
    try:
        for q in queries:
            hit = visor.search(tmp_path / "idx", q, k=1)[0]
            assert hit.path == q.relative_to(photos).as_posix()
        assert len(opened) == 1 and len(loaded) == 1  # old code: 8 and 8 (0.3-0.6 s per query)
        # a changed index is reopened, not served stale
        with VectorIndex.open(tmp_path / "idx") as idx:
            idx.remove([queries[0].relative_to(photos).as_posix()])
        time.sleep(0.01)
        assert visor.search(tmp_path / "idx", queries[0], k=8)[0].path != queries[0].relative_to(photos).as_posix()
        assert len(opened) == 3 and len(index_module._OPEN._items) == 1  # the stale one was dropped
    finally:
        clear_search_cache()


def test_an_open_index_searches_images_and_vectors(photos, tmp_path, embedder):
    index, _ = build_index(sorted(photos.rglob("*.JPEG")), tmp_path / "idx", embedder=embedder)
    index.close()
    query = sorted(photos.rglob("*.JPEG"))[5]
    with VectorIndex.open(tmp_path / "idx", embedder=embedder) as idx:
        by_image = idx.search(query, k=2)
        by_vector = idx.search(embedder.embed(query), k=2)
        assert [h.path for h in by_image] == [h.path for h in by_vector]
        assert by_image[0].path == query.relative_to(photos).as_posix()
        assert idx.absolute(by_image[0].path) == query.resolve()


def test_the_search_cache_is_bounded(tmp_path):
    index_module = importlib.import_module("visor.retrieval.index")

    clear_search_cache()
    try:
        for i in range(index_module.OPEN_INDEXES + 2):
            with VectorIndex.create(tmp_path / f"idx{i}", model="m", model_sha256="0" * 64, dim=4) as index:
                index.add(np.eye(4, dtype=np.float32)[:1], [f"{i}.jpg"])
            assert visor.search(tmp_path / f"idx{i}", np.eye(4, dtype=np.float32)[0], k=1)[0].path == f"{i}.jpg"
        assert len(index_module._OPEN._items) == index_module.OPEN_INDEXES
    finally:
        clear_search_cache()


# --------------------------------------------------------------------------- 3. relative paths


def test_paths_are_relative_to_the_root_given_at_build(photos, tmp_path, embedder):
    files = sorted(photos.rglob("*.JPEG"))
    index, _ = build_index(files, tmp_path / "idx", embedder=embedder, root=photos.parent)
    with index:
        assert index.paths() == {f"photos/{f.relative_to(photos).as_posix()}" for f in files}
        assert index.relative(files[0]) == f"photos/{files[0].relative_to(photos).as_posix()}"
        # a file added later from outside the root is stored relative to it too, never absolute
        outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
        shutil.copy(files[0], outside)
        try:
            from visor.retrieval import add_images

            assert add_images(index, [outside], embedder=embedder) == []
            assert f"../{outside.name}" in index.paths()
        finally:
            outside.unlink()
    assert not any(p.startswith("/") for p in VectorIndex.open(tmp_path / "idx").paths())


# --------------------------------------------------------------------------- 4. threads and shutdown


def test_an_index_opened_in_one_thread_searches_and_closes_in_another(tmp_path):
    with VectorIndex.create(tmp_path / "idx", model="m", model_sha256="0" * 64, dim=4) as index:
        index.add(np.eye(4, dtype=np.float32), ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], ["x", "y", "z", "w"])
    opened: list[VectorIndex] = []
    t = threading.Thread(target=lambda: opened.append(VectorIndex.open(tmp_path / "idx")))
    t.start()
    t.join()
    results, errors = [], []

    def use() -> None:
        try:
            results.append(opened[0].search_vectors(np.eye(4, dtype=np.float32)[2:3], k=1)[0][0])
            opened[0].close()  # old code: sqlite3.ProgrammingError (created in a thread)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=use)
    t.start()
    t.join()
    assert errors == [] and results[0].path == "c.jpg" and results[0].label == "z"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_an_index_shuts_down_cleanly_on_sigterm(photos, tmp_path, embedder, visor_cache):
    pytest.importorskip("fastapi", reason="the service needs the 'serve' extra")
    import httpx

    index, _ = build_index(sorted(photos.rglob("*.JPEG")), tmp_path / "idx", embedder=embedder)
    index.close()
    port = _free_port()
    env = {**os.environ, "VISOR_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "visor", "serve", "--index", str(tmp_path / "idx"), "--no-keys",
                             "--host", "127.0.0.1", "--port", str(port), "--faces-db", str(tmp_path / "faces.db")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.3)
        query = sorted(photos.rglob("*.JPEG"))[1]
        r = httpx.post(f"{url}/v1/search", params={"k": 2}, timeout=60,
                       files=[("images", (query.name, query.read_bytes(), "application/octet-stream"))])
        assert r.status_code == 200, r.text
        top = r.json()["results"][0]["hits"][0]
        assert top["path"] == query.relative_to(photos).as_posix()  # not the server's absolute path
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # a requested stop exits 0 (uvicorn re-raises the SIGTERM after its shutdown; visor serve maps it to 0)
    assert proc.returncode == 0, err[-3000:]
    assert "Application shutdown complete" in err, err[-3000:]
    assert "Application shutdown failed" not in err and "Traceback" not in err, err[-3000:]  # old: ProgrammingError
