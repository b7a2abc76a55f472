"""LiteRT runner (runtime ``tflite``): ``ai_edge_litert.interpreter.Interpreter`` at a fixed thread count.

Inputs are cast to the file's input dtypes (token ids become int32); int8/uint8 inputs are quantized with the
file's own scale and zero point, and int8 outputs dequantized, so callers always pass and get float / index
arrays. Files are run at their exported batch size (XNNPACK cannot resize most converted graphs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .runtimes import Runner


class LiteRTRunner(Runner):
    runtime = "tflite"

    def __init__(self, path: Path, threads: int = 1, timing: bool = False):
        from ai_edge_litert.interpreter import Interpreter

        self._it = Interpreter(model_path=str(path), num_threads=threads)
        self._it.allocate_tensors()
        self._in = self._it.get_input_details()
        self._out = self._it.get_output_details()
        self.max_batch = int(self._in[0]["shape"][0]) if len(self._in[0]["shape"]) else 1

    @property
    def input_names(self) -> list[str]:
        return [d["name"] for d in self._in]

    def _prepare(self, d: dict, x: np.ndarray) -> np.ndarray:
        dt = d["dtype"]
        scale, zp = d.get("quantization", (0.0, 0))
        if dt in (np.int8, np.uint8) and scale:
            info = np.iinfo(dt)
            q = np.round(np.asarray(x, np.float32) / scale) + zp
            return np.clip(q, info.min, info.max).astype(dt)
        return np.ascontiguousarray(x, dtype=dt)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        n = len(inputs[0])
        if self.max_batch and n != self.max_batch:
            # run row by row (or chunk by chunk) at the file's batch size
            outs = [self.run([a[i : i + self.max_batch] for a in inputs]) for i in range(0, n, self.max_batch)]
            return [np.concatenate([o[k] for o in outs], axis=0) for k in range(len(outs[0]))]
        for d, x in zip(self._in, inputs):
            self._it.set_tensor(d["index"], self._prepare(d, x))
        self._it.invoke()
        res = []
        for d in self._out:
            y = self._it.get_tensor(d["index"])
            scale, zp = d.get("quantization", (0.0, 0))
            if d["dtype"] in (np.int8, np.uint8) and scale:
                y = (y.astype(np.float32) - zp) * scale
            res.append(np.array(y))
        return res

    def timed_call(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """``interpreter.invoke()`` with the inputs set once (as LiteRT's benchmark_model times it)."""
        if self.max_batch and len(inputs[0]) != self.max_batch:
            inputs = [a[: self.max_batch] for a in inputs]
        for d, x in zip(self._in, inputs):
            self._it.set_tensor(d["index"], self._prepare(d, x))
        return self._it.invoke

    @classmethod
    def preload(cls) -> None:
        import ai_edge_litert.interpreter  # noqa: F401

    def version(self) -> str:
        from importlib.metadata import version

        try:
            return f"ai-edge-litert {version('ai-edge-litert')} (LiteRT interpreter, XNNPACK)"
        except Exception:
            return "LiteRT interpreter"
