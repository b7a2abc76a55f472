"""The build history and its dashboard on real builds (issue 30): ten ``adaptc build`` runs over three devices and
two tasks (digits, animal-mnist) recorded into a fresh history, one of them deliberately regressed (a 0.125-wide
student trained for one epoch); then ``adaptc dashboard`` draws the page, headless Chromium opens it (every plot
drawn, points per trace, render time, console errors, network requests) and ``adaptc compare --against-history``
judges the regressed build. Writes benchmarks/results/dashboard.json and the README's screenshot
(docs/img/dashboard.png); docs/history.md's table is rendered from the JSON (``--table``).

    python benchmarks/dashboard_bench.py [--work DIR]      # ~25 min on 2 cores (the builds)
    python benchmarks/dashboard_bench.py --reuse --work DIR  # the builds of an earlier run, page and checks again

animal-mnist needs its data package: pip install --no-deps animal-mnist==0.4; the browser check needs Playwright
and a Chromium (Debian: apt install chromium).
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
    sys.exit(__import__("tables").main(["dashboard"]))

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "dashboard.json"
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
sys.path.insert(0, str(ROOT))

#: a smaller search for animal-mnist, so that ten builds take minutes, not hours
AM_FAST = ["--widths", "0.5,0.25", "--rung-epochs", "2,4", "--final-epochs", "6"]
#: (task, device, extra options, what the run is)
BUILDS: list[tuple[str, str, list[str], str]] = [
    ("digits", "pixel8", ["--seed", "0"], "release 1"),
    ("digits", "lowend-a53", [], "release 1"),
    ("digits", "host", [], "release 1"),
    ("animal-mnist", "pixel8", AM_FAST, "release 1"),
    ("animal-mnist", "lowend-a53", AM_FAST, "release 1"),
    ("animal-mnist", "host", AM_FAST, "release 1"),
    ("digits", "pixel8", ["--seed", "1"], "release 2 (another seed)"),
    ("animal-mnist", "pixel8", [*AM_FAST, "--seed", "1"], "release 2 (another seed)"),
    ("digits", "host", ["--seed", "1"], "release 2 (another seed)"),
    ("digits", "pixel8", ["--widths", "0.125", "--rung-epochs", "1,1", "--final-epochs", "1", "--seed", "2"],
     "deliberately regressed: a 0.125-wide student, one epoch"),
]  # fmt: skip


def run_builds(work: Path, history: Path) -> list[dict[str, object]]:
    out = []
    for i, (task, device, extra, what) in enumerate(BUILDS):
        folder = work / f"{i:02d}-{task}-{device}"
        cmd = [sys.executable, "-m", "adaptc", "--quiet", "build", "--task", task, "--device", device, "--out",
               str(folder), "--history", str(history), *extra]  # fmt: skip
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        secs = time.perf_counter() - t0
        print(f"[{i + 1}/{len(BUILDS)}] {task} on {device} ({what}): exit {r.returncode}, {secs:.0f} s", flush=True)
        if r.returncode not in (0, 3):
            print(r.stderr[-2000:], file=sys.stderr)
        out.append({"task": task, "device": device, "options": extra, "what": what, "folder": folder.name,
                    "exit": r.returncode, "seconds": round(secs, 1)})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="folder for the builds and the history [a temp dir]")
    ap.add_argument("--reuse", action="store_true", help="keep the builds and history already in --work")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="adaptc-dashboard-"))
    work.mkdir(parents=True, exist_ok=True)
    history = work / "history.sqlite"
    builds_file = work / "builds.json"
    if args.reuse and builds_file.exists():
        builds = json.loads(builds_file.read_text())
    else:
        history.unlink(missing_ok=True)
        builds = run_builds(work, history)
        builds_file.write_text(json.dumps(builds, indent=1))
    page = work / "dashboard.html"
    t0 = time.perf_counter()
    # (run in the work folder with relative paths: the page, and the README's screenshot of it, name no folder of
    # the machine that made it)
    r = subprocess.run([sys.executable, "-m", "adaptc", "dashboard", "--history", history.name, "--out", page.name],
                       capture_output=True, text=True, cwd=work,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"adaptc dashboard failed: {r.stderr.strip()}")
    write_s = time.perf_counter() - t0
    regressed = work / next(b["folder"] for b in builds if str(b["what"]).startswith("deliberately"))
    cmp = subprocess.run([sys.executable, "-m", "adaptc", "compare", "--against-history", str(regressed),
                          "--history", str(history)], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    from adaptc.history import dashboard_data

    from tests.browser import check_page

    data = dashboard_data(history)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    seen = check_page(page, screenshot=SCREENSHOT)
    try:  # a 256-colour palette: the README's image at a third of the bytes, no visible loss on a chart page
        from PIL import Image

        Image.open(SCREENSHOT).convert("RGB").quantize(256).save(SCREENSHOT, optimize=True)
    except ImportError:
        pass
    flagged = [r["run_id"] for r in data["runs"] if r["regressed"]]
    result = {
        "benchmark": "dashboard",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "builds": builds,
        "runs": len(data["runs"]),
        "devices": sorted(data["devices"]),
        "tasks": sorted(data["tasks"]),
        "artifacts": len(data["artifacts"]),
        "page_bytes": page.stat().st_size,
        "page_write_s": round(write_s, 2),
        "browser": seen,
        "regressed_runs": flagged,
        "regression_on_page": bool(flagged) and all(f in seen.get("regressions_text", "") for f in flagged),
        "compare_against_history": {"exit": cmp.returncode, "regressions": cmp.stdout.split("regressions:")[-1]
                                    .strip().splitlines() if "regressions:" in cmp.stdout else []},
    }  # fmt: skip
    from adaptc.core.versions import host_info

    result["host"] = host_info()
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("builds", "host")}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
