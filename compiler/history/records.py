"""A build report as history records (the run and its artifacts, see the package docstring), the git state of the
working directory, and the regressions between two recorded runs (the rules of ``adaptc compare``).

Read from the report's JSON form, not the pydantic model: reports written by earlier adaptc versions (older
``schema_version``) import as well, with what they hold.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any


def _value(q: Any) -> float | None:
    """The value of a report quantity (``{"value": ..., ...}``), or None."""
    return q.get("value") if isinstance(q, dict) else None


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def report_digest(report: dict[str, Any]) -> tuple[str, str]:
    """(canonical JSON text, sha256) of a report: what makes two recorded reports the same one."""
    text = json.dumps(report, sort_keys=True, allow_nan=False)
    return text, hashlib.sha256(text.encode()).hexdigest()


def report_records(
    report: dict[str, Any], build_dir: Path, *, command: str, git: tuple[str | None, bool | None] = (None, None)
) -> tuple[dict[str, Any], list[dict[str, Any]], str, str]:
    """(run, artifacts, the report as JSON text, its sha256) of one build's report."""
    text, digest = report_digest(report)
    created = str(report.get("created_utc") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    run_id = created.replace("-", "").replace(":", "") + "-" + uuid.uuid4().hex[:6]
    device, task, search = report.get("device") or {}, report.get("task") or {}, report.get("search") or {}
    budgets = device.get("budgets") or {}
    pareto = [
        {k: p.get(k) for k in ("key", "val", "latency_ms", "size_mb", "chosen", "feasible")}
        for p in (search.get("pareto") or [])
        if isinstance(p, dict)
    ]
    build_dir = Path(build_dir).resolve()
    run = {
        "run_id": run_id,
        "created_utc": created,
        "recorded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "adaptc_version": report.get("adaptc_version"),
        "toolchain": report.get("toolchain") or {},
        "git_commit": git[0],
        "git_dirty": git[1],
        "task": task.get("name"),
        "task_fingerprint": task.get("test_fingerprint"),
        "metric_name": task.get("metric_name"),
        "teacher_metric": _value(_get(task, "teacher", "metric")),
        "device": device.get("name"),
        "device_display": device.get("display_name"),
        "profile_hash": hashlib.sha256(json.dumps(device, sort_keys=True).encode()).hexdigest(),
        "budgets": {k: budgets.get(k) for k in ("max_latency_ms", "max_peak_memory_mb", "max_model_mb", "max_mflops")},
        "status": report.get("status"),
        "status_reason": report.get("status_reason"),
        "shipped": report.get("chosen"),
        "build_dir": str(build_dir),
        "duration_s": report.get("duration_s"),
        "candidates": len(search.get("candidates") or []),
        "pareto": pareto,
    }
    arts = []
    for a in report.get("artifacts") or []:
        metric = _get(a, "parity", "metric")
        arts.append(
            {
                "run_id": run_id,
                "file": a.get("file"),
                "path": str(build_dir / str(a.get("file"))),
                "report_md": str(build_dir / "report.md"),
                "format": a.get("format"),
                "scheme": a.get("scheme"),
                "precision": a.get("precision"),
                "status": a.get("status"),
                "shipped": a.get("file") is not None and a.get("file") == report.get("chosen"),
                "chosen_for_format": bool(a.get("chosen")),
                "size_bytes": _value(a.get("size")),
                "sha256": a.get("sha256"),
                "metric": _value(metric),
                "metric_ci95": metric.get("ci95") if isinstance(metric, dict) else None,
                "host_latency_ms": _value(_get(a, "host", "latency_median")),
                "host_peak_mb": _value(_get(a, "host", "peak_memory")),
                "host_method": _get(a, "host", "latency_median", "method"),
                "device_latency_ms": _value(_get(a, "device", "latency")),
                "device_peak_mb": _value(_get(a, "device", "peak_memory")),
                "device_method": _get(a, "device", "latency", "method"),
                "fits_budgets": a.get("fits_budgets"),
                "error": a.get("error"),
            }
        )
    return run, arts, text, digest


def git_state(cwd: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git repository ``cwd`` is in; (None, None) outside one or without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return head.stdout.strip() or None, (bool(status.stdout.strip()) if status.returncode == 0 else None)
    except (OSError, subprocess.SubprocessError):
        return None, None


def stored_build_report(report: dict[str, Any] | None) -> Any:
    """A stored report as a :class:`~adaptc.report.BuildReport`, or None where this adaptc cannot read it (an
    earlier schema)."""
    from ..report.schema import BuildReport

    if report is None:
        return None
    try:
        return BuildReport.model_validate(report)
    except ValueError:
        return None


def regressions_between(baseline: tuple[Any, dict[str, Any]], candidate: tuple[Any, dict[str, Any]]) -> list[str]:
    """The regressions ``adaptc compare`` finds from the baseline run to the candidate run (each: its stored report as
    :func:`stored_build_report` gives it, and its run record; the build folder, where it still exists, gives the
    per-sample scores of the paired test)."""
    from ..errors import AdaptcError
    from ..report.compare import compare

    (rb, run_b), (rc, run_c) = baseline, candidate
    if rb is None or rc is None:
        return []
    try:
        return compare((rb, Path(run_b["build_dir"])), (rc, Path(run_c["build_dir"]))).regressions
    except AdaptcError:  # reports that cannot be compared (another task)
        return []
