"""CoreML export (coremltools via torch.export) of a CNN and a transformer in every scheme.

On Linux the .mlpackage is saved, reloaded with ``skip_model_load=True`` and its MIL program is checked
against the torch model's structure; numerical parity needs macOS and is skipped elsewhere with that reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from adaptc.core.io import sha256_path
from adaptc.errors import AdaptcError, ExportError
from adaptc.exporters import ExportRequest, get_exporter
from adaptc.exporters.coreml import WEIGHT_FILE, structure_check
from adaptc.tasks.digits import DigitsCNN

SCHEMES = ("fp32", "fp16", "int8_weight_only", "int8_static_per_channel", "int8_static_per_tensor")


def _export_all(task, out: Path) -> dict[str, dict]:
    ex = get_exporter("coreml")
    req = ExportRequest(model=task.model, example_inputs=task.example_inputs, input_names=task.input_names,
                        output_names=task.output_names, calibration=task.train)
    res = {}
    for scheme in SCHEMES:
        f = ex.export(req, scheme, out / ex.filename(scheme))
        res[scheme] = {"file": f, "describe": ex.describe(f.path), "check": ex.verify(req, f.path, scheme)}
    return res


@pytest.fixture(scope="module")
def cnn_packages(digits_task, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return _export_all(digits_task, tmp_path_factory.mktemp("coreml-cnn"))


@pytest.fixture(scope="module")
def transformer_packages(token_task, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return _export_all(token_task, tmp_path_factory.mktemp("coreml-transformer"))


def _wbytes(d: dict, dtype: str) -> int:
    return d["weight_bytes_by_dtype"].get(dtype, 0)


@pytest.mark.parametrize("which", ["cnn", "transformer"])
def test_structure_matches_torch_model(which: str, request: pytest.FixtureRequest) -> None:
    pk = request.getfixturevalue(f"{which}_packages")
    for scheme in SCHEMES:
        check = pk[scheme]["check"]
        assert check["passed"], (scheme, check["failed"], check["checks"])
        names = {c["check"] for c in check["checks"]}
        assert "linear ops" in names and "linear weight elements" in names
    cnt = pk["fp16"]["describe"]["compute_op_counts"]
    if which == "cnn":
        assert cnt["conv"] == 3 and cnt["linear"] == 2
    else:
        assert cnt["linear"] == 2 * 6 + 1 and cnt["matmul"] == 2 * 2 and cnt.get("gather", 0) >= 1


@pytest.mark.parametrize("which", ["cnn", "transformer"])
def test_weight_dtypes_per_scheme(which: str, request: pytest.FixtureRequest) -> None:
    pk = request.getfixturevalue(f"{which}_packages")
    d = {s: pk[s]["describe"] for s in SCHEMES}
    assert set(d["fp32"]["weight_bytes_by_dtype"]) == {"float32"}
    assert set(d["fp16"]["weight_bytes_by_dtype"]) == {"float16"}
    for lw in d["fp16"]["layer_weights"].values():
        assert set(lw["elements_by_dtype"]) == {"float16"}
    # int8 weights (linear_quantize_weights): every layer over the 2,048-element threshold is int8
    wo = d["int8_weight_only"]
    assert wo["op_counts"].get("constexpr_affine_dequantize", 0) > 0 and _wbytes(wo, "int8") > 0
    # W8A8 from the PT2E graph: int8 weights and quantize/dequantize ops on activations
    for s in ("int8_static_per_channel", "int8_static_per_tensor"):
        ops = d[s]["op_counts"]
        assert ops.get("quantize", 0) > 0 and ops.get("dequantize", 0) > 0, s
        for kind in ("conv", "linear", "embedding"):  # embedding tables: int8 after conversion (PT2E leaves them)
            if kind in d[s]["layer_weights"]:
                assert set(d[s]["layer_weights"][kind]["elements_by_dtype"]) == {"int8"}, (s, kind)
        if which == "transformer":
            assert "per row" in pk[s]["file"].recipe["embedding_tables"]
    # weight.bin: fp16 half of fp32
    wb = {s: d[s]["weight_file_bytes"] for s in SCHEMES}
    assert 1.8 < wb["fp32"] / wb["fp16"] < 2.1


def test_cnn_sizes_and_package(cnn_packages: dict) -> None:
    wb = {s: cnn_packages[s]["describe"]["weight_file_bytes"] for s in SCHEMES}
    for s in ("int8_weight_only", "int8_static_per_channel"):
        assert wb["fp32"] / wb[s] > 3.5, (s, wb)  # int8 weights: ~4x smaller than fp32
    p = cnn_packages["fp16"]["file"].path
    assert p.is_dir() and p.suffix == ".mlpackage" and (p / WEIGHT_FILE).is_file() and (p / "Manifest.json").is_file()
    assert not (p / "executorch_debug_handle_mapping.json").exists()  # debug metadata is not shipped
    assert len(sha256_path(p)) == 64
    assert not [x for x in p.parent.iterdir() if x.name.startswith(".adaptc-tmp")]  # written atomically
    d = cnn_packages["fp16"]["describe"]
    assert d["inputs"] == [{"name": "image", "dtype": "float32", "shape": [1, 1, 8, 8]}]
    assert d["outputs"][0]["name"] == "logits"
    assert cnn_packages["int8_weight_only"]["file"].precision == "fp16"   # int8 weights, fp16 arithmetic
    assert cnn_packages["int8_static_per_channel"]["file"].precision == "int8"


def test_transformer_token_inputs_are_int32(transformer_packages: dict) -> None:
    for s in SCHEMES:
        d = transformer_packages[s]["describe"]
        assert d["inputs"][0]["name"] == "ids" and d["inputs"][0]["dtype"] == "int32", s
    assert transformer_packages["fp16"]["describe"]["embedding_bytes"] > 0


def test_structure_check_detects_a_different_model(cnn_packages: dict, digits_task) -> None:
    # the teacher's package checked against a half-width CNN: same op counts, different weight elements
    other = DigitsCNN(width=0.5).eval()
    check = structure_check(other, digits_task.example_inputs, cnn_packages["fp16"]["describe"], "fp16")
    assert not check["passed"]
    assert "conv weight elements" in check["failed"] and "linear weight elements" in check["failed"]
    # and a scheme whose dtype does not match what is stored
    check = structure_check(digits_task.model, digits_task.example_inputs, cnn_packages["fp16"]["describe"], "fp32")
    assert not check["passed"] and any("float32" in f for f in check["failed"])


def test_no_coreml_runtime_off_macos(cnn_packages: dict) -> None:
    ex = get_exporter("coreml")
    if sys.platform == "darwin":
        pytest.skip("CoreML runs on macOS: the runner exists there")
    with pytest.raises(AdaptcError, match="macOS"):
        ex.load(cnn_packages["fp16"]["file"].path)


@pytest.mark.skipif(sys.platform != "darwin", reason="CoreML prediction needs macOS")
def test_numerical_parity_on_macos(cnn_packages: dict, digits_task) -> None:  # pragma: no cover - macOS only
    from adaptc.exporters.parity import check_parity
    from adaptc.tasks import predict_torch

    ref = predict_torch(digits_task.model, digits_task.test)
    for s in SCHEMES:
        res = check_parity(get_exporter("coreml").load(cnn_packages[s]["file"].path), digits_task, ref)
        assert res.drop <= 0.01 and res.cosine > 0.99, s


class Det(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.det(x.view(-1, 2, 2, 2))


def test_op_without_conversion_names_format_and_op(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Linear(8, 8), Det()).eval()
    req = ExportRequest(model=m, example_inputs=(torch.randn(1, 8),), input_names=("x",), output_names=("y",))
    with pytest.raises(ExportError) as ei:
        get_exporter("coreml").export(req, "fp16", tmp_path / "m.fp16.mlpackage")
    msg = str(ei.value)
    assert msg.startswith("coreml: ") and "linalg_det" in msg and "\n" not in msg
    assert not list(tmp_path.iterdir())


class TinyCRNN(nn.Module):
    """The shape of a text recogniser: convolutions, then a two-layer BiLSTM over the columns, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.rnn = nn.LSTM(16 * 4, 32, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)  # (N, 16, 4, W/2)
        f = f.permute(0, 3, 1, 2).flatten(2)  # (N, W/2, 64)
        return self.head(self.rnn(f)[0])


