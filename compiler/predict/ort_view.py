"""What onnxruntime actually executes for a quantized (QDQ) ONNX graph.

A QDQ graph says "quantize here"; onnxruntime's graph optimizer decides which DequantizeLinear -> op ->
QuantizeLinear groups become int8 kernels (QLinearConv, QGemm, QLinearAdd, ...) and which stay float ops with
explicit (de)quantization around them -- e.g. a Q/DQ pair shared by two consumers at a residual branch is not
fused, and some convolutions stay float. The cost analysis cannot know these rules, so for onnxruntime the
predictor asks onnxruntime itself: the model is optimized once at ``ORT_ENABLE_EXTENDED`` (the fusion level,
before hardware-specific layout changes), saved, and compared with the exported graph by tensor name.

Only used for graphs with quantization ops and ``runtime="onnxruntime"``; any failure falls back to the cost
analysis' own fusion flags (noted in the prediction).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: onnxruntime ops that are quantized multiply-accumulate kernels (an op fused into one of these is free)
QLINEAR_MAC = {"QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
               "MatMulIntegerToFloat"}


@dataclass
class RuntimeView:
    #: tensor name -> op type of the node that produces it in the optimized graph
    produced: dict[str, str]
    #: element counts of int8 weights that are dequantized at every run (float kernels fed by DequantizeLinear)
    weight_dequant_elems: list[int] = field(default_factory=list)
    #: nodes the full optimization level adds on this machine for layouts (NHWC int8 convolutions): transposes
    #: and extra quantize / dequantize nodes (their tensors are renamed, so they are counted, not matched)
    layout_transposes: int = 0
    layout_quant_ops: int = 0


@functools.lru_cache(maxsize=64)
def _view(path: str, mtime: float) -> RuntimeView | None:
    del mtime  # part of the cache key only
    try:
        import onnx
        import onnxruntime as ort

        graphs = {}
        with tempfile.TemporaryDirectory(prefix="adaptc-ortview-") as d:
            for name, level in (("ext", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
                                ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)):
                out = os.path.join(d, f"{name}.onnx")
                so = ort.SessionOptions()
                so.graph_optimization_level = level
                so.optimized_model_filepath = out
                so.log_severity_level = 3
                so.intra_op_num_threads = 1
                ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                graphs[name] = onnx.load(out, load_external_data=False)
        m = graphs["ext"]
    except Exception:
        return None

    def count(g: object, types: tuple[str, ...]) -> int:
        return sum(1 for n in g.graph.node if n.op_type in types)  # type: ignore[attr-defined]

    produced = {o: n.op_type for n in m.graph.node for o in n.output if o}
    inits = {t.name: int(math.prod(t.dims)) for t in m.graph.initializer}
    wdq = [inits[n.input[0]] for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input and
           n.input[0] in inits and inits[n.input[0]] > 64]
    transposes = max(0, count(graphs["all"], ("Transpose",)) - count(m, ("Transpose",)))
    quant = max(0, count(graphs["all"], ("QuantizeLinear", "DequantizeLinear"))
                - count(m, ("QuantizeLinear", "DequantizeLinear")))
    return RuntimeView(produced, wdq, transposes, quant)


def runtime_view(path: str | None) -> RuntimeView | None:
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    return _view(str(p), p.stat().st_mtime)
