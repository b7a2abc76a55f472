"""The search's plan, from measured costs: how many training samples, rung-0 candidates and epochs a time budget
allows, and how long a search without a budget will take.

Before any trial the search times, on one batch of training samples, a forward pass of the teacher and a
training step (forward and backward) of every candidate skeleton at the search's thread count. From those:

- without a time budget the plan is the configured search (every candidate at rung 0, the configured epochs and
  samples), and its expected duration is said upfront;
- with one, the search part of the budget (what is left once the build has reserved time for exporting) is
  shared out: the teacher's one pass over the training samples at most a quarter (else fewer samples: a seeded
  subset, the same for every trial), rung 0 at most 30% (else, in this order, fewer rung samples -- down to
  a quarter of the training samples, not under 256 --, fewer epochs -- down to one --, fewer candidates --
  evenly spread over their sizes, the smallest and the largest kept), and at least one epoch of the final
  training over the training samples. Later rungs and the final training then fit their epochs to the
  time left (:mod:`.halving`, :mod:`.final`), and every trial stops at the deadline, keeping its best finished
  epoch (:func:`adaptc.distill.distill`).

Written by hand: Ray Tune's and Optuna's ASHA schedulers stop trials at a wall-clock budget, but neither plans the
first rung from measured step costs, nor shares a budget with a teacher's pass and an export.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..distill.cache import cache_budget_bytes
from ..distill.taps import Taps
from ..tasks.training import torch_threads
from .space import SkeletonSpec
from .state import Search

#: shares of the search's time budget (see the module docstring)
TEACHER_SHARE, RUNG0_SHARE, FINAL_SHARE = 0.25, 0.30, 0.35
#: a training step measured on one batch (forward and backward with a stand-in loss) is this much cheaper than
#: a distillation step (the hybrid loss, taps, the optimizer)
STEP_OVERHEAD = 1.3
MIN_RUNG_SAMPLES = 256
#: a teacher pass whose cache spills to disk takes this much longer than the probe's forward passes
SPILL_OVERHEAD = 2.0


@dataclass
class Costs:
    """Measured seconds per sample: the teacher's forward pass, each skeleton's training step."""

    teacher_s: float
    step_s: dict[str, float]
    #: the teacher's outputs are computed once (fixed training inputs), else on every batch
    cached: bool
    threads: int | None


@dataclass
class Plan:
    samples: int
    full_samples: int
    rung_samples: int
    rung0_epochs: int
    skeletons: list[str]
    final_epochs: int
    expected_s: float
    budget_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def record(self, costs: Costs) -> dict[str, Any]:
        return {
            "budget_s": self.budget_s,
            "expected_s": round(self.expected_s, 1),
            "train_samples": self.samples,
            "full_train_samples": self.full_samples,
            "rung_samples": self.rung_samples,
            "rung0_epochs": self.rung0_epochs,
            "rung0_skeletons": self.skeletons,
            "final_epochs_planned": self.final_epochs,
            "measured": {
                "threads": costs.threads,
                "teacher_ms_per_sample": round(costs.teacher_s * 1e3, 3),
                "teacher_outputs": "one cached pass" if costs.cached else "run on every batch",
                "step_ms_per_sample": {k: round(v * 1e3, 3) for k, v in costs.step_s.items()},
            },
            "notes": self.notes,
        }


def _timed(fn: Any, repeats: int = 2) -> float:
    fn()  # warm-up (first-call allocations, kernel selection)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_costs(s: Search, specs: Sequence[SkeletonSpec]) -> Costs:
    """Seconds per sample of the teacher's pass and of each skeleton's training step, timed on a probe batch:
    up to 16 samples, fewer for a heavy teacher (about a second's worth of forward passes: a teacher at a
    second a sample, like CRAFT at 384 x 384, is probed on 2), so that probing costs a small part of a budget."""
    task = s.task
    with torch_threads(s.threads), torch.no_grad():
        one = tuple(t[:1] for t in task.train.inputs)
        one = task.batch_transform(one) if task.batch_transform is not None else one
        s.teacher(*one)  # (warm-up)
        t0 = time.perf_counter()
        s.teacher(*one)
        per_sample = time.perf_counter() - t0
    bs = max(2, min(16, s.opts.distill.batch_size, len(task.train), int(1.0 / max(per_sample, 1e-6))))
    xs = tuple(t[:bs] for t in task.train.inputs)
    if task.batch_transform is not None:
        xs = task.batch_transform(xs)
    d = s.opts.distill
    cached = task.augment is None and d.adversarial is None and d.domain_data is None and d.cache_teacher is not False

    def first(out: Any) -> torch.Tensor:
        return out[0] if isinstance(out, (tuple, list)) else out

    def teacher_pass() -> None:  # with what the cache's pass adds: taps, float16 copies
        taps.clear()
        s.teacher(*xs)
        for h in taps.captured.hidden:
            h.to(torch.float16)

    with torch_threads(s.threads):
        with torch.no_grad(), Taps(s.teacher, xs) as taps:
            teacher_s = _timed(teacher_pass, 1 if bs < 16 else 2) / bs
            cached_bytes = sum(2 * h[0].numel() for h in taps.captured.hidden)
        if cached and cached_bytes * len(task.train) > cache_budget_bytes():
            # the cache will spill to disk: its pass writes gigabytes in batches of 64 (measured on the recogniser,
            # 2.6 MB a sample: 31 ms a sample against 15 ms for this probe)
            teacher_s *= SPILL_OVERHEAD
        steps: dict[str, float] = {}
        for sp in specs:
            m = copy.deepcopy(s.skeleton(sp)).train()

            def step(m: torch.nn.Module = m) -> None:
                first(m(*xs)).float().pow(2).mean().backward()
                m.zero_grad(set_to_none=True)

            steps[sp.key] = _timed(step, 1) / bs * STEP_OVERHEAD
    return Costs(teacher_s, steps, cached, s.threads)


def _spread(keys: list[str], k: int) -> list[str]:
    """``k`` of ``keys`` (ordered by size) evenly spread, the first and the last kept."""
    if k >= len(keys):
        return keys
    if k <= 1:
        return keys[-1:]
    return [keys[round(i * (len(keys) - 1) / (k - 1))] for i in range(k)]


def make_plan(s: Search, feasible: Sequence[SkeletonSpec], costs: Costs, params: dict[str, int]) -> Plan:
    """The plan for ``feasible`` (see the module docstring). ``params``: each skeleton's parameter count (the
    candidates' order of size)."""
    opts = s.opts
    n_all = len(s.task.train)
    n_val = len(s.task.val)
    keys = sorted((sp.key for sp in feasible), key=lambda k: params.get(k, 0))
    step = dict(costs.step_s)
    if not costs.cached:  # the teacher runs on every training batch
        step = {k: v + costs.teacher_s for k, v in step.items()}
    s_med = sorted(step[k] for k in keys)[len(keys) // 2]
    bs = opts.distill.batch_size
    n = n_all
    r = min(n, opts.rung_samples or n)
    e0 = list(opts.rung_epochs)[0] if opts.rung_epochs else 0
    chosen = list(keys)
    qat = 1.25 * opts.distill.qat_fraction if opts.qat else 0.0
    notes: list[str] = []
    budget = s.remaining()

    def teacher_pass(n: int) -> float:
        return n * costs.teacher_s if costs.cached else 0.0

    def rung0(r: int, e0: int, ks: list[str]) -> float:
        return sum(e0 * r * step[k] + n_val * step[k] / 3 for k in ks)

    def final_epoch(n: int) -> float:
        return n * s_med * (1 + qat) + n_val * s_med / 3

    if math.isfinite(budget):
        if teacher_pass(n) > TEACHER_SHARE * budget:
            n = max(min(n_all, 2 * bs), int(TEACHER_SHARE * budget / costs.teacher_s))
            notes.append(
                f"training samples: {n:,} of {n_all:,} (a seeded subset): the teacher's pass over all of them would "
                f"take {teacher_pass(n_all):.0f} s, more than a quarter of the {budget:.0f} s left for the search"
            )
        if final_epoch(n) > FINAL_SHARE * budget:
            m = max(min(n_all, 2 * bs), int(FINAL_SHARE * budget / (s_med * (1 + qat))))
            if m < n:
                notes.append(f"training samples: {m:,} of {n_all:,} so that one epoch of the final training fits")
                n = m
        r = min(r, n)
        start = (r, e0, len(chosen))
        while e0 and rung0(r, e0, chosen) > RUNG0_SHARE * budget:
            floor = max(MIN_RUNG_SAMPLES, n // 4, min(n, bs))
            if r > floor:
                r = max(floor, r // 2)
            elif e0 > 1:
                e0 -= 1
            elif len(chosen) > 2:
                chosen = _spread(keys, len(chosen) - 1)
            elif r > min(n, bs):
                r = max(min(n, bs), r // 2)
            else:
                break
        if (r, e0, len(chosen)) != start:
            notes.append(
                f"rung 0: {len(chosen)} of {len(keys)} candidates, {e0} epoch(s) on {r:,} samples (configured: "
                f"{start[2]} candidates, {start[1]} epochs on {start[0]:,}): {rung0(r, e0, chosen):.0f} s of the "
                f"{budget:.0f} s left"
            )
    later = sum(
        ep * r * s_med * max(1, math.ceil(len(chosen) / opts.eta**i) + 1)
        for i, ep in enumerate(list(opts.rung_epochs)[1:], start=1)
    )
    expected = teacher_pass(n) + rung0(r, e0, chosen) + later + opts.final_epochs * final_epoch(n)
    return Plan(
        samples=n,
        full_samples=n_all,
        rung_samples=r,
        rung0_epochs=e0,
        skeletons=chosen,
        final_epochs=opts.final_epochs,
        expected_s=expected,
        budget_s=budget if math.isfinite(budget) else None,
        notes=notes,
    )
