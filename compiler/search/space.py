"""The candidate space (width x depth x quantization scheme) and the cost filter that runs before training.

Every skeleton (width, blocks dropped) is derived from the teacher and exported to ONNX once; its cost report
(MACs, parameters, peak activations) and the predictor give, per scheme, the estimated device latency and
peak memory, the model size and the FLOPs. A candidate that breaks any budget is dropped before training,
with the reasons recorded.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..analysis import analyze_onnx
from ..errors import AdaptcError
from ..export.onnx import export_onnx_fp32
from ..predict import predict_from_cost
from ..profiles import DeviceProfile
from ..quant import get_scheme
from ..report.schema import Quantity
from ..profiles.budgets import check_budgets

DEFAULT_WIDTHS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.125)
#: the runtime whose estimates drive the search (the profile's first format decides)
_FORMAT_RUNTIME = {"tflite": "tflite", "onnx": "onnxruntime", "coreml": "coreml"}


def validate_widths(widths: Sequence[float]) -> tuple[float, ...]:
    if not widths:
        raise AdaptcError("the width grid is empty")
    bad = [w for w in widths if not (0 < float(w) <= 1)]
    if bad:
        raise AdaptcError(f"width multipliers must be in (0, 1]; got {', '.join(f'{b:g}' for b in bad)}")
    return tuple(sorted({float(w) for w in widths}, reverse=True))


@dataclass(frozen=True)
class SkeletonSpec:
    width: float
    drop: int = 0

    @property
    def key(self) -> str:
        return f"w{self.width:g}-d{self.drop}"


@dataclass(frozen=True)
class Candidate:
    skeleton: SkeletonSpec
    scheme: str

    @property
    def key(self) -> str:
        return f"{self.skeleton.key}-{self.scheme}"


@dataclass
class CandidateCost:
    candidate: Candidate
    params: int
    macs: int
    mflops: float
    size_mb: float
    peak_activation_mb: float
    latency_ms: float
    memory_mb: float
    predictor: str
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return all(v["fits"] for v in self.verdicts)

    @property
    def broken(self) -> list[dict[str, Any]]:
        return [v for v in self.verdicts if not v["fits"]]

    @property
    def worst_overshoot(self) -> float:
        """How far beyond its worst budget (0 when feasible): max(value / limit) - 1."""
        return max([v["value"] / v["limit"] - 1 for v in self.verdicts if v["limit"] > 0] + [0.0])

    def reason(self) -> str:
        if self.feasible:
            return "fits every budget (estimated)"
        return "; ".join(v["message"] for v in self.broken)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["candidate"] = {"width": self.candidate.skeleton.width, "drop": self.candidate.skeleton.drop,
                          "scheme": self.candidate.scheme, "key": self.candidate.key}
        d["feasible"] = self.feasible
        d["reason"] = self.reason()
        return d


def search_runtime(profile: DeviceProfile) -> str:
    return _FORMAT_RUNTIME.get(profile.formats[0], "onnxruntime")


def search_schemes(profile: DeviceProfile) -> list[str]:
    """Schemes to consider: the profile's, in its order (fp32 always included as the reference)."""
    out = [s for s in profile.quantization]
    if "fp32" not in out:
        out.append("fp32")
    return out


def skeleton_cost(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> Any:
    with tempfile.TemporaryDirectory(prefix="adaptc-cost-") as d:
        p = export_onnx_fp32(model, example_inputs, Path(d) / "s.onnx", dynamic_batch=False)
        return analyze_onnx(p)


def candidate_costs(spec: SkeletonSpec, cost: Any, profile: DeviceProfile, schemes: Sequence[str]) -> list[CandidateCost]:
    runtime = search_runtime(profile)
    out = []
    for s in schemes:
        sch = get_scheme(s)
        pred = predict_from_cost(cost, profile, runtime=runtime, precision=sch.precision if sch.precision != "fp32"
                                 else None)
        # file size: the weights at the scheme's precision (+ small per-layer scales / graph overhead)
        size_mb = (cost.params * sch.weight_bytes_per_param + 4096) / 2**20
        values = {
            "max_latency_ms": Quantity.estimated(pred.latency_ms, "ms", pred.method),
            "max_peak_memory_mb": Quantity.estimated(pred.peak_memory_mb, "MB", pred.method),
            "max_model_mb": Quantity.estimated(size_mb, "MB", "parameters x bytes per weight at the scheme"),
            "max_mflops": Quantity.counted(cost.flops / 1e6, "MFLOPs", "counted from the exported graph"),
        }
        verdicts = [v.model_dump() for v in check_budgets(profile, values)]
        out.append(CandidateCost(Candidate(spec, s), cost.params, cost.macs, cost.flops / 1e6, size_mb,
                                 cost.peak_activation_bytes / 2**20, pred.latency_ms, pred.peak_memory_mb,
                                 pred.version, verdicts))
    return out
