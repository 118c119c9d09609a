"""Mask dataset report: pixel share and images per class, per split; image sizes; every problem per item."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visor.data.segmentation import IGNORE, Problem, SegmentationDataset, problem_for
from visor.errors import VisorError

#: The per-split keys: ``"all"`` covers every sample; ``"unsplit"`` holds samples without a split when others have one.
ALL, UNSPLIT = "all", "unsplit"
#: The key of ignored pixels in :attr:`SegmentationStats.pixels_per_class`.
IGNORED = "(ignored)"
_LISTED = 10  # image sizes listed in the text table


@dataclass(frozen=True)
class SegmentationStats:
    """What :func:`segmentation_stats` found."""

    classes: tuple[str, ...]
    ignore_index: int
    num_samples: int
    num_loaded: int
    """Samples whose image and mask loaded (the others are in :attr:`problems`)."""
    samples_per_split: dict[str, int]
    """``"all"``, then each split present (and ``"unsplit"``) -> samples listed."""
    pixels_per_class: dict[str, dict[str, int]]
    """``"all"``, then each split -> class -> pixels, every class (zeros too), then ``"(ignored)"``."""
    images_per_class: dict[str, int]
    """Class -> loaded images holding at least one pixel of it."""
    image_sizes: dict[str, int]
    """``"WxH"`` -> loaded images of that size, most common first."""
    problems: list[Problem] = field(default_factory=list)
    """Problems found while listing (missing masks, orphan masks) and loading (unreadable image, mask of another
    size, mask values outside the classes), one per item."""

    def pixel_share(self, key: str = ALL) -> dict[str, float]:
        """Class -> fraction of the labelled (not ignored) pixels of ``key`` (``"all"`` or a split)."""
        counts = {c: n for c, n in self.pixels_per_class[key].items() if c != IGNORED}
        total = sum(counts.values())
        return {c: (n / total if total else 0.0) for c, n in counts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "segmentation",
            "classes": list(self.classes),
            "ignore_index": self.ignore_index,
            "num_samples": self.num_samples,
            "num_loaded": self.num_loaded,
            "samples_per_split": dict(self.samples_per_split),
            "pixels_per_class": {k: dict(v) for k, v in self.pixels_per_class.items()},
            "pixel_share": {c: round(v, 6) for c, v in self.pixel_share().items()},
            "images_per_class": dict(self.images_per_class),
            "image_sizes": dict(self.image_sizes),
            "problems": [p.to_dict() for p in self.problems],
        }

    def format_table(self) -> str:
        """Pixel share per class per split, images per class, image sizes and every problem, as text."""
        columns = [k for k in self.pixels_per_class if k != ALL] + [ALL]
        shares = {k: self.pixel_share(k) for k in columns}
        rows = [["id", "class", *(f"pixels:{k}" if k != ALL else "pixels" for k in columns), "images"]]
        for i, c in enumerate(self.classes):
            rows.append([str(i), c, *(f"{100 * shares[k][c]:.2f}%" for k in columns),
                         str(self.images_per_class.get(c, 0))])
        ignored = [self.pixels_per_class[k].get(IGNORED, 0) for k in columns]
        totals = [sum(self.pixels_per_class[k].values()) for k in columns]
        rows.append([str(self.ignore_index), IGNORED,
                     *(f"{100 * n / t:.2f}%" if t else "0.00%" for n, t in zip(ignored, totals, strict=True)), ""])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join([r[0].rjust(widths[0]), r[1].ljust(widths[1]),
                            *(v.rjust(w) for v, w in zip(r[2:], widths[2:], strict=True))]).rstrip() for r in rows]
        lines.append("(pixels: share of the labelled pixels; (ignored): share of all pixels)")
        splits = ", ".join(f"{k} {v}" for k, v in self.samples_per_split.items() if k != ALL)
        lines.append(f"\nsamples: {self.num_samples}" + (f" ({splits})" if splits else "")
                     + f"; loaded: {self.num_loaded}; classes: {len(self.classes)}; "
                     f"ignore index on disk: {self.ignore_index}")
        sizes = list(self.image_sizes.items())
        lines.append("image sizes: " + ", ".join(f"{s} x{n}" for s, n in sizes[:_LISTED])
                     + (f", ... ({len(sizes) - _LISTED} more sizes)" if len(sizes) > _LISTED else ""))
        lines.append(f"problems: {len(self.problems)}")
        lines.extend(f"  {p}" for p in self.problems)
        lines.append("no problems found" if not self.problems else f"{len(self.problems)} problem(s) found")
        return "\n".join(lines)


def segmentation_stats(ds: SegmentationDataset, *, progress: bool = False) -> SegmentationStats:
    """Load every sample once and count pixels per class and split; never raises for an item (each bad one is a
    problem)."""
    from tqdm.auto import tqdm

    n = len(ds.classes)
    keys = [ALL, *ds.splits]
    if ds.splits and any(s.split is None for s in ds.samples):
        keys.append(UNSPLIT)
    counts = {k: np.zeros(n + 1, dtype=np.int64) for k in keys}  # the last bin: ignored pixels
    holding = np.zeros(n, dtype=np.int64)
    sizes: Counter[str] = Counter()
    problems: list[Problem] = list(ds.problems)
    loaded = 0
    for i in tqdm(range(len(ds)), unit="img", desc="checking", disable=not progress, leave=False):
        sample = ds.samples[i]
        if sample.mask is None:
            continue  # already one of ds.problems
        try:
            image, mask = ds.load(i)
        except VisorError as e:
            problems.append(problem_for(sample, e))
            continue
        loaded += 1
        sizes[f"{image.shape[1]}x{image.shape[0]}"] += 1
        binned = np.where(mask == IGNORE, n, mask)
        per_class = np.bincount(binned.ravel(), minlength=n + 1)[: n + 1]
        holding += per_class[:n] > 0
        counts[ALL] += per_class
        split_key = sample.split if sample.split is not None else (UNSPLIT if UNSPLIT in counts else None)
        if split_key is not None and split_key != ALL:
            counts[split_key] += per_class
    split_counts = Counter(s.split for s in ds.samples)
    samples_per_split = {ALL: len(ds)}
    for k in keys[1:]:
        samples_per_split[k] = split_counts.get(None if k == UNSPLIT else k, 0)
    return SegmentationStats(
        classes=ds.classes,
        ignore_index=ds.ignore_index,
        num_samples=len(ds),
        num_loaded=loaded,
        samples_per_split=samples_per_split,
        pixels_per_class={k: {**{c: int(v[j]) for j, c in enumerate(ds.classes)}, IGNORED: int(v[n])}
                          for k, v in counts.items()},
        images_per_class={c: int(holding[j]) for j, c in enumerate(ds.classes)},
        image_sizes=dict(sizes.most_common()),
        problems=problems,
    )
