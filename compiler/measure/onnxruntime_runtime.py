"""ONNX Runtime runner: ``onnxruntime.InferenceSession`` on the CPU execution provider at a fixed thread count
(sequential execution, all graph optimizations). Inputs are cast to the file's input dtypes.

On x86 CPUs without VNNI, onnxruntime's default int8 kernels multiply unsigned by signed bytes with
``vpmaddubsw``, whose 16-bit pair sums saturate (onnxruntime PR 12088; oneDNN's "nuances of int8
computations"): an int8 file then scores worse here than on any device (the digits CNN's static int8 file:
97.5% against 99.4% top-1, 99.4% with exact products). A runner opened for numerics (the parity gate, the
default) sets ``session.x64quantprecision`` there, so the products are computed as the graph specifies; one
opened for timing keeps the default kernels, which is what runs."""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .runtimes import Runner


class OrtRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1, timing: bool = False):
        import onnxruntime as ort

        so = ort.SessionOptions()
        #: int8 products computed at 16-bit precision instead of the default saturating kernels (see above)
        self.exact_int8 = not timing and saturating_int8_kernels()
        if self.exact_int8:
            so.add_session_config_entry("session.x64quantprecision", "1")
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
        feed: dict[str, np.ndarray] = {
            i.name: np.ascontiguousarray(x, dtype=dt) for i, x, dt in zip(self._inputs, inputs, self._dtypes)
        }
        return self._sess.run(None, feed)

    def timed_call(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        feed: dict[str, np.ndarray] = {
            i.name: np.ascontiguousarray(x, dtype=dt) for i, x, dt in zip(self._inputs, inputs, self._dtypes)
        }
        sess = self._sess
        return lambda: sess.run(None, feed)

    @classmethod
    def preload(cls) -> None:
        import onnxruntime  # noqa: F401

    def version(self) -> str:
        import onnxruntime

        exact = "; int8 products at 16-bit precision: this x86 CPU has no VNNI" if self.exact_int8 else ""
        return f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider{exact})"


@functools.lru_cache(maxsize=1)
def saturating_int8_kernels() -> bool:
    """Whether onnxruntime's default int8 kernels saturate on this CPU: x86 without VNNI (AVX2, AVX-512 before
    VNNI)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False  # no way to tell: onnxruntime's defaults
    return not {"avx512_vnni", "avx_vnni", "avx512vnni"} & set(flags)


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
