"""Speed of ``visor segment``'s library path against raw ONNX Runtime on the CamVid val images.

For each ONNX Runtime thread count (``--threads``, default 1 and 2): visor's whole pipeline
(``Segmenter.segment_iter`` over the image files, what ``visor segment`` runs: JPEG decode, squash resize,
normalise, ONNX Runtime, each class's logits resized to the image, argmax, ``SegmentationMask``) against raw
ONNX Runtime running the same preprocessed inputs (made once, beforehand, by visor's own preprocessing) with the
same session options and thread count. ``deeplabv3_voc`` has a fixed batch of 1, so both run one image per
``run`` call. The target is visor >= 90% of raw ONNX Runtime. A per-stage profile (sequential, one image at a
time) follows: what ``segment_iter``'s background thread does (decode, resize, normalise: the next batch, while
this one is inferred), ONNX Runtime in the calling thread, and postprocessing (a third thread: the previous
batch, while this one is inferred).

Why the thread count decides it (as for ``benchmarks/detect_yolox.py``): with ONNX Runtime on fewer threads
than cores, decoding, preparing and postprocessing run on the spare core, and the calling thread spends about
what raw ONNX Runtime spends per image, so >= 90% is within reach on an idle machine; the CPU times printed give
that estimate whatever else runs on the machine. With ONNX Runtime on every core, all of visor's other work
(JPEG decode, resize, postprocessing: 6-7 ms per CamVid image here, against about 17-19 ms of ONNX Runtime CPU)
comes out of ONNX Runtime's time, and spinning ONNX Runtime threads would keep that work off the cores:
``visor segment`` turns spinning off (``spin=False``), and raw ONNX Runtime is timed both ways, visor being
compared with the faster.

    python benchmarks/segment_speed.py [--images ../shared/data/camvid/val] [--threads 1 2] [--repeats 3]

Weights: the card's sha256-verified file read in place from ``--weights`` (default
``../shared/models/segmentation/deeplabv3_mnv2_voc_257.onnx``); nothing is downloaded or written. The CPU and
the load average (other processes on the machine) are printed beside the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

from visor.benchmark import cpu_name
from visor.io import expand_paths
from visor.models import get_card
from visor.models.card import WeightsSource
from visor.models.segmenter import Segmenter

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_IMAGES = SHARED / "data" / "camvid" / "val"
DEFAULT_WEIGHTS = SHARED / "models" / "segmentation" / "deeplabv3_mnv2_voc_257.onnx"


def load_segmenter(weights: Path, threads: int) -> Segmenter:
    """The registry's deeplabv3_voc card with its weights read from ``weights`` (sha256 still verified), loaded
    as ``visor segment`` loads it (``spin=False``: ONNX Runtime's idle threads do not busy-wait)."""
    card = get_card("deeplabv3_voc")
    local = WeightsSource(kind="path", location=str(weights), sha256=card.weights.sha256, format="onnx")
    return Segmenter.from_card(dataclasses.replace(card, weights=local), threads=threads, spin=False)


def raw_session(path: str, threads: int, *, spin: bool = True):
    """A plain ONNX Runtime session with the options visor's :class:`OnnxSession` sets (spinning: ONNX Runtime's
    default, or off)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def throughput(seg: Segmenter, paths: list[Path], threads: int, repeats: int, batch_size: int) -> dict:
    """Raw ONNX Runtime (spinning on, its default, and off; visor is compared with the faster) and visor's
    pipeline, interleaved."""
    sessions = {"raw": raw_session(seg.session.path, threads), "raw_nospin": raw_session(seg.session.path, threads,
                                                                                           spin=False)}
    name = sessions["raw"].get_inputs()[0].name
    inputs = [seg.prepare([seg.decode(p)])[0] for p in paths]  # the same preprocessed inputs, made beforehand

    def raw_with(sess):
        def raw() -> int:
            for x in inputs:
                sess.run(None, {name: x})
            return len(inputs)

        return raw

    def pipeline() -> int:
        n = 0
        for outcome in seg.segment_iter(paths, batch_size=batch_size):
            assert outcome.error is None, outcome.error
            n += 1
        return n

    runs = {"raw": raw_with(sessions["raw"]), "raw_nospin": raw_with(sessions["raw_nospin"]), "visor": pipeline}
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up
        fn()
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):  # interleaved, so that load from other processes hits both alike
        for key, fn in runs.items():
            c0, m0, t = time.process_time(), time.thread_time(), time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
            cpu[key].append((time.process_time() - c0, time.thread_time() - m0))
        loads.append(os.getloadavg()[0])
    ips = {k: len(paths) / statistics.median(v) for k, v in times.items()}
    best = {k: len(paths) / min(v) for k, v in times.items()}
    base = max(("raw", "raw_nospin"), key=lambda k: ips[k])
    base_best = max(best["raw"], best["raw_nospin"])
    print(f"\nthroughput on {len(paths)} images, ONNX Runtime on {threads} thread(s) (median of {repeats}, "
          f"batch_size {batch_size}, model batch {seg.max_batch}; load average {min(loads):.2f}-{max(loads):.2f}):")
    print(f"  raw ONNX Runtime, spinning (its default)      {ips['raw']:7.2f} img/s (best {best['raw']:.2f})")
    print(f"  raw ONNX Runtime, no spinning                 {ips['raw_nospin']:7.2f} img/s "
          f"(best {best['raw_nospin']:.2f})")
    print(f"  visor segment_iter, files -> SegmentationMask {ips['visor']:7.2f} img/s (best {best['visor']:.2f})  "
          f"{ips['visor'] / ips[base]:6.1%} of the faster raw (target >= 90%; best/best "
          f"{best['visor'] / base_best:.1%})")
    per = {k: (statistics.median(c for c, _ in v) / len(paths) * 1000,
               statistics.median(m for _, m in v) / len(paths) * 1000) for k, v in cpu.items()}
    print(f"  CPU time per image: raw {per['raw'][0]:.2f} ms (no spinning {per['raw_nospin'][0]:.2f} ms); visor "
          f"calling thread {per['visor'][1]:.2f} ms + other threads {per['visor'][0] - per['visor'][1]:.2f} ms = "
          f"{per['visor'][0]:.2f} ms")
    raw_cpu = min(per["raw"][0], per["raw_nospin"][0])
    visor_cpu, caller_cpu = per["visor"]
    cores = len(os.sched_getaffinity(0))
    if threads < cores:  # ONNX Runtime in the calling thread; decode/prepare and postprocess on the other core(s)
        bound = max(caller_cpu, (visor_cpu - caller_cpu) / (cores - threads))
        print(f"  idle-machine estimate (each stage on a core of its own): visor {1000 / bound:.1f} img/s, raw "
              f"{1000 / raw_cpu:.1f} img/s: {raw_cpu / bound:.1%} of raw")
    else:  # every core is ONNX Runtime's: all of visor's other work comes out of its time
        print(f"  idle-machine estimate (all cores busy either way): CPU time raw / visor = "
              f"{raw_cpu / visor_cpu:.1%}")

    stages = dict.fromkeys(("decode", "prepare", "onnxruntime", "postprocess"), 0.0)
    for p in paths:
        t0 = time.perf_counter()
        im = seg.decode(p)
        t1 = time.perf_counter()
        batch, metas = seg.prepare([im])
        t2 = time.perf_counter()
        out = seg.infer(batch)
        t3 = time.perf_counter()
        seg.postprocess(out, metas)
        t4 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[key] += dt
    ms = {k: v / len(paths) * 1000 for k, v in stages.items()}
    print("  stages (sequential, ms per image): " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
          + f"; load {os.getloadavg()[0]:.2f}")
    return {"threads": threads, "raw_ips": ips[base], "visor_ips": ips["visor"], "ratio": ips["visor"] / ips[base],
            "stages_ms": ms, "cpu_ms": per}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--num-images", type=int, default=0, help="use only the first N images (0: all)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    paths = sorted(expand_paths([str(args.images)]))
    if args.num_images:
        paths = paths[: args.num_images]
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    print(f"CPU: {cpu_name()}; {os.cpu_count()} logical cores, {len(os.sched_getaffinity(0))} usable; "
          f"load average {os.getloadavg()[0]:.2f} (other processes share the machine when it is above 0)")
    for threads in args.threads:
        throughput(load_segmenter(args.weights, threads), paths, threads, args.repeats, args.batch_size)


if __name__ == "__main__":
    main()
