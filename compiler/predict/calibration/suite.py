"""The micro-benchmark suite of ``adaptc calibrate``: which small graphs are measured, their shapes and tags.

Each :class:`Micro` is a sequential chain of :class:`Layer` s of one kind of op; the same chain is written for both
runtimes (NCHW ONNX by :mod:`.onnx_writer`, NHWC TFLite by :mod:`.tflite_writer`), so onnxruntime and LiteRT are
calibrated on the same work. The calibration does not need the graphs to compute anything meaningful: weights
are random, and each graph's predicted cost comes from the same cost analysis (``adaptc.analysis``) that the
predictor uses on real models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
    out: int = 0  # output channels / features (conv, fc)
    k: int = 3  # kernel size (conv, dwconv)
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
        layers: tuple[Layer, ...] = (Layer("conv", out=e, k=1, act="relu6"), Layer("conv", out=c, k=1)) * 2
        m.append(Micro(f"conv1x1_{hw}x{hw}x{c}-{e}", (hw, hw, c), layers, "conv"))
    if not quick:
        # channel counts that are not multiples of the SIMD width (narrow models: width multipliers 0.25-0.35)
        m.append(
            Micro(
                "conv1x1_28x28x12-72",
                (28, 28, 12),
                (Layer("conv", out=72, k=1, act="relu6"), Layer("conv", out=12, k=1)) * 2,
                "conv",
            )
        )
        m.append(Micro("conv3x3_32x32x11", (32, 32, 11), _chain("conv", 4, out=11, k=3, act="relu"), "conv"))
        m.append(Micro("dwconv3x3_s1_28x28x36", (28, 28, 36), _chain("dwconv", 4, k=3, act="relu6"), "dwconv"))
        # more of them: onnxruntime runs these outside its NCHWc layout on x86 (other kernels, reorder copies)
        m.append(
            Micro(
                "conv1x1_28x28x40-120",
                (28, 28, 40),
                (Layer("conv", out=120, k=1, act="relu6"), Layer("conv", out=40, k=1)) * 2,
                "conv",
            )
        )
        m.append(Micro("conv3x3_28x28x24", (28, 28, 24), _chain("conv", 4, out=24, k=3, act="relu"), "conv"))
        m.append(Micro("dwconv3x3_s1_56x56x24", (56, 56, 24), _chain("dwconv", 4, k=3, act="relu6"), "dwconv"))
        m.append(Micro("dwconv3x3_s1_14x14x120", (14, 14, 120), _chain("dwconv", 4, k=3, act="relu6"), "dwconv"))
        m.append(
            Micro("dwconv5x5_s2_28x28x72", (28, 28, 72), _chain("dwconv", 1, k=5, stride=2, act="relu6"), "dwconv")
        )
        # inverted residuals at odd widths (MobileNetV2 x0.35: 11 -> 66 -> 11): onnxruntime cannot block these
        # depthwise convolutions and runs them as grouped convolutions (a cost per channel group)
        for hw, c, e in ((28, 11, 66), (7, 33, 198)):
            m.append(
                Micro(
                    f"mbconv_{hw}x{hw}x{c}-{e}",
                    (hw, hw, c),
                    (
                        Layer("conv", out=e, k=1, act="relu6"),
                        Layer("dwconv", k=3, act="relu6"),
                        Layer("conv", out=c, k=1),
                    )
                    * 2,
                    "dwconv",
                )
            )
        # residual blocks (conv -> relu -> conv, + the block's middle tensor): onnxruntime keeps these convolutions
        # float in int8 QDQ graphs (weights dequantized on every run, plain layout), as in exported ResNets
        for hw, c in ((56, 16), (28, 32), (14, 64)):
            m.append(
                Micro(
                    f"resblock_{hw}x{hw}x{c}",
                    (hw, hw, c),
                    (Layer("conv", out=c, k=3, act="relu"), Layer("conv", out=c, k=3), Layer("add")) * 2,
                    "conv",
                )
            )
        # the narrowest widths (width multiplier 0.25: 8 and 16 channels), which onnxruntime pads to its NCHWc block
        for c in (8, 16):
            m.append(Micro(f"dwconv3x3_s1_48x48x{c}", (48, 48, c), _chain("dwconv", 4, k=3, act="relu"), "dwconv"))
        m.append(Micro("conv_stem_48x48x3-8", (96, 96, 3), (Layer("conv", out=8, k=3, stride=2, act="relu"),), "conv"))
        # weights larger than the cache at few output pixels (a ResNet-18's last stage: 2.4M weights per conv)
        for hw in (3, 7):
            m.append(
                Micro(f"conv3x3_{hw}x{hw}x512", (hw, hw, 512), _chain("conv", 2, out=512, k=3, act="relu"), "conv")
            )
        m.append(
            Micro("conv_stem_112x112x3-32", (224, 224, 3), (Layer("conv", out=32, k=3, stride=2, act="relu"),), "conv")
        )
        m.append(
            Micro(
                "conv3x3_s2_56x56x32-64",
                (56, 56, 32),
                (Layer("conv", out=64, k=3, stride=2, act="relu"), Layer("conv", out=64, k=3, act="relu")),
                "conv",
            )
        )
    # depthwise convolutions
    dw = [(112, 32, 3, 1), (56, 96, 3, 1), (28, 144, 5, 1), (14, 384, 3, 1), (7, 960, 5, 1), (56, 144, 3, 2)]
    if quick:
        dw = [(56, 96, 3, 1), (14, 384, 3, 1)]
    for hw, c, k, s in dw:
        layers = _chain("dwconv", 4 if s == 1 else 1, k=k, stride=s, act="relu6")
        m.append(Micro(f"dwconv{k}x{k}_s{s}_{hw}x{hw}x{c}", (hw, hw, c), layers, "dwconv"))
    # linear layers: matrix-vector (classifier heads) and token matrices (transformer encoders)
    fc = [
        (1, 1024, 1000),
        (1, 256, 256),
        (64, 128, 512),
        (128, 256, 1024),
        (32, 64, 64),
        (128, 512, 512),
        (128, 64, 256),
    ]
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
        for t, d, n in (
            (1, 1024, 1000),
            (8, 384, 1536),
            (8, 1536, 384),
            (32, 128, 512),
            (32, 512, 128),
            (64, 64, 256),
            (64, 256, 64),
            (128, 256, 1024),
            (128, 1024, 256),
        ):
            m.append(Micro(f"gemm_{t}x{d}-{n}", (t, d), (Layer("fc", out=n),), "fc", tags=("gemm", "onnx_only")))
        for t, d in ((32, 64), (128, 512)):
            m.append(
                Micro(f"gemm_{t}x{d}-{d}", (t, d), _chain("fc", 4, out=d, act="relu"), "fc", tags=("gemm", "onnx_only"))
            )
        m.append(Micro("fc_1x2048-2048", (1, 2048), _chain("fc", 2, out=2048), "fc"))
        # a BERT layer's feed-forward at MiniLM's width, on [1, T, d] as exporters write it (3-D MatMul + Add; the
        # relu stands in for GELU: these calibrate the linear layers)
        for t, d, n in ((128, 384, 1536), (64, 320, 1280)):
            m.append(
                Micro(
                    f"ffn_{t}x{d}-{n}",
                    (t, d),
                    (Layer("fc", out=n, act="relu"), Layer("fc", out=d)),
                    "fc",
                    tags=("batched", "dynamic"),
                )
            )
        # the same block with distinct weights 4 and 12 times (19 and 57 MB of fp32 weights): weights beyond the
        # cache come from memory at every inference (12 distinct blocks ran 9-18% slower per block than one repeated)
        for blocks in (4, 12):
            m.append(
                Micro(
                    f"ffn_x{blocks}_128x384-1536",
                    (128, 384),
                    (Layer("fc", out=1536, act="relu"), Layer("fc", out=384)) * blocks,
                    "fc",
                    tags=("batched", "dynamic"),
                )
            )
        m.append(Micro("attention_64x64", (64, 64), (Layer("bmm"), Layer("softmax"), Layer("bmm")), "fc"))
        m.append(Micro("attention_128x128", (128, 128), (Layer("bmm"), Layer("softmax"), Layer("bmm")), "fc"))
        # multi-head: (heads, T, head dim) batched products, as encoders run them; runtimes loop over the heads
        # (onnxruntime's int8 QLinearMatMul packs its second operand again for every head)
        for h, t, dh in ((2, 96, 16), (6, 48, 32), (12, 128, 32)):
            m.append(
                Micro(
                    f"attention_h{h}x{t}x{dh}",
                    (h, t, dh),
                    (Layer("bmm"), Layer("softmax"), Layer("bmm")),
                    "fc",
                    tags=("heads",),
                )
            )
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
            m.append(
                Micro(
                    f"skip_layernorm_{t}x{d}",
                    (t, d),
                    (Layer("add"), Layer("layernorm")) * 4,
                    "elementwise",
                    tags=("batched",),
                )
            )
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
            m.append(
                Micro(
                    f"heads_{t}x{d}_h{h}",
                    (t, d),
                    (Layer("heads", out=h), Layer("add")) * 4,
                    "data",
                    tags=("batched", "onnx_only"),
                )
            )
        # contiguous slices and concatenations (split q/k/v projections, channel concats): memory copies
        for shape in ((64, 128), (128, 384), (28, 28, 64)):
            m.append(Micro("rotate_" + "x".join(map(str, shape)), shape, _chain("rotate", 4), "data"))
    island = (
        Layer("conv", out=64, k=1, act="relu"),
        Layer("dequant"),
        Layer("add"),
        Layer("quant"),
        Layer("conv", out=64, k=1),
        Layer("dequant"),
        Layer("act", act="hswish"),
        Layer("quant"),
    )
    m.append(Micro("qdq_island_28x28x64", (28, 28, 64), island, "quant"))
    if not quick:
        # q / k / v projections of one layer-norm output (BERT layers): float MatMuls with weights dequantized on
        # every run in onnxruntime's int8 graph
        for t, d in ((64, 256), (128, 384)):
            m.append(
                Micro(f"qkv_{t}x{d}", (t, d), (Layer("layernorm"), Layer("qkv")), "quant", tags=("batched", "dynamic"))
            )
    if not quick:
        # squeeze-and-excitation blocks (MobileNetV3, EfficientNet): a global mean, two tiny 1x1 convolutions and a
        # multiply broadcast over the feature map (onnxruntime's profile of a MobileNetV3 put those multiplies at
        # ~8x a same-shape one; in these blocks alone they are not slower, 2026-11-29)
        for hw, c, mid in ((56, 16, 8), (28, 72, 24), (14, 96, 24), (7, 288, 72)):
            m.append(Micro(f"se_{hw}x{hw}x{c}", (hw, hw, c), (Layer("se", out=mid),) * 2, "elementwise"))
    if not quick:
        m.append(
            Micro(
                "qdq_island_56x56x32",
                (56, 56, 32),
                tuple(Layer(L.kind, out=32 if L.kind == "conv" else 0, k=L.k, act=L.act) for L in island),
                "quant",
            )
        )
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
        Micro(
            "mem_acts_conv_112",
            (112, 112, 64),
            (Layer("conv", out=64, k=3, act="relu"), Layer("conv", out=64, k=3, act="relu")),
            "memory",
        ),
        Micro("mem_small", (8, 8, 16), (Layer("conv", out=16, k=3, act="relu"),), "memory"),
        Micro("mem_weights_conv_9M", (7, 7, 256), (Layer("conv", out=256, k=3, act="relu"),) * 4, "memory"),
        Micro("mem_deep_conv", (28, 28, 64), (Layer("conv", out=64, k=3, act="relu"),) * 16, "memory"),
        # many small kernels: the runtime's memory per node
        Micro("mem_many_adds", (4, 4, 8), (Layer("add"),) * 200, "memory"),
        Micro("mem_many_convs", (8, 8, 16), (Layer("conv", out=16, k=1, act="relu"),) * 100, "memory"),
    ]


# ------------------------------------------------------------------------------------------ shapes


def out_shape(shape: tuple[int, ...], layer: Layer) -> tuple[int, ...]:
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


def seeded_rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def is_image(micro: Micro) -> bool:
    """(H, W, C) images; ("heads"-tagged micro-benchmarks have (heads, T, head dim) token tensors)."""
    return len(micro.shape) == 3 and "heads" not in micro.tags


def input_scale(micro: Micro) -> float:
    # attention-shaped chains: keep the scores x @ x^T moderate, as scaled dot-product attention does; otherwise
    # softmax underflows to denormals and x86 kernels slow down by 10x on them (a property of the input, not
    # of the graph, so not something to calibrate on)
    return 1.0 / math.sqrt(micro.shape[-1]) if any(L.kind == "bmm" for L in micro.layers) else 1.0


__all__ = ["Layer", "Micro", "suite", "memory_suite", "out_shape", "is_image", "input_scale", "seeded_rng"]
