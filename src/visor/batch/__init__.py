"""Batch inference over many images and video frames: streaming, resumable, written in atomic parts.

>>> from visor.batch import run_batch, read_results
>>> summary = run_batch("photos/", task="classify", out="labels.parquet")   # doctest: +SKIP
>>> read_results("labels.parquet").to_pandas()                               # doctest: +SKIP

Run the same call again after a crash or Ctrl-C and it picks up where it stopped. Parquet output
needs pyarrow (``pip install 'visor-vision[batch]'``); ``engine="ray"`` needs Ray Data
(``pip install 'visor-vision[ray]'``). Importing this package imports neither.
"""

from visor.batch.errors import BatchError, MissingDependency, OutputLocked, OutputMismatch
from visor.batch.inputs import iter_inputs, iter_manifest
from visor.batch.run import ENGINES, BatchSummary, run_batch
from visor.batch.store import (
    QUARANTINE_COLUMNS,
    RESULT_COLUMNS,
    iter_paths,
    iter_results,
    part_files,
    read_params,
    read_results,
)
from visor.batch.tasks import TASKS, TaskSpec, batch_tasks

__all__ = [
    "ENGINES",
    "QUARANTINE_COLUMNS",
    "RESULT_COLUMNS",
    "TASKS",
    "BatchError",
    "BatchSummary",
    "MissingDependency",
    "OutputLocked",
    "OutputMismatch",
    "TaskSpec",
    "batch_tasks",
    "iter_inputs",
    "iter_manifest",
    "iter_paths",
    "iter_results",
    "part_files",
    "read_params",
    "read_results",
    "run_batch",
]
