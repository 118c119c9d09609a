"""Receipt fields (``visor receipt``): exact-match accuracy of company, date, address and total on SROIE receipts.

    python benchmarks/receipt_fields.py [--data ../shared/data/sroie-dev] [--limit N] [--engine NAME] [--misses FIELD]

Each receipt (``img/NAME.jpg``) is read with :class:`visor.features.text.TextReader` (the default engine unless
``--engine``), :func:`visor.features.receipt.extract_receipt` picks the fields, and each is compared with
``key/NAME.json`` exactly (the value as printed against the key's string; a field not found counts as wrong).
The same rules on the ground-truth transcripts (``box/NAME.csv``: perfect OCR) give the rules' own ceiling.
Also printed: the case-insensitive match (SROIE's keys write company names in capitals; receipts often print
"Sdn Bhd"). Target (issue 20): date and total >= 0.80, company >= 0.60.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from visor.benchmark import cpu_name
from visor.evaluate.ocr import read_box_csv
from visor.features.receipt import extract_receipt
from visor.types.text import TextLines

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sroie-dev"
FIELDS = ("company", "date", "address", "total")


def score(found: dict[str, dict[str, str | None]], keys: dict[str, dict[str, str]]) -> tuple[dict, dict]:
    """Exact and case-insensitive accuracy per field over the receipts in ``keys``."""
    exact = {f: sum((found[n][f] or "") == keys[n].get(f, "") for n in keys) / len(keys) for f in FIELDS}
    folded = {f: sum((found[n][f] or "").casefold() == keys[n].get(f, "").casefold() for n in keys) / len(keys)
              for f in FIELDS}
    return exact, folded


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder with img/, box/ and key/ (SROIE)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N receipts (by name)")
    ap.add_argument("--engine", default=None, help="the OCR engine (default: the reader's)")
    ap.add_argument("--misses", default=None, choices=FIELDS, help="also list the receipts this field missed")
    args = ap.parse_args(argv)

    from visor.features.text import TextReader

    names = sorted(p.stem for p in (args.data / "key").glob("*.json"))[: args.limit]
    keys = {n: json.loads((args.data / "key" / f"{n}.json").read_text(encoding="utf-8")) for n in names}
    reader = TextReader(**({} if args.engine is None else {"engine": args.engine}))
    print(f"{len(names)} receipts from {args.data}; CPU {cpu_name()}, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    read: dict[str, dict] = {}
    oracle: dict[str, dict] = {}
    start = time.perf_counter()
    for n in names:
        read[n] = extract_receipt(reader.read(args.data / "img" / f"{n}.jpg")).values()
        polygons, text = read_box_csv(args.data / "box" / f"{n}.csv")
        lines = TextLines(np.asarray(polygons, np.float32), np.array(text, dtype=object),
                          np.ones(len(text), np.float32))
        oracle[n] = extract_receipt(lines).values()
    print(f"read in {time.perf_counter() - start:.0f} s")
    print("| text | " + " | ".join(FIELDS) + " |")
    print("|---|" + "---|" * len(FIELDS))
    for label, found in (("OCR (" + (args.engine or "default") + ")", read), ("ground-truth text", oracle)):
        exact, folded = score(found, keys)
        print(f"| {label}, exact | " + " | ".join(f"{exact[f]:.2f}" for f in FIELDS) + " |")
        print(f"| {label}, any case | " + " | ".join(f"{folded[f]:.2f}" for f in FIELDS) + " |")
    if args.misses:
        for n in names:
            if (read[n][args.misses] or "") != keys[n].get(args.misses, ""):
                print(f"{n}: {read[n][args.misses]!r} (key {keys[n].get(args.misses)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
