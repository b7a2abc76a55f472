"""One estimate per network and runtime whatever the entry point (issue 29): a module, its ONNX file and its TFLite
file (made by adaptc's own exporters: litert-torch, torch.onnx) agree for the tflite runtime; the default runtime is
the file's own; onnxruntime on ARM64 runs int8 QDQ graphs faster than float32 and fp16 graphs no faster."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import adaptc
from adaptc.exporters import ExportRequest, get_exporter
from adaptc.tasks import Split

pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch")


class _InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, ReLU6, 3x3 depthwise (stride 2: symmetric padding TFLite cannot express),
    ReLU6, 1x1 project, residual add when the shape allows."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int = 4):
        super().__init__()
        mid = c_in * expand
        self.body = nn.Sequential(
            nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )  # fmt: skip
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.skip else y


def mobilenet_like() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        _InvertedResidual(16, 24, 2), _InvertedResidual(24, 24, 1), _InvertedResidual(24, 32, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip


class _Basic(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.b(self.a(x)))


def resnet_like() -> nn.Module:
    """A 7x7 stride-2 stem (pad 3), a max pooling, two basic blocks, mean over the map, a classifier."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 32, 7, 2, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))  # fmt: skip
            self.blocks = nn.Sequential(_Basic(32), _Basic(32))
            self.fc = nn.Linear(32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.blocks(self.stem(x)).mean((2, 3)))

    return Net()


def transformer_like() -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(128, 4, 256, dropout=0.0, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(128, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.enc(x).mean(1))

    return Net()


NETS = {
    "mobilenet": (mobilenet_like, (1, 3, 96, 96)),
    "resnet": (resnet_like, (1, 3, 96, 96)),
    "transformer": (transformer_like, (1, 64, 128)),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[nn.Module, torch.Tensor, Path, Path]]:
    d = tmp_path_factory.mktemp("entry")
    out = {}
    for name, (make, shape) in NETS.items():
        torch.manual_seed(0)
        model = make().eval()
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        req = ExportRequest(model=model, example_inputs=(x,), input_names=("x",), output_names=("y",))
        onnx_f = get_exporter("onnx").export(req, "fp32", d / f"{name}.onnx").path
        tfl_f = get_exporter("tflite").export(req, "fp32", d / f"{name}.tflite").path
        out[name] = (model, x, onnx_f, tfl_f)
    return out


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("device", ["pixel8", "lowend-a53"])
def test_module_onnx_and_tflite_get_one_estimate(exported: dict, name: str, device: str) -> None:
    model, x, onnx_f, tfl_f = exported[name]
    est = {
        "module": adaptc.predict(model, device, runtime="tflite", example_input=x).latency_ms,
        "onnx": adaptc.predict(onnx_f, device, runtime="tflite").latency_ms,
        "tflite": adaptc.predict(tfl_f, device, runtime="tflite").latency_ms,
    }
    ref = est["tflite"]
    assert all(abs(v / ref - 1) <= 0.05 for v in est.values()), est


def test_the_onnx_graph_is_seen_as_the_converter_makes_it(exported: dict) -> None:
    _, _, onnx_f, tfl_f = exported["mobilenet"]
    p = adaptc.predict(onnx_f, "pixel8", runtime="tflite")
    clips = [o for o in p.ops if o.op_type == "Clip"]
    assert clips and all(o.bound == "fused" for o in clips)  # ReLU6 is the convolution's fused activation
    tfl_pads = sum(o.op_type == "PAD" for o in adaptc.predict(tfl_f, "pixel8").ops)
    assert tfl_pads and sum(o.op_type == "PAD" for o in p.ops) == tfl_pads  # each stride-2 conv's explicit PAD
    assert any("as the TFLite converter makes it" in n for n in p.notes)


def test_the_default_runtime_is_the_files_own(exported: dict) -> None:
    _, _, onnx_f, tfl_f = exported["resnet"]
    assert adaptc.predict(onnx_f, "pixel8").runtime == "onnxruntime"
    assert adaptc.predict(tfl_f, "pixel8").runtime == "tflite"


def test_onnxruntime_on_arm64_int8_faster_and_fp16_not(exported: dict, tmp_path: Path) -> None:
    model, x, onnx_f, _ = exported["mobilenet"]
    calib = Split(inputs=(torch.randn(32, *x.shape[1:], generator=torch.Generator().manual_seed(1)),))
    req = ExportRequest(model=model, example_inputs=(x,), input_names=("x",), output_names=("y",),
                        calibration=calib, fp32_artifact=onnx_f)  # fmt: skip
    ex = get_exporter("onnx")
    int8_f = ex.export(req, "int8_static_per_channel", tmp_path / "m.int8.onnx").path
    fp16_f = ex.export(req, "fp16", tmp_path / "m.fp16.onnx").path
    for device in ("pixel8", "pixel4", "lowend-a53"):
        fp32 = adaptc.predict(onnx_f, device).latency_ms
        int8 = adaptc.predict(int8_f, device)
        assert int8.runtime == "onnxruntime" and int8.latency_ms < fp32, (device, int8.latency_ms, fp32)
        assert any("ARM64" in n for n in int8.notes)
        fp16 = adaptc.predict(fp16_f, device)
        assert fp16.latency_ms >= 0.95 * fp32, (device, fp16.latency_ms, fp32)  # no native fp16 kernels
        assert any("float32" in n for n in fp16.notes)