@pytest.mark.parametrize("scheme", ["fp32", "int8_weight_only", "int8_static_per_channel"])
def test_lstm_converts_as_one_op_per_layer(scheme: str, tmp_path: Path) -> None:
    """An LSTM is one MIL lstm op per layer holding its weights once (not unrolled per time step, a copy of the
    weights each), and int8 programs store its weights in int8."""
    from adaptc.tasks.base import Split

    torch.manual_seed(0)
    m = TinyCRNN().eval()
    x = torch.randn(64, 1, 8, 24)
    req = ExportRequest(model=m, example_inputs=(x[:1],), input_names=("image",), output_names=("scores",),
                        calibration=Split((x,)))  # fmt: skip
    ex = get_exporter("coreml")
    f = ex.export(req, scheme, tmp_path / ex.filename(scheme))
    check = ex.verify(req, f.path, scheme)
    assert check["passed"], (check["failed"], check["checks"])
    d = ex.describe(f.path)
    assert d["compute_op_counts"]["lstm"] == 2 and d["compute_op_counts"].get("linear", 0) == 1
    lstm = d["layer_weights"]["lstm"]
    n = sum(p.numel() for k, p in m.rnn.named_parameters() if k.startswith("weight_"))
    assert lstm["elements"] == n
    want = "float32" if scheme == "fp32" else "int8"
    assert lstm["elements_by_dtype"] == {want: n}
    if scheme == "int8_static_per_channel":
        assert "lstm" in f.recipe
