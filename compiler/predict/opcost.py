"""The per-op cost model: seconds per op, per inference and megabytes of memory from an op table and constants.

    compute = FLOPs / (S[p] x eff[kind][p] x shape(M, K, N) x threads)
    memory  = bytes moved / (bandwidth x bw_eff x threads)
    time    = smooth_max(compute, memory) + op_overhead          (smooth_max(a, b) = (a^4 + b^4)^(1/4))

(see :mod:`adaptc.predict.roofline` for the whole model). :func:`op_times` evaluates it on arrays, so the fit
(:mod:`adaptc.predict.fit`) evaluates many graphs at once through exactly the model that predicts real graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..profiles.schema import DeviceProfile
from . import kinds as k
from .constants import Constants, device_ghz, int8_dot_factor, sustained_throughput
from .table import OpTable

#: (M, K, N) of the reference convolution that defines "sustained" throughput: a 3x3 convolution 128 -> 128 on a
#: 28 x 28 map (what ``adaptc calibrate`` measures for compute.fp32_gflops / int8_gops); depthwise ops are
#: normalised at the same M and C = N
REFERENCE_GEMM = (784, 1152, 128)


@dataclass
class Device:
    """The device figures the predictor needs (from a profile)."""

    sustained: dict[str, float]  # GFLOP/s (GOP/s) per precision at the profile's thread count
    bandwidth_gbps: float
    profile_threads: int
    max_threads: int
    ghz: float
    #: the int8 figure over what kernels without dot-product instructions reach (:func:`int8_dot_factor`)
    int8_dot_factor: float = 1.0

    @classmethod
    def from_profile(cls, profile: DeviceProfile, runtime: str) -> Device:
        return cls(
            sustained={p: sustained_throughput(profile, p, runtime)[0] for p in k.PRECISIONS},
            bandwidth_gbps=profile.memory.bandwidth_gbps,
            profile_threads=profile.cpu.threads,
            max_threads=profile.cpu.total_cores,
            ghz=device_ghz(profile),
            int8_dot_factor=int8_dot_factor(profile),
        )


def _smooth_max(a: np.ndarray, b: np.ndarray, q: float = 4.0) -> np.ndarray:
    m = np.maximum(a, b)
    safe = np.where(m > 0, m, 1.0)
    return np.where(m > 0, safe * ((a / safe) ** q + (b / safe) ** q) ** (1.0 / q), 0.0)


def op_times(
    t: OpTable, c: Constants, dev: Device, threads: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-op seconds (0 for ops that do not run), compute seconds and memory seconds. ``threads`` may be an
    array with one thread count per op (the fit evaluates many graphs at once)."""
    n_thr = np.clip(np.asarray(threads, dtype=float), 1, dev.max_threads)
    tf = (1.0 + (n_thr - 1) * c.thread_efficiency) / (
        1.0 + (max(1, min(dev.profile_threads, dev.max_threads)) - 1) * c.thread_efficiency
    )
    S = np.array([dev.sustained[p] for p in k.PRECISIONS]) * 1e9
    eff = np.ones((len(k.KIND_NAMES), 3))
    # slices, concatenations, gathers: a fitted efficiency per precision where the constants have one ("data"),
    # else one fraction of the bandwidth for every precision (data_bw_efficiency: spec-sheet profiles)
    data_fitted = "data" in c.efficiency
    for ki, kname in enumerate(k.KIND_NAMES):
        if ki == k.K_DATA and not data_fitted:
            continue
        e = c.efficiency.get(kname) or c.efficiency.get(k.FALLBACK_OF.get(kname, kname), {})
        base = e.get("fp32", c.data_bw_efficiency if ki in k.MOVE_KINDS else 0.1)
        plain = c.efficiency.get(k.FALLBACK_OF.get(kname, kname), {})  # a precision the kind lacks: its plain kind's
        eff[ki] = [e.get("fp32", base), e.get("fp16", e.get("fp32", base)), e.get("int8", plain.get("int8", base))]
    # depthwise int8 kernels use no dot-product instruction: their efficiency is relative to the int8 figure a core
    # reaches without one (the arm64 constants are fitted that way: on the Pixel 4 and Galaxy S10, both dotprod)
    for dw in (k.K_DW, k.K_DW_FB):
        eff[dw, 2] /= dev.int8_dot_factor
    if c.runtime == "onnxruntime" and c.family.startswith("arm64") and S[2] > 0:
        # onnxruntime's ARM64 int8 depthwise kernels multiply-accumulate in widened NEON lanes (no dot product:
        # the int8 peak of a dotprod / i8mm core does not apply) on a quarter of the float kernel's bytes: rated
        # at least at the float32 depthwise kernel's speed (an assumption, not a measurement: no phone row of
        # onnxruntime exists; the tflite constants it starts from are fitted on XNNPACK's)
        for dw in (k.K_DW, k.K_DW_FB):
            eff[dw, 2] = max(eff[dw, 2], eff[dw, 0] * S[0] / S[2])
    kind, prec = t.kind, t.prec
    is_mac = (kind <= k.K_MM) | np.isin(kind, (k.K_CONV_FB, k.K_DW_FB, k.K_CONV_SP, k.K_CONV_DQ, k.K_QGEMM, k.K_MM_DYN))
    is_dw = (kind == k.K_DW) | (kind == k.K_DW_FB)
    k0: float | np.ndarray  # per op (an array) once a kernel has its own dimensions
    n0: float | np.ndarray
    m0: float | np.ndarray
    k0, n0, m0, c0 = c.gemm_k0, c.gemm_n0, c.gemm_m0, c.dw_c0
    # kernels with their own half-efficiency dimensions where the constants give them (a later row wins): int8
    # kernels tile K and N differently, 1x1 convolutions keep their speed at small K / N, QGemm follows M x N
    for mask, own_k0, own_n0, own_m0 in (
        (t.prec == 2, c.gemm_int8_k0, c.gemm_int8_n0, None),
        (kind == k.K_CONV, c.conv_k0, c.conv_n0, None),
        (kind == k.K_QGEMM, c.qgemm_k0, c.qgemm_n0, c.qgemm_m0),
    ):
        k0, n0, m0 = (
            v if own is None else np.where(mask, own, v) for v, own in ((k0, own_k0), (n0, own_n0), (m0, own_m0))
        )
    rm, rk, rn = REFERENCE_GEMM
    # shape factors relative to the reference convolution (where efficiency = 1 by the definition of "sustained")
    # output channels are computed in SIMD tiles of n_tile lanes: a partial last tile wastes lanes
    nt = max(1.0, c.n_tile)
    tile = t.n / (np.ceil(t.n / nt) * nt)
    kfac = (t.k / (t.k + k0)) / (rk / (rk + k0))
    if c.spatial_cin0 is not None and t.area is not None:
        # a k x k convolution gathers k x k vectors of Cin values per output pixel (indirect / im2col GEMM):
        # its inner dimension is Cin, not K (a 7x7 stem on 3 channels wastes most SIMD lanes)
        cin, s0, rc = t.k / np.maximum(t.area, 1.0), c.spatial_cin0, rk / 9.0
        kfac = np.where(kind == k.K_CONV_SP, (cin / (cin + s0)) / (rc / (rc + s0)), kfac)
    items = t.items if t.items is not None else np.ones_like(t.m)
    rows = t.m / items  # a batched product's GEMMs are each M / items rows
    gemm_shape = kfac * (t.n / (t.n + n0)) * (rows / (rows + m0)) * tile / ((rn / (rn + n0)) * (rm / (rm + m0)))
    dw_shape = (t.n / (t.n + c0)) * (t.m / (t.m + m0)) * tile / ((rn / (rn + c0)) * (rm / (rm + m0)))
    shape = np.where(is_dw, dw_shape, np.where(is_mac, gemm_shape, 1.0))
    # non-MAC kernels are rated against the fp32 figure (their int8 speed is in eff[group]["int8"])
    rate_base = np.where(is_mac, S[prec], S[0])
    rate = rate_base * eff[kind, prec] * shape * tf
    move = np.isin(kind, k.MOVE_KINDS)
    compute = np.where(move, 0.0, t.flops / np.maximum(rate, 1e-9))
    bw_eff = np.where(
        (kind == k.K_DATA) & (not data_fitted), c.data_bw_efficiency, np.where(move, eff[kind, prec], c.bw_efficiency)
    )
    bw_eff = np.where(is_dw, c.dw_bw_efficiency, bw_eff)
    # working sets beyond the cache stream slower: x (1 + penalty x bytes / (bytes + cache))
    cache = max(c.cache_kb, 1.0) * 1024.0
    tf_mem = tf
    if c.family.startswith("arm64") and c.bandwidth_thread_cap is not None:
        # a phone's cores together stream about twice what one streams (the profile's figure): the memory term
        # scales with threads up to that, not as compute does
        tf_mem = np.minimum(tf, c.bandwidth_thread_cap)
    memory = (
        t.bytes / (dev.bandwidth_gbps * 1e9 * bw_eff * tf_mem) * (1.0 + c.cache_penalty * t.bytes / (t.bytes + cache))
    )
    bo = c.bmm_item_overhead_us
    item_us = np.array([bo.get("fp32", 0.0), bo.get("fp16", bo.get("fp32", 0.0)), bo.get("int8", 0.0)])[prec]
    ov_us = c.op_overhead_us + np.where(is_mac, c.mac_overhead_us + (items - 1.0) * item_us, 0.0)
    if c.dw_group_overhead_us:  # a plain grouped depthwise convolution pays per channel group
        ov_us = ov_us + np.where((kind == k.K_DW_FB) & (t.prec != 2), t.n * c.dw_group_overhead_us, 0.0)
    ov = ov_us * 1e-6 * (c.ref_ghz / dev.ghz) * (1 + (n_thr - 1) * c.thread_overhead)
    total = np.where(t.run, _smooth_max(compute, memory) + ov, 0.0)
    if c.weight_cache_mb is not None and c.weight_cache_penalty and t.op_weights is not None:
        # a graph's weights beyond the cache come from memory at every inference, on top of the op's work (a chain of
        # 12 distinct 384 -> 1536 -> 384 blocks, 57 MB, ran 11-18% slower per block than one block repeated, 4.7 MB,
        # on this host): the share of the weights beyond it, streamed at the bandwidth / weight_cache_penalty.
        # Small per MAC for convolutions (each weight serves many pixels), large for token matrices
        w_graph = t.graph_weights if t.graph_weights is not None else float(t.op_weights.sum())
        beyond = np.maximum(0.0, 1.0 - c.weight_cache_mb * 2**20 / np.maximum(w_graph, 1.0))
        total = total + np.where(
            t.run, c.weight_cache_penalty * beyond * t.op_weights / (dev.bandwidth_gbps * 1e9 * tf), 0.0
        )
    return total, np.where(t.run, compute, 0.0), np.where(t.run, memory, 0.0)


