"""Classification datasets: labelled image paths from a folder tree or a manifest file.

A dataset is a sorted, immutable list of :class:`Sample` (path, label, optional split,
free-form string metadata) and the tuple of class names; a class id is its index there.

Two sources are understood:

* a folder, ``root/<class>/**/<image>`` or, when every sub-folder of ``root`` is named
  ``train``, ``val`` or ``test``, ``root/<split>/<class>/**/<image>``;
* a manifest, CSV (header row ``path,label[,split][,more...]``) or JSON Lines (one object a
  line with the same keys); extra columns become the sample's ``metadata``.

Nothing here decodes images; :mod:`visor.data.stats` checks them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import suggest
from visor.errors import ConfigError, InvalidInput
from visor.io import IMAGE_EXTENSIONS
from visor.io.files import PUBLIC, atomic_open

#: The split names visor knows, in their canonical order.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

#: Manifest columns with a meaning; every other column is metadata.
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split")
_REQUIRED_COLUMNS = ("path", "label")
_MANIFEST_SUFFIXES = (".csv", ".jsonl")


def check_split_name(split: str, where: str = "") -> str:
    """Return ``split`` if it is one of :data:`SPLIT_NAMES`, else raise ConfigError with a suggestion.

    ``where`` (a file and line, a sample) starts the message when given.
    """
    if split not in SPLIT_NAMES:
        raise ConfigError(
            f"{where + ': ' if where else ''}unknown split {split!r}; expected one of {', '.join(SPLIT_NAMES)}."
            f"{suggest(str(split), SPLIT_NAMES)}"
        )
    return split


def select_split(dataset: Any, split: str | None) -> Any:
    """``dataset`` (classification or detection) restricted to ``split``, or as it is for None.

    Raises ConfigError, with a suggestion, when the data has no such split.
    """
    if split is None:
        return dataset
    if split not in dataset.splits:
        raise ConfigError(f"the data has no split {split!r}.{suggest(split, dataset.splits)} "
                          f"Splits: {', '.join(dataset.splits) or 'none'}")
    return dataset.subset(split)


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``path`` is converted to a :class:`~pathlib.Path`."""

    path: Path
    label: str
    split: str | None = None
    """``"train"``, ``"val"``, ``"test"`` or ``None`` (not assigned)."""
    metadata: dict[str, str] = field(default_factory=dict, hash=False)
    """Extra manifest columns, string to string (not part of the hash)."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):
            try:
                object.__setattr__(self, "path", Path(self.path))
            except TypeError:
                raise InvalidInput(f"sample path must be a str or path, got {type(self.path).__name__}") from None
        if not isinstance(self.label, str) or not self.label:
            raise InvalidInput(f"sample {self.path}: label must be a non-empty string, got {self.label!r}")
        if self.split is not None:
            check_split_name(self.split, f"sample {self.path}")
        if not isinstance(self.metadata, Mapping):
            raise InvalidInput(f"sample {self.path}: metadata must be a mapping")
        metadata = dict(self.metadata)  # a private copy: the caller's dict cannot change a frozen sample
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidInput(f"sample {self.path}: metadata keys and values must be strings ({key!r}: {value!r})")
            if key in MANIFEST_COLUMNS:
                raise InvalidInput(f"sample {self.path}: metadata key {key!r} is reserved")
        object.__setattr__(self, "metadata", metadata)


@dataclass(frozen=True)
class ClassificationDataset:
    """Samples and class names; the class id of a label is its index in ``classes``.

    ``root`` records where the dataset was loaded from (the folder, or the manifest's
    folder); it is provenance only and takes no part in equality.
    """

    samples: tuple[Sample, ...]
    classes: tuple[str, ...]
    root: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", tuple(self.samples))
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.root is not None and not isinstance(self.root, Path):
            object.__setattr__(self, "root", Path(self.root))
        for c in self.classes:
            if not isinstance(c, str) or not c:
                raise InvalidInput(f"class names must be non-empty strings, got {c!r}")
        repeated = [c for c, n in Counter(self.classes).items() if n > 1]
        if repeated:
            raise InvalidInput(f"class names must be unique; repeated: {', '.join(map(repr, repeated))}")
        known = set(self.classes)
        paths: set[Path] = set()
        for s in self.samples:
            if not isinstance(s, Sample):
                raise InvalidInput(f"samples must be Sample objects, got {type(s).__name__}")
            if s.label not in known:
                raise InvalidInput(
                    f"sample {s.path} has label {s.label!r}, which is not among the {len(self.classes)} "
                    f"classes.{suggest(s.label, self.classes)}"
                )
            if s.path in paths:
                raise InvalidInput(f"sample path {s.path} appears more than once")
            paths.add(s.path)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_samples(
        cls, samples: Iterable[Sample], classes: Iterable[str] | None = None, root: str | os.PathLike | None = None
    ) -> ClassificationDataset:
        """A dataset of ``samples`` in the given order; ``classes`` defaults to the sorted unique labels."""
        samples = tuple(samples)
        names = tuple(sorted({s.label for s in samples})) if classes is None else tuple(classes)
        return cls(samples, names, None if root is None else Path(root))

    @classmethod
    def from_folder(cls, root: str | os.PathLike) -> ClassificationDataset:
        """Read ``root/<class>/**/<image>`` or ``root/<split>/<class>/**/<image>``.

        The split layout is used when every sub-folder of ``root`` is ``train``, ``val`` or
        ``test``. Images are files with an extension in :data:`visor.io.IMAGE_EXTENSIONS`
        (any case); hidden files and folders (``.name``) and files directly in ``root`` are
        skipped. Classes are the class folders holding at least one image, sorted. Sample
        paths are absolute (symlinks not resolved), ordered by split (train, val, test),
        class and path.

        Raises InvalidInput if ``root`` is not a folder or holds no images.
        """
        base = Path(os.path.abspath(root))
        if not base.is_dir():
            raise InvalidInput(f"not a folder: {base}")
        top = _subfolders(base)
        if top and all(d.name in SPLIT_NAMES for d in top):
            layout = "root/<split>/<class>/<image>"
            order = {name: i for i, name in enumerate(SPLIT_NAMES)}
            groups = [(d.name, c) for d in sorted(top, key=lambda d: order[d.name]) for c in _subfolders(d)]
        else:
            layout = "root/<class>/<image>"
            groups = [(None, c) for c in top]
        samples = [Sample(p, folder.name, split) for split, folder in groups for p in _images_in(folder)]
        if not samples:
            raise InvalidInput(
                f"no images found in {base} (looked for {layout} with extensions "
                f"{' '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        return cls.from_samples(samples, root=base)

    @classmethod
    def from_manifest(cls, path: str | os.PathLike) -> ClassificationDataset:
        """Read a CSV or JSON Lines manifest (chosen by the ``.csv`` / ``.jsonl`` suffix).

        Columns (keys): ``path`` and ``label`` required, ``split`` optional (``train``,
        ``val``, ``test``, or empty / null for none), any other column becomes metadata
        (in CSV, an empty cell means the sample has no such key). Relative paths resolve
        against the manifest's folder; sample paths come back absolute and in file order.
        Classes are the sorted unique labels.

        Raises ConfigError for a malformed manifest (no header, missing columns, unknown
        split, bad JSON) and InvalidInput if the file is missing or holds no samples.
        """
        path = Path(path)
        base = Path(os.path.abspath(path)).parent
        rows = read_rows(path, _REQUIRED_COLUMNS)
        samples = [_sample_from_row(row, base, f"{path}:{line}") for line, row in rows]
        if not samples:
            raise InvalidInput(f"manifest {path} lists no samples")
        return cls.from_samples(samples, root=base)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClassificationDataset:
        """A folder (:meth:`from_folder`) or a ``.csv`` / ``.jsonl`` manifest (:meth:`from_manifest`)."""
        path = Path(path)
        if path.is_dir():
            return cls.from_folder(path)
        if path.suffix.lower() in _MANIFEST_SUFFIXES:
            return cls.from_manifest(path)
        if not path.exists():
            raise InvalidInput(f"no such folder or manifest: {path}")
        raise InvalidInput(f"{path} is neither a folder nor a .csv / .jsonl manifest")

    # ------------------------------------------------------------------ output

    def to_manifest(self, path: str | os.PathLike) -> Path:
        """Write the samples as a CSV or JSON Lines manifest (by suffix), atomically.

        Paths inside the manifest's folder are written relative to it (with ``/``), others
        absolute. CSV columns are ``path,label,split`` and the sorted metadata keys; JSON
        Lines objects carry ``split`` only when set. :meth:`from_manifest` reads back an
        equal dataset when the classes are the labels present and the paths are absolute
        and normalised (as :meth:`from_folder` and :meth:`from_manifest` make them).
        Parent folders are created. Returns ``path``.
        """
        path = Path(path)
        kind = _manifest_kind(path)
        base = Path(os.path.abspath(path)).parent
        records = [(_manifest_path(s.path, base), s) for s in self.samples]
        buf = io.StringIO()
        if kind == ".csv":
            extra = sorted({k for s in self.samples for k in s.metadata})
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow([*MANIFEST_COLUMNS, *extra])
            for rel, s in records:
                writer.writerow([rel, s.label, s.split or "", *(s.metadata.get(k, "") for k in extra)])
        else:
            for rel, s in records:
                obj: dict[str, Any] = {"path": rel, "label": s.label}
                if s.split is not None:
                    obj["split"] = s.split
                obj.update(sorted(s.metadata.items()))
                buf.write(json.dumps(obj, ensure_ascii=False) + "\n")
        _atomic_write_text(path, buf.getvalue())
        return path

    # ------------------------------------------------------------------ views

    def subset(self, split: str) -> ClassificationDataset:
        """The samples of one split (possibly none), keeping every class so class ids stay stable."""
        check_split_name(split)
        return ClassificationDataset(tuple(s for s in self.samples if s.split == split), self.classes, self.root)

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names that samples use, in the order train, val, test."""
        present = {s.split for s in self.samples}
        return tuple(name for name in SPLIT_NAMES if name in present)

    def targets(self) -> np.ndarray:
        """The class id of every sample, int64."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.fromiter((index[s.label] for s in self.samples), dtype=np.int64, count=len(self.samples))

    def class_counts(self) -> dict[str, int]:
        """Samples per class, every class included (zero counts too), in class order."""
        counts = Counter(s.label for s in self.samples)
        return {c: counts.get(c, 0) for c in self.classes}

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


# --------------------------------------------------------------------------- folders


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name))


def _images_in(folder: Path) -> list[Path]:
    found = (
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(_hidden(part) for part in p.relative_to(folder).parts)
        and p.is_file()
    )
    return sorted(found)


# --------------------------------------------------------------------------- manifests


def _manifest_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _MANIFEST_SUFFIXES:
        raise ConfigError(f"manifest {path} must end in .csv or .jsonl, not {suffix or '(no suffix)'!r}")
    return suffix


def read_rows(path: str | os.PathLike, required: tuple[str, ...] = ()) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a CSV (header row) or JSON Lines file, chosen by its suffix.

    Every row must have the ``required`` columns (keys); an empty CSV cell is left out of its
    row unless its column is required. Raises ConfigError for a malformed file and
    InvalidInput when it is missing or unreadable.
    """
    path = Path(path)
    kind = _manifest_kind(path)
    if not path.is_file():
        raise InvalidInput(f"no such manifest file: {path}")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return list(_read_csv(f, path, required) if kind == ".csv" else _read_jsonl(f, path, required))
    except UnicodeDecodeError as e:
        raise ConfigError(f"manifest {path} is not UTF-8 text: {e.reason}") from None
    except OSError as e:
        raise InvalidInput(f"cannot read manifest {path}: {e.strerror or e}") from None


