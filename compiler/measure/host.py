"""Host measurement of an exported artifact: latency and peak memory, in a fresh subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.versions import cpu_model


@dataclass
class HostMeasurement:
    runtime: str
    runtime_version: str
    threads: int
    runs: int
    warmup: int
    latency_ms_median: float
    latency_ms_p90: float
    latency_ms_mean: float
    latency_ms_min: float
    #: resident-set growth from building the session and running it once (VmHWM after reset minus before)
    peak_memory_mb: float
    #: anonymous (heap) memory growth: the most reproducible figure
    rss_anon_mb: float
    #: file-backed pages (e.g. a memory-mapped .tflite)
    rss_file_mb: float
    peak_reset: bool
    cpu: str

    def method(self) -> str:
        return (
            f"measured on this host ({self.cpu}) with {self.runtime_version}, {self.threads} thread(s), batch 1, "
            f"median of {self.runs} runs after {self.warmup} warm-up runs (inputs bound once; the runtime call timed)"
        )

    def memory_method(self) -> str:
        how = "VmHWM after a clear_refs peak reset" if self.peak_reset else "VmHWM (no peak reset possible)"
        return f"measured on this host in a fresh process: {how}, minus the resident set before loading ({self.runtime_version})"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def host_threads(requested: int) -> int:
    """The profile's thread count, capped by the cores this process may use."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested, usable))


def probe_load(path: str | Path, runtime: str, threads: int = 1, timeout_s: float = 600) -> str | None:
    """Open ``path`` in ``runtime`` in a fresh process first: a runtime that crashes on a file (onnxruntime's
    graph optimizer ends the process with a segmentation fault on some float16 graphs) must fail that artifact,
    not the build. Returns why it could not be opened, or None."""
    code = (
        "import sys; from adaptc.measure.runtimes import open_runner; "
        "open_runner(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, runtime, str(path), str(host_threads(threads))],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return f"{runtime} did not open the file within {timeout_s:.0f} s"
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        import signal

        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return f"{runtime} crashed while opening the file ({name})"
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return f"{runtime} could not open the file: {tail[0][:300]}"


def measure(
    path: str | Path,
    runtime: str,
    example_inputs: Sequence[np.ndarray],
    *,
    threads: int = 1,
    runs: int = 100,
    warmup: int = 10,
    timeout_s: float = 600,
) -> HostMeasurement:
    """Measure one artifact in a fresh Python process (no state shared with the build)."""
    threads = host_threads(threads)
    with tempfile.TemporaryDirectory(prefix="adaptc-measure-") as d:
        npz = Path(d) / "inputs.npz"
        np.savez(npz, **{f"input_{i}": np.asarray(a) for i, a in enumerate(example_inputs)})  # type: ignore[arg-type]
        env = dict(os.environ)
        # Keep math libraries from spawning extra threads the runtime did not ask for.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
        cmd = [
            sys.executable,
            "-m",
            "adaptc.measure.worker",
            runtime,
            str(path),
            str(npz),
            str(threads),
            str(runs),
            str(warmup),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"measurement of {path} in {runtime} failed: {tail[0][:300]}")
    line = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")][-1]
    r = json.loads(line)
    t = np.asarray(r["times_ms"], dtype=np.float64)
    base, after = r["baseline"], r["after_first_run"]
    mb = 1 / 2**20
    return HostMeasurement(
        runtime=runtime,
        runtime_version=r["runtime_version"],
        threads=threads,
        runs=runs,
        warmup=warmup,
        latency_ms_median=float(np.median(t)),
        latency_ms_p90=float(np.percentile(t, 90)),
        latency_ms_mean=float(t.mean()),
        latency_ms_min=float(t.min()),
        peak_memory_mb=max(0.0, (after.get("VmHWM", 0) - base.get("VmRSS", 0)) * mb),
        rss_anon_mb=max(0.0, (after.get("RssAnon", 0) - base.get("RssAnon", 0)) * mb),
        rss_file_mb=max(0.0, (after.get("RssFile", 0) - base.get("RssFile", 0)) * mb),
        peak_reset=bool(r["peak_reset"]),
        cpu=cpu_model(),
    )
