"""``adaptc calibrate``: measure this machine and write its ``host`` device profile with fitted predictor
constants.

1. Reference figures: sustained fp32 and int8 throughput of a large dense 3x3 convolution in onnxruntime
   (``compute.fp32_gflops`` / ``int8_gops``: what "sustained" means in every profile), memory bandwidth from
   large array copies, cores and RAM.
2. Micro-benchmarks per runtime (onnxruntime and, when installed, LiteRT), fp32 and int8: dense 3x3 and 1x1
   convolutions at several widths and resolutions, depthwise convolutions, linear layers (matrix-vector and
   token matrices), attention-shaped matmuls, elementwise ops, softmax, pooling, and chains of tiny ops (per-op
   dispatch overhead and per-inference cost); a subset again at 2 threads (thread scaling); in the full mode,
   graphs dominated by weights or by activations measured in fresh processes (memory constants).
3. Fit: per runtime, the predictor's constants (op-class efficiencies, GEMM-shape constants, bandwidth
   efficiencies, overheads, thread scaling, memory) by least squares on log-latency through the same per-op
   model that predicts real graphs (:mod:`adaptc.predict.fit`), starting from and weakly pulled toward the
   shipped x86_64 constants.
4. Write ``host.yaml`` (user profile dir, or ``--out``) with the figures and a ``predictor:`` section holding
   the fitted constants, and optionally the raw measurements (``--raw``).

``--quick`` runs a smaller suite with fewer repetitions (about 20-30 s); the full mode about 90 s. The graphs are
those of :mod:`.suite`, written by :mod:`.onnx_writer` and :mod:`.tflite_writer`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ...core import progress
from ...core.io import atomic_write_text, ensure_writable_dir, json_text
from ...core.versions import cpu_model, host_info
from ...errors import AdaptcError
from ...profiles import DeviceProfile, parse_profile, profile_to_yaml, user_profile_dir
from .measure import MicroResult, available_runtimes, micro_file, reference_figures, run_memory, run_micro
from .suite import memory_suite, suite


def fit_host(
    ref: dict[str, float],
    micro: list[MicroResult],
    memory: list[dict[str, Any]],
    runtimes: list[str],
    cores: int,
    ghz: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fitted constants per runtime (``RuntimeConstants`` mappings) and fit statistics."""
    from ...analysis import analyze
    from ..constants import constants_from_dict, family_constants
    from ..fit import (
        LATENCY_PARAMS,
        ORT_LAYOUT_PARAMS,
        THREAD_PARAMS,
        LatencySample,
        MemorySample,
        fit_latency,
        fit_memory,
        round_constants,
    )
    from ..opcost import Device
    from ..table import build_table

    dev = Device(
        sustained={"fp32": ref["fp32_gflops"], "fp16": ref["fp32_gflops"], "int8": ref["int8_gops"]},
        bandwidth_gbps=ref["bandwidth_gbps"],
        profile_threads=1,
        max_threads=cores,
        ghz=ghz,
    )
    constants: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    today = _dt.date.today().isoformat()
    for rt in runtimes:
        base_d, src, _ = family_constants(rt, "x86_64")
        base_d["ref_ghz"] = ghz
        base = constants_from_dict(base_d, rt, "x86_64", src)
        tables: dict[str, Any] = {}

        def table(path: str, tables: dict[str, Any] = tables, rt: str = rt) -> Any:
            if path not in tables:
                tables[path] = build_table(analyze(path), rt, layouts=True)  # this machine's own runtime
            return tables[path]

        rows = [r for r in micro if r.runtime == rt]
        one = [LatencySample(f"{r.name}/{r.precision}", table(r.path), r.median_ms, 1) for r in rows if r.threads == 1]
        params = list(LATENCY_PARAMS) + (list(ORT_LAYOUT_PARAMS) if rt == "onnxruntime" else [])
        fit1 = fit_latency(one, base, dev, params)
        c = fit1.constants
        multi = [
            LatencySample(f"{r.name}/{r.precision}/{r.threads}t", table(r.path), r.median_ms, r.threads)
            for r in rows
            if r.threads > 1
        ]
        st: dict[str, Any] = {
            "latency": {k: v for k, v in fit1.stats.items() if k != "per_sample"},
            "latency_samples": fit1.stats["per_sample"],
        }
        if multi:
            fit2 = fit_latency(multi, c, dev, list(THREAD_PARAMS), prior_weight=0.1)
            c = fit2.constants
            st["threads"] = {k: v for k, v in fit2.stats.items() if k != "per_sample"}
        mem_rows = [m for m in memory if m["runtime"] == rt]
        if mem_rows:
            fm = fit_memory(
                [
                    MemorySample(f"{m['name']}/{m['precision']}", table(m["path"]), m["peak_memory_mb"])
                    for m in mem_rows
                ],
                c,
            )
            c = fm.constants
            st["memory"] = fm.stats
        c.fitted = (
            f"fitted by `adaptc calibrate` on {today}: {len(one)} micro-benchmarks at 1 thread"
            f"{f', {len(multi)} at 2 threads' if multi else ''}"
            f"{f', {len(mem_rows)} memory measurements' if mem_rows else ' (memory constants not refitted)'}"
            f"; rms log error {fit1.stats['after']['rms_log_error']:.3f}"
        )
        d = round_constants(c.to_dict())
        constants[rt] = d
        stats[rt] = st
    return constants, stats


