"""Device latency / memory prediction from a profile and an exported graph."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..profiles import DeviceProfile, load_profile
from .roofline import PREDICTOR_VERSION, OpPrediction, Prediction, predict_from_cost

__all__ = ["PREDICTOR_VERSION", "OpPrediction", "Prediction", "predict", "predict_from_cost"]


def predict(
    model_or_path: Any,
    device: "str | Path | DeviceProfile",
    precision: str | None = None,
    threads: int | None = None,
    runtime: str = "tflite",
    example_input: Any = None,
) -> Prediction:
    """Estimated latency and peak memory of a model on a device.

    ``model_or_path``: an ``nn.Module`` (with ``example_input``) or an exported ``.onnx`` / ``.tflite`` file.
    ``device``: a profile name, a path to a profile YAML or a :class:`DeviceProfile`.
    """
    from ..analysis import analyze

    profile = load_profile(device)
    if isinstance(model_or_path, (str, Path)):
        cost = analyze(model_or_path)
    else:
        import torch

        if not isinstance(model_or_path, torch.nn.Module):
            raise TypeError("predict() takes an nn.Module or a path to an .onnx / .tflite file")
        if example_input is None:
            raise ValueError("predict(nn.Module) needs example_input")
        if isinstance(example_input, torch.Tensor):
            example_input = (example_input,)
        cost = analyze(model_or_path, tuple(example_input))
    return predict_from_cost(cost, profile, runtime=runtime, precision=precision, threads=threads)
