"""``visor data``: split a dataset into train / val / test, and report on its health.

Exit status: 0 on success (``stats`` also when it finds problems: it is a report), 1 when
DATA cannot be loaded or --out exists; bad ratios raise ConfigError, which
``visor.cli.main.main`` turns into 2.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from visor.cli import detection_data, segmentation_data
from visor.cli.common import ExitCode, add_output_options, add_progress_options, err, show_progress
from visor.errors import VisorError

_DATA_HELP = (
    "a folder laid out as DATA/<class>/<images> or DATA/<split>/<class>/<images> (split = train, val, test), "
    "or a .csv / .jsonl manifest with the columns path,label[,split][,...]"
)


def _load(data: str):
    from visor.data import ClassificationDataset

    try:
        return ClassificationDataset.load(data)
    except VisorError as e:
        err(f"cannot load {data}: {type(e).__name__}: {e}")
        return None


# --------------------------------------------------------------------------- split


def cmd_split(args: argparse.Namespace) -> int:
    from visor.data import SPLIT_NAMES, stratified_split

    out = Path(args.out)
    if out.exists() and not args.force:
        err(f"{out} exists; use --force to overwrite it")
        return ExitCode.FAILED
    ds = _load(args.data)
    if ds is None:
        return ExitCode.FAILED
    names = SPLIT_NAMES[: len(args.ratios)]
    result = stratified_split(ds, ratios=args.ratios, seed=args.seed, names=names)
    result.to_manifest(out)
    counts = Counter(s.split for s in result.samples)
    width = max(len(n) for n in names)
    print(f"wrote {len(result)} samples in {len(result.classes)} classes to {out}")
    for name in names:
        print(f"  {name.ljust(width)}  {counts.get(name, 0)}")
    return ExitCode.OK


# --------------------------------------------------------------------------- stats


def cmd_stats(args: argparse.Namespace) -> int:
    from visor.data import dataset_stats

    if detection_data.is_detection_data(args.data):
        return detection_data.cmd_stats(args)
    if segmentation_data.is_mask_data(args.data):
        return segmentation_data.cmd_stats(args)
    ds = _load(args.data)
    if ds is None:
        return ExitCode.FAILED
    progress = show_progress(args)
    stats = dataset_stats(ds, check_images=args.check_images, progress=progress)
    print(json.dumps(stats.to_dict(), indent=2) if args.json else stats.format_table())
    return ExitCode.OK


# --------------------------------------------------------------------------- parser


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data split`` and ``data stats`` to the ``visor`` sub-command parsers."""
    data = subparsers.add_parser(
        "data",
        help="split a classification dataset, check a dataset's health, convert detection and mask datasets",
        description="Work with datasets: classification image folders or manifest files, and detection "
                    "datasets in COCO, YOLO or Pascal VOC form, and segmentation mask folders. "
                    "Run 'visor data COMMAND --help' for details.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "split",
        help="write a manifest assigning each image to train / val / test",
        description=(
            "Split DATA class by class (stratified) into train, val and test, and write a manifest "
            "(CSV or JSON Lines, by the suffix of --out) with a split column. The split is seeded and "
            "does not depend on file order; every class keeps at least one training image. "
            "Paths inside the manifest's folder are written relative to it. Prints the count per split."
        ),
    )
    p.add_argument("data", metavar="DATA", help=_DATA_HELP)
    p.add_argument("--out", required=True, metavar="MANIFEST", help="the manifest to write: a .csv or .jsonl file")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.8, 0.1, 0.1], metavar="R",
                   help="fractions for train, val and test, in that order; one to three numbers that sum to 1 "
                        "(default 0.8 0.1 0.1; '0.9 0.1' makes train and val only)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same split (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite MANIFEST if it exists")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser(
        "stats",
        help="count images per class and split, find unreadable files and duplicates",
        description=(
            "Report on DATA: images per class in each split, the class imbalance ratio (largest / smallest "
            "class), files that cannot be decoded, groups of byte-identical files, and duplicates that sit "
            "in different splits (leakage) or carry different labels. For a detection dataset (COCO, YOLO, VOC): "
            "boxes per class and split, box sizes (small / medium / large by COCO's area thresholds, width and "
            "height percentiles), images without boxes and the problems found while loading it. For a mask dataset "
            "(segmentation): the share of labelled pixels and the images holding each class, per split, the ignored "
            "share, image sizes, and each problem per item (an image without a mask, a mask without an image, an "
            "unreadable image, a mask of another size than its image, mask values outside the classes). "
            "The exit status is 0 even when problems are found, and 1 if DATA cannot be loaded."
        ),
    )
    p.add_argument("data", metavar="DATA", help=f"{_DATA_HELP}; or {detection_data.DETECTION_DATA_HELP}; or "
                                                f"{segmentation_data.MASK_DATA_HELP}")
    add_output_options(p, json="document")
    p.add_argument("--no-check-images", dest="check_images", action="store_false",
                   help="do not decode the images (faster; duplicates are still found)")
    segmentation_data.add_mask_options(p)
    add_progress_options(p)
    p.set_defaults(func=cmd_stats)

    detection_data.register(sub)
