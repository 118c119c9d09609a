"""``visor track``: detect and track objects through a video; per-frame results, or an output folder with
JSON Lines, MOT CSV, counts and the annotated video.

Exit status: 0 on success; 1 when the source cannot be read (missing, not a video, empty, truncated: one line
``visor: error: ...`` on stderr; with ``--out``, the frames processed before a truncation are kept under
``.partial`` names); 2 for a usage error, an unknown model, a bad zones file or an output folder conflict;
130 when interrupted (with ``--out``, what was processed is kept under ``.partial`` names).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from visor.cli.common import (
    ExitCode,
    add_model_option,
    add_output_options,
    add_progress_options,
    add_runtime_options,
    err,
    fraction,
    positive_int,
    show_progress,
)
from visor.errors import InvalidInput, OutputConflict


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def format_frame(d: dict[str, Any]) -> str:
    """One frame as text: ``FRAME  TIME  scene N  #id class conf, ...`` (``[cut]`` on a scene's first frame)."""
    when = "-" if d["timestamp_s"] is None else f"{d['timestamp_s']:.2f}s"
    boxes = ", ".join(f"#{b['tracker_id']} {b['class_name']} {b['confidence']:.2f}" for b in d["detections"])
    cut = " [cut]" if d["scene_cut"] else ""
    return f"{d['frame']}  {when}  scene {d['scene']}{cut}  {boxes or '-'}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _summary_text(frames: int, tracks: int, cuts: list[int], fps: float, counts: dict[str, Any]) -> list[str]:
    lines = [f"{_n(frames, 'frame')}, {_n(tracks, 'track')}, {_n(len(cuts), 'scene cut')}"
             + (f" (at frames {', '.join(map(str, cuts))})" if cuts else "") + f", {fps:.1f} frames/s"]
    by_class = counts.get("tracks_by_class") or {}
    if by_class:
        lines.append("tracks by class: " + ", ".join(f"{k} {v}" for k, v in by_class.items()))
    for name, line in (counts.get("lines") or {}).items():
        def total(side: str, line: dict = line) -> int:
            return sum(line.get(side, {}).values())
        lines.append(f"line {name}: in {total('in')}, out {total('out')}")
    for name, zone in (counts.get("zones") or {}).items():
        entries = sum((zone.get("entries") or {}).values())
        lines.append(f"zone {name}: {entries} entries")
    return lines


def _options(args: argparse.Namespace):
    from visor.video.track import TrackerOptions

    kwargs: dict[str, Any] = {"track_thresh": args.track_thresh}
    if args.conf is not None:
        kwargs["conf"] = args.conf
        kwargs["low_thresh"] = max(args.conf, min(TrackerOptions.low_thresh, args.track_thresh))
    else:
        kwargs["low_thresh"] = min(TrackerOptions.low_thresh, args.track_thresh)
        kwargs["conf"] = min(TrackerOptions.conf, kwargs["low_thresh"])
    if args.no_scene_cuts:
        kwargs["scene_cut_threshold"] = None
    return TrackerOptions(**kwargs)