def fixed_time(t: OpTable, c: Constants, dev: Device) -> float:
    """Seconds per inference outside the ops: the invoke itself and handing inputs/outputs over."""
    io = c.io_ns_per_element
    e = t.io_elems
    io_s = ((e["in"] + e["out"]) * io.get("fp32", 0.0) + (e["in_int8"] + e["out_int8"]) * io.get("int8", 0.0)) * 1e-9
    n_int8 = float(e["in_int8"] > 0) + float(e["out_int8"] > 0)
    io_s += n_int8 * c.io_fixed_us.get("int8", 0.0) * 1e-6
    return c.invoke_overhead_us * 1e-6 * (c.ref_ghz / dev.ghz) + io_s


def memory_mb(t: OpTable, c: Constants) -> tuple[float, float, float, float]:
    """(peak MB, weights MB, activations MB, runtime overhead MB) as the runtime holds them."""
    mem = c.memory
    wfs = mem.get("weight_factor", {})
    wf = wfs.get(t.weight_precision, wfs.get("fp32", 1.0))
    cwf = mem.get("conv_weight_factor", {}).get(t.weight_precision, wf)
    mb = 1 / 2**20
    conv_w = min(t.conv_weight_bytes, t.weight_bytes)
    w = ((t.weight_bytes - conv_w) * wf + conv_w * cwf) * mb
    a = t.activation_bytes * float(mem.get("activation_factor", 1.0)) * mb
    # the runtime's own share: a base, and per kernel (onnxruntime on this host: ~15 KB per node of its optimized
    # graph, which made int8 QDQ graphs with hundreds of nodes 20-35% larger than predicted)
    base = float(mem.get("base_mb", 0.0)) + t.kernels * float(mem.get("node_kb", 0.0)) / 1024.0
    return base + w + a, w, a, base


__all__ = ["REFERENCE_GEMM", "Device", "op_times", "fixed_time", "memory_mb"]
