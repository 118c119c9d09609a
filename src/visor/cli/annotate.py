"""``visor annotate``: every requested feature for each image, one JSON document per line."""

from __future__ import annotations

import argparse
import json
import sys

from visor.annotator import FEATURES, OPT_IN_FEATURES, Annotator, check_features
from visor.cli.common import (
    ExitCode,
    add_model_option,
    add_progress_options,
    add_runtime_options,
    default_model,
    err,
    image_limits,
    model_help,
    positive_int,
    show_progress,
)
from visor.errors import VisorError
from visor.io import expand_paths


def cmd_annotate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    features = check_features([f.strip() for f in args.features.split(",") if f.strip()])
    paths = expand_paths(args.paths)
    if not paths:
        err("no images found")
        return ExitCode.FAILED
    annotator = Annotator(classifier=args.model, detector=args.detector, segmenter=args.segmenter, top_k=args.top_k,
                          limits=image_limits(args))
    failed = 0
    with tqdm(total=len(paths), unit="img", disable=not show_progress(args, len(paths)), file=sys.stderr) as bar:
        for path in paths:
            bar.update(1)
            try:
                doc = annotator.annotate(path, features)
            except VisorError as e:
                failed += 1
                bar.clear()
                err(f"{path}: {type(e).__name__}: {e}")
                continue
            bar.clear()
            print(json.dumps(doc, indent=2 if args.pretty else None), flush=True)
    return ExitCode.FAILED if failed else ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor annotate`` to the command parser."""
    p = sub.add_parser(
        "annotate",
        help="run several recognition features at once (one JSON document per image)",
        description=(
            "Run the requested features on each image and print one JSON document per image (JSON Lines): "
            f"{', '.join(FEATURES)} (the default), and {', '.join(OPT_IN_FEATURES)} when named (its slot: the class "
            "areas and one COCO RLE per class, of a copy at most 512 px on its long side). A feature whose model "
            "cannot be loaded or a missing optional package "
            "returns an error in its own slot; the other features still return. "
            "The schema is docs/annotate.schema.json."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    p.add_argument("--features", default=",".join(FEATURES),
                   help=f"comma-separated features (default: {', '.join(FEATURES)}); also "
                        f"{', '.join(OPT_IN_FEATURES)}")
    add_model_option(p, "classification", role="classifier for labels")
    detector = default_model("detection")
    p.add_argument("--detector", default=detector, metavar="MODEL",
                   help=model_help("detection", default=detector, role="object detector for objects"))
    segmenter = default_model("segmentation")
    p.add_argument("--segmenter", default=segmenter, metavar="MODEL",
                   help=model_help("segmentation", default=segmenter, role="segmenter for segmentation"))
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per image (default 5)")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    add_runtime_options(p, threads=False)
    add_progress_options(p)
    p.set_defaults(func=cmd_annotate)
