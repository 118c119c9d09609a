"""Face detection: YuNet in visor (ONNX Runtime) vs OpenCV's cv2.FaceDetectorYN vs dlib's HOG detector.

For every photo of ``faces/unknown`` (decoded once, beforehand): the faces each detector finds, and the
p50 latency per image over ``--repeats`` runs (after a warm-up run) of

* ``visor yunet``: :meth:`YuNetDetector.run` on the decoded image: the 960 px box-downscaled copy
  (``bounded_copy``), padding to multiples of 32, ONNX Runtime, decoding, NMS, boxes back to original
  pixels. ``visor yunet (copy)`` is the same on the 960 px copy made beforehand;
* ``cv2 FaceDetectorYN``: ``setInputSize`` + ``detect`` on the same 960 px copy (BGR), the same ONNX
  file, score threshold, NMS threshold and thread count (OpenCV's DNN module);
* ``dlib hog``: dlib's HOG detector as ``FaceAnalyzer.detect(model="hog")`` runs it (the full image,
  ``upsample=1``), detection only. dlib's HOG is single-threaded;
* ``visor yunet + dlib embeddings``: ``FaceAnalyzer.detect`` (YuNet, dlib's 5-point alignment, 128-d
  embeddings), what identification costs per photo.

    python benchmarks/faces_yunet.py [--images DIR] [--threads 1] [--repeats 7]

Weights: the yunet card's sha256-verified file read in place from ``--weights`` (default
``../shared/models/faces/yunet_n_dynamic.onnx``); nothing is downloaded or written.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

import numpy as np

from visor.benchmark import cpu_name
from visor.faces import FaceAnalyzer, YuNetDetector
from visor.faces.yunet import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET
from visor.io import bounded_copy, expand_paths, open_image
from visor.models.card import WeightsSource
from visor.models.registry import builtin

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_IMAGES = SHARED / "data" / "faces" / "unknown"
DEFAULT_WEIGHTS = SHARED / "models" / "faces" / "yunet_n_dynamic.onnx"


def load_yunet(weights: Path, threads: int) -> YuNetDetector:
    """The registry's yunet card with its weights read from ``weights`` (sha256 still verified)."""
    card = builtin().get("yunet")
    local = WeightsSource(kind="path", location=str(weights), sha256=card.weights.sha256, format="onnx")
    return YuNetDetector.from_card(dataclasses.replace(card, weights=local), threads=threads)


def p50_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime and OpenCV threads (default 1)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    import cv2

    cv2.setNumThreads(args.threads)
    yunet = load_yunet(args.weights, args.threads)
    analyzer = FaceAnalyzer(detector=yunet)
    hog = analyzer._model("hog")  # dlib's detector, loaded the way FaceAnalyzer loads it
    paths = expand_paths([args.images])
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores); threads: {args.threads}; repeats: {args.repeats}; "
          f"YuNet at most {yunet.max_side} px, conf {DEFAULT_CONF}, NMS IoU {DEFAULT_IOU}")
    header = (f"{'image':24s} {'size':>10s} {'faces yunet/cv2/hog':>20s} {'visor yunet':>12s} {'(copy)':>8s} "
              f"{'cv2 YN':>8s} {'dlib hog':>9s} {'+embed':>8s}  (ms, p50)")
    print(header)
    rows = []
    for path in paths:
        image = open_image(path)
        copy = bounded_copy(image, max_side=yunet.max_side)
        bgr = np.ascontiguousarray(np.asarray(copy)[:, :, ::-1])
        rgb = np.ascontiguousarray(np.asarray(image))
        cv = cv2.FaceDetectorYN.create(os.fspath(args.weights), "", copy.size, DEFAULT_CONF, DEFAULT_IOU,
                                       DEFAULT_MAX_DET)
        n_visor = len(yunet.run([image])[0])
        n_cv = 0 if (found := cv.detect(bgr)[1]) is None else len(found)
        n_hog = len(hog.run(rgb, 1, 0.0)[0])
        t_visor = p50_ms(lambda image=image: yunet.run([image]), args.repeats)
        t_copy = p50_ms(lambda copy=copy: yunet.run([copy]), args.repeats)
        t_cv = p50_ms(lambda cv=cv, bgr=bgr: cv.detect(bgr), args.repeats)
        t_hog = p50_ms(lambda rgb=rgb: hog.run(rgb, 1, 0.0), max(1, args.repeats // 2))
        t_embed = p50_ms(lambda image=image: analyzer.detect(image), max(1, args.repeats // 2))
        rows.append((n_visor, n_cv, n_hog, t_visor, t_copy, t_cv, t_hog, t_embed))
        size = f"{image.width}x{image.height}"
        print(f"{path.name:24s} {size:>10s} {f'{n_visor}/{n_cv}/{n_hog}':>20s} {t_visor:12.1f} {t_copy:8.1f} "
              f"{t_cv:8.1f} {t_hog:9.1f} {t_embed:8.1f}", flush=True)
    cols = list(zip(*rows, strict=True))
    totals = "/".join(str(sum(c)) for c in cols[:3])
    medians = [statistics.median(c) for c in cols[3:]]
    print(f"{'all (faces; median p50)':24s} {'':>10s} {totals:>20s} {medians[0]:12.1f} {medians[1]:8.1f} "
          f"{medians[2]:8.1f} {medians[3]:9.1f} {medians[4]:8.1f}")


if __name__ == "__main__":
    main()
