"""Predictor constants: the shipped per-runtime model files and a profile's own ``predictor:`` section.

``adaptc/predict/models/<runtime>.json`` holds, per *family* of devices (``x86_64``: this kind of host, fitted
by ``adaptc calibrate``'s micro-benchmarks; ``arm64``: big out-of-order phone cores, fitted on the training
rows of the published Pixel 4 / Galaxy S10 measurements; ``arm64-inorder``: derived from ``arm64``), the
constants of :class:`adaptc.profiles.schema.RuntimeConstants`, how they were fitted, and the predictor's
measured error (``validation``, written by ``benchmarks/predictor_bench.py``).

A profile's ``predictor.runtimes.<runtime>`` section (the host profile written by ``adaptc calibrate`` has one)
overrides any of them field by field.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..profiles.schema import DeviceProfile

#: runtimes with a model file; CoreML has none yet and uses the tflite constants of the same family
MODEL_RUNTIMES = ("onnxruntime", "tflite")
FAMILIES = ("x86_64", "arm64", "arm64-inorder")
#: cores without out-of-order execution (their sustained / peak ratio is far lower, device_specs.md section 0)
IN_ORDER_CORES = (
    "cortex-a5",
    "cortex-a7",
    "cortex-a8",
    "cortex-a9",
    "cortex-a32",
    "cortex-a35",
    "cortex-a53",
    "cortex-a55",
    "cortex-a510",
    "cortex-a520",
)


def models_dir() -> Path:
    return Path(str(resources.files("adaptc.predict"))) / "models"


@functools.lru_cache(maxsize=8)
def _load_file(runtime: str) -> dict[str, Any]:
    p = models_dir() / f"{runtime}.json"
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def model_file(runtime: str) -> dict[str, Any]:
    """The parsed model file of a runtime (a deep copy: callers may change it)."""
    return copy.deepcopy(_load_file(runtime))


def clear_cache() -> None:
    _load_file.cache_clear()


def family_for(profile: DeviceProfile) -> str:
    """Which family of shipped constants a profile starts from."""
    if profile.predictor is not None and profile.predictor.family:
        return profile.predictor.family
    arch = (profile.cpu.arch or "").lower()
    if arch.startswith(("x86", "amd64", "i686")) or "x86" in arch:
        return "x86_64"
    names = [c.name.lower().replace(" ", "-") for c in profile.cpu.cores]
    if names and all(
        any(n.startswith(ino) and not n[len(ino) : len(ino) + 1].isdigit() for ino in IN_ORDER_CORES) for n in names
    ):
        return "arm64-inorder"
    return "arm64"


#: in-order / out-of-order model-level efficiency of dense CNNs (device_specs.md section 0: 25-30% of peak on
#: in-order A53 / A55 against 60-65% on big out-of-order cores)
IN_ORDER_RATIO = 0.275 / 0.625
#: what kernels with one multiply-accumulate or less per loaded element lose on an in-order core beyond the dense
#: kernels' loss: the Cortex-A53 loads 64 bits per cycle (a 128-bit NEON load takes two) against two 128-bit loads
#: per cycle on the Cortex-A76 (Arm's software optimization guides): 0.25 of the load bandwidth per cycle, against
#: the dense kernels' 0.44
IN_ORDER_STREAMING = 0.25 / IN_ORDER_RATIO
#: kernel groups that stream their operands (depthwise convolutions, elementwise ops, reductions)
STREAMING_GROUPS = ("depthwise_conv", "binary", "binary_broadcast", "activation", "hardswish", "softmax", "reduce")
#: ARM64: all cores together stream about twice what one core streams (about 75-80% of the theoretical DRAM
#: bandwidth against the ~40% one core reaches, the rule of the shipped profiles): the memory term's thread cap
ARM64_BANDWIDTH_THREAD_CAP = 1.9


def derive_inorder(arm64: dict[str, Any], today: str) -> dict[str, Any]:
    """The ``arm64-inorder`` constants from the fitted ``arm64`` ones (no in-order phone has published rows to fit
    on): the dense kernels' sustained fraction x IN_ORDER_RATIO; per-op, per-MAC and per-inference overheads (the
    runtime's scalar dispatch code) / IN_ORDER_RATIO; streaming kernels' efficiencies x IN_ORDER_STREAMING."""
    ino = copy.deepcopy(arm64)
    ino["peak_to_sustained"] = {k: round(v * IN_ORDER_RATIO, 4) for k, v in arm64["peak_to_sustained"].items()}
    for key in ("op_overhead_us", "mac_overhead_us", "invoke_overhead_us"):
        if key in ino:
            ino[key] = round(float(ino[key]) / IN_ORDER_RATIO, 4)
    for group in STREAMING_GROUPS:
        for prec, v in ino["efficiency"].get(group, {}).items():
            ino["efficiency"][group][prec] = round(float(v) * IN_ORDER_STREAMING, 5)
    ino["fitted"] = (
        f"derived from arm64 on {today}: peak_to_sustained x {IN_ORDER_RATIO:.2f} (in-order / out-of-order "
        f"model-level efficiency, device_specs.md section 0: 25-30% vs 60-65% of peak), overheads / "
        f"{IN_ORDER_RATIO:.2f}, depthwise / elementwise / reduction efficiencies x {IN_ORDER_STREAMING:.2f} (64-bit "
        f"against 2x128-bit loads per cycle, Arm's optimization guides); no in-order measurements"
    )
    return ino


def int8_dot_factor(profile: DeviceProfile) -> float:
    """How many times an ARM64 core's int8 figure exceeds what kernels without the dot-product instructions reach:
    4 with ``i8mm`` (SMMLA doubles SDOT), 2 with ``dotprod`` (SDOT: 4x the fp32 peak against about 2x with
    widening multiply-accumulates), else 1 (device_specs.md section 0: measured on the A76, A55 and an i8mm core).
    Depthwise int8 kernels use neither instruction: they are rated from the int8 figure divided by this."""
    if family_for(profile) == "x86_64":
        return 1.0
    feats = {f.lower() for f in profile.cpu.features}
    return 4.0 if "i8mm" in feats else (2.0 if "dotprod" in feats else 1.0)


def core_class(profile: DeviceProfile) -> str:
    """The kind of core a profile's runtime runs on, as the predictor's validation reports errors by it:
    ``x86_64``, ``arm out-of-order`` or ``arm in-order``, with ``+dotprod`` / ``+i8mm``."""
    fam = family_for(profile)
    if fam == "x86_64":
        return "x86_64"
    base = "arm in-order" if fam == "arm64-inorder" else "arm out-of-order"
    dot = int8_dot_factor(profile)
    return base + (" +i8mm" if dot == 4 else " +dotprod" if dot == 2 else "")


#: GEMM-shape constants a family may lack (None: those of the plain float GEMM), in the order files list them
_OPTIONAL_DIMS = ("gemm_int8_k0", "gemm_int8_n0", "qgemm_k0", "qgemm_n0", "qgemm_m0", "conv_k0", "conv_n0")


@dataclass
class Constants:
    """Fully resolved constants for one (device, runtime)."""

    runtime: str
    family: str
    efficiency: dict[str, dict[str, float]]
    gemm_k0: float
    gemm_n0: float
    gemm_m0: float
    dw_c0: float
    n_tile: float
    bw_efficiency: float
    data_bw_efficiency: float
    dw_bw_efficiency: float
    cache_kb: float
    cache_penalty: float
    op_overhead_us: float
    mac_overhead_us: float
    invoke_overhead_us: float
    io_ns_per_element: dict[str, float]
    io_fixed_us: dict[str, float]
    thread_efficiency: float
    thread_overhead: float
    ref_ghz: float
    peak_to_sustained: dict[str, float]
    memory: dict[str, Any]
    fitted: str
    #: where they came from: "model file tflite/arm64", "+ profile predictor section", ...
    source: str
    validation: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: GEMM half-efficiency K and N of int8 kernels, where they differ from the float ones (None: the same)
    gemm_int8_k0: float | None = None
    gemm_int8_n0: float | None = None
    #: GEMM half-efficiency K, N and M of onnxruntime's int8 QGemm kernel (None: those of the other int8 kernels);
    #: its time grows with the output M x N more than with K (requantizing every output element)
    qgemm_k0: float | None = None
    qgemm_n0: float | None = None
    qgemm_m0: float | None = None
    #: GEMM half-efficiency K and N of (float and int8) 1x1 convolutions where they differ from matmuls' (None: the
    #: same); blocked direct-convolution kernels keep their speed at small channel counts better than GEMMs
    conv_k0: float | None = None
    conv_n0: float | None = None
    #: extra cost per further item of a batched product of two activations (an attention head), us, per precision
    bmm_item_overhead_us: dict[str, float] = field(default_factory=dict)
    #: extra cost per channel group of a depthwise convolution in a plain (grouped, not blocked) layout, us
    dw_group_overhead_us: float = 0.0
    #: Cin at which a k x k convolution reaches half its efficiency (None: costed by K = Cin x k x k like a GEMM)
    spatial_cin0: float | None = None
    #: a graph's multiply-accumulate weights beyond weight_cache_mb come from memory at every inference, streamed at
    #: the bandwidth / weight_cache_penalty on top of each op's work (None: no such term)
    weight_cache_mb: float | None = None
    weight_cache_penalty: float = 0.0
    #: ARM64 families: the most the memory term speeds up with threads (None: as compute does)
    bandwidth_thread_cap: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The constants as a ``RuntimeConstants`` mapping (for profiles and model files)."""
        return {
            "efficiency": self.efficiency,
            "gemm_k0": self.gemm_k0,
            "gemm_n0": self.gemm_n0,
            "gemm_m0": self.gemm_m0,
            "dw_c0": self.dw_c0,
            "n_tile": self.n_tile,
            "bw_efficiency": self.bw_efficiency,
            "data_bw_efficiency": self.data_bw_efficiency,
            "dw_bw_efficiency": self.dw_bw_efficiency,
            "cache_kb": self.cache_kb,
            "cache_penalty": self.cache_penalty,
            "op_overhead_us": self.op_overhead_us,
            "mac_overhead_us": self.mac_overhead_us,
            "invoke_overhead_us": self.invoke_overhead_us,
            "io_ns_per_element": self.io_ns_per_element,
            "io_fixed_us": self.io_fixed_us,
            "thread_efficiency": self.thread_efficiency,
            "thread_overhead": self.thread_overhead,
            "ref_ghz": self.ref_ghz,
            "peak_to_sustained": self.peak_to_sustained,
            "memory": self.memory,
            "fitted": self.fitted,
            **{k: getattr(self, k) for k in _OPTIONAL_DIMS if getattr(self, k) is not None},
            **({"dw_group_overhead_us": self.dw_group_overhead_us} if self.dw_group_overhead_us else {}),
            **({"bmm_item_overhead_us": dict(self.bmm_item_overhead_us)} if self.bmm_item_overhead_us else {}),
            **({"spatial_cin0": self.spatial_cin0} if self.spatial_cin0 is not None else {}),
            **(
                {"weight_cache_mb": self.weight_cache_mb, "weight_cache_penalty": self.weight_cache_penalty}
                if self.weight_cache_mb is not None
                else {}
            ),
            **({"bandwidth_thread_cap": self.bandwidth_thread_cap} if self.bandwidth_thread_cap is not None else {}),
        }


