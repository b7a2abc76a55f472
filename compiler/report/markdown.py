"""``report.md``: the build report for people."""

from __future__ import annotations

from ..core.quantity import GATE_RULES, PREFER_RULES, Quantity, margin_text
from .schema import ArtifactReport, BuildReport, ParityReport
from .text import bracket, percent

_TAG = {"measured": "M", "counted": "C", "estimated": "E"}


def _vs_teacher(p: ParityReport | None) -> str:
    """Agreement of an artifact's outputs with the teacher's: top-1 for classifiers, else mean cosine."""
    if p is None or p.teacher_cosine is None:
        return "—"
    if p.teacher_top1_agreement is not None:
        return f"top-1 {100 * p.teacher_top1_agreement:.1f}%"
    return f"cos {p.teacher_cosine:.3f}"


def fmt_q(q: Quantity | None, digits: int = 3) -> str:
    if q is None or q.value is None:
        return "—"
    v = q.value
    if q.unit == "bytes":
        s = _fmt_bytes(v)
    elif q.unit == "fraction":
        s = percent(v, q.ci95)
    else:
        s = f"{v:.{digits}g} {q.unit}"
    return f"{s} ({_TAG[q.kind]})"


def _fmt_bytes(v: float) -> str:
    for unit, div in (("MB", 2**20), ("KB", 2**10)):
        if v >= div:
            return f"{v / div:.2f} {unit}"
    return f"{int(v)} B"


def _budget_cell(a: ArtifactReport) -> str:
    if not a.budgets:
        return "—"
    bad = [b for b in a.budgets if not b.fits]
    if not bad:
        return "fits all"
    return "; ".join(f"{b.budget} +{margin_text(b.margin_pct)}" for b in bad)


def _gate_line(settings: dict) -> str:
    gate = settings.get("gate", "point")
    limit = settings.get("max_drop")
    limit_s = f"at most {100 * limit:.2f} points" if isinstance(limit, (int, float)) else "the limit"
    return (
        f"- parity gate: {limit_s} below the torch model and the fp32 artifact, {gate} ({GATE_RULES.get(gate, gate)})"
    )


def _prefer_line(settings: dict) -> list[str]:
    prefer = settings.get("prefer", "first")  # "first" (the default, and every report before the option) says nothing
    return [] if prefer == "first" else [f"- choice: --prefer {prefer} ({PREFER_RULES.get(prefer, prefer)})"]


def _ptq_section(artifacts: list[ArtifactReport]) -> list[str]:
    """Per static int8 artifact that needed more than the format's default calibration: the attempts of the
    scheme walk and, for a mixed-precision file, the layers kept in float and what they cost."""
    walked = [a for a in artifacts if a.recipe.get("ptq_attempts")]
    if not walked:
        return []
    out = ["## Post-training quantization", ""]
    for a in walked:
        out += [
            f"**{a.file}** ({a.scheme})",
            "",
            "| attempt | moves | status | drop (points) | size |",
            "|---|---|---|---|---|",
        ]
        for i, t in enumerate(a.recipe["ptq_attempts"], 1):
            drop = "—" if t.get("drop") is None else f"{100 * t['drop']:.2f}"
            size = "—" if t.get("size_bytes") is None else _fmt_bytes(t["size_bytes"])
            out.append(f"| {i} | {t['moves']} | {t['status']} | {drop} | {size} |")
        if a.recipe.get("ptq_stopped"):
            out.append(f"\nStopped: {a.recipe['ptq_stopped']}.")
        fl = a.recipe.get("float_layers")
        if isinstance(fl, dict) and fl.get("layers"):
            cost = []
            if fl.get("size_cost_bytes") is not None:
                cost.append(f"{_fmt_bytes(fl['size_cost_bytes'])} more than the all-int8 file")
            if fl.get("device_latency_cost_ms") is not None:
                cost.append(f"{fl['device_latency_cost_ms']:+.3f} ms estimated on the device")
            out += [
                "",
                f"Layers kept in float: {len(fl['layers'])}, {100 * fl['macs_share']:.1f}% of the MACs"
                + (f"; {', '.join(cost)}" if cost else "")
                + ".",
                "",
                "| layer | kind | MACs share | params |",
                "|---|---|---|---|",
            ]
            for r in fl["layers"]:
                out.append(f"| `{r['layer']}` | {r['kind']} | {100 * r['macs_share']:.1f}% | {r['params']:,} |")
        out.append("")
    return out


def _resources_line(report: BuildReport) -> list[str]:
    """Peak memory (measured) against the budgets, and what an interrupted build finished."""
    r = report.resources
    out = []
    if r.get("peak_rss_mb") is not None:
        tb = r.get("time_budget_s")
        out.append(
            f"- resources: peak RSS {r['peak_rss_mb']:,.0f} MB (M, the build process; memory budget "
            f"{r.get('memory_budget_mb', 0):,} MB)" + (f", time budget {tb:g} s" if tb else "")
        )
    if report.progress:
        trials = report.progress.get("trials_finished") or []
        out.append(
            f"- interrupted: {len(trials)} trial(s) and {report.progress.get('artifacts_finished', 0)} artifact(s) "
            f"finished; rerun the same command to resume"
        )
    return out


