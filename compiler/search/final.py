"""Final training: the chosen skeleton distilled with the full recipe (progressive stages, teacher assistant when
the compression is large, QAT when its scheme is int8); under a time budget its epochs are fitted to the time
left. Then its test metric, and its retention of the teacher's, with their sampling error."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from ..core.schemes import get_scheme
from ..core.stats import mean_interval, ratio_interval
from ..distill.trainer import qat_epoch_count
from ..report.schema import ChosenStudent
from ..tasks.base import Task, predict_torch
from .halving import Halving, estimated_epoch_seconds
from .space import SkeletonSpec
from .state import Search


def train_final(
    s: Search,
    spec: SkeletonSpec,
    scheme: str,
    halving: Halving,
    teacher_outputs: np.ndarray | None,
    unresolved: list[str] | None,
) -> tuple[nn.Module, ChosenStudent]:
    opts = s.opts
    qat = get_scheme(scheme).weights == "int8" and opts.qat
    est_epoch = estimated_epoch_seconds(halving.rungs, skeleton=spec.key) if math.isfinite(s.remaining()) else None
    fit = (
        _epochs_that_fit(s, est_epoch, opts.final_epochs, opts.distill.qat_fraction if qat else None)
        if est_epoch
        else None
    )
    # the skeleton's best rung trial: the warm start (it has already learnt from the rung's samples), and what
    # ships when a time budget cuts the final training short and it validated better
    best = s.trials.best_of(s.rung_trials.get(spec.key, []))
    warm = best if opts.warm_start else None
    val, student, info = s.trial(
        spec, "final", opts.final_epochs, final=True, qat=qat, fit_epochs=fit, init=warm["key"] if warm else None
    )
    assert student is not None
    # a final training the time budget cut short ships the best finished weights of this skeleton: its own, or a
    # rung trial's when that one validated better
    if info.get("stopped") and best is not None and best["val"] > val:
        s.log.append(
            f"time budget: the final training stopped at validation {val:.4f}; the {best['rung']} trial's weights "
            f"({best['epochs']} epochs on the rung samples, validation {best['val']:.4f}) ship instead"
        )
        student, val = s.trials.load_model(best), best["val"]
        info = {**info, "val_scores": best["info"].get("val_scores"), "shipped": best["rung"]}
        qat = False
    quality = _test_quality(s.task, student, teacher_outputs)
    chosen = ChosenStudent(
        candidate=f"{spec.key}-{scheme}",
        skeleton=spec.key,
        width=spec.width,
        drop=spec.drop,
        scheme=scheme,
        final_epochs=info.get("epochs") or opts.final_epochs,
        warm_start=info.get("warm_start"),
        fidelity=info.get("fidelity"),
        qat=qat,
        val=val,
        **quality,
        val_ci95=list(mean_interval(np.asarray(info["val_scores"]))) if info.get("val_scores") else None,
        finalists_within_noise=unresolved,
        # what each figure was measured on: selection happens during training, so with QAT the validation
        # figure is the best QAT epoch's with fake quantization on; the test figure is the final student's
        val_measured=(
            "torch, best QAT epoch, fake-quantized (weights and activations)" if qat else "torch, best epoch"
        ),
        test_measured=(
            "torch, final student (int8-grid weights, float activations)" if qat else "torch, final student"
        ),
        params=info.get("params"),
        assistant=info.get("assistant"),
        compression=s.teacher_params / max(1, info.get("params") or 1),
    )
    return student, chosen


def _test_quality(task: Task, student: nn.Module, teacher_outputs: np.ndarray | None) -> dict[str, Any]:
    """The student's test metric in torch with its sampling error, and its retention of the teacher's metric with
    a paired interval (both models scored on the same resampled test samples), where the task has per-sample
    scores."""
    out = predict_torch(student, task.test, transform=task.batch_transform)
    test = float(task.metric(out, task.test))
    q: dict[str, Any] = {"test": test}
    scores = task.per_sample(out, task.test, test)
    if scores is None:
        return q
    q["test_ci95"] = list(mean_interval(scores))
    t_out = teacher_outputs if teacher_outputs is not None else predict_torch(task.model, task.test)
    t_metric = float(task.metric(t_out, task.test))
    t_scores = task.per_sample(t_out, task.test, t_metric)
    if t_scores is not None and len(t_scores) == len(scores) and t_metric > 0:
        q["test_retention"] = test / t_metric
        q["test_retention_ci95"] = list(ratio_interval(scores, t_scores))
    return q


def _epochs_that_fit(
    s: Search, epoch_s: float, most: int, qat_fraction: float | None
) -> Callable[[float | None, int], int]:
    """For the final training (see :func:`distill`): the most epochs (at most ``most``, at least one) whose time
    fits what is left of the budget -- QAT adds ``qat_fraction`` x epochs (at least one; None: no QAT) after
    the distillation epochs. Asked once the teacher's pass is done, with ``epoch_s`` (the rungs' epoch time of
    the skeleton, which runs high: a rung's few batches pay the per-shape warm-up), then after the first epoch
    with its measured time. 10% margin, and a QAT epoch counted as 1.25 (fake quantization)."""

    def fit(measured: float | None, done: int) -> int:
        epoch = measured or epoch_s

        def need(n: int) -> float:
            q = qat_epoch_count(qat_fraction, n) if qat_fraction is not None else 0
            return (n - done + 1.25 * q) * epoch * 1.1

        n = most
        while n > max(1, done) and need(n) > s.remaining():
            n -= 1
        return n

    return fit
