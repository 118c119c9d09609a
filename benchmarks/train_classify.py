"""Fine-tuning benchmark on imagenette-dev: accuracy, training time, calibration, and balancing.

    python benchmarks/train_classify.py [--data DIR] [--skip-imbalance]

1. Train with the default configuration on DATA/train (300 images, 10 classes; a
   stratified 10% of it is held out for early stopping and temperature fitting), then
   evaluate the run folder as a model on DATA/val (150 images, never seen in training).
   Targets: val accuracy >= 97%, training <= 10 minutes on 2 CPU cores.
2. Imbalance: keep 30 training images in 5 classes and 3 in the other 5; train with
   balancing off, with a class-weighted loss and with a balanced sampler; report val
   macro-F1 for each. Balancing must not be worse than no balancing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import visor
from visor.data import ClassificationDataset, Sample
from visor.evaluate.classifier import evaluate_classifier
from visor.train import TrainConfig, train_classifier

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-dev"


def train_and_evaluate(train_data, val_dir: Path, out: Path, config: TrainConfig) -> tuple[float, dict]:
    t = time.perf_counter()
    result = train_classifier(train_data, out, config, progress=False)
    seconds = time.perf_counter() - t
    ev = evaluate_classifier(visor.load(out), val_dir)
    return seconds, {"result": result, "eval": ev}


def imbalanced(train_dir: Path, seed: int = 0) -> ClassificationDataset:
    """5 classes keep all 30 images, the other 5 keep 3 (the first 3 by file name)."""
    ds = ClassificationDataset.load(train_dir)
    minority = set(ds.classes[1::2])
    keep = []
    for c in ds.classes:
        paths = sorted(s.path for s in ds.samples if s.label == c)
        keep += [Sample(p, c) for p in (paths[:3] if c in minority else paths)]
    return ClassificationDataset(tuple(keep), ds.classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--skip-imbalance", action="store_true")
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}")
    config = TrainConfig()
    print(f"config: {config.to_dict()}")

    with tempfile.TemporaryDirectory() as tmp:
        seconds, r = train_and_evaluate(args.data / "train", args.data / "val", Path(tmp) / "run", config)
        ev, res = r["eval"], r["result"]
        print(f"\n== fine-tune on {args.data / 'train'} (300 images), evaluate on val (150 images)")
        print(f"training time: {seconds:.0f} s ({res.epochs_run} epochs, best {res.best_epoch}"
              f"{', stopped early' if res.stopped_early else ''}); target <= 600 s: "
              f"{'PASS' if seconds <= 600 else 'FAIL'}")
        ok = "PASS" if ev.report.accuracy >= 0.97 else "FAIL"
        print(f"val accuracy: {ev.report.accuracy:.2%}; target >= 97%: {ok}")
        print(f"val macro-F1 {ev.report.macro_f1:.4f}, top-5 {ev.report.top5_accuracy:.2%}")
        print(f"val ECE (15 bins): {ev.ece_uncalibrated:.4f} before, {ev.ece_calibrated:.4f} after temperature "
              f"scaling (T={ev.temperature:.3f}, fitted on the held-out part of train)")

        if args.skip_imbalance:
            return
        print("\n== imbalance: 5 classes x 30 images, 5 classes x 3 images (ratio 10)")
        data = imbalanced(args.data / "train")
        scores = {}
        for name, overrides in (("off", {"balance": "off"}),
                                ("loss", {"balance": "on", "balance_method": "loss"}),
                                ("sampler", {"balance": "on", "balance_method": "sampler"})):
            cfg = TrainConfig(**{**config.to_dict(), **overrides})
            seconds, r = train_and_evaluate(data, args.data / "val", Path(tmp) / f"imb-{name}", cfg)
            scores[name] = r["eval"].report.macro_f1
            print(f"balancing {name:8s}: val macro-F1 {scores[name]:.4f}, accuracy {r['eval'].report.accuracy:.2%} "
                  f"({seconds:.0f} s)")
        default = "loss" if config.balance_method == "loss" else "sampler"
        verdict = "PASS" if scores[default] >= scores["off"] else "FAIL"
        print(f"default balancing ({default}) vs off: {scores[default] - scores['off']:+.4f} macro-F1: {verdict}")


if __name__ == "__main__":
    main()
