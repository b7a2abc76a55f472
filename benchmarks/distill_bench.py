"""Distillation benchmark: does adaptc's knowledge infusion beat training the same student without it?

For each dataset (scikit-learn digits, animal-mnist), one student architecture derived from the teacher by
structured pruning (<= 1/10 of the teacher's parameters) and one epoch budget, compare:

  scratch         the student architecture, re-initialised, trained on labels (cross-entropy)
  kd_logit        Hinton KD: KL on softened logits at a fixed T=4 plus cross-entropy, random init
  kd_logit_skel   the same logit-only KD, but starting from the pruned teacher weights (ablation)
  adaptc          skeleton init + hybrid loss, one joint stage (adaptc's default for CNNs)
  adaptc_progressive  the same with the progressive schedule (align features first; adaptc's default for
                  teachers with attention maps)
  adaptc_ta       adaptc with a teacher assistant (intermediate width) first (ablation)
  adaptc_qat      adaptc + quantization-aware fine-tuning, measured on the exported int8 ONNX artifact

(the third dataset, ``docstrings``, a small transformer on text, shows where the progressive schedule and the
attention term matter for attention models; it has no target of its own)

Three seeds each; mean and spread of test accuracy; retention = student / teacher test accuracy.
Results: benchmarks/results/distill.json and distill.png.

    python benchmarks/distill_bench.py [--datasets digits,animal-mnist] [--seeds 0,1,2] [--quick]

A gain measured against one teacher can hang on that teacher: ``--teacher-seeds 0,7,13`` retrains the teacher
with each seed (the task option ``teacher_seed``, each cached) and repeats the methods on each, and reports every
claimed gain as a paired difference (same teacher, same student seed) with its spread over teachers and students:
benchmarks/results/distill_teachers.json.

animal-mnist needs its data package: pip install --no-deps animal-mnist==0.4
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(__import__("tables").main(["distill"]))

import numpy as np
import torch

import adaptc
from adaptc.distill import DistillConfig, LossWeights, distill, evaluate, train_from_scratch
from adaptc.distill.schedule import assistant_width
from adaptc.exporters import ExportRequest, get_exporter
from adaptc.exporters.parity import check_parity
from adaptc.measure import open_runner
from adaptc.slim import count_params, extract_skeleton
from adaptc.tasks import get_task, predict_torch
from adaptc.core.versions import host_info, toolchain_versions

RESULTS = Path(__file__).parent / "results"

SETUP = {
    # dataset: (student width, epochs, lr, batch size)
    "digits": (0.25, 30, 3e-3, 64),
    "animal-mnist": (0.25, 15, 3e-3, 128),
    "docstrings": (0.25, 12, 1e-3, 32),
}
METHODS = ["scratch", "kd_logit", "kd_logit_skel", "adaptc", "adaptc_progressive", "adaptc_ta", "adaptc_qat"]


def int8_onnx_accuracy(model: torch.nn.Module, task: adaptc.Task) -> tuple[float, float]:
    """Test accuracy of the model's int8 static per-channel ONNX artifact in onnxruntime, and its size ratio."""
    ex = get_exporter("onnx")
    with tempfile.TemporaryDirectory() as d:
        req = ExportRequest(model=model.eval(), example_inputs=task.example_inputs, input_names=task.input_names,
                            output_names=task.output_names, calibration=task.train)
        fp32 = ex.export(req, "fp32", Path(d) / "m.onnx")
        req.fp32_artifact = fp32.path
        q = ex.export(req, "int8_static_per_channel", Path(d) / "m.int8.onnx")
        res = check_parity(open_runner("onnxruntime", q.path, 1), task, predict_torch(model, task.test))
        return res.metric, fp32.path.stat().st_size / q.path.stat().st_size


