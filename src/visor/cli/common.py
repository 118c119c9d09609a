"""The CLI option kit: exit codes, messages, argument types, and the options every command shares.

Every command that runs a model names it the same way, ``--model NAME|FOLDER``, its default read
from the task registry (:mod:`visor.models.tasks`); the runtime (``--threads``, ``--max-bytes``,
``--max-pixels``, ``--batch-size``), progress (``--progress`` / ``--no-progress``) and output
(``--json``, ``--out``) options are declared here once, with one help text each, so that the
commands agree on names, defaults and wording.
"""

from __future__ import annotations

import argparse
import os
import sys
from enum import IntEnum
from typing import Literal

from visor.io import ImageLimits


class ExitCode(IntEnum):
    """The exit status of every ``visor`` command."""

    OK = 0
    """Success."""
    FAILED = 1
    """Some inputs failed (each reported on stderr, the rest went on), a check failed, or DATA cannot be read."""
    USAGE = 2
    """A usage error, an unknown model or bad configuration (nothing was done)."""
    ALERT = 3
    """``visor monitor --fail-on-alert``: the drift check alerted."""
    INTERRUPTED = 130
    """Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)."""


def quiet_decoder_logs() -> None:
    """Keep FFmpeg's and OpenCV's own warnings (``moov atom not found``, ``Invalid NAL unit size``...) off stderr: the
    video readers turn them into one typed error. Set unless the user set them, before OpenCV is first imported."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


def err(message: str) -> None:
    """Print ``visor: error: message`` on stderr."""
    print(f"visor: error: {message}", file=sys.stderr)


def warn(message: str) -> None:
    """Print ``visor: warning: message`` on stderr."""
    print(f"visor: warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- argument types


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


# --------------------------------------------------------------------------- the option kit

THREADS_HELP = "inference threads (default: one per physical core)"
MAX_BYTES_HELP = f"largest file accepted, in bytes (default {ImageLimits.max_bytes})"
MAX_PIXELS_HELP = f"largest width x height accepted (default {ImageLimits.max_pixels})"
PROGRESS_HELP = "always show a progress bar (default: when stderr is a terminal and there is more than one image)"
NO_PROGRESS_HELP = "never show a progress bar"
JSON_LINES_HELP = "print one JSON object per image (JSON Lines), errors included"
JSON_DOCUMENT_HELP = "print the result as one JSON document instead of text"

#: What the model of each task is called in help texts.
_ROLES = {"classification": "classifier", "detection": "object detector", "face_detection": "face detector",
          "segmentation": "segmenter",
          "embedding": "classifier whose features embed the images"}
MODEL_FORMS = "a registry name (see 'visor models'), a model folder, a card.json or an .onnx file"
_UNSET = object()


def default_model(task: str) -> str | None:
    """The registry model that ``task`` runs when none is named (the task registry's ``default_model``)."""
    from visor.models.tasks import builtin_tasks

    return builtin_tasks().get(task).default_model


def model_help(task: str | None, *, default: str | None, role: str | None = None, extra: str = "") -> str:
    """The help text of ``--model``: what it runs, the forms it takes, and its default."""
    what = role or _ROLES.get(task or "", "model")
    tail = f"default {default}" if default else "no default"
    return f"{what}: {MODEL_FORMS}{extra} ({tail})"


def add_model_option(p: argparse.ArgumentParser, task: str | None, *, default: object = _UNSET,
                     role: str | None = None, extra: str = "", help_text: str | None = None,
                     positional: bool = False, aliases: tuple[str, ...] = ()) -> None:
    """``--model NAME|FOLDER``, the one way to name the model a command runs.

    ``default``: the task's default model from the task registry unless given (``None``: no default,
    the command decides). ``positional=True`` also accepts the model as a first positional argument, the
    form older releases took (``visor evaluate MODEL DATA``), with a deprecation warning; call it before
    adding the command's own positionals, and read the model with :func:`model_arg`.
    """
    value = default_model(task) if default is _UNSET and task is not None else (None if default is _UNSET
                                                                                 else default)
    text = help_text if help_text is not None else model_help(task, default=value, role=role, extra=extra)
    # with the positional form, --model stays None unless given, so that giving both is noticed (model_arg)
    p.add_argument("--model", *aliases, dest="model", default=None if positional else value, metavar="MODEL",
                   help=text)
    if positional:
        p.add_argument("model_positional", nargs="?", default=None, metavar="MODEL", help=argparse.SUPPRESS)
        p.set_defaults(model_default=value)


def model_arg(args: argparse.Namespace, command: str) -> str | None:
    """The model a command with a deprecated positional MODEL was given: ``--model``, else the positional with a
    warning, else the default; both at once is a usage error (:class:`~visor.errors.ConfigError`, exit status 2)."""
    from visor.errors import ConfigError

    positional = getattr(args, "model_positional", None)
    if positional is None:
        return args.model if args.model is not None else getattr(args, "model_default", None)
    if args.model is not None:
        raise ConfigError(f"the model is given twice ({positional!r} and --model {args.model!r}); "
                          f"use --model only: visor {command} --model MODEL ...")
    warn(f"'visor {command} MODEL ...' is deprecated; name the model with --model: "
         f"visor {command} --model {positional} ...")
    return positional


def add_runtime_options(p: argparse.ArgumentParser, *, threads: bool = True, limits: bool = True,
                        batch_size: int | None = None, threads_help: str = THREADS_HELP,
                        batch_size_help: str | None = None) -> None:
    """``--threads``, ``--max-bytes`` / ``--max-pixels`` (``limits``) and, when ``batch_size`` is given (its
    default), ``--batch-size``."""
    if threads:
        p.add_argument("--threads", type=positive_int, default=None, help=threads_help)
    if limits:
        p.add_argument("--max-bytes", type=positive_int, default=ImageLimits.max_bytes, help=MAX_BYTES_HELP)
        p.add_argument("--max-pixels", type=positive_int, default=ImageLimits.max_pixels, help=MAX_PIXELS_HELP)
    if batch_size is not None:
        p.add_argument("--batch-size", type=positive_int, default=batch_size,
                       help=batch_size_help or f"images per inference batch (default {batch_size})")


def image_limits(args: argparse.Namespace) -> ImageLimits:
    """The :class:`~visor.io.ImageLimits` of ``--max-bytes`` / ``--max-pixels``."""
    return ImageLimits(max_bytes=args.max_bytes, max_pixels=args.max_pixels)


def add_progress_options(p: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress`` (``args.progress``: True, False, or None for the default)."""
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help=PROGRESS_HELP)
    bar.add_argument("--no-progress", dest="progress", action="store_false", help=NO_PROGRESS_HELP)


def show_progress(args: argparse.Namespace, items: int | None = None) -> bool:
    """Whether to draw a progress bar: as asked, else when stderr is a terminal and ``items`` is unknown or more
    than one."""
    if args.progress is not None:
        return bool(args.progress)
    return (items is None or items > 1) and sys.stderr.isatty()


def add_output_options(p: argparse.ArgumentParser, *, json: Literal["lines", "document"] | None = "lines",
                       out: str | None = None, out_required: bool = False, out_default: str | None = None,
                       out_metavar: str = "DIR") -> None:
    """``--json`` (``"lines"``: one object per image; ``"document"``: the whole result) and, when ``out`` (its
    help) is given, ``--out``."""
    if json is not None:
        p.add_argument("--json", action="store_true", help=JSON_LINES_HELP if json == "lines" else JSON_DOCUMENT_HELP)
    if out is not None:
        p.add_argument("--out", required=out_required, default=out_default, metavar=out_metavar, help=out)


# --------------------------------------------------------------------------- per-image output


def print_outcome(outcome, bar, *, json_lines: bool, format_text) -> bool:
    """One image's outcome as the image commands print it: an error as one line on stderr, then the JSON Lines
    record with ``--json`` (errors included), else ``format_text(record, stdout)`` for a result. Returns whether
    it failed. ``bar`` is the command's progress bar (cleared before anything is printed)."""
    import json

    d = outcome.to_dict()
    if outcome.error is not None:
        bar.clear()
        err(f"{d['image']}: {type(outcome.error).__name__}: {outcome.error}")
    if json_lines:
        print(json.dumps(d), flush=True)
    elif outcome.error is None:
        bar.clear()
        format_text(d, sys.stdout)
    return outcome.error is not None


def failed_exit(failed: int, total: int) -> ExitCode:
    """The image commands' exit status: 1 (and "N of M images failed" for several) when any failed, else 0."""
    if failed:
        if total > 1:
            err(f"{failed} of {total} images failed")
        return ExitCode.FAILED
    return ExitCode.OK
