"""Two builds side by side: what ships in each, what changed, and whether it regressed (``adaptc compare``).

A release pipeline builds again and asks "is this worse than what we shipped?". For the artifact each build
ships (overall, and per format) this compares the task metric, file size, the device estimate, the host
measurement and the budgets, and calls a change a regression only where the numbers allow it:

- the metric: a drop larger than ``max_drop`` (as the parity gate's point rule). Its 95% interval is paired
  (the two files' per-sample scores on the same test split, read from the builds' stores) when both builds
  scored the same split and kept the scores, else an approximate unpaired interval from the two metrics' own
  intervals (half-widths added in quadrature; much wider): the row says which.
- the device estimate: slower by more than ``latency_tolerance`` (estimates are deterministic for one
  predictor version, so a change is the graph's; estimates of different predictor versions or devices are
  not compared).
- the host measurement: slower by more than ``host_tolerance`` on the same CPU, runtime and threads; by
  default (None) host changes are shown but not judged: medians of one file drift 10-20% between runs on a
  shared machine, 50% below 0.1 ms (a dedicated benchmark host can set a tolerance). A file measured twice
  (the same sha256) is never a host regression. Other hosts are not compared.
- the size: larger by more than 1%; a budget the baseline met and the candidate breaks; a worse build status.

Hand-written: comparing adaptc's own reports (no library knows their schema).
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..core.stats import drop_interval
from ..errors import AdaptcError
from ..store import BuildStore, scores_key
from .schema import ArtifactReport, BuildReport

Verdict = Literal["regression", "worse", "same", "better", "n/a"]
_STATUS_RANK = {"ok": 0, "partial": 1, "no_fit": 2, "failed": 3}


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Change(_M):
    quantity: str
    unit: str
    baseline: float | None
    candidate: float | None
    #: candidate - baseline (for the metric: in its own unit, a fraction)
    delta: float | None
    #: 95% interval of ``delta`` where it has one (the metric), and how it was obtained
    delta_ci95: tuple[float, float] | None = None
    verdict: Verdict
    note: str = ""


class Shipped(_M):
    #: "overall" or a format name
    scope: str
    baseline_file: str | None
    candidate_file: str | None
    changes: list[Change] = Field(default_factory=list)


class Comparison(_M):
    baseline: str
    candidate: str
    task: str
    device: str
    status: tuple[str, str]
    rows: list[Shipped]
    #: one line per regression ("<scope> <quantity>: ..."); empty when the candidate did not regress
    regressions: list[str]
    notes: list[str] = Field(default_factory=list)
    settings: dict[str, float | None]


def load_build(path: str | Path) -> tuple[BuildReport, Path]:
    """A build's report and folder from the folder or its ``report.json``."""
    p = Path(path)
    f = p / "report.json" if p.is_dir() else p
    if not f.is_file():
        raise AdaptcError(f"{path}: no report.json there (give a build folder or its report.json)")
    try:
        return BuildReport.model_validate_json(f.read_bytes()), f.parent
    except ValueError as e:
        first = str(e).strip().splitlines()
        raise AdaptcError(f"{f}: not an adaptc build report ({first[0] if first else e})") from None


def stored_scores(folder: Path, artifact: ArtifactReport) -> np.ndarray | None:
    """The per-sample test scores a build kept for ``artifact`` (matched by file name and sha256), or None."""
    db = folder / ".adaptc" / "state.sqlite"
    if not db.is_file() or artifact.sha256 is None:
        return None
    try:
        with BuildStore(db, read_only=True) as store:
            for key, rec in store.records("artifact"):
                if rec.get("file") == artifact.file and rec.get("sha256") == artifact.sha256:
                    scores = store.get(scores_key(key))
                    if scores is not None:
                        return np.asarray(scores["scores"], dtype=np.float64)
    except sqlite3.Error:
        return None
    return None


