"""Speed of ``visor track`` against the raw detector on the same frames (bikes.mp4, 250 frames 640x272).

Three figures, in frames per second, interleaved over ``--repeats`` rounds (after a warm-up):

* raw detector: ``Detector.run([frame])`` one frame at a time on frames decoded beforehand, with the tracker's
  own options (``conf=0.1``, ``iou=0.45``): letterbox, ONNX Runtime, decode and NMS, nothing else;
* ``visor.track``: end to end from the file: decoding (with the letterboxing of the next frame, in a background
  thread), detection, scene-cut check, ByteTrack, ``TrackedFrame``s;
* ``track_to_folder``: the same plus drawing every frame, encoding ``annotated.mp4`` and writing
  ``frames.jsonl`` / ``tracks.txt`` (into a temporary folder, deleted afterwards).

The goal is end-to-end >= 85% of raw. The detector is loaded as ``visor track`` loads it (``spin=False``)
with ``--threads`` ONNX Runtime threads (default 2, the machine's cores).

    python benchmarks/track_speed.py [--video ../shared/data/videos/bikes.mp4] [--threads 2] [--repeats 3]

Weights: yolox_nano's sha256-verified file read in place from ``--weights`` (default
``../shared/models/detection/yolox_nano.onnx``); nothing is downloaded. The CPU and the load average (other
processes on the machine) are printed beside the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from visor.benchmark import cpu_name
from visor.io.video import open_video
from visor.models import get_card
from visor.models.card import WeightsSource
from visor.models.detector import Detector
from visor.video.track import TrackerOptions, track, track_to_folder

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_VIDEO = SHARED / "data" / "videos" / "bikes.mp4"
DEFAULT_WEIGHTS = SHARED / "models" / "detection" / "yolox_nano.onnx"


def load_detector(weights: Path, threads: int) -> Detector:
    """The registry's yolox_nano card with its weights read from ``weights`` (sha256 still verified)."""
    card = get_card("yolox_nano")
    local = WeightsSource(kind="path", location=str(weights), sha256=card.weights.sha256, format="onnx")
    return Detector.from_card(dataclasses.replace(card, weights=local), threads=threads, spin=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}; {os.cpu_count()} logical cores, {len(os.sched_getaffinity(0))} usable; "
          f"load average {os.getloadavg()[0]:.2f}")
    detector = load_detector(args.weights, args.threads)
    options = TrackerOptions()
    with open_video(args.video) as reader:
        frames = [f.image for f in reader]

    def raw() -> int:
        for image in frames:
            detector.run([image], conf=options.conf, iou=options.iou)
        return len(frames)

    def end_to_end() -> int:
        with track(args.video, model=detector, options=options) as stream:
            return sum(1 for _ in stream)

    def to_folder() -> int:
        with tempfile.TemporaryDirectory(prefix="visor-track-bench-") as tmp:
            return track_to_folder(args.video, Path(tmp) / "out", model=detector, options=options).frames

    runs = {"raw": raw, "track": end_to_end, "folder": to_folder}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up
        fn()
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats):  # interleaved: load from other processes hits all alike
        for key, fn in runs.items():
            t = time.perf_counter()
            n = fn()
            times[key].append(time.perf_counter() - t)
            assert n == len(frames), (key, n)
        loads.append(os.getloadavg()[0])
    fps = {k: [len(frames) / t for t in v] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in fps.items()}
    best = {k: max(v) for k, v in fps.items()}
    print(f"\n{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, ONNX Runtime on {args.threads} "
          f"thread(s), {args.repeats} rounds (load average {min(loads):.2f}-{max(loads):.2f}):")
    names = {"raw": "raw detector (Detector.run per frame)", "track": "visor.track end to end",
             "folder": "track_to_folder (+ video, files)"}
    for key, name in names.items():
        spread = f"{min(fps[key]):.1f}-{max(fps[key]):.1f}"
        pairs = [r / w for r, w in zip(fps[key], fps["raw"], strict=True)]  # each round against its own raw run
        ratio = "" if key == "raw" else (f"  {med[key] / med['raw']:6.1%} of raw; per round "
                                         f"{statistics.median(pairs):.1%} [{min(pairs):.0%}-{max(pairs):.0%}], "
                                         f"best/best {best[key] / best['raw']:.1%} (goal >= 85%)")
        print(f"  {name:40s} {med[key]:6.1f} frames/s median (runs {spread}){ratio}")


if __name__ == "__main__":
    main()
