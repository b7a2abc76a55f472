"""Micro-benchmark graphs for ``adaptc calibrate``: small chains of one kind of op, written directly as ONNX
(``onnx.helper``) and as TFLite flatbuffers (the schema's object API), in fp32 and int8, without torch.

Each :class:`Micro` is a sequential chain of layers; the same chain is written for both runtimes (NCHW for
ONNX, NHWC for TFLite), so onnxruntime and LiteRT are calibrated on the same work. int8 ONNX goes through
``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights, asymmetric int8 activations: the
recipe adaptc's ONNX exporter uses); int8 TFLite is written fully integer (int8 activations with per-tensor
scales, per-channel int8 weights, int32 biases), as the PT2E / LiteRT converter writes it.

The calibration does not need the graphs to compute anything meaningful: weights are random, and each graph's
predicted cost comes from the same cost analysis (``adaptc.analysis``) that the predictor uses on real models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

# --------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Layer:
    """One layer. ``kind``: conv (dense k x k), dwconv (depthwise k x k), fc (linear on the last dim),
    add (adds the layer's input to the previous layer's input: a residual), act (hswish | sigmoid | relu),
    heads (ONNX only: split [T, d] into ``out`` heads, transposed to heads-first, a per-head product, merged back),
    softmax (last dim), mean (global average over H, W), se (squeeze-and-excitation with ``out`` middle
    channels), qkv (three d -> d linear layers on one input, summed with it), bmm (x @ x^T then @ x:
    attention-shaped products), transpose (swap H and W), pad (one pixel on each side), rotate (slice the
    outermost axis into halves and concatenate them swapped: two contiguous slices and a concat, as a fused
    q/k/v projection is split), dequant / quant (int8 TFLite graphs only: leave and re-enter int8, the float
    islands PT2E-quantized graphs have; skipped in fp32 graphs and in ONNX)."""

    kind: str
    out: int = 0          # output channels / features (conv, fc)
    k: int = 3            # kernel size (conv, dwconv)
    stride: int = 1
    act: str | None = None  # fused activation after conv / dwconv / fc: relu | relu6 | None


@dataclass(frozen=True)
class Micro:
    """A chain of layers on an input of shape ``shape``: (H, W, C) for images, (T, D) for token sequences."""

    name: str
    shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    group: str = ""  # what it calibrates (for reports): conv, dwconv, fc, elementwise, overhead, memory
    #: onnx_only: not written for TFLite; batched: [1, T, d] inputs; heads: multi-head products; dynamic: also
    #: measured as dynamic-range int8 (linear layers: what adaptc ships for transformers)
    tags: tuple[str, ...] = field(default_factory=tuple)

    def precisions(self) -> tuple[str, ...]:
        return ("fp32", "int8", "int8dyn") if "dynamic" in self.tags else ("fp32", "int8")


def _chain(kind: str, n: int, **kw: Any) -> tuple[Layer, ...]:
    return tuple(Layer(kind, **kw) for _ in range(n))


def suite(quick: bool = False) -> list[Micro]:
    """The micro-benchmarks (a smaller, still representative set with ``quick``)."""
    m: list[Micro] = []
    # dense 3x3 and 1x1 convolutions at several widths and resolutions
    conv_sizes = [(56, 16), (28, 32), (28, 64), (14, 128), (7, 256), (56, 8), (14, 32)]
    if quick:
        conv_sizes = [(56, 16), (28, 64), (7, 256)]
    for hw, c in conv_sizes:
        m.append(Micro(f"conv3x3_{hw}x{hw}x{c}", (hw, hw, c), _chain("conv", 4, out=c, k=3, act="relu"), "conv"))
    pw = [(56, 16, 96), (28, 32, 192), (14, 64, 384), (7, 160, 960), (112, 8, 48)]
    if quick:
        pw = [(28, 32, 192), (7, 160, 960)]
    for hw, c, e in pw:
        layers = (Layer("conv", out=e, k=1, act="relu6"), Layer("conv", out=c, k=1)) * 2
        m.append(Micro(f"conv1x1_{hw}x{hw}x{c}-{e}", (hw, hw, c), layers, "conv"))
    if not quick:
        # channel counts that are not multiples of the SIMD width (narrow models: width multipliers 0.25-0.35)
        m.append(Micro("conv1x1_28x28x12-72", (28, 28, 12), (Layer("conv", out=72, k=1, act="relu6"),
                                                              Layer("conv", out=12, k=1)) * 2, "conv"))
        m.append(Micro("conv3x3_32x32x11", (32, 32, 11), _chain("conv", 4, out=11, k=3, act="relu"), "conv"))
        m.append(Micro("dwconv3x3_s1_28x28x36", (28, 28, 36), _chain("dwconv", 4, k=3, act="relu6"), "dwconv"))
        # more of them: onnxruntime runs these outside its NCHWc layout on x86 (other kernels, reorder copies)
        m.append(Micro("conv1x1_28x28x40-120", (28, 28, 40), (Layer("conv", out=120, k=1, act="relu6"),
                                                                Layer("conv", out=40, k=1)) * 2, "conv"))
        m.append(Micro("conv3x3_28x28x24", (28, 28, 24), _chain("conv", 4, out=24, k=3, act="relu"), "conv"))
        m.append(Micro("dwconv3x3_s1_56x56x24", (56, 56, 24), _chain("dwconv", 4, k=3, act="relu6"), "dwconv"))
        m.append(Micro("dwconv3x3_s1_14x14x120", (14, 14, 120), _chain("dwconv", 4, k=3, act="relu6"), "dwconv"))
        m.append(Micro("dwconv5x5_s2_28x28x72", (28, 28, 72), _chain("dwconv", 1, k=5, stride=2, act="relu6"),
                       "dwconv"))
        # inverted residuals at odd widths (MobileNetV2 x0.35: 11 -> 66 -> 11): onnxruntime cannot block these
        # depthwise convolutions and runs them as grouped convolutions (a cost per channel group)
        for hw, c, e in ((28, 11, 66), (7, 33, 198)):
            m.append(Micro(f"mbconv_{hw}x{hw}x{c}-{e}", (hw, hw, c), (
                Layer("conv", out=e, k=1, act="relu6"), Layer("dwconv", k=3, act="relu6"), Layer("conv", out=c, k=1)
            ) * 2, "dwconv"))
        # residual blocks (conv -> relu -> conv, + the block's middle tensor): onnxruntime keeps these convolutions
        # float in int8 QDQ graphs (weights dequantized on every run, plain layout), as in exported ResNets
        for hw, c in ((56, 16), (28, 32), (14, 64)):
            m.append(Micro(f"resblock_{hw}x{hw}x{c}", (hw, hw, c), (
                Layer("conv", out=c, k=3, act="relu"), Layer("conv", out=c, k=3), Layer("add")) * 2, "conv"))
        # the narrowest widths (width multiplier 0.25: 8 and 16 channels), which onnxruntime pads to its NCHWc block
        for c in (8, 16):
            m.append(Micro(f"dwconv3x3_s1_48x48x{c}", (48, 48, c), _chain("dwconv", 4, k=3, act="relu"), "dwconv"))
        m.append(Micro("conv_stem_48x48x3-8", (96, 96, 3), (Layer("conv", out=8, k=3, stride=2, act="relu"),), "conv"))
        # weights larger than the cache at few output pixels (a ResNet-18's last stage: 2.4M weights per conv)
        for hw in (3, 7):
            m.append(Micro(f"conv3x3_{hw}x{hw}x512", (hw, hw, 512), _chain("conv", 2, out=512, k=3, act="relu"),
                           "conv"))
        m.append(Micro("conv_stem_112x112x3-32", (224, 224, 3), (Layer("conv", out=32, k=3, stride=2, act="relu"),),
                       "conv"))
        m.append(Micro("conv3x3_s2_56x56x32-64", (56, 56, 32), (Layer("conv", out=64, k=3, stride=2, act="relu"),
                                                                 Layer("conv", out=64, k=3, act="relu")), "conv"))
    # depthwise convolutions
    dw = [(112, 32, 3, 1), (56, 96, 3, 1), (28, 144, 5, 1), (14, 384, 3, 1), (7, 960, 5, 1), (56, 144, 3, 2)]
    if quick:
        dw = [(56, 96, 3, 1), (14, 384, 3, 1)]
    for hw, c, k, s in dw:
        layers = _chain("dwconv", 4 if s == 1 else 1, k=k, stride=s, act="relu6")
        m.append(Micro(f"dwconv{k}x{k}_s{s}_{hw}x{hw}x{c}", (hw, hw, c), layers, "dwconv"))
    # linear layers: matrix-vector (classifier heads) and token matrices (transformer encoders)
    fc = [(1, 1024, 1000), (1, 256, 256), (64, 128, 512), (128, 256, 1024), (32, 64, 64), (128, 512, 512),
          (128, 64, 256)]
    if quick:
        fc = [(1, 1024, 1000), (128, 256, 1024)]
    for t, d, n in fc:
        layers = (Layer("fc", out=n, act="relu"), Layer("fc", out=d)) * 2
        m.append(Micro(f"fc_{t}x{d}-{n}", (t, d), layers, "fc", tags=("dynamic",)))
    if not quick:
        # linear layers as one Gemm each, as exporters write them: onnxruntime runs an int8 Gemm as QGemm, another
        # kernel than the QLinearMatMul (+ float bias Add) of a MatMul + Add pair. Single layers, up- and down-
        # projections apart: QGemm's time grows with the output (M x N) more than with K, which a chain d -> n -> d
        # (both orientations in one figure) cannot show
        for t, d, n in ((1, 1024, 1000), (8, 384, 1536), (8, 1536, 384), (32, 128, 512), (32, 512, 128),
                        (64, 64, 256), (64, 256, 64), (128, 256, 1024), (128, 1024, 256)):
            m.append(Micro(f"gemm_{t}x{d}-{n}", (t, d), (Layer("fc", out=n),), "fc", tags=("gemm", "onnx_only")))
        for t, d in ((32, 64), (128, 512)):
            m.append(Micro(f"gemm_{t}x{d}-{d}", (t, d), _chain("fc", 4, out=d, act="relu"), "fc",
                           tags=("gemm", "onnx_only")))
        m.append(Micro("fc_1x2048-2048", (1, 2048), _chain("fc", 2, out=2048), "fc"))
        # a BERT layer's feed-forward at MiniLM's width, on [1, T, d] as exporters write it (3-D MatMul + Add; the
        # relu stands in for GELU: these calibrate the linear layers)
        for t, d, n in ((128, 384, 1536), (64, 320, 1280)):
            m.append(Micro(f"ffn_{t}x{d}-{n}", (t, d), (Layer("fc", out=n, act="relu"), Layer("fc", out=d)), "fc",
                           tags=("batched", "dynamic")))
        # the same block with distinct weights 4 and 12 times (19 and 57 MB of fp32 weights): weights beyond the
        # cache come from memory at every inference (12 distinct blocks ran 9-18% slower per block than one repeated)
        for blocks in (4, 12):
            m.append(Micro(f"ffn_x{blocks}_128x384-1536", (128, 384),
                           (Layer("fc", out=1536, act="relu"), Layer("fc", out=384)) * blocks, "fc",
                           tags=("batched", "dynamic")))
        m.append(Micro("attention_64x64", (64, 64), (Layer("bmm"), Layer("softmax"), Layer("bmm")), "fc"))
        m.append(Micro("attention_128x128", (128, 128), (Layer("bmm"), Layer("softmax"), Layer("bmm")), "fc"))
        # multi-head: (heads, T, head dim) batched products, as encoders run them; runtimes loop over the heads
        # (onnxruntime's int8 QLinearMatMul packs its second operand again for every head)
        for h, t, dh in ((2, 96, 16), (6, 48, 32), (12, 128, 32)):
            m.append(Micro(f"attention_h{h}x{t}x{dh}", (h, t, dh), (Layer("bmm"), Layer("softmax"), Layer("bmm")),
                           "fc", tags=("heads",)))
    # elementwise / pooling / data movement
    ew = [(56, 64), (14, 256), (112, 32)] if not quick else [(56, 64)]
    for hw, c in ew:
        m.append(Micro(f"add_{hw}x{hw}x{c}", (hw, hw, c), _chain("add", 6), "elementwise"))
        if not quick:
            m.append(Micro(f"hswish_{hw}x{hw}x{c}", (hw, hw, c), _chain("act", 4, act="hswish"), "elementwise"))
    if not quick:
        m.append(Micro("sigmoid_28x28x128", (28, 28, 128), _chain("act", 4, act="sigmoid"), "elementwise"))
        m.append(Micro("softmax_128x512", (128, 512), _chain("softmax", 4), "elementwise"))
        m.append(Micro("layernorm_64x128", (64, 128), _chain("layernorm", 4), "elementwise"))
        # a residual add before a layer norm (onnxruntime fuses the pair into SkipLayerNormalization)
        for t, d in ((64, 128), (128, 192)):
            m.append(Micro(f"skip_layernorm_{t}x{d}", (t, d), (Layer("add"), Layer("layernorm")) * 4, "elementwise",
                           tags=("batched",)))
        m.append(Micro("reshape_64x128", (64, 128), _chain("reshape", 8), "overhead"))
        m.append(Micro("mean_7x7x1280", (7, 7, 1280), (Layer("mean"),), "elementwise"))
        m.append(Micro("mean_56x56x64", (56, 56, 64), (Layer("mean"),), "elementwise"))
    # data movement (layout transposes, explicit padding) and float islands in int8 graphs
    m.append(Micro("transpose_56x56x64", (56, 56, 64), _chain("transpose", 4), "data"))
    if not quick:
        m.append(Micro("transpose_112x112x16", (112, 112, 16), _chain("transpose", 4), "data"))
        # attention-sized ones (heads <-> tokens, 16-32 KB): fixed costs, not bandwidth
        m.append(Micro("transpose_32x4x32", (32, 4, 32), _chain("transpose", 8), "data"))
        m.append(Micro("transpose_64x2x64", (64, 2, 64), _chain("transpose", 8), "data"))
        m.append(Micro("pad_56x56x32", (56, 56, 32), _chain("pad", 3), "data"))
        # attention head split / merge as encoders run it (onnxruntime cancels the back-to-back transposes of the
        # chains above, so there they calibrate nothing): [1, T, d] -> [1, h, T, d / h] and back, a residual add
        # between blocks (ONNX only: LiteRT runs the chains above as written)
        for t, d, h in ((128, 384, 12), (64, 256, 8), (32, 128, 4)):
            m.append(Micro(f"heads_{t}x{d}_h{h}", (t, d), (Layer("heads", out=h), Layer("add")) * 4, "data",
                           tags=("batched", "onnx_only")))
        # contiguous slices and concatenations (split q/k/v projections, channel concats): memory copies
        for shape in ((64, 128), (128, 384), (28, 28, 64)):
            m.append(Micro("rotate_" + "x".join(map(str, shape)), shape, _chain("rotate", 4), "data"))
    island = (Layer("conv", out=64, k=1, act="relu"), Layer("dequant"), Layer("add"), Layer("quant"),
              Layer("conv", out=64, k=1), Layer("dequant"), Layer("act", act="hswish"), Layer("quant"))
    m.append(Micro("qdq_island_28x28x64", (28, 28, 64), island, "quant"))
    if not quick:
        # q / k / v projections of one layer-norm output (BERT layers): float MatMuls with weights dequantized on
        # every run in onnxruntime's int8 graph
        for t, d in ((64, 256), (128, 384)):
            m.append(Micro(f"qkv_{t}x{d}", (t, d), (Layer("layernorm"), Layer("qkv")), "quant",
                           tags=("batched", "dynamic")))
    if not quick:
        # squeeze-and-excitation blocks (MobileNetV3, EfficientNet): a global mean, two tiny 1x1 convolutions and a
        # multiply broadcast over the feature map (onnxruntime's profile of a MobileNetV3 put those multiplies at
        # ~8x a same-shape one; in these blocks alone they are not slower, 2026-11-29)
        for hw, c, mid in ((56, 16, 8), (28, 72, 24), (14, 96, 24), (7, 288, 72)):
            m.append(Micro(f"se_{hw}x{hw}x{c}", (hw, hw, c), (Layer("se", out=mid),) * 2, "elementwise"))
    if not quick:
        m.append(Micro("qdq_island_56x56x32", (56, 56, 32), tuple(
            Layer(L.kind, out=32 if L.kind == "conv" else 0, k=L.k, act=L.act) for L in island), "quant"))
    # dispatch overhead: many tiny ops, and a single tiny op (fixed cost of one inference)
    m.append(Micro("tiny_add_x1", (1, 1, 8), (Layer("add"),), "overhead"))
    m.append(Micro("tiny_add_x32", (1, 1, 8), _chain("add", 32), "overhead"))
    m.append(Micro("tiny_conv_x16", (4, 4, 8), _chain("conv", 16, out=8, k=3, act="relu"), "overhead"))
    if not quick:
        m.append(Micro("tiny_fc_x16", (1, 16), _chain("fc", 16, out=16, act="relu"), "overhead", tags=("dynamic",)))
    return m


def memory_suite() -> list[Micro]:
    """Graphs whose weights or activations dominate, for the memory constants."""
    return [
        Micro("mem_weights_fc_8M", (1, 1024), (Layer("fc", out=2048), Layer("fc", out=1024)), "memory"),
        Micro("mem_weights_fc_32M", (1, 2048), (Layer("fc", out=4096), Layer("fc", out=2048)), "memory"),
        Micro("mem_acts_conv_112", (112, 112, 64), (Layer("conv", out=64, k=3, act="relu"),
                                                     Layer("conv", out=64, k=3, act="relu")), "memory"),
        Micro("mem_small", (8, 8, 16), (Layer("conv", out=16, k=3, act="relu"),), "memory"),
        Micro("mem_weights_conv_9M", (7, 7, 256), (Layer("conv", out=256, k=3, act="relu"),) * 4, "memory"),
        Micro("mem_deep_conv", (28, 28, 64), (Layer("conv", out=64, k=3, act="relu"),) * 16, "memory"),
        # many small kernels: the runtime's memory per node
        Micro("mem_many_adds", (4, 4, 8), (Layer("add"),) * 200, "memory"),
        Micro("mem_many_convs", (8, 8, 16), (Layer("conv", out=16, k=1, act="relu"),) * 100, "memory"),
    ]


# ------------------------------------------------------------------------------------------ shapes


def _out_shape(shape: tuple[int, ...], layer: Layer) -> tuple[int, ...]:
    if layer.kind in ("conv", "dwconv"):
        h, w, c = shape
        oh, ow = math.ceil(h / layer.stride), math.ceil(w / layer.stride)
        return (oh, ow, layer.out if layer.kind == "conv" else c)
    if layer.kind == "fc":
        return (*shape[:-1], layer.out)
    if layer.kind == "mean":
        return (shape[-1],)
    if layer.kind == "pad":
        return (shape[0] + 2, shape[1] + 2, shape[2])
    return shape


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# -------------------------------------------------------------------------------------------- ONNX


def write_onnx(micro: Micro, path: Path) -> Path:
    """fp32 ONNX (NCHW for images, [T, D] for tokens) of a micro-benchmark chain."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = _rng()
    nodes: list[Any] = []
    inits: list[Any] = []
    image = _is_image(micro)
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
            w = (rng.standard_normal((cout, c // group, L.k, L.k)) * (1.0 / math.sqrt(c // group * L.k * L.k))
                 ).astype(np.float32)
            b = (rng.standard_normal(cout) * 0.01).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
            p = L.k // 2
            conv_out = y if L.act is None else f"c{i}"
            nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [conv_out], name=f"conv{i}",
                                          kernel_shape=[L.k, L.k], pads=[p, p, p, p], strides=[L.stride, L.stride],
                                          group=group))
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
            inits += [numpy_helper.from_array(np.ones(d, np.float32), f"g{i}"),
                      numpy_helper.from_array(np.zeros(d, np.float32), f"be{i}")]
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
                inits += [numpy_helper.from_array(w, f"qw{i}_{j}"),
                          numpy_helper.from_array(np.zeros(d, np.float32), f"qb{i}_{j}")]
                nodes.append(helper.make_node("MatMul", [x, f"qw{i}_{j}"], [f"qm{i}_{j}"], name=f"qkv_mm{i}_{j}"))
                nodes.append(helper.make_node("Add", [f"qm{i}_{j}", f"qb{i}_{j}"], [f"qp{i}_{j}"], name=f"qkv_b{i}_{j}"))
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
                nodes.append(helper.make_node("Conv", [src, f"sew{i}_{j}", f"seb{i}_{j}"], [f"se_c{i}_{j}"],
                                              name=f"se_conv{i}_{j}", kernel_shape=[1, 1]))
                if j == 0:
                    nodes.append(helper.make_node("Relu", [f"se_c{i}_0"], [f"se_r{i}"], name=f"se_relu{i}"))
            nodes.append(helper.make_node("HardSigmoid", [f"se_c{i}_1"], [f"se_g{i}"], name=f"se_gate{i}",
                                          alpha=1.0 / 6, beta=0.5))
            nodes.append(helper.make_node("Mul", [x, f"se_g{i}"], [y], name=f"se_scale{i}"))
        elif L.kind == "heads":
            # a BERT layer's head split and merge: [T, d] -> [1, T, h, d / h] -> transposed to [1, h, T, d / h], a
            # per-head product with a [d / h, d / h] weight, transposed and reshaped back. onnxruntime's transpose
            # optimizer cancels back-to-back transposes (the `transpose` layers above measure nothing there); these
            # survive, as in exported encoders
            t_, d = cur_shape[-2], cur_shape[-1]
            dh = d // L.out
            inits += [numpy_helper.from_array(np.array([1, t_, L.out, dh], np.int64), f"hs{i}"),
                      numpy_helper.from_array(np.array([*lead, t_, d], np.int64), f"hm{i}"),
                      numpy_helper.from_array((rng.standard_normal((dh, dh)) / math.sqrt(dh)).astype(np.float32),
                                              f"w{i}")]
            nodes += [helper.make_node("Reshape", [x, f"hs{i}"], [f"r{i}"], name=f"split_heads{i}"),
                      helper.make_node("Transpose", [f"r{i}"], [f"t{i}"], name=f"heads_first{i}", perm=[0, 2, 1, 3]),
                      helper.make_node("MatMul", [f"t{i}", f"w{i}"], [f"m{i}"], name=f"per_head{i}"),
                      helper.make_node("Transpose", [f"m{i}"], [f"u{i}"], name=f"tokens_first{i}", perm=[0, 2, 1, 3]),
                      helper.make_node("Reshape", [f"u{i}", f"hm{i}"], [y], name=f"merge_heads{i}")]
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
        cur_shape = _out_shape(cur_shape, L)
        prev_in, x = x, y
    out_dims = [1, cur_shape[2], cur_shape[0], cur_shape[1]] if (image and len(cur_shape) == 3) else (
        [1, *cur_shape] if image else [*lead, *cur_shape])
    if image and len(cur_shape) == 1:
        out_dims = [1, cur_shape[0]]
    g = helper.make_graph(nodes, micro.name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, out_dims)], inits)
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
        inits += [numpy_helper.from_array(np.array(0, np.float32), f"lo{i}"),
                  numpy_helper.from_array(np.array(6, np.float32), f"hi{i}")]
        nodes.append(helper.make_node("Clip", [x, f"lo{i}", f"hi{i}"], [y], name=f"relu6_{i}"))
    elif act == "hswish":
        nodes.append(helper.make_node("HardSwish", [x], [y], name=f"hswish{i}"))
    elif act == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [x], [y], name=f"sigmoid{i}"))
    else:
        raise ValueError(f"unknown activation {act}")


