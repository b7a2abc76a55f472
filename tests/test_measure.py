"""Host measurement in a fresh subprocess, with the real onnxruntime."""

from __future__ import annotations

from pathlib import Path

import torch

from adaptc.export.onnx import export_onnx_fp32
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
