"""Successive halving: rung 0 distils every feasible skeleton briefly; each later rung keeps the best 1/eta (plus
the fastest one within the quality tolerance) and distils them longer. Under a time budget a rung shrinks to the
time left (estimated from the trials' own epoch timings), keeping room for the final training, or stops."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..report.schema import CandidateRecord, RungRecord
from .space import SkeletonSpec
from .state import Search


@dataclass
class Halving:
    """What the rungs left: each trained skeleton's (rung, validation metric) at its last rung, its per-sample
    validation scores there (None without them), its agreement with the teacher there (None without it), and
    each rung's record."""

    scores: dict[str, tuple[int, float]] = field(default_factory=dict)
    val_scores: dict[str, np.ndarray | None] = field(default_factory=dict)
    fidelity: dict[str, float | None] = field(default_factory=dict)
    rungs: list[RungRecord] = field(default_factory=list)

    def uninformative(self, keys: Sequence[str], tolerance: float) -> bool:
        """Whether the metric cannot rank ``keys``: the best one's validation metric lies within ``tolerance`` of 0
        (as good as a student that learnt nothing the metric sees, e.g. a word accuracy of 0 after one short
        epoch) and each has an agreement with the teacher to rank by instead."""
        return max(self.scores[k][1] for k in keys) <= tolerance and all(self.fidelity.get(k) is not None for k in keys)


def run_rungs(
    s: Search,
    feasible: Sequence[SkeletonSpec],
    costs: dict[str, list[CandidateRecord]],
    rung_epochs: Sequence[int] | None = None,
    rung_seconds: float | None = None,
) -> Halving:
    """The rungs over ``feasible``, with ``rung_epochs`` (default: the configured ones; a time budget's plan
    may give rung 0 fewer); ``rung_seconds``: rung 0's share of a time budget."""
    opts = s.opts
    out = Halving()
    alive = list(feasible)
    latency = {sp.key: min(c.latency_ms for c in costs[sp.key] if c.feasible) for sp in feasible}
    epochs_of = list(rung_epochs if rung_epochs is not None else opts.rung_epochs)
    for r, epochs in enumerate(epochs_of):
        if epochs < 1:
            continue
        if not alive:
            break
        if r > 0:
            keep = max(1, math.ceil(len(alive) / opts.eta))
            if out.uninformative([sp.key for sp in alive], opts.quality_tolerance):
                # the metric sees nothing yet: the ones that follow the teacher closest go on
                ranked = sorted(alive, key=lambda sp: (-(out.fidelity[sp.key] or 0.0), latency[sp.key]))
                promoted = ranked[:keep]
                s.log.append(
                    f"rung {r}: the validation metric is within the tolerance of 0 for every candidate; promoted by "
                    "agreement with the teacher"
                )
            else:
                ranked = sorted(alive, key=lambda sp: (-out.scores[sp.key][1], latency[sp.key]))
                promoted = ranked[:keep]
                best = out.scores[ranked[0].key][1]
                within = [sp for sp in ranked if out.scores[sp.key][1] >= best - opts.quality_tolerance]
                fastest = min(within, key=lambda sp: latency[sp.key])
                if fastest not in promoted:
                    promoted.append(fastest)
            alive = promoted
            if len(alive) == 1 and r == len(epochs_of) - 1:
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
        results: dict[str, tuple[float, dict]] = {}
        labelled = [(sp, f"{i + 1}/{len(alive)} ") for i, sp in enumerate(alive)]
        if r == 0 and rung_seconds and alive:
            # rung 0 under a time budget: the first trial's first epoch, timed, fits the rung's epochs to its share
            # of the budget (the plan's step costs come from a stand-in loss); the other trials take that count.
            # It runs here, whatever the executor: the fit reads this process's clock.
            fit = _rung_fit(rung_seconds, len(alive), epochs)
            val, _, tinfo = s.trial(alive[0], f"rung {r}", epochs, index=labelled[0][1], fit_epochs=fit)
            if tinfo.get("epochs") and tinfo["epochs"] != epochs:
                s.log.append(
                    f"time budget: rung 0 trains {tinfo['epochs']} epoch(s) a candidate, not {epochs} (its first "
                    "epoch, timed, left no time for more)"
                )
                epochs = int(tinfo["epochs"])
            results[alive[0].key] = (val, tinfo)
            labelled = labelled[1:]
        # the others through the search's executor (in this process, or on a cluster)
        for (sp, _), rec in zip(labelled, s.rung_batch(labelled, f"rung {r}", epochs)):
            results[sp.key] = (rec["val"], rec["info"])
        for sp in alive:
            val, tinfo = results[sp.key]
            out.scores[sp.key] = (r, val)
            out.val_scores[sp.key] = np.asarray(tinfo["val_scores"]) if tinfo.get("val_scores") else None
            out.fidelity[sp.key] = tinfo.get("fidelity")
            if tinfo.get("epoch_train_s") and tinfo.get("samples"):
                per_sample[sp.key] = tinfo["epoch_train_s"] / tinfo["samples"]
                eval_s.append(tinfo.get("eval_s", 0.0))
        out.rungs.append(
            RungRecord(
                rung=r,
                epochs=epochs,
                skeletons=[sp.key for sp in alive],
                samples=len(s.data(final=False).train),
                full_samples=len(s.data(final=True).train),
                seconds=time.perf_counter() - rung_t0,
                # measured per trial: training seconds per sample and per-epoch evaluation seconds
                train_s_per_sample=sum(per_sample.values()) / len(per_sample) if per_sample else None,
                train_s_per_sample_by_skeleton=per_sample,
                eval_s=sum(eval_s) / len(eval_s) if eval_s else None,
            )
        )
    return out


def _rung_fit(seconds: float, trials: int, planned: int) -> Callable[[float | None, int], int]:
    """Rung 0's first trial (see :func:`adaptc.distill.distill`'s ``fit_epochs``): ``planned`` epochs, and after
    its first epoch the most (at least one, at most ``planned``) such that it and the ``trials - 1`` after it, at
    the measured epoch time, end within ``seconds`` of its start (counted once the teacher's pass is done: the
    plan gives that pass its own share)."""
    start: list[float] = []

    def fit(measured: float | None, done: int) -> int:
        n = planned
        if measured is None:
            start.append(time.perf_counter())
        else:
            left = (start[0] if start else time.perf_counter()) + seconds - time.perf_counter()
            while n > 1 and ((n - done) + (trials - 1) * n) * measured > left:
                n -= 1
        return n

    return fit


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
