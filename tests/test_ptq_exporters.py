"""Static int8 of every format honours ``ExportRequest.ptq`` (range estimator, calibration samples, layers kept in
float), on a small Conv-BN-ReLU6 / depthwise / Linear network at 32x32 calibrated on 64 random images, one of
which carries an outlier pixel. Real toolchains (onnxruntime, PT2E + LiteRT, coremltools), nothing mocked; each
file is made once (module-scoped fixtures) and the tests read the shared files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from adaptc.core.ptq import CALIBRATIONS, PTQConfig
from adaptc.errors import ExportError
from adaptc.exporters import ExportedFile, ExportRequest, get_exporter
from adaptc.quant.ranges import kl_threshold, magnitude_histogram, mse_range, percentile_threshold
from adaptc.quant.registry import calibrations_for, check_calibration
from adaptc.tasks.base import Split

SCHEME = "int8_static_per_channel"
#: the depthwise conv (16 channels, 3x3): the layer kept in float
FLOAT_LAYER = "features.1.0"
OUTLIER = 60.0


def _block(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()
    )


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(_block(3, 16, 3, 2), _block(16, 16, 3, groups=16), _block(16, 32, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@pytest.fixture(scope="module")
def net() -> Net:
    torch.manual_seed(0)
    m = Net()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    return m.eval()


@pytest.fixture(scope="module")
def data() -> tuple[Split, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    cal = torch.randn(64, 3, 32, 32, generator=g)
    cal[0, 0, 5, 5] = OUTLIER  # one pixel in 196,608 values: a 99.999th percentile clips it
    return Split((cal,)), torch.randn(16, 3, 32, 32, generator=g)


def _request(net: Net, data: tuple[Split, torch.Tensor], ptq: PTQConfig) -> ExportRequest:
    return ExportRequest(model=net, example_inputs=(torch.zeros(1, 3, 32, 32),), calibration=data[0], ptq=ptq)


def _export_methods(fmt: str, net: Net, data: tuple[Split, torch.Tensor], out: Path) -> dict[str | None, ExportedFile]:
    """One file per method the format offers (``samples`` above the split's size: capped), and the default."""
    ex = get_exporter(fmt)
    files: dict[str | None, ExportedFile] = {}
    for method in (None, *ex.calibrations()):
        req = _request(net, data, PTQConfig(calibration=method, samples=1000))  # type: ignore[arg-type]
        files[method] = ex.export(req, SCHEME, out / f"{method or 'default'}{ex.suffix}")
    return files


@pytest.fixture(scope="module")
def onnx_files(net: Net, data: tuple[Split, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _export_methods("onnx", net, data, tmp_path_factory.mktemp("ptq-onnx"))


@pytest.fixture(scope="module")
def tflite_files(net: Net, data: tuple[Split, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _export_methods("tflite", net, data, tmp_path_factory.mktemp("ptq-tflite"))


def _cosine_to_torch(fmt: str, path: Path, net: Net, x: torch.Tensor) -> float:
    runner = get_exporter(fmt).load(path)
    y = np.concatenate([runner.run([x[i : i + 1].numpy()])[0] for i in range(len(x))]).ravel()
    with torch.no_grad():
        ref = net(x).numpy().ravel()
    return float(y @ ref / np.linalg.norm(y) / np.linalg.norm(ref))


def _onnx_input_scale(path: Path) -> float:
    m = onnx.load(str(path))
    init = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    (q,) = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == m.graph.input[0].name]
    return float(init[q.input[1]])


def _tflite_ops(path: Path) -> list[tuple[str, list[str]]]:
    """(op, dtypes of its inputs) for every operator of a .tflite file, in order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    sg = model.subgraphs[0]
    out = []
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = ops[max(code.builtinCode, code.deprecatedBuiltinCode)]
        out.append((name, [types[sg.tensors[i].type] for i in op.inputs if i >= 0]))
    return out


def test_every_format_offers_every_method_and_refuses_others() -> None:
    for fmt in ("onnx", "tflite", "coreml"):
        assert get_exporter(fmt).calibrations() == CALIBRATIONS == calibrations_for(fmt)
        check_calibration(fmt, None)  # the format's own default
    with pytest.raises(ExportError, match=r"onnx: calibration method 'kl' is not supported \(supported: minmax, "):
        check_calibration("onnx", "kl")
    with pytest.raises(ValueError, match="unknown calibration method"):
        PTQConfig(calibration="kl")  # type: ignore[arg-type]
    assert PTQConfig().describe() == "default" and PTQConfig(calibration="mse", equalize=True).describe() == (
        "mse + equalization"
    )
    assert PTQConfig.from_dict(PTQConfig(float_layers=("a",)).to_dict()) == PTQConfig(float_layers=("a",))


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_every_method_runs_close_to_torch(fmt: str, net: Net, data: tuple, request: pytest.FixtureRequest) -> None:
    files = request.getfixturevalue(f"{fmt}_files")
    default = {"onnx": "minmax", "tflite": "mse"}[fmt]
    for method, f in files.items():
        assert f.recipe["calibration"] == f"{method or default} over 64 train samples", f.recipe  # capped
        assert _cosine_to_torch(fmt, f.path, net, data[1]) > 0.95, (fmt, method)
    # the format's own default is today's file, byte for byte: ONNX min-max, PT2E the HistogramObserver (mse)
    assert files[None].path.read_bytes() == files[default].path.read_bytes()


def test_onnx_ranges_clip_the_outlier(onnx_files: dict) -> None:
    scale = {m: _onnx_input_scale(f.path) for m, f in onnx_files.items()}
    # min-max spans the outlier (about (60 + 4.6) / 255); the 99.999th percentile clips it (about 9.2 / 255)
    assert scale["minmax"] > 0.2 and scale["percentile"] < 0.25 * scale["minmax"], scale
    assert scale["entropy"] < scale["minmax"] and scale["mse"] < scale["minmax"], scale


def test_tflite_ranges_clip_the_outlier(tflite_files: dict) -> None:
    describe = get_exporter("tflite").describe
    scale = {m: describe(f.path)["inputs"][0]["quantization"]["scale"] for m, f in tflite_files.items()}
    assert scale["minmax"] > 0.2 and scale["percentile"] < 0.25 * scale["minmax"], scale
    assert scale["entropy"] < 0.25 * scale["minmax"] and scale["mse"] < scale["minmax"], scale


def test_tflite_relu6_outputs_are_observed_after_the_clamp(tflite_files: dict) -> None:
    """Every conv of the net ends in ReLU6: its int8 output covers [0, 6] at most (scale <= 6/255, zero point -128),
    not the pre-activation's negatives (litert-torch's own annotator matches relu only; with it alone the first conv's
    output step here was 0.13, 5.5x coarser)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite_files["minmax"].path.read_bytes(), 0)
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sg, seen = model.subgraphs[0], 0
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if ops[max(code.builtinCode, code.deprecatedBuiltinCode)] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            q = sg.tensors[op.outputs[0]].quantization
            assert float(q.scale[0]) <= 6.0 / 255 + 1e-6 and int(q.zeroPoint[0]) == -128, (q.scale, q.zeroPoint)
            seen += 1
    assert seen == 3


def test_onnx_float_layer(net: Net, data: tuple, tmp_path: Path) -> None:
    f = get_exporter("onnx").export(
        _request(net, data, PTQConfig(float_layers=(FLOAT_LAYER,))), SCHEME, tmp_path / "f.onnx"
    )
    assert f.recipe["float_layers"] == [FLOAT_LAYER] and f.recipe["float_nodes"] >= 1
    m = onnx.load(str(f.path))
    producer = {o: n.op_type for n in m.graph.node for o in n.output}
    weights = {}
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            weights[(n.op_type, group)] = producer.get(n.input[1], "initializer")
    # the depthwise conv (BatchNorm fused into it by the exporter) keeps float weights; the others are int8
    assert weights == {
        ("Conv", 1): "DequantizeLinear",  # both 1-group convs (same key): int8
        ("Conv", 16): "initializer",
        ("Gemm", 1): "DequantizeLinear",
    }, weights
    assert sum(producer.get(n.input[1]) == "DequantizeLinear" for n in m.graph.node if n.op_type == "Conv") == 2
    assert _cosine_to_torch("onnx", f.path, net, data[1]) > 0.95


def test_tflite_float_layer(net: Net, data: tuple, tmp_path: Path) -> None:
    f = get_exporter("tflite").export(
        _request(net, data, PTQConfig(float_layers=(FLOAT_LAYER,))), SCHEME, tmp_path / "f.tflite"
    )
    assert f.recipe["float_layers"] == [FLOAT_LAYER]
    ops = _tflite_ops(f.path)
    layers = {name: dtypes for name, dtypes in ops if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")}
    assert layers["DEPTHWISE_CONV_2D"] == ["float32", "float32", "float32"], ops  # float input, weights, bias
    assert layers["CONV_2D"][:2] == ["int8", "int8"] and layers["FULLY_CONNECTED"][:2] == ["int8", "int8"], ops
    names = [n for n, _ in ops]
    i = names.index("DEPTHWISE_CONV_2D")
    assert names[i - 1] == "DEQUANTIZE" and names[i + 1] == "QUANTIZE", names  # int8 neighbours
    assert _cosine_to_torch("tflite", f.path, net, data[1]) > 0.95


def test_coreml_float_layer_structure(net: Net, data: tuple, tmp_path: Path) -> None:
    """W8A8 with a non-default range estimator and a float layer: its weights stay float16 (no
    constexpr_affine_dequantize), the others int8; the structure check knows it. (CoreML runs only on macOS.)"""
    ex = get_exporter("coreml")
    req = _request(net, data, PTQConfig(calibration="entropy", samples=32, float_layers=(FLOAT_LAYER,)))
    f = ex.export(req, SCHEME, tmp_path / "f.mlpackage")
    assert f.recipe["calibration"] == "entropy over 32 train samples" and f.recipe["float_layers"] == [FLOAT_LAYER]
    d = ex.describe(f.path)
    conv = d["layer_weights"]["conv"]["elements_by_dtype"]
    assert conv == {"float16": 16 * 9, "int8": 16 * 3 * 9 + 32 * 16}, conv
    assert d["layer_weights"]["linear"]["elements_by_dtype"] == {"int8": 320}
    assert d["compute_op_counts"].get("quantize", 0) > 0
    check = ex.verify(req, f.path, SCHEME)
    assert check["passed"], check["failed"]


def test_bad_float_layer_is_refused(net: Net, data: tuple, tmp_path: Path) -> None:
    for fmt in ("onnx", "tflite"):
        req = _request(net, data, PTQConfig(float_layers=("features.1.O",)))
        with pytest.raises(ExportError, match=r"float layer 'features.1.O' is not a module of the model; did you"):
            get_exporter(fmt).export(req, SCHEME, tmp_path / f"bad.{fmt}")


def test_range_searches_on_a_gaussian() -> None:
    x = np.random.default_rng(0).standard_normal(200_000)
    x[0] = 10.0  # one value in 200,000: beyond the 99.999th percentile
    hist, edges = np.histogram(x, 2048)
    mags, amax = magnitude_histogram(hist, edges[0], edges[-1])
    assert 3.5 < percentile_threshold(mags, amax) < 5.0 and amax == pytest.approx(10.0)
    assert 2.5 < kl_threshold(mags, amax, levels=128) < 6.0

    def err(a: float, b: float) -> float:  # squared error of 256-level affine quantization over [a, b]
        s = (b - a) / 255
        z = np.round(-a / s)
        return float(((x - (np.clip(np.round(x / s) + z, 0, 255) - z) * s) ** 2).sum())

    a, b = mse_range(hist, edges, edges[0], edges[-1])
    assert b < 9.0 and err(a, b) < err(edges[0], edges[-1])
