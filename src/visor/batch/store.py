"""The output of a batch run: a folder of atomically written parts, and its readers.

Layout (``OUT`` ends in ``.parquet`` or ``.jsonl``; the format follows the suffix)::

    OUT/_visor_batch.json            the run's parameters (task, model and its sha256, options)
    OUT/part-000001.parquet          results, one row per image (or kept video frame) that ran
    OUT/_quarantine/part-000001.parquet   inputs that could not be read (path, error type, code, message)
    OUT/_lock                        held (flock) while a run writes

Parquet readers (``pyarrow.parquet.read_table(OUT)``, ``pandas.read_parquet(OUT)``) see the result
parts only: names starting with ``_`` or ``.`` are skipped. Each part is written to a hidden temporary
file, fsynced and renamed, so a part is either whole or absent; a run killed mid-write leaves only a
temporary file, deleted by the next run. The inputs a run has finished are exactly the paths in the
parts, which is how a re-run knows what to skip (a video's rows are committed together, in one part, so a
video is in the parts whole or not at all).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from visor.batch.errors import BatchError, MissingDependency, OutputLocked, OutputMismatch
from visor.io.files import PUBLIC, atomic_open

PARAMS_FILE = "_visor_batch.json"
QUARANTINE_DIR = "_quarantine"
LOCK_FILE = "_lock"
FORMATS = ("parquet", "jsonl")
SCHEMA_VERSION = 1

#: Columns of a result row. ``result`` is the task's JSON document (a string in Parquet, an object in
#: JSON Lines); ``label``/``class_id``/``confidence`` repeat its best prediction for convenience and
#: ``count`` is how many predictions it holds. ``frame`` (0-based index in the source) and ``timestamp_s``
#: (seconds) are set on the rows of a video's frames (``path`` is the video) and null for images.
RESULT_COLUMNS = ("path", "frame", "timestamp_s", "status", "label", "class_id", "confidence", "count", "result",
                  "model", "model_sha256")
#: Columns of a quarantine row.
QUARANTINE_COLUMNS = ("path", "status", "error_type", "code", "message")
#: Parameters that must match for a run to resume into an existing output.
IDENTITY_KEYS = ("format", "task", "model", "model_sha256", "card_sha256", "options", "video_stride")
#: What an identity key absent from an output's parameters (written before the key existed) stands for.
IDENTITY_DEFAULTS = {"video_stride": "auto"}

_PART = re.compile(r"^part-(\d+)\.(parquet|jsonl)$")


def output_format(out: str | os.PathLike) -> str:
    """``"parquet"`` or ``"jsonl"`` from the output's suffix."""
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise BatchError(f"--out must end in .parquet or .jsonl (a folder of parts is written there), got {out}")
    return suffix


def require_pyarrow(why: str):
    try:
        import pyarrow
    except ImportError:
        raise MissingDependency(
            f"{why} needs pyarrow: pip install 'visor-vision[batch]', or write JSON Lines (an output ending in .jsonl)"
        ) from None
    return pyarrow


def _arrow_schemas():
    pa = require_pyarrow("Parquet output")
    results = pa.schema([
        ("path", pa.string()), ("frame", pa.int64()), ("timestamp_s", pa.float64()), ("status", pa.string()),
        ("label", pa.string()), ("class_id", pa.int64()),
        ("confidence", pa.float64()), ("count", pa.int64()), ("result", pa.string()), ("model", pa.string()),
        ("model_sha256", pa.string()),
    ])
    quarantine = pa.schema([(c, pa.string()) for c in QUARANTINE_COLUMNS])
    return results, quarantine


# --------------------------------------------------------------------------- atomic files


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(target: Path, write) -> None:
    """``write(binary file)`` into a hidden temporary file beside ``target``, fsync, rename
    (:func:`visor.io.files.atomic_open`, usual permissions), then fsync the folder."""
    with atomic_open(target, "wb", permissions=PUBLIC, fsync=True) as f:
        write(f)
    _fsync_dir(target.parent)


def _parts(folder: Path, fmt: str) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    out = []
    for entry in os.scandir(folder):
        m = _PART.match(entry.name)
        if m and m.group(2) == fmt:
            out.append((int(m.group(1)), Path(entry.path)))
    return sorted(out)


def _remove_temporaries(folder: Path) -> int:
    n = 0
    if folder.is_dir():
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    n += 1
    return n


# --------------------------------------------------------------------------- writing


