"""Budget-driven student search: cost filter, successive halving with distillation, selection, final training.

1. Skeletons: every width in the grid x every number of dropped blocks (0 .. max_drop), derived from the
   teacher (Torch-Pruning widths rounded to the profile's channel multiple; least important blocks dropped).
2. Cost filter: each skeleton x scheme is costed (exported graph + predictor) against every budget; a
   skeleton is trained only if at least one of its schemes fits.
3. Successive halving: rung 0 distils every feasible skeleton briefly; each later rung keeps the best
   1/eta (plus the fastest one within the quality tolerance) and distils them longer. ``time_budget_s`` caps
   the whole search: rungs shrink or stop to fit it.
4. Selection: among the candidates of the last rung, the best validation metric q*; the chosen candidate
   is the one with the lowest estimated device latency whose metric is >= q* - tolerance (ties: smaller).
5. Final training: the chosen skeleton is distilled with the full recipe (progressive stages, teacher
   assistant when the compression is large, QAT when its scheme is int8).
Trials are stored (SQLite + checkpoints): a rerun with the same inputs reuses them. Seeds are derived from
the build seed and the skeleton, so the same seed reproduces the same choice.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .. import progress
from ..distill import DistillConfig, LossWeights, distill
from ..distill.schedule import assistant_width, needs_assistant
from ..distill.trainer import qat_epoch_count
from ..errors import AdaptcError, BudgetError
from ..measure.sampling import drop_interval, mean_interval, percent, ratio_interval
from ..profiles import DeviceProfile
from ..quant import get_scheme
from ..report.search_md import retention_text
from ..slim import block_importance, extract_skeleton, max_droppable
from ..store import BuildStore, data_fingerprint, model_fingerprint, stable_hash
from ..tasks.base import Task, predict_torch
from ..training import torch_threads
from .pareto import pareto_front, plot_pareto
from .space import (
    DEFAULT_WIDTHS,
    CandidateCost,
    SkeletonSpec,
    candidate_costs,
    search_schemes,
    skeleton_cost,
    validate_widths,
)
from .trials import TrialStore


@dataclass
class SearchOptions:
    widths: Sequence[float] = DEFAULT_WIDTHS
    #: most blocks to drop (None: up to half of the removable blocks)
    max_drop: int | None = None
    rung_epochs: Sequence[int] = (6, 18)
    final_epochs: int = 30
    eta: int = 3
    #: points of the task metric within which a faster candidate is preferred to the best one
    quality_tolerance: float = 0.01
    time_budget_s: float | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    #: teacher assistant for the final training: "off" (default: on the benchmarks it did not help), "on", or
    #: "auto" (when teacher/student parameters >= assistant_threshold)
    assistant: str = "off"
    assistant_threshold: float = 12.0
    importance: str = "magnitude"
    #: quantization-aware training in the final training when the chosen scheme is int8
    qat: bool = True
    plot: bool = True
    #: at most this many training samples per rung trial (a fixed seeded subset; the final training uses all)
    rung_samples: int | None = None
    #: keep the model's output size when pruning. None: classifiers keep it; embedding models keep it when
    #: some candidate with the teacher's hidden size fits the budgets, and otherwise narrow the hidden size
    #: too, with a projection back to the teacher's embedding size (e.g. a 5 MB budget cannot hold
    #: MiniLM's 30522 x 384 word-embedding table even in int8, so echo-dot students get a narrower hidden size)
    keep_output_dim: bool | None = None
    #: when no candidate fits, try once more at half the grid's smallest width (down to 1/16) before giving up
    extend_widths: bool = True


def resolve_options(task: Task, user: "SearchOptions | dict[str, Any] | bool") -> SearchOptions:
    """The search options for a task: the task's ``search_defaults`` under what the user set explicitly.

    ``distill``: a dict changes single fields of the task's distillation defaults (``{"lr": 1e-3}``); a
    :class:`DistillConfig` is taken as it is (the task's defaults do not apply: a dataclass cannot tell a field
    set to the global default from one left unset). ``loss_weights`` (a dict term -> weight, e.g. ``{"ce": 0}``
    for ``--ablate ce``) changes single terms of the resolved loss weights: the task's own when it sets them,
    else the global default."""
    if isinstance(user, SearchOptions):
        return user
    given = dict(user) if isinstance(user, dict) else {}
    loss_weights = dict(given.pop("loss_weights", None) or {})
    defaults = dict(task.search_defaults or {})
    distill_defaults = dict(defaults.pop("distill", {}) or {})
    merged = {**defaults, **given}
    cfg = merged.get("distill")
    if not isinstance(cfg, DistillConfig):
        try:
            cfg = DistillConfig(**{**distill_defaults, **(cfg or {})})
        except (TypeError, ValueError) as e:
            raise AdaptcError(f"bad distillation option: {e}") from None
    known = LossWeights().__dict__
    for term, w in loss_weights.items():
        if term not in known:
            raise AdaptcError(f"unknown loss term {term!r} (known: {', '.join(known)})")
        if not isinstance(w, (int, float)) or not w >= 0:
            raise AdaptcError(f"loss weight {term} must be a number >= 0, got {w!r}")
    if loss_weights:
        cfg = replace(cfg, weights=replace(cfg.weights, **{k: float(v) for k, v in loss_weights.items()}))
    merged["distill"] = cfg
    try:
        return SearchOptions(**merged)
    except TypeError as e:
        raise AdaptcError(f"unknown search option: {e}") from None


#: budgets whose value only grows with a skeleton's width and depth: FLOPs (counted) and the model size
#: (parameters x bytes per weight). Latency and memory are predicted, with no such guarantee.
MONOTONE_BUDGETS = ("max_mflops", "max_model_mb")


def _seed_for(seed: int, key: str) -> int:
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)


class Search:
    def __init__(self, task: Task, profile: DeviceProfile, store: BuildStore, out_dir: Path, seed: int,
                 opts: SearchOptions):
        self.task, self.profile, self.out_dir, self.seed, self.opts = task, profile, out_dir, seed, opts
        self.trials = TrialStore(store, out_dir)
        self.store = store
        self.teacher = task.model.eval()
        self.teacher_fp = model_fingerprint(self.teacher, task.example_inputs)
        #: trials learn from the training split and are selected (and blocks ranked) on the validation split
        self.data_fp = data_fingerprint(task.train, task.val)
        self.teacher_params = sum(p.numel() for p in self.teacher.parameters())
        self.t_start = time.perf_counter()
        self.log: list[str] = []
        self._importance: dict[int, float] | None = None
        self._skeletons: dict[str, nn.Module] = {}
        self._rung_task: Task | None = None
        self.keep_output = opts.keep_output_dim if opts.keep_output_dim is not None else True
        #: skeletons the cost filter skipped (see :meth:`costs`): key -> why
        self.not_costed: dict[str, str] = {}
        #: embedding models may fall back to narrowing their hidden size when no candidate keeping it fits
        self.may_narrow = opts.keep_output_dim is None and task.kind == "embedding"

    # ------------------------------------------------------------------ skeletons and their cost
    def importance(self) -> dict[int, float]:
        if self._importance is None:
            cal = self.task.val.subset(slice(0, 256))
            with torch_threads(1):
                self._importance = block_importance(self.teacher, cal.inputs)
        return self._importance

    def calibration_inputs(self) -> tuple[torch.Tensor, ...]:
        cal = self.task.val.subset(slice(0, 256)).inputs
        return self.task.batch_transform(cal) if self.task.batch_transform is not None else cal

    def skeleton(self, spec: SkeletonSpec) -> nn.Module:
        """A fresh copy of the skeleton (derived once per search, then copied)."""
        if spec.key not in self._skeletons:
            with torch_threads(None):
                sk = extract_skeleton(self.teacher, self.task.example_inputs, width=spec.width, drop=spec.drop,
                                      channel_multiple=self.profile.channel_multiple,
                                      importance=self.importance() if spec.drop else None,
                                      prune_importance=self.opts.importance, keep_output_dim=self.keep_output,
                                      calibration_inputs=None if self.keep_output else self.calibration_inputs())
            self._skeletons[spec.key] = sk.model
        return copy.deepcopy(self._skeletons[spec.key])

    def specs(self) -> list[SkeletonSpec]:
        widths = validate_widths(self.opts.widths)
        md = max_droppable(self.teacher)
        limit = self.opts.max_drop if self.opts.max_drop is not None else md // 2
        drops = range(0, max(0, min(limit, md)) + 1)
        return [SkeletonSpec(w, d) for d in drops for w in widths]

    def costs(self, specs: list[SkeletonSpec]) -> dict[str, list[CandidateCost]]:
        """Each skeleton's candidates (one per scheme) with their costs and budget verdicts, by skeleton key.
        Skeletons are costed smallest first (most blocks dropped, narrowest); one at least as wide and as deep
        as a skeleton whose every candidate breaks a budget that only grows with size
        (:data:`MONOTONE_BUDGETS`) breaks it too, and is not exported: it is left out of the result, its reason
        in :attr:`not_costed`."""
        schemes = search_schemes(self.profile)
        out: dict[str, list[CandidateCost]] = {}
        breakers: list[tuple[SkeletonSpec, str]] = []  # (skeleton, the monotone budgets its candidates break)
        step = progress.current().step("cost filter: skeletons x schemes against the budgets", total=len(specs))
        for spec in sorted(specs, key=lambda sp: (-sp.drop, sp.width)):
            over = next(((b, why) for b, why in breakers if b.width <= spec.width and b.drop >= spec.drop), None)
            if over is not None:
                self.not_costed[spec.key] = (f"at least as wide and as deep as {over[0].key}, whose every candidate "
                                             f"breaks {over[1]}")
                step.advance(1, note=f"{spec.key}: not costed (dominates {over[0].key})")
                continue
            key = stable_hash({"cost": 3, "teacher": self.teacher_fp, "data": self.data_fp, "spec": spec.key,
                               "mult": self.profile.channel_multiple, "imp": self.opts.importance,
                               "keep_output": self.keep_output})
            rec = self.store.get(key)
            if rec is None:
                cost = skeleton_cost(self.skeleton(spec), self.task.example_inputs)
                rec = {"cost": _cost_to_dict(cost)}
                self.store.put(key, "skeleton_cost", rec)
            out[spec.key] = candidate_costs(spec, _cost_from_dict(rec["cost"]), self.profile, schemes)
            broken = [{v["budget"] for v in c.broken if v["budget"] in MONOTONE_BUDGETS} for c in out[spec.key]]
            if all(broken):
                breakers.append((spec, " or ".join(sorted(set().union(*broken)))))
            step.advance(1, note=spec.key)
        skipped = len(specs) - len(out)
        step.done(f"{len(out)} skeletons x {len(schemes)} schemes" + (
            f" ({skipped} larger ones not costed: they break the FLOPs or model-size budget too)" if skipped else ""))
        return {sp.key: out[sp.key] for sp in specs if sp.key in out}

    # ------------------------------------------------------------------ trials
    def _cfg(self, epochs: int, spec: SkeletonSpec, **over: Any) -> DistillConfig:
        return replace(self.opts.distill, epochs=epochs, seed=_seed_for(self.seed, spec.key), **over)

    def trial(self, spec: SkeletonSpec, rung: str, epochs: int, *, final: bool = False, qat: bool = False,
              index: str = "", fit_epochs: Callable[[float | None, int], int] | None = None
              ) -> tuple[float, nn.Module | None, dict[str, Any]]:
        """One distillation of ``spec`` (resumed from the store when done before). ``fit_epochs``: up to
        ``epochs``, as many as it says once the teacher's pass is done and after the first epoch (see
        :func:`distill`); such a trial is stored without its epoch count, so a rerun with more or less time left
        resumes it instead of retraining."""
        cfg = self._cfg(epochs, spec, qat=qat)
        key = stable_hash({"trial": 4, "rung_samples": None if final else self.opts.rung_samples,
                           "keep_output": self.keep_output, "teacher": self.teacher_fp, "data": self.data_fp,
                           "task": self.task.name, "spec": spec.key, "mult": self.profile.channel_multiple,
                           "epochs": "fitted" if fit_epochs else epochs, "seed": self.seed, "final": final,
                           "cfg": repr(replace(cfg, epochs=0) if fit_epochs else cfg),
                           "assistant": (self.opts.assistant, self.opts.assistant_threshold) if final else None,
                           "imp": self.opts.importance})
        rec = self.trials.get(key)
        if rec is not None:
            progress.current().message(f"[dim]resume: trial {spec.key} {rung} ({rec['epochs']} epochs) already "
                                       f"done: val {rec['val']:.4f}[/dim]")
            return rec["val"], (self.trials.load_model(rec) if final else None), rec["info"]
        t0 = time.perf_counter()
        student = self.skeleton(spec)
        teacher: nn.Module = self.teacher
        info: dict[str, Any] = {"params": sum(p.numel() for p in student.parameters())}
        if final and self._use_assistant(info["params"], spec):
            ta_spec = SkeletonSpec(assistant_width(spec.width), spec.drop)
            ta = self.skeleton(ta_spec)
            ta_res = distill(ta, self.teacher, self.task, self._cfg(max(2, epochs // 2), ta_spec),
                             description=f"teacher assistant {ta_spec.key} ({max(2, epochs // 2)} epochs)")
            teacher = ta_res.model
            info["assistant"] = {"skeleton": ta_spec.key, "val": ta_res.best_val,
                                 "params": sum(p.numel() for p in ta.parameters())}
        task = self.task
        if not final and self.opts.rung_samples and len(task.train) > self.opts.rung_samples:
            if self._rung_task is None:  # one subset object for all rung trials: the teacher cache is reused
                g = torch.Generator().manual_seed(self.seed)
                sub = torch.randperm(len(task.train), generator=g)[: self.opts.rung_samples].sort().values
                self._rung_task = replace(task, train=task.train.subset(sub))
            task = self._rung_task
        res = distill(student, teacher, task, cfg, fit_epochs=fit_epochs,
                      description=f"trial {index}{spec.key} {rung} ("
                                  f"{f'up to {epochs}' if fit_epochs else epochs} epochs{', QAT' if qat else ''})")
        timed = [h for h in res.history if "train_seconds" in h and h.get("stage") != "qat"]
        info.update(history=res.history[-3:], qat=res.qat, seconds=res.seconds, samples=len(task.train),
                    epochs=res.epochs,
                    teacher_s_per_sample=res.teacher_s_per_sample,
                    epoch_train_s=sum(h["train_seconds"] for h in timed) / max(1, len(timed)),
                    eval_s=sum(h.get("eval_seconds", 0.0) for h in timed) / max(1, len(timed)))
        if res.best_val_scores is not None:  # the best epoch's per-sample validation scores (sampling error)
            info["val_scores"] = [float(v) for v in res.best_val_scores]
        self.trials.put(key, skeleton=spec.key, rung=rung, epochs=res.epochs, seed=self.seed, val=res.best_val,
                        seconds=time.perf_counter() - t0, model=res.model, info=info)
        return res.best_val, res.model, info

    def _use_assistant(self, student_params: int, spec: SkeletonSpec) -> bool:
        if self.opts.assistant == "off" or spec.width >= 1.0:
            return False
        if self.opts.assistant == "on":
            return True
        return needs_assistant(self.teacher_params, student_params, self.opts.assistant_threshold)

    def remaining(self) -> float:
        if self.opts.time_budget_s is None:
            return math.inf
        return self.opts.time_budget_s - (time.perf_counter() - self.t_start)

    def epoch_seconds(self, spec: SkeletonSpec) -> float:
        """A quick estimate of one distillation epoch of a skeleton (a few timed steps)."""
        student = self.skeleton(spec)
        cfg = self._cfg(1, spec)
        sub = self.task.train.subset(slice(0, min(len(self.task.train), cfg.batch_size * 3)))
        probe = replace(self.task, train=sub, val=self.task.val.subset(slice(0, min(64, len(self.task.val)))))
        t0 = time.perf_counter()
        with progress.using(progress.NullReporter()):
            distill(student, self.teacher, probe, cfg, description="probe")
        per_batch = (time.perf_counter() - t0) / 3
        return per_batch * math.ceil(len(self.task.train) / cfg.batch_size)


def _cost_to_dict(c: Any) -> dict[str, Any]:
    d = c.summary()
    d["ops"] = [o.__dict__ for o in c.ops]
    d["unknown_shapes"] = c.unknown_shapes
    return d


def _cost_from_dict(d: dict[str, Any]) -> Any:
    from ..analysis.onnx_graph import CostReport, OpCost

    return CostReport(ops=[OpCost(**o) for o in d["ops"]], macs=d["macs"], flops=d["flops"], params=d["params"],
                      weight_bytes_at=d["weight_bytes_at"], stored_weight_bytes=d["stored_weight_bytes"],
                      quant_param_bytes=d["quant_param_bytes"], peak_activation_bytes=d["peak_activation_bytes"],
                      peak_at=d["peak_at"], input_bytes=d["input_bytes"], output_bytes=d["output_bytes"],
                      op_counts=d["op_counts"], precision_macs=d["precision_macs"], unknown_shapes=d["unknown_shapes"])


def _nearest_message(profile: DeviceProfile, costs: list[CandidateCost], n: int = 3) -> str:
    near = sorted(costs, key=lambda c: (c.worst_overshoot, c.latency_ms))[:n]
    parts = []
    for c in near:
        broken = ", ".join(f"{v['budget']} {v['value']:.3g} > {v['limit']:g} {v['unit']} (+{-v['margin_pct']:.0f}%)"
                           for v in c.broken)
        parts.append(f"{c.candidate.key}: {broken}")
    return f"no student candidate meets every budget of {profile.name}; nearest: " + "; ".join(parts)


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


def run_search(task: Task, profile: DeviceProfile, *, store: BuildStore, out_dir: Path, seed: int = 0,
               teacher_outputs: np.ndarray | None = None, **options: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Find and train the student; returns (student, the report's ``search`` section). ``teacher_outputs``: the
    teacher's on the test split, if the caller has them (for the chosen student's retention of its metric)."""
    opts = resolve_options(task, options.pop("options", None) or options)
    s = Search(task, profile, store, out_dir, seed, opts)
    t0 = time.perf_counter()
    specs = s.specs()
    def tally(specs: list[SkeletonSpec], all_costs: dict[str, list[CandidateCost]]
              ) -> tuple[list[CandidateCost], list[SkeletonSpec]]:
        """Every candidate's cost, and the skeletons with at least one candidate that fits."""
        return ([c for cs in all_costs.values() for c in cs],
                [sp for sp in specs if any(c.feasible for c in all_costs.get(sp.key, []))])

    all_costs = s.costs(specs)
    flat, feasible_specs = tally(specs, all_costs)
    kept_hidden: list[CandidateCost] = []
    if not feasible_specs and s.may_narrow:
        # no student with the teacher's hidden size fits: narrow the hidden size too (see keep_output_dim)
        kept_hidden = flat
        s.log.append("no candidate keeping the teacher's hidden size fits the budgets ("
                     + _nearest_message(profile, flat, 1).split("nearest: ")[-1]
                     + "); candidates narrow the hidden size too, with a projection back to the embedding size")
        progress.current().message(f"[yellow]{s.log[-1]}[/yellow]")
        s.keep_output = False
        s._skeletons.clear()
        s.not_costed.clear()
        all_costs = s.costs(specs)
        flat, feasible_specs = tally(specs, all_costs)
    smallest = min(validate_widths(opts.widths))
    if not feasible_specs and opts.extend_widths and smallest / 2 >= 1 / 16:
        extra = [SkeletonSpec(smallest / 2, d) for d in sorted({sp.drop for sp in specs})]
        s.log.append(f"no candidate of the width grid fits the budgets; widths x{smallest / 2:g} were tried too")
        progress.current().message(f"[yellow]{s.log[-1]}[/yellow]")
        all_costs.update(s.costs(extra))
        specs = specs + extra
        flat, feasible_specs = tally(specs, all_costs)
    section: dict[str, Any] = {
        "method": "cost filter, then successive halving with distillation (see adaptc.search.halving)",
        "options": {"widths": list(validate_widths(opts.widths)), "max_drop": opts.max_drop,
                    "rung_epochs": list(opts.rung_epochs), "final_epochs": opts.final_epochs, "eta": opts.eta,
                    "quality_tolerance": opts.quality_tolerance, "time_budget_s": opts.time_budget_s,
                    "assistant": opts.assistant, "assistant_threshold": opts.assistant_threshold, "seed": seed,
                    "rung_samples": opts.rung_samples, "keep_output_dim": s.keep_output,
                    "distill": _cfg_dict(opts.distill)},
        "teacher_params": s.teacher_params,
        "block_importance": {str(k): v for k, v in (s._importance or {}).items()},
        "candidates": [c.to_dict() for c in flat],
        # skeletons the cost filter did not export: larger than one that already breaks a size budget
        "not_costed": [{"skeleton": k, "reason": why} for k, why in s.not_costed.items()],
    }
    if kept_hidden:
        section["candidates_keeping_hidden_size"] = [c.to_dict() for c in kept_hidden]
    if not feasible_specs:
        section["pareto"] = _cost_pareto(flat)
        section["summary"] = "No candidate fits every budget (nothing was trained)."
        section["log"] = s.log
        err = BudgetError(_nearest_message(profile, flat))
        err.search = section  # type: ignore[attr-defined]
        raise err

    # ---- time budget check: can the smallest feasible skeleton train even one epoch?
    if opts.time_budget_s is not None:
        smallest = min(feasible_specs, key=lambda sp: min(c.params for c in all_costs[sp.key]))
        need = s.epoch_seconds(smallest)
        if need > s.remaining():
            raise AdaptcError(
                f"the time budget of {opts.time_budget_s:g} s allows no trial: one distillation epoch of the "
                f"smallest candidate ({smallest.key}) takes about {need:.1f} s and {max(0.0, s.remaining()):.1f} s "
                f"are left after the cost filter")

    # ---- successive halving
    alive = list(feasible_specs)
    scores: dict[str, tuple[int, float]] = {}  # spec key -> (rung index, val)
    val_scores: dict[str, np.ndarray | None] = {}  # spec key -> per-sample val scores at its last rung
    rungs_done: list[dict[str, Any]] = []
    by_key = {sp.key: sp for sp in specs}
    latency = {sp.key: min(c.latency_ms for c in all_costs[sp.key] if c.feasible) for sp in feasible_specs}
    for r, epochs in enumerate(opts.rung_epochs):
        if not alive:
            break
        if r > 0:
            ranked = sorted(alive, key=lambda sp: (-scores[sp.key][1], latency[sp.key]))
            keep = max(1, math.ceil(len(ranked) / opts.eta))
            promoted = ranked[:keep]
            best = scores[ranked[0].key][1]
            within = [sp for sp in ranked if scores[sp.key][1] >= best - opts.quality_tolerance]
            fastest = min(within, key=lambda sp: latency[sp.key])
            if fastest not in promoted:
                promoted.append(fastest)
            alive = promoted
            if len(alive) == 1 and r == len(opts.rung_epochs) - 1:
                break
        # shrink the rung to the time left (estimated from what earlier trials took)
        est_epoch = _estimated_epoch_seconds(s, rungs_done, full=False)
        if est_epoch and math.isfinite(s.remaining()):
            # keep room for the final training (on the whole training set)
            reserve = (_estimated_epoch_seconds(s, rungs_done) or est_epoch) * opts.final_epochs * 1.3
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
            scores[sp.key] = (r, val)
            val_scores[sp.key] = np.asarray(tinfo["val_scores"]) if tinfo.get("val_scores") else None
            if tinfo.get("epoch_train_s") and tinfo.get("samples"):
                per_sample[sp.key] = tinfo["epoch_train_s"] / tinfo["samples"]
                eval_s.append(tinfo.get("eval_s", 0.0))
        n_rung = min(len(task.train), opts.rung_samples or len(task.train))
        rungs_done.append({"rung": r, "epochs": epochs, "skeletons": [sp.key for sp in alive],
                           "samples": n_rung, "full_samples": len(task.train),
                           "seconds": time.perf_counter() - rung_t0,
                           # measured per trial: training seconds per sample and per-epoch evaluation seconds
                           "train_s_per_sample": (sum(per_sample.values()) / len(per_sample)
                                                  if per_sample else None),
                           "train_s_per_sample_by_skeleton": per_sample,
                           "eval_s": sum(eval_s) / len(eval_s) if eval_s else None})

    # ---- selection among the last rung's candidates (skeleton x feasible scheme)
    top_rung = max(v[0] for v in scores.values())
    finalists = [k for k, v in scores.items() if v[0] == top_rung]
    points = []
    for c in flat:
        k = c.candidate.skeleton.key
        if k in scores and c.feasible:
            points.append({"key": c.candidate.key, "skeleton": k, "scheme": c.candidate.scheme,
                           "val": scores[k][1], "rung": scores[k][0], "latency_ms": c.latency_ms,
                           "size_mb": c.size_mb, "params": c.params, "feasible": True,
                           "label": f"{k} {c.candidate.scheme.replace('int8_static_per_channel', 'int8s')}"})
    final_pts = [p for p in points if p["skeleton"] in finalists]
    best_q = max(p["val"] for p in final_pts)
    eligible = [p for p in final_pts if p["val"] >= best_q - opts.quality_tolerance]
    chosen = min(eligible, key=lambda p: (p["latency_ms"], p["size_mb"], -p["val"]))
    best_key = max(final_pts, key=lambda p: p["val"])["skeleton"]
    unresolved = _validation_noise(points, val_scores, finalists, best_key)
    why = (f"fastest (estimated {chosen['latency_ms']:.3g} ms on {profile.name}) of the candidates within "
           f"{100 * opts.quality_tolerance:.1f} points of the best validation {task.metric_name} "
           f"({100 * best_q:.2f}%) at the last rung, and fits every budget")
    spec = by_key[chosen["skeleton"]]
    qat = get_scheme(chosen["scheme"]).weights == "int8" and opts.qat
    est_epoch = _estimated_epoch_seconds(s, rungs_done, skeleton=spec.key) if math.isfinite(s.remaining()) else None
    fit = _epochs_that_fit(s, est_epoch, opts.final_epochs, opts.distill.qat_fraction if qat else None) \
        if est_epoch else None
    val, student, info = s.trial(spec, "final", opts.final_epochs, final=True, qat=qat, fit_epochs=fit)
    final_epochs = info.get("epochs") or opts.final_epochs
    assert student is not None
    quality = _test_quality(task, student, teacher_outputs)
    test = quality["test"]
    front = pareto_front(points)
    for i, p in enumerate(points):
        p["pareto"] = i in front
        p["chosen"] = p["key"] == chosen["key"]
    costed = len(specs) - len(s.not_costed)
    section.update(
        rungs=rungs_done,
        scores={k: {"rung": v[0], "val": v[1]} for k, v in scores.items()},
        pareto=[points[i] for i in front],
        points=points,
        chosen={"candidate": chosen["key"], "skeleton": spec.key, "width": spec.width, "drop": spec.drop,
                "scheme": chosen["scheme"], "why": why, "final_epochs": final_epochs, "qat": qat,
                "val": val, **quality,
                **({"val_ci95": list(mean_interval(np.asarray(info["val_scores"])))} if info.get("val_scores") else {}),
                # finalists whose validation metric the split cannot tell from the best one's (paired interval of
                # the gap reaches 0); None without per-sample scores
                "finalists_within_noise": unresolved,
                # what each figure was measured on: selection happens during training, so with QAT the validation
                # figure is the best QAT epoch's with fake quantization on; the test figure is the final student's
                "val_measured": ("torch, best QAT epoch, fake-quantized (weights and activations)" if qat
                                 else "torch, best epoch"),
                "test_measured": ("torch, final student (int8-grid weights, float activations)" if qat
                                  else "torch, final student"),
                "params": info.get("params"), "assistant": info.get("assistant"),
                "compression": s.teacher_params / max(1, info.get("params") or 1)},
        seconds=time.perf_counter() - t0,
        log=s.log,
        summary=(f"{len(flat)} candidates ({costed} skeletons x {len(flat) // max(1, costed)} schemes"
                 + (f"; {len(s.not_costed)} larger skeletons not costed" if s.not_costed else "") + "); "
                 f"{sum(1 for c in flat if c.feasible)} fit the budgets before training; "
                 f"{len(scores)} skeletons trained over {len(rungs_done)} rung(s). Chosen: **{chosen['key']}** "
                 f"({info.get('params'):,} parameters, {s.teacher_params / max(1, info.get('params') or 1):.1f}x fewer than "
                 f"the teacher), test {task.metric_name} {percent(test, quality.get('test_ci95'))} in torch"
                 + retention_text(quality) + f" — {why}."
                 + (f" The validation split cannot separate {len(unresolved)} of the other {len(finalists) - 1} "
                    f"finalist skeletons from the best one, {best_key} (paired 95% interval of the gap reaches 0): "
                    f"{', '.join(unresolved)}." if unresolved else "")),
    )
    if opts.plot:
        try:
            plot_pareto(points, front, points.index(next(p for p in points if p["chosen"])), out_dir / "pareto.png",
                        title=f"{task.name} -> {profile.name}: candidates after successive halving",
                        metric_name=task.metric_name, budget_ms=profile.budgets.max_latency_ms)
            section["plot"] = "pareto.png"
        except Exception as e:  # a plot is a convenience, never a failure
            s.log.append(f"plot failed: {e}")
    return student, section


