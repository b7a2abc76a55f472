"""The calibrated per-op device predictor (version ``opcost-1``).

For each op of the exported graph (ONNX or TFLite, through the same :class:`~adaptc.analysis.CostReport`):

    compute = FLOPs / (S[p] x eff[class][p] x shape(M, K, N) x threads)
    memory  = bytes moved / (bandwidth x bw_eff x threads)
    time    = smooth_max(compute, memory) + op_overhead          (smooth_max(a, b) = (a^4 + b^4)^(1/4))

summed over the ops the runtime executes, plus a fixed cost per inference and, for the host's Python
runners, a cost per input/output element. ``S[p]`` is the profile's sustained dense-convolution throughput
at precision ``p`` (or its spec-sheet peak times the fitted peak-to-sustained ratio), ``eff`` is the fitted
fraction of it that each op class (conv, depthwise_conv, matmul) and kernel group (binary, activation,
softmax, reduce, quant) reaches, and ``shape = K/(K+K0) x N/(N+N0) x M/(M+M0)`` (depthwise: C/(C+C0) x
M/(M+M0)) captures how small GEMM dimensions waste SIMD lanes and register tiles. Data-movement ops
(transpose, concat, pad, gather, ...) are bandwidth-bound; metadata ops (reshape, squeeze, ...) are free;
activations / batch norms / bias adds that onnxruntime fuses into the preceding convolution or matmul are free.

Threads: throughput scales by ``1 + (n - 1) x thread_efficiency`` relative to the profile's thread count;
per-op overhead grows by ``1 + (n - 1) x thread_overhead``. Overheads were fitted at ``ref_ghz`` and scale by
``ref_ghz / device GHz``.

Memory = base + weight_factor[precision] x weight bytes + activation_factor x peak activation bytes (tensor
liveness), i.e. the runtime's own footprint, its copies of the weights (onnxruntime copies and prepacks them;
LiteRT maps the file and XNNPACK packs a private copy) and its activation arena. It estimates the host
measurement's definition (VmHWM growth from creating the session and running it once).

The constants live in ``adaptc/predict/models/<runtime>.json`` per device family and may be overridden by a
profile's ``predictor:`` section (see :mod:`adaptc.predict.constants`); how they were fitted is in
``adaptc.predict.fit`` and the README section "Predictor accuracy".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.onnx_graph import CostReport
from ..profiles.schema import DeviceProfile
from .constants import Constants, device_ghz, resolve, sustained_throughput

PREDICTOR_VERSION = "opcost-1"
#: (M, K, N) of the reference convolution that defines "sustained" throughput: a 3x3 convolution 128 -> 128 on a
#: 28 x 28 map (what ``adaptc calibrate`` measures for compute.fp32_gflops / int8_gops); depthwise ops are
#: normalised at the same M and C = N
REFERENCE_GEMM = (784, 1152, 128)

log = logging.getLogger(__name__)

_PRECISIONS = ("fp32", "fp16", "int8")
_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
MAC_CLASSES = ("conv", "depthwise_conv", "matmul")
GROUPS = ("binary", "activation", "hardswish", "softmax", "reduce", "quant", "transpose", "pad")
# kind codes of the op table
_K_CONV, _K_DW, _K_MM, _K_BIN, _K_ACT, _K_HSW, _K_SOFT, _K_RED, _K_QUANT, _K_TRANS, _K_PAD, _K_DATA = range(12)
#: float convolutions onnxruntime keeps out of its NCHWc layout on x86 (ort_view.layout_view): other kernels
_K_CONV_FB, _K_DW_FB = 12, 13
#: a LayerNormalization onnxruntime fuses with the residual Add before it (SkipLayerNormalization: on this
#: host's onnxruntime 1.32 about 8x slower per element than a plain LayerNormalization)
_K_SKIPLN = 14
#: a k x k convolution (k > 1): runtimes use other kernels for them (indirect / im2col GEMM) than for 1x1 ones
_K_CONV_SP = 15
#: a dense convolution that onnxruntime keeps float inside a QDQ graph (it did not fuse it into a QLinearConv):
#: its weights are dequantized on every run, so it cannot use pre-packed weights, and it runs outside the NCHWc
#: layout. Measured on this host (per-node profile of an int8 ResNet): 2-3x slower per MAC than a float
#: convolution of the fp32 graph
_K_CONV_DQ = 16
#: a linear layer (Gemm) that onnxruntime runs as its int8 ``QGemm`` kernel: measured on this host, 1.4-1.6x the time
#: of ``QLinearMatMul`` on the same shapes (a MatMul + bias Add pair of a QDQ graph runs as the latter)
_K_QGEMM = 17
#: a binary op whose second operand is broadcast over the first (a squeeze-and-excitation scale, a layer norm's
#: per-row statistics): runtimes run these through other loops than same-shape ones (per-node profile of an
#: onnxruntime MobileNetV3: its squeeze-and-excitation multiplies took ~8x the same-shape figure; the
#: squeeze-and-excitation micro-benchmarks fit it near the plain figure on this host)
_K_BCAST = 18
#: int8 weights of a float MatMul that onnxruntime dequantizes on every run (it keeps a MatMul float when its
#: dequantized input also feeds other ops, e.g. q / k / v projections of one layer-norm output): per-channel on the
#: last axis, ~2.4 ns per element on this host (per-node profile of a BERT encoder: 160 us per 256 x 256 weight)
_K_WDQ = 19
#: dynamic-range int8 (int8 weights, float activations quantized at run time): other kernels than static int8 ones
#: (XNNPACK's qd8-f32-qc8w GEMM, onnxruntime's DynamicQuantizeMatMul / MatMulIntegerToFloat): float output, no
#: requantization, and a quantization of the input (per row: min / max, scale, convert) before each product, which
#: is its own op here (``_K_DYNQ``; onnxruntime's DynamicQuantizeLinear, synthesized for TFLite): a pass over float
#: elements, costed like a float binary op (no efficiency of its own: fitted apart, its cost and the product's
#: traded places between calibrations, 1.25 in one and 0.056 in the next). Host
#: measurements, 2026-11-29: costed as static int8, TFLite dynamic encoders were -28..+27% off (small ones slower
#: than static int8, large ones faster), onnxruntime ones -8..-12%
_K_MM_DYN, _K_DYNQ = 20, 21
#: onnxruntime's copies between the plain and the NCHWc layout (ReorderInput / ReorderOutput): contiguous channel
#: blocks, several times faster per byte than a transpose that moves small strided pieces (an attention head split:
#: [1, 128, 12, 32] -> [1, 12, 128, 32], ~20 us per 196 KB here); one efficiency for both fitted neither
_K_REORDER = 22
_KIND_NAMES = ("conv", "depthwise_conv", "matmul", "binary", "activation", "hardswish", "softmax", "reduce", "quant",
               "transpose", "pad", "data", "conv_fallback", "depthwise_conv_fallback", "skip_layernorm",
               "conv_spatial", "conv_dequantized", "qgemm", "binary_broadcast", "weight_dequant", "matmul_dynamic",
               "dynamic_quant", "reorder")
#: a kind without its own fitted efficiency uses that of another
_FALLBACK_OF = {"conv_fallback": "conv", "depthwise_conv_fallback": "depthwise_conv", "skip_layernorm": "softmax",
                "conv_spatial": "conv", "conv_dequantized": "conv", "qgemm": "matmul",
                "binary_broadcast": "binary", "weight_dequant": "quant", "matmul_dynamic": "matmul",
                "dynamic_quant": "binary", "reorder": "transpose"}
#: data-movement kinds: their "efficiency" is a fraction of the memory bandwidth (no arithmetic)
_MOVE_KINDS = (_K_TRANS, _K_PAD, _K_DATA, _K_REORDER)

_ONNX_BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "Equal", "Greater", "Less", "And", "Or",
                "Mod", "GreaterOrEqual", "LessOrEqual", "Sum", "Mean"}
_ONNX_ACTIVATION = {"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Exp", "Log", "Erf", "Gelu",
                    "HardSigmoid", "HardSwish", "Mish", "Softplus", "Elu", "Selu", "Sqrt", "Reciprocal", "Neg",
                    "Abs", "Cast", "Floor", "Ceil", "Round", "Not", "Sin", "Cos", "Sign", "IsNaN", "IsInf"}
_ONNX_SOFTMAX = {"Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization", "BatchNormalization",
                 "GroupNormalization", "RMSNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization"}
_ONNX_DATA = {"Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Pad", "Expand",
              "Tile", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Range", "ConstantOfShape", "Size",
              "ScatterND", "ScatterElements", "TopK", "ArgMax", "ArgMin", "NonZero", "OneHot", "Trilu", "CumSum",
              "EyeLike", "ReverseSequence", "Compress", "MaxUnpool"}
_ONNX_META = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Dropout", "Constant"}
_TFL_BINARY = {"ADD", "SUB", "MUL", "DIV", "POW", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "SELECT", "SELECT_V2",
               "EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "LOGICAL_AND", "LOGICAL_OR",
               "ADD_N", "FLOOR_DIV", "FLOOR_MOD"}
_TFL_SOFTMAX = {"SOFTMAX", "LOG_SOFTMAX", "L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION"}
_TFL_META = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE", "RANK"}
#: data ops that select part of their input
_SELECT_OPS = {"Gather", "GatherElements", "GatherND", "Slice", "Split", "GATHER", "GATHER_ND", "SLICE",
               "STRIDED_SLICE", "SPLIT", "SPLIT_V", "UNPACK", "EMBEDDING_LOOKUP"}
#: ops onnxruntime fuses into the convolution / matmul that produces their input
_ORT_FUSABLE = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "BatchNormalization", "Add", "Mul"}


def _known_onnx() -> set[str]:
    from ..analysis import onnx_graph as og

    return (set(og._ELEMENTWISE_FLOPS) | og._MAC_OPS | og._POOL_OPS | og._GLOBAL_POOL_OPS | og._QPARAM_OPS
            | _ONNX_DATA | _ONNX_META | _ONNX_BINARY | _ONNX_ACTIVATION | _ONNX_SOFTMAX)


def _known_tflite() -> set[str]:
    from ..analysis.tflite_graph import KNOWN_OPS

    return set(KNOWN_OPS) | _TFL_META


def kernel_kind(op_type: str, op_class: str) -> int:
    """Kind code of an op: its MAC class, or the kernel group of a non-MAC op, or data movement."""
    if op_class == "conv":
        return _K_CONV
    if op_class == "depthwise_conv":
        return _K_DW
    if op_class == "matmul":
        return _K_MM
    if op_class == "quant":
        return _K_QUANT
    if op_class == "pool":
        return _K_RED
    if op_type in _ONNX_SOFTMAX or op_type in _TFL_SOFTMAX:
        return _K_SOFT
    if op_type in _ONNX_META or op_type in _TFL_META:
        return _K_DATA
    if op_type in ("Transpose", "TRANSPOSE", "DepthToSpace", "SpaceToDepth", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
        return _K_TRANS
    if op_type in ("Pad", "PAD", "PADV2", "MIRROR_PAD"):
        return _K_PAD
    if op_type in ("HardSwish", "HARD_SWISH", "HardSigmoid"):
        return _K_HSW
    if op_type in _ONNX_BINARY or op_type in _TFL_BINARY:
        return _K_BIN
    if op_class == "elementwise":
        return _K_ACT
    return _K_DATA


@dataclass
class OpTable:
    """The ops of one graph as arrays (what the predictor and the fit evaluate)."""

    names: list[str]
    op_types: list[str]
    kind: np.ndarray      # kind code (see _KIND_NAMES)
    prec: np.ndarray      # 0 fp32, 1 fp16, 2 int8
    flops: np.ndarray
    bytes: np.ndarray
    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    run: np.ndarray       # executed (not fused, not metadata-only)
    reason: list[str]     # why an op does not run ("" when it runs)
    unknown: list[str]
    io_elems: dict[str, float]
    weight_bytes: float
    activation_bytes: float
    weight_precision: str
    #: the part of weight_bytes that belongs to convolutions (runtimes may re-layout those: another copy)
    conv_weight_bytes: float = 0.0
    #: kernel area of each op (k x k of a convolution, else 1); None: all 1
    area: np.ndarray | None = None
    #: independent matrix products of a batched product of two activations (attention heads): runtimes run one
    #: GEMM per item, each with its own packing (None: one each)
    items: np.ndarray | None = None
    #: kernels the runtime dispatches per inference (onnxruntime on this host: the nodes of its optimized graph)
    kernels: float = 0.0
    #: bytes of each multiply-accumulate op's own weights (None: none)
    op_weights: np.ndarray | None = None
    #: bytes of the graph's multiply-accumulate weights per op, where op_weights does not give it: the fit stacks
    #: many graphs into one table (None: the sum of op_weights)
    graph_weights: np.ndarray | None = None


def _graph_format(cost: CostReport) -> str:
    return getattr(cost, "format", "onnx")


def build_table(cost: CostReport, runtime: str, precision: str | None = None, layouts: bool = False) -> OpTable:
    """Per-op features of a cost report as seen by ``runtime`` (fusions applied). ``layouts``: the prediction is
    for this machine's onnxruntime, so its layout decisions (NCHWc on x86) are read from onnxruntime itself."""
    fmt = _graph_format(cost)
    known = _known_tflite() if fmt == "tflite" else _known_onnx()
    meta = _TFL_META if fmt == "tflite" else _ONNX_META
    producers: dict[str, int] = {}
    consumers: dict[str, int] = {}
    q_of: dict[str, str] = {}  # tensor -> output of the QuantizeLinear that consumes it
    for i, o in enumerate(cost.ops):
        for t in o.outputs:
            producers[t] = i
        for t in o.inputs:
            consumers[t] = consumers.get(t, 0) + 1
        if o.op_type == "QuantizeLinear" and o.inputs and o.outputs:
            q_of[o.inputs[0]] = o.outputs[0]
    view = None
    if (runtime == "onnxruntime" and fmt == "onnx" and precision is None
            and any(o.op_class == "quant" for o in cost.ops)):
        from .ort_view import runtime_view

        view = runtime_view(cost.source)
    layout = None
    if layouts and runtime == "onnxruntime" and fmt == "onnx" and precision is None:
        from .ort_view import layout_view

        layout = layout_view(cost.source)
    split_seen: set[str] = set()
    names = [o.name for o in cost.ops]
    types = [o.op_type for o in cost.ops]
    kind_l: list[int] = []
    prec_l: list[int] = []
    flops_l: list[float] = []
    bytes_l: list[float] = []
    mkn: list[tuple[float, float, float]] = []
    area_l: list[float] = []
    items_l: list[float] = []
    run_l: list[bool] = []
    reason = [""] * len(cost.ops)
    unknown: list[str] = []
    fused_into: set[int] = set()
    dyn_inputs: list[tuple[str, float, float]] = []  # (name, flops, bytes) of run-time input quantizations
    tr_gone = (max(0, sum(o.op_type == "Transpose" for o in cost.ops) - layout.op_counts["Transpose"])
               if layout is not None else 0)
    for i, o in enumerate(cost.ops):
        kd = kernel_kind(o.op_type, o.op_class)
        p = o.precision if o.precision in _PRECISIONS else "fp32"
        b = float(o.bytes_moved)
        if precision is not None and kd != _K_QUANT and p != precision:
            b *= _BYTES[precision] / _BYTES[p]
            p = precision
        run, whole_input = True, False
        if o.op_type not in known:
            unknown.append(o.op_type)
        if view is not None:
            run, p, b, why = _ort_decision(o, kd, p, b, view, q_of)
            reason[i] = why
        elif o.fused:
            run, reason[i] = False, "quantize/dequantize pair fused into the int8 kernels"
        if layout is not None and run:
            made_by = layout.producer.get(o.outputs[0]) if o.outputs else None
            if p != "int8" and kd == _K_CONV and view is not None and o.name in layout.fallback_nodes:
                kd = _K_CONV_DQ  # float inside a QDQ graph: run-time dequantized weights, plain layout
            elif p != "int8" and kd in (_K_CONV, _K_DW) and o.name in layout.fallback_nodes:
                kd = _K_CONV_FB if kd == _K_CONV else _K_DW_FB
            elif o.op_type == "LayerNormalization" and made_by and made_by[0] == "SkipLayerNormalization":
                kd = _K_SKIPLN
            elif (view is None and o.op_type == "Transpose" and o.outputs and tr_gone > 0
                  and (made_by is None or made_by[0] != "Transpose")):
                # onnxruntime's transpose optimizer cancels transposes that undo each other (an Identity may be left
                # to write the graph output) and folds a swap of the last two axes into a MatMul (FusedMatMul): no
                # transpose runs (the exported graph's count minus the optimized graph's bounds how many)
                tr_gone -= 1
                run, reason[i] = False, "removed by onnxruntime's transpose optimizer"
            elif view is None and o.op_type in _ORT_FUSABLE and o.outputs and made_by is None:
                # its output is gone from the optimized graph: fused into a neighbour (NCHWc convolution, Gemm,
                # SkipLayerNormalization)
                run, reason[i] = False, "fused into the kernel before or after it by onnxruntime"
            elif o.op_type == "Gather" and o.outputs and o.outputs[0] in layout.split_of:
                # onnxruntime turns gathers of one tensor into one Split: the first carries its cost
                split = layout.split_of[o.outputs[0]]
                if split in split_seen:
                    run, reason[i] = False, "fused into a Split by onnxruntime"
                else:
                    split_seen.add(split)
                    b, whole_input = 2.0 * float(o.input_bytes), True
        if kd == _K_CONV and o.kernel_area > 1:
            kd = _K_CONV_SP
        if kd == _K_BIN and len(o.inputs) == 2 and o.input_bytes < 1.5 * o.output_bytes:
            kd = _K_BCAST  # two activations, one much smaller than the output: broadcast
        if layout is not None and view is not None and run and p == "int8" and o.gemm:
            # onnxruntime's int8 kernels on x86 work on channel blocks: a depthwise convolution whose channels are
            # not a multiple of 16, or a dense one with an odd number of input channels, takes a slower path
            # (micro-benchmarks: depthwise at 24-120 channels and 1x1 / 3x3 at 11 and 33 channels ran 17-48%
            # slower than the blocked figures predict)
            cin = int(round(o.gemm[1] / max(o.kernel_area, 1)))
            if kd == _K_DW and int(o.gemm[2]) % 16:
                kd = _K_DW_FB
            elif kd in (_K_CONV, _K_CONV_SP) and cin % 2:
                kd = _K_CONV_FB
        if view is not None and run and p == "int8" and kd == _K_MM and "QGemm" in (
                view.nodes.get(o.name), view.produced.get(q_of.get(o.outputs[0], "") if o.outputs else "")):
            kd = _K_QGEMM
        if o.dynamic and kd in (_K_MM, _K_CONV, _K_CONV_SP) and p == "int8":
            kd = _K_MM_DYN
        elif o.op_type == "DynamicQuantizeLinear":
            # onnxruntime folds it into the product it feeds (DynamicQuantizeMatMul) or keeps it when it feeds
            # several (q / k / v): the work is done either way
            kd, run, reason[i], p = _K_DYNQ, True, "", "fp32"  # reads float: rated as a float pass
        if kd == _K_DATA and o.op_type in _SELECT_OPS and not whole_input:
            b = 2.0 * float(o.output_bytes)  # a gather / slice moves what it selects, not its whole input
        if not run:
            pass
        elif o.op_type in meta and runtime == "onnxruntime":
            # onnxruntime dispatches a kernel for every node, even a zero-copy reshape: overhead only
            b = 0.0
        elif o.op_type in meta:
            run, reason[i] = False, "metadata only (no kernel runs)"
        elif precision is not None and kd == _K_QUANT:
            run, reason[i] = False, f"what-if {precision}: quantization ops not counted"
        elif runtime == "onnxruntime" and o.op_type in _ORT_FUSABLE and len(o.inputs) == 1:
            src = producers.get(o.inputs[0])
            if src is not None and cost.ops[src].op_class in ("conv", "depthwise_conv", "matmul") \
                    and consumers.get(o.inputs[0], 0) == 1 and src not in fused_into:
                run, reason[i] = False, f"fused into {cost.ops[src].op_type} by onnxruntime"
                if o.op_type not in ("Add", "Mul", "BatchNormalization"):
                    fused_into.add(src)  # one activation per kernel
        if run and kd == _K_MM_DYN and fmt == "tflite" and o.gemm:
            # XNNPACK quantizes the float input of a dynamic-range product in a node of its own (convert to qd8)
            n_in = float(o.input_bytes) / 4.0  # its float32 input: read 4 bytes, write 1 per element
            dyn_inputs.append((f"dynamic quantization of the input of {o.name}", n_in, 5.0 * n_in))
        kind_l.append(kd)
        prec_l.append(_PRECISIONS.index(p))
        flops_l.append(0.0 if (o.op_type in meta) else float(o.flops))
        bytes_l.append(b)
        mkn.append(tuple(float(v) for v in o.gemm) if o.gemm else (1.0, 1.0, 1.0))
        area_l.append(float(o.kernel_area))
        items_l.append(_batch_items(o))
        run_l.append(run)
    def add(name: str, op_type: str, kd: int, prec: int, flops: float, nbytes: float) -> None:
        """An op the runtime runs that the exported graph does not have (layout copies, added dispatches)."""
        names.append(name)
        types.append(op_type)
        reason.append("")
        kind_l.append(kd)
        prec_l.append(prec)
        flops_l.append(flops)
        bytes_l.append(nbytes)
        mkn.append((1.0, 1.0, 1.0))
        area_l.append(1.0)
        items_l.append(1.0)
        run_l.append(True)

    for name, fl, nb in dyn_inputs:
        add(name, "QUANTIZE", _K_DYNQ, 0, fl, nb)
    if view is not None:
        # layout nodes of the full optimization level, sized like an average int8 convolution output
        q_out = [o.output_bytes for o in cost.ops if o.op_class in ("conv", "depthwise_conv") and o.precision == "int8"]
        avg = float(np.mean(q_out)) if q_out else 0.0
        for _ in range(view.layout_transposes):
            add("layout Transpose (onnxruntime NHWC)", "Transpose", _K_TRANS, 2, 0.0, 2 * avg)
        for _ in range(view.layout_quant_ops):
            add("layout Quantize/Dequantize (onnxruntime)", "QuantizeLinear", _K_QUANT, 2, 2 * avg, 5 * avg)
        for n_el in view.weight_dequant_elems:  # int8 weights of float kernels, dequantized at every run
            add("weight DequantizeLinear (onnxruntime)", "DequantizeLinear", _K_QUANT, 2, 2.0 * n_el, 5.0 * n_el)
        for n_el in view.matmul_weight_dequant_elems:
            add("MatMul weight DequantizeLinear (onnxruntime)", "DequantizeLinear", _K_WDQ, 2, 2.0 * n_el, 5.0 * n_el)
    if layout is not None:
        for _ in range(layout.extra_meta_nodes):  # Reshapes added around fused Gemms: a dispatch each
            add("Reshape added by onnxruntime's optimizer", "Reshape", _K_DATA, 0, 0.0, 0.0)
        out_bytes = {o.outputs[0]: float(o.output_bytes) for o in cost.ops if len(o.outputs) == 1}
        for tname in layout.reorder_tensors:
            add(f"NCHWc reorder of {tname} (onnxruntime)", "Transpose", _K_REORDER, 0, 0.0,
                2.0 * out_bytes.get(tname, float(cost.input_bytes)))
    in_el, out_el = _io_elements(cost)
    if precision is not None and precision != "fp32" and cost.stored_weight_bytes >= cost.weight_bytes_at.get("fp32", 0):
        wbytes = float(cost.weight_bytes_at.get(precision, cost.stored_weight_bytes))
        wprec = precision
    else:
        wbytes = float(cost.stored_weight_bytes + cost.quant_param_bytes)
        wprec = _dominant_precision(cost)
        if fmt == "tflite":
            wbytes += _unpacked_weight_bytes(cost)
    act = float(cost.peak_activation_bytes)
    if precision is not None and wprec != _dominant_precision(cost):
        act *= _BYTES.get(precision, 4) / _BYTES.get(_dominant_precision(cost), 4)
    arr = np.array(mkn, dtype=float).reshape(-1, 3)
    return OpTable(
        names=names, op_types=types, kind=np.array(kind_l, np.int64), prec=np.array(prec_l, np.int64),
        flops=np.array(flops_l, float), bytes=np.array(bytes_l, float), m=arr[:, 0], k=arr[:, 1], n=arr[:, 2],
        run=np.array(run_l, bool), reason=reason, unknown=sorted(set(unknown)),
        io_elems={"in": in_el[0], "in_int8": in_el[1], "out": out_el[0], "out_int8": out_el[1]},
        weight_bytes=wbytes, activation_bytes=act, weight_precision=wprec,
        conv_weight_bytes=float(sum(o.weight_bytes for o in cost.ops if o.op_class in ("conv", "depthwise_conv")))
        * (wbytes / max(1.0, float(cost.stored_weight_bytes + cost.quant_param_bytes))),
        area=np.array(area_l, float), items=np.array(items_l, float),
        kernels=float(sum(layout.op_counts.values())) if layout is not None else float(sum(run_l)),
        op_weights=np.array([float(o.weight_bytes) if o.macs else 0.0 for o in cost.ops]
                            + [0.0] * (len(names) - len(cost.ops))),
    )


