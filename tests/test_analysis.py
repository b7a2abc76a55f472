"""Cost analysis against hand-computed numbers for a small conv net and a small MLP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from adaptc import analyze
from adaptc.analysis import analyze_onnx
from adaptc.errors import ModelFileError
from adaptc.exporters.onnx import export_onnx_fp32


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = self.c2(x)
        x = self.dw(x)
        return self.fc(x.mean(dim=(2, 3)))


def test_conv_net_by_hand(tmp_path: Path) -> None:
    p = export_onnx_fp32(SmallCNN().eval(), (torch.randn(1, 3, 16, 16),), tmp_path / "cnn.onnx", ("x",), ("y",))
    c = analyze(p)
    # conv1: 8 out ch * 16*16 * (3 in ch * 3*3) = 55,296; conv2 (stride 2): 16 * 8*8 * 8*9 = 73,728
    # depthwise: 16 * 8*8 * (1 * 3*3) = 9,216; linear: 16*10 = 160
    assert c.macs == 55_296 + 73_728 + 9_216 + 160
    convs = sorted((o for o in c.ops if o.op_type == "Conv"), key=lambda o: -o.macs)
    assert [o.macs for o in convs] == [73_728, 55_296, 9_216]
    assert [o.op_class for o in convs] == ["conv", "conv", "depthwise_conv"]
    # params: 3*8*9+8, 8*16*9+16, 16*1*9+16, 16*10+10
    assert c.params == 224 + 1_168 + 160 + 170
    assert c.weight_bytes_at == {"fp32": 1_722 * 4, "fp16": 1_722 * 2, "int8": 1_722}
    assert c.stored_weight_bytes == 1_722 * 4
    # liveness: conv1 output (8*16*16 floats = 8,192 B) and its ReLU output are live together: 16,384 B
    assert c.peak_activation_bytes == 16_384
    assert c.input_bytes == 3 * 16 * 16 * 4 and c.output_bytes == 40
    assert c.flops >= 2 * c.macs  # plus pooling element ops (ReLUs after a layer are fused: free)


def test_mlp_by_hand(tmp_path: Path) -> None:
    mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    p = export_onnx_fp32(mlp, (torch.randn(1, 32),), tmp_path / "mlp.onnx", ("x",), ("y",))
    c = analyze(p)
    assert c.macs == 32 * 64 + 64 * 10
    assert c.params == 32 * 64 + 64 + 64 * 10 + 10
    # FLOPs: 2 per MAC; the ReLU on the first layer's output is fused into it (free in every format), though its
    # kernel computes 64 (what the predictor rates it by)
    assert c.flops == 2 * (32 * 64 + 64 * 10)
    assert sum(o.work_flops for o in c.ops) == c.flops + 64
    # gemm1 output (256 B) + relu output (256 B) at the ReLU
    assert c.peak_activation_bytes == 512
    assert c.precision_macs == {"fp32": 2_688}
    # batch size scales activations and MACs, not parameters
    c4 = analyze_onnx(p, batch=4)
    assert c4.macs == 4 * c.macs and c4.params == c.params and c4.peak_activation_bytes == 4 * 512


def test_hand_built_graph_liveness_frees_after_last_use() -> None:
    # x -> A(Relu) -> a ; a -> B(Relu) -> b ; (a, b) -> C(Add) -> y.  a lives until C.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])
    g = helper.make_graph([
        helper.make_node("Relu", ["x"], ["a"], name="A"),
        helper.make_node("Relu", ["a"], ["b"], name="B"),
        helper.make_node("Add", ["a", "b"], ["y"], name="C"),
    ], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    c = analyze_onnx(m)
    # at B: a + b live (x freed after A) = 8,000; at C: a + b + y = 12,000
    assert c.peak_activation_bytes == 12_000 and c.peak_at == "C"
    assert c.flops == 3_000 and c.macs == 0 and c.params == 0


def test_quantized_mlp_weight_precision(tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    p = export_onnx_fp32(mlp, (torch.randn(1, 32),), tmp_path / "mlp.onnx", ("x",), ("y",))

    class R:
        def __init__(self) -> None:
            self.d = [{"x": np.random.default_rng(i).standard_normal((4, 32)).astype(np.float32)} for i in range(4)]

        def get_next(self):  # noqa: ANN202
            return self.d.pop() if self.d else None

    q = tmp_path / "mlp.int8.onnx"
    quantize_static(str(p), str(q), R(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    c = analyze(q)
    assert c.params == 2_762
    assert c.macs == 2_688 and c.precision_macs == {"int8": 2_688}
    # int8 weights (2,688 B) + int32 biases ((64+10)*4 B)
    assert c.stored_weight_bytes == 2_688 + 74 * 4
    assert c.quant_param_bytes > 0
    assert all(o.precision == "int8" for o in c.ops if o.macs)


def test_analyze_module_and_bad_files(tmp_path: Path) -> None:
    c = analyze(SmallCNN().eval(), (torch.randn(1, 3, 16, 16),))
    assert c.params == 1_722
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        analyze(bad)
    with pytest.raises(ModelFileError, match="does not exist"):
        analyze(tmp_path / "missing.onnx")


def test_shapes_completed_where_onnx_inference_stops(tmp_path: Path) -> None:
    """A transformer exported with a dynamic batch builds its attention mask with Range over computed bounds,
    which ONNX shape inference does not evaluate: the MACs must still all be counted."""
    from adaptc.tasks.zoo import TransformerClassifier

    m = TransformerClassifier(vocab=100, num_classes=4, dim=32, depth=2, num_heads=4, ffn=64, max_len=16).eval()
    ids = torch.randint(1, 100, (1, 16))
    dyn = export_onnx_fp32(m, (ids,), tmp_path / "dyn.onnx", ("ids",), ("y",), dynamic_batch=True)
    fixed = export_onnx_fp32(m, (ids,), tmp_path / "fixed.onnx", ("ids",), ("y",), dynamic_batch=False)
    # per layer: q, k, v, o (16 x 32 x 32 each), two attention matmuls (4 heads x 16 x 16 x 8), FFN (2 x 16 x 32 x 64)
    per_layer = 4 * 16 * 32 * 32 + 2 * 4 * 16 * 16 * 8 + 2 * 16 * 32 * 64
    expected = 2 * per_layer + 32 * 4
    assert analyze(fixed).macs == expected
    assert analyze(dyn).macs == expected
