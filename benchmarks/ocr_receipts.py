"""OCR on scanned receipts: word precision/recall/F1, CER, line detection and seconds per receipt, per engine.

    python benchmarks/ocr_receipts.py [--data ../shared/data/sroie-dev] [--engines default,tesseract]
                                      [--limit N] [--threads T] [--worst 5] [--json FILE]

Each engine is a name :class:`visor.features.text.TextReader` accepts as ``engine=`` (``pp-ocr``, ``tesseract``),
or a PP-OCR model set of :data:`visor.features.text.MODELS` read with its own detector (``ppocrv4``,
``ppocrv6-small``); ``default`` means the reader's default. An engine that cannot be opened (not installed,
unknown name) gets a row saying why. Each reader is opened once and reads one receipt untimed before the timed
pass. The metrics are
:func:`visor.evaluate.ocr.evaluate_ocr`'s (see that module): micro word precision/recall/F1 over lower-cased
whitespace words, CER of the lines paired at polygon IoU >= 0.5, line precision/recall, median and p90 wall
seconds per receipt (decode included, models loaded).

Target (issue 20): word F1 >= 0.85 and median <= 1.5 s per receipt on 2 cores for the default engine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from visor.benchmark import cpu_name
from visor.errors import VisorError
from visor.evaluate.ocr import OcrReport, evaluate_ocr, load_ocr_dataset

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sroie-dev"


def open_reader(engine: str, threads: int | None):
    """A text reader for ``engine`` (``default``: the reader's default)."""
    from visor.features.text import MODELS, TextReader

    options: dict = {"threads": threads}
    if engine in MODELS:  # a PP-OCR model set with its own detector
        options.update(models=engine, detector=None)
    elif engine != "default":
        options["engine"] = engine
    return TextReader(**options)


def fmt(x: float, spec: str = ".4f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder with img/ and box/ (SROIE layout)")
    ap.add_argument("--engines", default="default", help="comma-separated engine names (default: default)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N receipts (by name)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime / engine threads (default: its choice)")
    ap.add_argument("--worst", type=int, default=5, help="also print the N worst receipts per engine")
    ap.add_argument("--json", type=Path, default=None, help="also write the full reports here (JSON)")
    args = ap.parse_args(argv)

    pages = load_ocr_dataset(args.data)
    if args.limit is not None:
        pages = pages[: args.limit]
    cpu = cpu_name()
    print(f"{len(pages)} receipts from {args.data}; CPU {cpu}, {os.cpu_count()} logical CPUs, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    rows: list[tuple[str, OcrReport | None, str]] = []
    reports: dict[str, dict] = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        try:
            start = time.perf_counter()
            reader = open_reader(engine, args.threads)
            opened = time.perf_counter() - start
            report = evaluate_ocr(reader, pages, warmup=True)
        except (VisorError, ImportError, OSError) as e:
            rows.append((engine, None, f"{type(e).__name__}: {e}"))
            print(f"{engine}: unavailable ({type(e).__name__}: {e})", flush=True)
            continue
        rows.append((engine, report, ""))
        reports[engine] = {**report.to_dict(), "open_seconds": opened}
        print(f"\n{engine} (model {report.model or '?'}, opened in {opened:.2f} s)")
        print(report.format_table(worst=args.worst), flush=True)

    print(f"\nCPU: {cpu}; {len(pages)} receipts; load average at the end "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("| engine | model | word P | word R | word F1 | CER | line P | line R | median s | p90 s | skipped |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for engine, report, why in rows:
        if report is None:
            print(f"| {engine} | unavailable: {why} | | | | | | | | | |")
            continue
        print(f"| {engine} | {report.model} | {fmt(report.word_precision)} | {fmt(report.word_recall)} | "
              f"{fmt(report.word_f1)} | {fmt(report.cer)} | {fmt(report.line_precision)} | "
              f"{fmt(report.line_recall)} | {fmt(report.median_seconds, '.2f')} | {fmt(report.p90_seconds, '.2f')} | "
              f"{len(report.skipped)} |")
    if args.json is not None:
        from visor.io.files import atomic_write

        doc = {"data": str(args.data), "receipts": len(pages), "cpu": cpu, "reports": reports,
               "unavailable": {e: why for e, r, why in rows if r is None}}
        atomic_write(args.json, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return 0 if all(r is not None for _, r, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