def _unpacked_weight_bytes(cost: CostReport) -> float:
    """Bytes a TFLite runtime adds when it unpacks stored int8 / float16 weights that feed float kernels (weight-only
    int8, float16 weights behind a DEQUANTIZE), in the units of the stored weights: LiteRT materializes an int8
    weight's dequantized tensor and XNNPACK packs it again, so the file weighs as its float32 version; XNNPACK
    packs float16 weights directly, half that. Measured (2-layer d = 384 encoder, 3.5 M weights; fp32 file 32.6 MB):
    weight-only int8 36.1 MB (16.5 MB predicted from the stored bytes), float16 27.8 MB."""
    extra = 0.0
    for o in cost.ops:
        if not (o.macs and o.precision == "fp32" and o.params):
            continue
        per = o.weight_bytes / o.params
        if per < 1.5:  # int8
            extra += 4.0 * o.params - o.weight_bytes
        elif per < 3.5:  # float16
            extra += (4.0 * o.params - o.weight_bytes) / 2.0
    return extra


def _batch_items(o: Any) -> float:
    """Matrix products in a batched matmul of two activations (heads x batch); 1 for everything else."""
    shp = o.output_shape
    if o.op_class != "matmul" or len(o.inputs) < 2 or not shp or len(shp) < 3:
        return 1.0
    return float(max(1, int(np.prod(shp[:-2]))))


