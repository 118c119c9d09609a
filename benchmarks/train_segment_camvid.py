"""Segmentation training benchmark on CamVid (11 classes, void ignored).

    python benchmarks/train_segment_camvid.py [--data DIR] [--out RUN_DIR] [--epochs N] [--threads N]

Trains ``visor train segment``'s library path on ``train`` (367 images) with ``val`` (101 images) for early
stopping, at the CamVid resolution (480x360 -> a 352x480 input; random 288x384 crops of scaled inputs for
training), then reports val mIoU over the 11 classes (void, index 11, ignored), the per-class IoU table and the
time. Targets: val mIoU >= 0.55 within 60 minutes on 2 CPU cores. Afterwards the exported ONNX model is run
through ``visor.load(RUN)`` on val and measured again, so the figure is the shipped model's.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from visor.data.segmentation import CAMVID_CLASSES, SegmentationDataset
from visor.train.config import SegmentTrainConfig
from visor.train.segmenter import train_segmenter

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"
CONFIG = SegmentTrainConfig(epochs=20, batch_size=8, img_size=480, crop_size=384, patience=0,
                            augment=("hflip", "scale", "color"))


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def onnx_miou(run: Path, ds: SegmentationDataset) -> tuple[float, float]:
    """(mIoU, seconds) of the exported model on ``ds`` through visor.load (ONNX Runtime)."""
    import visor
    from visor.evaluate.segmentation import confusion_matrix, segmentation_report

    model = visor.load(run)
    confusion = np.zeros((len(ds.classes),) * 2, np.int64)
    t = time.perf_counter()
    for i in range(len(ds)):
        image, gt = ds.load(i)
        pred = model.predict(image)
        confusion += confusion_matrix(gt, pred.mask, len(ds.classes), ignore_index=255)
    return segmentation_report(confusion, ds.classes).miou, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--epochs", type=int, default=CONFIG.epochs)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    config = SegmentTrainConfig.from_dict({**CONFIG.to_dict(), "epochs": args.epochs})
    print(f"CPU: {cpu_name()}; config: {config.to_dict()}")
    ds = SegmentationDataset.from_folder(args.data, classes=CAMVID_CLASSES, ignore_index=11)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "run"
        t = time.perf_counter()
        result = train_segmenter(ds, out, config, progress=False, threads=args.threads,
                                 callbacks=[lambda e: print(f"epoch {e.epoch}: {e.metrics}", flush=True)])
        seconds = time.perf_counter() - t
        val = result.metrics["val"]
        print(f"\n== CamVid: train {len(ds.subset('train'))} images, val {len(ds.subset('val'))} images")
        print(f"training time: {seconds / 60:.1f} min ({result.epochs_run} epochs, best {result.best_epoch}); "
              f"target <= 60 min: {'PASS' if seconds <= 3600 else 'FAIL'}")
        print(f"val mIoU (PyTorch, best checkpoint): {val['miou']:.4f}; target >= 0.55: "
              f"{'PASS' if val['miou'] >= 0.55 else 'FAIL'}; pixel accuracy {val['pixel_accuracy']:.4f}")
        print("per-class IoU:")
        for name, iou in result.card.metrics["val_iou"].items():
            print(f"  {name:<12} {'-' if iou is None else f'{iou:.4f}'}")
        miou, secs = onnx_miou(out, ds.subset("val"))
        print(f"val mIoU of the exported ONNX model through visor.load: {miou:.4f} ({secs:.1f} s for 101 images)")


if __name__ == "__main__":
    main()