def constants_from_dict(
    d: dict[str, Any],
    runtime: str,
    family: str,
    source: str = "",
    validation: dict[str, Any] | None = None,
    notes: list[str] | None = None,
) -> Constants:
    """A :class:`Constants` from a ``RuntimeConstants``-shaped mapping (a model file family, merged overrides)."""
    return Constants(
        runtime=runtime,
        family=family,
        efficiency={k: {p: float(x) for p, x in v.items()} for k, v in d["efficiency"].items()},
        gemm_k0=float(d["gemm_k0"]),
        gemm_n0=float(d["gemm_n0"]),
        gemm_m0=float(d["gemm_m0"]),
        dw_c0=float(d["dw_c0"]),
        n_tile=float(d.get("n_tile", 1.0)),
        bw_efficiency=float(d["bw_efficiency"]),
        data_bw_efficiency=float(d["data_bw_efficiency"]),
        dw_bw_efficiency=float(d.get("dw_bw_efficiency", d["bw_efficiency"])),
        cache_kb=float(d.get("cache_kb", 1024.0)),
        cache_penalty=float(d.get("cache_penalty", 0.0)),
        op_overhead_us=float(d["op_overhead_us"]),
        mac_overhead_us=float(d.get("mac_overhead_us", 0.0)),
        invoke_overhead_us=float(d["invoke_overhead_us"]),
        io_ns_per_element={k: float(v) for k, v in d.get("io_ns_per_element", {}).items()},
        io_fixed_us={k: float(v) for k, v in d.get("io_fixed_us", {}).items()},
        thread_efficiency=float(d["thread_efficiency"]),
        thread_overhead=float(d.get("thread_overhead", 0.0)),
        ref_ghz=float(d["ref_ghz"]),
        peak_to_sustained={k: float(v) for k, v in d["peak_to_sustained"].items()},
        memory=copy.deepcopy(d["memory"]),
        fitted=str(d.get("fitted", "")),
        source=source,
        validation=dict(validation or {}),
        notes=list(notes or []),
        **{k: float(d[k]) for k in _OPTIONAL_DIMS if d.get(k) is not None},
        dw_group_overhead_us=float(d.get("dw_group_overhead_us") or 0.0),
        bmm_item_overhead_us={k: float(v) for k, v in (d.get("bmm_item_overhead_us") or {}).items()},
        spatial_cin0=float(d["spatial_cin0"]) if d.get("spatial_cin0") is not None else None,
        weight_cache_mb=float(d["weight_cache_mb"]) if d.get("weight_cache_mb") is not None else None,
        weight_cache_penalty=float(d.get("weight_cache_penalty") or 0.0),
        bandwidth_thread_cap=float(d["bandwidth_thread_cap"]) if d.get("bandwidth_thread_cap") is not None else None,
    )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if v is None:
            continue
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def family_constants(runtime: str, family: str) -> tuple[dict[str, Any], str, list[str]]:
    """Shipped constants of a runtime and family, falling back (with a note) where no data exists."""
    notes: list[str] = []
    rt = runtime if runtime in MODEL_RUNTIMES else "tflite"
    if rt != runtime:
        notes.append(
            f"no {runtime} constants are shipped: the tflite constants of family {family} are used "
            f"(CPU execution assumed)"
        )
    data = _load_file(rt)
    fams = data.get("families", {})
    if family in fams:
        return copy.deepcopy(fams[family]), f"{rt}/{family}", notes
    for alt_rt in ("tflite", "onnxruntime"):
        alt = _load_file(alt_rt).get("families", {})
        if family in alt:
            notes.append(f"no {rt} constants for {family} devices: the {alt_rt}/{family} constants are used")
            return copy.deepcopy(alt[family]), f"{alt_rt}/{family}", notes
    fam = next(iter(fams))
    notes.append(f"no constants for family {family}: {rt}/{fam} used")
    return copy.deepcopy(fams[fam]), f"{rt}/{fam}", notes


