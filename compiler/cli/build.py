"""``adaptc build`` and ``adaptc export``: the two commands that make artifacts, and their summary table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, cast

import click
import typer

from ..core.formats import FORMAT_NAMES
from ..core.io import json_text
from ..core.ptq import Effort
from ..core.quantity import Gate, Prefer
from ..core.search_options import SearchOptions
from ..errors import AdaptcError
from . import _console, _maybe_live, _parse_formats, _reporter, _state, _task_options, app
from .fleet import (
    AddressOpt,
    ExecutorOpt,
    FleetOpt,
    TrialCpusOpt,
    TrialMemoryOpt,
    executor_args,
    fleet_devices,
    is_fleet,
    run_fleet,
)
from .search_opts import _search_options as search_options

# options shared by `build` and `export` (one definition each, so their help texts cannot drift apart)
DeviceOpt = Annotated[
    str, typer.Option("--device", "-d", help="Profile name (see `adaptc devices`) or path to a profile YAML.")
]
FleetDeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        "-d",
        help="Profile name (see `adaptc devices`) or path to a profile YAML; several (pixel8,echo-dot) or a wildcard ('pixel*') build a fleet with one search into <out>/<device>/ [default out: adaptc-out/fleet].",
    ),
]
TaskOpt = Annotated[
    str,
    typer.Option(
        "--task",
        "-t",
        help="Built-in task (digits, animal-mnist, docstrings, minilm; see `adaptc tasks`) or package.module:factory.",
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder [default: adaptc-out/<device>].")]
FormatsOpt = Annotated[
    str | None,
    typer.Option("--formats", help=f"Comma-separated formats, overriding the profile ({','.join(FORMAT_NAMES)})."),
]
MaxDropOpt = Annotated[
    float, typer.Option("--max-drop", help="Largest accepted metric drop of an artifact, in points.")
]
GateOpt = Annotated[
    str,
    typer.Option(
        "--gate",
        help="How the parity gate reads an artifact's drop: point (the drop itself), lenient (reject only a drop whose 95% interval over the test samples lies wholly above --max-drop), strict (accept only a drop whose interval lies wholly at or below it).",
    ),
]
PreferOpt = Annotated[
    str,
    typer.Option(
        "--prefer",
        help="Which artifact a format ships among those that pass the gate and fit: first (the first scheme in the profile's order; later ones are not made), fastest (every scheme made, the fastest estimated on the device), smallest (every scheme made, the smallest file).",
    ),
]
TaskOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--task-option",
        "-O",
        help="An option of the task's factory, KEY=VALUE (repeatable), e.g. -O max_length=64 for minilm.",
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", min=1, help="Host threads for measurement [default: the profile's].")
]
MeasureThreadsOpt = Annotated[
    int | None, typer.Option("--measure-threads", min=1, help="Host threads for measurement [default: the profile's].")
]
TrainThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="Host threads for training and the teacher's passes [default: every usable core for teachers of 100 MFLOPs per sample or more, else 1].",
    ),
]
MemoryBudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--memory-budget",
        min=1,
        help="Resident memory (MiB) the build may use: decides whether the teacher's outputs are held in memory, spilled to disk or recomputed [default: half of the memory available].",
    ),
]
RunsOpt = Annotated[int, typer.Option("--runs", min=5, help="Timed runs per latency measurement (after warm-up).")]
QuantEffortOpt = Annotated[
    str,
    typer.Option(
        "--quant-effort",
        help="How hard each static int8 scheme tries to pass the parity gate: fast (the format's default calibration only), default (then other range estimators, equalization + bias correction, up to 8 layers in float), max (up to a quarter of the layers in float).",
    ),
]
CalibrationOpt = Annotated[
    str | None,
    typer.Option(
        "--calibration",
        help="Range estimator of the first static int8 attempt: minmax, percentile, entropy, mse [default: the format's own; the walk then tries the others].",
    ),
]
EqualizeOpt = Annotated[
    bool,
    typer.Option(
        "--equalize", help="Cross-layer equalization + bias correction from the first static int8 attempt on."
    ),
]
NoResumeOpt = Annotated[bool, typer.Option("--no-resume", help="Redo finished work instead of resuming.")]
HistoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--history", help="The build history to append this run to [default: $ADAPTC_HISTORY, else the cache's]."
    ),
]
NoHistoryOpt = Annotated[bool, typer.Option("--no-history", help="Record nothing in the build history.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the report (report.json) on stdout; the summary goes to stderr.")
]


@app.command()
def build(
    device: FleetDeviceOpt = "host",
    fleet: FleetOpt = None,
    task: TaskOpt = "digits",
    task_option: TaskOptionOpt = None,
    out: OutOpt = None,
    formats: FormatsOpt = None,
    max_drop: MaxDropOpt = 1.0,
    gate: GateOpt = "point",
    prefer: PreferOpt = "first",
    quant_effort: QuantEffortOpt = "default",
    calibration: CalibrationOpt = None,
    equalize: EqualizeOpt = False,
    threads: TrainThreadsOpt = None,
    measure_threads: MeasureThreadsOpt = None,
    memory_budget: MemoryBudgetOpt = None,
    runs: RunsOpt = 100,
    no_resume: NoResumeOpt = False,
    history: HistoryOpt = None,
    no_history: NoHistoryOpt = False,
    as_json: JsonOpt = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    trial_cpus: TrialCpusOpt = None,
    trial_memory: TrialMemoryOpt = None,
    seed: int = typer.Option(
        0, "--seed", help="Random seed (search and training): the same seed gives the same choice."
    ),
    no_search: bool = typer.Option(False, "--no-search", help="Export the teacher as it is (no student search)."),
    widths: str | None = typer.Option(
        None, "--widths", help="Width multipliers to search, e.g. 1,0.5,0.25 [default: 1,0.75,0.5,0.35,0.25,0.125]."
    ),
    max_blocks_dropped: int | None = typer.Option(
        None, "--max-drop-blocks", min=0, help="Most residual blocks / layers to drop [default: half]."
    ),
    time_budget: float | None = typer.Option(None, "--time-budget", help="Seconds the student search may take."),
    quality_tolerance: float = typer.Option(
        1.0,
        "--quality-tolerance",
        min=0.0,
        help="Points within the best candidate's quality where a faster one is preferred.",
    ),
    rung_epochs: str | None = typer.Option(
        None, "--rung-epochs", help="Distillation epochs per successive-halving rung, e.g. 6,18."
    ),
    final_epochs: int | None = typer.Option(
        None, "--final-epochs", min=1, help="Epochs of the chosen student's final distillation."
    ),
    ablate: str | None = typer.Option(
        None, "--ablate", help="Switch loss terms off: comma-separated of ce,kd,hidden,attention,relation."
    ),
    loss_weights: str | None = typer.Option(
        None,
        "--loss-weights",
        help="Set loss terms' weights over the task's defaults, e.g. hidden=1,attention=1 (terms: ce,kd,hidden,attention,relation).",
    ),
    progressive: float | None = typer.Option(
        None,
        "--progressive",
        min=0.0,
        max=0.9,
        help="Progressive schedule: the fraction of epochs that align hidden states, attention and relations before the logit terms join [default: 0.3 for teachers with attention maps, 0 (one joint stage) otherwise].",
    ),
    assistant: str = typer.Option(
        "off",
        "--assistant",
        help="Teacher assistant: off | on | auto (when the teacher has >= 12x the student's parameters).",
    ),
    no_qat: bool = typer.Option(False, "--no-qat", help="No quantization-aware training for int8 students."),
    domain_data: Path | None = typer.Option(
        None, "--domain-data", help="Unlabelled in-domain inputs (.npz) mixed into each batch."
    ),
    domain_ratio: float = typer.Option(
        0.2, "--domain-ratio", min=0.0, max=0.9, help="Fraction of each batch from --domain-data."
    ),
    adversarial: str | None = typer.Option(None, "--adversarial", help="Adversarial fine-tuning: fgsm | pgd."),
    adv_eps: float = typer.Option(
        0.03, "--adv-eps", min=0.0, help="Adversarial radius (relative to the input / embedding scale)."
    ),
) -> None:
    """Build artifacts for a device: search a student, distil it, export, check parity, measure, estimate."""
    from ..build.run import build as run_build

    search: SearchOptions | bool = False
    if not no_search:
        search = search_options(
            task,
            widths,
            max_blocks_dropped,
            time_budget,
            quality_tolerance,
            final_epochs,
            rung_epochs,
            ablate,
            loss_weights,
            progressive,
            assistant,
            no_qat,
            domain_data,
            domain_ratio,
            adversarial,
            adv_eps,
            threads,
            memory_budget,
        )
    common: dict[str, Any] = dict(
        **_artifact_options(formats, max_drop, gate, prefer, quant_effort, calibration, equalize, no_resume),
        threads=measure_threads,
        runs=runs,
        seed=seed,
        search=search,
        task_options=_task_options(task_option),
        history=_history_arg(history, no_history),
        **executor_args(executor, address, trial_cpus, trial_memory),
    )
    if fleet is not None or is_fleet(device):
        from ..build.fleet import build_fleet

        if no_search:
            raise AdaptcError("a fleet build needs the search (--no-search exports one model: use adaptc export)")
        devices, overrides = fleet_devices(device, fleet)
        where = out if out is not None else Path("adaptc-out") / (fleet.stem if fleet is not None else "fleet")
        run_fleet(lambda: build_fleet(task, devices, where, overrides=overrides, **common), as_json)
        return
    _run(lambda: run_build(task, device, out, **common), as_json)


def _history_arg(history: Path | None, no_history: bool) -> Path | bool | None:
    if no_history and history is not None:
        raise AdaptcError("give --history or --no-history, not both")
    return False if no_history else history


def _run(make: Callable[[], Any], as_json: bool = False) -> None:
    """Make a build (with progress), print its summary table (also when it failed with a report written) and exit
    as its status says. ``as_json``: the report on stdout (for release pipelines), the summary on stderr."""
    from ..core.progress import using

    def show(r: Any) -> None:
        _print_build_summary(r, stderr=as_json)
        if as_json:
            typer.echo(json_text(r.model_dump(mode="json")))

    with using(_reporter()) as rep, _maybe_live(rep):
        try:
            report = make()
        except AdaptcError as e:
            r = getattr(e, "report", None)
            if r is not None:
                show(r)
            raise
    show(report)
    _exit_for_status(report)


#: exit code of a partial build: some formats failed, the others were emitted (README, docs/cli.md)
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


@app.command()
def clean(folder: Path = typer.Argument(..., help="A build folder (what --out named).")) -> None:
    """Remove a build folder's state (.adaptc/: the state store, finished trials, checkpoints, spilled teacher
    outputs) and keep its artifacts and reports: the next build into it starts afresh."""
    from ..core.io import folder_lock
    from ..store import clean_state

    if not folder.is_dir():
        raise AdaptcError(f"{folder} is not a folder")
    if not (folder / ".adaptc").is_dir():
        click.echo(f"{folder} has no build state (.adaptc/): nothing to remove")
        return
    with folder_lock(folder):  # (not under a running build)
        removed = clean_state(folder)
    click.echo(f"removed {folder / '.adaptc'} ({len(removed)} entries); artifacts and reports kept")


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
    quant_effort: QuantEffortOpt = "default",
    calibration: CalibrationOpt = None,
    equalize: EqualizeOpt = False,
    threads: ThreadsOpt = None,
    runs: RunsOpt = 100,
    no_resume: NoResumeOpt = False,
    history: HistoryOpt = None,
    no_history: NoHistoryOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a task's model as is (no student search): artifacts per format, parity, measurements, report."""
    from ..build.export import export_model

    _run(
        lambda: export_model(
            task,
            device,
            out,
            **_artifact_options(formats, max_drop, gate, prefer, quant_effort, calibration, equalize, no_resume),
            threads=threads,
            runs=runs,
            task_options=_task_options(task_option),
            history=_history_arg(history, no_history),
        ),
        as_json,
    )


