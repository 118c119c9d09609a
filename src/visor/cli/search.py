"""``visor index build|add|remove|info`` and ``visor search``: a similarity index of images."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from visor.cli.common import (
    ExitCode,
    add_model_option,
    add_output_options,
    add_progress_options,
    add_runtime_options,
    err,
    positive_int,
    show_progress,
)
from visor.io import expand_paths


def _paths(args: argparse.Namespace) -> list[Path]:
    return [p.resolve() for p in expand_paths(args.paths)]


def _labels(paths: list[Path], how: str) -> list[str | None]:
    return [p.parent.name for p in paths] if how == "parent" else [None] * len(paths)


def _report_failures(failed: list) -> int:
    for name, error in failed:
        err(f"{name}: {type(error).__name__}: {error}")
    return ExitCode.FAILED if failed else ExitCode.OK


def cmd_build(args: argparse.Namespace) -> int:
    from visor.retrieval import build_index

    paths = _paths(args)
    if not paths:
        err("no images found")
        return ExitCode.FAILED
    root = args.root
    if root is None and all(Path(a).is_dir() for a in args.paths):  # the folders given: paths relative to them
        root = os.path.commonpath([os.fspath(Path(a).resolve()) for a in args.paths])
    index, failed = build_index([str(p) for p in paths], args.out, model=args.model,
                                labels=_labels(paths, args.labels), batch_size=args.batch_size,
                                overwrite=args.overwrite, progress=show_progress(args), root=root)
    with index:
        print(f"{args.out}: {len(index)} images, {index.info.dim}-d {index.info.model} embeddings, "
              f"{'exact' if index.exact else 'approximate'} search")
    return _report_failures(failed)


def cmd_add(args: argparse.Namespace) -> int:
    from visor.retrieval import VectorIndex, add_images

    paths = _paths(args)
    with VectorIndex.open(args.index) as index:
        failed = add_images(index, [str(p) for p in paths], labels=_labels(paths, args.labels),
                            batch_size=args.batch_size, progress=show_progress(args))
        print(f"{args.index}: {len(index)} images")
    return _report_failures(failed)


def cmd_remove(args: argparse.Namespace) -> int:
    from visor.retrieval import VectorIndex

    with VectorIndex.open(args.index) as index:
        removed = index.remove([index.relative(p) for p in args.paths])
        print(f"{args.index}: removed {removed}, {len(index)} images left")
    return ExitCode.OK


def cmd_info(args: argparse.Namespace) -> int:
    from visor.retrieval import VectorIndex

    with VectorIndex.open(args.index) as index:
        print(json.dumps({**index.info.to_dict(), "exact_search": index.exact}, indent=2))
    return ExitCode.OK


def cmd_search(args: argparse.Namespace) -> int:
    from visor.retrieval import VectorIndex

    with VectorIndex.open(args.index) as index:
        hits = index.search(args.query, k=args.k)
        root = index.info.root
    if args.json:
        print(json.dumps({"query": args.query, "root": root, "hits": [h.to_dict() for h in hits]}))
    else:
        for h in hits:
            print(f"{h.similarity:.4f}  {h.path}" + (f"  [{h.label}]" if h.label else ""))
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build and update a similarity index of images",
                       description="A folder holding image embeddings (faiss) and their paths (relative to the "
                       "indexed folder) and labels.")
    isub = p.add_subparsers(dest="index_command", required=True, metavar="COMMAND")
    b = isub.add_parser("build", help="embed images into a new index")
    b.add_argument("paths", nargs="+", help="image files, folders or globs")
    add_output_options(b, json=None, out="index folder to create", out_required=True)
    add_model_option(b, "embedding")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index at --out")
    b.add_argument("--root", default=None,
                   help="folder the stored paths are relative to (default: the folder given, or the deepest "
                        "folder holding every image)")
    for q in (b, a := isub.add_parser("add", help="embed more images into an index (same paths are replaced)")):
        q.add_argument("--labels", choices=["none", "parent"], default="none",
                       help="store each image's parent folder name as its label (default none)")
        add_runtime_options(q, threads=False, limits=False, batch_size=32)
        add_progress_options(q)
    b.set_defaults(func=cmd_build)
    a.add_argument("index", help="index folder")
    a.add_argument("paths", nargs="+", help="image files, folders or globs")
    a.set_defaults(func=cmd_add)
    r = isub.add_parser("remove", help="remove images from an index by path")
    r.add_argument("index")
    r.add_argument("paths", nargs="+")
    r.set_defaults(func=cmd_remove)
    i = isub.add_parser("info", help="describe an index (model, size, exact or approximate, recall)")
    i.add_argument("index")
    i.set_defaults(func=cmd_info)

    s = sub.add_parser("search", help="find the images in an index most similar to a query image",
                       description="Search an index built with `visor index build` (cosine similarity).")
    s.add_argument("index", help="index folder")
    s.add_argument("query", help="query image")
    s.add_argument("-k", type=positive_int, default=10, help="how many results (default 10)")
    add_output_options(s, json="document")
    s.set_defaults(func=cmd_search)
