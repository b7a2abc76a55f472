"""Fitting the predictor's constants to measurements.

Latency: non-linear least squares on log-latency (``scipy.optimize.least_squares``, parameters in log space
within bounds), with a weak prior that pulls each constant toward its starting value so that constants the
data cannot identify (e.g. int8 softmax when no sample has one) stay where they were. Every sample is a whole
graph (a micro-benchmark chain or a model) with its measured median latency; its prediction is the sum of the
per-op times of :func:`adaptc.predict.opcost.op_times`, so the constants are fitted through exactly the model
that predicts real graphs.

Memory: linear least squares with non-negative coefficients (``scipy.optimize.nnls``) on relative error:
peak = base + weight_factor[p] x weight bytes + activation_factor x peak activation bytes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .constants import Constants
from .kinds import FALLBACK_OF
from .opcost import Device, fixed_time, op_times
from .table import OpTable

#: constants fitted on latency, with (lower, upper) bounds
LATENCY_PARAMS: dict[str, tuple[float, float]] = {
    **{
        f"efficiency.{c}.{p}": (0.01, 5.0)
        for c in ("conv", "conv_spatial", "depthwise_conv", "matmul")
        for p in ("fp32", "int8")
    },
    **{
        f"efficiency.{g}.{p}": (1e-4, 5.0)
        for g in ("binary", "binary_broadcast", "activation", "hardswish", "softmax", "reduce", "quant")
        for p in ("fp32", "int8")
    },
    **{f"efficiency.{g}.{p}": (1e-3, 50.0) for g in ("transpose", "pad", "data") for p in ("fp32", "int8")},
    "gemm_k0": (0.25, 1024.0),
    "gemm_n0": (0.25, 512.0),
    "gemm_m0": (0.05, 512.0),
    "dw_c0": (0.25, 1024.0),
    "gemm_int8_k0": (0.25, 1024.0),
    "gemm_int8_n0": (0.25, 512.0),
    "spatial_cin0": (0.05, 512.0),
    "conv_k0": (0.25, 1024.0),
    "conv_n0": (0.25, 512.0),
    # dynamic-range int8 products (own kernels, see kinds; the quantization of their inputs is costed as a float
    # binary pass, not fitted apart)
    "efficiency.matmul_dynamic.int8": (0.01, 5.0),
    "cache_kb": (16.0, 65536.0),
    "cache_penalty": (0.01, 20.0),
    "weight_cache_mb": (0.25, 1024.0),
    "weight_cache_penalty": (1e-3, 20.0),
    "bw_efficiency": (0.01, 20.0),
    "data_bw_efficiency": (0.005, 20.0),
    "dw_bw_efficiency": (0.005, 20.0),
    "op_overhead_us": (0.01, 200.0),
    "mac_overhead_us": (0.01, 200.0),
    "invoke_overhead_us": (0.05, 2000.0),
    "io_ns_per_element.fp32": (1e-3, 100.0),
    "io_ns_per_element.int8": (1e-3, 100.0),
    "io_fixed_us.int8": (1e-3, 500.0),
}
THREAD_PARAMS: dict[str, tuple[float, float]] = {"thread_efficiency": (0.01, 1.0), "thread_overhead": (1e-3, 10.0)}
#: onnxruntime on x86: float convolutions outside its NCHWc layout, also those kept float in QDQ graphs (see
#: adaptc.predict.ort_view.layout_view)
ORT_LAYOUT_PARAMS: dict[str, tuple[float, float]] = {
    "efficiency.conv_fallback.fp32": (0.01, 5.0),
    "efficiency.depthwise_conv_fallback.fp32": (0.01, 5.0),
    "efficiency.conv_dequantized.fp32": (0.01, 5.0),
    "efficiency.qgemm.int8": (0.01, 5.0),
    "efficiency.weight_dequant.int8": (1e-5, 5.0),
    "qgemm_k0": (0.25, 4096.0),
    "qgemm_n0": (0.25, 2048.0),
    "qgemm_m0": (0.05, 2048.0),
    # batched products of two activations (attention heads): onnxruntime runs a GEMM per head, packing its second
    # operand each time (per-node profile of an int8 encoder: 9 us per 4-head QLinearMatMul, 2.7 us costed without)
    "bmm_item_overhead_us.fp32": (1e-3, 20.0),
    "bmm_item_overhead_us.int8": (1e-3, 20.0),
    "efficiency.conv_fallback.int8": (0.01, 5.0),
    "efficiency.depthwise_conv_fallback.int8": (0.001, 5.0),
    "efficiency.skip_layernorm.fp32": (1e-4, 5.0),
    "efficiency.skip_layernorm.int8": (1e-4, 5.0),
    "dw_group_overhead_us": (1e-3, 20.0),
    "efficiency.reorder.fp32": (1e-3, 50.0),
}


@dataclass
class LatencySample:
    name: str
    table: OpTable
    measured_ms: float
    threads: int = 1
    weight: float = 1.0


@dataclass
class MemorySample:
    name: str
    table: OpTable
    measured_mb: float


@dataclass
class FitResult:
    constants: Constants
    stats: dict[str, Any] = field(default_factory=dict)


def _get(d: dict[str, Any], path: str) -> float:
    cur: Any = d
    for k in path.split("."):
        cur = cur[k]
    return float(cur)


def _has(d: dict[str, Any], path: str) -> bool:
    try:
        return bool(_get(d, path))
    except (KeyError, TypeError):
        return False


def _set(d: dict[str, Any], path: str, value: float) -> None:
    keys = path.split(".")
    cur = d
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = float(value)


def with_values(base: Constants, values: dict[str, float]) -> Constants:
    c = copy.deepcopy(base)
    d = c.to_dict()
    for k, v in values.items():
        _set(d, k, v)
    for name, val in d.items():
        setattr(c, name, val)
    return c


def _op_weights(t: OpTable) -> np.ndarray:
    return t.op_weights if t.op_weights is not None else np.zeros(len(t.kind))


class _Stack:
    """Many graphs' op tables concatenated, so one vectorized pass predicts every sample."""

    def __init__(self, samples: Sequence[LatencySample]):
        def cat(attr: str) -> np.ndarray:
            return np.concatenate([getattr(s.table, attr) for s in samples])

        self.seg = np.concatenate([np.full(len(s.table.kind), i) for i, s in enumerate(samples)]).astype(np.int64)
        self.threads = np.concatenate([np.full(len(s.table.kind), s.threads, float) for s in samples])
        self.table = OpTable(
            names=[],
            op_types=[],
            kind=cat("kind"),
            prec=cat("prec"),
            flops=cat("flops"),
            bytes=cat("bytes"),
            m=cat("m"),
            k=cat("k"),
            n=cat("n"),
            run=cat("run"),
            reason=[],
            unknown=[],
            io_elems={},
            weight_bytes=0.0,
            activation_bytes=0.0,
            weight_precision="fp32",
            area=np.concatenate(
                [s.table.area if s.table.area is not None else np.ones(len(s.table.kind)) for s in samples]
            ),
            items=np.concatenate(
                [s.table.items if s.table.items is not None else np.ones(len(s.table.kind)) for s in samples]
            ),
            op_weights=np.concatenate([_op_weights(s.table) for s in samples]),
            graph_weights=np.concatenate([np.full(len(s.table.kind), _op_weights(s.table).sum()) for s in samples]),
        )
        self.samples = samples
        self.n = len(samples)

    def predict_s(self, c: Constants, dev: Device) -> np.ndarray:
        total, _, _ = op_times(self.table, c, dev, self.threads)
        per = np.bincount(self.seg, weights=total, minlength=self.n)
        fixed = np.array([fixed_time(s.table, c, dev) for s in self.samples])
        return per + fixed


