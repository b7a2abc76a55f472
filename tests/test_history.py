"""The build history (issue 30): every build and export is recorded; two builds at once both land in an intact
database; a corrupt, foreign or newer history is refused in one line and never overwritten; `adaptc history`
lists, exports and imports; `adaptc compare --against-history` finds a regression against the last release."""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import adaptc
from adaptc.errors import HistoryError
from adaptc.history import History, dashboard_data, runs

from .conftest import run_cli


def _export(out: Path, history: Path, model: torch.nn.Module | None = None) -> adaptc.BuildReport:
    if model is None:
        return adaptc.export("digits", "host", out, formats=["onnx"], runs=5, history=history)
    return adaptc.export(model, "host", out, task="digits", formats=["onnx"], runs=5, history=history)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A history with the digits teacher exported, then a damaged copy of it (a deliberate regression)."""
    d = tmp_path_factory.mktemp("hist")
    h = d / "history.sqlite"
    _export(d / "good", h)
    bad = copy.deepcopy(adaptc.get_task("digits").model)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in bad.parameters():
            p.add_(0.6 * p.std() * torch.randn(p.shape, generator=g))
    _export(d / "bad", h, bad)
    return h, d / "good", d / "bad"


def test_every_export_is_recorded_with_its_artifacts(two_runs: tuple[Path, Path, Path]) -> None:
    h, good, _ = two_runs
    rs = runs(path=h)
    assert [r["command"] for r in rs] == ["export", "export"] and all(r["task"] == "digits" for r in rs)
    first = rs[0]
    assert first["device"] == "host" and first["build_dir"] == str(good.resolve()) and first["shipped"]
    assert first["task_fingerprint"] and first["profile_hash"] and first["toolchain"]["torch"].startswith("2.13")
    arts = adaptc.history.artifacts([first["run_id"]], path=h)
    shipped = [a for a in arts if a["shipped"]]
    assert len(shipped) == 1 and shipped[0]["file"] == first["shipped"]
    a = shipped[0]
    assert a["sha256"] and a["size_bytes"] > 0 and 0.9 < a["metric"] <= 1 and len(a["metric_ci95"]) == 2
    assert a["host_latency_ms"] > 0 and a["device_latency_ms"] > 0 and "estimated" in a["device_method"]
    assert Path(a["path"]).is_file() and Path(a["report_md"]).is_file()


def test_history_commands(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    h, good, bad = two_runs
    r = run_cli("history", "--history", str(h), "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 2
    r = run_cli("history", "export", "--history", str(h), "--format", "csv")
    assert r.returncode == 0 and r.stdout.startswith("run_id,") and r.stdout.count("\n") >= 3
    r = run_cli("history", "export", "--history", str(h), "--format", "jsonl", "--what", "runs")
    assert [json.loads(line)["command"] for line in r.stdout.splitlines()] == ["export", "export"]
    # importing reports already recorded adds nothing; into a fresh history, both
    r = run_cli("history", "import", str(good), str(bad), "--history", str(h))
    assert r.returncode == 0 and "added 0 run(s), skipped 2" in r.stdout
    fresh = tmp_path / "fresh.sqlite"
    r = run_cli("history", "import", str(good), str(bad / "report.json"), "--history", str(fresh))
    assert r.returncode == 0 and len(runs(path=fresh)) == 2 and {x["command"] for x in runs(path=fresh)} == {"import"}


def test_a_regression_against_the_last_release(two_runs: tuple[Path, Path, Path]) -> None:
    h, good, bad = two_runs
    r = run_cli("compare", "--against-history", str(bad), "--history", str(h))
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "regressions:" in r.stdout and "accuracy" in r.stdout
    r = run_cli("compare", "--against-history", str(good), "--history", str(h))
    assert r.returncode == 2 and "no earlier run" in r.stderr  # the first run has nothing before it
    data = dashboard_data(h)
    assert [x["regressed"] for x in data["runs"]] == [False, True]
    assert data["runs"][1]["baseline_run"] == data["runs"][0]["run_id"] and data["runs"][1]["regressions"]


def test_many_openers_of_a_new_history_all_get_it(tmp_path: Path) -> None:
    """Builds that start together all open (and one creates) the same new history: none is told it is locked or
    not a history (each race was seen: switching to WAL answers 'locked' at once, and a reader between the
    creator's header and tables saw a foreign database)."""
    for k in range(30):
        path, errors = tmp_path / f"h{k}.sqlite", []

        def open_it(path: Path = path, errors: list = errors) -> None:
            try:
                with History(path) as h:
                    assert h.runs() == []
            except Exception as e:  # noqa: BLE001 - the test reports whatever an opener met
                errors.append(repr(e))

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], (k, errors)
        with sqlite3.connect(path) as c:
            assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert c.execute("PRAGMA application_id").fetchone()[0] == 0x61647463


