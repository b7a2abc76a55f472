"""The measurements of ``adaptc calibrate``: reference figures (sustained fp32 / int8 throughput of a large 3x3
convolution, memory bandwidth), the micro-benchmark suite timed per runtime, precision and thread count, and the
memory of weight- and activation-dominated graphs in fresh processes. Latency runners are opened for timing
(the runtime's default kernels)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core import progress
from ...core.formats import FORMAT_RUNTIME, FORMATS, artifact_filename
from ..constants import MODEL_RUNTIMES
from .onnx_writer import onnx_input, quantize_onnx, write_onnx
from .suite import Layer, Micro, memory_suite, suite
from .tflite_writer import tflite_input, write_tflite

#: the export format whose files each runtime runs
_FORMAT_OF = {rt: fmt for fmt, rt in FORMAT_RUNTIME.items()}


@dataclass
class MicroResult:
    name: str
    group: str
    runtime: str
    precision: str
    threads: int
    #: median latency of timed runs (the faster of the passes), ms
    median_ms: float
    runs: int
    path: str


def _time_runner(
    runner: Any, x: np.ndarray, budget_s: float, max_runs: int = 40, min_runs: int = 5
) -> tuple[float, int]:
    """Latency (ms) of one call: the median of timed runs (the statistic the host measurement reports)."""
    for _ in range(2):
        runner.run([x])
    times: list[float] = []
    t_end = time.perf_counter() + budget_s
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        runner.run([x])
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3, len(times)


def available_runtimes() -> list[str]:
    """The runtimes with fitted constants (a model file) that are installed here."""
    from ...measure.runtimes import runtime_available

    return [r for r in MODEL_RUNTIMES if runtime_available(r)]


def _bandwidth_gbps(repeats: int) -> float:
    a = np.ones(64 * 2**20 // 8, dtype=np.float64)  # 64 MB
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best / 1e9  # read + write


def reference_figures(workdir: Path, quick: bool) -> dict[str, float]:
    """Sustained dense-conv throughput (onnxruntime, 1 thread, fp32 and int8) and bandwidth."""
    from ...measure.runtimes import open_runner

    ref = Micro("reference_conv3x3_28x28x128", (28, 28, 128), (Layer("conv", out=128, k=3),) * 2, "reference")
    f32 = write_onnx(ref, workdir / artifact_filename("onnx", "fp32", "ref"))
    i8 = quantize_onnx(f32, workdir / artifact_filename("onnx", "int8_static_per_channel", "ref"), ref)
    macs = 2 * 28 * 28 * 128 * 128 * 9
    x = onnx_input(ref)
    # the fastest of a few short rounds: a shared machine's neighbours slow some rounds, never speed one up
    budget, rounds = (0.3, 1) if quick else (0.35, 3)
    r32, r8 = open_runner("onnxruntime", f32, 1, timing=True), open_runner("onnxruntime", i8, 1, timing=True)
    t32 = min(_time_runner(r32, x, budget)[0] for _ in range(rounds))
    t8 = min(_time_runner(r8, x, budget)[0] for _ in range(rounds))
    t32_2 = t32
    if len(os.sched_getaffinity(0)) >= 2:
        r32_2 = open_runner("onnxruntime", f32, 2, timing=True)
        t32_2 = min(_time_runner(r32_2, x, budget)[0] for _ in range(rounds))
    return {
        "fp32_gflops": 2 * macs / (t32 * 1e-3) / 1e9,
        "int8_gops": 2 * macs / (t8 * 1e-3) / 1e9,
        "fp32_gflops_2t": 2 * macs / (t32_2 * 1e-3) / 1e9,
        "bandwidth_gbps": _bandwidth_gbps(5 if quick else 15),
    }


_THREAD_SUBSET = (
    "conv3x3_28x28x64",
    "conv1x1_7x7x160-960",
    "dwconv3x3_s1_14x14x384",
    "fc_128x256-1024",
    "fc_1x1024-1000",
    "tiny_conv_x16",
    "tiny_add_x32",
    "add_56x56x64",
)


def micro_file(workdir: Path, m: Micro, runtime: str, precision: str) -> Path:
    """The graph file of micro-benchmark ``m`` for a runtime and precision in ``workdir``, written on first use
    (ONNX int8: QDQ from the fp32 file; TFLite: written directly, fully integer for int8; int8dyn: the fp32 file
    quantized by adaptc's own int8_dynamic exporter)."""
    if precision == "int8dyn":
        from ...exporters.base import requantize_file

        f32 = micro_file(workdir, m, runtime, "fp32")
        fmt = _FORMAT_OF[runtime]
        dyn = workdir / artifact_filename(fmt, "int8_dynamic", m.name)
        if not dyn.exists():
            requantize_file(fmt, f32, "int8_dynamic", dyn)
        return dyn
    if runtime == "onnxruntime":
        f32 = workdir / artifact_filename("onnx", "fp32", m.name)
        if not f32.exists():
            write_onnx(m, f32)
        if precision == "fp32":
            return f32
        i8 = workdir / artifact_filename("onnx", "int8_static_per_channel", m.name)
        return i8 if i8.exists() else quantize_onnx(f32, i8, m)
    path = workdir / f"{m.name}.{precision}{FORMATS['tflite'].suffix}"
    return path if path.exists() else write_tflite(m, path, int8=precision == "int8")


def run_micro(workdir: Path, runtimes: list[str], quick: bool) -> list[MicroResult]:
    """Measure every micro-benchmark in every runtime and precision (in this process). The full mode measures
    the suite five times, in different orders, and keeps the fastest figure of each graph (load from other
    processes comes and goes)."""
    from ...measure.runtimes import open_runner

    micros = suite(quick)
    two = len(os.sched_getaffinity(0)) >= 2
    budget = 0.08 if quick else 0.2
    # five passes of up to 100 runs each (about a minute): with three passes of 40 runs (20 s in all) one slow
    # stretch of a shared host could cover every pass of a graph; three back-to-back calibrations then put 87%,
    # 85% and 64% of the host benchmark's rows within +-20% (same rows, same measurements)
    passes, max_runs = (1, 40) if quick else (5, 100)
    n_graphs = sum(1 for m in micros for rt in runtimes if rt == "onnxruntime" or "onnx_only" not in m.tags)
    step = progress.current().step("calibrate: micro-benchmarks", total=n_graphs * passes)
    best: dict[tuple[str, str, str, int], MicroResult] = {}
    for p_i in range(passes):
        # each pass in another order (forward, backward, shuffled): a burst of load from other processes then
        # hits different graphs in different passes, and the fastest of the passes is kept
        order = (
            list(micros)
            if p_i % 3 == 0
            else (
                micros[::-1]
                if p_i % 3 == 1
                else [micros[j] for j in np.random.default_rng(p_i).permutation(len(micros))]
            )
        )
        for m in order:
            for rt in runtimes:
                if "onnx_only" in m.tags and rt != "onnxruntime":
                    continue  # the TFLite graph would be the same as another micro-benchmark's
                for prec in m.precisions():
                    path = micro_file(workdir, m, rt, prec)
                    x = onnx_input(m) if rt == "onnxruntime" else tflite_input(m)
                    thread_list = [1, 2] if (two and m.name in _THREAD_SUBSET) else [1]
                    for th in thread_list:
                        try:
                            ms, n = _time_runner(open_runner(rt, path, th, timing=True), x, budget, max_runs)
                        except Exception as e:  # a kernel this runtime build lacks: skip, do not fail calibration
                            progress.log.warning("calibrate: %s %s %s skipped: %s", m.name, rt, prec, e)
                            continue
                        key = (m.name, rt, prec, th)
                        if key not in best or ms < best[key].median_ms:
                            best[key] = MicroResult(m.name, m.group, rt, prec, th, ms, n, str(path))
                step.advance(note=f"{m.name} {rt}")
    step.done()
    return list(best.values())


def run_memory(workdir: Path, runtimes: list[str]) -> list[dict[str, Any]]:
    """Peak memory (the host measurement's definition) of the memory micro-graphs, in fresh processes."""
    from ...measure.host import measure

    micros = memory_suite()
    step = progress.current().step("calibrate: memory", total=len(micros) * len(runtimes) * 2)
    out = []
    for m in micros:
        for rt in runtimes:
            for prec in ("fp32", "int8"):
                path = micro_file(workdir, m, rt, prec)
                x = onnx_input(m) if rt == "onnxruntime" else tflite_input(m)
                try:
                    hm = measure(path, rt, [x], threads=1, runs=3, warmup=1)
                    out.append(
                        {
                            "name": m.name,
                            "runtime": rt,
                            "precision": prec,
                            "path": str(path),
                            "peak_memory_mb": hm.peak_memory_mb,
                            "rss_anon_mb": hm.rss_anon_mb,
                            "rss_file_mb": hm.rss_file_mb,
                        }
                    )
                except Exception as e:
                    progress.log.warning("calibrate: memory of %s %s %s skipped: %s", m.name, rt, prec, e)
                step.advance()
    step.done()
    return out
