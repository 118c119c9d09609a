"""``visor review list|export|stats``: the service's review queue from the command line.

``export`` writes the accepted and corrected items as a dataset for ``visor train``:
``imagefolder`` (``OUT/<label>/<images>`` and ``OUT/manifest.jsonl``) or ``coco``
(``OUT/instances.json`` and ``OUT/images/``). The database is the one ``visor serve`` uses
(see ``visor keys --help``).
"""

from __future__ import annotations

import argparse
import json

from visor.cli.common import ExitCode, add_output_options, positive_int
from visor.cli.keys import add_db_argument

# visor.serve.review.LIST_STATUSES and EXPORT_FORMATS, without importing the library at parse time
_STATUSES = ("pending", "accepted", "corrected", "rejected", "reviewed", "all")
_FORMATS = ("imagefolder", "coco")


def _queue(args: argparse.Namespace):
    from visor.serve.db import ServiceDB
    from visor.serve.review import ReviewQueue

    return ReviewQueue(ServiceDB(args.db))


def _short(value: object, width: int) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_list(args: argparse.Namespace) -> int:
    queue = _queue(args)
    try:
        items = queue.list(args.status, limit=args.limit, offset=args.offset)
    finally:
        queue.db.close()
    if args.json:
        for item in items:
            print(json.dumps(item.to_dict()), flush=True)
        return ExitCode.OK
    if not items:
        print(f"no {args.status} items" if args.status != "all" else "the review queue is empty")
        return ExitCode.OK
    rows = [("ID", "STATUS", "MODEL", "REASON", "PREDICTED", "CONF", "LABEL", "IMAGE")]
    for it in items:
        conf = "-" if it.confidence is None else f"{it.confidence:.3f}"
        rows.append((str(it.id), it.status, it.model, it.reason, _short(it.predicted_label, 30), conf,
                     _short(it.label, 30), it.filename))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(r[:-1])) + "  " + r[-1])
    return ExitCode.OK


def cmd_export(args: argparse.Namespace) -> int:
    queue = _queue(args)
    try:
        summary = queue.export(args.out, args.format, overwrite=args.overwrite)
    finally:
        queue.db.close()
    unit = "annotations" if summary.format == "coco" else "images"
    print(f"exported {summary.items} item(s) as {summary.format} to {summary.out}")
    if summary.skipped:
        print(f"  ({summary.skipped} accepted or corrected item(s) cannot be written as {summary.format}; left out)")
    width = max(len(k) for k in summary.labels) if summary.labels else 0
    for label, n in summary.labels.items():
        print(f"  {label.ljust(width)}  {n} {unit}")
    return ExitCode.OK


def cmd_stats(args: argparse.Namespace) -> int:
    queue = _queue(args)
    try:
        counts = queue.counts()
    finally:
        queue.db.close()
    if args.json:
        print(json.dumps(counts, indent=2))
        return ExitCode.OK
    width = max(len(k) for k in counts)
    for status, n in counts.items():
        print(f"{status.ljust(width)}  {n}")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor review ...`` to the command parser."""
    review = sub.add_parser("review", help="list and export the service's review queue",
                            description="The review queue of 'visor serve'. Run 'visor review COMMAND --help'.")
    rsub = review.add_subparsers(dest="review_command", metavar="COMMAND", required=True)

    p = rsub.add_parser("list", help="list review items", description="List review items by id.")
    p.add_argument("--status", choices=_STATUSES, default="pending",
                   help="which items: a state, 'reviewed' (decided) or 'all' (default pending)")
    p.add_argument("--limit", type=positive_int, default=50, help="items to show (default 50)")
    p.add_argument("--offset", type=int, default=0, help="items to skip (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object per item (JSON Lines)")
    add_db_argument(p)
    p.set_defaults(func=cmd_list)

    p = rsub.add_parser(
        "export", help="write the reviewed items as a training dataset",
        description="Write the accepted and corrected items into OUT, ready for 'visor train': imagefolder "
                    "(OUT/<label>/<images> + OUT/manifest.jsonl; classify items) or coco (OUT/instances.json + "
                    "OUT/images/; detect items with their boxes, classify items as one whole-image box). OUT must "
                    "be missing or empty unless --overwrite.",
    )
    p.add_argument("out", metavar="OUT", help="the folder to write")
    p.add_argument("--format", choices=_FORMATS, default="imagefolder", help="dataset layout (default imagefolder)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it is not empty")
    add_db_argument(p)
    p.set_defaults(func=cmd_export)

    p = rsub.add_parser("stats", help="count the items by status", description="Count the review items by status.")
    add_output_options(p, json="document")
    add_db_argument(p)
    p.set_defaults(func=cmd_stats)