def _is_image(micro: Micro) -> bool:
    """(H, W, C) images; ("heads"-tagged micro-benchmarks have (heads, T, head dim) token tensors)."""
    return len(micro.shape) == 3 and "heads" not in micro.tags


def _input_scale(micro: Micro) -> float:
    # attention-shaped chains: keep the scores x @ x^T moderate, as scaled dot-product attention does; otherwise
    # softmax underflows to denormals and x86 kernels slow down by 10x on them (a property of the input, not
    # of the graph, so not something to calibrate on)
    return 1.0 / math.sqrt(micro.shape[-1]) if any(L.kind == "bmm" for L in micro.layers) else 1.0


def onnx_input(micro: Micro) -> np.ndarray:
    rng = _rng(1)
    if _is_image(micro):
        h, w, c = micro.shape
        return rng.standard_normal((1, c, h, w)).astype(np.float32)
    shape = (1, *micro.shape) if "batched" in micro.tags else micro.shape
    return (rng.standard_normal(shape) * _input_scale(micro)).astype(np.float32)


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
        quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    finally:
        logging.getLogger().setLevel(prev)
    return dst


# ------------------------------------------------------------------------------------------ TFLite


class _TflBuilder:
    """Minimal TFLite flatbuffer writer (one subgraph) on top of the schema's object API."""

    def __init__(self) -> None:
        from ai_edge_litert import schema_py_generated as s

        self.s = s
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [s.BufferT()]  # buffer 0: the empty sentinel
        self.ops: list[Any] = []
        self.codes: dict[tuple[int, int], int] = {}

    def tensor(self, shape: list[int], ttype: str, data: np.ndarray | None = None,
               scale: Any = None, zero_point: Any = None, qdim: int = 0, name: str = "") -> int:
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

    def op(self, name: str, inputs: list[int], outputs: list[int], options: Any = None, options_type: str | None = None,
           version: int = 1) -> None:
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
            o.builtinOptionsType = getattr(s.BuiltinOptions, options_type)
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
    rng = _rng()
    act_scale, act_zp = 0.05, 0

    state = {"int8": int8}

    def act_tensor(shape: list[int], name: str = "") -> int:
        if state["int8"]:
            return B.tensor(shape, "INT8", scale=act_scale, zero_point=act_zp, name=name)
        return B.tensor(shape, "FLOAT32", name=name)

    def weights(wf: np.ndarray, qdim: int, float_bias: Callable[[], np.ndarray]) -> tuple[int, int]:
        """Weight and bias tensors of a layer whose weights ``wf`` hold its output channels on axis ``qdim``: int8
        per output channel with a zero int32 bias in int8 graphs, else float with ``float_bias()``."""
        n = wf.shape[qdim]
        if not state["int8"]:
            return B.tensor(list(wf.shape), "FLOAT32", wf), B.tensor([n], "FLOAT32", float_bias())
        ws = np.maximum(np.abs(wf).max(axis=tuple(a for a in range(wf.ndim) if a != qdim)), 1e-6) / 127.0
        per_channel = [-1 if a == qdim else 1 for a in range(wf.ndim)]
        wq = np.clip(np.round(wf / ws.reshape(per_channel)), -127, 127).astype(np.int8)
        return (B.tensor(list(wq.shape), "INT8", wq, scale=ws, zero_point=np.zeros(n, np.int64), qdim=qdim),
                B.tensor([n], "INT32", np.zeros(n, np.int32), scale=ws * act_scale, zero_point=np.zeros(n, np.int64)))

    image = _is_image(micro)
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
            wf = (rng.standard_normal((cout, L.k, L.k, c) if L.kind == "conv" else (1, L.k, L.k, c))
                  / math.sqrt(kdim)).astype(np.float32)
            nxt = _out_shape(cur, L)
            y = act_tensor([1, *nxt])
            w, bias = weights(wf, 0 if L.kind == "conv" else 3,
                              lambda: (rng.standard_normal(cout) * 0.01).astype(np.float32))
            if L.kind == "conv":
                o = s.Conv2DOptionsT()
                o.padding, o.strideW, o.strideH, o.fusedActivationFunction = 0, L.stride, L.stride, _ACT_CODE[L.act]
                B.op("CONV_2D", [x, w, bias], [y], o, "Conv2DOptions", version=3 if state["int8"] else 1)
            else:
                o = s.DepthwiseConv2DOptionsT()
                o.padding, o.strideW, o.strideH, o.depthMultiplier = 0, L.stride, L.stride, 1
                o.fusedActivationFunction = _ACT_CODE[L.act]
                B.op("DEPTHWISE_CONV_2D", [x, w, bias], [y], o, "DepthwiseConv2DOptions", version=3 if state["int8"] else 1)
            cur = nxt
        elif L.kind == "fc":
            d = cur[-1]
            wf = (rng.standard_normal((L.out, d)) / math.sqrt(d)).astype(np.float32)
            nxt = _out_shape(cur, L)
            y = act_tensor(list(nxt))
            w, bias = weights(wf, 0, lambda: (rng.standard_normal(L.out) * 0.01).astype(np.float32))
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
            cur = _out_shape(cur, L)
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
                B.op("SLICE", [x, B.tensor([len(shp)], "INT32", np.array(begin, np.int32)),
                               B.tensor([len(shp)], "INT32", np.array(sz, np.int32))], [h],
                     version=2 if state["int8"] else 1)
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
            cur = _out_shape(cur, L)
        elif L.kind == "qkv":  # three FULLY_CONNECTED on one input, summed with it (as in the ONNX graph)
            d = cur[-1]
            outs = []
            for _ in range(3):
                wf = (rng.standard_normal((d, d)) / math.sqrt(d)).astype(np.float32)
                o_ = act_tensor(list(cur))
                w, bias = weights(wf, 0, lambda: np.zeros(d, np.float32))
                o = s.FullyConnectedOptionsT()
                o.keepNumDims = True
                B.op("FULLY_CONNECTED", [x, w, bias], [o_], o, "FullyConnectedOptions", version=5 if state["int8"] else 1)
                outs.append(o_)
            acc = outs[0]
            for other in (outs[1], outs[2], x):
                nxt = act_tensor(list(cur))
                B.op("ADD", [acc, other], [nxt], s.AddOptionsT(), "AddOptions", version=2 if state["int8"] else 1)
                acc = nxt
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
                w, bias = weights(wf, 0, lambda co=co, act=act: np.full(co, 3.0 if act == "relu6" else 0.0, np.float32))
                o = s.Conv2DOptionsT()
                o.padding, o.strideW, o.strideH, o.fusedActivationFunction = 0, 1, 1, _ACT_CODE[act]
                B.op("CONV_2D", [h, w, bias], [o_], o, "Conv2DOptions", version=3 if state["int8"] else 1)
                h = o_
            g = act_tensor([1, 1, 1, c])
            sixth = (B.tensor([], "INT8", np.array([127], np.int8), scale=1.0 / 6 / 127, zero_point=0)
                     if state["int8"] else B.tensor([], "FLOAT32", np.array([1.0 / 6], np.float32)))
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
                    qs = (B.tensor([1], "INT8", np.array([127], np.int8), scale=0.9 / 127, zero_point=0)
                          if state["int8"] else B.tensor([1], "FLOAT32", np.array([0.9], np.float32)))
                    B.op("MUL", [x, qs], [q], s.MulOptionsT(), "MulOptions", version=2 if state["int8"] else 1)
                    kt = act_tensor([cur[0], cur[2], cur[1]])
                    B.op("TRANSPOSE", [x, B.tensor([3], "INT32", np.array([0, 2, 1], np.int32))], [kt],
                         version=2 if state["int8"] else 1)
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
    rng = _rng(1)
    shape = (1, *micro.shape) if _is_image(micro) else micro.shape
    return (rng.standard_normal(shape) * _input_scale(micro)).astype(np.float32)
