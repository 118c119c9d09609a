"""``visor data stats`` for mask datasets, and ``visor data convert`` between COCO instances and mask folders.

Exit status: 0 on success (problems found in the data are reported, as by the other ``data stats``, and do not fail
a conversion unless ``--strict``), 1 when the source cannot be read, OUT is not empty (without ``--force``) or,
with ``--strict``, the source has problems; 2 when OUT is, holds or is inside an input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from visor.cli.common import ExitCode, err
from visor.errors import OutputConflict, VisorError

MASK_DATA_HELP = (
    "a mask dataset: a folder with images/ + masks/ (or labels/, annotations/; optionally train/ val/ test/ inside "
    "both), CamVid's train/ + trainannot/ (val/ + valannot/ ...), or <split>/image/ + <split>/label/; masks are index "
    "PNGs whose pixel values are class ids"
)
ENCODINGS = ("rle", "polygons")  # visor.data.segmentation_convert.ENCODINGS, without importing the library


def is_mask_data(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder in a mask dataset layout (see :meth:`SegmentationDataset.from_folder`)."""
    from visor.data.segmentation import is_mask_data as check

    return check(path)


def _warn(kind: str, message: str) -> None:
    print(f"visor: {kind}: {message}", file=sys.stderr)


def _classes(value: str | None):
    """``--classes``: a classes.txt / classes.json file, or names separated by commas."""
    if value is None:
        return None
    if Path(value).is_file() or value.lower().endswith((".txt", ".json")):
        return value
    return tuple(name.strip() for name in value.split(","))


def _load(args: argparse.Namespace, src: str):
    from visor.data.segmentation import SegmentationDataset

    try:
        return SegmentationDataset.from_folder(src, classes=_classes(getattr(args, "classes", None)),
                                               ignore_index=getattr(args, "ignore_index", None))
    except VisorError as e:
        err(f"cannot load {src}: {type(e).__name__}: {e}")
        return None


def add_mask_options(p: argparse.ArgumentParser) -> None:
    """``--classes`` and ``--ignore-index``, for mask datasets."""
    p.add_argument("--classes", default=None, metavar="NAMES|FILE",
                   help="mask datasets: the class names in id order, separated by commas, or a classes.txt / "
                        "classes.json file (default: classes.txt or classes.json in DATA, else 'background,"
                        "foreground' for 0/255 masks, else class_0 .. class_N)")
    p.add_argument("--ignore-index", type=int, default=None, metavar="N",
                   help="mask datasets: the mask value of pixels to ignore (default 255; CamVid: 11)")


# --------------------------------------------------------------------------- stats


def cmd_stats(args: argparse.Namespace) -> int:
    """``visor data stats`` for a mask dataset (``args.data``, ``args.json``, ``args.classes``, ...)."""
    from visor.cli.common import show_progress
    from visor.data.segmentation_stats import segmentation_stats

    ds = _load(args, args.data)
    if ds is None:
        return ExitCode.FAILED
    stats = segmentation_stats(ds, progress=show_progress(args, len(ds)))
    print(json.dumps(stats.to_dict(), indent=2) if args.json else stats.format_table())
    return ExitCode.OK


# --------------------------------------------------------------------------- convert


def _report(problems, strict: bool, src: str) -> bool:
    for p in problems:
        _warn("warning", str(p))
    if problems and strict:
        err(f"{len(problems)} problem(s) in {src} (listed above); nothing written because of --strict")
        return False
    return True


def cmd_to_masks(args: argparse.Namespace) -> int:
    """``visor data convert COCO OUT --to masks``."""
    from visor.cli.common import show_progress
    from visor.data.segmentation import SegmentationDataset
    from visor.data.segmentation_convert import coco_to_masks

    if args.strict:
        try:
            ds = SegmentationDataset.from_coco(args.src, args.images_dir, split=args.split)
        except VisorError as e:
            err(f"cannot load {args.src}: {type(e).__name__}: {e}")
            return ExitCode.FAILED
        if not _report(ds.problems, True, args.src):
            return ExitCode.FAILED
    try:
        result = coco_to_masks(args.src, args.out, images_dir=args.images_dir, split=args.split,
                               images=args.images or "symlink", force=args.force,
                               progress=show_progress(args) if hasattr(args, "progress") else False)
    except OutputConflict:
        raise
    except VisorError as e:
        err(f"cannot convert {args.src}: {type(e).__name__}: {e}")
        return ExitCode.FAILED
    _report(result.problems, False, args.src)
    print(f"wrote {result.images} masks in {len(result.classes)} classes (0 = background, 255 = ignored) to "
          f"{result.path}")
    if result.problems:
        print(f"{len(result.problems)} problem(s) in the source, listed on stderr")
    return ExitCode.OK


def cmd_to_coco(args: argparse.Namespace) -> int:
    """``visor data convert MASKS OUT --to coco``."""
    from visor.cli.common import show_progress
    from visor.data.segmentation_convert import masks_to_coco

    ds = _load(args, args.src)
    if ds is None:
        return ExitCode.FAILED
    if args.split is not None:
        ds = ds.subset(args.split)
    if args.strict and not _report(ds.problems, True, args.src):
        return ExitCode.FAILED
    try:
        result = masks_to_coco(ds, args.out, encoding=args.encoding, images=args.images or "symlink",
                               force=args.force, progress=show_progress(args) if hasattr(args, "progress") else False)
    except OutputConflict:
        raise
    except VisorError as e:
        err(f"cannot convert {args.src}: {type(e).__name__}: {e}")
        return ExitCode.FAILED
    if not _report(result.problems, False, args.src):
        return ExitCode.FAILED
    print(f"read {len(ds)} images in {len(ds.classes)} classes from {args.src}")
    print(f"wrote {result.annotations} annotations ({args.encoding}) on {result.images} images to {result.path}")
    if result.problems:
        print(f"{len(result.problems)} problem(s) in the source, listed on stderr")
    return ExitCode.OK


def add_convert_options(p: argparse.ArgumentParser) -> None:
    """The options ``visor data convert`` has for masks only."""
    p.add_argument("--encoding", choices=ENCODINGS, default="rle",
                   help="--to coco from masks: write each connected region as COCO RLE (default; exact) or as "
                        "polygons (outer contours; holes are filled)")
    add_mask_options(p)
