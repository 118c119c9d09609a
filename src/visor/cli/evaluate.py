"""``visor evaluate`` and ``visor monitor``: thin layers over visor.evaluate and visor.monitor."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from visor.cli.common import (
    MODEL_FORMS,
    ExitCode,
    add_model_option,
    add_output_options,
    add_progress_options,
    add_runtime_options,
    default_model,
    err,
    model_arg,
    positive_int,
    show_progress,
)


def data_task(data: str) -> str:
    """The task DATA is labelled for: ``"detection"`` (COCO, YOLO, VOC), ``"segmentation"`` (a mask folder),
    else ``"classification"``."""
    from visor.cli.detection_data import is_detection_data
    from visor.data.segmentation import is_mask_data

    if is_detection_data(data):
        return "detection"
    return "segmentation" if is_mask_data(data) else "classification"


def _model(args: argparse.Namespace) -> str:
    """--model (or the deprecated positional MODEL); by default the default classifier, detector or segmenter,
    by DATA."""
    model = model_arg(args, "evaluate")
    if model is not None:
        return model
    return default_model(data_task(args.data))


def _classes(text: str | None) -> tuple[str, ...] | str | None:
    """--classes: a classes.txt / classes.json file, else comma-separated names."""
    from pathlib import Path

    if text is None or Path(text).is_file():
        return text
    return tuple(n.strip() for n in text.split(",") if n.strip())


def is_tracking_output(path: str | None) -> bool:
    """Whether PATH is a tracker's MOT CSV: a ``.txt`` / ``.csv`` file, or a folder with ``tracks.txt`` (what
    ``visor track --out`` writes) that is not a model folder (no ``card.json``)."""
    if path is None:
        return False
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() in (".txt", ".csv")
    return p.is_dir() and (p / "tracks.txt").is_file() and not (p / "card.json").exists()


def _tracking_files(pred: str, gt: str) -> tuple[Path, Path]:
    """The MOT files of PRED (a file, or a folder with ``tracks.txt``) and GT (a file, or a MOTChallenge
    sequence folder with ``gt/gt.txt``, or a folder with ``gt.txt``)."""
    from visor.errors import InvalidInput

    p = Path(pred)
    if p.is_dir():
        p = p / "tracks.txt"
    g = Path(gt)
    if g.is_dir():
        found = [c for c in (g / "gt" / "gt.txt", g / "gt.txt") if c.is_file()]
        if not found:
            raise InvalidInput(f"{gt}: a ground-truth folder needs gt/gt.txt (MOTChallenge layout) or gt.txt")
        g = found[0]
    elif not g.is_file():
        raise InvalidInput(f"{gt}: no such ground-truth file or folder")
    return p, g


def cmd_evaluate_tracking(args: argparse.Namespace) -> int:
    """``visor evaluate PRED GT``: CLEAR MOT and ID metrics of a tracker's MOT CSV against MOT ground truth."""
    from visor.data.mot import read_mot
    from visor.errors import ConfigError, InvalidInput
    from visor.evaluate.tracking import evaluate_tracking

    if args.model is not None:
        raise ConfigError("--model does not apply to 'visor evaluate PRED GT' (a tracker's MOT CSV is scored as it "
                          "is); run 'visor track --model M SOURCE --out DIR' first")
    if not 0.0 < args.iou <= 1.0:
        raise ConfigError(f"--iou must be in (0, 1], got {args.iou}")
    try:
        pred_path, gt_path = _tracking_files(args.model_positional, args.data)
        gt = read_mot(gt_path, min_confidence=None if args.all_gt_rows else 1.0)
        pred = read_mot(pred_path)
        report = evaluate_tracking(gt, pred, iou_threshold=args.iou)
    except InvalidInput as e:
        err(str(e))
        return ExitCode.FAILED
    if args.json:
        doc = {"prediction": str(pred_path), "ground_truth": str(gt_path),
               "ground_truth_rows": "all" if args.all_gt_rows else "confidence >= 1", **report.to_dict()}
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        print(f"{pred_path} against {gt_path}")
        print(report.format_table())
    return ExitCode.OK


