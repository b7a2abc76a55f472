"""The benchmark tables of docs/, rendered from ``benchmarks/results/*.json``: never typed by hand.

    python benchmarks/tables.py --all             # regenerate every table block in docs/
    python benchmarks/tables.py export minilm     # the tables of these benchmarks only
    python benchmarks/tables.py --all --check     # exit 1 if a docs table differs from its JSON (nothing written)
    python benchmarks/tables.py --print minilm    # print the rendered tables instead of writing docs/

Each benchmark script's ``--table`` option calls this for its own tables (``python benchmarks/minilm_bench.py
--table``). A table lives in a docs page between two markers, ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``;
what lies between them is replaced by ``render(NAME)`` (``tests/test_docs.py`` checks that every block equals it).

Standard library only (json, pathlib, re): no torch, no adaptc, so tables regenerate in a second anywhere.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOCS = ROOT / "docs"

BLOCK = re.compile(r"(<!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)


def load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def _ci(ci: list[float] | None, digits: int = 0) -> str:
    return "" if not ci else f"{100 * ci[0]:.{digits}f}-{100 * ci[1]:.{digits}f}%"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**not met**")


# -- export_bench.py: benchmarks/results/export.json ----------------------------------------------------------
def export_table(d: dict | None = None) -> str:
    """Every format x scheme of the two benchmark models: size, accuracy in the file's runtime, latency."""
    d = d or load("export.json")
    lines = ["| model | format | scheme | size | weights w/o embeddings | accuracy (drop) | cosine | "
             "host p50, fresh process | interleaved: median / best round |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in d["models"]:
        for r in m["artifacts"]:
            if r["status"] != "ok":
                lines.append(f"| {m['model']} | {r['format']} | {r['scheme']} | failed: {r.get('error', '')[:60]} "
                             "| | | | | |")
                continue
            p = r.get("parity")
            acc = f"{100 * p['metric']:.2f}% ({-p['drop_points'] + 0.0:+.2f} pt)" if p else "n/a (needs macOS)"
            cos = f"{p['cosine']:.5f}" if p else "—"
            lat = (f"{r['host']['latency_ms_median']:.4f} ms | {r['interleaved_latency_ms']:.4f} / "
                   f"{r['interleaved_latency_ms_best_round']:.4f} ms" if r.get("host")
                   else "not measured (no CoreML runtime) | —")
            wo = r.get("weight_bytes_excluding_embeddings")
            wo_s = f"{wo / 1024:.1f} KB" if wo is not None else "—"
            lines.append(f"| {m['model']} | {r['format']} | {r['scheme']} | {r['size_bytes'] / 1024:.1f} KB | "
                         f"{wo_s} | {acc} | {cos} | {lat} |")
    return "\n".join(lines)


def export_models(d: dict | None = None) -> str:
    """The two models, as the run built them."""
    d = d or load("export.json")
    lines = ["| model | parameters | torch test accuracy | test samples | what it is |", "|---|---|---|---|---|"]
    for m in d["models"]:
        lines.append(f"| {m['model']} | {m['params']:,} | {100 * m['torch_metric']:.2f}% | {m['test_samples']} | "
                     f"{m['note']} |")
    h = d["host"]
    load_avg = h.get("load_average_at_end")
    lines += ["", f"Run {d['created_utc']}, {d['duration_s'] / 60:.1f} minutes; host: {h['cpu']}, "
              f"{h['usable_cores']} cores" + (f", load average {load_avg[0]:.1f} at the end" if load_avg else "")
              + f"; onnxruntime {d['toolchain']['onnxruntime']}, ai-edge-litert {d['toolchain']['ai-edge-litert']}, "
              f"coremltools {d['toolchain']['coremltools']}."]
    return "\n".join(lines)


def _range(vals: list[float]) -> str:
    return f"{min(vals):.2f}x to {max(vals):.2f}x" if vals else "—"


def export_targets(d: dict | None = None) -> str:
    """The export benchmark's targets, from each model's ``summary``."""
    d = d or load("export.json")
    models = d["models"]
    lines = ["| target | " + " | ".join(m["model"] for m in models) + " |", "|---|" + "---|" * len(models)]

    def speed(s: dict) -> str:
        parts, met = [], False
        for scheme, label in (("int8_static_per_channel", "static"), ("int8_dynamic", "dynamic")):
            k = f"tflite_speedup_{scheme}_vs_fp32"
            if k in s:
                parts.append(f"{label} {s[k]:.2f}x ({s[k + '_fresh_process']:.2f}x)")
                met = met or s[k] >= 2
        return "; ".join(parts) + (" — met" if met else " — **not met**") if parts else "—"

    def ratio(s: dict, key: str, target: float | None) -> str:
        vals = list(s.get(key, {}).values())
        if not vals:
            return "—"
        return _range(vals) + ("" if target is None else (" — met" if min(vals) >= target else " — **not met**"))

    def drop(s: dict) -> str:
        vals = list(s.get("int8_accuracy_drop_points", {}).values())
        if not vals:
            return "—"
        worst = max(vals)
        return f"largest drop {worst:.2f} pt" + (" — met" if worst <= 1 else " — **not met**")

    rows = [
        ("int8 TFLite >= 2x faster than fp32 TFLite (interleaved median; fresh process)", speed),
        ("int8 >= 3.5x smaller than fp32, embedding tables aside (weights)",
         lambda s: ratio(s, "int8_size_ratio_weights_excluding_embeddings", 3.5)),
        ("the same, whole files", lambda s: ratio(s, "int8_size_ratio_file", None)),
        ("every int8 artifact within 1 point of torch", drop),
    ]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(m["summary"]) for m in models) + " |")
    return "\n".join(lines)


def export_builds(d: dict | None = None) -> str:
    """What ``adaptc.export("digits", DEVICE)`` emitted and chose in the same run."""
    d = d or load("export.json")
    builds = d.get("device_builds") or {}
    lines = ["| device | profile formats | emitted | chosen per format | shipped |", "|---|---|---|---|---|"]
    for dev, b in builds.items():
        per = ", ".join(f"{k}: `{v}`" for k, v in b["chosen_per_format"].items())
        lines.append(f"| `{dev}` | {', '.join(b['formats'])} | {', '.join(f'`{e}`' for e in b['emitted'])} | "
                     f"{per} | `{b['chosen']}` |")
    return "\n".join(lines)


