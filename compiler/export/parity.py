"""The runtime parity gate: every artifact is evaluated in its own runtime on the test split.

Reported per artifact: the task metric in the runtime, agreement with the torch model it came from
(max / mean abs diff, cosine similarity, top-1 agreement for classifiers), agreement with the teacher (cosine,
top-1 for classifiers: how closely a student imitates it, in its runtime) and the metric drop against the
reference. An artifact whose metric drops more than ``max_drop`` is rejected, with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

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

    @property
    def drop(self) -> float:
        return self.reference_metric - self.metric

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["drop"] = self.drop
        return d


def agreement(out: np.ndarray, ref: np.ndarray, classification: bool) -> tuple[float, float, float, float | None]:
    a = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
    b = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    diff = np.abs(a - b)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)))
    top1 = float((a.argmax(1) == b.argmax(1)).mean()) if classification else None
    return float(diff.max()), float(diff.mean()), cos, top1


def check_parity(runner: Runner, task: Task, reference_outputs: np.ndarray, split: Split | None = None,
                 batch: int | None = None, teacher_outputs: np.ndarray | None = None) -> ParityResult:
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
    return ParityResult(
        metric=float(task.metric(out, split)),
        reference_metric=float(task.metric(reference_outputs, split)),
        max_abs_diff=mx,
        mean_abs_diff=mean,
        cosine=cos,
        top1_agreement=top1,
        samples=len(split),
        teacher_cosine=t_cos,
        teacher_top1_agreement=t_top1,
    )
