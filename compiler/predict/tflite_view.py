"""An ONNX graph as TFLite's converter would make it: one estimate for a network whatever the entry point.

A module is estimated through its ONNX export (the search's cost filter estimates candidates before any TFLite file
exists), a user may hand in the ONNX file or the TFLite file: for the ``tflite`` runtime (and CoreML, costed with
its constants) the three must agree. The converter (litert-torch, as the TFLite MLIR converter before it) changes
three things that matter for latency, and this module reads them off the ONNX graph:

- **fused activations**: a ReLU, ReLU6 (``Clip(0, 6)``) or ReLU-N1-to-1 right after a convolution, a fully
  connected layer, an elementwise add / sub / mul / div, a pooling or a concatenation becomes the op's
  ``fused_activation_function``: no pass of its own; a batch norm or a per-channel affine after a convolution or
  a fully connected layer is folded into its weights and bias;
- **explicit padding**: TFLite's convolutions and poolings pad only as ``SAME`` (the extra row at the end) or
  ``VALID``; PyTorch's symmetric padding of a stride-2 convolution on an even input (``pad=1``), or a 7x7 stem's
  ``pad=3``, becomes a ``PAD`` op that copies the padded tensor;
- **layout**: TFLite runs channels-last. A 4-D image input is transposed on entry, and a channels-last tensor is
  transposed back wherever an op depends on the axis order (a reshape or flatten, a reduction over given axes, a
  matrix product, a softmax, a gather): a ``TRANSPOSE`` each.

Written by hand: no library models a converter's rewrites without running the converter, and running it per
candidate (tens of seconds each) is what the estimate exists to avoid. Checked against litert-torch's files of
MobileNetV2-, ResNet- and transformer-shaped networks (``tests/test_predict.py``: the three entry points agree
within 5%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..analysis.onnx_graph import CostReport
from .kinds import BYTES, K_ACT, K_BCAST, K_BIN, K_PAD, K_RED, K_TRANS

#: ONNX ops that become TFLite ops with a fused-activation slot
_ACT_HOSTS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool", "Concat"}
#: the multiply-accumulate ops a batch norm or a constant affine is folded into
_FOLD_HOSTS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
#: ops that work the same in either layout (their output keeps their input's layout)
_LAYOUT_FREE = {
    "Add", "Sub", "Mul", "Div", "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSwish",
    "HardSigmoid", "BatchNormalization", "Concat", "Pad", "Resize", "Upsample", "Neg", "Abs", "Exp", "Sqrt",
    "Pow", "Max", "Min", "Erf", "Gelu", "Dropout", "Identity", "Cast", "QuantizeLinear", "DequantizeLinear",
}  # fmt: skip
#: ops that make a channels-last tensor (TFLite's own layout)
_LAYOUT_MAKERS = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "QLinearConv",
    "ConvInteger", "DepthToSpace", "SpaceToDepth",
}  # fmt: skip
#: ops that read their input in the axis order ONNX gives it: a channels-last tensor is transposed back first
_LAYOUT_SENSITIVE = {
    "Reshape", "Flatten", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
    "Transpose", "MatMul", "Gemm", "Softmax", "LogSoftmax", "Gather", "Slice", "Split", "Squeeze", "ArgMax",
}  # fmt: skip


@dataclass
class Added:
    """An op the TFLite file has that the ONNX graph has not."""

    name: str
    op_type: str
    kind: int
    flops: float
    nbytes: float
    #: the ONNX op it comes with (its precision is the added op's)
    at: int


@dataclass
class TfliteView:
    """What the converter changes: ops that do not run (index -> why), and ops it adds."""

    gone: dict[int, str] = field(default_factory=dict)
    extra: list[Added] = field(default_factory=list)


def _layer_norm(i: int, o: Any) -> list[Added]:
    """litert-torch's lowering of a layer norm over the last axis (as its files show it): mean, squared
    difference, mean, four ops on the per-row statistics, then a multiply and an add over the whole tensor."""
    shape = o.output_shape or []
    if not shape:
        return []
    width = max(1, int(shape[-1]))
    n = float(math.prod(shape))
    rows = n / width
    b = BYTES.get(o.precision, 4)
    name = f"{o.name} (layer norm lowered by the TFLite converter)"
    whole = [("MEAN", K_RED, n, b * (n + rows)), ("SQUARED_DIFFERENCE", K_BCAST, 2 * n, b * (2 * n + rows)),
             ("MEAN", K_RED, n, b * (n + rows))]  # fmt: skip
    stats = [(t, K_ACT if t == "RSQRT" else K_BIN, rows, 3 * b * rows) for t in ("ADD", "RSQRT", "MUL", "SUB")]
    tail = [("MUL", K_BCAST, n, b * (2 * n + width)), ("ADD", K_BCAST, n, b * (2 * n + width))]
    return [Added(name, t, k, f, nb, i) for t, k, f, nb in whole + stats + tail]


def _moves_only_unit_axes(attrs: dict[str, Any] | None) -> bool:
    """A transpose whose axes of size > 1 keep their order: a reshape, which the converter makes one (free)."""
    if not attrs or not attrs.get("perm") or len(attrs.get("in_shape") or []) != len(attrs["perm"]):
        return False
    kept = [a for a in attrs["perm"] if attrs["in_shape"][a] != 1]
    return kept == sorted(kept)


def _is_fused_clip(attrs: dict[str, Any] | None) -> bool:
    """A Clip that TFLite expresses as a fused activation: ReLU (0, inf), ReLU6 (0, 6), ReLU-N1-to-1 (-1, 1)."""
    if not attrs:
        return False
    lo, hi = attrs.get("min"), attrs.get("max")
    return (lo, hi) in ((0.0, 6.0), (-1.0, 1.0)) or (lo == 0.0 and (hi is None or math.isinf(hi)))


def _pad_bytes(o: Any) -> float:
    """Bytes a TFLite PAD before this convolution / pooling moves (0: its padding is SAME or VALID)."""
    a = o.attrs
    if not a or a.get("auto_pad") in ("SAME_UPPER", "VALID") or not a.get("kernel"):
        return 0.0
    dims = len(a["in_hw"])
    pads, grow = a["pads"], 1.0
    same_ok, zero = True, True
    for d in range(dims):
        size, k, s, dil = a["in_hw"][d], a["kernel"][d], a["strides"][d], a["dilations"][d]
        begin, end = pads[d], pads[d + dims]
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * dil + 1 - size, 0)
        same_ok &= (begin, end) == (total // 2, total - total // 2)
        zero &= begin == end == 0
        grow *= (size + begin + end) / max(size, 1)
    if same_ok or zero:
        return 0.0
    return float(o.input_bytes) * (1.0 + grow)  # read the tensor, write it padded


def tflite_view(cost: CostReport) -> TfliteView:
    """The converter's rewrites of an ONNX graph (see the module's docstring)."""
    ops = cost.ops
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for i, o in enumerate(ops):
        for t in o.outputs:
            producer[t] = i
        for t in o.inputs:
            consumers.setdefault(t, []).append(i)
    view = TfliteView()
    act_taken: set[int] = set()

    def host_of(i: int) -> int | None:
        """The op an activation / fold at ``i`` merges into: its single input's producer, read by it alone."""
        o = ops[i]
        if len(o.inputs) != 1:
            return None
        src = producer.get(o.inputs[0])
        if src is None or len(consumers.get(o.inputs[0], [])) != 1:
            return None
        while src in view.gone and src is not None:  # a conv -> folded affine -> activation chain
            s = ops[src]
            src = producer.get(s.inputs[0]) if len(s.inputs) == 1 else None
        return src

    for i, o in enumerate(ops):
        if o.op_type in ("Relu", "Clip") and (o.op_type == "Relu" or _is_fused_clip(o.attrs)):
            h = host_of(i)
            # (a product of two activations, TFLite's BATCH_MATMUL, has no activation slot)
            if (
                h is not None
                and h not in act_taken
                and ops[h].op_type in _ACT_HOSTS
                and (ops[h].op_type != "MatMul" or len(ops[h].inputs) == 1)
            ):
                view.gone[i] = f"fused into {ops[h].op_type} as its activation by the TFLite converter"
                act_taken.add(h)
        elif o.op_type in ("BatchNormalization", "Add", "Sub", "Mul") and len(o.inputs) == 1:
            h = host_of(i)
            if h is not None and ops[h].op_type in _FOLD_HOSTS and h not in act_taken and len(ops[h].inputs) == 1:
                view.gone[i] = f"folded into {ops[h].op_type}'s weights and bias by the TFLite converter"
        if "Pool" in o.op_type or o.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            if nbytes := _pad_bytes(o):
                view.extra.append(Added(f"PAD before {o.name} (TFLite pads only SAME or VALID)", "PAD", K_PAD, 0.0,
                                        nbytes, i))  # fmt: skip
        elif o.op_type == "LayerNormalization" and (added := _layer_norm(i, o)):
            view.gone[i] = "lowered to mean / squared difference / rsqrt / mul / add by the TFLite converter"
            view.extra += added
        elif o.op_type == "Transpose" and _moves_only_unit_axes(o.attrs):
            view.gone[i] = "moves only axes of size 1: a reshape in the TFLite file (free)"
    # layout: tensors in channels-last, forward from the ops that make them
    last: set[str] = set()
    entered: set[str] = set()
    for i, o in enumerate(ops):
        four_d = bool(o.output_shape) and len(o.output_shape or []) == 4
        if o.op_type in _LAYOUT_MAKERS:
            for t in o.inputs[:1]:
                if t not in producer and t not in entered:  # a graph input: transposed on entry
                    entered.add(t)
                    view.extra.append(
                        Added(f"TRANSPOSE of input {t} to channels-last", "TRANSPOSE", K_TRANS, 0.0,
                              2.0 * o.input_bytes, i)
                    )  # fmt: skip
        elif o.op_type in _LAYOUT_SENSITIVE:
            for t in o.inputs:
                if t in last:
                    src = ops[producer[t]]
                    view.extra.append(
                        Added(f"TRANSPOSE of {t} back to channels-first", "TRANSPOSE", K_TRANS, 0.0,
                              2.0 * float(src.output_bytes), i)
                    )  # fmt: skip
                    last.discard(t)  # one transpose serves every reader
        if four_d and (o.op_type in _LAYOUT_MAKERS or (o.op_type in _LAYOUT_FREE and any(t in last for t in o.inputs))):
            last.update(o.outputs)
    return view


__all__ = ["Added", "TfliteView", "tflite_view"]