class ResultStore:
    """An output folder opened for a run: holds its lock, knows its finished inputs, commits parts.

    Use :meth:`open`; close it (or use it as a context manager) to release the lock.
    """

    def __init__(self, out: Path, fmt: str, params: dict[str, Any], lock_fd: int | None) -> None:
        self.out = out
        self.format = fmt
        self.params = params
        self._lock_fd = lock_fd
        numbers = [n for n, _ in _parts(out, fmt)] + [n for n, _ in _parts(out / QUARANTINE_DIR, fmt)]
        self.next_part = max(numbers, default=0) + 1
        self.parts_written = 0
        self.rows_written = 0
        self.quarantined_written = 0
        self.write_seconds = 0.0
        if fmt == "parquet":
            self._schemas = _arrow_schemas()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, out: str | os.PathLike, identity: Mapping[str, Any], *, overwrite: bool = False,
             info: Mapping[str, Any] | None = None) -> ResultStore:
        """Open (creating it) the output folder ``out`` for a run with parameters ``identity``
        (task, model, model_sha256, card_sha256, options).

        An output written with other parameters raises :class:`OutputMismatch`, unless
        ``overwrite`` (its parts are then deleted). A folder that is not a batch output is refused.
        """
        out = Path(out)
        fmt = output_format(out)
        if fmt == "parquet":
            require_pyarrow("Parquet output")
        identity = {"format": fmt, **identity}
        if out.exists() and not out.is_dir():
            raise BatchError(f"{out} exists and is a file; the output is a folder of parts: choose another --out")
        params_path = out / PARAMS_FILE
        if out.is_dir() and not params_path.is_file() and any(
            e.name != LOCK_FILE for e in os.scandir(out)
        ):
            raise BatchError(f"{out} exists and is not a visor batch output (no {PARAMS_FILE}); choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(out)
        try:
            if params_path.is_file():
                previous = _read_params(params_path)
                if overwrite:
                    _wipe(out)
                else:
                    _check_identity(out, previous, identity)
            if not params_path.is_file():
                params = {"visor_batch": SCHEMA_VERSION, **identity, **(info or {}),
                          "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                data = (json.dumps(params, indent=2, sort_keys=True) + "\n").encode()
                _atomic_write(params_path, lambda f: f.write(data))
            (out / QUARANTINE_DIR).mkdir(exist_ok=True)
            _remove_temporaries(out)
            _remove_temporaries(out / QUARANTINE_DIR)
            return cls(out, fmt, _read_params(params_path), lock_fd)
        except BaseException:
            _unlock(lock_fd)
            raise

    def close(self) -> None:
        _unlock(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ state

    def done_paths(self) -> set[str]:
        """Paths of every input already in a part (results or quarantine)."""
        return set(iter_paths(self.out))

    # ------------------------------------------------------------------ commit

    def commit(self, results: Sequence[Mapping[str, Any]], quarantine: Sequence[Mapping[str, Any]]) -> None:
        """Write one chunk: its quarantine part, then its results part, each atomically.

        Killed between the two renames, the next run finds the quarantined inputs done and runs
        the others again: nothing twice, nothing lost.
        """
        if not results and not quarantine:
            return
        t = time.perf_counter()
        name = f"part-{self.next_part:06d}.{self.format}"
        if quarantine:
            self._write(self.out / QUARANTINE_DIR / name, quarantine, QUARANTINE_COLUMNS, 1)
        if results:
            self._write(self.out / name, results, RESULT_COLUMNS, 0)
        self.next_part += 1
        self.parts_written += 1
        self.rows_written += len(results)
        self.quarantined_written += len(quarantine)
        self.write_seconds += time.perf_counter() - t

    def _write(self, target: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], which: int) -> None:
        if self.format == "jsonl":
            data = "".join(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n" for r in rows)
            payload = data.encode("utf-8", "surrogateescape")
            _atomic_write(target, lambda f: f.write(payload))
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = self._schemas[which]
        table = pa.table({c: [_cell(r.get(c), c) for r in rows] for c in columns}, schema=schema)
        _atomic_write(target, lambda f: pq.write_table(table, f, compression="zstd"))


def _cell(value: Any, column: str) -> Any:
    if column == "result" and value is not None and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return value


def _lock(out: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
        return None
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OutputLocked(f"another visor batch run is writing to {out}") from None
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the descriptor releases the flock


def _read_params(path: Path) -> dict[str, Any]:
    try:
        params = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BatchError(f"cannot read {path}: {e}; delete the output folder or pass --overwrite") from None
    if not isinstance(params, dict) or params.get("visor_batch") != SCHEMA_VERSION:
        raise BatchError(f"{path} is not a visor batch parameters file of version {SCHEMA_VERSION}")
    return params


def _check_identity(out: Path, previous: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
    diffs = []
    for key in IDENTITY_KEYS:
        old, new = previous.get(key, IDENTITY_DEFAULTS.get(key)), identity.get(key, IDENTITY_DEFAULTS.get(key))
        if isinstance(old, dict) and isinstance(new, dict):
            for k in sorted(set(old) | set(new)):
                if old.get(k) != new.get(k):
                    diffs.append(f"{key}.{k}: {old.get(k)!r} in the output, {new.get(k)!r} now")
        elif old != new:
            diffs.append(f"{key}: {old!r} in the output, {new!r} now")
    if diffs:
        raise OutputMismatch(
            f"{out} holds results made with other parameters ({'; '.join(diffs)}); "
            "re-run with the same ones to resume, or pass --overwrite (overwrite=True) to start over"
        )


def _wipe(out: Path) -> None:
    """Delete what a batch run wrote (parts, quarantine, parameters, temporaries), nothing else."""
    for fmt in FORMATS:
        for _, p in _parts(out, fmt):
            p.unlink()
    shutil.rmtree(out / QUARANTINE_DIR, ignore_errors=True)
    _remove_temporaries(out)
    (out / PARAMS_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------------- reading


def _check_output(out: str | os.PathLike) -> tuple[Path, str]:
    out = Path(out)
    fmt = output_format(out)
    if not (out / PARAMS_FILE).is_file():
        raise BatchError(f"{out} is not a visor batch output (no {PARAMS_FILE})")
    return out, fmt


def _conform(table, schema):
    """A part read as ``schema``: columns it lacks (parts written before ``frame`` and ``timestamp_s`` existed)
    added as nulls, in the schema's order."""
    import pyarrow as pa

    if table.schema.names == schema.names:
        return table
    return pa.table({f.name: table.column(f.name) if f.name in table.schema.names
                     else pa.nulls(table.num_rows, f.type) for f in schema}, schema=schema)


def read_params(out: str | os.PathLike) -> dict[str, Any]:
    """The parameters a batch output was made with."""
    out, _ = _check_output(out)
    return _read_params(out / PARAMS_FILE)


def part_files(out: str | os.PathLike, *, quarantine: bool = False) -> list[Path]:
    """The committed part files of a batch output, in order."""
    out, fmt = _check_output(out)
    return [p for _, p in _parts(out / QUARANTINE_DIR if quarantine else out, fmt)]


def _read_part(path: Path, fmt: str, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    if fmt == "jsonl":
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError as e:
                        raise BatchError(f"{path}:{n} is not JSON ({e}); delete that part to redo it") from None
                    yield row if columns is None else {c: row.get(c) for c in columns}
        return
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=list(columns) if columns else None)
    except (OSError, ValueError) as e:
        raise BatchError(f"cannot read {path} ({e}); delete that part to redo it") from None
    for row in table.to_pylist():
        if isinstance(row.get("result"), str):
            row["result"] = json.loads(row["result"])
        yield row


def iter_paths(out: str | os.PathLike) -> Iterator[str]:
    """The path of every row (results and quarantine), part by part."""
    out, fmt = _check_output(out)
    for folder in (out, out / QUARANTINE_DIR):
        for _, p in _parts(folder, fmt):
            if fmt == "parquet":
                import pyarrow.parquet as pq

                try:
                    yield from pq.read_table(p, columns=["path"]).column("path").to_pylist()
                except (OSError, ValueError) as e:
                    raise BatchError(f"cannot read {p} ({e}); delete that part to redo it") from None
            else:
                for row in _read_part(p, fmt, ["path"]):
                    yield row["path"]


def iter_results(out: str | os.PathLike, *, quarantine: bool = False) -> Iterator[dict[str, Any]]:
    """Rows of a batch output as dicts, part by part (``result`` parsed into a dict), without loading
    them all. ``quarantine=True`` gives the quarantined inputs instead."""
    out, fmt = _check_output(out)
    for _, p in _parts(out / QUARANTINE_DIR if quarantine else out, fmt):
        yield from _read_part(p, fmt)


def read_results(out: str | os.PathLike, *, quarantine: bool = False, columns: Iterable[str] | None = None):
    """A batch output's results (or quarantine) as one ``pyarrow.Table`` (``result`` as a JSON string);
    ``.to_pandas()`` gives a DataFrame. Needs pyarrow. Use :func:`iter_results` to stream instead."""
    pa = require_pyarrow("read_results")
    out, fmt = _check_output(out)
    schema = _arrow_schemas()[1 if quarantine else 0]
    files = part_files(out, quarantine=quarantine)
    cols = list(columns) if columns is not None else None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        tables = [_conform(pq.read_table(f), schema) for f in files]
        if cols is not None:
            tables = [t.select(cols) for t in tables]
    else:
        tables = [pa.Table.from_pylist([{c: _cell(r.get(c), c) for c in schema.names} for r in _read_part(f, fmt)],
                                       schema=schema) for f in files]
        if cols is not None:
            tables = [t.select(cols) for t in tables]
    if not tables:
        empty = schema.empty_table()
        return empty.select(cols) if cols is not None else empty
    return pa.concat_tables(tables)
