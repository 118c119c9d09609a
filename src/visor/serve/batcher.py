"""Micro-batching: gather concurrent requests for one model into batches, with load shedding.

A :class:`MicroBatcher` owns one worker thread. ``submit`` puts an item in a bounded queue
and returns a :class:`concurrent.futures.Future`; the worker takes the first waiting item,
waits up to ``max_wait_ms`` for up to ``max_batch - 1`` more, runs the batch function once
on all of them and resolves each future with its own result. A full queue refuses new work
at once (:class:`Overloaded`, HTTP 503), and an item whose deadline passed while it waited
is dropped with :class:`DeadlineExceeded` (HTTP 504) instead of wasting model time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from visor.errors import VisorError


class Overloaded(VisorError):
    """The model's queue is full (HTTP 503); retry after ``retry_after`` seconds."""

    http_status = 503
    code = "overloaded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(VisorError):
    """The request was not answered within its deadline (HTTP 504)."""

    http_status = 504
    code = "deadline_exceeded"


class ShuttingDown(VisorError):
    """The service is stopping and takes no new work (HTTP 503)."""

    http_status = 503
    code = "shutting_down"


@dataclass
class _Item:
    value: Any
    deadline: float  # time.monotonic() seconds
    future: Future


BatchFn = Callable[[Sequence[Any]], Sequence[Any]]


class MicroBatcher:
    """Runs ``fn(items) -> results`` (same length, same order) on batches of submitted items.

    ``on_batch(size, seconds)`` is called after each batch (metrics). Start with :meth:`start`,
    stop with :meth:`stop` (finishes what is queued first unless ``drain=False``).
    """

    def __init__(self, fn: BatchFn, *, name: str, max_batch: int = 16, max_wait_ms: float = 5.0,
                 queue_size: int = 64, retry_after: int = 1,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be at least 1")
        self.fn = fn
        self.name = name
        self.max_batch = int(max_batch)
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.retry_after = int(retry_after)
        self.on_batch = on_batch
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=int(queue_size))
        self._stop = threading.Event()
        self._accepting = True
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Items waiting (not counting the batch being run)."""
        return self._queue.qsize()

    def start(self) -> MicroBatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"visor-batcher-{self.name}", daemon=True)
            self._thread.start()
        return self

    def submit(self, value: Any, deadline: float) -> Future:
        """Queue one item; raises :class:`Overloaded` at once when the queue is full."""
        if not self._accepting:
            raise ShuttingDown("the service is shutting down")
        fut: Future = Future()
        try:
            self._queue.put_nowait(_Item(value, deadline, fut))
        except queue.Full:
            raise Overloaded(f"model {self.name!r} is at capacity ({self._queue.maxsize} images queued); "
                             f"retry after {self.retry_after} s", self.retry_after) from None
        return fut

    def stop(self, *, drain: bool = True, timeout: float = 30.0) -> None:
        """Refuse new items; finish queued ones (``drain``) or fail them, then end the thread."""
        self._accepting = False
        if not drain:
            self._fail_waiting(ShuttingDown("the service stopped before this request ran"))
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._fail_waiting(ShuttingDown("the service stopped before this request ran"))

    # ------------------------------------------------------------------ worker

    def _fail_waiting(self, error: Exception) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)

    def _collect(self) -> list[_Item]:
        try:
            first = self._queue.get(timeout=0.05)
        except queue.Empty:
            return []
        batch = [first]
        until = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = until - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _live(self, batch: list[_Item]) -> list[_Item]:
        """Drop cancelled items and those past their deadline (their futures fail with 504)."""
        now = time.monotonic()
        live = []
        for item in batch:
            if not item.future.set_running_or_notify_cancel():
                continue  # the caller gave up (its own deadline) and cancelled
            if item.deadline <= now:
                item.future.set_exception(DeadlineExceeded("the request's deadline passed while it was queued"))
                continue
            live.append(item)
        return live

    def _loop(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._live(self._collect())
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = self.fn([item.value for item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except BaseException as e:  # noqa: BLE001 - every waiting caller must hear about it
                for item in batch:
                    item.future.set_exception(e)
                continue
            for item, result in zip(batch, results, strict=True):
                item.future.set_result(result)
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - start)


def calibrate_batch_size(run: Callable[[int], Any], max_batch: int, *, seconds: float = 0.4,
                         tolerance: float = 0.05) -> tuple[int, dict[int, float]]:
    """The batch size (a power of two up to ``max_batch``) with the best items/s for ``run(n)``.

    ``run(n)`` runs the model once on a batch of ``n``. Each size is timed for about ``seconds``
    after one warm-up call; the smallest size within ``tolerance`` of the best throughput wins
    (smaller batches wait less). Returns it and the measured items/s per size.

    On a few CPU cores a small convolutional network is often as fast per image at batch 1 as
    at 16 (ONNX Runtime already spreads one image over the cores), and then batching only
    adds waiting; on many cores or an accelerator larger batches win.
    """
    sizes = [1]
    while sizes[-1] * 2 <= max_batch:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch:
        sizes.append(max_batch)
    rates: dict[int, float] = {}
    for n in sizes:
        run(n)
        done, start = 0, time.perf_counter()
        while True:
            run(n)
            done += n
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        rates[n] = done / elapsed
    best = max(rates.values())
    chosen = min(n for n, r in rates.items() if r >= (1 - tolerance) * best)
    return chosen, rates
