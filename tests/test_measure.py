"""Host measurement in a fresh subprocess, with the real onnxruntime."""

from __future__ import annotations

from pathlib import Path

import torch

from adaptc.exporters.onnx import export_onnx_fp32
from adaptc.measure import measure


def test_measure_latency_and_memory(tmp_path: Path) -> None:
    m = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10)).eval()
    p = export_onnx_fp32(m, (torch.randn(1, 256),), tmp_path / "m.onnx", ("x",), ("y",))
    r = measure(p, "onnxruntime", [torch.randn(1, 256).numpy()], threads=1, runs=50, warmup=5)
    assert r.runs == 50 and r.threads == 1
    assert 0 < r.latency_ms_min <= r.latency_ms_median <= r.latency_ms_p90
    # ~1 MB of weights are copied into the session: the peak grows by at least that
    assert r.peak_memory_mb > 0.9
    assert "onnxruntime" in r.runtime_version
    assert "median of 50 runs" in r.method()


# ------------------------------------------------------------------ adaptc measure: any file, as a build measures

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from adaptc.errors import AdaptcError, ModelFileError
from adaptc.build.measure import input_specs, measure_file, parse_shape

from .conftest import run_cli


def _token_model(path: Path) -> Path:
    """A real ONNX graph over token ids with a dynamic sequence axis: Gather(table, ids) -> ReduceMean."""
    table = helper.make_tensor("table", TensorProto.FLOAT, [50, 16], np.random.default_rng(0).standard_normal(800))
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    g = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["emb"]),
         helper.make_node("ReduceMean", ["emb", "axes"], ["out"], keepdims=0)],
        "tokens", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 16])], [table, axes])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    m = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
    return export_onnx_fp32(m, (torch.randn(1, 64),), tmp_path_factory.mktemp("mlp") / "m.onnx", ("x",), ("y",))


def test_measure_file_onnx_with_host_estimate(mlp_onnx: Path) -> None:
    r = measure_file(mlp_onnx, runs=20, warmup=2, device="host")
    assert r.runtime == "onnxruntime" and len(r.sha256) == 64 and r.size_bytes == mlp_onnx.stat().st_size
    assert r.inputs == [{"name": "x", "dtype": "float32", "shape": [1, 64],
                         "source": "synthetic: integers 1, floats standard normal (seed 0)"}]
    assert 0 < r.host.latency_ms_min <= r.host.latency_ms_median <= r.host.latency_ms_p90 and r.host.runs == 20
    # the host profile describes this machine: the estimate comes with its error against the measurement
    assert r.estimate["device"] == "host" and r.estimate["threads"] == 1
    assert r.estimate_error["latency"] == pytest.approx(
        (r.estimate["latency_ms"] - r.host.latency_ms_median) / r.host.latency_ms_median)
    # another device: an estimate, but no "error" (different hardware)
    other = measure_file(mlp_onnx, runs=5, warmup=1, device="pixel8")
    assert other.estimate["device"] == "pixel8" and other.estimate_error is None
    assert any("not expected to agree" in n for n in other.notes)


def test_measure_file_dynamic_axes_and_integer_inputs(tmp_path: Path) -> None:
    p = _token_model(tmp_path / "tok.onnx")
    assert input_specs(p, "onnxruntime")[0].shape == ("batch", "seq")
    with pytest.raises(AdaptcError, match=r"input 'ids' has a dynamic dimension 'seq' at axis 1.*--shape ids=1xN"):
        measure_file(p, runs=2)
    r = measure_file(p, runs=5, warmup=1, shapes={"ids": (1, 32)})
    assert r.inputs[0]["shape"] == [1, 32] and r.inputs[0]["dtype"] == "int64"
    assert any("integer inputs are all 1" in n for n in r.notes)
    with pytest.raises(AdaptcError, match="names no input of the file: idz"):
        measure_file(p, shapes={"idz": (1, 32)})
    with pytest.raises(AdaptcError, match="has 2 dimensions"):
        measure_file(p, shapes={"ids": (32,)})
    # the user's own arrays, matched by name; an id beyond the table fails in the runtime: one clear error
    np.savez(tmp_path / "in.npz", ids=np.full((1, 8), 3, dtype=np.int64))
    assert measure_file(p, runs=3, warmup=1, inputs=tmp_path / "in.npz").inputs[0]["shape"] == [1, 8]
    np.savez(tmp_path / "bad.npz", ids=np.full((1, 8), 99, dtype=np.int64))
    with pytest.raises(ModelFileError, match="does not run in onnxruntime"):
        measure_file(p, runs=3, inputs=tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(2), b=np.ones(2))
    with pytest.raises(AdaptcError, match="holds a, b; the file's inputs are ids"):
        measure_file(p, inputs=tmp_path / "other.npz")


