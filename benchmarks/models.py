"""Architectures for the predictor benchmark, in plain torch (torchvision does not import beside this torch).

Two sets:

- ``PHONE_MODELS``: the architectures of ``shared/device_data/calibration_latency.csv`` (pytorchcv models
  measured with TFLite 2.10 on one big core of a Pixel 4 and a Galaxy S10): MobileNetV1/V2/V3, MnasNet-A1,
  ProxylessNAS-Mobile, ResNet-18 and SqueezeNet 1.1 at the CSV's widths, 224x224, 1000 classes. Channel
  rules follow pytorchcv (``int(c * w)`` for MobileNetV1/V2 and ResNet, round-to-8 for MobileNetV3; the
  last ResNet unit and the MobileNetV2 final block keep their width), so the MACs match the CSV's ``macs_m``
  (the benchmark reports the mismatch).
- ``HOST_MODELS``: the host validation set (CNNs with and without depthwise convolutions, transformer encoders,
  several widths and input sizes), small enough to measure many of them on a 2-core machine.

Weights are random (latency and memory do not depend on them); BatchNorm layers are in eval mode and fold
into the convolutions when exported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

# ------------------------------------------------------------------------------------------ blocks


def _act(name: str | None) -> nn.Module:
    return {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "hswish": nn.Hardswish(), "hsigmoid": nn.Hardsigmoid(),
            "sigmoid": nn.Sigmoid(), None: nn.Identity()}[name]


class ConvBlock(nn.Sequential):
    """conv (no bias) -> BatchNorm -> activation."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = "relu",
                 padding: int | None = None):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, groups=groups,
                                   bias=False), nn.BatchNorm2d(cout), _act(act))


