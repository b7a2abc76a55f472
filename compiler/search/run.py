"""The student search, end to end (budget-driven):

1. Skeletons: every width in the grid x every number of dropped blocks (0 .. max_blocks_dropped), derived from the
   teacher (Torch-Pruning widths rounded to the profile's channel multiple; least important blocks dropped).
2. Cost filter: each skeleton x scheme is costed (exported graph + predictor) against every budget; a skeleton is
   trained only if at least one of its schemes fits. Fallbacks when none fits: embedding models narrow their
   hidden size; the width grid is extended once to half its smallest width.
3. Successive halving (:mod:`.halving`) under the time budget; 4. selection (:mod:`.select`); 5. final training
   (:mod:`.final`). Trials are stored (SQLite + checkpoints): a rerun with the same inputs reuses them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..core import progress
from ..core.search_options import SearchOptions
from ..errors import AdaptcError, BudgetError
from ..profiles import DeviceProfile
from ..report.schema import CandidateRecord, CostPoint, NotCosted, RungScore, SearchPoint, SearchReport
from ..store import BuildStore, stable_hash
from ..tasks.base import Task
from .config import SearchConfig, config_record, resolve_config, validate_widths
from .executor import Executor
from .final import train_final
from .halving import run_rungs
from .pareto import plot_pareto
from .plan import RUNG0_SHARE, Costs, Plan, make_plan, measure_costs
from .select import cost_pareto, nearest_message, select
from .space import SkeletonSpec
from .state import Search

METHOD = "cost filter, then successive halving with distillation (see adaptc.search.halving)"


def _tally(
    specs: list[SkeletonSpec], costs: dict[str, list[CandidateRecord]]
) -> tuple[list[CandidateRecord], list[SkeletonSpec]]:
    """Every candidate's cost, and the skeletons with at least one candidate that fits."""
    return (
        [c for cs in costs.values() for c in cs],
        [sp for sp in specs if any(c.feasible for c in costs.get(sp.key, []))],
    )


def planned(s: Search, feasible: list[SkeletonSpec], params: dict[str, int]) -> tuple[Plan, Costs]:
    """The search's plan, made once per build folder: a rerun (after an interruption) reuses it, so its trials
    are the same and resume."""
    key = stable_hash(
        {
            "plan": 1,
            "teacher": s.teacher_fp,
            "data": s.data_fp,
            "skeletons": sorted(params),
            "options": repr(s.opts),
            "threads": s.threads,
        }
    )
    rec = s.store.get(key)
    if rec is not None:
        return Plan(**rec["plan"]), Costs(**rec["costs"])
    costs = measure_costs(s, feasible)
    plan = make_plan(s, feasible, costs, params)
    s.store.put(key, "search_plan", {"plan": asdict(plan), "costs": asdict(costs)})
    return plan, costs


