"""``visor models``: list the registry and whether each model's weights are here; ``pull`` and ``import`` them.

Exit status: 0 on success; 1 when a download or an import failed (one line each on stderr, nothing placed);
an unknown model name raises ``ModelNotFound`` and ``visor.cli.main.main`` turns it into 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visor.cli.common import ExitCode, add_output_options, add_progress_options, err
from visor.errors import VisorError
from visor.models.card import ModelCard
from visor.models.registry import builtin
from visor.models.weights import import_file, import_files, import_folder, is_present, pull


def _weights_state(card: ModelCard) -> str:
    """What the list shows: ``present`` / ``absent`` (URL weights in the cache), ``installed`` / ``not
    installed`` (weights shipped in a package), ``present`` / ``absent`` (a path)."""
    here = is_present(card.weights)
    if card.weights.kind == "package":
        return "installed" if here else "not installed"
    return "present" if here else "absent"


def _card_summary(card: ModelCard) -> dict:
    d = card.to_dict()
    d["labels"] = len(card.labels)
    d["present"] = is_present(card.weights)
    return d


def cmd_list(args: argparse.Namespace) -> int:
    cards = list(builtin())
    if args.json:
        print(json.dumps([_card_summary(c) for c in cards], indent=2))
        return ExitCode.OK
    rows = [("NAME", "TASK", "ARCHITECTURE", "INPUT", "CLASSES", "LICENSE", "WEIGHTS", "REFERENCE")]
    absent = []
    for c in cards:
        h, w = c.preprocess.input_size
        ref = ", ".join(f"{k}={v:g}" for k, v in c.metrics.items() if isinstance(v, int | float))
        state = _weights_state(c)
        if state == "absent":
            absent.append(c.name)
        rows.append((c.name, c.task, c.architecture, f"{h}x{w}", str(c.num_classes), c.license, state, ref))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(r[:-1])) + "  " + r[-1])
    if absent:
        print(f"\nabsent weights download on first use; fetch them now with `visor models pull {' '.join(absent)}`, "
              "or without internet `visor models import NAME FILE` (or a folder of files)")
    return ExitCode.OK


def cmd_pull(args: argparse.Namespace) -> int:
    registry = builtin()
    if args.all == bool(args.names):
        args.usage_error("name the models to pull, or pass --all (not both)")
    cards = list(registry) if args.all else [registry.get(n) for n in dict.fromkeys(args.names)]
    failed = 0
    for card in cards:
        try:
            path = pull(card, progress=args.progress)
        except VisorError as e:
            failed += 1
            err(f"{card.name}: {type(e).__name__}: {e}")
            continue
        how = "from the package" if card.weights.kind == "package" else "in the cache"
        print(f"{card.name}: {how} at {path}", flush=True)
    return ExitCode.FAILED if failed else ExitCode.OK


def cmd_import(args: argparse.Namespace) -> int:
    registry = builtin()
    if len(args.paths) == 2:
        card = registry.get(args.paths[0])
        try:
            path = import_file(card, args.paths[1])
        except VisorError as e:
            err(f"{type(e).__name__}: {e}")
            return ExitCode.FAILED
        print(f"{card.name}: imported {args.paths[1]} -> {path}")
        return ExitCode.OK
    if len(args.paths) != 1:
        args.usage_error("give NAME FILE, or a FOLDER of weights files")
    source = Path(args.paths[0])
    # one file: whichever card it is, by its sha256; a folder: every file in it
    report = import_files([source], registry) if source.is_file() else import_folder(source, registry)
    for item in report.imported:
        print(f"{item.name}: imported {item.source} -> {item.target}")
    for path in report.skipped:
        print(f"skipped {path}: its sha256 matches no model card")
    if source.is_dir() and report.missing:
        print(f"still absent: {', '.join(report.missing)}")
    if not report.imported:
        what = "it is not" if source.is_file() else "no file in it is"
        err(f"nothing was imported from {source}: {what} the weights of a model card")
        return ExitCode.FAILED
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models", help="list the built-in models; pull or import their weights",
        description=("List the model registry with each model's task, licence and whether its weights are here "
                     "(URL weights: in the cache, $VISOR_CACHE or ~/.cache/visor; package weights: the package is "
                     "installed). 'visor models pull' downloads weights; 'visor models import' places files fetched "
                     "elsewhere, for machines without internet. URL weights otherwise download on first use, "
                     "unless VISOR_OFFLINE=1."),
    )
    add_output_options(p, json="document")
    p.set_defaults(func=cmd_list)
    verbs = p.add_subparsers(dest="models_command", metavar="{list,pull,import}")

    q = verbs.add_parser("list", help="list the models (the default)", description="List the model registry.")
    add_output_options(q, json="document")
    q.set_defaults(func=cmd_list)

    q = verbs.add_parser(
        "pull", help="download models' weights into the cache",
        description=("Download each model's weights into the cache: resumable (a .part file is kept beside the "
                     "target and continued next time), checked against the card's sha256, then moved into place. "
                     "Exit status 1 when a download failed (nothing placed)."),
    )
    q.add_argument("names", nargs="*", metavar="NAME", help="registry models (see 'visor models')")
    q.add_argument("--all", action="store_true", help="every model in the registry")
    add_progress_options(q)
    q.set_defaults(func=cmd_pull, usage_error=q.error)

    q = verbs.add_parser(
        "import", help="place weights files fetched elsewhere into the cache (no internet needed)",
        usage="%(prog)s NAME FILE\n       %(prog)s FOLDER | FILE",
        description=("'visor models import NAME FILE' checks FILE against NAME's sha256 and copies it into the cache "
                     "where 'visor.load(NAME)' looks. 'visor models import FOLDER' imports every file in FOLDER "
                     "(and below) that is the weights of a model card, and lists the others as skipped; a single "
                     "FILE is matched the same way. Exit status 1 when a file does not match (nothing placed)."),
    )
    q.add_argument("paths", nargs="+", metavar="ARG", help="NAME FILE: a registry model and its weights file; FOLDER: "
                   "weights files matched to the cards by sha256 (FILE alone: the same for one file)")
    q.set_defaults(func=cmd_import, usage_error=q.error)