def round_channels(c: float, divisor: int = 8) -> int:
    r = max(int(c + divisor / 2.0) // divisor * divisor, divisor)
    if r < 0.9 * c:
        r += divisor
    return int(r)


class SE(nn.Module):
    """Squeeze-and-excitation: mean -> 1x1 conv -> act -> 1x1 conv -> gate, multiplied into the input."""

    def __init__(self, c: int, mid: int, mid_act: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        self.c1 = nn.Conv2d(c, mid, 1)
        self.a = _act(mid_act)
        self.c2 = nn.Conv2d(mid, c, 1)
        self.g = _act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        return x * self.g(self.c2(self.a(self.c1(w))))


class Head(nn.Module):
    """global average pool -> flatten -> linear."""

    def __init__(self, c: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


# ------------------------------------------------------------------------------------- MobileNetV1


class MobileNetV1(nn.Module):
    def __init__(self, width: float = 1.0, classes: int = 1000):
        super().__init__()
        chans = [[32], [64], [128, 128], [256, 256], [512] * 6, [1024, 1024]]
        chans = [[int(c * width) for c in s] for s in chans]
        layers: list[nn.Module] = [ConvBlock(3, chans[0][0], 3, 2)]
        cin = chans[0][0]
        for i, stage in enumerate(chans[1:], start=1):
            for j, c in enumerate(stage):
                s = 2 if (j == 0 and i != 1) else 1
                layers += [ConvBlock(cin, cin, 3, s, groups=cin), ConvBlock(cin, c, 1)]
                cin = c
        self.features = nn.Sequential(*layers)
        self.head = Head(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ------------------------------------------------------------------------------------- MobileNetV2


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, mid: int, k: int = 3, act: str = "relu6",
                 se: nn.Module | None = None, residual: bool | None = None):
        super().__init__()
        self.residual = (cin == cout and stride == 1) if residual is None else residual
        layers: list[nn.Module] = []
        if mid != cin:
            layers.append(ConvBlock(cin, mid, 1, act=act))
        layers.append(ConvBlock(mid, mid, k, stride, groups=mid, act=act))
        if se is not None:
            layers.append(se)
        layers.append(ConvBlock(mid, cout, 1, act=None))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, width: float = 1.0, classes: int = 1000):
        super().__init__()
        cfg = [(16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]
        init_c, final_c = 32, 1280
        if width != 1.0:
            init_c = int(init_c * width)
            if width > 1.0:
                final_c = int(final_c * width)
        layers: list[nn.Module] = [ConvBlock(3, init_c, 3, 2, act="relu6")]
        cin = init_c
        for i, (c, n, s) in enumerate(cfg):
            c = int(c * width) if width != 1.0 else c
            for j in range(n):
                expansion = not (i == 0 and j == 0)
                mid = cin * 6 if expansion else cin
                layers.append(InvertedResidual(cin, c, s if j == 0 else 1, mid))
                cin = c
        layers.append(ConvBlock(cin, final_c, 1, act="relu6"))
        self.features = nn.Sequential(*layers)
        self.head = Head(final_c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ------------------------------------------------------------------------------------- MobileNetV3


class MobileNetV3(nn.Module):
    def __init__(self, version: str = "large", width: float = 1.0, classes: int = 1000):
        super().__init__()
        if version == "small":
            chans = [[16], [24, 24], [40, 40, 40, 48, 48], [96, 96, 96]]
            exps = [[16], [72, 88], [96, 240, 240, 120, 144], [288, 576, 576]]
            k3 = [[1], [1, 1], [0, 0, 0, 0, 0], [0, 0, 0]]
            relu = [[1], [1, 1], [0, 0, 0, 0, 0], [0, 0, 0]]
            use_se = [[1], [0, 0], [1, 1, 1, 1, 1], [1, 1, 1]]
            first_stride, final_c = True, 576
        else:
            chans = [[16], [24, 24], [40, 40, 40], [80, 80, 80, 80, 112, 112], [160, 160, 160]]
            exps = [[16], [64, 72], [72, 120, 120], [240, 200, 184, 184, 480, 672], [672, 960, 960]]
            k3 = [[1], [1, 1], [0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0]]
            relu = [[1], [1, 1], [1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0]]
            use_se = [[0], [0, 0], [1, 1, 1], [0, 0, 0, 0, 1, 1], [1, 1, 1]]
            first_stride, final_c = False, 960
        init_c = 16
        if width != 1.0:
            chans = [[round_channels(c * width) for c in s] for s in chans]
            exps = [[round_channels(c * width) for c in s] for s in exps]
            init_c = round_channels(init_c * width)
        layers: list[nn.Module] = [ConvBlock(3, init_c, 3, 2, act="hswish")]
        cin = init_c
        for i, stage in enumerate(chans):
            for j, c in enumerate(stage):
                s = 2 if (j == 0 and (i != 0 or first_stride)) else 1
                mid = exps[i][j]
                act = "relu" if relu[i][j] else "hswish"
                se = SE(mid, round_channels(mid / 4), "relu", "hsigmoid") if use_se[i][j] else None
                k = 3 if k3[i][j] else 5
                layers.append(InvertedResidual(cin, c, s, mid, k, act, se))
                cin = c
        layers.append(ConvBlock(cin, final_c, 1, act="hswish"))
        self.features = nn.Sequential(*layers)
        self.c1 = nn.Conv2d(final_c, 1280, 1, bias=False)
        self.a = nn.Hardswish()
        self.c2 = nn.Conv2d(1280, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3), keepdim=True)
        return self.c2(self.a(self.c1(x))).flatten(1)


# ---------------------------------------------------------------------------------------- MnasNet-A1


class MnasNetA1(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        chans = [[24, 24], [40, 40, 40], [80, 80, 80, 80, 112, 112], [160, 160, 160]]
        k3 = [[1, 1], [0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0]]
        expf = [[6, 6], [3, 3, 3], [6, 6, 6, 6, 6, 6], [6, 6, 6]]
        sef = [[0, 0], [4, 4, 4], [0, 0, 0, 0, 4, 4], [4, 4, 4]]
        layers: list[nn.Module] = [ConvBlock(3, 32, 3, 2),
                                   InvertedResidual(32, 16, 1, 32, 3, "relu", residual=False)]
        cin = 16
        for i, stage in enumerate(chans):
            for j, c in enumerate(stage):
                mid = cin * expf[i][j]
                se = SE(mid, mid // (expf[i][j] * sef[i][j]), "relu", "sigmoid") if sef[i][j] else None
                layers.append(InvertedResidual(cin, c, 2 if j == 0 else 1, mid, 3 if k3[i][j] else 5, "relu", se))
                cin = c
        layers.append(InvertedResidual(cin, 320, 1, cin * 6, 3, "relu"))
        layers.append(ConvBlock(320, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.head = Head(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ------------------------------------------------------------------------------- ProxylessNAS-Mobile


class ProxylessMobile(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        residuals = [[1], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
        chans = [[16], [32, 32, 32, 32], [40, 40, 40, 40], [80, 80, 80, 80, 96, 96, 96, 96],
                 [192, 192, 192, 192, 320]]
        ks = [[3], [5, 3, 3, 3], [7, 3, 5, 5], [7, 5, 5, 5, 5, 5, 5, 5], [7, 7, 7, 7, 7]]
        exps = [[1], [3, 3, 3, 3], [3, 3, 3, 3], [6, 3, 3, 3, 6, 3, 3, 3], [6, 6, 3, 3, 6]]
        shortcuts = [[0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1, 0, 1, 1, 1], [0, 1, 1, 1, 0]]
        layers: list[nn.Module] = [ConvBlock(3, 32, 3, 2, act="relu6")]
        cin = 32
        for i, stage in enumerate(chans):
            for j, c in enumerate(stage):
                if not residuals[i][j]:
                    continue  # identity unit
                layers.append(InvertedResidual(cin, c, 2 if (j == 0 and i != 0) else 1, cin * exps[i][j], ks[i][j],
                                               "relu6", residual=bool(shortcuts[i][j])))
                cin = c
        layers.append(ConvBlock(cin, 1280, 1, act="relu6"))
        self.features = nn.Sequential(*layers)
        self.head = Head(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# -------------------------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = ConvBlock(cin, cout, 3, stride)
        self.c2 = ConvBlock(cout, cout, 3, 1, act=None)
        self.down = ConvBlock(cin, cout, 1, stride, act=None) if (cin != cout or stride != 1) else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = self.down(x) if self.down is not None else x
        return self.relu(self.c2(self.c1(x)) + idt)


class ResNet(nn.Module):
    """ResNet with basic blocks. ``blocks`` per stage; pytorchcv width rule: the last unit keeps its width."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), width: float = 1.0, classes: int = 1000,
                 stem: str = "imagenet", base: int = 64, keep_last: bool = True):
        super().__init__()
        chans = [[base * 2 ** i] * n for i, n in enumerate(blocks)]
        init_c = base
        if width != 1.0:
            chans = [[int(c * width) if (not keep_last or i != len(chans) - 1 or j != len(s) - 1) else c
                      for j, c in enumerate(s)] for i, s in enumerate(chans)]
            init_c = int(init_c * width)
        if stem == "imagenet":
            layers: list[nn.Module] = [ConvBlock(3, init_c, 7, 2), nn.MaxPool2d(3, 2, 1)]
        else:  # small inputs (CIFAR-style): one 3x3 conv
            layers = [ConvBlock(3, init_c, 3, 1)]
        cin = init_c
        for i, stage in enumerate(chans):
            for j, c in enumerate(stage):
                layers.append(BasicBlock(cin, c, 2 if (j == 0 and i != 0) else 1))
                cin = c
        self.features = nn.Sequential(*layers)
        self.head = Head(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------------------------------- SqueezeNet


class Fire(nn.Module):
    def __init__(self, cin: int, sq: int, e1: int, e3: int):
        super().__init__()
        self.sq = nn.Conv2d(cin, sq, 1)
        self.e1 = nn.Conv2d(sq, e1, 1)
        self.e3 = nn.Conv2d(sq, e3, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.sq(x))
        return torch.cat([self.relu(self.e1(x)), self.relu(self.e3(x))], dim=1)


class SqueezeNet11(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.final = nn.Conv2d(512, classes, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.final(self.features(x))).mean(dim=(2, 3))


# --------------------------------------------------------------------------------- host-set models


class PlainCNN(nn.Module):
    """VGG-style: [conv3x3-bn-relu] x per_stage, then stride-2, over ``stages`` stages; GAP + linear."""

    def __init__(self, width: int = 16, stages: int = 3, per_stage: int = 2, classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i in range(stages):
            c = width * 2 ** i
            for j in range(per_stage):
                layers.append(ConvBlock(cin, c, 3, 2 if (j == 0 and i > 0) else 1))
                cin = c
        self.features = nn.Sequential(*layers)
        self.head = Head(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinyMobileNetV2(MobileNetV2):
    """MobileNetV2 with a given number of classes (for small inputs)."""


class Encoder(nn.Module):
    """Transformer encoder on pre-embedded tokens [1, T, d] (post-norm layers, ReLU FFN), mean-pooled."""

    def __init__(self, d: int = 128, heads: int = 4, layers: int = 2, ffn: int = 4, act: str = "relu"):
        super().__init__()
        self.layers = nn.ModuleList([nn.TransformerEncoderLayer(d, heads, d * ffn, dropout=0.0, batch_first=True,
                                                                activation=act) for _ in range(layers)])
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.out(x.mean(dim=1))


class BertLayer(nn.Module):
    """A BERT layer as Hugging Face writes it (all-MiniLM-L6-v2 is six of these at d = 384, 12 heads): separate
    q / k / v projections, heads split by view + permute, scaled scores, softmax, context, output projection,
    post-norm residuals, GELU feed-forward."""

    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.up, self.down = nn.Linear(d, d * ffn), nn.Linear(d * ffn, d)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], t.shape[1], self.h, self.dh).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dh), dim=-1)
        c = (p @ v).permute(0, 2, 1, 3).reshape(x.shape)
        x = self.ln1(x + self.o(c))
        return self.ln2(x + self.down(nn.functional.gelu(self.up(x))))


class BertEncoder(nn.Module):
    """BERT-style sentence encoder on pre-embedded tokens [1, T, d]: layers, mean pooling, L2 normalisation."""

    def __init__(self, d: int = 384, heads: int = 12, layers: int = 2, ffn: int = 4):
        super().__init__()
        self.layers = nn.ModuleList([BertLayer(d, heads, ffn) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return nn.functional.normalize(x.mean(dim=1), dim=-1)


# ------------------------------------------------------------------------------------------- sets


@dataclass
class BenchModel:
    key: str
    make: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    family: str
    depthwise: bool
    csv_model: str | None = None
    csv_width: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def example(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return torch.randn(*self.input_shape, generator=g)


def _img(r: int) -> tuple[int, ...]:
    return (1, 3, r, r)


PHONE_MODELS: list[BenchModel] = [
    BenchModel("mnasnet_a1", lambda: MnasNetA1(), _img(224), "MnasNet", True, "MnasNet-A1 (pytorchcv)", "1.0"),
    BenchModel("mobilenetv1_w1", lambda: MobileNetV1(1.0), _img(224), "MobileNetV1", True, "MobileNetV1 (pytorchcv)", "1.0"),
    BenchModel("mobilenetv1_wd2", lambda: MobileNetV1(0.5), _img(224), "MobileNetV1", True, "MobileNetV1 (pytorchcv)", "0.5"),
    BenchModel("mobilenetv1_wd4", lambda: MobileNetV1(0.25), _img(224), "MobileNetV1", True, "MobileNetV1 (pytorchcv)", "0.25"),
    BenchModel("mobilenetv2_w1", lambda: MobileNetV2(1.0), _img(224), "MobileNetV2", True, "MobileNetV2 (pytorchcv)", "1.0"),
    BenchModel("mobilenetv2_wd2", lambda: MobileNetV2(0.5), _img(224), "MobileNetV2", True, "MobileNetV2 (pytorchcv)", "0.5"),
    BenchModel("mobilenetv2_wd4", lambda: MobileNetV2(0.25), _img(224), "MobileNetV2", True, "MobileNetV2 (pytorchcv)", "0.25"),
    BenchModel("mobilenetv3_large_w1", lambda: MobileNetV3("large", 1.0), _img(224), "MobileNetV3", True,
               "MobileNetV3-Large (pytorchcv)", "1.0"),
    BenchModel("mobilenetv3_large_wd2", lambda: MobileNetV3("large", 0.5), _img(224), "MobileNetV3", True,
               "MobileNetV3-Large (pytorchcv)", "0.5"),
    BenchModel("mobilenetv3_small_w1", lambda: MobileNetV3("small", 1.0), _img(224), "MobileNetV3", True,
               "MobileNetV3-Small (pytorchcv)", "1.0"),
    BenchModel("mobilenetv3_small_wd2", lambda: MobileNetV3("small", 0.5), _img(224), "MobileNetV3", True,
               "MobileNetV3-Small (pytorchcv)", "0.5"),
    BenchModel("proxylessnas_mobile", lambda: ProxylessMobile(), _img(224), "ProxylessNAS", True,
               "ProxylessNAS-Mobile (pytorchcv)", "1.0"),
    BenchModel("resnet18", lambda: ResNet((2, 2, 2, 2), 1.0), _img(224), "ResNet", False, "ResNet-18 (pytorchcv)", "1.0"),
    BenchModel("resnet18_wd4", lambda: ResNet((2, 2, 2, 2), 0.25), _img(224), "ResNet", False, "ResNet-18 (pytorchcv)",
               "0.25"),
    BenchModel("squeezenet_v1_1", lambda: SqueezeNet11(), _img(224), "SqueezeNet", False, "SqueezeNet 1.1 (pytorchcv)", ""),
]

#: further rows of the same source and devices (benchmarks/data/mobile_ml_benchmark_rows.csv, added 2026-11-30): every
#: width or depth variant in qed-usc/mobile-ml-benchmark's tflite_cnn_e2e.csv of a family above whose class builds it
#: with another width or block count (pytorchcv names: resnet10 = blocks (1, 1, 1, 1), ...)
EXTRA_PHONE_MODELS: list[BenchModel] = [
    *[BenchModel(f"resnet{2 * sum(b) + 2}", (lambda b=b: ResNet(b, 1.0)), _img(224), "ResNet", False,
                 f"resnet{2 * sum(b) + 2}", "") for b in ((1, 1, 1, 1), (2, 1, 1, 1), (2, 2, 1, 1), (2, 2, 2, 1))],
    BenchModel("resnet18_w3d4", lambda: ResNet((2, 2, 2, 2), 0.75), _img(224), "ResNet", False, "resnet18_w3d4", ""),
    BenchModel("resnet18_wd2", lambda: ResNet((2, 2, 2, 2), 0.5), _img(224), "ResNet", False, "resnet18_wd2", ""),
    BenchModel("mobilenetv1_w3d4", lambda: MobileNetV1(0.75), _img(224), "MobileNetV1", True, "mobilenet_w3d4", ""),
    BenchModel("mobilenetv2_w3d4", lambda: MobileNetV2(0.75), _img(224), "MobileNetV2", True, "mobilenetv2_w3d4", ""),
    *[BenchModel(f"mobilenetv3_{size}_{tag}", (lambda size=size, w=w: MobileNetV3(size, w)), _img(224), "MobileNetV3",
                 True, f"mobilenetv3_{size}_{tag}", "")
      for size in ("large", "small") for tag, w in (("w3d4", 0.75), ("w5d4", 1.25), ("w7d20", 0.35))],
]
PHONE_MODELS += EXTRA_PHONE_MODELS


def _host_models() -> list[BenchModel]:
    m: list[BenchModel] = []
    # plain CNNs (no depthwise): widths x input sizes
    for w, r in ((8, 32), (16, 32), (32, 32), (16, 64), (32, 64), (64, 32), (24, 96), (48, 64)):
        m.append(BenchModel(f"plaincnn_w{w}_r{r}", (lambda w=w: PlainCNN(w, 3, 2)), _img(r), "PlainCNN", False))
    # small ResNets (residual adds)
    for w, r in ((0.25, 32), (0.5, 32), (0.25, 64)):
        m.append(BenchModel(f"resnet10_w{w}_r{r}", (lambda w=w: ResNet((1, 1, 1, 1), w, 10, "small", keep_last=False)),
                            _img(r), "ResNet", False))
    m.append(BenchModel("resnet18_wd4_r96", lambda: ResNet((2, 2, 2, 2), 0.25, 100), _img(96), "ResNet", False))
    # depthwise CNNs: MobileNetV2 / V1 / V3 at several widths and inputs
    for w, r in ((0.25, 64), (0.5, 64), (0.35, 96), (0.5, 96), (1.0, 64), (0.25, 128), (0.75, 96)):
        m.append(BenchModel(f"mobilenetv2_w{w}_r{r}", (lambda w=w: MobileNetV2(w, 100)), _img(r), "MobileNetV2", True))
    for w, r in ((0.25, 96), (0.5, 64), (0.5, 128)):
        m.append(BenchModel(f"mobilenetv1_w{w}_r{r}", (lambda w=w: MobileNetV1(w, 100)), _img(r), "MobileNetV1", True))
    for v, w, r in (("small", 0.5, 96), ("large", 0.5, 64), ("small", 1.0, 64)):
        m.append(BenchModel(f"mobilenetv3_{v}_w{w}_r{r}", (lambda v=v, w=w: MobileNetV3(v, w, 100)), _img(r),
                            "MobileNetV3", True))
    # transformer encoders: width, depth, sequence length
    for d, L, t in ((64, 2, 32), (128, 2, 64), (128, 4, 32), (256, 2, 64), (192, 3, 128), (64, 4, 128), (256, 4, 32),
                    (96, 2, 96)):
        heads = 4 if d % 4 == 0 else 2
        m.append(BenchModel(f"encoder_d{d}_l{L}_t{t}", (lambda d=d, L=L, h=heads: Encoder(d, h, L)), (1, t, d),
                            "Transformer", False))
    # BERT-style sentence encoders at MiniLM's width (the minilm task's teacher is 6 such layers, its students 2-4)
    for d, h, L, t in ((384, 12, 2, 128), (384, 12, 6, 128), (256, 8, 4, 64)):
        m.append(BenchModel(f"bert_d{d}_l{L}_t{t}", (lambda d=d, h=h, L=L: BertEncoder(d, h, L)), (1, t, d),
                            "BERT", False))
    return m


HOST_MODELS: list[BenchModel] = _host_models()


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of Conv2d / Linear / matmul layers by forward hooks (cross-check of the graph analysis)."""
    total = 0

    def conv_hook(mod: nn.Conv2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += out.numel() * k

    def lin_hook(mod: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * mod.in_features

    hs = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hs.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hs.append(mod.register_forward_hook(lin_hook))
    with torch.no_grad():
        model.eval()(x)
    for h in hs:
        h.remove()
    return total


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["PHONE_MODELS", "HOST_MODELS", "BenchModel", "count_macs", "count_params"]