def resolve(profile: DeviceProfile, runtime: str) -> Constants:
    """The constants the predictor uses for ``runtime`` on ``profile``."""
    family = family_for(profile)
    base, src, notes = family_constants(runtime, family)
    source = f"model file {src}"
    pred = profile.predictor
    if pred is not None and runtime in pred.runtimes:
        over = pred.runtimes[runtime].model_dump(exclude_none=True)
        base = _merge(base, over)
        source += f" + profile {profile.name} predictor.runtimes.{runtime}"
    if runtime == "onnxruntime" and family.startswith("arm64"):
        notes.append(
            "no published phone measurements of onnxruntime: its arm64 latency constants are the tflite "
            "ones (memory constants are onnxruntime's own, from the host)"
        )
    validation = _load_file(runtime if runtime in MODEL_RUNTIMES else "tflite").get("validation", {})
    return constants_from_dict(base, runtime, family, source, validation, notes)


def sustained_throughput(profile: DeviceProfile, precision: str, runtime: str = "tflite") -> tuple[float, str]:
    """Sustained dense-convolution throughput (GFLOP/s or GOP/s) at the profile's thread count, and where it
    came from. A spec-sheet profile gives peaks: sustained = peak x the family's fitted ``peak_to_sustained``.
    A missing fp16 / int8 figure falls back to fp32 (no faster path assumed)."""
    c = profile.compute
    sustained = {"fp32": c.fp32_gflops, "fp16": c.fp16_gflops, "int8": c.int8_gops}
    peak = {"fp32": c.fp32_peak_gflops, "fp16": c.fp16_peak_gflops, "int8": c.int8_peak_gops}
    name = {"fp32": "fp32_gflops", "fp16": "fp16_gflops", "int8": "int8_gops"}
    pname = {"fp32": "fp32_peak_gflops", "fp16": "fp16_peak_gflops", "int8": "int8_peak_gops"}
    for p in [precision, "fp32"] if precision != "fp32" else ["fp32"]:
        if s := sustained.get(p):
            return float(s), f"compute.{name[p]}"
        if pk := peak.get(p):
            consts = resolve(profile, runtime)
            ratio = consts.peak_to_sustained.get(p, consts.peak_to_sustained.get("fp32", 0.5))
            return float(pk) * ratio, f"compute.{pname[p]} x {ratio:.3g} ({consts.family} peak-to-sustained)"
    raise AssertionError("profile without fp32 throughput (schema guarantees one)")  # pragma: no cover


def device_ghz(profile: DeviceProfile) -> float:
    """Clock of the fastest core (single-thread runtimes run there)."""
    return max(c.ghz for c in profile.cpu.cores)
