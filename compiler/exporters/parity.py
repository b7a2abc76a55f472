"""The runtime parity gate: every artifact is evaluated in its own runtime on the test split.

Reported per artifact: the task metric in the runtime, agreement with the torch model it came from
(max / mean abs diff, cosine similarity, top-1 agreement for classifiers), agreement with the teacher (cosine,
top-1 for classifiers: how closely a student imitates it, in its runtime) and the metric drop against the
reference. An artifact whose metric drops more than ``max_drop`` is rejected, with the reason. Where the task has
per-sample scores, the metric and the drop carry their sampling error over the split (95% bootstrap intervals,
the drop's paired). By default (``gate="point"``) the gate decides on the drop itself, as NNCF's and Olive's
accuracy criteria do, and its reason says whether that drop is outside the split's noise; ``"lenient"`` and
``"strict"`` decide on the drop's interval instead (:func:`gate_verdict`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..core.quantity import GATES, Gate
from ..core.stats import drop_interval, mean_interval
from ..measure.runtimes import Runner, run_batched
from ..tasks.base import Split, Task


@dataclass
class ParityResult:
    metric: float
    #: the metric of the torch model the artifact came from, on the same split
    reference_metric: float
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    top1_agreement: float | None
    samples: int
    #: agreement of the artifact's outputs with the teacher's on the same split (when given)
    teacher_cosine: float | None = None
    teacher_top1_agreement: float | None = None
    #: 95% intervals over the split's samples (None when the task has no per-sample scores): the metric, the
    #: reference's metric and the drop (paired: both resampled with the same draw)
    metric_ci95: tuple[float, float] | None = None
    reference_ci95: tuple[float, float] | None = None
    drop_ci95: tuple[float, float] | None = None
    #: how many per-sample scores the intervals resample (queries for retrieval; 0 without scores)
    scored_samples: int = 0
    #: the artifact's per-sample scores (for drops against other artifacts); not part of ``to_dict``
    scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def drop(self) -> float:
        return self.reference_metric - self.metric

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("scores")
        d["drop"] = self.drop
        return d


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    #: why the artifact was rejected (None when it passed)
    reason: str | None = None
    #: for the artifact's flags: an accepted drop over the limit (lenient), or an interval gate that had no interval
    note: str | None = None


def gate_verdict(
    metric_name: str,
    drops: Sequence[tuple[str, float, tuple[float, float] | None]],
    max_drop: float,
    gate: Gate = "point",
    scored_samples: int = 0,
) -> GateVerdict:
    """Decide the parity gate over ``drops``: (what the drop is against, drop, its 95% interval or None), all
    fractions. Every comparison must pass. Without an interval an interval gate decides on the drop itself,
    and says so in ``note``. Hand-written: NNCF's and Olive's accuracy criteria compare the point value only."""
    if gate not in GATES:
        raise ValueError(f"gate must be one of {', '.join(GATES)} (got {gate!r})")

    def pt(v: float) -> str:
        return f"{100 * v:.2f}"

    def statistic(drop: float, ci: tuple[float, float] | None) -> float:
        if gate == "point" or ci is None:
            return drop
        return ci[0] if gate == "lenient" else ci[1]

    decisive = drops[0]
    for d in drops[1:]:  # ties go to the later comparison (the fp32 artifact, in the same runtime)
        if statistic(d[1], d[2]) >= statistic(decisive[1], decisive[2]):
            decisive = d
    which, drop, ci = decisive
    passed = statistic(drop, ci) <= max_drop + 1e-9
    limit = f"the {pt(max_drop)}-point limit"
    interval = (
        ""
        if ci is None
        else (f"95% interval of the drop {pt(ci[0])}..{pt(ci[1])} points over the {scored_samples} scored test samples")
    )
    note = None
    if gate != "point" and any(c is None for _, _, c in drops):
        note = (
            f"the {gate} parity gate decided on the drop itself: the task gives no per-sample scores, "
            "so the drop has no interval"
        )
    elif gate == "lenient" and passed and drop > max_drop + 1e-9:
        note = (
            f"passed the lenient parity gate: {metric_name} drops {pt(drop)} points against {which}, more than "
            f"{limit}, but the {interval} reaches below it"
        )
    if passed:
        return GateVerdict(True, None, note)
    head = f"{metric_name} drops {pt(drop)} points against {which}"
    if gate == "point" or ci is None:
        noise = ""
        if ci is not None:
            inside = "within" if ci[0] <= 0 else "outside"
            noise = f"; {interval}: {inside} their sampling error"
        return GateVerdict(False, f"{head} (more than {limit}){noise}", note)
    if gate == "lenient":
        return GateVerdict(False, f"{head}; the {interval} lies wholly above {limit} (lenient gate)", note)
    return GateVerdict(
        False,
        f"{head}; the {interval} reaches above {limit}, so the drop is not shown to be within it (strict gate)",
        note,
    )


def agreement(out: np.ndarray, ref: np.ndarray, classification: bool) -> tuple[float, float, float, float | None]:
    a = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
    b = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    diff = np.abs(a - b)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)))
    top1 = float((a.argmax(1) == b.argmax(1)).mean()) if classification else None
    return float(diff.max()), float(diff.mean()), cos, top1


def check_parity(
    runner: Runner,
    task: Task,
    reference_outputs: np.ndarray,
    split: Split | None = None,
    batch: int | None = None,
    teacher_outputs: np.ndarray | None = None,
) -> ParityResult:
    """Run ``runner`` over the split (default: test) and compare with the torch reference outputs (and the
    teacher's, when given). ``batch``: samples per call (1 for dynamically quantized files, whose activation
    scales depend on the whole batch: a device runs them one input at a time)."""
    split = split if split is not None else task.test
    out = run_batched(runner, split.numpy_inputs(), **({"batch": batch} if batch else {}))
    classification = task.kind == "classification"
    mx, mean, cos, top1 = agreement(out, reference_outputs, classification)
    t_cos = t_top1 = None
    if teacher_outputs is not None:
        _, _, t_cos, t_top1 = agreement(out, teacher_outputs, classification)
    metric, ref_metric = float(task.metric(out, split)), float(task.metric(reference_outputs, split))
    scores, ref_scores = task.per_sample(out, split, metric), task.per_sample(reference_outputs, split, ref_metric)
    paired = scores is not None and ref_scores is not None and len(scores) == len(ref_scores)
    return ParityResult(
        metric=metric,
        reference_metric=ref_metric,
        max_abs_diff=mx,
        mean_abs_diff=mean,
        cosine=cos,
        top1_agreement=top1,
        samples=len(split),
        teacher_cosine=t_cos,
        teacher_top1_agreement=t_top1,
        metric_ci95=mean_interval(scores) if scores is not None else None,
        reference_ci95=mean_interval(ref_scores) if ref_scores is not None else None,
        drop_ci95=drop_interval(ref_scores, scores)
        if paired and scores is not None and ref_scores is not None
        else None,
        scored_samples=len(scores) if scores is not None else len(ref_scores) if ref_scores is not None else 0,
        scores=scores,
    )
