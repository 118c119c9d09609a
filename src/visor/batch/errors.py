"""Typed errors of ``visor batch``."""

from __future__ import annotations

from visor.errors import VisorError


class BatchError(VisorError):
    """A batch run cannot start or go on (bad output folder, missing optional package...)."""

    http_status = 400
    code = "batch_error"


class OutputMismatch(BatchError):
    """The output holds results made with other parameters (task, model, options); ``overwrite=True``
    starts over."""

    http_status = 409
    code = "output_mismatch"


class OutputLocked(BatchError):
    """Another run is writing to the same output."""

    http_status = 409
    code = "output_locked"


class MissingDependency(BatchError):
    """An optional package the run needs is not installed (pyarrow for Parquet, ray for ``engine="ray"``)."""

    code = "missing_dependency"