def _ort_decision(o: Any, kd: int, p: str, b: float, view: Any, q_of: dict[str, str]
                  ) -> tuple[bool, str, float, str]:
    """(runs, precision, bytes, reason) of an op of a QDQ graph in onnxruntime's optimized graph."""
    from .ort_view import QLINEAR_MAC

    outs = o.outputs
    if kd == _K_QUANT:
        if any(view.produced.get(t) in ("QuantizeLinear", "DequantizeLinear") for t in outs) or view.nodes.get(
                o.name) in ("QuantizeLinear", "DequantizeLinear"):
            # (by node name too: onnxruntime's int8 -> uint8 conversion on x86 renames the outputs of the
            # quantize nodes it keeps, qdq_s8_to_u8_quant_*)
            return True, p, b, ""
        return False, p, b, "fused into an int8 kernel by onnxruntime"
    if view.nodes.get(o.name, "").startswith("QLinear") and kd not in (_K_CONV, _K_DW, _K_MM):
        return True, "int8", b, ""  # an int8 kernel of its own (QLinearSoftmax, QLinearAdd, ...)
    own = view.produced.get(outs[0]) if outs else None
    if own is not None:
        if p == "int8":  # the kernel stays float: int8 activations are dequantized around it
            return True, "fp32", b * 4.0, "runs as a float kernel in onnxruntime (explicit quantize/dequantize)"
        return True, p, b, ""
    q_out = q_of.get(outs[0]) if outs else None
    prod = view.produced.get(q_out) if q_out else None
    if kd in (_K_CONV, _K_DW, _K_MM):
        return True, "int8", b, ""
    if prod is None or prod in QLINEAR_MAC:
        if view.nodes.get(o.name) == o.op_type:
            # still there under its own name, its quantize / dequantize pair dropped: it moves int8 tensors
            # (Reshape, Transpose, ... between int8 kernels)
            return True, "int8", b, ""
        return False, p, b, "fused into an int8 kernel by onnxruntime"
    return True, "int8", b, ""


