"""``visor annotate``: every requested feature for each image, one JSON document per line."""

from __future__ import annotations

import argparse
import json

from visor.annotate import FEATURES, Annotator, check_features
from visor.cli.common import err, positive_int
from visor.errors import VisorError
from visor.io import expand_paths


def cmd_annotate(args: argparse.Namespace) -> int:
    features = check_features([f.strip() for f in args.features.split(",") if f.strip()])
    paths = expand_paths(args.paths)
    if not paths:
        err("no images found")
        return 1
    annotator = Annotator(classifier=args.model, detector=args.detector, top_k=args.top_k)
    failed = 0
    for path in paths:
        try:
            doc = annotator.annotate(path, features)
        except VisorError as e:
            failed += 1
            err(f"{path}: {type(e).__name__}: {e}")
            continue
        print(json.dumps(doc, indent=2 if args.pretty else None), flush=True)
    return 1 if failed else 0


def register(sub) -> None:
    p = sub.add_parser(
        "annotate",
        help="run several recognition features at once (one JSON document per image)",
        description=(
            "Run the requested features on each image and print one JSON document per image (JSON Lines): "
            f"{', '.join(FEATURES)}. A feature without a model (objects without --detector) or a missing "
            "optional package returns an error in its own slot; the other features still return. "
            "The schema is docs/annotate.schema.json."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    p.add_argument("--features", default=",".join(f for f in FEATURES if f != "objects"),
                   help=f"comma-separated features (default: all but objects); from {', '.join(FEATURES)}")
    p.add_argument("--model", default="efficientnet_lite0", help="classifier for labels (default efficientnet_lite0)")
    p.add_argument("--detector", default=None, help="detector for objects: a run folder or .onnx file")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per image (default 5)")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    p.set_defaults(func=cmd_annotate)
