"""TFLite writer of the calibration micro-benchmarks: flatbuffers (NHWC) written directly with the schema's object
API, in fp32 or fully integer int8 (int8 activations with per-tensor scales, per-channel int8 weights, int32
biases), as the PT2E / LiteRT converter writes them. No torch, no converter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from .suite import Micro, input_scale, is_image, out_shape, seeded_rng


class _TflBuilder:
    """Minimal TFLite flatbuffer writer (one subgraph) on top of the schema's object API."""

    def __init__(self) -> None:
        from ai_edge_litert import schema_py_generated as s

        self.s = s
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [s.BufferT()]  # buffer 0: the empty sentinel
        self.ops: list[Any] = []
        self.codes: dict[tuple[int, int], int] = {}

    def tensor(
        self,
        shape: list[int],
        ttype: str,
        data: np.ndarray | None = None,
        scale: Any = None,
        zero_point: Any = None,
        qdim: int = 0,
        name: str = "",
    ) -> int:
        s = self.s
        t = s.TensorT()
        t.shape = [int(v) for v in shape]
        t.type = getattr(s.TensorType, ttype)
        t.name = (name or f"t{len(self.tensors)}").encode()
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = [float(v) for v in np.atleast_1d(scale)]
            q.zeroPoint = [int(v) for v in np.atleast_1d(zero_point if zero_point is not None else 0)]
            q.quantizedDimension = qdim
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(
        self,
        name: str,
        inputs: list[int],
        outputs: list[int],
        options: Any = None,
        options_type: str | None = None,
        version: int = 1,
    ) -> None:
        s = self.s
        code = getattr(s.BuiltinOperator, name)
        key = (code, version)
        if key not in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = version
            self.codes[key] = len(self.codes)
        o = s.OperatorT()
        o.opcodeIndex = self.codes[key]
        o.inputs = list(inputs)
        o.outputs = list(outputs)
        if options is not None:
            o.builtinOptionsType = getattr(s.BuiltinOptions, cast(str, options_type))  # callers pass both or neither
            o.builtinOptions = options
        self.ops.append(o)

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers

        s = self.s
        sg = s.SubGraphT()
        sg.tensors, sg.inputs, sg.outputs, sg.operators = self.tensors, inputs, outputs, self.ops
        sg.name = b"main"
        m = s.ModelT()
        m.version = 3
        codes = sorted(self.codes.items(), key=lambda kv: kv[1])
        m.operatorCodes = []
        for (code, version), _ in codes:
            oc = s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
            m.operatorCodes.append(oc)
        m.subgraphs = [sg]
        m.buffers = self.buffers
        m.description = b"adaptc calibration micro-benchmark"
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


_ACT_CODE = {None: 0, "relu": 1, "relu6": 3}


