"""``adaptc devices``, ``adaptc tasks``, ``adaptc compare``: what there is to build for and with, and two builds
side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..core.io import json_text
from ..errors import AdaptcError
from . import _console, app


@app.command(context_settings={"ignore_unknown_options": False})
def devices(
    args: list[str] | None = typer.Argument(None, help="A wildcard pattern ('pixel*'), or: show NAME"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List device profiles (optionally matching a wildcard), or `devices show NAME` for one profile."""
    from ..profiles import list_devices, load_profile, profile_origin, profile_to_yaml

    args = list(args or [])
    if args and args[0] == "show":
        if len(args) != 2:
            raise AdaptcError("usage: adaptc devices show NAME")
        prof = load_profile(args[1])
        if as_json:
            typer.echo(json_text(prof.model_dump(mode="json")))
        else:
            origin = profile_origin(prof.name)
            if origin is not None:
                typer.echo(f"# {origin.path} ({origin.origin})")
            typer.echo(profile_to_yaml(prof), nl=False)
        return
    if len(args) > 1:
        raise AdaptcError("give one wildcard pattern, e.g. adaptc devices 'pixel*'")
    pattern = args[0] if args else "*"
    profs = list_devices(pattern)
    if as_json:
        typer.echo(json_text([p.model_dump(mode="json") for p in profs]))
        return
    if not profs:
        from ..profiles import known_device_names

        raise AdaptcError(f"no device matches {pattern!r} (known: {', '.join(known_device_names())})")
    from rich.table import Table

    from ..predict.constants import sustained_throughput

    t = Table(title="device profiles", title_justify="left")
    for col in (
        "name",
        "kind",
        "SoC",
        "fp32 / int8 GOP/s @threads",
        "budgets: latency · memory · size · MFLOPs",
        "formats",
        "sources",
    ):
        t.add_column(col, no_wrap=col != "SoC", overflow="fold")
    for p in profs:
        b = p.budgets

        def fmt(v: float | None, unit: str) -> str:
            return f"{v:g} {unit}" if v is not None else "—"

        fp32_s, _ = sustained_throughput(p, "fp32")
        int8 = f"{sustained_throughput(p, 'int8')[0]:.4g}" if (p.compute.int8_gops or p.compute.int8_peak_gops) else "—"
        peak = " (from peak)" if p.compute.fp32_gflops is None else ""
        t.add_row(
            p.name,
            p.kind.value,
            p.soc,
            f"{fp32_s:.4g} / {int8} @{p.cpu.threads}{peak}",
            " · ".join(
                (
                    fmt(b.max_latency_ms, "ms"),
                    fmt(b.max_peak_memory_mb, "MB"),
                    fmt(b.max_model_mb, "MB"),
                    fmt(b.max_mflops, ""),
                )
            ),
            ",".join(p.formats),
            str(len(p.sources)),
        )
    _console().print(t)


