"""The fleet side of ``adaptc build``: several devices (``--device a,b,c``, a wildcard, ``--fleet FILE``) built by one
search, and where its trials run (``--executor local|ray``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from ..core.io import json_text
from ..errors import AdaptcError
from . import _console, _maybe_live, _reporter

FleetOpt = Annotated[
    Path | None,
    typer.Option(
        "--fleet",
        help="A fleet file (YAML): `devices:` a list of names, profile paths or wildcards, each optionally with overrides (formats, max_drop in points, gate, prefer, quant_effort, threads, runs, budgets). Builds them all with one search, as a --device list does.",
    ),
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help='Where the search\'s rung trials run: local (this process) or ray (a Ray cluster; pip install "adaptc[ray]").',
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray cluster to join: auto (the one started on this machine with `ray start --head`) or HOST:PORT [default: $RAY_ADDRESS, else Ray started for the build].",
    ),
]
TrialCpusOpt = Annotated[
    float | None,
    typer.Option(
        "--trial-cpus", min=0.1, help="CPUs each Ray trial declares [default: the search's training threads]."
    ),
]
TrialMemoryOpt = Annotated[
    float | None,
    typer.Option(
        "--trial-memory",
        min=1,
        help="Memory (MiB) each Ray trial declares [default: 3 x the trial's data and teacher + 512].",
    ),
]


def is_fleet(device: str) -> bool:
    """Whether ``--device`` names several devices (a comma list or a wildcard)."""
    from ..build.fleet import is_wildcard

    return "," in device or is_wildcard(device)


def executor_args(executor: str, address: str | None, cpus: float | None, memory: float | None) -> dict[str, Any]:
    if executor != "ray" and (address or cpus or memory):
        raise AdaptcError("--address, --trial-cpus and --trial-memory are options of --executor ray")
    opts = {"address": address, "cpus_per_trial": cpus, "memory_mb": memory} if executor == "ray" else {}
    return {"executor": executor, "executor_options": opts}


def fleet_devices(device: str, fleet: Path | None) -> tuple[list[str], dict[str, dict[str, Any]]]:
    from ..build.fleet import load_fleet_file

    if fleet is not None:
        if device != "host":
            raise AdaptcError("give --device or --fleet, not both")
        return load_fleet_file(fleet)
    return [d.strip() for d in device.split(",") if d.strip()], {}


def run_fleet(make: Callable[[], Any], as_json: bool) -> None:
    """Make a fleet build (with progress), print its summary and exit: 0 when every device shipped, 3 when some
    did (partial), 2 when none did."""
    from ..core.progress import using

    with using(_reporter()) as rep, _maybe_live(rep):
        report = make()
    console = _console(stderr=as_json)
    table = f"fleet: {report.status} in {report.duration_s:.0f} s ({report.executor.get('name')} executor)"
    console.print(table)
    for d in report.devices:
        shipped = f"{d.folder}/{d.chosen} ({d.candidate})" if d.chosen else (d.status_reason or d.status)
        console.print(f"  {d.device:<14} {d.status:<8} {shipped}")
    t = report.trials
    if t:
        console.print(f"  trials: {t.get('in_store')} in the shared store, {t.get('trained')} trained by this run")
    console.print(f"summary: {Path(report.out_dir) / 'fleet.md'} (and fleet.json)")
    if as_json:
        typer.echo(json_text(report.model_dump(mode="json")))
    if report.status == "partial":
        click.echo(f"adaptc: {report.status_reason}", err=True)
        raise typer.Exit(code=3)
    if report.status == "failed":
        raise AdaptcError(f"no device of the fleet got an artifact: {report.status_reason}")
