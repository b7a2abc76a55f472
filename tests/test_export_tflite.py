"""TFLite export (litert-torch, ai-edge-quantizer) of a CNN and a transformer in every scheme, checked in LiteRT.

Each model is converted once per scheme (module-scoped fixtures); the tests read the shared files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from adaptc.errors import AdaptcError, ExportError
from adaptc.exporters import ExportRequest, get_exporter
from adaptc.exporters.parity import check_parity
from adaptc.tasks import predict_torch

SCHEMES = ("fp32", "int8_static_per_channel", "int8_static_per_tensor", "int8_dynamic", "int8_weight_only", "fp16")


def _export_all(task, out: Path) -> dict[str, dict]:
    ex = get_exporter("tflite")
    req = ExportRequest(model=task.model, example_inputs=task.example_inputs, input_names=task.input_names,
                        output_names=task.output_names, calibration=task.train)
    ref = predict_torch(task.model, task.test)
    res = {}
    for scheme in SCHEMES:
        f = ex.export(req, scheme, out / ex.filename(scheme))
        if scheme == "fp32":
            req.fp32_artifact = f.path
        res[scheme] = {"file": f, "describe": ex.describe(f.path),
                       "parity": check_parity(ex.load(f.path, threads=1), task, ref)}
    return res


@pytest.fixture(scope="module")
def cnn_files(digits_task, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return _export_all(digits_task, tmp_path_factory.mktemp("tflite-cnn"))


@pytest.fixture(scope="module")
def transformer_files(token_task, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return _export_all(token_task, tmp_path_factory.mktemp("tflite-transformer"))


def test_schemes_and_file_names() -> None:
    ex = get_exporter("tflite")
    assert set(ex.schemes()) == set(SCHEMES)
    assert ex.filename("int8_static_per_channel") == "model.int8.tflite"
    assert ex.filename("fp32") == "model.tflite"


@pytest.mark.parametrize("which", ["cnn", "transformer"])
def test_parity_in_litert_for_every_scheme(which: str, request: pytest.FixtureRequest) -> None:
    files = request.getfixturevalue(f"{which}_files")
    fp32 = files["fp32"]["parity"]
    assert fp32.max_abs_diff < 1e-4 and fp32.cosine > 0.999999 and fp32.top1_agreement == 1.0
    for scheme in SCHEMES[1:]:
        p = files[scheme]["parity"]
        assert p.drop <= 0.01, (scheme, p)          # the 1-point gate, against the torch model
        assert p.cosine > 0.99 and p.top1_agreement >= 0.98, (scheme, p)
    assert files["fp16"]["parity"].cosine > 0.99999  # fp16 weights, fp32 arithmetic


def test_cnn_structure_and_sizes(cnn_files: dict) -> None:
    d = {s: cnn_files[s]["describe"] for s in SCHEMES}
    ops = d["fp32"]["op_counts"]
    # 3 convolutions (the first, with one input channel, becomes a depthwise one) and 2 linear layers
    assert ops.get("CONV_2D", 0) + ops.get("DEPTHWISE_CONV_2D", 0) == 3 and ops.get("FULLY_CONNECTED") == 2
    assert d["fp32"]["inputs"][0]["dtype"] == "float32" and d["fp32"]["inputs"][0]["shape"] == [1, 1, 8, 8]
    # static int8: int8 in and out (quantized with the file's own scale), int8 weights
    st = d["int8_static_per_channel"]
    assert st["inputs"][0]["dtype"] == "int8" and "quantization" in st["inputs"][0]
    assert st["buffer_bytes_by_dtype"]["int8"] > 0.9 * sum(st["buffer_bytes_by_dtype"].values())
    assert d["int8_dynamic"]["inputs"][0]["dtype"] == "float32" and "int8" in d["int8_dynamic"]["buffer_bytes_by_dtype"]
    fp16 = d["fp16"]["buffer_bytes_by_dtype"]
    assert fp16["float16"] > 10 * fp16.get("float32", 0)  # weights float16; biases stay float32
    size = {s: cnn_files[s]["file"].path.stat().st_size for s in SCHEMES}
    for s in ("int8_static_per_channel", "int8_static_per_tensor", "int8_dynamic", "int8_weight_only"):
        assert size["fp32"] / size[s] > 3.5, (s, size)
    assert 1.8 < size["fp32"] / size["fp16"] < 2.1
    assert cnn_files["int8_static_per_channel"]["file"].recipe["annotated_ops"]
    assert "litert-torch" in cnn_files["fp32"]["file"].recipe["converter"]


def test_transformer_token_inputs_and_embedding_table(transformer_files: dict) -> None:
    d = {s: transformer_files[s]["describe"] for s in SCHEMES}
    for s in SCHEMES:
        assert d[s]["inputs"][0]["dtype"] == "int32", s  # int64 token ids become int32
        assert d[s]["op_counts"].get("EMBEDDING_LOOKUP", 0) >= 1
    # every int8 scheme stores the embedding table in int8: dynamic-range int8 through ai-edge-quantizer, static
    # int8 (PT2E leaves it float) by an ai-edge-quantizer pass on the lookup after conversion
    for s in ("int8_static_per_channel", "int8_static_per_tensor", "int8_dynamic", "int8_weight_only"):
        assert set(d[s]["embedding_bytes_by_dtype"]) == {"int8"}, (s, d[s]["embedding_bytes_by_dtype"])
        assert d[s]["embedding_bytes"] * 3.9 < d["fp32"]["embedding_bytes"], s
    assert "per row" in transformer_files["int8_static_per_channel"]["file"].recipe["embedding_tables"]
    # the PT2E part of the static file is untouched: its activations stay quantized
    assert d["int8_static_per_channel"]["op_counts"].get("QUANTIZE", 0) >= 1
    # without the embedding table, int8 weights are ~4x smaller than fp32
    fp32_w = d["fp32"]["weight_bytes_excluding_embeddings"]
    for s in ("int8_static_per_channel", "int8_dynamic"):
        assert fp32_w / d[s]["weight_bytes_excluding_embeddings"] > 3.0, s
    assert d["int8_dynamic"]["embedding_bytes"] * 3.9 < d["fp32"]["embedding_bytes"]
    # the predictor costs a lookup by the rows it reads, not by the whole table
    from adaptc.predict import predict

    from adaptc.analysis import analyze

    path = transformer_files["fp32"]["file"].path
    cost = {o.name: o for o in analyze(path).ops}
    look = [o for o in predict(path, "host", runtime="tflite").ops if o.op_type == "EMBEDDING_LOOKUP"]
    assert look
    for o in look:  # read the selected rows, write them: twice the output, whatever the table's size
        assert o.bytes_moved == 2 * cost[o.name].output_bytes < cost[o.name].bytes_moved


def test_exporter_load_and_run(cnn_files: dict, digits_task) -> None:
    ex = get_exporter("tflite")
    path = cnn_files["int8_static_per_channel"]["file"].path
    x = digits_task.test.inputs[0][:3].numpy()
    out = ex.run(path, [x])[0]  # int8 I/O is (de)quantized by the runner: callers pass and get floats
    assert out.shape == (3, 10) and out.dtype == np.float32
    ref = digits_task.model(torch.from_numpy(x)).detach().numpy()
    assert (out.argmax(1) == ref.argmax(1)).all()


class LogCumSumExp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logcumsumexp(x, dim=-1)


def test_op_without_lowering_names_format_and_op(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Linear(8, 8), LogCumSumExp(), nn.Linear(8, 2)).eval()
    req = ExportRequest(model=m, example_inputs=(torch.randn(1, 8),), input_names=("x",), output_names=("y",))
    with pytest.raises(ExportError) as ei:
        get_exporter("tflite").export(req, "fp32", tmp_path / "m.tflite")
    msg = str(ei.value)
    assert msg.startswith("tflite: ") and "aten.logcumsumexp" in msg and "\n" not in msg
    assert not (tmp_path / "m.tflite").exists() and not list(tmp_path.iterdir())  # nothing half-written


def test_unknown_scheme_and_missing_calibration(digits_task, tmp_path: Path) -> None:
    ex = get_exporter("tflite")
    req = ExportRequest(model=digits_task.model, example_inputs=digits_task.example_inputs)
    with pytest.raises(ExportError, match="calibration"):
        ex.export(req, "int8_static_per_channel", tmp_path / "m.tflite")
    with pytest.raises(ExportError, match="not supported"):
        ex.export(req, "int4", tmp_path / "m.tflite")
    with pytest.raises(AdaptcError, match="unknown format"):
        get_exporter("tensorrt")


def _tensor_names(path: Path) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(input and output, constant, intermediate) tensor names of a .tflite file's first subgraph."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(Path(path).read_bytes(), 0))
    sg = m.subgraphs[0]
    io = set(sg.inputs) | set(sg.outputs)
    const = {i for i, t in enumerate(sg.tensors) if t.buffer > 0 and m.buffers[t.buffer].data is not None
             and len(m.buffers[t.buffer].data) > 0}  # fmt: skip
    names = [t.name or b"" for t in sg.tensors]
    return ([names[i] for i in sorted(io)], [names[i] for i in sorted(const - io)],
            [n for i, n in enumerate(names) if i not in io | const])  # fmt: skip


@pytest.mark.parametrize("which", ["cnn", "transformer"])
def test_activations_have_short_names(which: str, request: pytest.FixtureRequest) -> None:
    """litert-torch names each tensor after its module path; the files keep those names on inputs, outputs and
    weights and name the activations t<index> (the files still pass parity: test above). The schemes made by
    ai-edge-quantizer from the fp32 file inherit its names (the tensors it adds are named after their weights)."""
    files = request.getfixturevalue(f"{which}_files")
    for scheme in ("fp32", "int8_static_per_channel"):
        io, const, inter = _tensor_names(files[scheme]["file"].path)
        assert inter and all(n.startswith(b"t") and len(n) <= 8 for n in inter), (scheme, inter[:5])
        assert any(len(n) > 8 for n in const), scheme  # weights keep their module path
        assert not any(n.startswith(b"t") and n[1:].isdigit() for n in io), (scheme, io)


def test_compact_names_keeps_the_function(digits_task, tmp_path: Path) -> None:
    """Renaming is the only change: a file renamed again is left alone, and the renamed file computes exactly what
    litert-torch's own file computes."""
    import litert_torch

    from adaptc.exporters.tflite_names import compact_tensor_names

    raw = tmp_path / "raw.tflite"
    litert_torch.convert(digits_task.model.eval(), tuple(digits_task.example_inputs)).export(str(raw))
    short = tmp_path / "short.tflite"
    short.write_bytes(raw.read_bytes())
    info = compact_tensor_names(short)
    assert info is not None and info["renamed"] > 0 and info["bytes_after"] < info["bytes_before"]
    assert short.stat().st_size == info["bytes_after"] and compact_tensor_names(short) is None
    ex = get_exporter("tflite")
    x = [t[:16].numpy() for t in digits_task.test.inputs]
    a, b = ex.load(raw, threads=1), ex.load(short, threads=1)
    assert a.input_names == b.input_names
    np.testing.assert_array_equal(np.concatenate([a.run([xi[i : i + 1] for xi in x])[0] for i in range(16)]),
                                  np.concatenate([b.run([xi[i : i + 1] for xi in x])[0] for i in range(16)]))  # fmt: skip