# --------------------------------------------------------------------------------------------- tasks
@app.command()
def tasks(
    pattern: str = typer.Argument("*", help="A wildcard pattern ('mini*')."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the built-in tasks with their options (--task NAME, -O KEY=VALUE); a custom task is package.module:factory."""
    from ..tasks import builtin_tasks, list_tasks

    infos = list_tasks(pattern)
    if not infos:
        raise AdaptcError(f"no built-in task matches {pattern!r} (known: {', '.join(builtin_tasks())})")
    if as_json:
        typer.echo(json_text([{"name": i.name, "summary": i.summary, "options": i.options} for i in infos]))
        return
    from rich.table import Table

    t = Table(title="built-in tasks (a custom one: --task package.module:factory)", title_justify="left")
    for col in ("name", "options (-O KEY=VALUE)", "what"):
        t.add_column(col, no_wrap=col == "name", overflow="fold")
    for i in infos:
        t.add_row(i.name, ", ".join(f"{k}={v!r}" for k, v in i.options.items()) or "—", i.summary)
    _console().print(t)


# ------------------------------------------------------------------------------------------- compare
EXIT_REGRESSION = 4


@app.command()
def compare(
    baseline: Path | None = typer.Argument(
        None, help="The build to compare against: its folder or report.json (with --against-history: the new build)."
    ),
    candidate: Path | None = typer.Argument(None, help="The new build: its folder or report.json."),
    against_history: bool = typer.Option(
        False,
        "--against-history",
        help="Compare one build with the last release in the build history (the newest earlier run of the same task "
        "and device that shipped); exit 4 on a regression.",
    ),
    history: Path | None = typer.Option(
        None, "--history", help="With --against-history: the history file [default: $ADAPTC_HISTORY, else the cache's]."
    ),
    max_drop: float = typer.Option(
        1.0, "--max-drop", help="Largest metric drop of a shipped artifact that is not a regression, in points."
    ),
    latency_tolerance: float = typer.Option(
        10.0,
        "--latency-tolerance",
        help="Largest slow-down of the device estimate that is not a regression, in percent.",
    ),
    host_tolerance: float | None = typer.Option(
        None,
        "--host-tolerance",
        help="Largest slow-down of the host measurement (same CPU, runtime, threads) that is not a regression, in percent [default: host changes are shown, not judged; medians drift 10-20% between runs on shared machines].",
    ),
    fail_on_regression: bool = typer.Option(
        False, "--fail-on-regression", help="Exit with code 4 when the candidate regressed (for release pipelines)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Also draw every artifact of both builds, metric against estimated device latency, to this PNG.",
    ),
) -> None:
    """Compare what two builds ship (overall and per format): metric with its interval, size, device estimate,
    host measurement, budgets; says which changes are regressions."""
    from ..report.compare import compare as run_compare
    from ..report.compare import describe

    base: Any = baseline
    plot_base: Any = baseline
    cand: Any = candidate
    if against_history:
        if baseline is None or candidate is not None:
            raise AdaptcError("--against-history compares one build: adaptc compare --against-history BUILD_DIR")
        from ..history import baseline_for, read_report
        from ..report.compare import load_build

        cand_report, _ = read_report(baseline)
        found = baseline_for(cand_report, history)
        if found is None:
            raise AdaptcError(
                f"no earlier run of task {cand_report['task'].get('name')!r} on {cand_report['device'].get('name')!r} "
                "in the build history to compare against"
            )
        from ..report.schema import BuildReport

        base = (BuildReport.model_validate(found[0]), Path(found[1]["build_dir"]))
        plot_base = Path(found[1]["build_dir"]) / "report.json"
        fail_on_regression = True
        cand = load_build(baseline)  # read once (a candidate report this adaptc cannot read is named here)
        candidate = baseline
    elif baseline is None or candidate is None:
        raise AdaptcError("give two builds (adaptc compare BASELINE CANDIDATE) or --against-history BUILD_DIR")
    cmp = run_compare(
        base,
        cand,
        max_drop=max_drop / 100.0,
        latency_tolerance=latency_tolerance / 100.0,
        host_tolerance=None if host_tolerance is None else host_tolerance / 100.0,
    )
    if plot is not None:
        from ..core.io import ensure_writable_dir
        from ..report.compare_plot import plot_comparison

        ensure_writable_dir(plot.parent if str(plot.parent) else Path("."))
        plot_comparison(plot_base, candidate, plot)
    if as_json:
        typer.echo(json_text({**cmp.model_dump(mode="json"), "plot": str(plot) if plot else None}))
    else:
        from rich.table import Table

        t = Table(title=f"{cmp.task} on {cmp.device}: {cmp.status[0]} -> {cmp.status[1]}", title_justify="left")
        for col in ("ships", "quantity", "baseline -> candidate", "verdict"):
            t.add_column(col, overflow="fold")
        for row in cmp.rows:
            ships = f"{row.scope}: {row.baseline_file or '—'} -> {row.candidate_file or '—'}"
            for i, c in enumerate(row.changes or []):
                t.add_row(ships if i == 0 else "", c.quantity, describe(c), c.verdict)
            if not row.changes:
                t.add_row(ships, "—", "—", "n/a")
        con = _console()
        con.print(t)
        for n in cmp.notes:
            con.print(f"note: {n}")
        con.print(("regressions:\n  " + "\n  ".join(cmp.regressions)) if cmp.regressions else "no regression")
        if plot is not None:
            con.print(f"plot: {plot}")
    if fail_on_regression and cmp.regressions:
        raise typer.Exit(code=EXIT_REGRESSION)
