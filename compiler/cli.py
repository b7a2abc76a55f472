"""The ``adaptc`` command line: a thin layer over the public API.

Exit codes: 0 ok; 2 bad input (one-line message, no traceback unless ``--debug``), a model that no format
can export, or no artifact that meets the budgets; 3 partial build (some formats failed, the others were
emitted; one line names each failed format and op); 1 internal failure; 130 interrupted (finished work is
kept; rerunning resumes).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

import click
import typer

try:  # typer >= 0.25 vendors its own click: its exceptions are separate classes from click's
    from typer._click.exceptions import ClickException as _TyperClickException
    from typer.exceptions import Abort as _TyperAbort
    from typer.exceptions import Exit as _TyperExit
except ImportError:  # pragma: no cover - older typer re-exports click's
    _TyperClickException, _TyperAbort, _TyperExit = click.ClickException, click.exceptions.Abort, click.exceptions.Exit

_EXIT = (click.exceptions.Exit, _TyperExit)
_ABORT = (click.exceptions.Abort, _TyperAbort)
_USAGE = (click.ClickException, _TyperClickException)

from . import __version__
from .errors import AdaptcError

app = typer.Typer(
    name="adaptc",
    help="Hardware-adaptive model compiler: derive device-sized students from a PyTorch teacher and emit "
    "measured ONNX / TFLite / CoreML artifacts with a report.\n\n"
    "Exit codes: 0 ok; 2 bad input, a model no format can export, or no artifact meets the budgets; "
    "3 partial build (some formats failed, the rest were emitted and the report says which); "
    "1 internal error; 130 interrupted (a rerun resumes).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state: dict[str, Any] = {"quiet": False, "verbose": 0, "debug": False}


def _version_cb(value: bool) -> None:
    if value:
        typer.echo(f"adaptc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_cb, is_eager=True, help="Print the version and exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (repeat for debug logs)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the final result."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    _state.update(quiet=quiet, verbose=verbose, debug=debug)
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _reporter():
    from .progress import NullReporter, RichReporter

    return NullReporter() if _state["quiet"] else RichReporter()


def _console():
    from rich.console import Console

    # Piped output (CI logs, `| less`) gets a wide console instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False)


def _parse_formats(formats: Optional[str]) -> list[str] | None:
    if not formats:
        return None
    return [f.strip() for f in formats.split(",") if f.strip()]


# --------------------------------------------------------------------------------------------- build
@app.command()
def build(
    device: str = typer.Option("host", "--device", "-d", help="Profile name (see `adaptc devices`) or path to a profile YAML."),
    task: str = typer.Option("digits", "--task", "-t", help="Built-in task (digits) or package.module:factory."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder [default: adaptc-out/<device>]."),
    formats: Optional[str] = typer.Option(None, "--formats", help="Comma-separated formats, overriding the profile (onnx,tflite,coreml)."),
    max_drop: float = typer.Option(1.0, "--max-drop", help="Largest accepted metric drop of an artifact, in points."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Host threads for measurement [default: the profile's]."),
    runs: int = typer.Option(100, "--runs", min=5, help="Timed runs per latency measurement (after warm-up)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Redo finished work instead of resuming."),
    seed: int = typer.Option(0, "--seed", help="Random seed (search and training)."),
) -> None:
    """Build artifacts for a device: export, check parity, measure on this host, estimate for the device."""
    from .pipeline import build as run_build
    from .progress import using

    with using(_reporter()) as rep, _maybe_live(rep):
        try:
            report = run_build(task, device, out, formats=_parse_formats(formats), max_drop=max_drop / 100.0,
                               threads=threads, runs=runs, resume=not no_resume, seed=seed)
        except AdaptcError as e:
            r = getattr(e, "report", None)
            if r is not None:
                _print_build_summary(r)
            raise
    _print_build_summary(report)
    _exit_for_status(report)


#: exit code of a partial build: some formats failed, the others were emitted (documented in README)
EXIT_PARTIAL = 3


def _exit_for_status(report: Any) -> None:
    """Partial builds exit 3 with one line naming each failed format and op; builds with nothing usable, 2."""
    if report.status == "partial":
        click.echo(f"adaptc: {report.status_reason}", err=True)
        raise typer.Exit(code=EXIT_PARTIAL)
    if report.status == "failed":
        errs = [a.error for a in report.artifacts if a.error]
        detail = f" ({errs[0]})" if errs else ""
        raise AdaptcError(f"{report.status_reason or 'no artifact was emitted'}{detail}")


# --------------------------------------------------------------------------------------------- export
@app.command("export")
def export_cmd(
    device: str = typer.Option("host", "--device", "-d", help="Profile name (see `adaptc devices`) or path to a profile YAML."),
    task: str = typer.Option("digits", "--task", "-t", help="Built-in task (digits, docstrings) or package.module:factory; its model is exported as is."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder [default: adaptc-out/<device>]."),
    formats: Optional[str] = typer.Option(None, "--formats", help="Comma-separated formats, overriding the profile (onnx,tflite,coreml)."),
    max_drop: float = typer.Option(1.0, "--max-drop", help="Largest accepted metric drop of an artifact, in points."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Host threads for measurement [default: the profile's]."),
    runs: int = typer.Option(100, "--runs", min=5, help="Timed runs per latency measurement (after warm-up)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Redo finished work instead of resuming."),
) -> None:
    """Export a task's model as is (no student search): artifacts per format, parity, measurements, report."""
    from .export.api import export_model
    from .progress import using

    with using(_reporter()) as rep, _maybe_live(rep):
        try:
            report = export_model(task, device, out, formats=_parse_formats(formats), max_drop=max_drop / 100.0,
                                  threads=threads, runs=runs, resume=not no_resume)
        except AdaptcError as e:
            r = getattr(e, "report", None)
            if r is not None:
                _print_build_summary(r)
            raise
    _print_build_summary(report)
    _exit_for_status(report)


