"""What onnxruntime actually executes for a quantized (QDQ) ONNX graph.

A QDQ graph says "quantize here"; onnxruntime's graph optimizer decides which DequantizeLinear -> op ->
QuantizeLinear groups become int8 kernels (QLinearConv, QGemm, QLinearAdd, ...) and which stay float ops with
explicit (de)quantization around them -- e.g. a Q/DQ pair shared by two consumers at a residual branch is not
fused, and some convolutions stay float. The cost analysis cannot know these rules, so for onnxruntime the
predictor asks onnxruntime itself: the model is optimized once at ``ORT_ENABLE_EXTENDED`` (the fusion level,
before hardware-specific layout changes), saved, and compared with the exported graph by tensor name.

Only used for graphs with quantization ops and ``runtime="onnxruntime"``; any failure falls back to the cost
analysis' own fusion flags (noted in the prediction).

:func:`layout_view` answers a second question for float convolutions on x86: onnxruntime's full optimization
level rewrites a convolution into its blocked NCHWc layout (``com.microsoft.nchwc.Conv``, a fast direct kernel,
with residual additions fused into it) only when its channel counts are multiples of the SIMD block (16 with
AVX-512, 8 with AVX2); the others run as ``FusedConv`` (im2col + SGEMM; a depthwise one as a slow grouped
convolution), with ``ReorderInput`` / ``ReorderOutput`` copies wherever the two layouts meet. A MobileNetV2 at
width 0.35 (channels 11, 22, 33, 66, ...) takes twice the time of one at width 0.5 for this reason. These
rules live in onnxruntime's C++ (``nchwc_transformer.cc``); asking onnxruntime for its optimized graph is
cheaper and exact, so the predictor does that instead of restating them.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: onnxruntime ops that are quantized multiply-accumulate kernels (an op fused into one of these is free)
QLINEAR_MAC = {
    "QLinearConv",
    "QGemm",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
}


@dataclass
class RuntimeView:
    #: tensor name -> op type of the node that produces it in the optimized graph
    produced: dict[str, str]
    #: element counts of int8 weights that are dequantized at every run (float kernels fed by DequantizeLinear)
    weight_dequant_elems: list[int] = field(default_factory=list)
    #: the same for weights of float MatMuls (per-channel on their last axis: a slower dequantization, ~2.4 ns per
    #: element on this host against a fraction of that for convolution weights)
    matmul_weight_dequant_elems: list[int] = field(default_factory=list)
    #: nodes the full optimization level adds on this machine for layouts (NHWC int8 convolutions): transposes
    #: and extra quantize / dequantize nodes (their tensors are renamed, so they are counted, not matched)
    layout_transposes: int = 0
    layout_quant_ops: int = 0
    #: node name -> op type in the optimized graph (a node keeps its name when its tensors are renamed, e.g.
    #: Softmax -> QLinearSoftmax on uint8 tensors)
    nodes: dict[str, str] = field(default_factory=dict)


def _optimized(path: str, level: str) -> Any:
    """The graph onnxruntime runs for ``path`` after optimization ``level`` ("extended" or "all"), as a
    ModelProto (onnxruntime writes it out; nothing is executed)."""
    import onnx
    import onnxruntime as ort

    lv = {"extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    with tempfile.TemporaryDirectory(prefix="adaptc-ortview-") as d:
        out = os.path.join(d, "optimized.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = lv[level]
        so.optimized_model_filepath = out
        so.log_severity_level = 3
        so.intra_op_num_threads = 1
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return onnx.load(out, load_external_data=False)


def _file_key(path: str | None) -> tuple[str, float] | None:
    """(path, mtime) of an existing file: the cache key of the views (a rewritten file is read again)."""
    if not path or not Path(path).is_file():
        return None
    return str(path), Path(path).stat().st_mtime


@functools.lru_cache(maxsize=64)
def _view(path: str, mtime: float) -> RuntimeView | None:
    full = _layout(path, mtime)  # the full optimization level, shared with layout_view (optimized once)
    if full is None:
        return None
    try:
        m = _optimized(path, "extended")
    except Exception:
        return None
    ext = Counter(n.op_type for n in m.graph.node)
    produced = {o: n.op_type for n in m.graph.node for o in n.output if o}
    inits = {t.name: int(math.prod(t.dims)) for t in m.graph.initializer}
    consumers: dict[str, list[str]] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    wdq: list[int] = []
    mm_wdq: list[int] = []
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input and n.input[0] in inits and inits[n.input[0]] > 64:
            to_matmul = bool(n.output) and all(c in ("MatMul", "Gemm") for c in consumers.get(n.output[0], ["?"]))
            (mm_wdq if to_matmul else wdq).append(inits[n.input[0]])
    transposes = max(0, full.op_counts["Transpose"] - ext["Transpose"])
    quant = max(
        0,
        full.op_counts["QuantizeLinear"]
        + full.op_counts["DequantizeLinear"]
        - ext["QuantizeLinear"]
        - ext["DequantizeLinear"],
    )
    return RuntimeView(produced, wdq, mm_wdq, transposes, quant, {n.name: n.op_type for n in m.graph.node if n.name})


@dataclass
class LayoutView:
    """What onnxruntime's full optimization level does to a graph on this machine (exported names throughout)."""

    #: node names of convolutions that stay in the plain layout (FusedConv / Conv) on an NCHWc machine
    fallback_nodes: set[str]
    #: tensors copied between the plain and the NCHWc layout (ReorderInput / ReorderOutput)
    reorder_tensors: list[str]
    #: tensor name -> (op type, node name) of its producer in the optimized graph (a tensor missing from it was
    #: fused away)
    producer: dict[str, tuple[str, str]]
    #: metadata nodes (Reshape, Squeeze, ...) the optimizer adds (e.g. around a MatMul + Add fused into Gemm):
    #: each still dispatches a kernel
    extra_meta_nodes: int = 0
    #: tensor -> name of the Split node that produces it (directly or through a Squeeze): gathers fused into one
    split_of: dict[str, str] = field(default_factory=dict)
    #: how many nodes of each op type the optimized graph has
    op_counts: Counter = field(default_factory=Counter)

    @property
    def produced(self) -> set[str]:
        return set(self.producer)


