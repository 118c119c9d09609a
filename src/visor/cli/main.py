"""``visor`` command line. Each command parses arguments, calls the library, and prints.

Exit status (:class:`visor.cli.common.ExitCode`): 0 on success, 1 when any input failed (each
reported on stderr), 2 for usage errors, an unknown model or bad configuration, 3 for a drift alert
(``visor monitor --fail-on-alert``), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys
from collections.abc import Sequence
from typing import TextIO

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
from visor.version import __version__

# --------------------------------------------------------------------------- classify


def _format_text(outcome_dict: dict, out: TextIO) -> None:
    print(outcome_dict["image"], file=out)
    for p in outcome_dict["classifications"]["predictions"]:
        print(f"  {p['confidence']:.4f}  {p['label']} ({p['class_id']})", file=out)


def cmd_classify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from visor.io import expand_paths
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


#: The commands each module of visor.cli registers, in ``visor --help`` order (``classify`` is this module's).
#: ``visor COMMAND ...`` imports only COMMAND's module (``visor detect --help`` 0.68 -> 0.37 s); a test checks
#: this table against what each module registers.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "models": ("models",), "data": ("data",), "train": ("train",), "evaluate": ("evaluate", "monitor"),
    "detect": ("detect",), "segment": ("segment",), "track": ("track",), "watch": ("watch",),
    "faces": ("faces", "anonymize"), "recognition": ("text", "read-text", "moderate", "properties"),
    "annotate": ("annotate",), "serve": ("serve",), "keys": ("keys",), "review": ("review",), "batch": ("batch",),
    "bench": ("benchmark",), "export": ("export",), "search": ("index", "search"), "curate": ("curate",),
    "receipt": ("receipt",),
}


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, if it names a known one before any argument (else every command is
    registered: ``visor --help``, ``visor --version``, a misspelt command's error and suggestions)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    known = first == "classify" or any(first in names for names in COMMAND_MODULES.values())
    return first if known else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``visor`` parser: with every command, or only ``command`` (and the others of its module)."""
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

    for module in COMMAND_MODULES if command is None else [m for m, names in COMMAND_MODULES.items()
                                                            if command in names]:
        importlib.import_module(f"visor.cli.{module}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)  # argparse itself ignores a closed pipe for --help
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
