"""CoreML runner (macOS only): ``coremltools.models.MLModel(...).predict`` on the CPU.

CoreML prediction exists only on macOS. On any other host the runner is not available and registers nothing, so
``runtime_available("coreml")`` is False and a build flags CoreML parity and latency as not measured
(the report keeps the device estimates only).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .runtimes import Runner

AVAILABLE = sys.platform == "darwin"


class CoreMLRunner(Runner):
    runtime = "coreml"
    available = AVAILABLE

    def __init__(self, path: Path, threads: int = 1, timing: bool = False):
        import coremltools as ct

        self._model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
        spec = self._model.get_spec()
        self._inputs = [
            (f.name, f.type.multiArrayType.dataType, list(f.type.multiArrayType.shape)) for f in spec.description.input
        ]
        self._outputs = [f.name for f in spec.description.output]
        first = self._inputs[0][2] if self._inputs else []
        self.max_batch = int(first[0]) if first else 1

    @property
    def input_names(self) -> list[str]:
        return [n for n, _, _ in self._inputs]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        from coremltools.proto import FeatureTypes_pb2

        int32 = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Value("INT32")
        n = len(inputs[0])
        if self.max_batch and n != self.max_batch:
            outs = [self.run([a[i : i + self.max_batch] for a in inputs]) for i in range(0, n, self.max_batch)]
            return [np.concatenate([o[k] for o in outs], axis=0) for k in range(len(outs[0]))]
        feed = {
            name: np.ascontiguousarray(x, dtype=np.int32 if dt == int32 else np.float32)
            for (name, dt, _), x in zip(self._inputs, inputs)
        }
        res = self._model.predict(feed)
        return [np.asarray(res[k], dtype=np.float32) for k in self._outputs]

    @classmethod
    def preload(cls) -> None:
        import coremltools  # noqa: F401

    def version(self) -> str:
        import coremltools

        return f"coremltools {coremltools.__version__} MLModel.predict (CoreML, CPU only)"