def _dominant_precision(cost: CostReport) -> str:
    if not cost.precision_macs:
        return "fp32"
    return max(cost.precision_macs.items(), key=lambda kv: kv[1])[0]


def _io_elements(cost: CostReport) -> tuple[tuple[float, float], tuple[float, float]]:
    """(float elements, int8 elements) of the graph inputs and outputs."""
    in_prec = getattr(cost, "input_precision", "fp32")
    out_prec = getattr(cost, "output_precision", "fp32")

    def split(nbytes: int, p: str) -> tuple[float, float]:
        if p == "int8":
            return 0.0, float(nbytes)
        return float(nbytes) / _BYTES.get(p, 4), 0.0

    return split(cost.input_bytes, in_prec), split(cost.output_bytes, out_prec)


@dataclass
class Device:
    """The device figures the predictor needs (from a profile)."""

    sustained: dict[str, float]   # GFLOP/s (GOP/s) per precision at the profile's thread count
    bandwidth_gbps: float
    profile_threads: int
    max_threads: int
    ghz: float

    @classmethod
    def from_profile(cls, profile: DeviceProfile, runtime: str) -> "Device":
        return cls(
            sustained={p: sustained_throughput(profile, p, runtime)[0] for p in _PRECISIONS},
            bandwidth_gbps=profile.memory.bandwidth_gbps, profile_threads=profile.cpu.threads,
            max_threads=profile.cpu.total_cores, ghz=device_ghz(profile),
        )


