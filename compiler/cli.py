"""The ``adaptc`` command line: a thin layer over the public API.

Exit codes: 0 ok; 2 bad input (one-line message, no traceback unless ``--debug``), a model that no format
can export, or no artifact that meets the budgets; 3 partial build (some formats failed, the others were
emitted; one line names each failed format and op); 4 ``compare --fail-on-regression`` found a regression;
1 internal failure; 130 interrupted (finished work is kept; rerunning resumes).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Optional

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
    "4 compare --fail-on-regression found a regression; 1 internal error; 130 interrupted (a rerun resumes).",
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
    if not verbose:
        # torchao's import-time notes about optional CUDA kernels (mxfp8, cutlass, triton) do not concern a
        # CPU build; -v shows them
        logging.getLogger("torchao").setLevel(logging.ERROR)
        logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's enum registration notes


def _reporter():
    from .progress import NullReporter, RichReporter

    return NullReporter() if _state["quiet"] else RichReporter()


def _console():
    from rich.console import Console

    # Piped output (CI logs, `| less`) gets a wide console instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False)


def _task_options(items: Optional[list[str]]) -> dict[str, str]:
    """``KEY=VALUE`` items of --task-option as a dict (the task's factory converts the values)."""
    opts: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise AdaptcError(f"--task-option wants KEY=VALUE, e.g. max_length=64; got {item!r}")
        opts[key.strip()] = value.strip()
    return opts


def _parse_formats(formats: Optional[str]) -> list[str] | None:
    if not formats:
        return None
    return [f.strip() for f in formats.split(",") if f.strip()]


# --------------------------------------------------------------------------------------------- build

# options shared by `build` and `export` (one definition each, so their help texts cannot drift apart)
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="Profile name (see `adaptc devices`) or path to a profile YAML.")]
TaskOpt = Annotated[str, typer.Option("--task", "-t", help="Built-in task (digits, animal-mnist, docstrings, minilm; see `adaptc tasks`) or package.module:factory.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder [default: adaptc-out/<device>].")]
FormatsOpt = Annotated[Optional[str], typer.Option("--formats", help="Comma-separated formats, overriding the profile (onnx,tflite,coreml).")]
MaxDropOpt = Annotated[float, typer.Option("--max-drop", help="Largest accepted metric drop of an artifact, in points.")]
GateOpt = Annotated[str, typer.Option("--gate", help="How the parity gate reads an artifact's drop: point (the drop itself), lenient (reject only a drop whose 95% interval over the test samples lies wholly above --max-drop), strict (accept only a drop whose interval lies wholly at or below it).")]
PreferOpt = Annotated[str, typer.Option("--prefer", help="Which artifact a format ships among those that pass the gate and fit: first (the first scheme in the profile's order; later ones are not made), fastest (every scheme made, the fastest estimated on the device), smallest (every scheme made, the smallest file).")]
TaskOptionOpt = Annotated[Optional[list[str]], typer.Option("--task-option", "-O", help="An option of the task's factory, KEY=VALUE (repeatable), e.g. -O max_length=64 for minilm.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="Host threads for measurement [default: the profile's].")]
RunsOpt = Annotated[int, typer.Option("--runs", min=5, help="Timed runs per latency measurement (after warm-up).")]
NoResumeOpt = Annotated[bool, typer.Option("--no-resume", help="Redo finished work instead of resuming.")]

@app.command()
def build(
    device: DeviceOpt = "host",
    task: TaskOpt = "digits",
    task_option: TaskOptionOpt = None,
    out: OutOpt = None,
    formats: FormatsOpt = None,
    max_drop: MaxDropOpt = 1.0,
    gate: GateOpt = "point",
    prefer: PreferOpt = "first",
    threads: ThreadsOpt = None,
    runs: RunsOpt = 100,
    no_resume: NoResumeOpt = False,
    seed: int = typer.Option(0, "--seed", help="Random seed (search and training): the same seed gives the same choice."),
    no_search: bool = typer.Option(False, "--no-search", help="Export the teacher as it is (no student search)."),
    widths: Optional[str] = typer.Option(None, "--widths", help="Width multipliers to search, e.g. 1,0.5,0.25 [default: 1,0.75,0.5,0.35,0.25,0.125]."),
    max_blocks_dropped: Optional[int] = typer.Option(None, "--max-drop-blocks", min=0, help="Most residual blocks / layers to drop [default: half]."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Seconds the student search may take."),
    quality_tolerance: float = typer.Option(1.0, "--quality-tolerance", min=0.0, help="Points within the best candidate's quality where a faster one is preferred."),
    rung_epochs: Optional[str] = typer.Option(None, "--rung-epochs", help="Distillation epochs per successive-halving rung, e.g. 6,18."),
    final_epochs: Optional[int] = typer.Option(None, "--final-epochs", min=1, help="Epochs of the chosen student's final distillation."),
    ablate: Optional[str] = typer.Option(None, "--ablate", help="Switch loss terms off: comma-separated of ce,kd,hidden,attention,relation."),
    loss_weights: Optional[str] = typer.Option(None, "--loss-weights", help="Set loss terms' weights over the task's defaults, e.g. hidden=1,attention=1 (terms: ce,kd,hidden,attention,relation)."),
    progressive: Optional[float] = typer.Option(None, "--progressive", min=0.0, max=0.9, help="Progressive schedule: the fraction of epochs that align hidden states, attention and relations before the logit terms join [default: 0.3 for teachers with attention maps, 0 (one joint stage) otherwise]."),
    assistant: str = typer.Option("off", "--assistant", help="Teacher assistant: off | on | auto (when the teacher has >= 12x the student's parameters)."),
    no_qat: bool = typer.Option(False, "--no-qat", help="No quantization-aware training for int8 students."),
    domain_data: Optional[Path] = typer.Option(None, "--domain-data", help="Unlabelled in-domain inputs (.npz) mixed into each batch."),
    domain_ratio: float = typer.Option(0.2, "--domain-ratio", min=0.0, max=0.9, help="Fraction of each batch from --domain-data."),
    adversarial: Optional[str] = typer.Option(None, "--adversarial", help="Adversarial fine-tuning: fgsm | pgd."),
    adv_eps: float = typer.Option(0.03, "--adv-eps", min=0.0, help="Adversarial radius (relative to the input / embedding scale)."),
) -> None:
    """Build artifacts for a device: search a student, distil it, export, check parity, measure, estimate."""
    from .pipeline import build as run_build
    from .progress import using

    search: Any = False
    if not no_search:
        search = _search_options(task, widths, max_blocks_dropped, time_budget, quality_tolerance, final_epochs, ablate,
                                 loss_weights, progressive, assistant, no_qat, domain_data, domain_ratio, adversarial,
                                 adv_eps)
        if rung_epochs:
            try:
                search["rung_epochs"] = [int(e) for e in rung_epochs.split(",") if e.strip()]
            except ValueError:
                raise AdaptcError(f"--rung-epochs must be comma-separated integers, got {rung_epochs!r}") from None
            if not search["rung_epochs"] or min(search["rung_epochs"]) < 1:
                raise AdaptcError(f"--rung-epochs must be positive integers, got {rung_epochs!r}")
    with using(_reporter()) as rep, _maybe_live(rep):
        try:
            report = run_build(task, device, out, formats=_parse_formats(formats), max_drop=max_drop / 100.0,
                               gate=gate, prefer=prefer, threads=threads, runs=runs, resume=not no_resume, seed=seed,
                               search=search,
                               task_options=_task_options(task_option))
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
    device: DeviceOpt = "host",
    task: TaskOpt = "digits",
    task_option: TaskOptionOpt = None,
    out: OutOpt = None,
    formats: FormatsOpt = None,
    max_drop: MaxDropOpt = 1.0,
    gate: GateOpt = "point",
    prefer: PreferOpt = "first",
    threads: ThreadsOpt = None,
    runs: RunsOpt = 100,
    no_resume: NoResumeOpt = False,
) -> None:
    """Export a task's model as is (no student search): artifacts per format, parity, measurements, report."""
    from .export.api import export_model
    from .progress import using

    with using(_reporter()) as rep, _maybe_live(rep):
        try:
            report = export_model(task, device, out, formats=_parse_formats(formats), max_drop=max_drop / 100.0,
                                  gate=gate, prefer=prefer, threads=threads, runs=runs, resume=not no_resume,
                                  task_options=_task_options(task_option))
        except AdaptcError as e:
            r = getattr(e, "report", None)
            if r is not None:
                _print_build_summary(r)
            raise
    _print_build_summary(report)
    _exit_for_status(report)


def _search_options(task: str, widths: Optional[str], max_blocks: Optional[int], time_budget: Optional[float],
                    tolerance: float, final_epochs: Optional[int], ablate: Optional[str], loss_weights: Optional[str],
                    progressive: Optional[float], assistant: str, no_qat: bool, domain_data: Optional[Path],
                    domain_ratio: float, adversarial: Optional[str], adv_eps: float) -> dict[str, Any]:
    from .distill import AdversarialConfig

    opts: dict[str, Any] = {"quality_tolerance": tolerance / 100.0, "qat": not no_qat}
    if widths:
        try:
            opts["widths"] = [float(w) for w in widths.split(",") if w.strip()]
        except ValueError:
            raise AdaptcError(f"--widths must be comma-separated numbers, got {widths!r}") from None
        from .search import validate_widths

        validate_widths(opts["widths"])
    if max_blocks is not None:
        opts["max_drop"] = max_blocks
    if time_budget is not None:
        if time_budget <= 0:
            raise AdaptcError(f"--time-budget must be positive, got {time_budget:g}")
        opts["time_budget_s"] = time_budget
    if final_epochs is not None:
        opts["final_epochs"] = final_epochs
    if assistant not in ("auto", "on", "off"):
        raise AdaptcError(f"--assistant must be auto, on or off (got {assistant!r})")
    opts["assistant"] = assistant
    # changes to single terms, applied (and checked) over the task's own weights by adaptc.search.resolve_options
    terms: dict[str, float] = {}
    for item in (t.strip() for t in (loss_weights or "").split(",") if t.strip()):
        name, _, value = item.partition("=")
        try:
            terms[name.strip()] = float(value)
        except ValueError:
            raise AdaptcError(f"--loss-weights wants term=weight pairs, e.g. hidden=1,attention=0.5; got {item!r}") from None
    for term in (t.strip() for t in (ablate or "").split(",") if t.strip()):
        terms[term] = 0.0
    if terms:
        opts["loss_weights"] = terms
    # only the fields the command line sets: the task's distillation defaults stay under them
    cfg: dict[str, Any] = {"domain_ratio": domain_ratio}
    if progressive is not None:
        cfg["align_fraction"] = progressive
    if adversarial is not None:
        if adversarial not in ("fgsm", "pgd"):
            raise AdaptcError(f"--adversarial must be fgsm or pgd (got {adversarial!r})")
        cfg["adversarial"] = AdversarialConfig(method=adversarial, eps=adv_eps)  # type: ignore[arg-type]
    if domain_data is not None:
        from .tasks import get_task
        from .tasks.base import load_domain_data

        if not domain_data.exists():
            raise AdaptcError(f"domain data file {domain_data} does not exist")
        cfg["domain_data"] = load_domain_data(domain_data, get_task(task))
    opts["distill"] = cfg
    return opts


def _maybe_live(rep: Any):
    import contextlib

    return rep if hasattr(rep, "__enter__") else contextlib.nullcontext()


def _metric_cell(q: Any) -> str:
    """The task metric, and its 95% interval over the test samples where the task has per-sample scores."""
    return f"{q.value:.4f}" + (f" [{q.ci95[0]:.3f}, {q.ci95[1]:.3f}]" if q.ci95 else "")


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
            _metric_cell(a.parity.metric) if a.parity else ("not run here" if a.status != "failed" else "—"),
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

        fp32_s, _ = p.throughput_gops("fp32")
        int8 = f"{p.throughput_gops('int8')[0]:.4g}" if (p.compute.int8_gops or p.compute.int8_peak_gops) else "—"
        peak = " (from peak)" if p.compute.fp32_gflops is None else ""
        t.add_row(p.name, p.kind.value, p.soc, f"{fp32_s:.4g} / {int8} @{p.cpu.threads}{peak}",
                  " · ".join((fmt(b.max_latency_ms, "ms"), fmt(b.max_peak_memory_mb, "MB"), fmt(b.max_model_mb, "MB"),
                              fmt(b.max_mflops, ""))),
                  ",".join(p.formats), str(len(p.sources)))
    _console().print(t)


# --------------------------------------------------------------------------------------------- tasks
@app.command()
def tasks(
    pattern: str = typer.Argument("*", help="A wildcard pattern ('mini*')."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the built-in tasks with their options (--task NAME, -O KEY=VALUE); a custom task is package.module:factory."""
    from .tasks import builtin_tasks, list_tasks

    infos = list_tasks(pattern)
    if not infos:
        raise AdaptcError(f"no built-in task matches {pattern!r} (known: {', '.join(builtin_tasks())})")
    if as_json:
        typer.echo(json.dumps([{"name": i.name, "summary": i.summary, "options": i.options} for i in infos], indent=2))
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
    baseline: Path = typer.Argument(..., help="The build to compare against: its folder or report.json."),
    candidate: Path = typer.Argument(..., help="The new build: its folder or report.json."),
    max_drop: float = typer.Option(1.0, "--max-drop", help="Largest metric drop of a shipped artifact that is not a regression, in points."),
    latency_tolerance: float = typer.Option(10.0, "--latency-tolerance", help="Largest slow-down of the device estimate that is not a regression, in percent."),
    host_tolerance: Optional[float] = typer.Option(None, "--host-tolerance", help="Largest slow-down of the host measurement (same CPU, runtime, threads) that is not a regression, in percent [default: host changes are shown, not judged; medians drift 10-20% between runs on shared machines]."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="Exit with code 4 when the candidate regressed (for release pipelines)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw every artifact of both builds, metric against estimated device latency, to this PNG."),
) -> None:
    """Compare what two builds ship (overall and per format): metric with its interval, size, device estimate,
    host measurement, budgets; says which changes are regressions."""
    from .report.compare import compare as run_compare
    from .report.compare import describe

    cmp = run_compare(baseline, candidate, max_drop=max_drop / 100.0, latency_tolerance=latency_tolerance / 100.0,
                      host_tolerance=None if host_tolerance is None else host_tolerance / 100.0)
    if plot is not None:
        from ._io import ensure_writable_dir
        from .report.compare_plot import plot_comparison

        ensure_writable_dir(plot.parent if str(plot.parent) else Path("."))
        plot_comparison(baseline, candidate, plot)
    if as_json:
        typer.echo(json.dumps({**cmp.model_dump(mode="json"), "plot": str(plot) if plot else None}, indent=2))
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


# ------------------------------------------------------------------------------------------- measure
@app.command("measure")
def measure_cmd(
    model: Path = typer.Argument(..., help="An .onnx or .tflite file (CoreML files run only on macOS), or a build folder: every artifact in it, beside the report's device estimates."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runtime threads, capped by this host's cores [default: 1; for a build folder the profile's]."),
    runs: int = typer.Option(100, "--runs", min=1, help="Timed runs after warm-up."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Untimed runs first."),
    shape: Optional[list[str]] = typer.Option(None, "--shape", help="NAME=DIMS sizing a dynamic input, e.g. input_ids=1x128 (repeatable)."),
    inputs: Optional[Path] = typer.Option(None, "--inputs", help="An .npz with one array per input, named after the inputs [default: synthetic inputs from the file's signature]."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Also estimate the file on this device; `host` checks the predictor against the measurement."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Measure a model file on this host as a build measures its artifacts: latency (median, p90 of timed runs
    at batch 1) and peak memory in a fresh process; with --device, the estimate beside it."""
    from .measure.file import measure_file, parse_shape

    if model.is_dir() and (model / "report.json").is_file():
        if inputs is not None or shape or device:
            raise AdaptcError("a build folder is measured with its files' own inputs and its report's device: "
                              "--inputs, --shape and --device apply to one file")
        _measure_build(model, threads, runs, warmup, as_json)
        return
    threads = threads or 1
    if inputs is not None and shape:
        raise AdaptcError("give --inputs or --shape, not both (the arrays in --inputs have their shapes)")
    shapes = dict(parse_shape(s) for s in shape or [])
    m = measure_file(model, threads=threads, runs=runs, warmup=warmup, inputs=inputs, shapes=shapes, device=device)
    if as_json:
        typer.echo(json.dumps(m.to_dict(), indent=2))
        return
    h = m.host
    size = f"{m.size_bytes / 2**20:.2f} MB" if m.size_bytes >= 2**20 else f"{m.size_bytes / 1024:.1f} KB"
    typer.echo(f"{model.name} ({size}, sha256 {m.sha256[:12]}) in {h.runtime_version}, "
               f"{h.threads} thread(s), batch 1")
    typer.echo(f"  latency  p50 {h.latency_ms_median:.4g} ms, p90 {h.latency_ms_p90:.4g} ms, min "
               f"{h.latency_ms_min:.4g} ms (measured: {h.runs} runs after {h.warmup} warm-up, {h.cpu})")
    typer.echo(f"  memory   peak {h.peak_memory_mb:.2f} MB (heap {h.rss_anon_mb:.2f} MB, mapped files "
               f"{h.rss_file_mb:.2f} MB) ({h.memory_method()})")
    shown = ", ".join(f"{i['name']} {i['dtype']} {'x'.join(map(str, i['shape']))}" for i in m.inputs)
    typer.echo(f"  inputs   {shown} ({m.inputs[0]['source'] if m.inputs else 'none'})")
    if m.estimate is not None:
        e, err = m.estimate, m.estimate_error
        lat = f"latency {e['latency_ms']:.4g} ms" + (
            f" ({100 * err['latency']:+.1f}% vs measured)" if err and err["latency"] is not None else "")
        mem = f"peak memory {e['peak_memory_mb']:.2f} MB" + (
            f" ({100 * err['peak_memory']:+.1f}%)" if err and err["peak_memory"] is not None else "")
        typer.echo(f"  {e['device']}: {lat}, {mem} (estimated, {e['version']}, {e['threads']} thread(s))")
    for n in m.notes:
        typer.echo(f"note: {n}")


def _measure_build(folder: Path, threads: Optional[int], runs: int, warmup: int, as_json: bool) -> None:
    from dataclasses import asdict

    from .measure.file import measure_build

    device, rows, notes = measure_build(folder, threads=threads, runs=runs, warmup=warmup)
    if as_json:
        typer.echo(json.dumps({"device": device, "rows": [asdict(r) for r in rows], "notes": notes}, indent=2))
        return
    from rich.table import Table

    here = rows[0].measurement.host if rows else None
    t = Table(title=f"{folder}: measured here ({here.cpu if here else 'no file ran'}, "
                    f"{here.threads if here else '-'} thread(s)) beside the estimates for {device}", title_justify="left")
    for col in ("file", "scheme", "here p50 (M)", "here peak (M)", f"{device} (E)", "estimate / here",
                "build host p50 (M)"):
        t.add_column(col)
    for r in rows:
        h = r.measurement.host
        ratio = f"{r.estimated_ms / h.latency_ms_median:.2f}x" if r.estimated_ms and h.latency_ms_median else "—"
        t.add_row(r.file, r.scheme, f"{h.latency_ms_median:.4g} ms", f"{h.peak_memory_mb:.1f} MB",
                  f"{r.estimated_ms:.4g} ms, {r.estimated_mb:.1f} MB" if r.estimated_ms is not None else "—", ratio,
                  f"{r.recorded_host_ms:.4g} ms" if r.recorded_host_ms is not None else "—")
    _console().print(t)
    typer.echo(f"on the {device} itself 'estimate / here' checks the estimate (1.00x: exact); on another machine it "
               "is the two machines' ratio")
    for n in notes:
        typer.echo(f"note: {n}")


# ------------------------------------------------------------------------------------------- predict
@app.command()
def predict(
    model: Path = typer.Argument(..., help="An exported .onnx or .tflite file."),
    device: str = typer.Option(..., "--device", "-d", help="Profile name or YAML path."),
    runtime: str = typer.Option("tflite", "--runtime", help="tflite | onnxruntime | coreml"),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | fp16 | int8 [default: as in the graph]"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    ops: bool = typer.Option(False, "--ops", help="Print the per-op breakdown."),
    top: int = typer.Option(25, "--top", help="With --ops: the N most expensive ops (0: all)."),
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
    if ops:
        from rich.table import Table

        shown = sorted(p.ops, key=lambda o: -o.time_ms)
        shown = shown[:top] if top > 0 else shown
        t = Table(title=f"per-op estimate ({len(p.ops)} ops; {p.fixed_ms:.3f} ms per inference outside the ops)")
        for col in ("op", "type", "class", "precision", "MFLOPs", "KB moved", "time (ms)", "share", "bound"):
            t.add_column(col)
        for o in shown:
            t.add_row(o.name[:60], o.op_type, o.op_class, o.precision, f"{o.flops / 1e6:.3f}",
                      f"{o.bytes_moved / 1024:.1f}", f"{o.time_ms:.4f}",
                      f"{100 * o.time_ms / p.latency_ms:.1f}%" if p.latency_ms else "-", o.bound)
        _console().print(t)
    typer.echo(f"method: {p.method}")
    for n in p.notes:
        typer.echo(f"note: {n}")
    if p.unknown_ops:
        typer.echo(f"warning: no cost model for {', '.join(p.unknown_ops)} (estimated as data movement)", err=True)


# ----------------------------------------------------------------------------------------- calibrate
@app.command()
def calibrate(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the host profile [default: user profile dir]."),
    quick: bool = typer.Option(False, "--quick", help="Smaller micro-benchmark suite, fewer repetitions (about 20-30 s)."),
    raw: Optional[Path] = typer.Option(None, "--raw", help="Also write every measurement and the fit statistics (JSON)."),
    refit: Optional[Path] = typer.Option(None, "--refit", help="Fit again the measurements of an earlier --raw file "
                                         "of this machine (after a predictor upgrade) instead of measuring."),
    keep_faster: Optional[Path] = typer.Option(None, "--keep-faster", help="An earlier --raw file of this machine: "
                                               "fit the faster figure of it and of this run per micro-benchmark "
                                               "(shared machines: other processes slow some runs down)."),
) -> None:
    """Measure this machine with micro-benchmarks, fit the predictor, write its `host` device profile."""
    from .measure.calibrate import calibrate_host
    from .progress import using

    if out is not None and out.exists() and not out.is_dir() and out.suffix not in (".yaml", ".yml"):
        raise AdaptcError(f"--out {out}: give a folder or a .yaml file")
    with using(_reporter()) as rep, _maybe_live(rep):
        path, prof = calibrate_host(out=out, quick=quick, raw_out=raw, refit=refit, keep_faster_of=keep_faster)
    int8 = f"{prof.compute.int8_gops:g}" if prof.compute.int8_gops else "-"
    typer.echo(f"wrote {path}: fp32 {prof.compute.fp32_gflops:g} GFLOP/s, int8 {int8} GOP/s, "
               f"bandwidth {prof.memory.bandwidth_gbps:g} GB/s at {prof.cpu.threads} thread(s)")
    if prof.predictor is not None:
        for rt, c in prof.predictor.runtimes.items():
            typer.echo(f"  {rt}: {c.fitted}")


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
