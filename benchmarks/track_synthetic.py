"""visor's ByteTracker and supervision's ByteTrack on the same seeded synthetic detections, scored against truth.

    OMP_NUM_THREADS=1 python benchmarks/track_synthetic.py [--seeds 0-7] [--hard] [--repeat 3]

Sequences from ``tests/synthetic_tracks.py`` (``make_sequence(seed)``: 200 frames, 12 objects that move, cross,
occlude each other and leave; ``--hard``: 20 objects, more noise, weak boxes and false positives). Both trackers
run with ByteTrack's defaults, matched (see ``tests/ops/test_tracking_vs_supervision.py``). Prints per sequence
and pooled over all: MOTA, IDF1, ID switches, FN, FP (``visor.evaluate.evaluate_tracking``, equal to
py-motmetrics) and HOTA (equal to TrackEval), and each tracker's time per frame (the ``update`` calls only,
best of ``--repeat`` runs; supervision's ``sv.Detections`` are built before the clock starts).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic_tracks import make_sequence  # tests/synthetic_tracks.py
from visor.data.mot import MotTracks
from visor.evaluate.tracking import evaluate_tracking
from visor.ops.tracking import ByteTracker

HARD = {"n_objects": 20, "noise": 0.05, "p_low": 0.2, "fp_rate": 1.0}


def _mot(ids: list[np.ndarray], xyxy: list[np.ndarray]) -> MotTracks:
    """Per-frame ids and x1, y1, x2, y2 boxes as MOT rows (frames from 1)."""
    frames = np.concatenate([np.full(len(i), f, np.int64) for f, i in enumerate(ids, 1)] + [np.zeros(0, np.int64)])
    boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in xyxy] + [np.zeros((0, 4))])
    boxes[:, 2:] -= boxes[:, :2]
    flat = np.concatenate([np.asarray(i, np.int64) for i in ids] + [np.zeros(0, np.int64)])
    return MotTracks(frames, flat, boxes, np.ones(len(flat)), np.zeros((len(flat), 0)))


def run_visor(frames, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        tracker = ByteTracker(track_thresh=0.5, match_thresh=0.8, low_thresh=0.1, track_buffer=30, frame_rate=30)
        t0 = time.perf_counter()
        outs = [tracker.update(d) for d in frames]
        best = min(best, time.perf_counter() - t0)
        out = ([o.data["tracker_id"] for o in outs], [o.xyxy for o in outs])
    return out, best / len(frames)


def run_supervision(frames, repeat: int):
    import supervision as sv

    best, out = float("inf"), None
    for _ in range(repeat):
        tracker = sv.ByteTrack(track_activation_threshold=0.5, lost_track_buffer=30, minimum_matching_threshold=0.8,
                               frame_rate=30, minimum_consecutive_frames=1)
        dets = [sv.Detections(xyxy=d.xyxy.copy(), confidence=d.confidence.copy(), class_id=d.class_id.copy())
                for d in frames]
        t0 = time.perf_counter()
        outs = [tracker.update_with_detections(d) for d in dets]
        best = min(best, time.perf_counter() - t0)
        out = ([np.asarray(o.tracker_id, np.int64) for o in outs], [np.asarray(o.xyxy) for o in outs])
    return out, best / len(frames)


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-7", help="seeds: 0-7 or 0,3,5 (default 0-7)")
    ap.add_argument("--hard", action="store_true", help="20 objects, more noise, weak boxes and false positives")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tracker for the timing (best of; default 3)")
    args = ap.parse_args()

    trackers = {"visor": run_visor, "supervision": run_supervision}
    pooled = {name: {"gt": [], "pred": [], "ms": []} for name in trackers}
    head = (f"{'seed':>4}  {'tracker':11s}  {'MOTA':>7}  {'IDF1':>7}  {'HOTA':>7}  {'IDsw':>4}  {'FN':>5}  "
            f"{'FP':>4}  {'ms/frame':>8}")
    print(f"synthetic sequences ({'hard: ' + str(HARD) if args.hard else 'default'}), seeds {args.seeds}")
    print(head)
    for k, seed in enumerate(_seeds(args.seeds)):
        seq = make_sequence(seed, **(HARD if args.hard else {}))
        gt = _mot(seq.truth_ids, seq.truth_xyxy)
        for name, run in trackers.items():
            (ids, boxes), per_frame = run(seq.frames, args.repeat)
            pred = _mot(ids, boxes)
            r = evaluate_tracking(gt, pred)
            print(f"{seed:>4}  {name:11s}  {r.mota:7.4f}  {r.idf1:7.4f}  {r.hota:7.4f}  {r.num_switches:>4}  "
                  f"{r.num_misses:>5}  {r.num_false_positives:>4}  {per_frame * 1e3:8.3f}")
            # pooled: one long sequence, each seed's frames and ids shifted apart
            shift = 10_000 * (k + 1)
            pooled[name]["gt"].append((gt, shift))
            pooled[name]["pred"].append((pred, shift))
            pooled[name]["ms"].append(per_frame * 1e3)
    print("pooled over all seeds (frames and ids of each seed kept apart):")
    print(head.replace("seed", " all"))
    for name, p in pooled.items():
        r = evaluate_tracking(_concat(p["gt"]), _concat(p["pred"]))
        print(f"{'all':>4}  {name:11s}  {r.mota:7.4f}  {r.idf1:7.4f}  {r.hota:7.4f}  {r.num_switches:>4}  "
              f"{r.num_misses:>5}  {r.num_false_positives:>4}  {np.mean(p['ms']):8.3f}")


def _concat(parts: list[tuple[MotTracks, int]]) -> MotTracks:
    return MotTracks(np.concatenate([t.frames + s for t, s in parts]), np.concatenate([t.ids + s for t, s in parts]),
                     np.concatenate([t.boxes for t, _ in parts]), np.concatenate([t.confidences for t, _ in parts]),
                     np.zeros((sum(len(t) for t, _ in parts), 0)))


if __name__ == "__main__":
    main()
