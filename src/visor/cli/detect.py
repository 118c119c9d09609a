"""``visor detect``: find objects in images, print boxes (text or JSON Lines), draw annotated copies.

Exit status: 0 on success, 1 when any input failed (each reported on stderr, the rest go on);
an unknown model or bad configuration raises and ``visor.cli.main.main`` turns it into 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import TextIO

from visor.cli.common import err, fraction, positive_int
from visor.errors import ConfigError, VisorError
from visor.io import ImageLimits, expand_paths

EXIT_OK, EXIT_FAILED_INPUTS = 0, 1








def _default_model() -> str:
    from visor import models

    for name in models.list():
        if models.get_card(name).task == "detection":
            return name
    raise ConfigError("no built-in detection model; pass --model (a model folder, card.json or .onnx file)")


def _read_labels(path: str) -> list[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read labels file {path}: {e.strerror or e}") from None
    return [line.strip() for line in lines if line.strip()]


def _format_text(d: dict, out: TextIO) -> None:
    for box in d["detections"]["detections"]:
        x1, y1, x2, y2 = box["xyxy"]
        name = box.get("class_name", box["class_id"])
        print(f"{d['image']}  {name}  {box['confidence']:.4f}  {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}", file=out)


def _save_annotated(detector, path: Path, detections, target: Path) -> None:
    from visor.features import annotate
    from visor.io.outputs import save_image

    save_image(annotate(detector.decode(path), detections), target)


def cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import visor

    limits = ImageLimits(max_bytes=args.max_bytes, max_pixels=args.max_pixels)
    paths = expand_paths(args.paths)
    if not paths:
        err("no images found")
        return EXIT_FAILED_INPUTS
    labels = _read_labels(args.labels) if args.labels else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", visor.models.LicenseWarning)
        detector = visor.load(args.model or _default_model(), labels=labels, limits=limits, threads=args.threads)
    for w in caught:
        if issubclass(w.category, visor.models.LicenseWarning):
            print(f"visor: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not isinstance(detector, visor.models.Detector):
        raise ConfigError(f"{detector.name} is a {detector.card.task} model; 'visor detect' needs a detection model")

    targets: dict[Path, Path] = {}
    if args.save_annotated:
        from visor.io.outputs import check_output_folder, plan_outputs

        check_output_folder(args.save_annotated, [*args.paths, *paths], what="--save-annotated")
        targets = dict(zip(paths, plan_outputs(paths, args.save_annotated, overwrite=args.overwrite), strict=True))
    show_bar = args.progress if args.progress is not None else len(paths) > 1 and sys.stderr.isatty()
    failed = 0
    outcomes = detector.detect_iter(paths, conf=args.conf, iou=args.iou, max_det=args.max_det,
                                    agnostic=args.agnostic, batch_size=args.batch_size)
    with tqdm(total=len(paths), unit="img", disable=not show_bar, file=sys.stderr) as bar:
        for path, outcome in zip(paths, outcomes, strict=True):
            bar.update(1)
            if outcome.error is None and targets:
                try:
                    _save_annotated(detector, path, outcome.result, targets[path])
                except VisorError as e:
                    failed += 1
                    bar.clear()
                    err(f"{path}: {type(e).__name__}: {e}")
            d = outcome.to_dict()
            if outcome.error is not None:
                failed += 1
                bar.clear()
                err(f"{d['image']}: {type(outcome.error).__name__}: {outcome.error}")
            if args.json:
                print(json.dumps(d), flush=True)
            elif outcome.error is None:
                bar.clear()
                _format_text(d, sys.stdout)
    if failed:
        if len(paths) > 1:
            err(f"{failed} of {len(paths)} images failed")
        return EXIT_FAILED_INPUTS
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor detect`` to the command parser."""
    p = sub.add_parser(
        "detect",
        help="find objects in images and draw their boxes",
        description=(
            "Detect objects in image files. PATH may be a file, a folder (searched recursively) or a "
            "quoted glob. --model takes a registry name, a model folder, a card.json or an ONNX export "
            "(YOLOv5, YOLOv8/YOLO11, YOLOX). Text output is one line per box: IMAGE  LABEL  CONFIDENCE  "
            "X1 Y1 X2 Y2 (original pixels). A bad file is reported on stderr and the rest go on; the "
            "exit status is 1 if any file failed."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    p.add_argument("--model", default=None,
                   help="registry name, model folder, card.json or .onnx file (default: the built-in detector)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="class names, one per line, replacing the model's (e.g. for an ONNX export without names)")
    p.add_argument("--conf", type=fraction, default=0.25, help="keep boxes scoring above this (default 0.25)")
    p.add_argument("--iou", type=fraction, default=0.45, help="NMS overlap threshold (default 0.45)")
    p.add_argument("--max-det", type=positive_int, default=300, help="most boxes per image (default 300)")
    p.add_argument("--agnostic", action="store_true", help="suppress overlapping boxes across classes too")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per image (JSON Lines), errors included")
    p.add_argument("--save-annotated", default=None, metavar="DIR",
                   help="write copies with boxes and labels drawn into DIR, under the same relative path, name and "
                        "format; DIR may not be, contain or be inside an input")
    p.add_argument("--overwrite", action="store_true", help="replace files already in the --save-annotated folder")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per inference batch (default 8)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="inference threads (default: one per physical core)")
    p.add_argument("--max-bytes", type=positive_int, default=ImageLimits.max_bytes,
                   help=f"largest file accepted, in bytes (default {ImageLimits.max_bytes})")
    p.add_argument("--max-pixels", type=positive_int, default=ImageLimits.max_pixels,
                   help=f"largest width x height accepted (default {ImageLimits.max_pixels})")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show a progress bar (default: when several files and a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    p.set_defaults(func=cmd_detect)
