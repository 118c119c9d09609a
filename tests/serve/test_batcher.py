"""MicroBatcher: batching, order, load shedding, deadlines, failures, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from visor.serve.batcher import DeadlineExceeded, MicroBatcher, Overloaded, ShuttingDown, calibrate_batch_size


def far() -> float:
    return time.monotonic() + 60


def test_concurrent_items_share_a_batch_and_keep_their_order():
    sizes = []
    b = MicroBatcher(lambda xs: [x * 10 for x in xs], name="m", max_batch=4, max_wait_ms=500,
                     on_batch=lambda n, s: sizes.append(n)).start()
    try:
        futures = [b.submit(i, far()) for i in range(10)]
        assert [f.result(5) for f in futures] == [i * 10 for i in range(10)]
        assert sizes == [4, 4, 2]
    finally:
        b.stop()


def test_batch_of_one_runs_each_item_alone():
    sizes = []
    b = MicroBatcher(lambda xs: xs, name="m", max_batch=1, max_wait_ms=100,
                     on_batch=lambda n, s: sizes.append(n)).start()
    try:
        assert [f.result(5) for f in [b.submit(i, far()) for i in range(3)]] == [0, 1, 2]
        assert sizes == [1, 1, 1]
    finally:
        b.stop()


def test_full_queue_refuses_at_once_with_retry_after():
    gate = threading.Event()
    entered = threading.Event()

    def slow(xs):
        entered.set()
        gate.wait(10)
        return xs

    b = MicroBatcher(slow, name="m", max_batch=1, queue_size=2, retry_after=3).start()
    try:
        running = b.submit("a", far())
        assert entered.wait(5)
        queued = [b.submit(x, far()) for x in "bc"]
        with pytest.raises(Overloaded) as e:
            b.submit("d", far())
        assert e.value.http_status == 503 and e.value.retry_after == 3
        assert b.depth == 2
        gate.set()
        assert [running.result(5), *[f.result(5) for f in queued]] == ["a", "b", "c"]
    finally:
        gate.set()
        b.stop()


def test_items_past_their_deadline_are_dropped_not_run():
    ran = []
    gate = threading.Event()

    def fn(xs):
        gate.wait(10)
        ran.extend(xs)
        return xs

    b = MicroBatcher(fn, name="m", max_batch=1).start()
    try:
        first = b.submit("first", far())
        late = b.submit("late", time.monotonic() + 0.05)
        time.sleep(0.1)
        gate.set()
        assert first.result(5) == "first"
        with pytest.raises(DeadlineExceeded):
            late.result(5)
        assert ran == ["first"]
    finally:
        b.stop()


def test_a_failing_batch_fails_each_of_its_items_and_the_worker_goes_on():
    calls = []

    def fn(xs):
        calls.append(list(xs))
        if "boom" in xs:
            raise RuntimeError("model crashed")
        return xs

    b = MicroBatcher(fn, name="m", max_batch=8, max_wait_ms=200).start()
    try:
        fs = [b.submit(x, far()) for x in ("ok", "boom")]
        for f in fs:
            with pytest.raises(RuntimeError, match="model crashed"):
                f.result(5)
        assert b.submit("after", far()).result(5) == "after"
    finally:
        b.stop()


def test_stop_drains_queued_work_then_refuses_new_work():
    b = MicroBatcher(lambda xs: (time.sleep(0.05), xs)[1], name="m", max_batch=1).start()
    fs = [b.submit(i, far()) for i in range(5)]
    b.stop(drain=True)
    assert [f.result(0) for f in fs] == list(range(5))
    with pytest.raises(ShuttingDown):
        b.submit(9, far())


def test_stop_without_drain_fails_waiting_items():
    gate = threading.Event()
    b = MicroBatcher(lambda xs: (gate.wait(5), xs)[1], name="m", max_batch=1).start()
    fs = [b.submit(i, far()) for i in range(4)]
    time.sleep(0.1)
    threading.Timer(0.2, gate.set).start()
    b.stop(drain=False)
    assert fs[0].result(5) == 0
    for f in fs[1:]:
        with pytest.raises(ShuttingDown):
            f.result(5)


def test_calibration_prefers_the_smallest_size_near_the_best_rate():
    # a fake model: 1 ms per call plus 1 ms per item up to 4 items, 3 ms per item beyond
    def run(n):
        time.sleep(0.001 + 0.001 * min(n, 4) + 0.003 * max(0, n - 4))

    chosen, rates = calibrate_batch_size(run, 16, seconds=0.05)
    assert sorted(rates) == [1, 2, 4, 8, 16]
    assert chosen == 4  # fastest per item; 8 and 16 pay 3 ms per extra item
    assert calibrate_batch_size(run, 1, seconds=0.01)[0] == 1
    assert sorted(calibrate_batch_size(run, 6, seconds=0.01)[1]) == [1, 2, 4, 6]
