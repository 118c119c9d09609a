"""``visor text``, ``visor moderate``, ``visor properties``: thin wrappers over visor.features.

Each prints one line (or block) per image, or with ``--json`` one JSON object per image
(JSON Lines, ``{"image": PATH, "<type>": {...}}`` or ``{"image": PATH, "error": {...}}``).
A bad file is reported on stderr in one line and the rest go on; the exit status is 1 if
any file failed. A missing optional dependency (nudenet with ``--parts``) raises ConfigError, which
``visor.cli.main.main`` reports with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visor.cli.common import (
    ExitCode,
    add_output_options,
    add_progress_options,
    add_runtime_options,
    err,
    fraction,
    image_limits,
    positive_int,
    show_progress,
)
from visor.errors import VisorError
from visor.features.text_engines import DEFAULT_ENGINE, engine_names
from visor.io import expand_paths


def _run(args: argparse.Namespace, analyse: Callable[[Path], Any], fmt: Callable[[str, dict], str]) -> int:
    from tqdm import tqdm

    paths = expand_paths(args.paths)
    if not paths:
        err("no images found")
        return ExitCode.FAILED
    failed = 0
    with tqdm(total=len(paths), unit="img", disable=not show_progress(args, len(paths)), file=sys.stderr) as bar:
        for path in paths:
            bar.update(1)
            try:
                body = analyse(path).to_dict()
            except VisorError as e:
                failed += 1
                bar.clear()
                err(f"{path}: {type(e).__name__}: {e}")
                if args.json:
                    print(json.dumps({"image": str(path), "error": e.to_dict()}), flush=True)
                continue
            bar.clear()
            if args.json:
                print(json.dumps({"image": str(path), body["type"]: body}), flush=True)
            else:
                print(fmt(str(path), body), flush=True)
    if failed:
        if len(paths) > 1:
            err(f"{failed} of {len(paths)} images failed")
        return ExitCode.FAILED
    return ExitCode.OK


def _format_text(path: str, d: dict) -> str:
    lines = d["full_text"].splitlines()
    return "\n".join([f"{path}: {len(d['lines'])} text boxes"] + [f"  {line}" for line in lines])


def _format_moderation(path: str, d: dict) -> str:
    return f"{path}  adult={d['adult']}  racy={d['racy']}"


def _format_properties(path: str, d: dict) -> str:
    colours = " ".join(f"{c['hex']}:{c['fraction']:.2f}" for c in d["dominant_colors"])
    return (f"{path}  {d['width']}x{d['height']}  brightness={d['brightness']:.3f}  sharpness={d['sharpness']:.4f}  "
            f"exposure={d['exposure']['score']:.2f}  colours={colours}")


def cmd_text(args: argparse.Namespace) -> int:
    from visor.features.text import TextReader

    lang = [code.strip() for code in args.lang.split(",") if code.strip()] if args.lang else None
    reader = TextReader(min_confidence=args.min_confidence, limits=image_limits(args), threads=args.threads,
                        engine=args.engine, lang=lang)
    return _run(args, reader.read, _format_text)


def cmd_moderate(args: argparse.Namespace) -> int:
    from visor.features.moderation import Moderator

    moderator = Moderator(parts=args.parts, limits=image_limits(args), threads=args.threads)
    return _run(args, moderator.moderate, _format_moderation)


def cmd_properties(args: argparse.Namespace) -> int:
    from visor.features.properties import image_properties

    limits = image_limits(args)
    return _run(args, lambda p: image_properties(p, colors=args.colors, limits=limits), _format_properties)


def _common(p: argparse.ArgumentParser, *, threads: bool = True) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    add_output_options(p)
    add_runtime_options(p, threads=threads)
    add_progress_options(p)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor text``, ``visor moderate`` and ``visor properties`` to the command parser."""
    p = sub.add_parser("text", aliases=["read-text"], help="read the text in images (OCR)",
                       description="Read text with PP-OCR (PP-OCRv4 detector, PP-OCRv6 small recogniser, through "
                                   "RapidOCR) or another engine (--engine). Text output: the path and the number "
                                   "of text boxes, then the text in reading order, one line per line. A bad "
                                   "file is reported on stderr; the exit status is 1 if any file failed.")
    _common(p)
    p.add_argument("--min-confidence", type=fraction, default=0.5,
                   help="drop text boxes scoring below this (default 0.5)")
    p.add_argument("--engine", default=DEFAULT_ENGINE, choices=engine_names(),
                   help=f"the OCR engine (default {DEFAULT_ENGINE}; tesseract needs Debian's tesseract-ocr)")
    p.add_argument("--lang", default=None, metavar="CODES",
                   help="comma-separated language codes (en, de, zh, ...): keep only text in their scripts "
                        "(default: Latin, and words of other scripts)")
    p.set_defaults(func=cmd_text)

    p = sub.add_parser("moderate", help="adult / racy likelihoods (open_nsfw; nudenet's parts when installed)",
                       description="SafeSearch-like adult and racy likelihoods (VERY_UNLIKELY .. VERY_LIKELY) from "
                                   "Yahoo's open_nsfw classifier (BSD-2-Clause weights, in a core install), combined "
                                   "with nudenet's body-part detector when it is installed (AGPL-3.0 weights; pip "
                                   "install 'visor-vision[moderation]'). A bad file is reported on stderr; the exit "
                                   "status is 1 if any file failed.")
    _common(p)
    p.add_argument("--parts", action=argparse.BooleanOptionalAction, default=None,
                   help="use nudenet's part detector: --parts requires it, --no-parts never uses it "
                        "(default: when installed)")
    p.set_defaults(func=cmd_moderate)

    p = sub.add_parser("properties", help="dominant colours, brightness, sharpness, exposure",
                       description="Image properties: dominant colours (k-means in CIE Lab), brightness, sharpness "
                                   "(variance of the Laplacian) and exposure. A bad file is reported on stderr; "
                                   "the exit status is 1 if any file failed.")
    _common(p, threads=False)
    p.add_argument("--colors", type=positive_int, default=5, help="most dominant colours to report (default 5)")
    p.set_defaults(func=cmd_properties)

