"""MiniLM benchmark: a real pretrained sentence encoder (all-MiniLM-L6-v2) shrunk for devices.

One run builds the student with adaptc (``adaptc build --task minilm --device pixel8``, timed), then compares,
on the test pairs (retrieval of stdlib docstring bodies from their summary lines):

  teacher fp32          the pretrained encoder, ONNX fp32
  teacher int8          "just quantize it": the teacher as dynamic int8 ONNX (per channel)
  truncated             the teacher cut to the student's number of layers (the least important dropped), no training
  contrastive student   the student's skeleton trained on the (summary, body) pairs, InfoNCE, no teacher
  adaptc student fp32   the built student, ONNX fp32
  adaptc student int8   the built student's int8 ONNX artifact (the build's parity-gated file)

For each: R@1, R@10, mean cosine to the teacher's embeddings, R@1 retention with a 95% paired bootstrap interval
over the summaries (the test split's sampling error); the same three on an out-of-domain check no
run trains on (500 summary -> body pairs of scipy, sympy and networkx docstrings, ``minilm_ood.py``: the task's
splits are all standard-library modules); parameters (and those of the embedding table), encoder MACs at 128
tokens (counted on the exported graph), host latency in onnxruntime (1 thread, batch 1, 128 tokens, median of
100 runs in a fresh process). Results: benchmarks/results/minilm.json, and minilm.png (R@1 retention against host
latency, the targets drawn in).

    python benchmarks/minilm_bench.py [--out-dir adaptc-out/minilm-pixel8] [--device pixel8]
    python benchmarks/minilm_bench.py --plot-only     (minilm.png from minilm.json)

Needs the [text] extra: pip install -c constraints.txt -e ".[text]"
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(__import__("tables").main(["minilm"]))

import numpy as np
import torch
import torch.nn.functional as F
from minilm_ood import PACKAGES as OOD_PACKAGES, out_of_domain_pairs

RESULTS = Path(__file__).parent / "results"


def embed_onnx(path: Path, task, split) -> np.ndarray:  # noqa: ANN001
    """The file's embeddings of a split in onnxruntime. Dynamically quantized files (``*.int8dyn.onnx``) run one
    sample per call, as on a device and in the build's parity gate: their activation scales are taken over
    the whole batch, so a batch of 64 scores differently (0.3003 vs 0.2934 R@1 for the same file)."""
    from adaptc.measure import open_runner, run_batched

    batch = 1 if ".int8dyn." in path.name else 64
    return run_batched(open_runner("onnxruntime", path, 2), split.numpy_inputs(), batch=batch)


def scores(emb: np.ndarray, teacher_emb: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """R@1, R@10 and the mean cosine to the teacher's embeddings; and per summary (the first half of the rows)
    whether its own body is the nearest of all bodies (R@1 hits, for the bootstrap interval)."""
    from adaptc.tasks.minilm import retrieval_ranks

    ranks = retrieval_ranks(emb, len(emb) // 2)
    a = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    b = teacher_emb / np.linalg.norm(teacher_emb, axis=1, keepdims=True)
    return ({"r1": float((ranks < 1).mean()), "r10": float((ranks < 10).mean()),
             "cos_to_teacher": float((a * b).sum(1).mean())}, ranks == 0)


def retention_ci(hits: np.ndarray, teacher_hits: np.ndarray) -> list[float]:
    """95% paired bootstrap interval of R@1 retention: the summaries resampled with replacement (the same draw for
    both models), the bodies searched kept fixed; percentiles of sum(hits) / sum(teacher_hits) over the draws."""
    from adaptc.core.stats import ratio_interval

    return list(ratio_interval(hits, teacher_hits))


def export(model: torch.nn.Module, task, dest: Path, scheme: str = "fp32", fp32: Path | None = None) -> Path:  # noqa: ANN001
    from adaptc.exporters import ExportRequest, get_exporter

    req = ExportRequest(model=model.eval(), example_inputs=task.example_inputs, input_names=task.input_names,
                        output_names=task.output_names, calibration=task.train.subset(slice(0, 256)),
                        fp32_artifact=fp32)
    return get_exporter("onnx").export(req, scheme, dest).path


def host_latency(path: Path, task) -> dict[str, float]:  # noqa: ANN001
    from adaptc.measure import measure

    m = measure(path, "onnxruntime", [x.numpy() for x in task.example_inputs], threads=1, runs=100, warmup=10)
    return {"median_ms": m.latency_ms_median, "p90_ms": m.latency_ms_p90, "peak_memory_mb": m.peak_memory_mb}


def cost(path: Path) -> dict[str, float]:
    from adaptc.analysis import analyze

    c = analyze(path)
    emb = sum(o.params for o in c.ops if o.op_type == "Gather")
    return {"params": c.params, "embedding_params": emb, "encoder_macs": c.macs}


def train_contrastive(student: torch.nn.Module, task, epochs: int, lr: float, seed: int) -> torch.nn.Module:  # noqa: ANN001
    """InfoNCE on (summary, body) train pairs with in-batch negatives (temperature 0.05), no teacher."""
    from adaptc.tasks.minilm import load_pairs, load_tokenizer, tokenize
    from adaptc.tasks.base import trim_padding

    torch.manual_seed(seed)
    pairs = load_pairs()["train"]
    tok = load_tokenizer()
    q_ids, q_mask = tokenize(tok, pairs.summaries)
    b_ids, b_mask = tokenize(tok, pairs.bodies)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    n, bs = len(q_ids), 32
    steps = epochs * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    student.train()
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(bs):
            q = student(*trim_padding((q_ids[idx], q_mask[idx])))
            b = student(*trim_padding((b_ids[idx], b_mask[idx])))
            logits = F.normalize(q, dim=-1) @ F.normalize(b, dim=-1).T / 0.05
            target = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return student.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="pixel8")
    ap.add_argument("--out-dir", default="adaptc-out/minilm-bench")
    ap.add_argument("--skip-build", action="store_true",
                    help="reuse a finished build in --out-dir (its report's duration_s is the build time)")
    ap.add_argument("--contrastive-epochs", type=int, default=None, help="[default: the student's final epochs]")
    ap.add_argument("--out", default=str(RESULTS / "minilm.json"))
    ap.add_argument("--plot-only", action="store_true", help="draw minilm.png from the results file and stop")
    args = ap.parse_args(argv)
    if args.plot_only:
        plot(json.loads(Path(args.out).read_text()), Path(args.out).with_suffix(".png"))
        return 0
    out_dir = Path(args.out_dir)
    build_s = None
    if not args.skip_build:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "adaptc", "build", "--task", "minilm", "--device", args.device,
                            "--out", str(out_dir), "--formats", "onnx,tflite"], text=True)
        build_s = time.perf_counter() - t0
        print(f"build exit {r.returncode} in {build_s / 60:.1f} min", flush=True)
        if r.returncode not in (0, 3):
            return r.returncode
    report = json.loads((out_dir / "report.json").read_text())
    if build_s is None:  # --skip-build: the finished build's own wall time
        build_s = report.get("duration_s")
    chosen = report["search"]["chosen"]
    import adaptc
    from adaptc.search.trials import TrialStore
    from adaptc.slim import block_importance, drop_blocks, find_blocks
    from adaptc.profiles import load_profile
    from adaptc.tasks import get_task
    from adaptc.tasks.minilm import load_pairs
    from adaptc.core.versions import host_info, toolchain_versions

    torch.set_num_threads(2)
    task = get_task("minilm")
    ood = out_of_domain_pairs()
    student = TrialStore.open_final(out_dir)
    n_layers = len(find_blocks(student)[1])
    results: dict[str, object] = {
        "benchmark": "minilm", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": host_info(), "toolchain": toolchain_versions(),
        "build": {"device": args.device, "seconds": build_s, "status": report["status"], "chosen": chosen,
                  "artifact": report["chosen"]},
        "test_pairs": len(task.test) // 2, "ood_pairs": len(ood) // 2,
        "ood_check": "summary -> body pairs of " + ", ".join(OOD_PACKAGES) + " docstrings (benchmarks/minilm_ood.py)",
        "rows": {},
        "ci95": "r1_retention_ci95 / ood_r1_retention_ci95: paired bootstrap over the summaries (2,000 draws, the same "
                "for every row; the bodies searched kept fixed), 2.5 and 97.5 percentiles of the retention",
    }
    with tempfile.TemporaryDirectory(prefix="adaptc-minilm-") as d:
        d = Path(d)
        t_fp32 = export(task.model, task, d / "teacher.onnx")
        t_emb = embed_onnx(t_fp32, task, task.test)
        t_ood = embed_onnx(t_fp32, task, ood)
        rows: dict[str, dict[str, object]] = {}
        hits: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # per test / out-of-domain summary: R@1 hit

        def row(name: str, path: Path, note: str) -> None:
            s, s_hits = scores(embed_onnx(path, task, task.test), t_emb)
            o, o_hits = scores(embed_onnx(path, task, ood), t_ood)
            hits[name] = s_hits, o_hits
            rows[name] = {**s, **{f"ood_{k}": v for k, v in o.items()}, **cost(path),
                          **host_latency(path, task), "note": note, "size_mb": path.stat().st_size / 2**20}
            print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[name].items()}, flush=True)

        row("teacher_fp32", t_fp32, "all-MiniLM-L6-v2, ONNX fp32")
        t_int8 = export(task.model, task, d / "teacher.int8dyn.onnx", "int8_dynamic", t_fp32)
        row("teacher_int8", t_int8, "the teacher, dynamic int8 ONNX (per channel): 'just quantize it'")
        cal = task.batch_transform(task.val.subset(slice(0, 256)).inputs)
        # the build's own measured block importance, so the baselines drop the same layers
        imp = {int(k): v for k, v in report["search"].get("block_importance", {}).items()} or block_importance(
            task.model, cal)
        total = len(find_blocks(task.model)[1])
        trunc, dropped = drop_blocks(task.model, total - n_layers, imp)
        row("truncated", export(trunc, task, d / "trunc.onnx"),
            f"teacher cut to {n_layers} layers (dropped {dropped}, least important first), no training")
        skel = adaptc.slim.extract_skeleton(task.model, task.example_inputs, width=chosen["width"], drop=chosen["drop"],
                                            channel_multiple=load_profile(args.device).channel_multiple,
                                            importance=imp, keep_output_dim=report["search"]["options"].get(
                                                "keep_output_dim", True), calibration_inputs=cal).model
        ep = args.contrastive_epochs or chosen["final_epochs"]
        t0 = time.perf_counter()
        contrastive = train_contrastive(copy.deepcopy(skel), task, ep, 1e-4, 0)
        row("contrastive_student", export(contrastive, task, d / "contrastive.onnx"),
            f"same skeleton, InfoNCE on {len(load_pairs()['train'].summaries)} train pairs for {ep} epochs, no teacher "
            f"({time.perf_counter() - t0:.0f} s)")
        s_fp32 = export(student, task, d / "student.onnx")
        row("adaptc_student_fp32", s_fp32, f"adaptc's distilled student {chosen['candidate']}, ONNX fp32")
        art = out_dir / report["chosen_per_format"].get("onnx", "model.onnx")
        row("adaptc_student_int8", art if "int8" in art.name else export(student, task, d / "student.int8dyn.onnx",
                                                                          "int8_dynamic", s_fp32),
            f"the build's ONNX artifact {art.name}" if "int8" in art.name else "dynamic int8 ONNX of the student")
    t = rows["teacher_fp32"]
    for name, r in rows.items():
        r["r1_retention"] = r["r1"] / t["r1"]
        r["ood_r1_retention"] = r["ood_r1"] / t["ood_r1"]
        r["r1_retention_ci95"] = retention_ci(hits[name][0], hits["teacher_fp32"][0])
        r["ood_r1_retention_ci95"] = retention_ci(hits[name][1], hits["teacher_fp32"][1])
        r["mac_fraction"] = r["encoder_macs"] / t["encoder_macs"]
        r["speedup_vs_teacher_fp32"] = t["median_ms"] / r["median_ms"]
    s8 = rows["adaptc_student_int8"]
    results["rows"] = rows
    results["targets"] = {
        "student_mac_fraction<=0.25": s8["mac_fraction"] <= 0.25,
        "student_int8_r1_retention>=0.95": s8["r1_retention"] >= 0.95,
        "student_int8_speedup>=5x": s8["speedup_vs_teacher_fp32"] >= 5,
        "faster_than_teacher_int8": s8["median_ms"] < rows["teacher_int8"]["median_ms"],
        "retention>=truncated": s8["r1_retention"] >= rows["truncated"]["r1_retention"],
        "build_minutes<=30": (build_s or 0) / 60 <= 30 if build_s else None,
    }
    Path(args.out).write_text(json.dumps(results, indent=2))
    plot(results, Path(args.out).with_suffix(".png"))
    print(json.dumps(results["targets"], indent=1))
    return 0


def plot(results: dict, dest: Path) -> None:
    """R@1 retention (test pairs, filled; out-of-domain check, hollow) against host latency, one point per row,
    with the issue's targets: 95% retention, and 5x faster than the fp32 teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    rows = results["rows"]
    colors = {"teacher_fp32": "tab:green", "teacher_int8": "tab:red", "truncated": "tab:purple",
              "contrastive_student": "tab:brown", "adaptc_student_fp32": "tab:cyan", "adaptc_student_int8": "tab:blue"}
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    for i, (name, r) in enumerate(rows.items()):
        color = colors.get(name, f"C{i}")
        x = r["median_ms"]
        ax.scatter([x], [100 * r["r1_retention"]], color=color, s=60, zorder=3,
                   label=f"{name.replace('_', ' ')} ({100 * r['mac_fraction']:.0f}% MACs)")
        if "r1_retention_ci95" in r and name != "teacher_fp32":  # the test split's sampling error (bootstrap)
            lo, hi = (100 * v for v in r["r1_retention_ci95"])
            ax.errorbar([x], [100 * r["r1_retention"]], yerr=[[100 * r["r1_retention"] - lo],
                        [hi - 100 * r["r1_retention"]]], color=color, capsize=3, lw=1, zorder=2)
        ax.scatter([x], [100 * r["ood_r1_retention"]], facecolors="none", edgecolors=color, s=60, zorder=3)
        ax.plot([x, x], [100 * r["r1_retention"], 100 * r["ood_r1_retention"]], color=color, lw=0.8, alpha=0.6)
    teacher_ms = rows["teacher_fp32"]["median_ms"]
    ax.axhline(95, color="k", ls=":", lw=1)
    ax.text(teacher_ms, 95.5, "target: 95% of the teacher's R@1", fontsize=7, ha="right")
    ax.axvline(teacher_ms / 5, color="k", ls="--", lw=1)
    ax.text(teacher_ms / 5 * 1.03, 36, "5x faster than\nthe fp32 teacher", fontsize=7)
    ax.set_xscale("log")
    ticks = [t for t in (2, 3, 4, 6, 8, 10, 15, 20, 30, 40, 60, 80) if
             min(r["median_ms"] for r in rows.values()) / 1.3 <= t <= teacher_ms * 1.3]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("host latency, ms (onnxruntime, 1 thread, batch 1, 128 tokens; measured)")
    ax.set_ylabel("R@1 retention vs the teacher, %")
    b = results["build"]
    ax.set_title(f"all-MiniLM-L6-v2 -> {b['device']} ({results['test_pairs']} test pairs: filled, bars: 95% "
                 f"bootstrap interval; {results['ood_pairs']} out-of-domain: hollow)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(dest)


if __name__ == "__main__":
    sys.exit(main())