def _validation_noise(points: list[dict[str, Any]], val_scores: dict[str, np.ndarray | None], finalists: list[str],
                      best: str) -> list[str] | None:
    """Give each point its validation interval, and each finalist its paired gap to the best finalist
    (``val_gap_ci95``: best minus this one, on the same validation samples). Returns the finalists other than the
    best whose gap interval reaches 0 (the split cannot tell them apart), or None without per-sample scores."""
    ci = {k: mean_interval(v) for k, v in val_scores.items() if v is not None}
    ref = val_scores.get(best)
    gaps = {k: drop_interval(ref, v) for k in finalists if k != best and (v := val_scores.get(k)) is not None
            and ref is not None and len(v) == len(ref)}
    for p in points:
        if p["skeleton"] in ci:
            p["val_ci95"] = list(ci[p["skeleton"]])
        if p["skeleton"] == best and gaps:
            p["best_finalist"] = True
        if p["skeleton"] in gaps:
            p["val_gap"] = float(ref.mean() - val_scores[p["skeleton"]].mean())  # type: ignore[union-attr]
            p["val_gap_ci95"] = list(gaps[p["skeleton"]])
    if ref is None or len(gaps) < len(finalists) - 1:
        return None
    return [k for k in finalists if k in gaps and gaps[k][0] <= 0]


