"""Every number adaptc reports, with how it was obtained, and the verdict types built on it.

A :class:`Quantity` carries ``kind``: ``measured`` (with where, which runtime, how many threads and runs),
``counted`` (exact, from the exported graph or file: FLOPs, parameters, bytes) or ``estimated`` (by which
model, e.g. the roofline predictor and its version). Numbers never appear bare. Pure data: no behaviour
beyond constructors (and :func:`margin_text`, the one wording of a verdict's margin), so every stage can use these types
without importing another stage.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Kind = Literal["measured", "counted", "estimated"]
#: how the parity gate reads a drop (adaptc.exporters.parity.gate_verdict; one wording for report.md and the docs):
#: "lenient" is for exploring on a small test split, where a point gate rejects noise; "strict" is a release gate
Gate = Literal["point", "lenient", "strict"]
GATE_RULES: dict[Gate, str] = {
    "point": "decides on the drop itself",
    "lenient": "rejects only a drop whose 95% interval lies wholly above the limit",
    "strict": "accepts only a drop whose 95% interval lies wholly at or below the limit",
}
GATES: tuple[Gate, ...] = tuple(GATE_RULES)
#: which artifact a format ships, among those that pass the gate (adaptc.build.choice; one wording for report.md):
#: "first" trusts the profile's scheme order and stops there; the others make every scheme and rank them
Prefer = Literal["first", "fastest", "smallest"]
PREFER_RULES: dict[Prefer, str] = {
    "first": "the first scheme in the profile's order that passes the gate and fits the budgets",
    "fastest": "of every scheme that passes the gate and fits the budgets, the fastest estimated on the device",
    "smallest": "of every scheme that passes the gate and fits the budgets, the smallest file",
}
PREFERS: tuple[Prefer, ...] = tuple(PREFER_RULES)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Quantity(_Strict):
    value: float | None
    unit: str
    kind: Kind
    method: str
    #: (1.4) 95% interval of a measured task metric over the test split's samples (its sampling error; how it
    #: was computed: ``method`` says, from ``adaptc.core.stats.method``), None for other numbers
    ci95: tuple[float, float] | None = None

    @classmethod
    def measured(cls, value: float | None, unit: str, method: str) -> Quantity:
        return cls(value=value, unit=unit, kind="measured", method=method)

    @classmethod
    def counted(cls, value: float | None, unit: str, method: str) -> Quantity:
        return cls(value=value, unit=unit, kind="counted", method=method)

    @classmethod
    def estimated(cls, value: float | None, unit: str, method: str) -> Quantity:
        return cls(value=value, unit=unit, kind="estimated", method=method)


class BudgetVerdict(_Strict):
    budget: str
    limit: float
    value: float
    unit: str
    kind: Kind
    fits: bool
    #: (limit - value) / limit in percent: headroom when positive, overshoot when negative
    margin_pct: float
    message: str


def margin_text(pct: float) -> str:
    """A margin or overshoot in percent, as a budget message writes it (the magnitude; the sentence says which
    way): one decimal below 10% ("0.3%"), whole numbers from there ("12%"), "<0.1%" for what would read as 0%
    without being 0, "0%" only for exactly 0."""
    m = abs(float(pct))
    if m == 0:
        return "0%"
    if m < 0.05:
        return "<0.1%"
    return f"{m:.1f}%" if round(m, 1) < 10 else f"{m:.0f}%"
