"""The ``ray`` executor: a rung's trials as Ray tasks (``pip install "adaptc[ray]"``; Ray is imported only here,
and only when the executor is made).

- **Where**: ``address`` None joins the cluster ``RAY_ADDRESS`` names, else starts Ray on this machine for the
  build; ``"auto"`` joins the cluster running on this machine (``ray start --head``); ``HOST:PORT`` a remote
  head. Every node needs adaptc installed, the same version (its workers import it to run a trial).
- **Resources**: each trial is a task declaring ``num_cpus`` (the search's training threads, at least 1) and
  ``memory`` (by default three times the trial's context plus 512 MiB: the teacher, the training samples and
  their cached teacher outputs, and the student; ``memory_mb`` sets it). Ray schedules as many trials per node
  as these allow.
- **Data**: the search's context (task and teacher, training samples, the teacher's validation outputs) is put in
  the object store once per search and read once per worker process. Where the inputs are fixed (no
  augmentation), the teacher's outputs are cached: the first trial runs on the driver and makes that cache, the
  context carries it (when it is in memory), and no worker runs the teacher -- every trial reads the driver's
  pass, as in process, so the students are the same. With augmented inputs the teacher runs on every batch.
- **Failures**: a worker or node that dies takes its trial with it; the trial is submitted again, up to
  ``max_retries`` times (then the build stops with a one-line error naming it). Trials that finished were
  recorded in the driver's trial store as they arrived and are never redone. Ray's own task retries are off
  (``max_retries=0``): the driver counts and logs every retry.
- Nothing is written on the workers: results (the student's weights, a few MB) return through the object store.

Written by hand over Ray core rather than Ray Tune: the search's trial store, keys and halving decide which
trials run; Ray only runs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..distill import distill
from ..distill.dense_cache import release_memory
from ..errors import AdaptcError
from .executor import TrialContext, TrialJob, TrialOutcome, local_deadline, outcome_info, register_executor

if TYPE_CHECKING:  # pragma: no cover
    from .state import Search

#: the context each worker process last read (keyed by its object id): trials after the first reuse its teacher
#: and its cached teacher outputs
_WORKER_CONTEXT: dict[str, TrialContext] = {}

#: where the teacher's pass of the trials of a context comes from (TrialContext.install)
_TEACHER_PASS: dict[str, str] = {}

#: the process title a worker shows while it runs a trial (Ray names it after the function: ``ray::<name>``)
TRIAL_FUNCTION = "adaptc_trial"


def adaptc_trial(job: TrialJob, boxed: list[Any]) -> TrialOutcome:
    """Run one trial on a Ray worker. ``boxed``: ``[the context's ObjectRef]`` (boxed, so Ray passes the reference
    and this worker reads the context once, not once per trial)."""
    import ray

    ref = boxed[0]
    ctx = _WORKER_CONTEXT.get(ref.hex())
    if ctx is None:
        _WORKER_CONTEXT.clear()
        ctx = _WORKER_CONTEXT[ref.hex()] = ray.get(ref)
        _TEACHER_PASS[ref.hex()] = ctx.install()
    task = ctx.data()
    res = distill(
        job.student,
        task.model,
        task,
        job.cfg,
        deadline=local_deadline(job.deadline_unix),
        val_reference=ctx.teacher_val,
        description=job.description,
    )
    info = outcome_info(res, len(task.train))
    info["executor"], info["worker"] = "ray", f"{socket.gethostname()}:{os.getpid()}"
    info["teacher_pass"] = _TEACHER_PASS.get(ref.hex())
    release_memory()
    return TrialOutcome(res.model, res.best_val, info)


def _fixed_inputs(search: Search) -> bool:
    """Whether the search's trials cache the teacher's pass (no augmentation, adversarial or domain batches)."""
    d = search.opts.distill
    return (
        search.task.augment is None
        and d.adversarial is None
        and d.domain_data is None
        and d.cache_teacher in (True, "auto")
    )


def _token_available() -> bool:
    """Whether a Ray authentication token is at hand (the places Ray reads it from)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or os.path.isfile(path)


