"""The build report (``report.json``), versioned. Every number says how it was obtained.

A :class:`Quantity` carries ``kind``: ``measured`` (with where, which runtime, how many threads and runs),
``counted`` (exact, from the exported graph or file: FLOPs, parameters, bytes) or ``estimated`` (by which
model, e.g. the roofline predictor and its version). Numbers never appear bare.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..core.quantity import BudgetVerdict, Gate, Quantity

REPORT_SCHEMA_VERSION = "1.10"


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    #: (1.9) whether the file is byte-identical when made again from the same inputs, and why not where it is not
    reproducible: str | None = None
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


# ---- the student search (1.7: typed; earlier reports are read through SearchReport's migration) ----------------
class CandidateKey(_M):
    width: float
    drop: int
    scheme: str
    key: str

    @property
    def skeleton(self) -> str:
        """The skeleton's key (``w0.5-d1``; adaptc.search.space.SkeletonSpec.key)."""
        return f"w{self.width:g}-d{self.drop}"


class CandidateRecord(_M):
    """One candidate (skeleton x scheme) of the cost filter: its counted cost, device estimate and budget verdicts."""

    candidate: CandidateKey
    params: int
    macs: int
    mflops: float
    size_mb: float
    peak_activation_mb: float
    latency_ms: float
    memory_mb: float
    predictor: str
    verdicts: list[BudgetVerdict] = Field(default_factory=list)
    feasible: bool
    reason: str

    @property
    def broken(self) -> list[BudgetVerdict]:
        """The budgets it breaks."""
        return [v for v in self.verdicts if not v.fits]

    @property
    def worst_overshoot(self) -> float:
        """How far beyond its worst budget (0 when feasible): max(value / limit) - 1."""
        return max([v.value / v.limit - 1 for v in self.verdicts if v.limit > 0] + [0.0])


class NotCosted(_M):
    skeleton: str
    reason: str


class RungRecord(_M):
    rung: int
    epochs: int
    skeletons: list[str]
    samples: int
    full_samples: int
    seconds: float
    #: measured per trial: training seconds per sample (mean, and by skeleton) and per-epoch evaluation seconds
    train_s_per_sample: float | None = None
    train_s_per_sample_by_skeleton: dict[str, float] = Field(default_factory=dict)
    eval_s: float | None = None


class RungScore(_M):
    rung: int
    val: float


class SearchPoint(_M):
    """A trained candidate: its validation metric (at the last rung its skeleton reached) against its estimated
    latency and size."""

    key: str
    skeleton: str
    scheme: str
    val: float
    rung: int
    latency_ms: float
    size_mb: float
    params: int
    feasible: bool
    label: str
    pareto: bool = False
    chosen: bool = False
    val_ci95: list[float] | None = None
    #: the best finalist, and each other finalist's paired gap to it (best minus this one, validation samples)
    best_finalist: bool | None = None
    val_gap: float | None = None
    val_gap_ci95: list[float] | None = None
    #: agreement with the teacher on the validation split (see ChosenStudent.fidelity)
    fidelity: float | None = None


class CostPoint(_M):
    """When no candidate fits: a candidate of the cost-only Pareto set (nothing trained: ``val`` 0) and the
    budgets it breaks."""

    key: str
    val: float
    latency_ms: float
    size_mb: float
    broken: list[str]


class ChosenStudent(_M):
    candidate: str
    skeleton: str
    width: float
    drop: int
    scheme: str
    final_epochs: int
    qat: bool
    val: float
    test: float
    test_ci95: list[float] | None = None
    #: the student's test metric over the teacher's, with the paired interval
    test_retention: float | None = None
    test_retention_ci95: list[float] | None = None
    val_ci95: list[float] | None = None
    #: finalists whose validation metric the split cannot tell from the best one's (paired interval of the gap
    #: reaches 0); None without per-sample scores
    finalists_within_noise: list[str] | None = None
    #: what each figure was measured on (with QAT the validation figure is the best QAT epoch's, fake-quantized)
    val_measured: str
    test_measured: str
    params: int | None = None
    assistant: dict[str, Any] | None = None
    compression: float
    #: the rung trial the final training started from (rung, epochs, validation metric); None: the fresh skeleton
    warm_start: dict[str, Any] | None = None
    #: the shipped weights' agreement with the teacher on the validation split (top class per sample or per step;
    #: cosine for embeddings), the tie-break of the metric
    fidelity: float | None = None


