"""One network counts the same FLOPs in every format and precision (issue 26): the model-FLOPs convention of
``adaptc.analysis`` (2 per MAC plus the model's own elementwise arithmetic; quantize / dequantize, casts, layout
transposes, biases and clamps fused into a layer count 0), and budget messages that say how far a near miss is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from adaptc.analysis import analyze, analyze_onnx
from adaptc.core.quantity import Quantity, margin_text
from adaptc.profiles.budgets import verdict

FORMATS = ("onnx", "tflite")
SCHEMES = ("fp32", "fp16", "int8_static_per_channel", "int8_dynamic")


def _cbr(i: int, o: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o)]
    return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand + BN + ReLU6, 3x3 depthwise + BN + ReLU6, 1x1 project + BN (+ skip)."""

    def __init__(self, i: int, o: int, s: int, t: int) -> None:
        super().__init__()
        h = i * t
        self.conv = nn.Sequential(*([_cbr(i, h)] if t != 1 else []), _cbr(h, h, 3, s, h), _cbr(h, o, act=False))
        self.skip = s == 1 and i == o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.skip else self.conv(x)


class TinyMobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        blocks = [InvertedResidual(8, 8, 1, 1), InvertedResidual(8, 12, 2, 4), InvertedResidual(12, 12, 1, 4)]
        blocks += [InvertedResidual(12, 16, 2, 4), InvertedResidual(16, 16, 1, 4)]
        self.features = nn.Sequential(_cbr(3, 8, 3, 2), *blocks, _cbr(16, 64))
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from adaptc.exporters import get_exporter
    from adaptc.exporters.base import ExportRequest
    from adaptc.tasks.base import Split

    torch.manual_seed(0)
    model = TinyMobileNetV2().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # batch norms that are not the identity: their folding shows
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 64, 64)
    req = ExportRequest(model, (x,), calibration=Split((torch.randn(16, 3, 64, 64),)))
    out = tmp_path_factory.mktemp("flops")
    made = {}
    for fmt in FORMATS:
        ex = get_exporter(fmt)
        made[f"{fmt} fp32"] = fp32 = ex.export(req, "fp32", out / ex.filename("fp32")).path
        start = dataclasses.replace(req, fp32_artifact=fp32)  # the other schemes start from it, as a build's do
        for scheme in SCHEMES[1:]:
            made[f"{fmt} {scheme}"] = ex.export(start, scheme, out / ex.filename(scheme)).path
    return made


def test_flops_identical_across_formats_and_precisions(files: dict[str, Path]) -> None:
    costs = {k: analyze(p) for k, p in files.items()}
    flops = {k: c.flops for k, c in costs.items()}
    assert max(flops.values()) <= 1.005 * min(flops.values()), flops  # the acceptance bound: within 0.5%
    assert len(set(flops.values())) == 1, flops  # in fact identical for this network
    assert len({c.macs for c in costs.values()}) == 1
    fp32 = costs["onnx fp32"]
    # 2 per MAC, plus the residual adds and the global average pool; the ReLU6 clamps and the folded batch norms
    # cost nothing in any format
    adds = sum(o.flops for o in fp32.ops if o.op_type == "Add")
    mean = sum(o.flops for o in fp32.ops if o.op_type == "ReduceMean")
    # residual adds at 32 x 32 (8 channels), 16 x 16 (12) and 8 x 8 (16); the mean reads 64 channels of 8 x 8
    assert adds == 8 * 32 * 32 + 12 * 16 * 16 + 16 * 8 * 8 and mean == 64 * 8 * 8
    assert fp32.flops == 2 * fp32.macs + adds + mean
    for k, c in costs.items():
        assert sum(o.flops for o in c.ops) == c.flops, k  # the per-op table adds up to the total
        for o in c.ops:
            if o.op_type in ("QuantizeLinear", "DequantizeLinear", "QUANTIZE", "DEQUANTIZE", "Cast", "Clip"):
                assert o.flops == 0, (k, o.name)
    # the predictor still rates what the kernels compute: a quantize / dequantize pair costs time
    qdq = [o for o in costs["onnx int8_static_per_channel"].ops if o.op_type == "QuantizeLinear"]
    assert qdq and all(o.work_flops > 0 for o in qdq)


def _conv_graph(relu_reads_twice: bool = False) -> tuple[object, int]:
    """x (1,4,8,8) -> Conv 3x3 (8 channels, no bias) -> Add bias (1,8,1,1) -> Relu [-> Add(relu, conv)] -> y."""
    w = numpy_helper.from_array(torch.randn(8, 4, 3, 3).numpy(), "w")
    b = numpy_helper.from_array(torch.randn(1, 8, 1, 1).numpy(), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Add", ["c", "b"], ["cb"], name="bias"),
        helper.make_node("Relu", ["cb"], ["r"], name="relu"),
    ]
    out = "r"
    if relu_reads_twice:  # the biased output is read twice: nothing can fuse the clamp into the layer
        nodes.append(helper.make_node("Add", ["r", "cb"], ["y"], name="skip"))
        out = "y"
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 8, 8, 8])],
        [w, b],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), 8 * 8 * 8 * 4 * 9


def test_bias_and_clamp_after_a_layer_are_free() -> None:
    m, macs = _conv_graph()
    c = analyze_onnx(m)
    assert c.macs == macs and c.flops == 2 * macs
    by = {o.name: o for o in c.ops}
    assert by["bias"].flops == 0 and by["relu"].flops == 0
    assert by["bias"].work_flops == 512 and by["relu"].work_flops == 512  # what the kernels would compute


def test_clamp_counts_where_it_cannot_fuse() -> None:
    m, macs = _conv_graph(relu_reads_twice=True)
    c = analyze_onnx(m)
    by = {o.name: o for o in c.ops}
    assert by["bias"].flops == 0  # the bias still folds into the convolution
    assert by["relu"].flops == 512 and by["skip"].flops == 512
    assert c.flops == 2 * macs + 1_024


@pytest.mark.parametrize(
    ("value", "text"),
    [(601.8, "exceeds 600 MFLOPs by 0.3%"), (600.1, "by <0.1%"), (672.0, "by 12%"), (659.8, "by 10%")],
)
def test_budget_message_says_how_far_over(value: float, text: str) -> None:
    v = verdict("max_mflops", 600.0, Quantity.counted(value, "MFLOPs", "counted"))
    assert not v.fits and text in v.message and "by 0%" not in v.message


def test_margin_text() -> None:
    assert margin_text(-0.3) == "0.3%" and margin_text(0.26) == "0.3%"
    assert margin_text(0.0) == "0%" and margin_text(-0.01) == "<0.1%"
    assert margin_text(9.94) == "9.9%" and margin_text(9.96) == "10%" and margin_text(-37.4) == "37%"
    fits = verdict("max_mflops", 600.0, Quantity.counted(598.0, "MFLOPs", "counted"))
    assert fits.fits and "(0.3% headroom)" in fits.message
