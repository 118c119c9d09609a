"""Speed of the default detector, yolox_nano: visor's pipeline vs raw ONNX Runtime, and latency vs OpenCV DNN.

1. Throughput, for each ONNX Runtime thread count (``--threads``, default 1 and every core). visor's whole
   pipeline (``Detector.detect_iter`` over image files: JPEG decode, letterbox, normalise, ONNX Runtime, YOLOX
   decode, NMS, boxes back to original pixels) against raw ONNX Runtime running the same preprocessed inputs
   (made once, beforehand, by visor's own preprocessing), with the same session options and thread count.
   The export has a fixed batch of 1, so both run one image per ``run`` call. The target is visor >= 90% of
   raw ONNX Runtime. visor is also timed on the images already decoded (RGB arrays in memory). A per-stage
   profile (sequential, one image at a time) follows, split into what ``detect_iter``'s background thread
   does (decode, letterbox, normalise: the next batch, while this one is inferred) and what the calling
   thread does (ONNX Runtime, YOLOX decode + NMS).

   Why the thread count decides it: with ONNX Runtime on fewer threads than cores, the background thread
   has a core of its own, so the caller's time per image is ONNX Runtime plus the post-processing (YOLOX
   decode, NMS, results: under 1 ms): >= 90% is within reach, and reached. With ONNX Runtime on every core,
   raw ONNX Runtime keeps all of them busy (computing or spinning), and the background thread's work
   (JPEG decode, letterbox, normalise: about 5 ms per image, the JPEG decode alone 3.5-4 ms) has no core
   of its own: it takes one from one of ONNX Runtime's threads, whose partner then waits at the next
   barrier, so the two run one after the other and the ratio is about ort / (ort + that work), near 60%
   on 2 cores. Even a perfect packing (all of visor's CPU time spread over the cores ONNX Runtime leaves)
   would stay under 90% from the JPEG decode alone: 2 x 9 ms / (2 x 9 ms + 3.6 ms) = 83%.
2. Latency at batch 1 on a 640x480 image (the first 640x480 image of the folder): p50 of visor's
   ``detect`` on the decoded image (letterbox, inference, decode, NMS) and on the file (JPEG decode too),
   beside raw ONNX Runtime and OpenCV's DNN module (``cv2.dnn.readNetFromONNX`` on the same file, the same
   thread count, ``blobFromImage`` of the same letterboxed BGR image), both forward passes only.

    python benchmarks/detect_yolox.py [--images DIR] [--num-images 128] [--threads 1 2] [--repeats 3]

Weights: the card's sha256-verified file, read in place from ``--weights`` (default
``../shared/models/detection/yolox_nano.onnx``); nothing is downloaded or written. The load average
(other processes on the machine) is printed beside each figure.
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
from visor.io import expand_paths
from visor.models import get_card
from visor.models.card import WeightsSource
from visor.models.detector import Detector

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_IMAGES = SHARED / "data" / "coco128" / "images"
DEFAULT_WEIGHTS = SHARED / "models" / "detection" / "yolox_nano.onnx"


def load_detector(weights: Path, threads: int) -> Detector:
    """The registry's yolox_nano card with its weights read from ``weights`` (sha256 still verified)."""
    card = get_card("yolox_nano")
    local = WeightsSource(kind="path", location=str(weights), sha256=card.weights.sha256, format="onnx")
    return Detector.from_card(dataclasses.replace(card, weights=local), threads=threads)