def test_measure_file_tflite(tmp_path: Path) -> None:
    from adaptc.exporters import ExportRequest
    from adaptc.exporters.tflite import convert_fp32

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
    p = convert_fp32(ExportRequest(model=m, example_inputs=(torch.randn(1, 3, 16, 16),)), tmp_path / "m.tflite")
    r = measure_file(p, runs=10, warmup=2)
    assert r.runtime == "tflite" and r.inputs[0]["shape"] == [1, 3, 16, 16]
    assert "LiteRT" in r.host.runtime_version and r.host.latency_ms_median > 0
    with pytest.raises(AdaptcError, match="TFLite files run at their exported shape 1x3x16x16"):
        measure_file(p, shapes={r.inputs[0]["name"]: (1, 3, 32, 32)})


def test_measure_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        measure_file(tmp_path / "none.onnx")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelFileError, match="not an .onnx, .tflite or .mlpackage file"):
        measure_file(tmp_path / "notes.txt")
    (tmp_path / "broken.onnx").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelFileError, match="not a readable ONNX file"):
        measure_file(tmp_path / "broken.onnx")
    (tmp_path / "m.mlpackage").mkdir()
    with pytest.raises(AdaptcError, match="CoreML models run only on macOS"):
        measure_file(tmp_path / "m.mlpackage")
    assert parse_shape("input_ids=1x128") == ("input_ids", (1, 128))
    for bad in ("input_ids", "x=1xa", "x=0x3", "=1x2"):
        with pytest.raises(AdaptcError, match="--shape wants NAME=DIMS"):
            parse_shape(bad)


def test_measure_cli(mlp_onnx: Path, tmp_path: Path) -> None:
    r = run_cli("measure", str(mlp_onnx), "--runs", "5", "--warmup", "1", "--device", "host", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["host"]["runs"] == 5 and d["estimate"]["device"] == "host" and "latency" in d["estimate_error"]
    r = run_cli("measure", str(mlp_onnx), "--runs", "5")
    assert r.returncode == 0 and "(measured: 5 runs after 10 warm-up" in r.stdout and "inputs   x float32 1x64 (synthetic" in r.stdout
    (tmp_path / "notes.txt").write_text("hello")
    r = run_cli("measure", str(tmp_path / "notes.txt"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "not an .onnx, .tflite" in r.stderr
    r = run_cli("measure", str(mlp_onnx), "--shape", "x")
    assert r.returncode == 2 and "--shape wants NAME=DIMS" in r.stderr


def test_measure_build_folder(digits_task, tmp_path: Path) -> None:
    import adaptc
    from adaptc.build.measure import measure_build

    adaptc.export("digits", "pixel8", tmp_path / "b", formats=["onnx"], runs=10)
    (tmp_path / "b" / "model.int8.onnx").unlink()  # a file gone from the folder is a note, not a failure
    device, rows, notes = measure_build(tmp_path / "b", runs=5, warmup=1)
    assert device == "pixel8" and [r.file for r in rows] == ["model.onnx"]
    r = rows[0]
    assert r.measurement.host.threads == 1 and r.estimated_ms > 0 and r.recorded_host_ms > 0
    assert notes == ["model.int8.onnx: not in the folder"]
    out = run_cli("measure", str(tmp_path / "b"), "--runs", "5", "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["device"] == "pixel8" and d["rows"][0]["file"] == "model.onnx"
    out = run_cli("measure", str(tmp_path / "b"), "--device", "host")
    assert out.returncode == 2 and "apply to one file" in out.stderr
