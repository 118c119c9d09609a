"""ONNX Runtime inference session (CPU by default)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from visor.errors import WeightsError


class OnnxSession:
    """A thin wrapper over ``onnxruntime.InferenceSession``: one input, one or more outputs.

    :meth:`run` returns the first output; :meth:`run_outputs` any of them by name.
    ``spin=False`` stops ONNX Runtime's idle threads from busy-waiting between runs: better when
    other work shares the cores (the service decodes and serves HTTP beside inference).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        spin: bool = True,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                os.fspath(path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise WeightsError(f"cannot load ONNX model {path}: {e}") from None
        self.path = os.fspath(path)
        inputs = self._session.get_inputs()
        self.input_names: tuple[str, ...] = tuple(i.name for i in inputs)
        self.output_names: tuple[str, ...] = tuple(o.name for o in self._session.get_outputs())
        self.input_name = self.input_names[0]
        self.output_name = self.output_names[0]
        self.input_shape: tuple[int | str | None, ...] = tuple(inputs[0].shape)
        """The first input's shape as the graph declares it (a name or None for a dynamic axis)."""

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the graph is fixed to (e.g. 1 for many exports), or None when it is dynamic."""
        dim = self.input_shape[0] if self.input_shape else None
        return dim if isinstance(dim, int) and dim > 0 else None

    @property
    def output_shape(self) -> tuple[Any, ...]:
        """The first output's shape as the graph declares it (ints, or names/None for dynamic axes)."""
        return tuple(self._session.get_outputs()[0].shape)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output for ``batch``."""
        return self._session.run([self.output_name], {self.input_name: batch})[0]

    def run_outputs(self, names: Sequence[str], batch: np.ndarray) -> list[np.ndarray]:
        """The outputs named ``names`` (in that order) for ``batch``."""
        return self._session.run(list(names), {self.input_name: batch})

    def __repr__(self) -> str:
        return f"OnnxSession({self.path!r}, outputs={list(self.output_names)})"
