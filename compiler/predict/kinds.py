"""Op kinds of the predictor: which kernel (and so which fitted efficiency) each op of a graph runs as.

An op's kind is its multiply-accumulate class (conv, depthwise_conv, matmul), the kernel group of a non-MAC op
(binary, activation, softmax, ...), or data movement; :func:`adaptc.predict.table.build_table` refines it per
runtime (onnxruntime's fallback convolutions, SkipLayerNormalization, QGemm, dynamic-range int8, ...).
"""

from __future__ import annotations

from ..core.schemes import PRECISIONS
from ..profiles.schema import PREDICTOR_CLASSES

# precisions in the order of the op table's precision codes (0 fp32, 1 fp16, 2 int8)
assert PRECISIONS == ("fp32", "fp16", "int8")
BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
MAC_CLASSES = ("conv", "depthwise_conv", "matmul")
GROUPS = ("binary", "activation", "hardswish", "softmax", "reduce", "quant", "transpose", "pad")
# kind codes of the op table
K_CONV, K_DW, K_MM, K_BIN, K_ACT, K_HSW, K_SOFT, K_RED, K_QUANT, K_TRANS, K_PAD, K_DATA = range(12)
#: float convolutions onnxruntime keeps out of its NCHWc layout on x86 (ort_view.layout_view): other kernels
K_CONV_FB, K_DW_FB = 12, 13
#: a LayerNormalization onnxruntime fuses with the residual Add before it (SkipLayerNormalization: on this
#: host's onnxruntime 1.32 about 8x slower per element than a plain LayerNormalization)
K_SKIPLN = 14
#: a k x k convolution (k > 1): runtimes use other kernels for them (indirect / im2col GEMM) than for 1x1 ones
K_CONV_SP = 15
#: a dense convolution that onnxruntime keeps float inside a QDQ graph (it did not fuse it into a QLinearConv):
#: its weights are dequantized on every run, so it cannot use pre-packed weights, and it runs outside the NCHWc
#: layout. Measured on this host (per-node profile of an int8 ResNet): 2-3x slower per MAC than a float
#: convolution of the fp32 graph
K_CONV_DQ = 16
#: a linear layer (Gemm) that onnxruntime runs as its int8 ``QGemm`` kernel: measured on this host, 1.4-1.6x the time
#: of ``QLinearMatMul`` on the same shapes (a MatMul + bias Add pair of a QDQ graph runs as the latter)
K_QGEMM = 17
#: a binary op whose second operand is broadcast over the first (a squeeze-and-excitation scale, a layer norm's
#: per-row statistics): runtimes run these through other loops than same-shape ones (per-node profile of an
#: onnxruntime MobileNetV3: its squeeze-and-excitation multiplies took ~8x the same-shape figure; the
#: squeeze-and-excitation micro-benchmarks fit it near the plain figure on this host)
K_BCAST = 18
#: int8 weights of a float MatMul that onnxruntime dequantizes on every run (it keeps a MatMul float when its
#: dequantized input also feeds other ops, e.g. q / k / v projections of one layer-norm output): per-channel on the
#: last axis, ~2.4 ns per element on this host (per-node profile of a BERT encoder: 160 us per 256 x 256 weight)
K_WDQ = 19
#: dynamic-range int8 (int8 weights, float activations quantized at run time): other kernels than static int8 ones
#: (XNNPACK's qd8-f32-qc8w GEMM, onnxruntime's DynamicQuantizeMatMul / MatMulIntegerToFloat): float output, no
#: requantization, and a quantization of the input (per row: min / max, scale, convert) before each product, which
#: is its own op here (``K_DYNQ``; onnxruntime's DynamicQuantizeLinear, synthesized for TFLite): a pass over float
#: elements, costed like a float binary op (no efficiency of its own: fitted apart, its cost and the product's
#: traded places between calibrations, 1.25 in one and 0.056 in the next). Host
#: measurements, 2026-11-29: costed as static int8, TFLite dynamic encoders were -28..+27% off (small ones slower
#: than static int8, large ones faster), onnxruntime ones -8..-12%
K_MM_DYN, K_DYNQ = 20, 21
#: onnxruntime's copies between the plain and the NCHWc layout (ReorderInput / ReorderOutput): contiguous channel
#: blocks, several times faster per byte than a transpose that moves small strided pieces (an attention head split:
#: [1, 128, 12, 32] -> [1, 12, 128, 32], ~20 us per 196 KB here); one efficiency for both fitted neither
K_REORDER = 22
#: the kinds' names by code: the profile schema's op classes (a profile's efficiencies are keyed by them)
KIND_NAMES = PREDICTOR_CLASSES
#: a kind without its own fitted efficiency uses that of another
FALLBACK_OF = {
    "conv_fallback": "conv",
    "depthwise_conv_fallback": "depthwise_conv",
    "skip_layernorm": "softmax",
    "conv_spatial": "conv",
    "conv_dequantized": "conv",
    "qgemm": "matmul",
    "binary_broadcast": "binary",
    "weight_dequant": "quant",
    "matmul_dynamic": "matmul",
    "dynamic_quant": "binary",
    "reorder": "transpose",
}
#: data-movement kinds: their "efficiency" is a fraction of the memory bandwidth (no arithmetic)
MOVE_KINDS = (K_TRANS, K_PAD, K_DATA, K_REORDER)

