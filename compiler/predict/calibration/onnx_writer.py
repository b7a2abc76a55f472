"""ONNX writer of the calibration micro-benchmarks: fp32 graphs written directly with ``onnx.helper`` (NCHW for
images, [T, D] for tokens), their inputs, and int8 QDQ graphs made by
``onnxruntime.quantization.quantize_static`` (per-channel int8 weights, asymmetric int8 activations: the recipe
adaptc's ONNX exporter uses). No torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .suite import Micro, input_scale, is_image, out_shape, seeded_rng


def write_onnx(micro: Micro, path: Path) -> Path:
    """fp32 ONNX (NCHW for images, [T, D] for tokens) of a micro-benchmark chain."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = seeded_rng()
    nodes: list[Any] = []
    inits: list[Any] = []
    image = is_image(micro)
    cur_shape = micro.shape
    x = "x"
    prev_in = x
    # "batched" token graphs carry a leading batch dimension in ONNX, as exported encoders do (onnxruntime fuses
    # Add + LayerNormalization into SkipLayerNormalization only on 3-D inputs)
    lead = [1] if ("batched" in micro.tags and not image) else []
    in_dims = [1, micro.shape[2], micro.shape[0], micro.shape[1]] if image else [*lead, *micro.shape]
    for i, L in enumerate(micro.layers):
        y = f"y{i}"
        if L.kind in ("conv", "dwconv"):
            c = cur_shape[2]
            cout = L.out if L.kind == "conv" else c
            group = 1 if L.kind == "conv" else c
            w = (rng.standard_normal((cout, c // group, L.k, L.k)) * (1.0 / math.sqrt(c // group * L.k * L.k))).astype(
                np.float32
            )
            b = (rng.standard_normal(cout) * 0.01).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
            p = L.k // 2
            conv_out = y if L.act is None else f"c{i}"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [x, f"w{i}", f"b{i}"],
                    [conv_out],
                    name=f"conv{i}",
                    kernel_shape=[L.k, L.k],
                    pads=[p, p, p, p],
                    strides=[L.stride, L.stride],
                    group=group,
                )
            )
            _onnx_act(nodes, inits, L.act, conv_out, y, i)
        elif L.kind == "fc":
            d = cur_shape[-1]
            w = (rng.standard_normal((d, L.out)) / math.sqrt(d)).astype(np.float32)
            b = (rng.standard_normal(L.out) * 0.01).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
            mm = f"m{i}"
            add_out = y if L.act is None else f"c{i}"
            if "gemm" in micro.tags:  # one Gemm, as exporters write linear layers (onnxruntime int8: QGemm)
                nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [add_out], name=f"gemm{i}"))
            else:
                nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [mm], name=f"matmul{i}"))
                nodes.append(helper.make_node("Add", [mm, f"b{i}"], [add_out], name=f"bias{i}"))
            _onnx_act(nodes, inits, L.act, add_out, y, i)
        elif L.kind == "add":
            nodes.append(helper.make_node("Add", [x, prev_in], [y], name=f"add{i}"))
        elif L.kind == "act":
            _onnx_act(nodes, inits, L.act, x, y, i)
        elif L.kind == "softmax":
            nodes.append(helper.make_node("Softmax", [x], [y], name=f"softmax{i}", axis=-1))
        elif L.kind == "layernorm":
            d = cur_shape[-1]
            inits += [
                numpy_helper.from_array(np.ones(d, np.float32), f"g{i}"),
                numpy_helper.from_array(np.zeros(d, np.float32), f"be{i}"),
            ]
            nodes.append(helper.make_node("LayerNormalization", [x, f"g{i}", f"be{i}"], [y], name=f"ln{i}", axis=-1))
        elif L.kind == "reshape":
            shp = [int(np.prod(micro.shape))] if i % 2 == 0 else list(micro.shape)
            inits.append(numpy_helper.from_array(np.array(shp, np.int64), f"r{i}"))
            nodes.append(helper.make_node("Reshape", [x, f"r{i}"], [y], name=f"reshape{i}"))
            prev_in, x, cur_shape = x, y, tuple(shp)
            continue
        elif L.kind in ("dequant", "quant"):
            continue  # int8 ONNX graphs get their quantize/dequantize nodes from quantize_static
        elif L.kind == "transpose":
            nodes.append(helper.make_node("Transpose", [x], [y], name=f"transpose{i}", perm=[0, 1, 3, 2]))
        elif L.kind == "pad":
            inits.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), f"p{i}"))
            nodes.append(helper.make_node("Pad", [x, f"p{i}"], [y], name=f"pad{i}", mode="constant"))
        elif L.kind == "rotate":
            ax = 1 if image else 0  # NCHW: channels; tokens: T (the outermost axis either way)
            n = cur_shape[2] if image else cur_shape[0]
            for nm, v in ((f"z{i}", 0), (f"h{i}", n // 2), (f"n{i}", n), (f"a{i}", ax)):
                inits.append(numpy_helper.from_array(np.array([v], np.int64), nm))
            nodes.append(helper.make_node("Slice", [x, f"z{i}", f"h{i}", f"a{i}"], [f"lo{i}"], name=f"slice_lo{i}"))
            nodes.append(helper.make_node("Slice", [x, f"h{i}", f"n{i}", f"a{i}"], [f"hi{i}"], name=f"slice_hi{i}"))
            nodes.append(helper.make_node("Concat", [f"hi{i}", f"lo{i}"], [y], name=f"concat{i}", axis=ax))
        elif L.kind == "mean":
            nodes.append(helper.make_node("GlobalAveragePool", [x], [f"g{i}"], name=f"gap{i}"))
            inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), f"s{i}"))
            nodes.append(helper.make_node("Reshape", [f"g{i}", f"s{i}"], [y], name=f"flatten{i}"))
        elif L.kind == "qkv":
            # three linear layers on one input (an attention layer's q / k / v projections of one layer-norm
            # output), summed with that input (the residual): onnxruntime keeps such MatMuls float in int8 QDQ
            # graphs and dequantizes their weights on every run
            d = cur_shape[-1]
            outs = []
            for j in range(3):
                w = (rng.standard_normal((d, d)) / math.sqrt(d)).astype(np.float32)
                inits += [
                    numpy_helper.from_array(w, f"qw{i}_{j}"),
                    numpy_helper.from_array(np.zeros(d, np.float32), f"qb{i}_{j}"),
                ]
                nodes.append(helper.make_node("MatMul", [x, f"qw{i}_{j}"], [f"qm{i}_{j}"], name=f"qkv_mm{i}_{j}"))
                nodes.append(
                    helper.make_node("Add", [f"qm{i}_{j}", f"qb{i}_{j}"], [f"qp{i}_{j}"], name=f"qkv_b{i}_{j}")
                )
                outs.append(f"qp{i}_{j}")
            nodes.append(helper.make_node("Add", outs[:2], [f"qs{i}_0"], name=f"qkv_s{i}_0"))
            nodes.append(helper.make_node("Add", [f"qs{i}_0", outs[2]], [f"qs{i}_1"], name=f"qkv_s{i}_1"))
            nodes.append(helper.make_node("Add", [f"qs{i}_1", x], [y], name=f"qkv_res{i}"))
        elif L.kind == "se":
            # squeeze-and-excitation as torch exports it: mean over H, W -> 1x1 conv + relu -> 1x1 conv ->
            # hard sigmoid -> the input scaled per channel (a broadcast multiply)
            c, mid = cur_shape[2], L.out
            nodes.append(helper.make_node("ReduceMean", [x], [f"sq{i}"], name=f"se_mean{i}", axes=[2, 3], keepdims=1))
            for j, (ci, co) in enumerate(((c, mid), (mid, c))):
                w = (rng.standard_normal((co, ci, 1, 1)) / math.sqrt(ci)).astype(np.float32)
                b = (rng.standard_normal(co) * 0.01).astype(np.float32)
                inits += [numpy_helper.from_array(w, f"sew{i}_{j}"), numpy_helper.from_array(b, f"seb{i}_{j}")]
                src = f"sq{i}" if j == 0 else f"se_r{i}"
                nodes.append(
                    helper.make_node(
                        "Conv",
                        [src, f"sew{i}_{j}", f"seb{i}_{j}"],
                        [f"se_c{i}_{j}"],
                        name=f"se_conv{i}_{j}",
                        kernel_shape=[1, 1],
                    )
                )
                if j == 0:
                    nodes.append(helper.make_node("Relu", [f"se_c{i}_0"], [f"se_r{i}"], name=f"se_relu{i}"))
            nodes.append(
                helper.make_node(
                    "HardSigmoid", [f"se_c{i}_1"], [f"se_g{i}"], name=f"se_gate{i}", alpha=1.0 / 6, beta=0.5
                )
            )
            nodes.append(helper.make_node("Mul", [x, f"se_g{i}"], [y], name=f"se_scale{i}"))
        elif L.kind == "heads":
            # a BERT layer's head split and merge: [T, d] -> [1, T, h, d / h] -> transposed to [1, h, T, d / h], a
            # per-head product with a [d / h, d / h] weight, transposed and reshaped back. onnxruntime's transpose
            # optimizer cancels back-to-back transposes (the `transpose` layers above measure nothing there); these
            # survive, as in exported encoders
            t_, d = cur_shape[-2], cur_shape[-1]
            dh = d // L.out
            inits += [
                numpy_helper.from_array(np.array([1, t_, L.out, dh], np.int64), f"hs{i}"),
                numpy_helper.from_array(np.array([*lead, t_, d], np.int64), f"hm{i}"),
                numpy_helper.from_array((rng.standard_normal((dh, dh)) / math.sqrt(dh)).astype(np.float32), f"w{i}"),
            ]
            nodes += [
                helper.make_node("Reshape", [x, f"hs{i}"], [f"r{i}"], name=f"split_heads{i}"),
                helper.make_node("Transpose", [f"r{i}"], [f"t{i}"], name=f"heads_first{i}", perm=[0, 2, 1, 3]),
                helper.make_node("MatMul", [f"t{i}", f"w{i}"], [f"m{i}"], name=f"per_head{i}"),
                helper.make_node("Transpose", [f"m{i}"], [f"u{i}"], name=f"tokens_first{i}", perm=[0, 2, 1, 3]),
                helper.make_node("Reshape", [f"u{i}", f"hm{i}"], [y], name=f"merge_heads{i}"),
            ]
        elif L.kind == "bmm":
            # attention-shaped: scores = x @ x^T ([T, T]) or context = scores @ v ([T, D])
            if i == 0 or micro.layers[i - 1].kind != "softmax":
                perm = [1, 0] if len(cur_shape) == 2 else [0, 2, 1]  # (heads,) T, D -> (heads,) D, T
                nodes.append(helper.make_node("Transpose", [x], [f"t{i}"], name=f"transpose{i}", perm=perm))
                q = x
                if "heads" in micro.tags:
                    # scaled queries, as encoders export them (the scale also gives onnxruntime's int8 graph a
                    # quantized query of its own, so the product runs as QLinearMatMul as it does in encoders)
                    inits.append(numpy_helper.from_array(np.array(0.9, np.float32), f"qs{i}"))
                    nodes.append(helper.make_node("Mul", [x, f"qs{i}"], [f"q{i}"], name=f"qscale{i}"))
                    q = f"q{i}"
                nodes.append(helper.make_node("MatMul", [q, f"t{i}"], [y], name=f"qk{i}"))
                cur_shape = (*cur_shape[:-1], cur_shape[-2])
                prev_in, x = x, y
                continue
            nodes.append(helper.make_node("MatMul", [x, "x"], [y], name=f"av{i}"))
            cur_shape = micro.shape
            prev_in, x = x, y
            continue
        else:
            raise ValueError(f"unknown layer kind {L.kind}")
        cur_shape = out_shape(cur_shape, L)
        prev_in, x = x, y
    out_dims = (
        [1, cur_shape[2], cur_shape[0], cur_shape[1]]
        if (image and len(cur_shape) == 3)
        else ([1, *cur_shape] if image else [*lead, *cur_shape])
    )
    if image and len(cur_shape) == 1:
        out_dims = [1, cur_shape[0]]
    g = helper.make_graph(
        nodes,
        micro.name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, out_dims)],
        inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _onnx_act(nodes: list[Any], inits: list[Any], act: str | None, x: str, y: str, i: int) -> None:
    from onnx import helper, numpy_helper

    if act is None:
        return
    if act == "relu":
        nodes.append(helper.make_node("Relu", [x], [y], name=f"relu{i}"))
    elif act == "relu6":
        inits += [
            numpy_helper.from_array(np.array(0, np.float32), f"lo{i}"),
            numpy_helper.from_array(np.array(6, np.float32), f"hi{i}"),
        ]
        nodes.append(helper.make_node("Clip", [x, f"lo{i}", f"hi{i}"], [y], name=f"relu6_{i}"))
    elif act == "hswish":
        nodes.append(helper.make_node("HardSwish", [x], [y], name=f"hswish{i}"))
    elif act == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [x], [y], name=f"sigmoid{i}"))
    else:
        raise ValueError(f"unknown activation {act}")


def onnx_input(micro: Micro) -> np.ndarray:
    rng = seeded_rng(1)
    if is_image(micro):
        h, w, c = micro.shape
        return rng.standard_normal((1, c, h, w)).astype(np.float32)
    shape = (1, *micro.shape) if "batched" in micro.tags else micro.shape
    return (rng.standard_normal(shape) * input_scale(micro)).astype(np.float32)


def quantize_onnx(src: Path, dst: Path, micro: Micro) -> Path:
    """int8 QDQ with the recipe of adaptc's ONNX exporter (per-channel weights, asymmetric activations)."""
    import logging

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    x = onnx_input(micro)

    class _Reader:
        def __init__(self) -> None:
            self._data = [{"x": x * s} for s in (0.5, 1.0, 1.5)]

        def get_next(self) -> dict[str, np.ndarray] | None:
            return self._data.pop() if self._data else None

    prev = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quantize_static(
            str(src),
            str(dst),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        logging.getLogger().setLevel(prev)
    return dst


__all__ = ["write_onnx", "onnx_input", "quantize_onnx"]