def test_two_builds_at_once_both_land(tmp_path: Path) -> None:
    """Two real `adaptc export` processes recording into one history at the same time."""
    h = tmp_path / "h.sqlite"
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "adaptc", "--quiet", "export", "--task", "digits", "--device", "host", "--formats",
             "onnx", "--runs", "5", "--out", str(tmp_path / f"b{i}"), "--history", str(h)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    rs = runs(path=h)
    assert sorted(r["build_dir"] for r in rs) == sorted(str((tmp_path / f"b{i}").resolve()) for i in range(2))
    with sqlite3.connect(h) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_many_writers_hammering_one_history(tmp_path: Path) -> None:
    """Four processes appending 15 runs each, all at once: 60 runs, an intact file."""
    h = tmp_path / "h.sqlite"
    report = json.loads((Path(__file__).parent / "data" / "report_min.json").read_text())
    script = (
        "import json, sys, time; from adaptc.history import History\n"
        "rep = json.loads(open(sys.argv[1]).read())\n"
        "with History(sys.argv[2]) as h:\n"
        "    for i in range(15):\n"
        "        rep['created_utc'] = f'2026-01-01T00:00:{i:02d}Z-{sys.argv[3]}'\n"
        "        assert h.add_report(rep, '.', command='build')\n"
    )
    src = tmp_path / "rep.json"
    src.write_text(json.dumps(report))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(src), str(h), str(i)]) for i in range(4)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    assert len(runs(path=h)) == 60
    with sqlite3.connect(h) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_history_that_is_not_ours_is_refused_and_left_alone(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 10)
    foreign = tmp_path / "foreign.sqlite"
    c = sqlite3.connect(foreign)
    with c:
        c.execute("CREATE TABLE x (a)")
    c.close()
    newer = tmp_path / "newer.sqlite"
    History(newer).close()
    c = sqlite3.connect(newer)
    with c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    for path, words in ((junk, "not a SQLite database"), (foreign, "not an adaptc history"), (newer, "schema version 99")):
        before = path.read_bytes()
        with pytest.raises(HistoryError, match=words):
            History(path)
        r = run_cli("history", "--history", str(path))
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        # a build is refused before any work, and the file is never overwritten
        r = run_cli("export", "--task", "digits", "--device", "host", "--formats", "onnx", "--out",
                    str(tmp_path / "never"), "--history", str(path))  # fmt: skip
        assert r.returncode == 2 and words in r.stderr, r.stderr
        assert path.read_bytes() == before and not (tmp_path / "never" / "report.json").exists()


def test_no_history_records_nothing(tmp_path: Path) -> None:
    r = run_cli("--quiet", "export", "--task", "digits", "--device", "host", "--formats", "onnx", "--runs", "5",
                "--out", str(tmp_path / "b"), "--no-history", "--json", env={"ADAPTC_HISTORY": str(tmp_path / "h")})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["task"]["name"] == "digits"  # --json: the report alone on stdout
    assert not (tmp_path / "h").exists()
