"""int8 on real pretrained networks: what "just quantize" (min-max post-training quantization) gives, and what
adaptc ships after its scheme walk (range estimators, equalization + bias correction, float layers).

    python benchmarks/quant_bench.py [--tasks text-recognizer,text-detector,animal-mobilenet] [--formats onnx,tflite]
                                     [--detector-size 256] [--runs 30] [--out benchmarks/results/quant.json]
    python benchmarks/quant_bench.py --table     # docs/benchmarks/quantization.md from the JSON

For each network and format, three ``adaptc.export`` runs (the public API, exactly what a user runs) on a copy of
the pixel8 profile that lists only static per-channel int8 (then fp32): (1) ``quant_effort="fast"`` with min-max
calibration: the fp32 file and the "just quantize" int8 file; (2) the default effort: the int8 file adaptc ships
and every attempt its walk made; (3) on the depthwise ReLU6 network, min-max + equalization + bias correction
alone (no float layers), and the same three again with int8 weights per tensor (the setting where min-max
collapses on it). Each file's task metric is measured in its own runtime on the task's test split; host
latency in a fresh process at 1 thread. CoreML files are checked structurally only (prediction needs macOS).
Results: JSON, a plot (quant.png) and the tables of docs/benchmarks/quantization.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(__import__("tables").main(["quant"]))

ROOT = Path(__file__).resolve().parent.parent
SCHEME = "int8_static_per_channel"
#: the benchmark's task options: the recogniser at its real crop size; the detector at a size this 2-core host
#: runs through every attempt in minutes (CRAFT costs 23 GMACs at 256 x 256, 52 at 384)
TASKS = {
    "text-recognizer": {"samples": 600, "width": 256},
    "text-detector": {"samples": 100, "size": 256},
    "animal-mobilenet": {},
}


def _profile(fmt: str, scheme: str = SCHEME) -> Any:
    import adaptc

    p = adaptc.load_profile("pixel8")
    # no budgets: the question is what int8 keeps, not whether a 23-GMAC detector fits a 600-MFLOP budget
    return p.model_copy(
        update={
            "name": f"pixel8-{fmt}-int8",
            "formats": (fmt,),
            "quantization": (scheme, "fp32"),
            "budgets": type(p.budgets)(),
        }
    )


def _art(report: Any, scheme: str) -> dict[str, Any] | None:
    for a in report.artifacts:
        if a.scheme == scheme:
            return a.model_dump(mode="json")
    return None


def _row(a: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None:
        return None
    p, h = a.get("parity"), a.get("host")
    fl = a["recipe"].get("float_layers") or {}
    return {
        "file": a["file"],
        "status": a["status"],
        "error": a.get("error"),
        "size_bytes": (a.get("size") or {}).get("value"),
        "metric": p["metric"]["value"] if p else None,
        "metric_ci95": p["metric"].get("ci95") if p else None,
        "drop_vs_fp32": p.get("drop_vs_fp32_artifact") if p else None,
        "drop_vs_torch": p["drop_vs_torch"] if p else None,
        "top1_agreement": p.get("top1_agreement") if p else None,
        "cosine": p["cosine"] if p else None,
        "host_p50_ms": h["latency_median"]["value"] if h else None,
        "host_method": h["latency_median"]["method"] if h else None,
        "moves": a["recipe"].get("ptq"),
        "attempts": a["recipe"].get("ptq_attempts"),
        "float_layers": [r["layer"] for r in fl.get("layers", [])],
        "float_macs_share": fl.get("macs_share"),
        "equalization": a["recipe"].get("equalization"),
        "calibration": a["recipe"].get("calibration"),
        "structure_check": (a.get("structure") or {}).get("check", {}).get("passed"),
    }


def run_one(task: str, options: dict[str, Any], fmt: str, out: Path, runs: int) -> dict[str, Any]:
    common = dict(formats=[fmt], threads=1, runs=runs, task_options=options)
    hard = task == "animal-mobilenet"
    res: dict[str, Any] = {"task": task, "format": fmt, "options": options}
    res |= _runs(task, fmt, SCHEME, out, common, equalize=hard)
    if hard:
        res["per_tensor"] = {"scheme": PER_TENSOR} | _runs(task, fmt, PER_TENSOR, out / "per-tensor", common, True)
    res["verdict"] = verdict(res)
    return res


#: the classic hard case as Nagel et al. (2019) pose it: int8 weights with one scale per tensor (what per-tensor
#: NPUs and DSPs take), where a depthwise layer's channel ranges that differ by orders of magnitude ruin min-max
PER_TENSOR = "int8_static_per_tensor"


def _runs(task: str, fmt: str, scheme: str, out: Path, common: dict[str, Any], equalize: bool) -> dict[str, Any]:
    """One scheme's exports: min-max ("just quantize", with the fp32 file), what adaptc's walk ships and, with
    ``equalize``, min-max + equalization + bias correction alone; each with its seconds."""
    import adaptc
    from adaptc.core.ptq import PTQConfig

    prof = _profile(fmt, scheme)
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    base = adaptc.export(task, prof, out / "minmax", quant_effort="fast", ptq=PTQConfig(calibration="minmax"), **common)
    res["fp32"], res["minmax"] = _row(_art(base, "fp32")), _row(_art(base, scheme))
    res["seconds_minmax"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ship = adaptc.export(task, prof, out / "adaptc", quant_effort="default", **common)
    res["adaptc"] = _row(_art(ship, scheme))
    res["seconds_adaptc"] = time.perf_counter() - t0
    res["shipped"] = ship.chosen
    if equalize:
        t0 = time.perf_counter()
        eq = adaptc.export(
            task, prof, out / "equalize", quant_effort="fast", ptq=PTQConfig(calibration="minmax", equalize=True),
            **common,
        )  # fmt: skip
        res["equalize_only"] = _row(_art(eq, scheme))
        res["seconds_equalize"] = time.perf_counter() - t0
    return res


#: a min-max gap this small is no gap (half a point: 7 of animal-mobilenet's 1,500 test images)
NO_GAP = 0.005


def _closes(fp32: dict | None, mm: dict | None, eq: dict | None) -> dict[str, Any]:
    """How much of min-max's gap to fp32 equalization + bias correction alone closes (None: no gap)."""
    if not (fp32 and mm and eq) or None in (fp32.get("metric"), mm.get("metric"), eq.get("metric")):
        return {}
    gap = fp32["metric"] - mm["metric"]
    closed = (eq["metric"] - mm["metric"]) / gap if gap > NO_GAP else None
    return {
        "minmax_gap": gap,
        "equalize_closes": closed,
        "equalize_closes_half": None if closed is None else closed >= 0.5,
    }


