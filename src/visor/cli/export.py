"""``visor export``: write a model as a checked ONNX model folder, fp32 or static INT8.

Exit status: 0 when the model was exported, 1 when a check failed (nothing written; the
numbers on stderr); a bad argument, unknown model or existing output raises and
``visor.cli.main.main`` turns it into 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visor.cli.common import (
    ExitCode,
    add_model_option,
    add_output_options,
    default_model,
    err,
    fraction,
    model_arg,
)
from visor.config import suggest
from visor.train.export import MAX_ABS_DIFF, MAX_ACCURACY_DROP, MIN_TOP1_AGREEMENT, image_count

FORMATS = ("onnx",)


def export_format(text: str) -> str:
    """``--format``: one of :data:`FORMATS`, with a suggestion for a near miss."""
    value = text.strip().lower()
    if value not in FORMATS:
        raise argparse.ArgumentTypeError(
            f"unknown format {text!r}; visor exports: {', '.join(FORMATS)}.{suggest(value, FORMATS)}"
        )
    return value


def default_out(model: str, int8: bool) -> Path:
    """``./<model name>-onnx`` or ``./<model name>-int8``; a model path gives its folder's name."""
    path = Path(model)
    name = path.name if path.is_dir() else path.parent.name if path.is_file() else path.name
    return Path(f"{name or 'model'}-{'int8' if int8 else 'onnx'}")


def _print_checks(checks: dict) -> None:
    parity = checks.get("fp32_vs_pytorch", {})
    if "skipped" in parity:
        print(f"  fp32 vs PyTorch: skipped ({parity['skipped']})")
    elif parity:
        print(f"  fp32 vs PyTorch: max |logit diff| {parity['max_abs_diff']:.3g} "
              f"(tolerance {parity['tolerance']:g}, {image_count(parity['images'])})")
    if "calibration" in checks:
        print(f"  calibration: {image_count(checks['calibration']['images'])}")
    quant = checks.get("quantization")
    if quant:
        print(f"  weights: {quant['weights']}, per channel ({quant['chosen']}: {quant['why']})")
    agree = checks.get("int8_vs_fp32")
    if agree:
        print(f"  INT8 vs fp32: top-1 agreement {agree['top1_agreement']:.1%} "
              f"(min {agree['min_top1_agreement']:.1%}, {image_count(agree['images'])}, {agree['on']})")
    acc = checks.get("accuracy")
    if acc and "top1_int8" in acc:
        print(f"  top-1 accuracy: {acc['top1_fp32']:.2f}% fp32 -> {acc['top1_int8']:.2f}% INT8 "
              f"({acc['change']:+.2f} points, at most -{acc['max_drop']:g}; {image_count(acc['images'])})")
    elif acc:
        print(f"  top-1 accuracy: {acc['top1_fp32']:.2f}% ({image_count(acc['images'])})")


def cmd_export(args: argparse.Namespace) -> int:
    from visor.train.export import ExportCheckFailed, export_model

    model = model_arg(args, "export")
    out = Path(args.out) if args.out else default_out(model, args.int8)
    try:
        report = export_model(
            model, out, int8=args.int8, calibration=args.calibration, labelled=args.labelled,
            label_map=args.label_map, max_abs_diff=args.max_abs_diff, min_top1_agreement=args.min_top1_agreement,
            max_accuracy_drop=args.max_accuracy_drop, overwrite=args.overwrite, reduce_range=args.int8_reduce_range,
        )
    except ExportCheckFailed as e:
        if args.json:
            print(json.dumps({"out": str(out), "checks": e.checks, "passed": False, "error": e.to_dict()}, indent=2))
        else:
            _print_checks(e.checks)
        err(f"{e} (nothing written)")
        return ExitCode.FAILED
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"exported {report.card.name} ({report.checks['precision']}, opset {report.checks['opset']}) "
              f"to {report.out}")
        _print_checks(report.checks)
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor export`` to the command parser."""
    p = sub.add_parser(
        "export",
        help="export a classifier to ONNX (fp32 or static INT8), with parity checks",
        description=(
            "Export --model (registry name or model folder) as a folder with model.onnx (opset 17, dynamic batch) "
            "and card.json, loadable with 'visor classify --model DIR'. Every export is checked: fp32 ONNX "
            "against PyTorch (max abs logit difference), and for --int8 the top-1 agreement with fp32 and, "
            "with --labelled, the top-1 accuracy change. The results go into the card; an export that fails "
            "a check is refused and nothing is written (exit status 1)."
        ),
    )
    add_model_option(p, "classification", positional=True,
                     help_text="classifier to export: a registry name (see 'visor models'), a model folder or a "
                               f"card.json (default {default_model('classification')})")
    p.add_argument("--format", type=export_format, default="onnx", help="output format: onnx (default)")
    p.add_argument("--int8", action="store_true",
                   help="quantize to static INT8 (QDQ, per-channel weights), calibrated on --calibration")
    p.add_argument("--calibration", default=None, metavar="DATA",
                   help="calibration images for --int8 (also used for the fp32 check): a folder, quoted glob or "
                        "CSV/JSONL manifest; the first 200 readable images are used, a few per class is enough")
    p.add_argument("--labelled", default=None, metavar="DATA",
                   help="labelled images (class folders or a manifest) to measure top-1 accuracy and its change")
    p.add_argument("--label-map", default=None, metavar="JSON",
                   help="JSON file mapping --labelled labels to the model's class ids or labels, "
                        'e.g. {"n01440764": 0}')
    add_output_options(p, json=None,
                       out="output folder (default ./NAME-onnx or ./NAME-int8); must not exist unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder at --out")
    p.add_argument("--max-abs-diff", type=float, default=MAX_ABS_DIFF,
                   help=f"largest logit difference allowed between fp32 ONNX and PyTorch (default {MAX_ABS_DIFF:g})")
    p.add_argument("--min-top1-agreement", type=fraction, default=MIN_TOP1_AGREEMENT,
                   help="smallest share of images where INT8 and fp32 agree on the top-1 class "
                        f"(default {MIN_TOP1_AGREEMENT:g})")
    p.add_argument("--max-accuracy-drop", type=float, default=MAX_ACCURACY_DROP,
                   help="largest top-1 accuracy drop allowed for INT8 on --labelled, in points "
                        f"(default {MAX_ACCURACY_DROP:g})")
    p.add_argument("--int8-reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit INT8 weights, which ONNX Runtime's INT8 kernels cannot saturate on CPUs without VNNI "
                        "(default: on unless this CPU has VNNI; the choice is recorded in the card)")
    add_output_options(p, json="document")
    p.set_defaults(func=cmd_export)