def run_method(method: str, task: adaptc.Task, skeleton: torch.nn.Module, width: float, epochs: int, lr: float,
               bs: int, seed: int) -> dict[str, float]:
    t0 = time.perf_counter()
    # "adaptc" is the joint stage, "adaptc_progressive" the staged schedule (the library's default picks the
    # staged one for teachers with attention maps, from this benchmark)
    base = DistillConfig(epochs=epochs, lr=lr, batch_size=bs, seed=seed, align_fraction=0.0)
    logit_only = replace(base, weights=LossWeights(ce=1.0, kd=1.0, hidden=0, attention=0, relation=0),
                         t_start=4.0, t_end=4.0, align_fraction=0.0)
    out: dict[str, float] = {}
    if method == "scratch":
        m, _ = train_from_scratch(copy.deepcopy(skeleton), task, epochs, lr=lr, batch_size=bs, seed=seed)
    elif method == "kd_logit":
        m0 = copy.deepcopy(skeleton)
        for mod in m0.modules():
            if hasattr(mod, "reset_parameters") and mod is not m0:
                mod.reset_parameters()
        m = distill(m0, task.model, task, logit_only, description=f"{method} seed {seed}").model
    elif method == "kd_logit_skel":
        m = distill(copy.deepcopy(skeleton), task.model, task, logit_only, description=f"{method} seed {seed}").model
    elif method == "adaptc_progressive":
        m = distill(copy.deepcopy(skeleton), task.model, task, replace(base, align_fraction=0.3),
                    description=f"{method} seed {seed}").model
    elif method == "adaptc":
        m = distill(copy.deepcopy(skeleton), task.model, task, base, description=f"{method} seed {seed}").model
    elif method == "adaptc_ta":
        ta = extract_skeleton(task.model, task.example_inputs, width=assistant_width(width)).model
        ta = distill(ta, task.model, task, replace(base, epochs=max(2, epochs // 2)), description=f"TA seed {seed}").model
        m = distill(copy.deepcopy(skeleton), ta, task, base, description=f"{method} seed {seed}").model
        out["ta_params"] = count_params(ta)
    elif method == "adaptc_qat":
        m = distill(copy.deepcopy(skeleton), task.model, task, replace(base, qat=True),
                    description=f"{method} seed {seed}").model
    else:
        raise ValueError(method)
    out["torch_test"] = evaluate(m, task)
    out["seconds"] = time.perf_counter() - t0
    if method in ("adaptc_qat", "adaptc", "scratch"):
        out["int8_onnx_test"], out["int8_size_ratio"] = int8_onnx_accuracy(m, task)
    return out


def summarize(rows: list[dict[str, float]], key: str) -> dict[str, float]:
    vals = [r[key] for r in rows if key in r]
    return {"mean": statistics.mean(vals), "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def run_teacher(ds: str, task: adaptc.Task, methods: list[str], seeds: list[int], epochs: int) -> dict[str, object]:
    """Every method and student seed against one teacher: the teacher's figures, the student's, the runs."""
    width, _, lr, bs = SETUP[ds]
    teacher_acc = evaluate(task.model, task)
    teacher_int8, _ = int8_onnx_accuracy(task.model, task)
    sk = extract_skeleton(task.model, task.example_inputs, width=width)
    tp, sp = count_params(task.model), count_params(sk.model)
    print(f"== {ds}: teacher {tp:,} params, test {teacher_acc:.4f}; student width {width} -> {sp:,} params "
          f"({tp / sp:.1f}x fewer), {epochs} epochs", flush=True)
    per: dict[str, dict[str, object]] = {}
    for method in methods:
        rows = []
        for seed in seeds:
            r = run_method(method, task, sk.model, width, epochs, lr, bs, seed)
            rows.append(r)
            print(f"  {method:14s} seed {seed}: torch {r['torch_test']:.4f}"
                  + (f", int8 onnx {r['int8_onnx_test']:.4f}" if "int8_onnx_test" in r else "")
                  + f" ({r['seconds']:.0f}s)", flush=True)
        entry: dict[str, object] = {"runs": rows, "torch_test": summarize(rows, "torch_test")}
        if any("int8_onnx_test" in r for r in rows):
            entry["int8_onnx_test"] = summarize(rows, "int8_onnx_test")
        per[method] = entry
    ada = per.get("adaptc_qat", {}).get("int8_onnx_test", {})  # type: ignore[union-attr]
    return {
        "teacher": {"params": tp, "test": teacher_acc, "int8_onnx_test": teacher_int8},
        "student": {"width": width, "params": sp, "compression": tp / sp, "epochs": epochs, "lr": lr,
                    "batch_size": bs},
        "methods": per,
        "retention_int8_onnx": (ada.get("mean", float("nan")) / teacher_acc) if ada else None,  # type: ignore[union-attr]
    }


#: the gains the docs claim, each a paired difference (same teacher, same student seed): (name, method, key,
#: baseline method, baseline key)
GAINS = [
    ("adaptc - scratch (torch)", "adaptc", "torch_test", "scratch", "torch_test"),
    ("adaptc + QAT - scratch (int8 ONNX)", "adaptc_qat", "int8_onnx_test", "scratch", "int8_onnx_test"),
]


def paired_gains(teachers: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Each claimed gain over every (teacher seed, student seed) pair that has both methods: mean, std, min, max."""
    out = {}
    for name, m, key, base, bkey in GAINS:
        diffs = [{"d": a[key] - b[bkey]} for t in teachers.values() if m in t["methods"] and base in t["methods"]
                 for a, b in zip(t["methods"][m]["runs"], t["methods"][base]["runs"]) if key in a and bkey in b]
        if diffs:
            out[name] = summarize(diffs, "d")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,animal-mnist,docstrings")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--teacher-seeds", default=None,
                    help="retrain the teacher with each of these seeds (each cached) and repeat the methods on "
                         "each: the spread over teachers, written to results/distill_teachers.json")
    ap.add_argument("--quick", action="store_true", help="a few epochs only (smoke test, not for the record)")
    ap.add_argument("--out", default=None, help="default: results/distill.json (distill_teachers.json with "
                                                 "--teacher-seeds)")
    ap.add_argument("--update", action="store_true",
                    help="keep the datasets already in --out that this run does not redo")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    teacher_seeds = [int(s) for s in args.teacher_seeds.split(",")] if args.teacher_seeds else None
    out = Path(args.out or RESULTS / ("distill_teachers.json" if teacher_seeds else "distill.json"))
    results: dict[str, object] = {"benchmark": "distill_teachers" if teacher_seeds else "distill",
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "host": host_info(), "toolchain": toolchain_versions(), "seeds": seeds,
                                  "quick": args.quick, "datasets": {}}
    if teacher_seeds:
        results.update(teacher_seeds=teacher_seeds, methods=methods)
    if args.update and out.exists():
        results["datasets"] = json.loads(out.read_text()).get("datasets", {})
    for ds in args.datasets.split(","):
        epochs = 3 if args.quick else SETUP[ds][1]
        if not teacher_seeds:
            results["datasets"][ds] = run_teacher(ds, get_task(ds), methods, seeds, epochs)  # type: ignore[index]
        else:
            teachers: dict[str, dict] = {}
            for ts in teacher_seeds:
                t0 = time.perf_counter()
                task = get_task(ds, teacher_seed=ts)  # trains the teacher on first use (cached per seed)
                print(f"== {ds} teacher seed {ts} ({time.perf_counter() - t0:.0f}s to load or train)", flush=True)
                teachers[str(ts)] = run_teacher(ds, task, methods, seeds, epochs)
            results["datasets"][ds] = {"teachers": teachers, "gains": paired_gains(teachers)}  # type: ignore[index]
        out.write_text(json.dumps(results, indent=2))  # each dataset as it ends (a long run keeps what it did)
    if teacher_seeds:
        print(json.dumps({ds: d["gains"] for ds, d in results["datasets"].items()}, indent=1))  # type: ignore[union-attr]
        return 0
    plot(results, out.with_suffix(".png"))
    print(json.dumps({ds: {m: round(v["torch_test"]["mean"], 4) for m, v in d["methods"].items()}
                      for ds, d in results["datasets"].items()}, indent=1))  # type: ignore[union-attr]
    return 0


def plot(results: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dss = list(results["datasets"])
    fig, axes = plt.subplots(1, len(dss), figsize=(6 * len(dss), 4), dpi=110, squeeze=False)
    for ax, ds in zip(axes[0], dss):
        d = results["datasets"][ds]
        names, means, stds = [], [], []
        for m, v in d["methods"].items():
            key = "int8_onnx_test" if m == "adaptc_qat" else "torch_test"
            names.append(m + (" (int8 ONNX)" if m == "adaptc_qat" else ""))
            means.append(100 * v[key]["mean"])
            stds.append(100 * v[key]["std"])
        ax.barh(names, means, xerr=stds, color=["tab:gray" if not n.startswith("adaptc") else "tab:blue" for n in names])
        ax.axvline(100 * d["teacher"]["test"], color="k", ls=":", label="teacher")
        lo = min(means) - 3
        ax.set_xlim(max(0, lo), 100)
        ax.set_title(f"{ds}: student {d['student']['params']:,} params ({d['student']['compression']:.0f}x fewer), "
                     f"{d['student']['epochs']} epochs", fontsize=9)
        ax.set_xlabel("test accuracy (%), mean ± std over seeds")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dest)


if __name__ == "__main__":
    sys.exit(main())
