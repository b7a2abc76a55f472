"""TFLite cost analysis against hand-computed numbers (the same conventions as tests/test_analysis.py for ONNX)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from adaptc import analyze
from adaptc.analysis.tflite_graph import analyze_tflite
from adaptc.errors import ModelFileError
from adaptc.predict import calibration as mb

from .test_analysis import SmallCNN


def _litert(model: nn.Module, x: torch.Tensor, dest: Path) -> Path:
    import litert_torch

    litert_torch.convert(model.eval(), (x,)).export(str(dest))
    return dest


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _litert(SmallCNN(), torch.randn(1, 3, 16, 16), tmp_path_factory.mktemp("tfl") / "cnn.tflite")


def test_conv_net_by_hand(cnn_file: Path) -> None:
    c = analyze(cnn_file)
    assert c.format == "tflite"
    # NHWC: conv1 16*16*8 outputs x (3*3*3) = 55,296; conv2 (stride 2) 8*8*16 x (3*3*8) = 73,728;
    # depthwise 8*8*16 x 3*3 = 9,216; fully connected 16*10 = 160 -- the same as the ONNX analysis
    assert c.macs == 55_296 + 73_728 + 9_216 + 160
    by_type = {o.op_type: o for o in c.ops}
    convs = sorted((o for o in c.ops if o.op_type == "CONV_2D"), key=lambda o: -o.macs)
    assert [o.macs for o in convs] == [73_728, 55_296]
    assert convs[0].gemm == (64, 72, 16) and convs[1].gemm == (256, 27, 8)
    assert by_type["DEPTHWISE_CONV_2D"].macs == 9_216 and by_type["DEPTHWISE_CONV_2D"].op_class == "depthwise_conv"
    assert by_type["FULLY_CONNECTED"].op_class == "matmul" and by_type["FULLY_CONNECTED"].macs == 160
    # params: 3*8*9+8, 8*16*9+16, 16*9+16, 16*10+10 (float32 weights and biases; shape tensors are not parameters)
    assert c.params == 224 + 1_168 + 160 + 170
    assert c.stored_weight_bytes == 1_722 * 4
    assert c.weight_bytes_at == {"fp32": 1_722 * 4, "fp16": 1_722 * 2, "int8": 1_722}
    # ops in order: TRANSPOSE (NCHW -> NHWC), CONV_2D (+ fused ReLU), PAD (explicit, before the stride-2 conv),
    # CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE, MEAN, FULLY_CONNECTED. Liveness peak at the PAD: conv1 output
    # 16*16*8*4 = 8,192 B and the padded 18*18*8*4 = 10,368 B are live together.
    assert [o.op_type for o in c.ops][:3] == ["TRANSPOSE", "CONV_2D", "PAD"]
    assert c.peak_activation_bytes == 8_192 + 10_368
    assert c.peak_at is not None and c.peak_at.startswith("pad_")
    assert c.input_bytes == 3 * 16 * 16 * 4 and c.output_bytes == 40
    assert c.precision_macs == {"fp32": c.macs}
    assert c.flops >= 2 * c.macs  # plus pooling (MEAN) element ops; fused ReLU is free


def test_mlp_by_hand(tmp_path: Path) -> None:
    mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    c = analyze_tflite(_litert(mlp, torch.randn(1, 32), tmp_path / "mlp.tflite"))
    assert [o.op_type for o in c.ops] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]  # ReLU fused into the first
    assert c.macs == 32 * 64 + 64 * 10
    assert c.params == 32 * 64 + 64 + 64 * 10 + 10
    assert c.flops == 2 * c.macs
    # input (128 B) and first output (256 B) live together at the first layer
    assert c.peak_activation_bytes == 128 + 256
    assert [o.gemm for o in c.ops] == [(1, 32, 64), (1, 64, 10)]


def test_same_counts_as_onnx(cnn_file: Path, tmp_path: Path) -> None:
    from adaptc.exporters.onnx import export_onnx_fp32

    onnx_cost = analyze(export_onnx_fp32(SmallCNN().eval(), (torch.randn(1, 3, 16, 16),), tmp_path / "c.onnx"))
    tfl = analyze(cnn_file)
    assert (tfl.macs, tfl.params) == (onnx_cost.macs, onnx_cost.params)


def test_fully_integer_graph_by_hand(tmp_path: Path) -> None:
    m = mb.Micro("c", (8, 8, 8), (mb.Layer("conv", out=8, k=3, act="relu"), mb.Layer("conv", out=8, k=3)))
    c = analyze(mb.write_tflite(m, tmp_path / "c.int8.tflite", int8=True))
    assert c.precision_macs == {"int8": 2 * 8 * 8 * 8 * 9 * 8}
    assert all(o.precision == "int8" for o in c.ops) and c.input_precision == "int8"
    # int8 weights 2 x 8*3*3*8 = 1,152 B, int32 biases 2 x 8 x 4 = 64 B
    assert c.params == 2 * (8 * 9 * 8 + 8)
    assert c.stored_weight_bytes == 1_152 + 64
    # scales (4 B) + zero points (8 B): input 1+1, weights and biases 8+8 each, two outputs 1+1
    assert c.quant_param_bytes == 12 + 4 * 96 + 2 * 12
    assert c.peak_activation_bytes == 2 * 8 * 8 * 8  # int8 input + output of one conv
    assert c.weight_bytes_at["int8"] == c.params


def test_bad_tflite_files(tmp_path: Path) -> None:
    txt = tmp_path / "model.tflite"
    txt.write_text("not a flatbuffer at all")
    with pytest.raises(ModelFileError, match="not a TFLite flatbuffer"):
        analyze(txt)
    trunc = tmp_path / "trunc.tflite"
    trunc.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 8)
    with pytest.raises(ModelFileError):
        analyze(trunc)
    with pytest.raises(ModelFileError, match="does not exist"):
        analyze(tmp_path / "missing.tflite")
