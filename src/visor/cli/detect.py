"""``visor detect``: find objects in images, print boxes (text or JSON Lines), draw annotated copies.

Exit status: 0 on success, 1 when any input failed (each reported on stderr, the rest go on);
an unknown model or bad configuration raises and ``visor.cli.main.main`` turns it into 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TextIO

from visor.cli.common import (
    MODEL_FORMS,
    ExitCode,
    add_model_option,
    add_output_options,
    add_progress_options,
    add_runtime_options,
    err,
    failed_exit,
    fraction,
    image_limits,
    positive_int,
    print_outcome,
    show_progress,
)
from visor.errors import ConfigError, VisorError
from visor.io import expand_paths
from visor.models.registry import DEFAULT_DETECTOR


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

    from visor.models import Detector, LicenseWarning, load

    limits = image_limits(args)
    paths = expand_paths(args.paths)
    if not paths:
        err("no images found")
        return ExitCode.FAILED
    labels = _read_labels(args.labels) if args.labels else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LicenseWarning)
        detector = load(args.model or DEFAULT_DETECTOR, labels=labels, limits=limits, threads=args.threads)
    for w in caught:
        if issubclass(w.category, LicenseWarning):
            print(f"visor: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not isinstance(detector, Detector):
        raise ConfigError(f"{detector.name} is a {detector.card.task} model; 'visor detect' needs a detection model")

    targets: dict[Path, Path] = {}
    if args.save_annotated:
        from visor.io.outputs import check_output_folder, plan_outputs

        check_output_folder(args.save_annotated, [*args.paths, *paths], what="--save-annotated")
        targets = dict(zip(paths, plan_outputs(paths, args.save_annotated, overwrite=args.overwrite), strict=True))
    show_bar = show_progress(args, len(paths))
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
            failed += print_outcome(outcome, bar, json_lines=args.json, format_text=_format_text)
    return failed_exit(failed, len(paths))


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
    add_model_option(p, "detection", help_text=f"object detector: {MODEL_FORMS} (default {DEFAULT_DETECTOR}, COCO's "
                                               "80 classes)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="class names, one per line, replacing the model's (e.g. for an ONNX export without names)")
    p.add_argument("--conf", type=fraction, default=0.25, help="keep boxes scoring above this (default 0.25)")
    p.add_argument("--iou", type=fraction, default=0.45, help="NMS overlap threshold (default 0.45)")
    p.add_argument("--max-det", type=positive_int, default=300, help="most boxes per image (default 300)")
    p.add_argument("--agnostic", action="store_true", help="suppress overlapping boxes across classes too")
    add_output_options(p)
    p.add_argument("--save-annotated", default=None, metavar="DIR",
                   help="write copies with boxes and labels drawn into DIR, under the same relative path, name and "
                        "format; DIR may not be, contain or be inside an input")
    p.add_argument("--overwrite", action="store_true", help="replace files already in the --save-annotated folder")
    add_runtime_options(p, batch_size=8)
    add_progress_options(p)
    p.set_defaults(func=cmd_detect)
