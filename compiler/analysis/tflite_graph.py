"""Cost analysis of a TFLite (LiteRT) flatbuffer: the same :class:`CostReport` as for ONNX, so the predictor
treats both formats alike.

The file is read with ``ai_edge_litert.schema_py_generated`` (the flatbuffer schema's object API), which also
reads files the interpreter would reject. Only the main subgraph (subgraph 0) is analysed; ops that call other
subgraphs (WHILE, IF, CALL, ...) are counted as ops of unknown cost.

Conventions (the same as :mod:`adaptc.analysis.onnx_graph`; asserted in ``tests/test_tflite_analysis.py``):
- Layout is NHWC. MACs of CONV_2D = N * H_out * W_out * C_out * k_h * k_w * C_in_per_group (weights are
  ``[C_out, k_h, k_w, C_in/group]``); DEPTHWISE_CONV_2D = N * H_out * W_out * C_out * k_h * k_w (weights
  ``[1, k_h, k_w, C_out]``); TRANSPOSE_CONV = N * H_in * W_in * C_in * k_h * k_w * C_out; FULLY_CONNECTED =
  output elements * K (weights ``[N, K]``); BATCH_MATMUL = output elements * K. FLOPs: the model-FLOPs convention
  of :mod:`adaptc.analysis` (2 * MACs, elementwise per element; QUANTIZE / DEQUANTIZE / CAST, biases and clamps
  fused into a layer count 0, a fused TANH 4 per output element), the same pass as for ONNX.
- Weights are tensors whose buffer holds data (or, for large models, an offset/size into the file). A
  DEQUANTIZE of a weight (fp16 or weight-only int8 models) is folded: its output is a weight, not an activation,
  and it is not an op that runs per inference.
- Parameters are float and 8/4-bit weight tensors, plus the (int32) biases of convolutions and fully connected
  layers; shape tensors, permutations and axes are not parameters. Quantization scales and zero points (stored
  in the tensor's quantization table, not in a buffer) are ``quant_param_bytes``.
- Precision of an op: ``int8`` when its first activation input is int8/uint8, or when a multiply-accumulate op
  has int8 weights (dynamic-range "hybrid" kernels quantize the activations on the fly); ``fp16`` for fp16
  activations; otherwise ``fp32``.
- Peak activation memory: as for ONNX, with the operators run in the subgraph's order; weights are not
  activations.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .cost import FUSED_ACTIVATION_FLOPS, CostReport, OpCost, apply_model_flops, tflite_role

#: bytes per element of each TensorType value (schema order: FLOAT32=0, FLOAT16, INT32, UINT8, INT64, STRING,
#: BOOL, INT16, COMPLEX64, INT8, FLOAT64, COMPLEX128, UINT64, RESOURCE, VARIANT, UINT32, UINT16, INT4, BFLOAT16)
# fmt: off
_TYPE_BYTES: dict[int, float] = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 1, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8,
                                 13: 0, 14: 0, 15: 4, 16: 2, 17: 0.5, 18: 2, 19: 0.25, 20: 0.5, 21: 1, 22: 1}
_FLOAT_TYPES = {0, 1, 10, 18}
_INT8_TYPES = {3, 9, 17, 19, 20}  # uint8, int8, int4, int2, uint4
_TYPE_PRECISION = {0: "fp32", 10: "fp32", 1: "fp16", 18: "fp16", 3: "int8", 9: "int8", 17: "int8", 20: "int8",
                   7: "int8"}  # int16 activations (16x8 quantization) run in the integer kernels too

_CONV_OPS = {"CONV_2D", "TRANSPOSE_CONV", "CONV_3D", "CONV_3D_TRANSPOSE"}
_MATMUL_OPS = {"FULLY_CONNECTED", "BATCH_MATMUL"}
_POOL_OPS = {"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"}
_REDUCE_OPS = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL"}
_QUANT_OPS = {"QUANTIZE", "DEQUANTIZE"}

#: FLOPs per output element of ops that are not multiply-accumulate layers (mirrors the ONNX table)
ELEMENTWISE_FLOPS: dict[str, float] = {
    "ADD": 1, "SUB": 1, "MUL": 1, "DIV": 1, "POW": 1, "SQRT": 1, "RSQRT": 2, "NEG": 1, "ABS": 1, "SQUARE": 1,
    "SQUARED_DIFFERENCE": 2, "RELU": 1, "RELU6": 1, "RELU_N1_TO_1": 1, "RELU_0_TO_1": 1, "LEAKY_RELU": 2,
    "PRELU": 2, "MAXIMUM": 1, "MINIMUM": 1, "SELECT": 1, "SELECT_V2": 1, "LOGISTIC": 4, "TANH": 4, "EXP": 1,
    "LOG": 1, "GELU": 8, "HARD_SWISH": 4, "SOFTMAX": 5, "LOG_SOFTMAX": 5, "ELU": 3, "CAST": 1, "EQUAL": 1,
    "NOT_EQUAL": 1, "GREATER": 1, "GREATER_EQUAL": 1, "LESS": 1, "LESS_EQUAL": 1, "LOGICAL_AND": 1,
    "LOGICAL_OR": 1, "LOGICAL_NOT": 1, "FLOOR": 1, "CEIL": 1, "ROUND": 1, "SIN": 4, "COS": 4, "SIGN": 1,
    "FLOOR_DIV": 1, "FLOOR_MOD": 1, "ADD_N": 1, "L2_NORMALIZATION": 4, "LOCAL_RESPONSE_NORMALIZATION": 8,
    "QUANTIZE": 2, "DEQUANTIZE": 2,
}
#: ops that only move or reshape data (no arithmetic)
DATA_OPS = {
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "CONCATENATION", "PACK", "UNPACK", "SPLIT", "SPLIT_V",
    "SLICE", "STRIDED_SLICE", "GATHER", "GATHER_ND", "PAD", "PADV2", "MIRROR_PAD", "TILE", "BROADCAST_TO",
    "SHAPE", "FILL", "ZEROS_LIKE", "RANGE", "EMBEDDING_LOOKUP", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH",
    "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "REVERSE_V2",
    "ONE_HOT", "ARG_MAX", "ARG_MIN", "CUMSUM", "BROADCAST_ARGS", "DYNAMIC_UPDATE_SLICE", "SCATTER_ND", "RANK",
    "TOPK_V2", "WHERE",
}
_METADATA_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE", "RANK"}

#: every op type the analysis (and so the predictor) knows how to cost
KNOWN_OPS = (_CONV_OPS | _MATMUL_OPS | _POOL_OPS | _REDUCE_OPS | set(ELEMENTWISE_FLOPS) | DATA_OPS
             | {"DEPTHWISE_CONV_2D"})

# fmt: on
_OPNAMES: dict[int, str] | None = None


def _op_names() -> dict[int, str]:
    global _OPNAMES
    if _OPNAMES is None:
        from ai_edge_litert import schema_py_generated as s

        _OPNAMES = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
    return _OPNAMES


def tflite_op_class(op_type: str) -> str:
    """The predictor's op class of a TFLite builtin op (``conv``, ``depthwise_conv``, ``matmul``, ``pool``,
    ``elementwise``, ``quant``, ``data``)."""
    if op_type == "DEPTHWISE_CONV_2D":
        return "depthwise_conv"
    if op_type in _CONV_OPS:
        return "conv"
    if op_type in _MATMUL_OPS:
        return "matmul"
    if op_type in _POOL_OPS or op_type in _REDUCE_OPS:
        return "pool"
    if op_type in _QUANT_OPS:
        return "quant"
    if op_type in ELEMENTWISE_FLOPS:
        return "elementwise"
    return "data"


def load_tflite(path: str | Path) -> tuple[Any, bytes]:
    """The flatbuffer as a ``ModelT`` object tree (and the raw bytes); ``ModelFileError`` if it is not one."""
    from ..errors import ModelFileError

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist")
    buf = p.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelFileError(f"{p} is not a TFLite flatbuffer (no 'TFL3' file identifier)")
    try:
        from ai_edge_litert import schema_py_generated as s

        model = s.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # a truncated or corrupt flatbuffer
        raise ModelFileError(f"{p} is not a readable TFLite model: {type(e).__name__}: {str(e)[:200]}") from None
    if not model.subgraphs:
        raise ModelFileError(f"{p} has no subgraph")
    return model, buf


def _buffer_nbytes(model: Any, idx: int) -> int:
    if idx <= 0 or not model.buffers or idx >= len(model.buffers):
        return 0
    b = model.buffers[idx]
    if b.data is not None and len(b.data):
        return int(len(b.data))
    if getattr(b, "size", 0) and b.size > 1:  # large models: data stored after the flatbuffer
        return int(b.size)
    return 0


def analyze_tflite(path: str | Path) -> CostReport:
    """Cost of one inference of a ``.tflite`` file (at the batch size it was exported with)."""
    try:
        return _analyze_tflite(path)
    except (IndexError, KeyError) as e:  # a damaged file whose flatbuffer unpacks: an index that points nowhere
        from ..errors import ModelFileError

        raise ModelFileError(f"{path} is not a valid TFLite model: {type(e).__name__}: {str(e)[:200]}") from None


def _analyze_tflite(path: str | Path) -> CostReport:
    model, _ = load_tflite(path)
    names = _op_names()
    sg = model.subgraphs[0]
    tensors = sg.tensors or []
    operators = sg.operators or []

    def shape(t: int) -> list[int] | None:
        if t < 0 or t >= len(tensors):
            return None
        s_ = tensors[t].shape
        return [int(v) for v in s_] if s_ is not None else []

    def numel(t: int) -> int:
        s_ = shape(t)
        return 0 if s_ is None else int(math.prod(s_))

    def nbytes(t: int) -> int:
        if t < 0:
            return 0
        return int(math.ceil(numel(t) * _TYPE_BYTES.get(int(tensors[t].type), 4)))

    def op_type(op: Any) -> str:
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            cc = (
                oc.customCode.decode("utf-8", errors="replace")
                if isinstance(oc.customCode, bytes)
                else str(oc.customCode or "")
            )
            return f"CUSTOM:{cc}"
        return name

    weights = {i for i, t in enumerate(tensors) if _buffer_nbytes(model, int(t.buffer)) > 0}
    # Ops whose inputs are all weights (DEQUANTIZE of fp16/int8 weights, ...) are folded into constants.
    constant = set(weights)
    folded: set[int] = set()
    for k, op in enumerate(operators):
        ins = [int(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0]
        if ins and all(i in constant for i in ins):
            constant.update(int(o) for o in (op.outputs if op.outputs is not None else []) if o >= 0)
            folded.add(k)
    producer: dict[int, int] = {}
    for k, op in enumerate(operators):
        for o in op.outputs if op.outputs is not None else []:
            producer[int(o)] = k

    def source_weight(t: int) -> int | None:
        """The stored weight behind a (possibly folded) constant input."""
        seen = 0
        while t in constant and t not in weights and t in producer and seen < 4:
            ins = [int(i) for i in operators[producer[t]].inputs if i >= 0]
            if not ins:
                return None
            t = ins[0]
            seen += 1
        return t if t in weights else None

    def tname(t: int) -> str:
        n = tensors[t].name
        return (n.decode("utf-8", errors="replace") if isinstance(n, bytes) else str(n)) or f"t{t}"

    # Which weights are parameters: float / 8-bit weights, and biases of MAC ops.
    bias_inputs: set[int] = set()
    for k, op in enumerate(operators):
        if k in folded:
            continue
        ot = op_type(op)
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        if ot in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_3D") and len(ins) > 2 and ins[2] >= 0:
            bias_inputs.add(ins[2])
        if ot == "TRANSPOSE_CONV" and len(ins) > 3 and ins[3] >= 0:
            bias_inputs.add(ins[3])

    def is_param(t: int) -> bool:
        if t not in weights:
            return False
        ty = int(tensors[t].type)
        return ty in _FLOAT_TYPES or ty in _INT8_TYPES or t in bias_inputs

    ops: list[OpCost] = []
    roles: list[tuple[str, str] | None] = []
    fused_act: list[int] = []
    unknown_shapes: list[str] = []
    counted: set[int] = set()
    graph_inputs = {int(i) for i in (sg.inputs if sg.inputs is not None else [])}
    graph_outputs = {int(i) for i in (sg.outputs if sg.outputs is not None else [])}
    for k, op in enumerate(operators):
        if k in folded:
            continue
        ot = op_type(op)
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(o) for o in (op.outputs if op.outputs is not None else []) if o >= 0]
        data_in = [i for i in ins if i >= 0 and i not in constant]
        out0 = outs[0] if outs else -1
        out_shape = shape(out0)
        out_numel = numel(out0)
        if out_shape is None:
            unknown_shapes.append(f"{ot}_{k}")
        macs = 0
        flops = 0
        gemm: tuple[int, int, int] | None = None
        k_area = 1
        w_src = [source_weight(i) for i in ins if i >= 0 and i in constant]
        # int8 weights behind a DEQUANTIZE (weight-only int8, fp16 weights): the runtime folds the dequantize when it
        # prepares the graph, so the op itself computes in float
        w_dequantized = any(
            i >= 0
            and i in constant
            and i not in weights
            and _TYPE_PRECISION.get(int(tensors[i].type)) in ("fp32", "fp16")
            for i in ins
        )
        wshape = shape(ins[1]) if len(ins) > 1 and ins[1] >= 0 else None
        if ot == "CONV_2D" and wshape and out_shape and len(wshape) == 4 and len(out_shape) == 4:
            kk = wshape[1] * wshape[2] * wshape[3]
            k_area = wshape[1] * wshape[2]
            gemm = (out_shape[0] * out_shape[1] * out_shape[2], kk, out_shape[3])
            macs = gemm[0] * gemm[1] * gemm[2]
        elif ot == "DEPTHWISE_CONV_2D" and wshape and out_shape and len(wshape) == 4 and len(out_shape) == 4:
            kk = wshape[1] * wshape[2]
            gemm = (out_shape[0] * out_shape[1] * out_shape[2], kk, out_shape[3])
            macs = gemm[0] * gemm[1] * gemm[2]
        elif ot == "TRANSPOSE_CONV" and len(ins) > 2:
            w2, x2 = shape(ins[1]), shape(ins[2])
            if w2 and x2 and len(w2) == 4 and len(x2) == 4:
                gemm = (x2[0] * x2[1] * x2[2], x2[3], w2[0] * w2[1] * w2[2])
                macs = gemm[0] * gemm[1] * gemm[2]
        elif ot == "CONV_3D" and wshape and out_shape and len(wshape) == 5:
            kk = wshape[0] * wshape[1] * wshape[2] * wshape[3]
            gemm = (int(math.prod(out_shape[:-1])), kk, out_shape[-1])
            macs = gemm[0] * gemm[1] * gemm[2]
        elif ot == "FULLY_CONNECTED" and wshape and len(wshape) == 2:
            kdim, n_out = wshape[1], wshape[0]
            m = numel(ins[0]) // max(1, kdim) if ins[0] >= 0 else 0
            gemm = (m, kdim, n_out)
            macs = m * kdim * n_out
        elif ot == "BATCH_MATMUL" and len(ins) > 1:
            a = shape(ins[0])
            if a and out_shape:
                adj_x = bool(getattr(op.builtinOptions, "adjX", False))
                kdim = a[-2] if adj_x else a[-1]
                n_out = out_shape[-1]
                gemm = (out_numel // max(1, n_out), kdim, n_out)
                macs = out_numel * kdim
        elif ot in _POOL_OPS:
            o = op.builtinOptions
            win = int(getattr(o, "filterHeight", 1) or 1) * int(getattr(o, "filterWidth", 1) or 1)
            flops = out_numel * win
        elif ot in _REDUCE_OPS:
            flops = numel(data_in[0]) if data_in else 0
        elif ot in ELEMENTWISE_FLOPS:
            flops = int(out_numel * ELEMENTWISE_FLOPS[ot])
        if macs:
            flops = 2 * macs

        params = 0
        wbytes = 0
        w_prec: str | None = None
        for src in w_src:
            if src is None or not is_param(src):
                continue
            if src not in counted:
                params += numel(src)
                wbytes += nbytes(src)
                counted.add(src)
            ty = int(tensors[src].type)
            if src not in bias_inputs:
                p = _TYPE_PRECISION.get(ty)
                if p is not None and (w_prec is None or p == "int8"):
                    w_prec = p
        a_prec = _TYPE_PRECISION.get(int(tensors[data_in[0]].type), "fp32") if data_in else "fp32"
        if ot in ("QUANTIZE", "DEQUANTIZE") or (
            macs and (a_prec == "int8" or (w_prec == "int8" and not w_dequantized))
        ):
            precision = "int8"
        else:
            precision = a_prec if a_prec in ("fp32", "fp16", "int8") else "fp32"
        roles.append(tflite_role(ot, ins, data_in, constant, shape))
        fa = int(getattr(op.builtinOptions, "fusedActivationFunction", 0) or 0)
        fused_act.append(FUSED_ACTIVATION_FLOPS.get(fa, 0) * out_numel)
        ops.append(
            OpCost(
                name=f"{ot.lower()}_{k}:{tname(out0) if out0 >= 0 else ''}"[:120],
                op_type=ot,
                op_class=tflite_op_class(ot),
                precision=precision,
                macs=int(macs),
                flops=int(flops),
                params=int(params),
                weight_bytes=int(wbytes),
                input_bytes=int(sum(nbytes(i) for i in data_in)),
                output_bytes=int(sum(nbytes(o) for o in outs)),
                output_shape=out_shape,
                inputs=[str(i) for i in data_in],
                outputs=[str(o) for o in outs],
                gemm=gemm,
                kernel_area=int(k_area),
                dynamic=bool(macs) and w_prec == "int8" and not w_dequantized and a_prec in ("fp32", "fp16"),
            )
        )

    apply_model_flops(ops, roles, fused_act)
    total_params = 0
    stored = 0
    qparam_bytes = 0
    for t in weights:
        if is_param(t):
            total_params += numel(t)
            stored += nbytes(t)
    for t in range(len(tensors)):
        q = tensors[t].quantization
        if q is not None:
            for arr, size in ((q.scale, 4), (q.zeroPoint, 8)):
                if arr is not None:
                    qparam_bytes += int(len(arr)) * size
    peak, peak_at = _peak_activation(
        operators, folded, constant, graph_inputs, graph_outputs, nbytes, [o.name for o in ops]
    )
    return CostReport.of_ops(
        ops,
        int(total_params),
        stored_weight_bytes=int(stored),
        quant_param_bytes=int(qparam_bytes),
        peak_activation_bytes=int(peak),
        peak_at=peak_at,
        input_bytes=int(sum(nbytes(i) for i in graph_inputs if i not in constant)),
        output_bytes=int(sum(nbytes(o) for o in graph_outputs)),
        op_counts=dict(Counter(op_type(op) for k, op in enumerate(operators) if k not in folded)),
        unknown_shapes=unknown_shapes,
        format="tflite",
        source=str(Path(path).resolve()),
        input_precision=_TYPE_PRECISION.get(int(tensors[int(sg.inputs[0])].type), "fp32") if graph_inputs else "fp32",
        output_precision=_TYPE_PRECISION.get(int(tensors[int(sg.outputs[0])].type), "fp32")
        if graph_outputs
        else "fp32",
    )


def _peak_activation(
    operators: list[Any],
    folded: set[int],
    constant: set[int],
    graph_inputs: set[int],
    graph_outputs: set[int],
    nbytes: Any,
    op_names: list[str],
) -> tuple[int, str | None]:
    run = [(k, op) for k, op in enumerate(operators) if k not in folded]
    last_use: dict[int, int] = {}
    for i, (_, op) in enumerate(run):
        for x in op.inputs if op.inputs is not None else []:
            if x >= 0:
                last_use[int(x)] = i
    live: dict[int, int] = {t: nbytes(t) for t in graph_inputs if t not in constant}
    cur = sum(live.values())
    peak, peak_at = cur, None
    for i, (_, op) in enumerate(run):
        for o in op.outputs if op.outputs is not None else []:
            o = int(o)
            if o >= 0 and o not in live and o not in constant:
                live[o] = nbytes(o)
                cur += live[o]
        if cur > peak:
            peak, peak_at = cur, op_names[i] if i < len(op_names) else None
        touched = [int(x) for x in (op.inputs if op.inputs is not None else []) if x >= 0]
        touched += [int(x) for x in (op.outputs if op.outputs is not None else []) if x >= 0]
        for x in set(touched):
            if x in live and x not in graph_outputs and last_use.get(x, -1) <= i:
                cur -= live.pop(x)
    return peak, peak_at


def tflite_io(path: str | Path) -> list[tuple[str, list[int], np.dtype]]:
    """Name, shape and numpy dtype of each input of the main subgraph (for building example inputs)."""
    model, _ = load_tflite(path)
    sg = model.subgraphs[0]
    np_types = {
        0: np.float32,
        1: np.float16,
        2: np.int32,
        3: np.uint8,
        4: np.int64,
        6: np.bool_,
        7: np.int16,
        9: np.int8,
        10: np.float64,
    }
    out = []
    for i in sg.inputs:
        t = sg.tensors[int(i)]
        n = t.name.decode("utf-8", errors="replace") if isinstance(t.name, bytes) else str(t.name)
        out.append((n, [int(v) for v in t.shape], np.dtype(np_types.get(int(t.type), np.float32))))
    return out
