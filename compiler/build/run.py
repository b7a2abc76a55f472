"""The build: task + device -> (search: a student) -> artifacts per format -> the choice -> report.json / report.md.

Stages (each in its own package): profiles -> tasks -> search (student selection, when enabled) -> export (per
format, fallback chain of schemes) -> parity gate (runtime) -> measure (host, subprocess) -> predict (device
estimate) -> budgets -> report. Finished artifacts are recorded in the build store so an interrupted build
resumes without redoing them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from ..core import __version__
from ..core.formats import FORMAT_NAMES
from ..core.io import atomic_write_json, atomic_write_text, clean_stale_temporaries, ensure_writable_dir, folder_lock
from ..core.ptq import EFFORTS, Effort, PTQConfig
from ..core.quantity import GATES, PREFERS, Gate, Prefer
from ..core.search_options import SearchOptions
from ..core.stats import mean_interval
from ..core.versions import host_info, toolchain_versions
from ..distill.cache import memory_budget
from ..distill.dense_cache import spill_to
from ..errors import AdaptcError, BudgetError
from ..exporters import available_formats
from ..history import History, record_build
from ..history import resolve_path as resolve_history
from ..measure import host_threads
from ..profiles import DeviceProfile, load_profile
from ..report import BuildReport, SearchReport, TaskReport, TeacherReport, render
from ..store import BuildStore, check_store, data_fingerprint
from ..tasks import Task, get_task, predict_torch
from ..tasks.training import usable_cores
from .artifact import ArtifactBuilder, ExportSettings
from .choice import FormatOutcome, choose_overall, partial_reason
from .steps import q_torch_metric

if TYPE_CHECKING:  # pragma: no cover
    from ..search import SearchConfig
    from ..search.executor import Executor


def default_out_dir(profile: DeviceProfile) -> Path:
    return Path("adaptc-out") / profile.name


def resolve_formats(profile: DeviceProfile, formats: Sequence[str] | None) -> list[str]:
    """The formats to emit: ``formats`` if given (validated), else the profile's list in its order."""
    known = set(available_formats()) | set(FORMAT_NAMES)
    chosen = list(formats) if formats else list(profile.formats)
    bad = [f for f in chosen if f not in known]
    if bad:
        raise AdaptcError(f"unknown format(s) {', '.join(map(repr, bad))} (known: {', '.join(FORMAT_NAMES)})")
    return list(dict.fromkeys(chosen))


