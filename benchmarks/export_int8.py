"""INT8 EfficientNet-Lite0 vs fp32 ONNX: top-1 on imagenette-dev and latency at batch 1.

Exports the model twice with ``visor.train.export.export_model`` (fp32, and INT8
calibrated on the first ``--per-class`` train images of each class), then:

* top-1 of both on all 450 imagenette-dev images (train + val) and on the 150 val images,
  with the ImageNet class ids from classes.json, and their top-1 agreement;
* latency at batch 1 with ``--threads`` ONNX Runtime threads: fp32 and INT8 runs interleaved
  (so both see the same machine load), p50, p90 and min of ``--runs`` runs each, and the
  speed-up of the p50s. On a shared machine, compare the min too: other work inflates the p50s.

    python benchmarks/export_int8.py [--data DIR] [--per-class 10] [--runs 500] [--threads 2] [--json FILE]

The target: INT8 loses at most 1.0 point of top-1 and is at least 1.5x faster than fp32 at
batch 1 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import visor
from visor.models.runtime import OnnxSession
from visor.train.export import export_model, labelled_targets, run_logits

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-dev"


def latencies(sessions: list[OnnxSession], x: np.ndarray, runs: int, warmup: int = 50) -> list[list[float]]:
    """Seconds per run of each session on ``x``, interleaved run by run."""
    for s in sessions:
        for _ in range(warmup):
            s.run(x)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for s, t in zip(sessions, times, strict=True):
            start = time.perf_counter()
            s.run(x)
            t.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--per-class", type=int, default=10, help="calibration images per class, from train")
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    classes = json.loads((args.data / "classes.json").read_text())
    label_map = {synset: info["imagenet_index"] for synset, info in classes.items()}
    calibration = [p for d in sorted((args.data / "train").iterdir()) for p in sorted(d.iterdir())[: args.per_class]]

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        fp32 = export_model(args.model, Path(tmp) / "fp32")
        t_fp32 = time.perf_counter() - t
        t = time.perf_counter()
        int8 = export_model(args.model, Path(tmp) / "int8", int8=True, calibration=calibration,
                            labelled=args.data / "val", label_map=label_map)
        t_int8 = time.perf_counter() - t
        f32 = visor.load(fp32.out, threads=args.threads)
        i8 = visor.load(int8.out, threads=args.threads)
        sizes = [(r.out / "model.onnx").stat().st_size / 1e6 for r in (fp32, int8)]

        paths, targets = labelled_targets(args.data, f32.card, label_map)  # train + val
        (lf, li), kept = run_logits(f32, [f32.logits, i8.logits], paths)
        assert len(kept) == len(paths)
        val = np.array(["/val/" in p.as_posix() for p in paths])
        top1 = {name: {"all": float(np.mean(lg.argmax(1) == targets)) * 100,
                       "val": float(np.mean(lg[val].argmax(1) == targets[val])) * 100}
                for name, lg in (("fp32", lf), ("int8", li))}
        agreement = float(np.mean(lf.argmax(1) == li.argmax(1))) * 100

        x = f32.preprocess([f32.decode(paths[0])])
        t_f, t_i = latencies([f32.session, i8.session], x, args.runs)

    p50 = {"fp32": statistics.median(t_f) * 1e3, "int8": statistics.median(t_i) * 1e3}
    p90 = {"fp32": float(np.percentile(t_f, 90)) * 1e3, "int8": float(np.percentile(t_i, 90)) * 1e3}
    best = {"fp32": min(t_f) * 1e3, "int8": min(t_i) * 1e3}
    speedup = p50["fp32"] / p50["int8"]
    drop = top1["fp32"]["all"] - top1["int8"]["all"]
    print(f"{args.model} on {args.data.name}: {len(paths)} images ({int(val.sum())} val); calibration "
          f"{int8.checks['calibration']['images']} train images; cpus {os.cpu_count()}, {args.threads} threads")
    print(f"export time: fp32 {t_fp32:.1f} s, int8 {t_int8:.1f} s (incl. checks); model.onnx {sizes[0]:.1f} MB "
          f"-> {sizes[1]:.1f} MB")
    print(f"{'':6} {'top-1 all':>10} {'top-1 val':>10} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8}")
    for name in ("fp32", "int8"):
        print(f"{name:6} {top1[name]['all']:9.2f}% {top1[name]['val']:9.2f}% {p50[name]:8.2f} {p90[name]:8.2f} "
              f"{best[name]:8.2f}")
    print(f"top-1 change {-drop:+.2f} points (all), agreement {agreement:.1f}%; "
          f"speed-up at batch 1: {speedup:.2f}x ({args.runs} interleaved runs)")
    ok = drop <= 1.0 and speedup >= 1.5
    print("target (<= 1.0 point lost, >= 1.5x faster):", "met" if ok else "NOT met")
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "images": len(paths), "calibration_images": int8.checks["calibration"]["images"],
            "threads": args.threads, "top1": top1, "agreement": agreement, "p50_ms": p50, "p90_ms": p90, "min_ms": best,
            "speedup": speedup, "runs": args.runs, "export_checks": int8.checks,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
