"""What a cost analysis reports (:class:`CostReport` of :class:`OpCost` rows), whichever graph format it read,
and the op tables it counts with: FLOPs per element, multiply-accumulate, pooling and quantization ops, and
:func:`op_class` (the class the predictor picks an efficiency factor by). Op names are ONNX's; the TFLite
analysis (:mod:`.tflite_graph`) maps its ops onto them. :func:`apply_model_flops` turns the FLOPs each op's kernel
computes into the model's FLOPs (the convention of :mod:`adaptc.analysis`), the same pass for both formats.
"""

from __future__ import annotations

from collections import Counter
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


#: Roles of an op under the model-FLOPs convention (:func:`apply_model_flops`): format plumbing (quantize,
#: dequantize, cast, and arithmetic on quantization parameters only), a multiply-accumulate layer with weights, a
#: per-channel affine op (bias add, batch-norm or scale multiply: one activation and a scalar or per-channel
#: constant) and a clamp (ReLU, ReLU6, Clip). Ops without a role count what their kernel computes.
PLUMBING, LAYER, AFFINE, CLAMP = "plumbing", "layer", "affine", "clamp"
#: ONNX op types of each role (the affine ones only with one activation and a per-channel constant)
ONNX_PLUMBING = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast", "CastLike", "Identity"}
ONNX_AFFINE = {"Add", "Sub", "Mul", "Div", "BatchNormalization"}
ONNX_CLAMPS = {"Relu", "Clip"}
#: the same roles for TFLite builtin ops (layers: those whose weights, input 1, are constant)
TFLITE_PLUMBING = {"QUANTIZE", "DEQUANTIZE", "CAST"}
TFLITE_LAYERS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "TRANSPOSE_CONV",
    "CONV_3D",
    "CONV_3D_TRANSPOSE",
    "FULLY_CONNECTED",
    "BATCH_MATMUL",
}
TFLITE_AFFINE = {"ADD", "SUB", "MUL", "DIV"}
TFLITE_CLAMPS = {"RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1"}
#: model FLOPs per output element of a TFLite ``fused_activation_function``: TANH 4 and SIGN_BIT 1 (as the op
#: would count on its own); the clamps (RELU, RELU_N1_TO_1, RELU6) 0, as a clamp after a layer counts anywhere
FUSED_ACTIVATION_FLOPS = {4: 4, 5: 1}


def is_channel_vector(shape: list[int] | None) -> bool:
    """A scalar or a vector along one axis: a bias, a batch-norm scale, a per-channel quantization scale."""
    return shape is not None and sum(1 for d in shape if d != 1) <= 1


def tflite_role(
    op_type: str, ins: list[int], data_in: list[int], constant: set[int], shape: Any
) -> tuple[str, str] | None:
    """The role of a TFLite op (inputs ``ins``, of which ``data_in`` are activations; ``shape(tensor)``)."""
    act = str(data_in[0]) if len(data_in) == 1 else ""
    if op_type in TFLITE_PLUMBING:
        return PLUMBING, act
    if op_type in TFLITE_LAYERS and len(ins) > 1 and ins[1] in constant:
        return LAYER, ""
    others = [i for i in ins if i >= 0 and i not in data_in]
    if op_type in TFLITE_AFFINE and act and others and all(is_channel_vector(shape(i)) for i in others):
        return AFFINE, act
    return (CLAMP, str(data_in[0])) if op_type in TFLITE_CLAMPS and data_in else None