class SearchReport(_M):
    """The student search: candidates and their costs, the rungs, the trained points and the Pareto set, the
    chosen student. Data only: :mod:`adaptc.report.search_md` writes the prose."""

    method: str
    #: the configuration the search ran with (adaptc.search.config.config_record)
    options: dict[str, Any]
    teacher_params: int
    block_importance: dict[str, float] = Field(default_factory=dict)
    candidates: list[CandidateRecord] = Field(default_factory=list)
    #: skeletons the cost filter did not export: larger than one that already breaks a size budget
    not_costed: list[NotCosted] = Field(default_factory=list)
    #: embedding models that had to narrow their hidden size: the candidates that kept it (none fitted)
    candidates_keeping_hidden_size: list[CandidateRecord] | None = None
    rungs: list[RungRecord] = Field(default_factory=list)
    scores: dict[str, RungScore] = Field(default_factory=dict)
    pareto: list[SearchPoint | CostPoint] = Field(default_factory=list)
    points: list[SearchPoint] = Field(default_factory=list)
    chosen: ChosenStudent | None = None
    seconds: float | None = None
    log: list[str] = Field(default_factory=list)
    plot: str | None = None
    #: what the search planned from measured step costs (adaptc.search.plan.Plan.record): training samples,
    #: rung-0 candidates and epochs a time budget allowed, the expected duration without one (1.8)
    plan: dict[str, Any] | None = None
    #: where the rung trials ran (adaptc.search.executor: name, cluster, resources per trial, retries) (1.10)
    executor: dict[str, Any] | None = None
    #: the trial-store key of the final training (a fleet's devices share one trial store) (1.10)
    final_trial: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_older_schema(cls, data: Any) -> Any:
        """Reports before 1.7 stored prose (``summary``, ``chosen.why``; now rendered from the data) and called
        the most blocks dropped ``options.max_drop`` (the name of the metric-drop limit elsewhere)."""
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if k != "summary"}
        if isinstance(data.get("options"), dict) and "max_drop" in data["options"]:
            opts = dict(data["options"])
            opts["max_blocks_dropped"] = opts.pop("max_drop")
            data["options"] = opts
        if isinstance(data.get("chosen"), dict):
            data["chosen"] = {k: v for k, v in data["chosen"].items() if k != "why"}
        return data


class BuildReport(_M):
    schema_version: str = REPORT_SCHEMA_VERSION
    adaptc_version: str
    created_utc: str
    duration_s: float
    #: "interrupted" (1.8): the build was stopped (Ctrl-C) before it finished; ``progress`` says what finished
    status: Literal["ok", "partial", "no_fit", "failed", "interrupted"]
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
    search: SearchReport | None = None
    warnings: list[str] = Field(default_factory=list)
    #: what the build used (1.8): peak resident memory (measured, this process and its children, from the OS),
    #: training threads, the memory and time budgets and the time spent
    resources: dict[str, Any] = Field(default_factory=dict)
    #: an interrupted build (1.8): the trials that finished and the best candidate so far
    progress: dict[str, Any] | None = None

    def artifact(self, file: str) -> ArtifactReport:
        for a in self.artifacts:
            if a.file == file:
                return a
        raise KeyError(file)

    @property
    def chosen_artifact(self) -> ArtifactReport | None:
        return self.artifact(self.chosen) if self.chosen else None
