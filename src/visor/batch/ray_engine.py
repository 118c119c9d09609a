"""The Ray engine: the same work on Ray Data, for a local Ray instance or a cluster.

``ray.data.from_items`` of the pending paths (a window at a time) feeds ``map_batches`` with an
actor pool: each actor builds the task's runner (loads the model) once and, per batch, decodes and
preprocesses in a few threads, then runs one ONNX Runtime call, exactly as the local engine does.
The driver streams the actors' output batches into the same atomic parts. Ray is optional
(``pip install 'visor-vision[ray]'``); this module imports it only when a run asks for it. On a cluster,
visor (and the model's weights, or network access to them) must be installed on every node.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any, ClassVar

from visor.batch.errors import MissingDependency
from visor.batch.tasks import TaskSpec, quarantine_row
from visor.errors import VisorError

RAY_HINT = "--engine ray needs Ray Data: pip install 'visor-vision[ray]'"
#: Columns of the actors' output tables.
OUTPUT_COLUMNS = ("path", "status", "label", "class_id", "confidence", "count", "result", "error_type", "code",
                  "message")


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise MissingDependency(f"{RAY_HINT} ({e.name or 'ray'} is missing)") from None
    return ray


def _output_schema():
    import pyarrow as pa

    types = {"class_id": pa.int64(), "confidence": pa.float64(), "count": pa.int64()}
    return pa.schema([(c, types.get(c, pa.string())) for c in OUTPUT_COLUMNS])


class BatchPredictor:
    """A Ray Data actor: builds the runner once, then predicts one batch of paths per call."""

    spec: ClassVar[dict[str, Any]] = {}
    decode_threads: ClassVar[int] = 2

    def __init__(self) -> None:
        self.runner = TaskSpec(**{**self.spec, "features": tuple(self.spec.get("features", ()))}).build()
        self.pool = ThreadPoolExecutor(max_workers=self.decode_threads, thread_name_prefix="visor-batch-decode")

    def __call__(self, batch: dict[str, Any]):
        import pyarrow as pa

        paths = [str(p) for p in batch["path"]]
        futures = [self.pool.submit(self.runner.prepare, p) for p in paths]
        rows: dict[str, dict[str, Any]] = {}
        good, items = [], []
        for path, future in zip(paths, futures, strict=True):
            try:
                items.append(future.result())
                good.append(path)
            except VisorError as e:
                rows[path] = quarantine_row(path, e)
        if items:
            for path, row in zip(good, self.runner.infer(items), strict=True):
                if isinstance(row, VisorError):
                    rows[path] = quarantine_row(path, row)
                else:
                    rows[path] = {**row, "path": path, "result": json.dumps(row["result"], ensure_ascii=False)}
        ordered = [rows[p] for p in paths]
        return pa.table({c: [r.get(c) for r in ordered] for c in OUTPUT_COLUMNS}, schema=_output_schema())


def run_ray(
    spec: TaskSpec,
    pending: Iterator[str],
    sink,
    *,
    workers: int,
    batch_size: int,
    address: str | None = None,
    window: int = 100_000,
    on_batch: Callable[[int], None] = lambda n: None,
) -> None:
    """Run ``spec`` over ``pending`` paths on Ray Data with ``workers`` actors, handing outcomes to ``sink``.

    Without ``address`` (and no Ray already initialised in this process) a local Ray instance is
    started for the run and stopped after it; with one, the run joins that cluster (``"auto"``
    finds a running one).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Ray Data's own, about its settings
        _run_ray(import_ray(), spec, pending, sink, workers=workers, batch_size=batch_size, address=address,
                 window=window, on_batch=on_batch)


def _run_ray(ray, spec: TaskSpec, pending: Iterator[str], sink, *, workers: int, batch_size: int,
             address: str | None, window: int, on_batch: Callable[[int], None]) -> None:
    cpus = os.cpu_count() or 1
    local = address is None and not ray.is_initialized()
    # ONNX Runtime threads per actor, and the CPUs each actor reserves: on a local instance the
    # actors split this machine's cores; on a cluster each takes one CPU unless --threads says more.
    threads = spec.threads or (max(1, cpus // workers) if local else 1)
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        cache = os.environ.get("VISOR_CACHE")
        if cache:
            options["runtime_env"] = {"env_vars": {"VISOR_CACHE": cache}}
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=max(2, cpus, workers * threads), object_store_memory=256 * 2**20, **options)
        started = True
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        spec_dict = {**spec.to_dict(), "threads": threads}
        predictor = type("VisorBatchPredictor", (BatchPredictor,),
                         {"spec": spec_dict, "decode_threads": max(1, min(4, threads))})
        while True:
            paths = list(islice(pending, window))
            if not paths:
                break
            ds = ray.data.from_items([{"path": p} for p in paths])
            ds = ds.map_batches(predictor, batch_size=batch_size, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads)
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in table.to_pylist():
                    if row["status"] == "quarantined":
                        sink.bad_row({c: row[c] for c in ("path", "status", "error_type", "code", "message")})
                    else:
                        row["result"] = json.loads(row["result"])
                        sink.ok(row["path"], {k: row[k] for k in ("status", "label", "class_id", "confidence",
                                                                   "count", "result")})
                on_batch(table.num_rows)
                sink.maybe_commit()
    finally:
        if started:
            ray.shutdown()
