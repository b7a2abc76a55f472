"""Executors: where a search's rung trials run.

A trial (:class:`TrialJob`: one skeleton distilled for a rung's epochs) is pure work: a student, a distillation
configuration and the search's shared context (:class:`TrialContext`: the training samples, the teacher, its
validation outputs) in, the trained student, its validation metric and what the trial measured out. The search
on the driver decides which trials run (a trial already in the trial store never runs again) and records each
result in the trial store as it arrives: the store stays the single source of truth, whichever executor ran the
trial, so an interrupted driver resumes from it and a trial is distilled once per key.

Executors register themselves by name (``local``, ``ray``: :func:`get_executor`, :func:`executor_names`):

- ``local`` (default): in this process, one trial after another (a trial saves an epoch checkpoint, so an
  interrupted trial resumes mid-way);
- ``ray`` (:mod:`.ray_executor`): the trials of a rung as Ray tasks on a cluster, with declared CPU and memory.

The final training (one trial per build, which warm-starts from a stored rung trial) and a time budget's first,
epoch-fitted rung trial run on the driver whatever the executor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from ..core.names import unknown_name_message
from ..distill import DistillConfig, DistillResult
from ..distill.cache import register_subset
from ..errors import AdaptcError
from ..tasks.base import Task

if TYPE_CHECKING:  # pragma: no cover
    from .state import Search


@dataclass
class TrialJob:
    """One rung trial to run: the store ``key`` it is recorded under, the ``student`` to distil (the skeleton), its
    distillation ``cfg`` (epochs and seed in it), and ``deadline_unix`` (the search's deadline as a wall-clock
    time, None: no time budget): a trial on another machine stops there too."""

    key: str
    skeleton: str
    rung: str
    student: nn.Module
    cfg: DistillConfig
    description: str
    deadline_unix: float | None = None


@dataclass
class TrialOutcome:
    """What a trial gives back: the trained student, its best validation metric, and what it measured (epoch
    times, per-sample validation scores, agreement with the teacher; ``info``)."""

    model: nn.Module
    val: float
    info: dict[str, Any]


@dataclass
class TrialContext:
    """What every trial of a search reads, shipped once to an executor's workers: the task with the training
    samples of the search (its ``model`` is the teacher), the positions among them of a rung trial's samples
    (None: the same samples), and the teacher's outputs on the validation split."""

    task: Task
    rung_positions: torch.Tensor | None
    teacher_val: np.ndarray
    #: the teacher's cached pass over ``task``'s training samples, made on the driver (None: the trials run the
    #: teacher on every batch -- augmented inputs --, or no trial has made it yet, or it lives on the driver's disk)
    teacher_cache: Any = None
    _rung: Task | None = field(default=None, repr=False)

    @classmethod
    def of(cls, search: Search) -> TrialContext:
        """A search's context (what every rung trial reads), for an executor to ship to its workers once."""
        from ..distill.cache import _CACHES

        whole = search.data(True)
        search.data(False)  # (sets the rung positions)
        cache = _CACHES.get(search.teacher, {}).get(id(whole.train.inputs[0]))
        if cache is not None and getattr(cache, "folder", None) is not None:
            cache = None  # (spilled to the driver's disk: a worker elsewhere cannot read it)
        return cls(whole, search._rung_positions, search.teacher_val(), cache)

    def install(self) -> str:
        """On a worker, once: the shipped teacher cache serves this process's trials (as the driver's serves its
        own). Returns where the trials' teacher pass comes from, in words."""
        from ..distill.cache import _CACHES

        if self.teacher_cache is None:
            return "none shipped: this worker's (the teacher runs on every batch, or once per worker)"
        _CACHES.setdefault(self.task.model, {})[id(self.task.train.inputs[0])] = self.teacher_cache
        return "the driver's cached pass, shipped once"

    @staticmethod
    def key(search: Search) -> str:
        """What a search's context depends on: one per teacher, data, seed and sample plan (a fleet's searches
        share it)."""
        from ..store import stable_hash

        n = [search.samples, search.rung_samples]
        return stable_hash({"teacher": search.teacher_fp, "data": search.data_fp, "seed": search.seed, "n": n})

    def data(self) -> Task:
        """The task a rung trial trains on. Its samples are declared a subset of the search's training samples,
        so one pass of the teacher (cached) serves every trial this process runs -- the same pass, batch for
        batch, as on the driver, hence the same trained students."""
        if self.rung_positions is None:
            return self.task
        if self._rung is None:
            rung = self.task.train.subset(self.rung_positions)
            register_subset(rung, self.task.train, self.rung_positions)
            self._rung = replace(self.task, train=rung)
        return self._rung

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rung": None}


