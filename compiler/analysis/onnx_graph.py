"""Cost analysis of an exported ONNX graph: per-op MACs/FLOPs, parameters, weight bytes and peak
activation memory from tensor liveness.

Written by hand because no maintained library covers what adaptc needs together: onnx-tool counts MACs
but not liveness-based peak memory with QDQ-aware weight precision, and ONNX Runtime's profiler needs a run.

Conventions (documented in docs/analysis.md and asserted in tests/test_analysis.py):
- MACs of Conv = N * C_out * prod(out_spatial) * (C_in / group) * prod(kernel); bias adds are not counted.
- MACs of MatMul / Gemm = prod(batch dims) * M * N * K.
- FLOPs: the model-FLOPs convention of :mod:`adaptc.analysis` (2 * MACs for those ops; other ops per output
  element, see ``_ELEMENTWISE_FLOPS``; pooling one op per window element; Q/DQ, casts, data movement, and biases and
  clamps fused into a layer count 0); ``OpCost.kernel_flops`` keeps what each kernel computes.
- Parameters are the elements of float and 8-bit initializers that feed compute ops (quantization scales
  and zero points, and integer shape tensors, are not parameters).
- Peak activation memory: nodes run in graph order; a tensor lives from the node that produces it (graph
  inputs: from the start) until its last consumer has run (graph outputs: to the end); while a node runs,
  its inputs and outputs are live together. Weights are not activations.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

# the report types and op tables live in .cost, shape completion in .onnx_shapes; imported here under their
# old names too (``adaptc.analysis.onnx_graph.CostReport``, ``og._MAC_OPS``)
from .cost import (
    _ELEMENTWISE_FLOPS,
    _GLOBAL_POOL_OPS,
    _MAC_OPS,
    _POOL_OPS,
    _QPARAM_OPS,
    AFFINE,
    CLAMP,
    LAYER,
    ONNX_AFFINE,
    ONNX_CLAMPS,
    ONNX_PLUMBING,
    PLUMBING,
    CostReport,
    OpCost,
    apply_model_flops,
    is_channel_vector,
    op_class,
)
from .onnx_shapes import _attrs, _complete_shapes, _converter_attrs, _fix_batch, _shape_of, load_onnx

_DTYPE_BYTES: dict[int, float] = {
    TensorProto.FLOAT: 4,
    TensorProto.FLOAT16: 2,
    TensorProto.BFLOAT16: 2,
    TensorProto.DOUBLE: 8,
    TensorProto.INT8: 1,
    TensorProto.UINT8: 1,
    TensorProto.INT16: 2,
    TensorProto.UINT16: 2,
    TensorProto.INT32: 4,
    TensorProto.UINT32: 4,
    TensorProto.INT64: 8,
    TensorProto.UINT64: 8,
    TensorProto.BOOL: 1,
    TensorProto.INT4: 0.5,
    TensorProto.UINT4: 0.5,
}
_DTYPE_PRECISION: dict[int, str] = {
    TensorProto.FLOAT: "fp32",
    TensorProto.DOUBLE: "fp32",
    TensorProto.FLOAT16: "fp16",
    TensorProto.BFLOAT16: "fp16",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "int8",
    TensorProto.INT4: "int8",
    TensorProto.UINT4: "int8",
}


def analyze_onnx(model: str | Path | onnx.ModelProto, batch: int = 1) -> CostReport:
    """Cost of one inference of an ONNX model at the given batch size (dynamic dims fixed)."""
    source = str(Path(model).resolve()) if isinstance(model, (str, Path)) else None
    m = _fix_batch(load_onnx(model), batch)
    try:
        m = shape_inference.infer_shapes(m, data_prop=True)
    except Exception:
        m = shape_inference.infer_shapes(m, strict_mode=False)
    m = _complete_shapes(m)
    g = m.graph

    shapes: dict[str, list[int] | None] = {}
    dtypes: dict[str, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = _shape_of(vi)
        dtypes[vi.name] = vi.type.tensor_type.elem_type
    inits: dict[str, onnx.TensorProto] = {t.name: t for t in g.initializer}
    for name, t in inits.items():
        shapes[name] = list(t.dims)
        dtypes[name] = t.data_type
    # Constant nodes are weights too.
    const_outputs: dict[str, np.ndarray] = {}
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            try:
                arr = numpy_helper.to_array(helper.get_attribute_value(n.attribute[0]))
                const_outputs[n.output[0]] = arr
                shapes[n.output[0]] = list(arr.shape)
                dtypes[n.output[0]] = helper.np_dtype_to_tensor_dtype(arr.dtype)
            except Exception:
                pass

    def numel(name: str) -> int | None:
        s = shapes.get(name)
        return None if s is None else int(math.prod(s))

    def nbytes(name: str) -> int:
        n = numel(name)
        return 0 if n is None else int(n * _DTYPE_BYTES.get(dtypes.get(name, TensorProto.FLOAT), 4))

    producers: dict[str, onnx.NodeProto] = {o: n for n in g.node for o in n.output}
    weight_names = set(inits) | set(const_outputs)
    # Tensors computed only from weights (e.g. DequantizeLinear of an int8 weight) are folded into
    # constants by every runtime: they are neither activations nor ops that run.
    folded_nodes: set[int] = set()
    constant = set(weight_names)
    for i, n in enumerate(g.node):
        if n.op_type != "Constant" and n.input and all((not x) or x in constant for x in n.input):
            constant.update(o for o in n.output if o)
            folded_nodes.add(i)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for x in n.input:
            if x:
                consumers.setdefault(x, []).append(n)
    graph_inputs = {i.name for i in g.input}
    graph_outputs = {o.name for o in g.output}

    # Classify initializers: quantization parameters (scale / zero point inputs of Q/DQ ops), integer
    # shape-like tensors, or weights (parameters).
    qparam: set[str] = set()
    quantized_bias: set[str] = set()  # int32 biases of QDQ graphs (DequantizeLinear input 0)
    for n in g.node:
        if n.op_type in _QPARAM_OPS:
            qparam.update(x for x in n.input[1:] if x)
            if n.op_type == "DequantizeLinear" and dtypes.get(n.input[0]) == TensorProto.INT32:
                quantized_bias.add(n.input[0])

    def is_param(name: str) -> bool:
        if name not in weight_names or name in qparam:
            return False
        return dtypes.get(name) in _DTYPE_PRECISION or name in quantized_bias

    def source_weight(name: str) -> str | None:
        """The weight behind an input, looking through DequantizeLinear / Cast / Transpose / Reshape."""
        seen = 0
        while name and seen < 4:
            if name in weight_names:
                return name
            p = producers.get(name)
            if p is None or p.op_type not in ("DequantizeLinear", "Cast", "Transpose", "Reshape", "Identity"):
                return None
            name = p.input[0]
            seen += 1
        return None

    def act_precision(name: str) -> str:
        p = producers.get(name)
        if p is not None and p.op_type == "DequantizeLinear":
            src = p.input[0]
            return _DTYPE_PRECISION.get(dtypes.get(src, TensorProto.FLOAT), "fp32")
        return _DTYPE_PRECISION.get(dtypes.get(name, TensorProto.FLOAT), "fp32")

    # Tensors computed from quantization parameters only (the scales of a dynamic-range int8 graph: the run-time
    # scale of DynamicQuantizeLinear times the weight's scale): format plumbing, not activations.
    qderived: set[str] = set()
    for n in g.node:
        if n.op_type == "DynamicQuantizeLinear":
            qderived.update(o for o in n.output[1:] if o)
        elif (
            n.input
            and any(x in qderived for x in n.input)
            and all((not x) or x in qderived or x in constant for x in n.input)
        ):
            qderived.update(o for o in n.output if o)

    def role(n: onnx.NodeProto, data_inputs: list[str]) -> tuple[str, str] | None:
        """The op's role under the model-FLOPs convention (see :func:`adaptc.analysis.cost.apply_model_flops`)."""
        op, acts = n.op_type, [x for x in data_inputs if x not in qderived]
        if op in ONNX_PLUMBING or (data_inputs and not acts):
            return PLUMBING, acts[0] if len(acts) == 1 else ""
        w_at = 3 if op in ("QLinearConv", "QLinearMatMul") else 1
        if op in _MAC_OPS and len(n.input) > w_at and source_weight(n.input[w_at]) is not None:
            return LAYER, ""
        others = (
            [x for x in n.input[1:] if x] if op == "BatchNormalization" else [x for x in n.input if x and x not in acts]
        )
        if op in ONNX_AFFINE and len(acts) == 1 and others and all(is_channel_vector(shapes.get(x)) for x in others):
            return AFFINE, acts[0]
        if op in ONNX_CLAMPS and acts and acts[0] == n.input[0] and all(x in constant for x in n.input[1:] if x):
            return CLAMP, acts[0]
        return None

    ops: list[OpCost] = []
    roles: list[tuple[str, str] | None] = []
    unknown: list[str] = []
    counted_params: set[str] = set()
    for idx, n in enumerate(g.node):
        if n.op_type == "Constant" or idx in folded_nodes:
            continue
        name = n.name or f"{n.op_type}_{idx}"
        attrs = _attrs(n)
        out0 = n.output[0] if n.output else ""
        out_shape = shapes.get(out0)
        out_numel = numel(out0)
        if out_numel is None and n.op_type not in ("Shape",):
            unknown.append(name)
        macs = 0
        flops = 0
        in_ch = None
        gemm: tuple[int, int, int] | None = None
        k_area = 1
        op = n.op_type
        data_inputs = [x for x in n.input if x and source_weight(x) is None]
        if op in ("Conv", "ConvInteger", "QLinearConv") and out_shape is not None:
            w_in = n.input[3] if op == "QLinearConv" else n.input[1]
            ws = shapes.get(w_in) or shapes.get(source_weight(w_in) or "")
            if ws is not None:
                group = int(attrs.get("group", 1))
                in_ch = ws[1] * group
                macs = out_shape[0] * out_shape[1] * math.prod(out_shape[2:]) * ws[1] * math.prod(ws[2:])
                gemm = (out_shape[0] * math.prod(out_shape[2:]), ws[1] * math.prod(ws[2:]), out_shape[1])
                k_area = int(math.prod(ws[2:]))
        elif op == "ConvTranspose":
            xs, ws = shapes.get(n.input[0]), shapes.get(n.input[1]) or shapes.get(source_weight(n.input[1]) or "")
            if xs is not None and ws is not None:
                macs = xs[0] * xs[1] * math.prod(xs[2:]) * ws[1] * math.prod(ws[2:])
                gemm = (xs[0] * math.prod(xs[2:]), xs[1], ws[1] * math.prod(ws[2:]))
        elif op in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm") and out_numel is not None:
            a_name = n.input[0]
            a = shapes.get(a_name)
            if a is not None:
                if op == "Gemm" and attrs.get("transA", 0):
                    k = a[0]
                else:
                    k = a[-1]
                macs = out_numel * k
                n_out = out_shape[-1] if out_shape else 1
                gemm = (out_numel // max(1, n_out), k, n_out)
        elif op in _POOL_OPS and out_numel is not None:
            flops = out_numel * math.prod(attrs.get("kernel_shape", [1]))
        elif op in _GLOBAL_POOL_OPS:
            flops = numel(n.input[0]) or 0
        elif op in _ELEMENTWISE_FLOPS and out_numel is not None:
            flops = int(out_numel * _ELEMENTWISE_FLOPS[op])
        if macs:
            flops = 2 * macs

        params = 0
        wbytes = 0
        w_prec = None
        for x in n.input:
            if op in _QPARAM_OPS:
                break  # the weight is counted at its consumer (looked through DequantizeLinear)
            src = source_weight(x) if x else None
            if src and is_param(src):
                ne = numel(src) or 0
                if src not in counted_params:
                    params += ne
                    wbytes += nbytes(src)
                    counted_params.add(src)
                src_dtype = dtypes.get(src)
                src_prec = None if src_dtype is None else _DTYPE_PRECISION.get(src_dtype)
                if src_prec is not None and (w_prec is None or src_prec == "int8"):
                    w_prec = src_prec
        if op in ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"):
            precision = "int8"
        elif op in _MAC_OPS and data_inputs:
            a_prec = act_precision(data_inputs[0])
            precision = (
                "int8"
                if (a_prec == "int8" and w_prec == "int8")
                else ("fp16" if "fp16" in (a_prec, w_prec) and w_prec != "int8" else "fp32")
            )
        elif data_inputs:
            precision = act_precision(data_inputs[0])
        else:
            precision = "fp32"
        # Bytes a fused int8 kernel really reads and writes: the int8 tensors around its Q/DQ wrappers.
        in_bytes = sum(
            nbytes(producers[x].input[0])
            if x in producers and producers[x].op_type == "DequantizeLinear"
            else nbytes(x)
            for x in data_inputs
        )
        out_bytes = 0
        for o in n.output:
            if not o:
                continue
            cons = consumers.get(o, [])
            if cons and all(c.op_type == "QuantizeLinear" for c in cons) and o not in graph_outputs:
                out_bytes += nbytes(cons[0].output[0])
            else:
                out_bytes += nbytes(o)
        fused = False
        if op == "QuantizeLinear":
            cons = consumers.get(out0, [])
            fused = n.input[0] not in graph_inputs and bool(cons) and all(c.op_type == "DequantizeLinear" for c in cons)
        elif op == "DequantizeLinear":
            p_ = producers.get(n.input[0])
            fused = (
                p_ is not None
                and p_.op_type == "QuantizeLinear"
                and out0 not in graph_outputs
                and p_.input[0] not in graph_inputs
            )
        a_src = producers.get(n.input[0]) if n.input else None
        dynamic = (
            op in ("MatMulInteger", "ConvInteger") and a_src is not None and a_src.op_type == "DynamicQuantizeLinear"
        )
        roles.append(role(n, data_inputs))
        ops.append(
            OpCost(
                name,
                op,
                op_class(op, attrs, in_ch),
                precision,
                int(macs),
                int(flops),
                int(params),
                int(wbytes),
                int(in_bytes),
                int(out_bytes),
                out_shape,
                fused,
                inputs=list(data_inputs),
                outputs=[o for o in n.output if o],
                gemm=(int(gemm[0]), int(gemm[1]), int(gemm[2])) if gemm else None,
                kernel_area=k_area,
                dynamic=dynamic,
                attrs=_converter_attrs(n, attrs, shapes, inits, const_outputs),
            )
        )

    apply_model_flops(ops, roles)
    # Parameters not reached through any compute op (rare) still count.
    stored_weight = 0
    qparam_bytes = 0
    total_params = 0
    for w in weight_names:
        if is_param(w):
            total_params += numel(w) or 0
            stored_weight += nbytes(w)
        elif w in qparam:
            qparam_bytes += nbytes(w)

    peak, peak_at = _peak_activation(g, constant, nbytes)
    return CostReport.of_ops(
        ops,
        int(total_params),
        stored_weight_bytes=int(stored_weight),
        quant_param_bytes=int(qparam_bytes),
        peak_activation_bytes=int(peak),
        peak_at=peak_at,
        input_bytes=int(sum(nbytes(i.name) for i in g.input if i.name not in weight_names)),
        output_bytes=int(sum(nbytes(o.name) for o in g.output)),
        op_counts=dict(Counter(n.op_type for i, n in enumerate(g.node) if n.op_type != "Constant")),
        unknown_shapes=unknown,
        format="onnx",
        input_precision=_io_precision([i.name for i in g.input if i.name not in weight_names], dtypes),
        output_precision=_io_precision([o.name for o in g.output], dtypes),
        source=source,
    )


def _io_precision(names: list[str], dtypes: dict[str, int]) -> str:
    if not names:
        return "fp32"
    return _DTYPE_PRECISION.get(dtypes.get(names[0], TensorProto.FLOAT), "fp32")


def _peak_activation(g: onnx.GraphProto, constant: set[str], nbytes: Any) -> tuple[int, str | None]:
    """Peak of live activation bytes; ``constant`` tensors (weights and what is folded from them) never count."""
    weights = constant
    nodes = [n for n in g.node if n.op_type != "Constant" and not all((not o) or o in constant for o in n.output)]
    last_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for x in n.input:
            if x:
                last_use[x] = i
    outputs = {o.name for o in g.output}
    live: dict[str, int] = {}
    for inp in g.input:
        if inp.name not in weights:
            live[inp.name] = nbytes(inp.name)
    cur = sum(live.values())
    peak, peak_at = cur, None
    for i, n in enumerate(nodes):
        for o in n.output:
            if o and o not in live:
                live[o] = nbytes(o)
                cur += live[o]
        if cur > peak:
            peak, peak_at = cur, n.name or n.op_type
        # free everything whose last consumer was this node (and outputs nobody consumes)
        for x in set(list(n.input) + list(n.output)):
            if x in live and x not in outputs and last_use.get(x, -1) <= i:
                cur -= live.pop(x)
    return peak, peak_at
