"""One cost on one device: the estimate (latency, peak memory) and the verdict of every budget it concerns.

The search (every candidate before training, from its skeleton's graph) and the build (every artifact, from its
file) both call :func:`estimate_on_device`, so a candidate and the artifact made from it are judged the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.quantity import BudgetVerdict, Quantity
from ..profiles import DeviceProfile
from ..profiles.budgets import check_budgets
from . import predict_from_cost

#: how the FLOPs of a cost report are counted (the wording of a report's budget values)
FLOPS_METHOD = "counted from the exported graph (adaptc.analysis: 2 FLOPs per MAC, elementwise per element)"


@dataclass(frozen=True)
class DeviceCost:
    latency: Quantity | None
    peak_memory: Quantity | None
    #: the predictor's version (None without a cost to predict from)
    predictor: str | None
    verdicts: list[BudgetVerdict] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        """Every budget checked fits (None: no budget was checked)."""
        return all(v.fits for v in self.verdicts) if self.verdicts else None


def estimate_on_device(
    cost: Any,
    profile: DeviceProfile,
    *,
    runtime: str,
    size: Quantity | None,
    precision: str | None = None,
    method_note: str = "",
    flops_method: str = FLOPS_METHOD,
) -> DeviceCost:
    """Estimate ``cost`` (an :class:`adaptc.analysis.CostReport`, or None when no analysis exists) on ``profile``
    with ``runtime`` at ``precision`` (None: the graph's own), and check the budgets: latency and peak memory
    (estimated), model size (``size``, in MB: counted for a file, estimated for a candidate) and FLOPs (counted).
    ``method_note`` is added to the estimate's method (e.g. where the op costs came from)."""
    values: dict[str, Quantity] = {}
    if size is not None:
        values["max_model_mb"] = size
    if cost is None:
        return DeviceCost(None, None, None, check_budgets(profile, values))
    pred = predict_from_cost(cost, profile, runtime=runtime, precision=precision)
    method = pred.method + method_note
    latency = Quantity.estimated(pred.latency_ms, "ms", method)
    memory = Quantity.estimated(pred.peak_memory_mb, "MB", method)
    values.update(
        max_latency_ms=latency,
        max_peak_memory_mb=memory,
        max_mflops=Quantity.counted(cost.flops / 1e6, "MFLOPs", flops_method),
    )
    return DeviceCost(latency, memory, pred.version, check_budgets(profile, values))
