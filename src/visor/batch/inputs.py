"""Inputs of a batch run, listed lazily as absolute paths.

An input is a folder (searched recursively for image files, in sorted order), a glob pattern,
an image file, or a manifest: a ``.csv`` (header row with a ``path`` column), ``.jsonl`` (one
object per line with a ``path`` key) or ``.parquet`` file (a ``path`` column). Other manifest
columns are ignored; relative paths resolve against the manifest's folder.

Paths are made absolute but symlinks are kept as they are: each listed path is one input,
and the key a re-run uses to skip finished ones. Folders and globs follow links to folders but
list each real folder once (a link loop ends); a FIFO, device file or broken link inside a folder
is listed, so the run quarantines it with the reason (it is never opened).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from visor.config import parse_json
from visor.errors import ConfigError, InvalidInput
from visor.io import glob_images, walk_images

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".parquet")

Inputs = str | os.PathLike | Iterable[str | os.PathLike]


def iter_inputs(inputs: Inputs) -> Iterator[str]:
    """Absolute paths of the inputs (folders, globs, image files, manifests), in order, lazily.

    A path that does not exist (or a glob that matches nothing) is listed as it is, so the run
    quarantines it as missing.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            yield from walk_images(os.path.abspath(text))
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            yield from iter_manifest(path)
        elif not path.exists() and any(c in text for c in "*?["):
            for m in glob_images(text) or [text]:
                yield os.path.abspath(m)
        else:
            yield os.path.abspath(text)


def iter_manifest(manifest: str | os.PathLike) -> Iterator[str]:
    """The ``path`` column of a CSV, JSON Lines or Parquet manifest, as absolute paths."""
    manifest = Path(manifest)
    base = os.path.dirname(os.path.abspath(manifest))
    suffix = manifest.suffix.lower()
    if suffix == ".parquet":
        rows = _parquet_paths(manifest)
    elif suffix == ".csv":
        rows = _csv_paths(manifest)
    elif suffix == ".jsonl":
        rows = _jsonl_paths(manifest)
    else:
        raise ConfigError(f"manifest {manifest} must end in .csv, .jsonl or .parquet")
    for where, value in rows:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{manifest}:{where}: 'path' must be a non-empty string, got {value!r}")
        yield os.path.normpath(os.path.join(base, value.strip()))


def _open_text(manifest: Path):
    try:
        return open(manifest, encoding="utf-8", newline="")
    except OSError as e:
        raise InvalidInput(f"cannot read manifest {manifest}: {e.strerror or e}") from None


def _csv_paths(manifest: Path) -> Iterator[tuple[int, object]]:
    with _open_text(manifest) as f:
        reader = csv.DictReader(f)
        try:
            if not reader.fieldnames or "path" not in [c.strip() for c in reader.fieldnames]:
                raise ConfigError(f"manifest {manifest} needs a header row with a 'path' column")
            key = next(c for c in reader.fieldnames if c.strip() == "path")
            for row in reader:
                yield reader.line_num, row.get(key)
        except UnicodeDecodeError as e:
            raise ConfigError(f"manifest {manifest} is not UTF-8 text: {e.reason}") from None


def _jsonl_paths(manifest: Path) -> Iterator[tuple[int, object]]:
    with _open_text(manifest) as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                obj = parse_json(line, f"{manifest}:{n}")
                if not isinstance(obj, dict) or "path" not in obj:
                    raise ConfigError(f"{manifest}:{n}: each line must be a JSON object with a 'path' key")
                yield n, obj["path"]
        except UnicodeDecodeError as e:
            raise ConfigError(f"manifest {manifest} is not UTF-8 text: {e.reason}") from None


def _parquet_paths(manifest: Path) -> Iterator[tuple[int, object]]:
    from visor.batch.store import require_pyarrow

    require_pyarrow("a Parquet manifest")
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(manifest)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read Parquet manifest {manifest}: {e}") from None
    if "path" not in f.schema_arrow.names:
        raise ConfigError(f"manifest {manifest} has no 'path' column (columns: {', '.join(f.schema_arrow.names)})")
    row = 0
    for batch in f.iter_batches(columns=["path"], batch_size=8192):
        for value in batch.column(0).to_pylist():
            row += 1
            yield row, value
