"""``run_batch``: list the inputs, skip the finished ones, run an engine, commit atomic parts."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from visor.batch.errors import BatchError
from visor.batch.inputs import Inputs, iter_inputs
from visor.batch.store import ResultStore, output_format, require_pyarrow
from visor.batch.tasks import TRACK, Runner, TaskSpec, default_batch_size, quarantine_row, tracked_row
from visor.batch.video import AUTO, FrameItem, VideoState, VideoStride, check_stride, expand_videos, is_video_path
from visor.errors import ConfigError, CorruptVideo, InvalidInput, VisorError
from visor.io import DEFAULT_LIMITS, ImageLimits
from visor.models.tasks import TaskRegistry

ENGINES = ("local", "ray")
DEFAULT_CHUNK_SIZE = 1024


@dataclass
class BatchSummary:
    """What a run did. ``seconds`` is the pipeline's wall time (listing, decoding, inference, writing),
    after the model was loaded (``load_seconds``); ``stages`` sums the seconds spent per stage over the
    threads doing it (decode and preprocess in the decode workers; stack, inference, postprocess and
    waiting for decoded inputs in the inference streams; writing parts)."""

    out: str
    task: str
    engine: str
    model: str
    model_sha256: str
    workers: int = 0
    batch_size: int = 0
    streams: int = 0
    """Concurrent inference calls (local engine)."""
    threads: int = 0
    """ONNX Runtime intra-op threads per call (0: its default)."""
    inputs: int = 0
    """Inputs listed (finished ones included; a video counts once)."""
    skipped: int = 0
    """Inputs already in the output (from an earlier run) or listed twice."""
    processed: int = 0
    """Rows written: ``ok`` + ``quarantined``."""
    ok: int = 0
    """Result rows written (one per image, one per kept video frame)."""
    quarantined: int = 0
    """Quarantine rows written (a truncated video has one beside its frames' results)."""
    videos: int = 0
    """Videos run to the end (or to their error) in this run."""
    frames: int = 0
    """Result rows of video frames (included in ``ok``)."""
    parts: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds per stage (the threads doing it; ONNX Runtime's pool threads not counted)."""
    peak_rss_mb: float = 0.0
    """This process's peak resident memory so far (Linux VmHWM), MiB."""

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["images_per_second"] = round(self.images_per_second, 2)
        d["seconds"] = round(self.seconds, 3)
        d["load_seconds"] = round(self.load_seconds, 3)
        d["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        d["stages"] = {k: round(v, 3) for k, v in sorted(self.stages.items())}
        d["cpu"] = {k: round(v, 3) for k, v in sorted(self.cpu.items()) if v > 0}
        return d


class _Held:
    """The rows of a video not finished yet."""

    def __init__(self, state: VideoState) -> None:
        self.state = state
        self.results: list[dict[str, Any]] = []
        self.quarantine: list[dict[str, Any]] = []


class _Sink:
    """Buffers one chunk of rows and commits it (atomically) when full or old enough.

    A video's rows are held until all of them are in (:attr:`VideoState.closed`), then join the chunk
    together: a video is committed whole or not at all, which is what lets a re-run skip it by its path.
    """

    def __init__(self, store: ResultStore, runner: Runner, chunk_size: int, flush_seconds: float) -> None:
        self.store = store
        self.model = {"model": runner.model_name, "model_sha256": runner.model_sha256}
        self.chunk_size = chunk_size
        self.flush_seconds = flush_seconds
        self.results: list[dict[str, Any]] = []
        self.quarantine: list[dict[str, Any]] = []
        self.last_commit = time.monotonic()
        self.ok_count = 0
        self.bad_count = 0
        self.video_count = 0
        self.frame_count = 0
        self.held: dict[int, _Held] = {}

    def ok(self, path: str | FrameItem, row: dict[str, Any]) -> None:
        if isinstance(path, FrameItem):
            held = self._held(path)
            held.results.append({"path": path.path, "frame": path.frame, "timestamp_s": path.timestamp_s, **row,
                                 **self.model})
            path.video.received += 1
            return
        self.results.append({"path": path, **row, **self.model})
        self.ok_count += 1

    def bad(self, path: str | FrameItem, error: BaseException) -> None:
        if isinstance(path, FrameItem):
            row = quarantine_row(path.path, error)
            if path.frame is not None:  # one frame failed after decoding (inference): the video's other rows stay
                row["message"] = f"frame {path.frame}: {row['message']}"
            self._held(path).quarantine.append(row)
            path.video.received += 1
            return
        self.bad_row(quarantine_row(path, error))

    def bad_row(self, row: dict[str, Any]) -> None:
        self.quarantine.append(row)
        self.bad_count += 1

    def _held(self, item: FrameItem) -> _Held:
        held = self.held.get(id(item.video))
        if held is None:
            held = self.held[id(item.video)] = _Held(item.video)
        return held

    def _release(self) -> None:
        """Move the rows of every finished video into the chunk (a truncated one's error with them)."""
        for key in [k for k, held in self.held.items() if held.state.closed]:
            held = self.held.pop(key)
            if held.state.error is not None:
                row = quarantine_row(held.state.path, held.state.error)
                row["message"] += f" ({len(held.results)} frame rows before the damage were kept)"
                held.quarantine.append(row)
            self.results.extend(held.results)
            self.quarantine.extend(held.quarantine)
            self.ok_count += len(held.results)
            self.frame_count += len(held.results)
            self.bad_count += len(held.quarantine)
            self.video_count += 1

    def maybe_commit(self) -> None:
        self._release()
        if (len(self.results) + len(self.quarantine) >= self.chunk_size
                or time.monotonic() - self.last_commit >= self.flush_seconds):
            self.commit()

    def commit(self) -> None:
        """Commit the chunk: every finished row (the rows of a video not finished yet stay held)."""
        self._release()
        self.store.commit(self.results, self.quarantine)
        self.results, self.quarantine = [], []
        self.last_commit = time.monotonic()


def _pending(inputs: Inputs, done: set[str], counts: dict[str, int]) -> Iterator[str]:
    """Inputs not finished yet, each once (``done`` grows with what this run takes on)."""
    for path in iter_inputs(inputs):
        counts["inputs"] += 1
        if path in done:
            counts["skipped"] += 1
            continue
        done.add(path)
        yield path


def run_batch(
    inputs: Inputs,
    *,
    out: str | os.PathLike,
    task: str = "classify",
    model: str | None = None,
    engine: str = "local",
    workers: int | None = None,
    batch_size: int | None = None,
    streams: int | None = None,
    top_k: int = 5,
    features: tuple[str, ...] | list[str] | None = None,
    detector: str | None = None,
    segmenter: str | None = None,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    agnostic: bool = False,
    limits: ImageLimits = DEFAULT_LIMITS,
    threads: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    flush_seconds: float = 60.0,
    overwrite: bool = False,
    ray_address: str | None = None,
    progress: bool = False,
    tasks: TaskRegistry | None = None,
    video_stride: VideoStride = AUTO,
) -> BatchSummary:
    """Run ``task`` over every input and write one row per input to ``out`` (a folder of parts,
    ``.parquet`` or ``.jsonl``; see :mod:`visor.batch.store`).

    ``task``: a batch task of the task registry (``tasks``, default visor's: ``classify``, ``detect``,
    ``segment``) or ``annotate``. ``model`` defaults to the registry's default model for the task (``detect``:
    ``yolox_nano``, ``segment``: ``deeplabv3_voc``), and the task's options (``top_k`` for classify; ``conf``,
    ``iou``, ``max_det``, ``agnostic`` for detect) are the ones the registry lists for it. ``segment`` writes
    per image the mask's JSON (class names, and per class present its area in pixels and COCO RLE) with the
    largest non-background class as ``label``. ``annotate`` runs ``features`` (default: all but
    ``segmentation``) with ``model`` as the classifier, ``detector`` for ``objects`` and ``segmenter`` for
    ``segmentation``. ``track`` (videos only, local engine) tracks each video whole with
    :func:`visor.video.track.track` (``model``: the detector, default ``yolox_nano``; the tracker's default options
    with ``iou``), one row per frame whose result holds each detection's ``tracker_id``; its ``video_stride``
    ``"auto"`` means every frame (tracking needs consecutive frames); images are quarantined.

    ``inputs``: a folder, glob, image file or manifest (CSV / JSON Lines / Parquet with a ``path``
    column), or a list of them. Videos (named as files or in a manifest, by their suffix: ``.mp4``, ``.mov``,
    ``.avi``, ``.mkv``, ``.webm``...) are expanded into frames, one row per kept frame with ``frame`` and
    ``timestamp_s`` set: every ``video_stride``-th frame, ``"auto"`` (the default) keeping about one frame per
    second of video; a video is committed whole, and redone whole after a crash midway (see
    :mod:`visor.batch.video`). Videos run on the local engine only. Bad images go to the quarantine table and the
    run goes on. Run it
    again after a crash or Ctrl-C: finished inputs are skipped. An output made with another task,
    model or options raises :class:`~visor.batch.OutputMismatch` unless ``overwrite=True``.

    ``engine="local"``: ``workers`` decode threads (default: the CPU count, at most 8) beside ``streams``
    concurrent inference calls (default: the CPU count, at most 4; 1 for annotate), each with ``threads``
    ONNX Runtime threads (default: CPU count / streams). ``engine="ray"``: ``workers`` Ray Data actors
    (default 1), on a local Ray instance or the cluster at ``ray_address``. ``batch_size``: images per
    inference call (default: 16 for classify, 8 for detect and other tasks, 1 for annotate, divided
    by the concurrent calls, streams or actors: ONNX Runtime's memory grows with the images in flight). Rows are
    committed every ``chunk_size`` inputs or ``flush_seconds``.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose local or ray")
    video_stride = check_stride(video_stride)
    for name, value in (("workers", workers), ("batch_size", batch_size), ("streams", streams),
                        ("chunk_size", chunk_size)):
        if value is not None and int(value) < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    cpus = os.cpu_count() or 1
    if engine == "local":
        streams = int(streams or (1 if task == "annotate" else min(4, cpus)))
        if threads is None:
            threads = max(1, cpus // streams)
    spec = TaskSpec(task=task, model=model, detector=detector, segmenter=segmenter, features=tuple(features or ()),
                    top_k=top_k, conf=conf, iou=iou, max_det=max_det, agnostic=agnostic, max_bytes=limits.max_bytes,
                    max_pixels=limits.max_pixels, threads=threads, tasks=tasks)
    if output_format(out) == "parquet":
        require_pyarrow("Parquet output")  # before loading anything
    if not isinstance(inputs, (str, os.PathLike, list, tuple)):
        inputs = list(inputs)  # listed twice (a count for the progress bar, then the run)
    if engine == "ray" and task == TRACK:
        raise ConfigError("--task track runs on the local engine only")
    if engine == "ray":  # before importing Ray: videos are refused whether or not it is installed
        video = next((p for p in iter_inputs(inputs) if is_video_path(p)), None)
        if video is not None:
            raise ConfigError(f"--engine ray runs images only, and {video} is a video: run videos with "
                              "--engine local")

        from visor.batch.ray_engine import import_ray

        import_ray()  # fail fast, before loading anything
    workers = int(workers or (min(8, os.cpu_count() or 1) if engine == "local" else 1))
    batch_size = int(batch_size or default_batch_size(task, streams if engine == "local" else workers))

    if next(iter_inputs(inputs), None) is None:  # also reads a manifest's header: fail before writing
        described = _describe_inputs(inputs)
        raise BatchError(f"no images found in {', '.join(described) if isinstance(described, list) else described}")

    t0 = time.perf_counter()
    runner = spec.build()
    load_seconds = time.perf_counter() - t0
    info = {"engine": engine, "visor_version": _version(), "inputs": _describe_inputs(inputs)}
    identity = {**runner.identity(), "video_stride": video_stride}
    store = ResultStore.open(out, identity, overwrite=overwrite, info=info)
    summary = BatchSummary(out=os.fspath(out), task=task, engine=engine, model=runner.model_name,
                           model_sha256=runner.model_sha256, workers=workers, batch_size=batch_size,
                           streams=streams or 0, threads=threads or 0, load_seconds=load_seconds)
    try:
        t0 = time.perf_counter()
        done = store.done_paths()
        total = sum(1 for p in iter_inputs(inputs) if p not in done)
        counts = {"inputs": 0, "skipped": 0}
        sink = _Sink(store, runner, int(chunk_size), float(flush_seconds))
        from tqdm import tqdm

        # track: the bar counts frames as they are tracked, with no total (a video's frame count is known only
        # once it is open)
        with tqdm(total=None if task == TRACK else total, unit="img", desc=f"visor batch {task}",
                  disable=not progress, file=sys.stderr,
                  dynamic_ncols=True, smoothing=0.1) as bar:
            try:
                pending = _pending(inputs, done, counts)
                if task == TRACK:
                    _run_track(runner, pending, sink, stride=video_stride, on_item=bar.update)
                elif engine == "local":
                    from visor.batch.local import run_local

                    def on_open(state: VideoState, expected: int | None) -> None:
                        if expected is not None and bar.total is not None:
                            bar.total += expected - 1  # the bar counts work items: a video's frames
                            bar.refresh()

                    items = expand_videos(pending, stride=video_stride, max_pixels=limits.max_pixels,
                                          on_open=on_open,
                                          on_decode=lambda seconds: runner.timer.add("video_decode", seconds))
                    run_local(runner, items, sink, workers=workers, batch_size=batch_size, streams=streams,
                              on_batch=bar.update)
                else:
                    from visor.batch.ray_engine import run_ray

                    if task != "annotate":
                        runner.model = None  # the actors load their own; free the driver's copy
                    run_ray(spec, pending, sink, workers=workers, batch_size=batch_size, address=ray_address,
                            on_batch=bar.update)
                sink.commit()
            except KeyboardInterrupt:
                sink.commit()  # keep what is finished; a re-run does the rest
                raise
        summary.seconds = time.perf_counter() - t0
        summary.inputs, summary.skipped = counts["inputs"], counts["skipped"]
        summary.ok, summary.quarantined = sink.ok_count, sink.bad_count
        summary.processed = sink.ok_count + sink.bad_count
        summary.videos, summary.frames = sink.video_count, sink.frame_count
        summary.parts = store.parts_written
        summary.stages = {**runner.timer.seconds, "write": store.write_seconds}
        summary.cpu = dict(runner.timer.cpu)
        summary.peak_rss_mb = _peak_rss_mb()
    except VisorError:
        raise
    except OSError as e:
        raise BatchError(f"batch run failed on {e.filename or out}: {e.strerror or e}") from None
    finally:
        store.close()
    return summary


def _run_track(runner, pending: Iterator[str], sink: _Sink, *, stride: VideoStride,
               on_item: Callable[[int], None]) -> None:
    """``--task track``: each video tracked whole, one row per frame (``stride`` ``"auto"``: every frame, as
    tracking needs); an image is quarantined (:class:`~visor.errors.InvalidInput`)."""
    for path in pending:
        if not is_video_path(path):
            sink.bad(path, InvalidInput(f"{path}: --task track runs on videos only"))
            on_item(1)
            sink.maybe_commit()
            continue
        state = VideoState(path, stride=1 if stride == AUTO else int(stride))
        t = time.perf_counter()
        try:
            stream = runner.track(path, stride=state.stride)
        except VisorError as e:
            stream, state.error = None, e
        if stream is not None:
            with stream:
                while True:
                    try:
                        tracked = next(stream)
                    except StopIteration:
                        break
                    except VisorError as e:
                        state.error = e
                        break
                    state.emitted += 1
                    sink.ok(FrameItem(path, int(tracked.index), tracked.timestamp_s, None, state),
                            tracked_row(tracked))
                    on_item(1)
        state.finished = True
        if state.emitted == 0:
            error = state.error or CorruptVideo(f"{path}: no frame could be decoded")
            state.error, state.emitted = None, 1
            sink.bad(FrameItem(path, None, None, None, state), error)
            on_item(1)
        runner.timer.add("track", time.perf_counter() - t)
        sink.maybe_commit()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: VmHWM where /proc has it (exact for this
    process image), else getrusage's ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _describe_inputs(inputs: Inputs) -> list[str] | str:
    """The inputs as given, for the record (a long list of paths is summarised)."""
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    if isinstance(inputs, (list, tuple)):
        return [os.fspath(i) for i in inputs] if len(inputs) <= 16 else f"{len(inputs)} paths"
    return "an iterable of paths"


def _version() -> str:
    from visor.version import __version__

    return __version__
