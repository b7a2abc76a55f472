"""Runtimes that run exported files: one small runner class per runtime, registered by name.

Kept free of torch imports so that a measurement subprocess only loads the runtime it measures.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np


class Runner(abc.ABC):
    runtime: ClassVar[str]
    #: largest batch a call accepts (None: any)
    max_batch: int | None = None

    @abc.abstractmethod
    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one call; inputs in the model's input order (cast to the expected dtypes here)."""

    @property
    @abc.abstractmethod
    def input_names(self) -> list[str]: ...

    def version(self) -> str:
        return ""

    def timed_call(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """A zero-argument callable running one inference on ``inputs``, bound once (what latency times).

        Runners override this to keep per-call Python work (dtype casts, (de)quantization of int8 inputs)
        out of the timed region, as the runtimes' own benchmark tools do.
        """
        return lambda: self.run(inputs)


_RUNTIMES: dict[str, Callable[[Path, int], Runner]] = {}


def register_runtime(name: str) -> Callable[[Callable[[Path, int], Runner]], Callable[[Path, int], Runner]]:
    def deco(factory: Callable[[Path, int], Runner]) -> Callable[[Path, int], Runner]:
        _RUNTIMES[name] = factory
        return factory

    return deco


def _load_optional_runtimes() -> None:
    try:
        from . import litert_runtime  # noqa: F401  (registers "tflite")
    except ImportError:
        pass
    try:
        from . import coreml_runtime  # noqa: F401  (registers "coreml" on macOS only)
    except ImportError:
        pass


def open_runner(runtime: str, path: str | Path, threads: int = 1) -> Runner:
    _load_optional_runtimes()
    if runtime not in _RUNTIMES:
        from ..errors import AdaptcError

        raise AdaptcError(f"no runner for runtime {runtime!r} on this host (known: {', '.join(sorted(_RUNTIMES))})")
    return _RUNTIMES[runtime](Path(path), threads)


def runtime_available(runtime: str) -> bool:
    _load_optional_runtimes()
    return runtime in _RUNTIMES


@register_runtime("onnxruntime")
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
        feed = {i.name: np.ascontiguousarray(x, dtype=dt) for i, x, dt in zip(self._inputs, inputs, self._dtypes)}
        return self._sess.run(None, feed)

    def timed_call(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        feed = {i.name: np.ascontiguousarray(x, dtype=dt) for i, x, dt in zip(self._inputs, inputs, self._dtypes)}
        sess = self._sess
        return lambda: sess.run(None, feed)

    def version(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"


_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def run_batched(runner: Runner, arrays: Sequence[np.ndarray], batch: int = 256) -> np.ndarray:
    """The runner's first output over all rows of ``arrays``, in batches the runner accepts."""
    n = len(arrays[0])
    bs = min(runner.max_batch or batch, batch)
    outs = []
    for i in range(0, n, bs):
        outs.append(np.asarray(runner.run([a[i : i + bs] for a in arrays])[0]))
    return np.concatenate(outs, axis=0)
