"""The calibrated per-op predictor: behaviour, spec-sheet profiles, bad input. Real graphs, no mocks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

import adaptc
from adaptc.errors import AdaptcError, ModelFileError, ProfileError
from adaptc.predict import PREDICTOR_VERSION, predict, sustained_throughput
from adaptc.predict import calibration as mb

from .conftest import ROOT, run_cli


def _conv_chain(tmp: Path, c: int, hw: int = 28, n: int = 3) -> mb.Micro:
    return mb.Micro(f"conv{c}", (hw, hw, c), tuple(mb.Layer("conv", out=c, k=3, act="relu") for _ in range(n)))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pred")
    out: dict[str, Path] = {}
    for c in (8, 16, 32, 64):
        m = _conv_chain(d, c)
        out[f"onnx{c}"] = mb.write_onnx(m, d / f"c{c}.onnx")
        out[f"tfl{c}"] = mb.write_tflite(m, d / f"c{c}.tflite")
        out[f"tfl{c}_int8"] = mb.write_tflite(m, d / f"c{c}.int8.tflite", int8=True)
    return out


def test_latency_monotonic_in_flops(files: dict[str, Path]) -> None:
    for dev in ("pixel8", "host", "pixel4"):
        for rt, key in (("tflite", "tfl"), ("onnxruntime", "onnx")):
            lat = [predict(files[f"{key}{c}"], dev, runtime=rt).latency_ms for c in (8, 16, 32, 64)]
            assert lat == sorted(lat) and lat[-1] > 4 * lat[0], (dev, rt, lat)


def test_int8_faster_than_fp32_with_int8_figures(files: dict[str, Path]) -> None:
    prof = adaptc.load_profile("pixel8")
    assert prof.compute.int8_gops and prof.compute.int8_gops > prof.compute.fp32_gflops
    fp32 = predict(files["tfl64"], "pixel8")
    int8 = predict(files["tfl64_int8"], "pixel8")
    what_if = predict(files["tfl64"], "pixel8", precision="int8")
    assert int8.latency_ms < fp32.latency_ms and what_if.latency_ms < fp32.latency_ms
    assert int8.weights_mb < fp32.weights_mb
    assert {o.precision for o in int8.ops if o.op_class == "conv"} == {"int8"}
    assert any("what-if" in n for n in what_if.notes)


def test_thread_scaling(files: dict[str, Path]) -> None:
    one = predict(files["tfl64"], "pixel8", threads=1)
    four = predict(files["tfl64"], "pixel8", threads=4)
    assert four.threads == 4 and four.latency_ms < one.latency_ms < 4 * four.latency_ms


def test_per_op_breakdown_sums_to_latency(files: dict[str, Path]) -> None:
    p = predict(files["onnx32"], "host", runtime="onnxruntime")
    assert p.version == PREDICTOR_VERSION
    assert sum(o.time_ms for o in p.ops) + p.fixed_ms == pytest.approx(p.latency_ms, rel=1e-6)
    # onnxruntime fuses the ReLU into the convolution: costed as free
    assert {o.bound for o in p.ops if o.op_type == "Relu"} == {"fused"}
    assert all(o.time_ms > 0 for o in p.ops if o.op_type == "Conv")
    assert p.peak_memory_mb > p.weights_mb + p.activations_mb
    assert PREDICTOR_VERSION in p.method and "constants" in p.method


def test_memory_grows_with_weights(files: dict[str, Path]) -> None:
    small = predict(files["tfl8"], "host")
    big = predict(files["tfl64"], "host")
    assert big.weights_mb > small.weights_mb and big.peak_memory_mb > small.peak_memory_mb


def test_unknown_op_falls_back_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])
    w = numpy_helper.from_array(__import__("numpy").ones((256, 256), "float32"), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                           helper.make_node("FancyNorm", ["h"], ["y"], name="fancy", domain="com.example")],
                          "g", [x], [y], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    p_ = tmp_path / "custom.onnx"
    onnx.save(m, str(p_))
    with caplog.at_level(logging.WARNING):
        p = predict(p_, "pixel8", runtime="onnxruntime")
    assert p.unknown_ops == ["FancyNorm"]
    assert p.latency_ms > 0 and any("FancyNorm" in n for n in p.notes)
    assert any("FancyNorm" in r.getMessage() for r in caplog.records)
    r = run_cli("predict", str(p_), "--device", "pixel8", "--runtime", "onnxruntime")
    assert r.returncode == 0 and "FancyNorm" in r.stderr


def _spec_sheet_profile(tmp: Path, **compute: float) -> Path:
    data = {
        "schema_version": 1, "name": "myphone", "display_name": "My phone", "kind": "phone", "soc": "Some SoC",
        "os": "android",
        "cpu": {"cores": [{"name": "Cortex-A78", "count": 1, "ghz": 2.4}, {"name": "Cortex-A55", "count": 4, "ghz": 1.8}]},
        "compute": compute, "memory": {"ram_mb": 4096, "bandwidth_gbps": 10}, "budgets": {},
        "formats": ["tflite"], "quantization": ["int8_static_per_channel", "fp32"], "sources": ["spec sheet"],
    }
    p = tmp / "myphone.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_spec_sheet_only_profile(files: dict[str, Path], tmp_path: Path) -> None:
    path = _spec_sheet_profile(tmp_path, fp32_peak_gflops=38.4, int8_peak_gops=153.6)
    prof = adaptc.load_profile(path)
    assert prof.compute.fp32_gflops is None
    sustained, source = sustained_throughput(prof, "fp32")
    assert 0.2 * 38.4 < sustained < 1.2 * 38.4 and "peak" in source
    p = predict(files["tfl32"], path)
    assert p.latency_ms > 0 and any("spec-sheet" in n for n in p.notes)
    # the same phone described by its measured sustained figure gives the same kind of estimate
    p_int8 = predict(files["tfl32_int8"], path)
    assert p_int8.latency_ms < p.latency_ms
    # shipped spec-sheet profiles (no measurement from the phone)
    for name in ("pixel4", "galaxy-s10"):
        assert adaptc.load_profile(name).compute.fp32_peak_gflops
        assert predict(files["tfl32"], name).latency_ms > 0
    # an in-order spec-sheet profile is slower than an out-of-order one with the same peaks
    ino = yaml.safe_load(path.read_text())
    ino["cpu"]["cores"] = [{"name": "Cortex-A55", "count": 4, "ghz": 2.0}]
    (tmp_path / "inorder.yaml").write_text(yaml.safe_dump({**ino, "name": "inorder"}))
    assert predict(files["tfl32"], tmp_path / "inorder.yaml").latency_ms > p.latency_ms


def test_profile_missing_compute_is_a_clear_error(tmp_path: Path) -> None:
    path = _spec_sheet_profile(tmp_path)  # compute: {} -- neither sustained nor peak figures
    with pytest.raises(ProfileError, match="compute.fp32_gflops"):
        adaptc.load_profile(path)
    r = run_cli("predict", str(ROOT / "README.md"), "--device", str(path))
    assert r.returncode == 2 and "compute.fp32_gflops" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_inputs(files: dict[str, Path], tmp_path: Path) -> None:
    txt = tmp_path / "model.bin"
    txt.write_text("hello")
    with pytest.raises(ModelFileError, match="neither an ONNX"):
        predict(txt, "pixel8")
    with pytest.raises(AdaptcError, match="unknown precision"):
        predict(files["tfl8"], "pixel8", precision="int4")
    with pytest.raises(AdaptcError, match="unknown runtime"):
        predict(files["tfl8"], "pixel8", runtime="tvm")
    with pytest.raises(AdaptcError, match="example_input"):
        import torch

        predict(torch.nn.Linear(4, 4), "pixel8")
    for args in (("predict", str(txt), "--device", "pixel8"),
                 ("predict", str(files["tfl8"]), "--device", "pixel8", "--runtime", "tvm"),
                 ("predict", str(files["tfl8"]), "--device", "no-such-phone")):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("adaptc: error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_predict_module_and_cli_breakdown(files: dict[str, Path]) -> None:
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(16 * 8 * 8, 10))
    p = adaptc.predict(net, "pixel8", runtime="onnxruntime", example_input=torch.randn(1, 3, 8, 8))
    assert p.latency_ms > 0 and any(o.op_type == "Conv" for o in p.ops)
    r = run_cli("predict", str(files["tfl32"]), "--device", "pixel4", "--ops", "--top", "3")
    assert r.returncode == 0, r.stderr
    assert "CONV_2D" in r.stdout and "per-op estimate" in r.stdout and "method:" in r.stdout
    r = run_cli("predict", str(files["tfl32"]), "--device", "pixel4", "--json")
    d = json.loads(r.stdout)
    assert d["version"] == PREDICTOR_VERSION and len(d["ops"]) == 3 and d["constants_source"]


def test_profile_predictor_section_overrides(files: dict[str, Path], tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "device_profiles" / "pixel8.yaml").read_text())
    base = predict(files["tfl32"], "pixel8").latency_ms
    data["predictor"] = {"runtimes": {"tflite": {"efficiency": {"conv": {"fp32": 0.5}}}}}
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump({**data, "name": "slow"}))
    slow = predict(files["tfl32"], tmp_path / "slow.yaml")
    assert slow.latency_ms > 1.3 * base and "predictor.runtimes.tflite" in slow.constants_source
    data["predictor"] = {"runtimes": {"tflite": {"efficiency": {"convolution": {"fp32": 0.5}}}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**data, "name": "bad"}))
    with pytest.raises(ProfileError, match="unknown op class convolution"):
        adaptc.load_profile(tmp_path / "bad.yaml")


# ------------------------------------------------------------------ what onnxruntime really runs (host)


def _token_graph(path: Path, t: int = 32, d: int = 64) -> Path:
    """[1, T, D] -> (Add residual -> LayerNormalization) x 2: onnxruntime fuses each pair (SkipLayerNormalization)."""
    inits = [numpy_helper.from_array(np.ones(d, np.float32), "g"), numpy_helper.from_array(np.zeros(d, np.float32), "b")]
    nodes, cur = [], "x"
    for i in range(2):
        nodes.append(helper.make_node("Add", [cur, "x"], [f"a{i}"], name=f"add{i}"))
        nodes.append(helper.make_node("LayerNormalization", [f"a{i}", "g", "b"], [f"l{i}"], name=f"ln{i}", axis=-1))
        cur = f"l{i}"
    g = helper.make_graph(nodes, "skipln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, t, d])],
                          [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, t, d])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_onnxruntime_fusions_are_read_from_onnxruntime(tmp_path: Path) -> None:
    f = _token_graph(tmp_path / "skipln.onnx")
    p = predict(f, "host", runtime="onnxruntime")
    by = {o.name: o for o in p.ops}
    # the residual adds vanish into SkipLayerNormalization kernels, which are costed as such
    assert by["add0"].bound == "fused" and by["add1"].bound == "fused"
    assert by["ln0"].time_ms > 0 and by["ln1"].time_ms > 0
    # a phone profile has no onnxruntime of this machine to ask: the graph as exported
    ph = {o.name: o for o in predict(f, "pixel8", runtime="onnxruntime").ops}
    assert ph["add0"].bound != "fused"


def test_nchwc_fallback_convolutions_cost_more(tmp_path: Path) -> None:
    from adaptc.predict.ort_view import layout_view, nchwc_available

    if not nchwc_available():
        pytest.skip("onnxruntime uses no NCHWc layout on this machine (not x86 with AVX2 / AVX-512)")
    # an inverted residual at an odd width (11 -> 66 -> 11) cannot be blocked; at 16 -> 96 -> 16 it can
    def block(c: int, e: int) -> Path:
        m = mb.Micro(f"mb{c}", (28, 28, c), (mb.Layer("conv", out=e, k=1, act="relu6"),
                                             mb.Layer("dwconv", k=3, act="relu6"), mb.Layer("conv", out=c, k=1)) * 2)
        return mb.write_onnx(m, tmp_path / f"mb{c}.onnx")

    odd, even = block(11, 66), block(16, 96)
    v_odd, v_even = layout_view(str(odd)), layout_view(str(even))
    assert v_odd is not None and v_odd.fallback_nodes
    assert v_even is not None and not v_even.fallback_nodes
    p_odd = predict(odd, "host", runtime="onnxruntime")
    # where onnxruntime blocks some of the convolutions and not the others (AVX-512: 16-channel blocks), the
    # layout copies between them are costed; with AVX2's 8-channel blocks every convolution of the odd block
    # falls back to NCHW and there is nothing to reorder
    assert any("NCHWc reorder" in o.name for o in p_odd.ops) == bool(v_odd.reorder_tensors)
    # fewer MACs, yet not predicted faster in proportion: grouped depthwise kernels and layout copies
    p_even = predict(even, "host", runtime="onnxruntime")
    macs_ratio = (11 * 66) / (16 * 96)
    assert p_odd.latency_ms > macs_ratio * p_even.latency_ms


def test_slices_and_concats_have_their_own_fitted_cost(tmp_path: Path) -> None:
    from adaptc.measure.runtimes import open_runner

    m = mb.Micro("rot", (64, 128), (mb.Layer("rotate"),) * 4)
    files = {"onnxruntime": mb.write_onnx(m, tmp_path / "rot.onnx"), "tflite": mb.write_tflite(m, tmp_path / "rot.tflite")}
    x = mb.onnx_input(m)
    for rt, f in files.items():
        # two contiguous slices and a concat per layer; four half-rotations give the input back
        y = open_runner(rt, f, 1).run([x])[0]
        np.testing.assert_array_equal(np.asarray(y).reshape(x.shape), x)
        p = predict(f, "host", runtime=rt)
        kinds = {o.op_type: o.op_class for o in p.ops if o.time_ms > 0}
        assert set(kinds) == ({"Slice", "Concat"} if rt == "onnxruntime" else {"SLICE", "CONCATENATION"})
    # the shipped host constants carry a fitted "data" efficiency; a profile that halves it doubles the copies
    data = yaml.safe_load((ROOT / "device_profiles" / "host.yaml").read_text())
    eff = data["predictor"]["runtimes"]["tflite"]["efficiency"]
    assert eff["data"]["fp32"] > 0
    base = predict(files["tflite"], ROOT / "device_profiles" / "host.yaml")
    eff["data"] = {k: v / 10 for k, v in eff["data"].items()}
    (tmp_path / "slowcopy.yaml").write_text(yaml.safe_dump(data))
    slow = predict(files["tflite"], tmp_path / "slowcopy.yaml")
    copy_ms = sum(o.time_ms for o in base.ops if o.bound == "memory")
    assert slow.latency_ms > base.latency_ms + 2 * copy_ms
    # a spec-sheet profile without a "data" entry still costs them (one fraction of the bandwidth)
    assert predict(files["tflite"], "pixel8").latency_ms > 0


def test_quantize_nodes_onnxruntime_keeps_are_costed(tmp_path: Path) -> None:
    from adaptc.predict.ort_view import _optimized

    m = mb.Micro("isl", (28, 28, 32), (mb.Layer("conv", out=32, k=1, act="relu"), mb.Layer("dequant"),
                                        mb.Layer("act", act="hswish"), mb.Layer("quant"), mb.Layer("conv", out=32, k=1)))
    f = mb.quantize_onnx(mb.write_onnx(m, tmp_path / "isl.onnx"), tmp_path / "isl.int8.onnx", m)
    kept = {n.name for n in _optimized(str(f), "extended").graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert kept
    by = {o.name: o for o in predict(f, "host", runtime="onnxruntime").ops}
    # onnxruntime renames the outputs of some quantize nodes it keeps (int8 -> uint8 on x86): matched by node name
    for name in kept & set(by):
        assert by[name].bound != "fused", name


def _with_runtime_constants(tmp_path: Path, name: str, runtime: str = "onnxruntime", **changes: object) -> Path:
    """The host profile with some predictor constants of one runtime replaced (dotted keys below the runtime)."""
    data = yaml.safe_load((ROOT / "device_profiles" / "host.yaml").read_text())
    rt = data["predictor"]["runtimes"][runtime]
    for key, value in changes.items():
        *path, last = key.split(".")
        cur = rt
        for k in path:
            cur = cur.setdefault(k, {})
        cur[last] = value
    out = tmp_path / f"{name}.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


def test_float_convolutions_of_qdq_graphs_have_their_own_cost(tmp_path: Path) -> None:
    from adaptc.predict.ort_view import layout_view, nchwc_available

    if not nchwc_available():
        pytest.skip("onnxruntime uses no NCHWc layout on this machine (not x86 with AVX2 / AVX-512)")
    L = mb.Layer
    m = mb.Micro("res", (28, 28, 32), (L("conv", out=32, k=3, act="relu"), L("conv", out=32, k=3), L("add")) * 2)
    f32 = mb.write_onnx(m, tmp_path / "res.onnx")
    i8 = mb.quantize_onnx(f32, tmp_path / "res.int8.onnx", m)
    # onnxruntime keeps these convolutions float in the int8 graph (no QLinearConv): weights dequantized per run
    view = layout_view(str(i8))
    assert view is not None and view.fallback_nodes and "QLinearConv" not in view.op_counts
    prof = ROOT / "device_profiles" / "host.yaml"
    base_i8, base_f32 = predict(i8, prof, runtime="onnxruntime"), predict(f32, prof, runtime="onnxruntime")
    slow = _with_runtime_constants(tmp_path, "slowdq", **{"efficiency.conv_dequantized.fp32": 0.01})
    slow_i8 = predict(i8, slow, runtime="onnxruntime")
    assert slow_i8.latency_ms > 3 * base_i8.latency_ms
    assert predict(f32, slow, runtime="onnxruntime").latency_ms == pytest.approx(base_f32.latency_ms)


def test_memory_has_a_share_per_kernel(files: dict[str, Path], tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "device_profiles" / "pixel8.yaml").read_text())
    base = predict(files["tfl32"], "pixel8")
    data["predictor"] = {"runtimes": {"tflite": {"memory": {"node_kb": 1024.0}}}}
    (tmp_path / "heavy.yaml").write_text(yaml.safe_dump({**data, "name": "heavy"}))
    heavy = predict(files["tfl32"], tmp_path / "heavy.yaml")
    kernels = sum(1 for o in heavy.ops if o.bound != "free" and o.bound != "fused")
    # three convolutions (a relu fused into each): 1 MB per kernel
    assert kernels == 3
    assert heavy.peak_memory_mb == pytest.approx(base.peak_memory_mb + kernels, rel=1e-6)
    assert heavy.runtime_overhead_mb == pytest.approx(base.runtime_overhead_mb + kernels, rel=1e-6)


def test_int8_depthwise_off_the_channel_block_is_costed_apart(tmp_path: Path) -> None:
    from adaptc.predict.ort_view import nchwc_available

    if not nchwc_available():
        pytest.skip("onnxruntime's x86 int8 kernels only (no NCHWc layout on this machine)")
    files = {}
    for c in (24, 32):  # 24 is not a multiple of onnxruntime's 16-channel int8 block, 32 is
        m = mb.Micro(f"dw{c}", (28, 28, c), (mb.Layer("dwconv", k=3, act="relu6"),) * 2)
        files[c] = mb.quantize_onnx(mb.write_onnx(m, tmp_path / f"dw{c}.onnx"), tmp_path / f"dw{c}.int8.onnx", m)
    prof = ROOT / "device_profiles" / "host.yaml"
    data = yaml.safe_load(prof.read_text())
    assert "int8" in data["predictor"]["runtimes"]["onnxruntime"]["efficiency"]["depthwise_conv_fallback"]
    slow_prof = _with_runtime_constants(tmp_path, "slowdw", **{"efficiency.depthwise_conv_fallback.int8": 1e-4})
    for c, grows in ((24, True), (32, False)):
        base = predict(files[c], prof, runtime="onnxruntime").latency_ms
        slow = predict(files[c], slow_prof, runtime="onnxruntime").latency_ms
        assert (slow > 2 * base) if grows else slow == pytest.approx(base)


def test_int8_gemm_runs_as_qgemm_with_its_own_cost(tmp_path: Path) -> None:
    files = {}
    for tag in ("gemm", "matmul"):
        m = mb.Micro(f"lin_{tag}", (32, 128), (mb.Layer("fc", out=256),), tags=("gemm",) if tag == "gemm" else ())
        files[tag] = mb.quantize_onnx(mb.write_onnx(m, tmp_path / f"{tag}.onnx"), tmp_path / f"{tag}.int8.onnx", m)
    prof = ROOT / "device_profiles" / "host.yaml"
    slow = _with_runtime_constants(tmp_path, "slowqgemm", **{"efficiency.qgemm.int8": 0.001})
    # a Gemm becomes onnxruntime's QGemm kernel, costed by the qgemm kind; a MatMul + Add pair runs as
    # QLinearMatMul (+ a float Add) and keeps the matmul kind
    gemm_base = predict(files["gemm"], prof, runtime="onnxruntime").latency_ms
    assert predict(files["gemm"], slow, runtime="onnxruntime").latency_ms > 5 * gemm_base
    mm_base = predict(files["matmul"], prof, runtime="onnxruntime").latency_ms
    assert predict(files["matmul"], slow, runtime="onnxruntime").latency_ms == pytest.approx(mm_base)


def test_batched_attention_products_pay_per_head(tmp_path: Path) -> None:
    from adaptc.analysis import analyze
    from adaptc.predict.table import build_table

    m = mb.Micro("mha", (6, 48, 32), (mb.Layer("bmm"), mb.Layer("softmax"), mb.Layer("bmm")), tags=("heads",))
    f32 = mb.write_onnx(m, tmp_path / "mha.onnx")
    tfl = mb.write_tflite(m, tmp_path / "mha.tflite")
    # the ONNX and TFLite graphs compute the same thing
    from adaptc.measure.runtimes import open_runner

    y_onnx = np.asarray(open_runner("onnxruntime", f32, 1).run([mb.onnx_input(m)])[0])
    y_tfl = np.asarray(open_runner("tflite", tfl, 1).run([mb.tflite_input(m)])[0])
    assert y_onnx.shape == (6, 48, 32) and np.allclose(y_onnx, y_tfl, atol=1e-4)
    for path, rt in ((f32, "onnxruntime"), (tfl, "tflite")):
        t = build_table(analyze(path), rt)
        mm = [i for i, o in enumerate(t.op_types) if o in ("MatMul", "BATCH_MATMUL")]
        assert len(mm) == 2 and all(t.items[i] == 6 for i in mm)
    base = predict(f32, "host", runtime="onnxruntime").latency_ms
    slow = _with_runtime_constants(tmp_path, "perhead", **{"bmm_item_overhead_us.fp32": 100.0})
    # two products x 5 further heads x 100 us
    assert predict(f32, slow, runtime="onnxruntime").latency_ms == pytest.approx(base + 1.0, abs=0.05)


def test_broadcast_multiplies_have_their_own_cost(tmp_path: Path) -> None:
    se = mb.Micro("se", (28, 28, 32), (mb.Layer("se", out=8),))
    add = mb.Micro("adds", (28, 28, 32), (mb.Layer("add"),) * 2)
    files = {"se": mb.write_onnx(se, tmp_path / "se.onnx"), "add": mb.write_onnx(add, tmp_path / "add.onnx"),
             "se_tfl": mb.write_tflite(se, tmp_path / "se.tflite")}
    # the squeeze-and-excitation graph runs in both runtimes and keeps its shape
    from adaptc.measure.runtimes import open_runner

    assert np.asarray(open_runner("onnxruntime", files["se"], 1).run([mb.onnx_input(se)])[0]).shape == (1, 32, 28, 28)
    assert np.asarray(open_runner("tflite", files["se_tfl"], 1).run([mb.tflite_input(se)])[0]).shape == (1, 28, 28, 32)
    slow = _with_runtime_constants(tmp_path, "slowbcast", **{"efficiency.binary_broadcast.fp32": 1e-4})
    prof = ROOT / "device_profiles" / "host.yaml"
    # the channel scale (a [1, C, H, W] x [1, C, 1, 1] multiply) is a broadcast; same-shape adds are not
    by = {o.name: o for o in predict(files["se"], slow, runtime="onnxruntime").ops}
    base = {o.name: o for o in predict(files["se"], prof, runtime="onnxruntime").ops}
    assert by["se_scale0"].time_ms > 10 * base["se_scale0"].time_ms
    assert predict(files["add"], slow, runtime="onnxruntime").latency_ms == pytest.approx(
        predict(files["add"], prof, runtime="onnxruntime").latency_ms)


def test_matmul_weights_dequantized_per_run_have_their_own_cost(tmp_path: Path) -> None:
    from adaptc.predict.ort_view import runtime_view

    # q / k / v projections of one layer-norm output: onnxruntime keeps them float MatMuls in the int8 graph and
    # dequantizes their weights on every run
    m = mb.Micro("qkv", (32, 64), (mb.Layer("layernorm"), mb.Layer("qkv")), tags=("batched",))
    i8 = mb.quantize_onnx(mb.write_onnx(m, tmp_path / "qkv.onnx"), tmp_path / "qkv.int8.onnx", m)
    view = runtime_view(str(i8))
    assert view is not None and view.matmul_weight_dequant_elems == [64 * 64] * 3
    prof = ROOT / "device_profiles" / "host.yaml"
    slow = _with_runtime_constants(tmp_path, "slowwdq", **{"efficiency.weight_dequant.int8": 1e-5})
    base = predict(i8, prof, runtime="onnxruntime")
    assert sum(o.op_class == "quant" and "MatMul weight" in o.name for o in base.ops) == 3
    assert predict(i8, slow, runtime="onnxruntime").latency_ms > 2 * base.latency_ms


def test_dynamic_range_int8_products_have_their_own_kernels(tmp_path: Path) -> None:
    from adaptc.analysis import analyze
    from adaptc.exporters.base import requantize_file
    from adaptc.measure.runtimes import open_runner
    from adaptc.predict.kinds import KIND_NAMES
    from adaptc.predict.table import build_table

    m = mb.Micro("lin", (32, 128), (mb.Layer("fc", out=256, act="relu"), mb.Layer("fc", out=128)))
    f = {"onnx": mb.write_onnx(m, tmp_path / "lin.onnx"), "tflite": mb.write_tflite(m, tmp_path / "lin.tflite")}
    dyn = {fmt: requantize_file(fmt, p, "int8_dynamic", tmp_path / f"lin.int8dyn.{fmt}").path for fmt, p in f.items()}
    wo = requantize_file("tflite", f["tflite"], "int8_weight_only", tmp_path / "lin.int8w.tflite").path
    # the files adaptc ships run, close to the float graph
    x = {"onnx": mb.onnx_input(m), "tflite": mb.tflite_input(m)}
    for fmt, rt in (("onnx", "onnxruntime"), ("tflite", "tflite")):
        ref = np.asarray(open_runner(rt, f[fmt], 1).run([x[fmt]])[0])
        y = np.asarray(open_runner(rt, dyn[fmt], 1).run([x[fmt]])[0])
        assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()
    # analysis: int8 weights on float activations are dynamic-range products; weight-only int8 computes in float
    macs = {k: [o for o in analyze(p).ops if o.macs] for k, p in (*dyn.items(), ("wo", wo))}
    assert [(o.op_type, o.precision, o.dynamic) for o in macs["onnx"]] == [("MatMulInteger", "int8", True)] * 2
    assert [(o.precision, o.dynamic) for o in macs["tflite"]] == [("int8", True)] * 2
    assert [(o.precision, o.dynamic) for o in macs["wo"]] == [("fp32", False)] * 2
    # the predictor: a kernel kind of their own, and the run-time quantization of each input (onnxruntime's
    # DynamicQuantizeLinear nodes; a node XNNPACK adds in LiteRT)
    for fmt, rt in (("onnx", "onnxruntime"), ("tflite", "tflite")):
        t = build_table(analyze(dyn[fmt]), rt)
        kinds = [KIND_NAMES[k] for k, r in zip(t.kind, t.run) if r]
        assert kinds.count("matmul_dynamic") == 2 and kinds.count("dynamic_quant") == 2, kinds
    assert "dynamic_quant" not in [KIND_NAMES[k] for k in build_table(analyze(wo), "tflite").kind]
    prof = ROOT / "device_profiles" / "host.yaml"
    for fmt, rt in (("onnx", "onnxruntime"), ("tflite", "tflite")):
        slow = _with_runtime_constants(tmp_path, f"slowdyn_{rt}", rt, **{"efficiency.matmul_dynamic.int8": 0.001})
        base = predict(dyn[fmt], prof, runtime=rt).latency_ms
        assert predict(dyn[fmt], slow, runtime=rt).latency_ms > 5 * base
        assert predict(f[fmt], slow, runtime=rt).latency_ms == pytest.approx(predict(f[fmt], prof, runtime=rt).latency_ms)
    # memory: LiteRT unpacks weight-only int8 weights into float copies (the file weighs as its fp32 version); a
    # dynamic-range file keeps its int8 weights
    w = {k: predict(p, prof, runtime="tflite").weights_mb for k, p in (("fp32", f["tflite"]), ("wo", wo),
                                                                         ("dyn", dyn["tflite"]))}
    assert w["wo"] == pytest.approx(w["fp32"], rel=0.05) and w["dyn"] < 0.5 * w["fp32"]


def test_transposes_onnxruntime_cancels_are_not_costed(tmp_path: Path) -> None:
    from adaptc.measure.runtimes import open_runner

    # back-to-back transposes undo each other: onnxruntime's optimizer removes them (an Identity writes the graph
    # output); a BERT layer's head split / merge around a per-head product stays
    chain = mb.Micro("tr", (28, 28, 16), (mb.Layer("transpose"),) * 4)
    heads = mb.Micro("heads", (32, 128), (mb.Layer("heads", out=4), mb.Layer("add")) * 2, tags=("batched", "onnx_only"))
    runs = {}
    for m in (chain, heads):
        f = mb.write_onnx(m, tmp_path / f"{m.name}.onnx")
        ops = predict(f, "host", runtime="onnxruntime").ops
        runs[m.name] = sum(o.op_type == "Transpose" and o.bound != "free" for o in ops)
        y = np.asarray(open_runner("onnxruntime", f, 1).run([mb.onnx_input(m)])[0])
        assert y.shape == mb.onnx_input(m).shape
    assert runs == {"tr": 0, "heads": 4}


def test_weights_beyond_the_cache_are_streamed_per_inference(tmp_path: Path) -> None:
    # three distinct feed-forward blocks (6 linear layers, ~0.8 MB of weights): with an effective weight cache far
    # smaller than that, each inference streams the share beyond it at bandwidth / penalty on top of the ops' work
    m = mb.Micro("ffn3", (32, 64), (mb.Layer("fc", out=256, act="relu"), mb.Layer("fc", out=64)) * 3, tags=("batched",))
    f = mb.write_onnx(m, tmp_path / "ffn3.onnx")
    prof = yaml.safe_load((ROOT / "device_profiles" / "host.yaml").read_text())
    bw = prof["memory"]["bandwidth_gbps"]
    off = _with_runtime_constants(tmp_path, "nocache", weight_cache_mb=1024.0, weight_cache_penalty=1.0)
    tiny = _with_runtime_constants(tmp_path, "tinycache", weight_cache_mb=0.25, weight_cache_penalty=1.0)
    from adaptc.analysis import analyze

    w_bytes = sum(o.weight_bytes for o in analyze(f).ops if o.macs)  # weights and biases of the 6 linear layers
    base, slow = (predict(f, p, runtime="onnxruntime").latency_ms for p in (off, tiny))
    beyond = 1.0 - 0.25 * 2**20 / w_bytes
    assert slow - base == pytest.approx(beyond * w_bytes / (bw * 1e9) * 1e3, rel=0.02)
