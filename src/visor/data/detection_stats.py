"""Detection dataset report: boxes per class and split, box sizes, images without boxes, load problems."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visor.data.detection import DetectionDataset, Problem

#: COCO's size thresholds on box area, in square pixels: small < 32², medium < 96², large otherwise.
SMALL_AREA, MEDIUM_AREA = 32.0**2, 96.0**2
#: The percentiles reported for box width and height.
PERCENTILES: tuple[int, ...] = (0, 5, 25, 50, 75, 95, 100)
#: The ``boxes_per_class`` key covering every image; ``"unsplit"`` holds images without a split when others have one.
ALL, UNSPLIT = "all", "unsplit"
_LISTED = 20  # paths listed in the text table before "... and N more"


@dataclass(frozen=True)
class DetectionStats:
    """What :func:`detection_stats` found."""

    num_images: int
    num_boxes: int
    images_per_split: dict[str, int]
    """``"all"``, then each split present (and ``"unsplit"``) -> images."""
    boxes_per_class: dict[str, dict[str, int]]
    """``"all"``, then each split present (and ``"unsplit"``) -> class -> boxes (every class, zeros too)."""
    images_per_class: dict[str, int]
    """Class -> images holding at least one box of it."""
    crowd_boxes: int
    size_counts: dict[str, int]
    """``small`` / ``medium`` / ``large`` boxes by box area (width x height) against COCO's 32² and 96²."""
    width_percentiles: dict[str, float]
    """``p0``, ``p5``, ... ``p100`` of box widths in pixels (empty when there are no boxes)."""
    height_percentiles: dict[str, float]
    images_without_boxes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    """What loading the dataset reported."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "detection",
            "num_images": self.num_images,
            "num_boxes": self.num_boxes,
            "images_per_split": dict(self.images_per_split),
            "boxes_per_class": {k: dict(v) for k, v in self.boxes_per_class.items()},
            "images_per_class": dict(self.images_per_class),
            "crowd_boxes": self.crowd_boxes,
            "box_sizes": dict(self.size_counts),
            "box_width_percentiles": dict(self.width_percentiles),
            "box_height_percentiles": dict(self.height_percentiles),
            "images_without_boxes": list(self.images_without_boxes),
            "problems": [p.to_dict() for p in self.problems],
        }

    def format_table(self) -> str:
        """Boxes per class per split, box sizes, images without boxes and every load problem, as text."""
        columns = [k for k in self.boxes_per_class if k != ALL] + [ALL]
        classes = list(self.boxes_per_class.get(ALL, {}))
        rows = [["class", *(f"boxes:{k}" if k != ALL else "boxes" for k in columns), "images"]]
        rows += [[c, *(str(self.boxes_per_class[k].get(c, 0)) for k in columns), str(self.images_per_class.get(c, 0))]
                 for c in classes]
        rows.append(["total", *(str(sum(self.boxes_per_class[k].values())) for k in columns), str(self.num_images)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join([r[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True))])
                 for r in rows]
        splits = ", ".join(f"{k} {v}" for k, v in self.images_per_split.items() if k != ALL)
        lines.append(f"\nimages: {self.num_images}" + (f" ({splits})" if splits else "")
                     + f"; boxes: {self.num_boxes}" + (f" ({self.crowd_boxes} crowd)" if self.crowd_boxes else ""))
        total = max(self.num_boxes, 1)
        lines.append("box sizes (area, COCO thresholds 32² and 96² px): " + ", ".join(
            f"{k} {v} ({100 * v / total:.1f}%)" for k, v in self.size_counts.items()))
        if self.width_percentiles:
            header = "  ".join(f"{k:>7}" for k in self.width_percentiles)
            lines.append(f"box size percentiles (px)  {header}")
            for name, values in (("width", self.width_percentiles), ("height", self.height_percentiles)):
                lines.append(f"  {name:<24}{'  '.join(f'{v:7.1f}' for v in values.values())}")
        sections = [
            ("images without boxes", self.images_without_boxes, _LISTED),
            ("problems found while loading", [str(p) for p in self.problems], None),
        ]
        for title, items, limit in sections:
            lines.append(f"{title}: {len(items)}")
            shown = items if limit is None else items[:limit]
            lines.extend(f"  {item}" for item in shown)
            if len(items) > len(shown):
                lines.append(f"  ... and {len(items) - len(shown)} more (see --json)")
        lines.append("no problems found" if not self.problems else f"{len(self.problems)} problem(s) found")
        return "\n".join(lines)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in PERCENTILES}


def detection_stats(ds: DetectionDataset) -> DetectionStats:
    """Count boxes per class and split, classify box sizes, find images without boxes (pure)."""
    groups: dict[str, list] = {ALL: list(ds.images)}
    for split in ds.splits:
        groups[split] = [im for im in ds.images if im.split == split]
    if ds.splits and any(im.split is None for im in ds.images):
        groups[UNSPLIT] = [im for im in ds.images if im.split is None]
    boxes_per_class = {}
    for key, images in groups.items():
        counts = Counter(a.class_id for im in images for a in im.annotations)
        boxes_per_class[key] = {c: counts.get(i, 0) for i, c in enumerate(ds.classes)}
    holding = Counter(cid for im in ds.images for cid in {a.class_id for a in im.annotations})
    anns = [a for im in ds.images for a in im.annotations]
    w = np.array([a.width for a in anns], dtype=np.float64)
    h = np.array([a.height for a in anns], dtype=np.float64)
    area = np.clip(w, 0, None) * np.clip(h, 0, None)
    return DetectionStats(
        num_images=len(ds.images),
        num_boxes=len(anns),
        images_per_split={k: len(v) for k, v in groups.items()},
        boxes_per_class=boxes_per_class,
        images_per_class={c: holding.get(i, 0) for i, c in enumerate(ds.classes)},
        crowd_boxes=sum(a.iscrowd for a in anns),
        size_counts={
            "small": int(np.sum(area < SMALL_AREA)),
            "medium": int(np.sum((area >= SMALL_AREA) & (area < MEDIUM_AREA))),
            "large": int(np.sum(area >= MEDIUM_AREA)),
        },
        width_percentiles=_percentiles(w),
        height_percentiles=_percentiles(h),
        images_without_boxes=[str(im.path) for im in ds.images if not im.annotations],
        problems=list(ds.problems),
    )
