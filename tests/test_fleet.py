"""Fleet builds: one search serving several devices (adaptc.build_fleet, `adaptc build --device a,b`), on the local
executor and on a real Ray cluster (a head on 127.0.0.1 with two worker CPUs, started and stopped here), including
a worker killed mid-search. Real training, export and runtimes throughout (digits, tiny search settings)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import adaptc
from adaptc.build.fleet import load_fleet_file, resolve_devices
from adaptc.errors import AdaptcError
from adaptc.search.trials import TrialStore

from . import faults
from .conftest import run_cli

TINY = {"widths": [0.5, 0.25], "rung_epochs": [1, 2], "final_epochs": 1}
COMMON = {"search": TINY, "formats": ["onnx"], "runs": 5, "history": False}
FLEET = ["pixel8", "echo-dot"]


def _trials(folder: Path) -> dict[str, float]:
    """key -> validation metric of every trial in a folder's trial store."""
    with sqlite3.connect(folder / ".adaptc" / "state.sqlite") as c:
        return dict(c.execute("SELECT key, val FROM trials").fetchall())


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


@pytest.fixture(scope="module")
def local_fleet(tmp_path_factory: pytest.TempPathFactory, digits_task):
    out = tmp_path_factory.mktemp("fleet-local")
    return out, adaptc.build(digits_task, FLEET, out, **COMMON)


# ----------------------------------------------------------------------------------------------- devices
def test_devices_resolve_from_lists_wildcards_and_overrides() -> None:
    names = [p.name for p, _ in resolve_devices("pixel8, echo-dot")]
    assert names == ["pixel8", "echo-dot"]
    pixels = [p.name for p, _ in resolve_devices(["pixel*", "echo-dot"])]
    assert {"pixel4", "pixel8"} <= set(pixels) and pixels[-1] == "echo-dot"
    ((p, over),) = resolve_devices(["echo-dot"], {"echo-dot": {"budgets": {"max_latency_ms": 7}, "runs": 9}})
    assert p.budgets.max_latency_ms == 7 and p.budgets.max_model_mb == 5 and over == {"runs": 9}
    for bad, words in [
        ("pixel8,pixel8", "more than once"),
        ("nosuch-phone", "nosuch-phone"),
        ("zzz*", "no device profile matches"),
        ("", "no device given"),
    ]:
        with pytest.raises(AdaptcError, match=words):
            resolve_devices(bad)
    with pytest.raises(AdaptcError, match="unknown override"):
        resolve_devices("pixel8", {"pixel8": {"colour": "red"}})
    with pytest.raises(AdaptcError, match="not in the fleet"):
        resolve_devices("pixel8", {"echo-dot": {"runs": 5}})
    with pytest.raises(AdaptcError, match="bad budgets"):
        resolve_devices("pixel8", {"pixel8": {"budgets": {"max_latency_ms": -1}}})


def test_fleet_file(tmp_path: Path) -> None:
    f = tmp_path / "speakers.yaml"
    f.write_text("devices:\n  - pixel8\n  - echo-dot:\n      max_drop: 0.5\n      formats: [tflite]\n")
    names, over = load_fleet_file(f)
    assert names == ["pixel8", "echo-dot"] and over == {"echo-dot": {"max_drop": 0.005, "formats": ["tflite"]}}
    f.write_text("devices: [pixel8]\ncolour: red\n")
    with pytest.raises(AdaptcError, match="unknown key"):
        load_fleet_file(f)
    f.write_text("devices: []\n")
    with pytest.raises(AdaptcError, match="non-empty list"):
        load_fleet_file(f)


