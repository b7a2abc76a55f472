"""The stages one artifact goes through after its export, each a small function that fills its part of the
:class:`~adaptc.report.ArtifactReport`: verify (structure against the torch model) -> analyse (cost of the
file) -> parity (task metric in the runtime, the gate) -> measure (host) -> estimate (device) and budgets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis import analyze
from ..core.quantity import Gate, Quantity
from ..core.stats import drop_interval
from ..core.stats import method as sampling_method
from ..exporters import ExportRequest
from ..exporters._capture import captured_output
from ..exporters.base import runtime_unavailable_reason
from ..exporters.parity import check_parity, gate_verdict
from ..measure import HostMeasurement, open_runner, probe_load, runtime_available
from ..predict.device import estimate_on_device
from ..profiles import DeviceProfile
from ..report import ArtifactReport, DeviceEstimate, HostReport, ParityReport
from ..tasks import Task


def q_metric(value: float, ci95: tuple[float, float] | None, scored: int, method: str) -> Quantity:
    """A measured task metric on the test split, with its sampling error over ``scored`` per-sample scores."""
    q = Quantity.measured(value, "fraction", method + (f"; interval: {sampling_method(scored)}" if ci95 else ""))
    q.ci95 = ci95
    return q


def q_torch_metric(task: Task, value: float, ci95: tuple[float, float] | None, scored: int) -> Quantity:
    return q_metric(
        value,
        ci95,
        scored,
        f"torch {torch.__version__.split('+')[0]} on this host, "
        f"{task.metric_name} over the {len(task.test)}-sample test split",
    )


def verify(rep: ArtifactReport, exporter: Any, request: ExportRequest, path: Path, scheme: str) -> None:
    """Structural check against the torch model, for formats whose runtime may be missing here (CoreML)."""
    try:
        check = exporter.verify(request, path, scheme)
    except Exception as e:
        rep.flags.append(f"structure check could not run: {type(e).__name__}: {e}")
        return
    if check is None:
        return
    rep.structure["check"] = check
    if not check.get("passed", True):
        rep.status = "rejected"
        rep.flags.append(
            "rejected by the structure check against the torch model: " + "; ".join(check.get("failed", []))
        )


def analyse(rep: ArtifactReport, path: Path, proxy_cost: Callable[[], Any]) -> tuple[Any, bool]:
    """Cost analysis of the file; where the format has no analyzer, of the model's fp32 ONNX graph (``proxy_cost``).
    Returns (cost or None, whether it is the proxy's)."""
    try:
        cost = analyze(path)
        rep.cost = cost.summary()
        return cost, False
    except Exception as e:
        first_err = f"{type(e).__name__}: {e}"
    try:
        cost = proxy_cost()
    except Exception as e:
        rep.flags.append(f"cost analysis failed: {first_err}; proxy: {type(e).__name__}: {e}")
        return None, False
    rep.cost = {
        **cost.summary(),
        "source": (
            f"no cost analyzer for {Path(path).suffix} files: ops counted on the "
            f"fp32 ONNX graph of the same model, device estimate at "
            f"{rep.precision} arithmetic"
        ),
    }
    return cost, True


def parity(
    rep: ArtifactReport,
    runtime: str,
    path: Path,
    fp32: ArtifactReport | None,
    *,
    task: Task,
    reference: Callable[[], np.ndarray],
    teacher_outputs: np.ndarray | None,
    threads: int,
    max_drop: float,
    gate: Gate,
    scores: dict[str, np.ndarray],
    warn: Callable[[str], None],
) -> None:
    """The task metric of the file in its runtime against the torch model (and the fp32 artifact), and the gate's
    verdict. ``scores`` (by file name) gets the file's per-sample test scores: drops against the fp32 artifact
    are paired."""
    if not runtime_available(runtime):
        rep.runtime = f"none: no {runtime} runtime on this host ({runtime_unavailable_reason(runtime)})"
        rep.flags.append(
            f"no {runtime} runtime on this host ({runtime_unavailable_reason(runtime)}): "
            "numerical parity not checked here"
        )
        return
    crash = probe_load(path, runtime, threads)
    if crash is not None:
        rep.status, rep.error = "failed", crash
        return
    try:
        with captured_output():  # runtimes print banners (LiteRT: "Created TensorFlow Lite XNNPACK delegate")
            runner = open_runner(runtime, path, threads)
            # dynamic int8: activation scales come from the whole batch, so the gate runs one sample per call,
            # as a device does (a batch of 256 gave another R@1 than batch 1 for the same MiniLM file)
            one = rep.scheme == "int8_dynamic"
            res = check_parity(runner, task, reference(), batch=1 if one else None, teacher_outputs=teacher_outputs)
    except Exception as e:
        rep.status, rep.error = "failed", f"{runtime} could not run the artifact: {type(e).__name__}: {e}"
        return
    rt_version = runner.version() or runtime
    rep.runtime = rt_version
    if one and (runner.max_batch or 0) != 1:
        rep.flags.append("parity evaluated one sample per call: dynamic quantization scales depend on the batch")
    if res.scores is not None:
        scores[rep.file] = res.scores
    elif task.sample_scores is not None:
        warn(
            f"task {task.name}: its sample_scores do not average to its metric "
            f"({task.metric_name}): reports give the metric without its sampling error"
        )
    drop_fp32 = drop_fp32_ci = None
    if fp32 is not None and fp32.parity is not None:
        drop_fp32 = float(fp32.parity.metric.value or 0.0) - res.metric
        fp32_scores = scores.get(fp32.file)
        if fp32_scores is not None and res.scores is not None and len(fp32_scores) == len(res.scores):
            drop_fp32_ci = drop_interval(fp32_scores, res.scores)
    drops = [("the torch model", res.drop, res.drop_ci95)]
    if drop_fp32 is not None:
        drops.append(("the fp32 artifact", drop_fp32, drop_fp32_ci))
    verdict = gate_verdict(task.metric_name, drops, max_drop, gate, res.scored_samples)
    if verdict.note:
        rep.flags.append(verdict.note)
    rep.parity = ParityReport(
        runtime=runtime,
        split="test",
        samples=res.samples,
        metric_name=task.metric_name,
        metric=q_metric(
            res.metric,
            res.metric_ci95,
            res.scored_samples,
            f"{rt_version} on this host, {task.metric_name} over the {res.samples}-sample test split",
        ),
        torch_metric=q_torch_metric(task, res.reference_metric, res.reference_ci95, res.scored_samples),
        drop_vs_torch=res.drop,
        drop_vs_fp32_artifact=drop_fp32,
        drop_vs_torch_ci95=res.drop_ci95,
        drop_vs_fp32_artifact_ci95=drop_fp32_ci,
        scored_samples=res.scored_samples,
        max_abs_diff=res.max_abs_diff,
        mean_abs_diff=res.mean_abs_diff,
        cosine=res.cosine,
        top1_agreement=res.top1_agreement,
        teacher_cosine=res.teacher_cosine,
        teacher_top1_agreement=res.teacher_top1_agreement,
        max_drop=max_drop,
        gate=gate,
        passed=verdict.passed,
        reason=verdict.reason,
    )
    if not verdict.passed:
        rep.status = "rejected"
        rep.flags.append(f"rejected by the parity gate: {verdict.reason}")


def measure_host(
    rep: ArtifactReport, runtime: str, path: Path, measure: Callable[[Path, str], HostMeasurement]
) -> None:
    """Latency and peak memory of the file on this host (a fresh subprocess), where its runtime exists here."""
    if not runtime_available(runtime):
        rep.flags.append(f"no {runtime} runtime on this host: latency and memory are estimates only")
        return
    try:
        m = measure(path, runtime)
    except Exception as e:
        rep.flags.append(f"host measurement failed: {e}")
        return
    meth, mem_meth = m.method(), m.memory_method()
    rep.host = HostReport(
        latency_median=Quantity.measured(m.latency_ms_median, "ms", meth),
        latency_p90=Quantity.measured(m.latency_ms_p90, "ms", meth.replace("median", "90th percentile")),
        peak_memory=Quantity.measured(m.peak_memory_mb, "MB", mem_meth),
        rss_anon=Quantity.measured(m.rss_anon_mb, "MB", mem_meth.replace("VmHWM", "RssAnon")),
        rss_file=Quantity.measured(m.rss_file_mb, "MB", mem_meth.replace("VmHWM", "RssFile")),
    )


def estimate(
    rep: ArtifactReport, runtime: str, cost: Any, profile: DeviceProfile, proxy_precision: str | None = None
) -> None:
    """The device estimate of the file and the verdict of every budget (size counted, the rest estimated)."""
    size = Quantity.counted((rep.size.value or 0) / 2**20, "MB", rep.size.method) if rep.size is not None else None
    note = (
        (
            f"; op costs from the model's fp32 ONNX graph with {proxy_precision} arithmetic "
            f"(no analyzer for this format's files)"
        )
        if proxy_precision is not None
        else ""
    )
    est = estimate_on_device(cost, profile, runtime=runtime, precision=proxy_precision, size=size, method_note=note)
    if est.latency is not None and est.peak_memory is not None and est.predictor is not None:
        rep.device = DeviceEstimate(latency=est.latency, peak_memory=est.peak_memory, predictor=est.predictor)
    rep.budgets = est.verdicts
    rep.fits_budgets = est.fits


def summary(rep: ArtifactReport, metric_name: str) -> str:
    """One artifact in one line (the progress display)."""
    bits: list[str] = [rep.status]
    if rep.parity:
        bits.append(f"{metric_name} {rep.parity.metric.value:.4f}")
    elif rep.runtime is not None and rep.runtime.startswith("none"):
        bits.append(f"not run here ({rep.runtime[len('none: ') :]})")
    if rep.host:
        bits.append(f"host p50 {rep.host.latency_median.value:.3f} ms")
    if rep.device:
        bits.append(f"device ~{rep.device.latency.value:.3f} ms (est.)")
    return ", ".join(bits)