def _pct(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else (b - a) / a


def _metric(
    base: tuple[BuildReport, Path],
    cand: tuple[BuildReport, Path],
    a: ArtifactReport,
    b: ArtifactReport,
    max_drop: float,
) -> Change:
    name = base[0].task.metric_name
    pa, pb = a.parity, b.parity
    if pa is None or pb is None:
        return Change(
            quantity=name,
            unit="fraction",
            baseline=pa.metric.value if pa else None,
            candidate=pb.metric.value if pb else None,
            delta=None,
            verdict="n/a",
            note="no metric measured on this host for one of the files",
        )
    va, vb = pa.metric.value or 0.0, pb.metric.value or 0.0
    delta = vb - va
    ci: tuple[float, float] | None = None
    how = ""
    same_split = (
        base[0].task.test_fingerprint is not None and base[0].task.test_fingerprint == cand[0].task.test_fingerprint
    )
    sa, sb = (stored_scores(base[1], a), stored_scores(cand[1], b)) if same_split else (None, None)
    if sa is not None and sb is not None and len(sa) == len(sb):
        lo, hi = drop_interval(sa, sb)  # baseline - candidate, paired
        ci, how = (-hi, -lo), f"paired over the {len(sa)} scored test samples"
    elif pa.metric.ci95 and pb.metric.ci95:
        half = math.hypot((pa.metric.ci95[1] - pa.metric.ci95[0]) / 2, (pb.metric.ci95[1] - pb.metric.ci95[0]) / 2)
        ci = (delta - half, delta + half)
        how = (
            "unpaired, approximate (the two metrics' intervals; "
            + ("per-sample scores not kept" if same_split else "not known to be the same test split")
            + ")"
        )
    else:
        how = "no interval: a report without the metric's interval"
    if -delta > max_drop + 1e-12:
        verdict: Verdict = "regression"
    else:
        verdict = "worse" if delta < 0 else "better" if delta > 0 else "same"
    within = ci is not None and ci[0] <= 0 <= ci[1]
    note = "; ".join(x for x in (how, "within the sampling error" if within and delta else "") if x)
    return Change(
        quantity=name,
        unit="fraction",
        baseline=va,
        candidate=vb,
        delta=delta,
        delta_ci95=ci,
        verdict=verdict,
        note=note,
    )


def _slower(
    quantity: str,
    unit: str,
    va: float | None,
    vb: float | None,
    tolerance: float | None,
    note: str = "",
    comparable: bool = True,
) -> Change:
    d = None if va is None or vb is None else vb - va
    rel = _pct(va, vb)
    if not comparable or rel is None:
        verdict: Verdict = "n/a"
    elif tolerance is not None and rel > tolerance + 1e-12:
        verdict = "regression"
    else:
        verdict = "worse" if rel > 0 else "better" if rel < 0 else "same"
    if rel is not None and comparable:
        note = "; ".join(x for x in (f"{100 * rel:+.1f}%", note) if x)
    return Change(quantity=quantity, unit=unit, baseline=va, candidate=vb, delta=d, verdict=verdict, note=note)


def _host_key(r: BuildReport, a: ArtifactReport) -> tuple[object, ...]:
    return (r.host.get("cpu"), r.host.get("usable_cores"), r.settings.get("host_threads"), a.runtime)


def _pair(
    base: tuple[BuildReport, Path],
    cand: tuple[BuildReport, Path],
    scope: str,
    a: ArtifactReport | None,
    b: ArtifactReport | None,
    opts: dict[str, float | None],
) -> Shipped:
    row = Shipped(scope=scope, baseline_file=a.file if a else None, candidate_file=b.file if b else None)
    if a is None or b is None:
        return row
    rb, rc = base[0], cand[0]
    row.changes.append(_metric(base, cand, a, b, float(opts["max_drop"] or 0.0)))
    size_a = a.size.value if a.size else None
    size_b = b.size.value if b.size else None
    row.changes.append(_slower("size", "bytes", size_a, size_b, 0.01))
    same_predictor = (
        a.device is not None
        and b.device is not None
        and a.device.predictor == b.device.predictor
        and rb.device.get("name") == rc.device.get("name")
    )
    row.changes.append(
        _slower(
            "device latency (estimated)",
            "ms",
            a.device.latency.value if a.device else None,
            b.device.latency.value if b.device else None,
            opts["latency_tolerance"],
            "" if same_predictor else "not compared: another device or predictor version",
            same_predictor,
        )
    )
    same_host = _host_key(rb, a) == _host_key(rc, b)
    host = _slower(
        "host latency p50 (measured)",
        "ms",
        a.host.latency_median.value if a.host else None,
        b.host.latency_median.value if b.host else None,
        opts["host_tolerance"],
        "" if same_host else "not compared: another CPU, runtime or thread count",
        same_host,
    )
    if same_host and a.sha256 is not None and a.sha256 == b.sha256 and host.verdict != "n/a":
        # one file measured twice: whatever moved is the machine, not the build
        host.verdict, host.note = "same", host.note + "; the same file (sha256): run-to-run noise"
    row.changes.append(host)
    met = {v.budget for v in a.budgets if v.fits}
    broke = sorted(v.budget for v in b.budgets if not v.fits and v.budget in met)
    row.changes.append(
        Change(
            quantity="budgets",
            unit="",
            baseline=None,
            candidate=None,
            delta=None,
            verdict="regression" if broke else "same",
            note=("breaks " + ", ".join(broke) + " (met before)") if broke else "",
        )
    )
    return row


def compare(
    baseline: str | Path | tuple[BuildReport, Path],
    candidate: str | Path | tuple[BuildReport, Path],
    *,
    max_drop: float = 0.01,
    latency_tolerance: float = 0.10,
    host_tolerance: float | None = None,
) -> Comparison:
    """Compare the artifacts two builds ship (folders or ``report.json`` files, or (report, folder) pairs); see the
    module docstring for the rules. ``max_drop``: the largest metric drop that is not a regression (fraction); the
    tolerances: the largest relative slow-down of the device estimate and of the host measurement (None: host
    changes are shown, not judged). Raises :class:`adaptc.errors.AdaptcError` for a path without a report, or
    builds of different tasks."""
    for name, v in (
        ("max_drop", max_drop),
        ("latency_tolerance", latency_tolerance),
        ("host_tolerance", host_tolerance),
    ):
        if v is not None and not 0 <= v <= 10:
            raise AdaptcError(f"{name} must be a fraction between 0 and 10 (got {v})")
    # (a report already read, with the folder it came from: the build history compares stored reports)
    base = baseline if isinstance(baseline, tuple) else load_build(baseline)
    cand = candidate if isinstance(candidate, tuple) else load_build(candidate)
    rb, rc = base[0], cand[0]
    if rb.task.name != rc.task.name or rb.task.metric_name != rc.task.metric_name:
        raise AdaptcError(
            f"not comparable: the baseline built task {rb.task.name!r} ({rb.task.metric_name}), "
            f"the candidate {rc.task.name!r} ({rc.task.metric_name})"
        )
    opts: dict[str, float | None] = {
        "max_drop": max_drop,
        "latency_tolerance": latency_tolerance,
        "host_tolerance": host_tolerance,
    }
    notes: list[str] = []
    if host_tolerance is None:
        notes.append(
            "host measurements are shown, not judged (no host tolerance: medians drift 10-20% between "
            "runs on a shared machine)"
        )
    if rb.device.get("name") != rc.device.get("name"):
        notes.append(
            f"different devices ({rb.device.get('name')} / {rc.device.get('name')}): device estimates "
            "and budgets are not those of one device"
        )
    if rb.settings.get("task_options", {}) != rc.settings.get("task_options", {}):
        notes.append(f"different task options ({rb.settings.get('task_options')} / {rc.settings.get('task_options')})")
    rows = [_pair(base, cand, "overall", rb.chosen_artifact, rc.chosen_artifact, opts)]
    for fmt in dict.fromkeys([*rb.chosen_per_format, *rc.chosen_per_format]):
        fa, fb = rb.chosen_per_format.get(fmt), rc.chosen_per_format.get(fmt)
        rows.append(_pair(base, cand, fmt, rb.artifact(fa) if fa else None, rc.artifact(fb) if fb else None, opts))
    regressions = []
    if _STATUS_RANK.get(rc.status, 3) > _STATUS_RANK.get(rb.status, 3):
        regressions.append(
            f"build status: {rb.status} -> {rc.status}" + (f" ({rc.status_reason})" if rc.status_reason else "")
        )
    for row in rows:
        if row.baseline_file and not row.candidate_file:
            regressions.append(f"{row.scope}: the baseline ships {row.baseline_file}, the candidate nothing")
        if row.baseline_file and row.candidate_file and row.baseline_file != row.candidate_file:
            notes.append(f"{row.scope}: ships {row.candidate_file} where the baseline shipped {row.baseline_file}")
        for c in row.changes:
            if c.verdict == "regression":
                regressions.append(f"{row.scope} {c.quantity}: {describe(c)}")
    return Comparison(
        baseline=str(base[1]),
        candidate=str(cand[1]),
        task=rc.task.name,
        device=str(rc.device.get("name")),
        status=(rb.status, rc.status),
        rows=rows,
        regressions=regressions,
        notes=notes,
        settings=opts,
    )


def describe(c: Change) -> str:
    """One cell: baseline -> candidate, with the change."""

    def v(x: float | None) -> str:
        if x is None:
            return "—"
        if c.unit == "fraction":
            return f"{100 * x:.2f}%"
        if c.unit == "bytes":
            return f"{x / 2**20:.2f} MB"
        return f"{x:.3g} {c.unit}"

    if c.quantity == "budgets":
        return c.note or "as before"
    s = f"{v(c.baseline)} -> {v(c.candidate)}"
    if c.unit == "fraction" and c.delta is not None:
        s += f" ({100 * c.delta:+.2f} points"
        s += f", [{100 * c.delta_ci95[0]:+.2f}, {100 * c.delta_ci95[1]:+.2f}]" if c.delta_ci95 else ""
        s += ")"
    return s + (f"; {c.note}" if c.note else "")
