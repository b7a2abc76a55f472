"""ONNX export and int8 quantization, checked in onnxruntime on real task data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from adaptc.errors import ExportError
from adaptc.exporters import ExportRequest, get_exporter
from adaptc.exporters.parity import check_parity
from adaptc.measure import open_runner
from adaptc.tasks import predict_torch


def _request(task) -> ExportRequest:
    return ExportRequest(model=task.model, example_inputs=task.example_inputs, input_names=task.input_names,
                         output_names=task.output_names, calibration=task.train)


def test_fp32_export_is_exact(digits_task, tmp_path: Path) -> None:
    ex = get_exporter("onnx")
    f = ex.export(_request(digits_task), "fp32", tmp_path / "m.onnx")
    d = ex.describe(f.path)
    assert d["inputs"][0]["name"] == "image" and d["inputs"][0]["shape"][1:] == [1, 8, 8]
    assert d["outputs"][0]["name"] == "logits"
    ref = predict_torch(digits_task.model, digits_task.test)
    res = check_parity(open_runner("onnxruntime", f.path, 1), digits_task, ref)
    assert res.max_abs_diff < 1e-4 and res.cosine > 0.999999 and res.top1_agreement == 1.0
    assert res.metric == pytest.approx(res.reference_metric)


def test_int8_static_per_channel_keeps_accuracy(digits_task, tmp_path: Path) -> None:
    ex = get_exporter("onnx")
    req = _request(digits_task)
    fp32 = ex.export(req, "fp32", tmp_path / "m.onnx")
    req.fp32_artifact = fp32.path
    q = ex.export(req, "int8_static_per_channel", tmp_path / "m.int8.onnx")
    d = ex.describe(q.path)
    assert d["op_counts"].get("QuantizeLinear", 0) > 0 and d["op_counts"].get("DequantizeLinear", 0) > 0
    assert "int8" in d["initializer_bytes_by_dtype"]
    # weights 4x smaller (plus int32 biases and scales)
    assert fp32.path.stat().st_size / q.path.stat().st_size > 3.0
    ref = predict_torch(digits_task.model, digits_task.test)
    res = check_parity(open_runner("onnxruntime", q.path, 1), digits_task, ref)
    assert res.reference_metric - res.metric <= 0.01
    assert res.cosine > 0.999
    assert q.recipe["per_channel"] is True and q.recipe["calibration"].startswith("minmax over ")


def test_static_needs_calibration(digits_task, tmp_path: Path) -> None:
    req = _request(digits_task)
    req.calibration = None
    with pytest.raises(ExportError, match="calibration"):
        get_exporter("onnx").export(req, "int8_static_per_channel", tmp_path / "m.int8.onnx")


class Unexportable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # data-dependent Python control flow on a tensor value cannot be traced into a static graph
        return x * 2 if float(x.sum()) > 0 else x.cumsum(0).nonzero().float().sum() * x


def test_unexportable_model_gives_export_error(tmp_path: Path) -> None:
    req = ExportRequest(model=Unexportable(), example_inputs=(torch.randn(1, 4),), input_names=("x",),
                        output_names=("y",))
    with pytest.raises(ExportError) as ei:
        get_exporter("onnx").export(req, "fp32", tmp_path / "u.onnx")
    assert str(ei.value).startswith("onnx: the model cannot be exported")
    assert not (tmp_path / "u.onnx").exists()  # nothing half-written


def test_transformer_static_int8_quantizes_matmuls_only(token_task, tmp_path: Path) -> None:
    ex = get_exporter("onnx")
    req = _request(token_task)
    q = ex.export(req, "int8_static_per_channel", tmp_path / "t.int8.onnx")
    assert q.recipe["op_types_to_quantize"] == ["MatMul", "Gemm", "Gather"]
    d = ex.describe(q.path)
    assert d["embedding_bytes"] > 0 and d["op_counts"].get("Softmax", 0) > 0
    ref = predict_torch(token_task.model, token_task.test)
    res = check_parity(open_runner("onnxruntime", q.path, 1), token_task, ref)
    assert res.reference_metric - res.metric <= 0.01 and res.cosine > 0.999


@pytest.mark.parametrize("which", ["digits_task", "token_task"])
def test_every_onnx_scheme_keeps_parity(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    task = request.getfixturevalue(which)
    ex = get_exporter("onnx")
    req = _request(task)
    ref = predict_torch(task.model, task.test)
    fp32 = ex.export(req, "fp32", tmp_path / "m.onnx")
    req.fp32_artifact = fp32.path
    for scheme in ex.schemes():
        f = fp32 if scheme == "fp32" else ex.export(req, scheme, tmp_path / ex.filename(scheme))
        res = check_parity(ex.load(f.path), task, ref)
        assert res.drop <= 0.01 and res.cosine > 0.99, (which, scheme, res)
        if scheme.startswith("int8"):  # biases, norms and scales stay wider: about 3x on a model this small
            d = ex.describe(f.path)
            assert d["weight_bytes_excluding_embeddings"] * 2.5 < ex.describe(fp32.path)["weight_bytes_excluding_embeddings"]