def apply_model_flops(ops: list[OpCost], roles: list[tuple[str, str] | None], extra: list[int] | None = None) -> None:
    """Count each op's ``flops`` by the model-FLOPs convention of :mod:`adaptc.analysis`, keeping what its kernel
    computes in ``kernel_flops``. ``roles[i]`` is None or (role, the activation input it applies to); ops are in
    execution order. Plumbing counts 0; an affine op on the output of a layer (or of such an affine op) counts 0:
    converters fold it into the layer's weights and bias; a clamp on the output of any op counts 0: kernels
    apply it as they store that output (TFLite's fused activations, the saturating range of an int8 output, which
    is why onnxruntime's quantizer deletes it). "On the output" means through plumbing only, with every tensor on
    the way read by that one op, as a converter needs to fuse it. ``extra[i]`` model FLOPs are added to op i (a
    TFLite fused TANH)."""
    producer: dict[str, int] = {}
    readers: dict[str, int] = {}
    for i, o in enumerate(ops):
        for t in o.outputs:
            producer.setdefault(t, i)
        for t in o.inputs:
            readers[t] = readers.get(t, 0) + 1

    def source(t: str) -> int | None:
        for _ in range(8):
            i = producer.get(t)
            if i is None or readers.get(t, 0) != 1:
                return None
            role = roles[i]
            if role is None or role[0] != PLUMBING:
                return i
            t = role[1]
        return None

    folded: set[int] = set()
    for i, o in enumerate(ops):
        if o.kernel_flops is None:
            o.kernel_flops = o.flops
        role = roles[i]
        if role is None:
            continue
        kind, x = role
        src = source(x) if kind in (AFFINE, CLAMP) else None
        if kind == AFFINE and src is not None and (src in folded or (roles[src] or ("",))[0] == LAYER):
            folded.add(i)
        if kind == PLUMBING or i in folded or (kind == CLAMP and src is not None):
            o.flops = 0
    for o, e in zip(ops, extra or []):
        o.flops += e


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
    #: FLOPs the op's kernel computes as the graph stands (a quantize / dequantize, a cast, a bias add or a clamp
    #: after a layer count here, not in ``flops``): what the predictor rates each op by. None: equal to ``flops``
    kernel_flops: int | None = None
    #: what a converter to another runtime needs of an ONNX op (None elsewhere): a convolution's or pooling's
    #: geometry (``pads``, ``strides``, ``kernel``, ``dilations``, ``in_hw``: its input's spatial size), a Clip's
    #: bounds (``min``, ``max``), a Transpose's ``perm`` and ``in_shape``. The predictor reads it to see the graph
    #: as TFLite would make it (a PAD op where the padding is not TFLite's SAME or VALID, a ReLU6 fused into its
    #: convolution, a transpose that only moves axes of size 1 gone)
    attrs: dict[str, Any] | None = None

    @property
    def bytes_moved(self) -> int:
        return self.input_bytes + self.output_bytes + self.weight_bytes

    @property
    def work_flops(self) -> int:
        """FLOPs the op's kernel computes (``kernel_flops``, or ``flops`` where the analysis did not set it)."""
        return self.flops if self.kernel_flops is None else self.kernel_flops


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

    @classmethod
    def of_ops(cls, ops: list[OpCost], params: int, **rest: Any) -> CostReport:
        """A graph's report from its ops: MACs, FLOPs and MACs per precision summed over them, the weight bytes at
        each precision from ``params``; ``rest``: the other fields (bytes, peak, op counts, format, ...)."""
        prec_macs: Counter[str] = Counter()
        for o in ops:
            if o.macs:
                prec_macs[o.precision] += o.macs
        return cls(
            ops=ops,
            macs=int(sum(o.macs for o in ops)),
            flops=int(sum(o.flops for o in ops)),
            params=int(params),
            weight_bytes_at={"fp32": params * 4, "fp16": params * 2, "int8": params},
            precision_macs=dict(prec_macs),
            **rest,
        )

    def to_record(self) -> dict[str, Any]:
        """What a build's state store keeps of it (:meth:`from_record` reads it back)."""
        return {**self.summary(), "ops": [o.__dict__ for o in self.ops], "unknown_shapes": self.unknown_shapes}

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> CostReport:
        return cls(**{k: v for k, v in d.items() if k != "ops"}, ops=[OpCost(**o) for o in d["ops"]])

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
