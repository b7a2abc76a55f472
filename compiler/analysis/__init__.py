"""Cost analysis of exported graphs (per-op MACs/FLOPs, parameters, weight bytes, peak activation memory)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .cost import CostReport, OpCost, op_class
from .onnx_graph import analyze_onnx

__all__ = ["CostReport", "OpCost", "analyze", "analyze_onnx", "op_class"]


def analyze(model: Any, example_inputs: Any = None, *, batch: int = 1) -> CostReport:
    """Cost of one inference.

    ``model`` is a path to an ``.onnx`` file, an ``onnx.ModelProto``, a ``.tflite`` path, or an ``nn.Module``
    (then ``example_inputs`` is required: it is exported to ONNX first, so the numbers describe the graph
    that ships).
    """
    import onnx

    if isinstance(model, (str, Path)):
        p = Path(model)
        if p.suffix == ".tflite":
            from .tflite_graph import analyze_tflite

            return analyze_tflite(p)
        return analyze_onnx(p, batch=batch)
    if isinstance(model, onnx.ModelProto):
        return analyze_onnx(model, batch=batch)
    import torch

    if isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise ValueError("analyze(nn.Module) needs example_inputs")
        from ..exporters.onnx import export_onnx_fp32

        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "model.onnx"
            export_onnx_fp32(model, example_inputs, path)
            return analyze_onnx(path, batch=batch)
    raise TypeError(f"cannot analyze a {type(model).__name__}: give an .onnx/.tflite path or an nn.Module")