_ONNX_BINARY = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Where",
    "Equal",
    "Greater",
    "Less",
    "And",
    "Or",
    "Mod",
    "GreaterOrEqual",
    "LessOrEqual",
    "Sum",
    "Mean",
}
_ONNX_ACTIVATION = {
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Erf",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "Softplus",
    "Elu",
    "Selu",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Cast",
    "Floor",
    "Ceil",
    "Round",
    "Not",
    "Sin",
    "Cos",
    "Sign",
    "IsNaN",
    "IsInf",
}
_ONNX_SOFTMAX = {
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "InstanceNormalization",
    "BatchNormalization",
    "GroupNormalization",
    "RMSNormalization",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
}
_ONNX_DATA = {
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "GatherElements",
    "GatherND",
    "Pad",
    "Expand",
    "Tile",
    "Resize",
    "Upsample",
    "DepthToSpace",
    "SpaceToDepth",
    "Range",
    "ConstantOfShape",
    "Size",
    "ScatterND",
    "ScatterElements",
    "TopK",
    "ArgMax",
    "ArgMin",
    "NonZero",
    "OneHot",
    "Trilu",
    "CumSum",
    "EyeLike",
    "ReverseSequence",
    "Compress",
    "MaxUnpool",
}
ONNX_META = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Dropout", "Constant"}
_TFL_BINARY = {
    "ADD",
    "SUB",
    "MUL",
    "DIV",
    "POW",
    "MAXIMUM",
    "MINIMUM",
    "SQUARED_DIFFERENCE",
    "SELECT",
    "SELECT_V2",
    "EQUAL",
    "NOT_EQUAL",
    "GREATER",
    "GREATER_EQUAL",
    "LESS",
    "LESS_EQUAL",
    "LOGICAL_AND",
    "LOGICAL_OR",
    "ADD_N",
    "FLOOR_DIV",
    "FLOOR_MOD",
}
_TFL_SOFTMAX = {"SOFTMAX", "LOG_SOFTMAX", "L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION"}
TFL_META = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE", "RANK"}
#: data ops that select part of their input
SELECT_OPS = {
    "Gather",
    "GatherElements",
    "GatherND",
    "Slice",
    "Split",
    "GATHER",
    "GATHER_ND",
    "SLICE",
    "STRIDED_SLICE",
    "SPLIT",
    "SPLIT_V",
    "UNPACK",
    "EMBEDDING_LOOKUP",
}
#: ops onnxruntime fuses into the convolution / matmul that produces their input
ORT_FUSABLE = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "BatchNormalization", "Add", "Mul"}


def known_onnx() -> set[str]:
    from ..analysis import onnx_graph as og

    return (
        set(og._ELEMENTWISE_FLOPS)
        | og._MAC_OPS
        | og._POOL_OPS
        | og._GLOBAL_POOL_OPS
        | og._QPARAM_OPS
        | _ONNX_DATA
        | ONNX_META
        | _ONNX_BINARY
        | _ONNX_ACTIVATION
        | _ONNX_SOFTMAX
    )


def known_tflite() -> set[str]:
    from ..analysis.tflite_graph import KNOWN_OPS

    return set(KNOWN_OPS) | TFL_META


def kernel_kind(op_type: str, op_class: str) -> int:
    """Kind code of an op: its MAC class, or the kernel group of a non-MAC op, or data movement."""
    if op_class == "conv":
        return K_CONV
    if op_class == "depthwise_conv":
        return K_DW
    if op_class == "matmul":
        return K_MM
    if op_class == "quant":
        return K_QUANT
    if op_class == "pool":
        return K_RED
    if op_type in _ONNX_SOFTMAX or op_type in _TFL_SOFTMAX:
        return K_SOFT
    if op_type in ONNX_META or op_type in TFL_META:
        return K_DATA
    if op_type in ("Transpose", "TRANSPOSE", "DepthToSpace", "SpaceToDepth", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
        return K_TRANS
    if op_type in ("Pad", "PAD", "PADV2", "MIRROR_PAD"):
        return K_PAD
    if op_type in ("HardSwish", "HARD_SWISH", "HardSigmoid"):
        return K_HSW
    if op_type in _ONNX_BINARY or op_type in _TFL_BINARY:
        return K_BIN
    if op_class == "elementwise":
        return K_ACT
    return K_DATA


__all__ = ["PRECISIONS", "BYTES", "MAC_CLASSES", "GROUPS", "KIND_NAMES", "FALLBACK_OF", "MOVE_KINDS", "kernel_kind"]
