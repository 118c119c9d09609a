"""``visor data convert`` (COCO / YOLO / VOC), and ``visor data stats`` for detection datasets.

Exit status: 0 on success (problems found in the source are reported on stderr and do not fail
the conversion unless ``--strict``), 1 when the source cannot be read, OUT exists (without
``--force``) or, with ``--strict``, the source has problems.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from visor.cli import segmentation_data
from visor.cli.common import ExitCode, err
from visor.errors import VisorError

_FORMATS = ("coco", "yolo", "voc")  # visor.data.detection.FORMATS, without importing the library at parse time
_IMAGE_MODES = ("copy", "link", "symlink", "none")
DETECTION_DATA_HELP = (
    "a COCO .json file (or a folder holding instances*.json), a YOLO data.yaml (or its folder), "
    "or a Pascal VOC folder with Annotations/"
)


def _warn(kind: str, message: str) -> None:
    print(f"visor: {kind}: {message}", file=sys.stderr)


def is_detection_data(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a COCO, YOLO or VOC dataset (see :func:`visor.data.detection.detect_format`)."""
    from visor.data.detection import detect_format

    return detect_format(path) is not None


def _load(src: str, fmt: str | None, split: str | None, images_dir: str | None):
    from visor.data import formats
    from visor.data.detection import detect_format
    from visor.data.formats import from_coco

    try:
        if images_dir is not None:
            if (fmt or detect_format(src)) != "coco":
                err("--images-dir applies to COCO sources only")
                return None
            return from_coco(src, images_dir, split=split)
        return formats.load(src, fmt, split=split)
    except VisorError as e:
        err(f"cannot load {src}: {type(e).__name__}: {e}")
        return None


# --------------------------------------------------------------------------- convert


def cmd_convert(args: argparse.Namespace) -> int:
    from visor.data import formats
    from visor.data.detection import conversion_losses, detect_format

    if args.to == "masks":
        return segmentation_data.cmd_to_masks(args)
    if args.to == "coco" and args.from_format is None and segmentation_data.is_mask_data(args.src):
        return segmentation_data.cmd_to_coco(args)
    src, out = Path(args.src), Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        err(f"{out} exists and is not empty; use --force to write into it")
        return ExitCode.FAILED
    if out.exists() and src.exists() and os.path.samefile(out, src if src.is_dir() else src.parent):
        err(f"{out} is the source's own folder; write the conversion somewhere else")
        return ExitCode.FAILED
    ds = _load(args.src, args.from_format, args.split, args.images_dir)
    if ds is None:
        return ExitCode.FAILED
    fmt = args.from_format or detect_format(src)
    for p in ds.problems:
        _warn("warning", str(p))
    if ds.problems and args.strict:
        err(f"{len(ds.problems)} problem(s) in {src} (listed above); nothing written because of --strict")
        return ExitCode.FAILED
    for note in conversion_losses(ds, args.to):
        _warn("note", note)
    try:
        written = formats.save(ds, out, args.to, images=args.images or "copy")
    except VisorError as e:
        err(f"cannot write {out}: {type(e).__name__}: {e}")
        return ExitCode.FAILED
    print(f"read {len(ds)} images, {ds.num_boxes} boxes, {len(ds.classes)} classes from {src} ({fmt})")
    print(f"wrote {args.to} to {written}")
    if ds.problems:
        print(f"{len(ds.problems)} problem(s) in the source, listed on stderr")
    return ExitCode.OK


# --------------------------------------------------------------------------- stats


def cmd_stats(args: argparse.Namespace) -> int:
    """``visor data stats`` for a detection dataset (``args.data``, ``args.json``)."""
    from visor.data.detection_stats import detection_stats

    ds = _load(args.data, None, None, None)
    if ds is None:
        return ExitCode.FAILED
    stats = detection_stats(ds)
    print(json.dumps(stats.to_dict(), indent=2) if args.json else stats.format_table())
    return ExitCode.OK


# --------------------------------------------------------------------------- parser


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert`` to the ``visor data`` sub-command parsers."""
    p = subparsers.add_parser(
        "convert",
        help="convert a detection dataset between COCO, YOLO and Pascal VOC, or COCO instances to and from masks",
        description=(
            "Read the detection dataset SRC and write it to the folder OUT in another format. COCO ids, "
            "class names and order, image sizes, polygons (COCO <-> YOLO-seg) and splits are kept; YOLO keeps "
            "what its label files cannot hold (ids, crowd regions, RLE masks) in OUT/visor_ids.json. Malformed "
            "annotations are reported on stderr, one line each, and left out (boxes outside the image are kept); "
            "what the target format cannot hold is noted on stderr. Layouts written: coco: OUT/instances.json "
            "(or instances_<split>.json) + OUT/images/; yolo: OUT/data.yaml + OUT/images/ + OUT/labels/; "
            "voc: OUT/Annotations/ + OUT/JPEGImages/ + OUT/ImageSets/Main/. "
            "Segmentation: --to masks rasterises COCO polygons and RLE into OUT/masks/[<split>/]<stem>.png (index "
            "PNGs with the VOC palette: 0 background, the categories 1..K in id order, crowd regions 255 = "
            "ignored; where objects overlap the smaller one wins) + OUT/classes.txt + OUT/images/ (symbolic links to "
            "the originals unless --images says otherwise). --to coco from a mask folder writes one annotation per "
            "connected region of each class (--encoding rle, exact, or polygons); ignored pixels become crowd "
            "regions of a category named 'ignore', read back as ignored, so COCO -> masks -> COCO -> masks gives "
            "the same masks. OUT is never an input, inside one or around one."
        ),
    )
    p.add_argument("src", metavar="SRC", help=f"{DETECTION_DATA_HELP}; or {segmentation_data.MASK_DATA_HELP}")
    p.add_argument("out", metavar="OUT", help="the folder to write (a .json path for a single COCO file)")
    p.add_argument("--from", dest="from_format", choices=_FORMATS, default=None,
                   help="the format of SRC (default: detected from SRC)")
    p.add_argument("--to", required=True, choices=(*_FORMATS, "masks"),
                   help="the format to write: coco, yolo, voc, or masks (a mask folder, from COCO instances)")
    p.add_argument("--split", choices=("train", "val", "test"), default=None,
                   help="for a COCO .json file: the split its images belong to; for other sources: "
                        "convert only this split")
    p.add_argument("--images-dir", default=None, metavar="DIR",
                   help="COCO only: the folder file_name is relative to (default: images/ beside the JSON if "
                        "present, else the JSON's folder)")
    p.add_argument("--images", choices=_IMAGE_MODES, default=None,
                   help="how image files get into OUT: copy (the default for detection formats), link (hard link, "
                        "copy where that fails), symlink (the default to and from masks), or none (annotations only)")
    p.add_argument("--force", action="store_true", help="write into OUT even if it exists and is not empty")
    p.add_argument("--strict", action="store_true",
                   help="write nothing and exit 1 if SRC has any problem (default: report them and go on)")
    segmentation_data.add_convert_options(p)
    p.set_defaults(func=cmd_convert)
