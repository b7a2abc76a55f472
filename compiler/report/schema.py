"""The build report (``report.json``), versioned. Every number says how it was obtained.

A :class:`Quantity` carries ``kind``: ``measured`` (with where, which runtime, how many threads and runs),
``counted`` (exact, from the exported graph or file: FLOPs, parameters, bytes) or ``estimated`` (by which
model, e.g. the roofline predictor and its version). Numbers never appear bare.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REPORT_SCHEMA_VERSION = "1.6"

Kind = Literal["measured", "counted", "estimated"]
#: how the parity gate reads a drop (adaptc.export.parity.gate_verdict; one wording for report.md and the docs):
#: "lenient" is for exploring on a small test split, where a point gate rejects noise; "strict" is a release gate
Gate = Literal["point", "lenient", "strict"]
GATE_RULES: dict[str, str] = {
    "point": "decides on the drop itself",
    "lenient": "rejects only a drop whose 95% interval lies wholly above the limit",
    "strict": "accepts only a drop whose 95% interval lies wholly at or below the limit",
}
GATES: tuple[Gate, ...] = tuple(GATE_RULES)  # type: ignore[assignment]
#: which artifact a format ships, among those that pass the gate (adaptc.pipeline; one wording for report.md):
#: "first" trusts the profile's scheme order and stops there; the others make every scheme and rank them
Prefer = Literal["first", "fastest", "smallest"]
PREFER_RULES: dict[str, str] = {
    "first": "the first scheme in the profile's order that passes the gate and fits the budgets",
    "fastest": "of every scheme that passes the gate and fits the budgets, the fastest estimated on the device",
    "smallest": "of every scheme that passes the gate and fits the budgets, the smallest file",
}
PREFERS: tuple[Prefer, ...] = tuple(PREFER_RULES)  # type: ignore[assignment]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Quantity(_M):
    value: float | None
    unit: str
    kind: Kind
    method: str
    #: (1.4) 95% interval of a measured task metric over the test split's samples (its sampling error; how it
    #: was computed: ``method`` says, from ``adaptc.measure.sampling.method``), None for other numbers
    ci95: tuple[float, float] | None = None

    @classmethod
    def measured(cls, value: float | None, unit: str, method: str) -> "Quantity":
        return cls(value=value, unit=unit, kind="measured", method=method)

    @classmethod
    def counted(cls, value: float | None, unit: str, method: str) -> "Quantity":
        return cls(value=value, unit=unit, kind="counted", method=method)

    @classmethod
    def estimated(cls, value: float | None, unit: str, method: str) -> "Quantity":
        return cls(value=value, unit=unit, kind="estimated", method=method)


class BudgetVerdict(_M):
    budget: str
    limit: float
    value: float
    unit: str
    kind: Kind
    fits: bool
    #: (limit - value) / limit in percent: headroom when positive, overshoot when negative
    margin_pct: float
    message: str


class ParityReport(_M):
    runtime: str
    split: str
    samples: int
    metric_name: str
    metric: Quantity
    #: metric of the torch model the artifact came from (same split)
    torch_metric: Quantity
    drop_vs_torch: float
    #: metric drop against the fp32 artifact of the same format, both in the same runtime
    drop_vs_fp32_artifact: float | None = None
    #: (1.4) 95% paired bootstrap intervals of the two drops over the test samples (None without per-sample
    #: scores): a drop whose interval contains 0 is within the split's sampling error
    drop_vs_torch_ci95: tuple[float, float] | None = None
    drop_vs_fp32_artifact_ci95: tuple[float, float] | None = None
    #: (1.4) how many per-sample scores the intervals resample: ``samples`` counts inputs, a retrieval task scores
    #: one query per pair (minilm: 1,152 texts, 576 scored queries); 0 when the task has no per-sample scores
    scored_samples: int = 0
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    top1_agreement: float | None = None
    #: agreement with the teacher's outputs on the same split (1.3): mean cosine, and top-1 for classifiers --
    #: how closely the artifact imitates the teacher, measured in its runtime
    teacher_cosine: float | None = None
    teacher_top1_agreement: float | None = None
    max_drop: float
    #: (1.5) how the gate read the drop: "point" (the drop itself), "lenient" (rejects only a drop whose interval
    #: lies wholly above max_drop), "strict" (accepts only a drop whose interval lies wholly at or below it)
    gate: Gate = "point"
    passed: bool
    reason: str | None = None


class HostReport(_M):
    latency_median: Quantity
    latency_p90: Quantity
    peak_memory: Quantity
    rss_anon: Quantity
    rss_file: Quantity


class DeviceEstimate(_M):
    latency: Quantity
    peak_memory: Quantity
    predictor: str


class ArtifactReport(_M):
    file: str
    format: str
    scheme: str
    precision: str
    status: Literal["ok", "rejected", "failed", "skipped"]
    chosen: bool = False
    #: the converter that made the file (name and version), e.g. "litert-torch 0.10.0 (torch 2.13.0+cpu)"
    converter: str | None = None
    #: the runtime that ran the parity check and the host measurement (name and version), or why none did
    runtime: str | None = None
    size: Quantity | None = None
    sha256: str | None = None
    recipe: dict[str, Any] = Field(default_factory=dict)
    structure: dict[str, Any] = Field(default_factory=dict)
    cost: dict[str, Any] = Field(default_factory=dict)
    parity: ParityReport | None = None
    host: HostReport | None = None
    device: DeviceEstimate | None = None
    budgets: list[BudgetVerdict] = Field(default_factory=list)
    fits_budgets: bool | None = None
    flags: list[str] = Field(default_factory=list)
    error: str | None = None
    toolchain: dict[str, str] = Field(default_factory=dict)


class TeacherReport(_M):
    params: int
    metric: Quantity
    info: dict[str, Any] = Field(default_factory=dict)


class TaskReport(_M):
    name: str
    description: str
    metric_name: str
    kind: str
    teacher: TeacherReport
    #: (1.6) hash of the test split (inputs and targets, adaptc.store.data_fingerprint): builds with the same
    #: one scored the same samples, so their artifacts' metrics compare paired (adaptc compare)
    test_fingerprint: str | None = None


class BuildReport(_M):
    schema_version: str = REPORT_SCHEMA_VERSION
    adaptc_version: str
    created_utc: str
    duration_s: float
    status: Literal["ok", "partial", "no_fit", "failed"]
    status_reason: str | None = None
    out_dir: str
    device: dict[str, Any]
    task: TaskReport
    host: dict[str, Any]
    toolchain: dict[str, str]
    settings: dict[str, Any]
    artifacts: list[ArtifactReport]
    #: the chosen artifact's file (relative to out_dir), and the chosen one per format
    chosen: str | None = None
    chosen_per_format: dict[str, str] = Field(default_factory=dict)
    #: the student search (candidates, Pareto set, trials) when a search ran
    search: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)

    def artifact(self, file: str) -> ArtifactReport:
        for a in self.artifacts:
            if a.file == file:
                return a
        raise KeyError(file)

    @property
    def chosen_artifact(self) -> ArtifactReport | None:
        return self.artifact(self.chosen) if self.chosen else None
