"""ONNX Runtime inference session (CPU by default)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from visor.errors import WeightsError


class OnnxSession:
    """A thin wrapper over ``onnxruntime.InferenceSession`` with one input and one output.

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
        self.input_name = self._session.get_inputs()[0].name
        self.output_name = self._session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self.output_name], {self.input_name: batch})[0]
