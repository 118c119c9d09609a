"""``visor curate``: duplicates, leakage, likely label mistakes, outliers and hard examples in a dataset.

Exit status: 0 when the report is written (whatever it finds: it is a report), 1 when DATA
cannot be loaded; a bad option value raises ConfigError, which ``visor.cli.main.main`` turns
into 2.
"""

from __future__ import annotations

import argparse
import json

from visor.cli.common import (
    ExitCode,
    add_model_option,
    add_output_options,
    add_progress_options,
    add_runtime_options,
    default_model,
    err,
    fraction,
    positive_int,
    show_progress,
)
from visor.errors import VisorError


def cmd_curate(args: argparse.Namespace) -> int:
    from visor.data import ClassificationDataset
    from visor.retrieval.curate import curate

    try:
        ds = ClassificationDataset.load(args.data)
    except VisorError as e:
        err(f"cannot load {args.data}: {type(e).__name__}: {e}")
        return ExitCode.FAILED
    progress = show_progress(args)
    report = curate(ds, model=args.model, split_column=args.split_column, near_threshold=args.threshold,
                    folds=args.folds, seed=args.seed, top=args.top, batch_size=args.batch_size, progress=progress)
    js, page = report.write(args.out)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(report.format_text())
        print(f"wrote {js} and {page}")
    return ExitCode.OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``visor curate`` to the ``visor`` sub-command parsers."""
    from visor.retrieval.curate import DEFAULT_THRESHOLD

    p = subparsers.add_parser(
        "curate",
        help="find duplicates, split leakage, likely label mistakes and outliers in a dataset",
        description=(
            "Embed every image of DATA once and report: groups of identical files and clusters of "
            "near-duplicates (cosine similarity of embeddings >= --threshold); duplicate pairs that sit in "
            "different splits (leakage); likely label mistakes, where a logistic regression on the embeddings, "
            "cross-validated with stratified folds, confidently predicts another class; outliers (far from "
            "their nearest neighbours) and hard examples (right, but barely). Unreadable images are listed "
            "with the reason. Writes OUT/curation.json and OUT/curation.html (one self-contained page of "
            "thumbnails) and prints a summary. The exit status is 0 whatever is found, 1 if DATA cannot be loaded."
        ),
    )
    p.add_argument("data", metavar="DATA",
                   help="a folder laid out as DATA/<class>/<images> or DATA/<split>/<class>/<images> "
                        "(split = train, val, test), or a .csv / .jsonl manifest with the columns "
                        "path,label[,split][,...]")
    p.add_argument("--split-column", default=None, metavar="COL",
                   help="the manifest column that holds each image's split (default: 'split', or the "
                        "folder layout)")
    add_model_option(p, "embedding")
    p.add_argument("--threshold", type=fraction, default=DEFAULT_THRESHOLD,
                   help=f"cosine similarity at which two images are near-duplicates (default {DEFAULT_THRESHOLD:g}, "
                        f"measured for {default_model('embedding')})")
    add_output_options(p, json="document", out="folder for curation.json and curation.html (default ./curation)",
                       out_default="curation")
    p.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds, at least 2 (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed for the folds (default 0)")
    p.add_argument("--top", type=positive_int, default=50,
                   help="label mistakes, outliers and hard examples to list (default 50)")
    add_runtime_options(p, threads=False, limits=False, batch_size=32)
    add_progress_options(p)
    p.set_defaults(func=cmd_curate)