def test_cli_fleet_bad_input_is_one_line(tmp_path: Path) -> None:
    r = run_cli("build", "--device", "pixel8,nosuch-phone", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "nosuch-phone" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("build", "--device", "pixel8,echo-dot", "--address", "auto", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--executor ray" in r.stderr
    r = run_cli("build", "--device", "pixel8", "--executor", "slurm", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "unknown executor 'slurm'" in r.stderr and "Traceback" not in r.stderr


def test_executors_register_by_name() -> None:
    from adaptc.search import LocalExecutor, executor_names, get_executor

    assert {"local", "ray"} <= set(executor_names())
    assert isinstance(get_executor(None), LocalExecutor) and isinstance(get_executor("local"), LocalExecutor)
    with pytest.raises(AdaptcError, match="unknown executor 'slurm'"):
        get_executor("slurm")


# ----------------------------------------------------------------------------------------------- local
def test_fleet_builds_every_device_with_one_search(local_fleet, digits_task, tmp_path: Path) -> None:
    out, rep = local_fleet
    assert rep.status == "ok" and [d.device for d in rep.devices] == FLEET
    assert json.loads((out / "fleet.json").read_text())["devices"][1]["device"] == "echo-dot"
    md = (out / "fleet.md").read_text()
    assert "| [pixel8](pixel8/report.md) | ok |" in md and "shipped to" in md
    singles = {}
    for d in rep.devices:
        assert d.chosen and (out / d.folder / d.chosen).is_file() and d.fits_budgets
        assert d.metric_measured.startswith("measured") and d.latency_estimated_by.startswith("estimated")
        # the same choice as the device's own build, with the same seed
        single = adaptc.build(digits_task, d.device, tmp_path / d.device, **COMMON)
        singles[d.device] = single
        assert single.search.chosen.candidate == d.candidate
        fleet_chosen = _report(out / d.folder)["search"]["chosen"]
        assert fleet_chosen["val"] == single.search.chosen.val and fleet_chosen["test"] == single.search.chosen.test
    # one search: every trial of each single build is in the fleet's store once, with the same result; echo-dot's
    # channel multiple (4) derives the same skeletons as pixel8's (8), so it trained nothing of its own
    shared = _trials(out)
    for dev in FLEET:
        assert _trials(tmp_path / dev).items() <= shared.items()
    assert len(shared) == len(_trials(tmp_path / "pixel8")) == rep.trials["in_store"] == rep.trials["trained"]
    both = [c for c in rep.candidates if c.searched_by == FLEET]
    assert both and any(c.shipped_to == FLEET for c in both)
    # the student of a device folder is found through the shared store
    mine, own = TrialStore.open_final(out / "echo-dot").state_dict(), TrialStore.open_final(tmp_path / "echo-dot")
    assert all(torch.equal(v, mine[k]) for k, v in own.state_dict().items()) and len(mine) == len(own.state_dict())


def test_a_corrupt_shared_trial_store_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "fleet" / ".adaptc"
    state.mkdir(parents=True)
    (state / "state.sqlite").write_bytes(b"not a database" * 100)
    r = run_cli("build", "--device", "pixel8,echo-dot", "--out", str(tmp_path / "fleet"))
    assert r.returncode == 2 and "--no-resume" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_fleet_rerun_resumes_every_device(local_fleet, digits_task) -> None:
    out, first = local_fleet
    again = adaptc.build(digits_task, FLEET, out, **COMMON)
    assert again.trials["trained"] == 0 and again.trials["in_store"] == first.trials["in_store"]
    assert [d.candidate for d in again.devices] == [d.candidate for d in first.devices]


def test_killed_fleet_driver_resumes_without_redoing_trials(tmp_path: Path) -> None:
    """SIGKILL the fleet's driver once trials are stored; the same command again finishes, and every trial stored
    before the kill is kept as it was (its creation time unchanged)."""
    out = tmp_path / "fleet"
    cmd = [sys.executable, "-m", "adaptc", "--quiet", "build", "--device", "pixel8,echo-dot", "--out", str(out),
           "--widths", "0.5,0.35,0.25", "--rung-epochs", "2,2", "--final-epochs", "1", "--formats", "onnx",
           "--runs", "5", "--no-history"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / ".adaptc" / "state.sqlite"
    before: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and p.poll() is None and len(before) < 2:
        try:
            with sqlite3.connect(db) as c:
                before = dict(c.execute("SELECT key, created FROM trials").fetchall())
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    p.kill()
    p.wait()
    assert before, "no trial was stored before the kill"
    r = run_cli(*cmd[3:])
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(db) as c:
        after = dict(c.execute("SELECT key, created FROM trials").fetchall())
    assert {k: after.get(k) for k in before} == before and len(after) > len(before)
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["status"] == "ok" and 0 < fleet["trials"]["trained"] <= len(after) - len(before)


# ----------------------------------------------------------------------------------------------- Ray
def _ray_bin() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


@pytest.fixture(scope="module")
def cluster():
    """A real Ray cluster on this machine: a head on 127.0.0.1 with two CPUs (two trial workers at a time)."""
    import importlib.util

    if os.environ.get("CI") != "true" and importlib.util.find_spec("ray") is None:
        pytest.skip('Ray is an optional extra (pip install ".[ray]"); CI installs it')
    # a loopback test cluster without token authentication, on both sides (Ray reads this when it is imported)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # (the workers import the tests' own task modules, as a cluster's nodes import a user's: on their path)
    from .conftest import DATA

    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": os.pathsep.join([str(DATA), *sys.path])}
    subprocess.run(
        [_ray_bin(), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard=false", "--disable-usage-stats"],
        check=True, capture_output=True, env=env, timeout=180,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        subprocess.run([_ray_bin(), "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_ray_fleet_makes_the_local_choices(cluster, local_fleet, digits_task, tmp_path: Path) -> None:
    out, local = local_fleet
    rep = adaptc.build(
        digits_task, FLEET, tmp_path / "ray", executor="ray", executor_options={"address": cluster}, **COMMON
    )
    assert rep.status == "ok" and rep.executor["name"] == "ray" and rep.executor["cluster_cpus"] == 2
    assert [d.candidate for d in rep.devices] == [d.candidate for d in local.devices]
    # the same trials, with the same results (the workers read the same teacher pass, batch for batch)
    assert _trials(tmp_path / "ray") == _trials(out)
    search = _report(tmp_path / "ray" / "pixel8")["search"]
    assert search["executor"]["name"] == "ray" and search["executor"]["retries"] == []


def test_ray_ships_the_teachers_cached_pass(cluster, token_task, tmp_path: Path) -> None:
    """Fixed inputs (no augmentation): the teacher's pass is cached on the driver by the first trial and shipped
    with the context; no worker runs the teacher, and the students are those of the local run."""
    opts = {**COMMON, "measure_host": False, "search": {"widths": [0.5, 0.25], "rung_epochs": [1, 1], "final_epochs": 1}}
    local = adaptc.build(token_task, "pixel8", tmp_path / "local", **opts)
    rep = adaptc.build(
        token_task, "pixel8", tmp_path / "ray", executor="ray", executor_options={"address": cluster}, **opts
    )
    assert rep.search.chosen.candidate == local.search.chosen.candidate
    assert _trials(tmp_path / "ray") == _trials(tmp_path / "local")
    with sqlite3.connect(tmp_path / "ray" / ".adaptc" / "state.sqlite") as c:
        infos = [json.loads(i) for (i,) in c.execute("SELECT info FROM trials WHERE rung != 'final'")]
    on_ray = [i for i in infos if i.get("executor") == "ray"]
    assert on_ray and len(on_ray) == len(infos) - 1  # (the first trial ran on the driver and made the cache)
    assert all(i["teacher_pass"] == "the driver's cached pass, shipped once" for i in on_ray)


def test_killed_ray_worker_loses_nothing(cluster, digits_task, tmp_path: Path) -> None:
    """A worker killed mid-trial: the trial runs again elsewhere, the search ends with the local run's choice, and
    no trial that had finished is trained again (the resumed run trains nothing)."""
    opts = {**COMMON, "search": {"widths": [0.5, 0.35, 0.25, 0.125], "rung_epochs": [4, 6], "final_epochs": 1}}
    local = adaptc.build(digits_task, "pixel8", tmp_path / "local", **opts)
    out = tmp_path / "ray"
    killed: list[int] = []
    out.mkdir()
    t = faults.kill_ray_worker_mid_trial(out / ".adaptc" / "state.sqlite", killed, timeout=300)
    rep = adaptc.build(digits_task, ["pixel8"], out, executor="ray", executor_options={"address": cluster}, **opts)
    t.join(timeout=5)
    assert killed, "no trial worker was found to kill"
    assert rep.status == "ok" and rep.devices[0].candidate == local.search.chosen.candidate
    retries = _report(out / "pixel8")["search"]["executor"]["retries"]
    assert len(retries) == 1 and "worker died" in retries[0]
    # every trial is stored once, with the local run's result; one of them ran twice (the killed attempt)
    assert _trials(out) == _trials(tmp_path / "local")
    with sqlite3.connect(out / ".adaptc" / "state.sqlite") as c:
        attempts = [json.loads(i).get("attempts") for (i,) in c.execute("SELECT info FROM trials WHERE rung != 'final'")]
    assert sorted(attempts) == [1] * (len(attempts) - 1) + [2]
    again = adaptc.build(digits_task, ["pixel8"], out, executor="ray", executor_options={"address": cluster}, **opts)
    assert again.trials["trained"] == 0 and again.devices[0].candidate == rep.devices[0].candidate