def host() -> dict[str, Any]:
    """This host, with what decides int8 speed on x86: VNNI dot-product instructions (without them, onnxruntime and
    XNNPACK multiply int8 through 16-bit multiply-adds and int8 is barely faster than fp32)."""
    from adaptc.core.versions import host_info
    from adaptc.measure.onnxruntime_runtime import saturating_int8_kernels

    info = host_info()
    if info["machine"].lower() in ("x86_64", "amd64"):
        info["int8_dot_product"] = "AVX2 only (no VNNI)" if saturating_int8_kernels() else "VNNI"
    return info


def verdict(r: dict[str, Any]) -> dict[str, Any]:
    """The issue's acceptance lines for one network and format."""
    fp32, mm, ad = r.get("fp32"), r.get("minmax"), r.get("adaptc")
    out: dict[str, Any] = {}
    if not fp32 or not ad or ad.get("metric") is None or fp32.get("metric") is None:
        out["checked"] = False
        return out
    out["checked"] = True
    drop = max(x for x in (ad.get("drop_vs_fp32"), ad.get("drop_vs_torch")) if x is not None)
    out["within_1_point"] = ad["status"] == "ok" and drop <= 0.01 + 1e-9
    ratio = (fp32["size_bytes"] or 0) / max(ad["size_bytes"] or 1, 1)
    out["size_ratio"] = ratio
    out["small_enough"] = ratio > (3.0 if ad["float_layers"] else 3.5)
    out["faster_than_fp32"] = (
        ad.get("host_p50_ms") is not None and fp32.get("host_p50_ms") is not None
        and ad["host_p50_ms"] < fp32["host_p50_ms"]
    )  # fmt: skip
    out |= _closes(fp32, mm, r.get("equalize_only"))
    pt = r.get("per_tensor")
    if pt:
        out["per_tensor"] = _closes(pt.get("fp32"), pt.get("minmax"), pt.get("equalize_only"))
    return out


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if r.get("fp32") and r["fp32"].get("metric") is not None]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 3.6))
    width = 0.26
    for k, (key, label) in enumerate((("fp32", "fp32"), ("minmax", "int8 min-max"), ("adaptc", "int8 adaptc"))):
        vals = [100 * ((r.get(key) or {}).get("metric") or 0.0) for r in rows]
        ax.bar([i + (k - 1) * width for i in range(len(rows))], vals, width, label=label)
    ax.set_xticks(range(len(rows)), [f"{r['task']}\n{r['format']}" for r in rows], fontsize=8)
    ax.set_ylabel("task metric on the test split (%)")
    lo = min(100 * ((r.get("minmax") or {}).get("metric") or 0.0) for r in rows)
    ax.set_ylim(max(0, lo - 10), 100)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("int8 on real networks: min-max PTQ against adaptc's scheme walk")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--formats", default="onnx,tflite,coreml")
    ap.add_argument("--detector-size", type=int, default=TASKS["text-detector"]["size"])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--work", type=Path, default=ROOT / "adaptc-out" / "quant-bench")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quant.json")
    args = ap.parse_args(argv)
    import torch

    import adaptc
    from adaptc.core.io import atomic_write_json
    from adaptc.core.versions import toolchain_versions

    torch.set_num_threads(1)
    results: list[dict[str, Any]] = []
    if args.out.exists():  # keep the other networks' rows when rerunning a subset
        results = json.loads(args.out.read_text()).get("results", [])
    for task in args.tasks.split(","):
        options = dict(TASKS[task])
        if task == "text-detector":
            options["size"] = args.detector_size
        for fmt in args.formats.split(","):
            print(f"== {task} / {fmt}", flush=True)
            r = run_one(task, options, fmt, args.work / task / fmt, args.runs)
            results = [x for x in results if (x["task"], x["format"]) != (task, fmt)] + [r]
            print(json.dumps({k: r[k] for k in ("task", "format", "verdict")}, indent=1), flush=True)
            doc = {
                "benchmark": "quant_bench",
                "date": time.strftime("%Y-%m-%d"),
                "host": host(),
                "adaptc": adaptc.__version__,
                "toolchain": toolchain_versions(),
                "scheme": SCHEME,
                "results": results,
            }
            atomic_write_json(args.out, doc)
    plot(results, args.out.with_suffix(".png"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tables import quant_table

    print(quant_table(json.loads(args.out.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