def _nbytes(obj: Any) -> int:
    """Bytes of a trial context (what a worker holds of it): the teacher, the samples, the cached teacher pass."""
    import numpy as np
    import torch

    n = sum(p.numel() * p.element_size() for p in obj.task.model.parameters())
    for split in (obj.task.train, obj.task.val):
        n += sum(t.numel() * t.element_size() for t in split.inputs if isinstance(t, torch.Tensor))
    n += int(getattr(obj.teacher_cache, "estimated_bytes", 0) or 0)  # (the shipped teacher pass, if any)
    return n + int(np.asarray(obj.teacher_val).nbytes)


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_trial: float | None = None,
        memory_mb: float | None = None,
        max_retries: int = 2,
        **_: Any,
    ):
        joins = address is not None or bool(os.environ.get("RAY_ADDRESS"))
        if joins and "RAY_AUTH_MODE" not in os.environ and _token_available():
            # `ray start` turns token authentication on when a token exists; a driver joining its cluster does not
            # (Ray 2.60) and is refused: join as `ray start` started. (Read when Ray is imported: set before.)
            os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError:
            raise AdaptcError(
                'the ray executor needs Ray: pip install "adaptc[ray]" (on the driver and every node)'
            ) from None
        if max_retries < 0:
            raise AdaptcError(f"max_retries must be 0 or more (got {max_retries})")
        self.ray = ray
        self.address = address
        self.cpus_per_trial, self.memory_mb, self.max_retries = cpus_per_trial, memory_mb, max_retries
        if not ray.is_initialized():
            try:
                extra: dict[str, Any] = {} if joins else {"include_dashboard": False}  # (a cluster started here)
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, **extra)
            except Exception as e:  # a cluster that is not there: a one-line error, not Ray's traceback
                where = address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
                raise AdaptcError(f"cannot reach Ray at {where}: {str(e).splitlines()[0] if str(e) else e}") from e
        self._contexts: dict[str, Any] = {}
        self._remote = ray.remote(adaptc_trial)
        #: retries of trials whose worker died (driver-side, one line each)
        self.events: list[str] = []

    def _context(self, search: Search) -> tuple[Any, int]:
        key = TrialContext.key(search)
        if key not in self._contexts:
            ctx = TrialContext.of(search)
            self._contexts[key] = (self.ray.put(ctx), _nbytes(ctx))
        return self._contexts[key]

    def _resources(self, search: Search, nbytes: int) -> dict[str, Any]:
        cpus = self.cpus_per_trial or max(1, search.threads or 1)
        mb = self.memory_mb or (3 * nbytes / 2**20 + 512)
        return {"num_cpus": cpus, "memory": int(mb * 2**20), "max_retries": 0}

    def run(self, search: Search, jobs: list[TrialJob]) -> Iterator[tuple[TrialJob, TrialOutcome]]:
        if not jobs:
            return
        ray = self.ray
        if TrialContext.key(search) not in self._contexts and _fixed_inputs(search):
            # the teacher's pass is cached when the inputs are fixed: the first trial runs here and makes it, the
            # context ships it, and no worker runs the teacher (the same pass as in process: the same students)
            first, jobs = jobs[0], jobs[1:]
            out = search.run_here(first)
            out.info["executor"] = "the driver (the first trial makes the teacher's cached pass the others read)"
            yield first, out
            if not jobs:
                return
        ref, nbytes = self._context(search)
        remote = self._remote.options(**self._resources(search, nbytes))
        pending = {remote.remote(job, [ref]): (job, 0) for job in jobs}
        lost = (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.OwnerDiedError,
            ray.exceptions.LocalRayletDiedError,
            ray.exceptions.OutOfMemoryError,
        )
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job, attempt = pending.pop(done[0])
                try:
                    outcome = ray.get(done[0])
                except lost as e:
                    why = type(e).__name__
                    if attempt >= self.max_retries:
                        raise AdaptcError(
                            f"trial {job.skeleton} {job.rung}: its Ray worker died {attempt + 1} time(s) ({why}); "
                            "run again to resume (finished trials are kept)"
                        ) from None
                    self.events.append(
                        f"trial {job.skeleton} {job.rung}: its Ray worker died ({why}); submitted again "
                        f"(retry {attempt + 1} of {self.max_retries})"
                    )
                    search.retries.append(self.events[-1])
                    search.note(self.events[-1])
                    pending[remote.remote(job, [ref])] = (job, attempt + 1)
                    continue
                except ray.exceptions.RayTaskError as e:  # the trial itself raised: the same error as in process
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    if isinstance(cause, AdaptcError):
                        raise cause from None
                    raise AdaptcError(
                        f"trial {job.skeleton} {job.rung} failed on a Ray worker: {type(cause).__name__}: {cause}"
                    ) from e
                outcome.info["attempts"] = attempt + 1
                yield job, outcome
        finally:
            for r in pending:  # the driver stops (an error, Ctrl-C): the trials still running are cancelled
                with contextlib.suppress(Exception):  # (already finished or gone)
                    ray.cancel(r, force=True)

    def describe(self) -> dict[str, Any]:
        res = self.ray.cluster_resources()
        return {
            "name": self.name,
            "address": self.address or os.environ.get("RAY_ADDRESS") or "local (started for the build)",
            "cluster_cpus": res.get("CPU"),
            "nodes": sum(1 for k in res if k.startswith("node:") and k != "node:__internal_head__"),
            "ray": self.ray.__version__,
            "cpus_per_trial": self.cpus_per_trial or "the search's training threads",
            "memory_mb_per_trial": self.memory_mb or "3 x the trial context + 512",
            "max_retries": self.max_retries,
            "retries": list(self.events),
        }


register_executor("ray", RayExecutor)