def raw_session(path: str, threads: int):
    """A plain ONNX Runtime session with the options visor's :class:`OnnxSession` sets."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def p50_ms(fn, n: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def throughput(det: Detector, sess, paths: list[Path], threads: int, repeats: int, batch_size: int) -> None:
    from visor.models import preprocess as pp

    name = sess.get_inputs()[0].name
    inputs = [det.preprocess([det.decode(p)])[0] for p in paths]  # the same preprocessed inputs, made beforehand

    def raw() -> int:
        for x in inputs:
            sess.run(None, {name: x})
        return len(inputs)

    decoded = [np.asarray(det.decode(p)) for p in paths]  # RGB arrays: visor without the JPEG decode

    def pipeline(sources) -> int:
        n = 0
        for outcome in det.detect_iter(sources, batch_size=batch_size):
            assert outcome.error is None, outcome.error
            n += 1
        return n

    runs = {"raw": raw, "files": lambda: pipeline(paths), "decoded": lambda: pipeline(decoded)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}  # (process CPU, calling thread CPU)
    for fn in runs.values():  # warm-up
        fn()
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):  # interleaved, so that load from other processes hits all alike
        for key, fn in runs.items():
            c0, m0, t = time.process_time(), time.thread_time(), time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
            cpu[key].append((time.process_time() - c0, time.thread_time() - m0))
        loads.append(os.getloadavg()[0])
    ips = {k: len(paths) / statistics.median(v) for k, v in times.items()}
    print(f"\nthroughput on {len(paths)} images, ONNX Runtime on {threads} thread(s) (median of {repeats}, "
          f"batch_size {batch_size}, model batch {det.max_batch}; load average {min(loads):.2f}-{max(loads):.2f}):")
    print(f"  raw ONNX Runtime (preprocessed inputs)            {ips['raw']:7.1f} img/s")
    print(f"  visor pipeline, files -> Detections               {ips['files']:7.1f} img/s   "
          f"{ips['files'] / ips['raw']:6.1%} of raw (target >= 90%)")
    print(f"  visor pipeline, decoded RGB arrays -> Detections  {ips['decoded']:7.1f} img/s   "
          f"{ips['decoded'] / ips['raw']:6.1%} of raw")

    # CPU time per image: what each thread spends, whatever the other processes on the machine do
    per = {k: (statistics.median(c for c, _ in v) / len(paths) * 1000, statistics.median(m for _, m in v)
               / len(paths) * 1000) for k, v in cpu.items()}
    raw_cpu = per["raw"][0]
    print(f"  CPU time per image: raw ONNX Runtime {raw_cpu:.2f} ms; visor (files) calling thread "
          f"{per['files'][1]:.2f} "
          f"ms + background thread {per['files'][0] - per['files'][1]:.2f} ms = {per['files'][0]:.2f} ms")
    cores = len(os.sched_getaffinity(0))
    if threads == 1 < cores:  # the caller runs ONNX Runtime; the background thread has a core of its own
        bound = max(per["files"][1], per["files"][0] - per["files"][1])
        print(f"  on an idle machine (each thread on its own core): visor {1000 / bound:.1f} img/s, raw "
              f"{1000 / raw_cpu:.1f} img/s: {raw_cpu / bound:.1%} of raw")
    elif threads >= cores:  # every core is ONNX Runtime's: all of visor's other work comes out of its time
        print(f"  on an idle machine (all cores busy either way): visor / raw = CPU time raw / visor = "
              f"{raw_cpu / per['files'][0]:.1%}")

    # where the pipeline's time goes, stage by stage, one image at a time (no background thread)
    cfg = det.card.preprocess
    stages = dict.fromkeys(("decode", "letterbox", "normalize", "onnxruntime", "yolox decode + NMS"), 0.0)
    for p in paths:
        t0 = time.perf_counter()
        im = det.decode(p)
        t1 = time.perf_counter()
        boxed = np.stack([pp.letterbox(im, cfg)[0]])
        t2 = time.perf_counter()
        batch = pp.normalize(boxed, cfg)
        t3 = time.perf_counter()
        out = det.infer(batch)
        t4 = time.perf_counter()
        det.postprocess(out, [pp.geometry(im.width, im.height, cfg)])
        t5 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            stages[key] += dt
    ms = {k: v / len(paths) * 1000 for k, v in stages.items()}
    ahead = ms["decode"] + ms["letterbox"] + ms["normalize"]
    caller = ms["onnxruntime"] + ms["yolox decode + NMS"]
    print("  stages (sequential, ms per image): " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()) + f"; {load()}")
    print(f"  background thread (decode + letterbox + normalize) {ahead:.2f} ms, calling thread (ONNX Runtime "
          f"+ decode + NMS) {caller:.2f} ms: ONNX Runtime's share of the caller's time "
          f"{ms['onnxruntime'] / caller:.1%}, of all the work {ms['onnxruntime'] / (ahead + caller):.1%}")


def latency(det: Detector, sess, image: Path, threads: int, n: int) -> None:
    import cv2

    name = sess.get_inputs()[0].name
    pil = det.decode(image)
    x, _ = det.preprocess([pil])
    # the same letterboxed image as an HxWx3 BGR uint8 array, through blobFromImage (no scaling, no swap)
    from visor.models import preprocess as pp

    boxed_rgb, _, _ = pp.letterbox(pil, det.card.preprocess)
    blob = cv2.dnn.blobFromImage(np.ascontiguousarray(boxed_rgb[:, :, ::-1]), 1.0, det.card.preprocess.input_size[::-1],
                                 swapRB=False, crop=False)
    if not np.array_equal(blob, x):
        raise SystemExit(f"blobFromImage differs from visor's input (max {np.abs(blob - x).max()})")
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(det.session.path)
    net.setInput(blob)
    diff = float(np.abs(net.forward() - sess.run(None, {name: x})[0]).max())

    def cv_forward():
        net.setInput(blob)
        return net.forward()

    figures = {
        "raw ONNX Runtime, forward only": p50_ms(lambda: sess.run(None, {name: x}), n),
        "OpenCV DNN, forward only (blob given)": p50_ms(cv_forward, n),
        "OpenCV DNN, blobFromImage + forward": p50_ms(lambda: (net.setInput(cv2.dnn.blobFromImage(
            np.ascontiguousarray(boxed_rgb[:, :, ::-1]), 1.0, (416, 416), swapRB=False)), net.forward()), n),
        "visor detect(decoded image)": p50_ms(lambda: det.detect(pil), n),
        "visor detect(file)": p50_ms(lambda: det.detect(image), n),
    }
    print(f"\nlatency at batch 1 on {image.name} ({pil.width}x{pil.height}), p50 of {n}, {threads} thread(s) "
          f"(OpenCV {cv2.__version__}; its output vs ONNX Runtime: max abs diff {diff:.2g}; {load()}):")
    for k, v in figures.items():
        print(f"  {k:<40} {v:7.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--num-images", type=int, default=128)
    cores = len(os.sched_getaffinity(0))
    ap.add_argument("--threads", type=int, nargs="+", default=sorted({1, cores}),
                    help="ONNX Runtime intra-op thread counts to measure (default: 1 and every core)")
    ap.add_argument("--batch-size", type=int, default=8, help="visor's batch_size (the model runs 1 at a time)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-runs", type=int, default=50)
    ap.add_argument("--no-latency", action="store_true")
    args = ap.parse_args()

    paths = sorted(expand_paths([str(args.images)]))[: args.num_images]
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    from PIL import Image

    sizes = {}
    for p in paths:
        with Image.open(p) as im:
            sizes[p] = im.size
    vga = next((p for p in paths if sizes[p] == (640, 480)), None)
    print(f"{cpu_name()}, {os.cpu_count()} logical CPUs ({cores} usable); {load()} at start "
          f"(other processes share the machine)")
    for threads in args.threads:
        det = load_detector(args.weights, threads)
        sess = raw_session(det.session.path, threads)
        throughput(det, sess, paths, threads, args.repeats, args.batch_size)
        if args.no_latency:
            continue
        if vga is None:
            print("\nno 640x480 image in the folder: latency skipped")
        else:
            latency(det, sess, vga, threads, args.latency_runs)
    print(f"\n{load()} at the end")


if __name__ == "__main__":
    main()
