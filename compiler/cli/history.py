"""``adaptc history``: the runs every build and export appended to the build history, their export (CSV, JSON
lines) and the import of report folders made before or elsewhere (:mod:`adaptc.history`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..core.io import atomic_write_text, json_text
from ..errors import AdaptcError
from . import _console, app

history_app = typer.Typer(
    help="The build history: list the runs (default), export them, import report folders.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(history_app, name="history")

HistoryPathOpt = typer.Option(None, "--history", help="The history file [default: $ADAPTC_HISTORY, else the cache's].")


@history_app.callback()
def history_list(
    ctx: typer.Context,
    task: str | None = typer.Option(None, "--task", help="Only this task's runs."),
    device: str | None = typer.Option(None, "--device", "-d", help="Only this device's runs."),
    limit: int = typer.Option(50, "--limit", min=0, help="The newest N runs (0: all)."),
    history: Path | None = HistoryPathOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (the run records)."),
) -> None:
    """List the runs of the build history, newest last."""
    if ctx.invoked_subcommand is not None:
        return
    from ..history import open_history

    with open_history(history) as h:
        rs = h.runs(task, device, limit or None)
        path = h.path
    if as_json:
        typer.echo(json_text(rs))
        return
    from rich.table import Table

    t = Table(title=f"{len(rs)} run(s) in {path}", title_justify="left")
    for col in ("run", "when (UTC)", "command", "task", "device", "status", "shipped", "git"):
        t.add_column(col, overflow="fold")
    for r in rs:
        commit = (r.get("git_commit") or "")[:10] + ("+" if r.get("git_dirty") else "")
        t.add_row(
            r["run_id"], r["created_utc"], r["command"], r["task"], r["device"], r["status"], r["shipped"] or "—",
            commit or "—",
        )  # fmt: skip
    _console().print(t)


@history_app.command("export")
def history_export(
    fmt: str = typer.Option("csv", "--format", help="csv | jsonl"),
    what: str = typer.Option("artifacts", "--what", help="artifacts (one row per artifact, with its run) | runs"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file [default: stdout]."),
    history: Path | None = HistoryPathOpt,
) -> None:
    """Every run or artifact of the history as CSV or JSON lines."""
    from ..history import export_records

    if what not in ("artifacts", "runs"):
        raise AdaptcError(f"--what must be artifacts or runs (got {what!r})")
    text = export_records(fmt, history, what=what)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out} ({text.count(chr(10)) - (fmt == 'csv')} {what})")


@history_app.command("import")
def history_import(
    folders: list[Path] = typer.Argument(..., help="Build folders (or their report.json) to add."),
    history: Path | None = HistoryPathOpt,
) -> None:
    """Add builds made before (or elsewhere) to the history; a report already there is skipped."""
    from ..history import import_builds

    added = import_builds(list(folders), history)
    typer.echo(f"added {len(added)} run(s), skipped {len(folders) - len(added)} already recorded")