_META = ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity")


@functools.lru_cache(maxsize=1)
def nchwc_available() -> bool:
    """Whether onnxruntime uses its NCHWc layout on this machine (x86 with AVX2 / AVX-512): a 16-channel 3x3
    convolution is optimized once and the result inspected."""
    try:
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        w = numpy_helper.from_array(np.zeros((16, 16, 3, 3), np.float32), "w")
        node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")
        g = helper.make_graph(
            [node],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])],
            [w],
        )
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        with tempfile.TemporaryDirectory(prefix="adaptc-ortprobe-") as d:
            src = os.path.join(d, "probe.onnx")
            onnx.save(model, src)
            return any(n.domain == "com.microsoft.nchwc" for n in _optimized(src, "all").graph.node)
    except Exception:
        return False


@functools.lru_cache(maxsize=64)
def _layout(path: str, mtime: float) -> LayoutView | None:
    del mtime  # part of the cache key only
    try:
        import onnx

        src = onnx.load(path, load_external_data=False)
        opt = _optimized(path, "all")
    except Exception:
        return None
    producer = {o: (n.op_type, n.name) for n in opt.graph.node for o in n.output if o}
    counts = Counter(n.op_type for n in opt.graph.node)
    extra_meta = max(0, sum(counts[t] for t in _META) - sum(n.op_type in _META for n in src.graph.node))
    split_of = {o: n.name for n in opt.graph.node if n.op_type == "Split" for o in n.output if o}
    for n in opt.graph.node:
        if n.op_type == "Squeeze" and n.input and n.input[0] in split_of and n.output:
            split_of[n.output[0]] = split_of[n.input[0]]
    if not nchwc_available():
        return LayoutView(set(), [], producer, extra_meta, split_of, counts)
    # a plain-layout convolution keeps its weight initializer; an NCHWc one gets a reordered copy
    plain_weights = {
        n.input[1]
        for n in opt.graph.node
        if n.op_type in ("Conv", "FusedConv") and n.domain in ("", "ai.onnx", "com.microsoft") and len(n.input) > 1
    }
    fallback = {
        n.name for n in src.graph.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in plain_weights
    }
    reorders = [n.output[0] for n in opt.graph.node if n.op_type == "ReorderOutput" and n.output]
    reorders += [n.input[0] for n in opt.graph.node if n.op_type == "ReorderInput" and n.input]
    return LayoutView(fallback, reorders, producer, extra_meta, split_of, counts)


def layout_view(path: str | None) -> LayoutView | None:
    """onnxruntime's full optimization of an ONNX graph on this machine (NCHWc layouts on x86, fusions), or None
    (no file, or a failure)."""
    key = _file_key(path)
    return _layout(*key) if key else None


def runtime_view(path: str | None) -> RuntimeView | None:
    """What onnxruntime makes of a QDQ graph (int8 kernels, explicit quantize / dequantize), or None."""
    key = _file_key(path)
    return _view(*key) if key else None