def _maybe_live(rep: Any):
    import contextlib

    return rep if hasattr(rep, "__enter__") else contextlib.nullcontext()


def _print_build_summary(report: Any) -> None:
    from rich.table import Table

    con = _console()
    t = Table(title=f"{report.task.name} → {report.device['name']}: {report.status}", show_lines=False)
    for col in ("artifact", "scheme", "status", "size", report.task.metric_name, "host p50 (M)", "device (E)", "budgets"):
        t.add_column(col)
    for a in report.artifacts:
        budgets = "—" if not a.budgets else ("fit" if all(b.fits for b in a.budgets) else
                                             ", ".join(b.budget for b in a.budgets if not b.fits) + " ✘")
        t.add_row(
            ("→ " if a.chosen else "") + a.file, a.scheme, a.status,
            f"{(a.size.value or 0) / 1024:.1f} KB" if a.size else "—",
            f"{a.parity.metric.value:.4f}" if a.parity else ("not run here" if a.status != "failed" else "—"),
            f"{a.host.latency_median.value:.3f} ms" if a.host else ("not measured" if a.status != "failed" else "—"),
            f"{a.device.latency.value:.3f} ms" if a.device else "—",
            budgets,
        )
    if not _state["quiet"]:
        con.print(t)
        for w in report.warnings:
            con.print(f"[yellow]warning:[/yellow] {w}")
    out = Path(report.out_dir)
    con.print(f"report: {out / 'report.md'} (and report.json); chosen: {report.chosen or 'none'}")


