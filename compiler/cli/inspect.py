"""``adaptc analyze``, ``adaptc measure``, ``adaptc predict``, ``adaptc quant-report``, ``adaptc calibrate``: one
model file's cost, its host measurement, its device estimate, a model's per-layer int8 sensitivity, and the host
calibration the predictor fits."""

from __future__ import annotations

from pathlib import Path

import typer

from ..core.formats import RUNTIME_NAMES
from ..core.io import json_text
from ..core.schemes import PRECISIONS
from ..errors import AdaptcError
from . import _console, _maybe_live, _reporter, app


@app.command()
def analyze(
    model: Path = typer.Argument(..., help="An exported .onnx (or .tflite) file."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    top: int = typer.Option(25, "--top", help="Show the N most expensive ops."),
) -> None:
    """Cost of one inference: per-op MACs/FLOPs, parameters, weight bytes, peak activation memory."""
    from ..analysis import analyze as run_analyze

    _check_user_file(model)
    cost = run_analyze(model)
    if as_json:
        d = cost.summary()
        d["ops"] = [o.__dict__ for o in cost.ops]
        typer.echo(json_text(d))
        return
    from rich.table import Table

    t = Table(
        title=f"{model.name}: {cost.macs / 1e6:.3f} MMACs, {cost.params:,} params, peak activations "
        f"{cost.peak_activation_bytes / 1024:.1f} KB (at {cost.peak_at})"
    )
    for col in ("op", "type", "class", "precision", "MACs", "FLOPs", "params", "out shape"):
        t.add_column(col)
    for o in sorted(cost.ops, key=lambda o: -o.flops)[:top]:
        t.add_row(
            o.name,
            o.op_type,
            o.op_class,
            o.precision,
            f"{o.macs:,}",
            f"{o.flops:,}",
            f"{o.params:,}",
            str(o.output_shape),
        )
    _console().print(t)
    typer.echo(
        f"weights: fp32 {cost.weight_bytes_at['fp32']:,} B, fp16 {cost.weight_bytes_at['fp16']:,} B, "
        f"int8 {cost.weight_bytes_at['int8']:,} B; stored {cost.stored_weight_bytes:,} B"
    )


# ------------------------------------------------------------------------------------------- measure
@app.command("measure")
def measure_cmd(
    model: Path = typer.Argument(
        ...,
        help="An .onnx or .tflite file (CoreML files run only on macOS), or a build folder: every artifact in it, beside the report's device estimates.",
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="Runtime threads, capped by this host's cores [default: 1; for a build folder the profile's].",
    ),
    runs: int = typer.Option(100, "--runs", min=1, help="Timed runs after warm-up."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Untimed runs first."),
    shape: list[str] | None = typer.Option(
        None, "--shape", help="NAME=DIMS sizing a dynamic input, e.g. input_ids=1x128 (repeatable)."
    ),
    inputs: Path | None = typer.Option(
        None,
        "--inputs",
        help="An .npz with one array per input, named after the inputs [default: synthetic inputs from the file's signature].",
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        "-d",
        help="Also estimate the file on this device; `host` checks the predictor against the measurement.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Measure a model file on this host as a build measures its artifacts: latency (median, p90 of timed runs
    at batch 1) and peak memory in a fresh process; with --device, the estimate beside it."""
    from ..build.measure import measure_file, parse_shape

    if model.is_dir() and (model / "report.json").is_file():
        if inputs is not None or shape or device:
            raise AdaptcError(
                "a build folder is measured with its files' own inputs and its report's device: "
                "--inputs, --shape and --device apply to one file"
            )
        _measure_build(model, threads, runs, warmup, as_json)
        return
    threads = threads or 1
    _check_user_file(model)
    if inputs is not None and shape:
        raise AdaptcError("give --inputs or --shape, not both (the arrays in --inputs have their shapes)")
    shapes = dict(parse_shape(s) for s in shape or [])
    m = measure_file(model, threads=threads, runs=runs, warmup=warmup, inputs=inputs, shapes=shapes, device=device)
    if as_json:
        typer.echo(json_text(m.to_dict()))
        return
    h = m.host
    size = f"{m.size_bytes / 2**20:.2f} MB" if m.size_bytes >= 2**20 else f"{m.size_bytes / 1024:.1f} KB"
    typer.echo(f"{model.name} ({size}, sha256 {m.sha256[:12]}) in {h.runtime_version}, {h.threads} thread(s), batch 1")
    typer.echo(
        f"  latency  p50 {h.latency_ms_median:.4g} ms, p90 {h.latency_ms_p90:.4g} ms, min "
        f"{h.latency_ms_min:.4g} ms (measured: {h.runs} runs after {h.warmup} warm-up, {h.cpu})"
    )
    typer.echo(
        f"  memory   peak {h.peak_memory_mb:.2f} MB (heap {h.rss_anon_mb:.2f} MB, mapped files "
        f"{h.rss_file_mb:.2f} MB) ({h.memory_method()})"
    )
    shown = ", ".join(f"{i['name']} {i['dtype']} {'x'.join(map(str, i['shape']))}" for i in m.inputs)
    typer.echo(f"  inputs   {shown} ({m.inputs[0]['source'] if m.inputs else 'none'})")
    if m.estimate is not None:
        e, err = m.estimate, m.estimate_error
        lat = f"latency {e['latency_ms']:.4g} ms" + (
            f" ({100 * err['latency']:+.1f}% vs measured)" if err and err["latency"] is not None else ""
        )
        mem = f"peak memory {e['peak_memory_mb']:.2f} MB" + (
            f" ({100 * err['peak_memory']:+.1f}%)" if err and err["peak_memory"] is not None else ""
        )
        typer.echo(f"  {e['device']}: {lat}, {mem} (estimated, {e['version']}, {e['threads']} thread(s))")
    for n in m.notes:
        typer.echo(f"note: {n}")


def _measure_build(folder: Path, threads: int | None, runs: int, warmup: int, as_json: bool) -> None:
    from dataclasses import asdict

    from ..build.measure import measure_build

    device, rows, notes = measure_build(folder, threads=threads, runs=runs, warmup=warmup)
    if as_json:
        typer.echo(json_text({"device": device, "rows": [asdict(r) for r in rows], "notes": notes}))
        return
    from rich.table import Table

    here = rows[0].measurement.host if rows else None
    t = Table(
        title=f"{folder}: measured here ({here.cpu if here else 'no file ran'}, "
        f"{here.threads if here else '-'} thread(s)) beside the estimates for {device}",
        title_justify="left",
    )
    for col in (
        "file",
        "scheme",
        "here p50 (M)",
        "here peak (M)",
        f"{device} (E)",
        "estimate / here",
        "build host p50 (M)",
    ):
        t.add_column(col)
    for r in rows:
        h = r.measurement.host
        ratio = f"{r.estimated_ms / h.latency_ms_median:.2f}x" if r.estimated_ms and h.latency_ms_median else "—"
        t.add_row(
            r.file,
            r.scheme,
            f"{h.latency_ms_median:.4g} ms",
            f"{h.peak_memory_mb:.1f} MB",
            f"{r.estimated_ms:.4g} ms, {r.estimated_mb:.1f} MB" if r.estimated_ms is not None else "—",
            ratio,
            f"{r.recorded_host_ms:.4g} ms" if r.recorded_host_ms is not None else "—",
        )
    _console().print(t)
    typer.echo(
        f"on the {device} itself 'estimate / here' checks the estimate (1.00x: exact); on another machine it "
        "is the two machines' ratio"
    )
    for n in notes:
        typer.echo(f"note: {n}")


# ------------------------------------------------------------------------------------------- predict
@app.command()
def predict(
    model: Path = typer.Argument(..., help="An exported .onnx or .tflite file."),
    device: str = typer.Option(..., "--device", "-d", help="Profile name or YAML path."),
    runtime: str | None = typer.Option(
        None,
        "--runtime",
        help=" | ".join(RUNTIME_NAMES) + " (default: the file's own: .onnx onnxruntime, .tflite tflite)",
    ),
    precision: str | None = typer.Option(
        None, "--precision", help=" | ".join(PRECISIONS) + " [default: as in the graph]"
    ),
    threads: int | None = typer.Option(None, "--threads", min=1),
    ops: bool = typer.Option(False, "--ops", help="Print the per-op breakdown."),
    top: int = typer.Option(25, "--top", help="With --ops: the N most expensive ops (0: all)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Estimated latency and peak memory of a model file on a device (no device needed)."""
    from ..predict import predict as run_predict

    if precision is not None and precision not in PRECISIONS:
        raise AdaptcError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    _check_user_file(model)
    p = run_predict(model, device, precision=precision, threads=threads, runtime=runtime)
    if as_json:
        d = p.summary()
        d["ops"] = [o.__dict__ for o in p.ops]
        typer.echo(json_text(d))
        return
    typer.echo(
        f"{model.name} on {p.device} ({p.runtime}, {p.threads} thread(s)): latency {p.latency_ms:.3f} ms, "
        f"peak memory {p.peak_memory_mb:.2f} MB (estimated, {p.version})"
    )
    if ops:
        from rich.table import Table

        shown = sorted(p.ops, key=lambda o: -o.time_ms)
        shown = shown[:top] if top > 0 else shown
        t = Table(title=f"per-op estimate ({len(p.ops)} ops; {p.fixed_ms:.3f} ms per inference outside the ops)")
        for col in ("op", "type", "class", "precision", "MFLOPs", "KB moved", "time (ms)", "share", "bound"):
            t.add_column(col)
        for o in shown:
            t.add_row(
                o.name[:60],
                o.op_type,
                o.op_class,
                o.precision,
                f"{o.flops / 1e6:.3f}",
                f"{o.bytes_moved / 1024:.1f}",
                f"{o.time_ms:.4f}",
                f"{100 * o.time_ms / p.latency_ms:.1f}%" if p.latency_ms else "-",
                o.bound,
            )
        _console().print(t)
    typer.echo(f"method: {p.method}")
    for n in p.notes:
        typer.echo(f"note: {n}")
    if p.unknown_ops:
        typer.echo(f"warning: no cost model for {', '.join(p.unknown_ops)} (estimated as data movement)", err=True)


# -------------------------------------------------------------------------------------- quant-report
@app.command("quant-report")
def quant_report_cmd(
    task: str = typer.Option("digits", "--task", "-t", help="Built-in task or package.module:factory."),
    task_option: list[str] | None = typer.Option(None, "--task-option", "-O", help="KEY=VALUE of the task's factory."),
    per_tensor: bool = typer.Option(False, "--per-tensor", help="Weights with one scale per tensor."),
    equalize: bool = typer.Option(False, "--equalize", help="After equalization + bias correction."),
    samples: int | None = typer.Option(
        None, "--samples", min=1, help="Calibration samples (train split) [default: 64, fewer for a large model]."
    ),
    top: int = typer.Option(20, "--top", help="The N most sensitive layers in the table (0: all)."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a bar chart (PNG) of the sensitivities here."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Per-layer int8 sensitivity of a task's model: what the build keeps in float first (table and plot)."""
    from ..build.quant_report import plot_quant_report, quant_report
    from . import _task_options

    rep = quant_report(
        task, per_channel=not per_tensor, equalize=equalize, samples=samples, task_options=_task_options(task_option)
    )
    if plot is not None:
        plot_quant_report(rep, plot)
    if as_json:
        typer.echo(json_text(rep.to_dict()))
        return
    from rich.table import Table

    total = rep.total_macs or 1
    rows = rep.layers[:top] if top > 0 else rep.layers
    gran = "per channel" if rep.per_channel else "per tensor"
    t = Table(title=f"{rep.task}: int8 sensitivity, {len(rep.layers)} layers ({gran}), most sensitive first")
    for col in ("#", "layer", "kind", "MACs share", "params", "output error", "top-1 agreement"):
        t.add_column(col)
    for i, r in enumerate(rows, 1):
        agree = "-" if r["top1_agreement"] is None else f"{100 * r['top1_agreement']:.1f}%"
        t.add_row(
            str(i),
            r["name"],
            r["kind"],
            f"{100 * r['macs'] / total:.1f}%",
            f"{r['params']:,}",
            f"{r['error']:.2e}",
            agree,
        )
    _console().print(t)
    typer.echo(f"method: {rep.method} (at most {rep.samples} samples)")
    if plot is not None:
        typer.echo(f"plot: {plot}")


# ----------------------------------------------------------------------------------------- calibrate
@app.command()
def calibrate(
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Where to write the host profile [default: user profile dir]."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Smaller micro-benchmark suite, fewer repetitions (about 20-30 s)."
    ),
    raw: Path | None = typer.Option(None, "--raw", help="Also write every measurement and the fit statistics (JSON)."),
    refit: Path | None = typer.Option(
        None,
        "--refit",
        help="Fit again the measurements of an earlier --raw file "
        "of this machine (after a predictor upgrade) instead of measuring.",
    ),
    keep_faster: Path | None = typer.Option(
        None,
        "--keep-faster",
        help="An earlier --raw file of this machine: "
        "fit the faster figure of it and of this run per micro-benchmark "
        "(shared machines: other processes slow some runs down).",
    ),
) -> None:
    """Measure this machine with micro-benchmarks, fit the predictor, write its `host` device profile."""
    from ..core.progress import using
    from ..predict.calibration import calibrate_host

    if out is not None and out.exists() and not out.is_dir() and out.suffix not in (".yaml", ".yml"):
        raise AdaptcError(f"--out {out}: give a folder or a .yaml file")
    with using(_reporter()) as rep, _maybe_live(rep):
        path, prof = calibrate_host(out=out, quick=quick, raw_out=raw, refit=refit, keep_faster_of=keep_faster)
    int8 = f"{prof.compute.int8_gops:g}" if prof.compute.int8_gops else "-"
    typer.echo(
        f"wrote {path}: fp32 {prof.compute.fp32_gflops:g} GFLOP/s, int8 {int8} GOP/s, "
        f"bandwidth {prof.memory.bandwidth_gbps:g} GB/s at {prof.cpu.threads} thread(s)"
    )
    if prof.predictor is not None:
        for rt, c in prof.predictor.runtimes.items():
            typer.echo(f"  {rt}: {c.fitted}")


def _check_user_file(path: Path) -> None:
    """An .onnx file given on the command line passes the ONNX checker first (see ``check_onnx_file``)."""
    if path.suffix.lower() == ".onnx" and path.is_file():
        from ..analysis.onnx_shapes import check_onnx_file

        check_onnx_file(path)