def _cost_pareto(flat: list[CandidateCost]) -> list[dict[str, Any]]:
    pts = [{"key": c.candidate.key, "val": 0.0, "latency_ms": c.latency_ms, "size_mb": c.size_mb,
            "broken": [v["budget"] for v in c.broken]} for c in flat]
    return [pts[i] for i in pareto_front(pts)]


def _epochs_that_fit(s: Search, epoch_s: float, most: int, qat_fraction: float | None
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


def _estimated_epoch_seconds(s: Search, rungs: list[dict[str, Any]], full: bool = True,
                             skeleton: str | None = None) -> float | None:
    """Seconds per epoch of ``skeleton`` (else the mean over the skeletons) seen in the last rung; ``full``: scaled
    to the whole training set (rungs may train on a subset, the final training does not)."""
    if not rungs:
        return None
    last = rungs[-1]
    rate = (last.get("train_s_per_sample_by_skeleton") or {}).get(skeleton) or last.get("train_s_per_sample")
    if rate:
        # the trials' own epoch timings: training scales with the samples, evaluation does not
        n = last["full_samples"] if full else last["samples"]
        return rate * n + (last.get("eval_s") or 0.0)
    per = last["seconds"] / max(1, last["epochs"] * len(last["skeletons"]))
    if full and last.get("samples"):
        per *= last["full_samples"] / max(1, last["samples"])
    return per


def _cfg_dict(cfg: DistillConfig) -> dict[str, Any]:
    d = {k: v for k, v in cfg.__dict__.items() if k not in ("domain_data",)}
    d["weights"] = cfg.weights.__dict__
    d["adversarial"] = cfg.adversarial.__dict__ if cfg.adversarial else None
    d["domain_data"] = len(cfg.domain_data) if cfg.domain_data is not None else None
    return d
