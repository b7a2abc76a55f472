"""Faults on purpose (issue 28), shared by the tests (tests/test_faults.py) and the reliability run that writes
docs/RELIABILITY.md's figures (benchmarks/reliability.py).

- :func:`kill_and_resume`: a small real build (digits on pixel8: a search of one skeleton, QAT, ONNX fp32 + int8,
  measured) killed with SIGKILL at chosen points -- while training, exporting, measuring, and once the last
  artifact is done (writing the report) -- and run again each time until it completes. After every kill: no
  visible file is half-written (each model file loads, each JSON parses strictly); after every rerun: no record
  the store held at the kill was made again (its ``created`` time is unchanged); at the end: the same choice and
  the same metrics as an uninterrupted build.
- :func:`disk_full`: builds into a folder that fills up (a small tmpfs where the machine allows mounting one,
  else a file-size limit, RLIMIT_FSIZE): one line and exit 2, never a traceback.
- :func:`kill_ray_worker_mid_trial`: a Ray worker killed in the middle of a search's trial (tests/test_fleet.py,
  benchmarks/fleet_bench.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: the small build: one skeleton, one rung epoch, two final epochs + QAT, ONNX fp32 + int8, 5 timed runs
BUILD = ["build", "--device", "pixel8", "--widths", "0.5", "--rung-epochs", "1", "--final-epochs", "2",
         "--formats", "onnx", "--runs", "5", "--seed", "0"]  # fmt: skip
#: kill points: progress lines that open the phase (the first seen counts), and the seconds after it (drawn
#: uniformly) to kill at. The last artifact's line, done now or resumed, is followed by the choice and the report.
PHASES: dict[str, tuple[tuple[str, ...], tuple[float, float]]] = {
    "training": (("▸ trial",), (0.2, 2.0)),
    "export": (("▸ onnx",), (0.0, 0.6)),
    "measurement": (("▸ onnx",), (0.8, 2.5)),
    "report": (("✓ onnx int8", "resume: model.int8.onnx"), (0.0, 0.4)),
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def _start(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "adaptc", *BUILD, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=_env(),
    )


def _records(out: Path) -> dict[str, float]:
    """Every record of the build's state store (stages and trials) with its ``created`` time."""
    db = out / ".adaptc" / "state.sqlite"
    if not db.exists():
        return {}
    recs: dict[str, float] = {}
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for t in ("stages", "trials"):
            if t in tables:
                recs.update({f"{t}:{k}": float(v) for k, v in c.execute(f"SELECT key, created FROM {t}")})
    return recs


