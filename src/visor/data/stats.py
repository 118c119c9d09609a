"""Dataset health report: class balance per split, unreadable files, duplicates and leakage."""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from visor.data.dataset import ClassificationDataset
from visor.errors import VisorError
from visor.io import open_image

#: The ``class_counts`` key covering every sample.
ALL = "all"
#: The ``class_counts`` key for samples without a split, when other samples have one.
UNSPLIT = "unsplit"


def imbalance_ratio(counts: Mapping[str, int]) -> float:
    """Largest count / smallest count: 1.0 when balanced, ``inf`` if a class has none, ``nan`` if no classes."""
    values = list(counts.values())
    if not values:
        return math.nan
    low = min(values)
    return math.inf if low <= 0 else max(values) / low


@dataclass(frozen=True)
class DatasetStats:
    """What :func:`dataset_stats` found. Paths are strings, as given by the dataset."""

    class_counts: dict[str, dict[str, int]]
    """``"all"``, then each split present (and ``"unsplit"`` if some samples have none) -> class -> count."""
    imbalance_ratio: float
    """Largest / smallest class count over the whole dataset (``inf`` if a class is empty)."""
    unreadable: list[tuple[str, str]]
    """``(path, "ErrorType: message")`` for each file that cannot be read or decoded."""
    duplicates: list[list[str]]
    """Groups of two or more files with identical bytes; each group and the list sorted."""
    cross_split_duplicates: list[list[str]]
    """The duplicate groups whose files lie in two or more different splits (leakage)."""
    label_conflicts: list[list[str]] = field(default_factory=list)
    """The duplicate groups whose files carry different labels."""
    images_checked: bool = True
    """Whether every image was decoded (otherwise ``unreadable`` lists only files that cannot be read)."""

    @property
    def num_samples(self) -> int:
        return sum(self.class_counts.get(ALL, {}).values())

    @property
    def problems(self) -> int:
        """Unreadable files plus duplicate groups (each leak or label conflict is also a duplicate group)."""
        return len(self.unreadable) + len(self.duplicates)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; a non-finite ``imbalance_ratio`` becomes ``None``."""
        ratio = self.imbalance_ratio if math.isfinite(self.imbalance_ratio) else None
        return {
            "num_samples": self.num_samples,
            "class_counts": {k: dict(v) for k, v in self.class_counts.items()},
            "imbalance_ratio": ratio,
            "images_checked": self.images_checked,
            "unreadable": [{"path": p, "error": e} for p, e in self.unreadable],
            "duplicates": [list(g) for g in self.duplicates],
            "cross_split_duplicates": [list(g) for g in self.cross_split_duplicates],
            "label_conflicts": [list(g) for g in self.label_conflicts],
        }

    def format_table(self) -> str:
        """Per-class counts per split, the imbalance ratio and every problem found, as text."""
        columns = [k for k in self.class_counts if k != ALL] + [ALL]
        classes = list(self.class_counts.get(ALL, {}))
        rows = [["class", *columns]]
        rows += [[c, *(str(self.class_counts[k].get(c, 0)) for k in columns)] for c in classes]
        rows.append(["total", *(str(sum(self.class_counts[k].values())) for k in columns)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(columns) + 1)]
        lines = [
            "  ".join([r[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True))])
            for r in rows
        ]
        ratio = self.imbalance_ratio
        if math.isnan(ratio):
            lines.append("\nimbalance ratio: undefined (no classes)")
        elif math.isinf(ratio):
            empty = [c for c, n in self.class_counts.get(ALL, {}).items() if n == 0]
            lines.append(f"\nimbalance ratio: inf (no samples for {', '.join(empty)})")
        else:
            lines.append(f"\nimbalance ratio: {ratio:.2f} (largest class / smallest class)")
        checked = "unreadable files" if self.images_checked else "unreadable files (images not decoded)"
        sections = [
            (checked, [f"{p}: {e}" for p, e in self.unreadable]),
            ("duplicate groups (identical bytes)", [", ".join(g) for g in self.duplicates]),
            ("duplicates across splits (leakage)", [", ".join(g) for g in self.cross_split_duplicates]),
            ("duplicates with different labels", [", ".join(g) for g in self.label_conflicts]),
        ]
        for title, items in sections:
            lines.append(f"{title}: {len(items)}")
            lines.extend(f"  {item}" for item in items)
        lines.append("no problems found" if self.problems == 0 else f"{self.problems} problem(s) found")
        return "\n".join(lines)


def _count_by_split(ds: ClassificationDataset) -> dict[str, dict[str, int]]:
    out = {ALL: ds.class_counts()}
    splits = ds.splits
    for name in splits:
        out[name] = ds.subset(name).class_counts()
    if splits and any(s.split is None for s in ds.samples):
        counts = Counter(s.label for s in ds.samples if s.split is None)
        out[UNSPLIT] = {c: counts.get(c, 0) for c in ds.classes}
    return out


def dataset_stats(ds: ClassificationDataset, *, check_images: bool = True, progress: bool = False) -> DatasetStats:
    """Count classes per split, hash every file to find duplicates, and (``check_images``)
    decode every image with :func:`visor.io.open_image` to find the unreadable ones.

    Never raises for a bad file: problems are reported in the result. ``progress`` shows
    a tqdm bar on stderr.
    """
    from tqdm import tqdm

    unreadable: list[tuple[str, str]] = []
    by_digest: dict[str, list[int]] = {}
    for index, sample in enumerate(tqdm(ds.samples, unit="img", desc="checking", disable=not progress,
                                        file=sys.stderr)):
        name = os.fspath(sample.path)
        try:
            with open(sample.path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:
            kind = "ImageNotFound" if isinstance(e, FileNotFoundError | IsADirectoryError) else type(e).__name__
            unreadable.append((name, f"{kind}: cannot read {name}: {e.strerror or e}"))
            continue
        by_digest.setdefault(digest, []).append(index)
        if check_images:
            try:
                # A tiny draft size lets JPEGs decode at 1/8 scale: every byte is still read and checked.
                open_image(sample.path, draft_size=(1, 1))
            except VisorError as e:
                unreadable.append((name, f"{type(e).__name__}: {e}"))

    duplicates, leaks, conflicts = [], [], []
    for members in by_digest.values():
        if len(members) < 2:
            continue
        group = sorted(os.fspath(ds.samples[i].path) for i in members)
        duplicates.append(group)
        if len({ds.samples[i].split for i in members} - {None}) > 1:
            leaks.append(group)
        if len({ds.samples[i].label for i in members}) > 1:
            conflicts.append(group)
    counts = _count_by_split(ds)
    return DatasetStats(
        class_counts=counts,
        imbalance_ratio=imbalance_ratio(counts[ALL]),
        unreadable=unreadable,
        duplicates=sorted(duplicates),
        cross_split_duplicates=sorted(leaks),
        label_conflicts=sorted(conflicts),
        images_checked=check_images,
    )
