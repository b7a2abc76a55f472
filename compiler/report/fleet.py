"""A fleet build's summary (``fleet.json`` / ``fleet.md``): per device what shipped, its quality, its estimate on
the device and its budgets; which candidates served several devices; how many trials the devices shared."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .schema import _M, BuildReport

FLEET_SCHEMA_VERSION = "1"


class FleetDevice(_M):
    """One device of the fleet: its build's folder, status and what shipped."""

    device: str
    folder: str
    status: str
    status_reason: str | None = None
    #: the shipped file (in ``folder``), its format, scheme and sha256
    chosen: str | None = None
    format: str | None = None
    scheme: str | None = None
    sha256: str | None = None
    #: the student (skeleton) and the search's candidate (skeleton x scheme) it came from
    skeleton: str | None = None
    candidate: str | None = None
    #: the shipped file's task metric, measured on the test split (runtime in ``metric_measured``)
    metric: float | None = None
    metric_measured: str | None = None
    size_mb: float | None = None
    #: estimated latency on the device (the predictor in ``latency_estimated_by``)
    latency_ms: float | None = None
    latency_estimated_by: str | None = None
    #: the device's budgets, and whether the shipped file fits them (None: nothing shipped)
    budgets: dict[str, float | None] = Field(default_factory=dict)
    fits_budgets: bool | None = None
    #: the skeletons this device's search trained at rung 0 (its admissible ones)
    searched: list[str] = Field(default_factory=list)
    seconds: float | None = None
    report: str | None = None


class FleetCandidate(_M):
    """A skeleton of the fleet's candidate space: the devices whose search admitted it, and those it shipped to."""

    skeleton: str
    searched_by: list[str]
    shipped_to: list[str]


class FleetReport(_M):
    fleet_version: str = FLEET_SCHEMA_VERSION
    adaptc_version: str
    created_utc: str
    duration_s: float
    status: Literal["ok", "partial", "failed", "interrupted"]
    status_reason: str | None = None
    task: str
    metric_name: str
    seed: int
    out_dir: str
    #: where the rung trials ran (adaptc.search.executor)
    executor: dict[str, Any] = Field(default_factory=dict)
    devices: list[FleetDevice]
    candidates: list[FleetCandidate] = Field(default_factory=list)
    #: the shared trial store: trials in it, trained by this run, and by rung
    trials: dict[str, Any] = Field(default_factory=dict)


def device_row(name: str, folder: str, report: BuildReport | None, seconds: float, error: str | None) -> FleetDevice:
    """The fleet's line for one device, from its build report (None: the build raised ``error``)."""
    if report is None:
        return FleetDevice(device=name, folder=folder, status="failed", status_reason=error, seconds=seconds)
    budgets = report.device.get("budgets", {}) if isinstance(report.device, dict) else {}
    row = FleetDevice(
        device=name,
        folder=folder,
        status=report.status,
        status_reason=report.status_reason,
        budgets={k: v for k, v in budgets.items() if v is not None},
        seconds=round(seconds, 1),
        report=f"{folder}/report.json",
    )
    search = report.search
    if search is not None:
        row.searched = list(search.rungs[0].skeletons) if search.rungs else []
        if search.chosen is not None:
            row.skeleton, row.candidate = search.chosen.skeleton, search.chosen.candidate
    art = next((a for a in report.artifacts if a.chosen), None)
    if art is not None:
        row.chosen, row.format, row.scheme, row.sha256 = art.file, art.format, art.scheme, art.sha256
        row.size_mb = art.size.value / 2**20 if art.size is not None and art.size.value is not None else None
        if art.parity is not None:
            row.metric = art.parity.metric.value
            row.metric_measured = f"measured: {art.parity.runtime}, {art.parity.split} split ({art.parity.samples})"
        if art.device is not None:
            row.latency_ms = art.device.latency.value
            row.latency_estimated_by = f"estimated: {art.device.predictor}"
        row.fits_budgets = art.fits_budgets
    return row


def shared_candidates(rows: list[FleetDevice]) -> list[FleetCandidate]:
    skeletons = sorted({k for r in rows for k in [*r.searched, *([r.skeleton] if r.skeleton else [])]})
    return [
        FleetCandidate(
            skeleton=k,
            searched_by=[r.device for r in rows if k in r.searched],
            shipped_to=[r.device for r in rows if r.skeleton == k and r.chosen],
        )
        for k in skeletons
    ]


def _f(v: float | None, fmt: str = "{:.4g}") -> str:
    return "-" if v is None else fmt.format(v)


def render_fleet(rep: FleetReport) -> str:
    """``fleet.md``."""
    lines = [
        f"# adaptc fleet build: {rep.task} on {len(rep.devices)} devices",
        "",
        f"Status: **{rep.status}**"
        + (f" ({rep.status_reason})" if rep.status_reason else "")
        + f"; {rep.duration_s:.0f} s; seed {rep.seed}; trials run by the {rep.executor.get('name', 'local')} "
        "executor.",
        "",
        "One search served every device: a candidate is distilled once (its trials are shared through the fleet's "
        "trial store) and each device picks its own student and scheme under its own budgets.",
        "",
        f"| device | status | shipped | student | {rep.metric_name} (measured) | size MB | latency ms "
        "(estimated on the device) | fits budgets | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in rep.devices:
        shipped = f"[{d.chosen}]({d.folder}/{d.chosen})" if d.chosen else "-"
        lines.append(
            f"| [{d.device}]({d.folder}/report.md) | {d.status} | {shipped} | {d.candidate or '-'} | "
            f"{_f(d.metric)} | {_f(d.size_mb, '{:.3f}')} | {_f(d.latency_ms, '{:.2f}')} | "
            f"{'-' if d.fits_budgets is None else ('yes' if d.fits_budgets else 'no')} | {_f(d.seconds, '{:.0f}')} |"
        )
    reasons = [f"- {d.device}: {d.status_reason}" for d in rep.devices if d.status != "ok" and d.status_reason]
    if reasons:
        lines += ["", "Devices that did not get a full build:", "", *reasons]
    lines += ["", "## Budgets", "", "| device | " + " | ".join(_BUDGETS) + " |", "|---|" + "---|" * len(_BUDGETS)]
    for d in rep.devices:
        lines.append(f"| {d.device} | " + " | ".join(_f(d.budgets.get(b)) for b in _BUDGETS) + " |")
    lines += [
        "",
        "## Candidates and the devices they served",
        "",
        "| skeleton | searched for | shipped to |",
        "|---|---|---|",
    ]
    for c in rep.candidates:
        lines.append(f"| {c.skeleton} | {', '.join(c.searched_by) or '-'} | {', '.join(c.shipped_to) or '-'} |")
    t = rep.trials
    if t:
        lines += [
            "",
            f"Trial store: {t.get('in_store')} trials, {t.get('trained')} trained by this run "
            f"(the rest resumed); rung trials: {t.get('rung_trials')}, final trainings: {t.get('final_trials')}.",
        ]
    lines += [
        "",
        f"The {rep.metric_name} of a shipped file was measured on this host, on the test split, in the file's own "
        "runtime; its latency is an estimate for the device (each device's report.md names the predictor and shows "
        "the latency measured on this host).",
    ]
    return "\n".join(lines) + "\n"


_BUDGETS = ["max_latency_ms", "max_peak_memory_mb", "max_model_mb", "max_mflops"]
