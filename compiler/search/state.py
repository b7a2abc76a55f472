"""One search's state: the skeletons derived from the teacher, their costs (the cost filter) and the trials that
distil them (resumed from the trial store). Seeds are derived from the build seed and the skeleton, so the same
seed reproduces the same trials."""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..analysis.cost import CostReport
from ..core import progress
from ..distill import DistillConfig, distill
from ..distill.cache import register_subset
from ..distill.dense_cache import release_memory
from ..distill.schedule import assistant_width, needs_assistant
from ..profiles import DeviceProfile
from ..report.schema import CandidateRecord
from ..slim import block_importance, extract_skeleton, max_droppable
from ..store import BuildStore, data_fingerprint, model_fingerprint, stable_hash
from ..tasks.base import Task, predict_torch
from ..tasks.training import torch_threads, training_threads
from .config import SearchConfig, validate_widths
from .executor import Executor, LocalExecutor, TrialJob, TrialOutcome, outcome_info
from .space import SkeletonSpec, candidate_costs, search_schemes, skeleton_cost
from .trials import TrialStore

#: budgets whose value only grows with a skeleton's width and depth: FLOPs (counted) and the model size
#: (parameters x bytes per weight). Latency and memory are predicted, with no such guarantee.
MONOTONE_BUDGETS = ("max_mflops", "max_model_mb")


def _seed_for(seed: int, key: str) -> int:
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)


