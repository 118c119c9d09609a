"""Object detection datasets: images with boxes (and polygons) in one in-memory form.

COCO JSON, YOLO txt and Pascal VOC XML are all read into, and written from, a
:class:`DetectionDataset` by :mod:`visor.data.formats` (``formats.load(path)``,
``formats.save(ds, out, format)``; see each format's module for its conventions). This module is
the data model alone: the formats build on it, it knows none of them.

* boxes are ``xyxy`` in absolute pixels, continuous coordinates: ``(0, 0)`` is the top-left
  corner of the top-left pixel and ``(width, height)`` the bottom-right corner of the image;
* a box's ``class_id`` indexes :attr:`DetectionDataset.classes`; the original COCO category id
  of each class is kept in :attr:`DetectionDataset.category_ids`;
* polygons are flat ``(x1, y1, x2, y2, ...)`` tuples in the same pixels; a COCO RLE mask
  (crowd regions) is kept verbatim as :class:`RLE`.

Loading never stops at a bad annotation: malformed items are left out (boxes outside the image
are kept as they are) and each one is reported as a :class:`Problem` in
:attr:`DetectionDataset.problems`. A file that cannot be used at all (a COCO JSON that does not
parse, a data.yaml without ``names``) raises :class:`~visor.errors.InvalidInput` or
:class:`~visor.errors.ConfigError`.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import suggest
from visor.data.dataset import SPLIT_NAMES, check_split_name
from visor.errors import CorruptImage, ImageNotFound, InvalidInput
from visor.types import Detections

#: The detection formats visor reads and writes.
FORMATS: tuple[str, ...] = ("coco", "yolo", "voc")

#: How :func:`visor.data.formats.save` puts image files into the output: copy them, hard-link them
#: (copy where linking fails), symlink them, or write the annotations only.
IMAGE_MODES: tuple[str, ...] = ("copy", "link", "symlink", "none")

#: Pixel coordinates read from normalised (YOLO) values are rounded to this many decimals, so that
#: a box edge at 0 or at the image border comes back exactly (1e-9 pixel is far below any labelling).
COORD_DECIMALS = 9


def check_format(name: str) -> str:
    """Return ``name`` if it is one of :data:`FORMATS`, else raise InvalidInput with a suggestion."""
    if name not in FORMATS:
        raise InvalidInput(
            f"unknown detection format {name!r}; expected one of {', '.join(FORMATS)}.{suggest(name, FORMATS)}"
        )
    return name


# --------------------------------------------------------------------------- value types


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _finite_floats(values: Iterable[Any], what: str) -> tuple[float, ...]:
    out = []
    for v in values:
        if not _is_number(v) or not math.isfinite(v):
            raise InvalidInput(f"{what} must be finite numbers, got {v!r}")
        out.append(float(v))
    return tuple(out)


@dataclass(frozen=True)
class RLE:
    """A COCO run-length-encoded mask, kept verbatim (``counts`` a string when compressed)."""

    size: tuple[int, int]
    """``(height, width)``, as COCO writes it."""
    counts: str | tuple[int, ...]

    def __post_init__(self) -> None:
        size = tuple(self.size) if isinstance(self.size, (list, tuple)) else ()
        if len(size) != 2 or not all(_is_int(v) and v >= 0 for v in size):
            raise InvalidInput(f"RLE size must be [height, width], got {self.size!r}")
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        if isinstance(self.counts, (list, tuple)):
            if not all(_is_int(v) and v >= 0 for v in self.counts):
                raise InvalidInput("RLE counts must be a string or a list of non-negative integers")
            object.__setattr__(self, "counts", tuple(int(v) for v in self.counts))
        elif not isinstance(self.counts, str):
            raise InvalidInput(f"RLE counts must be a string or a list of integers, got {type(self.counts).__name__}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RLE:
        if not isinstance(d, Mapping) or "size" not in d or "counts" not in d:
            raise InvalidInput("an RLE mask needs 'size' and 'counts'")
        return cls(d["size"], d["counts"])

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "counts": self.counts if isinstance(self.counts, str) else list(self.counts)}


@dataclass(frozen=True)
class BoxAnnotation:
    """One labelled box, with its polygons or RLE mask when the source has them."""

    xyxy: tuple[float, float, float, float]
    """Absolute pixels: x1, y1, x2, y2."""
    class_id: int
    """Index into :attr:`DetectionDataset.classes`."""
    id: int | None = None
    """The original annotation id (COCO), or ``None``."""
    iscrowd: bool = False
    segmentation: tuple[tuple[float, ...], ...] = ()
    """Polygons, each a flat ``(x1, y1, x2, y2, ...)`` in pixels (at least 3 points)."""
    area: float | None = None
    """COCO ``area`` (the segment's area) when given, else ``None``."""
    attributes: dict[str, str] = field(default_factory=dict, hash=False)
    """Free-form string attributes, e.g. VOC ``difficult`` / ``truncated`` / ``pose``."""
    rle: RLE | None = None
    """A COCO RLE mask (crowd regions), kept verbatim."""

    def __post_init__(self) -> None:
        xyxy = self.xyxy
        if not isinstance(xyxy, (list, tuple, np.ndarray)) or len(xyxy) != 4:
            raise InvalidInput(f"a box must be 4 numbers x1, y1, x2, y2, got {xyxy!r}")
        object.__setattr__(self, "xyxy", _finite_floats(xyxy, "box coordinates"))
        if not _is_int(self.class_id) or self.class_id < 0:
            raise InvalidInput(f"class_id must be a non-negative integer, got {self.class_id!r}")
        object.__setattr__(self, "class_id", int(self.class_id))
        if self.id is not None:
            if not _is_int(self.id):
                raise InvalidInput(f"annotation id must be an integer or None, got {self.id!r}")
            object.__setattr__(self, "id", int(self.id))
        object.__setattr__(self, "iscrowd", bool(self.iscrowd))
        polygons = []
        for poly in self.segmentation:
            flat = _finite_floats(poly, "polygon coordinates")
            if len(flat) < 6 or len(flat) % 2:
                raise InvalidInput(f"a polygon needs an even number of at least 6 coordinates, got {len(flat)}")
            polygons.append(flat)
        object.__setattr__(self, "segmentation", tuple(polygons))
        if self.area is not None:
            if not _is_number(self.area) or not math.isfinite(self.area) or self.area < 0:
                raise InvalidInput(f"area must be a non-negative number or None, got {self.area!r}")
            object.__setattr__(self, "area", float(self.area))
        if not isinstance(self.attributes, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.attributes.items()
        ):
            raise InvalidInput(f"annotation attributes must map strings to strings, got {self.attributes!r}")
        object.__setattr__(self, "attributes", dict(self.attributes))
        if self.rle is not None and not isinstance(self.rle, RLE):
            object.__setattr__(self, "rle", RLE.from_dict(self.rle))

    @property
    def width(self) -> float:
        return self.xyxy[2] - self.xyxy[0]

    @property
    def height(self) -> float:
        return self.xyxy[3] - self.xyxy[1]

    @property
    def box_area(self) -> float:
        """Width x height of the box (0 for an empty box)."""
        return max(self.width, 0.0) * max(self.height, 0.0)


@dataclass(frozen=True)
class DetectionImage:
    """One image, its size in pixels and its annotations."""

    path: Path
    width: int
    height: int
    annotations: tuple[BoxAnnotation, ...] = ()
    id: int | None = None
    """The original image id (COCO), or ``None``."""
    split: str | None = None
    """``"train"``, ``"val"``, ``"test"`` or ``None``."""
    file_name: str | None = None
    """The image's path relative to its format's image folder (COCO ``file_name``, ``/``-separated);
    ``None`` means ``path.name``. Writers place the image at this name."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):
            try:
                object.__setattr__(self, "path", Path(self.path))
            except TypeError:
                raise InvalidInput(f"image path must be a str or path, got {type(self.path).__name__}") from None
        for name in ("width", "height"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise InvalidInput(f"image {self.path}: {name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        annotations = tuple(self.annotations)
        for a in annotations:
            if not isinstance(a, BoxAnnotation):
                raise InvalidInput(f"image {self.path}: annotations must be BoxAnnotation objects")
        object.__setattr__(self, "annotations", annotations)
        if self.id is not None:
            if not _is_int(self.id):
                raise InvalidInput(f"image {self.path}: id must be an integer or None, got {self.id!r}")
            object.__setattr__(self, "id", int(self.id))
        if self.split is not None:
            check_split_name(self.split, f"image {self.path}")
        if self.file_name is not None and (not isinstance(self.file_name, str) or not self.file_name):
            raise InvalidInput(f"image {self.path}: file_name must be a non-empty string or None")

    @property
    def name(self) -> str:
        """:attr:`file_name`, or the file's own name."""
        return self.file_name or self.path.name


@dataclass(frozen=True)
class Problem:
    """Something wrong with one item of a dataset, found while loading it."""

    item: str
    """What is wrong: an image path, ``file:line``, ``file annotation id N``..."""
    reason: str

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"item": self.item, "reason": self.reason}


