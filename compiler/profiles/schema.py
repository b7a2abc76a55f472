"""The device profile schema (version 1): a frozen, strict pydantic v2 model.

A profile describes one target: its SoC and cores, sustained compute throughput at the thread count
the on-device runtime uses, memory, the budgets an artifact must fit, the export formats and
quantization schemes the device runs well (best first) and the channel multiple its kernels like.
Unknown keys are rejected; every figure must be positive; ``sources`` must say where figures come from.
See ``docs/profiles.md`` for the field reference and how to write a profile from a spec sheet.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, field_validator, model_validator

from ..core.formats import Format, Runtime
from ..core.schemes import SchemeName

SCHEMA_VERSION = 1


class Kind(str, Enum):
    phone = "phone"
    speaker = "speaker"
    camera = "camera"
    mcu = "mcu"
    host = "host"


class _Strict(BaseModel):
    # no NaN or Infinity anywhere in a profile: every figure is a finite number (a budget of .inf is no budget)
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)


#: figures a physical device can have: a throughput (GFLOP/s, GOP/s) or a bandwidth (GB/s) between 0.001 and 10^6
Rate = Annotated[float, Field(ge=1e-3, le=1e6)]


class Core(_Strict):
    name: Annotated[str, Field(min_length=1)]
    count: Annotated[int, Field(ge=1, le=4096)]
    ghz: Annotated[float, Field(gt=0, le=20)]


class CPU(_Strict):
    cores: Annotated[list[Core], Field(min_length=1)]
    #: threads the on-device runtime uses by default (also used for host measurement, capped by host cores)
    threads: Annotated[int, Field(ge=1, le=4096)] = 1
    #: ISA level, e.g. "armv8.2-a", "x86-64-v3" (informative)
    arch: str | None = None
    #: ISA features that matter for kernels: dotprod, i8mm, fp16, sve2, avx2, avx512_vnni, ...
    features: tuple[str, ...] = ()

    @property
    def total_cores(self) -> int:
        return sum(c.count for c in self.cores)

    @model_validator(mode="after")
    def _threads_fit(self) -> CPU:
        if self.threads > self.total_cores:
            raise ValueError(f"threads ({self.threads}) is more than the {self.total_cores} cores listed")
        return self


class Compute(_Strict):
    """Throughput at ``cpu.threads`` threads.

    ``fp32_gflops`` / ``fp16_gflops`` / ``int8_gops`` are *sustained* figures: what a large dense convolution
    reaches in the runtime (model level, not instruction peak). A profile written from a spec sheet may give
    the instruction-level *peaks* instead (``*_peak_*``, e.g. from vfpbench/cpufp or cores x FLOP/cycle x GHz);
    the predictor then maps peak to sustained with the documented, fitted ratios of its model file
    (``adaptc.predict``). At least one of ``fp32_gflops`` and ``fp32_peak_gflops`` is required.
    """

    fp32_gflops: Rate | None = None
    fp16_gflops: Rate | None = None
    int8_gops: Rate | None = None
    #: instruction-level peaks at ``cpu.threads`` threads (optional; spec-sheet profiles)
    fp32_peak_gflops: Rate | None = None
    fp16_peak_gflops: Rate | None = None
    int8_peak_gops: Rate | None = None

    @model_validator(mode="before")
    @classmethod
    def _need_fp32(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("fp32_gflops") is None and data.get("fp32_peak_gflops") is None:
            # reported as a missing field at compute.fp32_gflops (the usual one-line message)
            raise ValueError(
                "compute.fp32_gflops is missing: give fp32_gflops (sustained GFLOP/s) or fp32_peak_gflops "
                "(spec-sheet peak GFLOP/s)"
            )
        return data


class Memory(_Strict):
    ram_mb: Annotated[float, Field(gt=0, le=1e8)]
    bandwidth_gbps: Rate


Precision = Literal["fp32", "fp16", "int8"]

#: op classes (multiply-accumulate) and kernel groups (the rest) the predictor keeps efficiencies for, in the order
#: of the predictor's kind codes (``adaptc.predict.kinds.KIND_NAMES`` is this tuple)
#: conv_fallback / depthwise_conv_fallback: float convolutions onnxruntime keeps out of its NCHWc layout on x86
PREDICTOR_CLASSES = (
    "conv", "depthwise_conv", "matmul", "binary", "activation", "hardswish", "softmax", "reduce", "quant",
    "transpose", "pad", "data", "conv_fallback", "depthwise_conv_fallback", "skip_layernorm", "conv_spatial",
    "conv_dequantized", "qgemm", "binary_broadcast", "weight_dequant", "matmul_dynamic", "dynamic_quant", "reorder",
)  # fmt: skip


class MemoryConstants(_Strict):
    """Peak-memory model of one runtime: base + weight_factor[precision] x weight bytes + activation_factor x
    peak activation bytes (liveness) + node_kb x kernels."""

    base_mb: NonNegativeFloat | None = None
    weight_factor: dict[Precision, NonNegativeFloat] | None = None
    #: the factor for convolution weights, where it differs (onnxruntime keeps a re-laid-out copy of them)
    conv_weight_factor: dict[Precision, NonNegativeFloat] | None = None
    activation_factor: NonNegativeFloat | None = None
    #: memory per kernel the runtime dispatches (its node objects, per-node buffers), KB
    node_kb: NonNegativeFloat | None = None


class RuntimeConstants(_Strict):
    """Predictor constants of one runtime on one device (see README "Predictor"). Every field is optional in a
    profile: missing ones come from the shipped per-runtime model file (``adaptc/predict/models/*.json``)."""

    #: fraction of the profile's sustained throughput an op class / kernel group reaches, per precision
    #: (transpose and pad: fraction of memory.bandwidth_gbps)
    efficiency: dict[str, dict[Precision, PositiveFloat]] | None = None
    #: GEMM dimensions at which a multiply-accumulate op reaches half its efficiency (K, N, M) and, for
    #: depthwise convolutions, the channel count (dw_c0)
    gemm_k0: NonNegativeFloat | None = None
    gemm_n0: NonNegativeFloat | None = None
    #: the same for int8 kernels where they differ (unset: gemm_k0 / gemm_n0)
    gemm_int8_k0: NonNegativeFloat | None = None
    gemm_int8_n0: NonNegativeFloat | None = None
    #: the same for onnxruntime's int8 QGemm kernel (unset: those of the other int8 kernels)
    qgemm_k0: NonNegativeFloat | None = None
    qgemm_n0: NonNegativeFloat | None = None
    qgemm_m0: NonNegativeFloat | None = None
    #: the same for 1x1 convolutions (unset: those of matmuls)
    conv_k0: NonNegativeFloat | None = None
    conv_n0: NonNegativeFloat | None = None
    #: input channels at which a k x k convolution reaches half its efficiency (unset: costed by K like a GEMM)
    spatial_cin0: NonNegativeFloat | None = None
    gemm_m0: NonNegativeFloat | None = None
    dw_c0: NonNegativeFloat | None = None
    #: SIMD tile width of the output-channel dimension (a partial last tile wastes lanes); not fitted
    n_tile: PositiveFloat | None = None
    #: fraction of memory.bandwidth_gbps that compute ops (bw_efficiency) and data-movement ops reach
    bw_efficiency: PositiveFloat | None = None
    data_bw_efficiency: PositiveFloat | None = None
    #: fraction of memory.bandwidth_gbps depthwise convolutions stream their input and output at
    dw_bw_efficiency: PositiveFloat | None = None
    #: ops whose bytes exceed about cache_kb stream (1 + cache_penalty) times slower than small ones
    cache_kb: PositiveFloat | None = None
    cache_penalty: NonNegativeFloat | None = None
    #: the share of a graph's weights beyond weight_cache_mb comes from memory at every inference, at the bandwidth
    #: divided by weight_cache_penalty, on top of each op's work
    weight_cache_mb: PositiveFloat | None = None
    weight_cache_penalty: NonNegativeFloat | None = None
    #: ARM64: the most the memory term speeds up with threads (all cores together against one; None: as compute)
    bandwidth_thread_cap: PositiveFloat | None = None
    #: fixed cost per executed op and per inference (microseconds, at ref_ghz)
    op_overhead_us: NonNegativeFloat | None = None
    #: extra fixed cost of each convolution / matmul (kernel setup, layout reorders), microseconds
    mac_overhead_us: NonNegativeFloat | None = None
    #: extra cost per channel group of a depthwise convolution run as a plain grouped convolution (onnxruntime
    #: outside its NCHWc layout), microseconds
    #: extra cost per further item of a batched product of two activations (attention heads), us, per precision
    bmm_item_overhead_us: dict[Precision, NonNegativeFloat] | None = None
    dw_group_overhead_us: NonNegativeFloat | None = None
    invoke_overhead_us: NonNegativeFloat | None = None
    #: cost of handing each graph input/output element to the runtime (host Python runners), by element type
    io_ns_per_element: dict[Precision, NonNegativeFloat] | None = None
    #: fixed cost per graph input/output of that element type (int8: quantizing / dequantizing in the runner), us
    io_fixed_us: dict[Precision, NonNegativeFloat] | None = None
    #: throughput added per extra thread (1 = linear scaling) and extra per-op overhead per extra thread
    thread_efficiency: Annotated[float, Field(ge=0, le=1)] | None = None
    thread_overhead: NonNegativeFloat | None = None
    #: clock (GHz) of the machine the overheads were fitted on: overheads scale by ref_ghz / device GHz
    ref_ghz: PositiveFloat | None = None
    #: sustained / peak throughput of dense convolutions (used when the profile gives only *_peak_* figures)
    peak_to_sustained: dict[Precision, PositiveFloat] | None = None
    memory: MemoryConstants | None = None
    #: how and when these constants were fitted (free text)
    fitted: str | None = None

    @field_validator("efficiency")
    @classmethod
    def _known_classes(cls, v: dict[str, dict[str, float]] | None) -> dict[str, dict[str, float]] | None:
        if v is not None:
            bad = sorted(k for k in v if k not in PREDICTOR_CLASSES)
            if bad:
                raise ValueError(f"unknown op class {', '.join(bad)} (known: {', '.join(PREDICTOR_CLASSES)})")
        return v


class PredictorSettings(_Strict):
    """Optional ``predictor:`` section of a profile."""

    #: which shipped constants to start from: x86_64 | arm64 | arm64-inorder (default: from cpu.arch / cores)
    family: Literal["x86_64", "arm64", "arm64-inorder"] | None = None
    #: per-runtime constants measured on this device (written by ``adaptc calibrate`` for the host)
    runtimes: dict[Runtime, RuntimeConstants] = Field(default_factory=dict)


class Budgets(_Strict):
    """What an artifact must fit on this device. A budget left out (null) is not checked."""

    max_latency_ms: PositiveFloat | None = None
    max_peak_memory_mb: PositiveFloat | None = None
    max_model_mb: PositiveFloat | None = None
    max_mflops: PositiveFloat | None = None


class DeviceProfile(_Strict):
    schema_version: Literal[1]
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
    display_name: Annotated[str, Field(min_length=1)]
    kind: Kind
    soc: Annotated[str, Field(min_length=1)]
    #: operating system family, decides platform formats (android -> tflite, ios -> coreml)
    os: Literal["android", "ios", "linux", "fireos", "rtos", "other"] = "other"
    cpu: CPU
    compute: Compute
    memory: Memory
    budgets: Budgets
    #: export formats the device runs, preferred first
    formats: Annotated[tuple[Format, ...], Field(min_length=1)]
    #: quantization schemes the device runs well, preferred first
    quantization: Annotated[tuple[SchemeName, ...], Field(min_length=1)]
    #: channel counts of pruned layers are rounded to a multiple of this (SIMD width of the kernels)
    channel_multiple: Annotated[int, Field(ge=1, le=256)] = 8
    #: where each figure comes from (URLs, datasheets, measurement commands)
    sources: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]
    notes: str | None = None
    #: optional predictor constants (fitted for this device); see README "Predictor accuracy"
    predictor: PredictorSettings | None = None

    @field_validator("formats", "quantization")
    @classmethod
    def _no_duplicates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        dup = sorted({x for x in v if v.count(x) > 1})
        if dup:
            raise ValueError(f"listed more than once: {', '.join(dup)}")
        return v

    @model_validator(mode="after")
    def _ram_holds_budget(self) -> DeviceProfile:
        b = self.budgets.max_peak_memory_mb
        if b is not None and b > self.memory.ram_mb:
            raise ValueError(f"budgets.max_peak_memory_mb ({b:g}) is more than memory.ram_mb ({self.memory.ram_mb:g})")
        return self
