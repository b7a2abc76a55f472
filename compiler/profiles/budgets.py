"""Checking numbers against a profile's budgets: fits or exceeds, and by how much."""

from __future__ import annotations

from ..core.quantity import BudgetVerdict, Quantity, margin_text
from .schema import DeviceProfile

#: budget field -> (unit, what it is checked against)
BUDGETS: dict[str, tuple[str, str]] = {
    "max_latency_ms": ("ms", "device latency"),
    "max_peak_memory_mb": ("MB", "device peak memory"),
    "max_model_mb": ("MB", "model size"),
    "max_mflops": ("MFLOPs", "FLOPs per inference"),
}


def verdict(budget: str, limit: float, q: Quantity) -> BudgetVerdict:
    unit, what = BUDGETS[budget]
    value = float(q.value or 0.0)
    fits = value <= limit
    margin = (limit - value) / limit * 100.0
    if fits:
        msg = f"{budget}: {what} {value:.4g} {unit} ({q.kind}) fits {limit:g} {unit} ({margin_text(margin)} headroom)"
    else:
        msg = f"{budget}: {what} {value:.4g} {unit} ({q.kind}) exceeds {limit:g} {unit} by {margin_text(margin)}"
    return BudgetVerdict(
        budget=budget, limit=limit, value=value, unit=unit, kind=q.kind, fits=fits, margin_pct=margin, message=msg
    )


def check_budgets(profile: DeviceProfile, values: dict[str, Quantity]) -> list[BudgetVerdict]:
    """One verdict per budget the profile sets and for which a value is given."""
    out = []
    for name in BUDGETS:
        limit = getattr(profile.budgets, name)
        if limit is None or name not in values or values[name].value is None:
            continue
        out.append(verdict(name, limit, values[name]))
    return out