def _artifact_options(
    formats: str | None,
    max_drop: float,
    gate: str,
    prefer: str,
    quant_effort: str,
    calibration: str | None,
    equalize: bool,
    no_resume: bool,
) -> dict[str, Any]:
    """What ``build`` and ``export`` pass alike to make and choose the artifacts. gate / prefer / effort: plain
    strings from the command line, checked by the build (in GATES, PREFERS, EFFORTS)."""
    return {
        "formats": _parse_formats(formats),
        "max_drop": max_drop / 100.0,
        "gate": cast(Gate, gate),
        "prefer": cast(Prefer, prefer),
        "quant_effort": cast(Effort, quant_effort),
        "ptq": _ptq(calibration, equalize),
        "resume": not no_resume,
    }


def _ptq(calibration: str | None, equalize: bool) -> Any:
    """The first static int8 attempt the command line asks for (None: the formats' defaults)."""
    if calibration is None and not equalize:
        return None
    from ..core.ptq import PTQConfig

    try:
        return PTQConfig(calibration=cast(Any, calibration), equalize=equalize)
    except ValueError as e:
        raise AdaptcError(f"--calibration: {e}") from None


def _metric_cell(q: Any) -> str:
    """The task metric, and its 95% interval over the test samples where the task has per-sample scores."""
    return f"{q.value:.4f}" + (f" [{q.ci95[0]:.3f}, {q.ci95[1]:.3f}]" if q.ci95 else "")


def _print_build_summary(report: Any, stderr: bool = False) -> None:
    from rich.table import Table

    con = _console(stderr)
    t = Table(title=f"{report.task.name} → {report.device['name']}: {report.status}", show_lines=False)
    for col in (
        "artifact",
        "scheme",
        "status",
        "size",
        report.task.metric_name,
        "host p50 (M)",
        "device (E)",
        "budgets",
    ):
        t.add_column(col)
    for a in report.artifacts:
        budgets = (
            "—"
            if not a.budgets
            else (
                "fit" if all(b.fits for b in a.budgets) else ", ".join(b.budget for b in a.budgets if not b.fits) + " ✘"
            )
        )
        t.add_row(
            ("→ " if a.chosen else "") + a.file,
            a.scheme,
            a.status,
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
