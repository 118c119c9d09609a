"""Detector training benchmark on BCCD (blood cells: RBC, WBC, Platelets; Pascal VOC).

    python benchmarks/train_detect_bccd.py [--data DIR] [--epochs N] [--img-size PX] [--out RUN_DIR]

Trains the FCOS / EfficientNet-Lite0 detector on BCCD's train split (a seeded 10% of it
is held out for early stopping), then loads the run folder as an ONNX Runtime detector
and evaluates it on BCCD's val split, which training never sees.
Target: AP50 >= 0.85 over the three classes within 60 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import visor
from visor.data import formats
from visor.evaluate.detection import evaluate_detections
from visor.train.detector import DetectTrainConfig, train_detector

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bccd"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--img-size", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="keep the run folder here (default: a temp folder)")
    args = ap.parse_args()

    ds = formats.load(args.data)
    train, val = ds.subset("train"), ds.subset("val")
    print(f"BCCD: {len(train)} train images, {len(val)} val images, classes {ds.classes}; "
          f"torch threads {torch.get_num_threads()}")
    config = DetectTrainConfig(epochs=args.epochs, img_size=args.img_size, batch_size=args.batch_size,
                               augment=("hflip", "vflip", "scale", "color"), patience=10)
    print(f"config: {config.to_dict()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "bccd"
        t = time.perf_counter()
        result = train_detector(train, out, config, progress=False)
        minutes = (time.perf_counter() - t) / 60
        detector = visor.load(out)
        predictions = detector.detect([im.path for im in val.images], conf=0.001, iou=0.6, max_det=100)
        report = evaluate_detections([val.detections(i) for i in range(len(val))], predictions, ds.classes)
    print(f"\ntraining time: {minutes:.1f} min ({result.epochs_run} epochs, best {result.best_epoch}); "
          f"target <= 60 min: {'PASS' if minutes <= 60 else 'FAIL'}")
    print(f"val (ONNX Runtime, {len(val)} images): AP {report.ap:.4f}, AP50 {report.ap50:.4f}, AP75 {report.ap75:.4f}; "
          f"target AP50 >= 0.85: {'PASS' if report.ap50 >= 0.85 else 'FAIL'}")
    for name in ds.classes:
        print(f"  {name:10s} AP {report.per_class_ap.get(name, float('nan')):.4f}  "
              f"AP50 {report.per_class_ap50.get(name, float('nan')):.4f}")
    print(report.format_table())


if __name__ == "__main__":
    main()
