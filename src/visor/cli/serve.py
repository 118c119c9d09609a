"""``visor serve``: run the REST service (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys

from visor.cli.common import ExitCode, add_model_option, add_runtime_options, err, fraction, positive_int
from visor.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _threshold(text: str) -> tuple[str, float]:
    model, sep, value = text.rpartition("=")
    if not sep or not model:
        raise argparse.ArgumentTypeError(f"expected MODEL=THRESHOLD, got {text!r}")
    return model, fraction(value)


def _custom(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), path.strip()


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (like ``MALLOC_ARENA_MAX=2``) for this process.

    glibc gives busy threads their own arenas; with request, decoding and inference threads
    that fragments memory and the service's RSS creeps up under sustained load. No-op off glibc
    or when MALLOC_ARENA_MAX is already set.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, int(arenas))  # -8 is M_ARENA_MAX


def settings_from_args(args: argparse.Namespace):
    from visor.serve.settings import ServeSettings

    return ServeSettings(
        host=args.host, port=args.port, workers=args.workers, classifier=args.model, detector=args.detector,
        segmenter=args.segmenter,
        index=args.index, custom=dict(getattr(args, "custom", None) or []),
        threads=args.threads, max_batch=args.max_batch, batch_calibration=not args.no_batch_calibration,
        max_wait_ms=args.max_wait_ms, queue_size=args.queue_size, deadline_ms=args.deadline_ms,
        max_body_bytes=args.max_body_mb * 1024 * 1024, max_images=args.max_images, require_keys=not args.no_keys,
        key_cache_s=args.key_cache_s, rate_limit=args.rate_limit, rate_burst=args.rate_burst,
        aws_region=args.aws_region,
        metrics_token_file=args.metrics_token_file, metrics_public=args.metrics_public, db=args.db,
        faces_db=args.faces_db, log_predictions=args.log_predictions, retention_days=args.retention_days,
        review_threshold=args.review_threshold, review_thresholds=dict(args.review_model_threshold or []),
        review_labels=tuple(args.review_label or ()), review_sample_rate=args.review_sample_rate,
        preload=tuple(args.preload.split(",")) if args.preload else ("classifier",),
        drift_profile=args.drift_profile, drift_window=args.drift_window,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from visor.serve.app import SETTINGS_ENV, create_app
    except ImportError as e:
        err(f"the service needs the 'serve' extra ({e.name} is missing): pip install 'visor-vision[serve]'")
        return ExitCode.USAGE
    settings = settings_from_args(args)
    settings.metrics_token()  # an unreadable token file: one error line now, not in each worker
    if not settings.require_keys and not settings.loopback:
        print(f"\n  WARNING: API keys are OFF and visor listens on {settings.host}:{settings.port}.\n"
              "  Anyone who can reach this address can use the service. Drop --no-keys, or bind 127.0.0.1.\n",
              file=sys.stderr)
    if args.print_settings:
        print(json.dumps(json.loads(settings.to_json()), indent=2))
        return ExitCode.OK
    limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common = {"host": settings.host, "port": settings.port, "timeout_graceful_shutdown": args.graceful_timeout,
              "log_level": args.log_level, "limit_concurrency": args.limit_concurrency}
    # uvicorn shuts down gracefully on SIGTERM, then restores the previous handler and raises the
    # signal again; this handler turns that into exit status 0 (a clean, requested stop).
    previous = signal.signal(signal.SIGTERM, _stopped_on_request)
    try:
        if settings.workers > 1:
            os.environ[SETTINGS_ENV] = settings.to_json()
            uvicorn.run("visor.serve.app:create_app_from_env", factory=True, workers=settings.workers, **common)
        else:
            uvicorn.run(create_app(settings), **common)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return ExitCode.OK


def _stopped_on_request(signum: int, frame: object) -> None:
    raise SystemExit(0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the REST service (native API, Cloud Vision-compatible endpoint, review queue, web UI)",
        description="Run the visor REST service. API keys are required (create one with `visor keys create "
                    "--name NAME`) unless --no-keys. The web UI is at http://HOST:PORT/ui/, the OpenAPI docs at "
                    "/docs, health at /livez and /readyz, Prometheus metrics at /metrics.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive_int, default=8080, help="port (default 8080)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes, each with its own models and queues (default 1)")
    add_model_option(p, "classification")
    p.add_argument("--detector", default=DEFAULT_DETECTOR,
                   help=f"object detector for /v1/detect, annotate's objects and Cloud Vision's OBJECT_LOCALIZATION: "
                        f"registry name, model folder or .onnx (default {DEFAULT_DETECTOR}); 'none' for no detector")
    p.add_argument("--segmenter", default=DEFAULT_SEGMENTER,
                   help=f"semantic segmenter for /v1/segment and annotate's segmentation: registry name or model "
                        f"folder (default {DEFAULT_SEGMENTER}); 'none' for no segmenter")
    p.add_argument("--index", default=None, help="a `visor index build` folder; enables POST /v1/search")
    p.add_argument("--custom", type=_custom, action="append", metavar="NAME=PATH",
                   help="a detector or classifier (run folder, card.json or .onnx) served by the DeepStack API at "
                        "POST /v1/vision/custom/NAME (repeatable)")
    add_runtime_options(p, limits=False, threads_help="ONNX Runtime threads per model (default: one per physical core)")
    g = p.add_argument_group("batching and load")
    g.add_argument("--max-batch", type=positive_int, default=16, help="largest micro-batch (default 16; 1 = off)")
    g.add_argument("--no-batch-calibration", action="store_true",
                   help="batch up to --max-batch as given; by default the model is timed at start-up and "
                        "batches stop at the fastest size up to --max-batch")
    g.add_argument("--max-wait-ms", type=_positive_float, default=5.0,
                   help="longest wait for a micro-batch to fill, in ms (default 5)")
    g.add_argument("--queue-size", type=positive_int, default=64,
                   help="images queued per model before answering 503 (default 64)")
    g.add_argument("--deadline-ms", type=_positive_float, default=30000.0,
                   help="answer 504 when a request takes longer, in ms (default 30000)")
    g.add_argument("--max-body-mb", type=positive_int, default=32, help="largest request body in MiB (default 32)")
    g.add_argument("--max-images", type=positive_int, default=16, help="most images per request (default 16)")
    g.add_argument("--limit-concurrency", type=positive_int, default=None,
                   help="most open connections before uvicorn answers 503 (default: no limit)")
    g.add_argument("--graceful-timeout", type=positive_int, default=30,
                   help="seconds to finish requests in flight on SIGTERM (default 30)")
    a = p.add_argument_group("keys")
    a.add_argument("--no-keys", action="store_true", help="no API keys (local development only)")
    a.add_argument("--key-cache-s", type=_positive_float, default=5.0,
                   help="remember verified keys this many seconds; a revoked key stops working within it "
                        "(default 5)")
    a.add_argument("--rate-limit", type=_positive_float, default=None, help="requests per second per key")
    a.add_argument("--rate-burst", type=positive_int, default=20, help="burst allowance per key (default 20)")
    a.add_argument("--aws-region", default="us-east-1", metavar="REGION",
                   help="the region the Rekognition API's signed requests (boto3's region_name) must name "
                        "(default us-east-1); keys from `visor keys create --aws`")
    a.add_argument("--metrics-token-file", default=None, metavar="FILE",
                   help="a file holding a bearer token that /metrics also accepts (Prometheus: authorization: "
                        "{credentials_file: FILE}); /metrics otherwise needs an API key")
    a.add_argument("--metrics-public", action="store_true",
                   help="/metrics without any key; refused unless --host is a loopback address")
    d = p.add_argument_group("storage and review")
    d.add_argument("--db", default=None,
                   help="SQLAlchemy URL (default sqlite in $VISOR_HOME/serve.db; postgresql://... works)")
    d.add_argument("--faces-db", default=None, help="face collections file (default: the `visor faces` one)")
    d.add_argument("--log-predictions", action="store_true", help="store every prediction in the database")
    d.add_argument("--retention-days", type=_positive_float, default=30.0,
                   help="delete logged predictions older than this (default 30)")
    d.add_argument("--review-threshold", type=fraction, default=None,
                   help="queue predictions whose confidence is below this for review (default: no review queue)")
    d.add_argument("--review-model-threshold", type=_threshold, action="append", metavar="MODEL=T",
                   help="per-model review threshold (repeatable)")
    d.add_argument("--review-label", action="append", metavar="LABEL",
                   help="always queue predictions of this label (repeatable)")
    d.add_argument("--review-sample-rate", type=fraction, default=0.0,
                   help="also queue this random fraction of predictions (default 0)")
    m = p.add_argument_group("drift monitoring")
    m.add_argument("--drift-profile", default=None, metavar="PROFILE",
                   help="a `visor evaluate --profile` file for the classifier: /metrics then reports the PSI of "
                        "confidence, class mix and input brightness/contrast/sharpness, the embedding shift and an "
                        "alert flag over the last --drift-window classify predictions")
    m.add_argument("--drift-window", type=positive_int, default=500,
                   help="predictions compared with the drift profile (default 500)")
    p.add_argument("--preload", default="classifier",
                   help="comma list of models to load at start: classifier,faces,text,moderation")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--print-settings", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)
