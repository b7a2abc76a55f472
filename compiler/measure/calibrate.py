"""``adaptc calibrate``: measure this machine and write its ``host`` device profile.

First version: sustained fp32 and int8 throughput of a dense 3x3 convolution in onnxruntime (the same
runtime and kernels that run the artifacts), memory bandwidth from large array copies, core count and RAM.
The figures are measured at one thread (the host profile's thread count); the 2-thread speed-up is recorded
in the profile notes.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import progress
from .._io import atomic_write_text
from ..profiles import DeviceProfile, parse_profile, profile_to_yaml, user_profile_dir
from ..versions import cpu_model, host_info


def _conv_model(path: Path, c: int = 64, hw: int = 28) -> tuple[int, np.ndarray]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
    b = np.zeros(c, np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["y"], ["z"])],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, c, hw, hw])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    macs = c * hw * hw * c * 9
    return macs, rng.standard_normal((1, c, hw, hw)).astype(np.float32)


class _Reader:
    def __init__(self, x: np.ndarray):
        self._data = [{"x": x * s} for s in (0.5, 1.0, 1.5)]

    def get_next(self):  # noqa: ANN201
        return self._data.pop() if self._data else None


def _time_session(path: Path, x: np.ndarray, threads: int, runs: int) -> float:
    from .runtimes import open_runner

    r = open_runner("onnxruntime", path, threads)
    for _ in range(5):
        r.run([x])
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r.run([x])
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def _bandwidth_gbps(repeats: int) -> float:
    a = np.ones(64 * 2**20 // 8, dtype=np.float64)  # 64 MB, far beyond the caches
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best / 1e9  # read + write


def measure_host_figures(quick: bool = False) -> dict[str, float]:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    runs = 20 if quick else 60
    step = progress.current().step("calibrate host: conv fp32/int8, bandwidth", total=4)
    with tempfile.TemporaryDirectory(prefix="adaptc-cal-") as d:
        fp32 = Path(d) / "conv.onnx"
        macs, x = _conv_model(fp32)
        t1 = _time_session(fp32, x, 1, runs)
        step.advance()
        t2 = _time_session(fp32, x, 2, runs) if (os.cpu_count() or 1) >= 2 else t1
        step.advance()
        int8 = Path(d) / "conv.int8.onnx"
        quantize_static(str(fp32), str(int8), _Reader(x), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        t8 = _time_session(int8, x, 1, runs)
        step.advance()
    bw = _bandwidth_gbps(5 if quick else 15)
    step.advance()
    step.done()
    return {"fp32_gflops": 2 * macs / t1 / 1e9, "int8_gops": 2 * macs / t8 / 1e9, "fp32_gflops_2t": 2 * macs / t2 / 1e9,
            "bandwidth_gbps": bw}


def calibrate_host(out: str | os.PathLike[str] | None = None, quick: bool = False) -> tuple[Path, DeviceProfile]:
    import onnxruntime

    fig = measure_host_figures(quick)
    info = host_info()
    today = _dt.date.today().isoformat()
    cores = int(info.get("usable_cores") or 1)
    data = {
        "schema_version": 1,
        "name": "host",
        "display_name": f"This machine ({cpu_model()})",
        "kind": "host",
        "soc": cpu_model(),
        "os": "linux",
        "cpu": {"cores": [{"name": cpu_model(), "count": cores, "ghz": _ghz()}], "threads": 1,
                "arch": info.get("machine")},
        "compute": {"fp32_gflops": round(fig["fp32_gflops"], 2), "int8_gops": round(fig["int8_gops"], 2)},
        "memory": {"ram_mb": float(info.get("ram_mb") or 1024), "bandwidth_gbps": round(fig["bandwidth_gbps"], 2)},
        "budgets": {"max_latency_ms": 100, "max_peak_memory_mb": 1024, "max_model_mb": 200, "max_mflops": 20000},
        "formats": ["onnx", "tflite"],
        "quantization": ["int8_static_per_channel", "int8_dynamic", "fp32"],
        "channel_multiple": 8,
        "notes": (f"Measured by `adaptc calibrate{' --quick' if quick else ''}` on {today}: fp32 and int8 (QDQ) 3x3 "
                  f"conv 64->64 at 28x28 in onnxruntime {onnxruntime.__version__}, 1 thread; 2 threads reach "
                  f"{fig['fp32_gflops_2t']:.1f} GFLOP/s fp32 ({fig['fp32_gflops_2t'] / fig['fp32_gflops']:.2f}x). "
                  "Budgets are generous defaults for a desktop/server target."),
        "sources": [
            f"measured on this host by `adaptc calibrate` ({today}): compute from onnxruntime {onnxruntime.__version__} "
            "conv micro-benchmark (median of timed runs)",
            "memory bandwidth: numpy copy of a 64 MB array (read + write bytes / best time)",
            "RAM and cores: psutil / sched_getaffinity on this host",
        ],
    }
    prof = parse_profile(data, "<calibrated host profile>")
    dest = Path(out) if out is not None else user_profile_dir() / "host.yaml"
    if dest.is_dir():
        dest = dest / "host.yaml"
    atomic_write_text(dest, "# written by `adaptc calibrate`\n" + profile_to_yaml(prof))
    return dest, prof


def _ghz() -> float:
    try:
        import psutil

        f = psutil.cpu_freq()
        if f and f.max:
            return round(f.max / 1000, 2)
        if f and f.current:
            return round(f.current / 1000, 2)
    except Exception:
        pass
    return 2.0
