"""Reliability in figures (issue 28): the campaigns of tests/fuzzing.py and tests/faults.py, run larger than CI
runs them, and two builds from fresh caches with the same seed. Writes benchmarks/results/reliability.json;
docs/RELIABILITY.md's table is rendered from it (``--table``), never typed.

Sections (each merged into the JSON):

- ``fuzz``: generated device profiles, command lines and damaged model files through the real command line
  (``--cases`` in all, shared 5 : 3 : 2): exit codes, tracebacks, cases that broke the one-line rule;
- ``kills``: SIGKILL at ``--kills`` points of a small real build (training, export, measurement, report), each
  followed by a rerun: half-written files seen, finished records redone, same choice and metrics as an
  uninterrupted build;
- ``disk``: an export whose output runs out of room (a full tmpfs where one can be mounted, a file-size limit);
- ``seeds``: ``adaptc build --device pixel8`` (digits) twice, each with a fresh cache (the teacher trained again)
  and the same seed: the choice, the metrics and the artifacts' sha256 compared.

Run from the repository root: ``python benchmarks/reliability.py fuzz kills disk seeds``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(__import__("tables").main(["reliability"]))

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
sys.path.insert(0, str(ROOT))


def _save(section: str, data: object) -> None:
    from adaptc.core.versions import host_info

    allr = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    allr[section] = data
    h = host_info()
    allr["host"] = {"cpu": h.get("cpu"), "usable_cores": h.get("usable_cores")}
    allr["created"] = time.strftime("%Y-%m-%d")
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(allr, indent=1) + "\n")
    os.replace(tmp, RESULTS)


def fuzz(cases: int) -> dict:
    from tests import fuzzing

    work = Path(tempfile.mkdtemp(prefix="adaptc-rel-"))
    files = fuzzing.small_model_files(work / "m")
    t0 = time.perf_counter()
    tallies = [
        fuzzing.fuzz_profiles(cases * 5 // 10),
        fuzzing.fuzz_command_lines(cases * 3 // 10, str(work / "m" / "m.onnx")),
        fuzzing.fuzz_model_files(cases * 2 // 10, files),
    ]
    return {
        "campaigns": {t.name: t.record_dict() for t in tallies},
        "failures": [f for t in tallies for f in t.failures][:20],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def kills(n: int) -> dict:
    from tests import faults

    rep = faults.kill_and_resume(Path(tempfile.mkdtemp(prefix="adaptc-rel-")), kills=n, seed=1)
    return {**rep.record_dict(), "differences": rep.differences, "half_written": rep.half_written_seen,
            "redone": rep.records_redone}  # fmt: skip


def disk() -> dict:
    from tests import faults

    return {"cases": faults.disk_full(Path(tempfile.mkdtemp(prefix="adaptc-rel-")))}


def seeds() -> dict:
    """Two fresh-cache builds, the same seed: (choice, metrics, sha256 of each artifact) compared."""
    runs = []
    for i in range(2):
        work = Path(tempfile.mkdtemp(prefix=f"adaptc-seed{i}-"))
        env = {**os.environ, "ADAPTC_CACHE": str(work / "cache")}
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "adaptc", "-q", "build", "--device", "pixel8", "--seed", "0",
                            "--out", str(work / "b")], capture_output=True, text=True, env=env, cwd=ROOT)  # fmt: skip
        rep = json.loads((work / "b" / "report.json").read_text())
        ch = rep["search"]["chosen"]
        runs.append({
            "exit": r.returncode,
            "seconds": round(time.perf_counter() - t0, 1),
            "teacher_test": rep["task"]["teacher"]["metric"]["value"],
            "student": ch["candidate"], "val": ch["val"], "test": ch["test"],
            "chosen": rep["chosen"],
            # the "did int8 help?" guardrail measured int8 slower than fp32 on this host and shipped fp32: a timing
            "guardrail_shipped_fp32": any(f.startswith("did int8 help? no") for x in rep["artifacts"]
                                          for f in x.get("flags", [])),
            "artifacts": {a["file"]: {"metric": (a.get("parity") or {}).get("metric", {}).get("value"),
                                      "sha256": a.get("sha256")} for a in rep["artifacts"]},
        })  # fmt: skip
    a, b = runs
    same_bytes = [f for f in a["artifacts"] if a["artifacts"][f]["sha256"] == b["artifacts"].get(f, {}).get("sha256")]
    return {
        "runs": runs,
        "same_teacher": a["teacher_test"] == b["teacher_test"],
        "same_student": a["student"] == b["student"],
        # the shipped file too, unless the guardrail's host timing decided it in either build
        "same_choice": a["student"] == b["student"]
        and (a["chosen"] == b["chosen"] or a["guardrail_shipped_fp32"] or b["guardrail_shipped_fp32"]),
        "shipped_by_host_timing": a["chosen"] != b["chosen"],
        "same_metrics": (a["val"], a["test"]) == (b["val"], b["test"])
        and all(a["artifacts"][f]["metric"] == b["artifacts"].get(f, {}).get("metric") for f in a["artifacts"]),
        "byte_identical": same_bytes,
        "not_byte_identical": sorted(set(a["artifacts"]) - set(same_bytes)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sections", nargs="+", choices=["fuzz", "kills", "disk", "seeds"])
    ap.add_argument("--cases", type=int, default=3000, help="fuzz cases in all")
    ap.add_argument("--kills", type=int, default=20)
    a = ap.parse_args()
    for s in a.sections:
        data = {"fuzz": lambda: fuzz(a.cases), "kills": lambda: kills(a.kills), "disk": disk, "seeds": seeds}[s]()
        _save(s, data)
        print(s, json.dumps(data, indent=1)[:1500], flush=True)


if __name__ == "__main__":
    main()
