"""``visor faces detect|enroll|identify|collections`` and ``visor anonymize``.

Thin commands over :mod:`visor.faces`. ``--model`` (alias ``--detector``) picks the face detector:
the registry's face-detection model by default (YuNet), a face-detection model folder, or dlib's
``hog`` / ``cnn``. A bad file is reported on stderr (one line) and the
rest go on; the exit status is 1 if any file failed. The collections database defaults to
``$VISOR_HOME/faces.db``, or ``~/.local/share/visor/faces.db`` when VISOR_HOME is unset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from visor.cli.common import (
    ExitCode,
    add_model_option,
    add_output_options,
    add_progress_options,
    add_runtime_options,
    default_model,
    err,
    image_limits,
    model_help,
    positive_int,
    show_progress,
)
from visor.errors import InvalidInput, VisorError
from visor.io import ImageLimits, expand_paths
from visor.models.registry import DEFAULT_SEGMENTER

#: dlib's detectors, chosen by name besides the face-detection models of the registry (visor.faces.DETECTORS).
_DLIB_DETECTORS = ("hog", "cnn")


def _each(paths: list[Path], work: Callable[[Path], Any], args: argparse.Namespace) -> Iterator[tuple[Path, Any]]:
    """(path, result) for the paths that worked; each failure reported on stderr (and with --json as a JSON line)."""
    from tqdm import tqdm

    with tqdm(total=len(paths), unit="img", disable=not show_progress(args, len(paths)), file=sys.stderr) as bar:
        for path in paths:
            bar.update(1)
            try:
                result = work(path)
            except VisorError as e:
                bar.clear()
                err(f"{path}: {type(e).__name__}: {e}")
                if getattr(args, "json", False):
                    print(json.dumps({"image": os.fspath(path), "error": e.to_dict()}), flush=True)
                continue
            bar.clear()
            yield path, result


def _finish(failed: int, total: int) -> int:
    if failed:
        if total > 1:
            err(f"{failed} of {total} images failed")
        return ExitCode.FAILED
    return ExitCode.OK


def _analyzer(args: argparse.Namespace) -> Any:
    """The :class:`~visor.faces.FaceAnalyzer` of --model (YuNet by default, dlib's hog / cnn, or a face-detection
    model folder), --threads and the image limits."""
    from visor.faces import DETECTORS, FaceAnalyzer, load_face_detector

    limits = image_limits(args) if hasattr(args, "max_bytes") else ImageLimits()
    threads = getattr(args, "threads", None)
    model = getattr(args, "model", None)
    if model is None or model in DETECTORS:
        return FaceAnalyzer(detector=model or default_model("face_detection"), limits=limits, threads=threads)
    return FaceAnalyzer(detector=load_face_detector(model, limits=limits, threads=threads), limits=limits,
                        threads=threads)


def _detect_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"upsample": args.upsample}  # the detector is the analyzer's (--model)


def _paths(args: argparse.Namespace) -> list[Path]:
    paths = expand_paths(args.paths)
    if not paths:
        err("no images found")
    return paths


def _box_text(face: dict) -> str:
    x1, y1, x2, y2 = face["xyxy"]
    conf = "-" if face["confidence"] is None else f"{face['confidence']:.3f}"
    return f"{conf}  {x1:.0f} {y1:.0f} {x2:.0f} {y2:.0f}"


# --------------------------------------------------------------------------- faces detect


def cmd_detect(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if not paths:
        return ExitCode.FAILED
    analyzer = _analyzer(args)
    done = 0
    for path, faces in _each(paths, lambda p: analyzer.detect(p, landmarks=args.landmarks, embeddings=args.embeddings,
                                                               **_detect_kwargs(args)), args):
        done += 1
        d = faces.to_dict(embeddings=args.embeddings)
        if args.json:
            print(json.dumps({"image": os.fspath(path), "faces": d}), flush=True)
        else:
            print(f"{path}  {len(faces)} face(s)")
            for face in d["faces"]:
                print(f"  {_box_text(face)}")
    return _finish(len(paths) - done, len(paths))


# --------------------------------------------------------------------------- store commands


def _store(args: argparse.Namespace, **detect_kwargs: Any) -> Any:
    from visor.faces import FaceStore

    return FaceStore(args.db, analyzer=_analyzer(args), **detect_kwargs)


def cmd_enroll(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if not paths:
        return ExitCode.FAILED
    from visor.faces.collections import check_collection_name, check_person_name

    check_person_name(args.person)  # a bad name or collection fails before any photo is read
    check_collection_name(args.collection)
    with _store(args, **_detect_kwargs(args)) as store:
        create = args.collection not in store.list_collections()
        if create and not args.create:
            store.require_collection(args.collection)  # CollectionNotFound, with the ways to create it
        good = list(_each(paths, lambda p: store.analyzer.embed_one(p, **store.detect_kwargs), args))
        if len(good) < len(paths):
            err(f"{len(paths) - len(good)} of {len(paths)} photos failed; nothing enrolled")
            return ExitCode.FAILED
        n = store.add_embeddings(args.collection, args.person, [e for _, e in good], [os.fspath(p) for p, _ in good],
                                 create=create)
    if create:
        print(f"created collection {args.collection}")
    print(f"enrolled {n} photo(s) of {args.person} in {args.collection}")
    return ExitCode.OK


def cmd_identify(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if not paths:
        return ExitCode.FAILED
    done = 0
    with _store(args, **_detect_kwargs(args)) as store:
        store.list_people(args.collection)
        for path, faces in _each(paths, lambda p: store.identify(args.collection, p, threshold=args.threshold,
                                                                  top_k=args.top_k), args):
            done += 1
            d = faces.to_dict(embeddings=False)
            if args.json:
                print(json.dumps({"image": os.fspath(path), "faces": d}), flush=True)
            else:
                print(f"{path}  {len(faces)} face(s)")
                for face in d["faces"]:
                    print(f"  {face['name']}  {face['distance']:.3f}  {_box_text(face)}")
    return _finish(len(paths) - done, len(paths))


def cmd_collections(args: argparse.Namespace) -> int:
    if args.action in ("create", "delete") and not args.name:
        raise InvalidInput(f"'visor faces collections {args.action}' needs a NAME")
    with _store(args) as store:
        if args.action == "create":
            store.create_collection(args.name)
            print(f"created {args.name}")
        elif args.action == "delete":
            store.delete_collection(args.name)
            print(f"deleted {args.name}")
        else:
            for name in store.list_collections():
                print(f"{name}\t{len(store.list_people(name))} people")
    return ExitCode.OK


# --------------------------------------------------------------------------- anonymize


def _limits(args: argparse.Namespace) -> ImageLimits:
    return image_limits(args) if hasattr(args, "max_bytes") else ImageLimits()


def _segmenter(args: argparse.Namespace) -> Any:
    """The segmenter of ``--segmenter`` for ``--people``: a segmentation model with a "person" class."""
    from visor.errors import ConfigError
    from visor.faces.anonymize import PERSON
    from visor.models import load
    from visor.models.segmenter import Segmenter

    segmenter = load(args.segmenter, limits=_limits(args), threads=getattr(args, "threads", None))
    if not isinstance(segmenter, Segmenter):
        raise ConfigError(f"{segmenter.name} is a {segmenter.card.task} model; --segmenter needs a segmentation "
                          "model")
    if PERSON not in segmenter.labels:
        raise ConfigError(f"{segmenter.name} has no {PERSON!r} class for --people; its classes: "
                          f"{', '.join(segmenter.labels)}")
    return segmenter


def cmd_anonymize(args: argparse.Namespace) -> int:
    from visor.faces import anonymize, sensitive_boxes
    from visor.faces.anonymize import hide_mask, people_mask
    from visor.io.outputs import check_output_folder, plan_outputs, save_image

    paths = _paths(args)
    if not paths:
        return ExitCode.FAILED
    check_output_folder(args.out, [*args.paths, *paths], what="--out")
    targets = dict(zip(paths, plan_outputs(paths, args.out, overwrite=args.overwrite), strict=True))
    hide_faces = args.faces or not args.people  # faces by default; with --people only when --faces is given
    analyzer = _analyzer(args) if hide_faces else None
    segmenter = _segmenter(args) if args.people else None
    reader = None
    if args.text:
        from visor.features.text import TextReader

        reader = TextReader(limits=analyzer.limits if analyzer is not None else _limits(args))

    def work(path: Path) -> tuple[Path, str]:
        image = (analyzer or segmenter).decode(path)
        out, notes = image, []
        if segmenter is not None:  # whole people: the grown person mask
            mask = people_mask(segmenter.predict(image), dilate=args.dilate)
            out = hide_mask(image, mask, args.method)
            notes.append(f"people {mask.mean():.1%} of the pixels")
        boxes = np.zeros((0, 4))
        if analyzer is not None:
            boxes, n_faces, n_texts = sensitive_boxes(image, analyzer=analyzer, text_reader=reader,
                                                      **_detect_kwargs(args))
            notes.insert(0, f"{n_faces} face(s)")
        elif reader is not None:
            lines = reader.read(image)
            boxes, n_texts = np.asarray(lines.xyxy, np.float64).reshape(-1, 4), len(lines)
        if reader is not None:
            notes.append(f"{n_texts} text region(s)")
        if len(boxes):  # found on the original image; hidden on top of the people
            out = anonymize(out, boxes, args.method, expand=args.expand)
        return save_image(out, targets[path]), ", ".join(notes)

    done = 0
    for path, (target, notes) in _each(paths, work, args):
        done += 1
        print(f"{path} -> {target}  {notes}")
    return _finish(len(paths) - done, len(paths))


# --------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    default = default_model("face_detection")
    add_model_option(p, "face_detection", aliases=("--detector",),
                     help_text=model_help("face_detection", default=default,
                                          extra=f"; or dlib's {' / '.join(_DLIB_DETECTORS)} (hog: fast, frontal "
                                                "faces; cnn: more poses, slow on CPU)"))
    p.add_argument("--upsample", type=_upsample, default=1,
                   help="dlib's detectors: times to double the image before detecting, to find small faces "
                        "(default 1)")
    add_runtime_options(p)
    add_progress_options(p)


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, metavar="DB",
                   help="SQLite file of the collections (default $VISOR_HOME/faces.db, "
                        "else ~/.local/share/visor/faces.db)")


def _upsample(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _pixels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor faces ...`` and ``visor anonymize`` to the command parser."""
    faces = sub.add_parser("faces", help="detect, enroll and identify faces",
                           description="Face detection (YuNet by default, or dlib's HOG / CNN) and recognition "
                                       "(dlib's 128-d embeddings). Run 'visor faces COMMAND --help'.")
    fsub = faces.add_subparsers(dest="faces_command", metavar="COMMAND", required=True)

    p = fsub.add_parser("detect", help="find faces: boxes, scores, landmarks",
                        description="Detect faces in image files, folders or quoted globs. Text output: one line "
                                    "per image, then SCORE X1 Y1 X2 Y2 per face (original pixels).")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    add_output_options(p)
    p.add_argument("--landmarks", type=int, choices=(5, 68), default=5, help="landmark points per face (default 5)")
    p.add_argument("--embeddings", action="store_true", help="also compute and print the 128-d embeddings")
    _common(p)
    p.set_defaults(func=cmd_detect)

    p = fsub.add_parser("enroll", help="add photos of a person to a collection",
                        description="Enroll PERSON from one or more photos, each showing exactly one face. If any "
                                    "photo fails, each is reported and nothing is enrolled. A missing collection "
                                    "is created (unless --no-create). The name 'unknown' is reserved.")
    p.add_argument("paths", nargs="+", metavar="PHOTO", help="photos of the person (files, folders or globs)")
    _db(p)
    p.add_argument("--collection", required=True, help="collection name (created on first enrolment)")
    p.add_argument("--person", required=True, metavar="NAME", help="the person's name (not 'unknown')")
    p.add_argument("--no-create", dest="create", action="store_false",
                   help="fail if the collection does not exist instead of creating it")
    _common(p)
    p.set_defaults(func=cmd_enroll)

    p = fsub.add_parser("identify", help="name the faces in images",
                        description="Identify every face in each image against a collection: the nearest enrolled "
                                    "person within --threshold, else 'unknown'.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    _db(p)
    p.add_argument("--collection", required=True, help="collection name")
    p.add_argument("--threshold", type=_threshold, default=0.6,
                   help="largest euclidean embedding distance for a match (default 0.6: 99.38%% on LFW)")
    p.add_argument("--top-k", type=positive_int, default=3, help="nearest people listed per face in JSON (default 3)")
    add_output_options(p)
    _common(p)
    p.set_defaults(func=cmd_identify)

    p = fsub.add_parser("collections", help="list, create or delete collections",
                        description="'list' (default), 'create NAME' or 'delete NAME'.")
    p.add_argument("action", nargs="?", choices=("list", "create", "delete"), default="list")
    p.add_argument("name", nargs="?", default=None, help="collection name for create/delete")
    _db(p)
    p.set_defaults(func=cmd_collections)

    p = sub.add_parser("anonymize", help="blur, pixelate or black out faces or whole people",
                       description="Hide every detected face (or with --people every person, whole) in each image "
                                   "and write the result into --out, under the same relative path, name and format "
                                   "(PNG, WebP, BMP and TIFF losslessly; JPEG at quality 95). Only pixels in the "
                                   "(slightly expanded) face boxes and the (slightly grown) person masks change, "
                                   "apart from JPEG and GIF re-encoding. --out may not be, contain or be inside an "
                                   "input, and existing files are kept unless --overwrite.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    p.add_argument("--method", choices=("blur", "pixelate", "box"), default="blur", help="how (default blur)")
    add_output_options(p, json=None, out="folder for the anonymized copies", out_required=True)
    p.add_argument("--overwrite", action="store_true", help="replace files already in --out")
    p.add_argument("--text", action="store_true", help="also hide every text region (OCR text detection)")
    p.add_argument("--expand", type=_threshold, default=0.2,
                   help="grow each face box by this fraction of its size on each side (default 0.2)")
    p.add_argument("--people", action="store_true",
                   help="hide whole people (body, clothing, hair) with the person class of --segmenter, instead of "
                        "faces; add --faces for both")
    p.add_argument("--faces", action="store_true",
                   help="with --people, hide the face boxes too (without --people faces are always hidden)")
    p.add_argument("--segmenter", default=DEFAULT_SEGMENTER, metavar="SEGMENTER",
                   help="segmentation model for --people, with a 'person' class: a registry name or a model folder "
                        f"(default {DEFAULT_SEGMENTER})")
    p.add_argument("--dilate", type=_pixels, default=None, metavar="PIXELS",
                   help="grow the person mask by this many pixels to cover its edges (default 1%% of the image's "
                        "longer side, at least 2)")
    _common(p)
    p.set_defaults(func=cmd_anonymize)