def _read_csv(f: io.TextIOBase, path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(f)
    try:
        header = next(reader, None)
        if header is None:
            raise ConfigError(f"manifest {path} is empty; it needs a header row: path,label[,split][,...]")
        header = [h.strip() for h in header]
        _check_columns(header, path, required)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise ConfigError(f"{path}:{reader.line_num}: {len(row)} fields, but the header has {len(header)}")
            yield reader.line_num, {k: v for k, v in zip(header, row, strict=True) if v != "" or k in required}
    except csv.Error as e:
        raise ConfigError(f"{path}:{reader.line_num}: malformed CSV: {e}") from None


def _check_columns(header: list[str], path: Path, required: tuple[str, ...]) -> None:
    if any(not h for h in header):
        raise ConfigError(f"manifest {path} has an empty column name in its header row")
    repeated = [h for h, n in Counter(header).items() if n > 1]
    if repeated:
        raise ConfigError(f"manifest {path} repeats column(s) {', '.join(map(repr, repeated))}")
    missing = [c for c in required if c not in header]
    if missing:
        raise ConfigError(
            f"manifest {path} lacks required column(s) {', '.join(map(repr, missing))}; the first row must be "
            f"a header with {','.join(required)} (found: {','.join(header)})"
        )


def _read_jsonl(f: io.TextIOBase, path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_no, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{line_no}: not valid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
        missing = [c for c in required if c not in obj]
        if missing:
            raise ConfigError(f"{path}:{line_no}: missing required key(s) {', '.join(map(repr, missing))}")
        yield line_no, obj


def _sample_from_row(row: Mapping[str, Any], base: Path, where: str) -> Sample:
    for key, value in row.items():
        if not (isinstance(value, str) or (key == "split" and value is None)):
            raise ConfigError(f"{where}: {key!r} must be a string, got {json.dumps(value)}")
    raw_path, label, split = row["path"], row["label"], row.get("split") or None
    if not raw_path:
        raise ConfigError(f"{where}: empty path")
    if not label:
        raise ConfigError(f"{where}: empty label")
    if split is not None:
        check_split_name(split, where)
    metadata = {k: v for k, v in row.items() if k not in MANIFEST_COLUMNS}
    return Sample(Path(os.path.normpath(base / raw_path)), label, split, metadata)


def _manifest_path(path: Path, base: Path) -> str:
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return str(absolute)


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) atomically to ``path``, flushed to disk, mode ``0o644``
    less the umask (:func:`visor.io.files.atomic_open`)."""
    try:
        with atomic_open(path, "wb", permissions=PUBLIC, fsync=True) as f:
            f.write(text.encode("utf-8"))
    except OSError as e:
        raise InvalidInput(f"cannot write {path}: {e.strerror or e}") from None