def ocr_evaluation(args: argparse.Namespace) -> tuple[str, str | None] | None:
    """What ``visor evaluate`` scores when it is OCR: ``("read", None)`` for DATA with img/ and box/,
    ``("read", IMAGES)`` for ``IMAGES BOXES`` (a folder of images and a folder of box CSVs), ``("boxes", PRED)``
    for ``PRED GT`` where PRED is a folder of predicted box CSVs (and no images); None otherwise."""
    from visor.evaluate.ocr import is_box_folder, is_ocr_data

    first = getattr(args, "model_positional", None)
    if first is None:
        return ("read", None) if is_ocr_data(args.data) else None
    if is_box_folder(first) and (is_ocr_data(args.data) or is_box_folder(args.data)):
        return ("boxes", first)
    return ("read", first) if Path(first).is_dir() and is_box_folder(args.data) else None


def cmd_evaluate_ocr(args: argparse.Namespace, how: tuple[str, str | None]) -> int:
    """``visor evaluate`` on OCR data: word precision/recall/F1, CER, line precision/recall and time per page."""
    from visor.errors import ConfigError, InvalidInput
    from visor.evaluate.ocr import evaluate_ocr, is_ocr_data, load_box_predictions, load_ocr_dataset

    if args.model is not None:
        raise ConfigError("--model does not apply to OCR data; choose the text engine with --engine")
    if not 0.0 < args.iou <= 1.0:
        raise ConfigError(f"--iou must be in (0, 1], got {args.iou}")
    mode, first = how
    try:
        if mode == "boxes":
            if args.engine is not None:
                raise ConfigError("--engine does not apply to predicted box files (they are scored as they are)")
            gt_pages = (load_ocr_dataset(args.data) if is_ocr_data(args.data)
                        else list(load_box_predictions(args.data).values()))
            report = evaluate_ocr(load_box_predictions(first), gt_pages, iou_threshold=args.iou)
        else:
            from visor.features.text import TextReader

            pages = load_ocr_dataset(args.data) if first is None else load_ocr_dataset(first, args.data)
            options: dict = {"threads": args.threads}
            if args.engine is not None:
                options["engine"] = args.engine
            reader = TextReader(**options)
            bar = None
            if show_progress(args, len(pages)):
                from tqdm import tqdm

                bar = tqdm(total=len(pages), unit="page", file=sys.stderr)
            report = evaluate_ocr(reader, pages, iou_threshold=args.iou,
                                  progress=None if bar is None else lambda done, total: bar.update(1))
            if bar is not None:
                bar.close()
    except InvalidInput as e:
        err(str(e))
        return ExitCode.FAILED
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(report.format_table())
    for name, reason in report.skipped:
        err(f"skipped unreadable {name}: {reason}")
    return ExitCode.OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    if is_tracking_output(getattr(args, "model_positional", None)):
        return cmd_evaluate_tracking(args)
    ocr = ocr_evaluation(args)
    if ocr is not None:
        return cmd_evaluate_ocr(args, ocr)
    if args.engine is not None:
        from visor.errors import ConfigError

        raise ConfigError("--engine applies to OCR data only (a folder with img/ and box/, or IMAGES BOXES)")
    from visor.evaluate.corruptions import CORRUPTIONS
    from visor.evaluate.pipeline import EvaluationOptions, parse_names, run_evaluation

    options = EvaluationOptions(
        split=args.split, by=tuple(args.by or ()), subgroup_metric=args.subgroup_metric,
        min_group_size=args.min_group_size, metadata=args.metadata, resamples=args.resamples, level=args.ci_level,
        seed=args.seed,
        corruptions=parse_names(args.corruptions, CORRUPTIONS), report=args.report, model_card=args.model_card,
        profile=args.profile, out=args.out, batch_size=args.batch_size, classes=_classes(args.classes),
        ignore_index=args.ignore_index,
    )
    run = run_evaluation(_model(args), args.data, options, threads=args.threads, progress=show_progress(args))
    result = run.result
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.format_table())
        for what, path in run.written.items():
            print(f"{what.replace('_', ' ')} written to {path}")
    from visor.evaluate.segmenter import SegmenterEvaluation

    # a segmentation item can be left out for more than an unreadable file (missing mask, size, values)
    what = "left out" if isinstance(result, SegmenterEvaluation) else "skipped unreadable"
    for path, reason in result.skipped:
        err(f"{what} {path}: {reason}")
    for item, reason in getattr(result, "problems", ()):
        err(f"data problem {item}: {reason}")
    return ExitCode.OK


