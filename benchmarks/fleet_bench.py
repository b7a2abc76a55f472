"""Fleet builds: one search for pixel8 + echo-dot + rv1126-cam against three single-device builds, on the local
executor and on a Ray cluster on this machine.

    python benchmarks/fleet_bench.py                       # digits and animal-mnist -> results/fleet.json
    python benchmarks/fleet_bench.py --tasks digits        # one task (the others' results are kept)
    python benchmarks/fleet_bench.py --table               # docs/fleet.md's tables from results/fleet.json

Per task, in one run and one after another (nothing else running): the three single-device builds (``adaptc build
--device D``, each in a fresh folder, the teacher cached beforehand), then the fleet build (``--device a,b,c``);
wall time of each command. Then, on digits, Ray (``ray start --head`` on this machine, two CPUs):

- the same fleet with ``--executor ray``: its choices and trial results against the local fleet's;
- N independent trials (the search's rung 0) on clusters of one and two CPUs, and in process;
- the fleet again on Ray with a worker killed in the middle of a trial (once a trial has finished): the choice,
  the retries, every trial stored once, and a rerun that trains nothing.

"Same choice" compares the search's chosen candidate (student and scheme) and its validation and test metric;
the file each device ships is listed too (the int8 guardrail's host timing can flip between a format's int8 and
float file, whoever builds).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    sys.exit(__import__("tables").main(["fleet"]))

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests import faults  # noqa: E402  (a Ray worker killed mid-trial: shared with tests/test_fleet.py)

RESULTS = HERE / "results" / "fleet.json"
DEVICES = ["pixel8", "echo-dot", "rv1126-cam"]
#: the task's search options (animal-mnist: the dashboard benchmark's shorter search, a build of about 4 min)
OPTIONS = {
    "digits": [],
    "animal-mnist": ["--widths", "0.5,0.25", "--rung-epochs", "2,4", "--final-epochs", "6"],
}


def adaptc(*args: str, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "adaptc", "--quiet", *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise SystemExit(f"adaptc {' '.join(args)} exited {r.returncode}: {r.stderr[-2000:]}")
    return time.perf_counter() - t0, r


def trials(folder: Path) -> dict[str, float]:
    with sqlite3.connect(folder / ".adaptc" / "state.sqlite") as c:
        return dict(c.execute("SELECT key, val FROM trials").fetchall())


def chosen(folder: Path) -> dict[str, Any]:
    r = json.loads((folder / "report.json").read_text())
    c = r["search"]["chosen"]
    return {"candidate": c["candidate"], "val": c["val"], "test": c["test"], "shipped": r["chosen"],
            "seconds": round(r["duration_s"], 1)}


def fleet_of(folder: Path) -> dict[str, Any]:
    f = json.loads((folder / "fleet.json").read_text())
    return {"devices": {d["device"]: chosen(folder / d["folder"]) for d in f["devices"]}, "trials": f["trials"],
            "executor": f["executor"], "status": f["status"]}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[k] == b[k] for k in ("candidate", "val", "test"))


def run_task(task: str, work: Path) -> dict[str, Any]:
    opts = ["--task", task, "--no-history", *OPTIONS[task]]
    adaptc("build", "--device", "host", "--out", str(work / "warm"), "--widths", "0.5", "--rung-epochs", "1,1",
           "--final-epochs", "1", "--formats", "onnx", "--task", task, "--no-history")  # (the teacher, cached)
    singles = {}
    for d in DEVICES:
        secs, _ = adaptc("build", "--device", d, "--out", str(work / f"single-{d}"), *opts)
        singles[d] = {**chosen(work / f"single-{d}"), "wall_s": round(secs, 1),
                      "trials": len(trials(work / f"single-{d}"))}
        print(f"{task} single {d}: {secs:.0f} s, {singles[d]['candidate']}", flush=True)
    secs, _ = adaptc("build", "--device", ",".join(DEVICES), "--out", str(work / "fleet"), *opts)
    fleet = {**fleet_of(work / "fleet"), "wall_s": round(secs, 1)}
    print(f"{task} fleet: {secs:.0f} s", flush=True)
    most = max(s["wall_s"] for s in singles.values())
    total = sum(s["wall_s"] for s in singles.values())
    return {
        "task": task,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "options": OPTIONS[task],
        "singles": singles,
        "fleet": fleet,
        "most_expensive_single_s": most,
        "sum_of_singles_s": round(total, 1),
        "fleet_over_most_expensive": round(fleet["wall_s"] / most, 3),
        "fleet_over_sum": round(fleet["wall_s"] / total, 3),
        "same_choice": {d: same(fleet["devices"][d], singles[d]) for d in DEVICES},
        "same_shipped_file": {d: fleet["devices"][d]["shipped"] == singles[d]["shipped"] for d in DEVICES},
        "trials_of_singles": sum(s["trials"] for s in singles.values()),
    }


# ------------------------------------------------------------------------------------------------------ Ray
def ray_bin() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class Cluster:
    """``ray start --head`` on this machine with ``cpus`` CPUs (two trials at a time with two)."""

    def __init__(self, cpus: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.cpus = cpus

    def __enter__(self) -> str:
        subprocess.run([ray_bin(), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                        "--num-cpus", str(self.cpus), "--include-dashboard=false", "--disable-usage-stats"],
                       check=True, capture_output=True, env={**os.environ, **RAY_ENV})
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc: Any) -> None:
        subprocess.run([ray_bin(), "stop", "--force"], capture_output=True, env={**os.environ, **RAY_ENV})


def run_ray(work: Path, local: dict[str, Any]) -> dict[str, Any]:
    task = "digits"
    opts = ["--task", task, "--no-history", *OPTIONS[task]]
    out: dict[str, Any] = {}
    with Cluster(2) as address:
        secs, _ = adaptc("build", "--device", ",".join(DEVICES), "--out", str(work / "ray-fleet"), "--executor", "ray",
                         "--address", address, *opts, env=RAY_ENV)
        ray_fleet = {**fleet_of(work / "ray-fleet"), "wall_s": round(secs, 1)}
        out["fleet"] = ray_fleet
        out["same_choice_as_local"] = {d: same(ray_fleet["devices"][d], local["fleet"]["devices"][d]) for d in DEVICES}
        out["same_trials_as_local"] = trials(work / "ray-fleet") == trials(work / "fleet")
        out["ray_over_local"] = round(ray_fleet["wall_s"] / local["fleet"]["wall_s"], 3)
        print(f"ray fleet: {secs:.0f} s", flush=True)
        # a worker killed mid-trial
        killed: list[int] = []
        folder = work / "ray-killed"
        folder.mkdir()
        t = faults.kill_ray_worker_mid_trial(folder / ".adaptc" / "state.sqlite", killed)
        secs, _ = adaptc("build", "--device", ",".join(DEVICES), "--out", str(folder), "--executor", "ray",
                         "--address", address, *opts, env=RAY_ENV)
        t.join(timeout=5)
        f = fleet_of(folder)
        with sqlite3.connect(folder / ".adaptc" / "state.sqlite") as c:
            attempts = [json.loads(i).get("attempts") for (i,) in
                        c.execute("SELECT info FROM trials WHERE rung != 'final'")]
        retries = [r for d in DEVICES for r in
                   json.loads((folder / d / "report.json").read_text())["search"]["executor"].get("retries", [])]
        rerun_s, _ = adaptc("build", "--device", ",".join(DEVICES), "--out", str(folder), "--executor", "ray",
                            "--address", address, *opts, env=RAY_ENV)
        out["killed_worker"] = {
            "killed_pids": killed,
            "wall_s": round(secs, 1),
            "retries": retries,
            "same_choice_as_local": {d: same(f["devices"][d], local["fleet"]["devices"][d]) for d in DEVICES},
            "trials_stored": len(attempts) + f["trials"].get("final_trials", 0),
            "trial_attempts": sorted(a or 1 for a in attempts),
            "same_trials_as_local": trials(folder) == trials(work / "fleet"),
            "finished_trials_redone_by_rerun": json.loads((folder / "fleet.json").read_text())["trials"]["trained"],
            "rerun_s": round(rerun_s, 1),
        }
        print(f"killed worker: {killed}, retries {retries}", flush=True)
    # N independent trials (rung 0 of the pixel8 search) on 1 and 2 worker CPUs, and in process
    scaling = {"trials": None, "local_s": None, "workers": {}}
    single = json.loads((work / "single-pixel8" / "report.json").read_text())["search"]["rungs"][0]
    scaling["trials"], scaling["local_s"] = len(single["skeletons"]), round(single["seconds"], 1)
    for cpus in (1, 2):
        with Cluster(cpus) as address:
            d = work / f"ray-{cpus}cpu"
            secs, _ = adaptc("build", "--device", "pixel8", "--out", str(d), "--executor", "ray", "--address", address,
                             *opts, env=RAY_ENV)
            rung0 = json.loads((d / "report.json").read_text())["search"]["rungs"][0]
            scaling["workers"][str(cpus)] = {"rung0_s": round(rung0["seconds"], 1), "build_s": round(secs, 1),
                                             "same_choice": same(chosen(d), local["singles"]["pixel8"])}
            print(f"rung 0 on {cpus} worker(s): {rung0['seconds']:.1f} s", flush=True)
    out["scaling"] = scaling
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="digits,animal-mnist")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    import platform

    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"tasks": {}}
    res.update({"benchmark": "fleet", "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
                "devices": DEVICES})
    with tempfile.TemporaryDirectory(prefix="adaptc-fleet-") as tmp:
        for task in args.tasks.split(","):
            work = Path(tmp) / task
            work.mkdir()
            res["tasks"][task] = run_task(task, work)
            if task == "digits" and not args.no_ray:
                import ray

                res["ray"] = {**run_ray(work, res["tasks"][task]), "ray_version": ray.__version__, "cluster_cpus": 2}
            RESULTS.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "tasks"}, indent=1)[:3000])


if __name__ == "__main__":
    main()
