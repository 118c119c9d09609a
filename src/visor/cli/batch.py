"""``visor batch``: classify, detect, segment or annotate many images and video frames (or track videos) into a
resumable Parquet / JSON Lines output.

Exit status: 0 when the run finished (quarantined images are recorded in the output, not failures),
2 for usage errors (an output made with other parameters, a missing optional package, a bad manifest),
130 when interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal

from visor.cli.common import (
    MODEL_FORMS,
    ExitCode,
    add_model_option,
    add_output_options,
    add_progress_options,
    add_runtime_options,
    default_model,
    err,
    fraction,
    image_limits,
    model_help,
    positive_int,
    show_progress,
)


def cmd_batch(args: argparse.Namespace) -> int:
    from visor.batch import BatchError, run_batch

    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    show_bar = show_progress(args)
    limits = image_limits(args)
    try:
        with _sigterm_as_interrupt():
            summary = run_batch(
                args.inputs, out=args.out, task=args.task, model=args.model, engine=args.engine,
                workers=args.workers, batch_size=args.batch_size, streams=args.streams, top_k=args.top_k,
                features=features, detector=args.detector, segmenter=args.segmenter, conf=args.conf, iou=args.iou,
                max_det=args.max_det, agnostic=args.agnostic, limits=limits, threads=args.threads,
                chunk_size=args.chunk_size, overwrite=args.overwrite, ray_address=args.ray_address, progress=show_bar,
                video_stride=args.video_stride,
            )
    except BatchError as e:
        err(f"{type(e).__name__}: {e}")
        return ExitCode.USAGE
    if args.json:
        print(json.dumps(summary.to_dict()), flush=True)
    else:
        videos = f" ({summary.frames} frames of {summary.videos} videos)" if summary.videos else ""
        print(f"{summary.out}: {summary.ok} done{videos}, {summary.quarantined} quarantined, {summary.skipped} skipped "
              f"(already done) of {summary.inputs} inputs in {summary.seconds:.1f} s "
              f"({summary.images_per_second:.1f} images/s; model {summary.model}; "
              f"peak memory {summary.peak_rss_mb:.0f} MiB)")
    return ExitCode.OK


def video_stride(text: str) -> int | str:
    """``--video-stride``: ``auto`` or a positive whole number."""
    from visor.batch.video import check_stride
    from visor.errors import ConfigError

    try:
        return check_stride(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive whole number, got {text!r}") from None


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C while the run lasts: it commits what it finished before exiting."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor batch`` to the command parser."""
    from visor.batch.tasks import TRACK, batch_tasks

    p = sub.add_parser(
        "batch",
        help="run a model over many images into a resumable Parquet or JSON Lines output",
        description=(
            "Classify, detect, segment or annotate every image of INPUT: a folder (searched recursively), a quoted "
            "glob, an image file, a video file, or a manifest (.csv, .jsonl or .parquet with a 'path' column; "
            "relative paths are relative to the manifest). A video (.mp4, .mov, .m4v, .avi, .mkv, .webm, named as "
            "a file or in a manifest; folders and globs list images only) gives one row per kept frame, with its "
            "frame index and timestamp_s (see --video-stride); its rows are committed together, so an interrupted "
            "video is redone whole on resume, and a truncated one keeps the rows of its good frames and is also "
            "quarantined (corrupt_video). --out names a folder of parts ending in .parquet or .jsonl: one row per "
            "image (path, status, top label and confidence, the full result as JSON, model and its sha256; "
            "segment: the largest class other than background as label, and in the result the class names and "
            "per class present its area in pixels and COCO RLE), "
            "and unreadable images in its _quarantine/ table (path, error type, code, message). Parts are "
            "written atomically: after a crash or Ctrl-C, run the same command again and it skips the images "
            "already done. An output made with another task, model or options is refused (--overwrite starts "
            "over). Read it with pandas.read_parquet(OUT) or visor.batch.read_results(OUT)."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folder, glob, image file, video file or manifest")
    p.add_argument("--task", choices=(*batch_tasks(), TRACK), default="classify",
                   help="what to run on each image or video frame (default classify); track: each video tracked "
                        "whole (every frame unless --video-stride N; --model the detector, default "
                        f"{default_model('detection')}), rows with tracker_id per detection; videos only")
    add_output_options(p, json=None, out="output folder ending in .parquet or .jsonl", out_required=True,
                       out_metavar="OUT")
    add_model_option(p, None, default=None,
                     help_text=f"classifier (classify, annotate), object detector (detect) or segmenter (segment): "
                               f"{MODEL_FORMS} (default {default_model('classification')} for classify and "
                               f"annotate, {default_model('detection')} for detect, "
                               f"{default_model('segmentation')} for segment)")
    p.add_argument("--detector", default=None, metavar="MODEL",
                   help=model_help("detection", default=None, role="annotate: the object detector for the objects "
                                                                   "feature"))
    p.add_argument("--segmenter", default=None, metavar="MODEL",
                   help=model_help("segmentation", default=None, role="annotate: the segmenter for the segmentation "
                                                                      "feature"))
    p.add_argument("--features", default=None,
                   help="annotate: comma-separated features (default: all but segmentation, as 'visor annotate')")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local threads, or Ray Data (needs pip install 'visor-vision[ray]') (default local)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="local: decode threads (default: CPU count, at most 8); ray: model actors (default 1)")
    p.add_argument("--streams", type=positive_int, default=None,
                   help="local: concurrent inference calls (default: CPU count, at most 4; 1 for annotate)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join ('auto' or ray://HOST:PORT); default: start a local Ray instance")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes to keep per image (default 5)")
    p.add_argument("--conf", type=fraction, default=0.25, help="detect: keep boxes scoring above this (default 0.25)")
    p.add_argument("--iou", type=fraction, default=0.45, help="detect: NMS overlap threshold (default 0.45)")
    p.add_argument("--max-det", type=positive_int, default=300, help="detect: most boxes per image (default 300)")
    p.add_argument("--agnostic", action="store_true", help="detect: suppress overlapping boxes across classes too")
    p.add_argument("--video-stride", type=video_stride, default="auto", metavar="N|auto",
                   help="videos: run every N-th frame (1: all frames); auto keeps about one frame per second "
                        "(N = the video's frame rate, rounded) (default auto). Local engine only")
    p.add_argument("--chunk-size", type=positive_int, default=1024,
                   help="images per committed part (default 1024); a crash redoes at most one part")
    add_runtime_options(
        p, threads_help="ONNX Runtime threads per inference call (default: CPU count / streams; ray: CPU count / "
                        "actors on a local instance, 1 per actor on a cluster)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per inference call (default: 16 for classify, 8 for detect, divided by the "
                        "concurrent calls; memory grows with it)")
    p.add_argument("--overwrite", action="store_true", help="delete an existing output made with other parameters")
    add_output_options(p, json="document")
    add_progress_options(p)
    p.set_defaults(func=cmd_batch)
