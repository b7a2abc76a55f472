"""Device latency and memory estimates from a profile: a per-op roofline.

For each op of the exported graph: ``time = max(FLOPs / (throughput(precision) * eff(op class)),
bytes moved / bandwidth) + per-op overhead``, summed over ops. Memory = stored weights + peak activation
arena (tensor liveness) + the runtime's own resident overhead.

This is the first, uncalibrated version (``roofline-0``): the efficiency factors below are rules of thumb
from published model-level measurements (docs/device_specs: dense convs reach the profile's sustained
figure, depthwise convs ~35-50% of it, elementwise ops are bandwidth-bound). ``adaptc calibrate`` and the
calibrated predictor replace them with fitted values; every estimate names the predictor version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..analysis.onnx_graph import CostReport
from ..profiles.schema import DeviceProfile

PREDICTOR_VERSION = "roofline-0"

#: fraction of the profile's sustained throughput each op class reaches (uncalibrated defaults)
DEFAULT_EFFICIENCY: dict[str, float] = {
    "conv": 1.0, "matmul": 0.9, "depthwise_conv": 0.4, "pool": 0.25, "elementwise": 0.25, "quant": 0.25, "data": 0.25,
}
#: fixed cost per executed op (kernel dispatch), in microseconds
DEFAULT_OP_OVERHEAD_US: dict[str, float] = {"onnxruntime": 3.0, "tflite": 1.5, "coreml": 5.0}
#: resident memory of the runtime itself (code pages, allocator), MB (measured on the host: toolchain.md)
DEFAULT_RUNTIME_OVERHEAD_MB: dict[str, float] = {"onnxruntime": 9.0, "tflite": 4.0, "coreml": 10.0}
#: multi-thread efficiency per extra thread
DEFAULT_THREAD_EFFICIENCY = 0.8


@dataclass
class OpPrediction:
    name: str
    op_type: str
    op_class: str
    precision: str
    flops: int
    bytes_moved: int
    time_ms: float
    bound: str  # compute | memory | overhead


@dataclass
class Prediction:
    device: str
    runtime: str
    precision: str
    threads: int
    latency_ms: float
    peak_memory_mb: float
    weights_mb: float
    activations_mb: float
    runtime_overhead_mb: float
    method: str
    version: str = PREDICTOR_VERSION
    ops: list[OpPrediction] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "device": self.device, "runtime": self.runtime, "precision": self.precision, "threads": self.threads,
            "latency_ms": self.latency_ms, "peak_memory_mb": self.peak_memory_mb, "weights_mb": self.weights_mb,
            "activations_mb": self.activations_mb, "runtime_overhead_mb": self.runtime_overhead_mb,
            "method": self.method, "version": self.version, "notes": self.notes,
        }


def _thread_factor(profile: DeviceProfile, threads: int) -> float:
    """Throughput at ``threads`` relative to the profile's (whose figures are at ``cpu.threads``)."""
    def cap(n: int) -> float:
        n = max(1, min(n, profile.cpu.total_cores))
        return 1 + (n - 1) * DEFAULT_THREAD_EFFICIENCY

    return cap(threads) / cap(profile.cpu.threads)


def predict_from_cost(
    cost: CostReport,
    profile: DeviceProfile,
    *,
    runtime: str,
    precision: str | None = None,
    threads: int | None = None,
) -> Prediction:
    """Estimate latency and memory of a graph (its cost report) on a device.

    ``precision`` overrides the arithmetic precision of multiply-accumulate ops (to ask "what if this fp32
    graph ran in int8?"); by default each op's own precision in the graph is used.
    """
    threads = threads or profile.cpu.threads
    tf = _thread_factor(profile, threads)
    bw = profile.memory.bandwidth_gbps * 1e9
    overhead_s = DEFAULT_OP_OVERHEAD_US.get(runtime, 3.0) * 1e-6
    ops: list[OpPrediction] = []
    total = 0.0
    notes: list[str] = []
    for o in cost.ops:
        if o.fused:
            continue  # Q/DQ pairs between int8 kernels run inside the kernels
        if o.op_class == "data" and o.flops == 0 and o.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze",
                                                                  "Identity", "Shape"):
            continue  # metadata-only ops: no kernel runs on most runtimes
        prec = precision if (precision and o.macs) else o.precision
        gops, _ = profile.throughput_gops(prec)
        eff = DEFAULT_EFFICIENCY.get(o.op_class, 0.25)
        t_compute = o.flops / (gops * 1e9 * eff * tf) if o.flops else 0.0
        scale = {"int8": 0.25, "fp16": 0.5}.get(prec, 1.0) if (precision and o.macs) else 1.0
        t_mem = o.bytes_moved * scale / bw
        t = max(t_compute, t_mem) + overhead_s
        bound = "compute" if t_compute >= t_mem and t_compute > overhead_s else ("memory" if t_mem > overhead_s else "overhead")
        ops.append(OpPrediction(o.name, o.op_type, o.op_class, prec, o.flops, o.bytes_moved, t * 1e3, bound))
        total += t
    if precision is not None and precision != "fp32":
        weights = cost.weight_bytes_at.get(precision, cost.stored_weight_bytes)
    else:
        weights = cost.stored_weight_bytes + cost.quant_param_bytes
    acts = cost.peak_activation_bytes
    rt = DEFAULT_RUNTIME_OVERHEAD_MB.get(runtime, 8.0)
    if precision == "fp16" and not profile.compute.fp16_gflops:
        notes.append("no fp16 figure in the profile: fp16 arithmetic estimated at the fp32 throughput")
    if precision == "int8" and not profile.compute.int8_gops:
        notes.append("no int8 figure in the profile: int8 arithmetic estimated at the fp32 throughput")
    mb = 1 / 2**20
    return Prediction(
        device=profile.name,
        runtime=runtime,
        precision=precision or "as-graph",
        threads=threads,
        latency_ms=total * 1e3,
        peak_memory_mb=(weights + acts) * mb + rt,
        weights_mb=weights * mb,
        activations_mb=acts * mb,
        runtime_overhead_mb=rt,
        method=(f"estimated by adaptc predictor {PREDICTOR_VERSION}: per-op roofline max(FLOPs / (profile "
                f"throughput x op-class efficiency), bytes / profile bandwidth) + {DEFAULT_OP_OVERHEAD_US.get(runtime, 3.0)} us "
                f"per op; memory = weights + peak activations (liveness) + {rt:g} MB {runtime} overhead; uncalibrated"),
        ops=ops,
        notes=notes,
    )