def build(
    task: str | Task = "digits",
    device: str | os.PathLike[str] | DeviceProfile = "host",
    out: str | os.PathLike[str] | None = None,
    *,
    formats: Sequence[str] | None = None,
    max_drop: float = 0.01,
    gate: Gate = "point",
    prefer: Prefer = "first",
    threads: int | None = None,
    runs: int = 100,
    resume: bool = True,
    measure_host: bool = True,
    search: bool | SearchOptions | Mapping[str, Any] = True,
    seed: int = 0,
    task_options: dict[str, Any] | None = None,
    quant_effort: Effort = "default",
    ptq: PTQConfig | None = None,
    history: str | os.PathLike[str] | bool | None = None,
    executor: str | Executor | None = None,
    executor_options: Mapping[str, Any] | None = None,
    search_state: str | os.PathLike[str] | None = None,
) -> BuildReport:
    """Build device artifacts for a task and return the report (the same content as ``report.json``). For several
    devices at once (one search serving them all) see :func:`adaptc.build_fleet`.

    ``max_drop``: the largest accepted metric drop of an artifact (fraction); ``gate``: how the parity gate reads
    it -- "point" the drop itself, "lenient" rejects only a drop whose 95% interval over the test samples lies
    wholly above ``max_drop``, "strict" accepts only one whose interval lies wholly at or below it.
    ``prefer``: which passing artifact ships -- "first" the first scheme in the profile's order that passes and
    fits (the others are not made), "fastest" / "smallest" every scheme is made and the one fastest on the device
    (estimated) / smallest that passes and fits ships, in each format and overall.
    ``task_options``: keyword arguments of the task's factory (``{"max_length": 64}`` for minilm), as
    :func:`adaptc.get_task` takes them.
    ``quant_effort``: how hard each static int8 scheme tries to pass the parity gate -- "fast" min-max (the
    format's default calibration) only, "default" then other range estimators, equalization + bias correction
    and up to 8 layers in float, "max" up to a quarter of the layers in float (:data:`adaptc.core.ptq.EFFORTS`).
    ``ptq``: the first attempt of each static int8 scheme (:class:`adaptc.PTQConfig`: a calibration method,
    equalization), instead of the format's defaults; later moves keep what it sets.
    ``search``: True runs the student search with the task's defaults, a :class:`adaptc.SearchOptions` (or a dict
    of its fields) sets options over them (widths, rung_epochs, final_epochs, time_budget_s, distill=a dict of
    fields over the task's distillation defaults or a DistillConfig used as given, ...), False exports the
    teacher as it is.
    ``history``: the build history the run is appended to (:mod:`adaptc.history`): None the default
    (``$ADAPTC_HISTORY``, else the cache folder's), a path, or False for none; checked before any work.
    ``executor``: where the search's rung trials run -- "local" (default, in this process), "ray" (a Ray cluster:
    ``executor_options`` ``address``, ``cpus_per_trial``, ``memory_mb``, ``max_retries``;
    :mod:`adaptc.search.ray_executor`) or an executor object. ``search_state``: the folder whose
    ``.adaptc/state.sqlite`` holds the search's trials (default ``out``; a fleet's folder, shared by its devices).
    Raises :class:`adaptc.errors.BudgetError` (with ``.report`` attached) when no candidate or artifact meets the
    budgets; the report files are written before it is raised.
    """
    t0 = time.perf_counter()
    profile = load_profile(device)
    if not 0 <= max_drop <= 1:
        raise AdaptcError(f"max_drop must be a fraction between 0 and 1 (got {max_drop})")
    if gate not in GATES:
        raise AdaptcError(f"gate must be one of {', '.join(GATES)} (got {gate!r})")
    if prefer not in PREFERS:
        raise AdaptcError(f"prefer must be one of {', '.join(PREFERS)} (got {prefer!r})")
    if quant_effort not in EFFORTS:
        raise AdaptcError(f"quant_effort must be one of {', '.join(EFFORTS)} (got {quant_effort!r})")
    out_dir = Path(out) if out is not None else default_out_dir(profile)
    ensure_writable_dir(out_dir)
    trial_executor = None
    if search is not False:  # (named now: an unknown executor or an unreachable cluster fails before any work)
        from ..search import get_executor

        trial_executor = get_executor(executor, **dict(executor_options or {}))
    history_path = resolve_history(history)
    if history_path is not None:
        History(history_path).close()  # a corrupt or newer history is named now, not after the work
    with folder_lock(out_dir):  # one build per folder; its temporaries are then stale and safe to remove
        clean_stale_temporaries(out_dir)
        moved = check_store(out_dir, resume)
        fmts = resolve_formats(profile, formats)
        settings = ExportSettings(
            formats=tuple(fmts),
            max_drop=max_drop,
            gate=gate,
            threads=threads,
            runs=runs,
            measure_host=measure_host,
            resume=resume,
            prefer=prefer,
            quant_effort=quant_effort,
            ptq=ptq,
        )
        # (a Task object comes made: a fleet makes its task once; task_options are then only recorded)
        the_task = task if isinstance(task, Task) else get_task(task, **(task_options or {}))
        search_config = _search_config(the_task, search)
        budget_s = search_config.time_budget_s if search_config is not None else None
        mem_budget = _memory_budget_bytes(search_config)
        teacher_outputs = predict_torch(the_task.model, the_task.test)
        teacher_metric, teacher_scores = _score_teacher(the_task, teacher_outputs)
        teacher_ci = mean_interval(teacher_scores) if teacher_scores is not None else None
        warnings: list[str] = [moved] if moved else []
        outcomes: dict[str, FormatOutcome] = {}
        search_report: SearchReport | None = None
        no_fit: BudgetError | None = None
        interrupted: dict[str, Any] | None = None
        state_dir = Path(search_state) if search_state is not None else out_dir
        with (
            BuildStore(out_dir / ".adaptc" / "state.sqlite") as store,
            (
                BuildStore(state_dir / ".adaptc" / "state.sqlite")
                if state_dir.resolve() != out_dir.resolve()
                else contextlib.nullcontext(store)
            ) as search_store,
            memory_budget(mem_budget),
            spill_to(out_dir / ".adaptc" / "spill"),
        ):
            model: nn.Module = the_task.model
            try:
                if search_config is not None:
                    from ..search import run_search

                    try:
                        model, search_report = run_search(
                            the_task,
                            profile,
                            store=search_store,
                            out_dir=out_dir,
                            state_dir=state_dir,
                            executor=trial_executor,
                            seed=seed,
                            teacher_outputs=teacher_outputs,
                            options=search_config,
                            # the search ends early enough to leave the exports their share of a time budget
                            deadline=t0 + budget_s - export_reserve_s(budget_s, len(fmts)) if budget_s else None,
                        )
                    except BudgetError as e:
                        no_fit, search_report = e, getattr(e, "search", None)
                    if search_report is not None and search_report.final_trial:
                        # where this build's student lives (a fleet's trial store is outside the folder)
                        pointer = {"state": os.path.relpath(state_dir, out_dir), "trial": search_report.final_trial}
                        if store.get("final_student") != pointer:  # (a resumed build rewrites nothing it finished)
                            store.put("final_student", "pointer", pointer)
                if no_fit is None:
                    builder = ArtifactBuilder(
                        model=model,
                        task=the_task,
                        profile=profile,
                        out_dir=out_dir,
                        store=store,
                        settings=settings,
                        teacher_outputs=teacher_outputs,
                    )
                    if budget_s:
                        builder.deadline = time.monotonic() + budget_s - (time.perf_counter() - t0)
                    outcomes = builder.run(fmts)
                    warnings += builder.warnings
            except KeyboardInterrupt:
                interrupted = _finished_so_far(store, search_store, state_dir)
        reason: str | None
        if interrupted is not None:
            chosen, status, reason, outcomes = None, "interrupted", "interrupted (Ctrl-C) before the build finished", {}
        elif no_fit is not None:
            chosen, status, reason = None, "no_fit", str(no_fit)
        else:
            chosen, status, reason = choose_overall(profile, fmts, outcomes, prefer)
        artifacts = [r for f in fmts if f in outcomes for r in outcomes[f].reports]
        for f in outcomes:
            if outcomes[f].chosen is None:
                errs = [r.error for r in outcomes[f].reports if r.error]
                warnings.append(f"format {f}: no artifact emitted" + (f" ({errs[0]})" if errs else ""))
        if status == "ok" and any(outcomes[f].chosen is None for f in outcomes):
            status, reason = "partial", partial_reason(list(outcomes), outcomes)
        for r in artifacts:
            r.chosen = chosen is not None and r.file == chosen.file
        report = BuildReport(
            adaptc_version=__version__,
            created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            duration_s=time.perf_counter() - t0,
            status=status,  # type: ignore[arg-type]
            status_reason=reason,
            out_dir=str(out_dir.resolve()),
            device=profile.model_dump(mode="json"),
            task=TaskReport(
                name=the_task.name,
                description=the_task.description,
                metric_name=the_task.metric_name,
                kind=the_task.kind,
                test_fingerprint=data_fingerprint(the_task.test),
                teacher=TeacherReport(
                    params=sum(p.numel() for p in the_task.model.parameters()),
                    metric=q_torch_metric(
                        the_task, teacher_metric, teacher_ci, len(teacher_scores) if teacher_scores is not None else 0
                    ),
                    info=dict(the_task.info.items()),
                ),
            ),
            host=host_info(),
            toolchain=toolchain_versions(),
            settings={
                **settings.to_dict(),
                "host_threads": host_threads(threads or profile.cpu.threads),
                "seed": seed,
                "search": search_config is not None,
                "task_options": dict(task_options or {}),
            },
            artifacts=artifacts,
            chosen=chosen.file if chosen else None,
            chosen_per_format={f: o.chosen.file for f, o in outcomes.items() if o.chosen is not None},
            search=search_report,
            warnings=warnings,
            resources=_resources(search_config, mem_budget, budget_s, time.perf_counter() - t0),
            progress=interrupted,
        )
        write_report(report, out_dir)
        if history_path is not None:
            record_build(report, out_dir, history_path, command="build" if search_config is not None else "export")
        if interrupted is not None:
            raise KeyboardInterrupt
        if status == "no_fit":
            err = BudgetError(reason or "no artifact meets the budgets")
            err.report = report  # type: ignore[attr-defined]
            raise err
        return report


