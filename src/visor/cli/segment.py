"""``visor segment``: a class per pixel; print each image's class areas (text or JSON Lines), write index PNG
masks and coloured overlays.

Exit status: 0 on success, 1 when any input failed (each reported on stderr, the rest go on);
an unknown model or bad configuration raises and ``visor.cli.main.main`` turns it into 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
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
    print_outcome,
    show_progress,
)
from visor.errors import ConfigError, VisorError
from visor.io import expand_paths

#: Overlays keep the input's format when it is one of these, else they are PNG.
OVERLAY_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def format_areas(image: str, mask, out: TextIO) -> None:
    """One line per class present, largest first: ``IMAGE  LABEL  SHARE%  PIXELS``."""
    total = mask.height * mask.width
    for label, pixels in sorted(mask.areas.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{image}  {label}  {100 * pixels / total:.2f}%  {pixels}", file=out)


def plan_files(paths: list[Path], out: str, *, overlay: bool, overwrite: bool) -> tuple[list[Path], list[Path]]:
    """Per input, the index PNG's path in ``out`` (``name.png``) and, with ``overlay``, the overlay's
    (``name_overlay.<input's format or png>``): collision-free together, none existing unless ``overwrite``."""
    from visor.io.outputs import plan_outputs

    masks = [p.with_name(p.stem + ".png") for p in paths]
    overlays = [p.with_name(f"{p.stem}_overlay{p.suffix.lower() if p.suffix.lower() in OVERLAY_SUFFIXES else '.png'}")
                for p in paths] if overlay else []
    planned = plan_outputs([*masks, *overlays], out, overwrite=overwrite)
    return planned[: len(paths)], planned[len(paths):]


def _write(segmenter, path: Path, mask, png: Path, overlay: Path | None) -> None:
    from visor.io.files import atomic_write
    from visor.io.outputs import OutputWriteError, save_image

    try:
        atomic_write(png, mask.to_png_bytes())
    except OSError as e:
        raise OutputWriteError(f"cannot write {png}: {e.strerror or e}") from None
    if overlay is not None:
        save_image(mask.overlay(segmenter.decode(path)), overlay)


def cmd_segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from visor.models import load
    from visor.models.segmenter import Segmenter

    if args.overlay and not args.out:
        raise ConfigError("--overlay writes into the --out folder: give --out DIR")
    limits = image_limits(args)
    paths = expand_paths(args.paths)
    if not paths:
        err("no images found")
        return ExitCode.FAILED
    # no busy-waiting ONNX Runtime threads: the decoding and postprocessing threads need the cores between runs
    # (on 2 cores with 2 inference threads, 88% of raw ONNX Runtime's speed instead of 64%; benchmarks/segment_speed.py)
    segmenter = load(args.model, limits=limits, threads=args.threads, spin=False)
    if not isinstance(segmenter, Segmenter):
        raise ConfigError(f"{segmenter.name} is a {segmenter.card.task} model; 'visor segment' needs a segmentation "
                          "model")
    pngs: list[Path] = []
    overlays: list[Path] = []
    if args.out:
        from visor.io.outputs import check_output_folder

        check_output_folder(args.out, [*args.paths, *paths], what="--out")
        pngs, overlays = plan_files(paths, args.out, overlay=args.overlay, overwrite=args.overwrite)
    show_bar = show_progress(args, len(paths))
    failed = 0
    outcomes = segmenter.segment_iter(paths, batch_size=args.batch_size)
    with tqdm(total=len(paths), unit="img", disable=not show_bar, file=sys.stderr) as bar:
        for i, (path, outcome) in enumerate(zip(paths, outcomes, strict=True)):
            bar.update(1)
            if outcome.error is None and pngs:
                try:
                    _write(segmenter, path, outcome.result, pngs[i], overlays[i] if overlays else None)
                except VisorError as e:
                    failed += 1
                    bar.clear()
                    err(f"{path}: {type(e).__name__}: {e}")
            failed += print_outcome(outcome, bar, json_lines=args.json,
                                    format_text=lambda d, out, r=outcome.result: format_areas(d["image"], r, out))
    return failed_exit(failed, len(paths))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor segment`` to the command parser."""
    p = sub.add_parser(
        "segment",
        help="label every pixel: class areas, index PNG masks, overlays",
        description=(
            "Semantic segmentation of image files: a class for every pixel, at the image's own size. PATH may be "
            "a file, a folder (searched recursively) or a quoted glob. --model takes a registry name or a "
            "'visor train segment' run folder. Text output is one line per class present: IMAGE  LABEL  SHARE  "
            "PIXELS (largest first); --json prints one JSON object per image with the mask as COCO RLE per class. "
            "--out DIR writes one index PNG per image (pixel value = class id, with a palette), named after it; "
            "--overlay also writes coloured overlays (NAME_overlay.jpg/.png). A bad file is reported on stderr "
            "and the rest go on; the exit status is 1 if any file failed."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    add_model_option(p, "segmentation", role="segmenter",
                     extra=" (deeplabv3_voc: Pascal VOC's 20 classes and background)")
    add_output_options(p, out="write an index PNG mask per image into DIR (same relative path, NAME.png); DIR may "
                              "not be, contain or be inside an input")
    p.add_argument("--overlay", action="store_true",
                   help="with --out, also write each image with its classes coloured over it (NAME_overlay.EXT)")
    p.add_argument("--overwrite", action="store_true", help="replace files already in the --out folder")
    add_runtime_options(p, batch_size=8)
    add_progress_options(p)
    p.set_defaults(func=cmd_segment)
