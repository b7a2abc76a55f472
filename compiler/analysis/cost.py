"""What a cost analysis reports (:class:`CostReport` of :class:`OpCost` rows), whichever graph format it read,
and the op tables it counts with: FLOPs per element, multiply-accumulate, pooling and quantization ops, and
:func:`op_class` (the class the predictor picks an efficiency factor by). Op names are ONNX's; the TFLite
analysis (:mod:`.tflite_graph`) maps its ops onto them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: FLOPs per output element for ops that are not multiply-accumulate layers.
_ELEMENTWISE_FLOPS: dict[str, float] = {
    "Add": 1,
    "Sub": 1,
    "Mul": 1,
    "Div": 1,
    "Pow": 1,
    "Sqrt": 1,
    "Reciprocal": 1,
    "Neg": 1,
    "Abs": 1,
    "Relu": 1,
    "LeakyRelu": 2,
    "PRelu": 2,
    "Clip": 1,
    "Max": 1,
    "Min": 1,
    "Where": 1,
    "Sigmoid": 4,
    "Tanh": 4,
    "Exp": 1,
    "Log": 1,
    "Erf": 4,
    "Gelu": 8,
    "HardSigmoid": 3,
    "HardSwish": 4,
    "Softmax": 5,
    "LogSoftmax": 5,
    "LayerNormalization": 8,
    "BatchNormalization": 2,
    "InstanceNormalization": 8,
    "QuantizeLinear": 2,
    "DequantizeLinear": 2,
    "Cast": 1,
    "Equal": 1,
    "Greater": 1,
    "Less": 1,
    "Not": 1,
    "And": 1,
    "Or": 1,
    "Mish": 6,
    "Softplus": 3,
    "Elu": 3,
}
_MAC_OPS = {
    "Conv",
    "ConvInteger",
    "QLinearConv",
    "ConvTranspose",
    "MatMul",
    "MatMulInteger",
    "QLinearMatMul",
    "Gemm",
    "MatMulNBits",
}
_POOL_OPS = {"MaxPool", "AveragePool", "LpPool"}
_GLOBAL_POOL_OPS = {
    "GlobalAveragePool",
    "GlobalMaxPool",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceL2",
    "ReduceProd",
    "ReduceSumSquare",
}
_QPARAM_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


#: The op class each op belongs to (used by the predictor to pick an efficiency factor).
def op_class(op_type: str, attrs: dict[str, Any] | None = None, in_channels: int | None = None) -> str:
    if op_type in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose"):
        group = (attrs or {}).get("group", 1)
        if group > 1 and in_channels is not None and group == in_channels:
            return "depthwise_conv"
        return "conv"
    if op_type in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "MatMulNBits"):
        return "matmul"
    if op_type in _POOL_OPS or op_type in _GLOBAL_POOL_OPS:
        return "pool"
    if op_type in _QPARAM_OPS:
        return "quant"
    if op_type in _ELEMENTWISE_FLOPS:
        return "elementwise"
    return "data"


@dataclass
class OpCost:
    name: str
    op_type: str
    op_class: str
    precision: str  # fp32 | fp16 | int8: the arithmetic precision of the op
    macs: int
    flops: int
    params: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    output_shape: list[int] | None
    #: a QuantizeLinear/DequantizeLinear pair between int8 kernels, which runtimes fuse into the kernels
    fused: bool = False
    #: names of the activation tensors the op reads (weights excluded) and writes: the predictor uses them to
    #: find ops a runtime fuses (an activation right after a convolution)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    #: (M, K, N) of the matrix product a multiply-accumulate op amounts to: a convolution is M = output pixels
    #: (times batch), K = input channels per group x kernel area, N = output channels; a depthwise convolution
    #: M = output pixels, K = kernel area, N = channels; None for other ops
    gemm: tuple[int, int, int] | None = None
    #: kernel height x width of a convolution (1 for a 1x1 convolution and for every other op): runtimes run
    #: k x k convolutions with other kernels (indirect / im2col GEMM) than 1x1 ones (plain GEMM)
    kernel_area: int = 1
    #: dynamic-range int8: int8 weights, float activations that the kernel quantizes at run time (a TFLite
    #: FULLY_CONNECTED with int8 weights on a float input; an ONNX MatMulInteger fed by DynamicQuantizeLinear)
    dynamic: bool = False

    @property
    def bytes_moved(self) -> int:
        return self.input_bytes + self.output_bytes + self.weight_bytes


@dataclass
class CostReport:
    ops: list[OpCost]
    macs: int
    flops: int
    params: int
    #: bytes the weights take at each precision (what the model would weigh stored as fp32 / fp16 / int8)
    weight_bytes_at: dict[str, int]
    #: bytes of the weights as actually stored in this graph, and of the quantization parameters
    stored_weight_bytes: int
    quant_param_bytes: int
    peak_activation_bytes: int
    peak_at: str | None
    input_bytes: int
    output_bytes: int
    op_counts: dict[str, int]
    precision_macs: dict[str, int]
    unknown_shapes: list[str] = field(default_factory=list)
    #: "onnx" or "tflite": the graph this was computed from
    format: str = "onnx"
    #: element precision of the (first) graph input and output: fp32 | fp16 | int8
    input_precision: str = "fp32"
    output_precision: str = "fp32"
    #: the file this was computed from (None for in-memory graphs)
    source: str | None = None

    @property
    def mflops(self) -> float:
        return self.flops / 1e6

    def summary(self) -> dict[str, Any]:
        return {
            "macs": self.macs,
            "flops": self.flops,
            "params": self.params,
            "weight_bytes_at": self.weight_bytes_at,
            "stored_weight_bytes": self.stored_weight_bytes,
            "quant_param_bytes": self.quant_param_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "peak_at": self.peak_at,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "op_counts": self.op_counts,
            "precision_macs": self.precision_macs,
        }