def _rebuild_files(workdir: Path, raw: dict[str, Any]) -> tuple[list[MicroResult], list[dict[str, Any]]]:
    """The micro-benchmark graphs of a raw calibration file written again (they are deterministic), with its
    measurements; graphs no longer in the suite are dropped."""
    micros = {m.name: m for m in suite(bool(raw.get("quick")))}
    mems = {m.name: m for m in memory_suite()}
    micro = [
        MicroResult(**{**r, "path": str(micro_file(workdir, micros[r["name"]], r["runtime"], r["precision"]))})
        for r in raw.get("micro", [])
        if r["name"] in micros
    ]
    memory = [
        {**r, "path": str(micro_file(workdir, mems[r["name"]], r["runtime"], r["precision"]))}
        for r in raw.get("memory", [])
        if r["name"] in mems
    ]
    return micro, memory


_REFERENCE_KEYS = ("fp32_gflops", "int8_gops", "fp32_gflops_2t", "bandwidth_gbps")


def _read_raw(path: str | os.PathLike[str], option: str) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        missing = [k for k in ("quick", "runtimes", "ghz", "reference", "micro") if k not in raw]
        if missing:
            raise KeyError(", ".join(missing))
        return raw
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AdaptcError(
            f"{option} {path}: not a raw calibration file written by `adaptc calibrate --raw` ({e})"
        ) from e


def keep_faster(
    micro: list[MicroResult], ref: dict[str, float], other: dict[str, Any]
) -> tuple[list[MicroResult], dict[str, float], int]:
    """Per micro-benchmark, the faster of this calibration's median and another calibration's of the same machine
    (``other``: a raw file's content), and the higher reference figures: other processes on a shared machine slow
    some measurements down, never one up, so two calibrations give ten passes of each graph. Returns the merged
    results, reference and how many figures came from ``other``."""
    prev = {(r["name"], r["runtime"], r["precision"], int(r["threads"])): r for r in other.get("micro", [])}
    out, taken = [], 0
    for r in micro:
        p = prev.get((r.name, r.runtime, r.precision, r.threads))
        if p is not None and float(p["median_ms"]) < r.median_ms:
            r = dataclasses.replace(r, median_ms=float(p["median_ms"]), runs=int(p["runs"]))
            taken += 1
        out.append(r)
    oref = other.get("reference", {})
    merged = {**ref, **{k: max(float(ref[k]), float(oref[k])) for k in _REFERENCE_KEYS if k in ref and k in oref}}
    return out, merged, taken