def run_search(
    task: Task,
    profile: DeviceProfile,
    *,
    store: BuildStore,
    out_dir: Path,
    seed: int = 0,
    teacher_outputs: np.ndarray | None = None,
    options: SearchConfig | SearchOptions | Mapping[str, Any] | bool | None = None,
    deadline: float | None = None,
    state_dir: Path | None = None,
    executor: Executor | None = None,
) -> tuple[nn.Module, SearchReport]:
    """Find and train the student; returns (student, the report's search section). ``options``: what the user
    set (over the task's ``search_defaults``), or a resolved :class:`SearchConfig`; ``teacher_outputs``: the teacher's on the test split, if the caller
    has them (for the chosen student's retention of its metric). ``store`` and ``state_dir`` (default
    ``out_dir``): where the trial store lives (a fleet's folder: its devices' searches share trials);
    ``executor``: where rung trials run (:mod:`.executor`; default in process). Raises :class:`BudgetError` (with ``.search``,
    the section) when no candidate fits."""
    opts = options if isinstance(options, SearchConfig) else resolve_config(task, options)
    s = Search(task, profile, store, state_dir or out_dir, seed, opts, executor=executor)
    if deadline is not None:  # (the build's: its time budget less the time kept for exporting)
        s.deadline = deadline
    t0 = time.perf_counter()
    specs = s.specs()
    all_costs = s.costs(specs)
    flat, feasible = _tally(specs, all_costs)
    kept_hidden: list[CandidateRecord] = []
    if not feasible and s.may_narrow:
        # no student with the teacher's hidden size fits: narrow the hidden size too (see keep_output_dim)
        kept_hidden = flat
        s.log.append(
            "no candidate keeping the teacher's hidden size fits the budgets ("
            + nearest_message(profile, flat, 1).split("nearest: ")[-1]
            + "); candidates narrow the hidden size too, with a projection back to the embedding size"
        )
        progress.current().message(f"[yellow]{s.log[-1]}[/yellow]")
        s.narrow_output()
        all_costs = s.costs(specs)
        flat, feasible = _tally(specs, all_costs)
    smallest = min(validate_widths(opts.widths))
    if not feasible and opts.extend_widths and smallest / 2 >= 1 / 16:
        extra = [SkeletonSpec(smallest / 2, d) for d in sorted({sp.drop for sp in specs})]
        s.log.append(f"no candidate of the width grid fits the budgets; widths x{smallest / 2:g} were tried too")
        progress.current().message(f"[yellow]{s.log[-1]}[/yellow]")
        all_costs.update(s.costs(extra))
        specs = specs + extra
        flat, feasible = _tally(specs, all_costs)
    report = SearchReport(
        method=METHOD,
        options=config_record(opts, seed, s.keep_output),
        teacher_params=s.teacher_params,
        block_importance={str(k): v for k, v in (s.importance_if_ranked() or {}).items()},
        candidates=flat,
        not_costed=[NotCosted(skeleton=k, reason=why) for k, why in s.not_costed.items()],
        candidates_keeping_hidden_size=kept_hidden or None,
    )
    if not feasible:
        report.pareto = [CostPoint(**p) for p in cost_pareto(flat)]
        report.log = s.log
        err = BudgetError(nearest_message(profile, flat))
        err.search = report  # type: ignore[attr-defined]
        raise err

    # the plan: from measured step costs, what the time budget allows (or how long the search will take)
    params = {sp.key: min(c.params for c in all_costs[sp.key]) for sp in feasible}
    plan, costs = planned(s, feasible, params)
    report.plan = plan.record(costs)
    s.log += plan.notes
    for note in plan.notes:
        progress.current().message(f"[yellow]time budget: {note}[/yellow]")
    progress.current().message(
        f"search plan: {len(plan.skeletons)} candidates at rung 0 ({plan.rung0_epochs} epochs on "
        f"{plan.rung_samples:,} samples), final training on {plan.samples:,} samples; "
        + (
            f"expected about {plan.expected_s / 60:.0f} min"
            if plan.budget_s is None
            else f"{plan.budget_s:.0f} s left for the search"
        )
    )
    if plan.budget_s is not None:
        small = min(costs.step_s.values()) + (0.0 if costs.cached else costs.teacher_s)
        need = opts.distill.batch_size * (small + (costs.teacher_s if costs.cached else 0.0))
        if need > plan.budget_s:
            raise AdaptcError(
                f"the time budget of {opts.time_budget_s:g} s allows no trial: one training batch of the smallest "
                f"candidate takes about {need:.1f} s and {max(0.0, plan.budget_s):.1f} s are left for the search"
            )
    s.samples = plan.samples if plan.samples < plan.full_samples else None
    s.rung_samples = plan.rung_samples if plan.rung_samples < plan.samples else opts.rung_samples
    rung0 = [sp for sp in feasible if sp.key in plan.skeletons]
    halving = run_rungs(
        s,
        rung0,
        all_costs,
        [plan.rung0_epochs, *list(opts.rung_epochs)[1:]],
        rung_seconds=RUNG0_SHARE * plan.budget_s if plan.budget_s is not None else None,
    )
    sel = select(flat, halving, opts.quality_tolerance)
    if sel.by_agreement:
        s.log.append(
            f"selection: no finalist's validation {task.metric_name} is above the tolerance of "
            f"{opts.quality_tolerance:g}; {sel.chosen['skeleton']} follows the teacher closest on validation "
            f"({sel.chosen['fidelity']:.1%} agreement) and is chosen"
        )
    spec = next(sp for sp in specs if sp.key == sel.chosen["skeleton"])
    student, chosen = train_final(s, spec, sel.chosen["scheme"], halving, teacher_outputs, sel.unresolved)
    report.rungs = halving.rungs
    report.scores = {k: RungScore(rung=v[0], val=v[1]) for k, v in halving.scores.items()}
    report.pareto = [SearchPoint(**sel.points[i]) for i in sel.front]
    report.points = [SearchPoint(**p) for p in sel.points]
    report.chosen = chosen
    report.seconds = time.perf_counter() - t0
    report.executor = {**s.executor.describe(), "retries": list(s.retries)}  # (this search's; an executor's are all)
    report.final_trial = s.final_key
    report.log = s.log
    if opts.plot:
        try:
            plot_pareto(
                sel.points,
                sel.front,
                sel.points.index(sel.chosen),
                out_dir / "pareto.png",
                title=f"{task.name} -> {profile.name}: candidates after successive halving",
                metric_name=task.metric_name,
                budget_ms=profile.budgets.max_latency_ms,
            )
            report.plot = "pareto.png"
        except Exception as e:  # a plot is a convenience, never a failure
            s.log.append(f"plot failed: {e}")
    return student, report