def _to_stdout(args: argparse.Namespace, options) -> int:
    from tqdm import tqdm

    from visor.video.track import track

    stream = track(args.source, model=args.model, zones=args.zones, options=options, stride=args.stride,
                   max_frames=args.max_frames, fps=args.fps, threads=args.threads,
                   reconnect_attempts=args.reconnect_attempts)
    total = stream.frame_count
    if total is not None:
        total = -(-total // args.stride)
        if args.max_frames is not None:
            total = min(total, args.max_frames)
    started = time.perf_counter()
    with stream, tqdm(total=total, unit="frame", disable=not show_progress(args), file=sys.stderr) as bar:
        try:
            for tf in stream:
                d = tf.to_dict()
                bar.clear()
                print(json.dumps(d) if args.json else format_frame(d), flush=args.json)
                bar.update(1)
        except InvalidInput as e:  # a file that breaks off: its frames were printed
            bar.close()
            err(f"{type(e).__name__}: {e}")
            return ExitCode.FAILED
    elapsed = time.perf_counter() - started
    tracker = stream.tracker
    if not args.json:
        fps = tracker.frames / elapsed if elapsed > 0 else 0.0
        for line in _summary_text(tracker.frames, tracker.track_count, tracker.cut_frames, fps, tracker.counts()):
            print(line)
    return ExitCode.OK


def _to_folder(args: argparse.Namespace, options) -> int:
    from visor.video.track import track_to_folder

    try:
        summary = track_to_folder(args.source, args.out, model=args.model, zones=args.zones, options=options,
                                  video=not args.no_video, overwrite=args.overwrite, progress=show_progress(args),
                                  stride=args.stride, max_frames=args.max_frames, fps=args.fps, threads=args.threads,
                                  reconnect_attempts=args.reconnect_attempts)
    except InvalidInput as e:
        if isinstance(e, OutputConflict):
            raise
        partial = _partial_note(args.out)
        err(f"{type(e).__name__}: {e}{partial}")
        return ExitCode.FAILED
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        for line in _summary_text(summary.frames, summary.tracks, list(summary.scene_cuts), summary.fps,
                                  summary.counts):
            print(line)
        print(f"wrote {', '.join(p.name for p in summary.files.values())} to {summary.out_dir}")
    return ExitCode.OK


def _partial_note(out: str) -> str:
    """``" (the N frames before it are in OUT/*.partial.*)"`` when a partial run left its summary, else ``""``."""
    from pathlib import Path

    try:
        doc = json.loads((Path(out) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(doc, dict) or doc.get("complete") is not False:
        return ""
    return f" (the {doc.get('frames')} frames before it are in {out}, as *.partial.* files)"


def cmd_track(args: argparse.Namespace) -> int:
    options = _options(args)
    try:
        return _to_folder(args, options) if args.out else _to_stdout(args, options)
    except InvalidInput as e:
        if isinstance(e, OutputConflict):
            raise
        err(f"{type(e).__name__}: {e}")
        return ExitCode.FAILED


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor track`` to the command parser."""
    p = sub.add_parser(
        "track",
        help="detect and track objects through a video: ids, scene cuts, zone and line counts",
        description=(
            "Detect objects in every frame of SOURCE and follow them with ByteTrack: each object keeps a tracker "
            "id while it is in view (through short occlusions); a scene cut ends every track. SOURCE is a video "
            "file (MP4/MOV, AVI, MKV, WebM), a folder or quoted glob of images (give --fps), an rtsp:// or "
            "http(s):// MJPEG stream, or a webcam index. Without --out, one line per frame: FRAME  TIME  scene "
            "N  #id class confidence, ... and a summary (--json: one JSON object per frame). With --out DIR: "
            "frames.jsonl, tracks.txt (MOT CSV: frame (1-based), id, x, y, w, h, conf, class id, -1), "
            "counts.json, annotated.mp4 (boxes, ids, trails, zones) and summary.json, and a short summary "
            "printed (--json: as JSON). --zones FILE (YAML/JSON) counts objects in polygon zones and crossings "
            "of lines. A source that breaks off keeps the frames before it (as *.partial.* files with --out) "
            "and exits 1."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="video file, image folder or glob, stream URL or webcam index")
    add_model_option(p, "detection", role="object detector")
    p.add_argument("--zones", metavar="FILE", default=None,
                   help="zones and counting lines (YAML or JSON: zones: [{name, polygon, classes}], "
                        "lines: [{name, start, end, classes}])")
    add_output_options(p, out="write frames.jsonl, tracks.txt, counts.json, annotated.mp4 and summary.json into "
                              "DIR (not the source's folder)")
    p.add_argument("--no-video", action="store_true", help="with --out, do not write annotated.mp4")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in the --out folder")
    p.add_argument("--stride", type=positive_int, default=1, metavar="N",
                   help="track every N-th frame (default 1: all)")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--reconnect-attempts", type=positive_int, default=5, metavar="N",
                   help="a live source: give up (exit status 1) after N failed connection attempts in a row, "
                        "with backoff between them (default 5)")
    p.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate of an image folder or glob (a video file's own rate is used)")
    p.add_argument("--conf", type=fraction, default=None,
                   help="detector score threshold (default 0.1: ByteTrack keeps occluded objects with the "
                        "low-scoring boxes)")
    p.add_argument("--track-thresh", type=fraction, default=0.5,
                   help="score from which a box starts or firmly continues a track (default 0.5)")
    p.add_argument("--no-scene-cuts", action="store_true",
                   help="do not detect scene cuts (tracks are otherwise ended at every cut)")
    add_runtime_options(p, limits=False)
    add_progress_options(p)
    p.set_defaults(func=cmd_track)
