"""Per-image metadata from a side file, for subgroup reports of data that carries none
(class folders, COCO / YOLO / VOC detection sets).

The file is a CSV with a header row or JSON Lines; one row per image, with a ``path`` column
(absolute, or relative to the file's folder) or a ``file_name`` column (an image's name
inside the dataset, as COCO's ``file_name``, or its bare file name). Every other column is
metadata, kept as strings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from visor.data.dataset import read_rows
from visor.errors import ConfigError

KEY_COLUMNS = ("path", "file_name")


def read_metadata(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV or JSON Lines metadata file, values as strings."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"metadata file {p} does not exist")
    rows = [row for _, row in read_rows(p)]
    for row in rows:
        if not any(k in row for k in KEY_COLUMNS):
            raise ConfigError(f"metadata file {p} needs a 'path' or 'file_name' column; a row has: {', '.join(row)}")
    return [{str(k): "" if v is None else str(v) for k, v in row.items()} for row in rows]


def attach_metadata(images: Sequence[tuple[str | os.PathLike, str | None]], path: str | os.PathLike
                    ) -> list[dict[str, str]]:
    """Metadata for each image, given as (path, name in the dataset or None): matched by the
    resolved path, then the dataset name, then the bare file name (when that is unambiguous).
    Images without a row get ``{}`` (their group is "(missing)"); rows of other images (another
    split) are ignored, but a file that matches no image at all raises ConfigError."""
    rows = read_metadata(path)
    base = Path(path).resolve().parent
    by_path = {Path(p).resolve(): i for i, (p, _) in enumerate(images)}
    by_name = {name: i for i, (_, name) in enumerate(images) if name}
    bare: dict[str, list[int]] = {}
    for i, (p, _) in enumerate(images):
        bare.setdefault(Path(p).name, []).append(i)
    out: list[dict[str, str]] = [{} for _ in images]
    unmatched = []
    for row in rows:
        key = row.get("path") or row.get("file_name") or ""
        index = by_path.get((base / key).resolve()) if key else None
        if index is None:
            index = by_name.get(key.replace("\\", "/"))
        if index is None and len(bare.get(Path(key).name, [])) == 1:
            index = bare[Path(key).name][0]
        if index is None:
            unmatched.append(key)
            continue
        out[index] = {k: v for k, v in row.items() if k not in KEY_COLUMNS}
    if rows and len(unmatched) == len(rows):
        raise ConfigError(f"no row of {path} matches an evaluated image, e.g. {unmatched[0]!r} "
                          f"(match by path relative to {base}, by the dataset's file name, or by bare file name)")
    return out


__all__ = ["attach_metadata", "read_metadata"]
