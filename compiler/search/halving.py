"""Successive halving: rung 0 distils every feasible skeleton briefly; each later rung keeps the best 1/eta (plus
the fastest one within the quality tolerance) and distils them longer. Under a time budget a rung shrinks to the
time left (estimated from the trials' own epoch timings), keeping room for the final training, or stops."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..report.schema import CandidateRecord, RungRecord
from .space import SkeletonSpec
from .state import Search


@dataclass
class Halving:
    """What the rungs left: each trained skeleton's (rung, validation metric) at its last rung, its per-sample
    validation scores there (None without them), and each rung's record."""

    scores: dict[str, tuple[int, float]] = field(default_factory=dict)
    val_scores: dict[str, np.ndarray | None] = field(default_factory=dict)
    rungs: list[RungRecord] = field(default_factory=list)


def run_rungs(s: Search, feasible: Sequence[SkeletonSpec], costs: dict[str, list[CandidateRecord]]) -> Halving:
    opts, task = s.opts, s.task
    out = Halving()
    alive = list(feasible)
    latency = {sp.key: min(c.latency_ms for c in costs[sp.key] if c.feasible) for sp in feasible}
    for r, epochs in enumerate(opts.rung_epochs):
        if not alive:
            break
        if r > 0:
            ranked = sorted(alive, key=lambda sp: (-out.scores[sp.key][1], latency[sp.key]))
            keep = max(1, math.ceil(len(ranked) / opts.eta))
            promoted = ranked[:keep]
            best = out.scores[ranked[0].key][1]
            within = [sp for sp in ranked if out.scores[sp.key][1] >= best - opts.quality_tolerance]
            fastest = min(within, key=lambda sp: latency[sp.key])
            if fastest not in promoted:
                promoted.append(fastest)
            alive = promoted
            if len(alive) == 1 and r == len(opts.rung_epochs) - 1:
                break
        # shrink the rung to the time left (estimated from what earlier trials took)
        est_epoch = estimated_epoch_seconds(out.rungs, full=False)
        if est_epoch and math.isfinite(s.remaining()):
            # keep room for the final training (on the whole training set)
            reserve = (estimated_epoch_seconds(out.rungs) or est_epoch) * opts.final_epochs * 1.3
            affordable = int((s.remaining() - reserve) / (est_epoch * len(alive)))
            if affordable < 1:
                s.log.append(f"time budget: rung {r} skipped")
                break
            epochs = min(epochs, affordable)
        rung_t0 = time.perf_counter()
        per_sample: dict[str, float] = {}
        eval_s: list[float] = []
        for i, sp in enumerate(alive):
            val, _, tinfo = s.trial(sp, f"rung {r}", epochs, index=f"{i + 1}/{len(alive)} ")
            out.scores[sp.key] = (r, val)
            out.val_scores[sp.key] = np.asarray(tinfo["val_scores"]) if tinfo.get("val_scores") else None
            if tinfo.get("epoch_train_s") and tinfo.get("samples"):
                per_sample[sp.key] = tinfo["epoch_train_s"] / tinfo["samples"]
                eval_s.append(tinfo.get("eval_s", 0.0))
        out.rungs.append(
            RungRecord(
                rung=r,
                epochs=epochs,
                skeletons=[sp.key for sp in alive],
                samples=min(len(task.train), opts.rung_samples or len(task.train)),
                full_samples=len(task.train),
                seconds=time.perf_counter() - rung_t0,
                # measured per trial: training seconds per sample and per-epoch evaluation seconds
                train_s_per_sample=sum(per_sample.values()) / len(per_sample) if per_sample else None,
                train_s_per_sample_by_skeleton=per_sample,
                eval_s=sum(eval_s) / len(eval_s) if eval_s else None,
            )
        )
    return out


def estimated_epoch_seconds(
    rungs: Sequence[RungRecord], full: bool = True, skeleton: str | None = None
) -> float | None:
    """Seconds per epoch of ``skeleton`` (else the mean over the skeletons) seen in the last rung; ``full``: scaled
    to the whole training set (rungs may train on a subset, the final training does not)."""
    if not rungs:
        return None
    last = rungs[-1]
    rate = last.train_s_per_sample_by_skeleton.get(skeleton or "") or last.train_s_per_sample
    if rate:
        # the trials' own epoch timings: training scales with the samples, evaluation does not
        n = last.full_samples if full else last.samples
        return rate * n + (last.eval_s or 0.0)
    per = last.seconds / max(1, last.epochs * len(last.skeletons))
    if full and last.samples:
        per *= last.full_samples / max(1, last.samples)
    return per