class Search:
    def __init__(
        self,
        task: Task,
        profile: DeviceProfile,
        store: BuildStore,
        out_dir: Path,
        seed: int,
        opts: SearchConfig,
        *,
        executor: Executor | None = None,
    ):
        """``store`` / ``out_dir``: where the search's state lives (the trial store, skeleton costs, plans): the
        build's folder, or a fleet's (shared by its devices' searches)."""
        self.task, self.profile, self.out_dir, self.seed, self.opts = task, profile, out_dir, seed, opts
        self.trials = TrialStore(store, out_dir)
        #: where rung trials run (:mod:`.executor`)
        self.executor: Executor = executor or LocalExecutor()
        #: each skeleton's fingerprint (module tree and weights): the trial key's identity of a candidate, so two
        #: devices whose channel multiples derive the same skeleton share its trials
        self._fingerprints: dict[str, str] = {}
        #: positions of a rung trial's samples among the final training's (None: the same samples)
        self._rung_positions: torch.Tensor | None = None
        #: the key of the final training's trial, once it ran or resumed
        self.final_key: str | None = None
        #: trials of this search that an executor ran again (a worker died), one line each
        self.retries: list[str] = []
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
        self._data: dict[tuple[bool, int, int], Task] = {}
        self._teacher_val: np.ndarray | None = None
        #: the rung trials of this search by skeleton (their store keys)
        self.rung_trials: dict[str, list[str]] = {}
        #: training samples of the final training and of each rung trial (None: all); a time budget's plan may
        #: set fewer (adaptc.search.plan)
        self.samples: int | None = None
        self.rung_samples: int | None = opts.rung_samples
        #: ``time.perf_counter()`` by which the search must end (None: no time budget)
        self.deadline: float | None = self.t_start + opts.time_budget_s if opts.time_budget_s is not None else None
        self.keep_output = opts.keep_output_dim if opts.keep_output_dim is not None else True
        #: skeletons the cost filter skipped (see :meth:`costs`): key -> why
        self.not_costed: dict[str, str] = {}
        #: embedding models may fall back to narrowing their hidden size when no candidate keeping it fits
        self.may_narrow = opts.keep_output_dim is None and task.kind == "embedding"
        #: host threads of training and teacher passes: the user's, else the task's distillation setting where it
        #: changes the default (1), else by the teacher's size (adaptc.tasks.training.training_threads)
        if opts.threads is not None:
            self.threads: int | None = opts.threads
        elif opts.distill.threads != 1:
            self.threads = opts.distill.threads
        else:
            self.threads = training_threads(self.teacher, task.example_inputs)[0]

    # ------------------------------------------------------------------ skeletons and their cost
    def importance(self) -> dict[int, float]:
        if self._importance is None:
            cal = self.task.val.subset(slice(0, 256))
            with torch_threads(self.threads):
                self._importance = block_importance(self.teacher, cal.inputs)
        return self._importance

    def importance_if_ranked(self) -> dict[int, float] | None:
        """The blocks' importance, where some skeleton needed it (None: no block was dropped)."""
        return self._importance

    def narrow_output(self) -> None:
        """From now on skeletons narrow the model's output size too (see ``keep_output_dim``): the skeletons
        derived so far and what the cost filter skipped are forgotten."""
        self.keep_output = False
        self._skeletons.clear()
        self._fingerprints.clear()
        self.not_costed.clear()

    def calibration_inputs(self) -> tuple[torch.Tensor, ...]:
        cal = self.task.val.subset(slice(0, 256)).inputs
        return self.task.batch_transform(cal) if self.task.batch_transform is not None else cal

    def skeleton(self, spec: SkeletonSpec) -> nn.Module:
        """A fresh copy of the skeleton (derived once per search, then copied)."""
        if spec.key not in self._skeletons:
            with torch_threads(None):
                sk = extract_skeleton(
                    self.teacher,
                    self.task.example_inputs,
                    width=spec.width,
                    drop=spec.drop,
                    channel_multiple=self.profile.channel_multiple,
                    importance=self.importance() if spec.drop else None,
                    prune_importance=self.opts.importance,
                    keep_output_dim=self.keep_output,
                    calibration_inputs=None if self.keep_output else self.calibration_inputs(),
                )
            self._skeletons[spec.key] = sk.model
        return copy.deepcopy(self._skeletons[spec.key])

    def specs(self) -> list[SkeletonSpec]:
        widths = validate_widths(self.opts.widths)
        md = max_droppable(self.teacher)
        limit = self.opts.max_blocks_dropped if self.opts.max_blocks_dropped is not None else md // 2
        drops = range(0, max(0, min(limit, md)) + 1)
        return [SkeletonSpec(w, d) for d in drops for w in widths]

    def costs(self, specs: list[SkeletonSpec]) -> dict[str, list[CandidateRecord]]:
        """Each skeleton's candidates (one per scheme) with their costs and budget verdicts, by skeleton key.
        Skeletons are costed smallest first (most blocks dropped, narrowest); one at least as wide and as deep
        as a skeleton whose every candidate breaks a budget that only grows with size
        (:data:`MONOTONE_BUDGETS`) breaks it too, and is not exported: it is left out of the result, its reason
        in :attr:`not_costed`."""
        schemes = search_schemes(self.profile)
        out: dict[str, list[CandidateRecord]] = {}
        breakers: list[tuple[SkeletonSpec, str]] = []  # (skeleton, the monotone budgets its candidates break)
        step = progress.current().step("cost filter: skeletons x schemes against the budgets", total=len(specs))
        for spec in sorted(specs, key=lambda sp: (-sp.drop, sp.width)):
            over = next(((b, why) for b, why in breakers if b.width <= spec.width and b.drop >= spec.drop), None)
            if over is not None:
                self.not_costed[spec.key] = (
                    f"at least as wide and as deep as {over[0].key}, whose every candidate breaks {over[1]}"
                )
                step.advance(1, note=f"{spec.key}: not costed (dominates {over[0].key})")
                continue
            key = stable_hash(
                {
                    "cost": 4,  # 4: model FLOPs (fused biases / clamps and Q/DQ count 0), kernel_flops per op
                    "teacher": self.teacher_fp,
                    "data": self.data_fp,
                    "spec": spec.key,
                    "mult": self.profile.channel_multiple,
                    "imp": self.opts.importance,
                    "keep_output": self.keep_output,
                }
            )
            rec = self.store.get(key)
            if rec is None or "skeleton" not in rec:
                sk = self.skeleton(spec)
                rec = {
                    "cost": skeleton_cost(sk, self.task.example_inputs).to_record(),
                    "skeleton": model_fingerprint(sk),
                }
                self.store.put(key, "skeleton_cost", rec)
            self._fingerprints[spec.key] = rec["skeleton"]
            out[spec.key] = candidate_costs(spec, CostReport.from_record(rec["cost"]), self.profile, schemes)
            broken = [{v.budget for v in c.broken if v.budget in MONOTONE_BUDGETS} for c in out[spec.key]]
            if all(broken):
                breakers.append((spec, " or ".join(sorted(set().union(*broken)))))
            step.advance(1, note=spec.key)
        skipped = len(specs) - len(out)
        step.done(
            f"{len(out)} skeletons x {len(schemes)} schemes"
            + (f" ({skipped} larger ones not costed: they break the FLOPs or model-size budget too)" if skipped else "")
        )
        return {sp.key: out[sp.key] for sp in specs if sp.key in out}

    # ------------------------------------------------------------------ trials
    def _cfg(self, epochs: int, spec: SkeletonSpec, **over: Any) -> DistillConfig:
        return replace(
            self.opts.distill, epochs=epochs, seed=_seed_for(self.seed, spec.key), threads=self.threads, **over
        )

    def fingerprint(self, spec: SkeletonSpec) -> str:
        if spec.key not in self._fingerprints:
            self._fingerprints[spec.key] = model_fingerprint(self.skeleton(spec))
        return self._fingerprints[spec.key]

    def _key(self, spec: SkeletonSpec, cfg: DistillConfig, *, final: bool, fitted: bool, init: str | None) -> str:
        return stable_hash(
            {
                # 6: the skeleton by its fingerprint (was: its width, depth and the device's channel multiple)
                "trial": 6,
                "rung_samples": None if final else self.rung_samples,
                **({"samples": self.samples} if self.samples else {}),
                "keep_output": self.keep_output,
                "teacher": self.teacher_fp,
                "data": self.data_fp,
                "task": self.task.name,
                "spec": spec.key,
                "skeleton": self.fingerprint(spec),
                "epochs": "fitted" if fitted else cfg.epochs,
                "seed": self.seed,
                "final": final,
                # (threads change no result worth retraining for: a trial done on 1 thread serves a run on 2)
                "cfg": repr(replace(cfg, epochs=0 if fitted else cfg.epochs, threads=1)),
                "assistant": (self.opts.assistant, self.opts.assistant_threshold) if final else None,
                "imp": self.opts.importance,
                "init": init,
            }
        )

    def _resumed(self, key: str, spec: SkeletonSpec, rung: str) -> dict[str, Any] | None:
        rec = self.trials.get(key)
        if rec is not None:
            progress.current().message(
                f"[dim]resume: trial {spec.key} {rung} ({rec['epochs']} epochs) already "
                f"done: val {rec['val']:.4f}[/dim]"
            )
        return rec

    def _record(self, key: str, spec: SkeletonSpec, rung: str, out: TrialOutcome, seconds: float) -> None:
        self.trials.put(
            key,
            skeleton=spec.key,
            rung=rung,
            epochs=out.info["epochs"],
            seed=self.seed,
            val=out.val,
            seconds=seconds,
            model=out.model,
            info=out.info,
        )
        (self.trials.dir / f"{key}.epochs.pt").unlink(missing_ok=True)  # the trial is stored: its checkpoint is done

    def trial(
        self,
        spec: SkeletonSpec,
        rung: str,
        epochs: int,
        *,
        final: bool = False,
        qat: bool = False,
        index: str = "",
        fit_epochs: Callable[[float | None, int], int] | None = None,
        init: str | None = None,
    ) -> tuple[float, nn.Module | None, dict[str, Any]]:
        """One distillation of ``spec`` in this process (resumed from the store when done before). ``fit_epochs``:
        up to ``epochs``, as many as it says once the teacher's pass is done and after the first epoch (see
        :func:`distill`); such a trial is stored without its epoch count, so a rerun with more or less time left
        resumes it instead of retraining. ``init``: the store key of a finished trial of the same skeleton whose
        weights the student starts from (the final training's warm start)."""
        cfg = self._cfg(epochs, spec, qat=qat)
        key = self._key(spec, cfg, final=final, fitted=fit_epochs is not None, init=init)
        if final:
            self.final_key = key
        else:
            self.rung_trials.setdefault(spec.key, []).append(key)
        rec = self._resumed(key, spec, rung)
        if rec is not None:
            return rec["val"], (self.trials.load_model(rec) if final else None), rec["info"]
        t0 = time.perf_counter()
        start = self.trials.get(init) if init is not None else None
        student = self.trials.load_model(start) if start is not None else self.skeleton(spec)
        teacher: nn.Module = self.teacher
        info: dict[str, Any] = {"params": sum(p.numel() for p in student.parameters())}
        if final and self._use_assistant(info["params"], spec):
            ta_spec = SkeletonSpec(assistant_width(spec.width), spec.drop)
            ta = self.skeleton(ta_spec)
            ta_res = distill(
                ta,
                self.teacher,
                self.task,
                self._cfg(max(2, epochs // 2), ta_spec),
                description=f"teacher assistant {ta_spec.key} ({max(2, epochs // 2)} epochs)",
            )
            teacher = ta_res.model
            info["assistant"] = {
                "skeleton": ta_spec.key,
                "val": ta_res.best_val,
                "params": sum(p.numel() for p in ta.parameters()),
            }
        job = TrialJob(
            key,
            spec.key,
            rung,
            student,
            cfg,
            f"trial {index}{spec.key} {rung} ({f'up to {epochs}' if fit_epochs else epochs} epochs"
            f"{', QAT' if qat else ''})",
        )
        out = self.run_here(job, final=final, teacher=teacher, fit_epochs=fit_epochs)
        out.info = {**info, **out.info}
        if start is not None:
            out.info["warm_start"] = {"rung": start["rung"], "epochs": start["epochs"], "val": start["val"]}
        self._record(key, spec, rung, out, time.perf_counter() - t0)
        release_memory()
        return out.val, out.model, out.info

    def run_here(
        self,
        job: TrialJob,
        *,
        final: bool = False,
        teacher: nn.Module | None = None,
        fit_epochs: Callable[[float | None, int], int] | None = None,
    ) -> TrialOutcome:
        """Distil ``job`` in this process (with an epoch checkpoint, resumed from when it exists)."""
        task = self.data(final)
        res = distill(
            job.student,
            teacher if teacher is not None else self.teacher,
            task,
            job.cfg,
            fit_epochs=fit_epochs,
            checkpoint=self.trials.dir / f"{job.key}.epochs.pt",
            deadline=self.deadline,
            val_reference=self.teacher_val(),
            description=job.description,
        )
        return TrialOutcome(res.model, res.best_val, outcome_info(res, len(task.train)))

    def rung_batch(self, spec_index: list[tuple[SkeletonSpec, str]], rung: str, epochs: int) -> list[dict[str, Any]]:
        """The trials of one rung -- each ``(skeleton, its index label)`` distilled for ``epochs`` -- through the
        search's executor; those in the trial store are resumed, the others recorded as each finishes. Returns
        each trial's record (``val``, ``info``) in the order given."""
        keys: list[str] = []
        done: dict[str, dict[str, Any]] = {}
        jobs: list[TrialJob] = []
        specs: dict[str, SkeletonSpec] = {}
        unix = time.time() + self.remaining() if self.deadline is not None else None
        for spec, index in spec_index:
            cfg = self._cfg(epochs, spec)
            key = self._key(spec, cfg, final=False, fitted=False, init=None)
            keys.append(key)
            self.rung_trials.setdefault(spec.key, []).append(key)
            rec = self._resumed(key, spec, rung)
            if rec is not None:
                done[key] = rec
            elif key not in specs:
                specs[key] = spec
                sk = self.skeleton(spec)
                desc = f"trial {index}{spec.key} {rung} ({epochs} epochs)"
                jobs.append(TrialJob(key, spec.key, rung, sk, cfg, desc, unix))
        started = time.perf_counter()
        for job, out in self.executor.run(self, jobs):
            spec = specs[job.key]
            out.info = {"params": sum(p.numel() for p in out.model.parameters()), **out.info}
            self._record(job.key, spec, rung, out, out.info.get("seconds") or time.perf_counter() - started)
            done[job.key] = {"val": out.val, "info": out.info}
            release_memory()
        return [done[k] for k in keys]

    def note(self, line: str) -> None:
        """A line of the search's log, shown now too."""
        self.log.append(line)
        progress.current().message(f"[yellow]{line}[/yellow]")

    def teacher_val(self) -> np.ndarray:
        """The teacher's outputs on the validation split (once per search): each trial's agreement with them breaks
        ties of the task's metric (:func:`adaptc.tasks.base.teacher_agreement`)."""
        if self._teacher_val is None:
            with torch_threads(self.threads):
                self._teacher_val = predict_torch(self.teacher, self.task.val, transform=self.task.batch_transform)
        return self._teacher_val

    def data(self, final: bool) -> Task:
        """The task with the training samples a trial uses: for the final training the first ``samples`` of a
        seeded permutation (all when not set), for a rung trial the first ``rung_samples`` of them -- a subset of
        the final training's, so one pass of the teacher (cached) serves both."""
        n = len(self.task.train)
        n_final = min(n, self.samples or n)
        n_rung = min(n_final, self.rung_samples or n_final)
        key = (final, n_final, n_rung)
        if key not in self._data:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
            final_idx = perm[:n_final].sort().values
            if (True, n_final, n_final) not in self._data:  # one split object: its teacher cache is shared
                whole = self.task.train if n_final == n else self.task.train.subset(final_idx)
                self._data[(True, n_final, n_final)] = replace(self.task, train=whole) if n_final < n else self.task
            whole = self._data[(True, n_final, n_final)].train
            if final or n_rung == n_final:
                self._data[key] = self._data[(True, n_final, n_final)]
            else:
                pos = torch.searchsorted(final_idx, perm[:n_rung].sort().values)
                self._rung_positions = pos  # (what an executor's trial context ships: TrialContext.of)
                rung = whole.subset(pos)
                register_subset(rung, whole, pos)  # the rung trials read the final training's teacher cache
                self._data[key] = replace(self.task, train=rung)
        return self._data[key]

    def _use_assistant(self, student_params: int, spec: SkeletonSpec) -> bool:
        if self.opts.assistant == "off" or spec.width >= 1.0:
            return False
        if self.opts.assistant == "on":
            return True
        return needs_assistant(self.teacher_params, student_params, self.opts.assistant_threshold)

    def remaining(self) -> float:
        if self.deadline is None:
            return math.inf
        return self.deadline - time.perf_counter()