def render(report: BuildReport) -> str:
    d = report.device
    lines = [
        f"# adaptc build: {report.task.name} → {d.get('display_name', d.get('name'))}",
        "",
        f"- status: **{report.status}**" + (f" — {report.status_reason}" if report.status_reason else ""),
        f"- chosen artifact: **{report.chosen or 'none'}**",
        f"- device: `{d.get('name')}` ({d.get('soc')}, {d.get('kind')}), budgets: "
        + ", ".join(f"{k}={v:g}" for k, v in (d.get("budgets") or {}).items() if v is not None),
        f"- task: {report.task.description} — teacher {report.task.teacher.params:,} parameters, "
        f"test {report.task.metric_name} {fmt_q(report.task.teacher.metric)}",
        f"- host: {report.host.get('cpu')} ({report.host.get('usable_cores')} cores) — adaptc {report.adaptc_version}, "
        f"built {report.created_utc} in {report.duration_s:.1f} s",
        *_resources_line(report),
        _gate_line(report.settings),
        *_prefer_line(report.settings),
        "",
        "Tags: (M) measured on this host, (C) counted from the exported file, (E) estimated for the device. "
        "[a, b]: 95% interval over the test samples (the split's sampling error; paired for drops).",
        "",
        "## Artifacts",
        "",
        "| file | scheme | status | size | test metric | drop vs fp32 | cosine | vs teacher | host latency p50 / p90 | host peak mem | device latency | device peak mem | budgets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in report.artifacts:
        p = a.parity
        drop = "—"
        if p is not None:
            vs_fp32 = p.drop_vs_fp32_artifact is not None
            ref = p.drop_vs_fp32_artifact if p.drop_vs_fp32_artifact is not None else p.drop_vs_torch
            ci = p.drop_vs_fp32_artifact_ci95 if vs_fp32 else p.drop_vs_torch_ci95
            drop = f"{100 * ref:+.2f} pt" + bracket(ci, signed=True)
        no_rt = a.status != "failed" and (a.runtime or "").startswith("none")
        missing = "not run (no runtime here)" if no_rt else "—"
        host = f"{fmt_q(a.host.latency_median)} / {fmt_q(a.host.latency_p90)}" if a.host else missing
        mark = " ✅" if a.chosen else ""
        lines.append(
            f"| `{a.file}`{mark} | {a.scheme} | {a.status} | {fmt_q(a.size)} | {fmt_q(p.metric) if p else missing} | {drop} | "
            f"{f'{p.cosine:.5f}' if p else '—'} | {_vs_teacher(p)} | {host} | {fmt_q(a.host.peak_memory) if a.host else '—'} | "
            f"{fmt_q(a.device.latency) if a.device else '—'} | {fmt_q(a.device.peak_memory) if a.device else '—'} | "
            f"{_budget_cell(a)} |"
        )
    lines += [
        "",
        "## Converters and runtimes",
        "",
        "| file | format | precision | converter | runtime (parity and host measurement) | structure check |",
        "|---|---|---|---|---|---|",
    ]
    for a in report.artifacts:
        check = a.structure.get("check") if isinstance(a.structure, dict) else None
        cell = "—"
        if isinstance(check, dict):
            cell = "passed" if check.get("passed") else "failed: " + "; ".join(check.get("failed", []))
        lines.append(
            f"| `{a.file}` | {a.format} | {a.precision} | {a.converter or '—'} | {a.runtime or '—'} | {cell} |"
        )
    lines += ["", "## Budget verdicts", ""]
    for a in report.artifacts:
        if not a.budgets:
            continue
        lines.append(f"**{a.file}**")
        lines.append("")
        for b in a.budgets:
            lines.append(f"- {'✔' if b.fits else '✘'} {b.message}")
        lines.append("")
    lines += _ptq_section(report.artifacts)
    flagged = [a for a in report.artifacts if a.flags or a.error]
    if flagged:
        lines += ["## Flags", ""]
        for a in flagged:
            for f in a.flags:
                lines.append(f"- `{a.file}`: {f}")
            if a.error:
                lines.append(f"- `{a.file}`: error: {a.error}")
        lines.append("")
    if report.search:
        from .search_md import render_search

        lines += render_search(report.search, report.device["name"], report.task.metric_name)
    if report.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report.warnings] + [""]
    lines += ["## How the numbers were obtained", ""]
    seen: set[str] = set()
    for a in report.artifacts:
        for q in filter(
            None,
            [
                a.size,
                a.parity.metric if a.parity else None,
                a.host.latency_median if a.host else None,
                a.host.peak_memory if a.host else None,
                a.device.latency if a.device else None,
                a.device.peak_memory if a.device else None,
            ],
        ):
            if q.method not in seen:
                seen.add(q.method)
                lines.append(f"- ({_TAG[q.kind]}) {q.method}")
    lines += ["", "## Toolchain", "", ", ".join(f"{k} {v}" for k, v in report.toolchain.items()), ""]
    return "\n".join(lines)
