"""Device latency / memory prediction from a profile and an exported graph (calibrated per-op cost model)."""

from __future__ import annotations

import types as _types
from pathlib import Path
from typing import Any

from ..core.formats import FORMATS, RUNTIME_NAMES
from ..errors import AdaptcError, ModelFileError
from ..profiles import DeviceProfile, load_profile
from .constants import sustained_throughput
from .kinds import PRECISIONS
from .roofline import PREDICTOR_VERSION, OpPrediction, Prediction, predict_from_cost

__all__ = ["PREDICTOR_VERSION", "OpPrediction", "Prediction", "predict", "predict_from_cost", "sustained_throughput"]

#: formats the cost analysis reads (a file of another format is refused before analysis)
_ANALYZED_FORMATS = ("onnx", "tflite")


def _is_tflite(p: Path) -> bool:
    """A TFLite flatbuffer (by its suffix or its file identifier), else ONNX."""
    if p.suffix.lower() == FORMATS["tflite"].suffix:
        return True
    try:
        with open(p, "rb") as f:
            return f.read(8)[4:8] == b"TFL3"
    except OSError:
        return False


def _check_model_file(p: Path) -> None:
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist")
    with open(p, "rb") as f:
        head = f.read(8)
    if p.suffix.lower() in {FORMATS[f].suffix for f in _ANALYZED_FORMATS} or head[4:8] == b"TFL3":
        return
    onnx, tflite = FORMATS["onnx"].suffix, FORMATS["tflite"].suffix
    raise ModelFileError(f"{p} is neither an ONNX ({onnx}) nor a TFLite ({tflite}) model file")


def predict(
    model_or_path: Any,
    device: str | Path | DeviceProfile,
    precision: str | None = None,
    threads: int | None = None,
    runtime: str | None = None,
    example_input: Any = None,
) -> Prediction:
    """Estimated latency and peak memory of a model on a device, with a per-op breakdown.

    ``model_or_path``: an ``nn.Module`` (with ``example_input``) or an exported ``.onnx`` / ``.tflite`` file.
    ``device``: a profile name, a path to a profile YAML or a :class:`DeviceProfile`.
    ``precision``: ``fp32`` | ``fp16`` | ``int8`` to cost every op at that precision (a what-if for an fp32
    graph), or ``None`` (default) for each op's own precision in the graph.
    ``threads``: runtime threads (default: the profile's ``cpu.threads``).
    ``runtime``: ``tflite`` | ``onnxruntime`` | ``coreml``: which runtime runs it (its fusions, kernels and
    constants). Default: the file's own (``.onnx``: onnxruntime, ``.tflite``: tflite); a module: tflite. A module,
    its ONNX file and its TFLite file get the same estimate for the same runtime (the ONNX graph is costed as the
    TFLite converter makes it for tflite and CoreML).
    """
    from ..analysis import analyze

    if precision is not None and precision not in PRECISIONS:
        raise AdaptcError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if runtime is None:
        runtime = "tflite"
        if isinstance(model_or_path, (str, Path)) and not _is_tflite(Path(model_or_path)):
            runtime = "onnxruntime"
    if runtime not in RUNTIME_NAMES:  # (one without a model file uses the tflite constants)
        raise AdaptcError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIME_NAMES)})")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise AdaptcError(f"threads must be a positive integer (got {threads!r})")
    profile = load_profile(device)
    if isinstance(model_or_path, (str, Path)):
        p = Path(model_or_path)
        _check_model_file(p)
        cost = analyze(p)
    else:
        import torch

        if not isinstance(model_or_path, torch.nn.Module):
            raise AdaptcError(
                f"predict() takes an nn.Module or a path to an .onnx / .tflite file, "
                f"not a {type(model_or_path).__name__}"
            )
        if example_input is None:
            raise AdaptcError("predict(nn.Module) needs example_input (one example per model input, batch 1)")
        if isinstance(example_input, torch.Tensor):
            example_input = (example_input,)
        cost = analyze(model_or_path, tuple(example_input))
    return predict_from_cost(cost, profile, runtime=runtime, precision=precision, threads=threads)


class _CallableModule(_types.ModuleType):
    """``adaptc.predict`` is both this package and the public function: importing the package sets the package
    attribute ``adaptc.predict`` to the module, so the module is made callable (``adaptc.predict(...)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        return predict(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