@dataclass(frozen=True)
class DetectionDataset:
    """Images with boxes, and the class names (a class id is its index in ``classes``).

    ``root`` (the folder the dataset was loaded from: the COCO JSON's folder, the YOLO dataset
    root, the VOC folder) and ``problems`` (what was wrong in it) are provenance and take no part
    in equality.
    """

    images: tuple[DetectionImage, ...]
    classes: tuple[str, ...]
    category_ids: tuple[int, ...] | None = None
    """The original COCO category id of each class, kept for writing COCO again."""
    root: Path | None = field(default=None, compare=False)
    problems: tuple[Problem, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "problems", tuple(self.problems))
        if self.root is not None and not isinstance(self.root, Path):
            object.__setattr__(self, "root", Path(self.root))
        for c in self.classes:
            if not isinstance(c, str) or not c:
                raise InvalidInput(f"class names must be non-empty strings, got {c!r}")
        repeated = [c for c, n in Counter(self.classes).items() if n > 1]
        if repeated:
            raise InvalidInput(f"class names must be unique; repeated: {', '.join(map(repr, repeated))}")
        if self.category_ids is not None:
            ids = tuple(self.category_ids)
            if len(ids) != len(self.classes) or not all(_is_int(i) for i in ids):
                raise InvalidInput(f"category_ids must be {len(self.classes)} integers, one per class, got {ids!r}")
            if len(set(ids)) != len(ids):
                raise InvalidInput(f"category_ids must be unique, got {ids!r}")
            object.__setattr__(self, "category_ids", tuple(int(i) for i in ids))
        paths: set[Path] = set()
        image_ids: set[int] = set()
        ann_ids: set[int] = set()
        for im in self.images:
            if not isinstance(im, DetectionImage):
                raise InvalidInput(f"images must be DetectionImage objects, got {type(im).__name__}")
            if im.path in paths:
                raise InvalidInput(f"image path {im.path} appears more than once")
            paths.add(im.path)
            if im.id is not None:
                if im.id in image_ids:
                    raise InvalidInput(f"image id {im.id} appears more than once")
                image_ids.add(im.id)
            for a in im.annotations:
                if a.class_id >= len(self.classes):
                    raise InvalidInput(
                        f"image {im.path}: class_id {a.class_id} is out of range for {len(self.classes)} classes"
                    )
                if a.id is not None:
                    if a.id in ann_ids:
                        raise InvalidInput(f"annotation id {a.id} appears more than once")
                    ann_ids.add(a.id)

    # ------------------------------------------------------------------ views

    def subset(self, split: str) -> DetectionDataset:
        """The images of one split (possibly none), keeping every class so class ids stay stable."""
        check_split_name(split)
        return replace(self, images=tuple(im for im in self.images if im.split == split))

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names that images use, in the order train, val, test."""
        present = {im.split for im in self.images}
        return tuple(name for name in SPLIT_NAMES if name in present)

    @property
    def num_boxes(self) -> int:
        return sum(len(im.annotations) for im in self.images)

    def class_counts(self) -> dict[str, int]:
        """Boxes per class, every class included (zero counts too), in class order."""
        counts = Counter(a.class_id for im in self.images for a in im.annotations)
        return {c: counts.get(i, 0) for i, c in enumerate(self.classes)}

    def detections(self, index: int) -> Detections:
        """The ground truth of image ``index`` as :class:`~visor.types.Detections`.

        ``confidence`` is 1; ``data`` holds ``iscrowd`` (bool), ``area`` (float64: the COCO
        area when given, else the box area) and ``id`` (int64, -1 where there is none).
        """
        anns = self.images[index].annotations
        if not anns:
            empty = Detections.empty()
            return Detections(empty.xyxy, empty.confidence, empty.class_id, {
                "iscrowd": np.zeros(0, bool), "area": np.zeros(0, np.float64), "id": np.zeros(0, np.int64),
            })
        return Detections(
            np.array([a.xyxy for a in anns], dtype=np.float32),
            np.ones(len(anns), np.float32),
            np.array([a.class_id for a in anns], dtype=np.int64),
            {
                "iscrowd": np.array([a.iscrowd for a in anns], dtype=bool),
                "area": np.array([a.box_area if a.area is None else a.area for a in anns], dtype=np.float64),
                "id": np.array([-1 if a.id is None else a.id for a in anns], dtype=np.int64),
            },
        )

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[DetectionImage]:
        return iter(self.images)

    def __getitem__(self, index: int) -> DetectionImage:
        return self.images[index]


# --------------------------------------------------------------------------- format detection


def detect_format(path: str | os.PathLike) -> str | None:
    """``"coco"``, ``"yolo"`` or ``"voc"`` for what ``path`` looks like, else ``None``.

    A ``.json`` file is COCO and a ``.yaml`` / ``.yml`` file YOLO; a folder is YOLO if it holds
    ``data.yaml`` (or ``data.yml``), VOC if it holds ``Annotations/``, COCO if it holds
    ``instances*.json`` (directly or in ``annotations/``).
    """
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        return "coco" if suffix == ".json" else "yolo" if suffix in (".yaml", ".yml") else None
    if not path.is_dir():
        return None
    if (path / "data.yaml").is_file() or (path / "data.yml").is_file():
        return "yolo"
    if (path / "Annotations").is_dir():
        return "voc"
    if any(path.glob("instances*.json")) or any(path.glob("annotations/instances*.json")):
        return "coco"
    return None


# --------------------------------------------------------------------------- helpers for the formats


def box_check(xyxy: tuple[float, float, float, float], width: int, height: int) -> tuple[bool, str | None]:
    """``(keep, reason)``: a box with non-positive size is dropped; one outside the image is kept, reported."""
    x1, y1, x2, y2 = xyxy
    if not x2 > x1 or not y2 > y1:
        return False, (
            f"box {fmt_box(xyxy)} has non-positive size ({num_text(x2 - x1)} x {num_text(y2 - y1)} pixels); left out"
        )
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return True, f"box {fmt_box(xyxy)} extends outside the {width}x{height} image; kept as it is"
    return True, None


def fmt_box(xyxy: Iterable[float]) -> str:
    """``[x1, y1, x2, y2]`` (xyxy pixels) for messages."""
    return "[" + ", ".join(f"{v:.6g}" for v in xyxy) + "] (xyxy)"


def num_text(value: float) -> str:
    """A number as text that reads back to the same float: an integer without ``.0``, else ``repr``."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def polygon_area(flat: tuple[float, ...]) -> float:
    """The area of a simple polygon given as flat ``(x1, y1, x2, y2, ...)`` (shoelace formula)."""
    xs, ys = np.asarray(flat[0::2], np.float64), np.asarray(flat[1::2], np.float64)
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2.0)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header (the pixels are not decoded; EXIF orientation is ignored)."""
    from PIL import Image

    if not path.is_file():
        raise ImageNotFound(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImage(f"cannot read the size of {path}: {e}") from None


def check_image_mode(images: str) -> str:
    if images not in IMAGE_MODES:
        raise InvalidInput(f"images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
    return images


def place_image(src: Path, dst: Path, mode: str) -> None:
    """Put the image ``src`` at ``dst`` by ``mode`` (see :data:`IMAGE_MODES`).

    Nothing happens for ``"none"``, when ``src`` is missing (loading reported it), or when
    ``dst`` already is ``src``.
    """
    if mode == "none" or not src.is_file():
        return
    with contextlib.suppress(OSError):
        if dst.exists() and os.path.samefile(src, dst):
            return
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if mode == "symlink":
            dst.symlink_to(os.path.abspath(src))
            return
        if mode == "link":
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        shutil.copy2(src, dst)
    except OSError as e:
        raise InvalidInput(f"cannot write {dst}: {e.strerror or e}") from None


def relative_name(path: Path, base: Path) -> str | None:
    """``path`` relative to ``base`` with ``/``, or ``None`` if it is not inside."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        return None