# ------------------------------------------------------------------------------------------- devices
@app.command(context_settings={"ignore_unknown_options": False})
def devices(
    args: Optional[list[str]] = typer.Argument(None, help="A wildcard pattern ('pixel*'), or: show NAME"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List device profiles (optionally matching a wildcard), or `devices show NAME` for one profile."""
    from .profiles import list_devices, load_profile, profile_origin, profile_to_yaml

    args = list(args or [])
    if args and args[0] == "show":
        if len(args) != 2:
            raise AdaptcError("usage: adaptc devices show NAME")
        prof = load_profile(args[1])
        if as_json:
            typer.echo(json.dumps(prof.model_dump(mode="json"), indent=2))
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
        typer.echo(json.dumps([p.model_dump(mode="json") for p in profs], indent=2))
        return
    if not profs:
        from .profiles import known_device_names

        raise AdaptcError(f"no device matches {pattern!r} (known: {', '.join(known_device_names())})")
    from rich.table import Table

    t = Table(title="device profiles", title_justify="left")
    for col in ("name", "kind", "SoC", "fp32 / int8 GOP/s @threads", "budgets: latency · memory · size · MFLOPs",
                "formats", "sources"):
        t.add_column(col, no_wrap=col != "SoC", overflow="fold")
    for p in profs:
        b = p.budgets

        def fmt(v: float | None, unit: str) -> str:
            return f"{v:g} {unit}" if v is not None else "—"

        int8 = f"{p.compute.int8_gops:g}" if p.compute.int8_gops else "—"
        t.add_row(p.name, p.kind.value, p.soc, f"{p.compute.fp32_gflops:g} / {int8} @{p.cpu.threads}",
                  " · ".join((fmt(b.max_latency_ms, "ms"), fmt(b.max_peak_memory_mb, "MB"), fmt(b.max_model_mb, "MB"),
                              fmt(b.max_mflops, ""))),
                  ",".join(p.formats), str(len(p.sources)))
    _console().print(t)


# ------------------------------------------------------------------------------------------- analyze
@app.command()
def analyze(
    model: Path = typer.Argument(..., help="An exported .onnx (or .tflite) file."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    top: int = typer.Option(25, "--top", help="Show the N most expensive ops."),
) -> None:
    """Cost of one inference: per-op MACs/FLOPs, parameters, weight bytes, peak activation memory."""
    from .analysis import analyze as run_analyze

    cost = run_analyze(model)
    if as_json:
        d = cost.summary()
        d["ops"] = [o.__dict__ for o in cost.ops]
        typer.echo(json.dumps(d, indent=2))
        return
    from rich.table import Table

    t = Table(title=f"{model.name}: {cost.macs / 1e6:.3f} MMACs, {cost.params:,} params, peak activations "
                    f"{cost.peak_activation_bytes / 1024:.1f} KB (at {cost.peak_at})")
    for col in ("op", "type", "class", "precision", "MACs", "FLOPs", "params", "out shape"):
        t.add_column(col)
    for o in sorted(cost.ops, key=lambda o: -o.flops)[:top]:
        t.add_row(o.name, o.op_type, o.op_class, o.precision, f"{o.macs:,}", f"{o.flops:,}", f"{o.params:,}",
                  str(o.output_shape))
    _console().print(t)
    typer.echo(f"weights: fp32 {cost.weight_bytes_at['fp32']:,} B, fp16 {cost.weight_bytes_at['fp16']:,} B, "
               f"int8 {cost.weight_bytes_at['int8']:,} B; stored {cost.stored_weight_bytes:,} B")


# ------------------------------------------------------------------------------------------- predict
@app.command()
def predict(
    model: Path = typer.Argument(..., help="An exported .onnx or .tflite file."),
    device: str = typer.Option(..., "--device", "-d", help="Profile name or YAML path."),
    runtime: str = typer.Option("tflite", "--runtime", help="tflite | onnxruntime | coreml"),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | fp16 | int8 [default: as in the graph]"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Estimated latency and peak memory of a model file on a device (no device needed)."""
    from .predict import predict as run_predict

    if precision is not None and precision not in ("fp32", "fp16", "int8"):
        raise AdaptcError(f"unknown precision {precision!r} (known: fp32, fp16, int8)")
    if runtime not in ("tflite", "onnxruntime", "coreml"):
        raise AdaptcError(f"unknown runtime {runtime!r} (known: tflite, onnxruntime, coreml)")
    p = run_predict(model, device, precision=precision, threads=threads, runtime=runtime)
    if as_json:
        d = p.summary()
        d["ops"] = [o.__dict__ for o in p.ops]
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo(f"{model.name} on {p.device} ({p.runtime}, {p.threads} thread(s)): latency {p.latency_ms:.3f} ms, "
               f"peak memory {p.peak_memory_mb:.2f} MB (estimated, {p.version})")
    for n in p.notes:
        typer.echo(f"note: {n}")


# ----------------------------------------------------------------------------------------- calibrate
@app.command()
def calibrate(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the host profile [default: user profile dir]."),
    quick: bool = typer.Option(False, "--quick", help="Fewer repetitions (about 10 s)."),
) -> None:
    """Measure this machine and write its `host` device profile."""
    from .measure.calibrate import calibrate_host
    from .progress import using

    with using(_reporter()) as rep, _maybe_live(rep):
        path, prof = calibrate_host(out=out, quick=quick)
    typer.echo(f"wrote {path}: fp32 {prof.compute.fp32_gflops:g} GFLOP/s, int8 {prof.compute.int8_gops:g} GOP/s, "
               f"bandwidth {prof.memory.bandwidth_gbps:g} GB/s at {prof.cpu.threads} thread(s)")


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=argv, prog_name="adaptc", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except _EXIT as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except _ABORT:
        click.echo("adaptc: aborted", err=True)
        return 130
    except _USAGE as e:
        e.show()
        return int(getattr(e, "exit_code", 2) or 2)
    except AdaptcError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"adaptc: error: {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("adaptc: interrupted; finished work is kept and a rerun resumes", err=True)
        return 130
    except Exception as e:  # internal failure
        if debug:
            traceback.print_exc()
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        click.echo(f"adaptc: internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)", err=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
