"""visor.io.files: atomic writes with deliberate modes, private folders and SQLite files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from visor.io.files import (
    PRIVATE,
    PUBLIC,
    atomic_open,
    atomic_path,
    atomic_write,
    data_home,
    private_dir,
    private_sqlite,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_public_follows_the_umask_and_private_ignores_it(tmp_path, umask_022):
    assert mode(atomic_write(tmp_path / "a.txt", "x")) == 0o644
    assert mode(atomic_write(tmp_path / "b.bin", b"x", permissions=PRIVATE)) == 0o600
    os.umask(0o027)
    assert mode(atomic_write(tmp_path / "c.txt", "x", permissions=PUBLIC)) == 0o640
    assert mode(atomic_write(tmp_path / "d.txt", "x", permissions=PRIVATE)) == 0o600


def test_atomic_path_gives_a_library_file_its_mode_and_fsyncs(tmp_path, umask_022, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    with atomic_path(tmp_path / "w.bin", fsync=True) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # like mkstemp, or a library's own open
        os.write(fd, b"weights")
        os.close(fd)
    assert (tmp_path / "w.bin").read_bytes() == b"weights" and mode(tmp_path / "w.bin") == 0o644
    assert len(synced) == 1
    with atomic_open(tmp_path / "t.txt", "w", fsync=True) as fh:
        fh.write("text")
    assert len(synced) == 2 and mode(tmp_path / "t.txt") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt", "w.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    atomic_write(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "keep.txt", "w") as fh:
        fh.write("half")
        raise RuntimeError("killed")
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(tmp_path / "keep.txt"):
        pass
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_private_dir_and_private_sqlite(tmp_path, umask_022):
    folder = tmp_path / "home"
    folder.mkdir(mode=0o755)
    assert private_dir(folder) == folder and mode(folder) == 0o700
    db = folder / "x.db"
    private_sqlite(db)
    assert db.read_bytes() == b"" and mode(db) == 0o600
    for side in ("-wal", "-shm"):  # left world-readable by an older version
        Path(f"{db}{side}").write_bytes(b"")
        os.chmod(f"{db}{side}", 0o644)
    db.write_bytes(b"data")
    os.chmod(db, 0o644)
    private_sqlite(db)
    assert db.read_bytes() == b"data"  # an existing database is kept
    assert {p.name: mode(p) for p in folder.iterdir()} == {"x.db": 0o600, "x.db-wal": 0o600, "x.db-shm": 0o600}


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("VISOR_HOME", str(tmp_path))
    assert data_home() == tmp_path
    monkeypatch.delenv("VISOR_HOME")
    assert data_home() == Path.home() / ".local" / "share" / "visor"
    assert not (tmp_path / "x").exists()
