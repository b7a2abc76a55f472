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

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from ..quant.schemes import SchemeName

SCHEMA_VERSION = 1

Format = Literal["onnx", "tflite", "coreml"]
Runtime = Literal["onnxruntime", "tflite", "coreml"]

#: The runtime each format runs on (the predictor and the host measurement use it).
FORMAT_RUNTIME: dict[str, str] = {"onnx": "onnxruntime", "tflite": "tflite", "coreml": "coreml"}


class Kind(str, Enum):
    phone = "phone"
    speaker = "speaker"
    camera = "camera"
    mcu = "mcu"
    host = "host"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Core(_Strict):
    name: Annotated[str, Field(min_length=1)]
    count: PositiveInt
    ghz: PositiveFloat


class CPU(_Strict):
    cores: Annotated[list[Core], Field(min_length=1)]
    #: threads the on-device runtime uses by default (also used for host measurement, capped by host cores)
    threads: PositiveInt = 1
    #: ISA level, e.g. "armv8.2-a", "x86-64-v3" (informative)
    arch: str | None = None
    #: ISA features that matter for kernels: dotprod, i8mm, fp16, sve2, avx2, avx512_vnni, ...
    features: tuple[str, ...] = ()

    @property
    def total_cores(self) -> int:
        return sum(c.count for c in self.cores)

    @model_validator(mode="after")
    def _threads_fit(self) -> "CPU":
        if self.threads > self.total_cores:
            raise ValueError(f"threads ({self.threads}) is more than the {self.total_cores} cores listed")
        return self


class Compute(_Strict):
    """Sustained throughput at ``cpu.threads`` threads (model-level, not instruction peak)."""

    fp32_gflops: PositiveFloat
    fp16_gflops: PositiveFloat | None = None
    int8_gops: PositiveFloat | None = None


class Memory(_Strict):
    ram_mb: PositiveFloat
    bandwidth_gbps: PositiveFloat


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
    channel_multiple: PositiveInt = 8
    #: where each figure comes from (URLs, datasheets, measurement commands)
    sources: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]
    notes: str | None = None

    @field_validator("formats", "quantization")
    @classmethod
    def _no_duplicates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        dup = sorted({x for x in v if v.count(x) > 1})
        if dup:
            raise ValueError(f"listed more than once: {', '.join(dup)}")
        return v

    @model_validator(mode="after")
    def _ram_holds_budget(self) -> "DeviceProfile":
        b = self.budgets.max_peak_memory_mb
        if b is not None and b > self.memory.ram_mb:
            raise ValueError(
                f"budgets.max_peak_memory_mb ({b:g}) is more than memory.ram_mb ({self.memory.ram_mb:g})"
            )
        return self

    def throughput_gops(self, precision: str) -> tuple[float, str]:
        """Sustained throughput for a precision, and which figure it came from.

        A missing fp16 figure falls back to fp32 (the runtime computes fp16 models in fp32 on CPUs
        without fp16 arithmetic); a missing int8 figure falls back to fp32 too (no faster int8 path).
        """
        c = self.compute
        if precision == "int8" and c.int8_gops:
            return c.int8_gops, "compute.int8_gops"
        if precision == "fp16" and c.fp16_gflops:
            return c.fp16_gflops, "compute.fp16_gflops"
        return c.fp32_gflops, "compute.fp32_gflops"