def _smooth_max(a: np.ndarray, b: np.ndarray, q: float = 4.0) -> np.ndarray:
    m = np.maximum(a, b)
    safe = np.where(m > 0, m, 1.0)
    return np.where(m > 0, safe * ((a / safe) ** q + (b / safe) ** q) ** (1.0 / q), 0.0)


def op_times(t: OpTable, c: Constants, dev: Device, threads: "int | np.ndarray") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-op seconds (0 for ops that do not run), compute seconds and memory seconds. ``threads`` may be an
    array with one thread count per op (the fit evaluates many graphs at once)."""
    n_thr = np.clip(np.asarray(threads, dtype=float), 1, dev.max_threads)
    tf = (1.0 + (n_thr - 1) * c.thread_efficiency) / (
        1.0 + (max(1, min(dev.profile_threads, dev.max_threads)) - 1) * c.thread_efficiency)
    S = np.array([dev.sustained[p] for p in _PRECISIONS]) * 1e9
    eff = np.ones((len(_KIND_NAMES), 3))
    # slices, concatenations, gathers: a fitted efficiency per precision where the constants have one ("data"),
    # else one fraction of the bandwidth for every precision (data_bw_efficiency: spec-sheet profiles)
    data_fitted = "data" in c.efficiency
    for ki, kname in enumerate(_KIND_NAMES):
        if ki == _K_DATA and not data_fitted:
            continue
        e = c.efficiency.get(kname) or c.efficiency.get(_FALLBACK_OF.get(kname, kname), {})
        base = e.get("fp32", c.data_bw_efficiency if ki in _MOVE_KINDS else 0.1)
        plain = c.efficiency.get(_FALLBACK_OF.get(kname, kname), {})  # a precision the kind lacks: its plain kind's
        eff[ki] = [e.get("fp32", base), e.get("fp16", e.get("fp32", base)), e.get("int8", plain.get("int8", base))]
    kind, prec = t.kind, t.prec
    is_mac = (kind <= _K_MM) | np.isin(kind, (_K_CONV_FB, _K_DW_FB, _K_CONV_SP, _K_CONV_DQ, _K_QGEMM, _K_MM_DYN))
    is_dw = (kind == _K_DW) | (kind == _K_DW_FB)
    k0, n0, m0, c0 = c.gemm_k0, c.gemm_n0, c.gemm_m0, c.dw_c0
    # kernels with their own half-efficiency dimensions where the constants give them (a later row wins): int8
    # kernels tile K and N differently, 1x1 convolutions keep their speed at small K / N, QGemm follows M x N
    for mask, own_k0, own_n0, own_m0 in ((t.prec == 2, c.gemm_int8_k0, c.gemm_int8_n0, None),
                                         (kind == _K_CONV, c.conv_k0, c.conv_n0, None),
                                         (kind == _K_QGEMM, c.qgemm_k0, c.qgemm_n0, c.qgemm_m0)):
        k0, n0, m0 = (v if own is None else np.where(mask, own, v)
                      for v, own in ((k0, own_k0), (n0, own_n0), (m0, own_m0)))
    rm, rk, rn = REFERENCE_GEMM
    # shape factors relative to the reference convolution (where efficiency = 1 by the definition of "sustained")
    # output channels are computed in SIMD tiles of n_tile lanes: a partial last tile wastes lanes
    nt = max(1.0, c.n_tile)
    tile = t.n / (np.ceil(t.n / nt) * nt)
    kfac = (t.k / (t.k + k0)) / (rk / (rk + k0))
    if c.spatial_cin0 is not None and t.area is not None:
        # a k x k convolution gathers k x k vectors of Cin values per output pixel (indirect / im2col GEMM):
        # its inner dimension is Cin, not K (a 7x7 stem on 3 channels wastes most SIMD lanes)
        cin, s0, rc = t.k / np.maximum(t.area, 1.0), c.spatial_cin0, rk / 9.0
        kfac = np.where(kind == _K_CONV_SP, (cin / (cin + s0)) / (rc / (rc + s0)), kfac)
    items = t.items if t.items is not None else np.ones_like(t.m)
    rows = t.m / items  # a batched product's GEMMs are each M / items rows
    gemm_shape = (kfac * (t.n / (t.n + n0)) * (rows / (rows + m0)) * tile
                  / ((rn / (rn + n0)) * (rm / (rm + m0))))
    dw_shape = (t.n / (t.n + c0)) * (t.m / (t.m + m0)) * tile / ((rn / (rn + c0)) * (rm / (rm + m0)))
    shape = np.where(is_dw, dw_shape, np.where(is_mac, gemm_shape, 1.0))
    # non-MAC kernels are rated against the fp32 figure (their int8 speed is in eff[group]["int8"])
    rate_base = np.where(is_mac, S[prec], S[0])
    rate = rate_base * eff[kind, prec] * shape * tf
    move = np.isin(kind, _MOVE_KINDS)
    compute = np.where(move, 0.0, t.flops / np.maximum(rate, 1e-9))
    bw_eff = np.where((kind == _K_DATA) & (not data_fitted), c.data_bw_efficiency,
                      np.where(move, eff[kind, prec], c.bw_efficiency))
    bw_eff = np.where(is_dw, c.dw_bw_efficiency, bw_eff)
    # working sets beyond the cache stream slower: x (1 + penalty x bytes / (bytes + cache))
    cache = max(c.cache_kb, 1.0) * 1024.0
    memory = t.bytes / (dev.bandwidth_gbps * 1e9 * bw_eff * tf) * (1.0 + c.cache_penalty * t.bytes / (t.bytes + cache))
    bo = c.bmm_item_overhead_us
    item_us = np.array([bo.get("fp32", 0.0), bo.get("fp16", bo.get("fp32", 0.0)), bo.get("int8", 0.0)])[prec]
    ov_us = c.op_overhead_us + np.where(is_mac, c.mac_overhead_us + (items - 1.0) * item_us, 0.0)
    if c.dw_group_overhead_us:  # a plain grouped depthwise convolution pays per channel group
        ov_us = ov_us + np.where((kind == _K_DW_FB) & (t.prec != 2), t.n * c.dw_group_overhead_us, 0.0)
    ov = ov_us * 1e-6 * (c.ref_ghz / dev.ghz) * (1 + (n_thr - 1) * c.thread_overhead)
    total = np.where(t.run, _smooth_max(compute, memory) + ov, 0.0)
    if c.weight_cache_mb is not None and c.weight_cache_penalty and t.op_weights is not None:
        # a graph's weights beyond the cache come from memory at every inference, on top of the op's work (a chain of
        # 12 distinct 384 -> 1536 -> 384 blocks, 57 MB, ran 11-18% slower per block than one block repeated, 4.7 MB,
        # on this host): the share of the weights beyond it, streamed at the bandwidth / weight_cache_penalty.
        # Small per MAC for convolutions (each weight serves many pixels), large for token matrices
        w_graph = t.graph_weights if t.graph_weights is not None else float(t.op_weights.sum())
        beyond = np.maximum(0.0, 1.0 - c.weight_cache_mb * 2**20 / np.maximum(w_graph, 1.0))
        total = total + np.where(t.run, c.weight_cache_penalty * beyond * t.op_weights
                                 / (dev.bandwidth_gbps * 1e9 * tf), 0.0)
    return total, np.where(t.run, compute, 0.0), np.where(t.run, memory, 0.0)


def fixed_time(t: OpTable, c: Constants, dev: Device) -> float:
    """Seconds per inference outside the ops: the invoke itself and handing inputs/outputs over."""
    io = c.io_ns_per_element
    e = t.io_elems
    io_s = ((e["in"] + e["out"]) * io.get("fp32", 0.0) + (e["in_int8"] + e["out_int8"]) * io.get("int8", 0.0)) * 1e-9
    n_int8 = float(e["in_int8"] > 0) + float(e["out_int8"] > 0)
    io_s += n_int8 * c.io_fixed_us.get("int8", 0.0) * 1e-6
    return c.invoke_overhead_us * 1e-6 * (c.ref_ghz / dev.ghz) + io_s


def memory_mb(t: OpTable, c: Constants) -> tuple[float, float, float, float]:
    """(peak MB, weights MB, activations MB, runtime overhead MB) as the runtime holds them."""
    mem = c.memory
    wfs = mem.get("weight_factor", {})
    wf = wfs.get(t.weight_precision, wfs.get("fp32", 1.0))
    cwf = mem.get("conv_weight_factor", {}).get(t.weight_precision, wf)
    mb = 1 / 2**20
    conv_w = min(t.conv_weight_bytes, t.weight_bytes)
    w = ((t.weight_bytes - conv_w) * wf + conv_w * cwf) * mb
    a = t.activation_bytes * float(mem.get("activation_factor", 1.0)) * mb
    # the runtime's own share: a base, and per kernel (onnxruntime on this host: ~15 KB per node of its optimized
    # graph, which made int8 QDQ graphs with hundreds of nodes 20-35% larger than predicted)
    base = float(mem.get("base_mb", 0.0)) + t.kernels * float(mem.get("node_kb", 0.0)) / 1024.0
    return base + w + a, w, a, base


@dataclass
class OpPrediction:
    name: str
    op_type: str
    op_class: str
    precision: str
    flops: int
    bytes_moved: int
    time_ms: float
    bound: str  # compute | memory | overhead | fused | free


@dataclass
class Prediction:
    device: str
    runtime: str
    precision: str
    threads: int
    latency_ms: float
    peak_memory_mb: float
    weights_mb: float
    activations_mb: float
    runtime_overhead_mb: float
    method: str
    version: str = PREDICTOR_VERSION
    ops: list[OpPrediction] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: op types the predictor has no cost model for (costed with the data-movement fallback)
    unknown_ops: list[str] = field(default_factory=list)
    #: fixed cost per inference (invoke + input/output hand-over), ms
    fixed_ms: float = 0.0
    constants_source: str = ""
    #: measured error of this predictor version (from the model file's validation block), when known
    validation: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "device": self.device, "runtime": self.runtime, "precision": self.precision, "threads": self.threads,
            "latency_ms": self.latency_ms, "peak_memory_mb": self.peak_memory_mb, "weights_mb": self.weights_mb,
            "activations_mb": self.activations_mb, "runtime_overhead_mb": self.runtime_overhead_mb,
            "fixed_ms": self.fixed_ms, "method": self.method, "version": self.version, "notes": self.notes,
            "unknown_ops": self.unknown_ops, "constants_source": self.constants_source,
            "validation": self.validation,
        }


def _validation_phrase(c: Constants) -> str:
    v = c.validation or {}
    host = v.get("host", {}).get(c.runtime) or v.get("host", {}).get("all")
    bits = []
    if host:
        bits.append(f"measured host error ({host.get('n', '?')} {c.runtime} rows): median |error| "
                    f"{host.get('median_abs_error_pct', float('nan')):.1f}%, "
                    f"{host.get('within_20pct', float('nan')):.0f}% within +-20%")
    phones = v.get("phones", {})
    if c.family.startswith("arm64") and phones:
        maes = ", ".join(f"{k} {d.get('median_abs_error_pct', float('nan')):.0f}%" for k, d in sorted(phones.items()))
        n = max((d.get("n") or 0) for d in phones.values())
        bits.append(f"published phone rows ({n} held-out models per phone and precision) median |error|: {maes}")
    return "; ".join(bits) if bits else "not yet validated"


def predict_from_cost(
    cost: CostReport,
    profile: DeviceProfile,
    *,
    runtime: str,
    precision: str | None = None,
    threads: int | None = None,
    constants: Constants | None = None,
) -> Prediction:
    """Estimate latency and memory of a graph (its cost report) on a device.

    ``precision`` overrides the arithmetic precision of the graph's ops (to ask "what if this fp32 graph ran
    in int8?"); by default each op's own precision in the graph is used.
    """
    threads = threads or profile.cpu.threads
    c = constants or resolve(profile, runtime)
    dev = Device.from_profile(profile, runtime)
    table = build_table(cost, runtime, precision, layouts=c.family == "x86_64")
    total, comp, mem = op_times(table, c, dev, threads)
    fixed = fixed_time(table, c, dev)
    peak, w_mb, a_mb, base = memory_mb(table, c)
    notes = list(c.notes)
    if table.unknown:
        msg = (f"no cost model for op(s) {', '.join(table.unknown)}: estimated as data movement "
               f"(bytes / bandwidth + per-op overhead)")
        notes.append(msg)
        log.warning("adaptc.predict: %s", msg)
    if precision == "fp16" and not (profile.compute.fp16_gflops or profile.compute.fp16_peak_gflops):
        notes.append("no fp16 figure in the profile: fp16 arithmetic estimated at the fp32 throughput")
    if precision == "int8" and not (profile.compute.int8_gops or profile.compute.int8_peak_gops):
        notes.append("no int8 figure in the profile: int8 arithmetic estimated at the fp32 throughput")
    if profile.compute.fp32_gflops is None:
        notes.append(f"spec-sheet profile: sustained throughput = peak x {c.family} peak-to-sustained ratio "
                     f"({', '.join(f'{k} {v:.2f}' for k, v in sorted(c.peak_to_sustained.items()))})")
    if precision is not None:
        notes.append(f"what-if estimate: ops costed at {precision} regardless of the graph's own precision")
    ops: list[OpPrediction] = []
    for i in range(len(table.kind)):
        if not table.run[i]:
            bound = "fused" if "fused" in table.reason[i] else "free"
        elif total[i] <= 0:
            bound = "free"
        else:
            ov = total[i] - max(comp[i], mem[i])
            bound = "compute" if comp[i] >= mem[i] and comp[i] > ov else ("memory" if mem[i] > ov else "overhead")
        cls = cost.ops[i].op_class if i < len(cost.ops) else ("data" if table.op_types[i] == "Transpose" else "quant")
        ops.append(OpPrediction(table.names[i], table.op_types[i], cls, _PRECISIONS[int(table.prec[i])],
                                int(table.flops[i]), int(table.bytes[i]), float(total[i] * 1e3), bound))
    latency = float(total.sum() + fixed) * 1e3
    method = (f"estimated by adaptc predictor {PREDICTOR_VERSION} ({runtime}, {c.family} constants: {c.source}): "
              f"per-op roofline smooth-max(FLOPs / (sustained throughput x fitted op-class efficiency x GEMM-shape "
              f"factor), bytes / bandwidth) + {c.op_overhead_us * c.ref_ghz / dev.ghz:.2f} us per op + "
              f"{fixed * 1e6:.1f} us per inference; memory = {base:.1f} MB runtime + weight copies + activation "
              f"arena (liveness); {_validation_phrase(c)}")
    return Prediction(
        device=profile.name, runtime=runtime, precision=precision or "as-graph", threads=threads,
        latency_ms=latency, peak_memory_mb=float(peak), weights_mb=float(w_mb), activations_mb=float(a_mb),
        runtime_overhead_mb=float(base), method=method, ops=ops, notes=notes, unknown_ops=table.unknown,
        fixed_ms=float(fixed * 1e3), constants_source=c.source, validation=dict(c.validation),
    )


__all__ = ["PREDICTOR_VERSION", "OpPrediction", "Prediction", "predict_from_cost", "build_table", "op_times",
           "fixed_time", "memory_mb", "Device", "OpTable", "kernel_kind"]
