"""ONNX Runtime runner: ``onnxruntime.InferenceSession`` on the CPU execution provider at a fixed thread count
(sequential execution, all graph optimizations). Inputs are cast to the file's input dtypes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .runtimes import Runner


class OrtRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self._sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        self._inputs = self._sess.get_inputs()
        self._dtypes = [_ORT_TYPES.get(i.type, np.float32) for i in self._inputs]
        first = self._inputs[0].shape[0] if self._inputs and self._inputs[0].shape else None
        self.max_batch = first if isinstance(first, int) else None

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._inputs]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        feed: dict[str, np.ndarray] = {i.name: np.ascontiguousarray(x, dtype=dt) for i, x, dt in zip(self._inputs, inputs, self._dtypes)}
        return self._sess.run(None, feed)

    def timed_call(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        feed: dict[str, np.ndarray] = {i.name: np.ascontiguousarray(x, dtype=dt) for i, x, dt in zip(self._inputs, inputs, self._dtypes)}
        sess = self._sess
        return lambda: sess.run(None, feed)

    @classmethod
    def preload(cls) -> None:
        import onnxruntime  # noqa: F401

    def version(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"


_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