# -- tflite_int8_anatomy.py: benchmarks/results/tflite_int8_anatomy.json ---------------------------------------
def tflite_int8_anatomy(d: dict | None = None) -> str:
    """Where the time of the int8 TFLite transformer goes, as differences between variants."""
    d = d or load("tflite_int8_anatomy.json")
    s = d["summary"]
    schemes = ("fp32", "int8_static_per_channel", "int8_dynamic")

    def cell(scheme: str, key: str, speed: str | None = None) -> str:
        v = f"{s[scheme][key]:.0f} us"
        return v + (f" ({s[scheme][speed]:.2f}x)" if speed and speed in s[scheme] else "")

    rows = [
        ("whole model", "total_us", "speedup_vs_fp32"),
        ("linear layers only (the model reduced to its linear layers)", "linear_layers_only_us",
         "linear_only_speedup_vs_fp32"),
        ("attention core (score / context matmuls, softmax, mask, scale, head transposes)", "attention_core_us", None),
        ("LayerNorms (lowered to MEAN / SQUARED_DIFFERENCE / RSQRT / MUL / ADD)", "layernorm_us", None),
        ("GELU instead of ReLU", "gelu_vs_relu_us", None),
    ]
    lines = ["| part (measured as the difference between variants) | fp32 | int8 static | int8 dynamic |",
             "|---|---|---|---|"]
    for label, key, speed in rows:
        lines.append(f"| {label} | " + " | ".join(cell(sc, key, speed) for sc in schemes) + " |")
    lines += ["", f"int8 attention matmuls (the attention-scale `mul` annotated too, int8 BATCH_MATMULs outside the "
              f"XNNPACK delegate): {s['int8_attention_matmuls_speedup_vs_fp32']:.2f}x the fp32 speed. "
              f"Run {d['created_utc']}; {d['method'].split(':')[0]}."]
    return "\n".join(lines)


# -- distill_bench.py: benchmarks/results/distill.json --------------------------------------------------------
DISTILL_LABELS = {
    "scratch": "student from scratch (labels only)",
    "kd_logit": "logit-only KD (Hinton, T=4), random init",
    "kd_logit_skel": "logit-only KD from the pruned skeleton",
    "adaptc": "**adaptc**: skeleton + hybrid loss, one joint stage (default for CNNs)",
    "adaptc_progressive": "**adaptc, progressive** (30% alignment first; default with attention)",
    "adaptc_ta": "adaptc + teacher assistant",
    "adaptc_qat": "**adaptc + QAT**, joint stage (int8 ONNX artifact)",
}


def distill(results: dict | None = None) -> str:
    """Mean ± std over seeds of test accuracy, per dataset and method."""
    results = results or load("distill.json")
    dss = list(results["datasets"])
    head = "| method | " + " | ".join(
        f"{ds} (teacher {100 * results['datasets'][ds]['teacher']['test']:.2f}%, student "
        f"{results['datasets'][ds]['student']['params']:,} params = "
        f"{results['datasets'][ds]['student']['compression']:.1f}x fewer, {results['datasets'][ds]['student']['epochs']} epochs)"
        for ds in dss) + " |"
    lines = [head, "|---|" + "---|" * len(dss)]
    methods = [m for m in DISTILL_LABELS if any(m in results["datasets"][ds]["methods"] for ds in dss)]
    for m in methods:
        cells = []
        for ds in dss:
            v = results["datasets"][ds]["methods"].get(m)
            if v is None:
                cells.append("—")
                continue
            key = "int8_onnx_test" if m == "adaptc_qat" else "torch_test"
            c = f"{100 * v[key]['mean']:.2f} ± {100 * v[key]['std']:.2f}"
            if m == "adaptc" and "int8_onnx_test" in v:
                c += f" (int8 ONNX {100 * v['int8_onnx_test']['mean']:.2f})"
            cells.append(c)
        lines.append(f"| {DISTILL_LABELS[m]} | " + " | ".join(cells) + " |")
    ret = [f"{ds} {100 * d['retention_int8_onnx']:.2f}%" for ds, d in results["datasets"].items()
           if d.get("retention_int8_onnx")]
    lines.append("")
    lines.append("Retention of the teacher's test accuracy by adaptc + QAT on the int8 ONNX artifact: " + ", ".join(ret)
                 + f". Seeds {', '.join(map(str, results['seeds']))}; run {results['created']}"
                 + (" (--quick: not for the record)" if results.get("quick") else "") + ".")
    return "\n".join(lines)


def distill_teachers(results: dict | None = None) -> str:
    """The same recipes against teachers trained with several seeds: each teacher's row, then every claimed gain as
    a paired difference (same teacher, same student seed) with its spread."""
    results = results or load("distill_teachers.json")
    pct = lambda v: f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}" if v else "—"  # noqa: E731
    lines = ["| dataset | teacher seed | teacher test | student from scratch | adaptc | from scratch, int8 ONNX | "
             "adaptc + QAT, int8 ONNX |", "|---|---|---|---|---|---|---|"]
    gains = []
    for ds, d in results["datasets"].items():
        for ts, t in d["teachers"].items():
            m = t["methods"]
            lines.append(f"| {ds} | {ts} | {100 * t['teacher']['test']:.2f} | "
                         f"{pct(m.get('scratch', {}).get('torch_test'))} | {pct(m.get('adaptc', {}).get('torch_test'))} | "
                         f"{pct(m.get('scratch', {}).get('int8_onnx_test'))} | "
                         f"{pct(m.get('adaptc_qat', {}).get('int8_onnx_test'))} |")
        for name, g in d["gains"].items():
            gains.append(f"{ds}, {name}: {100 * g['mean']:+.2f} ± {100 * g['std']:.2f} points "
                         f"(from {100 * g['min']:+.2f} to {100 * g['max']:+.2f}, {g['n']} pairs)")
    lines += ["", "Paired gains over every (teacher seed, student seed) pair:", ""] + [f"- {g}" for g in gains]
    lines += ["", f"Student seeds {', '.join(map(str, results['seeds']))}; teacher seeds "
              f"{', '.join(map(str, results['teacher_seeds']))}; run {results['created']}"
              + (" (--quick: not for the record)." if results.get("quick") else ".")]
    return "\n".join(lines)


# -- minilm_bench.py: benchmarks/results/minilm.json (and minilm_batch16.json) --------------------------------
def _minilm_labels(d: dict) -> dict[str, str]:
    m = re.search(r"cut to (\d+) layers", d["rows"].get("truncated", {}).get("note", ""))
    layers = f"the student's {m.group(1)} layers" if m else "the student's layers"
    scheme = d["build"]["chosen"].get("scheme", "")
    kind = "static int8" if "static" in scheme else ("dynamic int8" if "dynamic" in scheme else scheme)
    return {
        "teacher_fp32": "teacher, ONNX fp32",
        "teacher_int8": 'teacher, dynamic int8 ONNX ("just quantize it")',
        "truncated": f"teacher truncated to {layers}, no training",
        "contrastive_student": "student skeleton, InfoNCE on the pairs only (no teacher), same epochs",
        "adaptc_student_fp32": "**adaptc student**, ONNX fp32",
        "adaptc_student_int8": f"**adaptc student, the build's int8 ONNX artifact** ({kind}, `{d['build']['artifact']}`)",
    }


def _mega(x: float) -> str:
    return f"{x / 1e6:.1f} M"