def error_stats(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    rel = pred / meas - 1.0
    a = np.abs(rel)
    return {
        "n": int(len(meas)),
        "median_abs_error_pct": float(np.median(a) * 100) if len(a) else float("nan"),
        "within_20pct": float(np.mean(a <= 0.2) * 100) if len(a) else float("nan"),
        "rms_log_error": float(np.sqrt(np.mean(np.log(pred / meas) ** 2))) if len(a) else float("nan"),
    }


#: where a constant a family does not have yet starts a fit: another constant's value, or a number
_START_FROM: dict[str, str | float] = {
    "gemm_int8_k0": "gemm_k0",
    "gemm_int8_n0": "gemm_n0",
    "spatial_cin0": 4.0,
    "qgemm_k0": "gemm_int8_k0",
    "qgemm_n0": "gemm_int8_n0",
    "qgemm_m0": "gemm_m0",
    "conv_k0": "gemm_k0",
    "conv_n0": "gemm_n0",
    "dw_group_overhead_us": 0.1,
    "bmm_item_overhead_us.fp32": 0.2,
    "bmm_item_overhead_us.int8": 0.2,
    "efficiency.data.fp32": "data_bw_efficiency",
    "efficiency.data.int8": "data_bw_efficiency",
    "weight_cache_mb": 16.0,
    "weight_cache_penalty": 1.0,
}


def with_starts(base: Constants, params: Sequence[str]) -> Constants:
    """``base`` with a starting value for each of ``params`` it lacks: an efficiency kind copies the kind it
    falls back to (``conv_spatial`` <- ``conv``), other constants follow ``_START_FROM``."""
    d = base.to_dict()
    start: dict[str, float] = {}
    for p in params:
        kind = p.split(".")[1] if p.startswith("efficiency.") else ""
        if kind in FALLBACK_OF and kind not in d["efficiency"]:
            start.update({f"efficiency.{kind}.{q}": v for q, v in d["efficiency"][FALLBACK_OF[kind]].items()})
        elif kind in FALLBACK_OF and not _has(d, p):  # the kind has other precisions only: this one from its plain kind
            start[p] = _get(d, f"efficiency.{FALLBACK_OF[kind]}.{p.split('.')[2]}")
        elif p in _START_FROM and not _has(d, p):
            src = _START_FROM[p]
            start[p] = _get(d, src) if isinstance(src, str) else src
    return with_values(base, start) if start else base


def fit_latency(
    samples: Sequence[LatencySample],
    base: Constants,
    dev: Device,
    params: Sequence[str] | None = None,
    prior_weight: float = 0.05,
    bounds: dict[str, tuple[float, float]] | None = None,
) -> FitResult:
    """Fit ``params`` (dotted constant names) to the samples' measured latencies."""
    from scipy.optimize import least_squares

    allb = {**LATENCY_PARAMS, **THREAD_PARAMS, **ORT_LAYOUT_PARAMS, **(bounds or {})}
    params = list(params or LATENCY_PARAMS)
    base = with_starts(base, params)
    d0 = base.to_dict()
    lo = np.log([allb[p][0] for p in params])
    hi = np.log([allb[p][1] for p in params])
    x0 = np.clip(np.log([max(_get(d0, p), 1e-9) for p in params]), lo + 1e-9, hi - 1e-9)
    stack = _Stack(samples)
    meas = np.array([s.measured_ms for s in samples]) * 1e-3
    w = np.sqrt(np.array([s.weight for s in samples]))

    def consts(x: np.ndarray) -> Constants:
        return with_values(base, dict(zip(params, np.exp(x))))

    def resid(x: np.ndarray) -> np.ndarray:
        pred = stack.predict_s(consts(x), dev)
        r = w * (np.log(np.maximum(pred, 1e-12)) - np.log(meas))
        return np.concatenate([r, prior_weight * (x - x0)])

    before = error_stats(stack.predict_s(base, dev), meas)
    sol = least_squares(resid, x0, bounds=(lo, hi), method="trf", x_scale=1.0, max_nfev=400 * len(params))
    c = consts(sol.x)
    if "efficiency.conv.fp32" in params:  # no fp16 arithmetic samples: fp16 follows fp32
        for cls in c.efficiency:
            if "fp32" in c.efficiency[cls]:
                c.efficiency[cls]["fp16"] = c.efficiency[cls]["fp32"]
    pred = stack.predict_s(c, dev)
    stats = {
        "before": before,
        "after": error_stats(pred, meas),
        "params": params,
        "per_sample": [
            {"name": s.name, "threads": s.threads, "measured_ms": s.measured_ms, "predicted_ms": float(p * 1e3)}
            for s, p in zip(samples, pred)
        ],
    }
    return FitResult(c, stats)


def fit_memory(samples: Sequence[MemorySample], base: Constants) -> FitResult:
    """Fit base_mb, weight_factor (fp32, int8), activation_factor and node_kb by non-negative least squares on
    relative error. Precisions without samples keep their starting factor."""
    from scipy.optimize import nnls

    mb = 1 / 2**20
    cols = [
        "base_mb",
        "weight_factor.fp32",
        "weight_factor.int8",
        "conv_weight_factor.fp32",
        "conv_weight_factor.int8",
        "activation_factor",
        "node_kb",
    ]
    A = np.zeros((len(samples), 7))
    y = np.zeros(len(samples))
    for i, s in enumerate(samples):
        t = s.table
        p = "int8" if t.weight_precision == "int8" else "fp32"
        conv = min(t.conv_weight_bytes, t.weight_bytes)
        A[i, 0] = 1.0
        A[i, 1 if p == "fp32" else 2] = (t.weight_bytes - conv) * mb
        A[i, 3 if p == "fp32" else 4] = conv * mb
        A[i, 5] = t.activation_bytes * mb
        A[i, 6] = t.kernels / 1024.0
        y[i] = s.measured_mb
    scale = 1.0 / np.maximum(y, 1.0)
    present = [j for j in range(7) if np.any(A[:, j] > 0.05)]
    coef = np.zeros(7)
    if present:
        sol, _ = nnls(A[:, present] * scale[:, None], y * scale)
        coef[present] = sol
    mem = copy.deepcopy(base.memory)
    wf = dict(mem.get("weight_factor", {}))
    cwf = dict(mem.get("conv_weight_factor", wf))
    if 0 in present:
        mem["base_mb"] = float(coef[0])
    if 1 in present:
        wf["fp32"] = wf["fp16"] = float(coef[1])
    if 2 in present:
        wf["int8"] = float(coef[2])
    if 3 in present:
        cwf["fp32"] = cwf["fp16"] = float(coef[3])
    if 4 in present:
        cwf["int8"] = float(coef[4])
    if 5 in present:
        mem["activation_factor"] = float(coef[5])
    if 6 in present:
        mem["node_kb"] = float(coef[6])
    mem["weight_factor"] = wf
    mem["conv_weight_factor"] = cwf
    c = copy.deepcopy(base)
    c.memory = mem
    pred = A @ np.array(
        [
            mem.get("base_mb", 0.0),
            wf.get("fp32", 1.0),
            wf.get("int8", 1.0),
            cwf.get("fp32", 1.0),
            cwf.get("int8", 1.0),
            mem.get("activation_factor", 1.0),
            mem.get("node_kb", 0.0),
        ]
    )
    return FitResult(
        c,
        {
            "after": error_stats(np.maximum(pred, 1e-6), y),
            "columns": cols,
            "per_sample": [
                {"name": s.name, "measured_mb": s.measured_mb, "predicted_mb": float(p)} for s, p in zip(samples, pred)
            ],
        },
    )


def round_constants(d: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    """Constants rounded to ``digits`` significant digits (for files people read)."""

    def r(v: Any) -> Any:
        if isinstance(v, float):
            if v == 0 or not math.isfinite(v):
                return v
            return float(f"{v:.{digits}g}")
        if isinstance(v, dict):
            return {k: r(x) for k, x in v.items()}
        return v

    return r(d)