def _score_teacher(task: Task, outputs: np.ndarray) -> tuple[float, np.ndarray | None]:
    """The teacher's test metric and per-sample scores. A task's own metric or sample_scores that raises is bad
    input (a one-line error naming the function), not an internal failure."""
    which = "metric"
    try:
        metric = float(task.metric(outputs, task.test))
        which = "sample_scores"
        return metric, task.per_sample(outputs, task.test, metric)
    except Exception as e:
        raise AdaptcError(
            f"task {task.name}: its {which} raised {type(e).__name__}: {e} (on the teacher's outputs "
            f"for the {len(task.test)}-sample test split)"
        ) from e


def _search_config(task: Task, search: bool | SearchOptions | Mapping[str, Any] | None) -> SearchConfig | None:
    """The search's configuration (checked before the teacher runs), or None: no search."""
    if search is False or search is None:
        return None
    from ..search import resolve_config

    return resolve_config(task, search)


#: share of a build's time budget kept for exporting (at least EXPORT_MIN_S per format, at most half)
EXPORT_SHARE, EXPORT_MIN_S = 0.25, 60.0


def export_reserve_s(budget_s: float, n_formats: int) -> float:
    """Seconds of a ``budget_s`` time budget the search leaves to the exports of ``n_formats`` formats."""
    return min(0.5 * budget_s, max(EXPORT_SHARE * budget_s, EXPORT_MIN_S * n_formats))