def half_written(out: Path) -> list[str]:
    """Visible files of a build folder that are not whole: a model that does not load, JSON that does not parse
    strictly, an empty report or a PNG without its end chunk. (Temporaries are hidden: ``.adaptc-tmp-*``.)"""
    bad = []
    for f in sorted(out.iterdir()) if out.is_dir() else []:
        if f.name.startswith(".") or not f.is_file():
            continue
        try:
            if f.suffix == ".onnx":
                import onnx

                onnx.checker.check_model(onnx.load(str(f)))
            elif f.suffix == ".json":
                json.loads(f.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            elif f.suffix == ".md":
                assert f.read_text().strip()
            elif f.suffix == ".png":
                assert f.read_bytes()[-8:-4] == b"IEND"
        except Exception as e:
            bad.append(f"{f.name}: {type(e).__name__}")
    return bad


def _summary(out: Path) -> dict[str, Any]:
    """What a finished build chose and the figures that must not change with interruptions (not the timings, not
    the files' bytes: whether those are the same is the fresh-cache builds' question, benchmarks/reliability.py)."""
    r = json.loads((out / "report.json").read_text())
    ch = r["search"]["chosen"]
    return {
        # the "did int8 help?" guardrail ships fp32 where it measured int8 slower on this host: a timing, which
        # another run on a busy host may read the other way (the student and every metric stay the same)
        "timed": any(f.startswith("did int8 help? no") for a in r["artifacts"] for f in a.get("flags", [])),
        "chosen": r["chosen"],
        "student": (ch["candidate"], ch["val"], ch["test"], ch["final_epochs"]),
        "artifacts": sorted(
            (a["file"], a["status"], (a.get("parity") or {}).get("metric", {}).get("value"))
            for a in r["artifacts"]
        ),
    }


@dataclass
class KillReport:
    kills: int = 0
    by_phase: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    half_written_seen: list[str] = field(default_factory=list)
    records_redone: list[str] = field(default_factory=list)
    records_kept: int = 0
    tracebacks: int = 0
    same_choice: bool | None = None
    same_metrics: bool | None = None
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def record_dict(self) -> dict[str, Any]:
        return {
            "kills": self.kills,
            "kills_by_phase": self.by_phase,
            "runs": self.runs,
            "half_written_files_seen": len(self.half_written_seen),
            "finished_records_redone": len(self.records_redone),
            "finished_records_kept": self.records_kept,
            "tracebacks": self.tracebacks,
            "same_choice": self.same_choice,
            "same_metrics": self.same_metrics,
            "seconds": round(self.seconds, 1),
        }


def _run_until(out: Path, markers: tuple[str, ...], delay: float, log: list[str]) -> tuple[bool, int]:
    """Run the build; kill it ``delay`` s after the first line holding one of ``markers`` (none: never). Returns
    (killed, exit code)."""
    p = _start(out)
    killed = threading.Event()
    timer: list[threading.Timer] = []
    assert p.stdout is not None
    for line in p.stdout:
        log.append(line)
        if markers and not timer and any(m in line for m in markers):
            t = threading.Timer(delay, lambda: (killed.set(), p.send_signal(signal.SIGKILL)))
            t.start()
            timer.append(t)
    code = p.wait()
    for t in timer:
        t.cancel()
    return killed.is_set() and code == -signal.SIGKILL, code


def _tracked_run(out: Path, markers: tuple[str, ...], delay: float, rep: KillReport) -> tuple[bool, int, list[str]]:
    """:func:`_run_until` counted in ``rep``: the run, its tracebacks, and which records the store held before it
    are still the same after it (kept) or were made again (redone). Returns (killed, exit code, log)."""
    before = _records(out)
    log: list[str] = []
    killed, code = _run_until(out, markers, delay, log)
    rep.runs += 1
    rep.tracebacks += sum("Traceback" in ln for ln in log)
    after = _records(out)
    rep.records_kept += sum(1 for k in before if after.get(k) == before[k])
    rep.records_redone += [k for k in before if k in after and after[k] != before[k]]
    return killed, code, log


def kill_and_resume(work: Path, kills: int, seed: int = 0) -> KillReport:
    """At least ``kills`` SIGKILLs spread over the phases (:data:`PHASES`), over as many fresh builds as it takes;
    each build then completes by rerunning and is compared with an uninterrupted one."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    rep = KillReport()
    ref = work / "reference"
    log: list[str] = []
    _, code = _run_until(ref, (), 0.0, log)
    assert code == 0, "".join(log[-30:])
    reference = _summary(ref)
    n = 0
    while rep.kills < kills and n < 2 * kills:
        out = work / f"killed-{n}"
        n += 1
        for phase, (markers, (lo, hi)) in PHASES.items():
            killed, code, log = _tracked_run(out, markers, rng.uniform(lo, hi), rep)
            if killed:
                rep.kills += 1
                rep.by_phase[phase] = rep.by_phase.get(phase, 0) + 1
                rep.half_written_seen += [f"{out.name} after a kill in {phase}: {b}" for b in half_written(out)]
            else:
                assert code == 0, "".join(log[-30:])
                break  # it finished before the kill point: the remaining phases are done
        while not (out / "report.json").exists() or json.loads((out / "report.json").read_text()).get("status") != "ok":
            _, code, log = _tracked_run(out, (), 0.0, rep)
            assert code == 0, "".join(log[-30:])
        got = _summary(out)
        same_file = got["chosen"] == reference["chosen"] or got["timed"] or reference["timed"]
        same_choice = same_file and got["student"][0] == reference["student"][0]
        same_metrics = (got["student"], got["artifacts"]) == (reference["student"], reference["artifacts"])
        if not same_metrics:
            rep.differences.append(f"{out.name}: {got} != {reference}")
        rep.same_choice = same_choice if rep.same_choice is None else rep.same_choice and same_choice
        rep.same_metrics = same_metrics if rep.same_metrics is None else rep.same_metrics and same_metrics
        shutil.rmtree(out, ignore_errors=True)
    rep.seconds = time.perf_counter() - t0
    return rep


# -- a disk that fills up -------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(mb: int) -> Any:
    """A folder on a full tmpfs of ``mb`` MB (mounted where the machine allows it: root in a container), else
    None."""
    d = Path(tempfile.mkdtemp(prefix="adaptc-disk-"))
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        mounted = (
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(d)], capture_output=True).returncode
            == 0
        )
    if mounted:  # fill it: the next write finds no room
        with open(d / "filler", "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    try:
        yield d if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


#: ``adaptc ARGV`` under a file-size limit set in the child itself (a ``preexec_fn`` would fork a process that
#: runs threads); a write past the limit fails with EFBIG instead of the signal SIGXFSZ
_LIMITED = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, ({n}, {n})); from adaptc.cli import main; sys.exit(main(sys.argv[1:]))"
)


def disk_full(work: Path) -> list[dict[str, Any]]:
    """An export whose output runs out of room: onto a full 1 MB tmpfs (ENOSPC) where one can be mounted, and under
    a 128 KB file-size limit (EFBIG) everywhere. Each case: its exit code and its last stderr lines."""
    cases: list[dict[str, Any]] = []

    def one(kind: str, argv: list[str], limit: int | None = None) -> None:
        head = ["-m", "adaptc"] if limit is None else ["-c", _LIMITED.format(n=limit)]
        r = subprocess.run([sys.executable, *head, *argv], capture_output=True, text=True, cwd=ROOT, env=_env(),
                           timeout=900)  # fmt: skip
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        cases.append({"case": kind, "exit": r.returncode, "lines": lines[-3:], "traceback": "Traceback" in r.stderr})

    export = ["-q", "export", "--device", "pixel8", "--formats", "onnx", "--runs", "5"]  # (-q: no progress lines)
    with small_disk(1) as d:
        if d is not None:
            one("export onto a full 1 MB tmpfs", [*export, "--out", str(d / "b")])
    one("export under a 128 KB file-size limit", [*export, "--out", str(work / "limited")], 128 << 10)
    return cases


# ------------------------------------------------------------------------------------------ a killed Ray worker
def ray_trial_workers() -> list[int]:
    """PIDs of the Ray worker processes running a trial (Ray titles a worker after its task's function:
    ``ray::adaptc_trial``; an idle one is ``ray::IDLE``)."""
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if " ".join(p.info.get("cmdline") or []).startswith("ray::adaptc_trial")]


def kill_ray_worker_mid_trial(db: Path, killed: list[int], timeout: float = 600) -> threading.Thread:
    """A thread that, once the trial store ``db`` holds a finished trial, SIGKILLs a Ray worker 0.2 s after it
    starts its next trial (mid-trial: a trial takes seconds) and appends its PID to ``killed``. A worker counts as
    starting a trial when it is first seen running one after being seen idle or not at all (a worker going
    straight from one trial to the next is not caught mid-way)."""
    def run() -> None:
        busy_before: set[int] | None = None
        end = time.monotonic() + timeout
        while time.monotonic() < end and not killed:
            try:
                with sqlite3.connect(db) as c:
                    done = c.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
            except sqlite3.Error:
                done = 0
            if done:
                busy = set(ray_trial_workers())
                busy_before = busy if busy_before is None else busy_before & busy
                started = busy - busy_before
                if started:
                    time.sleep(0.2)
                    os.kill(min(started), signal.SIGKILL)
                    killed.append(min(started))
            time.sleep(0.02)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
