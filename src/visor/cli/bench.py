"""``visor benchmark``: latency, throughput and achieved GFLOP/s per backend, against this machine's peak.

Exit status: 0 when every requested backend ran or was skipped as not applicable (the table says why),
1 when a backend failed; an unknown backend or model raises and ``visor.cli.main.main`` turns it into 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from visor.benchmark import PEAK_SIZE
from visor.cli.common import ExitCode, add_model_option, add_runtime_options, err, model_arg, positive_int


def _batch_sizes(text: str) -> list[int]:
    try:
        return [positive_int(part) for part in text.split(",") if part.strip()] or [1]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"batch sizes: {e}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def cmd_benchmark(args: argparse.Namespace) -> int:
    from visor.benchmark import BenchmarkWarning, parse_backends, run_benchmark
    from visor.models import LicenseWarning

    backends = parse_backends(args.backends)  # a typo fails before the model loads
    model = model_arg(args, "benchmark")

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"visor: benchmark: {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = run_benchmark(
            model, backends=backends, batch_sizes=args.batch_sizes, threads=args.threads,
            seconds=args.seconds, warmup=args.warmup, int8_calibration=args.calibration,
            peak_size=args.peak_size, progress=progress,
        )
    for w in caught:
        if issubclass(w.category, (BenchmarkWarning, LicenseWarning)):
            print(f"visor: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
        if args.json:
            out = Path(args.json)
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(report.to_json() + "\n")
            except OSError as e:
                err(f"cannot write {out}: {e.strerror or e}")
                return ExitCode.FAILED
            progress(f"wrote {out}")
    failed = [b for b in report.backends if b.status == "failed"]
    for b in failed:
        err(f"{b.backend}: {b.message}")
    return ExitCode.FAILED if failed else ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor benchmark`` to the command parser."""
    p = sub.add_parser(
        "benchmark",
        help="measure a model's latency, throughput and GFLOP/s against this machine's peak",
        description=(
            "Benchmark --model (registry name, model folder, card.json or .onnx) on each backend: torch (the PyTorch "
            "eager model, when the model has PyTorch weights), onnx (ONNX Runtime fp32) and onnx-int8 (ONNX Runtime "
            "on a statically quantized copy). Reports latency p50/p99 at batch 1, throughput at each batch size, the "
            "achieved GFLOP/s (2 FLOPs per multiply-add of the Conv/Gemm/MatMul nodes) and its share of this "
            "machine's matrix-multiply peak, measured in the same run with the same threads. Progress goes to "
            "stderr, the table to stdout."
        ),
    )
    add_model_option(p, "classification", role="model", positional=True)
    p.add_argument("--backends", default="torch,onnx,onnx-int8",
                   help="comma-separated: torch, onnx, onnx-int8 (default all three)")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 8, 32], metavar="N,N,...",
                   help="batch sizes for throughput (default 1,8,32; batch 1 is always measured)")
    add_runtime_options(p, limits=False,
                        threads_help="threads for every backend and the peak measurement (default: one per physical "
                                     "core)")
    p.add_argument("--seconds", type=_seconds, default=3.0,
                   help="timed seconds per backend and batch size (default 3; at least 10 runs at batch 1, 3 above)")
    p.add_argument("--warmup", type=_non_negative, default=3, help="untimed runs before each measurement (default 3)")
    p.add_argument("--calibration", default=None, metavar="DATA",
                   help="folder or quoted glob of images to calibrate onnx-int8 on (default: a few built-in "
                        "images, fine for speed but not for accuracy)")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="also write the full report as JSON to OUT ('-': print JSON instead of the table)")
    p.add_argument("--peak-size", type=positive_int, default=PEAK_SIZE, metavar="N",
                   help=f"side of the square matrices multiplied to measure the peak (default {PEAK_SIZE})")
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    p.set_defaults(func=cmd_benchmark)