def write_tflite(micro: Micro, path: Path, int8: bool = False) -> Path:
    """A TFLite flatbuffer (NHWC) of a micro-benchmark chain; fully integer when ``int8``."""
    B = _TflBuilder()
    s = B.s
    rng = seeded_rng()
    act_scale, act_zp = 0.05, 0

    state = {"int8": int8}

    def act_tensor(shape: list[int], name: str = "") -> int:
        if state["int8"]:
            return B.tensor(shape, "INT8", scale=act_scale, zero_point=act_zp, name=name)
        return B.tensor(shape, "FLOAT32", name=name)

    def weights(wf: np.ndarray, qdim: int, float_bias: Callable[[int], np.ndarray]) -> tuple[int, int]:
        """Weight and bias tensors of a layer whose weights ``wf`` hold its output channels on axis ``qdim``: int8
        per output channel with a zero int32 bias in int8 graphs, else float with ``float_bias(n)`` (n: the number
        of output channels)."""
        n = wf.shape[qdim]
        if not state["int8"]:
            return B.tensor(list(wf.shape), "FLOAT32", wf), B.tensor([n], "FLOAT32", float_bias(n))
        ws = np.maximum(np.abs(wf).max(axis=tuple(a for a in range(wf.ndim) if a != qdim)), 1e-6) / 127.0
        per_channel = [-1 if a == qdim else 1 for a in range(wf.ndim)]
        wq = np.clip(np.round(wf / ws.reshape(per_channel)), -127, 127).astype(np.int8)
        return (
            B.tensor(list(wq.shape), "INT8", wq, scale=ws, zero_point=np.zeros(n, np.int64), qdim=qdim),
            B.tensor([n], "INT32", np.zeros(n, np.int32), scale=ws * act_scale, zero_point=np.zeros(n, np.int64)),
        )

    image = is_image(micro)
    in_shape = [1, *micro.shape] if image else list(micro.shape)
    x = act_tensor(in_shape, "x")
    first = x
    prev_in = x
    cur = micro.shape
    for i, L in enumerate(micro.layers):
        if L.kind in ("conv", "dwconv"):
            c = cur[2]
            cout = L.out if L.kind == "conv" else c
            kdim = c * L.k * L.k if L.kind == "conv" else L.k * L.k
            wf = (
                rng.standard_normal((cout, L.k, L.k, c) if L.kind == "conv" else (1, L.k, L.k, c)) / math.sqrt(kdim)
            ).astype(np.float32)
            nxt = out_shape(cur, L)
            y = act_tensor([1, *nxt])
            w, bias = weights(
                wf, 0 if L.kind == "conv" else 3, lambda n: (rng.standard_normal(n) * 0.01).astype(np.float32)
            )
            if L.kind == "conv":
                o = s.Conv2DOptionsT()
                o.padding, o.strideW, o.strideH, o.fusedActivationFunction = 0, L.stride, L.stride, _ACT_CODE[L.act]
                B.op("CONV_2D", [x, w, bias], [y], o, "Conv2DOptions", version=3 if state["int8"] else 1)
            else:
                o = s.DepthwiseConv2DOptionsT()
                o.padding, o.strideW, o.strideH, o.depthMultiplier = 0, L.stride, L.stride, 1
                o.fusedActivationFunction = _ACT_CODE[L.act]
                B.op(
                    "DEPTHWISE_CONV_2D",
                    [x, w, bias],
                    [y],
                    o,
                    "DepthwiseConv2DOptions",
                    version=3 if state["int8"] else 1,
                )
            cur = nxt
        elif L.kind == "fc":
            d = cur[-1]
            wf = (rng.standard_normal((L.out, d)) / math.sqrt(d)).astype(np.float32)
            nxt = out_shape(cur, L)
            y = act_tensor(list(nxt))
            w, bias = weights(wf, 0, lambda n: (rng.standard_normal(n) * 0.01).astype(np.float32))
            o = s.FullyConnectedOptionsT()
            o.fusedActivationFunction = _ACT_CODE[L.act]
            o.keepNumDims = True
            B.op("FULLY_CONNECTED", [x, w, bias], [y], o, "FullyConnectedOptions", version=5 if state["int8"] else 1)
            cur = nxt
        elif L.kind == "add":
            y = act_tensor([1, *cur] if image else list(cur))
            o = s.AddOptionsT()
            other = prev_in if B.tensors[prev_in].type == B.tensors[x].type else x
            B.op("ADD", [x, other], [y], o, "AddOptions", version=2 if state["int8"] else 1)
        elif L.kind == "act":
            y = act_tensor([1, *cur] if image else list(cur))
            name = {"hswish": "HARD_SWISH", "sigmoid": "LOGISTIC", "relu": "RELU"}[L.act or "relu"]
            B.op(name, [x], [y], version=(1 if name == "HARD_SWISH" else 2) if state["int8"] else 1)
        elif L.kind == "softmax":
            y = act_tensor([1, *cur] if image else list(cur))
            if state["int8"]:  # int8 softmax output has a fixed scale of 1/256, zero point -128
                B.tensors[y].quantization.scale = [1.0 / 256]
                B.tensors[y].quantization.zeroPoint = [-128]
            o = s.SoftmaxOptionsT()
            o.beta = 1.0
            B.op("SOFTMAX", [x], [y], o, "SoftmaxOptions", version=2 if state["int8"] else 1)
        elif L.kind == "layernorm":  # as the LiteRT converter decomposes it (in float, as PT2E leaves it)
            shp = list(cur)
            was_int8 = state["int8"]
            if was_int8:
                state["int8"] = False
                xf = act_tensor(shp)
                B.op("DEQUANTIZE", [x], [xf], version=2)
                x = xf
            red = s.ReducerOptionsT()
            red.keepDims = True
            ax = B.tensor([1], "INT32", np.array([-1], np.int32))
            mean = act_tensor(shp[:-1] + [1])
            B.op("MEAN", [x, ax], [mean], red, "ReducerOptions", version=2 if state["int8"] else 1)
            sq = act_tensor(shp)
            B.op("SQUARED_DIFFERENCE", [x, mean], [sq], version=2 if state["int8"] else 1)
            var = act_tensor(shp[:-1] + [1])
            B.op("MEAN", [sq, ax], [var], red, "ReducerOptions", version=2 if state["int8"] else 1)
            eps = B.tensor([1], "FLOAT32", np.array([1e-5], np.float32))
            ve = act_tensor(shp[:-1] + [1])
            B.op("ADD", [var, eps], [ve], s.AddOptionsT(), "AddOptions")
            rs = act_tensor(shp[:-1] + [1])
            B.op("RSQRT", [ve], [rs])
            cen = act_tensor(shp)
            B.op("SUB", [x, mean], [cen], s.SubOptionsT(), "SubOptions")
            y = act_tensor(shp)
            B.op("MUL", [cen, rs], [y], s.MulOptionsT(), "MulOptions")
            if was_int8:
                state["int8"] = True
                yq = act_tensor(shp)
                B.op("QUANTIZE", [y], [yq])
                y = yq
        elif L.kind == "reshape":
            shp = [int(np.prod(micro.shape))] if i % 2 == 0 else list(micro.shape)
            st = B.tensor([len(shp)], "INT32", np.array(shp, np.int32))
            y = act_tensor(shp)
            B.op("RESHAPE", [x, st], [y])
            cur = tuple(shp)
        elif L.kind in ("dequant", "quant"):
            if not int8:
                continue
            state["int8"] = L.kind == "quant"
            y = act_tensor([1, *cur] if image else list(cur))
            B.op("DEQUANTIZE" if L.kind == "dequant" else "QUANTIZE", [x], [y], version=2 if L.kind == "dequant" else 1)
        elif L.kind == "transpose":
            perm = B.tensor([4], "INT32", np.array([0, 2, 1, 3], np.int32))
            y = act_tensor([1, cur[1], cur[0], cur[2]])
            B.op("TRANSPOSE", [x, perm], [y], version=2 if state["int8"] else 1)
            cur = (cur[1], cur[0], cur[2])
        elif L.kind == "pad":
            pads = B.tensor([4, 2], "INT32", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
            cur = out_shape(cur, L)
            y = act_tensor([1, *cur])
            B.op("PAD", [x, pads], [y], version=2 if state["int8"] else 1)
        elif L.kind == "rotate":
            shp = [1, *cur] if image else list(cur)
            ax = 1 if image else 0  # NHWC: H; tokens: T (the outermost axis either way)
            n = shp[ax]
            halves = []
            for start, size in ((0, n // 2), (n // 2, n - n // 2)):
                begin = [0] * len(shp)
                begin[ax] = start
                sz = list(shp)
                sz[ax] = size
                h = act_tensor(sz)
                B.op(
                    "SLICE",
                    [
                        x,
                        B.tensor([len(shp)], "INT32", np.array(begin, np.int32)),
                        B.tensor([len(shp)], "INT32", np.array(sz, np.int32)),
                    ],
                    [h],
                    version=2 if state["int8"] else 1,
                )
                halves.append(h)
            y = act_tensor(shp)
            o = s.ConcatenationOptionsT()
            o.axis = ax
            B.op("CONCATENATION", halves[::-1], [y], o, "ConcatenationOptions", version=2 if state["int8"] else 1)
        elif L.kind == "mean":
            axes = B.tensor([2], "INT32", np.array([1, 2], np.int32))
            y = act_tensor([1, cur[-1]])
            o = s.ReducerOptionsT()
            o.keepDims = False
            B.op("MEAN", [x, axes], [y], o, "ReducerOptions", version=2 if state["int8"] else 1)
            cur = out_shape(cur, L)
        elif L.kind == "qkv":  # three FULLY_CONNECTED on one input, summed with it (as in the ONNX graph)
            d = cur[-1]
            outs = []
            for _ in range(3):
                wf = (rng.standard_normal((d, d)) / math.sqrt(d)).astype(np.float32)
                o_ = act_tensor(list(cur))
                w, bias = weights(wf, 0, lambda n: np.zeros(n, np.float32))
                o = s.FullyConnectedOptionsT()
                o.keepNumDims = True
                B.op(
                    "FULLY_CONNECTED", [x, w, bias], [o_], o, "FullyConnectedOptions", version=5 if state["int8"] else 1
                )
                outs.append(o_)
            acc = outs[0]
            for other in (outs[1], outs[2], x):
                summed = act_tensor(list(cur))
                B.op("ADD", [acc, other], [summed], s.AddOptionsT(), "AddOptions", version=2 if state["int8"] else 1)
                acc = summed
            y = acc
        elif L.kind == "se":
            # as the LiteRT converter writes it: MEAN -> 1x1 CONV_2D (relu) -> 1x1 CONV_2D (relu6, the hard
            # sigmoid's +3 in its bias) -> MUL by 1/6 -> MUL into the input (broadcast over H, W)
            c, mid = cur[2], L.out
            axes = B.tensor([2], "INT32", np.array([1, 2], np.int32))
            red = s.ReducerOptionsT()
            red.keepDims = True
            sq = act_tensor([1, 1, 1, c])
            B.op("MEAN", [x, axes], [sq], red, "ReducerOptions", version=2 if state["int8"] else 1)
            h = sq
            for ci, co, act in ((c, mid, "relu"), (mid, c, "relu6")):
                wf = (rng.standard_normal((co, 1, 1, ci)) / math.sqrt(ci)).astype(np.float32)
                o_ = act_tensor([1, 1, 1, co])

                def se_bias(n: int, act: str = act) -> np.ndarray:
                    return np.full(n, 3.0 if act == "relu6" else 0.0, np.float32)

                w, bias = weights(wf, 0, se_bias)
                o = s.Conv2DOptionsT()
                o.padding, o.strideW, o.strideH, o.fusedActivationFunction = 0, 1, 1, _ACT_CODE[act]
                B.op("CONV_2D", [h, w, bias], [o_], o, "Conv2DOptions", version=3 if state["int8"] else 1)
                h = o_
            g = act_tensor([1, 1, 1, c])
            sixth = (
                B.tensor([], "INT8", np.array([127], np.int8), scale=1.0 / 6 / 127, zero_point=0)
                if state["int8"]
                else B.tensor([], "FLOAT32", np.array([1.0 / 6], np.float32))
            )
            B.op("MUL", [h, sixth], [g], s.MulOptionsT(), "MulOptions", version=2 if state["int8"] else 1)
            y = act_tensor([1, *cur])
            B.op("MUL", [x, g], [y], s.MulOptionsT(), "MulOptions", version=2 if state["int8"] else 1)
        elif L.kind == "bmm":
            t = cur[-2]
            o = s.BatchMatMulOptionsT()
            if i == 0 or micro.layers[i - 1].kind != "softmax":
                y = act_tensor([*cur[:-1], t])
                q, kt = x, x
                if "heads" in micro.tags:
                    # as the LiteRT converter writes attention: scaled queries, keys transposed by a TRANSPOSE op
                    q = act_tensor(list(cur))
                    qs = (
                        B.tensor([1], "INT8", np.array([127], np.int8), scale=0.9 / 127, zero_point=0)
                        if state["int8"]
                        else B.tensor([1], "FLOAT32", np.array([0.9], np.float32))
                    )
                    B.op("MUL", [x, qs], [q], s.MulOptionsT(), "MulOptions", version=2 if state["int8"] else 1)
                    kt = act_tensor([cur[0], cur[2], cur[1]])
                    B.op(
                        "TRANSPOSE",
                        [x, B.tensor([3], "INT32", np.array([0, 2, 1], np.int32))],
                        [kt],
                        version=2 if state["int8"] else 1,
                    )
                else:
                    o.adjY = True
                B.op("BATCH_MATMUL", [q, kt], [y], o, "BatchMatMulOptions", version=2 if state["int8"] else 1)
                prev_in, x, cur = x, y, (*cur[:-1], t)
                continue
            y = act_tensor(list(micro.shape))
            B.op("BATCH_MATMUL", [x, first], [y], o, "BatchMatMulOptions", version=2 if state["int8"] else 1)
            prev_in, x, cur = x, y, micro.shape
            continue
        else:
            raise ValueError(f"unknown layer kind {L.kind}")
        prev_in, x = x, y
    Path(path).write_bytes(B.finish([first], [x]))
    return Path(path)


def tflite_input(micro: Micro, int8: bool = False) -> np.ndarray:
    """A float input for the LiteRT runner (which quantizes int8 inputs with the file's scale)."""
    rng = seeded_rng(1)
    shape = (1, *micro.shape) if is_image(micro) else micro.shape
    return (rng.standard_normal(shape) * input_scale(micro)).astype(np.float32)


__all__ = ["write_tflite", "tflite_input"]
