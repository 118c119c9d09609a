"""Throughput of the full classification pipeline: visor (ONNX Runtime) vs PyTorch eager.

Both pipelines decode and preprocess the same files the same way (visor's safe decoder
and the card's preprocessing); they differ only in how the batch is inferred and in
visor overlapping the next batch's decoding with the current inference.

    python benchmarks/classify.py [--images DIR] [--batch-size 32] [--repeats 3]

Prints images/s for each and their ratio. The target is visor >= 2.5x eager at batch
32 on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

import visor
from visor.io import expand_paths
from visor.models import architectures
from visor.models import weights as weights_mod

DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-dev"


def eager_pipeline(model: torch.nn.Module, clf: visor.Classifier, paths: list[Path], batch_size: int) -> int:
    n = 0
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            images = [clf.decode(p) for p in paths[i : i + batch_size]]
            logits = model(torch.from_numpy(clf.preprocess(images))).numpy()
            n += len(clf.postprocess(logits, 5))
    return n


def visor_pipeline(clf: visor.Classifier, paths: list[Path], batch_size: int) -> int:
    return len(visor.classify(paths, model=clf, batch_size=batch_size))


def timed(fn, repeats: int) -> tuple[float, int]:
    fn()  # warm-up
    times, n = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="efficientnet_lite0")
    args = ap.parse_args()

    paths = expand_paths([args.images])
    if not paths:
        raise SystemExit(f"no images under {args.images}")
    clf = visor.load(args.model)
    card = clf.card
    weights = weights_mod.resolve(card.weights)
    model = architectures.load(card.architecture, weights, num_classes=card.num_classes)

    print(f"images: {len(paths)} from {args.images}; batch {args.batch_size}; "
          f"torch threads {torch.get_num_threads()}; cpus {os.cpu_count()}")
    t_visor, n = timed(lambda: visor_pipeline(clf, paths, args.batch_size), args.repeats)
    t_eager, m = timed(lambda: eager_pipeline(model, clf, paths, args.batch_size), args.repeats)
    assert n == m == len(paths)

    # Inference alone, on one preprocessed batch, to show where the time goes.
    batch = clf.preprocess([clf.decode(p) for p in paths[: args.batch_size]])
    t_ort, _ = timed(lambda: len(clf.logits(batch)), args.repeats)
    with torch.inference_mode():
        t_pt, _ = timed(lambda: len(model(torch.from_numpy(batch))), args.repeats)
    t_pre, _ = timed(lambda: len(clf.preprocess([clf.decode(p) for p in paths[: args.batch_size]])),
                     args.repeats)

    vis, eag = len(paths) / t_visor, len(paths) / t_eager
    print(f"visor.classify pipeline (decode+preprocess+ONNX Runtime): {vis:8.1f} images/s")
    print(f"PyTorch eager pipeline  (decode+preprocess+torch eager):  {eag:8.1f} images/s")
    print(f"speed-up: {vis / eag:.2f}x")
    b = len(batch)
    print(f"  parts, one batch of {b}: decode+preprocess {b / t_pre:.1f} img/s, "
          f"ONNX Runtime {b / t_ort:.1f} img/s, torch eager {b / t_pt:.1f} img/s")


if __name__ == "__main__":
    main()
