"""Search and distillation at real scale (issue 27): a real pretrained network, data streamed from disk, a time
budget that holds, bounded memory, every core.

Sections (each merged into benchmarks/results/scale.json):

- ``prepare``: renders the recogniser's words (``--train`` training samples, 500 val, 500 test) into .npy files
  that the task factory ``benchmarks.scale_tasks:recognizer_on_disk`` memory-maps;
- ``throughput``: training throughput (images/s) of a distillation epoch and of the teacher's forward pass at 1
  and at every usable thread, on the recogniser and on the digits task (the threads rule of
  ``adaptc.tasks.training.training_threads``);
- ``recognizer``: ``adaptc build --device rv1126-cam --time-budget 1800 --memory-budget 4000`` on the on-disk
  recogniser: wall time, peak RSS (the build's report and /usr/bin/time), teacher passes, what shipped;
- ``detector``: the anytime property: ``adaptc build --device host --formats onnx --time-budget 900`` on the
  CRAFT detector at 384 x 384 (about 50 GMACs per image);

Run from the repository root: ``python benchmarks/scale_bench.py prepare throughput recognizer detector``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(__import__("tables").main(["scale"]))

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"


def _save(section: str, data: dict) -> None:
    allr = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    allr[section] = data
    allr["host"] = _host()
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(allr, indent=1, default=str) + "\n")
    os.replace(tmp, RESULTS)


def _host() -> dict:
    from adaptc.core.versions import host_info

    return host_info()


def prepare(work: Path, n_train: int) -> dict:
    import numpy as np

    from adaptc.tasks.ocr import _word_split

    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, (name, n) in enumerate((("train", n_train), ("val", 500), ("test", 500))):
        if (work / f"{name}_y.npy").exists() and len(np.load(work / f"{name}_y.npy")) == n:
            out[name] = n
            continue
        x = np.lib.format.open_memmap(work / f"{name}_x.tmp.npy", mode="w+", dtype=np.float32, shape=(n, 1, 64, 256))
        ys = []
        for i in range(0, n, 500):  # rendered in chunks: memory stays bounded
            sp = _word_split(min(500, n - i), 256, 1000 * 7 + 100 * k + i // 500, 0.3)
            x[i : i + len(sp)] = sp.inputs[0].numpy()
            ys.append(sp.targets.numpy())
        x.flush()
        del x
        os.replace(work / f"{name}_x.tmp.npy", work / f"{name}_x.npy")
        np.save(work / f"{name}_y.npy", np.concatenate(ys))
        out[name] = n
    return {"data": str(work.name), "samples": out, "bytes": sum(f.stat().st_size for f in work.glob("*.npy"))}


def throughput() -> dict:
    import copy

    import torch

    from adaptc.distill import DistillConfig, distill
    from adaptc.slim import extract_skeleton
    from adaptc.tasks import get_task
    from adaptc.tasks.training import torch_threads, training_threads, usable_cores

    rows = []
    for name, opts, width, n in (("text-recognizer", {"samples": 1100}, 0.5, 512), ("digits", {}, 0.5, 1024)):
        task = get_task(name, **opts)
        sub = task.train.subset(slice(0, n))
        t = copy.copy(task)
        t.train, t.augment = sub, None
        sk = extract_skeleton(task.model, task.example_inputs, width=width).model
        rule, mflops = training_threads(task.model, task.example_inputs)
        for threads in sorted({1, usable_cores()}):
            with torch_threads(threads), torch.no_grad():
                xs = sub.inputs[0][:64]
                task.model(xs[:4])
                t0 = time.perf_counter()
                for i in range(0, len(sub), 64):
                    task.model(sub.inputs[0][i : i + 64])
                fwd = len(sub) / (time.perf_counter() - t0)
            res = distill(copy.deepcopy(sk), task.model, t, DistillConfig(epochs=2, threads=threads, cache_teacher=False))
            train_s = min(h["train_seconds"] for h in res.history)
            rows.append(
                {
                    "task": name,
                    "teacher_mflops_per_sample": round(mflops, 1),
                    "student_width": width,
                    "threads": threads,
                    "rule_threads": rule,
                    "teacher_forward_images_per_s": round(fwd, 1),
                    "distill_images_per_s": round(len(sub) / train_s, 1),
                    "samples": len(sub),
                }
            )
            print(rows[-1], flush=True)
    return {"rows": rows, "note": "distillation epochs with the teacher run live on every batch (no cache), best of 2"}


def _build(args: list[str], out: Path, log: Path) -> dict:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "adaptc", "build", *args, "--out", str(out)]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return _summary(args, out, log, rc, time.perf_counter() - t0)


def _summary(args: list[str], out: Path, log: Path, rc: int, wall: float) -> dict:
    text = log.read_text()
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    rep = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    chosen = next((a for a in rep.get("artifacts", []) if a.get("chosen")), None)
    search = rep.get("search") or {}
    ch = search.get("chosen") or {}
    return {
        "command": "adaptc build " + " ".join(args),
        "exit_code": rc,
        "wall_s": round(wall, 1),
        "peak_rss_mb_time_v": round(int(m.group(1)) / 1024, 1) if m else None,
        "resources": rep.get("resources"),
        "status": rep.get("status"),
        "teacher_passes_over_training_data": len(re.findall(r"▸ teacher outputs over the", text)),
        "plan": search.get("plan"),
        "rungs": [{k: r.get(k) for k in ("rung", "epochs", "skeletons", "samples", "seconds")} for r in search.get("rungs", [])],
        "search_seconds": search.get("seconds"),
        "chosen_student": {k: ch.get(k) for k in ("skeleton", "scheme", "final_epochs", "val", "test", "test_retention", "params", "fidelity", "warm_start")},
        "search_log": search.get("log"),
        "teacher_metric": ((rep.get("task") or {}).get("teacher") or {}).get("metric"),
        "shipped": {
            "file": chosen["file"], "scheme": chosen["scheme"], "status": chosen["status"],
            "size_bytes": (chosen.get("size") or {}).get("value"),
            "metric": ((chosen.get("parity") or {}).get("metric") or {}).get("value"),
            "fits_budgets": chosen.get("fits_budgets"), "budgets": chosen.get("budgets"),
        } if chosen else None,
        "log_tail": text.splitlines()[-12:],
    }


def refresh(section: str, out: Path, log: Path, args: list[str]) -> None:
    """Re-read a finished build's report and log into its section (no rebuild)."""
    allr = json.loads(RESULTS.read_text())
    old = allr[section]
    new = _summary(args, out, log, old["exit_code"], old["wall_s"])
    _save(section, new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sections", nargs="+", choices=["prepare", "throughput", "recognizer", "detector"])
    ap.add_argument("--refresh", action="store_true", help="re-read finished builds' reports (no rebuild)")
    ap.add_argument("--work", type=Path, default=Path("scale-bench-work"), help="data and build folders")
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", action="store_true", help="a second recognizer build with the same seed (same choice?)")
    a = ap.parse_args()
    work = a.work.resolve()
    for s in a.sections:
        if s == "prepare":
            _save("prepare", prepare(work / "recognizer-data", a.train))
        elif s == "throughput":
            _save("throughput", throughput())
        elif s == "recognizer":
            tag = f"seed{a.seed}" + ("_repeat" if a.repeat else "")
            out = work / f"recognizer-build-{tag}"
            args = ["--task", "benchmarks.scale_tasks:recognizer_on_disk", "-O", f"data={work / 'recognizer-data'}",
                    "--device", "rv1126-cam", "--time-budget", "1800", "--memory-budget", "4000", "--seed", str(a.seed),
                    "--runs", "30"]
            if a.refresh:
                refresh(f"recognizer_{tag}", out, work / f"recognizer-{tag}.log", args)
            else:
                _save(f"recognizer_{tag}", _build(args, out, work / f"recognizer-{tag}.log"))
        elif s == "detector":
            out = work / "detector-build"
            args = ["--task", "benchmarks.scale_tasks:detector", "-O", "samples=300", "-O", "size=384",
                    "--device", "host", "--formats", "onnx", "--time-budget", "900", "--seed", str(a.seed), "--runs", "20"]
            if a.refresh:
                refresh("detector", out, work / "detector.log", args)
            else:
                _save("detector", _build(args, out, work / "detector.log"))


if __name__ == "__main__":
    main()
