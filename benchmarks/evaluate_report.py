"""The whole ``visor evaluate`` on imagenette-dev val: subgroups, all corruptions, report, card, drift.

    python benchmarks/evaluate_report.py [--data DIR] [--out DIR] [--darken 0.06] [--resamples 1000]

1. Writes a manifest of the 150 val images with a synthetic ``lighting`` column: every third image is
   a darkened copy (PIL brightness x``--darken``) in group "dark", the others "office" / "daylight".
2. Runs :func:`visor.evaluate.pipeline.run_evaluation` with ``--by lighting``, all 8 corruptions x 5
   severities, the HTML report, the model card and a drift profile, and prints the time, the subgroup
   table and the corruption table.
3. Opens the report in headless Chromium (Debian's /usr/bin/chromium, or $VISOR_CHROMIUM) through
   Playwright, counts console errors and page errors, and saves a full-page screenshot.
4. Runs ``visor.monitor`` against the profile with the plain val images, a darkened copy of all of them
   and a blurred copy, and prints each drift report.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-dev"
CHROMIUM = os.environ.get("VISOR_CHROMIUM", "/usr/bin/chromium")


def _altered(rows: list[dict], folder: Path, kind: str, darken: float) -> list[dict]:
    from PIL import Image, ImageEnhance, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for row in rows:
        with Image.open(row["path"]) as im:
            im = im.convert("RGB")
            im = (ImageEnhance.Brightness(im).enhance(darken) if kind == "dark"
                  else im.filter(ImageFilter.GaussianBlur(3.0)))
            path = folder / f"{Path(row['path']).stem}.jpg"
            im.save(path, quality=95)
        out.append({**row, "path": str(path)})
    return out


def _screenshot(report: Path, shot: Path) -> tuple[int, int]:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.resolve().as_uri())
        charts = page.eval_on_selector_all("svg", "els => els.filter(e => e.getBoundingClientRect().width > 0).length")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    for e in errors:
        print(f"  browser error: {e}")
    return len(errors), charts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=None, help="keep the outputs here (default: a temporary folder)")
    ap.add_argument("--darken", type=float, default=0.06)
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()

    import visor
    from visor.evaluate.pipeline import EvaluationOptions, run_evaluation
    from visor.monitor import DriftProfile
    from visor.monitor.collect import monitor

    out = args.out or Path(tempfile.mkdtemp(prefix="visor-evaluate-"))
    out.mkdir(parents=True, exist_ok=True)
    model = visor.load("efficientnet_lite0")
    classes = json.loads((args.data / "classes.json").read_text())
    val = [{"path": str(f), "label": model.labels[info["imagenet_index"]], "split": "val"}
           for synset, info in sorted(classes.items()) for f in sorted((args.data / "val" / synset).iterdir())]
    dark = _altered(val, out / "dark", "dark", args.darken)
    rows = [{**(d if i % 3 == 0 else r), "lighting": ("dark", "office", "daylight")[i % 3]}
            for i, (r, d) in enumerate(zip(val, dark, strict=True))]
    manifest = out / "val_lighting.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    from visor.evaluate.corruptions import CORRUPTIONS

    options = EvaluationOptions(by=("lighting",), resamples=args.resamples, corruptions=CORRUPTIONS,
                                report=str(out / "report.html"), profile=str(out / "profile.safetensors"))
    start = time.perf_counter()
    run = run_evaluation("efficientnet_lite0", manifest, options, model=model, progress=True)
    seconds = time.perf_counter() - start
    r = run.result
    print(f"\nvisor evaluate: {r.report.num_samples} images, {len(CORRUPTIONS)} corruptions x 5 severities, "
          f"{args.resamples} bootstrap resamples: {seconds:.1f} s")
    print(f"accuracy {r.report.accuracy:.4f}, 95% CI {r.intervals['accuracy']}")
    print(r.subgroups[0].format_table())
    print(r.corruptions.format_table())
    for what, path in run.written.items():
        print(f"{what}: {path} ({path.stat().st_size / 1024:.0f} KiB)")

    if Path(CHROMIUM).is_file():
        n_errors, charts = _screenshot(out / "report.html", out / "report.png")
        print(f"chromium: {n_errors} console/page errors, {charts} charts rendered; screenshot {out / 'report.png'}")
    else:
        print(f"chromium: {CHROMIUM} missing, no screenshot")

    profile = DriftProfile.load(out / "profile.safetensors")
    # a profile of the plain val images, as a user would keep one, for the drift checks
    from visor.monitor.collect import build_profile

    plain = build_profile(model, [r["path"] for r in val], source="imagenette-dev val")
    plain.save(out / "val_profile.safetensors")
    blurred = _altered(val, out / "blur", "blur", args.darken)
    all_dark = _altered(val, out / "dark_all", "dark", args.darken)
    for name, prof, paths in [("val vs itself", plain, [r["path"] for r in val]),
                              ("val vs darkened val", plain, [r["path"] for r in all_dark]),
                              ("val vs blurred val", plain, [r["path"] for r in blurred]),
                              ("lighting-mix profile vs plain val", profile, [r["path"] for r in val])]:
        start = time.perf_counter()
        report, _ = monitor(prof, paths, classifier=model)
        print(f"\n== drift: {name} ({time.perf_counter() - start:.1f} s)\n{report.format_table()}")


if __name__ == "__main__":
    main()
