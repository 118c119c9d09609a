"""The local engine: a thread pool decodes and preprocesses ahead while ONNX Runtime infers.

PIL's decoder and resize, numpy's array passes and ONNX Runtime all release the GIL, so decode
workers and inference share the cores. Inference runs as ``streams`` concurrent calls on one
session (each with ``cores / streams`` intra-op threads): on a few cores, two single-threaded
calls get more from the CPU than one call split over two threads, whose threads wait for each
other at every operator, and more so when decode workers take turns on the same cores.

Inputs are grouped into batches as they are queued. At most
``2 * streams + 1`` batches are queued, decoding or inferring, which bounds memory whatever the
input size. Outcomes reach the sink in input order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from visor.batch.tasks import Runner
from visor.batch.video import FrameItem
from visor.errors import VisorError

Item = str | FrameItem  # an image's path, or a video frame (visor.batch.video)
Outcome = tuple[Item, Any]  # (item, result row or VisorError)


@dataclass
class _Batch:
    paths: list[Item]
    futures: list[Future]


def _infer_batch(runner: Runner, batch: _Batch) -> list[Outcome]:
    """Wait for a batch's decoded inputs and infer the good ones: (path, row or error) in order."""
    outcomes: list[Outcome] = []
    good: list[int] = []
    items = []
    t = time.perf_counter()
    for i, (path, future) in enumerate(zip(batch.paths, batch.futures, strict=True)):
        try:
            item = future.result()
        except VisorError as e:
            outcomes.append((path, e))
            continue
        outcomes.append((path, None))
        good.append(i)
        items.append(item)
    runner.timer.add("wait_for_decode", time.perf_counter() - t)
    if good:
        for i, row in zip(good, runner.infer(items), strict=True):
            outcomes[i] = (batch.paths[i], row)
    return outcomes


def run_local(
    runner: Runner,
    pending: Iterator[Item],
    sink,
    *,
    workers: int,
    batch_size: int,
    streams: int = 1,
    on_batch: Callable[[int], None] = lambda n: None,
) -> None:
    """Run ``runner`` over ``pending`` items (image paths, video frames), handing each outcome to ``sink`` in
    input order (``sink.ok(item, row)`` / ``sink.bad(item, error)``, then ``sink.maybe_commit()`` per batch).
    Video frames are decoded where ``pending`` is iterated: in this thread, while the workers prepare."""
    decoding: deque[_Batch] = deque()
    inferring: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visor-batch-decode") as decode_pool, \
            ThreadPoolExecutor(max_workers=streams, thread_name_prefix="visor-batch-infer") as infer_pool:

        def top_up() -> None:
            """Queue batches for decoding until ``streams + 1`` wait (beside those being inferred)."""
            while len(decoding) <= streams:
                paths = [p for _, p in zip(range(batch_size), pending, strict=False)]
                if not paths:
                    return
                futures = [decode_pool.submit(runner.prepare, p) for p in paths]
                decoding.append(_Batch(paths, futures))

        try:
            top_up()
            while decoding or inferring:
                while decoding and len(inferring) < streams:
                    inferring.append(infer_pool.submit(_infer_batch, runner, decoding.popleft()))
                    top_up()  # the workers decode the next batches while these are inferred
                outcomes = inferring.popleft().result()
                for path, row in outcomes:
                    if isinstance(row, VisorError):
                        sink.bad(path, row)
                    else:
                        sink.ok(path, row)
                on_batch(len(outcomes))
                sink.maybe_commit()
        except BaseException:
            for batch in decoding:
                for future in batch.futures:
                    future.cancel()
            for future in inferring:
                future.cancel()
            raise
