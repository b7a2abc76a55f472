"""The calibrated per-op device predictor (version ``opcost-1``).

For each op of the exported graph (ONNX or TFLite, through the same :class:`~adaptc.analysis.CostReport`):

    compute = FLOPs / (S[p] x eff[class][p] x shape(M, K, N) x threads)
    memory  = bytes moved / (bandwidth x bw_eff x threads)
    time    = smooth_max(compute, memory) + op_overhead          (smooth_max(a, b) = (a^4 + b^4)^(1/4))

summed over the ops the runtime executes, plus a fixed cost per inference and, for the host's Python
runners, a cost per input/output element. ``S[p]`` is the profile's sustained dense-convolution throughput
at precision ``p`` (or its spec-sheet peak times the fitted peak-to-sustained ratio), ``eff`` is the fitted
fraction of it that each op class (conv, depthwise_conv, matmul) and kernel group (binary, activation,
softmax, reduce, quant) reaches, and ``shape = K/(K+K0) x N/(N+N0) x M/(M+M0)`` (depthwise: C/(C+C0) x
M/(M+M0)) captures how small GEMM dimensions waste SIMD lanes and register tiles. Data-movement ops
(transpose, concat, pad, gather, ...) are bandwidth-bound; metadata ops (reshape, squeeze, ...) are free;
activations / batch norms / bias adds that onnxruntime fuses into the preceding convolution or matmul are free.

Threads: throughput scales by ``1 + (n - 1) x thread_efficiency`` relative to the profile's thread count;
per-op overhead grows by ``1 + (n - 1) x thread_overhead``. Overheads were fitted at ``ref_ghz`` and scale by
``ref_ghz / device GHz``.

Memory = base + weight_factor[precision] x weight bytes + activation_factor x peak activation bytes (tensor
liveness), i.e. the runtime's own footprint, its copies of the weights (onnxruntime copies and prepacks them;
LiteRT maps the file and XNNPACK packs a private copy) and its activation arena. It estimates the host
measurement's definition (VmHWM growth from creating the session and running it once).

The constants live in ``adaptc/predict/models/<runtime>.json`` per device family and may be overridden by a
profile's ``predictor:`` section (see :mod:`adaptc.predict.constants`); how they were fitted is in
``adaptc.predict.fit`` and the README section "Predictor accuracy".

The parts: op kinds (:mod:`~adaptc.predict.kinds`), the op table a runtime sees (:mod:`~adaptc.predict.table`),
the per-op cost model (:mod:`~adaptc.predict.opcost`); this module assembles a :class:`Prediction`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..analysis.onnx_graph import CostReport
from ..profiles.schema import DeviceProfile
from .constants import Constants, core_class, resolve
from .kinds import PRECISIONS
from .opcost import Device, fixed_time, memory_mb, op_times
from .table import build_table

PREDICTOR_VERSION = "opcost-1"

log = logging.getLogger(__name__)
#: warnings already logged in this process
_WARNED: set[str] = set()


@dataclass
class OpPrediction:
    name: str
    op_type: str
    op_class: str
    precision: str
    flops: int
    bytes_moved: int
    time_ms: float
    bound: str  # compute | memory | overhead | fused | free


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
    #: op types the predictor has no cost model for (costed with the data-movement fallback)
    unknown_ops: list[str] = field(default_factory=list)
    #: fixed cost per inference (invoke + input/output hand-over), ms
    fixed_ms: float = 0.0
    constants_source: str = ""
    #: measured error of this predictor version (from the model file's validation block), when known
    validation: dict[str, Any] = field(default_factory=dict)
    #: the kind of core the estimate is for (``arm out-of-order +dotprod``, ...): what its validation is reported by
    core_class: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "runtime": self.runtime,
            "precision": self.precision,
            "threads": self.threads,
            "latency_ms": self.latency_ms,
            "peak_memory_mb": self.peak_memory_mb,
            "weights_mb": self.weights_mb,
            "activations_mb": self.activations_mb,
            "runtime_overhead_mb": self.runtime_overhead_mb,
            "fixed_ms": self.fixed_ms,
            "method": self.method,
            "version": self.version,
            "notes": self.notes,
            "unknown_ops": self.unknown_ops,
            "constants_source": self.constants_source,
            "validation": self.validation,
            "core_class": self.core_class,
        }


def _validation_phrase(c: Constants, cls: str = "") -> str:
    v = c.validation or {}
    host = v.get("host", {}).get(c.runtime) or v.get("host", {}).get("all")
    bits = []
    if host:
        bits.append(
            f"measured host error ({host.get('n', '?')} {c.runtime} rows): median |error| "
            f"{host.get('median_abs_error_pct', float('nan')):.1f}%, "
            f"{host.get('within_20pct', float('nan')):.0f}% within +-20%"
        )
    phones = v.get("phones", {})
    classes = v.get("core_classes", {})
    mine = {k.rsplit("/", 1)[1]: d for k, d in classes.items() if k.rsplit("/", 1)[0] == cls and d.get("n")}
    if c.family.startswith("arm64") and mine:
        maes = ", ".join(f"{p} {d.get('median_abs_error_pct', float('nan')):.0f}%" for p, d in sorted(mine.items()))
        profs = ", ".join(next(iter(mine.values())).get("rows_from") or [])
        n = max(d.get("n") or 0 for d in mine.values())
        bits.append(
            f"published rows of this core class ({cls}: {profs}; {n} held-out rows per precision) median "
            f"|error|: {maes}"
        )
    elif c.family.startswith("arm64") and phones:
        maes = ", ".join(f"{k} {d.get('median_abs_error_pct', float('nan')):.0f}%" for k, d in sorted(phones.items()))
        bits.append(
            f"not validated on this core class ({cls or c.family}): no published rows of such cores; the big "
            f"out-of-order phones' median |error| ({maes}) does not carry over"
        )
    return "; ".join(bits) if bits else "not yet validated"


def predict_from_cost(
    cost: CostReport,
    profile: DeviceProfile,
    *,
    runtime: str,
    precision: str | None = None,
    threads: int | None = None,
    constants: Constants | None = None,
) -> Prediction:
    """Estimate latency and memory of a graph (its cost report) on a device.

    ``precision`` overrides the arithmetic precision of the graph's ops (to ask "what if this fp32 graph ran
    in int8?"); by default each op's own precision in the graph is used.
    """
    threads = threads or profile.cpu.threads
    c = constants or resolve(profile, runtime)
    dev = Device.from_profile(profile, runtime)
    table = build_table(cost, runtime, precision, layouts=c.family == "x86_64")
    total, comp, mem = op_times(table, c, dev, threads)
    fixed = fixed_time(table, c, dev)
    peak, w_mb, a_mb, base = memory_mb(table, c)
    notes = list(c.notes)
    if table.unknown:
        msg = (
            f"no cost model for op(s) {', '.join(table.unknown)}: estimated as data movement "
            f"(bytes / bandwidth + per-op overhead)"
        )
        notes.append(msg)
        if msg not in _WARNED:  # once per process: the note stays on every estimate
            _WARNED.add(msg)
            log.warning("adaptc.predict: %s", msg)
    if precision == "fp16" and not (profile.compute.fp16_gflops or profile.compute.fp16_peak_gflops):
        notes.append("no fp16 figure in the profile: fp16 arithmetic estimated at the fp32 throughput")
    if precision == "int8" and not (profile.compute.int8_gops or profile.compute.int8_peak_gops):
        notes.append("no int8 figure in the profile: int8 arithmetic estimated at the fp32 throughput")
    if profile.compute.fp32_gflops is None:
        notes.append(
            f"spec-sheet profile: sustained throughput = peak x {c.family} peak-to-sustained ratio "
            f"({', '.join(f'{k} {v:.2f}' for k, v in sorted(c.peak_to_sustained.items()))})"
        )
    if getattr(cost, "format", "onnx") == "onnx" and runtime != "onnxruntime":
        notes.append(
            "ONNX graph costed as the TFLite converter makes it (activations fused, PAD where the padding is not "
            "SAME / VALID, channels-last transposes, layer norms lowered): the same estimate as the TFLite file"
        )
    if runtime == "onnxruntime" and (cost.precision_macs.get("fp16") or precision == "fp16"):
        notes.append(
            "onnxruntime's CPU provider runs fp16 graphs in float32 (it inserts casts; no native fp16 kernels by "
            "default): fp16 costed as float32"
        )
    if runtime == "onnxruntime" and c.family.startswith("arm64") and cost.precision_macs.get("int8"):
        notes.append(
            "onnxruntime on ARM64: int8 convolutions and products at the profile's int8 rate (its dot-product "
            "kernels), depthwise int8 at least at the float32 depthwise speed (assumed: no onnxruntime phone rows)"
        )
    if precision is not None:
        notes.append(f"what-if estimate: ops costed at {precision} regardless of the graph's own precision")
    ops: list[OpPrediction] = []
    for i in range(len(table.kind)):
        if not table.run[i]:
            bound = "fused" if "fused" in table.reason[i] else "free"
        elif total[i] <= 0:
            bound = "free"
        else:
            ov = total[i] - max(comp[i], mem[i])
            bound = "compute" if comp[i] >= mem[i] and comp[i] > ov else ("memory" if mem[i] > ov else "overhead")
        cls = cost.ops[i].op_class if i < len(cost.ops) else ("data" if table.op_types[i] == "Transpose" else "quant")
        ops.append(
            OpPrediction(
                table.names[i],
                table.op_types[i],
                cls,
                PRECISIONS[int(table.prec[i])],
                int(table.flops[i]),
                int(table.bytes[i]),
                float(total[i] * 1e3),
                bound,
            )
        )
    latency = float(total.sum() + fixed) * 1e3
    method = (
        f"estimated by adaptc predictor {PREDICTOR_VERSION} ({runtime}, {c.family} constants: {c.source}): "
        f"per-op roofline smooth-max(FLOPs / (sustained throughput x fitted op-class efficiency x GEMM-shape "
        f"factor), bytes / bandwidth) + {c.op_overhead_us * c.ref_ghz / dev.ghz:.2f} us per op + "
        f"{fixed * 1e6:.1f} us per inference; memory = {base:.1f} MB runtime + weight copies + activation "
        f"arena (liveness); {_validation_phrase(c, core_class(profile))}"
    )
    return Prediction(
        device=profile.name,
        runtime=runtime,
        precision=precision or "as-graph",
        threads=threads,
        latency_ms=latency,
        peak_memory_mb=float(peak),
        weights_mb=float(w_mb),
        activations_mb=float(a_mb),
        runtime_overhead_mb=float(base),
        method=method,
        ops=ops,
        notes=notes,
        unknown_ops=table.unknown,
        fixed_ms=float(fixed * 1e3),
        constants_source=c.source,
        validation=dict(c.validation),
        core_class=core_class(profile),
    )


__all__ = ["PREDICTOR_VERSION", "OpPrediction", "Prediction", "predict_from_cost"]
