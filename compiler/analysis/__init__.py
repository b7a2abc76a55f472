"""Cost analysis of exported graphs (per-op MACs/FLOPs, parameters, weight bytes, peak activation memory).

FLOPs convention (one for every format and precision, so one network counts the same FLOPs as ONNX or TFLite,
fp32, fp16 or int8, and a FLOPs budget verdict does not depend on the file; docs/analysis.md):

- model FLOPs = 2 x MACs of the multiply-accumulate layers + the elementwise arithmetic the model itself does
  (residual adds, activations, normalizations, softmax, pooling, ...), per output element (``cost._ELEMENTWISE_FLOPS``);
- format plumbing counts 0: quantize / dequantize (and the scale products of dynamic int8), casts, and data
  movement (reshapes, layout transposes, pads, gathers);
- what a converter folds into a layer counts 0 whether it folded it or not: a bias add, batch norm or per-channel
  scale on a layer's output (TFLite always folds them; ONNX exports keep some as Add / Mul / BatchNormalization),
  and a clamp (ReLU, ReLU6, Clip) on an op's output, which kernels apply as they store it (TFLite's fused
  activations; in int8 graphs the output's quantization range, which is why onnxruntime's quantizer deletes it).
  Counting them instead would need the clamps an int8 ONNX file no longer has. Where such an op cannot fuse (its
  input is read by another op too, or is a graph input) it counts as any elementwise op;
- a TFLite fused TANH counts 4 per element, as a Tanh op would.

Each :class:`OpCost` keeps both: ``flops`` (the convention; they sum to ``CostReport.flops``) and ``kernel_flops``
(what its kernel computes as the graph stands: a quantize / dequantize 2 per element, a separate bias add or clamp 1),
which the device latency predictor rates ops by. :func:`.cost.apply_model_flops` is the one pass both formats use.
"""

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