def minilm(d: dict | None = None) -> str:
    """Teacher, baselines and the adaptc student on the test pairs and the out-of-domain check."""
    d = d or load("minilm.json")
    labels = _minilm_labels(d)
    lines = ["| model | R@1 | R@10 | R@1 retention (95% interval) | cosine to teacher | out-of-domain R@1 (retention) "
             "| params (embeddings) | encoder MACs @128 (fraction) | size | host p50, ORT 1 thread | speed-up vs teacher fp32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in d["rows"].items():
        ret = _pct(r["r1_retention"])
        if name != "teacher_fp32" and r.get("r1_retention_ci95"):
            ret += f" ({_ci(r['r1_retention_ci95'])})"
        ood = f"{r['ood_r1']:.3f} ({_pct(r['ood_r1_retention'])}"
        if name == "adaptc_student_int8" and r.get("ood_r1_retention_ci95"):
            ood += f", {_ci(r['ood_r1_retention_ci95'])}"
        ood += ")"
        if name == "adaptc_student_int8":
            ret = f"**{ret}**"
        lines.append(
            f"| {labels.get(name, name)} | {r['r1']:.4f} | {r['r10']:.4f} | {ret} | {r['cos_to_teacher']:.3f} | {ood} | "
            f"{_mega(r['params'])} ({_mega(r['embedding_params'])}) | {r['encoder_macs'] / 1e6:.0f} M "
            f"({r['mac_fraction']:.3f}) | {r['size_mb']:.1f} MB | {r['median_ms']:.2f} ms | "
            f"{r['speedup_vs_teacher_fp32']:.2f}x |")
    lines += ["", f"{d['test_pairs']} test pairs, {d['ood_pairs']} out-of-domain pairs; run {d['created']} on "
              f"{d['host']['cpu']} ({d['host']['usable_cores']} cores)."]
    return "\n".join(lines)


def minilm_build(d: dict | None = None) -> str:
    """The build the benchmark ran (or reused) and what its search chose."""
    d = d or load("minilm.json")
    b, c = d["build"], d["build"]["chosen"]
    lines = ["| device | build time | status | chosen candidate | final epochs | QAT | parameters | "
             "validation R@1 (best QAT epoch) | test R@1 (torch) | shipped ONNX file |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| `{b['device']}` | {b['seconds'] / 60:.1f} min | {b['status']} | `{c['candidate']}` | {c['final_epochs']} | "
             f"{'yes' if c.get('qat') else 'no'} | {c['params'] / 1e6:.1f} M | {c['val']:.3f} | {c['test']:.3f} | "
             f"`{b['artifact']}` |",
             "", f"Why: {c['why']}."]
    return "\n".join(lines)


def minilm_targets(d: dict | None = None) -> str:
    """The MiniLM benchmark's targets, from the rows and ``targets`` of the results file."""
    d = d or load("minilm.json")
    rows, t = d["rows"], d["targets"]
    s8, tf, ti, tr = rows["adaptc_student_int8"], rows["teacher_fp32"], rows["teacher_int8"], rows["truncated"]
    lines = ["| target | result |", "|---|---|",
             f"| a student with <= 1/4 of the teacher's encoder MACs | {_pct(s8['mac_fraction'])} — "
             f"{_met(t.get('student_mac_fraction<=0.25'))} |",
             f"| ... keeps >= 95% of the teacher's R@1 on its int8 ONNX artifact | {_pct(s8['r1_retention'])} — "
             f"{_met(t.get('student_int8_r1_retention>=0.95'))} (R@1 {s8['r1']:.3f} vs {tf['r1']:.3f}; 95% interval "
             f"{_ci(s8.get('r1_retention_ci95'))}) |",
             f"| int8 artifact >= 5x faster than the fp32 teacher (ORT, 1 thread) | {s8['speedup_vs_teacher_fp32']:.2f}x — "
             f"{_met(t.get('student_int8_speedup>=5x'))} |",
             f"| faster than the int8 teacher, at retention >= the truncated teacher's | {s8['median_ms']:.2f} vs "
             f"{ti['median_ms']:.2f} ms; {_pct(s8['r1_retention'])} vs {_pct(tr['r1_retention'])} — "
             f"{_met(t.get('faster_than_teacher_int8') and t.get('retention>=truncated'))} |",
             f"| the {d['build']['device']} build within 30 minutes | {d['build']['seconds'] / 60:.1f} min — "
             f"{_met(t.get('build_minutes<=30'))} |"]
    return "\n".join(lines)


def minilm_batch16(d: dict | None = None, b16: dict | None = None) -> str:
    """The same benchmark with distillation batches of 16 texts (an experiment, not kept) beside the record."""
    d = d or load("minilm.json")
    b16 = b16 or load("minilm_batch16.json")
    lines = ["| run | build time | final epochs | validation R@1 | int8 artifact test R@1 (retention, 95% interval) | "
             "out-of-domain R@1 |", "|---|---|---|---|---|---|"]
    for label, r in (("batches of 32 (the task's setting; `minilm.json`)", d),
                     ("batches of 16 (`minilm_batch16.json`)", b16)):
        s8, c = r["rows"]["adaptc_student_int8"], r["build"]["chosen"]
        lines.append(f"| {label} | {r['build']['seconds'] / 60:.1f} min | {c['final_epochs']} | {c['val']:.3f} | "
                     f"{s8['r1']:.4f} ({_pct(s8['r1_retention'])}, {_ci(s8.get('r1_retention_ci95'))}) | "
                     f"{s8['ood_r1']:.3f} |")
    return "\n".join(lines)


# -- minilm_extra_text.py: benchmarks/results/minilm_extra_text.json ------------------------------------------
def _recipe(r: dict) -> str:
    parts = [r.get("mode", "mimicry from the build's student")]
    w = r.get("weights")
    if isinstance(w, dict):
        parts.append("weights " + ",".join(f"{k}={v:g}" for k, v in w.items()))
    v = r.get("variant")
    if isinstance(v, dict) and v:
        def val(x: Any) -> str:
            if isinstance(x, dict):
                return "(" + ", ".join(f"{k}={val(y)}" for k, y in x.items()) + ")"
            return f"{x:g}" if isinstance(x, float) else str(x)

        parts.append("variant " + ", ".join(f"{k}={val(x)}" for k, x in v.items()))
    if r.get("embeddings"):
        parts.append(f"word table {r['embeddings']}")
    if r.get("lr"):
        parts.append(f"lr {r['lr']:g}")
    return "; ".join(parts)


def _f3(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def minilm_extra_text(runs: list | None = None) -> str:
    """Every recorded run of the retention experiments, in order."""
    runs = runs or load("minilm_extra_text.json")
    lines = ["| # | run (UTC) | recipe | texts | epochs | validation R@1 | test R@1 | out-of-domain R@1 | minutes "
             "(training) |", "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs, 1):
        if "curve" in r and r["curve"] and isinstance(r["curve"][-1], dict):  # mimicry: start -> last epoch
            first, last = r["curve"][0], r["curve"][-1]
            val, ood = _f3(last.get("val_r1")), _f3(last.get("ood_r1"))
            test = f"{_f3(first.get('test_r1'))} -> {_f3(last.get('test_r1'))}"
        elif "test_r1_final" in r:
            val, ood = "—", "—"
            test = f"{_f3(r.get('test_r1_start'))} -> {_f3(r['test_r1_final'])}"
        else:
            val, test, ood = _f3(r.get("val_r1")), _f3(r.get("test_r1")), _f3(r.get("ood_r1"))
        mins = f"{r['seconds'] / 60:.0f}" if r.get("seconds") else "—"
        if r.get("train_seconds"):
            mins += f" ({r['train_seconds'] / 60:.1f})"
        lines.append(f"| {i} | {r['created'][:16].replace('T', ' ')} | {_recipe(r)} | {r['texts']:,} | {r['epochs']:g} | "
                     f"{val} | {test} | {ood} | {mins} |")
    return "\n".join(lines)


# -- minilm_static_branch.py: benchmarks/results/minilm_static_branch.json ------------------------------------
def minilm_static_branch(runs: list | None = None) -> str:
    """The last recorded run: the student alone, static branches alone, and fused."""
    runs = runs or load("minilm_static_branch.json")
    run = runs[-1]
    lines = ["| variant | validation R@1 | test R@1 | out-of-domain R@1 |", "|---|---|---|---|"]
    for r in run["rows"]:
        lines.append(f"| {r['variant']} | {r['val']:.4f} | {r['test']:.4f} | {r['ood']:.3f} |")
    fused = [r for r in run["rows"] if r["variant"].startswith("student +")]
    alone = next((r for r in run["rows"] if r["variant"] == "student"), None)
    best = run["best_on_validation"]
    tests = [r["test"] for r in fused]
    lines += ["", f"Run {run['created']}, student `{run['student']}`. Fused settings: {len(fused)}; test R@1 "
              f"{min(tests):.3f}-{max(tests):.3f}"
              + (f", {sum(t > alone['test'] for t in tests)} above the student alone" if alone else "")
              + f"; best on validation: {best['variant']} ({best['val']:.4f} / {best['test']:.4f} / {best['ood']:.3f})."]
    return "\n".join(lines)


# -- predictor_bench.py: benchmarks/results/predictor.json (+ predictor_host_*.json, calibrate_raw.json) -------
def _sum(s: dict, *keys: str) -> list[dict]:
    return [s[k] for k in keys]


def _multi(vals: list[dict], key: str, fmt: str, unit: str = "") -> str:
    """``a / b / c`` of one figure of several summaries, each with ``unit``."""
    return " / ".join(format(v[key], fmt) + unit for v in vals)


def _target(t: dict, *names: str) -> str:
    got = [t[n] for n in names if n in t]
    return "" if not got else ("met" if all(g["met"] for g in got) else "**not met**")


def predictor(d: dict | None = None) -> str:
    """Host and phone rows against the predictor, with the targets of ``targets``."""
    d = d or load("predictor.json")
    s, t = d["summary"], d["targets"]
    hl, hm, ph = s["host_latency"], s["host_memory"], s["phones"]
    lines = ["| set | rows | median abs error | within +-20% | Spearman | target |", "|---|---|---|---|---|---|"]
    a = hl["all"]
    lines.append(f"| host latency, all | {a['n']} | {a['median_abs_error_pct']:.1f}% | {a['within_20pct']:.1f}% | "
                 f"{a['spearman']:.3f} | <= 10%, >= 90%: "
                 f"{_target(t, 'host_latency_median_abs_error <= 10', 'host_latency_within_20pct >= 90')} |")
    for rt in ("onnxruntime", "tflite"):
        v = _sum(hl, f"{rt}/fp32", f"{rt}/int8", f"{rt}/int8dyn")
        lines.append(f"| host latency, {rt} fp32 / int8 / dynamic int8 | {_multi(v, 'n', 'd')} | "
                     f"{_multi(v, 'median_abs_error_pct', '.1f', '%')} | "
                     f"{_multi(v, 'within_20pct', '.0f', '%')} | {_multi(v, 'spearman', '.2f')} | |")
    if "family:BERT" in hl:
        b = hl["family:BERT"]
        lines.append(f"| host latency, BERT-style encoders | {b['n']} | {b['median_abs_error_pct']:.1f}% (signed "
                     f"{b['median_signed_error_pct']:+.1f}%) | {b['within_20pct']:.0f}% | {b['spearman']:.3f} | |")
    a = hm["all"]
    lines.append(f"| host peak memory, all | {a['n']} | {a['median_abs_error_pct']:.1f}% | {a['within_20pct']:.1f}% | "
                 f"{a['spearman']:.3f} | >= 90%: {_target(t, 'host_memory_within_20pct >= 90')} |")
    v = _sum(hm, "onnxruntime", "tflite")
    lines.append(f"| host peak memory, onnxruntime / tflite | {_multi(v, 'n', 'd')} | "
                 f"{_multi(v, 'median_abs_error_pct', '.1f', '%')} | "
                 f"{_multi(v, 'within_20pct', '.0f', '%')} | {_multi(v, 'spearman', '.2f')} | |")
    names = {"pixel4": "Pixel 4", "galaxy-s10": "Galaxy S10"}
    for dev in ("pixel4", "galaxy-s10"):
        for prec in ("fp32", "int8"):
            k = f"held_out:{dev}/{prec}"
            if k not in ph:
                continue
            v = ph[k]
            lines.append(f"| {names[dev]}, {prec}, held out | {v['n']} | {v['median_abs_error_pct']:.1f}% | "
                         f"{v['within_20pct']:.0f}% | {v['spearman']:.3f} | <= 25%, >= 0.9: "
                         f"{_target(t, f'{k} median_abs_error <= 25', f'{k} spearman >= 0.9')} |")
    order = ("pixel4/fp32", "pixel4/int8", "galaxy-s10/fp32", "galaxy-s10/int8")
    for prefix, label in (("held_out_original", "the first held-out models alone (those of calibration_latency.csv)"),
                          ("train", "training rows, for reference")):
        v = [ph.get(f"{prefix}:{k}") for k in order]
        if not all(v):
            continue
        rho = [f"{x['spearman']:.2f}" if x["spearman"] >= 0.9 else f"**{x['spearman']:.2f}**" for x in v]
        lines.append(f"| ({label}: Pixel 4 fp32 / int8, S10 fp32 / int8) | {v[0]['n']} each | "
                     f"{_multi(v, 'median_abs_error_pct', '.1f')}% | "
                     f"{_multi(v, 'within_20pct', '.0f')}% | {' / '.join(rho)} | |")
    lines += ["", f"Run {d['date']}, predictor {d['predictor']}, host {d['cpu']}; {s['host_models']} host models."]
    return "\n".join(lines)


def predictor_families(d: dict | None = None) -> str:
    """Host latency per model family (all runtimes and precisions together)."""
    d = d or load("predictor.json")
    hl = d["summary"]["host_latency"]
    lines = ["| family | rows | median abs error | median signed error | within +-20% | largest error | Spearman |",
             "|---|---|---|---|---|---|---|"]
    for k, v in hl.items():
        if k.startswith("family:"):
            lines.append(f"| {k.split(':', 1)[1]} | {v['n']} | {v['median_abs_error_pct']:.1f}% | "
                         f"{v['median_signed_error_pct']:+.1f}% | {v['within_20pct']:.0f}% | {v['max_abs_error_pct']:.0f}% | "
                         f"{v['spearman']:.3f} |")
    return "\n".join(lines)


def predictor_classes(d: dict | None = None) -> str:
    """Held-out phone error per core class, and the shipped profiles' classes no published row validates."""
    d = d or load("predictor.json")
    cc = d["summary"].get("core_classes", {})
    lines = ["| core class | shipped profiles | held-out rows, fp32 / int8 (from) | median abs error, fp32 / int8 | "
             "Spearman, fp32 / int8 |", "|---|---|---|---|---|"]
    for cls in sorted({k.rsplit("/", 1)[0] for k in cc}):
        f, i = cc.get(f"{cls}/fp32", {}), cc.get(f"{cls}/int8", {})
        profs = ", ".join(f"`{x}`" for x in (f.get("profiles") or i.get("profiles") or []))
        if not f.get("n") and not i.get("n"):
            lines.append(f"| {cls} | {profs} | 0 | not validated: no published rows | — |")
            continue
        src = ", ".join(f.get("rows_from") or i.get("rows_from") or [])
        lines.append(f"| {cls} | {profs} | {f.get('n', 0)} / {i.get('n', 0)} ({src}) | "
                     f"{f.get('median_abs_error_pct', float('nan')):.1f}% / {i.get('median_abs_error_pct', float('nan')):.1f}% | "
                     f"{f.get('spearman', float('nan')):.3f} / {i.get('spearman', float('nan')):.3f} |")
    return "\n".join(lines)


def predictor_macs(d: dict | None = None) -> str:
    """The phone models' torch re-implementations against the published file's MACs and parameters."""
    d = d or load("predictor.json")
    train, held = set(d.get("train_models", [])), set(d.get("held_out_models", []))
    lines = ["| model | split | MACs, published (M) | MACs, exported graph (M) | difference | parameters, published (M) | "
             "parameters, torch (M) |", "|---|---|---|---|---|---|---|"]
    for k, v in d["macs_check"].items():
        split = "training" if k in train else ("held out" if k in held else "—")
        diff = 100 * (v["graph_macs_m"] / v["csv_macs_m"] - 1)
        lines.append(f"| `{k}` | {split} | {v['csv_macs_m']:.1f} | {v['graph_macs_m']:.1f} | {diff:+.1f}% | "
                     f"{v['csv_params_m']:.2f} | {v['torch_params_m']:.2f} |")
    return "\n".join(lines)


def predictor_runs(files: tuple[str, ...] = ("predictor.json", "predictor_host_2026-11-30.json")) -> str:
    """The recorded host runs side by side: the same model and constants, measured at different hours."""
    lines = ["| results file | date | host rows | latency: median abs error | within +-20% | against each row's "
             "fastest run: median / within | memory within +-20% |", "|---|---|---|---|---|---|---|"]
    for f in files:
        d = load(f)
        s = d["summary"]
        a, m, v = s["host_latency"]["all"], s["host_memory"]["all"], s.get("host_latency_vs_min", {}).get("all")
        vm = f"{v['median_abs_error_pct']:.1f}% / {v['within_20pct']:.1f}%" if v else "—"
        lines.append(f"| `{f}` | {d['date']} | {a['n']} | {a['median_abs_error_pct']:.1f}% | {a['within_20pct']:.1f}% | "
                     f"{vm} | {m['within_20pct']:.1f}% |")
    return "\n".join(lines)


def calibration(d: dict | None = None) -> str:
    """The calibration the shipped x86_64 constants come from (``adaptc calibrate --raw``)."""
    d = d or load("calibrate_raw.json")
    h, ref = d["host"], d["reference"]
    counts: dict[str, int] = {}
    for r in d["micro"]:
        counts[r["runtime"]] = counts.get(r["runtime"], 0) + 1
    lines = ["| runtime | micro-benchmark measurements | latency fit: median abs error before -> after | "
             "within +-20% before -> after |", "|---|---|---|---|"]
    for rt, v in d["fit"].items():
        b, a = v["latency"]["before"], v["latency"]["after"]
        lines.append(f"| {rt} | {counts.get(rt, 0)} | {b['median_abs_error_pct']:.1f}% -> {a['median_abs_error_pct']:.1f}% | "
                     f"{b['within_20pct']:.0f}% -> {a['within_20pct']:.0f}% |")
    lines += ["", f"Host: {h['cpu']}, {h['usable_cores']} cores, {d['ghz']} GHz; reference convolution "
              f"{ref['fp32_gflops']:.0f} GFLOP/s fp32 ({ref['fp32_gflops_2t']:.0f} at 2 threads), {ref['int8_gops']:.0f} "
              f"GOP/s int8; bandwidth {ref['bandwidth_gbps']:.1f} GB/s; {len(d['memory'])} memory graphs. "
              f"Calibration of {d['date'].split(' ')[0]}."]
    return "\n".join(lines)


# -- quant_bench.py: benchmarks/results/quant.json --------------------------------------------------------------
def _mb(b: float | None) -> str:
    return "—" if b is None else (f"{b / 2**20:.2f} MB" if b >= 2**20 else f"{b / 2**10:.0f} KB")


def _metric_cell(r: dict | None) -> str:
    if not r:
        return "—"
    if r.get("metric") is None:
        if r.get("structure_check") is not None:
            return "structure " + ("passed" if r["structure_check"] else "failed") + " (no numerics on Linux)"
        return r.get("status", "—") + (f": {r['error'][:60]}" if r.get("error") else "")
    drop = r.get("drop_vs_fp32")
    return f"{100 * r['metric']:.1f}%" + ("" if drop is None else f" ({0.0 - 100 * drop:+.1f})")


def _ms(r: dict | None) -> str:
    return "—" if not r or r.get("host_p50_ms") is None else f"{r['host_p50_ms']:.2f} ms"


def _moves(r: dict | None) -> str:
    if not r or not r.get("attempts"):
        return "—" if not r else "first attempt"
    a = r["attempts"]
    fl = f"; float: {len(r['float_layers'])} layers, {100 * (r.get('float_macs_share') or 0):.1f}% of MACs" if r.get(
        "float_layers") else ""
    return f"{len(a)} attempts, shipped: {a[-1]['moves']}{fl}"


def quant_table(d: dict | None = None) -> str:
    """Per network and format: fp32, min-max int8 and the int8 file adaptc ships (metric and drop in points
    against the fp32 file, size, host latency), the moves that made it, and the acceptance checks."""
    d = d or load("quant.json")
    lines = ["| network | format | fp32: metric, size, host p50 | int8 min-max: metric (drop), size, p50 | "
             "int8 adaptc: metric (drop), size, p50 | how adaptc got there | within 1 pt / size / faster |",
             "|---|---|---|---|---|---|---|"]
    order = {"onnx": 0, "tflite": 1, "coreml": 2}
    for r in sorted(d["results"], key=lambda r: (r["task"], order.get(r["format"], 9))):
        f, m, a, v = r.get("fp32"), r.get("minmax"), r.get("adaptc"), r.get("verdict", {})
        checks = "not checkable here" if not v.get("checked") else " / ".join(
            ("yes" if v[k] else "**no**") for k in ("within_1_point", "small_enough", "faster_than_fp32"))
        if v.get("checked"):
            checks += f" ({v['size_ratio']:.1f}x)"
        lines.append(
            f"| {r['task']} | {r['format']} | {_metric_cell(f)}, {_mb((f or {}).get('size_bytes'))}, {_ms(f)} | "
            f"{_metric_cell(m)}, {_mb((m or {}).get('size_bytes'))}, {_ms(m)} | "
            f"{_metric_cell(a)}, {_mb((a or {}).get('size_bytes'))}, {_ms(a)} | {_moves(a)} | {checks} |")
    eq = [r for r in d["results"] if r.get("equalize_only")]
    for r in eq:
        v = r.get("verdict", {})
        closes = v.get("equalize_closes")
        lines += ["", f"Equalization + bias correction alone on {r['task']} ({r['format']}): "
                  f"{_metric_cell(r['equalize_only'])} against min-max {_metric_cell(r.get('minmax'))}; "
                  + ("not checkable here." if "minmax_gap" not in v else
                     f"no min-max gap to close ({100 * v['minmax_gap']:.1f} points)." if closes is None else
                     f"closes {100 * closes:.0f}% of min-max's {100 * v['minmax_gap']:.1f}-point gap to fp32.")]
    pts = [r for r in d["results"] if r.get("per_tensor")]
    if pts:
        lines += ["", "int8 weights per tensor (one scale per layer), the depthwise hard case of Nagel et al. (2019):", "",
                  "| network | format | fp32 | min-max | min-max + equalization + bias correction | gap closed | "
                  "adaptc's int8 file: metric (drop), size, p50 | how |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(pts, key=lambda r: order.get(r["format"], 9)):
            pt, v = r["per_tensor"], r.get("verdict", {}).get("per_tensor") or {}
            closes = v.get("equalize_closes")
            gap = ("not checkable here" if not v else "no gap") if closes is None else (
                f"{100 * closes:.0f}% of {100 * v['minmax_gap']:.1f} pts")
            if closes is not None:
                gap += ": at least half" if v.get("equalize_closes_half") else ": **under half**"
            a = pt.get("adaptc")
            lines.append(f"| {r['task']} | {r['format']} | {_metric_cell(pt.get('fp32'))} | {_metric_cell(pt.get('minmax'))} | "
                         f"{_metric_cell(pt.get('equalize_only'))} | {gap} | {_metric_cell(a)}, "
                         f"{_mb((a or {}).get('size_bytes'))}, {_ms(a)} | {_moves(a)} |")
    h = d["host"]
    where = h if isinstance(h, str) else (f"{h.get('cpu', h.get('machine'))}, {h.get('machine')}"
                                          + (f", int8 dot products: {h['int8_dot_product']}"
                                             if h.get("int8_dot_product") else ""))  # fmt: skip
    lines += ["", f"Measured {d['date']} on {where}: host latency is the median of a fresh process at 1 thread in "
              "each file's own runtime (onnxruntime, LiteRT); sizes are the files' bytes."]
    return "\n".join(lines)


def scale_throughput(d: dict | None = None) -> str:
    """Training throughput (images/s) per thread count, and the thread count adaptc picks."""
    d = d or load("scale.json")
    t = d.get("throughput") or {"rows": []}
    lines = ["| task | teacher MFLOPs / sample | threads | teacher forward, images/s | distillation, images/s | "
             "adaptc's default threads |", "|---|---|---|---|---|---|"]
    for r in t["rows"]:
        lines.append(f"| {r['task']} | {r['teacher_mflops_per_sample']:,.0f} | {r['threads']} | "
                     f"{r['teacher_forward_images_per_s']:,.1f} | {r['distill_images_per_s']:,.1f} | {r['rule_threads']} |")
    lines += ["", f"Measured on {d['host'].get('cpu', 'this host')} ({d['host'].get('usable_cores', '?')} usable cores): "
              f"{t.get('note', '')}."]
    return "\n".join(lines)


def scale_builds(d: dict | None = None) -> str:
    """The budgeted builds: wall time against the budget, peak RSS, teacher passes, the plan, what shipped."""
    d = d or load("scale.json")
    lines = ["| build | budget | wall time | peak RSS (report / time -v) | teacher passes | plan | chosen student "
             "(val, test; teacher) | shipped | status |", "|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(k for k in d if k.startswith(("recognizer", "detector"))):
        b = d[name]
        res, plan, ch = b.get("resources") or {}, b.get("plan") or {}, b.get("chosen_student") or {}
        budget = res.get("time_budget_s")
        over = f" ({100 * (b['wall_s'] / budget - 1):+.1f}%)" if budget else ""
        r0 = (b.get("rungs") or [{}])[0]  # what rung 0 trained (its first epoch, timed, may re-fit the plan)
        p = (f"{plan.get('train_samples', 0):,} of {plan.get('full_train_samples', 0):,} samples; rung 0: "
             f"{len(plan.get('rung0_skeletons') or [])} candidates x {r0.get('epochs', plan.get('rung0_epochs'))} "
             f"epoch(s) on {plan.get('rung_samples', 0):,} (planned {plan.get('rung0_epochs')})") if plan else "—"
        tm = (b.get("teacher_metric") or {}).get("value")
        warm = " (warm start)" if ch.get("warm_start") else ""
        student = (f"{ch.get('skeleton')} {ch.get('scheme')}, {ch.get('final_epochs')} final epochs{warm}: "
                   f"{_f3(ch.get('val'))}, {_f3(ch.get('test'))}; teacher {_f3(tm)}") if ch.get("skeleton") else "—"
        sh = b.get("shipped") or {}
        shipped = f"{sh.get('file')} ({_mb(sh.get('size_bytes'))})" if sh else "nothing"
        lines.append(f"| {name} | {budget or '—'} s | {b['wall_s']:.0f} s{over} | {res.get('peak_rss_mb', '—')} / "
                     f"{b.get('peak_rss_mb_time_v', '—')} MB | {b.get('teacher_passes_over_training_data')} | {p} | "
                     f"{student} | {shipped} | {b.get('status')} |")
    return "\n".join(lines)


# -- reliability.py: benchmarks/results/reliability.json -------------------------------------------------------
def _yes(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def reliability(d: dict | None = None) -> str:
    """The reliability run: fuzz campaigns, kills and resumes, a full disk, two fresh-cache builds."""
    d = d or load("reliability.json")
    lines = ["| check | cases | exit 0 | exit 2 | other exits | tracebacks | broke the one-line rule |",
             "|---|---|---|---|---|---|---|"]
    for name, c in (d.get("fuzz") or {}).get("campaigns", {}).items():
        lines.append(f"| fuzz: {name} | {c['cases']:,} | {c['exit_0']:,} | {c['exit_2']:,} | {c['other_exits']} | "
                     f"{c['tracebacks']} | {c['rule_broken']} |")
    for c in (d.get("disk") or {}).get("cases", []):
        lines.append(f"| {c['case']} | 1 | {int(c['exit'] == 0)} | {int(c['exit'] == 2)} | "
                     f"{int(c['exit'] not in (0, 2))} | {int(c['traceback'])} | {int(len(c['lines']) != 1)} |")
    k = d.get("kills")
    if k:
        phases = ", ".join(f"{p} {n}" for p, n in k["kills_by_phase"].items())
        lines += ["", "| kills (SIGKILL) | runs | half-written files seen | finished records redone (kept) | "
                  "tracebacks | same choice | same metrics |", "|---|---|---|---|---|---|---|",
                  f"| {k['kills']} ({phases}) | {k['runs']} | {k['half_written_files_seen']} | "
                  f"{k['finished_records_redone']} ({k['finished_records_kept']}) | {k['tracebacks']} | "
                  f"{_yes(k['same_choice'])} | {_yes(k['same_metrics'])} |"]
    sd = d.get("seeds")
    if sd:
        a, b = sd["runs"]
        lines += ["", "| fresh-cache builds, seed 0 | teacher test | student | val / test | shipped | "
                  "byte-identical artifacts |", "|---|---|---|---|---|---|"]
        for i, r in enumerate((a, b), 1):
            lines.append(f"| build {i} (exit {r['exit']}, {r['seconds']:.0f} s) | {_f3(r['teacher_test'])} | "
                         f"{r['student']} | {_f3(r['val'])} / {_f3(r['test'])} | {r['chosen']} | "
                         f"{', '.join(sd['byte_identical']) or 'none'} |")
        timing = (" (the shipped file differs: the int8 guardrail's host timing decided it, see "
                  "formats-and-schemes.md)") if sd.get("shipped_by_host_timing") else ""
        lines += ["", f"Same teacher: {_yes(sd['same_teacher'])}; same choice: {_yes(sd['same_choice'])}{timing}; same "
                  f"metrics: {_yes(sd['same_metrics'])}; not byte-identical: "
                  f"{', '.join(sd['not_byte_identical']) or 'none'}."]
    lines += ["", f"Run {d.get('created', '?')} on {d.get('host', {}).get('cpu', 'this host')} "
              "(`python benchmarks/reliability.py fuzz kills disk seeds`)."]
    return "\n".join(lines)


# -- dashboard_bench.py: benchmarks/results/dashboard.json --------------------------------------------------------
def dashboard(d: dict | None = None) -> str:
    """The ten real builds recorded into one history, and the dashboard drawn from it in headless Chromium."""
    d = d or load("dashboard.json")
    lines = ["| # | task | device | what | exit | seconds |", "|---|---|---|---|---|---|"]
    for i, b in enumerate(d["builds"], 1):
        lines.append(f"| {i} | {b['task']} | {b['device']} | {b['what']} | {b['exit']} | {b['seconds']:.0f} |")
    br = d["browser"]
    points = sum(t["points"] for p in br["plots"] for t in p["traces"])
    cmp = d["compare_against_history"]
    lines += [
        "",
        "| page | size | plots drawn | points | render in Chromium (target < 2 s) | console errors | requests off the file | "
        "regression on the page | `compare --against-history` |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {d['runs']} runs, {d['artifacts']} artifacts, {len(d['devices'])} devices, {len(d['tasks'])} tasks | "
        f"{d['page_bytes'] / 2**20:.2f} MB | {sum(1 for p in br['plots'] if p['svg'] > 0)} of {len(br['plots'])} | "
        f"{points:,} | {br['render_s']:.2f} s | {len(br['console_errors']) + len(br['page_errors'])} | "
        f"{len(br['remote_requests'])} | {'yes' if d['regression_on_page'] else 'no'} | exit {cmp['exit']} |",
        "",
        f"Run {d['created']} on {d.get('host', {}).get('cpu', 'this host')} "
        "(`python benchmarks/dashboard_bench.py`).",
    ]
    return "\n".join(lines)


# -- fleet_bench.py: benchmarks/results/fleet.json --------------------------------------------------------------
def fleet(d: dict | None = None) -> str:
    """Per task: three single-device builds against one fleet build (wall time of each command, one run)."""
    d = d or load("fleet.json")
    lines = ["| task | device | single build | its choice | fleet's choice | same choice | same file shipped |",
             "|---|---|---|---|---|---|---|"]
    summary = ["| task | sum of 3 single builds | most expensive single | fleet | fleet / most expensive | "
               "fleet / sum | trials: 3 singles / fleet | acceptance (<= 1.5x, same choices) |",
               "|---|---|---|---|---|---|---|---|"]
    for task, t in d["tasks"].items():
        for dev, s in t["singles"].items():
            f = t["fleet"]["devices"][dev]
            lines.append(f"| {task} | {dev} | {s['wall_s']:.0f} s | {s['candidate']} -> {s['shipped']} | "
                         f"{f['candidate']} -> {f['shipped']} | {'yes' if t['same_choice'][dev] else '**no**'} | "
                         f"{'yes' if t['same_shipped_file'][dev] else 'no'} |")
        ok = t["fleet_over_most_expensive"] <= 1.5 and all(t["same_choice"].values())
        summary.append(f"| {(task + ' ' + ' '.join(t['options'])).strip()} | {t['sum_of_singles_s']:.0f} s | "
                       f"{t['most_expensive_single_s']:.0f} s | {t['fleet']['wall_s']:.0f} s | "
                       f"{t['fleet_over_most_expensive']:.2f}x | {t['fleet_over_sum']:.2f}x | "
                       f"{t['trials_of_singles']} / {t['fleet']['trials']['in_store']} | {_met(ok)} |")
    runs = ", ".join(f"{task} {t.get('created', d['created'])}" for task, t in d["tasks"].items())
    return "\n".join([*summary, "", *lines, "", f"Runs: {runs}, on {d['host']['cpus']} CPUs "
                      "(`python benchmarks/fleet_bench.py`; a task's builds run one after another)."])


def fleet_ray(d: dict | None = None) -> str:
    """The digits fleet on a Ray cluster of this machine (2 CPUs): choices, wall time, scaling, a killed worker."""
    d = d or load("fleet.json")
    r = d["ray"]
    local = d["tasks"]["digits"]["fleet"]["wall_s"]
    k = r["killed_worker"]
    sc = r["scaling"]
    w1, w2 = sc["workers"]["1"], sc["workers"]["2"]
    lines = [
        "| run | wall | same choices as local | same trials (key -> validation metric) as local |",
        "|---|---|---|---|",
        f"| fleet, local executor | {local:.0f} s | — | — |",
        f"| fleet, Ray (2 worker CPUs) | {r['fleet']['wall_s']:.0f} s ({r['ray_over_local']:.2f}x local) | "
        f"{'yes' if all(r['same_choice_as_local'].values()) else '**no**'} | "
        f"{'yes' if r['same_trials_as_local'] else '**no**'} |",
        f"| fleet, Ray, a worker killed mid-trial | {k['wall_s']:.0f} s | "
        f"{'yes' if all(k['same_choice_as_local'].values()) else '**no**'} | "
        f"{'yes' if k['same_trials_as_local'] else '**no**'} |",
        "",
        f"Killed worker: {len(k['killed_pids'])} killed, {len(k['retries'])} trial submitted again "
        f"({'; '.join(k['retries']) or 'none'}); {k['trials_stored']} trials stored once each, attempts per rung "
        f"trial {k['trial_attempts']}; the rerun of the same command trained {k['finished_trials_redone_by_rerun']} "
        f"trials ({k['rerun_s']:.0f} s).",
        "",
        f"| {sc['trials']} independent trials (rung 0 of the pixel8 search) | in process | Ray, 1 worker CPU | "
        "Ray, 2 worker CPUs | speed-up 1 -> 2 |",
        "|---|---|---|---|---|",
        f"| wall time of the rung | {sc['local_s']:.1f} s | {w1['rung0_s']:.1f} s | {w2['rung0_s']:.1f} s | "
        f"{w1['rung0_s'] / w2['rung0_s']:.2f}x |",
        "",
        f"Ray {r['ray_version']}, a head started on this machine (`ray start --head --num-cpus N`); the driver's "
        "build and the workers share the same 2 cores.",
    ]
    return "\n".join(lines)


# -- the registry -----------------------------------------------------------------------------------------------
#: table name (the docs marker) -> renderer
TABLES: dict[str, Callable[[], str]] = {
    "export-models": export_models,
    "export": export_table,
    "export-targets": export_targets,
    "export-builds": export_builds,
    "tflite-int8-anatomy": tflite_int8_anatomy,
    "distill": distill,
    "distill-teachers": distill_teachers,
    "minilm-build": minilm_build,
    "minilm": minilm,
    "minilm-targets": minilm_targets,
    "minilm-batch16": minilm_batch16,
    "minilm-extra-text": minilm_extra_text,
    "minilm-static-branch": minilm_static_branch,
    "predictor": predictor,
    "predictor-families": predictor_families,
    "predictor-macs": predictor_macs,
    "predictor-classes": predictor_classes,
    "predictor-runs": predictor_runs,
    "calibration": calibration,
    "quant": quant_table,
    "scale-throughput": scale_throughput,
    "scale-builds": scale_builds,
    "reliability": reliability,
    "dashboard": dashboard,
    "fleet": fleet,
    "fleet-ray": fleet_ray,
}

#: benchmark (its script's name without ``.py`` / ``_bench``) -> the tables its results feed
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "export": ("export-models", "export", "export-targets", "export-builds"),
    "tflite_int8_anatomy": ("tflite-int8-anatomy",),
    "distill": ("distill", "distill-teachers"),
    "minilm": ("minilm-build", "minilm", "minilm-targets", "minilm-batch16"),
    "minilm_extra_text": ("minilm-extra-text",),
    "minilm_static_branch": ("minilm-static-branch",),
    "predictor": ("predictor", "predictor-families", "predictor-macs", "predictor-classes", "predictor-runs",
                  "calibration"),
    "quant": ("quant",),
    "scale": ("scale-throughput", "scale-builds"),
    "reliability": ("reliability",),
    "dashboard": ("dashboard",),
    "fleet": ("fleet", "fleet-ray"),
}


def render(name: str) -> str:
    """The markdown of one table (its block's content, without the markers)."""
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r} (known: {', '.join(TABLES)})")
    return TABLES[name]().rstrip("\n") + "\n"


def blocks(text: str) -> list[tuple[str, str]]:
    """(name, content) of every table block in a page's text."""
    return [(m.group("name"), m.group("body")) for m in BLOCK.finditer(text)]


def rewrite(text: str, names: set[str] | None = None) -> str:
    """The page's text with the blocks of ``names`` (default: all) replaced by their rendered tables."""

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        if names is not None and name not in names:
            return m.group(0)
        return m.group(1) + render(name) + m.group(4)

    return BLOCK.sub(sub, text)


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def update_docs(names: set[str] | None = None, check: bool = False) -> list[Path]:
    """Rewrite the blocks of ``names`` (default: all) in every docs page; return the pages that changed (with
    ``check``: that would change; nothing is written)."""
    changed = []
    for page in doc_pages():
        old = page.read_text()
        new = rewrite(old, names)
        if new != old:
            changed.append(page)
            if not check:
                page.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="benchmarks: " + ", ".join(BENCHMARKS) + "; tables: " + ", ".join(TABLES))
    ap.add_argument("names", nargs="*", help="benchmarks (or single tables) whose tables to regenerate")
    ap.add_argument("--all", action="store_true", help="every table")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a docs table is stale")
    ap.add_argument("--print", action="store_true", help="print the rendered tables instead of writing docs/")
    args = ap.parse_args(argv)
    if not args.all and not args.names:
        ap.error("name a benchmark or table, or give --all")
    names: set[str] = set(TABLES) if args.all else set()
    for n in args.names:
        key = n.removesuffix(".py").removesuffix("_bench")
        if key in BENCHMARKS:
            names.update(BENCHMARKS[key])
        elif key in TABLES:
            names.add(key)
        else:
            ap.error(f"unknown benchmark or table {n!r}")
    if args.print:
        for n in (t for t in TABLES if t in names):
            print(f"<!-- table:{n} -->\n{render(n)}<!-- /table:{n} -->\n")
        return 0
    changed = update_docs(names, check=args.check)
    rel = [str(p.relative_to(ROOT)) for p in changed]
    if args.check:
        if rel:
            print("stale tables in: " + ", ".join(rel) + " (run python benchmarks/tables.py --all)", file=sys.stderr)
            return 1
        print("every docs table matches its results JSON")
        return 0
    print(("rewrote " + ", ".join(rel)) if rel else "docs tables already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
