"""Conversion between COCO instance annotations and mask folders.

* :func:`coco_to_masks`: a COCO instances JSON -> ``OUT/masks/[<split>/]<stem>.png`` (index PNGs with the VOC
  palette: 0 background, the categories in id order as 1..K, crowd regions 255 = ignored; where objects
  overlap the smaller wins, see :meth:`SegmentationDataset.from_coco`), ``OUT/classes.txt``, and the images in
  ``OUT/images/[<split>/]`` (symbolic links to the originals by default, or copies / hard links; ``none`` writes
  masks only). The output reads back with :meth:`SegmentationDataset.from_folder`.
* :func:`masks_to_coco`: a mask dataset -> COCO instances: one annotation per connected component (8-connected) of
  each class, its mask as COCO RLE (exact) or polygons (outer contours; approximate), its box the component's
  pixel box. A class 0 named ``background`` is not written; the category id of every other class is its mask
  value (class index; index + 1 when class 0 is a class). Ignored pixels become one crowd annotation per image in a
  category named :data:`IGNORE_CATEGORY`, which :meth:`SegmentationDataset.from_coco` reads back as ignored, so a
  round trip gives the same masks.

Outputs never overwrite the inputs (:func:`visor.io.outputs.check_output_folder`); every file is written
atomically (:mod:`visor.io.files`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visor.data.detection import RLE, BoxAnnotation, DetectionDataset, DetectionImage, check_image_mode, place_image
from visor.data.segmentation import IGNORE, IGNORE_CATEGORY, Problem, SegmentationDataset, problem_for
from visor.errors import InvalidInput, OutputConflict, VisorError
from visor.io.files import PUBLIC, atomic_path, atomic_write
from visor.io.outputs import check_output_folder

__all__ = ["ENCODINGS", "IGNORE_CATEGORY", "ConversionResult", "coco_to_masks", "masks_to_coco", "write_mask_png"]

#: How :func:`masks_to_coco` writes a component's mask.
ENCODINGS: tuple[str, ...] = ("rle", "polygons")


@dataclass(frozen=True)
class ConversionResult:
    """What a conversion wrote and what it could not convert."""

    path: Path
    """The output: the mask folder, or the COCO JSON (or folder of JSON files, one per split)."""
    images: int
    """Images written (masks for :func:`coco_to_masks`, COCO images for :func:`masks_to_coco`)."""
    annotations: int = 0
    """COCO annotations written (:func:`masks_to_coco`)."""
    classes: tuple[str, ...] = ()
    problems: list[Problem] = field(default_factory=list)
    """Items left out or only partly converted, with the reason."""


def write_mask_png(mask: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a (H, W) uint8 class-index mask as a palette PNG (VOC colours; 255 keeps its index) atomically."""
    from PIL import Image

    from visor.types.segmentation import palette

    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), "P")
    image.putpalette(palette(256))
    with atomic_path(path, permissions=PUBLIC) as tmp:
        image.save(tmp, "PNG", optimize=False)
    return Path(path)


def _check_out(out: Path, inputs: list[Path], *, force: bool) -> None:
    check_output_folder(out, inputs, what="output folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise InvalidInput(f"{out} exists and is not empty; use --force to write into it")


# --------------------------------------------------------------------------- COCO -> masks


def coco_to_masks(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    images_dir: str | os.PathLike | None = None,
    split: str | None = None,
    images: str = "symlink",
    force: bool = False,
    progress: bool = False,
) -> ConversionResult:
    """Rasterise the COCO instances ``src`` (a JSON file or a folder of them) into the mask folder ``out``.

    ``images``: how the images get into ``OUT/images/`` (``symlink`` to the originals, ``copy``, ``link``: a hard
    link, or ``none``). Raises :class:`~visor.errors.OutputConflict` when ``out`` is, holds or is inside an input,
    InvalidInput when it is not empty (unless ``force``) or two images would share a mask name. Annotations that
    cannot be rasterised (a box only, an RLE of another size) are reported in the result's problems.
    """
    from tqdm.auto import tqdm

    check_image_mode(images)
    src, out = Path(src), Path(out)
    ds = SegmentationDataset.from_coco(src, images_dir, split=split)
    # the dataset's own folder (the JSON's), the images' folders: OUT is none of them, not inside nor around one
    inputs = [src if src.is_dir() else src.parent] + ([Path(images_dir)] if images_dir is not None else [])
    inputs += sorted({s.image.parent for s in ds.samples})
    _check_out(out, inputs, force=force)
    with_split = {s.split is not None for s in ds.samples}
    if len(with_split) > 1:
        raise InvalidInput(f"{src}: some images have a split and others not; convert one split at a time (--split)")
    names: dict[str, Path] = {}
    for s in ds.samples:
        key = f"{s.split}/{s.stem}" if s.split else s.stem
        if key in names:
            raise InvalidInput(f"images {names[key]} and {s.image} would share the mask {s.stem}.png")
        names[key] = s.image
    problems = list(ds.problems)
    written = 0
    for i in tqdm(range(len(ds)), unit="img", desc="rasterising", disable=not progress, leave=False):
        s = ds.samples[i]
        sub = Path(s.split) if s.split else Path()
        try:
            mask = ds.read_mask(i)
        except VisorError as e:
            problems.append(problem_for(s, e))
            continue
        write_mask_png(mask, out / "masks" / sub / f"{s.stem}.png")
        place_image(s.image, out / "images" / sub / s.image.name, images)
        written += 1
    atomic_write(out / "classes.txt", "".join(f"{c}\n" for c in ds.classes))
    return ConversionResult(out, written, 0, ds.classes, problems)


# --------------------------------------------------------------------------- masks -> COCO


_Region = tuple[int, int, tuple[int, int, int, int], int]  # label, class value, pixel box (x, y, w, h), area


def _instances(mask: np.ndarray, first: int) -> tuple[np.ndarray, list[_Region]]:
    """One label image numbering every 8-connected component of each class value >= ``first`` (the ignored pixels,
    255, as one region), and per region: (label, class value, pixel box x, y, w, h, area)."""
    import cv2

    labels = np.zeros(mask.shape, np.int32)
    regions = []
    for value in np.unique(mask).tolist():
        if value < first:
            continue
        binary = (mask == value).astype(np.uint8)
        if value == IGNORE:
            ys, xs = np.nonzero(binary)
            box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
            regions.append((len(regions) + 1, value, box, int(binary.sum())))
            labels[binary > 0] = len(regions)
            continue
        count, comp, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=cv2.CV_32S)
        base = len(regions)
        for k in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[k])
            regions.append((base + k, value, (x, y, w, h), area))
        labels[comp > 0] = comp[comp > 0] + base
    return labels, regions


