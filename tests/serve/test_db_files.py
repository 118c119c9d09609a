"""The service database's files: private (0o600, WAL and SHM included) in a private folder (0o700)."""

from __future__ import annotations

import os
import stat

import pytest

from visor.serve.db import ServiceDB, default_db_path
from visor.serve.keys import KeyStore
from visor.serve.review import ReviewQueue


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _use(db: ServiceDB) -> None:
    """Real use: a key, a review item with its image, a read while the WAL holds the writes."""
    KeyStore(db).create("tests")
    queue = ReviewQueue(db)
    queue.add(image=b"\xff\xd8\xff jpeg bytes", filename="face.jpg", media_type="image/jpeg", model="m",
              task="classify", prediction={"predictions": []}, labels=[], reason="sample")
    assert queue.counts()["pending"] == 1


def test_default_database_and_folder_are_private(tmp_path, monkeypatch, umask_022):
    home = tmp_path / "home"
    monkeypatch.setenv("VISOR_HOME", str(home))
    with ServiceDB() as db:
        _use(db)
        files = {p.name: _mode(p) for p in home.iterdir()}
        assert files == {"serve.db": 0o600, "serve.db-wal": 0o600, "serve.db-shm": 0o600}
    assert db.path == default_db_path()
    assert _mode(home) == 0o700


def test_existing_world_readable_files_are_made_private(tmp_path, monkeypatch, umask_022):
    home = tmp_path / "home"
    monkeypatch.setenv("VISOR_HOME", str(home))
    with ServiceDB() as db:
        _use(db)
        # as an older visor left them
        os.chmod(home, 0o755)
        for p in home.iterdir():
            os.chmod(p, 0o644)
    with ServiceDB() as db:
        assert ReviewQueue(db).counts()["pending"] == 1
        assert {p.name: _mode(p) for p in home.iterdir()} == {
            "serve.db": 0o600, "serve.db-wal": 0o600, "serve.db-shm": 0o600}
    assert _mode(home) == 0o700


def test_a_database_elsewhere_is_private_and_its_existing_folder_kept(tmp_path, umask_022):
    os.chmod(tmp_path, 0o755)
    with ServiceDB(str(tmp_path / "mine.db")) as db:
        _use(db)
        assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {
            "mine.db": 0o600, "mine.db-wal": 0o600, "mine.db-shm": 0o600}
    assert _mode(tmp_path) == 0o755  # the user's own folder is not changed
    with ServiceDB(f"sqlite:///{tmp_path / 'new' / 'x.db'}") as db:
        _use(db)
    assert _mode(tmp_path / "new") == 0o700 and _mode(tmp_path / "new" / "x.db") == 0o600
    with ServiceDB("sqlite://") as db:  # in memory: no file at all
        _use(db)
        assert db.path is None