def unique_names(ds: DetectionDataset, what: str) -> None:
    """Raise InvalidInput if two images would be written to the same name."""
    seen: dict[str, Path] = {}
    for im in ds.images:
        key = im.name if im.split is None else f"{im.split}/{im.name}"
        if key in seen:
            raise InvalidInput(f"cannot write {what}: images {seen[key]} and {im.path} would both be named {im.name!r}")
        seen[key] = im.path


def conversion_losses(ds: DetectionDataset, format: str) -> tuple[str, ...]:  # noqa: A002
    """What writing ``ds`` in ``format`` cannot keep, one sentence per kind of loss (empty when lossless)."""
    check_format(format)
    anns = [a for im in ds.images for a in im.annotations]
    notes: list[str] = []
    if format == "voc":
        if any(a.segmentation for a in anns):
            n = sum(bool(a.segmentation) for a in anns)
            notes.append(f"VOC has no polygons: {n} annotation(s) keep their box only")
        if any(a.rle is not None for a in anns):
            notes.append(f"VOC has no masks: {sum(a.rle is not None for a in anns)} RLE mask(s) are not written")
        if any(a.id is not None for a in anns) or any(im.id is not None for im in ds.images):
            notes.append("VOC has no image or annotation ids: they are not written")
        if any(a.area is not None for a in anns):
            notes.append("VOC has no area field: COCO areas are not written")
    if format == "yolo":
        crowd = sum(a.iscrowd for a in anns)
        if crowd:
            notes.append(
                f"YOLO has no crowd regions: {crowd} crowd annotation(s) are kept only in visor_ids.json, "
                "not in the label files (so YOLO trainers ignore them)"
            )
        masks = sum(a.rle is not None and not a.iscrowd for a in anns)
        if masks:
            notes.append(f"YOLO has no RLE masks: {masks} mask(s) are kept only in visor_ids.json; the label files "
                         "carry their boxes")
        parts = sum(len(a.segmentation) > 1 and not a.iscrowd for a in anns)
        if parts:
            notes.append(f"YOLO-seg has one polygon per object: {parts} multi-part segmentation(s) are written as one "
                         "concatenated polygon (the parts are recorded in visor_ids.json)")
    return tuple(notes)
