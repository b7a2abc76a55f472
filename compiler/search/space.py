"""The candidate space (width x depth x quantization scheme) and the cost filter that runs before training.

Every skeleton (width, blocks dropped) is derived from the teacher and exported to ONNX once; its cost report
(MACs, parameters, peak activations) and the predictor give, per scheme, the estimated device latency and
peak memory, the model size and the FLOPs. A candidate that breaks any budget is dropped before training,
with the reasons recorded.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..analysis import analyze_onnx
from ..core.formats import FORMAT_RUNTIME
from ..core.quantity import Quantity
from ..core.schemes import get_scheme
from ..exporters.onnx import export_onnx_fp32
from ..predict.device import estimate_on_device
from ..profiles import DeviceProfile
from ..report.schema import CandidateKey, CandidateRecord


@dataclass(frozen=True)
class SkeletonSpec:
    width: float
    drop: int = 0

    @property
    def key(self) -> str:
        return f"w{self.width:g}-d{self.drop}"


def search_runtime(profile: DeviceProfile) -> str:
    """The runtime whose estimates drive the search: the profile's first format decides."""
    return FORMAT_RUNTIME[profile.formats[0]]


def search_schemes(profile: DeviceProfile) -> list[str]:
    """Schemes to consider: the profile's, in its order (fp32 always included as the reference)."""
    out: list[str] = [s for s in profile.quantization]
    if "fp32" not in out:
        out.append("fp32")
    return out


def skeleton_cost(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> Any:
    with tempfile.TemporaryDirectory(prefix="adaptc-cost-") as d:
        p = export_onnx_fp32(model, example_inputs, Path(d) / "s.onnx", dynamic_batch=False)
        return analyze_onnx(p)


def candidate_costs(
    spec: SkeletonSpec, cost: Any, profile: DeviceProfile, schemes: Sequence[str]
) -> list[CandidateRecord]:
    runtime = search_runtime(profile)
    out = []
    for s in schemes:
        sch = get_scheme(s)
        # file size: the weights at the scheme's precision (+ small per-layer scales / graph overhead)
        size_mb = (cost.params * sch.weight_bytes_per_param + 4096) / 2**20
        est = estimate_on_device(
            cost,
            profile,
            runtime=runtime,
            precision=sch.precision if sch.precision != "fp32" else None,
            size=Quantity.estimated(size_mb, "MB", "parameters x bytes per weight at the scheme"),
        )
        assert est.latency is not None and est.peak_memory is not None and est.predictor is not None
        verdicts = est.verdicts
        feasible = all(v.fits for v in verdicts)
        out.append(
            CandidateRecord(
                candidate=CandidateKey(width=spec.width, drop=spec.drop, scheme=s, key=f"{spec.key}-{s}"),
                params=cost.params,
                macs=cost.macs,
                mflops=cost.flops / 1e6,
                size_mb=size_mb,
                peak_activation_mb=cost.peak_activation_bytes / 2**20,
                latency_ms=float(est.latency.value or 0.0),
                memory_mb=float(est.peak_memory.value or 0.0),
                predictor=est.predictor,
                verdicts=verdicts,
                feasible=feasible,
                reason="fits every budget (estimated)"
                if feasible
                else "; ".join(v.message for v in verdicts if not v.fits),
            )
        )
    return out