def calibrate_host(
    out: str | os.PathLike[str] | None = None,
    quick: bool = False,
    raw_out: str | os.PathLike[str] | None = None,
    runtimes: list[str] | None = None,
    refit: str | os.PathLike[str] | None = None,
    keep_faster_of: str | os.PathLike[str] | None = None,
) -> tuple[Path, DeviceProfile]:
    """Measure this machine, fit the predictor, write the ``host`` profile; returns its path and the profile.
    ``refit``: a raw file of an earlier calibration on this machine: its measurements are fitted again (after a
    predictor change) instead of measuring. ``keep_faster_of``: a raw file of an earlier calibration on this
    machine: per micro-benchmark the faster of its figure and this run's is fitted (:func:`keep_faster`)."""
    import onnxruntime

    # where the results go is checked before minutes of measuring (an unwritable --out fails now, not at the end)
    dest = Path(out) if out is not None else user_profile_dir() / "host.yaml"
    if dest.is_dir():
        dest = dest / "host.yaml"
    for target in (dest, *([Path(raw_out)] if raw_out is not None else [])):
        ensure_writable_dir(target.parent)
    info = host_info()
    cores = int(info.get("usable_cores") or 1)
    ghz = _ghz()
    runtimes = runtimes or available_runtimes()
    today = _dt.date.today().isoformat()
    prior: dict[str, Any] | None = None
    if refit is not None and keep_faster_of is not None:
        raise AdaptcError("--refit and --keep-faster do not go together (--refit does not measure)")
    if refit is not None:
        prior = _read_raw(refit, "--refit")
        quick, runtimes, ghz = bool(prior["quick"]), list(prior["runtimes"]), float(prior["ghz"])
    other: dict[str, Any] | None = None
    if keep_faster_of is not None:
        other = _read_raw(keep_faster_of, "--keep-faster")
        if other.get("host", {}).get("cpu") != info.get("cpu") or bool(other["quick"]) != quick:
            raise AdaptcError(
                f"--keep-faster {keep_faster_of}: a calibration of another machine or suite "
                f"({other.get('host', {}).get('cpu')!r}, quick={other['quick']}; this run: "
                f"{info.get('cpu')!r}, quick={quick})"
            )
    with tempfile.TemporaryDirectory(prefix="adaptc-cal-") as d:
        wd = Path(d)
        if prior is not None:
            ref = prior["reference"]
            micro, memory = _rebuild_files(wd, prior)
            today = f"{today} (refit of the measurements of {prior.get('date', '?')})"
        else:
            step = progress.current().step("calibrate: reference conv and bandwidth", total=1)
            ref = reference_figures(wd, quick)
            step.done()
            micro = run_micro(wd, runtimes, quick)
            memory = [] if quick else run_memory(wd, runtimes)
            if other is not None:
                micro, ref, taken = keep_faster(micro, ref, other)
                today = (
                    f"{today} (faster figure per graph of this run and of the calibration of {other.get('date', '?')})"
                )
                progress.log.info(
                    "calibrate: %d of %d figures from %s (faster there)", taken, len(micro), keep_faster_of
                )
        step = progress.current().step("calibrate: fitting the predictor", total=1)
        constants, stats = fit_host(ref, micro, memory, runtimes, cores, ghz)
        step.done()
    versions = [f"onnxruntime {onnxruntime.__version__}"]
    if "tflite" in runtimes:
        from importlib.metadata import version

        versions.append(f"ai-edge-litert {version('ai-edge-litert')}")
    fit_note = "; ".join(
        f"{rt}: {stats[rt]['latency']['after']['median_abs_error_pct']:.1f}% median |error| on "
        f"{stats[rt]['latency']['after']['n']} micro-benchmarks"
        for rt in runtimes
    )
    data = {
        "schema_version": 1,
        "name": "host",
        "display_name": f"This machine ({cpu_model()})",
        "kind": "host",
        "soc": cpu_model(),
        "os": "linux",
        "cpu": {
            "cores": [{"name": cpu_model(), "count": cores, "ghz": ghz}],
            "threads": 1,
            "arch": info.get("machine"),
        },
        "compute": {"fp32_gflops": round(ref["fp32_gflops"], 2), "int8_gops": round(ref["int8_gops"], 2)},
        "memory": {"ram_mb": float(info.get("ram_mb") or 1024), "bandwidth_gbps": round(ref["bandwidth_gbps"], 2)},
        "budgets": {"max_latency_ms": 100, "max_peak_memory_mb": 1024, "max_model_mb": 200, "max_mflops": 20000},
        "formats": ["onnx", "tflite"],
        "quantization": ["int8_static_per_channel", "int8_dynamic", "fp32"],
        "channel_multiple": 8,
        "notes": (
            f"Measured by `adaptc calibrate{' --quick' if quick else ''}` on {today}: sustained throughput of a "
            f"3x3 conv 128->128 at 28x28 in {versions[0]}, 1 thread (2 threads: "
            f"{ref['fp32_gflops_2t']:.1f} GFLOP/s fp32, {ref['fp32_gflops_2t'] / ref['fp32_gflops']:.2f}x). "
            f"Predictor constants fitted on {len(micro)} micro-benchmark runs ({', '.join(versions)}): "
            f"{fit_note}. Budgets are generous defaults for a desktop/server target."
        ),
        "sources": [
            f"measured on this host by `adaptc calibrate` ({today}): compute from {versions[0]} conv "
            "micro-benchmark (median of timed runs)",
            "memory bandwidth: numpy copy of a 64 MB array (read + write bytes / best time)",
            "RAM and cores: psutil / sched_getaffinity on this host",
            f"predictor constants: least squares on log-latency of micro-benchmarks in {', '.join(versions)} "
            "(adaptc.predict.fit)",
        ],
        "predictor": {"family": "x86_64", "runtimes": constants},
    }
    prof = parse_profile(data, "<calibrated host profile>")
    atomic_write_text(dest, "# written by `adaptc calibrate`\n" + profile_to_yaml(prof))
    if raw_out is not None:
        raw = {
            "date": today,
            "quick": quick,
            "host": info,
            "ghz": ghz,
            "reference": ref,
            "runtimes": runtimes,
            "versions": versions,
            "micro": [r.__dict__ for r in micro],
            "memory": memory,
            "fit": stats,
        }
        atomic_write_text(raw_out, json_text(raw, indent=1) + "\n")
    return dest, prof


def _ghz() -> float:
    try:
        import psutil

        f = psutil.cpu_freq()
        if f and f.max:
            return round(f.max / 1000, 2)
        if f and f.current:
            return round(f.current / 1000, 2)
    except Exception:
        pass
    return 2.0


__all__ = [
    "MicroResult",
    "calibrate_host",
    "keep_faster",
    "fit_host",
    "micro_file",
    "reference_figures",
    "run_memory",
    "run_micro",
]