def _memory_budget_bytes(cfg: SearchConfig | None) -> int:
    """The build's memory budget: the user's (MiB), else half of the memory available now."""
    from ..distill.cache import _available_bytes

    if cfg is not None and cfg.memory_budget_mb is not None:
        if not cfg.memory_budget_mb > 0:
            raise AdaptcError(f"the memory budget must be a positive number of MiB, got {cfg.memory_budget_mb:g}")
        return int(cfg.memory_budget_mb * (1 << 20))
    return _available_bytes() // 2


def _resources(cfg: SearchConfig | None, mem_budget: int, budget_s: float | None, seconds: float) -> dict[str, Any]:
    """What the build used: peak resident memory (the OS's ru_maxrss of this process, and of its largest child:
    the host measurements and checks run in subprocesses), threads, budgets."""
    import resource
    import sys

    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20, 1),
        "peak_rss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit / 2**20, 1),
        "peak_rss_measured": "measured: the OS's peak resident set size (getrusage ru_maxrss) of the build process",
        "memory_budget_mb": round(mem_budget / 2**20),
        "time_budget_s": budget_s,
        "seconds": round(seconds, 1),
        "usable_cores": usable_cores(),
        "training_threads": cfg.threads if cfg is not None else None,
    }


def _finished_so_far(store: BuildStore, search_store: BuildStore, state_dir: Path) -> dict[str, Any]:
    """An interrupted build's record: the trials that finished (and the best of them) and the artifacts made."""
    from ..search.trials import TrialStore

    trials = TrialStore(search_store, state_dir).finished()
    best = max((t for t in trials if t["rung"] != "final"), key=lambda t: t["val"], default=None)
    final = next((t for t in trials if t["rung"] == "final"), None)
    return {
        "trials_finished": trials,
        "best_so_far": final or best,
        "artifacts_finished": sum(1 for _ in store.records("artifact")),
        "resume": "run the same command again: finished trials, epochs and artifacts are kept",
    }


def write_report(report: BuildReport, out_dir: Path) -> None:
    atomic_write_json(out_dir / "report.json", report.model_dump(mode="json"))
    atomic_write_text(out_dir / "report.md", render(report))