def cmd_monitor(args: argparse.Namespace) -> int:
    from visor.batch.inputs import iter_inputs
    from visor.monitor import DriftProfile
    from visor.monitor.collect import monitor

    profile = DriftProfile.load(args.profile)
    report, got = monitor(profile, list(iter_inputs(args.inputs)), batch_size=args.batch_size,
                          progress=show_progress(args), threads=args.threads,
                          classifier=None if args.model is None else _load(args.model, args.threads))
    if args.json:
        print(json.dumps({**report.to_dict(), "profile": args.profile, "model": profile.model,
                          "skipped_files": [list(s) for s in got.skipped]}, indent=2))
    else:
        print(f"profile {args.profile} (model {profile.model}, reference {profile.source or 'unknown'})")
        print(report.format_table())
    for path, reason in got.skipped:
        err(f"skipped unreadable {path}: {reason}")
    return ExitCode.ALERT if args.fail_on_alert and report.alert else ExitCode.OK


def _load(model: str, threads: int | None):
    from visor.models import load

    return load(model, threads=threads)


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure a model: metrics with CIs, subgroups, robustness, report",
        description=(
            "Evaluate --model (a registry name, a run folder or an ONNX file; by default the built-in classifier for "
            "a classification dataset, the built-in detector for a detection dataset and the built-in segmenter for "
            "a mask dataset) on DATA. A classifier is "
            "measured on a folder of class folders or a CSV/JSONL manifest path,label[,split][,metadata...]; a "
            "detector on a COCO, YOLO or VOC dataset (COCO AP, AP50 with a bootstrap interval over images, and AP50 "
            "per --by group from --metadata); a segmenter on a mask dataset (images/ + masks/ with the same stems, "
            "CamVid's train/ + trainannot/, or a COCO JSON rasterised to masks; classes matched to the model's "
            "labels by name): mIoU, per-class IoU, pixel accuracy and mean Dice over all pixels (ignored pixels "
            "left out), bootstrap intervals over images, the pixel confusion matrix, mIoU per --by group, and the "
            "worst images (overlays in the --report page). For a classifier: accuracy, top-5, macro and per-class "
            "precision/recall/F1, the confusion matrix, and expected calibration error (15 bins) before and after the"
            " model's temperature scaling, each headline metric with a seeded 95% bootstrap confidence interval. --by"
            " COLUMN reports a metric per value of a manifest column, flags groups whose interval lies below the best"
            " group's, and marks groups too small to judge. --corruptions measures accuracy under a seeded mini "
            "ImageNet-C (8 corruptions x 5 severities). --report writes a self-contained HTML page and a Markdown "
            "model card; --profile keeps a reference profile for 'visor monitor' and 'visor serve --drift-profile'. "
            "'visor evaluate PRED GT' scores a tracker instead: PRED a MOT CSV (frame,id,x,y,w,h,conf,...; "
            "'tracks.txt' or the 'visor track --out' folder holding it), GT MOT ground truth (a gt.txt, or a "
            "MOTChallenge sequence folder with gt/gt.txt; rows with confidence 0 are ignored unless --all-gt-rows): "
            "MOTA, MOTP, IDF1, IDP, IDR, ID switches, false positives, misses, mostly tracked/partially tracked/"
            "mostly lost, fragmentations and HOTA, at IoU >= --iou. "
            "OCR data (a folder with img/ and box/, SROIE's layout, or 'visor evaluate IMAGES BOXES': an images "
            "folder and a folder of box CSVs x1,y1,...,x4,y4,transcript with the same stems) is read with the text "
            "reader (--engine) and scored: word precision/recall/F1 (lower-cased whitespace words, multiset "
            "matches), the character error rate of lines paired at polygon IoU >= --iou, line precision/recall, "
            "seconds per page (median, p90) and the worst pages; 'visor evaluate PRED GT' with PRED a folder of "
            "predicted box CSVs scores those as they are."
        ),
    )
    c, d, s = default_model("classification"), default_model("detection"), default_model("segmentation")
    add_model_option(p, None, default=None, positional=True,
                     help_text=f"the model to evaluate: {MODEL_FORMS} (default {c} for a classification dataset, "
                               f"{d} for a detection dataset, {s} for a mask dataset)")
    p.add_argument("data", metavar="DATA", help="a folder of class folders, a CSV/JSONL manifest, a COCO, YOLO or "
                                                "VOC detection dataset, or a mask dataset; after a tracker's PRED "
                                                "(visor evaluate PRED GT), MOT ground truth")
    p.add_argument("--split", help="evaluate only this split of DATA (e.g. test)")
    p.add_argument("--by", action="append", metavar="COLUMN",
                   help="report per value of this manifest column (repeat for several columns)")
    p.add_argument("--subgroup-metric", choices=["accuracy", "macro_f1"], default="accuracy",
                   help="metric compared across groups (default accuracy)")
    p.add_argument("--min-group-size", type=positive_int, default=30,
                   help="groups with fewer images are reported but marked too small to judge (default 30)")
    p.add_argument("--metadata", metavar="FILE",
                   help="per-image metadata columns for --by from a CSV/JSONL file with a path or file_name column "
                        "(for class folders and detection sets; a manifest's own columns work without it)")
    p.add_argument("--resamples", type=positive_int, default=None,
                   help="bootstrap resamples (default 1000 for a classifier or segmenter, 200 for a detector)")
    p.add_argument("--classes", default=None, metavar="FILE|A,B,...",
                   help="mask data: class names in id order, or a classes.txt/classes.json file (default: "
                        "classes.txt/classes.json in DATA, else from the masks); matched to the model's labels by name")
    p.add_argument("--ignore-index", type=int, default=None,
                   help="mask data: the mask value of ignored pixels, left out of every metric (default 255; "
                        "CamVid: 11)")
    p.add_argument("--ci-level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the corruptions (default 0)")
    p.add_argument("--corruptions", nargs="?", const="all", metavar="NAMES",
                   help="measure robustness: 'all' (the default when given without a value) or a comma-separated "
                        "list from gaussian_noise, defocus_blur, motion_blur, jpeg_compression, brightness, "
                        "contrast, pixelate, fog")
    p.add_argument("--report", metavar="HTML", help="write a self-contained HTML report (and model_card.md beside it)")
    p.add_argument("--model-card", metavar="MD", help="write the Markdown model card here")
    p.add_argument("--profile", metavar="FILE", help="write a drift profile of this evaluation (.safetensors)")
    p.add_argument("--iou", type=float, default=0.5,
                   help="tracking (PRED GT) and OCR data: the IoU a predicted box needs with a ground-truth box "
                        "to match it (default 0.5)")
    p.add_argument("--engine", default=None, metavar="NAME",
                   help="OCR data: the text engine to read with (default: the text reader's default)")
    p.add_argument("--all-gt-rows", action="store_true",
                   help="tracking (PRED GT): keep every ground-truth row (default: only rows with confidence 1, "
                        "as MOTChallenge marks boxes to ignore with 0)")
    add_output_options(p, json="document", out="also write report.json, confusion.png and reliability.png here")
    add_runtime_options(p, limits=False, batch_size=32)
    add_progress_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "monitor",
        help="check recent images for drift against a profile",
        description=(
            "Compare RECENT images (folders, globs, files or manifests) with a drift PROFILE written by "
            "'visor evaluate --profile': the population stability index (PSI) of the confidence distribution, "
            "the predicted-class mix and the images' brightness, contrast and sharpness, and an embedding-shift "
            "score (MMD² with a permutation p-value). It alerts when a PSI exceeds 0.2 and its own 99th percentile "
            "under no change for these sample sizes, or when the embedding p-value is below 0.01; fewer than 50 "
            f"images are too few to judge. Exit code {ExitCode.ALERT.value} on an alert with --fail-on-alert."
        ),
    )
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("inputs", nargs="+", metavar="RECENT")
    add_model_option(p, None, default=None,
                     help_text=f"classifier to run: {MODEL_FORMS} (default: the profile's model)")
    add_output_options(p, json="document")
    p.add_argument("--fail-on-alert", action="store_true",
                   help=f"exit with code {ExitCode.ALERT.value} when it alerts")
    add_runtime_options(p, limits=False, batch_size=32)
    add_progress_options(p)
    p.set_defaults(func=cmd_monitor)