def outcome_info(res: DistillResult, samples: int) -> dict[str, Any]:
    """What a trial measured, as its trial-store record keeps it (epoch times feed the halving's time estimates)."""
    timed = [h for h in res.history if "train_seconds" in h and h.get("stage") != "qat"]
    info: dict[str, Any] = {
        "history": res.history[-3:],
        "qat": res.qat,
        "seconds": res.seconds,
        "samples": samples,
        "epochs": res.epochs,
        "teacher_s_per_sample": res.teacher_s_per_sample,
        "epoch_train_s": sum(h["train_seconds"] for h in timed) / max(1, len(timed)),
        "eval_s": sum(h.get("eval_seconds", 0.0) for h in timed) / max(1, len(timed)),
    }
    if res.best_val_scores is not None:  # the best epoch's per-sample validation scores (sampling error)
        info["val_scores"] = [float(v) for v in res.best_val_scores]
    if res.stopped:
        info["stopped"] = res.stopped
    if res.best_fidelity is not None:
        info["fidelity"] = res.best_fidelity
    return info


def local_deadline(deadline_unix: float | None) -> float | None:
    """A wall-clock deadline as this process's ``time.perf_counter()`` value (what :func:`distill` reads)."""
    return None if deadline_unix is None else time.perf_counter() + (deadline_unix - time.time())


class Executor(Protocol):
    """Runs a search's rung trials and yields each one's outcome as it finishes (in any order)."""

    name: str

    def run(self, search: Search, jobs: list[TrialJob]) -> Iterator[tuple[TrialJob, TrialOutcome]]: ...

    def describe(self) -> dict[str, Any]:
        """What the report says of the executor (name, cluster, resources per trial)."""
        ...


class LocalExecutor:
    """In this process, one trial after another (what adaptc always did)."""

    name = "local"

    def run(self, search: Search, jobs: list[TrialJob]) -> Iterator[tuple[TrialJob, TrialOutcome]]:
        for job in jobs:
            yield job, search.run_here(job)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "where": "in the build's process, one trial after another"}


_EXECUTORS: dict[str, Callable[..., Executor]] = {"local": lambda **_: LocalExecutor()}


def register_executor(name: str, factory: Callable[..., Executor]) -> None:
    """Register an executor factory under ``name`` (keyword options: ``address``, ``cpus_per_trial``, ...)."""
    _EXECUTORS[name] = factory


def executor_names() -> list[str]:
    _load_builtin()
    return sorted(_EXECUTORS)


def _load_builtin() -> None:
    if "ray" not in _EXECUTORS:
        from . import ray_executor  # noqa: F401  (registers "ray"; Ray itself is imported only when used)


def get_executor(executor: str | Executor | None = None, **options: Any) -> Executor:
    """The executor named ``executor`` (None: local), made with ``options``; an executor object is returned as
    it is."""
    if executor is None:
        return LocalExecutor()
    if not isinstance(executor, str):
        return executor
    _load_builtin()
    if executor not in _EXECUTORS:
        raise AdaptcError(unknown_name_message("executor", executor, _EXECUTORS))
    return _EXECUTORS[executor](**options)
