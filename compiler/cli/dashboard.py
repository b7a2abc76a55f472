"""``adaptc dashboard``: the build history drawn as one self-contained HTML page (:mod:`adaptc.history.dashboard`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..core.names import unknown_name_message
from ..errors import AdaptcError
from . import app


@app.command()
def dashboard(
    history: Path | None = typer.Option(
        None, "--history", help="The history file [default: $ADAPTC_HISTORY, else the cache's]."
    ),
    out: Path = typer.Option(Path("dashboard.html"), "--out", "-o", help="The HTML file to write."),
    task: str | None = typer.Option(None, "--task", help="Only this task's runs."),
    device: str | None = typer.Option(None, "--device", "-d", help="Only this device's runs."),
    title: str = typer.Option("adaptc builds", "--title", help="The page's title."),
) -> None:
    """Draw the build history as one HTML file that opens offline: Pareto fronts per device, trends per task and
    device, the predictor against host measurements, the latest artifacts, and every regression."""
    from ..core.io import ensure_writable_dir
    from ..history import dashboard_data
    from ..history.dashboard import filter_data, render_dashboard

    data = dashboard_data(history)
    runs = data.get("runs") or []
    for what, name in (("task", task), ("device", device)):
        known = {str(r.get(what)) for r in runs}
        if name is not None and name not in known:
            if not known:
                raise AdaptcError(f"no {what} {name!r}: the history {data.get('history')} has no runs")
            raise AdaptcError(unknown_name_message(f"{what} in the history", name, known))
    if task is not None or device is not None:
        data = filter_data(data, task=task, device=device)
    ensure_writable_dir(out.parent)  # a folder that cannot be written fails before the page is drawn
    dest = render_dashboard(data, out, title=title)
    size = dest.stat().st_size
    typer.echo(f"wrote {dest} ({size / 1e6:.1f} MB, {len(data.get('runs') or [])} runs)")
