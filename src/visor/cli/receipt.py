"""``visor receipt``: read receipts and print their company, date, address and total."""

from __future__ import annotations

import argparse
import json
import sys

from visor.cli.common import ExitCode, add_output_options, add_runtime_options, err, failed_exit, image_limits
from visor.errors import VisorError
from visor.io import expand_paths

FIELDS = ("company", "date", "address", "total")


def cmd_receipt(args: argparse.Namespace) -> int:
    from visor.features.receipt import extract_receipt
    from visor.features.text import TextReader

    paths = expand_paths(args.paths)
    if not paths:
        err("no images found")
        return ExitCode.FAILED
    options: dict = {"threads": args.threads, "limits": image_limits(args)}
    if args.engine is not None:
        options["engine"] = args.engine
    reader = TextReader(**options)
    failed = 0
    for path in paths:
        try:
            fields = extract_receipt(reader(path)).to_dict()
        except VisorError as e:
            failed += 1
            err(f"{path}: {type(e).__name__}: {e}")
            if args.json:
                print(json.dumps({"image": str(path), "error": {"type": type(e).__name__, "message": str(e)}}),
                      flush=True)
            continue
        if args.json:
            print(json.dumps({"image": str(path), "receipt": fields}), flush=True)
        else:
            indent = ""
            if len(paths) > 1:
                print(f"{path}:")
                indent = "  "
            for name in FIELDS:
                f = fields[name]
                print(f"{indent}{name:<8} {'-' if f['value'] is None else f['value']}  ({f['confidence']:.2f})")
            sys.stdout.flush()
    return failed_exit(failed, len(paths))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor receipt`` to the command parser."""
    p = sub.add_parser(
        "receipt",
        help="read receipts: company, date, address and total with confidences",
        description=(
            "Read each receipt image (OCR) and extract its company, date, address and total by rules and layout: "
            "the text lines are grouped into rows, the date is the first date on a DATE row (else the first on "
            "the page), the total the amount on the final TOTAL / ROUNDED / NETT row, the company the top row "
            "with a business cue (SDN BHD, ENTERPRISE, TRADING ...), the address the rows below it up to the "
            "first phone, GST or date row. Values are as printed; a field not found is '-' (null in JSON)."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    p.add_argument("--engine", default=None, metavar="NAME",
                   help="the OCR engine to read with (default: the text reader's default)")
    add_output_options(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_receipt)