def _polygons(labels: np.ndarray, label: int, box: tuple[int, int, int, int]) -> list[tuple[float, ...]]:
    """Outer contours of one region as COCO polygons through its border pixels' centres."""
    import cv2

    x, y, w, h = box
    crop = (labels[y:y + h, x:x + w] == label).astype(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
    polygons = []
    for c in contours:
        points = c.reshape(-1, 2).astype(np.float64) + 0.5  # pixel centres
        if len(points) < 3:  # a line or a point: its pixel box instead
            x0, y0 = points.min(axis=0) - 0.5
            x1, y1 = points.max(axis=0) + 0.5
            points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        polygons.append(tuple(float(v) for v in points.ravel()))
    return polygons


def masks_to_coco(
    ds: SegmentationDataset,
    out: str | os.PathLike,
    *,
    encoding: str = "rle",
    images: str = "symlink",
    force: bool = False,
    progress: bool = False,
) -> ConversionResult:
    """Write the mask dataset ``ds`` as COCO instances (see the module's conventions).

    ``out``: a ``.json`` file (images placed in ``images/`` beside it) or a folder (``instances.json``, or
    ``instances_<split>.json`` per split, and ``images/``). ``encoding``: ``rle`` (exact) or ``polygons`` (outer
    contours: holes are filled, so only approximately the mask). Samples that cannot be loaded are left out and
    reported in the result's problems.
    """
    from tqdm.auto import tqdm

    from visor.data.formats import to_coco
    from visor.ops.rle import encode_labels

    if encoding not in ENCODINGS:
        raise InvalidInput(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    check_image_mode(images)
    out = Path(out)
    folder = out.parent if out.suffix.lower() == ".json" else out
    inputs = ([ds.root] if ds.root is not None else []) + sorted({s.image.parent for s in ds.samples})
    check_output_folder(folder / "images", inputs, what="output folder")
    if out.suffix.lower() != ".json":
        check_output_folder(folder, inputs, what="output folder")
    elif any(out.resolve() == Path(p).resolve() for p in inputs):
        raise OutputConflict(f"{out} is an input; choose another file")
    if out.suffix.lower() == ".json":
        if out.exists() and not force:
            raise InvalidInput(f"{out} exists; use --force to replace it")
    elif out.exists() and any(out.iterdir()) and not force:
        raise InvalidInput(f"{out} exists and is not empty; use --force to write into it")
    skip_background = ds.classes[0].lower() == "background"
    first = 1 if skip_background else 0
    offset = 0 if skip_background else 1
    classes = list(ds.classes[first:])
    category_ids = [c + offset for c in range(first, len(ds.classes))]
    ignore_class = len(classes)
    problems = list(ds.problems)
    det_images: list[DetectionImage] = []
    any_ignored = False
    for i in tqdm(range(len(ds)), unit="img", desc="converting", disable=not progress, leave=False):
        s = ds.samples[i]
        if s.mask is None:
            continue  # one of ds.problems already
        try:
            _, mask = ds.load(i)
        except VisorError as e:
            problems.append(problem_for(s, e))
            continue
        h, w = mask.shape
        labels, regions = _instances(mask, first)
        rles = encode_labels(labels) if encoding == "rle" or any(v == IGNORE for _, v, _, _ in regions) else {}
        anns: list[BoxAnnotation] = []
        for label, value, (x, y, bw, bh), area in regions:
            box = (float(x), float(y), float(x + bw), float(y + bh))
            if value == IGNORE:
                any_ignored = True
                anns.append(BoxAnnotation(box, ignore_class, iscrowd=True, area=float(area),
                                          rle=RLE.from_dict(rles[label])))
            elif encoding == "rle":
                anns.append(BoxAnnotation(box, value - first, area=float(area), rle=RLE.from_dict(rles[label])))
            else:
                anns.append(BoxAnnotation(box, value - first, area=float(area),
                                          segmentation=tuple(_polygons(labels, label, (x, y, bw, bh)))))
        det_images.append(DetectionImage(s.image, w, h, tuple(anns), split=s.split))
    if any_ignored:
        if IGNORE_CATEGORY in classes:
            raise InvalidInput(f"a class is named {IGNORE_CATEGORY!r}, the category that holds ignored pixels")
        classes.append(IGNORE_CATEGORY)
        category_ids.append(max(category_ids, default=0) + 1)
    det = DetectionDataset(tuple(det_images), tuple(classes), tuple(category_ids), ds.root)
    path = to_coco(det, out, images=images)
    return ConversionResult(path, len(det_images), det.num_boxes, tuple(classes), problems)
