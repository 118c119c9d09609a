"""``visor`` command line. Each command parses arguments, calls the library, and prints.

Exit status (:class:`visor.cli.common.ExitCode`): 0 on success, 1 when any input failed (each
reported on stderr), 2 for usage errors, an unknown model or bad configuration, 3 for a drift alert
(``visor monitor --fail-on-alert``), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence
from typing import TextIO

from visor.cli import annotate as annotate_cli
from visor.cli import batch as batch_cli
from visor.cli import bench as bench_cli
from visor.cli import curate as curate_cli
from visor.cli import data as data_cli
from visor.cli import detect as detect_cli
from visor.cli import evaluate as evaluate_cli
from visor.cli import export as export_cli
from visor.cli import faces as faces_cli
from visor.cli import keys as keys_cli
from visor.cli import models as models_cli
from visor.cli import receipt as receipt_cli
from visor.cli import recognition as recognition_cli
from visor.cli import review as review_cli
from visor.cli import search as search_cli
from visor.cli import segment as segment_cli
from visor.cli import serve as serve_cli
from visor.cli import track as track_cli
from visor.cli import train as train_cli
from visor.cli import watch as watch_cli
from visor.cli.common import (
    ExitCode,
    add_model_option,
    add_output_options,
    add_progress_options,
    add_runtime_options,
    err,
    failed_exit,
    image_limits,
    positive_int,
    print_outcome,
    quiet_decoder_logs,
    show_progress,
)
from visor.errors import ConfigError, VisorError
from visor.io import expand_paths
from visor.version import __version__

# --------------------------------------------------------------------------- classify


def _format_text(outcome_dict: dict, out: TextIO) -> None:
    print(outcome_dict["image"], file=out)
    for p in outcome_dict["classifications"]["predictions"]:
        print(f"  {p['confidence']:.4f}  {p['label']} ({p['class_id']})", file=out)


def cmd_classify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from visor.models import Classifier, load

    paths = expand_paths(args.paths)
    if not paths:
        err("no images found")
        return ExitCode.FAILED
    clf = load(args.model, limits=image_limits(args), threads=args.threads)
    if not isinstance(clf, Classifier):
        raise ConfigError(f"{args.model} is a {clf.card.task} model; use visor detect --model {args.model}")
    show_bar = show_progress(args, len(paths))
    failed = 0
    outcomes = clf.classify_iter(paths, top_k=args.top_k, batch_size=args.batch_size)
    with tqdm(total=len(paths), unit="img", disable=not show_bar, file=sys.stderr) as bar:
        for outcome in outcomes:
            bar.update(1)
            failed += print_outcome(outcome, bar, json_lines=args.json, format_text=_format_text)
    return failed_exit(failed, len(paths))


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visor",
        description="Self-hosted image recognition. Run 'visor COMMAND --help' for details.",
    )
    parser.add_argument("--version", action="version", version=f"visor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "classify",
        help="label images with an ImageNet (or your own) classifier",
        description=(
            "Classify image files. PATH may be a file, a folder (searched recursively for "
            ".jpg .jpeg .png .webp .bmp .gif .tif .tiff) or a quoted glob such as 'photos/**/*.jpg'. "
            "A bad file is reported on stderr with the reason and the rest go on; the exit "
            "status is 1 if any file failed."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes to report per image (default 5)")
    add_model_option(p, "classification")
    add_output_options(p)
    add_runtime_options(p, batch_size=32)
    add_progress_options(p)
    p.set_defaults(func=cmd_classify)

    models_cli.register(sub)
    data_cli.register(sub)
    train_cli.register(sub)
    evaluate_cli.register(sub)
    detect_cli.register(sub)
    segment_cli.register(sub)
    track_cli.register(sub)
    watch_cli.register(sub)
    faces_cli.register(sub)
    recognition_cli.register(sub)
    annotate_cli.register(sub)
    serve_cli.register(sub)
    keys_cli.register(sub)
    review_cli.register(sub)
    batch_cli.register(sub)
    bench_cli.register(sub)
    export_cli.register(sub)
    search_cli.register(sub)
    curate_cli.register(sub)
    receipt_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse itself ignores a closed pipe for --help
    quiet_decoder_logs()
    try:
        code = args.func(args)
        sys.stdout.flush()
        return int(code)
    except VisorError as e:
        err(f"{type(e).__name__}: {e}")
        return ExitCode.USAGE if e.http_status in (400, 404) else ExitCode.FAILED
    except KeyboardInterrupt:
        err("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError as e:
        if _stdout_reader_gone():  # `visor ... | head`: stop quietly, as other command-line tools do
            return ExitCode.FAILED
        err(f"broken pipe: {e}")
        return ExitCode.FAILED


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it; if so, stdout becomes /dev/null so the
    interpreter's final flush raises nothing (the recipe in Python's ``signal`` documentation)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced stdout (tests capturing output)
        return False
    if hasattr(select, "poll"):  # elsewhere (Windows), take the documented recipe's word for it
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR is always reported: a pipe with no reader left
        if not any(events & select.POLLERR for _, events in poller.poll(0)):
            return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
