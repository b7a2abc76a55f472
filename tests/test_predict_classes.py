"""Core classes in the predictor (issue 29): depthwise int8 not tied to the dot-product peak, in-order overheads
and streaming kernels, the bandwidth's thread cap on ARM64, and validation reported per core class."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import adaptc
from adaptc.predict import calibration as mb
from adaptc.predict import predict
from adaptc.predict.constants import core_class


def _profile(tmp: Path, name: str, core: str, features: list[str], threads: int = 1) -> Path:
    data = {
        "schema_version": 1, "name": name, "display_name": name, "kind": "phone", "soc": "Some SoC", "os": "android",
        "cpu": {"cores": [{"name": core, "count": 4, "ghz": 2.0}], "threads": threads, "features": features},
        "compute": {"fp32_gflops": 20, "int8_gops": 60}, "memory": {"ram_mb": 4096, "bandwidth_gbps": 8},
        "budgets": {}, "formats": ["tflite"], "quantization": ["int8_static_per_channel", "fp32"],
        "sources": ["test"],
    }  # fmt: skip
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("classes")
    dw = mb.Micro("dw", (56, 56, 64), tuple(mb.Layer("dwconv", out=64, k=3, act="relu") for _ in range(4)))
    dw7 = mb.Micro("dw7", (14, 14, 256), tuple(mb.Layer("dwconv", out=256, k=7) for _ in range(4)))
    dense = mb.Micro("dense", (28, 28, 64), tuple(mb.Layer("conv", out=64, k=3, act="relu") for _ in range(3)))
    adds = mb.Micro("adds", (56, 56, 64), tuple(mb.Layer("add") for _ in range(6)))
    small = mb.Micro("small", (8, 8, 16), tuple(mb.Layer("add") for _ in range(6)))
    return {
        "dw7": mb.write_tflite(dw7, d / "dw7.tflite"),
        "small": mb.write_tflite(small, d / "small.tflite"),
        "dw8": mb.write_tflite(dw, d / "dw.int8.tflite", int8=True),
        "dense8": mb.write_tflite(dense, d / "dense.int8.tflite", int8=True),
        "adds": mb.write_tflite(adds, d / "adds.tflite"),
        "dense": mb.write_tflite(dense, d / "dense.tflite"),
    }


def _op_ms(p: adaptc.Prediction, op_type: str) -> float:
    return sum(o.time_ms for o in p.ops if o.op_type == op_type)


def test_depthwise_int8_is_not_rated_by_the_dot_product_peak(graphs: dict[str, Path], tmp_path: Path) -> None:
    """The same int8 figure with and without dotprod: dense int8 convolutions keep their estimate, depthwise int8
    kernels (which never use SDOT) are rated from the figure without dot products, half of it."""
    plain = _profile(tmp_path, "plain", "Cortex-A78", ["neon"])
    dot = _profile(tmp_path, "dot", "Cortex-A78", ["neon", "dotprod"])
    assert predict(graphs["dense8"], plain).latency_ms == pytest.approx(predict(graphs["dense8"], dot).latency_ms)
    dw_plain = _op_ms(predict(graphs["dw8"], plain), "DEPTHWISE_CONV_2D")
    dw_dot = _op_ms(predict(graphs["dw8"], dot), "DEPTHWISE_CONV_2D")
    assert dw_dot > 1.3 * dw_plain
    assert core_class(adaptc.load_profile(dot)) == "arm out-of-order +dotprod"
    assert core_class(adaptc.load_profile("pixel4")) == "arm out-of-order +dotprod"


def test_in_order_cores_pay_in_overheads_and_streaming_kernels(graphs: dict[str, Path], tmp_path: Path) -> None:
    """Same sustained figures, an in-order core: per-op overheads (tiny adds) and streaming kernels (depthwise)
    cost more than on an out-of-order core, dense convolutions as much; its estimate says no published row
    validates it."""
    ooo = _profile(tmp_path, "ooo", "Cortex-A78", ["neon"])
    ino = _profile(tmp_path, "ino", "Cortex-A53", ["neon"])
    p_ooo, p_ino = predict(graphs["small"], ooo), predict(graphs["small"], ino)
    assert p_ino.core_class == "arm in-order" and p_ooo.core_class == "arm out-of-order"
    assert _op_ms(p_ino, "ADD") > 1.3 * _op_ms(p_ooo, "ADD") and p_ino.fixed_ms > p_ooo.fixed_ms
    dw = {n: _op_ms(predict(graphs["dw7"], prof), "DEPTHWISE_CONV_2D") for n, prof in (("ooo", ooo), ("ino", ino))}
    dense = {n: _op_ms(predict(graphs["dense"], prof), "CONV_2D") for n, prof in (("ooo", ooo), ("ino", ino))}
    assert dw["ino"] / dw["ooo"] > 1.3 > dense["ino"] / dense["ooo"], (dw, dense)
    assert "not validated on this core class (arm in-order)" in p_ino.method


def test_memory_bound_work_gains_less_from_threads_on_arm64(graphs: dict[str, Path], tmp_path: Path) -> None:
    prof = _profile(tmp_path, "four", "Cortex-A78", ["neon"], threads=1)
    one = predict(graphs["adds"], prof, threads=1)
    four = predict(graphs["adds"], prof, threads=4)
    dense_one, dense_four = predict(graphs["dense"], prof, threads=1), predict(graphs["dense"], prof, threads=4)
    assert four.latency_ms < one.latency_ms
    # the memory-bound adds speed up at most by the bandwidth cap; the compute-bound convolutions by more
    assert one.latency_ms / four.latency_ms <= 1.95
    assert dense_one.latency_ms / dense_four.latency_ms > one.latency_ms / four.latency_ms


def test_validation_is_quoted_for_the_estimates_core_class(graphs: dict[str, Path]) -> None:
    p = predict(graphs["dense"], "pixel4")
    assert p.core_class == "arm out-of-order +dotprod" and "arm out-of-order +dotprod" in p.method
    assert "median |error|" in p.method
