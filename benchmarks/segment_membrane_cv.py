"""Membrane segmentation: 5-fold cross-validation Dice of the membrane class, against an Otsu threshold.

    python benchmarks/segment_membrane_cv.py [--data DIR] [--epochs N] [--threads N]

ISBI-2012 electron-microscopy slices (30 images, 512x512; masks store 0 = membrane, 255 = cell interior).
The 30 images are split into 5 seeded folds of 6. For each fold, ``train_segmenter`` trains on the other 24
(a seeded 4 of them held out for its early stopping / best checkpoint, never the test fold), and the exported
ONNX model, loaded with ``visor.load``, segments the 6 test images. Dice of the membrane class is summed over
the fold's pixels. The baseline on the same folds: Otsu's threshold per image (pixels darker than it are
membrane), the classical answer to "dark thin lines on a bright background". The model must win clearly.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from visor.data.segmentation import SegmentationDataset
from visor.train.config import SegmentTrainConfig
from visor.train.segmenter import train_segmenter

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "membrane"
CLASSES = ("membrane", "cell")
CONFIG = SegmentTrainConfig(epochs=30, batch_size=4, img_size=512, crop_size=256, patience=0, lr=3e-3,
                            augment=("hflip", "vflip", "scale"), val_fraction=1 / 6)


def otsu_threshold(gray: np.ndarray) -> int:
    """The threshold t (pixels <= t are one class) maximising the between-class variance (Otsu 1979)."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    return int(np.nanargmax(between))


def dice_counts(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int]:
    """(2 * |A and B|, |A| + |B|) of two boolean masks, to be summed over a fold."""
    return 2 * int((gt & pred).sum()), int(gt.sum() + pred.sum())


def main() -> None:
    import visor

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=CONFIG.epochs)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    config = SegmentTrainConfig.from_dict({**CONFIG.to_dict(), "epochs": args.epochs})
    ds = SegmentationDataset.from_folder(args.data, classes=CLASSES)
    samples = [dataclasses.replace(s, split=None) for s in ds.samples]
    order = np.random.default_rng(0).permutation(len(samples))
    folds = np.array_split(order, args.folds)
    print(f"{len(samples)} images, {args.folds} folds; config {config.to_dict()}")
    model_dice, otsu_dice = [], []
    t0 = time.perf_counter()
    for k, test_idx in enumerate(folds):
        train = tuple(samples[i] for i in order if i not in set(test_idx))
        test = dataclasses.replace(ds, samples=tuple(samples[i] for i in test_idx), problems=(), problem_splits=())
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            train_segmenter(dataclasses.replace(ds, samples=train, problems=(), problem_splits=()), Path(tmp) / "run",
                            config, progress=False, threads=args.threads)
            model = visor.load(Path(tmp) / "run")
            m_num = m_den = o_num = o_den = 0
            for i in range(len(test)):
                image, mask = test.load(i)
                gt = mask == 0
                pred = model.predict(image).mask == 0
                n, d = dice_counts(gt, pred)
                m_num, m_den = m_num + n, m_den + d
                gray = np.asarray(image, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
                gray = np.clip(np.round(gray), 0, 255).astype(np.uint8)
                n, d = dice_counts(gt, gray <= otsu_threshold(gray))
                o_num, o_den = o_num + n, o_den + d
        model_dice.append(m_num / m_den)
        otsu_dice.append(o_num / o_den)
        print(f"fold {k + 1}: model Dice {model_dice[-1]:.4f}, Otsu Dice {otsu_dice[-1]:.4f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    m, o = np.array(model_dice), np.array(otsu_dice)
    print(f"\nmembrane Dice, 5-fold: model {m.mean():.4f} +- {m.std(ddof=1):.4f}, Otsu {o.mean():.4f} +- "
          f"{o.std(ddof=1):.4f}; model better on {int((m > o).sum())}/{len(m)} folds; "
          f"total {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
