"""Export benchmark: every format x precision for a small CNN and a small transformer classifier.

    python benchmarks/export_bench.py [--out benchmarks/results/export.json] [--runs 300] [--rounds 30]

For each model (``bench_models()``; swap in the real student there when the student search lands) and each
scheme of each exporter (ONNX, TFLite, CoreML): file size, weights with and without embedding tables, parity
in the file's own runtime on the test split (task metric, drop against torch, cosine, top-1 agreement, max
abs diff), host latency and peak memory in a fresh process (``adaptc.measure.measure``, the same numbers a
build reports), and an interleaved in-process latency comparison of the files of one format (round robin
over the files, ``rounds`` rounds of timed blocks of calls: the fairest speed-up figure on a shared host). CoreML files are checked structurally only (prediction needs macOS). Then ``adaptc export`` for
pixel8 and iphone15pro (which files each emits). Writes JSON and prints the table; ``--table`` rewrites the
tables of docs/benchmarks/export.md from the JSON (benchmarks/tables.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(__import__("tables").main(["export"]))

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

INT8 = ("int8_static_per_channel", "int8_static_per_tensor", "int8_dynamic", "int8_weight_only")


# -- the models ---------------------------------------------------------------------------------------------
def digits_student(out_dir: Path = ROOT / "adaptc-out" / "export-bench-digits") -> tuple[Any, str]:
    """The digits student as adaptc builds it for pixel8 (student search on; a finished build is reused)."""
    import dataclasses
    import json

    import adaptc
    from adaptc.search.trials import TrialStore
    from adaptc.tasks import get_task

    if not (out_dir / "report.json").exists():
        adaptc.build("digits", "pixel8", out_dir, formats=["onnx"])
    report = json.loads((out_dir / "report.json").read_text())
    model = TrialStore.open_final(out_dir).eval()
    chosen = report["search"]["chosen"]
    note = (f"the searched digits student of `adaptc build --device pixel8` ({chosen['candidate']}, "
            f"{sum(p.numel() for p in model.parameters()):,} parameters, {chosen['compression']:.1f}x fewer than "
            f"the teacher, distilled {chosen['final_epochs']} epochs{' with QAT' if chosen['qat'] else ''})")
    return dataclasses.replace(get_task("digits"), name="digits-student", model=model), note


def docstrings_transformer() -> tuple[Any, str]:
    from adaptc.tasks import get_task

    task = get_task("docstrings")
    n = sum(p.numel() for p in task.model.parameters())
    return task, (f"the docstrings teacher: TransformerClassifier (4 blocks, width 128, 4,002-word embedding table), "
                  f"{n:,} parameters, int64 token ids (1, 64)")


def bench_models() -> list[tuple[str, Callable[[], tuple[Any, str]]]]:
    """(name, factory) pairs; a factory returns (adaptc.Task whose model is benchmarked, a note)."""
    return [("digits-student", digits_student), ("docstrings-transformer", docstrings_transformer)]


# -- measuring ------------------------------------------------------------------------------------------------
def interleaved_latency(runtime: str, paths: list[Path], inputs: list[np.ndarray], rounds: int, per_round: int = 200
                        ) -> list[tuple[float, float]]:
    """Per file, (median, min) over rounds of the mean latency (ms) of a block of ``per_round`` calls; the
    files alternate block by block. Timing blocks keeps the timer's own cost (about 1 us a call) out of
    sub-0.01 ms figures; the min over rounds is the round least disturbed by other jobs on a shared host."""
    from adaptc.measure import open_runner

    calls = []
    for p in paths:
        r = open_runner(runtime, p, 1)
        c = r.timed_call(inputs)
        for _ in range(20):
            c()
        calls.append(c)
    res: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for k, c in enumerate(calls):
            for _ in range(10):
                c()
            t0 = time.perf_counter_ns()
            for _ in range(per_round):
                c()
            res[k].append((time.perf_counter_ns() - t0) / per_round / 1e6)
    return [(float(np.median(r)), float(np.min(r))) for r in res]


def bench_model(name: str, task: Any, note: str, out: Path, runs: int, rounds: int) -> dict[str, Any]:
    from adaptc.core.io import path_size
    from adaptc.exporters import ExportRequest, get_exporter
    from adaptc.exporters.parity import check_parity
    from adaptc.measure import measure, runtime_available
    from adaptc.core.schemes import get_scheme
    from adaptc.tasks import predict_torch

    ref = predict_torch(task.model, task.test)
    torch_metric = float(task.metric(ref, task.test))
    example = [x.numpy() for x in task.example_inputs]
    rows: list[dict[str, Any]] = []
    for fmt in ("onnx", "tflite", "coreml"):
        ex = get_exporter(fmt)
        req = ExportRequest(model=task.model, example_inputs=task.example_inputs, input_names=task.input_names,
                            output_names=task.output_names, calibration=task.train)
        schemes = ["fp32"] + [s for s in ex.schemes() if s != "fp32"]
        for scheme in schemes:
            dest = out / name / ex.filename(scheme)
            row: dict[str, Any] = {"format": fmt, "scheme": scheme, "file": dest.name}
            t0 = time.perf_counter()
            try:
                f = ex.export(req, scheme, dest)
            except Exception as e:
                row.update(status="failed", error=str(e))
                rows.append(row)
                print(f"  {fmt:6s} {scheme:24s} failed: {e}", flush=True)
                continue
            if scheme == "fp32":
                req.fp32_artifact = f.path
            d = ex.describe(f.path)
            row.update(status="ok", export_s=round(time.perf_counter() - t0, 1),
                       precision=f.precision or get_scheme(scheme).precision, size_bytes=path_size(f.path),
                       embedding_bytes=d.get("embedding_bytes"),
                       weight_bytes_excluding_embeddings=d.get("weight_bytes_excluding_embeddings"))
            check = ex.verify(req, f.path, scheme)
            if check is not None:
                row["structure_check"] = {"passed": check["passed"], "failed": check["failed"]}
            if runtime_available(ex.runtime):
                res = check_parity(ex.load(f.path, threads=1), task, ref)
                row["parity"] = {"metric": res.metric, "torch_metric": res.reference_metric, "drop_points": 100 * res.drop,
                                 "cosine": res.cosine, "top1_agreement": res.top1_agreement,
                                 "max_abs_diff": res.max_abs_diff, "samples": res.samples, "runtime": ex.runtime}
                m = measure(f.path, ex.runtime, example, threads=1, runs=runs, warmup=20)
                row["host"] = {"latency_ms_median": m.latency_ms_median, "latency_ms_p90": m.latency_ms_p90,
                               "peak_memory_mb": m.peak_memory_mb, "rss_anon_mb": m.rss_anon_mb,
                               "method": m.method(), "kind": "measured"}
            else:
                row["parity"] = None
                row["host"] = None
                row["not_measured"] = "no CoreML runtime on Linux (prediction needs macOS): structure checked only"
            rows.append(row)
            par = row.get("parity") or {}
            print(f"  {fmt:6s} {scheme:24s} {row['size_bytes'] / 1024:9.1f} KB  "
                  f"{par.get('metric', float('nan')):.4f}  "
                  f"{(row.get('host') or {}).get('latency_ms_median', float('nan')):.4f} ms", flush=True)
        # interleaved comparison of this format's files (the speed-up figures)
        ok = [r for r in rows if r["format"] == fmt and r["status"] == "ok" and r.get("host")]
        if ok:
            lat = interleaved_latency(ex.runtime, [out / name / r["file"] for r in ok], example, rounds)
            for r, (med, best) in zip(ok, lat):
                r["interleaved_latency_ms"] = med
                r["interleaved_latency_ms_best_round"] = best
    return {"model": name, "note": note, "torch_metric": torch_metric, "metric_name": task.metric_name,
            "test_samples": len(task.test), "params": sum(p.numel() for p in task.model.parameters()),
            "artifacts": rows, "summary": summarize(rows, torch_metric)}


def summarize(rows: list[dict[str, Any]], torch_metric: float) -> dict[str, Any]:
    by = {(r["format"], r["scheme"]): r for r in rows if r["status"] == "ok"}
    s: dict[str, Any] = {}
    fp32 = by.get(("tflite", "fp32"))
    for scheme in ("int8_static_per_channel", "int8_dynamic"):
        r = by.get(("tflite", scheme))
        if fp32 and r and r.get("interleaved_latency_ms"):
            s[f"tflite_speedup_{scheme}_vs_fp32"] = fp32["interleaved_latency_ms"] / r["interleaved_latency_ms"]
            s[f"tflite_speedup_{scheme}_vs_fp32_best_round"] = (fp32["interleaved_latency_ms_best_round"]
                                                                 / r["interleaved_latency_ms_best_round"])
            s[f"tflite_speedup_{scheme}_vs_fp32_fresh_process"] = (fp32["host"]["latency_ms_median"]
                                                                   / r["host"]["latency_ms_median"])
    ratios, ratios_wo_emb, drops = {}, {}, {}
    for (fmt, scheme), r in by.items():
        if scheme not in INT8:
            continue
        base = by.get((fmt, "fp32"))
        if base:
            ratios[f"{fmt}/{scheme}"] = base["size_bytes"] / r["size_bytes"]
            if base.get("weight_bytes_excluding_embeddings") and r.get("weight_bytes_excluding_embeddings"):
                ratios_wo_emb[f"{fmt}/{scheme}"] = (base["weight_bytes_excluding_embeddings"]
                                                    / r["weight_bytes_excluding_embeddings"])
        if r.get("parity"):
            drops[f"{fmt}/{scheme}"] = 100 * (torch_metric - r["parity"]["metric"])
    s["int8_size_ratio_file"] = ratios
    s["int8_size_ratio_weights_excluding_embeddings"] = ratios_wo_emb
    s["int8_accuracy_drop_points"] = drops
    return s


def device_builds(out: Path) -> dict[str, Any]:
    import adaptc

    res = {}
    for dev in ("pixel8", "iphone15pro"):
        rep = adaptc.export("digits", dev, out / f"build-{dev}", runs=50)
        res[dev] = {"status": rep.status, "formats": list(rep.device["formats"]),
                    "emitted": sorted({a.file for a in rep.artifacts if a.status == "ok"}),
                    "chosen_per_format": rep.chosen_per_format, "chosen": rep.chosen}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "export.json")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--work", type=Path, default=None, help="folder for the exported files [default: a temporary one]")
    ap.add_argument("--no-builds", action="store_true", help="skip the pixel8 / iphone15pro exports")
    args = ap.parse_args(argv)
    from adaptc.core.versions import host_info, toolchain_versions

    t0 = time.time()
    work_ctx = tempfile.TemporaryDirectory(prefix="adaptc-bench-") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    results = []
    for name, factory in bench_models():
        task, note = factory()
        print(f"{name}: {note}", flush=True)
        results.append(bench_model(name, task, note, work, args.runs, args.rounds))
    builds = None if args.no_builds else device_builds(work)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    doc = {
        "benchmark": "export_bench",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(time.time() - t0, 1),
        "host": {**host_info(), "python": platform.python_version(), "load_average_at_end": load},
        "host_note": ("shared 2-core host (other jobs ran at the same time): absolute latencies are noisy (+-20% "
                      "and more); speed-ups come from the interleaved in-process comparison, which alternates the "
                      "files of one format round by round"),
        "method": {
            "parity": "each file in its own runtime (onnxruntime, LiteRT) on the task's test split, batch 1",
            "host_latency": "adaptc.measure.measure: fresh process, 1 thread, batch 1, inputs bound once, median/p90 "
                            f"of {args.runs} runs after 20 warm-up runs",
            "interleaved_latency": f"one process, the files of one format alternating, {args.rounds} rounds; per "
                                   "round and file a block of 200 calls (after 10 warm-up calls) timed as one; "
                                   "median and min (best round) over rounds of the per-call mean",
            "coreml": "converted, saved, reloaded with skip_model_load=True; MIL program checked against the torch "
                      "model; no numbers measured (prediction needs macOS)",
        },
        "toolchain": toolchain_versions(),
        "models": results,
        "device_builds": builds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    from tables import export_table  # the table of docs/benchmarks/export.md (python benchmarks/export_bench.py --table)

    print(export_table(doc))
    for m in results:
        print(m["model"], json.dumps(m["summary"], indent=1))
    if builds:
        print(json.dumps(builds, indent=1))
    if work_ctx:
        work_ctx.cleanup()
    print(f"wrote {args.out} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
