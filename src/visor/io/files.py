"""Atomic file writes: readers never see a half-written file, and a failure leaves no debris.

Every file visor writes goes through here, with a deliberate mode:

- ``PUBLIC`` (``0o644`` less the umask): reports, plots, model cards, exports, annotated
  images -- whatever the folder's readers may read, like ``open`` would create it.
- ``PRIVATE`` (``0o600``): files that hold personal data or secrets (databases with face
  embeddings, review images or key hashes). Their folders are created ``0o700``
  (:func:`private_dir`).

Unlike :func:`tempfile.mkstemp`, whose temporary files are always ``0o600``, the mode is
chosen, not inherited by accident. Libraries that write to a path themselves (safetensors,
ONNX, an index library) use :func:`atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

PUBLIC = 0o644
PRIVATE = 0o600
PRIVATE_DIR = 0o700


def _temp_beside(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current_umask() -> int:
    # os.umask can only be read by setting it, which briefly affects every thread; Linux shows it here
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def umasked(mode: int) -> int:
    """``mode`` less the process umask: the permissions of a file written with :data:`PUBLIC` (for writers that
    cannot go through :func:`atomic_open`, such as OpenCV's video writer, which needs its own file name)."""
    return mode & ~_current_umask()


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None, permissions: int = PUBLIC,
    fsync: bool = False,
) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    Parent folders are created. ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 by default).
    ``permissions`` is the file's mode (``PUBLIC`` less the umask, or ``PRIVATE``). ``fsync``
    flushes the data to disk before the rename (for files that must survive a power cut).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, permissions if permissions == PRIVATE else umasked(permissions))
        with os.fdopen(fd, mode, **({"encoding": encoding or "utf-8"} if mode == "w" else {})) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, permissions: int = PUBLIC, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a library to write; on success it replaces ``path``.

    The file the library wrote is given ``permissions`` (and with ``fsync`` flushed to disk)
    before it is moved into place; if the block raises, or writes nothing, the temporary file
    is removed and ``path`` is untouched. The temporary name ends in ``.tmp``: pass the
    format explicitly to libraries that choose it by the suffix.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(target)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp}")
        os.chmod(tmp, permissions if permissions == PRIVATE else umasked(permissions))
        if fsync:
            _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str, *, permissions: int = PUBLIC) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns the path."""
    with atomic_open(path, "w" if isinstance(data, str) else "wb", permissions=permissions) as fh:
        fh.write(data)
    return Path(path)


def data_home() -> Path:
    """visor's data folder (service and face databases): ``$VISOR_HOME``, else ``~/.local/share/visor``.

    Only the path; nothing is created (see :func:`private_dir`).
    """
    home = os.environ.get("VISOR_HOME")
    return Path(home) if home else Path.home() / ".local" / "share" / "visor"


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) if needed and make it ``0o700``; returns it."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, PRIVATE_DIR)
    return folder


def make_private(path: str | os.PathLike) -> None:
    """Make an existing file ``0o600`` (for files a library created, such as SQLite's)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, PRIVATE)


#: What SQLite may create beside a database file: the WAL, its shared-memory index, the rollback journal.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_sqlite(path: str | os.PathLike) -> Path:
    """Create the SQLite file ``path`` empty and ``0o600`` if missing, and make it and its side files ``0o600``.

    SQLite creates the ``-wal``, ``-shm`` and ``-journal`` files with the database file's mode,
    so a database made private before it is first opened stays private; call this again on
    each connection to fix files an older version created world-readable. The folder is not
    touched (see :func:`private_dir`).
    """
    target = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))
    make_private(target)
    for side in SQLITE_SIDE_FILES:
        make_private(f"{target}{side}")
    return target


__all__ = [
    "PRIVATE",
    "PRIVATE_DIR",
    "PUBLIC",
    "atomic_open",
    "atomic_path",
    "atomic_write",
    "data_home",
    "make_private",
    "private_dir",
    "private_sqlite",
]
